// SPDX-License-Identifier: Apache-2.0
#include "ctl/top.hpp"

#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <optional>
#include <string>

#include "ctl/live_scoreboard.hpp"
#include "ctl/proc_stat_files.hpp"
#include "ctl/render_top.hpp"
#include "ctl/terminal.hpp"
#include "shm/region.hpp"

namespace forkpool::ctl {

namespace {

// The master samples RSS and CPU time only when max_memory asks it to; top reads them
// from /proc itself, which costs the master nothing. Only for the rows a terminal of
// `height` lines shows (0: every row): /proc/PID/stat is most of a frame's cost with
// many workers. The rows are counted as render_top_frame lays them out (two header lines;
// per pool a blank line, its line, perhaps a scale line, the table header).
void fill_usage(shm::ScoreboardSnapshot& snapshot, std::size_t height, ProcStatFiles& files) {
  std::size_t row = 2;
  for (const auto& p : snapshot.pools) {
    if (!p.in_use) continue;
    row += 3 + (p.last_scale.reason != shm::ScaleReason::None ? 1 : 0);
    for (auto& w : snapshot.workers) {
      if (w.pool != p.pool || w.state == shm::WorkerState::Empty) continue;
      if (height > 0 && row >= height) return;
      ++row;
      if (w.pid <= 0 || (w.rss_bytes > 0 && w.cpu_time_us > 0)) continue;
      if (auto stats = files.read(w.slot, w.pid)) {
        w.rss_bytes = stats->rss_bytes;
        w.cpu_time_us = stats->cpu_time_us;
      }
    }
  }
}

// Re-fetching descriptors is a request to the master: at most this often, so a pool that
// crash-loops does not turn top into a load on the master.
constexpr std::int64_t kMinRefreshNs = 1'000'000'000;
constexpr std::chrono::milliseconds kRefreshTimeout{2000};

std::string wall_clock() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  ::localtime_r(&now, &tm);
  char buf[16];
  std::strftime(buf, sizeof(buf), "%H:%M:%S", &tm);
  return buf;
}

bool master_alive(std::int32_t pid) {
  return pid > 0 && (::kill(pid, 0) == 0 || errno == EPERM);
}

// Blocks the signals top handles and reads them from a signalfd; restores the mask on exit.
class SignalReader {
 public:
  SignalReader() {
    sigset_t set;
    sigemptyset(&set);
    for (int s : {SIGINT, SIGTERM, SIGHUP, SIGWINCH, SIGTSTP}) sigaddset(&set, s);
    ::sigprocmask(SIG_BLOCK, &set, &old_);
    fd_ = ::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    if (fd_ < 0) {
      const int err = errno;
      ::sigprocmask(SIG_SETMASK, &old_, nullptr);
      throw std::runtime_error(std::string("signalfd: ") + std::strerror(err));
    }
  }
  ~SignalReader() {
    ::close(fd_);
    ::sigprocmask(SIG_SETMASK, &old_, nullptr);
  }
  SignalReader(const SignalReader&) = delete;
  SignalReader& operator=(const SignalReader&) = delete;

  int fd() const { return fd_; }
  // The next pending signal, 0 if none.
  int next() {
    signalfd_siginfo info{};
    const ssize_t n = ::read(fd_, &info, sizeof(info));
    return n == static_cast<ssize_t>(sizeof(info)) ? static_cast<int>(info.ssi_signo) : 0;
  }

 private:
  int fd_ = -1;
  sigset_t old_{};
};

// The attached scoreboard and what top remembers between frames.
class TopState {
 public:
  explicit TopState(const TopOptions& o) : options_(o), live_(open_live_scoreboard(o.socket)) {}

  // `height`: the terminal's lines, 0 for no limit.
  const shm::ScoreboardSnapshot& take(std::size_t height = 0) {
    snapshot_ = live_.board.snapshot();
    fill_usage(snapshot_, height, stat_files_);
    const bool gone = !master_alive(snapshot_.master_pid);
    if ((gone || has_stale_pages(snapshot_, live_.epochs.size())) &&
        snapshot_.taken_monotonic_ns - last_refresh_ns_ >= kMinRefreshNs) {
      refresh(gone);
    }
    if (gone && notice_.empty())
      notice_ = "master pid " + std::to_string(snapshot_.master_pid) + " has exited";
    rates_.add(snapshot_);
    return snapshot_;
  }

