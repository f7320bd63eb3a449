#pragma once
// Things that happen to pools and workers. Each is logged once, with its stable event
// name, and streamed as one JSON object to `forkpoolctl events` subscribers.

#include <sys/types.h>

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "supervisor/observe/log.hpp"
#include "supervisor/master_context.hpp"

namespace forkpool::supervisor {

struct EventSubject {
  std::string_view pool;
  std::optional<unsigned> worker;
  pid_t pid = 0;
};

void report(MasterContext& ctx, spdlog::level::level_enum level, std::string_view event, EventSubject subject,
            const std::string& message, nlohmann::json extra = nlohmann::json::object());

// A worker's STATUS= text changed: the event worker.status with the new text as "status"
// (logged at debug only: some workers update it with every request).
void report_status(MasterContext& ctx, EventSubject subject, const std::string& status);

}  // namespace forkpool::supervisor
