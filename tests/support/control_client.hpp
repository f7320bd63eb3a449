// SPDX-License-Identifier: Apache-2.0
#pragma once
// A small blocking client of the master's control socket for tests: one JSON object per
// line each way. Every wait has a deadline; nothing here can hang a test.

#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

namespace forkpool::test {

class ControlClient {
 public:
  // Connects to the Unix socket at `path`, retrying while it does not exist yet, refuses
  // connections or has a full backlog, until `timeout` passes. Check connected() (and
  // error() for the last errno) afterwards.
  explicit ControlClient(const std::filesystem::path& path,
                         std::chrono::milliseconds timeout = std::chrono::seconds(5));
  ~ControlClient();
  ControlClient(ControlClient&& other) noexcept;
  ControlClient& operator=(ControlClient&& other) noexcept;
  ControlClient(const ControlClient&) = delete;
  ControlClient& operator=(const ControlClient&) = delete;

  bool connected() const { return fd_ >= 0; }
  int error() const { return error_; }
  int fd() const { return fd_; }

  // Sends `request` as one line and returns the next reply line parsed; a null json when
  // the send failed, the peer closed or `deadline` passed first.
  nlohmann::json request(const nlohmann::json& request,
                         std::chrono::milliseconds deadline = std::chrono::seconds(10));
  // The next line without its newline; nothing when the peer closed or `deadline` passed.
  std::optional<std::string> read_line(std::chrono::milliseconds deadline = std::chrono::seconds(10));
  // The next line parsed as JSON; nothing on timeout, EOF or a line that is not JSON.
  std::optional<nlohmann::json> read_json(std::chrono::milliseconds deadline = std::chrono::seconds(10));
  // Writes every byte, waiting for room up to `deadline`; false on an error (EPIPE, reset)
  // or timeout. Never raises SIGPIPE.
  bool send_raw(std::string_view bytes, std::chrono::milliseconds deadline = std::chrono::seconds(10));
  // Writes what fits now without waiting: the byte count, 0 when the socket is full,
  // -1 on an error (the peer closed).
  long send_some(std::string_view bytes);
  // Reads until the peer closes (true) or `deadline` passes (false). What arrives before
  // the end stays buffered for read_line().
  bool is_closed(std::chrono::milliseconds deadline = std::chrono::seconds(10));
  // Bytes received and not yet returned by read_line().
  const std::string& buffered() const { return buffer_; }
  void close();

 private:
  // One read into the buffer: 1 = data, 0 = EOF or error, -1 = deadline passed.
  int fill(std::chrono::steady_clock::time_point until);

  int fd_ = -1;
  int error_ = 0;
  bool eof_ = false;
  std::string buffer_;
};

}  // namespace forkpool::test
