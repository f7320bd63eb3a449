// SPDX-License-Identifier: Apache-2.0
// The Debian packages as an operator gets them: scripts/build-deb.sh builds the three
// packages from this tree (lintian must pass), `dpkg -i` installs them into the real
// system, everything is then used from the installed paths only (--check of the packaged
// config, the man pages, the units, the bash completion, the example pool answering
// HTTP), and `dpkg -P` must leave nothing behind.
//
// It installs into the system, so it needs root, and it never touches a forkpool that was
// there before (it skips). Whatever fails, the packages it installed are purged and a
// policy-rc.d it put in place is removed. Slow (a full package build): labelled `deb`, run
// by the default preset only (docs/testing.md).

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "support/http_client.hpp"
#include "support/master_process.hpp"
#include "support/run_command.hpp"
#include "support/skip.hpp"
#include "support/temp_dir.hpp"
#include "support/wait_until.hpp"

using namespace forkpool::test;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

const std::vector<std::string> kPackages = {"forkpool", "libforkpool-worker1", "libforkpool-worker-dev"};
const fs::path kPolicyRcd = "/usr/sbin/policy-rc.d";
// Held while the packages are in the system: two runs of this test on one machine take
// turns instead of installing over each other.
const char* const kLockFile = "/run/lock/forkpool-deb-test.lock";

std::string read_text(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// For failure messages on the build's long log: its own lines and lintian's errors and
// warnings, then the end of the output.
std::string tail(const RunResult& r) {
  auto last = [](const std::string& s) { return s.size() > 4000 ? "..." + s.substr(s.size() - 4000) : s; };
  std::string notable;
  for (const auto* text : {&r.out, &r.err}) {
    std::istringstream in(*text);
    for (std::string line; std::getline(in, line);)
      if (line.starts_with("build-deb:") || line.starts_with("E: ") || line.starts_with("W: ")) notable += line + "\n";
  }
  return "exit code " + std::to_string(r.exit_code) + (r.timed_out ? " (timed out)" : "") + "\n--- notable ---\n" +
         notable + "--- stdout ---\n" + last(r.out) + "\n--- stderr ---\n" + last(r.err);
}

RunResult run(const std::vector<std::string>& argv, std::chrono::milliseconds timeout = 120s) {
  return run_command(argv, timeout);
}

// dpkg's view of a package: "installed", "config-files", ... or "" when it does not know it.
std::string package_state(const std::string& package) {
  const auto r = run({"/usr/bin/dpkg-query", "-W", "-f=${db:Status-Status}", package}, 30s);
  return r.exit_code == 0 ? r.out : "";
}

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) out.push_back(line);
  return out;
}

// The paths a .deb would create, from `dpkg-deb -c` ("./usr/bin/forkpool" -> "/usr/bin/forkpool").
std::vector<fs::path> deb_paths(const fs::path& deb) {
  const auto r = run({"/usr/bin/dpkg-deb", "-c", deb.string()}, 30s);
  INFO(r.describe());
  REQUIRE(r.exit_code == 0);
  std::vector<fs::path> paths;
  const std::regex entry(R"(^\S+ \S+ +\d+ \S+ \S+ \.(/\S*?)/?(?: -> .*)?$)");
  for (const auto& line : lines(r.out)) {
    std::smatch m;
    if (std::regex_match(line, m, entry) && m[1].str() != "/") paths.emplace_back(m[1].str());
  }
  return paths;
}

bool any_process_runs(const fs::path& exe) {
  for (const auto& entry : fs::directory_iterator("/proc")) {
    std::error_code ec;
    if (fs::read_symlink(entry.path() / "exe", ec) == exe) return true;
  }
  return false;
}

