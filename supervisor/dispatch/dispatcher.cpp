// SPDX-License-Identifier: Apache-2.0
#include "base/resources.hpp"
#include "supervisor/dispatch/dispatcher.hpp"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "supervisor/process/exit_status.hpp"
#include "supervisor/observe/log.hpp"

namespace forkpool::supervisor {
namespace {

// Accepts per wake-up of one listener, so one busy listener cannot starve the loop.
constexpr int kAcceptBatch = 256;
// How long accepting pauses when the system (not this master) is out of descriptors or
// memory: nothing the master does frees those, so it tries again after a while.
constexpr std::chrono::milliseconds kEmfilePause{100};
// Paused for its own descriptors, the master also looks this often, for the one change no
// loop event reports: its limit raised from outside (prlimit --pid).
constexpr std::chrono::seconds kLimitRecheck{1};
// keepalive = "master" with keepalive_timeout = "0" (parked connections kept until the
// client closes): how long the kernel holds a new connection that has sent nothing.
constexpr std::chrono::seconds kDeferAcceptUntimed{30};

using base::out_of_resources;

}  // namespace

Dispatcher::Dispatcher(MasterContext& ctx, PoolConfigRef pool, std::uint32_t pool_index,
                       const std::vector<ListenerRef>& listeners, WorkerList workers)
    : ctx_(ctx),
      pool_(std::move(pool)),
      index_(pool_index),
      list_workers_(std::move(workers)),
      choice_(pool_->balance),
      queue_timer_(ctx.loop),
      emfile_pause_(ctx.loop),
      freed_(ctx.loop),
      fd_limit_(descriptor_limit()) {
  set_listeners(listeners);
}

void Dispatcher::set_config(PoolConfigRef pool) {
  if (pool->balance != pool_->balance) choice_ = WorkerChoice(pool->balance);
  pool_ = std::move(pool);
  workers_stale_ = true;
  defer_accepts();
  if (parked_) parked_->set_limits(pool_->keepalive_timeout, static_cast<std::size_t>(pool_->max_parked));
  arm_queue_timer();
  pump();
}

void Dispatcher::set_listeners(const std::vector<ListenerRef>& listeners) {
  std::vector<int> fds;
  for (const auto& l : listeners) fds.push_back(l->fd.get());
  if (fds == listener_fds_ && !accept_watches_.empty()) {  // the same sockets: nothing to rewire
    listeners_ = listeners;
    defer_accepts();
    update_accepting();
    return;
  }
  // Watches go before anything else: libuv must not be watching an fd number we no
  // longer hold (and a new watch on the same fd needs the old one gone).
  accept_watches_.clear();
  listener_fds_.clear();
  listener_nodelay_.clear();
  listeners_.clear();
  accepting_ = false;
  if (shut_) return;
  listeners_ = listeners;
  defer_accepts();
  for (const auto& l : listeners) {
    // Only the master accepts in this mode, so the listener may be non-blocking.
    l->set_nonblocking(true);
    // Connections inherit TCP_NODELAY from the listener: no setsockopt per connection in
    // the workers, which CONN tells (FP_FD_NODELAY).
    listener_nodelay_.push_back(l->set_nodelay(true) ? FP_FD_NODELAY : 0u);
    listener_fds_.push_back(l->fd.get());
    accept_watches_.push_back(std::make_unique<FdWatch>(ctx_.loop, l->fd.get()));
  }
  update_accepting();
}

Dispatcher::~Dispatcher() { shut(); }

void Dispatcher::defer_accepts() {
  // keepalive = "master": a worker is taken only when a request has come, for a new
  // connection too. The kernel holds one whose first bytes have not come for about
  // keepalive_timeout, then hands it over as it is.
  int seconds = 0;
  if (pool_->keepalive == config::KeepAlive::Master) {
    const config::Duration hold =
        pool_->keepalive_timeout.count() > 0 ? pool_->keepalive_timeout : config::Duration(kDeferAcceptUntimed);
    seconds = static_cast<int>(std::max<std::int64_t>(1, std::chrono::ceil<std::chrono::seconds>(hold).count()));
  }
  for (const auto& l : listeners_)
    if (l->defer_accept != seconds) l->set_defer_accept(seconds);
}

bool Dispatcher::has_capacity() {
  refresh_workers();
  for (WorkerProcess* w : workers_)
    if (w->accepts_work()) return true;
  return false;
}

namespace {

// An idle worker's entry still says where it stands: nothing held, able to take work,
// idle since that moment, and one of those the WorkerList names (Pool::dispatch_candidates).
bool still_idle(const WorkerProcess* w, std::uint64_t idle_order) {
  return w->idle_order() == idle_order && w->in_flight() == 0 && w->accepts_work() &&
         w->config().dispatch == config::Dispatch::Master;
}

}  // namespace

void Dispatcher::worker_idle(WorkerProcess& w) {
  none_accepts_ = false;
  // Round-robin never takes from the stack; and once the workers changed (the epoch
  // moved), its entries may name a destroyed worker and the next refresh rebuilds it
  // from every idle worker, this one included.
  if (pool_->balance != config::Balance::LeastBusy || workers_epoch_ != ctx_.workers_epoch || workers_stale_) return;
  idle_.push(&w, w.idle_order(), 2 * workers_.size() + 64, still_idle);
}

void Dispatcher::rebuild_workers() {
  workers_stale_ = false;
  workers_epoch_ = ctx_.workers_epoch;
  none_accepts_ = false;
  list_workers_(workers_);
  std::vector<IdleWorkers<WorkerProcess>::Entry> idle;
  bool any = false, all_nonblocking = true;
  for (WorkerProcess* w : workers_) {
    if (pool_->balance == config::Balance::LeastBusy && still_idle(w, w->idle_order()))
      idle.push_back({w, w->idle_order()});
    if (w->phase() == WorkerPhase::Ready) {
      any = true;
      all_nonblocking = all_nonblocking && w->wants_nonblocking();
    }
  }
  idle_.reset(std::move(idle));
  // The next connections are accepted in the mode the ready workers asked for in READY;
  // a pool of both kinds (a reload from one program to another) gets blocking ones.
  if (any) accept_nonblocking_ = all_nonblocking;
}

WorkerProcess* Dispatcher::choose() {
  // Least-busy, with an idle worker: the most recently idle one, without looking at the
  // others (a pool of 1,000 workers costs what a pool of 4 does).
  if (pool_->balance == config::Balance::LeastBusy) {
    if (WorkerProcess* w = idle_.take(still_idle)) return w;
    // With max_inflight = 1 only an idle worker takes work, and every idle one is in the
    // stack: pushed when it went idle (ready, DONE, PARK), or put back by the rebuild
    // that follows whatever else can make it able to take work again (a writable
    // channel, a phase, a reload: each moves the epoch). Nobody, then, without a look at
    // every worker (a saturated pool of 1,000 looked at all of them at each connection).
    if (pool_->max_inflight == 1) {
      none_accepts_ = true;
      return nullptr;
    }
  }
  // Every worker busy (or round-robin): WorkerChoice over all of them.
  if (none_accepts_) return nullptr;
  const auto pick = choice_.pick(workers_.size(), [this](std::size_t i) {
    const WorkerProcess* w = workers_[i];
    return Candidate{w->accepts_work(), w->in_flight(), w->idle_order()};
  });
  if (!pick) none_accepts_ = true;
  return pick ? workers_[*pick] : nullptr;
}

void Dispatcher::update_accepting() {
  // A full queue stops accepting: new connections wait in the kernel's backlog instead,
  // where they cost the master nothing.
  const bool room = queue_.size() < static_cast<std::size_t>(pool_->queue_limit) || has_capacity();
  const bool want = !shut_ && !paused_ && paused_reason_.empty() && room;
  if (want == accepting_) return;
  accepting_ = want;
  for (std::size_t i = 0; i < accept_watches_.size(); ++i) {
    if (want) accept_watches_[i]->start(UV_READABLE, [this, i](int, int) { accept_from(i); });
    else accept_watches_[i]->stop();
  }
}

void Dispatcher::accept_from(std::size_t listener) {
  refresh_workers();  // accept_nonblocking_ as the workers asked, from the first connection
  for (int n = 0; n < kAcceptBatch && !shut_; ++n) {
    sockaddr_storage peer{};
    socklen_t len = sizeof peer;
    // Non-blocking when the workers asked for it (event loops): then they need not set it.
    const int fd = ::accept4(listener_fds_[listener], reinterpret_cast<sockaddr*>(&peer), &len,
                             SOCK_CLOEXEC | (accept_nonblocking_ ? SOCK_NONBLOCK : 0));
    if (fd < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      if (out_of_resources(errno)) {
        const int err = errno;
        pause_for_descriptors(std::string("accept: ") + std::strerror(err), err != EMFILE);
        break;
      }
      continue;  // ECONNABORTED and friends: that client is gone, the next one may not be
    }
    ctx_.scoreboard->count(index_, shm::PoolCounter::Accepted);
    queue_.push_back(Pending{OwnedFd(fd), static_cast<std::uint16_t>(listener), ++next_id_, Clock::now(), peer, len,
                             (accept_nonblocking_ ? FP_FD_NONBLOCK : 0u) | listener_nodelay_[listener]});
    dispatch_queued();  // each at once; the scoreboard and the timer once the batch is in
    if (queue_.size() >= static_cast<std::size_t>(pool_->queue_limit)) break;
    // accept returns the lowest free descriptor, so every one below `fd` is in use.
    if (fd >= fd_limit_ - ctx_.fd_reserve) {
      pause_for_descriptors("descriptor " + std::to_string(fd) + " of at most " + std::to_string(fd_limit_) +
                                " is in use",
                            false);
      break;
    }
    // The episode ends with an accept that leaves the reserve untouched, not merely with
    // one that succeeded, so a master hovering at the edge logs once, not every pause.
    if (emfile_episode_) {
      emfile_episode_ = false;
      if (episode_logged_) log::info("listener.accept_resumed", "pool {}: accepting again", pool_->name);
    }
  }
  publish();
  arm_queue_timer();
  update_accepting();
  if (accept_hook_) accept_hook_();
}

bool Dispatcher::descriptors_short() {
  fd_limit_ = descriptor_limit();  // it may have been changed from outside
  const int probe = ::fcntl(ctx_.dev_null, F_DUPFD_CLOEXEC, 0);
  if (probe < 0) return true;
  ::close(probe);
  return probe >= fd_limit_ - ctx_.fd_reserve;
}

void Dispatcher::pause_for_descriptors(const std::string& why, bool system_wide) {
  if (!emfile_episode_) {
    if (!pause_log_) pause_log_ = std::make_unique<log::RepeatedWarning>(ctx_.loop, "listener.accept_paused", 1);
    episode_logged_ = pause_log_->warn(fmt::format("pool {}: accept pauses for want of descriptors", pool_->name), [&] {
      return fmt::format("pool {}: {}; pausing accepts, keeping {} descriptors free (logged once until it recovers)",
                         pool_->name, why, ctx_.fd_reserve);
    });
  }
  emfile_episode_ = true;
  paused_reason_ = "out of descriptors (" + why + ")";
  // The kernel's backlog holds new connections meanwhile. This master's descriptors are
  // freed only by its own code (a connection handed to a worker or timed out, a worker
  // that exits, a client that goes), so accepting resumes right after the loop turn that
  // freed one. A system-wide shortage is freed by others: try again after a pause.
  // (Looking after every turn there would spin: nothing here shows the kernel's tables.)
  if (system_wide) {
    emfile_pause_.start(kEmfilePause, [this] { resume(); });
  } else {
    auto look = [this] {
      if (!descriptors_short()) resume();
    };
    freed_.start(look);
    emfile_pause_.start_repeating(kLimitRecheck, look);
  }
  update_accepting();
}

void Dispatcher::resume() {
  paused_reason_.clear();
  freed_.stop();
  emfile_pause_.stop();
  update_accepting();
}

void Dispatcher::pump() {
  dispatch_queued();
  publish();
  arm_queue_timer();
  update_accepting();
}

void Dispatcher::dispatch_queued() {
  while (!queue_.empty()) {
    refresh_workers();  // a look at a counter, unless the workers changed
    WorkerProcess* const chosen = choose();
    if (chosen == nullptr) break;
    WorkerProcess& w = *chosen;
    Pending& p = queue_.front();
    if ((p.fd_flags & FP_FD_NONBLOCK) != 0 && !w.wants_nonblocking()) {
      // A worker that did not ask gets no connection the master made non-blocking (the
      // protocol before FP_FD_NONBLOCK, for workers that never set the mode).
      int off = 0;
      ::ioctl(p.fd.get(), FIONBIO, &off);
      p.fd_flags &= ~FP_FD_NONBLOCK;
    }
    const Clock::time_point now = Clock::now();
    if (w.send_connection(p.fd.get(), p.listener, p.id, p.peer, p.peer_len, p.accepted,
                          p.fd_flags | (last_connections_ ? FP_FD_LAST : 0u), now) ==
        SendResult::Sent) {
      const auto waited = std::chrono::duration_cast<std::chrono::microseconds>(now - p.accepted);
      ctx_.scoreboard->record_queue_wait(index_, static_cast<std::uint64_t>(waited.count()));
      ctx_.scoreboard->count(index_, shm::PoolCounter::Dispatched);
      ++in_flight_;
      queue_.pop_front();  // closes the master's copy: the worker holds the connection now
    }
    // Sent or not (its channel full or gone), this worker's standing changed; if it is
    // idle still, it gets its entry back at the next refresh (a channel that takes
    // records again moves the epoch).
  }
}

void Dispatcher::on_done(std::chrono::microseconds held) {
  ctx_.scoreboard->count(index_, shm::PoolCounter::Completed);
  ctx_.scoreboard->record_duration(index_, static_cast<std::uint64_t>(held.count()));
  if (in_flight_ > 0) --in_flight_;
  none_accepts_ = false;
  pump();
}

void Dispatcher::on_lost(std::size_t count) {
  if (count == 0) return;
  ctx_.scoreboard->count(index_, shm::PoolCounter::Lost, count);
  in_flight_ -= std::min<std::uint64_t>(in_flight_, count);
  log::at_with(spdlog::level::warn, "worker.connections_lost",
               [&] { return nlohmann::json{{"pool", pool_->name}, {"count", count}}; },
               "pool {}: {} connection(s) ended with their worker, without DONE", pool_->name, count);
  publish();
}

ParkedConnections& Dispatcher::parked_connections() {
  if (!parked_) {
    parked_ = std::make_unique<ParkedConnections>(
        ctx_.loop, ParkedConnections::Handlers{
                       [this](ParkedConnections::Connection c) { resume_parked(std::move(c)); },
                       [this](const ParkedConnections::Connection& c, ParkedConnections::Ending why) {
                         parked_closed(c, why);
                       }});
    parked_->set_limits(pool_->keepalive_timeout, static_cast<std::size_t>(pool_->max_parked));
  }
  return *parked_;
}

void Dispatcher::on_parked(std::uint64_t id, const HeldConnection& held, base::OwnedFd fd, std::uint32_t fd_flags) {
  ctx_.scoreboard->count(index_, shm::PoolCounter::Parked);
  ctx_.scoreboard->record_duration(
      index_, static_cast<std::uint64_t>(
                  std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - held.since).count()));
  if (in_flight_ > 0) --in_flight_;
  none_accepts_ = false;
  if (shut_ || paused_) {
    ctx_.scoreboard->count(index_, shm::PoolCounter::ParkedClosed);  // `fd` closes here
    log::debug("keepalive.closed", "pool {}: closing parked connection {} from {} as the pool stops", pool_->name,
               id, describe_peer(held.peer, held.peer_len));
  } else {
    try {
      ParkedConnections& parked = parked_connections();
      // Descriptors short: the oldest parked connection makes room, so the reserve stays.
      if (fd.get() >= fd_limit_ - ctx_.fd_reserve) parked.evict_oldest();
      parked.park(
          ParkedConnections::Connection{std::move(fd), id, held.listener, held.peer, held.peer_len, {}, fd_flags});
    } catch (const std::system_error& e) {
      // No epoll set (out of descriptors or memory): the connection cannot wait here.
      ctx_.scoreboard->count(index_, shm::PoolCounter::KeepaliveTimeouts);
      log::warn("keepalive.unavailable", "pool {}: cannot hold parked connections ({}); closed connection {}",
                pool_->name, e.what(), id);
    }
  }
  pump();
}

