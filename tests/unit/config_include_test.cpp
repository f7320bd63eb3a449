// SPDX-License-Identifier: Apache-2.0
// `include` in [supervisor]: more pool files, globbed, sorted, relative to the including
// file; duplicates and errors located in the file where they are.

#include <catch2/catch.hpp>
#include <fstream>
#include <string>

#include "config/load.hpp"
#include "config/print.hpp"
#include "support/temp_dir.hpp"

namespace cfg = forkpool::config;
using forkpool::test::TempDir;

namespace {

void put(const std::filesystem::path& p, const std::string& text) {
  std::filesystem::create_directories(p.parent_path());
  std::ofstream(p) << text;
}

std::string pool(const std::string& name, const std::string& extra = "") {
  return "[pools." + name + "]\ncommand = [\"/bin/true\"]\n" + extra;
}

std::vector<cfg::Diagnostic> errors_of(const std::filesystem::path& file) {
  try {
    cfg::load_file(file);
  } catch (const cfg::ConfigError& e) {
    return e.diagnostics();
  }
  return {};
}

std::string dump(const std::vector<cfg::Diagnostic>& ds) {
  std::string out;
  for (const auto& d : ds) out += d.to_string() + "\n";
  return out;
}

}  // namespace

TEST_CASE("config include: pools of conf.d files come after the main file's, in name order", "[config][include]") {
  TempDir dir;
  put(dir / "main.toml", "[supervisor]\ninclude = [\"conf.d/*.toml\"]\n\n" + pool("first"));
  put(dir / "conf.d/20-b.toml", pool("b2") + pool("b1"));
  put(dir / "conf.d/10-a.toml", pool("a", "cwd = \"data\"\n"));
  std::filesystem::create_directories(dir / "conf.d/data");
  put(dir / "conf.d/README", "not toml, not matched");
  const cfg::Config c = cfg::load_file(dir / "main.toml");
  REQUIRE(c.pools.size() == 4);
  CHECK(c.pools[0].name == "first");
  CHECK(c.pools[1].name == "a");
  CHECK(c.pools[2].name == "b2");  // file order inside a file
  CHECK(c.pools[3].name == "b1");
  // Relative paths in an included file are relative to that file.
  CHECK(c.pools[1].cwd == dir / "conf.d/data");
  CHECK(c.pools[1].file == dir / "conf.d/10-a.toml");
  REQUIRE(c.included.size() == 2);
  // --check prints one self-contained file, saying where each pool came from.
  const std::string printed = cfg::to_toml(c);
  CHECK(printed.find("# from " + (dir / "conf.d/10-a.toml").string() + "\n[pools.a]") != std::string::npos);
  CHECK(printed.find("include") == std::string::npos);
}

TEST_CASE("config include: a pattern that matches nothing is fine, a missing plain file is not", "[config][include]") {
  TempDir dir;
  put(dir / "main.toml", "[supervisor]\ninclude = [\"conf.d/*.toml\"]\n\n" + pool("web"));
  CHECK(cfg::load_file(dir / "main.toml").pools.size() == 1);
  put(dir / "main.toml", "[supervisor]\ninclude = [\"extra.toml\"]\n\n" + pool("web"));
  const auto ds = errors_of(dir / "main.toml");
  INFO(dump(ds));
  REQUIRE(ds.size() == 1);
  CHECK(ds[0].line == 2);
  CHECK(ds[0].key == "supervisor.include[0]");
  CHECK(ds[0].message.find("extra.toml: No such file or directory") != std::string::npos);
}

TEST_CASE("config include: a pool defined twice names both places", "[config][include]") {
  TempDir dir;
  put(dir / "main.toml", "[supervisor]\ninclude = [\"conf.d/*.toml\"]\n\n" + pool("web"));
  put(dir / "conf.d/web.toml", "# the same pool again\n" + pool("web"));
  const auto ds = errors_of(dir / "main.toml");
  INFO(dump(ds));
  REQUIRE(ds.size() == 1);
  CHECK(ds[0].file.find("conf.d/web.toml") != std::string::npos);
  CHECK(ds[0].line == 2);
  CHECK(ds[0].key == "pools.web");
  CHECK(ds[0].message.find("defined twice") != std::string::npos);
  CHECK(ds[0].message.find((dir / "main.toml").string() + ":4:") != std::string::npos);
}

TEST_CASE("config include: errors inside an included file are located in that file", "[config][include]") {
  TempDir dir;
  put(dir / "main.toml", "[supervisor]\ninclude = [\"conf.d/*.toml\"]\n\n" + pool("web", "workers = 0\n"));
  put(dir / "conf.d/a.toml", pool("api", "max_infligt = 2\n"));
  put(dir / "conf.d/b.toml", "[pools.broken\n");
  put(dir / "conf.d/c.toml", "[supervisor]\nlog_level = \"debug\"\n" + pool("c"));
  const auto ds = errors_of(dir / "main.toml");
  INFO(dump(ds));
  REQUIRE(ds.size() == 4);
  // The main file's first, then each included file's in order.
  CHECK(ds[0].file == (dir / "main.toml").string());
  CHECK(ds[0].key == "pools.web.workers");
  CHECK(ds[1].file.ends_with("conf.d/a.toml"));
  CHECK(ds[1].line == 3);
  CHECK(ds[1].key == "pools.api.max_infligt");
  CHECK(ds[1].message.find("did you mean `max_inflight`") != std::string::npos);
  CHECK(ds[2].file.ends_with("conf.d/b.toml"));
  CHECK(ds[2].message.find("TOML syntax error") == 0);
  CHECK(ds[3].file.ends_with("conf.d/c.toml"));
  CHECK(ds[3].key == "supervisor");
  CHECK(ds[3].message.find("only [pools.NAME] tables") != std::string::npos);
}

TEST_CASE("config include: the main file matched by its own pattern is not read twice", "[config][include]") {
  TempDir dir;
  put(dir / "main.toml", "[supervisor]\ninclude = [\"*.toml\", \"other.toml\"]\n\n" + pool("web"));
  put(dir / "other.toml", pool("other"));
  const cfg::Config c = cfg::load_file(dir / "main.toml");
  REQUIRE(c.pools.size() == 2);
  CHECK(c.included.size() == 1);
}

TEST_CASE("config include: a main file with no pools of its own is fine when an included file has some",
          "[config][include]") {
  TempDir dir;
  put(dir / "main.toml", "[supervisor]\ninclude = [\"conf.d/*.toml\"]\n");
  CHECK(errors_of(dir / "main.toml").at(0).message.find("no pools defined") != std::string::npos);
  put(dir / "conf.d/web.toml", pool("web"));
  CHECK(cfg::load_file(dir / "main.toml").pools.size() == 1);
}
