// SPDX-License-Identifier: Apache-2.0
// The control socket under abuse, against the real master: clients that drip a request a
// byte at a time (slowloris) are closed at a whole-request deadline, one user cannot take
// every place, the operator always gets in, forkpoolctl says why it was turned away, and
// out-of-range arguments are refused rather than truncated.

#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstring>
#include <fstream>
#include <future>
#include <nlohmann/json.hpp>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "support/control_client.hpp"
#include "support/master_process.hpp"
#include "support/run_command.hpp"
#include "support/temp_dir.hpp"
#include "support/wait_until.hpp"
#include "support/skip.hpp"

using namespace forkpool::test;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

using Clock = std::chrono::steady_clock;

std::string config(const std::string& supervisor_extra = "") {
  return "[supervisor]\ncontrol_socket = \"ctl.sock\"\n" + supervisor_extra +
         "\n\n[pools.web]\ncommand = [\"" + hello_binary().string() +
         "\"]\nlisten = [\"tcp://127.0.0.1:0\"]\nworkers = 1\n";
}

std::string forkpoolctl() {
  return (std::filesystem::path(FORKPOOL_BINARY_DIR) / "ctl/forkpoolctl").string();
}

std::string error_of(const json& reply) {
  if (!reply.is_object() || reply.value("ok", true) || !reply.contains("error") ||
      !reply["error"].is_string())
    return "<not an error reply: " + reply.dump() + ">";
  return reply["error"].get<std::string>();
}

// A blocking connect to the control socket (in a forked child: no allocation-heavy helpers).
int connect_unix(const std::string& path) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
  if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    if (fd >= 0) ::close(fd);
    return -1;
  }
  return fd;
}

// Everything readable on `fd` within `ms`; "" on timeout, and `eof` set when it ended.
std::string read_some(int fd, int ms, bool& eof) {
  pollfd p{fd, POLLIN, 0};
  if (::poll(&p, 1, ms) <= 0) return "";
  char buf[4096];
  const ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
  if (n <= 0) {
    eof = true;
    return "";
  }
  return std::string(buf, static_cast<std::size_t>(n));
}

// What the dripping user saw, sent back from the forked child as one line of numbers.
struct DripReport {
  int admitted = -1, refused = -1, probe_refused = -1, timed_out = -1;
};

// In a child running as `uid`/`gid`: opens `clients` connections, learns which were
// turned away (a last probe's reply comes after every earlier decision), reports, then
// drips one byte every 200 ms on each admitted connection until the master closes it.
// Reports on `out` twice: once admitted, once every admitted one was closed. Never
// returns; never asserts.
[[noreturn]] void dripping_user(const std::string& socket, uid_t uid, gid_t gid, int clients,
                                int out) {
  if (::setgroups(0, nullptr) != 0 || ::setgid(gid) != 0 || ::setuid(uid) != 0) ::_exit(3);
  std::vector<int> fds;
  for (int i = 0; i < clients; ++i) fds.push_back(connect_unix(socket));
  const int probe = connect_unix(socket);
  if (probe < 0) ::_exit(4);
  const char version[] = "{\"cmd\":\"version\"}\n";
  if (::send(probe, version, sizeof version - 1, MSG_NOSIGNAL) <
      0) { /* refused already: the reply is there */
  }
  bool eof = false;
  std::string reply;
  for (int i = 0; i < 50 && reply.find('\n') == std::string::npos && !eof; ++i)
    reply += read_some(probe, 200, eof);
  const int probe_refused = reply.find("too many control clients") != std::string::npos ? 1 : 0;
  std::vector<int> admitted;
  int refused = 0;
  for (int fd : fds) {
    bool closed = false;
    const std::string text = fd < 0 ? "" : read_some(fd, 0, closed);
    if (text.find("too many control clients") != std::string::npos) {
      ++refused;
      ::close(fd);
    } else if (fd >= 0 && !closed) {
      admitted.push_back(fd);
    }
  }
  dprintf(out, "%d %d %d\n", static_cast<int>(admitted.size()), refused, probe_refused);
  int timed_out = 0;
  std::size_t open = admitted.size();
  std::vector<bool> done(admitted.size(), false);
  const auto until = Clock::now() + 30s;
  while (open > 0 && Clock::now() < until) {
    for (std::size_t i = 0; i < admitted.size(); ++i)
      if (!done[i]) ::send(admitted[i], "{", 1, MSG_NOSIGNAL | MSG_DONTWAIT);
    // The pace of the drip; replies are read as they come.
    std::vector<pollfd> ps;
    for (std::size_t i = 0; i < admitted.size(); ++i)
      ps.push_back({done[i] ? -1 : admitted[i], POLLIN, 0});
    ::poll(ps.data(), ps.size(), 200);
    for (std::size_t i = 0; i < admitted.size(); ++i) {
      if (done[i] || (ps[i].revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
      bool closed = false;
      const std::string text = read_some(admitted[i], 0, closed);
      if (text.find("incomplete request line") != std::string::npos) ++timed_out;
      if (closed || !text.empty()) {
        done[i] = true;
        --open;
      }
    }
  }
  dprintf(out, "%d\n", timed_out);
  ::_exit(0);
}

// One line from the pipe within `deadline`.
std::optional<std::string> read_line(int fd, std::string& buffer,
                                     std::chrono::milliseconds deadline) {
  const auto until = Clock::now() + deadline;
  while (buffer.find('\n') == std::string::npos) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now()).count();
    if (left <= 0) return std::nullopt;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left)) <= 0) continue;
    char buf[256];
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) return std::nullopt;
    buffer.append(buf, static_cast<std::size_t>(n));
  }
  const auto nl = buffer.find('\n');
  std::string line = buffer.substr(0, nl);
  buffer.erase(0, nl + 1);
  return line;
}

