// SPDX-License-Identifier: Apache-2.0
// The man pages built by scdoc render without a single groff warning (what `man -l` and
// lintian would complain about), carry the project version, and each names itself.

#include <catch2/catch.hpp>
#include <filesystem>
#include <string>

#include "support/run_command.hpp"
#include "support/skip.hpp"

using namespace forkpool::test;
using namespace std::chrono_literals;

TEST_CASE("each man page renders with groff -ww without warnings and shows the version", "[packaging][man]") {
#if !FORKPOOL_MAN_BUILT
  skip_test("scdoc was not found at configure time, so no man page was built (apt-get install scdoc)");
#endif
  for (const std::string page : {"forkpool.8", "forkpoolctl.8", "forkpool.toml.5", "forkpool-protocol.7", "forkpool-hello.1", "forkpool-wsgi.1"}) {
    const std::string path = FORKPOOL_BINARY_DIR "/docs/man/" + page;
    INFO(path);
    REQUIRE(std::filesystem::exists(path));
    const auto r = run_command({"/usr/bin/groff", "-ww", "-man", "-Tutf8", path}, 30s);
    INFO(r.describe());
    REQUIRE(r.exited);
    CHECK(r.exit_code == 0);
    CHECK(r.err.empty());
    CHECK_THAT(r.out, Catch::Contains("forkpool " FORKPOOL_PROJECT_VERSION));
    const std::string name = page.substr(0, page.rfind('.'));
    CHECK_THAT(r.out, Catch::Contains(name + " - "));
  }
}
