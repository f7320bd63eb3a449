#pragma once
// The master's end of one worker's channel: a SOCK_SEQPACKET socket carrying fixed
// 16-byte records (worker/protocol.h). Sends CONN with the connection's descriptor,
// receives READY/DONE, and knows whether it can take another send right now.

#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>

#include "base/owned_fd.hpp"
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

  WorkerChannel(uv_loop_t* loop, base::OwnedFd fd);
  ~WorkerChannel();
  WorkerChannel(const WorkerChannel&) = delete;
  WorkerChannel& operator=(const WorkerChannel&) = delete;

  State state() const { return state_; }
  bool can_send() const { return state_ == State::Open; }

  // Calls `readable` when records wait and `writable` once a Blocked channel drains.
  void watch(std::function<void()> readable, std::function<void()> writable);
  SendResult send_connection(int fd, std::uint16_t listener, std::uint64_t id);
  // One record, if there is one. Descriptors a worker sends are closed: it never may.
  Received receive(fp_msg& out);
  // "Finish what you hold and exit": the worker reads EOF, its DONEs still arrive.
  void end_work();
  // Stops watching and closes the master's end.
  void close();

 private:
  void transition(State to);
  void rewatch();

  base::OwnedFd fd_;
  std::unique_ptr<FdWatch> watch_;
  std::function<void()> readable_;
  std::function<void()> writable_;
  State state_ = State::Open;
};

}  // namespace forkpool::supervisor
