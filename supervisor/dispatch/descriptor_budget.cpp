// SPDX-License-Identifier: Apache-2.0
#include "supervisor/dispatch/descriptor_budget.hpp"

#include <dirent.h>
#include <sys/resource.h>

#include <algorithm>
#include <cstdint>

#include <fmt/format.h>

namespace forkpool::supervisor {
namespace {

bool uses_notify(const config::PoolConfig& p) {
  return p.ready == config::Readiness::Notify || p.watchdog.count() > 0;
}

// Descriptors one output stream takes while the worker starts, and while it runs.
int stream_at_start(const config::OutputTarget& t) {
  switch (t.kind) {
    case config::OutputTarget::Kind::Log: return 2;   // the pipe, until the child has its end
    case config::OutputTarget::Kind::File: return 1;  // opened for the child, closed after
    default: return 0;
  }
}
int stream_kept(const config::OutputTarget& t) { return t.kind == config::OutputTarget::Kind::Log ? 1 : 0; }

}  // namespace

int start_descriptors(const config::PoolConfig& pool) {
  // channel pair + error pipe + a fresh scoreboard page (made before the old one closes)
  return 2 + 2 + 1 + (uses_notify(pool) ? 1 : 0) + stream_at_start(pool.stdout_target) +
         stream_at_start(pool.stderr_target);
}

int kept_descriptors(const config::PoolConfig& pool) {
  // Channel end, scoreboard page, /proc/PID/statm (once status or the sampler read it).
  return 3 + (uses_notify(pool) ? 1 : 0) + stream_kept(pool.stdout_target) + stream_kept(pool.stderr_target);
}

int descriptor_limit() {
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= static_cast<rlim_t>(INT32_MAX)) return INT32_MAX;
  return static_cast<int>(rl.rlim_cur);
}

int open_descriptors() {
  DIR* d = ::opendir("/proc/self/fd");
  if (d == nullptr) return 0;
  int n = 0;
  while (const dirent* e = ::readdir(d))
    if (e->d_name[0] != '.') ++n;
  ::closedir(d);
  return n - 1;  // the directory's own descriptor
}

DescriptorBudget descriptor_budget(const config::Config& config) {
  DescriptorBudget b;
  b.limit = descriptor_limit();
  b.open = open_descriptors();
  int widest_start = 0;
  std::int64_t workers = 0;
  for (const auto& p : config.pools) {
    widest_start = std::max(widest_start, start_descriptors(p));
    const int size = std::max(p.workers, p.max_workers);
    // A rolling restart runs a quarter of the pool's replacements beside it.
    workers += static_cast<std::int64_t>(size + std::max(1, size / 4)) * kept_descriptors(p);
    if (p.dispatch == config::Dispatch::Master && !p.listen.empty()) ++workers;  // one accepted connection
  }
  b.reserve = widest_start + kServiceDescriptors;
  b.needed = static_cast<int>(std::min<std::int64_t>(INT32_MAX, b.open + workers + b.reserve));
  return b;
}

std::string describe_shortfall(const DescriptorBudget& b) {
  if (b.needed <= b.limit) return {};
  return fmt::format(
      "the descriptor limit (RLIMIT_NOFILE {}) cannot hold the configured pools: they need at least {} ({} open "
      "now, {} for the workers, their replacements and one connection per pool, {} kept free for starting "
      "workers and control); raise it (ulimit -n, systemd LimitNOFILE=) or run fewer workers",
      b.limit, b.needed, b.open, b.needed - b.open - b.reserve, b.reserve);
}


}  // namespace forkpool::supervisor
