// SPDX-License-Identifier: Apache-2.0
// The zsh completion of forkpoolctl (packaging/completion/_forkpoolctl), loaded by a real
// zsh's compinit from $fpath as the package installs it, and asked for completions with
// `words`/`CURRENT` set the way the completion system sets them (compadd replaced by a
// function that prints what would be offered for the word under the cursor), with pool
// names and worker numbers coming from a real running master.

#include <algorithm>
#include <catch2/catch.hpp>
#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include "support/master_process.hpp"
#include "support/run_command.hpp"
#include "support/skip.hpp"
#include "support/temp_dir.hpp"

using namespace forkpool::test;
using namespace std::chrono_literals;

namespace {

const std::string kCompletionDir = FORKPOOL_SOURCE_DIR "/packaging/completion";
const std::string kCtl = FORKPOOL_BINARY_DIR "/ctl/forkpoolctl";
using Words = std::vector<std::string>;

// Runs `script` in `zsh -f` after compinit has read the completion's folder.
RunResult in_zsh(const TempDir& dir, const std::string& script) {
  if (!std::filesystem::exists("/usr/bin/zsh")) skip_test("zsh is not installed (apt-get install zsh)");
  write_file(dir / "complete.zsh",
             "fpath=(" + shell_quoted(kCompletionDir) + " $fpath)\nautoload -Uz compinit && compinit -u -D\n"
             "compadd() { [[ $1 == -- ]] && shift; local w; for w in \"$@\"; do "
             "[[ $w == ${words[CURRENT]}* ]] && print -r -- $w; done; return 0 }\n" +
                 script);
  return run_command({"/usr/bin/env", "HOME=" + dir.path().string(), "/usr/bin/zsh", "-f",
                      (dir / "complete.zsh").string()},
                     30s);
}

Words complete(const TempDir& dir, const Words& words) {
  std::string script = "words=(" + shell_quoted(kCtl);
  for (const auto& w : words) script += " " + shell_quoted(w);
  // A completion function returns 1 when it offers nothing.
  script += ")\nCURRENT=" + std::to_string(words.size() + 1) + "\n_forkpoolctl || true\n";
  const auto r = in_zsh(dir, script);
  INFO(r.describe());
  REQUIRE(r.exit_code == 0);
  return sorted_lines(r.out);
}

}  // namespace

TEST_CASE("zsh completion registers for forkpoolctl and completes commands, options and signals", "[packaging][completion]") {
  TempDir dir;
  const auto registered = in_zsh(dir, "print -r -- $_comps[forkpoolctl]\n");
  INFO(registered.describe());
  REQUIRE(registered.exit_code == 0);
  CHECK(registered.out == "_forkpoolctl\n");

  CHECK(complete(dir, {""}) == Words{"events", "help", "kill", "log-level", "metrics", "reload", "restart", "scale",
                                     "shutdown", "start", "status", "stop", "top", "upgrade", "version"});
  CHECK(complete(dir, {"st"}) == Words{"start", "status", "stop"});
  CHECK(complete(dir, {"--j"}) == Words{"--json"});
  CHECK(complete(dir, {"top", "--"}) ==
        Words{"--config", "--help", "--interval", "--json", "--no-wait", "--once", "--socket", "--timeout", "--version"});
  CHECK(complete(dir, {"help", "up"}) == Words{"upgrade"});
  CHECK(complete(dir, {"log-level", "w"}) == Words{"warn"});
}

TEST_CASE("zsh completion takes pool names and worker numbers live from the master", "[packaging][completion]") {
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
  CHECK(complete(dir, {"-c", (dir / "f.toml").string(), "kill", "web", ""}) == Words{"0", "1"});
  CHECK(complete(dir, {"-s", sock, "kill", "api-2", ""}) == Words{"0", "1", "2"});
  CHECK(complete(dir, {"-s", sock, "kill", "web", "1", "TT"}) == Words{"TTIN", "TTOU"});

  // Without a master on the socket there is nothing to offer, and no error.
  CHECK(complete(dir, {"-s", (dir / "nothing.sock").string(), "status", ""}).empty());
}
