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
#include "supervisor/observe/log.hpp"
#include "supervisor/observe/prometheus.hpp"
#include "supervisor/observe/status_json.hpp"
#include "supervisor/version.hpp"

namespace forkpool::supervisor {
namespace {

// Scoreboard slots of a pool: worker numbers up to its size plus a few for TTIN/scale,
// and as many again for replacements that start before the worker they replace stops.
std::uint32_t pool_capacity(const config::PoolConfig& p) {
  const int size = std::max(p.workers, p.max_workers);
  return static_cast<std::uint32_t>(2 * (size + std::max(4, size / 4)));
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

Master::Master(config::Config config) : config_(std::move(config)) {
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

  InheritedSockets inherited = InheritedSockets::from_environment();
  std::vector<std::vector<Listener>> listeners;
  try {
    for (const auto& pool : config_.pools) {
      auto& mine = listeners.emplace_back();
      for (const auto& address : pool.listen) {
        mine.push_back(open_listener(address, pool.backlog, inherited));
        log::info("listener.open", "pool {} listens on {}{}", pool.name, mine.back().bound,
                  mine.back().adopted ? " (socket passed by systemd)" : "");
      }
    }
  } catch (...) {
    // Socket files made before the failure would otherwise stay behind.
    for (const auto& mine : listeners)
      for (const auto& l : mine) remove_socket_file(l);
    throw;
  }
  if (std::size_t n = inherited.close_unclaimed())
    log::warn("listener.unclaimed", "closed {} passed socket(s) that match no configured listen address", n);

  std::uint32_t slots = 0;
  for (const auto& pool : config_.pools) slots += pool_capacity(pool);
  scoreboard_ = std::make_unique<shm::Scoreboard>(static_cast<std::uint32_t>(config_.pools.size()), slots);
  ctx_.scoreboard = scoreboard_.get();
  ctx_.changed = [this] { on_changed(); };

  std::uint32_t first = 0;
  for (std::size_t i = 0; i < config_.pools.size(); ++i) {
    const std::uint32_t capacity = pool_capacity(config_.pools[i]);
    pools_.push_back(std::make_unique<Pool>(ctx_, config_.pools[i], static_cast<std::uint32_t>(i), first,
                                            capacity, std::move(listeners[i])));
    first += capacity;
  }

  control_ = std::make_unique<ControlServer>(loop_.get(), config_.supervisor,
                                            [this](ControlClient& c, const nlohmann::json& r) { run_command(*this, c, r); });
  ctx_.events = [this](const nlohmann::json& e) {
    if (control_) control_->broadcast(e);
  };
  if (!config_.supervisor.metrics_listen.empty()) {
    metrics_http_ = std::make_unique<MetricsHttpServer>(loop_.get(), config_.supervisor.metrics_listen,
                                                        [this](std::string_view path) { return serve_http(path); });
    log::info("metrics.listen", "metrics on http://{}/metrics", metrics_http_->address());
  }

  for (int signo : {SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1, SIGUSR2, SIGTTIN, SIGTTOU, SIGCHLD})
    signals_.push_back(std::make_unique<SignalWatch>(loop_.get(), signo, [this](int s) { on_signal(s); }));
  systemd_ = std::make_unique<SystemdNotify>(loop_.get());
}

Master::~Master() {
  // Handles close in an order that lets pools drop their workers' handles first.
  ctx_.events = nullptr;
  metrics_http_.reset();
  control_.reset();
  pools_.clear();
  signals_.clear();
  systemd_.reset();
  shutdown_deadline_.reset();
}

StatusModel Master::status_model() {
  StatusModel m;
  m.master_pid = ctx_.pid;
  m.version = kVersion;
  m.config_file = config_.file.string();
  m.state = state_ == MasterState::Starting ? "starting" : state_ == MasterState::Running ? "running" : "stopping";
  m.uptime_s = std::chrono::duration<double>(Clock::now() - started_).count();
  for (const auto& pool : pools_) m.pools.push_back(pool->status());
  return m;
}

Pool* Master::find_pool(std::string_view name) {
  for (auto& pool : pools_)
    if (pool->name() == name) return pool.get();
  return nullptr;
}

std::vector<std::string> Master::pool_names() const {
  std::vector<std::string> names;
  for (const auto& pool : pools_) names.push_back(pool->name());
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
  for (std::uint32_t i = 0; i < scoreboard_->slot_count(); ++i) {
    fds.push_back(read_only(scoreboard_->slot_fd(i)));
    epochs.push_back(scoreboard_->slot_epoch(i));
  }
  for (const auto& fd : fds)
    if (!fd) throw std::runtime_error(std::string("reopening the scoreboard read-only: ") + std::strerror(errno));
  info["slots"] = scoreboard_->slot_count();
  info["epochs"] = std::move(epochs);
  info["pools"] = pool_names();
  return fds;
}

MetricsHttpServer::Response Master::serve_http(std::string_view path) {
  if (path == "/metrics") return {200, "text/plain; version=0.0.4; charset=utf-8", prometheus_text(status_model())};
  if (path == "/status") {
    nlohmann::json j = status_json(status_model());
    j["ok"] = true;
    return {200, "application/json", j.dump() + "\n"};
  }
  // Healthy when every started pool has at least one ready worker.
  std::string unhealthy;
  for (const auto& pool : pools_)
    if (pool->state() != shm::PoolState::Stopped && pool->ready_count() == 0)
      unhealthy += (unhealthy.empty() ? "" : ", ") + pool->name();
  if (unhealthy.empty()) return {200, "text/plain", "ok\n"};
  return {503, "text/plain", "no ready worker in pool(s): " + unhealthy + "\n"};
}

int Master::run() {
  log::info("master.start", "forkpool master pid {} starting {} pool(s) from {}", ctx_.pid, pools_.size(),
            config_.file.string());
  // Until every pool was asked to start, one that has not been is not "settled".
  launching_ = true;
  for (auto& pool : pools_) pool->start();
  launching_ = false;
  on_changed();
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
    case SIGUSR1: log::reopen(); return;
    case SIGTTIN: resize_fixed_pools(+1); return;
    case SIGTTOU: resize_fixed_pools(-1); return;
    case SIGHUP:
    case SIGUSR2:
      log::warn("master.unsupported_signal", "SIG{} (reload / binary upgrade) is not available in this version; ignored",
                sigabbrev_np(signo));
      return;
    default: return;
  }
}

void Master::reap() {
  while (true) {
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, WNOHANG);
    if (pid < 0 && errno == EINTR) continue;
    if (pid <= 0) return;
    auto it = ctx_.owners.find(pid);
    if (it == ctx_.owners.end()) {
      log::debug("orphan.reaped", "reaped pid {} (not a worker): {}", pid, describe_wait_status(status));
      continue;
    }
    it->second->handle_exit(pid, status);
  }
}

void Master::shutdown(bool fast) {
  if (state_ == MasterState::Stopping && !fast) {
    log::info("master.stopping", "already stopping; send SIGQUIT to stop at once");
    return;
  }
  const bool first = state_ != MasterState::Stopping;
  state_ = MasterState::Stopping;
  log::info("master.stop", "{} shutdown", fast ? "fast" : "graceful");
  if (first) {
    systemd_->stopping();
    for (auto& pool : pools_) pool->close_listeners();
    if (!fast && config_.supervisor.shutdown_timeout.count() > 0) {
      shutdown_deadline_ = std::make_unique<Timer>(loop_.get());
      shutdown_deadline_->start(config_.supervisor.shutdown_timeout, [this] {
        log::warn("master.shutdown_timeout", "shutdown_timeout {} passed; killing the remaining workers",
                  format_uptime(config_.supervisor.shutdown_timeout));
        for (auto& pool : pools_) pool->stop(true);
      });
    }
  }
  for (auto& pool : pools_) pool->stop(fast);
  on_changed();
}

void Master::resize_fixed_pools(int delta) {
  for (auto& pool : pools_) {
    if (pool->config().dynamic || pool->state() == shm::PoolState::Stopping) continue;
    const int target = pool->target() + delta;
    if (target < 1) continue;
    if (!pool->resize(target))
      log::warn("pool.capacity", "pool {} cannot grow past {} workers (its scoreboard capacity)", pool->name(),
                pool->max_size());
  }
}

std::string Master::status_line() const {
  std::string out;
  for (const auto& pool : pools_) {
    if (!out.empty()) out += "; ";
    out += pool->name() + ": " + std::to_string(pool->ready_count()) + "/" + std::to_string(pool->target()) +
           " ready";
    if (pool->state() != shm::PoolState::Running) out += " (" + std::string(shm::to_string(pool->state())) + ")";
  }
  return out;
}

void Master::on_changed() {
  if (state_ == MasterState::Stopping) {
    for (const auto& pool : pools_)
      if (pool->live() > 0) return;
    systemd_->stop_watchdog();
    if (shutdown_deadline_) shutdown_deadline_->stop();
    uv_stop(loop_.get());
    return;
  }
  systemd_->status(status_line());
  if (state_ == MasterState::Starting && !launching_) {
    for (const auto& pool : pools_)
      if (!pool->settled()) return;
    state_ = MasterState::Running;
    // systemd hears READY=1 either way, so a failed pool shows in STATUS= and the
    // logs instead of as a start timeout that kills the healthy pools too.
    std::string failed;
    for (const auto& pool : pools_)
      if (pool->state() == shm::PoolState::Failed) failed += (failed.empty() ? "" : ", ") + pool->name();
    if (failed.empty()) log::info("master.ready", "every pool has its workers ready");
    else log::warn("master.ready", "start-up finished with failed pool(s): {}", failed);
    systemd_->ready();
  }
}

}  // namespace forkpool::supervisor
