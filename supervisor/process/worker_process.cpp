// SPDX-License-Identifier: Apache-2.0
#include "supervisor/process/worker_process.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <system_error>

#include "base/clock.hpp"
#include "base/proc_text.hpp"
#include "base/resources.hpp"
#include "base/socket_type.hpp"
#include "supervisor/dispatch/descriptor_budget.hpp"
#include "supervisor/observe/access_log.hpp"
#include "supervisor/observe/events.hpp"
#include "supervisor/observe/log.hpp"
#include "supervisor/process/exit_status.hpp"
#include "supervisor/process/signal_handlers.hpp"
#include "supervisor/process/spawner.hpp"
#include "supervisor/upgrade/state_clock.hpp"
#include "worker/protocol.h"

namespace forkpool::supervisor {

namespace {

using base::out_of_resources;

OwnedFd open_output_file(const std::filesystem::path& path) {
  OwnedFd fd(::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0644));
  if (!fd) throw SpawnFailure("open " + path.string() + ": " + std::strerror(errno), out_of_resources(errno));
  return fd;
}

}  // namespace

std::string describe_peer(const sockaddr_storage& peer, socklen_t len) {
  char host[INET6_ADDRSTRLEN] = {};
  if (peer.ss_family == AF_INET) {
    const auto* a = reinterpret_cast<const sockaddr_in*>(&peer);
    ::inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
    return std::string(host) + ":" + std::to_string(ntohs(a->sin_port));
  }
  if (peer.ss_family == AF_INET6) {
    const auto* a = reinterpret_cast<const sockaddr_in6*>(&peer);
    ::inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
    return "[" + std::string(host) + "]:" + std::to_string(ntohs(a->sin6_port));
  }
  if (peer.ss_family == AF_UNIX) return len > sizeof(sa_family_t) ? "unix peer" : "unnamed unix peer";
  return "unknown peer";
}

WorkerProcess::WorkerProcess(MasterContext& ctx, PoolConfigRef pool, Identity id,
                             const std::vector<ListenerRef>& listeners, WorkerEvents events)
    : ctx_(ctx),
      pool_(std::move(pool)),
      id_(id),
      events_(std::move(events)),
      ready_timer_(ctx.loop),
      watchdog_timer_(ctx.loop),
      stop_timer_(ctx.loop),
      request_timer_(ctx.loop) {
  ++ctx_.workers_epoch;
  const config::PoolConfig& cfg = *pool_;
  if (auto ec = ctx_.scoreboard->start_worker(id_.scoreboard_slot, id_.generation))
    log::warn("scoreboard.renew_failed", "pool {} worker {}: new slot page: {}; reusing the old one",
              cfg.name, id_.worker, ec.message());

  int pair[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) != 0)
    throw SpawnFailure(std::string("socketpair: ") + std::strerror(errno), out_of_resources(errno));
  OwnedFd master_end(pair[0]);
  OwnedFd worker_end(pair[1]);

  WorkerContext wc;
  wc.worker = id_.worker;
  wc.generation = id_.generation;
  wc.master_pid = ctx_.pid;
  wc.channel_fd = worker_end.get();
  wc.scoreboard_fd = ctx_.scoreboard->slot_fd(id_.scoreboard_slot);
  wc.stdin_fd = ctx_.dev_null;
  for (const auto& l : listeners) wc.listener_texts.push_back(l->bound);
  if (cfg.dispatch == config::Dispatch::Shared)
    for (const auto& l : listeners) wc.listener_fds.push_back(l->fd.get());

  const std::string prefix = cfg.name + "[" + std::to_string(id_.worker) + "]";
  OwnedFd stdout_file, stderr_file;
  auto output_fd = [&](const config::OutputTarget& t, int inherited, std::unique_ptr<OutputCapture>& capture,
                       OwnedFd& file, const char* stream) {
    switch (t.kind) {
      case config::OutputTarget::Kind::Inherit: return inherited;
      case config::OutputTarget::Kind::Null: return ctx_.dev_null;
      case config::OutputTarget::Kind::File: file = open_output_file(t.path); return file.get();
      case config::OutputTarget::Kind::Log:
        capture = std::make_unique<OutputCapture>(ctx_.loop, prefix + " " + stream);
        return capture->write_end();
    }
    return inherited;
  };
  try {
    wc.stdout_fd = output_fd(cfg.stdout_target, STDOUT_FILENO, stdout_capture_, stdout_file, "stdout");
    wc.stderr_fd = output_fd(cfg.stderr_target, STDERR_FILENO, stderr_capture_, stderr_file, "stderr");
    if (cfg.ready == config::Readiness::Notify || cfg.watchdog.count() > 0) {
      make_notify_socket(std::nullopt);
      wc.notify_socket = notify_->address();
    }
  } catch (const SpawnFailure&) {
    throw;
  } catch (const std::system_error& e) {
    throw SpawnFailure(e.what(), out_of_resources(e.code().value()));
  } catch (const std::exception& e) {
    throw SpawnFailure(e.what(), false);
  }

  SpawnPlan plan;
  try {
    plan = build_spawn_plan(cfg, wc);
  } catch (const std::exception& e) {
    throw SpawnFailure(e.what(), false);
  }
  starting_ = spawn_begin(plan);
  if (starting_.pid <= 0) {
    const SpawnResult r = spawn_finish(starting_);
    throw SpawnFailure(r.message(), out_of_resources(r.error));
  }
  // The child has its copies: the master's copies of the worker's descriptors close now.
  if (stdout_capture_) stdout_capture_->close_write_end();
  if (stderr_capture_) stderr_capture_->close_write_end();
  starting_channel_ = std::move(master_end);
}

