// SPDX-License-Identifier: Apache-2.0
#include "ctl/terminal.hpp"

#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <string>

namespace forkpool::ctl {

WindowSize window_size(int fd) {
  winsize ws{};
  WindowSize out;
  if (::ioctl(fd, TIOCGWINSZ, &ws) == 0) {
    if (ws.ws_row > 0) out.rows = ws.ws_row;
    if (ws.ws_col > 0) out.cols = ws.ws_col;
  }
  return out;
}

bool write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

RawTerminal::RawTerminal(int in, int out) : in_(in), out_(out) {
  have_saved_ = ::isatty(in_) == 1 && ::tcgetattr(in_, &saved_) == 0;
  enter();
}

RawTerminal::~RawTerminal() {
  leave();
}

void RawTerminal::enter() {
  if (active_) return;
  if (have_saved_) {
    termios raw = saved_;
    raw.c_lflag &= ~static_cast<tcflag_t>(ECHO | ICANON | IEXTEN);
    raw.c_iflag &= ~static_cast<tcflag_t>(IXON | ICRNL);
    raw.c_cc[VMIN] = 0;
    raw.c_cc[VTIME] = 0;
    ::tcsetattr(in_, TCSAFLUSH, &raw);
  }
  std::string seq;
  seq.append(ansi::kEnterAltScreen)
      .append(ansi::kHideCursor)
      .append(ansi::kClearScreen)
      .append(ansi::kHome);
  write_all(out_, seq);
  active_ = true;
}

void RawTerminal::leave() {
  if (!active_) return;
  std::string seq;
  seq.append(ansi::kReset).append(ansi::kShowCursor).append(ansi::kLeaveAltScreen);
  write_all(out_, seq);
  if (have_saved_) ::tcsetattr(in_, TCSAFLUSH, &saved_);
  active_ = false;
}

void RawTerminal::suspend() {
  leave();
}

void RawTerminal::resume() {
  // The shell may have changed the settings while we were stopped; start from them again.
  if (have_saved_) have_saved_ = ::tcgetattr(in_, &saved_) == 0;
  enter();
}

}  // namespace forkpool::ctl
