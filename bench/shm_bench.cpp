// SPDX-License-Identifier: Apache-2.0
// Scoreboard costs on the hot paths: what a worker pays per connection, and what the
// master (or forkpoolctl top) pays per full snapshot.

#include <benchmark/benchmark.h>

#include "shm/scoreboard.hpp"
#include "shm/slot_writer.h"

namespace shm = forkpool::shm;

namespace {

// One connection as a worker sees it: busy (with the time) then idle.
void BM_worker_busy_idle_pair(benchmark::State& state) {
  shm::Scoreboard sb(1, 1);
  fp_slot_writer w;
  if (fp_slot_writer_attach(&w, sb.slot_fd(0)) != 0) {
    state.SkipWithError("attach failed");
    return;
  }
  fp_slot_writer_set_ready(&w);
  std::int64_t t = 1;
  for (auto _ : state) {
    fp_slot_writer_mark_busy(&w, ++t);
    fp_slot_writer_mark_idle(&w);
  }
  benchmark::DoNotOptimize(w.connections_handled);
  fp_slot_writer_detach(&w);
}
BENCHMARK(BM_worker_busy_idle_pair);

// The same with a real clock read, as the worker library will do it.
void BM_worker_busy_idle_pair_with_clock(benchmark::State& state) {
  shm::Scoreboard sb(1, 1);
  fp_slot_writer w;
  if (fp_slot_writer_attach(&w, sb.slot_fd(0)) != 0) {
    state.SkipWithError("attach failed");
    return;
  }
  fp_slot_writer_set_ready(&w);
  for (auto _ : state) {
    fp_slot_writer_mark_busy(&w, fp_slot_writer_now_ns());
    fp_slot_writer_mark_idle(&w);
  }
  fp_slot_writer_detach(&w);
}
BENCHMARK(BM_worker_busy_idle_pair_with_clock);

// A full snapshot: header, every pool block (with both histograms) and every slot, each
// copied under its seqlock and validated.
void BM_snapshot(benchmark::State& state) {
  const auto slots = static_cast<std::uint32_t>(state.range(0));
  shm::Scoreboard sb(4, slots);
  for (std::uint32_t i = 0; i < slots; ++i) {
    sb.assign_slot(i, i % 4, i / 4);
    (void)sb.start_worker(i, 1);
    sb.set_pid(i, 1000 + static_cast<int>(i), 1);
    sb.mark_ready(i);
  }
  for (auto _ : state) {
    auto snap = sb.snapshot();
    benchmark::DoNotOptimize(snap.workers.data());
  }
  state.SetItemsProcessed(state.iterations() * slots);
}
BENCHMARK(BM_snapshot)->Arg(1024)->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
