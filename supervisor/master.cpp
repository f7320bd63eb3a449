// SPDX-License-Identifier: Apache-2.0
#include "supervisor/master.hpp"

#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <stdexcept>

#include "config/names.hpp"
#include "supervisor/dispatch/descriptor_budget.hpp"
#include "supervisor/observe/access_log.hpp"
#include "supervisor/observe/log.hpp"
#include "supervisor/observe/prometheus.hpp"
#include "supervisor/observe/status_json.hpp"
#include "supervisor/process/descendants.hpp"
#include "supervisor/upgrade/preflight.hpp"
#include "supervisor/version.hpp"

namespace forkpool::supervisor {
namespace {

// Scoreboard slots a pool may want: worker numbers up to its ceiling (its size plus a few
// for TTIN/scale), and as many again for replacements that start before the worker they
// replace stops. The scoreboard is sized with room beyond the sum, for reloads.
std::size_t slots_wanted(const config::PoolConfig& p) {
  return static_cast<std::size_t>(2 * pool_ceiling(p));
}

// Each slot page is an fd; let the master use every fd the hard limit allows.
void raise_fd_limit() {
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &rl);
  }
}

}  // namespace

Loop::Loop() {
  if (uv_loop_init(&loop_) != 0) throw std::runtime_error("uv_loop_init failed");
}

Loop::~Loop() {
  // Let the close callbacks of every handle run, then release the loop.
  uv_run(&loop_, UV_RUN_NOWAIT);
  uv_loop_close(&loop_);
}

void Master::prepare_process() {
  ctx_.loop = loop_.get();
  ctx_.pid = ::getpid();
  // Orphans of our workers (a daemonising grandchild, say) come to us, not to init,
  // and we reap them. As PID 1 this is automatic.
  if (ctx_.pid != 1 && ::prctl(PR_SET_CHILD_SUBREAPER, 1) != 0)
    log::warn("master.subreaper", "prctl(PR_SET_CHILD_SUBREAPER): {}", std::strerror(errno));
  raise_fd_limit();
  std::signal(SIGPIPE, SIG_IGN);

  dev_null_.reset(::open("/dev/null", O_RDWR | O_CLOEXEC));
  if (!dev_null_) throw std::runtime_error(std::string("open /dev/null: ") + std::strerror(errno));
  ctx_.dev_null = dev_null_.get();
}

Master::Master(config::Config config) : cleanup_(loop_.get()) {
  prepare_process();
  binary_ = upgrade::own_binary_path();
  auto shared = std::make_shared<const config::Config>(std::move(config));
  InheritedSockets inherited = InheritedSockets::from_environment();
  // Throws naming the address; sockets bound before the failure close (and their
  // files go) with the half-built set.
  ListenerSet listeners = ListenerSet::build(*shared, nullptr, inherited);
  if (const auto unclaimed = inherited.close_unclaimed(); !unclaimed.empty()) {
    std::string addresses;
    for (const auto& a : unclaimed) addresses += (addresses.empty() ? "" : ", ") + a;
    log::warn("listener.unclaimed", "closed {} passed socket(s) that match no configured listen address: {}",
              unclaimed.size(), addresses);
  }

  std::size_t slots = 0;
  for (const auto& pool : shared->pools) slots += slots_wanted(pool);
  scoreboard_ = std::make_unique<shm::Scoreboard>(shm::Scoreboard::pool_room(shared->pools.size()),
                                                  shm::Scoreboard::slot_room(slots));
  ctx_.scoreboard = scoreboard_.get();
  ctx_.changed = [this] { on_changed(); };

  generation_ = std::make_unique<Generation>(1, shared, std::move(listeners));
  for (const auto& pool : shared->pools) {
    generation_->pools().push_back(generation_->make_pool(ctx_, pool));
    for (const auto& l : generation_->pools().back()->listeners()) log_opened(pool.name, *l);
  }

  control_ = make_control_server(supervisor_config());
  metrics_http_ = make_metrics_server(supervisor_config());
  wire(*shared, false);
}

