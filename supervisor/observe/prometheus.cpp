// SPDX-License-Identifier: Apache-2.0
#include "supervisor/observe/prometheus.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <utility>
#include <vector>

#include "shm/histogram.hpp"
#include "shm/pool_state.hpp"
#include "shm/worker_state.hpp"

namespace forkpool::supervisor {
namespace {

using Label = std::pair<std::string_view, std::string_view>;

void append_escaped(std::string& out, std::string_view s, bool quotes) {
  for (const char c : s) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '"':
        out += quotes ? "\\\"" : "\"";
        break;
      default:
        out += c;
    }
  }
}

std::string number(std::uint64_t v) {
  return std::to_string(v);
}

std::string number(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[64];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);  // shortest exact round trip
  return std::string(buf, r.ptr);
}

// Whole microseconds as exact decimal seconds: 1 -> "0.000001", 4294967295 -> "4294.967295".
std::string seconds(std::uint64_t us) {
  std::string s = std::to_string(us / 1'000'000);
  if (const auto frac = us % 1'000'000; frac != 0) {
    std::string digits = std::to_string(frac);
    s += '.';
    s.append(6 - digits.size(), '0');
    s += digits;
    while (s.back() == '0') s.pop_back();
  }
  return s;
}

// Writes families one at a time; a family's # HELP / # TYPE lines appear with its first
// sample, so a family without samples (no pools, no workers) is left out entirely.
class Exposition {
 public:
  void family(std::string_view name, std::string_view type, std::string_view help) {
    pending_.clear();
    pending_ += "# HELP ";
    pending_ += name;
    pending_ += ' ';
    append_escaped(pending_, help, false);
    pending_ += "\n# TYPE ";
    pending_ += name;
    pending_ += ' ';
    pending_ += type;
    pending_ += '\n';
  }

  void sample(std::string_view name, std::initializer_list<Label> labels,
              const std::string& value) {
    out_ += pending_;
    pending_.clear();
    out_ += name;
    if (labels.size() != 0) {
      char sep = '{';
      for (const auto& [key, val] : labels) {
        out_ += sep;
        out_ += key;
        out_ += "=\"";
        append_escaped(out_, val, true);
        out_ += '"';
        sep = ',';
      }
      out_ += '}';
    }
    out_ += ' ';
    out_ += value;
    out_ += '\n';
  }

  std::string take() { return std::move(out_); }

 private:
  std::string out_;
  std::string pending_;
};

struct PoolMetric {
  std::string_view name;
  std::string_view type;
  std::string_view help;
  std::uint64_t PoolStatus::*field;
};

constexpr PoolMetric kPoolMetrics[] = {
    {"forkpool_connections_accepted_total", "counter",
     "Connections accepted on the pool's listeners.", &PoolStatus::accepted},
    {"forkpool_connections_dispatched_total", "counter",
     "Connections the master handed to a worker.", &PoolStatus::dispatched},
    {"forkpool_connections_completed_total", "counter", "Connections a worker reported done.",
     &PoolStatus::completed},
    {"forkpool_connections_lost_total", "counter",
     "Dispatched connections whose worker exited before reporting them done.", &PoolStatus::lost},
    {"forkpool_connections_closed_total", "counter",
     "Queued connections the master closed at shutdown.", &PoolStatus::closed},
    {"forkpool_queue_timeouts_total", "counter",
     "Connections closed because they waited in the master's queue too long.",
     &PoolStatus::queue_timeouts},
    {"forkpool_workers_spawned_total", "counter", "Worker processes started.",
     &PoolStatus::spawned},
    {"forkpool_workers_crashed_total", "counter",
     "Workers that exited abnormally (signal or non-zero status).", &PoolStatus::crashed},
    {"forkpool_workers_killed_total", "counter", "Workers killed by a timeout or the watchdog.",
     &PoolStatus::killed},
    {"forkpool_workers_recycled_total", "counter",
     "Workers replaced on purpose by a new process that was ready first: max_requests, max_memory, "
     "forkpoolctl restart, a reload that changed how workers start.",
     &PoolStatus::recycled},
    {"forkpool_spawn_failed_total", "counter",
     "Worker starts that never ran the program (exec or another set-up step failed); not crashes.",
     &PoolStatus::spawn_failed},
    {"forkpool_connections_parked_total", "counter",
     "Idle keep-alive connections workers handed back to the master (keepalive = \"master\").",
     &PoolStatus::parked},
    {"forkpool_connections_resumed_total", "counter",
     "Parked connections whose next request arrived, queued for a worker again.", &PoolStatus::resumed},
    {"forkpool_keepalive_timeouts_total", "counter",
     "Parked connections the master closed idle (keepalive_timeout, or max_parked reached).",
     &PoolStatus::keepalive_timeouts},
    {"forkpool_keepalive_closed_total", "counter", "Parked connections the client closed.",
     &PoolStatus::keepalive_closed},
    {"forkpool_parked_closed_total", "counter", "Parked connections the master closed at a stop or shutdown.",
     &PoolStatus::parked_closed},
    {"forkpool_protocol_errors_total", "counter",
     "Worker messages the master refused: malformed records, or a PARK that breaks the protocol's rules.",
     &PoolStatus::protocol_errors},
    {"forkpool_connections_parked", "gauge", "Keep-alive connections parked in the master now.",
     &PoolStatus::parked_now},
    {"forkpool_queue_length", "gauge", "Connections waiting in the master's queue now.",
     &PoolStatus::queue_length},
    {"forkpool_queue_peak", "gauge", "Most connections ever waiting in the master's queue at once.",
     &PoolStatus::queue_peak},
    {"forkpool_queue_limit", "gauge", "Capacity of the master's queue.", &PoolStatus::queue_limit},
    {"forkpool_connections_in_flight", "gauge",
     "Connections dispatched to workers and neither done nor lost.", &PoolStatus::in_flight},
};

