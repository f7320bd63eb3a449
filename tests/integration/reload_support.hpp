// SPDX-License-Identifier: Apache-2.0
#pragma once
// Helpers of the reload integration tests (reload_test.cpp, reload_supervisor_test.cpp):
// configuration text, reading status and reload replies, HTTP load with an exact account
// of failures, the master in its own folder, and the `events` stream.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "support/control_client.hpp"
#include "support/http_client.hpp"
#include "support/master_process.hpp"
#include "support/run_command.hpp"
#include "support/temp_dir.hpp"
#include "support/wait_until.hpp"

namespace forkpool::test::reload_support {

using namespace std::chrono_literals;
using nlohmann::json;

// A reload reply may come at once or only when the change is complete: wait long enough
// for either. A rolling replacement of a few workers settles well within kSettle.
inline constexpr std::chrono::milliseconds kReplyDeadline = 60s;
inline constexpr std::chrono::milliseconds kSettle = 60s;

inline const std::string kHelloBody = "Hello, world\n";

// A shared-dispatch program that accepts in blocking mode, as a simple server does: an
// accept(2) that fails with EAGAIN (the listener made non-blocking under it) ends it with
// status 1.
inline const char* kBlockingServer =
    "import socket\n"
    "s = socket.socket(fileno=3)\n"
    "while True:\n"
    "    c, _ = s.accept()\n"
    "    c.recv(65536)\n"
    "    c.sendall(b'HTTP/1.1 200 OK\\r\\nContent-Length: 13\\r\\nConnection: close\\r\\n\\r\\nHello, world\\n')\n"
    "    c.close()\n";

// ---- configuration text -------------------------------------------------------------

inline std::string supervisor_section(const std::string& extra = "") {
  return "[supervisor]\ncontrol_socket = \"ctl.sock\"\n" + extra + "\n";
}

// A pool of forkpool-hello workers (master dispatch, the default).
inline std::string hello_pool(const std::string& name, int workers, const std::string& extra = "",
                       const std::string& listen = "tcp://127.0.0.1:0") {
  return "[pools." + name + "]\ncommand = [\"" + hello_binary().string() + "\"]\nlisten = [\"" +
         listen + "\"]\nworkers = " + std::to_string(workers) + "\n" + extra + "\n";
}

// A pool of fp-testworker processes without listeners (plain supervision).
inline std::string plain_pool(const std::string& name, int workers) {
  return "[pools." + name + "]\ncommand = [\"" + testworker_binary().string() +
         "\"]\nready = \"exec\"\nworkers = " + std::to_string(workers) + "\n\n";
}

// A worker-side key: changing it replaces every worker of the pool.
inline std::string env_mark(const std::string& value) {
  return "env = { MARK = \"" + value + "\" }\n";
}

// Replaces `path` atomically (write, then rename), so a master reading it concurrently
// sees the old file or the new one, never half of one.
inline void replace_file(const std::filesystem::path& path, const std::string& text) {
  const auto tmp = path.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << text;
  }
  std::filesystem::rename(tmp, path);
}

// 1-based line number of the first line containing `needle` (0 if none).
inline int line_of(const std::string& text, const std::string& needle) {
  const auto at = text.find(needle);
  if (at == std::string::npos) return 0;
  return 1 + static_cast<int>(
                 std::count(text.begin(), text.begin() + static_cast<std::ptrdiff_t>(at), '\n'));
}

inline std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) out.push_back(line);
  return out;
}

// ---- replies and status -------------------------------------------------------------

inline bool is_ok(const json& reply) {
  return reply.is_object() && reply.value("ok", false);
}

inline json status_of(ControlClient& c) {
  return c.request({{"cmd", "status"}});
}

// The pool's object in a status reply (null when it is not there).
inline json pool_in(const json& status, const std::string& name) {
  if (!status.is_object() || !status.contains("pools") || !status["pools"].is_array())
    return nullptr;
  for (const auto& p : status["pools"])
    if (p.value("name", "") == name) return p;
  return nullptr;
}