void Dispatcher::resume_parked(ParkedConnections::Connection c) {
  ctx_.scoreboard->count(index_, shm::PoolCounter::Resumed);
  queue_.push_back(Pending{std::move(c.fd), c.listener, c.id, Clock::now(), c.peer, c.peer_len, c.fd_flags});
  pump();
  if (accept_hook_) accept_hook_();
}

void Dispatcher::parked_closed(const ParkedConnections::Connection& c, ParkedConnections::Ending why) {
  const bool by_peer = why == ParkedConnections::Ending::PeerClosed;
  ctx_.scoreboard->count(index_, by_peer ? shm::PoolCounter::KeepaliveClosed : shm::PoolCounter::KeepaliveTimeouts);
  log::debug("keepalive.closed", "pool {}: parked connection {} from {} {}", pool_->name, c.id,
             describe_peer(c.peer, c.peer_len),
             by_peer ? "closed by the client"
                     : why == ParkedConnections::Ending::TimedOut ? "closed after keepalive_timeout"
                                                                  : "closed early to make room (max_parked or descriptors)");
  publish();
}

void Dispatcher::close_parked(const char* why) {
  if (!parked_) return;
  const std::size_t n = parked_->close_all();
  if (n == 0) return;
  ctx_.scoreboard->count(index_, shm::PoolCounter::ParkedClosed, n);
  publish();  // parked_now: 0
  log::debug("keepalive.closed", "pool {}: closed {} parked connection(s) {}", pool_->name, n, why);
}