void Master::wire(const config::Config& config, bool adopting) {
  ctx_.events = [this](const nlohmann::json& e) {
    if (control_) control_->broadcast(e);
    for (auto& moved : moved_controls_) moved->broadcast(e);
  };

  signals_ = std::make_unique<SignalQueue>(loop_.get(), [this](int s) { on_signal(s); });
  child_signal_ = std::make_unique<SignalWatch>(loop_.get(), SIGCHLD, [this](int s) { on_signal(s); });
  systemd_ = std::make_unique<SystemdNotify>(loop_.get());

  // Last, when everything the master holds for itself is open: a limit that cannot hold
  // the workers would pause accepting for ever, so refuse to start instead.
  const DescriptorBudget budget = descriptor_budget(config);
  if (std::string why = describe_shortfall(budget); !why.empty()) {
    // After a binary upgrade the workers run already: their descriptors are open (counted
    // in `open`, and again for the workers), and the previous image ran them under this
    // very limit. Refusing now would take every worker down with the master.
    if (!adopting) throw std::runtime_error(why);
    if (budget.open + budget.reserve > budget.limit)
      log::warn("master.descriptors_short", "{} open of RLIMIT_NOFILE {}, {} kept free for starting workers and "
                "control: accepting stops at {}; raise the limit (ulimit -n, systemd LimitNOFILE=)",
                budget.open, budget.limit, budget.reserve, budget.limit - budget.reserve);
  }
  ctx_.fd_reserve = budget.reserve;
}

namespace {

// A bind that fails names where the key is written, as config errors do.
[[noreturn]] void rethrow_at(const std::string& place, const std::exception& e) {
  if (place.empty()) throw;
  throw std::runtime_error(place + ": " + e.what());
}

}  // namespace

std::unique_ptr<ControlServer> Master::make_control_server(const config::SupervisorConfig& s) {
  try {
    return std::make_unique<ControlServer>(
        loop_.get(), s, [this](ControlClient& c, const nlohmann::json& r) { run_command(*this, c, r); });
  } catch (const std::runtime_error& e) {
    rethrow_at(s.control_socket_place, e);
  }
}

std::unique_ptr<MetricsHttpServer> Master::make_metrics_server(const config::SupervisorConfig& s) {
  if (s.metrics_listen.empty()) return nullptr;
  std::unique_ptr<MetricsHttpServer> server;
  try {
    server = std::make_unique<MetricsHttpServer>(loop_.get(), s.metrics_listen,
                                                 [this](std::string_view path) { return serve_http(path); });
  } catch (const std::runtime_error& e) {
    rethrow_at(s.metrics_listen_place, e);
  }
  log::info("metrics.listen", "metrics on http://{}/metrics", server->address());
  return server;
}

Master::~Master() {
  // Handles close in an order that lets pools drop their workers' handles first.
  ctx_.events = nullptr;
  metrics_http_.reset();
  control_.reset();
  moved_controls_.clear();
  removed_pools_.clear();
  generation_.reset();
  signals_.reset();
  child_signal_.reset();
  systemd_.reset();
  shutdown_deadline_.reset();
}

StatusModel Master::status_model() {
  StatusModel m;
  m.master_pid = ctx_.pid;
  m.version = kVersion;
  m.config_file = generation_->config().file.string();
  m.generation = generation_->number();
  m.state = state_ == MasterState::Starting ? "starting" : state_ == MasterState::Running ? "running" : "stopping";
  m.uptime_s = std::chrono::duration<double>(Clock::now() - started_).count();
  m.upgrades = upgrades_;
  m.last_upgrade = last_upgrade_;
  for (const auto& pool : generation_->pools()) m.pools.push_back(pool->status());
  for (const auto& pool : removed_pools_) m.pools.push_back(pool->status());
  return m;
}