inline json pool_status(ControlClient& c, const std::string& name) {
  return pool_in(status_of(c), name);
}

// Serving workers of a pool as worker number -> pid.
inline std::map<unsigned, pid_t> serving_pids(const json& pool) {
  std::map<unsigned, pid_t> out;
  if (!pool.is_object()) return out;
  for (const auto& w : pool["workers"])
    if (w["role"] == "serving") out[w["worker"].get<unsigned>()] = w["pid"].get<pid_t>();
  return out;
}

// Every worker process the pool lists, whatever its role.
inline std::set<pid_t> all_pids(const json& pool) {
  std::set<pid_t> out;
  if (!pool.is_object()) return out;
  for (const auto& w : pool["workers"]) out.insert(w["pid"].get<pid_t>());
  return out;
}

inline std::set<pid_t> pid_set(const std::map<unsigned, pid_t>& pids) {
  std::set<pid_t> out;
  for (const auto& [worker, pid] : pids) out.insert(pid);
  return out;
}

// Settled: the target reached, every worker serving and ready, none starting or retiring.
inline bool settled(const json& pool, int target) {
  if (!pool.is_object() || pool["target"] != target || pool["live"] != target ||
      pool["ready"] != target)
    return false;
  for (const auto& w : pool["workers"])
    if (w["role"] != "serving" || w["state"] == "starting" || w["state"] == "stopping")
      return false;
  return static_cast<int>(pool["workers"].size()) == target;
}

// Every worker listed runs under `generation` and none of them is in `old`.
inline bool all_replaced(const json& pool, unsigned generation, const std::set<pid_t>& old) {
  if (!pool.is_object()) return false;
  for (const auto& w : pool["workers"]) {
    if (w.value("generation", 0u) != generation) return false;
    if (old.count(w["pid"].get<pid_t>()) != 0) return false;
  }
  return true;
}

// The pool's listener addresses as HOST:PORT (without "tcp://").
inline std::vector<std::string> listen_addresses(const json& pool) {
  std::vector<std::string> out;
  if (!pool.is_object() || !pool["listeners"].is_array()) return out;
  for (const auto& l : pool["listeners"]) {
    std::string s = l.get<std::string>();
    if (s.starts_with("tcp://")) s = s.substr(6);
    out.push_back(s);
  }
  return out;
}

// The entry of `pool` in a reload reply's "pools" (null when it is not there).
inline json change_of(const json& reply, const std::string& pool) {
  if (!reply.is_object() || !reply.contains("pools") || !reply["pools"].is_array()) return nullptr;
  for (const auto& p : reply["pools"])
    if (p.value("name", "") == pool) return p;
  return nullptr;
}

// Checks that a reload reply says `pool` had `change` with exactly `keys` changed
// (`keys` is not checked for added and removed pools).
inline void check_change(const json& reply, const std::string& pool, const std::string& change,
                  const std::vector<std::string>& keys = {}) {
  INFO("pool " << pool << " in reload reply " << reply.dump());
  const json entry = change_of(reply, pool);
  REQUIRE(entry.is_object());
  CHECK(entry.value("change", "") == change);
  if (change == "added" || change == "removed") return;
  REQUIRE(entry.contains("keys"));
  REQUIRE(entry["keys"].is_array());
  std::vector<std::string> got;
  for (const auto& k : entry["keys"]) got.push_back(k.get<std::string>());
  std::sort(got.begin(), got.end());
  std::vector<std::string> want = keys;
  std::sort(want.begin(), want.end());
  CHECK(got == want);
}

