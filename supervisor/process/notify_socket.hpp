// SPDX-License-Identifier: Apache-2.0
#pragma once
// A worker's sd_notify(3) endpoint: a datagram socket in the abstract namespace, one per
// worker process, so whatever arrives on it came from that worker or its descendants
// (systemd-notify run from a shell script included) without any pid bookkeeping. The
// kernel picks the name (autobind), so it is unique in the network namespace even when
// several masters there are each PID 1 of their own container.

#include <sys/types.h>
#include <uv.h>

#include <functional>
#include <memory>
#include <string>

#include "shm/mapping.hpp"
#include "supervisor/uv_handles.hpp"

namespace forkpool::supervisor {

struct NotifyHandlers {
  std::function<void()> ready;
  std::function<void()> watchdog;
  std::function<void()> stopping;
  std::function<void(std::string)> status;
};

class NotifySocket {
 public:
  // Throws std::system_error when the socket cannot be made. Datagrams from any uid
  // other than root, the master's own and `worker_uid` are dropped.
  NotifySocket(uv_loop_t* loop, uid_t worker_uid, NotifyHandlers handlers);
  // A binary upgrade: the socket the previous image made (its name stays: the worker
  // has it in NOTIFY_SOCKET). Throws std::system_error.
  NotifySocket(uv_loop_t* loop, uid_t worker_uid, NotifyHandlers handlers, shm::OwnedFd socket);

  // The value for NOTIFY_SOCKET ("@forkpool/...").
  const std::string& address() const { return address_; }
  int fd() const { return fd_.get(); }

 private:
  void name_and_watch(uv_loop_t* loop);
  void drain();
  void handle(std::string_view message);

  std::string address_;
  uid_t worker_uid_;
  NotifyHandlers handlers_;
  shm::OwnedFd fd_;
  std::unique_ptr<FdWatch> watch_;
};

}  // namespace forkpool::supervisor