Pool* Master::find_pool(std::string_view name) { return generation_->find_pool(name); }

std::vector<std::string> Master::pool_names() const {
  std::vector<std::string> names;
  for (const auto& pool : generation_->pools()) names.push_back(pool->name());
  return names;
}

std::vector<shm::OwnedFd> Master::scoreboard_fds(nlohmann::json& info) {
  // Reopened read-only: a reader (forkpoolctl top) can map them but never write the
  // counters or a worker's page, whoever it is.
  auto read_only = [](int fd) {
    const std::string path = "/proc/self/fd/" + std::to_string(fd);
    return shm::OwnedFd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  };
  std::vector<shm::OwnedFd> fds;
  fds.push_back(read_only(scoreboard_->region_fd()));
  nlohmann::json epochs = nlohmann::json::array();
  // Only slots that have been used have pages; they are the first slots_paged().
  for (std::uint32_t i = 0; i < scoreboard_->slots_paged(); ++i) {
    fds.push_back(read_only(scoreboard_->slot_fd(i)));
    epochs.push_back(scoreboard_->slot_epoch(i));
  }
  for (const auto& fd : fds)
    if (!fd) throw std::runtime_error(std::string("reopening the scoreboard read-only: ") + std::strerror(errno));
  info["slots"] = scoreboard_->slots_paged();
  info["epochs"] = std::move(epochs);
  // Names by pool block: a reload frees and reuses blocks, so the order is the blocks'.
  nlohmann::json names = nlohmann::json::array();
  for (std::uint32_t i = 0; i < scoreboard_->pool_count(); ++i) names.push_back("");
  for_each_pool([&](Pool& p) { names[p.index()] = p.name(); });
  info["pools"] = std::move(names);
  return fds;
}

MetricsHttpServer::Response Master::serve_http(std::string_view path) {
  if (path == "/metrics") return {200, "text/plain; version=0.0.4; charset=utf-8", prometheus_text(status_model())};
  if (path == "/status") {
    return {200, "application/json", status_text(status_model(), true) + "\n"};
  }
  // Healthy when every started pool has at least one ready worker, can accept and has
  // not failed: a failed pool may still serve with workers of the generation before a
  // broken deploy, and that is what a health check must see.
  std::string unhealthy;
  std::string failed;
  std::string paused;
  for (const auto& pool : generation_->pools()) {
    if (pool->state() != shm::PoolState::Stopped && pool->ready_count() == 0)
      unhealthy += (unhealthy.empty() ? "" : ", ") + pool->name();
    else if (pool->state() == shm::PoolState::Failed)
      failed += (failed.empty() ? "" : ", ") + pool->name();
    if (std::string why = pool->accept_paused_reason(); !why.empty())
      paused += "pool " + pool->name() + " cannot accept: " + why + "\n";
  }
  if (unhealthy.empty() && failed.empty() && paused.empty()) return {200, "text/plain", "ok\n"};
  std::string body;
  if (!unhealthy.empty()) body += "no ready worker in pool(s): " + unhealthy + "\n";
  if (!failed.empty()) body += "failed pool(s), serving with the workers they had: " + failed + "\n";
  return {503, "text/plain", body + paused};
}

int Master::run() {
  if (adopted_) {
    resume_after_upgrade();  // a binary upgrade: the pools run already
  } else {
    log::info("master.start", "forkpool master pid {} starting {} pool(s) from {}", ctx_.pid,
              generation_->pools().size(), generation_->config().file.string());
    // Until every pool was asked to start, one that has not been is not "settled".
    launching_ = true;
    for (auto& pool : generation_->pools()) pool->start();
    launching_ = false;
    on_changed();
  }
  uv_run(loop_.get(), UV_RUN_DEFAULT);
  log::info("master.exit", "every worker has exited; master pid {} exits", ctx_.pid);
  return 0;
}

