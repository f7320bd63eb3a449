// SPDX-License-Identifier: Apache-2.0
#include "support/master_process.hpp"

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <exception>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "support/wait_until.hpp"

extern char** environ;

namespace forkpool::test {

std::filesystem::path forkpool_binary() { return std::filesystem::path(FORKPOOL_BINARY_DIR) / "supervisor/forkpool"; }
std::filesystem::path hello_binary() { return std::filesystem::path(FORKPOOL_BINARY_DIR) / "worker/hello/forkpool-hello"; }
std::filesystem::path testworker_binary() {
  return std::filesystem::path(FORKPOOL_BINARY_DIR) / "tests/helpers/fp-testworker";
}

MasterProcess::MasterProcess(const std::filesystem::path& config, std::vector<std::string> prefix,
                             std::vector<std::string> extra_env, std::filesystem::path binary) {
  log_path_ = config.parent_path() / "forkpool.log";
  std::vector<std::string> args = std::move(prefix);
  args.push_back(binary.empty() ? forkpool_binary().string() : binary.string());
  args.push_back("-c");
  args.push_back(config.string());
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<std::string> env_storage;
  for (char** e = environ; *e != nullptr; ++e) env_storage.emplace_back(*e);
  for (auto& e : extra_env) env_storage.push_back(e);
  std::vector<char*> envp;
  for (auto& e : env_storage) envp.push_back(e.data());
  envp.push_back(nullptr);
  const int log_fd = ::open(log_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (log_fd < 0) throw std::runtime_error("cannot create " + log_path_.string());
  pid_ = ::fork();
  if (pid_ == 0) {
    ::dup2(log_fd, 1);
    ::dup2(log_fd, 2);
    // Nothing else of the test process (or of whatever started it: a shell, a CI runner)
    // reaches the master: it counts its open descriptors against RLIMIT_NOFILE, and the
    // descriptor tests run it at a limit of 64.
    ::close_range(3, ~0U, 0);
    ::execvpe(argv[0], argv.data(), envp.data());
    ::_exit(127);
  }
  ::close(log_fd);
  if (pid_ < 0) throw std::runtime_error("fork failed");
}

MasterProcess::~MasterProcess() {
  if (!exited_ && pid_ > 0) {
    // A fast stop (SIGQUIT: workers SIGKILLed, exit 0) rather than SIGKILL, so that the
    // master exits through its own code: under the sanitizers that is when leaks are
    // reported. SIGKILL only if it does not manage.
    ::kill(pid_, SIGQUIT);
    if (!wait_exit(std::chrono::seconds(10))) {
      ::kill(pid_, SIGKILL);
      int status;
      ::waitpid(pid_, &status, 0);
    }
  }
  // Whatever the test checked, a sanitizer report in the master's log fails it.
  const std::string text = log();
  for (const char* marker : {"ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"}) {
    if (text.find(marker) == std::string::npos) continue;
    const std::string report = text.substr(text.find(marker), 4000);
    if (std::uncaught_exceptions() == 0) FAIL_CHECK("sanitizer report in the master's log:\n" << report);
    else std::fprintf(stderr, "sanitizer report in the master's log:\n%s\n", report.c_str());
  }
}

std::string MasterProcess::log() const {
  std::ifstream in(log_path_);
  std::stringstream ss;
  ss << in.rdbuf();
  cached_ = ss.str();
  return cached_;
}

void MasterProcess::signal(int signo) const { ::kill(pid_, signo); }

std::smatch MasterProcess::wait_log(const std::string& pattern, std::chrono::milliseconds deadline) {
  const std::regex re(pattern);
  std::smatch match;
  if (!wait_until([&] { log(); return std::regex_search(cached_, match, re); }, deadline)) return std::smatch();
  // The match points into the text it was found in: keep that text for the master's
  // lifetime, since the next read replaces cached_ (a caller may hold several matches).
  matched_texts_.push_back(cached_);
  std::regex_search(matched_texts_.back(), match, re);
  return match;
}

std::vector<std::string> MasterProcess::all_matches(const std::string& pattern) const {
  const std::regex re(pattern);
  const std::string text = log();
  std::vector<std::string> out;
  for (auto it = std::sregex_iterator(text.begin(), text.end(), re); it != std::sregex_iterator(); ++it)
    out.push_back(it->size() > 1 ? (*it)[1].str() : (*it)[0].str());
  return out;
}

std::optional<int> MasterProcess::wait_exit(std::chrono::milliseconds deadline) {
  int status = 0;
  const bool done = wait_until([&] { return ::waitpid(pid_, &status, WNOHANG) == pid_; }, deadline);
  if (!done) return std::nullopt;
  exited_ = true;
  return status;
}

std::string MasterProcess::wait_listen_address(const std::string& pool) {
  auto m = wait_log("pool " + pool + " listens on tcp://([^ \\n]+)");
  return m.size() > 1 ? m[1].str() : "";
}

pid_t MasterProcess::wait_worker_started(const std::string& pool, unsigned worker) {
  const std::string pattern = "worker " + pool + "\\[" + std::to_string(worker) + "\\] pid ([0-9]+) started";
  wait_log(pattern);
  auto all = all_matches(pattern);
  return all.empty() ? -1 : std::stoi(all.back());
}

pid_t MasterProcess::wait_worker_started_after(const std::string& pool, unsigned worker, pid_t old_pid) {
  const std::string pattern = "worker " + pool + "\\[" + std::to_string(worker) + "\\] pid ([0-9]+) started";
  pid_t found = -1;
  wait_until([&] {
    auto all = all_matches(pattern);
    if (!all.empty() && std::stoi(all.back()) != old_pid) found = std::stoi(all.back());
    return found > 0;
  });
  return found;
}

namespace {

// Parent pid from /proc/PID/stat (0 when the process is gone). The command name may hold
// spaces and parentheses, so fields are counted from the last ')'.
pid_t parent_of(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  std::getline(in, line);
  const auto close = line.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream rest(line.substr(close + 1));
  std::string state;
  pid_t ppid = 0;
  rest >> state >> ppid;
  return ppid;
}

}  // namespace

std::vector<pid_t> children_of(pid_t parent) {
  std::vector<pid_t> out;
  for (const auto& e : std::filesystem::directory_iterator("/proc")) {
    const std::string name = e.path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    const pid_t pid = static_cast<pid_t>(std::stol(name));
    if (parent_of(pid) == parent && process_alive(pid)) out.push_back(pid);
  }
  return out;
}

std::vector<pid_t> descendants_of(pid_t root) {
  std::vector<pid_t> out;
  std::vector<pid_t> frontier{root};
  while (!frontier.empty()) {
    std::vector<pid_t> next;
    for (pid_t p : frontier)
      for (pid_t child : children_of(p)) next.push_back(child);
    out.insert(out.end(), next.begin(), next.end());
    frontier = std::move(next);
  }
  return out;
}

pid_t only_child_of(pid_t parent) {
  const std::vector<pid_t> children = children_of(parent);
  return children.size() == 1 ? children.front() : -1;
}

bool process_alive(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  if (!in) return false;
  std::string line;
  std::getline(in, line);
  const auto close = line.rfind(')');
  return close != std::string::npos && close + 2 < line.size() && line[close + 2] != 'Z' && line[close + 2] != 'X';
}

std::vector<std::pair<std::string, std::string>> read_report(const std::filesystem::path& file) {
  std::vector<std::pair<std::string, std::string>> out;
  std::ifstream in(file);
  std::string line;
  while (std::getline(in, line)) {
    const auto eq = line.find('=');
    if (eq != std::string::npos) out.emplace_back(line.substr(0, eq), line.substr(eq + 1));
  }
  return out;
}

std::optional<std::string> report_value(const std::filesystem::path& file, const std::string& key) {
  for (auto& [k, v] : read_report(file))
    if (k == key) return v;
  return std::nullopt;
}

void write_file(const std::filesystem::path& path, const std::string& text, int mode) {
  std::ofstream(path) << text;
  ::chmod(path.c_str(), static_cast<mode_t>(mode));
}

int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

}  // namespace forkpool::test
