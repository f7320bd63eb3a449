// SPDX-License-Identifier: Apache-2.0
#pragma once
// Text from outside (a worker's STATUS=, its captured output) on its way to a terminal or
// a text log: control characters are escaped so that it cannot move the cursor, retitle
// or clear the window, or forge a line of the log. JSON output needs none of this; its
// encoder escapes on its own. Header-only: the master's log and forkpoolctl both use it.

#include <cstddef>
#include <string>
#include <string_view>

namespace forkpool::base {

namespace detail {

inline bool continuation(std::string_view s, std::size_t i) {
  return i < s.size() && (static_cast<unsigned char>(s[i]) & 0xc0) == 0x80;
}

// Length of the valid UTF-8 sequence starting at s[i] (a non-ASCII lead byte), or 0.
inline std::size_t utf8_length(std::string_view s, std::size_t i) {
  const auto b = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char lead = b(i);
  if (lead >= 0xc2 && lead <= 0xdf) return continuation(s, i + 1) ? 2 : 0;
  if (lead >= 0xe0 && lead <= 0xef) {
    if (!continuation(s, i + 1) || !continuation(s, i + 2)) return 0;
    if (lead == 0xe0 && b(i + 1) < 0xa0) return 0;  // overlong
    if (lead == 0xed && b(i + 1) > 0x9f) return 0;  // a UTF-16 surrogate
    return 3;
  }
  if (lead >= 0xf0 && lead <= 0xf4) {
    if (!continuation(s, i + 1) || !continuation(s, i + 2) || !continuation(s, i + 3)) return 0;
    if (lead == 0xf0 && b(i + 1) < 0x90) return 0;  // overlong
    if (lead == 0xf4 && b(i + 1) > 0x8f) return 0;  // beyond U+10FFFF
    return 4;
  }
  return 0;
}

inline void append_hex(std::string& out, const char* prefix, unsigned value, int digits) {
  static constexpr char kHex[] = "0123456789abcdef";
  out += prefix;
  for (int d = digits - 1; d >= 0; --d) out += kHex[(value >> (4 * d)) & 0xf];
}

}  // namespace detail

// True when printable(text) would return `text` unchanged.
inline bool is_printable(std::string_view text) {
  for (std::size_t i = 0; i < text.size();) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c < 0x80) {
      if (c < 0x20 || c == 0x7f) return false;
      ++i;
      continue;
    }
    const std::size_t n = detail::utf8_length(text, i);
    // C1 controls (U+0080..U+009F) are 0xc2 0x80..0x9f: some terminals act on them.
    if (n == 0 || (n == 2 && c == 0xc2 && static_cast<unsigned char>(text[i + 1]) <= 0x9f))
      return false;
    i += n;
  }
  return true;
}

// ESC as \e, BEL \a, BS \b, TAB \t, LF \n, VT \v, FF \f, CR \r, other C0 controls and DEL
// as \xNN, C1 controls as \uNNNN, bytes that are not UTF-8 as \xNN. Everything else, a
// backslash included, passes unchanged: this is for eyes, not for parsing back.
inline std::string printable(std::string_view text) {
  if (is_printable(text)) return std::string(text);
  std::string out;
  out.reserve(text.size() + 16);
  for (std::size_t i = 0; i < text.size();) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c >= 0x80) {
      const std::size_t n = detail::utf8_length(text, i);
      if (n == 0) {
        detail::append_hex(out, "\\x", c, 2);
        ++i;
      } else if (n == 2 && c == 0xc2 && static_cast<unsigned char>(text[i + 1]) <= 0x9f) {
        detail::append_hex(out, "\\u", static_cast<unsigned char>(text[i + 1]), 4);
        i += 2;
      } else {
        out.append(text.substr(i, n));
        i += n;
      }
      continue;
    }
    ++i;
    if (c >= 0x07 && c <= 0x0d) {  // BEL BS TAB LF VT FF CR, as C writes them
      out += '\\';
      out += "abtnvfr"[c - 0x07];
    } else if (c == 0x1b) {
      out += "\\e";
    } else if (c < 0x20 || c == 0x7f) {
      detail::append_hex(out, "\\x", c, 2);
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

// printable(), except that a line break continues the text on an indented line (two
// spaces, unless the line starts with one already): a message written in several lines
// on purpose reads so, and no line of it can pass for a log line or an event of its own.
inline std::string printable_lines(std::string_view text) {
  if (is_printable(text)) return std::string(text);
  std::string out;
  std::size_t start = 0;
  for (;;) {
    const auto nl = text.find('\n', start);
    out += printable(text.substr(start, nl == std::string_view::npos ? nl : nl - start));
    if (nl == std::string_view::npos || nl + 1 == text.size()) break;
    out += '\n';
    if (text[nl + 1] != ' ') out += "  ";
    start = nl + 1;
  }
  return out;
}

}  // namespace forkpool::base
