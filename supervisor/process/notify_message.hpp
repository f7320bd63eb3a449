// SPDX-License-Identifier: Apache-2.0
#pragma once
// The text of one sd_notify(3) datagram, turned into the facts the master acts on. Pure
// parsing, no socket: the notify socket calls it, and a fuzz target feeds it any bytes.

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace forkpool::supervisor {

// STATUS= text longer than this is cut; status output is one line per worker.
inline constexpr std::size_t kMaxNotifyStatus = 256;

// What one datagram said. Each line is one "KEY=VALUE" assignment; lines the master does
// not know (MAINPID=, ERRNO=, FDSTORE=...) are ignored, as systemd ignores unknown ones.
struct NotifyMessage {
  bool ready = false;     // READY=1
  bool watchdog = false;  // WATCHDOG=1
  bool stopping = false;  // STOPPING=1
  // BARRIER=1: the fd that comes with it is closed by the socket code whatever the
  // text says; closing it is the whole answer, so this is only reported.
  bool barrier = false;
  std::optional<std::string> status;  // the last STATUS= line, at most kMaxNotifyStatus bytes
};

NotifyMessage parse_notify_message(std::string_view text);

}  // namespace forkpool::supervisor