// The user nobody, of the group nogroup, which the master's control_group admits; the test
// is skipped without root or without them.
struct Nobody {
  const passwd* user = ::getpwnam("nobody");
  const group* grp = ::getgrnam("nogroup");
  Nobody() {
    if (::geteuid() != 0 || user == nullptr || grp == nullptr) skip_test("needs root, a user nobody and a group nogroup");
  }
};

// A ready master whose control socket admits the group nogroup, in a folder nobody can reach.
struct GroupMaster {
  TempDir dir;
  std::unique_ptr<MasterProcess> master;
  GroupMaster() {
    ::chmod(dir.path().c_str(), 0711);  // nobody must reach the socket inside
    write_file(dir / "f.toml", config("control_group = \"nogroup\""));
    master = std::make_unique<MasterProcess>(dir / "f.toml");
    REQUIRE(!master->wait_log("\\[master.ready\\]").empty());
  }
};

}  // namespace

TEST_CASE("a control_group member dripping 64 requests cannot lock the operator out",
          "[control][abuse]") {
  const Nobody nobody_user;
  const passwd* nobody = nobody_user.user;
  const group* nogroup = nobody_user.grp;
  GroupMaster g;
  const TempDir& dir = g.dir;
  MasterProcess& master = *g.master;

  int pipe_fds[2];
  REQUIRE(::pipe2(pipe_fds, O_CLOEXEC) == 0);
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0)
    dripping_user((dir / "ctl.sock").string(), nobody->pw_uid, nogroup->gr_gid, 64, pipe_fds[1]);
  ::close(pipe_fds[1]);
  struct Reap {
    pid_t pid;
    int fd;
    ~Reap() {
      ::kill(pid, SIGKILL);
      int st;
      ::waitpid(pid, &st, 0);
      ::close(fd);
    }
  } reap{child, pipe_fds[0]};

  std::string buffer;
  const auto first = read_line(pipe_fds[0], buffer, 20s);
  REQUIRE(first.has_value());
  DripReport report;
  std::sscanf(first->c_str(), "%d %d %d", &report.admitted, &report.refused, &report.probe_refused);
  INFO("admitted " << report.admitted << ", refused " << report.refused);
  // One user holds at most 16 places; the rest of its connections were told why.
  CHECK(report.admitted == 16);
  CHECK(report.refused == 48);
  CHECK(report.probe_refused == 1);

  // While they drip, the operator is served, through forkpoolctl as through the socket.
  const auto status =
      run_command({forkpoolctl(), "-s", (dir / "ctl.sock").string(), "status"}, 20s);
  INFO(status.describe());
  CHECK(status.exited);
  CHECK(status.exit_code == 0);
  CHECK_THAT(status.out, Catch::Contains("pool web"));
  ControlClient root(dir / "ctl.sock");
  CHECK(root.request({{"cmd", "version"}}).value("ok", false));

  // Each admitted connection is closed at its request deadline, however often it sent a byte.
  const auto second = read_line(pipe_fds[0], buffer, 40s);
  REQUIRE(second.has_value());
  report.timed_out = std::stoi(*second);
  CHECK(report.timed_out == report.admitted);
  // The refusals of one user are a few lines and a count, not one line each.
  CHECK(master.all_matches("(\\[control.too_many_clients\\])").size() <= 6);
}

