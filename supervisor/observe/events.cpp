// SPDX-License-Identifier: Apache-2.0
#include "supervisor/observe/events.hpp"

namespace forkpool::supervisor {

std::string subject_text(const EventSubject& s) {
  if (s.pool.empty()) return {};
  if (!s.worker) return fmt::format("pool {}", s.pool);
  if (s.pid > 0) return fmt::format("worker {}[{}] pid {}", s.pool, *s.worker, s.pid);
  return fmt::format("worker {}[{}]", s.pool, *s.worker);
}

void report(MasterContext& ctx, spdlog::level::level_enum level, std::string_view event, EventSubject subject,
            const std::string& message, nlohmann::json extra) {
  const bool logged = log::enabled(level);
  if (!logged && !ctx.events) return;
  nlohmann::json fields = nlohmann::json::object();
  if (!subject.pool.empty()) fields["pool"] = subject.pool;
  if (subject.worker) fields["worker"] = *subject.worker;
  if (subject.pid > 0) fields["pid"] = subject.pid;
  if (subject.generation > 0) fields["generation"] = subject.generation;
  if (extra.is_object())
    for (auto& [k, v] : extra.items()) fields[k] = v;
  if (logged) log::write(level, event, message, fields);
  if (!ctx.events) return;
  nlohmann::json e = {{"time", log::timestamp()}, {"event", event}, {"pool", subject.pool}};
  e.update(fields);
  const std::string prefix = subject_text(subject);
  std::string_view said = message;
  if (!prefix.empty() && said.size() > prefix.size() && said.substr(0, prefix.size()) == prefix &&
      said[prefix.size()] == ' ')
    said.remove_prefix(prefix.size() + 1);
  e["message"] = said;
  ctx.events(e);
}

void report_status(MasterContext& ctx, EventSubject subject, const std::string& status) {
  report(ctx, spdlog::level::debug, "worker.status", subject,
         fmt::format("{} status: {}", subject_text(subject), status), {{"status", status}});
}

}  // namespace forkpool::supervisor
