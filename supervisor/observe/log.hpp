// SPDX-License-Identifier: Apache-2.0
#pragma once
// The master's log: one line per event, as text or one JSON object a line.
// Every line carries a stable event name ("worker.exit") that operators can grep for.
// A JSON line also carries the event's facts as fields of their own (pool, worker, pid,
// generation, exit status, ...); a text line says them once, in its message.

#include <fmt/format.h>
#include <spdlog/common.h>

#include <nlohmann/json_fwd.hpp>

#include <filesystem>
#include <string>
#include <string_view>

#include "config/config.hpp"

namespace forkpool::log {

struct Options {
  std::string level = "info";
  config::LogFormat format = config::LogFormat::Text;
  std::filesystem::path file;  // empty = stderr
};

// Replaces the current logger. Throws std::runtime_error if the log file cannot be opened.
void setup(const Options& options);
// Reopens the log file (after rotation). On failure keeps writing to the old one and says so.
bool reopen();
// Returns false for an unknown level name.
bool set_level(std::string_view level);
std::string level();

bool enabled(spdlog::level::level_enum level);
// UTC with milliseconds, "2026-11-23T18:36:43.123Z", as in every log line and event.
std::string timestamp();
void write(spdlog::level::level_enum level, std::string_view event, std::string_view message);
// The same with fields: in JSON, each of `fields` (an object) is a member of the line,
// between "event" and "message"; the text format writes the message only.
void write(spdlog::level::level_enum level, std::string_view event, std::string_view message,
           const nlohmann::json& fields);

template <typename... Args>
void at(spdlog::level::level_enum level, std::string_view event, fmt::format_string<Args...> f,
        Args&&... args) {
  if (enabled(level)) write(level, event, fmt::format(f, std::forward<Args>(args)...));
}

// The same with fields for the JSON format (see write). `fields` is called, and must
// return a JSON object, only when the line is written, so a disabled level costs nothing.
template <typename Fields, typename... Args>
void at_with(spdlog::level::level_enum level, std::string_view event, Fields&& fields, fmt::format_string<Args...> f,
             Args&&... args) {
  if (enabled(level)) write(level, event, fmt::format(f, std::forward<Args>(args)...), fields());
}

template <typename... Args>
void trace(std::string_view event, fmt::format_string<Args...> f, Args&&... args) {
  at(spdlog::level::trace, event, f, std::forward<Args>(args)...);
}
template <typename... Args>
void debug(std::string_view event, fmt::format_string<Args...> f, Args&&... args) {
  at(spdlog::level::debug, event, f, std::forward<Args>(args)...);
}
template <typename... Args>
void info(std::string_view event, fmt::format_string<Args...> f, Args&&... args) {
  at(spdlog::level::info, event, f, std::forward<Args>(args)...);
}
template <typename... Args>
void warn(std::string_view event, fmt::format_string<Args...> f, Args&&... args) {
  at(spdlog::level::warn, event, f, std::forward<Args>(args)...);
}
template <typename... Args>
void error(std::string_view event, fmt::format_string<Args...> f, Args&&... args) {
  at(spdlog::level::err, event, f, std::forward<Args>(args)...);
}
template <typename... Args>
void critical(std::string_view event, fmt::format_string<Args...> f, Args&&... args) {
  at(spdlog::level::critical, event, f, std::forward<Args>(args)...);
}

}  // namespace forkpool::log