void WorkerProcess::describe_output() {
  const nlohmann::json subject = {
      {"pool", pool_->name}, {"worker", id_.worker}, {"pid", pid_}, {"generation", id_.generation}};
  for (auto* capture : {stdout_capture_.get(), stderr_capture_.get()})
    if (capture != nullptr) capture->set_subject(subject);
}

void WorkerProcess::finish_start() {
  const config::PoolConfig& cfg = *pool_;
  const SpawnResult r = spawn_finish(starting_);
  if (!r.ok()) throw SpawnFailure(r.message(), out_of_resources(r.error));
  pid_ = r.pid;
  started_ = Clock::now();
  ctx_.scoreboard->set_pid(id_.scoreboard_slot, pid_, base::monotonic_ns());
  describe_output();

  channel_ = std::make_unique<WorkerChannel>(ctx_.loop, std::move(starting_channel_));
  channel_->watch([this] { read_channel(); },
                  [this] {
                    ++ctx_.workers_epoch;
                    if (events_.writable) events_.writable();
                  });

  if (cfg.ready != config::Readiness::Exec && cfg.ready_timeout.count() > 0)
    ready_timer_.start(cfg.ready_timeout, [this] { events_.ready_timeout(); });
  if (cfg.watchdog.count() > 0) arm_watchdog();
}

WorkerProcess::~WorkerProcess() { ++ctx_.workers_epoch; }

void WorkerProcess::make_notify_socket(std::optional<shm::OwnedFd> adopted) {
  NotifyHandlers h;
  h.ready = [this] { mark_ready(); };
  h.watchdog = [this] { arm_watchdog(); };
  h.status = [this](const std::string& s) { note_status(s); };
  h.stopping = [this] {
    log::at_with(spdlog::level::debug, "worker.stopping", [this] { return log_fields(); },
                 "worker {}[{}] pid {} says it is stopping", pool_->name, id_.worker, pid_);
  };
  if (adopted) notify_ = std::make_unique<NotifySocket>(ctx_.loop, worker_uid(*pool_), std::move(h), std::move(*adopted));
  else notify_ = std::make_unique<NotifySocket>(ctx_.loop, worker_uid(*pool_), std::move(h));
}

