// SPDX-License-Identifier: Apache-2.0
#include "supervisor/upgrade/preflight.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>
#include <vector>

#include "base/owned_fd.hpp"
#include "supervisor/process/exit_status.hpp"
#include "shm/version.hpp"
#include "supervisor/upgrade/state_format.hpp"

extern char** environ;

namespace forkpool::supervisor::upgrade {
namespace {

struct ProbeResult {
  int wait_status = 0;
  std::string output;  // stdout and stderr together
};

// Runs argv with stdin from /dev/null and its output in a pipe, for at most
// kProbeTimeout. The loop waits meanwhile: a --check takes milliseconds, and the kernel's
// backlog holds new connections.
ProbeResult probe(const std::vector<std::string>& args) {
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0)
    throw UpgradeRefused(std::string("pipe2: ") + std::strerror(errno));
  base::OwnedFd read_end(pipe_fds[0]), write_end(pipe_fds[1]);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, write_end.get(), 1);
  posix_spawn_file_actions_adddup2(&actions, write_end.get(), 2);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t all, none;
  sigfillset(&all);
  sigemptyset(&none);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid = -1;
  const int rc = ::posix_spawn(&pid, argv[0], &actions, &attr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) throw UpgradeRefused(args[0] + " cannot be run: " + std::strerror(rc));
  write_end.reset();

  ProbeResult r;
  const auto deadline = std::chrono::steady_clock::now() + kProbeTimeout;
  bool timed_out = false;
  char buf[4096];
  while (true) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    pollfd p{read_end.get(), POLLIN, 0};
    const int n = ::poll(&p, 1, static_cast<int>(left.count()));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) continue;
    const ssize_t got = ::read(read_end.get(), buf, sizeof buf);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) break;
    if (r.output.size() < 64 * 1024) r.output.append(buf, static_cast<std::size_t>(got));
  }
  if (timed_out) ::kill(pid, SIGKILL);
  while (::waitpid(pid, &r.wait_status, 0) < 0 && errno == EINTR) {
  }
  if (timed_out)
    throw UpgradeRefused(args[0] + " " + args[1] + " did not finish within " +
                         std::to_string(kProbeTimeout.count()) + " s");
  return r;
}

// The last non-empty line of a program's output, for a refusal message.
std::string last_line(const std::string& text) {
  std::string t = text;
  while (!t.empty() && (t.back() == '\n' || t.back() == '\r')) t.pop_back();
  const auto nl = t.rfind('\n');
  std::string line = nl == std::string::npos ? t : t.substr(nl + 1);
  if (line.size() > 300) line = line.substr(0, 300) + "...";
  return line;
}

std::string failure(const std::vector<std::string>& args, const ProbeResult& r) {
  std::string what = args[0];
  for (std::size_t i = 1; i < args.size(); ++i) what += " " + args[i];
  std::string out = what + " " + describe_wait_status(r.wait_status);
  // A count line ("f.toml: 1 error") says less than the error itself, which comes first.
  std::string detail = r.output;
  while (!detail.empty() && (detail.back() == '\n')) detail.pop_back();
  const auto first_nl = detail.find('\n');
  const std::string first = first_nl == std::string::npos ? detail : detail.substr(0, first_nl);
  if (!first.empty()) out += ": " + (first.size() > 300 ? first.substr(0, 300) + "..." : first);
  return out;
}

}  // namespace

std::string own_binary_path() {
  char buf[4096];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return {};
  std::string path(buf, static_cast<std::size_t>(n));
  // A file replaced or removed since it was started: its old name is no program.
  if (path.ends_with(" (deleted)")) return {};
  return path;
}

NewBinary preflight(const std::string& resolved, const std::filesystem::path& config_file) {
  NewBinary b;
  b.path = resolved.empty() ? std::string("/proc/self/exe") : resolved;
  struct stat st {};
  if (::stat(b.path.c_str(), &st) != 0)
    throw UpgradeRefused("new binary " + b.path + ": " + std::strerror(errno));
  if (!S_ISREG(st.st_mode) || ::access(b.path.c_str(), X_OK) != 0)
    throw UpgradeRefused("new binary " + b.path + " is not an executable file");

  const std::vector<std::string> info_args{b.path, "--upgrade-info"};
  const ProbeResult info = probe(info_args);
  if (!WIFEXITED(info.wait_status) || WEXITSTATUS(info.wait_status) != 0)
    throw UpgradeRefused(failure(info_args, info));
  const nlohmann::json j = nlohmann::json::parse(last_line(info.output), nullptr, false);
  if (!j.is_object() || !j.contains("version") || !j["version"].is_string() ||
      !j.contains("state_formats") || !j["state_formats"].is_array())
    throw UpgradeRefused(
        b.path +
        " --upgrade-info did not describe itself (not a forkpool that can be upgraded to)");
  b.version = j["version"].get<std::string>();
  const auto& formats = j["state_formats"];
  if (std::none_of(formats.begin(), formats.end(),
                   [](const nlohmann::json& f) { return f == kStateFormat; }))
    throw UpgradeRefused("forkpool " + b.version + " at " + b.path +
                         " does not read state format " + std::to_string(kStateFormat) +
                         " (it reads " + formats.dump() + ")");
  // The new image adopts the scoreboard memory as it is: it must read the same layout.
  const std::string layout = shm::layout_version_string();
  const auto theirs = j.find("scoreboard_layout");
  if (theirs == j.end() || !theirs->is_string())
    throw UpgradeRefused("forkpool " + b.version + " at " + b.path +
                         " does not say which scoreboard layout it uses (this master's is " + layout +
                         "): restart instead of upgrading");
  if (theirs->get<std::string>() != layout)
    throw UpgradeRefused("forkpool " + b.version + " at " + b.path + " uses scoreboard layout " +
                         theirs->get<std::string>() + ", this master " + layout +
                         ": restart instead of upgrading");

  const std::vector<std::string> check_args{b.path, "--check", "-c", config_file.string()};
  const ProbeResult check = probe(check_args);
  if (!WIFEXITED(check.wait_status) || WEXITSTATUS(check.wait_status) != 0)
    throw UpgradeRefused(failure(check_args, check));
  return b;
}

}  // namespace forkpool::supervisor::upgrade