TEST_CASE("a client dripping bytes or empty lines is closed at the whole-request deadline",
          "[control][abuse]") {
  TempDir dir;
  write_file(dir / "f.toml", config());
  MasterProcess master(dir / "f.toml");
  REQUIRE(!master.wait_log("\\[master.ready\\]").empty());
  ControlClient bytes(dir / "ctl.sock");
  ControlClient newlines(dir / "ctl.sock");
  REQUIRE(bytes.connected());
  REQUIRE(newlines.connected());
  std::optional<json> bytes_reply, newlines_reply;
  const auto until = Clock::now() + 20s;
  // A byte (or an empty line) every 250 ms, far inside the 5 s allowed for a request.
  while ((!bytes_reply || !newlines_reply) && Clock::now() < until) {
    if (!bytes_reply) bytes.send_some("{");
    if (!newlines_reply) newlines.send_some("\n");
    if (!bytes_reply) bytes_reply = bytes.read_json(250ms);
    if (!newlines_reply) newlines_reply = newlines.read_json(1ms);
  }
  REQUIRE(bytes_reply.has_value());
  REQUIRE(newlines_reply.has_value());
  CHECK_THAT(error_of(*bytes_reply), Catch::Contains("incomplete request line"));
  CHECK_THAT(error_of(*newlines_reply), Catch::Contains("incomplete request line"));
  CHECK(bytes.is_closed(5s));
  CHECK(newlines.is_closed(5s));
  ControlClient after(dir / "ctl.sock");
  CHECK(after.request({{"cmd", "version"}}).value("ok", false));
}

TEST_CASE("30 forkpoolctl status at once for the last free place all get their answer", "[control][abuse][ctl]") {
  // More clients at once than the master has places: it turns newcomers away, or closes
  // one that has not sent its request yet to make room. Neither read the request, so
  // forkpoolctl asks again after a pause instead of failing.
  TempDir dir;
  write_file(dir / "f.toml", config());
  MasterProcess master(dir / "f.toml");
  REQUIRE(!master.wait_log("\\[master.ready\\]").empty());
  std::vector<ControlClient> holders;
  for (int i = 0; i < 63; ++i) {  // subscribed to events: places that are never given up
    holders.emplace_back(dir / "ctl.sock");
    REQUIRE(holders.back().request({{"cmd", "events"}}).value("ok", false));
  }
  const std::string script = "fails=0; for i in $(seq 30); do \"$0\" -s \"$1\" status >/dev/null 2>>\"$2\" & done; "
                             "for job in $(jobs -p); do wait $job || fails=$((fails+1)); done; echo $fails";
  const auto r = run_command({"/bin/bash", "-c", script, forkpoolctl(), (dir / "ctl.sock").string(),
                              (dir / "errors").string()},
                             120s);
  INFO(r.describe() << std::ifstream(dir / "errors").rdbuf());
  REQUIRE(r.exited);
  CHECK(r.out == "0\n");
}

TEST_CASE("forkpoolctl prints the master's too many control clients reply",
          "[control][abuse][ctl]") {
  TempDir dir;
  write_file(dir / "f.toml", config());
  MasterProcess master(dir / "f.toml");
  REQUIRE(!master.wait_log("\\[master.ready\\]").empty());
  std::vector<ControlClient> holders;
  for (int i = 0; i < 64; ++i) {
    holders.emplace_back(dir / "ctl.sock");
    // Subscribed to events: this one holds a place and does not give it up for a newcomer.
    REQUIRE(holders.back().request({{"cmd", "events"}}).value("ok", false));
  }
  const auto r = run_command({forkpoolctl(), "-s", (dir / "ctl.sock").string(), "status"}, 20s);
  INFO(r.describe());
  CHECK(r.exited);
  CHECK(r.exit_code == 1);
  CHECK_THAT(r.err, Catch::Contains("too many control clients (at most 64)"));
}

