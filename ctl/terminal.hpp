// SPDX-License-Identifier: Apache-2.0
#pragma once
// The terminal for `forkpoolctl top`: raw mode and the alternate screen as one RAII object,
// plus the few ANSI sequences the screen loop needs.

#include <termios.h>

#include <string_view>

namespace forkpool::ctl {

namespace ansi {
inline constexpr std::string_view kEnterAltScreen = "\x1b[?1049h";
inline constexpr std::string_view kLeaveAltScreen = "\x1b[?1049l";
inline constexpr std::string_view kHideCursor = "\x1b[?25l";
inline constexpr std::string_view kShowCursor = "\x1b[?25h";
inline constexpr std::string_view kClearScreen = "\x1b[2J";
inline constexpr std::string_view kHome = "\x1b[H";
inline constexpr std::string_view kClearToEol = "\x1b[K";
inline constexpr std::string_view kClearBelow = "\x1b[J";
inline constexpr std::string_view kReset = "\x1b[0m";
}  // namespace ansi

struct WindowSize {
  unsigned rows = 24;
  unsigned cols = 80;
};

// TIOCGWINSZ on `fd`; 24x80 when it is not a terminal or reports zeros.
WindowSize window_size(int fd);

// Writes all of `data` to `fd`, retrying EINTR and short writes; false on error.
bool write_all(int fd, std::string_view data);

// While alive: `in` is in raw mode (no echo, no line buffering; signals from keys such as
// Ctrl-C still work) and `out` shows the alternate screen with the cursor hidden. The
// destructor restores both, also during unwinding from an error.
class RawTerminal {
 public:
  RawTerminal(int in, int out);
  ~RawTerminal();
  RawTerminal(const RawTerminal&) = delete;
  RawTerminal& operator=(const RawTerminal&) = delete;

  // For job control (Ctrl-Z): give the terminal back as it was, then take it again.
  void suspend();
  void resume();

  // False when `in` is not a terminal: keys cannot be read, the screen still works.
  bool raw() const { return have_saved_; }

 private:
  void enter();
  void leave();

  int in_;
  int out_;
  termios saved_{};
  bool have_saved_ = false;
  bool active_ = false;
};

}  // namespace forkpool::ctl
