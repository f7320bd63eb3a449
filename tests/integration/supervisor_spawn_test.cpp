// SPDX-License-Identifier: Apache-2.0
// What a worker receives from the real master at exec (descriptors, environment, ids,
// folder, umask, limits), the master as PID 1, socket activation in both directions
// (forkpool under systemd-socket-activate, an unmodified socket-activated program under
// forkpool), Unix listeners, and a spawn that fails between fork and exec.

#include <dirent.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "support/control_client.hpp"
#include "support/http_client.hpp"
#include "support/fd_flags.hpp"
#include "support/master_process.hpp"
#include "support/run_command.hpp"
#include "support/temp_dir.hpp"
#include "support/wait_until.hpp"
#include "support/skip.hpp"

using namespace forkpool::test;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

std::string quoted(const std::string& s) { return "\"" + s + "\""; }

std::string read_text(const fs::path& file) {
  std::ifstream in(file);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The report's fd.N entries: descriptor number to readlink(2) target.
std::map<int, std::string> report_fds(const fs::path& report) {
  std::map<int, std::string> fds;
  for (const auto& [k, v] : read_report(report))
    if (k.starts_with("fd.")) fds[std::stoi(k.substr(3))] = v;
  return fds;
}

std::map<std::string, std::string> report_env(const fs::path& report) {
  std::map<std::string, std::string> env;
  for (const auto& [k, v] : read_report(report))
    if (k.starts_with("env.")) {
      const std::string kv = k.substr(4) + "=" + v;  // read_report split at the first '='
      const auto eq = kv.find('=');
      env[kv.substr(0, eq)] = kv.substr(eq + 1);
    }
  return env;
}

void stop_master(MasterProcess& master) {
  master.signal(SIGTERM);
  const auto status = master.wait_exit(15s);
  REQUIRE(status.has_value());
  CHECK(WIFEXITED(*status));
  CHECK(WEXITSTATUS(*status) == 0);
}

std::vector<pid_t> all_pids() {
  std::vector<pid_t> pids;
  DIR* d = ::opendir("/proc");
  if (d == nullptr) return pids;
  while (dirent* e = ::readdir(d)) {
    char* end = nullptr;
    const long v = std::strtol(e->d_name, &end, 10);
    if (v > 0 && *end == '\0') pids.push_back(static_cast<pid_t>(v));
  }
  ::closedir(d);
  return pids;
}

// Live (not zombie) processes whose command line contains `tag`.
std::vector<pid_t> processes_with_tag(const std::string& tag) {
  std::vector<pid_t> out;
  for (pid_t pid : all_pids()) {
    std::string cmdline = read_text("/proc/" + std::to_string(pid) + "/cmdline");
    for (char& c : cmdline)
      if (c == '\0') c = ' ';
    if (cmdline.find(tag) != std::string::npos && process_alive(pid)) out.push_back(pid);
  }
  return out;
}

// A "Key:\tvalue" line of /proc/PID/status.
std::string proc_status(pid_t pid, const std::string& key) {
  std::istringstream in(read_text("/proc/" + std::to_string(pid) + "/status"));
  std::string line;
  while (std::getline(in, line))
    if (line.starts_with(key + ":")) {
      auto v = line.substr(key.size() + 1);
      const auto first = v.find_first_not_of(" \t");
      return first == std::string::npos ? "" : v.substr(first);
    }
  return "";
}

std::string unique_tag(const std::string& what) {
  std::random_device rd;
  return "fp-" + what + "-" + std::to_string(::getpid()) + "-" + std::to_string(rd());
}

sockaddr_un unix_address(const fs::path& path) {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
  return a;
}

// One GET over AF_UNIX with Connection: close; the whole response, or "" on errors.
std::string unix_http_get(const fs::path& path) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return "";
  timeval tv{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  const sockaddr_un a = unix_address(path);
  std::string out;
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a) == 0) {
    const std::string req = "GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n";
    if (::send(fd, req.data(), req.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(req.size())) {
      char buf[4096];
      ssize_t n;
      while ((n = ::recv(fd, buf, sizeof buf, 0)) > 0) out.append(buf, static_cast<std::size_t>(n));
    }
  }
  ::close(fd);
  return out;
}

// An AF_UNIX stream socket bound at `path`; listening when `listen_too`.
int bind_unix(const fs::path& path, bool listen_too) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const sockaddr_un a = unix_address(path);
  if (fd < 0 || ::bind(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a) != 0) return -1;
  if (listen_too && ::listen(fd, 16) != 0) return -1;
  return fd;
}

struct Account {
  uid_t uid = 0;
  gid_t gid = 0;
};

Account nobody_nogroup() {
  Account a;
  const passwd* pw = ::getpwnam("nobody");
  const group* gr = ::getgrnam("nogroup");
  REQUIRE(pw != nullptr);
  REQUIRE(gr != nullptr);
  a.uid = pw->pw_uid;
  a.gid = gr->gr_gid;
  return a;
}

}  // namespace