// The common shape of a successful reload reply.
inline void require_reloaded(const json& reply, unsigned generation) {
  INFO("reload reply: " << reply.dump());
  REQUIRE(is_ok(reply));
  CHECK(reply["generation"] == generation);
  REQUIRE(reply.contains("summary"));
  REQUIRE(reply["summary"].is_string());
  const std::string summary = reply["summary"].get<std::string>();
  CHECK(!summary.empty());
  CHECK(summary.find('\n') == std::string::npos);
  CHECK(reply["pools"].is_array());
  CHECK(reply["supervisor"].is_array());
}

// Prometheus samples "name{labels} value" -> value.
inline std::map<std::string, double> prometheus_samples(const std::string& text) {
  std::map<std::string, double> out;
  for (const auto& line : lines_of(text)) {
    if (line.empty() || line[0] == '#') continue;
    const auto space = line.rfind(' ');
    if (space == std::string::npos) continue;
    try {
      out[line.substr(0, space)] = std::stod(line.substr(space + 1));
    } catch (const std::exception&) {
    }
  }
  return out;
}

// forkpool_config_generation from the `metrics` command (-1 when it is missing).
inline double generation_metric(ControlClient& c) {
  const json m = c.request({{"cmd", "metrics"}});
  if (!is_ok(m) || !m["text"].is_string()) return -1;
  const auto samples = prometheus_samples(m["text"].get<std::string>());
  const auto it = samples.find("forkpool_config_generation");
  return it == samples.end() ? -1 : it->second;
}

// ---- processes ----------------------------------------------------------------------

// The environment a process was exec'd with, from /proc (empty when it is gone).
inline std::map<std::string, std::string> environ_of(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/environ", std::ios::binary);
  const std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::map<std::string, std::string> out;
  std::size_t pos = 0;
  while (pos < all.size()) {
    auto end = all.find('\0', pos);
    if (end == std::string::npos) end = all.size();
    const std::string entry = all.substr(pos, end - pos);
    const auto eq = entry.find('=');
    if (eq != std::string::npos) out[entry.substr(0, eq)] = entry.substr(eq + 1);
    pos = end + 1;
  }
  return out;
}

inline std::string env_value(pid_t pid, const std::string& name) {
  const auto env = environ_of(pid);
  const auto it = env.find(name);
  return it == env.end() ? "<unset>" : it->second;
}

// True while `pid` is a live (not zombie) child of `parent`: a pid reused by an unrelated
// process does not count.
inline bool is_child_of(pid_t pid, pid_t parent) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  if (!in) return false;
  std::string line;
  std::getline(in, line);
  const auto close = line.rfind(')');
  if (close == std::string::npos || close + 2 >= line.size()) return false;
  std::istringstream rest(line.substr(close + 2));
  char state = 0;
  long ppid = -1;
  rest >> state >> ppid;
  return state != 'Z' && state != 'X' && ppid == parent;
}

// ---- network ------------------------------------------------------------------------

// Connects to 127.x.y.z:PORT and closes at once: 0 when the connection was made, else
// the errno of connect (ECONNREFUSED once nothing listens there).
inline int connect_errno(const std::string& address) {
  const auto colon = address.rfind(':');
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return errno;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(std::stoi(address.substr(colon + 1))));
  ::inet_pton(AF_INET, address.substr(0, colon).c_str(), &a.sin_addr);
  const int rc = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  const int err = rc == 0 ? 0 : errno;
  ::close(fd);
  return err;
}

inline bool refuses(const std::string& address) {
  return connect_errno(address) == ECONNREFUSED;
}

inline bool hello_answers(const std::string& address, std::chrono::milliseconds timeout = 5s) {
  const auto r = http_get(address, "/", timeout);
  return r && r->status == 200 && r->body == kHelloBody;
}

// A TCP listener held by the test on 127.0.0.1, to make a bind of the master fail.
class HeldPort {
 public:
  HeldPort() {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (fd_ >= 0 && ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
        ::listen(fd_, 16) == 0 && ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) == 0)
      port_ = ntohs(a.sin_port);
  }
  ~HeldPort() {
    if (fd_ >= 0) ::close(fd_);
  }
  HeldPort(const HeldPort&) = delete;
  HeldPort& operator=(const HeldPort&) = delete;
  int port() const { return port_; }

 private:
  int fd_ = -1;
  int port_ = 0;
};