TEST_CASE("64 silent control connections give way to forkpoolctl, the idlest first",
          "[control][abuse][ctl]") {
  TempDir dir;
  write_file(dir / "f.toml", config());
  MasterProcess master(dir / "f.toml");
  REQUIRE(!master.wait_log("\\[master.ready\\]").empty());
  std::vector<ControlClient> holders;
  // The first is subscribed to events, so never idle; the 63 after it connect and say nothing.
  holders.emplace_back(dir / "ctl.sock");
  REQUIRE(holders.back().request({{"cmd", "events"}}).value("ok", false));
  for (int i = 1; i < 64; ++i) {
    holders.emplace_back(dir / "ctl.sock");
    REQUIRE(holders.back().connected());
  }
  const auto r = run_command({forkpoolctl(), "-s", (dir / "ctl.sock").string(), "status"}, 20s);
  INFO(r.describe());
  CHECK(r.exited);
  CHECK(r.exit_code == 0);
  CHECK_THAT(r.out, Catch::Contains("pool web"));
  // The oldest silent connection made room, and was told why.
  const auto evicted = holders[1].read_json(10s);
  REQUIRE(evicted.has_value());
  CHECK_THAT(error_of(*evicted), Catch::Contains("make room"));
  CHECK(holders[1].is_closed(10s));
  // The subscriber and the other silent ones keep their places, and the master answers.
  CHECK(holders[0].request({{"cmd", "version"}}).value("ok", false));
  CHECK(holders[2].request({{"cmd", "version"}}).value("ok", false));
  ControlClient after(dir / "ctl.sock");
  CHECK(after.request({{"cmd", "version"}}).value("ok", false));
  CHECK(master.all_matches("(\\[control.too_many_clients\\])").empty());
}

TEST_CASE("a control_group member makes no room by closing an operator's idle connection",
          "[control][abuse]") {
  const Nobody nobody_user;
  const passwd* nobody = nobody_user.user;
  const group* nogroup = nobody_user.grp;
  GroupMaster g;
  const TempDir& dir = g.dir;
  // Every place taken by the operator's own idle connections.
  std::vector<ControlClient> holders;
  for (int i = 0; i < 64; ++i) {
    holders.emplace_back(dir / "ctl.sock");
    REQUIRE(holders.back().connected());
  }
  int pipe_fds[2];
  REQUIRE(::pipe2(pipe_fds, O_CLOEXEC) == 0);
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    // As nobody: one connection, and what it was told.
    if (::setgroups(0, nullptr) != 0 || ::setgid(nogroup->gr_gid) != 0 || ::setuid(nobody->pw_uid) != 0) ::_exit(3);
    const int fd = connect_unix((dir / "ctl.sock").string());
    bool eof = false;
    std::string reply;
    for (int i = 0; i < 50 && reply.find('\n') == std::string::npos && !eof; ++i) reply += read_some(fd, 200, eof);
    ::_exit(reply.find("too many control clients") != std::string::npos ? 0 : 1);
  }
  ::close(pipe_fds[0]);
  ::close(pipe_fds[1]);
  int st = 0;
  REQUIRE(::waitpid(child, &st, 0) == child);
  CHECK(WIFEXITED(st));
  CHECK(WEXITSTATUS(st) == 0);  // turned away
  // Not one of the operator's connections was closed for it.
  for (auto& h : holders) CHECK(h.request({{"cmd", "version"}}).value("ok", false));
}

TEST_CASE("a client pipelining thousands of requests is answered a few a turn: a request from another comes between",
          "[control][abuse]") {
  // One client's flood used to be answered in one go (every line of every read), holding
  // the master, its traffic and every other client for seconds.
  TempDir dir;
  write_file(dir / "f.toml", config());
  MasterProcess master(dir / "f.toml");
  REQUIRE(!master.wait_log("every pool has its workers ready").empty());
  ControlClient flood(dir / "ctl.sock", 10s);
  REQUIRE(flood.connected());
  // One read's worth (the master reads 64 KiB at a time), sent at once: the whole flood
  // arrives in one read, so only the per-turn budget lets another client in before its end.
  std::string batch;
  for (int i = 0; i < 3900; ++i) batch += "{\"cmd\":\"nope\"}\n";
  batch += R"({"cmd":"scale","pool":"web","workers":2})" "\n";
  REQUIRE(batch.size() < 64 * 1024);
  auto sent = std::async(std::launch::async, [&] { return flood.send_raw(batch, 60s); });
  // The flood is being answered: the other client's scale comes in while most of it waits.
  REQUIRE(flood.read_line(30s).has_value());
  ControlClient other(dir / "ctl.sock", 10s);
  const json reply = other.request({{"cmd", "scale"}, {"pool", "web"}, {"workers", 3}}, 30s);
  REQUIRE(reply.value("ok", false));
  REQUIRE(sent.get());
  std::optional<std::string> last;
  for (int i = 1; i < 3901; ++i) {
    last = flood.read_line(30s);
    REQUIRE(last.has_value());
  }
  INFO(*last);
  CHECK(json::parse(*last).value("ok", false));  // the flood's own scale, answered last
  // Applied after the other client's: the pool ends at the flood's size.
  REQUIRE(wait_until([&] { return master.all_matches("(pool web scales from 3 to 2 workers)").size() == 1; }, 30s));
  CHECK(master.all_matches("(pool web scales from 1 to 3 workers)").size() == 1);
}

