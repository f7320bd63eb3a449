// SPDX-License-Identifier: Apache-2.0
// base/proc_text.hpp: small /proc files read whole, and the fields of a stat line.

#include <unistd.h>

#include <catch2/catch.hpp>
#include <string>

#include "base/proc_text.hpp"

using forkpool::base::read_proc_text;
using forkpool::base::stat_fields;
using forkpool::base::status_value;

TEST_CASE("status_value finds a key at the start of a line only, and gives the rest of that line", "[proc]") {
  const std::string text = "Name:\tx\nSigCgtX:\t1\nSigCgt:\t0000000000004a02\nGroups:\t4 27 \nNoValue:\n";
  CHECK(status_value(text, "Name") == "x");
  CHECK(status_value(text, "SigCgt") == "0000000000004a02");  // not SigCgtX's line
  CHECK(status_value(text, "Groups") == "4 27 ");
  CHECK(status_value(text, "NoValue") == "");
  CHECK_FALSE(status_value(text, "Sig"));
  CHECK_FALSE(status_value(text, "Missing"));
  CHECK_FALSE(status_value("", "Name"));
}

TEST_CASE("stat_fields reads on from the last ')' of the command name", "[proc]") {
  const auto f = stat_fields("4242 (a) b (c) d) S 17 4242 4242 0 -1 4194560\n");
  REQUIRE(f.size() == 7);
  CHECK(f[0] == "S");
  CHECK(f[1] == "17");
  CHECK(f[6] == "4194560");
  CHECK(stat_fields("1 (init) R 0").size() == 2);
  CHECK(stat_fields("no command name").empty());
  CHECK(stat_fields("1 (x)").empty());
}

TEST_CASE("read_proc_text reads this process's stat and status whole, and nothing of a missing file", "[proc]") {
  const auto stat = read_proc_text("/proc/self/stat");
  REQUIRE(stat);
  CHECK(stat->starts_with(std::to_string(::getpid()) + " ("));
  const auto fields = stat_fields(*stat);
  REQUIRE(fields.size() > 20);
  CHECK(fields[1] == std::to_string(::getppid()));  // field 4: ppid

  const auto status = read_proc_text("/proc/self/status");
  REQUIRE(status);
  CHECK(status->find("\nSigCgt:") != std::string::npos);
  CHECK(status->find("\nGroups:") != std::string::npos);
  // A limit cuts the text, never overruns it.
  const auto cut = read_proc_text("/proc/self/status", 16);
  REQUIRE(cut);
  CHECK(cut->size() == 16);
  CHECK(*cut == status->substr(0, 16));

  CHECK_FALSE(read_proc_text("/proc/self/no-such-file"));
}