void Master::on_signal(int signo) {
  switch (signo) {
    case SIGCHLD: reap(); return;
    case SIGTERM:
    case SIGINT: shutdown(false); return;
    case SIGQUIT: shutdown(true); return;
    case SIGUSR1:
      log::reopen();
      access_log::reopen();
      return;
    case SIGTTIN: resize_fixed_pools(+1); return;
    case SIGTTOU: resize_fixed_pools(-1); return;
    case SIGHUP: reload("SIGHUP"); return;
    case SIGUSR2: upgrade("SIGUSR2", nullptr); return;
    default: break;
  }
  if (!is_ignored_signal(signo)) return;
  // At most once a minute for each: a log file over RLIMIT_FSIZE raises SIGXFSZ at every
  // write, this line's included.
  const auto now = Clock::now();
  auto [at, first] = ignored_signal_logged_.try_emplace(signo, now);
  if (!first && now - at->second < std::chrono::minutes(1)) return;
  at->second = now;
  const char* name = sigabbrev_np(signo);
  log::warn("master.signal_ignored", "ignoring signal {} ({}){}", signo, name != nullptr ? name : "real-time",
            signo == SIGXFSZ ? ": a file the master writes (its log?) reached the size limit (ulimit -f)" : "");
}

void Master::reap() {
  while (true) {
    // Look before reaping: while a worker is a zombie its pid still names its process
    // group, so the group can be killed without any chance of hitting a reused id.
    siginfo_t info{};
    if (::waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT) != 0) {
      if (errno == EINTR) continue;
      break;
    }
    const pid_t pid = info.si_pid;
    if (pid <= 0) break;
    auto it = ctx_.owners.find(pid);
    const bool probe = preflight_ && preflight_->owns(pid);
    // Every worker leads its own process group: what it forked goes with it, so no
    // grandchild keeps a port or a connection the worker had (a shared listener, say).
    // So does a run of an upgrade's new binary.
    if (it != ctx_.owners.end() || probe) ::kill(-pid, SIGKILL);
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (probe) {
      preflight_->exited(status);
      continue;
    }
    if (it == ctx_.owners.end()) {
      log::debug("orphan.reaped", "reaped pid {} (not a worker): {}", pid, describe_wait_status(status));
      continue;
    }
    it->second->handle_exit(pid, status);
  }
  // At shutdown the master waits for the descendants it stopped, not only its workers.
  if (state_ == MasterState::Stopping) on_changed();
}

int Master::kill_orphans() {
  // Called once every worker is gone: whatever children are left are orphans.
  const std::vector<pid_t> orphans = children_of(ctx_.pid);
  if (!orphans.empty())
    log::info("orphan.stop", "stopping {} process(es) that workers left behind (SIGKILL)", orphans.size());
  for (pid_t pid : orphans) ::kill(pid, SIGKILL);  // a child of ours, not reaped: its pid is not reused
  return static_cast<int>(orphans.size());
}

void Master::shutdown(bool fast) {
  if (state_ == MasterState::Stopping && !fast) {
    log::info("master.stopping", "already stopping; send SIGQUIT to stop at once");
    return;
  }
  const bool first = state_ != MasterState::Stopping;
  state_ = MasterState::Stopping;
  abandon_upgrade("the master is shutting down");
  log::info("master.stop", "{} shutdown", fast ? "fast" : "graceful");
  if (first) {
    systemd_->stopping();
    for_each_pool([](Pool& p) { p.close_listeners(); });
    const auto timeout = supervisor_config().shutdown_timeout;
    if (!fast && timeout.count() > 0) {
      shutdown_deadline_ = std::make_unique<Timer>(loop_.get());
      shutdown_deadline_->start(timeout, [this, timeout] {
        log::warn("master.shutdown_timeout", "shutdown_timeout {} passed; killing the remaining workers",
                  format_uptime(timeout));
        for_each_pool([](Pool& p) { p.stop(true); });
      });
    }
  }
  for_each_pool([fast](Pool& p) { p.stop(fast); });
  on_changed();
}

