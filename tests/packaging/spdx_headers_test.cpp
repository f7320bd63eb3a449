// SPDX-License-Identifier: Apache-2.0
// Every source file carries the SPDX licence tag that packaging/debian/copyright
// (machine-readable, "Files: *  License: Apache-2.0") relies on: the first line, or the
// line after a #! line; a C comment in C files (their headers are public and C). A new
// file without it fails here, so the tags cannot drift.

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "support/run_command.hpp"
#include "support/skip.hpp"

using namespace forkpool::test;
using namespace std::chrono_literals;

TEST_CASE("every C, C++, Python and shell source file has the SPDX Apache-2.0 tag", "[packaging][license]") {
  if (!std::filesystem::exists(FORKPOOL_SOURCE_DIR "/.git"))
    skip_test("the source tree is not a git checkout: no list of its source files");
  const auto listed = run_command({"/usr/bin/git", "-C", FORKPOOL_SOURCE_DIR, "ls-files", "--", "*.cpp", "*.hpp", "*.c",
                                   "*.h", "*.py", "*.sh"},
                                  30s);
  INFO(listed.describe());
  REQUIRE(listed.exit_code == 0);

  std::vector<std::string> untagged;
  std::size_t files = 0;
  std::istringstream names(listed.out);
  for (std::string name; std::getline(names, name);) {
    if (name.empty()) continue;
    std::ifstream in(std::string(FORKPOOL_SOURCE_DIR) + "/" + name);
    if (!in) continue;  // listed but deleted in the working tree
    ++files;
    const std::string id = "SPDX-License-Identifier: Apache-2.0";
    const std::string tag = name.ends_with(".py") || name.ends_with(".sh") ? "# " + id
                            : name.ends_with(".c") || name.ends_with(".h") ? "/* " + id + " */"
                                                                           : "// " + id;
    std::string line;
    std::getline(in, line);
    if (line.starts_with("#!")) std::getline(in, line);
    if (line != tag) untagged.push_back(name + " (want \"" + tag + "\" first, or after the #! line)");
  }
  CHECK(files > 100);
  std::string list;
  for (const auto& u : untagged) list += "\n  " + u;
  INFO("files without the SPDX tag:" << list);
  CHECK(untagged.empty());
}
