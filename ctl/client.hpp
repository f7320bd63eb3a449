// SPDX-License-Identifier: Apache-2.0
#pragma once
// The client side of the control socket: connect, send one JSON request line, read reply
// lines (split across reads or not, up to kMaxLineBytes), with the descriptors that came
// with each line (SCM_RIGHTS), under a deadline or none.

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <utility>
#include <stdexcept>
#include <string>
#include <vector>

#include "shm/mapping.hpp"

namespace forkpool::ctl {

// forkpoolctl's exit statuses.
inline constexpr int kExitOk = 0;
inline constexpr int kExitErrorReply = 1;  // the master answered {"ok": false, ...}
inline constexpr int kExitUsage = 2;       // bad arguments, or no usable connection

inline constexpr std::size_t kMaxLineBytes = std::size_t{16} << 20;
inline constexpr std::chrono::milliseconds kDefaultReplyTimeout{5000};

// nullopt waits for ever (events, top).
using Timeout = std::optional<std::chrono::milliseconds>;

// No usable conversation with the master: cannot connect, timed out, connection closed,
// a reply that is not JSON. what() says what to check. Exit status 2.
class ConnectionError : public std::runtime_error {
 public:
  explicit ConnectionError(const std::string& what, int connect_errno = 0)
      : std::runtime_error(what), connect_errno_(connect_errno) {}
  // connect(2)'s errno when connecting failed, else 0.
  int connect_errno() const { return connect_errno_; }
  // Nothing listens there: no socket file, or one no process listens on. A master
  // re-executing itself (upgrade) keeps listening; one that exited does not.
  bool nobody_listens() const { return connect_errno_ == ENOENT || connect_errno_ == ECONNREFUSED; }

 private:
  int connect_errno_;
};

// The master answered {"ok": false, "error": ...}; what() is the error. Exit status 1.
class ReplyError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// One line from the master.
struct Line {
  std::string text;               // as received, without the newline
  nlohmann::json body;            // always an object
  std::vector<shm::OwnedFd> fds;  // descriptors that arrived with this line, in order
};

// What connecting to `path` failing with `err` means for an operator, e.g.
// "connection refused: stale socket, the master is not running".
std::string explain_connect_error(int err);

class Client {
 public:
  // Throws ConnectionError naming `path` and what to check.
  static Client connect(const std::string& path, Timeout timeout = kDefaultReplyTimeout);

  // Sends `request` as one line.
  void send(const nlohmann::json& request, Timeout timeout = kDefaultReplyTimeout);
  // The next line. Descriptors received are close-on-exec and belong to the line whose
  // bytes they arrived with.
  Line read_line(Timeout timeout = kDefaultReplyTimeout);
  // As read_line(), but nullopt when the master closed the connection between lines.
  std::optional<Line> read_line_or_eof(Timeout timeout = kDefaultReplyTimeout);
  // send() then read_line(); throws ReplyError for {"ok": false}.
  Line call(const nlohmann::json& request, Timeout timeout = kDefaultReplyTimeout);
  // The first request of a connection: connects, sends `request`, returns the client and
  // the reply (an error reply too). A master with too many control clients turns a new
  // one away, or closes an idle one to make room, before reading its request: nothing was
  // done, so it is asked again on a new connection after a short pause (10 ms, doubling
  // to 200 ms), until `timeout` from the first try. A burst of hundreds of forkpoolctl
  // runs then waits its turn instead of failing.
  static std::pair<Client, Line> ask(const std::string& path, const nlohmann::json& request,
                                     Timeout timeout = kDefaultReplyTimeout, Timeout reply_timeout = kDefaultReplyTimeout);

  int fd() const { return fd_.get(); }
  const std::string& path() const { return path_; }

 private:
  Client(shm::OwnedFd fd, std::string path) : fd_(std::move(fd)), path_(std::move(path)) {}
  // Reads once into the buffer; false on end of stream.
  bool fill(std::optional<std::chrono::steady_clock::time_point> deadline);
  std::optional<Line> take_line();
  [[noreturn]] void fail(const std::string& what) const;

  shm::OwnedFd fd_;
  std::string path_;
  std::string buffer_;  // unconsumed bytes, starting at stream offset base_
  std::uint64_t base_ = 0;
  std::size_t scanned_ = 0;  // bytes of buffer_ known to hold no newline
  struct PendingFd {
    std::uint64_t offset;  // stream offset of the first byte they came with
    shm::OwnedFd fd;
  };
  std::vector<PendingFd> pending_fds_;
};

// Throws ReplyError when `line` is {"ok": false}.
void expect_ok(const Line& line);

// The descriptors and metadata of a `scoreboard` reply, all lines of it gathered.
struct ScoreboardFds {
  shm::OwnedFd region;
  std::vector<shm::OwnedFd> slots;
  std::vector<std::uint64_t> epochs;
  std::vector<std::string> pools;
  // min_workers..max_workers by pool index ({0, 0}: not known, an older master).
};

// Sends {"cmd":"scoreboard"} and collects the reply and its descriptors. Throws
// ReplyError for an error reply, ConnectionError for a malformed one.
ScoreboardFds fetch_scoreboard(Client& client, Timeout timeout = kDefaultReplyTimeout);

}  // namespace forkpool::ctl
