// SPDX-License-Identifier: Apache-2.0
// The master's command line, parsed without running anything.

#include <catch2/catch.hpp>
#include <initializer_list>
#include <string>
#include <vector>

#include "supervisor/command_line.hpp"

using forkpool::supervisor::CommandLineResult;
using forkpool::supervisor::parse_command_line;

namespace {

CommandLineResult parse(std::initializer_list<const char*> args) {
  std::vector<const char*> argv{"forkpool"};
  argv.insert(argv.end(), args);
  return parse_command_line(static_cast<int>(argv.size()), argv.data());
}

}  // namespace

TEST_CASE("command line: every spelling of the config file, --check and the upgrade flags", "[cli]") {
  for (const auto& r : {parse({"-c", "a.toml"}), parse({"-ca.toml"}), parse({"--config", "a.toml"}),
                        parse({"--config=a.toml"})}) {
    REQUIRE(r.run);
    CHECK(r.run->config_file == "a.toml");
    CHECK_FALSE(r.run->check_only);
    CHECK(r.run->state_fd == -1);
    CHECK(r.err.empty());
  }
  const auto none = parse({});
  REQUIRE(none.run);
  CHECK(none.run->config_file.empty());

  const auto check = parse({"--check", "-c", "b.toml"});
  REQUIRE(check.run);
  CHECK(check.run->check_only);
  CHECK(check.run->config_file == "b.toml");

  const auto upgraded = parse({"--upgrade-state-fd", "7", "-c", "/etc/f.toml"});
  REQUIRE(upgraded.run);
  CHECK(upgraded.run->state_fd == 7);
  CHECK(upgraded.run->config_file == "/etc/f.toml");
  CHECK(parse({"--upgrade-info"}).run->upgrade_info);
  // "--" ends the options; a file name that starts with '-' can follow -c.
  CHECK(parse({"-c", "-odd.toml", "--"}).run->config_file == "-odd.toml");
}

TEST_CASE("command line: --help and --version print and exit 0", "[cli]") {
  for (const auto& r : {parse({"--help"}), parse({"-h"}), parse({"-c", "x.toml", "--help"})}) {
    CHECK_FALSE(r.run);
    CHECK(r.exit_code == 0);
    CHECK(r.out.find("Usage: forkpool [OPTIONS]") != std::string::npos);
    CHECK(r.out.find("--config FILE") != std::string::npos);
    CHECK(r.out.find("--check") != std::string::npos);
    CHECK(r.err.empty());
  }
  const auto v = parse({"--version"});
  CHECK_FALSE(v.run);
  CHECK(v.exit_code == 0);
  CHECK(v.out.starts_with("forkpool "));
  CHECK(v.out.find("(worker protocol ") != std::string::npos);
}

TEST_CASE("command line: what is wrong is named, with exit status 2", "[cli]") {
  struct Case {
    std::vector<const char*> args;
    std::string says;
  };
  for (const auto& c : std::vector<Case>{
           {{"--no-such-option"}, "unknown option --no-such-option"},
           {{"-x"}, "unknown option -x"},
           {{"extra"}, "unexpected argument: extra"},
           {{"-c"}, "-c needs a value"},
           {{"--config"}, "--config needs a value"},
           {{"--config="}, "--config needs a value"},
           {{"--check=yes"}, "--check takes no value"},
           {{"--version=2"}, "--version takes no value"},
           {{"--upgrade-state-fd"}, "--upgrade-state-fd needs a descriptor number"},
           {{"--upgrade-state-fd", "x"}, "--upgrade-state-fd needs a descriptor number"},
           {{"--upgrade-state-fd", "3x"}, "--upgrade-state-fd needs a descriptor number"},
           {{"--upgrade-state-fd=-1"}, "--upgrade-state-fd needs a descriptor number"},
           {{"--", "extra"}, "unexpected argument: extra"},
       }) {
    std::vector<const char*> argv{"forkpool"};
    argv.insert(argv.end(), c.args.begin(), c.args.end());
    const auto r = parse_command_line(static_cast<int>(argv.size()), argv.data());
    INFO(c.says);
    CHECK_FALSE(r.run);
    CHECK(r.exit_code == 2);
    CHECK(r.out.empty());
    CHECK(r.err == "forkpool: " + c.says + (c.says.ends_with("needs a value") ? ": the config file" : "") +
                       "\nRun with --help for more information.\n");
  }
}