  std::vector<std::string> frame(std::size_t width, std::size_t height, bool colour) const {
    TopFrame f;
    f.snapshot = &snapshot_;
    f.pool_names = &live_.pools;
    f.rates = &rates_;
    f.notice = notice_;
    f.clock = wall_clock();
    f.width = width;
    f.height = height;
    f.colour = colour;
    return render_top_frame(f);
  }

 private:
  void refresh(bool master_gone) {
    last_refresh_ns_ = snapshot_.taken_monotonic_ns;
    try {
      LiveScoreboard fresh = open_live_scoreboard(options_.socket, kRefreshTimeout);
      const bool new_master = master_gone;
      live_ = std::move(fresh);
      snapshot_ = live_.board.snapshot();
      if (new_master) rates_.clear();
      notice_.clear();
    } catch (const std::exception& e) {
      notice_ = std::string("cannot refresh the scoreboard: ") + e.what();
    }
  }

  const TopOptions& options_;
  LiveScoreboard live_;
  shm::ScoreboardSnapshot snapshot_;
  RateTracker rates_;
  ProcStatFiles stat_files_;
  std::string notice_;
  std::int64_t last_refresh_ns_ = 0;
};

std::string compose(const std::vector<std::string>& lines) {
  std::string out(ansi::kHome);
  for (std::size_t i = 0; i < lines.size(); ++i) {
    out += lines[i];
    out += ansi::kClearToEol;
    if (i + 1 < lines.size()) out += "\r\n";
  }
  out += ansi::kClearBelow;
  return out;
}

int print_once(TopState& state) {
  state.take();
  // Rates need two snapshots some time apart; one frame shows totals and 0/s.
  std::string out;
  for (const auto& line : state.frame(0, 0, false)) out += line + "\n";
  return write_all(STDOUT_FILENO, out) ? 0 : 1;
}

}  // namespace

int run_top(const TopOptions& options) {
  TopState state(options);
  if (options.once || ::isatty(STDOUT_FILENO) != 1) return print_once(state);

  SignalReader signals;
  RawTerminal term(STDIN_FILENO, STDOUT_FILENO);
  WindowSize size = window_size(STDOUT_FILENO);
  const int interval_ms = static_cast<int>(options.interval.count());
  for (;;) {
    state.take(size.rows);
    if (!write_all(STDOUT_FILENO, compose(state.frame(size.cols, size.rows, options.colour))))
      return 1;

    const auto started = shm::monotonic_ns();
    for (;;) {
      const int left = interval_ms - static_cast<int>((shm::monotonic_ns() - started) / 1'000'000);
      if (left <= 0) break;
      pollfd fds[2] = {{signals.fd(), POLLIN, 0}, {STDIN_FILENO, POLLIN, 0}};
      const int rc = ::poll(fds, term.raw() ? 2 : 1, left);
      if (rc < 0 && errno != EINTR) return 1;
      if (rc <= 0) continue;
      bool redraw = false;
      if ((fds[0].revents & POLLIN) != 0) {
        for (int sig = signals.next(); sig != 0; sig = signals.next()) {
          if (sig == SIGWINCH) {
            size = window_size(STDOUT_FILENO);
            redraw = true;
          } else if (sig == SIGTSTP) {
            term.suspend();
            ::kill(::getpid(), SIGSTOP);  // returns after SIGCONT
            term.resume();
            size = window_size(STDOUT_FILENO);
            redraw = true;
          } else {
            return 0;  // SIGINT, SIGTERM, SIGHUP
          }
        }
      }
      if (term.raw() && (fds[1].revents & (POLLIN | POLLHUP)) != 0) {
        char keys[64];
        const ssize_t n = ::read(STDIN_FILENO, keys, sizeof(keys));
        if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) return 0;  // terminal gone
        for (ssize_t i = 0; i < n; ++i) {
          if (keys[i] == 'q' || keys[i] == 'Q') return 0;
          if (keys[i] == ' ' || keys[i] == 'r' || keys[i] == '\x0c') redraw = true;  // Ctrl-L
        }
      }
      if (redraw) {
        write_all(STDOUT_FILENO, ansi::kClearScreen);
        break;
      }
    }
  }
}

}  // namespace forkpool::ctl