TEST_CASE("a worker gets exactly its descriptors and forkpool's variables, never the master's own",
          "[supervisor][spawn][fds]") {
  TempDir dir;
  const auto web_report = dir / "web.txt";
  const auto plain_report = dir / "plain.txt";
  const std::string tw = quoted(testworker_binary().string());
  write_file(dir / "f.toml", "[supervisor]\nlog_level = \"debug\"\n\n"
                             "[pools.web]\ncommand = [" + tw + ", \"--report\", " + quoted(web_report.string()) +
                             "]\ndispatch = \"shared\"\nlisten = [\"tcp://127.0.0.1:0\"]\nworkers = 1\n\n"
                             "[pools.plain]\ncommand = [" + tw + ", \"--report\", " +
                             quoted(plain_report.string()) + "]\nworkers = 1\n");
  // Variables that describe the master's own surroundings must not leak to workers.
  MasterProcess master(dir / "f.toml", {},
                       {"NOTIFY_SOCKET=/nonexistent", "FORKPOOL_POOL=bogus", "FORKPOOL_WORKER=99",
                        "FORKPOOL_LISTENERS=bogus", "LISTEN_FDNAMES=bogus"});
  const std::string addr = master.wait_listen_address("web");
  REQUIRE(!addr.empty());
  const pid_t web_pid = master.wait_worker_started("web", 0);
  const pid_t plain_pid = master.wait_worker_started("plain", 0);
  REQUIRE(web_pid > 0);
  REQUIRE(plain_pid > 0);
  REQUIRE(wait_until([&] { return fs::exists(web_report) && fs::exists(plain_report); }));

  SECTION("shared mode: 0-2, the listener at 3, channel 4, scoreboard 5, LISTEN_* as systemd sets them") {
    CHECK(report_value(web_report, "pid") == std::to_string(web_pid));
    const auto fds = report_fds(web_report);
    std::set<int> numbers;
    for (const auto& [fd, target] : fds) numbers.insert(fd);
    CHECK(numbers == std::set<int>{0, 1, 2, 3, 4, 5});
    CHECK(fds.at(0) == "/dev/null");
    CHECK(fds.at(3).starts_with("socket:["));
    CHECK(fds.at(4).starts_with("socket:["));
    CHECK(fds.at(3) != fds.at(4));
    CHECK(fds.at(5).starts_with("/memfd:"));

    const auto env = report_env(web_report);
    CHECK(env.count("NOTIFY_SOCKET") == 0);
    CHECK(env.at("LISTEN_FDS") == "1");
    CHECK(env.at("LISTEN_PID") == std::to_string(web_pid));
    CHECK(env.at("LISTEN_FDNAMES") == "web-0");
    CHECK(env.at("FORKPOOL_PROTOCOL") == "1");
    CHECK(env.at("FORKPOOL_POOL") == "web");
    CHECK(env.at("FORKPOOL_WORKER") == "0");
    CHECK(env.at("FORKPOOL_CHANNEL_FD") == "4");
    CHECK(env.at("FORKPOOL_SCOREBOARD_FD") == "5");
    CHECK(env.at("FORKPOOL_LISTENERS") == "tcp://" + addr);

    // The signal state is clean and the worker leads its own process group.
    CHECK(report_value(web_report, "sig.blocked") == "");
    CHECK(report_value(web_report, "sig.ignored") == "");
    CHECK(report_value(web_report, "pgid") == std::to_string(web_pid));
  }

  SECTION("no listeners: 0-2, channel 3, scoreboard 4 and no LISTEN_* variables") {
    const auto fds = report_fds(plain_report);
    std::set<int> numbers;
    for (const auto& [fd, target] : fds) numbers.insert(fd);
    CHECK(numbers == std::set<int>{0, 1, 2, 3, 4});
    CHECK(fds.at(3).starts_with("socket:["));
    CHECK(fds.at(4).starts_with("/memfd:"));
    const auto env = report_env(plain_report);
    for (const auto& [k, v] : env) CHECK_FALSE(k.starts_with("LISTEN_"));
    CHECK(env.count("NOTIFY_SOCKET") == 0);
    CHECK(env.at("FORKPOOL_POOL") == "plain");
    CHECK(env.at("FORKPOOL_WORKER") == "0");
    CHECK(env.at("FORKPOOL_CHANNEL_FD") == "3");
    CHECK(env.at("FORKPOOL_SCOREBOARD_FD") == "4");
    CHECK(env.at("FORKPOOL_LISTENERS") == "");
  }
  stop_master(master);
}

