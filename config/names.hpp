// SPDX-License-Identifier: Apache-2.0
#pragma once
// The words the config file uses for enums, signals and resource limits, in one place.

#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.hpp"

namespace forkpool::config {

std::string_view to_string(Dispatch d);
std::string_view to_string(Balance b);
std::string_view to_string(Readiness r);
std::string_view to_string(LogFormat f);
std::string_view to_string(Isolation i);
std::string_view to_string(KeepAlive k);

std::optional<Dispatch> dispatch_from_string(std::string_view s);
std::optional<Balance> balance_from_string(std::string_view s);
std::optional<Readiness> readiness_from_string(std::string_view s);
std::optional<LogFormat> log_format_from_string(std::string_view s);
std::optional<Isolation> isolation_from_string(std::string_view s);
std::optional<KeepAlive> keepalive_from_string(std::string_view s);

// trace debug info warn error critical off
std::span<const std::string_view> log_levels();
bool is_log_level(std::string_view s);

// "TERM", "SIGTERM" or "15" -> 15. Only signals a supervisor may reasonably send.
std::optional<int> signal_from_name(std::string_view s);
// 15 -> "TERM"; unknown numbers as decimal.
std::string signal_name(int signo);
// Every name signal_from_name knows, without "SIG", for suggestions.
std::vector<std::string> signal_names();

// Where a key of the schema is written, for a key found in another table: "[supervisor]"
// for include and the [supervisor] keys, "[pools.NAME]" for a pool key; nothing for a
// key of neither.
std::optional<std::string_view> table_of_key(std::string_view key);

struct RlimitName {
  std::string_view name;  // "nofile"
  int resource;           // RLIMIT_NOFILE
  bool bytes;             // whether a size string ("512MiB") makes sense
};
std::span<const RlimitName> rlimit_names();
const RlimitName* find_rlimit(std::string_view name);
const RlimitName* find_rlimit(int resource);

}  // namespace forkpool::config