// Out of line, not in the lambda above: GCC 12 at -O3 sees the string comparison inlined
// into std::function's invoker and warns (-Wmaybe-uninitialized, a false positive).
void WorkerProcess::note_status(const std::string& s) {
  if (s == status_text_) return;
  report_status(ctx_, {pool_->name, id_.worker, pid_}, s);
  status_text_ = s;
}

void WorkerProcess::transition(WorkerPhase to) {
  if (!phase_transition_allowed(phase_, to)) {
    log::critical("worker.bad_transition", "worker {}[{}] pid {}: {} -> {} is not a lifecycle step", pool_->name,
                  id_.worker, pid_, to_string(phase_), to_string(to));
    std::abort();
  }
  phase_ = to;
  ++ctx_.workers_epoch;
}

std::chrono::milliseconds WorkerProcess::uptime() const {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started_);
}

void WorkerProcess::adopt_settings(PoolConfigRef pool) {
  const bool timeout_changed = pool->request_timeout != pool_->request_timeout;
  pool_ = std::move(pool);
  ++ctx_.workers_epoch;
  if (timeout_changed) arm_request_timer();
}

void WorkerProcess::adopt_generation(PoolConfigRef pool, unsigned generation) {
  adopt_settings(std::move(pool));
  id_.generation = generation;
  ctx_.scoreboard->set_worker_generation(id_.scoreboard_slot, generation);
  describe_output();
}

SendResult WorkerProcess::send_connection(int fd, std::uint16_t listener, std::uint64_t id,
                                          const sockaddr_storage& peer, socklen_t peer_len,
                                          Clock::time_point accepted, std::uint32_t fd_flags,
                                          Clock::time_point now) {
  const SendResult r = channel_->send_connection(fd, listener, id, fd_flags);
  if (r != SendResult::Sent) return r;
  const bool start_timer = held_.empty();
  hold(id, HeldConnection{now, accepted, peer, peer_len, listener});
  ++handed_;
  if (start_timer) {
    held_since_ns_ = upgrade::to_ns(now);  // steady_clock reads CLOCK_MONOTONIC
    arm_request_timer();
  }
  publish_activity();
  return r;
}

void WorkerProcess::publish_activity() {
  ctx_.scoreboard->set_master_activity(id_.scoreboard_slot, static_cast<std::uint32_t>(held_.size()), completed_,
                                       held_since_ns_);
}

void WorkerProcess::hold(std::uint64_t id, const HeldConnection& c) {
  if (spare_held_.empty()) {
    held_[id] = c;
    return;
  }
  spare_held_.key() = id;
  spare_held_.mapped() = c;
  auto placed = held_.insert(std::move(spare_held_));
  if (!placed.inserted) {  // an id it holds already: overwritten, as held_[id] = c does
    // (From the node, not `c`: GCC 12 at -O3 warns of an overflow, a false positive.)
    spare_held_ = std::move(placed.node);
    placed.position->second = spare_held_.mapped();
  }
}

void WorkerProcess::forget_held(std::map<std::uint64_t, HeldConnection>::iterator it) {
  if (spare_held_.empty()) spare_held_ = held_.extract(it);
  else held_.erase(it);
}

void WorkerProcess::finish_connection(std::uint64_t id) {
  auto it = held_.find(id);
  if (it == held_.end()) {
    log::at_with(
        spdlog::level::debug, "channel.unknown_done",
        [&] {
          auto f = log_fields();
          f["conn"] = id;
          return f;
        },
        "worker {}[{}] pid {} reported DONE for connection {} it does not hold", pool_->name, id_.worker, pid_, id);
    return;
  }
  const Clock::time_point now = Clock::now();
  const auto held = std::chrono::duration_cast<std::chrono::microseconds>(now - it->second.since);
  if (access_log::enabled()) log_access(it->first, it->second, held, access_log::Outcome::Done);
  forget_held(it);
  ++completed_;
  publish_activity();
  if (held_.empty()) {
    idle_order_ = ++ctx_.idle_clock;
    idle_since_ = now;
  }
  arm_request_timer();
  if (events_.done) events_.done(held);
}