TEST_CASE("user, group, cwd, umask, rlimits, env, clear_env and {worker} in command reach the worker",
          "[supervisor][spawn][identity]") {
  if (::geteuid() != 0) {
    skip_test("needs root to switch users");
  }
  const Account nobody = nobody_nogroup();
  TempDir dir;
  // The worker (nobody) must reach its folder and write its report there.
  REQUIRE(::chmod(dir.path().c_str(), 0755) == 0);
  const auto work = dir / "work";
  fs::create_directory(work);
  REQUIRE(::chown(work.c_str(), nobody.uid, nobody.gid) == 0);

  const std::string common =
      "workers = WORKERS\nuser = \"nobody\"\ngroup = \"nogroup\"\ncwd = \"work\"\numask = \"027\"\n"
      "rlimits = { nofile = 777 }\nenv = { GREETING = \"hi {pool} {worker}\" }\nclear_env = true\n"
      "restart_delay = \"1h\"\n";
  auto with_workers = [&](int n) {
    std::string s = common;
    s.replace(s.find("WORKERS"), 7, std::to_string(n));
    return s;
  };
  write_file(dir / "f.toml",
             "[supervisor]\nlog_level = \"debug\"\n\n"
             "[pools.ids]\ncommand = [" + quoted(testworker_binary().string()) + ", \"--report\", " +
             quoted((work / "report-{worker}.txt").string()) + ", \"--tag\", \"slot-{worker}-of-{pool}\"]\n" +
             with_workers(2) +
             // /usr/bin/env prints exactly the environment the worker received, then exits;
             // restart_delay = "1h" keeps it from running twice during the test.
             "\n[pools.envdump]\ncommand = [\"/usr/bin/env\"]\nstdout = \"env.txt\"\n" + with_workers(1));
  MasterProcess master(dir / "f.toml", {}, {"FP_TEST_INHERITED=should-not-pass"});

  for (unsigned w : {0u, 1u}) {
    const pid_t pid = master.wait_worker_started("ids", w);
    REQUIRE(pid > 0);
    const auto report = work / ("report-" + std::to_string(w) + ".txt");
    REQUIRE(wait_until([&] { return fs::exists(report); }));
    CHECK(report_value(report, "pid") == std::to_string(pid));
    CHECK(report_value(report, "uid") == std::to_string(nobody.uid));
    CHECK(report_value(report, "euid") == std::to_string(nobody.uid));
    CHECK(report_value(report, "gid") == std::to_string(nobody.gid));
    CHECK(report_value(report, "egid") == std::to_string(nobody.gid));
    const std::string groups = report_value(report, "groups").value_or("?");
    std::set<std::string> group_set;
    std::stringstream gs(groups);
    for (std::string g; std::getline(gs, g, ',');) group_set.insert(g);
    CHECK(group_set.count("0") == 0);
    CHECK(group_set.count(std::to_string(nobody.gid)) == 1);
    CHECK(report_value(report, "cwd") == fs::canonical(work).string());
    CHECK(report_value(report, "umask") == "0027");
    CHECK(report_value(report, "rlimit.nofile") == "777");
    const std::string argv = report_value(report, "argv").value_or("");
    CHECK(argv.find("--tag slot-" + std::to_string(w) + "-of-ids") != std::string::npos);
    CHECK(report_value(report, "env.FORKPOOL_POOL") == "ids");
    CHECK(report_value(report, "env.FORKPOOL_WORKER") == std::to_string(w));
  }

  const auto env_file = dir / "env.txt";
  REQUIRE(!master.wait_log("worker envdump\\[0\\] pid [0-9]+ exited with status 0").empty());
  std::map<std::string, std::string> env;
  {
    std::istringstream in(read_text(env_file));
    for (std::string line; std::getline(in, line);) {
      const auto eq = line.find('=');
      if (eq != std::string::npos) env[line.substr(0, eq)] = line.substr(eq + 1);
    }
  }
  std::set<std::string> names;
  for (const auto& [k, v] : env) names.insert(k);
  // clear_env: nothing inherited (no PATH, no FP_TEST_INHERITED); only the pool's env,
  // the account's USER/LOGNAME/HOME and forkpool's own variables.
  const std::set<std::string> expected{"FORKPOOL_CHANNEL_FD", "FORKPOOL_GENERATION", "FORKPOOL_LISTENERS",
                                       "FORKPOOL_POOL",       "FORKPOOL_PROTOCOL",   "FORKPOOL_SCOREBOARD_FD",
                                       "FORKPOOL_WORKER",     "GREETING",            "HOME",
                                       "LOGNAME",             "USER"};
  CHECK(names == expected);
  CHECK(env["GREETING"] == "hi envdump 0");
  CHECK(env["USER"] == "nobody");
  CHECK(env["LOGNAME"] == "nobody");
  CHECK(env["FORKPOOL_POOL"] == "envdump");
  stop_master(master);
}

TEST_CASE("$${NAME} in command and env reaches the worker as a literal ${NAME}",
          "[supervisor][spawn][interpolate]") {
  TempDir dir;
  const auto out = dir / "out.txt";
  // The shell writes what it was given: its script's '${X}', its $0, and $A from env.
  write_file(dir / "f.toml",
             "[supervisor]\nlog_level = \"debug\"\n\n[pools.lit]\ncommand = [\"/bin/sh\", \"-c\", "
             "\"printf '%s\\\\n' '$${X}' \\\"$0\\\" \\\"$${A}\\\" > " + out.string() + ".tmp && mv " +
             out.string() + ".tmp " + out.string() + "; exec " + testworker_binary().string() +
             "\", \"$${HOME}:$${pool}:{pool}\"]\nenv = { A = \"$${B}:{worker}\" }\nworkers = 1\n");
  MasterProcess master(dir / "f.toml");
  REQUIRE(master.wait_worker_started("lit", 0) > 0);
  REQUIRE(wait_until([&] { return fs::exists(out); }));
  CHECK(read_text(out) == "${X}\n${HOME}:${pool}:lit\n${B}:0\n");
  stop_master(master);
}

