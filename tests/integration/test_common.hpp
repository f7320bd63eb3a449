// SPDX-License-Identifier: Apache-2.0
#pragma once
// Small helpers shared by the reliability tests (issue 10): a master with a control
// socket in its own folder, status replies, pools written as TOML.

#include <signal.h>
#include <sys/wait.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "support/control_client.hpp"
#include "support/master_process.hpp"
#include "support/temp_dir.hpp"
#include "support/wait_until.hpp"

namespace forkpool::test::reliability {

using nlohmann::json;
using namespace std::chrono_literals;

inline std::string quoted(const std::string& s) { return "\"" + s + "\""; }

inline std::string supervisor_section(const std::string& extra = "") {
  return "[supervisor]\ncontrol_socket = \"ctl.sock\"\nlog_level = \"debug\"\n" + extra + "\n";
}

// `args`: more argv entries, each already quoted and preceded by ", ".
inline std::string testworker_pool(const std::string& name, int workers, const std::string& args,
                                   const std::string& extra = "") {
  return "[pools." + name + "]\ncommand = [" + quoted(testworker_binary().string()) + args +
         "]\nworkers = " + std::to_string(workers) + "\n" + extra + "\n";
}

inline std::string hello_pool(const std::string& name, int workers, const std::string& extra = "") {
  return "[pools." + name + "]\ncommand = [" + quoted(hello_binary().string()) +
         "]\nlisten = [\"tcp://127.0.0.1:0\"]\nworkers = " + std::to_string(workers) + "\n" + extra + "\n";
}

// One master with a control socket in its own folder.
struct Setup {
  TempDir dir;
  std::unique_ptr<MasterProcess> master;

  explicit Setup(const std::string& config, std::vector<std::string> prefix = {}) {
    write_file(dir / "f.toml", config);
    master = std::make_unique<MasterProcess>(dir / "f.toml", std::move(prefix));
  }
  std::filesystem::path socket() const { return dir / "ctl.sock"; }
  ControlClient client() const { return ControlClient(socket(), 10s); }
};

inline json status_of(ControlClient& c) { return c.request({{"cmd", "status"}}); }

// The pool's object in a status reply (null when it is not there).
inline json pool_status(ControlClient& c, const std::string& name) {
  const json status = status_of(c);
  if (!status.is_object() || !status.contains("pools")) return nullptr;
  for (const auto& p : status["pools"])
    if (p.value("name", "") == name) return p;
  return nullptr;
}

inline std::string pool_state(ControlClient& c, const std::string& name) {
  const json p = pool_status(c, name);
  return p.is_object() ? p.value("state", "") : "";
}

inline std::uint64_t counter(const json& pool, const std::string& name) {
  if (!pool.is_object() || !pool.contains("counters") || !pool["counters"].contains(name)) return ~0ull;
  return pool["counters"][name].get<std::uint64_t>();
}

inline std::string read_text(const std::filesystem::path& file) {
  std::ifstream in(file);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The pid written by fp-testworker's --orphan/--pidfile (0 while the file is missing).
inline pid_t read_pid(const std::filesystem::path& file) {
  const std::string s = read_text(file);
  return s.empty() ? 0 : static_cast<pid_t>(std::stol(s));
}

inline void stop_master(MasterProcess& master) {
  master.signal(SIGTERM);
  const auto status = master.wait_exit(30s);
  REQUIRE(status.has_value());
  CHECK(WIFEXITED(*status));
  CHECK(WEXITSTATUS(*status) == 0);
}

}  // namespace forkpool::test::reliability
