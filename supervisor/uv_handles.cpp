// SPDX-License-Identifier: Apache-2.0
#include "supervisor/uv_handles.hpp"

#include <algorithm>
#include <cstdint>
#include <cstdlib>

namespace forkpool::supervisor {
namespace {

template <typename H>
void close_and_free(H* handle) {
  handle->data = nullptr;
  uv_close(reinterpret_cast<uv_handle_t*>(handle), [](uv_handle_t* h) { delete reinterpret_cast<H*>(h); });
}

void check(int rc) {
  if (rc != 0) std::abort();  // Only fails on programming errors (bad fd, bad loop).
}

}  // namespace

Timer::Timer(uv_loop_t* loop) : handle_(new uv_timer_t) {
  check(uv_timer_init(loop, handle_));
  handle_->data = this;
}

Timer::~Timer() { close_and_free(handle_); }

void Timer::start(std::chrono::milliseconds after, std::function<void()> callback) {
  callback_ = std::move(callback);
  // libuv measures from the time cached at the start of this loop iteration; a timer
  // started late in a long iteration (spawning many workers) would fire early.
  uv_update_time(handle_->loop);
  check(uv_timer_start(handle_, &Timer::fire, static_cast<std::uint64_t>(std::max<std::int64_t>(0, after.count())), 0));
}

void Timer::start_repeating(std::chrono::milliseconds every, std::function<void()> callback) {
  callback_ = std::move(callback);
  uv_update_time(handle_->loop);
  const auto ms = static_cast<std::uint64_t>(std::max<std::int64_t>(1, every.count()));
  check(uv_timer_start(handle_, &Timer::fire, ms, ms));
}

void Timer::stop() { uv_timer_stop(handle_); }

bool Timer::active() const { return uv_is_active(reinterpret_cast<const uv_handle_t*>(handle_)) != 0; }

void Timer::fire(uv_timer_t* handle) {
  auto* self = static_cast<Timer*>(handle->data);
  if (self == nullptr) return;
  // The callback may destroy this Timer (and so callback_); run a copy.
  auto callback = self->callback_;
  callback();
}

EachTurn::EachTurn(uv_loop_t* loop) : handle_(new uv_idle_t) {
  check(uv_idle_init(loop, handle_));
  handle_->data = this;
}

EachTurn::~EachTurn() { close_and_free(handle_); }

void EachTurn::start(std::function<void()> callback) {
  callback_ = std::move(callback);
  check(uv_idle_start(handle_, &EachTurn::fire));
}

void EachTurn::stop() { uv_idle_stop(handle_); }

void EachTurn::fire(uv_idle_t* handle) {
  auto* self = static_cast<EachTurn*>(handle->data);
  if (self == nullptr) return;
  auto callback = self->callback_;  // it may destroy this EachTurn
  callback();
}

AfterEachTurn::AfterEachTurn(uv_loop_t* loop) : handle_(new uv_check_t) {
  check(uv_check_init(loop, handle_));
  handle_->data = this;
}

AfterEachTurn::~AfterEachTurn() { close_and_free(handle_); }

void AfterEachTurn::start(std::function<void()> callback) {
  callback_ = std::move(callback);
  if (!active()) check(uv_check_start(handle_, &AfterEachTurn::fire));
}

void AfterEachTurn::stop() { uv_check_stop(handle_); }

bool AfterEachTurn::active() const { return uv_is_active(reinterpret_cast<const uv_handle_t*>(handle_)) != 0; }

void AfterEachTurn::fire(uv_check_t* handle) {
  auto* self = static_cast<AfterEachTurn*>(handle->data);
  if (self == nullptr || !self->callback_) return;
  auto callback = self->callback_;  // it may stop this handle or destroy its owner
  callback();
}

FdWatch::FdWatch(uv_loop_t* loop, int fd) : handle_(new uv_poll_t) {
  check(uv_poll_init(loop, handle_, fd));
  handle_->data = this;
}

FdWatch::~FdWatch() { close_and_free(handle_); }

void FdWatch::start(int events, Callback callback) {
  callback_ = std::move(callback);
  check(uv_poll_start(handle_, events, &FdWatch::fire));
}

void FdWatch::stop() { uv_poll_stop(handle_); }

void FdWatch::fire(uv_poll_t* handle, int status, int events) {
  auto* self = static_cast<FdWatch*>(handle->data);
  if (self == nullptr) return;
  auto callback = self->callback_;
  callback(status, events);
}

SignalWatch::SignalWatch(uv_loop_t* loop, int signo, std::function<void(int)> callback)
    : handle_(new uv_signal_t), callback_(std::move(callback)) {
  check(uv_signal_init(loop, handle_));
  handle_->data = this;
  check(uv_signal_start(handle_, &SignalWatch::fire, signo));
}

SignalWatch::~SignalWatch() { close_and_free(handle_); }

void SignalWatch::fire(uv_signal_t* handle, int signo) {
  auto* self = static_cast<SignalWatch*>(handle->data);
  if (self != nullptr) self->callback_(signo);
}

}  // namespace forkpool::supervisor