TEST_CASE("as PID 1 the master reaps orphans of its workers and exits cleanly on SIGTERM",
          "[supervisor][spawn][pid1]") {
  if (::geteuid() != 0) {
    skip_test("needs root for unshare --pid");
  }
  TempDir dir;
  const auto orphan_file = dir / "orphan.pid";
  const std::string tag = unique_tag("orphan");
  write_file(dir / "f.toml", "[supervisor]\nlog_level = \"debug\"\n\n[pools.web]\ncommand = [" +
                                 quoted(testworker_binary().string()) + ", \"--detach-orphan\", \"--orphan-and-exit\", " +
                                 quoted(orphan_file.string()) + ", \"--tag\", " + quoted(tag) +
                                 "]\nworkers = 1\nrestart_delay = \"1h\"\n");
  MasterProcess master(dir / "f.toml", {"unshare", "--pid", "--fork"});
  // unshare --fork neither forwards signals nor is the master: the master is its child.
  pid_t inner = -1;
  struct KillInner {
    pid_t& pid;
    ~KillInner() {
      if (pid > 0 && process_alive(pid)) ::kill(pid, SIGKILL);
    }
  } kill_inner{inner};
  REQUIRE(!master.wait_log("forkpool master pid 1 starting").empty());
  REQUIRE(wait_until([&] {
    const auto kids = children_of(master.pid());
    if (kids.size() == 1) inner = kids.front();
    return inner > 0;
  }));
  CHECK(proc_status(inner, "NSpid") == std::to_string(inner) + "\t1");

  const pid_t worker = master.wait_worker_started("web", 0);
  REQUIRE(worker > 0);
  REQUIRE(!master.wait_log("worker web\\[0\\] pid " + std::to_string(worker) + " exited with status 0").empty());
  REQUIRE(wait_until([&] { return fs::exists(orphan_file); }));
  const std::string ns_pid = [&] {
    std::string s = read_text(orphan_file);
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
    return s;
  }();
  REQUIRE(!ns_pid.empty());

  // Once the worker is gone, the grandchild is the only process with the tag.
  std::vector<pid_t> tagged;
  REQUIRE(wait_until([&] { tagged = processes_with_tag(tag); return tagged.size() == 1; }));
  const pid_t orphan = tagged.front();
  const std::string nspid = proc_status(orphan, "NSpid");
  CHECK(nspid.substr(nspid.rfind('\t') + 1) == ns_pid);
  CHECK(proc_status(orphan, "PPid") == std::to_string(inner));  // reparented to the master

  REQUIRE(::kill(orphan, SIGKILL) == 0);
  CHECK(!master.wait_log("\\[orphan.reaped\\] reaped pid " + ns_pid + " \\(not a worker\\): exited on signal 9")
             .empty());
  CHECK(wait_until([&] { return !process_alive(orphan); }));

  REQUIRE(::kill(inner, SIGTERM) == 0);
  const auto status = master.wait_exit(15s);
  REQUIRE(status.has_value());
  CHECK(WIFEXITED(*status));
  CHECK(WEXITSTATUS(*status) == 0);
  CHECK(!master.wait_log("master pid 1 exits").empty());
  CHECK(processes_with_tag(tag).empty());
}

TEST_CASE("under systemd-socket-activate the master adopts the passed socket and serves on it",
          "[supervisor][spawn][activation]") {
  TempDir dir;
  const int port = free_port();
  const std::string addr = "127.0.0.1:" + std::to_string(port);
  write_file(dir / "f.toml", "[supervisor]\nlog_level = \"debug\"\n\n[pools.web]\ncommand = [" +
                                 quoted(hello_binary().string()) + "]\ndispatch = \"shared\"\nlisten = [\"tcp://" +
                                 addr + "\"]\nworkers = 2\n");
  MasterProcess master(dir / "f.toml", {"systemd-socket-activate", "-l", addr});
  // systemd-socket-activate binds, then execs forkpool only at the first connection.
  REQUIRE(!master.wait_log("Listening on " + addr).empty());
  const auto r = http_get(addr, "/", 15s);
  REQUIRE(r.has_value());
  CHECK(r->status == 200);
  CHECK(r->body == "Hello, world\n");
  CHECK(!master.wait_log("\\[listener.open\\] pool web listens on tcp://" + addr +
                         " \\(socket passed by systemd\\)")
             .empty());
  CHECK(master.all_matches("(listener.unclaimed)").empty());
  CHECK(!master.wait_log("every pool has its workers ready").empty());
  stop_master(master);
}

namespace {

// One hello worker in master dispatch on tcp://ADDR.
std::string hello_at(const std::string& addr) {
  return "[pools.web]\ncommand = [" + quoted(hello_binary().string()) + "]\nlisten = [\"tcp://" + addr +
         "\"]\nworkers = 1\n";
}

// A GET / at `addr` is answered 200.
bool answers_200(const std::string& addr) {
  const auto r = http_get(addr, "/", 15s);
  return r.has_value() && r->status == 200;
}

}  // namespace