// Purges what the test installed and removes the policy-rc.d it wrote, however the test
// ends (a failed REQUIRE throws through here).
class SystemGuard {
 public:
  SystemGuard() = default;
  SystemGuard(const SystemGuard&) = delete;
  SystemGuard& operator=(const SystemGuard&) = delete;
  ~SystemGuard() {
    try {
      if (installed) {
        std::vector<std::string> argv = {"/usr/bin/dpkg", "--purge"};
        argv.insert(argv.end(), kPackages.begin(), kPackages.end());
        const auto r = run(argv);
        if (r.exit_code != 0) std::fprintf(stderr, "deb test: dpkg --purge failed: %s\n", r.describe().c_str());
      }
      if (wrote_policy) {
        std::error_code ec;
        fs::remove(kPolicyRcd, ec);
      }
    } catch (const std::exception& e) {
      std::fprintf(stderr, "deb test: cleaning up the system failed: %s\n", e.what());
    }
    if (lock_fd >= 0) ::close(lock_fd);
  }
  bool installed = false;
  bool wrote_policy = false;
  int lock_fd = -1;
};

}  // namespace

TEST_CASE("the Debian packages build lintian-clean, install, work from the installed paths and purge without a trace",
          "[packaging][deb]") {
  if (::geteuid() != 0) skip_test("needs root: the .deb is installed into this system with dpkg -i");
  const bool tools = fs::exists("/usr/bin/dpkg-buildpackage") && fs::exists("/usr/bin/lintian");
  if (!tools && !fs::exists("/usr/bin/apt-get"))
    skip_test("dpkg-buildpackage or lintian is missing and there is no apt-get to install them "
              "(scripts/install-deps.sh installs them)");
  // An operator's forkpool is never replaced or purged by a test.
  for (const auto& p : kPackages) {
    const auto state = package_state(p);
    if (!state.empty() && state != "not-installed")
      skip_test("the package " + p + " is in this system already (" + state +
                "): this test installs and purges its own build, it does not touch yours. "
                "(Left by an interrupted run of this test? sudo dpkg -P " + p + ")");
  }
  for (const char* path : {"/etc/forkpool", "/usr/bin/forkpool", "/usr/bin/forkpoolctl"})
    if (fs::exists(path))
      skip_test(std::string(path) + " exists (a forkpool installed by hand?): the test would install over it");

  // --- build, lintian: scripts/build-deb.sh into a folder of our own -------------------
  TempDir dist;
  const auto built = run({"/usr/bin/env", "DIST_DIR=" + dist.path().string(), "JOBS=2",
                          FORKPOOL_SOURCE_DIR "/scripts/build-deb.sh"},
                         780s);
  INFO(tail(built));
  REQUIRE(built.exit_code == 0);
  CHECK_THAT(built.out, Catch::Contains("build-deb: lintian"));
  std::vector<fs::path> debs;
  for (const auto& p : kPackages) {
    const auto matches = [&] {
      std::vector<fs::path> found;
      for (const auto& e : fs::directory_iterator(dist.path()))
        if (e.path().filename().string().rfind(p + "_", 0) == 0 && e.path().extension() == ".deb") found.push_back(e.path());
      return found;
    }();
    INFO(p);
    REQUIRE(matches.size() == 1);
    debs.push_back(matches[0]);
  }
  // dh_installsystemd --no-enable --no-start: the postinst starts nothing (policy-rc.d
  // below is the second line of defence), and enables a unit only when it was enabled
  // before an upgrade ("was-enabled"; checked after the install below).
  const auto postinst = run({"/usr/bin/dpkg-deb", "-I", debs[0].string(), "postinst"}, 30s);
  INFO(postinst.describe());
  REQUIRE(postinst.exit_code == 0);
  CHECK_THAT(postinst.out, !Catch::Contains("deb-systemd-invoke") && !Catch::Contains("invoke-rc.d") &&
                               !Catch::Contains("systemctl"));

  // Every path the packages create, and which of them exist before the install.
  std::vector<fs::path> shipped;
  for (const auto& deb : debs) {
    const auto paths = deb_paths(deb);
    shipped.insert(shipped.end(), paths.begin(), paths.end());
  }
  REQUIRE(shipped.size() > 30);

  // --- install -------------------------------------------------------------------------
  SystemGuard guard;
  guard.lock_fd = ::open(kLockFile, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  REQUIRE(guard.lock_fd >= 0);
  REQUIRE(wait_until([&] { return ::flock(guard.lock_fd, LOCK_EX | LOCK_NB) == 0; }, 300s));
  for (const auto& p : kPackages) {
    const auto state = package_state(p);
    INFO("another run installed " << p << " meanwhile");
    REQUIRE((state.empty() || state == "not-installed"));
  }
  std::set<fs::path> existed_before;
  for (const auto& path : shipped)
    if (fs::exists(fs::symlink_status(path))) existed_before.insert(path);
  const bool run_forkpool_existed = fs::exists("/run/forkpool");
  // No service may start during the install (policy-rc.d; a machine's own one is kept).
  if (!fs::exists(kPolicyRcd)) {
    write_file(kPolicyRcd, "#!/bin/sh\n# forkpool's deb test: no service starts during its dpkg -i\nexit 101\n", 0755);
    guard.wrote_policy = true;
  }
  guard.installed = true;
  std::vector<std::string> install = {"/usr/bin/env", "DEBIAN_FRONTEND=noninteractive", "/usr/bin/dpkg", "-i"};
  for (const auto& deb : debs) install.push_back(deb.string());
  const auto installed = run(install, 300s);
  INFO(installed.describe());
  REQUIRE(installed.exit_code == 0);
  for (const auto& p : kPackages) CHECK(package_state(p) == "installed");
  CHECK_FALSE(any_process_runs("/usr/bin/forkpool"));
  for (const char* unit : {"forkpool.service", "forkpool.socket"}) {
    INFO(unit << " was enabled by the install");
    CHECK_FALSE(fs::exists(fs::symlink_status(fs::path("/etc/systemd/system/multi-user.target.wants") / unit)));
    CHECK_FALSE(fs::exists(fs::symlink_status(fs::path("/etc/systemd/system/sockets.target.wants") / unit)));
  }

  // --- the installed files work ---------------------------------------------------------
  const auto check = run({"/usr/bin/forkpool", "--check", "-c", "/etc/forkpool/forkpool.toml"}, 30s);
  INFO(check.describe());
  CHECK(check.exit_code == 0);

  for (const auto& [section, page] : std::vector<std::pair<std::string, std::string>>{
           {"8", "forkpool"}, {"8", "forkpoolctl"}, {"5", "forkpool.toml"}, {"7", "forkpool-protocol"}}) {
    const auto man = run({"/usr/bin/man", "-w", section, page}, 30s);
    INFO(man.describe());
    CHECK(man.exit_code == 0);
    CHECK(man.out == "/usr/share/man/man" + section + "/" + page + "." + section + ".gz\n");
  }

  const auto verify = run({"/usr/bin/systemd-analyze", "verify", "/lib/systemd/system/forkpool.service",
                           "/lib/systemd/system/forkpool.socket", "/lib/systemd/system/forkpool@example.service"},
                          60s);
  INFO(verify.describe());
  CHECK(verify.exit_code == 0);
  CHECK(verify.err.find("forkpool") == std::string::npos);

  const auto completion = run({"/bin/bash", "--norc", "--noprofile", "-c",
                               ". /usr/share/bash-completion/completions/forkpoolctl && complete -p forkpoolctl"},
                              30s);
  INFO(completion.describe());
  CHECK(completion.exit_code == 0);
  CHECK(completion.out == "complete -F _forkpoolctl forkpoolctl\n");
  // zsh (scripts/install-deps.sh installs it) finds the completion in its default $fpath.
  if (fs::exists("/usr/bin/zsh")) {
    TempDir home;
    const auto zsh = run({"/usr/bin/env", "HOME=" + home.path().string(), "/usr/bin/zsh", "-f", "-c",
                          "autoload -Uz compinit && compinit -u -D && print -r -- $_comps[forkpoolctl]"},
                         30s);
    INFO(zsh.describe());
    CHECK(zsh.exit_code == 0);
    CHECK(zsh.out == "_forkpoolctl\n");
  }

  // --- the example pool, from the installed programs and library ---------------------
  {
    TempDir dir;
    fs::permissions(dir.path(), fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                                    fs::perms::others_read | fs::perms::others_exec);
    // The packaged config, on a free port and with its control socket here.
    std::string config = read_text("/etc/forkpool/forkpool.toml");
    for (const auto& [from, to] : std::vector<std::pair<std::string, std::string>>{
             {"tcp://127.0.0.1:8080", "tcp://127.0.0.1:0"},
             {"/run/forkpool/forkpool.sock", (dir / "ctl.sock").string()},
             {"\"conf.d/*.toml\"", "\"/etc/forkpool/conf.d/*.toml\""}}) {
      const auto at = config.find(from);
      INFO("the packaged config has no " << from);
      REQUIRE(at != std::string::npos);
      config.replace(at, from.size(), to);
    }
    CHECK_THAT(config, Catch::Contains("command = [\"/usr/bin/forkpool-hello\"]"));
    write_file(dir / "forkpool.toml", config);

    MasterProcess master(dir / "forkpool.toml", {}, {}, "/usr/bin/forkpool");
    const auto address = master.wait_listen_address("hello");
    INFO(master.log());
    REQUIRE_FALSE(address.empty());
    const pid_t worker = master.wait_worker_started("hello", 0);
    REQUIRE(worker > 0);
    const auto response = http_get(address, "/");
    REQUIRE(response);
    CHECK(response->status == 200);
    CHECK_THAT(response->body, Catch::Contains("Hello"));
    // The worker is the installed forkpool-hello on the installed library, as nobody.
    CHECK(fs::read_symlink("/proc/" + std::to_string(worker) + "/exe") == "/usr/bin/forkpool-hello");
    CHECK(std::regex_search(read_text("/proc/" + std::to_string(worker) + "/maps"),
                            std::regex(R"( /usr/lib/[^/ ]+/libforkpool-worker\.so\.1)")));
    CHECK(std::regex_search(read_text("/proc/" + std::to_string(worker) + "/status"), std::regex(R"(\nUid:\s+65534\s)")));

    const auto status = run({"/usr/bin/forkpoolctl", "-c", (dir / "forkpool.toml").string(), "status"}, 30s);
    INFO(status.describe());
    CHECK(status.exit_code == 0);
    CHECK_THAT(status.out, Catch::Contains("hello"));

    master.signal(SIGTERM);
    const auto exited = master.wait_exit(30s);
    REQUIRE(exited);
    CHECK(WIFEXITED(*exited));
    CHECK(WEXITSTATUS(*exited) == 0);
  }

  // --- purge: nothing is left ------------------------------------------------------------
  std::vector<std::string> purge = {"/usr/bin/dpkg", "--purge"};
  purge.insert(purge.end(), kPackages.begin(), kPackages.end());
  const auto purged = run(purge);
  INFO(purged.describe());
  REQUIRE(purged.exit_code == 0);
  guard.installed = false;
  for (const auto& p : kPackages) {
    CHECK(package_state(p) != "installed");
    CHECK(package_state(p) != "config-files");
    const auto listed = run({"/usr/bin/dpkg", "-L", p}, 30s);
    CHECK(listed.exit_code != 0);
  }
  for (const auto& path : shipped)
    if (existed_before.count(path) == 0) {
      INFO(path << " is left after dpkg -P");
      CHECK_FALSE(fs::exists(fs::symlink_status(path)));
    }
  CHECK_FALSE(fs::exists("/etc/forkpool"));
  CHECK_FALSE(fs::exists("/var/log/forkpool"));
  if (!run_forkpool_existed) CHECK_FALSE(fs::exists("/run/forkpool"));
}
