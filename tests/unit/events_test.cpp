// SPDX-License-Identifier: Apache-2.0
// One event, two readers: the log line (text or JSON with fields) and the streamed object.

#include <catch2/catch.hpp>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <vector>

#include "supervisor/observe/events.hpp"
#include "supervisor/observe/log.hpp"
#include "support/temp_dir.hpp"

namespace sv = forkpool::supervisor;
namespace fplog = forkpool::log;
using nlohmann::json;

namespace {

std::vector<std::string> lines(const std::filesystem::path& file) {
  std::vector<std::string> out;
  std::ifstream in(file);
  std::string line;
  while (std::getline(in, line)) out.push_back(line);
  return out;
}

}  // namespace

TEST_CASE("an event's JSON log line has its subject and facts as fields, its stream leaves the subject out of the message",
          "[events]") {
  forkpool::test::TempDir dir;
  fplog::setup({"info", forkpool::config::LogFormat::Json, dir / "m.log"});
  sv::MasterContext ctx;
  std::vector<json> streamed;
  ctx.events = [&](const json& e) { streamed.push_back(e); };

  sv::report(ctx, spdlog::level::warn, "worker.exit", {"web", 3u, 1234, 2},
             "worker web[3] pid 1234 exited with status 1 (after 1.0s)", {{"reason", "crashed"}, {"exit_code", 1}});
  sv::report(ctx, spdlog::level::info, "pool.scale", {"web", {}, 0, 0}, "pool web scales from 2 to 3 workers",
             {{"from", 2}, {"to", 3}});
  sv::report(ctx, spdlog::level::info, "config.reload", {"", {}, 0, 0}, "configuration generation 2");
  // A message that does not start with its subject is streamed whole.
  sv::report(ctx, spdlog::level::info, "worker.spawn", {"web", 0u, 77, 1}, "a worker of web started");

  const auto logged = lines(dir / "m.log");
  REQUIRE(logged.size() == 4);
  CHECK(logged[0].rfind(R"({"time":)", 0) == 0);
  CHECK(logged[0].find(R"("level":"warn","event":"worker.exit","pool":"web","worker":3,"pid":1234,"generation":2,)") !=
        std::string::npos);
  const json exit = json::parse(logged[0]);
  CHECK(exit["reason"] == "crashed");
  CHECK(exit["exit_code"] == 1);
  CHECK(exit["message"] == "worker web[3] pid 1234 exited with status 1 (after 1.0s)");
  const json scale = json::parse(logged[1]);
  CHECK(scale["pool"] == "web");
  CHECK_FALSE(scale.contains("worker"));
  CHECK_FALSE(scale.contains("generation"));
  CHECK(scale["to"] == 3);
  const json reload = json::parse(logged[2]);
  CHECK_FALSE(reload.contains("pool"));

  REQUIRE(streamed.size() == 4);
  CHECK(streamed[0]["message"] == "exited with status 1 (after 1.0s)");
  CHECK(streamed[0]["pid"] == 1234);
  CHECK(streamed[0]["generation"] == 2);
  CHECK(streamed[0]["reason"] == "crashed");
  CHECK(streamed[1]["message"] == "scales from 2 to 3 workers");
  CHECK(streamed[2]["message"] == "configuration generation 2");
  CHECK(streamed[3]["message"] == "a worker of web started");
  fplog::setup({"info", forkpool::config::LogFormat::Text, ""});
}

TEST_CASE("an event's text log line is the message alone, said once", "[events]") {
  forkpool::test::TempDir dir;
  fplog::setup({"info", forkpool::config::LogFormat::Text, dir / "m.log"});
  sv::MasterContext ctx;
  sv::report(ctx, spdlog::level::warn, "worker.exit", {"web", 3u, 1234, 2},
             "worker web[3] pid 1234 exited on signal 9 (after 2.0s)", {{"reason", "crashed"}, {"signal", 9}});
  const auto logged = lines(dir / "m.log");
  REQUIRE(logged.size() == 1);
  CHECK_THAT(logged[0], Catch::EndsWith(" warn  [worker.exit] worker web[3] pid 1234 exited on signal 9 (after 2.0s)"));
  fplog::setup({"info", forkpool::config::LogFormat::Text, ""});
}
