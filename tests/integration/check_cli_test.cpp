// SPDX-License-Identifier: Apache-2.0
// `forkpool --check` and the other command-line paths that never start a pool, driven
// through the real binary. Every bad input must end in a clear message naming the file
// and exit code 2, never in a signal.

#include <catch2/catch.hpp>

#include <sys/stat.h>

#include <fstream>
#include <random>
#include <string>

#include "support/run_command.hpp"
#include "support/temp_dir.hpp"
#include "support/skip.hpp"

using forkpool::test::skip_test;

using forkpool::test::RunResult;
using forkpool::test::TempDir;
using forkpool::test::run_command;

namespace {

const std::string kForkpool = FORKPOOL_BINARY_DIR "/supervisor/forkpool";
constexpr std::chrono::seconds kTimeout{30};

const std::string kValid = R"([supervisor]
log_level = "warn"

[pools.web]
command = ["/bin/true", "{pool}", "{worker}"]
listen = ["tcp://127.0.0.1:0"]
workers = 2
)";

void write_file(const std::filesystem::path& p, const std::string& bytes) {
  std::ofstream out(p, std::ios::binary);
  out << bytes;
}

// A string literal with its embedded NULs, without the terminating one.
template <std::size_t N>
std::string bytes_of(const char (&literal)[N]) {
  return std::string(literal, N - 1);
}

RunResult check(const std::filesystem::path& file) {
  return run_command({kForkpool, "--check", "-c", file.string()}, kTimeout);
}

// The common contract for every config that cannot be used.
void require_clean_rejection(const RunResult& r, const std::filesystem::path& file) {
  INFO(r.describe());
  REQUIRE_FALSE(r.timed_out);
  REQUIRE(r.exited);  // not a crash
  CHECK(r.exit_code == 2);
  CHECK(r.out.empty());
  CHECK_THAT(r.err, Catch::Contains(file.string() + ":"));
  CHECK_THAT(r.err, Catch::Contains(file.string() + ": 1 error") || Catch::Contains(" errors\n"));
  CHECK_THAT(r.err, !Catch::Contains("AddressSanitizer") && !Catch::Contains("runtime error"));
}

}  // namespace

TEST_CASE("check cli: a valid config exits 0 and prints the effective config", "[check][cli]") {
  REQUIRE(std::filesystem::exists(kForkpool));
  TempDir dir;
  const auto file = dir / "forkpool.toml";
  write_file(file, kValid);
  const auto r = check(file);
  INFO(r.describe());
  REQUIRE(r.exited);
  CHECK(r.exit_code == 0);
  CHECK(r.err.empty());
  CHECK_THAT(r.out, Catch::StartsWith("[supervisor]\n"));
  CHECK_THAT(r.out, Catch::Contains("control_socket = \"" + (dir / "forkpool.sock").string() + "\""));
  CHECK_THAT(r.out, Catch::Contains("log_level = \"warn\""));
  CHECK_THAT(r.out, Catch::Contains("\n[pools.web]\ncommand = [\"/bin/true\", \"{pool}\", \"{worker}\"]\n"));
  CHECK_THAT(r.out, Catch::Contains("workers = 2\n"));
  CHECK_THAT(r.out, Catch::Contains("graceful_timeout = \"30s\"\n"));  // defaults are filled in
}

TEST_CASE("check cli: examples/hello.toml passes --check", "[check][cli]") {
  const std::filesystem::path hello = FORKPOOL_SOURCE_DIR "/examples/hello.toml";
  if (!std::filesystem::exists(hello)) {
    skip_test("examples/hello.toml does not exist");
  }
  const auto r = check(hello);
  INFO(r.describe());
  REQUIRE(r.exited);
  CHECK(r.exit_code == 0);
  CHECK_THAT(r.out, Catch::StartsWith("[supervisor]\n"));
  CHECK_THAT(r.out, Catch::Contains("[pools."));
}

TEST_CASE("check cli: a misspelt key exits 2 with file:line:col and a suggestion", "[check][cli]") {
  TempDir dir;
  const auto file = dir / "forkpool.toml";
  write_file(file, "[pools.web]\ncommand = [\"/bin/true\"]\nmax_infligt = 2\n");
  const auto r = check(file);
  INFO(r.describe());
  REQUIRE(r.exited);
  CHECK(r.exit_code == 2);
  CHECK(r.out.empty());
  CHECK(r.err == file.string() + ":3:1: pools.web.max_infligt: unknown key; did you mean `max_inflight`?\n" +
                     file.string() + ": 1 error\n");
}

