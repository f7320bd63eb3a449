// SPDX-License-Identifier: Apache-2.0
#include "supervisor/observe/log.hpp"

#include <spdlog/logger.h>
#include <spdlog/sinks/stdout_sinks.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <memory>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "base/printable.hpp"
#include "supervisor/observe/log_file_sink.hpp"

namespace forkpool::log {
namespace {

struct State {
  Options options;
  std::shared_ptr<spdlog::logger> logger;
};

State& state() {
  static State s;
  return s;
}

std::shared_ptr<spdlog::logger> make_logger(const Options& options) {
  spdlog::sink_ptr sink;
  if (options.file.empty()) {
    sink = std::make_shared<spdlog::sinks::stderr_sink_st>();
  } else {
    try {
      sink = std::make_shared<LogFileSink>(options.file);
    } catch (const std::exception& e) {
      throw std::runtime_error("cannot open log file " + options.file.string() + ": " + e.what());
    }
  }
  sink->set_pattern("%v");
  auto logger = std::make_shared<spdlog::logger>("forkpool", sink);
  logger->set_level(spdlog::level::from_str(options.level));
  logger->flush_on(spdlog::level::trace);  // Operators tail this; never hold lines back.
  return logger;
}

// A message for the text format. Control characters are escaped: much of what is logged
// (a worker's output, its STATUS=) is the worker's to choose, and operators read the log
// on terminals. A line break the master writes on purpose continues the entry on an
// indented line, so no message can start what looks like a log line of its own.
std::string text_message(std::string_view message) { return base::printable_lines(message); }

// The names the config file and `forkpoolctl log-level` use ("warn", not spdlog's "warning").
std::string_view level_name(spdlog::level::level_enum level) {
  switch (level) {
    case spdlog::level::trace: return "trace";
    case spdlog::level::debug: return "debug";
    case spdlog::level::info: return "info";
    case spdlog::level::warn: return "warn";
    case spdlog::level::err: return "error";
    case spdlog::level::critical: return "critical";
    default: return "off";
  }
}

}  // namespace

std::string timestamp() {
  using namespace std::chrono;
  const auto now = system_clock::now();
  const std::time_t secs = system_clock::to_time_t(now);
  const auto ms = duration_cast<milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm tm{};
  ::gmtime_r(&secs, &tm);
  char buf[40];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  return fmt::format("{}.{:03}Z", buf, ms);
}

void setup(const Options& options) {
  auto logger = make_logger(options);
  state().options = options;
  state().logger = std::move(logger);
}

bool reopen() {
  State& s = state();
  if (s.options.file.empty()) return true;
  try {
    auto logger = make_logger(s.options);
    logger->set_level(s.logger ? s.logger->level() : logger->level());
    s.logger = std::move(logger);
    info("log.reopen", "reopened log file {}", s.options.file.string());
    return true;
  } catch (const std::exception& e) {
    error("log.reopen_failed", "{}; still writing to the previous file", e.what());
    return false;
  }
}

bool set_level(std::string_view level) {
  const auto parsed = spdlog::level::from_str(std::string(level));
  // from_str maps unknown names to "off"; only accept "off" when it was asked for.
  if (parsed == spdlog::level::off && level != "off") return false;
  state().options.level = std::string(level);
  if (state().logger) state().logger->set_level(parsed);
  return true;
}

std::string level() { return state().options.level; }

bool enabled(spdlog::level::level_enum level) {
  const auto& logger = state().logger;
  return logger ? logger->should_log(level) : level >= spdlog::level::info;
}

void write(spdlog::level::level_enum level, std::string_view event, std::string_view message) {
  write(level, event, message, nlohmann::json::object());
}

void write(spdlog::level::level_enum level, std::string_view event, std::string_view message,
           const nlohmann::json& fields) {
  const std::string_view name = level_name(level);
  std::string line;
  if (state().options.format == config::LogFormat::Json) {
    // Ordered, so every line starts "time", "level", "event" whatever its fields.
    nlohmann::ordered_json j = {{"time", timestamp()}, {"level", name}, {"event", event}};
    if (fields.is_object()) {
      // The subject first, in the same order on every line; then the event's own fields.
      static constexpr std::string_view kSubject[] = {"pool", "worker", "pid", "generation"};
      for (const auto key : kSubject)
        if (const auto it = fields.find(key); it != fields.end()) j[std::string(key)] = *it;
      for (const auto& [key, value] : fields.items()) {
        const bool subject = std::find(std::begin(kSubject), std::end(kSubject), key) != std::end(kSubject);
        if (!subject && key != "time" && key != "level" && key != "event" && key != "message") j[key] = value;
      }
    }
    j["message"] = message;
    line = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  } else {
    line = fmt::format("{} {:<5} [{}] {}", timestamp(), name, event, text_message(message));
  }
  if (state().logger) state().logger->log(level, "{}", line);
  else std::fprintf(stderr, "%s\n", line.c_str());
}

}  // namespace forkpool::log