TEST_CASE("kill refuses a signal number that does not fit instead of truncating it",
          "[control][abuse]") {
  TempDir dir;
  write_file(dir / "f.toml", config());
  MasterProcess master(dir / "f.toml");
  REQUIRE(!master.wait_log("\\[master.ready\\]").empty());
  const pid_t pid = master.wait_worker_started("web", 0);
  ControlClient c(dir / "ctl.sock");
  // 2^32 + 15: as a 32-bit int it would be 15, SIGTERM.
  for (const json& signal : {json(4294967311ULL), json(-15), json(65), json("4294967311")}) {
    const json reply =
        c.request({{"cmd", "kill"}, {"pool", "web"}, {"worker", 0}, {"signal", signal}});
    INFO(signal.dump() << " -> " << reply.dump());
    CHECK_THAT(error_of(reply), Catch::Contains("signal"));
  }
  // Nothing was sent: the worker still runs, and the pool stays as it was.
  CHECK(process_alive(pid));
  CHECK(master.all_matches("(\\[control.kill\\])").empty());
  CHECK(master.all_matches("(\\[worker.exit\\])").empty());
}

TEST_CASE("kill and restart refuse a worker number that does not fit instead of wrapping it",
          "[control][abuse][ctl]") {
  TempDir dir;
  write_file(dir / "f.toml", "[supervisor]\ncontrol_socket = \"ctl.sock\"\n\n[pools.web]\ncommand = [\"" +
                                 hello_binary().string() +
                                 "\"]\nlisten = [\"tcp://127.0.0.1:0\"]\nworkers = 2\n");
  MasterProcess master(dir / "f.toml");
  REQUIRE(!master.wait_log("\\[master.ready\\]").empty());
  const pid_t first = master.wait_worker_started("web", 0);
  const pid_t second = master.wait_worker_started("web", 1);
  ControlClient c(dir / "ctl.sock");
  // 2^32 and 2^32 + 1 as 32-bit numbers are workers 0 and 1; 2^63 and 2^64 - 1 are
  // negative as 64-bit signed numbers.
  const std::vector<json> numbers = {json(4294967296ULL), json(4294967297ULL), json(9223372036854775808ULL),
                                     json(18446744073709551615ULL)};
  for (const json& worker : numbers) {
    for (const char* cmd : {"kill", "restart"}) {
      const json reply = c.request({{"cmd", cmd}, {"pool", "web"}, {"worker", worker}});
      INFO(cmd << " " << worker.dump() << " -> " << reply.dump());
      CHECK(error_of(reply) == "pool web has workers 0 to 1, not " + worker.dump());
    }
  }
  for (const char* number : {"4294967296", "4294967297"}) {
    for (const char* cmd : {"kill", "restart"}) {
      const auto r = run_command({forkpoolctl(), "-s", (dir / "ctl.sock").string(), cmd, "web", number}, 20s);
      INFO(cmd << " " << number << ": " << r.describe());
      CHECK(r.exited);
      CHECK(r.exit_code != 0);
      CHECK_THAT(r.err, Catch::Contains("WORKER"));
    }
  }
  // Decimal, whatever the leading zeros: 010 is worker 10, not octal 8; 0x1 is no number.
  for (const char* cmd : {"kill", "restart"}) {
    const auto octal = run_command({forkpoolctl(), "-s", (dir / "ctl.sock").string(), cmd, "web", "010"}, 20s);
    INFO(cmd << " 010: " << octal.describe());
    CHECK(octal.exit_code != 0);
    CHECK_THAT(octal.err, Catch::Contains("not 10"));
    const auto hex = run_command({forkpoolctl(), "-s", (dir / "ctl.sock").string(), cmd, "web", "0x1"}, 20s);
    INFO(cmd << " 0x1: " << hex.describe());
    CHECK(hex.exit_code == 2);
    CHECK_THAT(hex.err, Catch::Contains("'0x1' is not a decimal number"));
  }
  // Nothing was signalled or restarted: both workers still run, as they were.
  CHECK(process_alive(first));
  CHECK(process_alive(second));
  const json status = c.request({{"cmd", "status"}, {"pool", "web"}});
  INFO(status.dump());
  REQUIRE(status.value("ok", false));
  for (const auto& w : status["pools"][0]["workers"]) CHECK(w["restarts"] == 0);
  CHECK(master.all_matches("(\\[control.kill\\])").empty());
  CHECK(master.all_matches("(\\[worker.exit\\])").empty());
  CHECK(master.all_matches("(\\(restart\\))").empty());
}
