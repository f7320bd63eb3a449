// SPDX-License-Identifier: Apache-2.0
// Fuzz target: the sd_notify message parser, parse_notify_message. Any datagram text the
// notify socket would pass on (at most 4096 bytes) gives the facts of its lines; they
// are compared with a second, deliberately different reading of the same text: every
// line split out first, then classified.

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "supervisor/process/notify_message.hpp"

namespace {

using forkpool::supervisor::kMaxNotifyStatus;
using forkpool::supervisor::NotifyMessage;
using forkpool::supervisor::parse_notify_message;

constexpr std::size_t kMaxMessage = 4096;  // notify_socket.cpp drops longer datagrams

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "notify_message: %s\n", what);
  std::abort();
}

NotifyMessage reference(std::string_view text) {
  std::vector<std::string_view> lines;
  std::size_t begin = 0;
  for (std::size_t i = 0; i <= text.size(); ++i) {
    if (i == text.size() || text[i] == '\n') {
      lines.push_back(text.substr(begin, i - begin));
      begin = i + 1;
    }
  }
  // "A\n" is one line, not "A" and an empty one; an empty text has none.
  if (!lines.empty() && lines.back().empty()) lines.pop_back();
  NotifyMessage m;
  for (std::string_view line : lines) {
    const auto eq = line.find('=');
    const std::string_view key = line.substr(0, eq);
    const std::string_view value = eq == std::string_view::npos ? std::string_view() : line.substr(eq + 1);
    if (eq == std::string_view::npos) continue;
    if (key == "STATUS") {
      m.status = std::string(value.substr(0, kMaxNotifyStatus));
    } else if (value == "1") {
      if (key == "READY") m.ready = true;
      if (key == "WATCHDOG") m.watchdog = true;
      if (key == "STOPPING") m.stopping = true;
      if (key == "BARRIER") m.barrier = true;
    }
  }
  return m;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size > kMaxMessage) return 0;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const NotifyMessage got = parse_notify_message(text);
  const NotifyMessage want = reference(text);
  if (got.status && got.status->size() > kMaxNotifyStatus) fail("STATUS longer than the limit");
  if (got.ready != want.ready) fail("READY=1 read differently");
  if (got.watchdog != want.watchdog) fail("WATCHDOG=1 read differently");
  if (got.stopping != want.stopping) fail("STOPPING=1 read differently");
  if (got.barrier != want.barrier) fail("BARRIER=1 read differently");
  if (got.status != want.status) fail("STATUS= read differently");
  return 0;
}
