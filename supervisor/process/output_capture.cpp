// SPDX-License-Identifier: Apache-2.0
#include "supervisor/process/output_capture.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>

#include "supervisor/observe/log.hpp"

namespace forkpool::supervisor {
namespace {

// A line longer than this is logged in pieces rather than buffered without bound.
constexpr std::size_t kMaxLine = 4096;
// Reads per wake-up: a worker writing without pause must not keep the master from its
// loop. The watch is level-triggered, so whatever is left is read on the next turn.
constexpr int kReadsPerWakeup = 4;

}  // namespace

OutputCapture::OutputCapture(uv_loop_t* loop, std::string prefix) : prefix_(std::move(prefix)) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) throw std::system_error(errno, std::generic_category(), "pipe2");
  read_end_.reset(fds[0]);
  write_end_.reset(fds[1]);
  ::fcntl(fds[0], F_SETFL, O_NONBLOCK);
  watch_ = std::make_unique<FdWatch>(loop, read_end_.get());
  watch_->start(UV_READABLE | UV_DISCONNECT, [this](int, int) { drain(); });
}

OutputCapture::OutputCapture(uv_loop_t* loop, std::string prefix, shm::OwnedFd read_end)
    : prefix_(std::move(prefix)), read_end_(std::move(read_end)) {
  ::fcntl(read_end_.get(), F_SETFL, O_NONBLOCK);
  watch_ = std::make_unique<FdWatch>(loop, read_end_.get());
  watch_->start(UV_READABLE | UV_DISCONNECT, [this](int, int) { drain(); });
}

OutputCapture::~OutputCapture() {
  // The worker is gone: what it wrote last may still be in the pipe (one bounded read).
  if (read_end_) drain();
  flush_lines(true);
}

void OutputCapture::drain() {
  char buf[16384];
  for (int reads = 0; reads < kReadsPerWakeup; ++reads) {
    const ssize_t n = ::read(read_end_.get(), buf, sizeof buf);
    if (n > 0) {
      pending_.append(buf, static_cast<std::size_t>(n));
      flush_lines(false);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return;
    // EOF or error: every writer has closed. The watch goes before the fd: libuv removes
    // its fd number from epoll when the watch closes, and by then the number could
    // belong to another handle.
    flush_lines(true);
    watch_.reset();
    read_end_.reset();
    return;
  }
}

void OutputCapture::set_subject(nlohmann::json fields) {
  fields_ = std::move(fields);
  fields_["stream"] = prefix_.substr(prefix_.rfind(' ') + 1);
}

void OutputCapture::emit(std::string_view line) {
  if (log::enabled(spdlog::level::info))
    log::write(spdlog::level::info, "worker.output", fmt::format("{}: {}", prefix_, line), fields_);
}

void OutputCapture::flush_lines(bool all) {
  std::size_t start = 0;
  while (true) {
    const auto nl = pending_.find('\n', start);
    if (nl == std::string::npos) {
      if (pending_.size() - start >= kMaxLine || (all && start < pending_.size())) {
        emit(std::string_view(pending_).substr(start, kMaxLine));
        start = std::min(pending_.size(), start + kMaxLine);
        continue;
      }
      break;
    }
    emit(std::string_view(pending_).substr(start, nl - start));
    start = nl + 1;
  }
  pending_.erase(0, start);
}

}  // namespace forkpool::supervisor
