// SPDX-License-Identifier: Apache-2.0
#pragma once
// The master's descriptors as a budget: how many starting a worker takes, how many a
// running worker keeps, how many accepting must leave free, and whether RLIMIT_NOFILE can
// hold the configured pools at all.

#include <optional>
#include <string>

#include "config/config.hpp"

namespace forkpool::supervisor {

// Descriptors one worker start holds at its peak, in the master: its channel pair, the
// spawner's error pipe, a fresh scoreboard page, the notify socket, and an output
// pipe pair or file per captured stream.
int start_descriptors(const config::PoolConfig& pool);
// Descriptors a running worker keeps open in the master: its channel end and scoreboard
// page, its /proc/PID/stat once read (process/worker_usage.hpp), its notify socket and
// the read end of each captured stream.
int kept_descriptors(const config::PoolConfig& pool);

// Kept free whatever accepting wants, beyond a worker start: a control client and its
// reply, a metrics client, /proc reads, a log reopen, a user lookup.
inline constexpr int kServiceDescriptors = 8;

struct DescriptorBudget {
  int limit = 0;     // RLIMIT_NOFILE (soft) of the master
  int open = 0;      // descriptors open when it was measured
  int reserve = 0;   // kept free for worker starts and control: accepting stops short of it
  int needed = 0;    // what the configured pools need at least, reserve included
};

// The soft RLIMIT_NOFILE (INT32_MAX when unlimited or larger).
int descriptor_limit();
// Descriptors this process has open now.
int open_descriptors();
// Measures and sizes the budget for `config`: every worker and a rolling restart's
// replacements (a quarter of each pool), the reserve, and one connection per pool that
// the master accepts for.
DescriptorBudget descriptor_budget(const config::Config& config);
// Why the limit cannot hold the pools ("" if it can), for the start-up error.
std::string describe_shortfall(const DescriptorBudget& b);

}  // namespace forkpool::supervisor
