// SPDX-License-Identifier: Apache-2.0
#pragma once
// What the binary-upgrade tests share: a master started from a copy of the built binary in
// its own folder, so a test can replace that file (and /proc/PID/exe then names the new
// one), break it or put a script in its place.

#include <sys/stat.h>

#include "reload_support.hpp"
#include "shm/version.hpp"

namespace forkpool::test::upgrade_support {

using namespace forkpool::test;
using namespace forkpool::test::reload_support;

// What a forkpool 9.0.0 says to --upgrade-info, as a shell-quoted JSON line.
inline std::string info_line(const std::string& formats, const std::string& layout = forkpool::shm::layout_version_string()) {
  return "'{\"version\":\"9.0.0\",\"state_formats\":[" + formats + "],\"scoreboard_layout\":\"" + layout + "\"}'";
}

// The master, started from `bin/forkpool` in its own folder.
struct UpgradeMaster {
  TempDir dir;
  std::unique_ptr<MasterProcess> process;

  explicit UpgradeMaster(const std::string& config, std::vector<std::string> prefix = {},
                         std::vector<std::string> env = {}) {
    std::filesystem::create_directory(dir / "bin");
    std::filesystem::copy_file(forkpool_binary(), binary());
    replace_file(config_path(), config);
    process =
        std::make_unique<MasterProcess>(config_path(), std::move(prefix), std::move(env), binary());
  }
  std::filesystem::path binary() const { return dir / "bin" / "forkpool"; }
  std::filesystem::path config_path() const { return dir / "f.toml"; }
  std::filesystem::path socket() const { return dir / "ctl.sock"; }
  ControlClient client() const { return ControlClient(socket(), 10s); }
  bool ready() { return !process->wait_log("\\[master.ready\\]", 30s).empty(); }

  // A new build in the binary's place (another copy: a new inode, as a package manager
  // installs it), or a script, or nothing.
  void install_new_build() const {
    std::filesystem::copy_file(forkpool_binary(), dir / "bin" / "forkpool.new");
    std::filesystem::rename(dir / "bin" / "forkpool.new", binary());
  }
  void install_script(const std::string& text) const {
    write_file(dir / "bin" / "forkpool.new", text, 0755);
    std::filesystem::rename(dir / "bin" / "forkpool.new", binary());
  }

  RunResult ctl(const std::vector<std::string>& args) const {
    std::vector<std::string> argv = {ctl_binary(), "-s", socket().string(), "--timeout", "60"};
    argv.insert(argv.end(), args.begin(), args.end());
    return run_command(argv, 90s);
  }
  // The master's `status`, on a new connection each time (an upgrade closes the old one).
  json status() const {
    auto c = client();
    return c.connected() ? status_of(c) : json();
  }
  unsigned upgrades() const {
    const json s = status();
    return s.is_object() && s.contains("master") ? s["master"].value("upgrades", 0u) : 0u;
  }
  bool wait_upgrades(unsigned n) const {
    return wait_until([&] { return upgrades() >= n; }, 30s);
  }
};

inline std::string exe_of(pid_t pid) {
  std::error_code ec;
  return std::filesystem::read_symlink("/proc/" + std::to_string(pid) + "/exe", ec).string();
}

// /proc/PID/exe is the very file now at `path` (same inode), not the one it replaced.
inline bool runs_file(pid_t pid, const std::filesystem::path& path) {
  struct stat running {
  }, installed{};
  return ::stat(("/proc/" + std::to_string(pid) + "/exe").c_str(), &running) == 0 &&
         ::stat(path.c_str(), &installed) == 0 && running.st_ino == installed.st_ino &&
         running.st_dev == installed.st_dev && exe_of(pid) == path.string();
}

}  // namespace forkpool::test::upgrade_support