TEST_CASE("check cli: every error is printed with a count line", "[check][cli]") {
  TempDir dir;
  const auto file = dir / "forkpool.toml";
  write_file(file, "[pools.web]\ncommand = [\"/bin/true\"]\nworkers = 0\nbacklog = 0\nballance = \"x\"\n");
  const auto r = check(file);
  INFO(r.describe());
  REQUIRE(r.exited);
  CHECK(r.exit_code == 2);
  CHECK(r.err == file.string() + ":3:11: pools.web.workers: expected an integer from 1 to 4096, got 0\n" +
                     file.string() + ":4:11: pools.web.backlog: expected an integer from 1 to 65535, got 0\n" +
                     file.string() + ":5:1: pools.web.ballance: unknown key; did you mean `balance`?\n" +
                     file.string() + ": 3 errors\n");
}

TEST_CASE("check cli: --check output fed back to --check prints the same text", "[check][cli]") {
  TempDir dir;
  std::filesystem::create_directory(dir / "logs");
  const auto first_file = dir / "forkpool.toml";
  write_file(first_file, kValid + R"(
[pools.api]
command = ["/bin/sh", "-c", "echo \"{worker}\""]
dispatch = "shared"
min_workers = 1
max_workers = 4
listen = ["unix:api.sock", "tcp://[::1]:0"]
env = { A = "1", B = "{pool}" }
rlimits = { nofile = 1024, as = "1GiB" }
stderr = "logs/api.err"
umask = "007"
)");
  const auto first = check(first_file);
  INFO(first.describe());
  REQUIRE(first.exited);
  REQUIRE(first.exit_code == 0);
  const auto second_file = dir / "effective.toml";
  write_file(second_file, first.out);
  const auto second = check(second_file);
  INFO(second.describe());
  REQUIRE(second.exited);
  CHECK(second.exit_code == 0);
  // control_socket defaults to the config's folder, which is the same for both files.
  CHECK(second.out == first.out);
}

TEST_CASE("check cli: --version and --help exit 0", "[check][cli]") {
  const auto v = run_command({kForkpool, "--version"}, kTimeout);
  INFO(v.describe());
  REQUIRE(v.exited);
  CHECK(v.exit_code == 0);
  CHECK_THAT(v.out, Catch::StartsWith("forkpool "));

  const auto h = run_command({kForkpool, "--help"}, kTimeout);
  INFO(h.describe());
  REQUIRE(h.exited);
  CHECK(h.exit_code == 0);
  CHECK_THAT(h.out, Catch::Contains("--check"));
  CHECK_THAT(h.out, Catch::Contains("--config"));
}

TEST_CASE("check cli: an unknown option exits 2", "[check][cli]") {
  const auto r = run_command({kForkpool, "--no-such-option"}, kTimeout);
  INFO(r.describe());
  REQUIRE(r.exited);
  CHECK(r.exit_code == 2);
  CHECK_THAT(r.err, Catch::Contains("--no-such-option"));

  const auto missing_value = run_command({kForkpool, "--check", "-c"}, kTimeout);
  INFO(missing_value.describe());
  REQUIRE(missing_value.exited);
  CHECK(missing_value.exit_code == 2);
}

TEST_CASE("check cli: random bytes", "[check][cli][garbage]") {
  TempDir dir;
  std::mt19937 rng(20240601);
  for (int round = 0; round < 8; ++round) {
    std::string bytes(4096 * (round + 1), '\0');
    for (auto& b : bytes) b = static_cast<char>(rng() & 0xff);
    const auto file = dir / ("random" + std::to_string(round) + ".toml");
    write_file(file, bytes);
    INFO("round " << round);
    require_clean_rejection(check(file), file);
  }
}

TEST_CASE("check cli: random printable TOML-ish text", "[check][cli][garbage]") {
  TempDir dir;
  std::mt19937 rng(7);
  const std::string alphabet = "[]{}=\"',.#\n \t0123456789abcdefpoolsweb_-:+eE\\";
  for (int round = 0; round < 20; ++round) {
    std::string text;
    for (int i = 0; i < 2000; ++i) text += alphabet[rng() % alphabet.size()];
    const auto file = dir / ("noise" + std::to_string(round) + ".toml");
    write_file(file, text);
    const auto r = check(file);
    INFO("round " << round << "\n" << r.describe());
    REQUIRE(r.exited);
    CHECK(r.exit_code == 2);
  }
}

TEST_CASE("check cli: a 10 MiB file is refused before parsing", "[check][cli][garbage]") {
  TempDir dir;
  const auto file = dir / "big.toml";
  write_file(file, std::string(10 << 20, '#'));
  const auto r = check(file);
  require_clean_rejection(r, file);
  CHECK_THAT(r.err, Catch::Contains("bytes"));
}