struct WorkerMetric {
  std::string_view name;
  std::string_view type;
  std::string_view help;
  std::string (*value)(const WorkerStatus&);
};

constexpr WorkerMetric kWorkerMetrics[] = {
    {"forkpool_worker_connections_handled_total", "counter",
     "Connections the slot's current worker process finished (starts again from 0 with a new process).",
     [](const WorkerStatus& w) { return number(w.handled); }},
    {"forkpool_worker_in_flight", "gauge", "Connections this worker holds now.",
     [](const WorkerStatus& w) { return number(w.in_flight); }},
    {"forkpool_worker_rss_bytes", "gauge",
     "Resident set size of the worker process; in shared and plain pools the sum over its process tree.",
     [](const WorkerStatus& w) { return number(w.rss_bytes); }},
    {"forkpool_worker_cpu_seconds_total", "counter",
     "CPU time (user and system) the worker process used.",
     [](const WorkerStatus& w) { return number(w.cpu_s); }},
    {"forkpool_worker_restarts_total", "counter", "Processes started for this worker number after the first (restarts after an exit and "
     "replacements alike).",
     [](const WorkerStatus& w) { return number(w.restarts); }},
};

// One process per worker number of the pool: the serving one if there is one, else the
// first listed. Slots whose start failed have no process and are left out.
void slot_representatives(const PoolStatus& p, std::vector<const WorkerStatus*>& out) {
  out.clear();
  for (const auto& w : p.workers) {
    if (w.state == "failed") continue;
    auto same = std::find_if(out.begin(), out.end(), [&](const WorkerStatus* o) { return o->worker == w.worker; });
    if (same == out.end()) out.push_back(&w);
    else if (w.role == "serving" && (*same)->role != "serving") *same = &w;
  }
}

void histogram(Exposition& out, const StatusModel& model, std::string_view name,
               std::string_view help, shm::HistogramSnapshot PoolStatus::*field) {
  const std::string bucket = std::string(name) + "_bucket";
  const std::string sum = std::string(name) + "_sum";
  const std::string count = std::string(name) + "_count";
  out.family(name, "histogram", help);
  for (const auto& p : model.pools) {
    const auto& h = p.*field;
    // Counted from the buckets so that _count always equals the +Inf bucket, even for a
    // snapshot that was not taken under the pool's seqlock.
    std::uint64_t cumulative = 0;
    for (std::size_t k = 0; k < h.buckets.size(); ++k) {
      cumulative += h.buckets[k];
      const bool last = k + 1 == h.buckets.size();
      const std::string le = last ? "+Inf" : seconds(shm::histogram_bucket_max(k));
      out.sample(bucket, {{"pool", p.name}, {"le", le}}, number(cumulative));
    }
    out.sample(sum, {{"pool", p.name}}, seconds(h.sum_us));
    out.sample(count, {{"pool", p.name}}, number(cumulative));
  }
}

}  // namespace

