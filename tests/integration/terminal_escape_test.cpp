// Text a worker controls (its STATUS= and its captured output) reaches operators'
// terminals through forkpoolctl and the text log. Control characters in it must arrive
// escaped, never raw, so a worker cannot retitle, clear or rewrite an operator's terminal.
// The JSON forms keep the exact text.

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "support/control_client.hpp"
#include "support/master_process.hpp"
#include "support/run_command.hpp"
#include "support/temp_dir.hpp"
#include "support/wait_until.hpp"

using namespace forkpool::test;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

// As TOML basic strings (the config file turns the escapes into the raw characters), and
// as they must be shown: ESC \e, BEL \a, CR \r, other C0 and DEL as \xNN, C1 as \uNNNN;
// printable UTF-8 unchanged.
const std::string kStatusToml = R"(\u001b]0;owned\u0007\u001b[2J\rX\u007f\u0001\u009bY é)";
const std::string kStatusRaw = "\x1b]0;owned\x07\x1b[2J\rX\x7f\x01\xc2\x9bY \xc3\xa9";
const std::string kStatusShown = R"(\e]0;owned\a\e[2J\rX\x7f\x01\u009bY é)";
const std::string kOutputToml = R"(\u001b[31mred\u0007\rover\ttab)";
const std::string kOutputShown = R"(\e[31mred\a\rover\ttab)";

std::string forkpoolctl() {
  return (std::filesystem::path(FORKPOOL_BINARY_DIR) / "ctl/forkpoolctl").string();
}

std::string pool_config() {
  return "[supervisor]\ncontrol_socket = \"ctl.sock\"\n\n[pools.web]\ncommand = [\"" +
         testworker_binary().string() + "\", \"--notify-after-ms\", \"0\", \"--status\", \"" +
         kStatusToml + "\", \"--stdout\", \"" + kOutputToml +
         "\"]\nworkers = 1\nready = \"notify\"\nstdout = \"log\"\n";
}

// Bytes a terminal would act on: C0 controls other than the newline ending each line,
// DEL, and the UTF-8 form of C1 controls.
std::vector<std::string> raw_controls(const std::string& text) {
  std::vector<std::string> found;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    for (std::size_t i = 0; i < line.size(); ++i) {
      const auto c = static_cast<unsigned char>(line[i]);
      const bool c1 = c == 0xc2 && i + 1 < line.size() &&
                      static_cast<unsigned char>(line[i + 1]) >= 0x80 &&
                      static_cast<unsigned char>(line[i + 1]) <= 0x9f;
      if (c < 0x20 || c == 0x7f || c1) {
        found.push_back(line);
        break;
      }
    }
  }
  return found;
}

std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

TEST_CASE("control characters from a worker reach forkpoolctl status and the text log escaped",
          "[escape]") {
  TempDir dir;
  write_file(dir / "f.toml", pool_config());
  MasterProcess master(dir / "f.toml");
  REQUIRE(!master.wait_log("\\[master.ready\\]").empty());
  REQUIRE(!master.wait_log("\\[worker.output\\] web\\[0\\] stdout: ").empty());

  // The JSON reply keeps the exact text: escaping is for display only.
  ControlClient c(dir / "ctl.sock");
  const json st = c.request({{"cmd", "status"}});
  REQUIRE(st.value("ok", false));
  CHECK(st["pools"][0]["workers"][0]["status"] == kStatusRaw);

  const auto r = run_command({forkpoolctl(), "-s", (dir / "ctl.sock").string(), "status"}, 20s);
  INFO(r.describe());
  REQUIRE(r.exited);
  CHECK(r.exit_code == 0);
  CHECK(raw_controls(r.out).empty());
  CHECK_THAT(r.out, Catch::Contains(kStatusShown));

  const std::string log = master.log();
  CHECK(raw_controls(log).empty());
  CHECK_THAT(log, Catch::Contains("[worker.output] web[0] stdout: " + kOutputShown));
}