TEST_CASE("numeric user and group ids reach the worker, with or without a passwd entry", "[supervisor][spawn][identity]") {
  if (::geteuid() != 0) {
    skip_test("needs root to switch users");
  }
  TempDir dir;
  REQUIRE(::chmod(dir.path().c_str(), 0777) == 0);  // the workers write their reports here
  const std::string tw = quoted(testworker_binary().string());
  const auto known = dir / "known.txt";
  const auto unknown = dir / "unknown.txt";
  // 65534 is nobody's uid in Debian; 4242 has no passwd or group entry (a container's).
  write_file(dir / "f.toml", "[pools.known]\ncommand = [" + tw + ", \"--report\", " + quoted(known.string()) +
                                 "]\nready = \"exec\"\nuser = \"65534\"\n\n[pools.unknown]\ncommand = [" + tw +
                                 ", \"--report\", " + quoted(unknown.string()) +
                                 "]\nready = \"exec\"\nuser = \"4242\"\ngroup = \"4243\"\n");
  MasterProcess master(dir / "f.toml");
  const bool reported = wait_until([&] { return fs::exists(known) && fs::exists(unknown); }, 30s);
  INFO(master.log());
  REQUIRE(reported);
  const passwd* nobody = ::getpwuid(65534);
  REQUIRE(nobody != nullptr);
  CHECK(report_value(known, "uid") == "65534");
  CHECK(report_value(known, "gid") == std::to_string(nobody->pw_gid));  // its passwd group
  CHECK(report_value(unknown, "uid") == "4242");
  CHECK(report_value(unknown, "gid") == "4243");
  CHECK(report_value(unknown, "groups") == "4243");
  stop_master(master);

  // A uid without an entry and without a group: no primary group to take, said at --check.
  write_file(dir / "g.toml", "[pools.lost]\ncommand = [" + tw + "]\nuser = \"4242\"\n");
  const auto r = run_command({forkpool_binary().string(), "--check", "-c", (dir / "g.toml").string()}, 20s);
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("pools.lost.user: uid 4242 has no passwd entry to take a primary group from; give `group` too") !=
        std::string::npos);
}

TEST_CASE("a datagram socket passed for a tcp address is not adopted: the master binds the address itself",
          "[supervisor][spawn][activation]") {
  TempDir dir;
  const int port = free_port();
  const std::string addr = "127.0.0.1:" + std::to_string(port);
  write_file(dir / "f.toml", hello_at(addr));
  MasterProcess master(dir / "f.toml", {"systemd-socket-activate", "--datagram", "-l", addr});
  REQUIRE(!master.wait_log("Listening on " + addr).empty());
  // A datagram wakes systemd-socket-activate, which then execs forkpool with the UDP socket.
  const int udp = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  REQUIRE(udp >= 0);
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(static_cast<std::uint16_t>(port));
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  CHECK(::sendto(udp, "x", 1, 0, reinterpret_cast<const sockaddr*>(&to), sizeof to) == 1);
  ::close(udp);
  REQUIRE(!master.wait_log("every pool has its workers ready", 20s).empty());
  // Before, the UDP socket was taken for the listener: the master spun on accept(2)
  // failing, and TCP connections were refused.
  CHECK(!master.wait_log("\\[listener.unclaimed\\]").empty());
  CHECK(master.all_matches("(socket passed by systemd)").empty());
  CHECK(answers_200(addr));
  stop_master(master);
}

TEST_CASE("a passed stream socket that is bound but not listening is made to listen, and a LISTEN_FDS naming a descriptor never passed is ignored",
          "[supervisor][spawn][activation]") {
  TempDir dir;
  const int port = free_port();
  const std::string addr = "127.0.0.1:" + std::to_string(port);
  write_file(dir / "f.toml", hello_at(addr));
  // Binds without listen(2), puts it at descriptor 3 and /dev/null at 4, says LISTEN_FDS=3
  // (descriptor 5 is not open: a wrapper that miscounted), and execs forkpool in the same process
  // (LISTEN_PID stays right). Before, the master's own descriptor that came to be 4 was
  // taken for a passed socket and closed, and the master hung.
  const std::string script =
      "import os, socket, sys\n"
      "s = socket.socket()\n"
      "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
      "s.bind(('127.0.0.1', " + std::to_string(port) + "))\n"
      "os.dup2(s.fileno(), 3)\n"
      "os.set_inheritable(3, True)\n"
      "os.closerange(4, 64)\n"
      "f = os.open('/dev/null', os.O_RDONLY)\n"
      "os.dup2(f, 4)\n"
      "os.close(f)\n"
      "os.environ['LISTEN_FDS'] = '3'\n"
      "os.environ['LISTEN_PID'] = str(os.getpid())\n"
      "os.execv(sys.argv[1], sys.argv[1:])\n";
  MasterProcess master(dir / "f.toml", {"python3", "-c", script});
  REQUIRE(!master.wait_log("every pool has its workers ready", 20s).empty());
  CHECK(!master.wait_log("listens on tcp://" + addr + " \\(socket passed by systemd\\)").empty());
  CHECK(!master.wait_log("\\[listener.passed_invalid\\] LISTEN_FDS named 2 descriptor").empty());
  // Descriptor 4 (a file, not a socket) is left open but reaches no program of ours.
  const auto flags = fd_flags(master.pid(), 4);
  REQUIRE(flags.has_value());
  CHECK((*flags & O_CLOEXEC) != 0);
  CHECK(answers_200(addr));
  stop_master(master);
}