void WorkerProcess::count_protocol_error() {
  if (events_.protocol_error) events_.protocol_error();
  if (protocol_errors_++ == 0) first_protocol_error_ = Clock::now();
}

bool WorkerProcess::park_connection(std::uint64_t id, WorkerChannel::Passed passed) {
  auto it = held_.find(id);
  const char* problem = nullptr;
  if (pool_->keepalive != config::KeepAlive::Master) problem = "but its pool does not have keepalive = \"master\"";
  else if (it == held_.end()) problem = "for a connection it does not hold";
  else if (passed.count == 0) problem = "without the connection's descriptor";
  else if (passed.count > 1) problem = "with more than one descriptor";
  // What is resumed goes to a worker as a CONN, whose descriptor is a connected stream
  // socket (docs/protocol.md): not a pipe or a datagram socket a worker slipped in.
  else if (base::socket_type(passed.first.get()) != SOCK_STREAM) problem = "with a descriptor that is no stream socket";
  if (problem == nullptr) {
    const HeldConnection held = it->second;
    if (access_log::enabled())
      log_access(id, held, std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - held.since),
                 access_log::Outcome::Parked);
    forget_held(it);
    ++completed_;  // a request served: status shows it as handled, as a DONE
    publish_activity();
    if (held_.empty()) {
      idle_order_ = ++ctx_.idle_clock;
      idle_since_ = Clock::now();
    }
    arm_request_timer();
    if (events_.parked) events_.parked(id, held, std::move(passed.first), passed.fd_flags);
    return true;
  }
  if (!bad_parks_) bad_parks_ = std::make_unique<log::RepeatedWarning>(ctx_.loop, "channel.bad_park");
  bad_parks_->warn(fmt::format("worker {}[{}] pid {}", pool_->name, id_.worker, pid_), [&] {
    return fmt::format("worker {}[{}] pid {} sent PARK {} (connection {}); {}", pool_->name, id_.worker, pid_,
                       problem, id,
                       passed.count > 0 ? "the master closed what came with it" : "nothing came to close");
  });
  count_protocol_error();
  // The worker let go of a connection it held: it is finished, as if by DONE.
  if (it != held_.end()) finish_connection(id);
  return false;
}

bool WorkerProcess::too_many_protocol_errors(bool until_empty) {
  if (protocol_errors_ >= kProtocolErrorLimit && Clock::now() - first_protocol_error_ >= kProtocolErrorSpan &&
      !until_empty && phase_ != WorkerPhase::Stopping && events_.protocol_errors) {
    events_.protocol_errors();
    return true;
  }
  return false;
}

const HeldConnection* WorkerProcess::oldest() const {
  const HeldConnection* found = nullptr;
  for (const auto& [id, held] : held_)
    if (found == nullptr || held.since < found->since) found = &held;
  return found;
}

nlohmann::json WorkerProcess::log_fields() const {
  return {{"pool", pool_->name}, {"worker", id_.worker}, {"pid", pid_}, {"generation", id_.generation}};
}

void WorkerProcess::log_access(std::uint64_t id, const HeldConnection& c, std::chrono::microseconds held,
                               access_log::Outcome outcome) const {
  access_log::Record r;
  r.pool = pool_->name;
  r.worker = id_.worker;
  r.pid = pid_;
  r.peer = &c.peer;
  r.peer_len = c.peer_len;
  r.id = id;
  r.queue_wait = std::chrono::duration_cast<std::chrono::microseconds>(c.since - c.accepted);
  r.held = held;
  r.outcome = outcome;
  access_log::write(r);
}

void WorkerProcess::arm_request_timer() {
  if (pool_->request_timeout.count() == 0 || phase_ == WorkerPhase::Stopping || phase_ == WorkerPhase::Reaped) {
    request_timer_.stop();
    return;
  }
  if (held_.empty()) {
    request_timer_.stop();
    return;
  }
  const HeldConnection& first = *oldest();
  const auto age = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - first.since);
  request_timer_.start(std::max(std::chrono::milliseconds(0), pool_->request_timeout - age), [this] {
    const HeldConnection* o = oldest();
    if (o == nullptr || !events_.request_timeout) return;
    events_.request_timeout(describe_peer(o->peer, o->peer_len));
  });
}

