// SPDX-License-Identifier: Apache-2.0
#include "config/units.hpp"

#include <array>
#include <cstdio>
#include <charconv>
#include <limits>

namespace forkpool::config {
namespace {

struct Unit {
  std::string_view suffix;
  std::uint64_t factor;
};

// Longest suffixes first so "ms" is not read as "m" + garbage.
constexpr std::array<Unit, 4> kDurationUnits{{{"ms", 1}, {"s", 1000}, {"m", 60'000}, {"h", 3'600'000}}};
constexpr std::array<Unit, 9> kSizeUnits{{{"KiB", 1ull << 10},
                                          {"MiB", 1ull << 20},
                                          {"GiB", 1ull << 30},
                                          {"TiB", 1ull << 40},
                                          {"K", 1ull << 10},
                                          {"M", 1ull << 20},
                                          {"G", 1ull << 30},
                                          {"T", 1ull << 40},
                                          {"B", 1}}};

// Splits "12.5ms" into number "12.5" and suffix "ms".
std::pair<std::string_view, std::string_view> split_number(std::string_view text) {
  std::size_t i = 0;
  while (i < text.size() && ((text[i] >= '0' && text[i] <= '9') || text[i] == '.')) ++i;
  return {text.substr(0, i), text.substr(i)};
}

std::optional<std::uint64_t> parse_uint(std::string_view digits) {
  if (digits.empty()) return std::nullopt;
  std::uint64_t v = 0;
  auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), v);
  if (ec != std::errc{} || ptr != digits.data() + digits.size()) return std::nullopt;
  return v;
}

// number * factor, where number may have a fractional part; fails unless the product is whole.
std::optional<std::uint64_t> scale(std::string_view number, std::uint64_t factor) {
  auto dot = number.find('.');
  std::string_view whole = number.substr(0, dot);
  std::string_view frac = dot == std::string_view::npos ? std::string_view{} : number.substr(dot + 1);
  if (dot != std::string_view::npos && (frac.empty() || frac.find('.') != std::string_view::npos))
    return std::nullopt;
  auto w = parse_uint(whole.empty() ? std::string_view("0") : whole);
  if (!w || (whole.empty() && frac.empty())) return std::nullopt;
  if (*w > std::numeric_limits<std::uint64_t>::max() / factor) return std::nullopt;
  std::uint64_t result = *w * factor;
  std::uint64_t denom = 1;
  std::uint64_t numer = 0;
  for (char c : frac) {
    if (denom > std::numeric_limits<std::uint64_t>::max() / 10 / factor) return std::nullopt;
    denom *= 10;
    numer = numer * 10 + static_cast<std::uint64_t>(c - '0');
  }
  if (denom > 1) {
    if ((numer * factor) % denom != 0) return std::nullopt;
    result += numer * factor / denom;
  }
  return result;
}

template <std::size_t N>
std::string format_exact(std::uint64_t value, const std::array<Unit, N>& units, std::string_view zero) {
  if (value == 0) return std::string(zero);
  const Unit* best = nullptr;
  for (const auto& u : units)
    if (value % u.factor == 0 && (best == nullptr || u.factor > best->factor)) best = &u;
  return std::to_string(value / best->factor) + std::string(best->suffix);
}

}  // namespace

Parsed<Duration> parse_duration(std::string_view text) {
  if (text == "0") return Parsed<Duration>::ok(Duration{0});
  auto [number, suffix] = split_number(text);
  for (const auto& u : kDurationUnits) {
    if (suffix != u.suffix) continue;
    auto ms = scale(number, u.factor);
    if (!ms) break;
    if (*ms > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
      return Parsed<Duration>::fail("a duration that fits in 64 bits");
    return Parsed<Duration>::ok(Duration{static_cast<std::int64_t>(*ms)});
  }
  return Parsed<Duration>::fail(
      "a duration such as \"250ms\", \"30s\", \"5m\" or \"1h\" (whole milliseconds), or \"0\" for off");
}

std::string format_duration(Duration d) {
  return format_exact(static_cast<std::uint64_t>(d.count()), kDurationUnits, "0");
}

Parsed<std::uint64_t> parse_size(std::string_view text) {
  if (text == "0") return Parsed<std::uint64_t>::ok(0);
  auto [number, suffix] = split_number(text);
  for (const auto& u : kSizeUnits) {
    if (suffix != u.suffix) continue;
    if (auto bytes = scale(number, u.factor)) return Parsed<std::uint64_t>::ok(*bytes);
    break;
  }
  return Parsed<std::uint64_t>::fail(
      "a size such as \"512MiB\", \"2GiB\", \"64KiB\" or \"100B\" (whole bytes), or \"0\"");
}

std::string format_size(std::uint64_t bytes) {
  static constexpr std::array<Unit, 5> kPrint{
      {{"B", 1}, {"KiB", 1ull << 10}, {"MiB", 1ull << 20}, {"GiB", 1ull << 30}, {"TiB", 1ull << 40}}};
  return format_exact(bytes, kPrint, "0");
}

Parsed<mode_t> parse_octal_mode(std::string_view text) {
  std::uint64_t v = 0;
  bool ok = !text.empty() && text.size() <= 4;
  for (char c : text) {
    if (c < '0' || c > '7') ok = false;
    v = v * 8 + static_cast<std::uint64_t>(c - '0');
  }
  if (!ok || v > 0777) return Parsed<mode_t>::fail("an octal mode from \"000\" to \"0777\", as a string");
  return Parsed<mode_t>::ok(static_cast<mode_t>(v));
}

std::string format_octal_mode(mode_t mode) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "%04o", static_cast<unsigned>(mode));
  return buf;
}

}  // namespace forkpool::config
