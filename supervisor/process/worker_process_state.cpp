// SPDX-License-Identifier: Apache-2.0
// WorkerProcess across a binary upgrade (docs/upgrade.md): what the previous image writes
// about one worker, and the constructor that takes the worker over in the new image. The
// process itself never notices: its pid, channel, notify socket and pipes stay the same.

#include <sys/socket.h>

#include <algorithm>

#include "supervisor/process/spawner.hpp"
#include "supervisor/process/worker_process.hpp"
#include "supervisor/upgrade/state_clock.hpp"

namespace forkpool::supervisor {
namespace {

using nlohmann::json;
using upgrade::from_ns;
using upgrade::need;
using upgrade::to_ns;

WorkerPhase phase_from(const std::string& name) {
  for (WorkerPhase p : {WorkerPhase::Starting, WorkerPhase::Ready, WorkerPhase::Stopping})
    if (to_string(p) == name) return p;
  throw upgrade::StateError("upgrade state: a worker in phase \"" + name + "\" cannot be adopted");
}

json peer_json(const sockaddr_storage& peer, socklen_t len) {
  return upgrade::to_hex(&peer, len);
}

void peer_from(const json& j, sockaddr_storage& peer, socklen_t& len) {
  std::size_t size = 0;
  peer = {};
  if (!j.is_string() || !upgrade::from_hex(j.get<std::string>(), &peer, sizeof peer, size))
    throw upgrade::StateError("upgrade state: a peer address is not hex");
  len = static_cast<socklen_t>(size);
}

}  // namespace

json WorkerProcess::export_state(upgrade::FdList& fds) const {
  json held = json::array();
  for (const auto& [id, h] : held_)
    held.push_back(
        {{"id", id}, {"since", to_ns(h.since)}, {"peer", peer_json(h.peer, h.peer_len)}, {"listener", h.listener},
         {"accepted", to_ns(h.accepted)}});
  json plan = json::array();
  for (const auto& step : stop_plan_)
    plan.push_back(
        {{"signal", step.signal}, {"after_ms", step.after.count()}, {"group", step.whole_group}});
  return {
      {"pid", pid_},
      {"worker", id_.worker},
      {"generation", id_.generation},
      {"scoreboard_slot", id_.scoreboard_slot},
      {"channel_fd", fds.add(channel_->fd())},
      {"channel_state", static_cast<int>(channel_->state())},
      {"notify_fd", notify_ ? fds.add(notify_->fd()) : -1},
      {"stdout_fd", stdout_capture_ ? fds.add(stdout_capture_->read_end()) : -1},
      {"stderr_fd", stderr_capture_ ? fds.add(stderr_capture_->read_end()) : -1},
      {"phase", to_string(phase_)},
      {"started", to_ns(started_)},
      {"ready_at", ready_at_ ? json(to_ns(*ready_at_)) : json()},
      {"exit_expected", exit_expected_},
      {"broken", stopped_as_broken_},
      {"status_text", status_text_},
      {"handed", handed_},
      {"completed", completed_},
      {"recycle_after", recycle_after_},
      {"idle_order", idle_order_},
      {"idle_since", to_ns(idle_since_)},
      {"handled_seen", handled_seen_},
      {"watchdog_due", watchdog_timer_.active() ? to_ns(watchdog_due_) : 0},
      {"held", std::move(held)},
      {"stop", {{"began", to_ns(stop_began_)}, {"step", stop_step_}, {"plan", std::move(plan)}}}};
}

WorkerProcess::WorkerProcess(MasterContext& ctx, PoolConfigRef pool, const json& s,
                             upgrade::AdoptedFds& fds, WorkerEvents events)
    : ctx_(ctx),
      pool_(std::move(pool)),
      id_{need(s, "worker").get<unsigned>(), need(s, "generation").get<unsigned>(),
          need(s, "scoreboard_slot").get<std::uint32_t>()},
      events_(std::move(events)),
      ready_timer_(ctx.loop),
      watchdog_timer_(ctx.loop),
      stop_timer_(ctx.loop),
      request_timer_(ctx.loop) {
  ++ctx_.workers_epoch;
  adopted_ = true;
  pid_ = need(s, "pid").get<pid_t>();
  if (pid_ <= 1) throw upgrade::StateError("upgrade state: worker pid " + std::to_string(pid_));
  const std::string what =
      pool_->name + "[" + std::to_string(id_.worker) + "] pid " + std::to_string(pid_);
  phase_ = phase_from(need(s, "phase").get<std::string>());
  started_ = from_ns(need(s, "started").get<std::int64_t>());
  if (s.contains("ready_at") && !s["ready_at"].is_null())
    ready_at_ = from_ns(s["ready_at"].get<std::int64_t>());
  exit_expected_ = s.value("exit_expected", false);
  stopped_as_broken_ = s.value("broken", false);
  status_text_ = s.value("status_text", "");
  handed_ = s.value("handed", std::uint64_t{0});
  completed_ = s.value("completed", std::uint64_t{0});
  recycle_after_ = s.value("recycle_after", std::uint64_t{0});
  idle_order_ = s.value("idle_order", std::uint64_t{0});
  // Dynamic pools retire the worker idle the longest: its idle time goes on.
  idle_since_ = s.contains("idle_since") ? from_ns(s["idle_since"].get<std::int64_t>())
                                         : ready_at_.value_or(Clock::now());
  handled_seen_ = s.value("handled_seen", std::uint64_t{0});
  for (const auto& h : need(s, "held")) {
    HeldConnection c{};
    c.since = from_ns(need(h, "since").get<std::int64_t>());
    c.accepted = h.contains("accepted") ? from_ns(h["accepted"].get<std::int64_t>()) : c.since;
    c.listener = h.value("listener", std::uint16_t{0});
    peer_from(need(h, "peer"), c.peer, c.peer_len);
    held_[need(h, "id").get<std::uint64_t>()] = c;
  }
  // The scoreboard record carries on (the same memory); what it says of the held
  // connections is kept up from the oldest of them.
  if (const HeldConnection* first = oldest())
    held_since_ns_ = to_ns(first->since);

  const int channel_state = need(s, "channel_state").get<int>();
  if (channel_state < 0 || channel_state > static_cast<int>(WorkerChannel::State::Gone))
    throw upgrade::StateError("upgrade state: worker " + what + ": channel state " +
                              std::to_string(channel_state));
  channel_ = std::make_unique<WorkerChannel>(
      ctx_.loop,
      fds.claim(need(s, "channel_fd"), upgrade::FdKind::SeqpacketSocket,
                "channel of worker " + what),
      static_cast<WorkerChannel::State>(channel_state));
  if (s.value("notify_fd", -1) >= 0)
    make_notify_socket(
        fds.claim(s["notify_fd"], upgrade::FdKind::DgramSocket, "notify socket of worker " + what));
  const std::string prefix = pool_->name + "[" + std::to_string(id_.worker) + "]";
  if (s.value("stdout_fd", -1) >= 0)
    stdout_capture_ = std::make_unique<OutputCapture>(
        ctx_.loop, prefix + " stdout",
        fds.claim(s["stdout_fd"], upgrade::FdKind::Pipe, "stdout of worker " + what));
  if (s.value("stderr_fd", -1) >= 0)
    stderr_capture_ = std::make_unique<OutputCapture>(
        ctx_.loop, prefix + " stderr",
        fds.claim(s["stderr_fd"], upgrade::FdKind::Pipe, "stderr of worker " + what));
  describe_output();

  const json& stop = need(s, "stop");
  for (const auto& step : need(stop, "plan"))
    stop_plan_.push_back({need(step, "signal").get<int>(),
                          std::chrono::milliseconds(need(step, "after_ms").get<std::int64_t>()),
                          step.value("group", false)});
  stop_step_ = need(stop, "step").get<std::size_t>();
  stop_began_ = from_ns(need(stop, "began").get<std::int64_t>());
  if (const auto due = s.value("watchdog_due", std::int64_t{0}); due != 0)
    watchdog_due_ = from_ns(due);
}

void WorkerProcess::resume_adopted() {
  // Timers are re-armed from the deadlines they had in the previous image.
  channel_->watch([this] { read_channel(); },
                  [this] {
                    ++ctx_.workers_epoch;
                    if (events_.writable) events_.writable();
                  });
  const auto left = [](Clock::time_point due) {
    return std::max(std::chrono::milliseconds(0),
                    std::chrono::duration_cast<std::chrono::milliseconds>(due - Clock::now()));
  };
  if (phase_ == WorkerPhase::Stopping) {
    run_stop_steps();
    return;
  }
  // As at spawn (WorkerProcess::start): every readiness but "exec" has a deadline.
  if (phase_ == WorkerPhase::Starting && pool_->ready != config::Readiness::Exec &&
      pool_->ready_timeout.count() > 0)
    ready_timer_.start(left(started_ + pool_->ready_timeout), [this] { events_.ready_timeout(); });
  if (pool_->watchdog.count() > 0) {
    if (watchdog_due_ == Clock::time_point{}) watchdog_due_ = Clock::now() + pool_->watchdog;
    watchdog_timer_.start(left(watchdog_due_), [this] { events_.watchdog_missed(); });
  }
  arm_request_timer();
}

}  // namespace forkpool::supervisor
