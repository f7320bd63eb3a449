// SPDX-License-Identifier: Apache-2.0
// One version in one place: project(VERSION) in the top-level CMakeLists.txt. Every
// binary and the control socket's `version` command must print exactly that one.

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>

#include "support/master_process.hpp"
#include "support/run_command.hpp"
#include "support/temp_dir.hpp"

using namespace forkpool::test;
using namespace std::chrono_literals;

namespace {

// Read from the source, not from a compile definition, so the test checks the binaries
// against the one place a release edits.
std::string cmake_project_version() {
  std::ifstream in(FORKPOOL_SOURCE_DIR "/CMakeLists.txt");
  std::stringstream s;
  s << in.rdbuf();
  std::smatch m;
  const std::string text = s.str();
  REQUIRE(std::regex_search(text, m, std::regex(R"(project\(forkpool\s+VERSION\s+([0-9]+\.[0-9]+\.[0-9]+))")));
  return m[1].str();
}

std::string first_line(const std::string& text) { return text.substr(0, text.find('\n')); }

}  // namespace

TEST_CASE("forkpool, forkpoolctl and forkpool-hello --version print the CMake project version", "[packaging][version]") {
  const std::string version = cmake_project_version();
  const auto fp = run_command({forkpool_binary().string(), "--version"}, 20s);
  INFO(fp.describe());
  REQUIRE(fp.exit_code == 0);
  CHECK(first_line(fp.out) == "forkpool " + version + " (worker protocol 1)");

  const auto ctl = run_command({FORKPOOL_BINARY_DIR "/ctl/forkpoolctl", "--version"}, 20s);
  INFO(ctl.describe());
  REQUIRE(ctl.exit_code == 0);
  CHECK(first_line(ctl.out) == "forkpoolctl " + version);

  const auto hello = run_command({hello_binary().string(), "--version"}, 20s);
  INFO(hello.describe());
  REQUIRE(hello.exit_code == 0);
  CHECK(first_line(hello.out) == "forkpool-hello " + version);
}

TEST_CASE("the version control command reports the CMake project version", "[packaging][version]") {
  const std::string version = cmake_project_version();
  TempDir dir;
  write_file(dir / "f.toml", "[supervisor]\ncontrol_socket = \"ctl.sock\"\n\n[pools.web]\ncommand = [\"" +
                                 hello_binary().string() + "\"]\nlisten = [\"tcp://127.0.0.1:0\"]\nworkers = 1\n");
  MasterProcess master(dir / "f.toml");
  REQUIRE(!master.wait_log("every pool has its workers ready").empty());
  const auto r = run_command(
      {FORKPOOL_BINARY_DIR "/ctl/forkpoolctl", "-s", (dir / "ctl.sock").string(), "--json", "version"}, 20s);
  INFO(r.describe());
  REQUIRE(r.exit_code == 0);
  CHECK(nlohmann::json::parse(r.out).value("version", "") == version);
}