TEST_CASE("passed sockets that match no listen address are closed, and the log line names them",
          "[supervisor][spawn][activation]") {
  TempDir dir;
  const std::string used = "127.0.0.1:" + std::to_string(free_port());
  const std::string spare = "127.0.0.1:" + std::to_string(free_port());
  const fs::path path = dir / "spare.sock";
  write_file(dir / "f.toml", "[pools.web]\ncommand = [" + quoted(hello_binary().string()) +
                                 "]\ndispatch = \"shared\"\nlisten = [\"tcp://" + used + "\"]\nworkers = 1\n");
  MasterProcess master(dir / "f.toml",
                       {"systemd-socket-activate", "-l", used, "-l", spare, "-l", path.string()});
  REQUIRE(!master.wait_log("Listening on " + spare).empty());
  const auto r = http_get(used, "/", 15s);  // forkpool is started at the first connection
  REQUIRE(r.has_value());
  CHECK(r->status == 200);
  CHECK(!master.wait_log("\\[listener.unclaimed\\] closed 2 passed socket\\(s\\) that match no configured "
                         "listen address: tcp://" + spare + ", unix:" + path.string() + "\\n")
             .empty());
  stop_master(master);
}

TEST_CASE("an unmodified socket-activated program (systemd-socket-proxyd) runs as a shared-mode worker",
          "[supervisor][spawn][activation]") {
  const fs::path proxyd = "/lib/systemd/systemd-socket-proxyd";
  if (!fs::exists(proxyd)) {
    skip_test("systemd-socket-proxyd is not installed (Debian package systemd)");
  }
  TempDir dir;
  fs::create_directory(dir / "backend");
  fs::create_directory(dir / "proxy");
  write_file(dir / "backend" / "f.toml", "[pools.hello]\ncommand = [" + quoted(hello_binary().string()) +
                                             "]\ndispatch = \"shared\"\nlisten = [\"tcp://127.0.0.1:0\"]\n"
                                             "workers = 1\n");
  MasterProcess backend(dir / "backend" / "f.toml");
  const std::string backend_addr = backend.wait_listen_address("hello");
  REQUIRE(!backend_addr.empty());

  write_file(dir / "proxy" / "f.toml", "[pools.web]\ncommand = [" + quoted(proxyd.string()) + ", " +
                                           quoted(backend_addr) +
                                           "]\ndispatch = \"shared\"\nlisten = [\"tcp://127.0.0.1:0\"]\n"
                                           "workers = 1\n");
  MasterProcess proxy(dir / "proxy" / "f.toml");
  const std::string proxy_addr = proxy.wait_listen_address("web");
  REQUIRE(!proxy_addr.empty());
  REQUIRE(proxy.wait_worker_started("web", 0) > 0);
  const auto r = http_get(proxy_addr, "/", 15s);
  REQUIRE(r.has_value());
  CHECK(r->status == 200);
  CHECK(r->body == "Hello, world\n");
  CHECK(proxy.all_matches("pid [0-9]+ (exited)").empty());
  stop_master(proxy);
  stop_master(backend);
}

TEST_CASE("a unix: listener next to the config replaces a stale socket file and serves",
          "[supervisor][spawn][unix]") {
  TempDir dir;
  const auto sock = dir / "web.sock";
  // A socket file whose process is gone: bound, then closed without unlinking.
  const int stale = bind_unix(sock, false);
  REQUIRE(stale >= 0);
  ::close(stale);
  REQUIRE(fs::is_socket(sock));
  write_file(dir / "f.toml", "[pools.web]\ncommand = [" + quoted(hello_binary().string()) +
                                 "]\ndispatch = \"shared\"\nlisten = [\"unix:web.sock\"]\nworkers = 1\n");
  MasterProcess master(dir / "f.toml");
  CHECK(!master.wait_log("\\[listener.open\\] pool web listens on unix:" + sock.string()).empty());
  REQUIRE(!master.wait_log("every pool has its workers ready").empty());
  const std::string response = unix_http_get(sock);
  CHECK(response.starts_with("HTTP/1.1 200"));
  CHECK(response.find("Hello, world") != std::string::npos);
  stop_master(master);
  CHECK_FALSE(fs::exists(sock));  // the master removes the file it created
}

