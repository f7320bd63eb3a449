// SPDX-License-Identifier: Apache-2.0
#pragma once
// Small /proc files (stat, status) read whole into a string with open + read, and the
// fields of a /proc/PID/stat line. No iostreams: a std::ifstream anywhere in the master
// links and starts the C++ locale machinery, ~300 KiB of text resident in every master
// (docs/performance.md, master memory).

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace forkpool::base {

// The file's text (at most `limit` bytes), or nothing when it cannot be opened or read
// (the process is gone).
inline std::optional<std::string> read_proc_text(const std::string& path, std::size_t limit = 16384) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  std::string text(limit, '\0');
  std::size_t len = 0;
  while (len < limit) {
    const ssize_t n = ::read(fd, text.data() + len, limit - len);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      ::close(fd);
      return std::nullopt;
    }
    if (n == 0) break;
    len += static_cast<std::size_t>(n);
  }
  ::close(fd);
  text.resize(len);
  return text;
}

// The value of `key` ("SigCgt", "Groups") in the text of a /proc/PID/status: the rest of
// its line after the colon and the blanks, or nothing when no line has the key.
inline std::optional<std::string_view> status_value(std::string_view text, std::string_view key) {
  while (!text.empty()) {
    const auto eol = text.find('\n');
    const std::string_view line = text.substr(0, eol);
    if (line.size() > key.size() && line.starts_with(key) && line[key.size()] == ':') {
      std::string_view value = line.substr(key.size() + 1);
      while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
      return value;
    }
    if (eol == std::string_view::npos) break;
    text.remove_prefix(eol + 1);
  }
  return std::nullopt;
}

// The space-separated fields of a /proc/PID/stat line after the command name, which may
// hold spaces and parentheses itself (so the line is read on from its last ')'):
// fields[0] is stat's field 3 (state), fields[1] field 4 (ppid), and so on. Empty when
// the line has no command name.
inline std::vector<std::string_view> stat_fields(std::string_view line) {
  std::vector<std::string_view> fields;
  const auto close = line.rfind(')');
  if (close == std::string_view::npos) return fields;
  fields.reserve(52);  // what a stat line of Linux 6 has
  std::string_view rest = line.substr(close + 1);
  while (!rest.empty()) {
    const auto start = rest.find_first_not_of(" \n");
    if (start == std::string_view::npos) break;
    rest.remove_prefix(start);
    const auto end = rest.find_first_of(" \n");
    fields.push_back(rest.substr(0, end));
    rest = end == std::string_view::npos ? std::string_view() : rest.substr(end);
  }
  return fields;
}

}  // namespace forkpool::base
