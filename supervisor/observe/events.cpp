#include "supervisor/observe/events.hpp"

namespace forkpool::supervisor {

void report(MasterContext& ctx, spdlog::level::level_enum level, std::string_view event, EventSubject subject,
            const std::string& message, nlohmann::json extra) {
  log::at(level, event, "{}", message);
  if (!ctx.events) return;
  nlohmann::json e = {{"time", log::timestamp()}, {"event", event}, {"pool", subject.pool}};
  if (subject.worker) e["worker"] = *subject.worker;
  if (subject.pid > 0) e["pid"] = subject.pid;
  e["message"] = message;
  for (auto& [k, v] : extra.items()) e[k] = v;
  ctx.events(e);
}

void report_status(MasterContext& ctx, EventSubject subject, const std::string& status) {
  report(ctx, spdlog::level::debug, "worker.status", subject,
         fmt::format("worker {}[{}] pid {} status: {}", subject.pool, subject.worker.value_or(0), subject.pid, status),
         {{"status", status}});
}

}  // namespace forkpool::supervisor