TEST_CASE("a master removes its unix: listener file only while the path still names it",
          "[supervisor][spawn][unix]") {
  TempDir dir;
  const auto sock = dir / "web.sock";
  const std::string pool = "[pools.web]\ncommand = [" + quoted(hello_binary().string()) +
                           "]\ndispatch = \"shared\"\nlisten = [\"unix:web.sock\"]\nworkers = 1\n";
  write_file(dir / "a.toml", "[supervisor]\ncontrol_socket = \"a.sock\"\n\n" + pool);
  write_file(dir / "b.toml", "[supervisor]\ncontrol_socket = \"b.sock\"\n\n" + pool);
  MasterProcess a(dir / "a.toml");
  REQUIRE(!a.wait_log("every pool has its workers ready").empty());
  // A's file moved away; B binds the path again.
  fs::rename(sock, dir / "web.sock.a");
  MasterProcess b(dir / "b.toml");
  REQUIRE(!b.wait_log("every pool has its workers ready").empty());
  stop_master(a);
  // The path is B's: A left it, and B serves on it.
  REQUIRE(fs::is_socket(sock));
  const std::string response = unix_http_get(sock);
  CHECK(response.starts_with("HTTP/1.1 200"));
  CHECK(response.find("Hello, world") != std::string::npos);
  stop_master(b);
  CHECK_FALSE(fs::exists(sock));  // B still removes its own file
}

TEST_CASE("a master removes its control socket file only while the path still names it",
          "[supervisor][spawn][unix][control]") {
  TempDir dir;
  const auto ctl = dir / "ctl.sock";
  const std::string config = "[supervisor]\ncontrol_socket = \"ctl.sock\"\n\n[pools.web]\ncommand = [" +
                             quoted(hello_binary().string()) + "]\nlisten = [\"tcp://127.0.0.1:0\"]\nworkers = 1\n";
  write_file(dir / "a.toml", config);
  write_file(dir / "b.toml", config);
  MasterProcess a(dir / "a.toml");
  REQUIRE(!a.wait_log("every pool has its workers ready").empty());
  // A's control socket moved away (a cleaner of /run, an operator); B binds the path.
  fs::rename(ctl, dir / "ctl.sock.a");
  MasterProcess b(dir / "b.toml");
  REQUIRE(!b.wait_log("every pool has its workers ready").empty());
  stop_master(a);
  REQUIRE(fs::is_socket(ctl));
  ControlClient c(ctl, 10s);
  REQUIRE(c.connected());
  const nlohmann::json st = c.request({{"cmd", "status"}}, 5s);
  INFO(st.dump());
  CHECK(st["master"]["pid"] == b.pid());
  stop_master(b);
  CHECK_FALSE(fs::exists(ctl));  // B still removes its own
}

// Regression (sanitizer builds): a Master constructor that threw after uv_loop_init() never
// closed the loop, and LeakSanitizer aborted the master instead of it exiting with 1.
TEST_CASE("a unix: path held by a live listener makes the master refuse to start",
          "[supervisor][spawn][unix]") {
  TempDir dir;
  const auto sock = dir / "web.sock";
  const int live = bind_unix(sock, true);
  REQUIRE(live >= 0);
  write_file(dir / "f.toml", "[pools.web]\ncommand = [" + quoted(hello_binary().string()) +
                                 "]\ndispatch = \"shared\"\nlisten = [\"unix:web.sock\"]\nworkers = 1\n");
  MasterProcess master(dir / "f.toml");
  const auto status = master.wait_exit(15s);
  REQUIRE(status.has_value());
  CHECK(WIFEXITED(*status));
  CHECK(WEXITSTATUS(*status) == 1);
  CHECK(!master.wait_log("unix:" + sock.string() + ": another process is listening").empty());
  CHECK(master.all_matches("(started)").empty());
  // The other process keeps its socket.
  CHECK(fs::is_socket(sock));
  const int client = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const sockaddr_un a = unix_address(sock);
  CHECK(::connect(client, reinterpret_cast<const sockaddr*>(&a), sizeof a) == 0);
  ::close(client);
  ::close(live);
}

TEST_CASE("a worker that cannot enter its cwd is reported with chdir's error, retried, then the pool fails",
          "[supervisor][spawn][failure]") {
  if (::geteuid() != 0) {
    skip_test("needs root to switch users");
  }
  TempDir dir;
  REQUIRE(::chmod(dir.path().c_str(), 0755) == 0);
  const auto locked = dir / "locked";
  fs::create_directory(locked);
  REQUIRE(::chmod(locked.c_str(), 0700) == 0);  // root's; nobody may not enter
  write_file(dir / "f.toml", "[supervisor]\nlog_level = \"debug\"\n\n[pools.web]\ncommand = [" +
                                 quoted(testworker_binary().string()) +
                                 "]\nworkers = 1\nuser = \"nobody\"\ncwd = \"locked\"\nrestart_delay = \"20ms\"\n"
                                 "flap_restarts = 5\nflap_window = \"1m\"\n");
  MasterProcess master(dir / "f.toml");
  // A start step that fails three times in a row is a broken deploy: the pool fails at
  // once, before flapping would.
  REQUIRE(!master.wait_log("pool web failed: its program could not be started 3 times in a row "
                           "\\(last: chdir " + locked.string() + ": Permission denied\\)")
               .empty());
  const auto failures = master.all_matches("\\[worker.spawn_failed\\] worker web\\[0\\] could not be started: (.*)");
  REQUIRE(failures.size() == 3);
  // The folder is named: the error alone did not say which one the worker could not enter.
  for (const auto& f : failures) CHECK(f == "chdir " + locked.string() + ": Permission denied");
  const auto delays = master.all_matches("worker web\\[0\\] starts again in ([0-9]+)ms");
  REQUIRE(delays.size() == 2);
  for (std::size_t i = 1; i < delays.size(); ++i) CHECK(std::stoi(delays[i]) > std::stoi(delays[i - 1]));
  CHECK(master.all_matches("pid [0-9]+ (started)").empty());
  CHECK(!master.wait_log("pool web is failed").empty());
  stop_master(master);
}