TEST_CASE("check cli: 100000 nested arrays", "[check][cli][garbage]") {
  TempDir dir;
  const auto value = dir / "arrays.toml";
  write_file(value, "a = " + std::string(100000, '[') + "\n");
  require_clean_rejection(check(value), value);
  const auto bare = dir / "brackets.toml";
  write_file(bare, std::string(100000, '[') + "\n");
  require_clean_rejection(check(bare), bare);
  const auto inline_tables = dir / "inline.toml";
  std::string nested = "a = ";
  for (int i = 0; i < 50000; ++i) nested += "{b=";
  write_file(inline_tables, nested + "\n");
  require_clean_rejection(check(inline_tables), inline_tables);
}

TEST_CASE("check cli: dotted keys 10000 levels deep", "[check][cli][garbage]") {
  TempDir dir;
  std::string key;
  for (int i = 0; i < 10000; ++i) key += (i ? ".k" : "k") + std::to_string(i);
  const auto assignment = dir / "dotted.toml";
  write_file(assignment, key + " = 1\n");
  require_clean_rejection(check(assignment), assignment);
  const auto header = dir / "header.toml";
  write_file(header, "[" + key + "]\n");
  require_clean_rejection(check(header), header);
  const auto in_pool = dir / "pool.toml";
  write_file(in_pool, "[pools.web]\ncommand = [\"/bin/true\"]\n" + key + " = 1\n");
  const auto r = check(in_pool);
  require_clean_rejection(r, in_pool);
  CHECK_THAT(r.err, Catch::Contains(in_pool.string() + ":3:1: pools.web.k0: unknown key"));
}

TEST_CASE("check cli: a directory", "[check][cli][garbage]") {
  TempDir dir;
  const auto r = check(dir.path());
  require_clean_rejection(r, dir.path());
  CHECK_THAT(r.err, Catch::Contains("is a directory"));
}

TEST_CASE("check cli: a missing file", "[check][cli][garbage]") {
  TempDir dir;
  const auto file = dir / "missing.toml";
  const auto r = check(file);
  require_clean_rejection(r, file);
  CHECK_THAT(r.err, Catch::Contains("No such file or directory"));
}