void Dispatcher::arm_queue_timer() {
  // A timer runs only while something waits, so an idle master sleeps without one.
  if (pool_->queue_timeout.count() == 0 || queue_.empty()) {
    queue_timer_.stop();
    return;
  }
  const auto due = queue_.front().accepted + pool_->queue_timeout;
  // Armed for this deadline or an earlier one: it stands (restarting it at every
  // connection cost a clock read and two heap operations in libuv). Firing early, as the
  // connection it was armed for left the queue, it finds nothing expired and arms again.
  if (queue_timer_.active() && queue_timer_due_ <= due) return;
  queue_timer_due_ = due;
  const auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(due - Clock::now());
  queue_timer_.start(wait + std::chrono::milliseconds(1), [this] { expire_queue(); });
}

void Dispatcher::expire_queue() {
  const auto now = Clock::now();
  while (!queue_.empty() && now - queue_.front().accepted >= pool_->queue_timeout) {
    const Pending& p = queue_.front();
    log::at_with(
        spdlog::level::debug, "queue.timeout",
        [&] {
          return nlohmann::json{{"pool", pool_->name}, {"conn", p.id}, {"peer", describe_peer(p.peer, p.peer_len)}};
        },
        "pool {}: closing connection {} from {} after {} in the queue", pool_->name, p.id,
        describe_peer(p.peer, p.peer_len), format_uptime(pool_->queue_timeout));
    ctx_.scoreboard->count(index_, shm::PoolCounter::QueueTimeouts);
    log_unserved(p, access_log::Outcome::QueueTimeout);
    queue_.pop_front();
  }
  publish();
  arm_queue_timer();
  update_accepting();
}

