// SPDX-License-Identifier: Apache-2.0
#pragma once
// The master's log file as an spdlog sink: opened close-on-exec and in append mode, and
// written with write(2), one line a call. spdlog's own file sink opens with fopen(), which
// leaves the descriptor to every program the master executes: each binary upgrade kept
// one more, and after a rotation they held the renamed file open for ever.

#include <fcntl.h>
#include <spdlog/details/null_mutex.h>
#include <spdlog/sinks/base_sink.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <string>

namespace forkpool::log {

class LogFileSink final : public spdlog::sinks::base_sink<spdlog::details::null_mutex> {
 public:
  // Throws std::runtime_error naming the file and the error.
  explicit LogFileSink(const std::filesystem::path& file)
      : fd_(::open(file.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0666)) {
    if (fd_ < 0) throw std::runtime_error(std::strerror(errno));
  }
  ~LogFileSink() override { ::close(fd_); }
  LogFileSink(const LogFileSink&) = delete;
  LogFileSink& operator=(const LogFileSink&) = delete;

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    spdlog::memory_buf_t line;
    formatter_->format(msg, line);
    const char* p = line.data();
    std::size_t left = line.size();
    while (left > 0) {
      const ssize_t n = ::write(fd_, p, left);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return;  // a full disk loses the line, not the master
      p += n;
      left -= static_cast<std::size_t>(n);
    }
  }
  void flush_() override {}  // nothing is buffered

 private:
  int fd_;
};

}  // namespace forkpool::log
