// SPDX-License-Identifier: Apache-2.0
// Pool across a binary upgrade (docs/upgrade.md): export_state in the previous image,
// the adopting constructor and resume_adopted in the new one. The workers run on
// untouched; only the master's bookkeeping of them is carried.

#include <algorithm>

#include "config/names.hpp"
#include "supervisor/observe/log.hpp"
#include "supervisor/pool/pool.hpp"
#include "supervisor/pool/pool_slot.hpp"
#include "supervisor/upgrade/state_clock.hpp"

namespace forkpool::supervisor {

using nlohmann::json;
using upgrade::need;

json Pool::export_state(upgrade::FdList& fds) const {
  // Each worker with the dispatch it runs (a reload may have switched the pool's while it
  // runs on) and whether it stays for what the master holds (a drainer).
  const auto worker_state = [&](const WorkerProcess& p) {
    json j = p.export_state(fds);
    j["dispatch"] = std::string(config::to_string(p.config().dispatch));
    j["drainer"] = std::find(queue_drainers_.begin(), queue_drainers_.end(), &p) != queue_drainers_.end();
    return j;
  };
  json slots = json::array();
  for (const auto& s : slots_) {
    json retiring = json::array();
    for (const auto& r : s->retiring) retiring.push_back(worker_state(*r));
    slots.push_back(
        {{"index", s->index},
         {"wanted", s->wanted},
         {"replace_reason", s->replace_reason},
         {"last_error", s->last_error},
         {"restart_due", s->restart_timer.active() ? upgrade::to_ns(s->restart_due) : 0},
         {"launches", s->launches},
         {"last_exit_status", s->last_exit_status},
         {"backoff", {{"consecutive", s->backoff.consecutive()}, {"first_was_free", s->backoff.first_was_free()}}},
         {"start_streak", s->starts.length()},
         {"process", s->process ? worker_state(*s->process) : json()},
         {"replacement", s->replacement ? worker_state(*s->replacement) : json()},
         {"retiring", std::move(retiring)}});
  }
  json flap_history = json::array();
  for (const auto t : flap_.history()) flap_history.push_back(upgrade::to_ns(t));
  return {{"name", config_->name},
          {"index", index_},
          {"generation", generation_},
          {"worker_generation", worker_generation_},
          {"target", target_},
          {"state", static_cast<std::uint32_t>(state_)},
          {"rolling", json(std::vector<unsigned>(rolling_.begin(), rolling_.end()))},
          {"rolling_reason", rolling_reason_},
          {"last_scale", last_scale_},
          {"flap_history", std::move(flap_history)},
          {"spawn_failures", spawn_failures_},
          {"last_exit_line", last_exit_line_},
          {"failed_reason", failed_reason_},
          {"slots", std::move(slots)},
          {"dispatcher", dispatcher_ ? dispatcher_->export_state(fds) : json()}};
}

Pool::Pool(MasterContext& ctx, PoolConfigRef config, std::vector<ListenerRef> listeners,
           const json& state, upgrade::AdoptedFds& fds)
    : ctx_(ctx),
      config_(std::move(config)),
      index_(need(state, "index").get<std::uint32_t>()),
      listeners_(std::move(listeners)),
      target_(need(state, "target").get<int>()),
      flap_(config_->flap_restarts, config_->flap_window),
      generation_(need(state, "generation").get<unsigned>()),
      worker_generation_(need(state, "worker_generation").get<unsigned>()),
      drained_(ctx.loop),
      drain_deadline_(ctx.loop),
      rolling_next_(ctx.loop),
      start_next_(ctx.loop),
      idle_timer_(ctx.loop),
      spawn_retry_(ctx.loop),
      demand_sample_(ctx.loop) {
  if (!ctx_.scoreboard->pool_used(index_))
    throw upgrade::StateError("upgrade state: pool " + config_->name + " has no scoreboard block");
  const auto raw_state = shm::pool_state_from_raw(need(state, "state").get<std::uint32_t>());
  if (!raw_state) throw upgrade::StateError("upgrade state: pool " + config_->name + ": bad state");
  state_ = *raw_state;
  if (target_ < 0 || target_ > kMaxPoolWorkers)
    throw upgrade::StateError("upgrade state: pool " + config_->name + ": target " +
                              std::to_string(target_));
  for (const auto& w : need(state, "rolling")) rolling_.push_back(w.get<unsigned>());
  rolling_reason_ = state.value("rolling_reason", "");
  last_scale_ = state.value("last_scale", "");
  // The failure history goes on (a state from an image before these fields: it starts
  // again, as it did then).
  if (const auto it = state.find("flap_history"); it != state.end() && it->is_array()) {
    std::deque<Clock::time_point> crashes;
    for (const auto& t : *it) crashes.push_back(upgrade::from_ns(t.get<std::int64_t>()));
    flap_.restore(crashes);
  }
  spawn_failures_ = state.value("spawn_failures", 0u);
  last_exit_line_ = state.value("last_exit_line", "");
  failed_reason_ = state.value("failed_reason", "");
  if (state_ == shm::PoolState::Failed && failed_reason_.empty())
    failed_reason_ = "failed before a binary upgrade (the previous image did not hand over why)";
  update_dispatcher(true);
  const bool dispatcher_state = state.contains("dispatcher") && !state["dispatcher"].is_null();
  // Shared dispatch now, with what the master held for older workers (a reload switched
  // it): a dispatcher for them, accepting nothing.
  if (!dispatcher_ && dispatcher_state && !listeners_.empty()) make_dispatcher(false);
  if (dispatcher_ && dispatcher_state) dispatcher_->adopt_state(state["dispatcher"], fds);
  arm_memory_sampler();
  arm_shared_recycling();
  for (const auto& js : need(state, "slots")) {
    const unsigned i = need(js, "index").get<unsigned>();
    if (i >= static_cast<unsigned>(kMaxPoolWorkers))
      throw upgrade::StateError("upgrade state: pool " + config_->name + ": slot " +
                                std::to_string(i));
    Slot& slot = slot_at(i);
    slot.wanted = js.value("wanted", static_cast<int>(i) < target_);
    slot.replace_reason = js.value("replace_reason", "");
    slot.last_error = js.value("last_error", "");
    if (const auto due = js.value("restart_due", std::int64_t{0}); due != 0)
      slot.restart_due = upgrade::from_ns(due);
    if (!js["process"].is_null()) slot.process = adopt_worker(slot, js["process"], fds);
    if (!js["replacement"].is_null()) slot.replacement = adopt_worker(slot, js["replacement"], fds);
    for (const auto& r : need(js, "retiring")) slot.retiring.push_back(adopt_worker(slot, r, fds));
    if (const auto b = js.find("backoff"); b != js.end() && b->is_object())
      slot.backoff.restore(b->value("consecutive", 0u), b->value("first_was_free", false));
    slot.starts.restore(js.value("start_streak", 0u));
    slot.launches = js.value("launches", std::uint64_t{0});
    slot.last_exit_status = js.value("last_exit_status", -1);
    if (!js.contains("last_exit_status")) {
      // An image before this field: the scoreboard's, of the worker serving now.
      if (slot.process) slot.last_exit_status = ctx_.scoreboard->read_worker(slot.process->identity().scoreboard_slot).last_exit_status;
    }
    if (!js.contains("launches")) {
      // An image before this field: the scoreboard has the count the workers were started
      // with (set_history), so the restarts counter does not go back to 0.
      for (const WorkerProcess* p : {slot.process.get(), slot.replacement.get()})
        if (p != nullptr)
          slot.launches = std::max(
              slot.launches, ctx_.scoreboard->read_worker(p->identity().scoreboard_slot).restarts + 1);
    }
    ++ctx_.workers_epoch;
  }
}

std::unique_ptr<WorkerProcess> Pool::adopt_worker(Slot& slot, const json& state,
                                                  upgrade::AdoptedFds& fds) {
  auto self = std::make_shared<WorkerProcess*>(nullptr);
  // A worker started before a reload switched the pool's dispatch runs the other one: it
  // keeps it (an image before this key was exported: the pool's).
  PoolConfigRef config = config_;
  if (const auto d = config::dispatch_from_string(state.value("dispatch", "")); d && *d != config_->dispatch) {
    auto own = std::make_shared<config::PoolConfig>(*config_);
    own->dispatch = *d;
    config = std::move(own);
  }
  auto p = std::make_unique<WorkerProcess>(ctx_, std::move(config), state, fds, worker_events(slot, self));
  *self = p.get();
  if (p->identity().worker != slot.index ||
      !ctx_.scoreboard->slot_used(p->identity().scoreboard_slot))
    throw upgrade::StateError("upgrade state: worker pid " + std::to_string(p->pid()) +
                              " of pool " + config_->name + " does not match its slot");
  if (!ctx_.owners.emplace(p->pid(), this).second)
    throw upgrade::StateError("upgrade state: worker pid " + std::to_string(p->pid()) +
                              " is named twice");
  if (state.value("drainer", false)) adopted_drainers_.push_back(p.get());
  return p;
}

void Pool::resume_adopted() {
  for (auto& s : slots_) {
    for (WorkerProcess* p : {s->process.get(), s->replacement.get()})
      if (p != nullptr) p->resume_adopted();
    for (auto& r : s->retiring) r->resume_adopted();
    if (s->restart_due != Clock::time_point{} && !s->process) {
      const auto left = std::max(
          std::chrono::milliseconds(0),
          std::chrono::duration_cast<std::chrono::milliseconds>(s->restart_due - Clock::now()));
      Slot& slot = *s;
      slot.restart_timer.start(left, [this, &slot] {
        spawn(slot);
        update_running();
      });
    }
  }
  // A drain a reload to shared dispatch began goes on (its deadline starts again).
  for (WorkerProcess* p : adopted_drainers_)
    if (dispatcher_) start_draining(p);
  adopted_drainers_.clear();
  // Who accepts, now that the workers are known (a reload switching dispatch may have been
  // half done); the listeners stay as the workers use them.
  update_master_accepting(false, true);
  // A rolling restart goes on where it was; the queue goes to whoever can take it.
  rolling_next_.start(std::chrono::milliseconds(0), [this] { continue_rolling(); });
  if (dispatcher_) dispatcher_->pump();
  // A dynamic pool looks at its size again: its timers (idle retirement, the demand
  // watch) are re-armed from what it sees now.
  if (config_->dynamic) rescale();
}

}  // namespace forkpool::supervisor