void Master::resize_fixed_pools(int delta) {
  for (auto& pool : generation_->pools()) {
    if (pool->state() == shm::PoolState::Stopping) continue;
    if (pool->dynamic()) {
      // The target moves within min_workers..max_workers; at a bound, TTIN/TTOU do nothing.
      const int target = pool->target() + delta;
      if (target < pool->min_workers() || target > pool->max_workers()) {
        log::info("pool.scale_bound", "pool {} stays at {} workers (min_workers {}, max_workers {})", pool->name(),
                  pool->target(), pool->min_workers(), pool->max_workers());
        continue;
      }
      if (auto error = pool->scale_dynamic(target); !error.empty()) log::warn("pool.capacity", "{}", error);
      continue;
    }
    const int target = pool->target() + delta;
    if (target < 1) continue;
    if (!pool->resize(target))
      log::warn("pool.capacity", "pool {} cannot grow past {} workers", pool->name(), pool->max_size());
  }
}

std::string Master::status_line() const {
  std::string out;
  for (const auto& pool : generation_->pools()) {
    if (!out.empty()) out += "; ";
    out += pool->name() + ": " + std::to_string(pool->ready_count()) + "/" + std::to_string(pool->target()) +
           " ready";
    // While the master starts its pools one after another, one not reached yet is
    // "stopped" only in the sense that it has not begun.
    const bool not_begun = launching_ && pool->state() == shm::PoolState::Stopped;
    if (pool->state() != shm::PoolState::Running)
      out += " (" + std::string(not_begun ? "starting" : shm::to_string(pool->state())) + ")";
  }
  return out;
}

void Master::drop_stopped_removed_pools() {
  std::erase_if(removed_pools_, [](const std::unique_ptr<Pool>& p) {
    if (p->state() != shm::PoolState::Stopped || p->live() > 0) return false;
    log::info("pool.removed", "pool {} has drained; its listeners close", p->name());
    return true;
  });
}

void Master::on_changed() {
  // A reload is moving the pools to the next generation: the old one has none left to
  // look at (they would all count as settled, READY=1 early, an empty STATUS=). reload()
  // calls this again once generation_ is the new one.
  if (committing_) return;
  // Called from inside pools' own calls: a drained removed pool goes on a later turn.
  for (const auto& pool : removed_pools_)
    if (pool->state() == shm::PoolState::Stopped && pool->live() == 0 && !cleanup_.active()) {
      cleanup_.start(std::chrono::milliseconds(0), [this] { drop_stopped_removed_pools(); });
      break;
    }
  if (state_ == MasterState::Stopping) {
    for (const auto& pool : generation_->pools())
      if (pool->live() > 0) return;
    for (const auto& pool : removed_pools_)
      if (pool->live() > 0) return;
    // Descendants of workers that left their process group (setsid) were re-parented
    // to this subreaper: they go too, and the loop runs until they are reaped.
    if (kill_orphans() > 0) return;
    systemd_->stop_watchdog();
    if (shutdown_deadline_) shutdown_deadline_->stop();
    uv_stop(loop_.get());
    return;
  }
  systemd_->status(status_line());
  if (state_ == MasterState::Starting && !launching_) {
    for (const auto& pool : generation_->pools())
      if (!pool->settled()) return;
    state_ = MasterState::Running;
    // systemd hears READY=1 either way, so a failed pool shows in STATUS= and the
    // logs instead of as a start timeout that kills the healthy pools too.
    std::string failed;
    for (const auto& pool : generation_->pools())
      if (pool->state() == shm::PoolState::Failed) failed += (failed.empty() ? "" : ", ") + pool->name();
    if (failed.empty()) log::info("master.ready", "every pool has its workers ready");
    else log::warn("master.ready", "start-up finished with failed pool(s): {}", failed);
    systemd_->ready();
  }
}

}  // namespace forkpool::supervisor
