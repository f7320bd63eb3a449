// SPDX-License-Identifier: Apache-2.0
#pragma once
// Things that happen to pools and workers. Each is logged once, with its stable event
// name, and streamed as one JSON object to `forkpoolctl events` subscribers.
//
// The message is a sentence that starts with its subject ("worker web[3] pid 1234 exited
// on signal 9 (after 1.2s)", "pool web is running"), as the text log shows it. The subject
// is also a set of fields (pool, worker, pid, generation), so a JSON log line and a streamed
// event carry them as fields and the streamed message leaves the subject out
// ("exited on signal 9 (after 1.2s)"): a reader of either never sees it twice.

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
  unsigned generation = 0;  // the worker's (or the pool's) configuration generation; 0 = none
};

// "worker web[3] pid 1234", "worker web[3]", "pool web", "" (the master itself).
std::string subject_text(const EventSubject& subject);

void report(MasterContext& ctx, spdlog::level::level_enum level, std::string_view event, EventSubject subject,
            const std::string& message, nlohmann::json extra = nlohmann::json::object());

// A worker's STATUS= text changed: the event worker.status with the new text as "status"
// (logged at debug only: some workers update it with every request).
void report_status(MasterContext& ctx, EventSubject subject, const std::string& status);

}  // namespace forkpool::supervisor