std::string prometheus_text(const StatusModel& model) {
  Exposition out;

  out.family("forkpool_build_info", "gauge",
             "Always 1; the version label names the running build.");
  out.sample("forkpool_build_info", {{"version", model.version}}, "1");
  out.family("forkpool_config_generation", "gauge",
             "Configuration generation the master runs: 1 at start, one more per applied reload.");
  out.sample("forkpool_config_generation", {}, number(static_cast<std::uint64_t>(model.generation)));
  out.family("forkpool_master_uptime_seconds", "gauge", "Seconds since the master started.");
  out.sample("forkpool_master_uptime_seconds", {}, number(model.uptime_s));
  out.family("forkpool_master_upgrades_total", "counter",
             "Binary upgrades in place (SIGUSR2, forkpoolctl upgrade) since the master first started.");
  out.sample("forkpool_master_upgrades_total", {}, number(static_cast<std::uint64_t>(model.upgrades)));

  out.family("forkpool_pool_up", "gauge", "1 when the pool is running, else 0.");
  for (const auto& p : model.pools) {
    out.sample("forkpool_pool_up", {{"pool", p.name}},
               p.state == shm::to_string(shm::PoolState::Running) ? "1" : "0");
  }
  out.family("forkpool_pool_state", "gauge", "1 for the state the pool is in, 0 for the others.");
  for (const auto& p : model.pools) {
    for (std::uint32_t i = 0; i < shm::kPoolStateCount; ++i) {
      const auto state = shm::to_string(static_cast<shm::PoolState>(i));
      out.sample("forkpool_pool_state", {{"pool", p.name}, {"state", state}},
                 p.state == state ? "1" : "0");
    }
  }
  out.family("forkpool_workers", "gauge", "Workers of the pool in each state.");
  for (const auto& p : model.pools) {
    // Slots never used (state "empty") hold no worker, so they are not a state to count.
    for (std::uint32_t i = 1; i < shm::kWorkerStateCount; ++i) {
      const auto state = shm::to_string(static_cast<shm::WorkerState>(i));
      std::uint64_t n = 0;
      for (const auto& w : p.workers) n += w.state == state ? 1 : 0;
      out.sample("forkpool_workers", {{"pool", p.name}, {"state", state}}, number(n));
    }
  }
  out.family("forkpool_accept_paused", "gauge",
             "1 while the master cannot accept for the pool (out of descriptors), else 0.");
  for (const auto& p : model.pools)
    out.sample("forkpool_accept_paused", {{"pool", p.name}}, p.accept_paused.empty() ? "0" : "1");
  out.family("forkpool_workers_target", "gauge", "Workers the pool is meant to run.");
  for (const auto& p : model.pools) {
    out.sample("forkpool_workers_target", {{"pool", p.name}},
               number(static_cast<std::uint64_t>(p.target < 0 ? 0 : p.target)));
  }
  auto gauge = [&](const char* name, const char* help, int PoolStatus::*field) {
    out.family(name, "gauge", help);
    for (const auto& p : model.pools)
      out.sample(name, {{"pool", p.name}}, number(static_cast<std::uint64_t>(std::max(0, p.*field))));
  };
  gauge("forkpool_pool_workers_target", "Workers the pool wants now (a dynamic pool moves it within min..max).",
        &PoolStatus::target);
  gauge("forkpool_pool_workers_min", "Fewest workers the pool runs (min_workers; a fixed pool: its size).",
        &PoolStatus::min);
  gauge("forkpool_pool_workers_max", "Most workers the pool runs (max_workers; a fixed pool: its size).",
        &PoolStatus::max);
  for (const auto& m : kPoolMetrics) {
    out.family(m.name, m.type, m.help);
    for (const auto& p : model.pools) out.sample(m.name, {{"pool", p.name}}, number(p.*m.field));
  }

  histogram(out, model, "forkpool_connection_duration_seconds",
            "Time from dispatch to the worker's DONE, per connection.",
            &PoolStatus::duration_histogram);
  histogram(out, model, "forkpool_queue_wait_seconds",
            "Time a connection waited in the master's queue before dispatch.",
            &PoolStatus::queue_wait_histogram);

  // Per-slot families are labelled by pool and worker number only, so a series lives as
  // long as the slot, not as long as one process. While a slot briefly has more than one
  // process (a replacement starting, an old worker draining), the slot's values are its
  // serving process's. Every process, with its pid, is in forkpool_worker_info.
  std::vector<const WorkerStatus*> per_slot;
  for (const auto& m : kWorkerMetrics) {
    out.family(m.name, m.type, m.help);
    for (const auto& p : model.pools) {
      slot_representatives(p, per_slot);
      for (const WorkerStatus* w : per_slot) {
        const std::string worker = std::to_string(w->worker);
        out.sample(m.name, {{"pool", p.name}, {"worker", worker}}, m.value(*w));
      }
    }
  }
  out.family("forkpool_worker_info", "gauge",
             "Always 1, one series per worker process: its pid, role (serving, replacement, retiring) and "
             "configuration generation.");
  for (const auto& p : model.pools) {
    for (const auto& w : p.workers) {
      if (w.state == "failed" || w.pid <= 0) continue;
      const std::string worker = std::to_string(w.worker);
      const std::string pid = std::to_string(w.pid);
      const std::string generation = std::to_string(w.generation);
      out.sample("forkpool_worker_info",
                 {{"pool", p.name}, {"worker", worker}, {"pid", pid}, {"role", w.role}, {"generation", generation}},
                 "1");
    }
  }
  return out.take();
}

}  // namespace forkpool::supervisor
