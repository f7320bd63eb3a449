// SPDX-License-Identifier: Apache-2.0
#pragma once
// The access log of master dispatch: one line per connection the master handed out (or
// closed without handing it out), from what the master knows: when, pool, worker, pid,
// the client's address, time waited in the queue, time the worker held it, and how it
// ended. Off unless `access_log` is set; text (documented field order) or JSON lines.
// It is not an HTTP log: the master never reads a request.

#include <sys/socket.h>
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include "base/owned_fd.hpp"
#include "config/config.hpp"

namespace forkpool::access_log {

struct Options {
  std::filesystem::path file;  // empty = off
  config::LogFormat format = config::LogFormat::Text;
};

// How a connection left the master's hands.
enum class Outcome {
  Done,          // the worker reported DONE
  Parked,        // keepalive = "master": the worker handed it back idle (PARK); its next request is a new line
  Lost,          // the worker exited (or was killed) holding it, without DONE
  QueueTimeout,  // it waited in the queue for queue_timeout and was closed
  Closed,        // it was queued when the pool stopped or the master shut down, and was closed
};
std::string_view to_string(Outcome o);

struct Record {
  std::string_view pool;
  std::optional<unsigned> worker;  // none: never dispatched
  pid_t pid = 0;
  const sockaddr_storage* peer = nullptr;
  socklen_t peer_len = 0;
  std::uint64_t id = 0;  // the connection id the worker saw in CONN
  std::chrono::microseconds queue_wait{0};
  std::optional<std::chrono::microseconds> held;  // none: never dispatched
  Outcome outcome = Outcome::Done;
};

// A file opened and not yet in use, so a reload can open it first (and be refused if it
// cannot) and switch to it only once nothing else can fail.
struct Opened {
  Options options;
  base::OwnedFd fd;  // none when the access log is off
};
// Opens (appends to) the file. Throws std::runtime_error naming the file and the errno
// if it cannot be opened.
Opened open(const Options& options);
// Writes to `opened` from now on, closing the current file; an empty path turns the log off.
void install(Opened opened);
void setup(const Options& options);  // install(open(options))
// Reopens the file after rotation (SIGUSR1); on failure keeps the old one and says so.
void reopen();
bool enabled();
const Options& options();
// The line for `r`, without its newline (time is the moment of the call).
std::string format(const Record& r, config::LogFormat format);
void write(const Record& r);

}  // namespace forkpool::access_log
