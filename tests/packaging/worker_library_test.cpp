// SPDX-License-Identifier: Apache-2.0
// libforkpool-worker.so.1 as shipped: the SONAME, exactly the functions forkpool/worker.h
// marks FP_WORKER_API exported (nothing internal leaks, nothing public is missing),
// forkpool-hello running on the shared library, and a pkg-config file that finds it.

#include <catch2/catch.hpp>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <string>

#include "support/run_command.hpp"

using namespace forkpool::test;
using namespace std::chrono_literals;

namespace {

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::set<std::string> words_matching(const std::string& text, const std::regex& re) {
  std::set<std::string> found;
  for (auto it = std::sregex_iterator(text.begin(), text.end(), re); it != std::sregex_iterator(); ++it)
    found.insert((*it)[1].str());
  return found;
}

}  // namespace

TEST_CASE("libforkpool-worker.so.1 exports exactly the FP_WORKER_API functions of worker.h", "[packaging][library]") {
  const std::string header = read_text(FORKPOOL_SOURCE_DIR "/worker/include/forkpool/worker.h");
  const auto declared = words_matching(header, std::regex(R"(FP_WORKER_API [^;(]*\b(fp_[a-z_]+)\()"));
  REQUIRE(declared.size() >= 20);

  const auto nm = run_command({"/usr/bin/nm", "-D", "--defined-only", FORKPOOL_WORKER_SO}, 20s);
  INFO(nm.describe());
  REQUIRE(nm.exit_code == 0);
  // Every defined dynamic symbol, whatever its name: a leaked helper shows up here too.
  const auto exported = words_matching(nm.out, std::regex(R"([0-9a-f]+ [A-Za-z] ([A-Za-z_][A-Za-z0-9_.@]*))"));
  CHECK(exported == declared);
}

TEST_CASE("libforkpool-worker has the SONAME libforkpool-worker.so.1 and forkpool-hello needs it", "[packaging][library]") {
  const auto lib = run_command({"/usr/bin/readelf", "-d", FORKPOOL_WORKER_SO}, 20s);
  INFO(lib.describe());
  REQUIRE(lib.exit_code == 0);
  CHECK_THAT(lib.out, Catch::Contains("Library soname: [libforkpool-worker.so.1]"));

  const auto hello = run_command({"/usr/bin/readelf", "-d", FORKPOOL_BINARY_DIR "/worker/hello/forkpool-hello"}, 20s);
  INFO(hello.describe());
  REQUIRE(hello.exit_code == 0);
  CHECK_THAT(hello.out, Catch::Contains("Shared library: [libforkpool-worker.so.1]"));
}

TEST_CASE("forkpool-worker.pc names the library and the project version", "[packaging][library]") {
  const std::string pc = FORKPOOL_BINARY_DIR "/forkpool-worker.pc";
  const auto version = run_command({"/usr/bin/pkg-config", "--modversion", pc}, 20s);
  INFO(version.describe());
  REQUIRE(version.exit_code == 0);
  CHECK(version.out == FORKPOOL_PROJECT_VERSION "\n");
  const auto flags = run_command({"/usr/bin/pkg-config", "--libs", "--cflags", pc}, 20s);
  INFO(flags.describe());
  REQUIRE(flags.exit_code == 0);
  CHECK_THAT(flags.out, Catch::Contains("-lforkpool-worker"));
  CHECK_THAT(flags.out, Catch::Contains("-I/"));
}
