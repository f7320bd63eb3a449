// SPDX-License-Identifier: Apache-2.0
#include "supervisor/process/descendants.hpp"

#include <dirent.h>
#include <unistd.h>

#include <charconv>
#include <cstdlib>
#include <string>

#include "base/proc_text.hpp"

namespace forkpool::supervisor {

namespace {

bool proc_is_ours();

// Calls f(pid, ppid) for every process in /proc.
template <typename F>
void for_each_process(F&& f) {
  if (!proc_is_ours()) return;
  DIR* proc = ::opendir("/proc");
  if (proc == nullptr) return;
  while (const dirent* e = ::readdir(proc)) {
    char* end = nullptr;
    const long pid = std::strtol(e->d_name, &end, 10);
    if (pid <= 0 || *end != '\0') continue;
    const auto line = base::read_proc_text("/proc/" + std::string(e->d_name) + "/stat", 1024);
    if (!line) continue;
    const auto fields = base::stat_fields(*line);
    long ppid = 0;
    if (fields.size() >= 2 && std::from_chars(fields[1].data(), fields[1].data() + fields[1].size(), ppid).ec == std::errc())
      f(static_cast<pid_t>(pid), static_cast<pid_t>(ppid));
  }
  ::closedir(proc);
}

// The pid in the first field of a /proc/PID/stat line.
long stat_pid(const std::string& path) {
  const auto line = base::read_proc_text(path, 1024);
  long pid = 0;
  if (line) std::from_chars(line->data(), line->data() + line->size(), pid);
  return pid;
}

bool proc_is_ours() {
  // A /proc of another PID namespace (unshare --pid without --mount-proc) numbers every
  // process differently from kill(2): reading it would name strangers.
  return stat_pid("/proc/self/stat") == ::getpid();
}

}  // namespace

std::vector<pid_t> children_of(pid_t parent) {
  std::vector<pid_t> out;
  for_each_process([&](pid_t pid, pid_t ppid) {
    if (ppid == parent && pid != parent) out.push_back(pid);
  });
  return out;
}

ProcessTable ProcessTable::read() {
  ProcessTable t;
  for_each_process([&](pid_t pid, pid_t ppid) {
    if (pid != ppid) t.children_.emplace(ppid, pid);
  });
  return t;
}

std::vector<pid_t> ProcessTable::descendants(pid_t root) const {
  std::vector<pid_t> out;
  std::vector<pid_t> todo{root};
  // /proc is read without a lock, so a pid reused between two reads could make a cycle:
  // the walk is bounded by the number of processes read.
  while (!todo.empty() && out.size() <= children_.size()) {
    const pid_t p = todo.back();
    todo.pop_back();
    const auto [first, last] = children_.equal_range(p);
    for (auto it = first; it != last; ++it) {
      if (it->second == root) continue;
      out.push_back(it->second);
      todo.push_back(it->second);
    }
  }
  return out;
}

std::optional<shm::ProcStats> tree_stats(pid_t root, const ProcessTable& table) {
  auto stats = shm::read_proc_stats(root);
  if (!stats) return stats;
  for (const pid_t p : table.descendants(root))
    if (const auto s = shm::read_proc_stats(p)) stats->rss_bytes += s->rss_bytes;
  return stats;
}

}  // namespace forkpool::supervisor