// Regression: `group = ...` must replace the user's primary group among the supplementary
// groups too, as initgroups(user, <configured gid>) does in php-fpm and systemd.
TEST_CASE("group = replaces the user's primary group also among the supplementary groups",
          "[supervisor][spawn][identity]") {
  const passwd* pw = ::getpwnam("daemon");
  const group* gr = ::getgrnam("nogroup");
  if (::geteuid() != 0 || pw == nullptr || gr == nullptr || pw->pw_gid == gr->gr_gid) {
    skip_test("needs root, a user \"daemon\" and a group \"nogroup\"");
  }
  const gid_t daemon_gid = pw->pw_gid;
  const gid_t nogroup_gid = gr->gr_gid;
  // Is daemon a listed member of its own primary group? Then the group stays legitimately.
  bool listed_member = false;
  if (const group* own = ::getgrgid(daemon_gid))
    for (char** m = own->gr_mem; m != nullptr && *m != nullptr; ++m) listed_member |= std::string(*m) == "daemon";
  TempDir dir;
  REQUIRE(::chmod(dir.path().c_str(), 0777) == 0);
  const auto report = dir / "report.txt";
  write_file(dir / "f.toml", "[pools.web]\ncommand = [" + quoted(testworker_binary().string()) + ", \"--report\", " +
                                 quoted(report.string()) + "]\nworkers = 1\nuser = \"daemon\"\ngroup = \"nogroup\"\n");
  MasterProcess master(dir / "f.toml");
  REQUIRE(wait_until([&] { return fs::exists(report); }));
  CHECK(report_value(report, "gid") == std::to_string(nogroup_gid));
  std::set<std::string> groups;
  std::stringstream gs(report_value(report, "groups").value_or(""));
  for (std::string g; std::getline(gs, g, ',');) groups.insert(g);
  INFO("groups=" << report_value(report, "groups").value_or(""));
  if (!listed_member) CHECK(groups.count(std::to_string(daemon_gid)) == 0);
  CHECK(groups.count(std::to_string(nogroup_gid)) == 1);
  stop_master(master);
}

// Regression: a blocking connect(2) probe of an existing socket path hung the master at
// start-up when the live owner's backlog was full. The probe is non-blocking: EAGAIN also
// means "someone listens".
TEST_CASE("a unix: path held by a live listener with a full backlog also makes the master refuse to start",
          "[supervisor][spawn][unix]") {
  TempDir dir;
  const auto sock = dir / "web.sock";
  const int live = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const sockaddr_un a = unix_address(sock);
  REQUIRE(::bind(live, reinterpret_cast<const sockaddr*>(&a), sizeof a) == 0);
  REQUIRE(::listen(live, 0) == 0);
  std::vector<int> pending;
  for (int i = 0; i < 64; ++i) {
    const int c = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (::connect(c, reinterpret_cast<const sockaddr*>(&a), sizeof a) != 0) {
      ::close(c);
      break;
    }
    pending.push_back(c);
  }
  REQUIRE(!pending.empty());
  write_file(dir / "f.toml", "[pools.web]\ncommand = [" + quoted(hello_binary().string()) +
                                 "]\ndispatch = \"shared\"\nlisten = [\"unix:web.sock\"]\nworkers = 1\n");
  MasterProcess master(dir / "f.toml");
  const auto status = master.wait_exit(5s);
  CHECK(status.has_value());
  if (status) {
    CHECK(WIFEXITED(*status));
    CHECK(WEXITSTATUS(*status) == 1);
    CHECK(!master.wait_log("unix:" + sock.string() + ": another process is listening").empty());
  }
  for (int c : pending) ::close(c);
  ::close(live);
}

// Regression: a failed pool counts as settled (start-up is over), but the master must not
// log "every pool has its workers ready" when one has none.
TEST_CASE("a master whose pool failed at start does not claim that every pool has its workers ready",
          "[supervisor][spawn][failure]") {
  TempDir dir;
  write_file(dir / "f.toml", "[pools.web]\ncommand = [" + quoted(testworker_binary().string()) +
                                 ", \"--exit\", \"78\"]\nworkers = 1\nready = \"notify\"\n");
  MasterProcess master(dir / "f.toml");
  REQUIRE(!master.wait_log("pool web is failed").empty());
  CHECK(master.all_matches("(is ready)").empty());
  // Anything the master logs in reaction to the failure is written before this line.
  master.signal(SIGTERM);
  REQUIRE(master.wait_exit(15s).has_value());
  INFO(master.log());
  CHECK(master.all_matches("(every pool has its workers ready)").empty());
}
