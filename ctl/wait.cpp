// SPDX-License-Identifier: Apache-2.0
#include "ctl/wait.hpp"

#include <unistd.h>

#include <cstdio>
#include <thread>

#include "base/printable.hpp"
#include "ctl/client.hpp"
#include "ctl/format.hpp"
#include "ctl/terminal.hpp"

namespace forkpool::ctl {

namespace {

using Clock = std::chrono::steady_clock;

constexpr std::chrono::milliseconds kPollInterval{100};
// How long nothing may listen at the socket before the master counts as gone (an
// upgrade keeps its socket listening; a reload that moves it binds the new one first).
constexpr std::chrono::milliseconds kGoneAfter{1000};

// One status reply, or nullopt while the master cannot be reached (it may be
// re-executing itself, or between sockets); the wait goes on until its deadline.
std::optional<nlohmann::json> fetch_status(const WaitOptions& o, std::optional<Client>& client,
                                           std::string& trouble, bool& nobody_listens) {
  nobody_listens = false;
  try {
    if (!client) {
      std::string path = o.find_socket ? o.find_socket() : o.socket;
      if (path.empty()) path = o.socket;
      client.emplace(Client::connect(path, o.reply_timeout));
    }
    Line line = client->call({{"cmd", "status"}}, o.reply_timeout);
    trouble.clear();
    return std::move(line.body);
  } catch (const ConnectionError& e) {
    trouble = e.what();
    nobody_listens = e.nobody_listens();
  } catch (const ReplyError& e) {
    trouble = e.what();
  }
  client.reset();
  return std::nullopt;
}

class Display {
 public:
  explicit Display(const WaitOptions& o) : o_(o) {}
  void show(const std::string& line) {
    if (!o_.progress || line == shown_) return;
    shown_ = line;
    if (o_.tty) {
      // Cut to the terminal's width: a line that wrapped could not be redrawn in place.
      const unsigned cols = window_size(STDOUT_FILENO).cols;
      write_all(STDOUT_FILENO, "\r" + std::string(ansi::kClearToEol) +
                                   truncate_to_width(base::printable(line), cols > 1 ? cols - 1 : 0));
      open_line_ = true;
    } else {
      write_all(STDOUT_FILENO, base::printable(line) + "\n");
    }
  }
  // Ends the updating line, so what follows starts on a line of its own.
  void finish() {
    if (open_line_) write_all(STDOUT_FILENO, "\r" + std::string(ansi::kClearToEol));
    open_line_ = false;
  }

 private:
  const WaitOptions& o_;
  std::string shown_;
  bool open_line_ = false;
};

// The settled parts of a change of several pools: what was done on stdout (unless the
// output is JSON), what failed on stderr. `failed_only`: the change timed out, so only
// the failures, which the "not done" line would not show.
void tell_parts(const Progress& p, const WaitOptions& o, bool failed_only) {
  for (const auto& part : p.parts) {
    if (part.outcome == Progress::Outcome::Failed)
      std::fprintf(stderr, "forkpoolctl: %s\n", base::printable(part.line).c_str());
    else if (part.outcome == Progress::Outcome::Done && o.progress && !failed_only)
      write_all(STDOUT_FILENO, base::printable(part.line) + "\n");
  }
}

std::string seconds(Clock::duration d) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1fs", std::chrono::duration<double>(d).count());
  return buf;
}

}  // namespace

int wait_for(const WaitPlan& plan, const WaitOptions& o, std::optional<Client> client) {
  const auto start = Clock::now();
  const auto deadline = start + o.timeout;
  Display display(o);
  std::string trouble;
  Progress last;
  bool unreachable = false;  // nothing listening at the socket, since:
  Clock::time_point unreachable_since{};
  for (;;) {
    bool nobody_listens = false;
    auto status = fetch_status(o, client, trouble, nobody_listens);
    if (!nobody_listens) {
      unreachable = false;
    } else if (!unreachable) {
      unreachable = true;
      unreachable_since = Clock::now();
    } else if (Clock::now() - unreachable_since >= kGoneAfter) {
      // The master exited (or was killed): nothing will finish the change.
      display.finish();
      std::fprintf(stderr, "forkpoolctl: %s: not done, the master is gone (%s)%s%s\n", plan.what.c_str(),
                   base::printable(trouble).c_str(), last.line.empty() ? "" : "; last seen: ",
                   base::printable(last.line).c_str());
      return kExitNotDone;
    }
    if (status) {
      last = plan.check(*status);
      if (last.outcome == Progress::Outcome::Done) {
        display.finish();
        if (o.progress) write_all(STDOUT_FILENO, base::printable(last.line) + " (" + seconds(Clock::now() - start) + ")\n");
        return kExitOk;
      }
      if (last.outcome == Progress::Outcome::Failed) {
        display.finish();
        std::fflush(stdout);
        tell_parts(last, o, false);
        std::fprintf(stderr, "forkpoolctl: %s\n", base::printable(last.line).c_str());
        return kExitErrorReply;
      }
      display.show(last.line);
    } else {
      display.show(plan.what + ": waiting for the master (" + trouble + ")");
    }
    if (Clock::now() >= deadline) break;
    std::this_thread::sleep_for(std::min<Clock::duration>(kPollInterval, deadline - Clock::now()));
  }
  display.finish();
  tell_parts(last, o, true);
  std::string where = last.line.empty() ? trouble : last.line;
  std::fprintf(stderr, "forkpoolctl: %s: not done after %s (--timeout); last seen: %s\n", plan.what.c_str(),
               seconds(o.timeout).c_str(), base::printable(where).c_str());
  return kExitNotDone;
}

}  // namespace forkpool::ctl
