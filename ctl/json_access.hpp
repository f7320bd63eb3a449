// SPDX-License-Identifier: Apache-2.0
#pragma once
// Lenient reads from the master's replies, for display: a missing or mistyped field
// renders as a default instead of aborting the whole table (an older or newer master may
// differ), and text comes with its control characters escaped: much of it (a worker's
// STATUS=, say) is the worker's to choose, and must not drive the operator's terminal.

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "base/printable.hpp"

namespace forkpool::ctl {

inline const nlohmann::json& field(const nlohmann::json& j, std::string_view key) {
  static const nlohmann::json kNull;
  if (!j.is_object()) return kNull;
  const auto it = j.find(key);
  return it == j.end() ? kNull : *it;
}

inline std::string str_field(const nlohmann::json& j, std::string_view key,
                             std::string_view fallback = "") {
  const auto& v = field(j, key);
  if (v.is_string()) return base::printable(v.get<std::string>());
  if (v.is_null()) return std::string(fallback);
  return base::printable(v.dump());
}

// Any JSON value as display text: a string escaped (see above), anything else as JSON.
inline std::string display_text(const nlohmann::json& v) {
  return base::printable(v.is_string() ? v.get<std::string>() : v.dump());
}

inline double num_field(const nlohmann::json& j, std::string_view key, double fallback = 0.0) {
  const auto& v = field(j, key);
  return v.is_number() ? v.get<double>() : fallback;
}

// True only for a JSON true (absent, null or another type: false).
inline bool bool_field(const nlohmann::json& j, std::string_view key) {
  const auto& v = field(j, key);
  return v.is_boolean() && v.get<bool>();
}

inline std::uint64_t u64_field(const nlohmann::json& j, std::string_view key) {
  const auto& v = field(j, key);
  if (v.is_number_unsigned()) return v.get<std::uint64_t>();
  if (v.is_number_integer()) return v.get<std::int64_t>() < 0 ? 0 : v.get<std::uint64_t>();
  if (v.is_number_float())
    return v.get<double>() < 0 ? 0 : static_cast<std::uint64_t>(v.get<double>());
  return 0;
}

// The number as text ("-" when absent), for table cells.
inline std::string count_text(const nlohmann::json& j, std::string_view key) {
  const auto& v = field(j, key);
  if (v.is_number_unsigned()) return std::to_string(v.get<std::uint64_t>());
  if (v.is_number_integer()) return std::to_string(v.get<std::int64_t>());
  if (v.is_number_float()) return std::to_string(static_cast<long long>(v.get<double>()));
  if (v.is_string()) return base::printable(v.get<std::string>());
  return "-";
}

}  // namespace forkpool::ctl
