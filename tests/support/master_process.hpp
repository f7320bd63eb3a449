// SPDX-License-Identifier: Apache-2.0
#pragma once
// Runs the real `forkpool` binary for an integration test: stdout and stderr go to a log
// file in the test's folder; the process is killed and reaped when the test ends.

#include <sys/types.h>

#include <chrono>
#include <deque>
#include <filesystem>
#include <optional>
#include <regex>
#include <string>
#include <vector>

namespace forkpool::test {

std::filesystem::path forkpool_binary();
std::filesystem::path hello_binary();
std::filesystem::path testworker_binary();

class MasterProcess {
 public:
  // Starts `prefix... forkpool -c config` (prefix: e.g. {"unshare", "--pid", "--fork"});
  // `binary` instead of the built forkpool when given (a copy the test may replace).
  explicit MasterProcess(const std::filesystem::path& config, std::vector<std::string> prefix = {},
                         std::vector<std::string> extra_env = {}, std::filesystem::path binary = {});
  ~MasterProcess();
  MasterProcess(const MasterProcess&) = delete;
  MasterProcess& operator=(const MasterProcess&) = delete;

  pid_t pid() const { return pid_; }
  std::string log() const;
  void signal(int signo) const;

  // Waits until the log matches `pattern`; returns the first match's groups (empty = timeout).
  std::smatch wait_log(const std::string& pattern, std::chrono::milliseconds deadline = std::chrono::seconds(10));
  // Every match of `pattern` in the log so far, as the first capture group.
  std::vector<std::string> all_matches(const std::string& pattern) const;
  // Waits for the process to exit; returns its wait status.
  std::optional<int> wait_exit(std::chrono::milliseconds deadline = std::chrono::seconds(10));

  // Conveniences on the log's stable lines.
  std::string wait_listen_address(const std::string& pool);  // "127.0.0.1:41234"
  pid_t wait_worker_started(const std::string& pool, unsigned worker);  // newest pid of that slot
  pid_t wait_worker_started_after(const std::string& pool, unsigned worker, pid_t old_pid);

 private:
  std::filesystem::path log_path_;
  pid_t pid_ = -1;
  mutable std::string cached_;
  std::deque<std::string> matched_texts_;  // what returned matches point into (stable addresses)
  bool exited_ = false;
};

// True while `pid` exists and is not a zombie.
bool process_alive(pid_t pid);
// Live processes whose parent is `parent`, and all live processes below `root`
// (from /proc, in this process's pid numbers).
std::vector<pid_t> children_of(pid_t parent);
std::vector<pid_t> descendants_of(pid_t root);
// The only live child of `parent`; -1 when there is none or more than one.
pid_t only_child_of(pid_t parent);
// Reads key=value lines of a file written by fp-testworker --report.
std::vector<std::pair<std::string, std::string>> read_report(const std::filesystem::path& file);
std::optional<std::string> report_value(const std::filesystem::path& file, const std::string& key);
// Writes a file (and an executable script when `mode` is given).
void write_file(const std::filesystem::path& path, const std::string& text, int mode = 0644);
// A TCP port that was free a moment ago (for programs that cannot take port 0).
int free_port();

}  // namespace forkpool::test
