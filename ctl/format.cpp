// SPDX-License-Identifier: Apache-2.0
#include "ctl/format.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>

namespace forkpool::ctl {

std::string format_duration(double seconds) {
  if (!(seconds > 0) || !std::isfinite(seconds)) return "0ms";
  if (seconds < 1.0) return fmt::format("{}ms", static_cast<long long>(seconds * 1000.0));
  if (seconds < 60.0) {
    // Keep one decimal, but never print "60.0s": that is a minute.
    const double tenths = std::floor(seconds * 10.0) / 10.0;
    return fmt::format("{:.1f}s", tenths);
  }
  const auto total = static_cast<long long>(seconds);
  if (total < 3600) return fmt::format("{}m{:02}s", total / 60, total % 60);
  if (total < 86400) return fmt::format("{}h{:02}m", total / 3600, (total % 3600) / 60);
  return fmt::format("{}d{:02}h", total / 86400, (total % 86400) / 3600);
}

std::string format_ms(double ms) {
  if (!(ms > 0) || !std::isfinite(ms)) return "0ms";
  if (ms < 1.0) return fmt::format("{:.2f}ms", ms);
  if (ms < 100.0) return fmt::format("{:.1f}ms", ms);
  if (ms < 1000.0) return fmt::format("{}ms", static_cast<long long>(ms));
  return format_duration(ms / 1000.0);
}

std::string format_bytes(std::uint64_t bytes) {
  static constexpr const char* kUnits[] = {"KiB", "MiB", "GiB", "TiB", "PiB"};
  if (bytes < 1024) return fmt::format("{} B", bytes);
  double v = static_cast<double>(bytes) / 1024.0;
  std::size_t unit = 0;
  while (v >= 1024.0 && unit + 1 < std::size(kUnits)) {
    v /= 1024.0;
    ++unit;
  }
  if (v >= 100.0) return fmt::format("{:.0f} {}", v, kUnits[unit]);
  if (v >= 10.0) return fmt::format("{:.1f} {}", v, kUnits[unit]);
  return fmt::format("{:.2f} {}", v, kUnits[unit]);
}

std::string format_rate(double per_second) {
  if (!(per_second > 0) || !std::isfinite(per_second)) return "0.0/s";
  if (per_second < 1000.0) return fmt::format("{:.1f}/s", per_second);
  return fmt::format("{:.0f}/s", per_second);
}

Colour state_colour(std::string_view state) {
  if (state == "idle" || state == "running") return Colour::Green;
  if (state == "busy") return Colour::Yellow;
  if (state == "starting") return Colour::Cyan;
  if (state == "stopping") return Colour::Magenta;
  if (state == "exited" || state == "failed") return Colour::Red;
  if (state == "stopped" || state == "empty") return Colour::Dim;
  return Colour::None;
}

namespace {

std::string_view sgr(Colour c) {
  switch (c) {
    case Colour::None:
      return "";
    case Colour::Red:
      return "\x1b[31m";
    case Colour::Green:
      return "\x1b[32m";
    case Colour::Yellow:
      return "\x1b[33m";
    case Colour::Blue:
      return "\x1b[34m";
    case Colour::Magenta:
      return "\x1b[35m";
    case Colour::Cyan:
      return "\x1b[36m";
    case Colour::Dim:
      return "\x1b[2m";
    case Colour::Bold:
      return "\x1b[1m";
  }
  return "";
}

constexpr std::string_view kReset = "\x1b[0m";

// Length of the escape sequence starting at s[i] (s[i] == ESC): CSI sequences end at a
// byte in 0x40..0x7e; anything else is taken as a two-byte escape.
std::size_t escape_length(std::string_view s, std::size_t i) {
  if (i + 1 >= s.size()) return s.size() - i;
  if (s[i + 1] != '[') return 2;
  std::size_t j = i + 2;
  while (j < s.size()) {
    const auto c = static_cast<unsigned char>(s[j]);
    ++j;
    if (c >= 0x40 && c <= 0x7e) break;
  }
  return j - i;
}

bool is_continuation(char c) {
  return (static_cast<unsigned char>(c) & 0xc0) == 0x80;
}

}  // namespace

std::string paint(std::string_view text, Colour colour, bool enabled) {
  if (!enabled || colour == Colour::None || text.empty()) return std::string(text);
  std::string out;
  out.reserve(text.size() + 10);
  out.append(sgr(colour)).append(text).append(kReset);
  return out;
}

bool colour_wanted(int fd) {
  const char* no_color = std::getenv("NO_COLOR");  // no-color.org: any non-empty value
  return ::isatty(fd) == 1 && (no_color == nullptr || *no_color == '\0');
}

std::size_t display_width(std::string_view s) {
  std::size_t width = 0;
  for (std::size_t i = 0; i < s.size();) {
    if (s[i] == '\x1b') {
      i += escape_length(s, i);
      continue;
    }
    if (!is_continuation(s[i])) ++width;
    ++i;
  }
  return width;
}

std::string truncate_to_width(std::string_view s, std::size_t width) {
  if (width == 0 || display_width(s) <= width) return std::string(s);
  std::string out;
  std::size_t used = 0;
  bool coloured = false;
  for (std::size_t i = 0; i < s.size();) {
    if (s[i] == '\x1b') {
      const std::size_t n = escape_length(s, i);
      out.append(s.substr(i, n));
      coloured = s.substr(i, n) != kReset;
      i += n;
      continue;
    }
    if (!is_continuation(s[i])) {
      if (used == width) break;
      ++used;
    }
    out.push_back(s[i]);
    ++i;
  }
  if (coloured) out.append(kReset);
  return out;
}

Table::Table(std::vector<std::string> headers, std::vector<Align> aligns)
    : headers_(std::move(headers)), aligns_(std::move(aligns)) {
  aligns_.resize(headers_.size(), Align::Left);
}

void Table::add_row(std::vector<Cell> row) {
  row.resize(headers_.size());
  rows_.push_back(std::move(row));
}

std::string Table::render(bool colour, std::string_view indent) const {
  std::vector<std::size_t> widths(headers_.size());
  for (std::size_t c = 0; c < headers_.size(); ++c) {
    widths[c] = display_width(headers_[c]);
    for (const auto& row : rows_) widths[c] = std::max(widths[c], display_width(row[c].text));
  }
  std::string out;
  auto emit = [&](std::size_t c, std::string_view text, Colour col) {
    const std::size_t pad = widths[c] - display_width(text);
    const bool last = c + 1 == headers_.size();
    if (c > 0) out.append("  ");
    if (aligns_[c] == Align::Right) out.append(pad, ' ');
    out.append(paint(text, col, colour));
    if (aligns_[c] == Align::Left && !last) out.append(pad, ' ');
  };
  auto finish_line = [&] {
    while (!out.empty() && out.back() == ' ') out.pop_back();
    out.push_back('\n');
  };
  out.append(indent);
  for (std::size_t c = 0; c < headers_.size(); ++c) emit(c, headers_[c], Colour::Bold);
  finish_line();
  for (const auto& row : rows_) {
    out.append(indent);
    for (std::size_t c = 0; c < headers_.size(); ++c) emit(c, row[c].text, row[c].colour);
    finish_line();
  }
  return out;
}

}  // namespace forkpool::ctl
