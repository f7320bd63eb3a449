// SPDX-License-Identifier: Apache-2.0
#pragma once
// Durations, sizes and octal modes as written in the config file.

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "config/config.hpp"

namespace forkpool::config {

// A parsed value, or the reason it could not be parsed (phrased to follow "expected ...").
template <typename T>
struct Parsed {
  std::optional<T> value;
  std::string error;

  static Parsed ok(T v) { return Parsed{std::move(v), {}}; }
  static Parsed fail(std::string why) { return Parsed{std::nullopt, std::move(why)}; }
  explicit operator bool() const { return value.has_value(); }
};

// "250ms", "30s", "1.5s", "5m", "2h"; "0" means off. Whole milliseconds only.
Parsed<Duration> parse_duration(std::string_view text);
// The shortest exact spelling: 1500ms -> "1500ms", 30000ms -> "30s", 0 -> "0".
std::string format_duration(Duration d);

// "512MiB", "2GiB", "64K", "100B", "0". Binary units (K = KiB).
Parsed<std::uint64_t> parse_size(std::string_view text);
std::string format_size(std::uint64_t bytes);

// An octal file mode such as "0600" or "022" (0..0777).
Parsed<mode_t> parse_octal_mode(std::string_view text);
std::string format_octal_mode(mode_t mode);

}  // namespace forkpool::config
