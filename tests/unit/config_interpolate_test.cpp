// SPDX-License-Identifier: Apache-2.0
// ${NAME}, ${NAME:-default} and $$ in string values (SPEC section 2).

#include <catch2/catch.hpp>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include "config/interpolate.hpp"
#include "config/load.hpp"

namespace cfg = forkpool::config;

namespace {

cfg::Expansion expand(const std::string& text) {
  static const std::map<std::string, std::string> env = {{"HOST", "127.0.0.1"}, {"EMPTY", ""}, {"N", "3"}};
  return cfg::expand_environment(text, [](std::string_view name) -> std::optional<std::string> {
    auto it = env.find(std::string(name));
    if (it == env.end()) return std::nullopt;
    return it->second;
  });
}

}  // namespace

TEST_CASE("config interpolation expands variables, defaults and $$", "[config][interpolate]") {
  CHECK(expand("tcp://${HOST}:80").value == "tcp://127.0.0.1:80");
  CHECK(expand("${N}${N}").value == "33");
  CHECK(expand("${MISSING:-9000}").value == "9000");
  CHECK(expand("${EMPTY:-fallback}").value == "fallback");  // unset or empty, as in the shell
  CHECK(expand("${EMPTY}").value.empty());
  CHECK(expand("${HOST:-x}").value == "127.0.0.1");
  CHECK(expand("cost $$5").value == "cost $5");
  CHECK(expand("$HOME stays").value == "$HOME stays");  // only ${...} is ours
  CHECK(expand("trailing $").value == "trailing $");
  CHECK(expand("${A:-a}}").value == "a}");
}

TEST_CASE("config interpolation refuses what it cannot expand", "[config][interpolate]") {
  CHECK_THAT(expand("${MISSING}").error, Catch::Contains("environment variable MISSING is not set"));
  CHECK_THAT(expand("${HOST").error, Catch::Contains("without a closing"));
  CHECK_THAT(expand("${}").error, Catch::Contains("does not start with a variable name"));
  CHECK_THAT(expand("${9X}").error, Catch::Contains("does not start with a variable name"));
  CHECK_THAT(expand("${A B}").error, Catch::Contains("letters, digits and _"));
}

TEST_CASE("config load expands the environment in every string value, with located errors",
          "[config][interpolate]") {
  ::setenv("FP_TEST_PORT", "18080", 1);
  ::setenv("FP_TEST_TIMEOUT", "2s", 1);
  ::unsetenv("FP_TEST_UNSET");
  const auto c = cfg::load_string(
      "[pools.web]\ncommand = [\"/bin/true\", \"--port\", \"${FP_TEST_PORT}\"]\n"
      "listen = [\"tcp://127.0.0.1:${FP_TEST_PORT}\"]\nqueue_timeout = \"${FP_TEST_TIMEOUT}\"\n"
      "env = { WHERE = \"${FP_TEST_UNSET:-nowhere}\" }\n",
      "/x/f.toml");
  const auto& p = c.pools.at(0);
  CHECK(p.command == std::vector<std::string>{"/bin/true", "--port", "18080"});
  CHECK(p.listen.at(0).port == 18080);
  CHECK(p.queue_timeout == std::chrono::seconds(2));
  CHECK(p.env.at("WHERE") == "nowhere");
  try {
    cfg::load_string("[pools.web]\ncommand = [\"/bin/true\"]\nuser = \"${FP_TEST_UNSET}\"\n", "/x/f.toml");
    FAIL("an unset variable without a default must be an error");
  } catch (const cfg::ConfigError& e) {
    REQUIRE(e.diagnostics().size() == 1);
    CHECK(e.diagnostics()[0].to_string() ==
          "/x/f.toml:3:8: pools.web.user: environment variable FP_TEST_UNSET is not set (write "
          "${FP_TEST_UNSET:-default} to give a default)");
  }
}

TEST_CASE("config load keeps $${NAME} a literal ${NAME}, never a placeholder", "[config][interpolate]") {
  const auto c = cfg::load_string(
      "[pools.web]\ncommand = [\"/bin/sh\", \"-c\", \"echo $${HOME} $${pool} {worker}\"]\n"
      "env = { A = \"$${B}\", C = \"$$$${D}\" }\n",
      "/x/f.toml");
  const auto& p = c.pools.at(0);
  CHECK(p.command.at(2) == "echo ${HOME} ${pool} {worker}");
  CHECK(p.env.at("A") == "${B}");
  CHECK(p.env.at("C") == "$${D}");
}

TEST_CASE("config load reports an unset variable and the other elements' problems in one run",
          "[config][interpolate]") {
  ::unsetenv("FP_TEST_UNSET");
  auto diagnostics = [](const std::string& text) {
    try {
      cfg::load_string(text, "/x/f.toml");
    } catch (const cfg::ConfigError& e) {
      std::vector<std::string> lines;
      for (const auto& d : e.diagnostics()) lines.push_back(d.to_string());
      return lines;
    }
    return std::vector<std::string>{};
  };
  // The unknown placeholder in command[2] is not hidden behind the variable of command[1].
  CHECK(diagnostics("[pools.web]\ncommand = [\"/bin/echo\", \"${FP_TEST_UNSET}\", \"{wroker}\"]\n") ==
        std::vector<std::string>{
            "/x/f.toml:2:25: pools.web.command[1]: environment variable FP_TEST_UNSET is not set (write "
            "${FP_TEST_UNSET:-default} to give a default)",
            "/x/f.toml:2:45: pools.web.command[2]: unknown placeholder {wroker}; the placeholders are {pool} and "
            "{worker}"});
  // What the checks of the array say of the text left unexpanded is still not reported:
  // command[0] is not looked for on disk, nor is the element checked for placeholders.
  const auto argv0 = diagnostics("[pools.web]\ncommand = [\"${FP_TEST_UNSET}/app\", \"{wroker}\"]\n");
  REQUIRE(argv0.size() == 2);
  CHECK_THAT(argv0[0], Catch::StartsWith("/x/f.toml:2:12: pools.web.command[0]: environment variable FP_TEST_UNSET"));
  CHECK_THAT(argv0[1], Catch::StartsWith("/x/f.toml:2:36: pools.web.command[1]: unknown placeholder {wroker}"));
}