// ---- load ---------------------------------------------------------------------------

// HTTP load with an exact account: `clients` threads each GET / in a loop (one request
// per connection, the slowest case for the master) until stop(); every request that does
// not come back as 200 "Hello, world" is a failure and is described. Bounded: the threads
// stop by themselves after `limit` even if the test forgets to.
class Load {
 public:
  explicit Load(std::string address, int clients = 3, std::chrono::seconds limit = 170s)
      : address_(std::move(address)), until_(std::chrono::steady_clock::now() + limit) {
    for (int i = 0; i < clients; ++i) threads_.emplace_back([this] { run(); });
  }
  ~Load() { stop(); }
  Load(const Load&) = delete;
  Load& operator=(const Load&) = delete;

  void stop() {
    stop_ = true;
    for (auto& t : threads_)
      if (t.joinable()) t.join();
  }
  std::uint64_t answered() const { return answered_; }
  std::uint64_t failed() const { return failed_; }
  // Waits until `n` more requests have been answered than when it was called.
  bool advance(std::uint64_t n, std::chrono::milliseconds deadline = 30s) {
    const auto base = answered_.load();
    return wait_until([&] { return answered_ >= base + n; }, deadline);
  }
  std::string failures() const {
    std::lock_guard lock(mutex_);
    std::string out = std::to_string(failed_.load()) + " failed of " +
                      std::to_string(answered_.load() + failed_.load()) + " requests to " +
                      address_;
    for (const auto& f : failures_) out += "\n  " + f;
    return out;
  }

 private:
  void run() {
    const auto start = std::chrono::steady_clock::now();
    while (!stop_ && std::chrono::steady_clock::now() < until_) {
      std::string why;
      const auto r = http_get(address_, "/", 10s, &why);
      if (r && r->status == 200 && r->body == kHelloBody) {
        ++answered_;
        continue;
      }
      ++failed_;
      const auto at = std::chrono::duration_cast<std::chrono::milliseconds>(
          std::chrono::steady_clock::now() - start);
      std::string what =
          r ? "status " + std::to_string(r->status) + " body \"" + r->body.substr(0, 80) + "\""
            : "no response (" + why + ")";
      std::lock_guard lock(mutex_);
      if (failures_.size() < 20)
        failures_.push_back("at +" + std::to_string(at.count()) + " ms: " + what);
    }
  }

  std::string address_;
  std::chrono::steady_clock::time_point until_;
  std::atomic<bool> stop_{false};
  std::atomic<std::uint64_t> answered_{0};
  std::atomic<std::uint64_t> failed_{0};
  mutable std::mutex mutex_;
  std::vector<std::string> failures_;
  std::vector<std::thread> threads_;
};

// Stops the load and checks that every request it made was answered.
inline void check_no_failed_requests(Load& load) {
  load.stop();
  INFO(load.failures());
  CHECK(load.failed() == 0);
  CHECK(load.answered() > 0);
}

// ---- the master ---------------------------------------------------------------------

inline std::string ctl_binary() {
  return std::string(FORKPOOL_BINARY_DIR) + "/ctl/forkpoolctl";
}

// One master with a control socket in its own folder, started from f.toml (with
// `extra_env`, "NAME=value" each, added to its environment).
struct Master {
  TempDir dir;
  std::unique_ptr<MasterProcess> process;

  explicit Master(const std::string& config, std::vector<std::string> extra_env = {}) {
    replace_file(config_path(), config);
    process = std::make_unique<MasterProcess>(config_path(), std::vector<std::string>{},
                                              std::move(extra_env));
  }
  std::filesystem::path config_path() const { return dir / "f.toml"; }
  std::filesystem::path socket() const { return dir / "ctl.sock"; }
  ControlClient client() const { return ControlClient(socket(), 10s); }
  bool ready() { return !process->wait_log("\\[master.ready\\]", 30s).empty(); }
  void rewrite(const std::string& config) const { replace_file(config_path(), config); }

