// SPDX-License-Identifier: Apache-2.0
#include "ctl/render_top.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "ctl/format.hpp"
#include "shm/histogram.hpp"
#include "shm/pool_state.hpp"
#include "shm/worker_state.hpp"

namespace forkpool::ctl {

namespace {

constexpr std::int64_t kRateWindowNs = 1'000'000'000;
constexpr std::int64_t kKeepNs = 5'000'000'000;

double seconds(std::int64_t ns) {
  return static_cast<double>(ns) / 1e9;
}
double ms_from_us(std::uint64_t us) {
  return static_cast<double>(us) / 1000.0;
}

std::string pool_name(const TopFrame& f, std::uint32_t pool) {
  if (f.snapshot != nullptr && pool < f.snapshot->pools.size() && !f.snapshot->pools[pool].name.empty())
    return f.snapshot->pools[pool].name;
  if (f.pool_names != nullptr && pool < f.pool_names->size()) return (*f.pool_names)[pool];
  return fmt::format("pool#{}", pool);
}

std::string pool_line(const TopFrame& f, const shm::PoolSnapshot& p) {
  const auto& s = *f.snapshot;
  const auto counts = shm::count_workers(s, p.pool);
  const auto state = std::string(shm::to_string(p.state));
  const PoolRates r = f.rates != nullptr ? f.rates->rates(p.pool) : PoolRates{};
  const auto pct = shm::histogram_percentiles(p.duration);
  // A dynamic pool: the bounds of its size (a fixed pool has both equal to the size).
  std::string bounds;
  if (p.max_workers > 0 && p.min_workers != p.max_workers) bounds = fmt::format(" (min {}, max {})", p.min_workers, p.max_workers);
  return fmt::format(
      "{} {}  size {}{}  idle {} busy {} starting {} stopping {}  queue {} (peak {})  "
      "conn/s {} (accepted {})  done {}  crashed {}  p50 {} p90 {} p99 {}",
      paint(pool_name(f, p.pool), Colour::Bold, f.colour),
      paint(state, state_colour(state), f.colour), p.size, bounds, counts.idle,
      paint(std::to_string(counts.busy), counts.busy > 0 ? Colour::Yellow : Colour::None, f.colour),
      counts.starting, counts.stopping, p.queued_now, p.queue_peak, format_rate(r.completed_per_s),
      format_rate(r.accepted_per_s), p.completed + p.parked,
      paint(std::to_string(p.crashed), p.crashed > 0 ? Colour::Red : Colour::None, f.colour),
      format_ms(ms_from_us(pct.p50_us)), format_ms(ms_from_us(pct.p90_us)),
      format_ms(ms_from_us(pct.p99_us)));
}

// Why a dynamic pool last changed size, and how long ago ("" if it never scaled).
std::string last_scale_line(const shm::ScoreboardSnapshot& s, const shm::PoolSnapshot& p) {
  const auto& d = p.last_scale;
  if (d.reason == shm::ScaleReason::None) return {};
  const std::int64_t ago = d.at_ns > 0 && s.taken_monotonic_ns > d.at_ns ? s.taken_monotonic_ns - d.at_ns : 0;
  return fmt::format("  last scale: {} from {} to {}: {}, {} ago ({} decisions)", d.to >= d.from ? "up" : "down",
                     d.from, d.to, shm::to_string(d.reason), format_duration(seconds(ago)), p.scale_decisions);
}

void add_worker_row(Table& t, const shm::ScoreboardSnapshot& s, const shm::WorkerSnapshot& w) {
  const auto state = std::string(shm::to_string(w.state));
  const bool live = w.pid > 0 && w.state != shm::WorkerState::Exited;
  const std::int64_t age = w.busy_since_ns > 0 ? s.taken_monotonic_ns - w.busy_since_ns : 0;
  const std::int64_t up = live && w.start_time_ns > 0 ? s.taken_monotonic_ns - w.start_time_ns : 0;
  std::string note;
  if ((w.anomalies & shm::kAnomalyStalePage) != 0) {
    note = "restarted, refreshing";
  } else if (w.anomalies != 0) {
    note = "! " + shm::describe_anomalies(w.anomalies);
  }
  t.add_row({
      {std::to_string(w.slot)},
      {std::to_string(w.worker_index)},
      {w.pid > 0 ? std::to_string(w.pid) : "-"},
      {state, state_colour(state)},
      {std::to_string(w.in_flight)},
      {age > 0 ? format_duration(seconds(age)) : "-"},
      {std::to_string(w.connections_handled)},
      {up > 0 ? format_duration(seconds(up)) : "-"},
      {w.rss_bytes > 0 ? format_bytes(w.rss_bytes) : "-"},
      {fmt::format("{:.2f}s", static_cast<double>(w.cpu_time_us) / 1e6)},
      {std::to_string(w.restarts), w.restarts > 0 ? Colour::Yellow : Colour::None},
      {note, note.empty() ? Colour::None : Colour::Red},
  });
}

void append_lines(std::vector<std::string>& out, const std::string& text) {
  std::size_t start = 0;
  while (start < text.size()) {
    const auto nl = text.find('\n', start);
    const auto end = nl == std::string::npos ? text.size() : nl;
    out.push_back(text.substr(start, end - start));
    start = end + 1;
  }
}

}  // namespace

void RateTracker::add(const shm::ScoreboardSnapshot& snapshot) {
  Sample s{snapshot.taken_monotonic_ns, {}, {}};
  for (const auto& p : snapshot.pools) {
    s.accepted.push_back(p.accepted);
    // Served: DONE and PARK (with keepalive = "master" a request ends with a PARK).
    s.completed.push_back(p.completed + p.parked);
  }
  // A different number of pools means a different scoreboard: rates start over.
  if (!samples_.empty() && samples_.back().accepted.size() != s.accepted.size()) samples_.clear();
  samples_.push_back(std::move(s));
  while (samples_.size() > 2 && samples_.back().t_ns - samples_[1].t_ns >= kKeepNs)
    samples_.pop_front();
}

PoolRates RateTracker::rates(std::uint32_t pool) const {
  if (samples_.size() < 2) return {};
  const Sample& last = samples_.back();
  // The newest sample at least a window older than the last, else the oldest one.
  const Sample* base = &samples_.front();
  for (const auto& s : samples_) {
    if (last.t_ns - s.t_ns >= kRateWindowNs) base = &s;
  }
  const double dt = seconds(last.t_ns - base->t_ns);
  if (dt <= 0 || pool >= last.accepted.size() || pool >= base->accepted.size()) return {};
  auto rate = [dt](std::uint64_t now, std::uint64_t then) {
    return now >= then ? static_cast<double>(now - then) / dt : 0.0;  // restarted counters
  };
  return {rate(last.accepted[pool], base->accepted[pool]),
          rate(last.completed[pool], base->completed[pool])};
}

std::vector<std::string> render_top_frame(const TopFrame& f) {
  std::vector<std::string> lines;
  const auto& s = *f.snapshot;
  std::uint32_t live = 0;
  std::uint32_t busy = 0;
  for (const auto& w : s.workers) {
    if (w.pid > 0 && w.state != shm::WorkerState::Exited && w.state != shm::WorkerState::Empty)
      ++live;
    if (w.state == shm::WorkerState::Busy) ++busy;
  }
  const auto up =
      s.master_start_monotonic_ns > 0 ? s.taken_monotonic_ns - s.master_start_monotonic_ns : 0;
  lines.push_back(
      fmt::format("{}  master pid {}  up {}  pools {}  workers {} (busy {})  {}  q: quit",
                  paint("forkpool top", Colour::Bold, f.colour), s.master_pid,
                  format_duration(seconds(up)),
                  std::count_if(s.pools.begin(), s.pools.end(), [](const auto& p) { return p.in_use; }), live, busy, f.clock));
  lines.push_back(f.notice.empty() ? "" : paint(f.notice, Colour::Yellow, f.colour));
  // Rows below the bottom of the terminal are counted, not built: with 1,000 workers
  // building them was a third of a frame (docs/performance.md). So a table's columns are
  // as wide as the rows on screen need.
  std::size_t unbuilt = 0;
  for (const auto& p : s.pools) {
    if (!p.in_use) continue;  // a free block: no pool there
    lines.emplace_back();
    lines.push_back(pool_line(f, p));
    if (auto scale = last_scale_line(s, p); !scale.empty()) lines.push_back(std::move(scale));
    Table t({"SLOT", "W", "PID", "STATE", "INFL", "CURRENT", "HANDLED", "UPTIME", "RSS", "CPU",
             "RESTARTS", "NOTE"},
            {Align::Right, Align::Right, Align::Right, Align::Left, Align::Right, Align::Right,
             Align::Right, Align::Right, Align::Right, Align::Right, Align::Right, Align::Left});
    // Below the table's header line, up to the terminal's last line.
    const std::size_t room = f.height == 0 ? s.workers.size()
                             : f.height > lines.size() + unbuilt + 1 ? f.height - lines.size() - unbuilt - 1
                                                                    : 0;
    std::size_t rows = 0;
    for (const auto& w : s.workers) {
      if (w.pool != p.pool || w.state == shm::WorkerState::Empty) continue;
      if (rows++ < room) add_worker_row(t, s, w);
    }
    if (rows == 0) {
      lines.push_back("  (no workers)");
    } else {
      append_lines(lines, t.render(f.colour, "  "));
      unbuilt += rows - t.row_count();
    }
  }
  for (auto& line : lines) line = truncate_to_width(line, f.width);
  if (f.height > 0 && lines.size() + unbuilt > f.height) {
    const std::size_t keep = f.height - 1;
    const std::size_t hidden = lines.size() + unbuilt - keep;
    lines.resize(keep);
    lines.push_back(
        truncate_to_width(fmt::format("... {} more lines (enlarge the window)", hidden), f.width));
  }
  return lines;
}

}  // namespace forkpool::ctl
