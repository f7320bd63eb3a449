// SPDX-License-Identifier: Apache-2.0
// The bash completion of forkpoolctl (packaging/completion/forkpoolctl.bash), sourced in
// a real bash and asked for completions the way bash-completion asks (COMP_WORDS,
// COMP_CWORD), with pool names and worker numbers coming from a real running master.

#include <algorithm>
#include <catch2/catch.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "config/names.hpp"
#include "support/master_process.hpp"
#include "support/run_command.hpp"
#include "support/temp_dir.hpp"

using namespace forkpool::test;
using namespace std::chrono_literals;

namespace {

const std::string kScript = FORKPOOL_SOURCE_DIR "/packaging/completion/forkpoolctl.bash";
const std::string kCtl = FORKPOOL_BINARY_DIR "/ctl/forkpoolctl";

// Runs `script` in a fresh bash after sourcing the completion file.
RunResult in_bash(const TempDir& dir, const std::string& script) {
  write_file(dir / "complete.sh", "set -u\nsource " + shell_quoted(kScript) + "\n" + script);
  return run_command({"/bin/bash", "--norc", "--noprofile", (dir / "complete.sh").string()}, 30s);
}

// What bash would offer for the command line `forkpoolctl words...` with the cursor on
// the last word.
std::vector<std::string> complete(const TempDir& dir, const std::vector<std::string>& words) {
  std::string script = "COMP_WORDS=(" + shell_quoted(kCtl);
  for (const auto& w : words) script += " " + shell_quoted(w);
  script += ")\nCOMP_CWORD=" + std::to_string(words.size()) + "\n_forkpoolctl\nprintf '%s\\n' \"${COMPREPLY[@]}\"\n";
  const auto r = in_bash(dir, script);
  INFO(r.describe());
  REQUIRE(r.exit_code == 0);
  return sorted_lines(r.out);
}

using Words = std::vector<std::string>;

}  // namespace

TEST_CASE("bash completion registers for forkpoolctl and completes commands and options", "[packaging][completion]") {
  TempDir dir;
  const auto registered = in_bash(dir, "complete -p forkpoolctl\n");
  INFO(registered.describe());
  REQUIRE(registered.exit_code == 0);
  CHECK(registered.out == "complete -F _forkpoolctl forkpoolctl\n");

  CHECK(complete(dir, {""}) == Words{"events", "help", "kill", "log-level", "metrics", "reload", "restart", "scale",
                                     "shutdown", "start", "status", "stop", "top", "upgrade", "version"});
  CHECK(complete(dir, {"st"}) == Words{"start", "status", "stop"});
  CHECK(complete(dir, {"--j"}) == Words{"--json"});
  CHECK(complete(dir, {"top", "--"}) ==
        Words{"--config", "--help", "--interval", "--json", "--no-wait", "--once", "--socket", "--timeout", "--version"});
  CHECK(complete(dir, {"help", "up"}) == Words{"upgrade"});
  CHECK(complete(dir, {"log-level", "w"}) == Words{"warn"});
}

TEST_CASE("bash completion takes pool names and worker numbers live from the master", "[packaging][completion]") {
  TempDir dir;
  write_file(dir / "f.toml", "[supervisor]\ncontrol_socket = \"ctl.sock\"\n\n[pools.web]\ncommand = [\"" +
                                 hello_binary().string() + "\"]\nlisten = [\"tcp://127.0.0.1:0\"]\nworkers = 2\n\n" +
                                 "[pools.api-2]\ncommand = [\"" + hello_binary().string() +
                                 "\"]\nlisten = [\"tcp://127.0.0.1:0\"]\nworkers = 3\n");
  MasterProcess master(dir / "f.toml");
  REQUIRE(!master.wait_log("every pool has its workers ready").empty());
  const std::string sock = (dir / "ctl.sock").string();

  CHECK(complete(dir, {"-s", sock, "restart", ""}) == Words{"all", "api-2", "web"});
  CHECK(complete(dir, {"--socket=" + sock, "stop", "a"}) == Words{"all", "api-2"});
  CHECK(complete(dir, {"-s", sock, "status", ""}) == Words{"api-2", "web"});
  // -c CONFIG: forkpoolctl finds the socket through the master's config file.
  CHECK(complete(dir, {"-c", (dir / "f.toml").string(), "kill", "web", ""}) == Words{"0", "1"});
  CHECK(complete(dir, {"-s", sock, "kill", "api-2", ""}) == Words{"0", "1", "2"});
  CHECK(complete(dir, {"-s", sock, "restart", "web", ""}) == Words{"0", "1"});
  CHECK(complete(dir, {"-s", sock, "kill", "web", "1", "TT"}) == Words{"TTIN", "TTOU"});

  // Without a master on the socket there is nothing to offer, and no error on the terminal.
  const std::string gone = (dir / "nothing.sock").string();
  CHECK(complete(dir, {"-s", gone, "status", ""}).empty());
}

TEST_CASE("every signal name the completion offers is accepted by forkpool", "[packaging][completion]") {
  TempDir dir;
  const auto r = in_bash(dir, "printf '%s\\n' $_forkpoolctl_signals\n");
  REQUIRE(r.exit_code == 0);
  const auto names = sorted_lines(r.out);
  REQUIRE(names.size() >= 10);
  for (const auto& name : names) {
    INFO(name);
    CHECK(forkpool::config::signal_from_name(name).has_value());
  }
}