  // `{"cmd":"reload"}` on a fresh connection; the reply (null on timeout).
  json reload() const {
    auto c = client();
    return c.request({{"cmd", "reload"}}, kReplyDeadline);
  }
  RunResult ctl(const std::vector<std::string>& args) const {
    std::vector<std::string> argv = {ctl_binary(), "-s", socket().string(), "--timeout", "60"};
    argv.insert(argv.end(), args.begin(), args.end());
    return run_command(argv, 90s);
  }
  // `forkpool --check` on the current file, as the reload must validate it.
  RunResult check() const {
    return run_command({forkpool_binary().string(), "--check", "-c", config_path().string()}, 30s);
  }
  std::size_t log_count(const std::string& pattern) const {
    return process->all_matches(pattern).size();
  }
  // Every pid the log says was started, in any pool.
  std::set<pid_t> logged_pids() const {
    std::set<pid_t> out;
    for (const auto& p : process->all_matches("pid ([0-9]+) started")) out.insert(std::stoi(p));
    return out;
  }
};

inline const std::string kReloadLine = "\\[config\\.reload\\]";
inline const std::string kReloadFailedLine = "\\[config\\.reload_failed\\]";

// Log lines that no reload may cause: sanitizer reports, critical lines and, unless the
// test expects failures, error lines.
inline std::vector<std::string> alarming_log_lines(const std::string& log, bool errors_expected = false) {
  static const std::regex level_re(R"(^\S+ (error|critical)\s+\[)");
  std::vector<std::string> out;
  for (const auto& line : lines_of(log)) {
    std::smatch m;
    const bool bad_level =
        std::regex_search(line, m, level_re) && (m[1] == "critical" || !errors_expected);
    if (bad_level || line.find("Sanitizer") != std::string::npos ||
        line.find("runtime error:") != std::string::npos)
      out.push_back(line);
  }
  return out;
}

// A subscriber of the `events` stream; wait_for returns each matching event once.
class EventStream {
 public:
  explicit EventStream(const std::filesystem::path& socket) : c_(socket, 10s) {
    subscribed_ = is_ok(c_.request({{"cmd", "events"}}));
  }
  bool subscribed() const { return subscribed_; }

  std::optional<json> wait_for(const std::string& name, std::chrono::milliseconds deadline = 30s) {
    const auto until = std::chrono::steady_clock::now() + deadline;
    while (true) {
      for (; next_ < seen_.size(); ++next_)
        if (seen_[next_].value("event", "") == name) return seen_[next_++];
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          until - std::chrono::steady_clock::now());
      if (left <= 0ms) return std::nullopt;
      auto e = c_.read_json(left);
      if (!e) return std::nullopt;
      if (e->is_object() && e->contains("event")) seen_.push_back(*e);
    }
  }
  std::string dump() const {
    std::string out;
    for (const auto& e : seen_) out += e.dump() + "\n";
    return out;
  }

 private:
  ControlClient c_;
  bool subscribed_ = false;
  std::vector<json> seen_;
  std::size_t next_ = 0;
};

// The end of a reload test under load: the load saw no failure, the pool lost, closed and
// crashed nothing, and the master's log holds nothing alarming.
inline void check_came_through(Load& load, ControlClient& c, const std::string& pool, const MasterProcess& master) {
  check_no_failed_requests(load);
  const json counters = pool_status(c, pool)["counters"];
  CHECK(counters["lost"] == 0);
  CHECK(counters["closed"] == 0);
  CHECK(counters["crashed"] == 0);
  CHECK(alarming_log_lines(master.log()) == std::vector<std::string>{});
}

}  // namespace forkpool::test::reload_support