std::chrono::microseconds WorkerProcess::oldest_held() const {
  const HeldConnection* o = oldest();
  if (o == nullptr) return std::chrono::microseconds(0);
  return std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - o->since);
}

void WorkerProcess::mark_ready() {
  if (phase_ != WorkerPhase::Starting) return;  // already ready, or being stopped or killed
  transition(WorkerPhase::Ready);
  ready_at_ = Clock::now();
  idle_order_ = ++ctx_.idle_clock;
  idle_since_ = *ready_at_;
  ready_timer_.stop();
  ctx_.scoreboard->mark_ready(id_.scoreboard_slot);
  const bool exec = pool_->ready == config::Readiness::Exec;
  // Announced before what follows from it (a replacement taking over, the pool running).
  if (!exec && events_.ready_confirmed) events_.ready_confirmed();
  events_.ready();  // may destroy nothing: the pool only updates counts here
  if (exec && events_.ready_confirmed && phase_ == WorkerPhase::Ready) {
    // The ready timer has no other use with exec readiness; stop() and reaped() stop it.
    ready_timer_.start(kExecReadyGrace, [this] { events_.ready_confirmed(); });
  }
}

void WorkerProcess::observe_activity(bool busy, std::uint64_t handled, bool demand) {
  if (busy || handled != 0) reported_ = true;
  if (busy || handled != handled_seen_ || (demand && !reported_)) idle_since_ = Clock::now();
  handled_seen_ = handled;
}

void WorkerProcess::arm_watchdog() {
  if (pool_->watchdog.count() == 0 || phase_ == WorkerPhase::Stopping || phase_ == WorkerPhase::Reaped) return;
  watchdog_due_ = Clock::now() + pool_->watchdog;
  watchdog_timer_.start(pool_->watchdog, [this] { events_.watchdog_missed(); });
}

