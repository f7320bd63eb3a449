// SPDX-License-Identifier: Apache-2.0
// systemd-analyze verify on the units of packaging/, in a scratch root laid out as the
// package installs them (/usr/bin/forkpool, /bin/kill, the man pages Documentation=
// names, the host's targets), so a typo in a directive, a wrong path or a missing man
// page fails here before build-deb.sh.

#include <catch2/catch.hpp>
#include <filesystem>
#include <string>
#include <vector>

#include "support/master_process.hpp"
#include "support/run_command.hpp"
#include "support/skip.hpp"
#include "support/temp_dir.hpp"

using namespace forkpool::test;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

struct ScratchRoot {
  TempDir dir;
  fs::path units() const { return dir / "lib/systemd/system"; }

  ScratchRoot() {
    for (const char* d : {"usr/bin", "bin", "lib/systemd/system", "usr/share/man/man5", "usr/share/man/man8"})
      fs::create_directories(dir / d);
    fs::copy_file(FORKPOOL_BINARY_DIR "/supervisor/forkpool", dir / "usr/bin/forkpool");
    fs::copy_file("/bin/kill", dir / "bin/kill");
    for (const char* unit : {"forkpool.service", "forkpool.socket", "forkpool@.service"})
      fs::copy_file(fs::path(FORKPOOL_SOURCE_DIR "/packaging") / unit, units() / unit);
    for (const auto& e : fs::directory_iterator("/lib/systemd/system"))
      if (e.path().extension() == ".target") fs::copy_file(e.path(), units() / e.path().filename());
    for (const char* page : {"forkpool.8", "forkpoolctl.8", "forkpool.toml.5"}) {
      const fs::path built = fs::path(FORKPOOL_BINARY_DIR "/docs/man") / page;
      fs::copy_file(built, dir / "usr/share/man" / ("man" + built.extension().string().substr(1)) / page);
    }
  }

  RunResult verify(const std::vector<std::string>& units_to_check) const {
    std::vector<std::string> argv = {"/usr/bin/env", "MANPATH=" + (dir / "usr/share/man").string(),
                                     "/usr/bin/systemd-analyze", "verify", "--root=" + dir.path().string()};
    for (const auto& u : units_to_check) argv.push_back((units() / u).string());
    return run_command(argv, 60s);
  }
};

}  // namespace

TEST_CASE("systemd-analyze verify accepts forkpool.service, forkpool.socket and forkpool@.service", "[packaging][systemd]") {
#if !FORKPOOL_MAN_BUILT
  skip_test("scdoc was not found at configure time: the units' Documentation= man pages were not built");
#endif
  if (!fs::exists("/usr/bin/systemd-analyze")) skip_test("systemd-analyze is not installed (package systemd)");
  ScratchRoot root;
  const auto ok = root.verify({"forkpool.service", "forkpool.socket", "forkpool@example.service"});
  INFO(ok.describe());
  REQUIRE(ok.exited);
  CHECK(ok.exit_code == 0);
  CHECK(ok.err.empty());

  // The same check on a broken copy must fail: the verifier really reads the units.
  write_file(root.units() / "broken.service",
             "[Unit]\nDescription=broken\n[Service]\nExecStart=/usr/bin/forkpool-missing\nKillMode=bogus\n");
  const auto bad = root.verify({"broken.service"});
  INFO(bad.describe());
  CHECK(bad.exit_code != 0);
  CHECK_THAT(bad.err, Catch::Contains("forkpool-missing"));
}
