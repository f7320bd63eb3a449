// SPDX-License-Identifier: Apache-2.0
// Escaping untrusted text for terminals and text logs (base/printable.hpp), and the text
// log using it.

#include "base/printable.hpp"

#include <catch2/catch.hpp>
#include <fstream>
#include <sstream>
#include <string>

#include "supervisor/observe/log.hpp"
#include "support/temp_dir.hpp"

using forkpool::base::is_printable;
using forkpool::base::printable;

TEST_CASE("printable leaves ordinary text alone", "[printable]") {
  for (const std::string s : {"", "hello", "path\\to\\file",
                              "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", "\xc2\xa0nbsp"}) {
    CHECK(is_printable(s));
    CHECK(printable(s) == s);
  }
}

TEST_CASE("printable escapes C0, DEL, C1 and bytes that are not UTF-8", "[printable]") {
  CHECK(printable("\x1b]0;title\x07") == "\\e]0;title\\a");
  CHECK(printable("a\rb\nc\td\be\vf\fg") == "a\\rb\\nc\\td\\be\\vf\\fg");
  CHECK(printable(std::string("nul\0x", 5)) == "nul\\x00x");
  CHECK(printable("\x01\x1f\x7f") == "\\x01\\x1f\\x7f");
  CHECK(printable("\xc2\x9b"
                  "31m") == "\\u009b31m");  // CSI as a C1 control
  CHECK(printable("\x9b"
                  "31m") == "\\x9b31m");  // CSI as a lone 8-bit byte
  CHECK(printable("\xff\xfe") == "\\xff\\xfe");
  CHECK(printable("\xe2\x82") == "\\xe2\\x82");           // a cut-off sequence
  CHECK(printable("\xc0\xaf") == "\\xc0\\xaf");           // overlong '/'
  CHECK(printable("\xed\xa0\x80") == "\\xed\\xa0\\x80");  // a surrogate
  CHECK(printable("ok \xc3\xa9\x1b") == "ok \xc3\xa9\\e");
  CHECK_FALSE(is_printable("\x1b"));
}

TEST_CASE("the text log escapes control characters and indents continuation lines",
          "[printable][log]") {
  forkpool::test::TempDir dir;
  forkpool::log::setup({"info", forkpool::config::LogFormat::Text, dir / "log.txt"});
  forkpool::log::info("test.escape", "worker says {}", "\x1b[2J\rgotcha\x07");
  forkpool::log::info("test.lines", "first\n  second, indented already\nthird");
  forkpool::log::setup({});
  std::ifstream in(dir / "log.txt");
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string text = ss.str();
  INFO(text);
  CHECK_THAT(text, Catch::Contains("[test.escape] worker says \\e[2J\\rgotcha\\a\n"));
  CHECK_THAT(text, Catch::Contains("[test.lines] first\n  second, indented already\n  third\n"));
  CHECK(text.find('\x1b') == std::string::npos);
}