void WorkerProcess::read_channel(bool until_empty) {
  // At the reap everything queued is read, but no more than a socket buffer can hold:
  // a descendant that kept the channel open and writes on could otherwise hold the
  // master here for ever.
  const int budget_limit = until_empty ? kReapReadLimit : 64;
  for (int budget = 0; budget < budget_limit; ++budget) {
    fp_msg m{};
    WorkerChannel::Passed passed;
    switch (channel_->receive(m, passed)) {
      case WorkerChannel::Received::Nothing: return;
      case WorkerChannel::Received::EndOfFile:
        // The channel is Gone now: no more work goes to it. Whether the program is broken
        // or on its way out shows in the grace (the stop timer is idle until a stop).
        if (!until_empty && phase_ != WorkerPhase::Stopping && events_.channel_closed)
          stop_timer_.start(kChannelClosedGrace, [this] {
            if (phase_ != WorkerPhase::Stopping && phase_ != WorkerPhase::Reaped) events_.channel_closed();
          });
        return;
      case WorkerChannel::Received::Malformed:
        channel_->warn_malformed(pool_->name, id_.worker, pid_);
        count_protocol_error();
        if (too_many_protocol_errors(until_empty)) return;  // its handler changed the pool; read on next time
        continue;
      case WorkerChannel::Received::Record: break;
    }
    if (m.type == FP_MSG_READY && !until_empty) {  // a reaped worker is not becoming ready
      const bool wants = (m.reserved & FP_FD_NONBLOCK) != 0;
      // With ready = "exec" the worker is ready already and mark_ready moves nothing:
      // the dispatcher learns the mode it accepts in from the epoch.
      if (wants != wants_nonblocking_) ++ctx_.workers_epoch;
      wants_nonblocking_ = wants;
      mark_ready();
      return;  // its handler may have changed the pool; read on next time
    }
    if (m.type == FP_MSG_DONE) {
      // A DONE for a connection it does not hold (a second one, one after its PARK) or
      // with a descriptor is the worker's mistake: counted, and logged at warn level. A
      // stray DONE could otherwise end the next round of a connection this worker got back.
      const bool held = held_.count(m.id) != 0;
      if (!held || passed.count > 0) {
        if (!bad_dones_) bad_dones_ = std::make_unique<log::RepeatedWarning>(ctx_.loop, "channel.bad_done");
        bad_dones_->warn(fmt::format("worker {}[{}] pid {}", pool_->name, id_.worker, pid_), [&] {
          return fmt::format("worker {}[{}] pid {} sent DONE {} (connection {}){}", pool_->name, id_.worker, pid_,
                             held ? "with a descriptor" : "for a connection it does not hold", m.id,
                             passed.count > 0 ? "; the master closed the descriptor" : "");
        });
        count_protocol_error();
        if (held) finish_connection(m.id);
        if (too_many_protocol_errors(until_empty)) return;
        if (!until_empty && held) return;
        continue;
      }
      finish_connection(m.id);
      if (!until_empty) return;  // the done handler dispatches more work
    }
    if (m.type == FP_MSG_PARK && passed.dropped) {
      // The master had no descriptor free to take the connection back: the kernel closed
      // it, and the worker let go of it. It ends here, as if by DONE.
      if (!lost_parks_) lost_parks_ = std::make_unique<log::RepeatedWarning>(ctx_.loop, "channel.park_dropped");
      lost_parks_->warn(fmt::format("pool {}", pool_->name), [&] {
        return fmt::format("worker {}[{}] pid {} parked connection {}, but the master had no descriptor free to "
                           "take it (RLIMIT_NOFILE {}): the connection is closed; raise the limit",
                           pool_->name, id_.worker, pid_, m.id, descriptor_limit());
      });
      finish_connection(m.id);
      if (!until_empty) return;
      continue;
    }
    if (m.type == FP_MSG_PARK) {
      if (!park_connection(m.id, std::move(passed)) && too_many_protocol_errors(until_empty)) return;
      if (!until_empty) return;  // the park handler dispatches more work
    }
    // Unknown types are ignored, so a newer worker library can talk to this master.
  }
}

void WorkerProcess::reaped() {
  read_channel(true);
  if (bad_parks_) bad_parks_->flush();
  if (lost_parks_) lost_parks_->flush();
  if (bad_dones_) bad_dones_->flush();
  channel_->close();
  usage_.forget();
  if (access_log::enabled()) {
    const auto now = Clock::now();
    for (const auto& [id, c] : held_)
      log_access(id, c, std::chrono::duration_cast<std::chrono::microseconds>(now - c.since),
                 access_log::Outcome::Lost);
  }
  // What it still held died with it (the pool counts it lost): the row it leaves shows
  // nothing in flight. (Only a worker the master sent connections to holds any; the pool
  // releases the slot after this returns.)
  if (!held_.empty()) ctx_.scoreboard->set_master_activity(id_.scoreboard_slot, 0, completed_, 0);
  ready_timer_.stop();
  watchdog_timer_.stop();
  request_timer_.stop();
  stop_timer_.stop();
  transition(WorkerPhase::Reaped);
}

namespace {

// Field `n` (3 = state, 9 = flags) of /proc/PID/stat; "" when the process is gone.
std::string stat_field(pid_t pid, int n) {
  const auto line = base::read_proc_text("/proc/" + std::to_string(pid) + "/stat", 1024);
  if (!line) return {};
  const auto fields = base::stat_fields(*line);
  if (n < 3 || static_cast<std::size_t>(n - 3) >= fields.size()) return {};
  return std::string(fields[static_cast<std::size_t>(n - 3)]);
}

}  // namespace

bool WorkerProcess::stopped() const { return stat_field(pid_, 3) == "T"; }