TEST_CASE("check cli: an unreadable file", "[check][cli][garbage]") {
  TempDir dir;
  // The tests run as root, who can read anything, so the check runs as nobody: the folder
  // is traversable, the file is not readable.
  ::chmod(dir.path().c_str(), 0755);
  const auto file = dir / "secret.toml";
  write_file(file, kValid);
  ::chmod(file.c_str(), 0000);
  const auto r = run_command({"/usr/bin/setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                              kForkpool, "--check", "-c", file.string()},
                             kTimeout);
  require_clean_rejection(r, file);
  CHECK_THAT(r.err, Catch::Contains("Permission denied"));
}

TEST_CASE("check cli: a file with NUL bytes", "[check][cli][garbage]") {
  TempDir dir;
  const auto file = dir / "nul.toml";
  write_file(file, bytes_of("[pools.web]\ncommand = [\"/bin/true\"]\n\0\0\0workers = 2\n"));
  const auto r = check(file);
  require_clean_rejection(r, file);
  CHECK_THAT(r.err, Catch::Contains(file.string() + ":3:"));
  const auto in_string = dir / "nul-in-string.toml";
  write_file(in_string, bytes_of("[pools.web]\ncommand = [\"/bin/tr\0ue\"]\n"));
  require_clean_rejection(check(in_string), in_string);
}

TEST_CASE("check cli: invalid UTF-8", "[check][cli][garbage]") {
  TempDir dir;
  int n = 0;
  for (const std::string& bad : {std::string("# \xc3\x28\n"), std::string("\xff\xfe"),
                                 std::string("[pools.web]\ncommand = [\"/bin/true\xe2\x82\"]\n"),
                                 std::string("[pools.\xed\xa0\x80]\ncommand = [\"/bin/true\"]\n"),
                                 std::string("[pools.web]\ncommand = [\"/bin/true\"]\nuser = \"\xc0\xaf\"\n")}) {
    const auto file = dir / ("utf8-" + std::to_string(n++) + ".toml");
    write_file(file, bad);
    INFO("case " << n);
    const auto r = check(file);
    require_clean_rejection(r, file);
    CHECK_THAT(r.err, Catch::Contains("utf-8") || Catch::Contains("UTF-8"));
  }
}

TEST_CASE("check cli: an empty file", "[check][cli][garbage]") {
  TempDir dir;
  const auto file = dir / "empty.toml";
  write_file(file, "");
  const auto r = check(file);
  require_clean_rejection(r, file);
  CHECK_THAT(r.err, Catch::Contains("no pools defined"));
}

TEST_CASE("check cli: --check prints values with the environment expanded, and names an unset variable",
          "[check][cli]") {
  TempDir dir;
  const auto file = dir / "env.toml";
  write_file(file, "[pools.web]\ncommand = [\"/bin/true\", \"${FP_CHECK_ARG}\"]\n"
                   "listen = [\"tcp://127.0.0.1:${FP_CHECK_PORT:-18123}\"]\n");
  ::setenv("FP_CHECK_ARG", "from-env", 1);
  ::unsetenv("FP_CHECK_PORT");
  const RunResult ok = check(file);
  INFO(ok.describe());
  CHECK(ok.exit_code == 0);
  CHECK_THAT(ok.out, Catch::Contains("command = [\"/bin/true\", \"from-env\"]"));
  CHECK_THAT(ok.out, Catch::Contains("listen = [\"tcp://127.0.0.1:18123\"]"));

  ::unsetenv("FP_CHECK_ARG");
  const RunResult bad = check(file);
  require_clean_rejection(bad, file);
  CHECK_THAT(bad.err, Catch::Contains(file.string() + ":2:25: pools.web.command[1]: environment variable "
                                                      "FP_CHECK_ARG is not set"));
}

TEST_CASE("check cli: with no -c and no config file anywhere, every path tried is listed", "[check][cli]") {
  TempDir dir;
  const auto r = run_command({"/bin/sh", "-c", "cd '" + dir.path().string() + "' && exec " + kForkpool + " --check"},
                             kTimeout);
  INFO(r.describe());
  if (std::filesystem::exists("/etc/forkpool/forkpool.toml")) return;  // this host has one: it would be used
  REQUIRE(r.exited);
  CHECK(r.exit_code == 2);
  CHECK(r.out.empty());
  CHECK_THAT(r.err, Catch::Contains("no config file found; tried:"));
  CHECK_THAT(r.err, Catch::Contains((std::filesystem::canonical(dir.path()) / "forkpool.toml").string()));
  CHECK_THAT(r.err, Catch::Contains("/etc/forkpool/forkpool.toml"));
  CHECK_THAT(r.err, Catch::Contains("-c FILE"));
}

TEST_CASE("check cli: a control socket or log folder that does not exist is an error with the real cause",
          "[check][cli]") {
  TempDir dir;
  write_file(dir / "f.toml", "[supervisor]\ncontrol_socket = \"run/forkpool.sock\"\nlog_file = \"logs/forkpool.log\"\n"
                             "[pools.web]\ncommand = [\"/bin/true\"]\n");
  const auto r = check(dir / "f.toml");
  require_clean_rejection(r, dir / "f.toml");
  CHECK_THAT(r.err, Catch::Contains(":2:18: supervisor.control_socket: the folder of the control socket: " +
                                    (dir / "run").string() + ": No such file or directory"));
  CHECK_THAT(r.err, Catch::Contains(":3:12: supervisor.log_file: the folder of the log file: " +
                                    (dir / "logs").string() + ": No such file or directory"));
}

TEST_CASE("check cli: umask = 022 is a located error that says to write a string", "[check][cli]") {
  TempDir dir;
  write_file(dir / "f.toml", "[pools.web]\ncommand = [\"/bin/true\"]\numask = 022\n");
  const auto r = check(dir / "f.toml");
  require_clean_rejection(r, dir / "f.toml");
  CHECK_THAT(r.err, Catch::Contains((dir / "f.toml").string() + ":3:9: pools.web.umask: "));
  CHECK_THAT(r.err, Catch::Contains("a file mode or umask is written as a string: umask = \"022\""));
}

TEST_CASE("check cli: included pool files are printed inline and errors in them name their file", "[check][cli]") {
  TempDir dir;
  std::filesystem::create_directories(dir / "conf.d");
  write_file(dir / "f.toml", "[supervisor]\ninclude = [\"conf.d/*.toml\"]\n\n[pools.web]\ncommand = [\"/bin/true\"]\n");
  write_file(dir / "conf.d/api.toml", "[pools.api]\ncommand = [\"/bin/true\"]\nworkers = 2\n");
  const auto ok = check(dir / "f.toml");
  INFO(ok.describe());
  REQUIRE(ok.exit_code == 0);
  CHECK_THAT(ok.out, Catch::Contains("# from " + (dir / "conf.d/api.toml").string() + "\n[pools.api]\n"));
  CHECK(ok.out.find("[pools.web]") < ok.out.find("[pools.api]"));

  write_file(dir / "conf.d/web.toml", "[pools.web]\ncommand = [\"/bin/true\"]\nworkrs = 2\n");
  const auto bad = check(dir / "f.toml");
  INFO(bad.describe());
  CHECK(bad.exit_code == 2);
  CHECK_THAT(bad.err, Catch::Contains((dir / "conf.d/web.toml").string() + ":1:8: pools.web: pool \"web\" is defined twice: here and at " +
                                      (dir / "f.toml").string() + ":4:8"));
  CHECK_THAT(bad.err, Catch::Contains(": 1 error\n"));
}
