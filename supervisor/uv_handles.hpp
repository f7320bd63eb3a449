// SPDX-License-Identifier: Apache-2.0
#pragma once
// Owning wrappers for the few libuv handles the master uses. Each handle lives on the
// heap and is freed in its close callback, so an owner may be destroyed at any time,
// even from inside the handle's own callback.

#include <uv.h>

#include <chrono>
#include <functional>

namespace forkpool::supervisor {

class Timer {
 public:
  explicit Timer(uv_loop_t* loop);
  ~Timer();
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;

  void start(std::chrono::milliseconds after, std::function<void()> callback);
  void start_repeating(std::chrono::milliseconds every, std::function<void()> callback);
  void stop();
  bool active() const;

 private:
  static void fire(uv_timer_t* handle);
  uv_timer_t* handle_;
  std::function<void()> callback_;
};

// A callback run once in every turn of the loop while started (a libuv idle handle: the
// loop does not sleep in poll meanwhile, and runs its other events between two calls).
// A 0 ms timer re-armed from its own callback is no substitute: libuv 1.44 runs it again
// within the same pass over the timers.
class EachTurn {
 public:
  explicit EachTurn(uv_loop_t* loop);
  ~EachTurn();
  EachTurn(const EachTurn&) = delete;
  EachTurn& operator=(const EachTurn&) = delete;

  void start(std::function<void()> callback);
  void stop();

 private:
  static void fire(uv_idle_t* handle);
  uv_idle_t* handle_;
  std::function<void()> callback_;
};

// A callback run after every turn of the loop that handled an event, while started (a
// libuv check handle): it sees the effect of everything the master's own code did, and
// costs nothing while the loop sleeps.
class AfterEachTurn {
 public:
  explicit AfterEachTurn(uv_loop_t* loop);
  ~AfterEachTurn();
  AfterEachTurn(const AfterEachTurn&) = delete;
  AfterEachTurn& operator=(const AfterEachTurn&) = delete;

  void start(std::function<void()> callback);
  void stop();
  bool active() const;

 private:
  static void fire(uv_check_t* handle);
  uv_check_t* handle_;
  std::function<void()> callback_;
};

// Readiness of one file descriptor the caller owns (the fd is not closed here).
class FdWatch {
 public:
  using Callback = std::function<void(int status, int events)>;
  FdWatch(uv_loop_t* loop, int fd);
  ~FdWatch();
  FdWatch(const FdWatch&) = delete;
  FdWatch& operator=(const FdWatch&) = delete;

  void start(int events, Callback callback);
  void stop();

 private:
  static void fire(uv_poll_t* handle, int status, int events);
  uv_poll_t* handle_;
  Callback callback_;
};

class SignalWatch {
 public:
  SignalWatch(uv_loop_t* loop, int signo, std::function<void(int)> callback);
  ~SignalWatch();
  SignalWatch(const SignalWatch&) = delete;
  SignalWatch& operator=(const SignalWatch&) = delete;

 private:
  static void fire(uv_signal_t* handle, int signo);
  uv_signal_t* handle_;
  std::function<void(int)> callback_;
};

}  // namespace forkpool::supervisor