bool WorkerProcess::exiting() const {
  siginfo_t info{};
  if (::waitid(P_PID, static_cast<id_t>(pid_), &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid == pid_)
    return true;  // a zombie already
  // Not yet a zombie, but on its way: the kernel closes an exiting process's descriptors
  // (so its channel reads EOF) after it set PF_EXITING in its flags, /proc/PID/stat field 9.
  const std::string flags = stat_field(pid_, 9);
  if (flags.empty()) return true;  // gone from /proc: it has exited
  constexpr unsigned long kPfExiting = 0x4;
  return (std::strtoul(flags.c_str(), nullptr, 10) & kPfExiting) != 0;
}

void WorkerProcess::signal(int signo, bool whole_group) {
  // The pid is ours and not reaped yet (the pool drops this object when it reaps), so it
  // cannot have been reused; the group id lives as long as its leader.
  if (::kill(whole_group ? -pid_ : pid_, signo) != 0 && errno == ESRCH && whole_group) ::kill(pid_, signo);
}

void WorkerProcess::stop(StopPlan plan, bool requested) {
  if (requested) exit_expected_ = true;
  // A stop in progress is only overtaken by one that kills at once (a fast shutdown).
  if (phase_ == WorkerPhase::Stopping && plan.front().signal != SIGKILL) return;
  if (phase_ == WorkerPhase::Reaped) return;
  if (phase_ != WorkerPhase::Stopping) transition(WorkerPhase::Stopping);
  ready_timer_.stop();
  watchdog_timer_.stop();
  request_timer_.stop();
  stop_timer_.stop();  // a closed channel's grace (read_channel) ends here
  end_work();
  ctx_.scoreboard->mark_stopping(id_.scoreboard_slot);
  stop_plan_ = std::move(plan);
  stop_step_ = 0;
  stop_began_ = Clock::now();
  run_stop_steps();
}

void WorkerProcess::run_stop_steps() {
  const auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - stop_began_);
  // A stop signal sent to an isolated worker (PID 1 of its namespace) before it had a
  // handler for it was dropped by the kernel: it is sent again once the handler is there.
  if (undelivered_signal_ != 0 && catches_signal(pid_, undelivered_signal_).value_or(true)) {
    signal(undelivered_signal_, false);
    undelivered_signal_ = 0;
  }
  while (stop_step_ < stop_plan_.size() && stop_plan_[stop_step_].after <= elapsed) {
    const StopStep& step = stop_plan_[stop_step_++];
    if (stop_step_ > 1)
      log::at_with(
          spdlog::level::warn, "worker.stop_escalated",
          [&] {
            auto f = log_fields();
            f["after_s"] = static_cast<double>(step.after.count()) / 1000.0;
            f["signal_name"] = std::string("SIG") + sigabbrev_np(step.signal);
            return f;
          },
          "worker {}[{}] pid {} still running after {}; sending SIG{}", pool_->name, id_.worker, pid_,
          format_uptime(step.after), sigabbrev_np(step.signal));
    // A stopped worker (SIGSTOP, ^Z) would keep the signal pending until graceful_timeout:
    // wake it, after the signal, so it acts on it now. Only when it is stopped: a SIGCONT
    // to a running worker could undo a stop of its own on its way out (a sanitizer's
    // leak check stops it under ptrace, and would wait for ever). SIGKILL needs no help.
    const bool was_stopped = step.signal != SIGKILL && stopped();
    // Asked before sending: a handler installed in between means at worst a second
    // delivery, never a lost one.
    undelivered_signal_ = pool_->isolate == config::Isolation::Pid && step.signal != SIGKILL &&
                                  step.signal != SIGSTOP && !catches_signal(pid_, step.signal).value_or(true)
                              ? step.signal
                              : 0;
    signal(step.signal, step.whole_group);
    if (was_stopped) signal(SIGCONT, step.whole_group);
  }
  std::optional<std::chrono::milliseconds> next;
  if (stop_step_ < stop_plan_.size()) next = stop_plan_[stop_step_].after - elapsed;
  if (undelivered_signal_ != 0) next = std::min(next.value_or(kUndeliveredRetry), kUndeliveredRetry);
  if (next) stop_timer_.start(*next, [this] { run_stop_steps(); });
}

}  // namespace forkpool::supervisor
