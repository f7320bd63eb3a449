// SPDX-License-Identifier: Apache-2.0
#pragma once
// The master's end of one worker's channel: a SOCK_SEQPACKET socket carrying fixed-size
// records (worker/protocol.h). Sends CONN with the connection's descriptor,
// receives READY/DONE, and knows whether it can take another send right now.

#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "base/owned_fd.hpp"
#include "supervisor/observe/log_limiter.hpp"
#include "supervisor/uv_handles.hpp"
#include "worker/protocol.h"

namespace forkpool::supervisor {

enum class SendResult { Sent, WouldBlock, Gone };

class WorkerChannel {
 public:
  // The one lifecycle of the master's end: sends may happen only while Open.
  enum class State {
    Open,     // sends go through
    Blocked,  // the socket buffer is full: sends wait for writability
    Ended,    // end of work sent (shutdown SHUT_WR): no more sends, records still arrive
    Gone,     // the worker closed its end or went away
    Closed,   // the master closed its end
  };

  enum class Received { Record, Nothing, Malformed, EndOfFile };

  // Descriptors that came with a well-formed record: the first is kept (a PARK carries
  // exactly one), any others are closed on arrival and only counted.
  struct Passed {
    base::OwnedFd first;
    int count = 0;
    std::uint32_t fd_flags = 0;  // FP_FD_* from the record's `reserved` (PARK)
    // Descriptors were sent that the master did not receive (MSG_CTRUNC with room left in
    // the buffer): it had no descriptor free. The kernel closed them; the record is kept.
    bool dropped = false;
  };
  // Descriptors one receive takes at most; a record with more is malformed.
  static constexpr int kMaxPassed = 4;

  WorkerChannel(uv_loop_t* loop, base::OwnedFd fd);
  // A binary upgrade: the master's end the previous image held, in `state` (Open, Ended
  // or Gone; Blocked comes back as Open and finds out again).
  WorkerChannel(uv_loop_t* loop, base::OwnedFd fd, State state);
  int fd() const { return fd_.get(); }
  ~WorkerChannel();
  WorkerChannel(const WorkerChannel&) = delete;
  WorkerChannel& operator=(const WorkerChannel&) = delete;

  State state() const { return state_; }
  bool can_send() const { return state_ == State::Open; }

  // Calls `readable` when records wait and `writable` once a Blocked channel drains.
  void watch(std::function<void()> readable, std::function<void()> writable);
  // `fd_flags`: FP_FD_* (worker/protocol.h) that are true of `fd`, sent in `reserved`.
  SendResult send_connection(int fd, std::uint16_t listener, std::uint64_t id, std::uint32_t fd_flags);
  // One record, if there is one. Descriptors that come with it are closed.
  // An empty record is Malformed; the end of the channel is EndOfFile.
  Received receive(fp_msg& out);
  // The same, handing out what a well-formed record carried (for PARK); descriptors of
  // a malformed record are always closed.
  Received receive(fp_msg& out, Passed& passed);
  // Logs channel.bad_message for the last Malformed record, naming what was wrong with
  // it; repeated ones are summed up (observe/log_limiter) so a flood is a few lines.
  void warn_malformed(std::string_view pool, unsigned worker, pid_t pid);
  // Malformed records so far, for a policy that ends a worker that keeps sending them.
  std::uint64_t malformed_count() const { return malformed_; }
  // "Finish what you hold and exit": the worker reads EOF, its DONEs still arrive.
  void end_work();
  // Stops watching and closes the master's end.
  void close();

 private:
  void transition(State to);
  void rewatch();
  std::string describe_malformed() const;

  uv_loop_t* loop_;
  base::OwnedFd fd_;
  std::unique_ptr<FdWatch> watch_;
  std::function<void()> readable_;
  std::function<void()> writable_;
  State state_ = State::Open;
  // The last malformed record: its size (as sent, not as read) and whether its
  // descriptors did not fit.
  ssize_t bad_size_ = 0;
  bool bad_control_ = false;
  std::uint64_t malformed_ = 0;
  std::unique_ptr<log::RepeatedWarning> bad_messages_;  // made on the first one
  std::string bad_subject_;
};

}  // namespace forkpool::supervisor
