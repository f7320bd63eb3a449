// SPDX-License-Identifier: Apache-2.0
// The repeated-warning limiter: its policy on a made-up clock, then the real thing on a
// libuv loop writing to a log file.

#include "supervisor/observe/log_limiter.hpp"

#include <uv.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>

#include "supervisor/observe/log.hpp"
#include "support/temp_dir.hpp"

using forkpool::log::RepeatPolicy;
using namespace std::chrono_literals;

TEST_CASE("repeat policy: a burst, then counting, then sums until a quiet window",
          "[log][limiter]") {
  RepeatPolicy p(5, 10s);
  const RepeatPolicy::Clock::time_point t0{};
  for (int i = 0; i < 5; ++i) CHECK(p.admit(t0 + i * 1ms));
  for (int i = 0; i < 100; ++i) CHECK_FALSE(p.admit(t0 + 10ms));
  CHECK(p.window_end() == t0 + 10s);
  CHECK(p.flush(t0 + 10s) == 100);
  // Still flooding: the next window has no burst of its own.
  CHECK_FALSE(p.admit(t0 + 11s));
  CHECK(p.window_end() == t0 + 20s);
  CHECK(p.flush(t0 + 20s) == 1);
  // A window with nothing suppressed closes; the next occurrence is news again.
  CHECK(p.flush(t0 + 30s) == 0);
  CHECK(p.admit(t0 + 31s));
  CHECK(p.total() == 107);
}

TEST_CASE("repeat policy: occurrences spread wider than the interval are all logged",
          "[log][limiter]") {
  RepeatPolicy p(2, 10s);
  const RepeatPolicy::Clock::time_point t0{};
  for (int i = 0; i < 20; ++i) CHECK(p.admit(t0 + i * 6s));
  CHECK(p.suppressed() == 0);
}

TEST_CASE("repeated warning logs a burst and one summary with the exact count", "[log][limiter]") {
  forkpool::test::TempDir dir;
  const auto file = dir / "log.txt";
  forkpool::log::setup({"info", forkpool::config::LogFormat::Text, file});
  uv_loop_t loop;
  REQUIRE(uv_loop_init(&loop) == 0);
  {
    forkpool::log::RepeatedWarning w(&loop, "test.flood", 2, 20ms);
    for (int i = 0; i < 100; ++i)
      w.warn("worker web[0] pid 42",
             [&] { return "worker web[0] pid 42 did it again (" + std::to_string(i) + ")"; });
    CHECK(w.total() == 100);
    // The summary timer fires, and once a window passes quietly nothing keeps the loop.
    uv_run(&loop, UV_RUN_DEFAULT);
  }
  uv_run(&loop, UV_RUN_DEFAULT);  // the timer's close callback
  REQUIRE(uv_loop_close(&loop) == 0);
  forkpool::log::setup({});

  std::ifstream in(file);
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string text = ss.str();
  INFO(text);
  CHECK_THAT(text, Catch::Contains("[test.flood] worker web[0] pid 42 did it again (0)"));
  CHECK_THAT(text, Catch::Contains("[test.flood] worker web[0] pid 42 did it again (1)"));
  CHECK_THAT(text, !Catch::Contains("did it again (2)"));
  CHECK(std::regex_search(
      text,
      std::regex(
          R"(\[test\.flood\] worker web\[0\] pid 42: 98 more suppressed in the last [0-9]+\.[0-9]s)")));
}
