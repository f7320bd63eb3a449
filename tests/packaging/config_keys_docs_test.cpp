// SPDX-License-Identifier: Apache-2.0
// Every key the config loader knows (the reload rules of config/diff.cpp list each pool
// and [supervisor] key once) must be documented in both docs/configuration.md and the
// forkpool.toml(5) man page, so neither can drift from the loader.

#include <catch2/catch.hpp>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "config/diff.hpp"

namespace {

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  REQUIRE(in.good());
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::vector<std::string> every_config_key() {
  std::vector<std::string> keys;
  for (const auto& rule : forkpool::config::pool_key_rules()) keys.emplace_back(rule.key);
  for (const auto& key : forkpool::config::supervisor_keys()) keys.emplace_back(key);
  return keys;
}

}  // namespace

TEST_CASE("every config key is documented in docs/configuration.md", "[packaging][docs]") {
  const std::string doc = read_text(FORKPOOL_SOURCE_DIR "/docs/configuration.md");
  const auto keys = every_config_key();
  REQUIRE(keys.size() > 40);
  for (const auto& key : keys) {
    INFO("key " << key << " is not written as `" << key << "` in docs/configuration.md");
    CHECK(doc.find("`" + key + "`") != std::string::npos);
  }
}

TEST_CASE("every config key is documented in the forkpool.toml(5) man page", "[packaging][docs]") {
  const std::string page = read_text(FORKPOOL_SOURCE_DIR "/docs/man/forkpool.toml.5.scd");
  const auto keys = every_config_key();
  REQUIRE(keys.size() > 40);
  for (const auto& key : keys) {
    INFO("key " << key << " has no *" << key << "* entry in docs/man/forkpool.toml.5.scd");
    CHECK(page.find("*" + key + "*") != std::string::npos);
  }
}