void Dispatcher::shut() {
  if (shut_) return;
  shut_ = true;
  update_accepting();
  // The listeners close after this; their watches must be gone first (libuv removes a
  // closing watch's fd number from epoll, whatever it refers to by then).
  accept_watches_.clear();
  listeners_.clear();  // nor does the dispatcher keep them open
  accepting_ = false;
  emfile_pause_.stop();
  freed_.stop();
  paused_reason_.clear();
  close_queue("at shutdown");
  close_parked("at shutdown");
  parked_.reset();
  publish();
}

void Dispatcher::set_paused(bool paused) {
  paused_ = paused;
  if (paused) {
    close_queue("as the pool stops");
    close_parked("as the pool stops");
  }
  update_accepting();
}

void Dispatcher::close_queue(const char* why) {
  queue_timer_.stop();
  for (const Pending& p : queue_) {
    log::at_with(
        spdlog::level::debug, "queue.closed",
        [&] {
          return nlohmann::json{{"pool", pool_->name}, {"conn", p.id}, {"peer", describe_peer(p.peer, p.peer_len)}};
        },
        "pool {}: closing queued connection {} from {} {}", pool_->name, p.id, describe_peer(p.peer, p.peer_len), why);
    ctx_.scoreboard->count(index_, shm::PoolCounter::Closed);
    log_unserved(p, access_log::Outcome::Closed);
  }
  queue_.clear();
  publish();
}

void Dispatcher::log_unserved(const Pending& p, access_log::Outcome outcome) const {
  if (!access_log::enabled()) return;
  access_log::Record r;
  r.pool = pool_->name;
  r.peer = &p.peer;
  r.peer_len = p.peer_len;
  r.id = p.id;
  r.queue_wait = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - p.accepted);
  r.outcome = outcome;
  access_log::write(r);
}

void Dispatcher::publish() {
  ctx_.scoreboard->set_queued(index_, queue_.size());
  ctx_.scoreboard->set_in_flight(index_, in_flight_);
  ctx_.scoreboard->set_parked(index_, parked_ ? parked_->size() : 0);
  if (held_hook_) held_hook_();
}

}  // namespace forkpool::supervisor
