// SPDX-License-Identifier: Apache-2.0
#include "supervisor/upgrade/preflight.hpp"

#include <fcntl.h>
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

constexpr std::size_t kMaxOutput = 64 * 1024;

// Starts argv with stdin from /dev/null and its output (stdout and stderr) in a pipe
// whose non-blocking read end is returned; the child starts with every signal at its
// default and none blocked (the master blocks the ones it reads from its signalfd).
pid_t spawn_probe(const std::vector<std::string>& args, base::OwnedFd& read_end) {
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC | O_NONBLOCK) != 0)
    throw UpgradeRefused(std::string("pipe2: ") + std::strerror(errno));
  base::OwnedFd reader(pipe_fds[0]), write_end(pipe_fds[1]);
  // The child's end blocks, as a program expects of its stdout.
  const int flags = ::fcntl(write_end.get(), F_GETFL);
  if (flags >= 0) ::fcntl(write_end.get(), F_SETFL, flags & ~O_NONBLOCK);
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
  // A group of its own: a run killed at its deadline takes what it started with it.
  posix_spawnattr_setpgroup(&attr, 0);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETPGROUP);
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid = -1;
  const int rc = ::posix_spawn(&pid, argv[0], &actions, &attr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) throw UpgradeRefused(args[0] + " cannot be run: " + std::strerror(rc));
  read_end = std::move(reader);
  return pid;
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

std::string joined(const std::vector<std::string>& args) {
  std::string what = args[0];
  for (std::size_t i = 1; i < args.size(); ++i) what += " " + args[i];
  return what;
}

void require_success(const std::vector<std::string>& args, const ProbeResult& r) {
  if (WIFEXITED(r.wait_status) && WEXITSTATUS(r.wait_status) == 0) return;
  std::string out = joined(args) + " " + describe_wait_status(r.wait_status);
  // A count line ("f.toml: 1 error") says less than the error itself, which comes first.
  std::string detail = r.output;
  while (!detail.empty() && (detail.back() == '\n')) detail.pop_back();
  const auto first_nl = detail.find('\n');
  const std::string first = first_nl == std::string::npos ? detail : detail.substr(0, first_nl);
  if (!first.empty()) out += ": " + (first.size() > 300 ? first.substr(0, 300) + "..." : first);
  throw UpgradeRefused(out);
}

std::string binary_to_check(const std::string& resolved) {
  std::string path = resolved.empty() ? std::string("/proc/self/exe") : resolved;
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0)
    throw UpgradeRefused("new binary " + path + ": " + std::strerror(errno));
  if (!S_ISREG(st.st_mode) || ::access(path.c_str(), X_OK) != 0)
    throw UpgradeRefused("new binary " + path + " is not an executable file");
  return path;
}

NewBinary read_upgrade_info(const std::string& binary, const ProbeResult& r) {
  require_success({binary, "--upgrade-info"}, r);
  NewBinary b;
  b.path = binary;
  const nlohmann::json j = nlohmann::json::parse(last_line(r.output), nullptr, false);
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
  return b;
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

Preflight::Preflight(uv_loop_t* loop, const std::string& resolved, std::filesystem::path config_file,
                     Done done)
    : loop_(loop),
      binary_(binary_to_check(resolved)),
      config_file_(std::move(config_file)),
      done_(std::move(done)),
      deadline_(loop) {
  start({binary_, "--upgrade-info"});
}

Preflight::~Preflight() {
  // Not reaped yet, so the pid (and its group) is still ours.
  if (pid_ > 0) ::kill(-pid_, SIGKILL);
}

void Preflight::start(std::vector<std::string> args) {
  output_watch_.reset();
  pid_ = spawn_probe(args, output_);
  args_ = std::move(args);
  killed_ = false;
  result_ = {};
  output_watch_ = std::make_unique<FdWatch>(loop_, output_.get());
  output_watch_->start(UV_READABLE | UV_DISCONNECT, [this](int, int) { drain(); });
  deadline_.start(kProbeTimeout, [this] { timed_out(); });
}

void Preflight::drain() {
  if (!output_) return;
  char buf[4096];
  while (true) {
    const ssize_t got = ::read(output_.get(), buf, sizeof buf);
    if (got < 0 && errno == EINTR) continue;
    if (got > 0) {
      if (result_.output.size() < kMaxOutput) result_.output.append(buf, static_cast<std::size_t>(got));
      continue;
    }
    if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    // End of file (every writer gone) or an error: nothing more to read.
    output_watch_.reset();
    output_.reset();
    return;
  }
}

void Preflight::timed_out() {
  if (pid_ <= 0) return;
  // The refusal follows when the master reaps it, which a SIGKILL makes prompt.
  killed_ = true;
  ::kill(-pid_, SIGKILL);
}

void Preflight::exited(int wait_status) {
  pid_ = -1;
  deadline_.stop();
  result_.wait_status = wait_status;
  // What it printed before it exited is in the pipe. A process it left behind may still
  // hold the pipe open: it is not waited for.
  drain();
  output_watch_.reset();
  output_.reset();
  try {
    if (killed_)
      throw UpgradeRefused(joined(args_) + " did not finish within " +
                           std::to_string(kProbeTimeout.count()) + " s");
    if (step_ == Step::Info) {
      info_ = read_upgrade_info(binary_, result_);
      step_ = Step::Check;
      start({binary_, "--check", "-c", config_file_.string()});
      return;
    }
    require_success(args_, result_);
    finish(info_);
  } catch (const UpgradeRefused& e) {
    finish(e);
  }
}

void Preflight::finish(Outcome outcome) {
  step_ = Step::Done;
  auto done = std::move(done_);
  done_ = nullptr;
  if (done) done(std::move(outcome));  // may destroy this
}

}  // namespace forkpool::supervisor::upgrade
