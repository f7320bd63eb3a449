// SPDX-License-Identifier: Apache-2.0
// forkpoolctl's client against a fake master on a Unix socket in a temp dir: request
// framing, ok/error and exit statuses, replies split across writes, huge replies, and the
// scoreboard descriptors attached read-only.

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstring>
#include <functional>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "ctl/client.hpp"
#include "ctl/commands.hpp"
#include "ctl/live_scoreboard.hpp"
#include "ctl/top.hpp"
#include "shm/scoreboard.hpp"
#include "shm/slot_writer.h"
#include "support/temp_dir.hpp"

using namespace forkpool::ctl;
namespace shm = forkpool::shm;
using namespace std::chrono_literals;

namespace {

void write_all_or_fail(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n <= 0) return;  // the client went away; the test's checks say why
    data.remove_prefix(static_cast<std::size_t>(n));
  }
}

// One line with `fds` attached, as the master's ControlClient::send_fds does.
void send_with_fds(int fd, const std::string& line, std::span<const int> fds) {
  std::vector<char> control(CMSG_SPACE(sizeof(int) * std::max<std::size_t>(fds.size(), 1)));
  iovec iov{const_cast<char*>(line.data()), line.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  if (!fds.empty()) {
    msg.msg_control = control.data();
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  }
  REQUIRE(::sendmsg(fd, &msg, MSG_NOSIGNAL) == static_cast<ssize_t>(line.size()));
}

// A master stand-in: listens on a socket in a temp dir, accepts `connections` clients one
// after the other, reads each one's request line and hands it to the script.
class FakeMaster {
 public:
  using Script = std::function<void(int fd, const std::string& request)>;

  explicit FakeMaster(Script script, int connections = 1) : path_((dir_ / "ctl.sock").string()) {
    listen_fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path_.c_str(), sizeof(addr.sun_path) - 1);
    REQUIRE(::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
    REQUIRE(::listen(listen_fd_, 8) == 0);
    thread_ = std::thread([this, script = std::move(script), connections] {
      for (int i = 0; i < connections; ++i) {
        const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
        if (fd < 0) return;
        std::string request;
        char c;
        while (::read(fd, &c, 1) == 1 && c != '\n') request.push_back(c);
        requests_.push_back(request);
        script(fd, request);
        ::close(fd);
      }
    });
  }
  ~FakeMaster() {
    ::shutdown(listen_fd_, SHUT_RDWR);
    thread_.join();
    ::close(listen_fd_);
  }

  const std::string& path() const { return path_; }
  // Valid once the client is done with the fake (the thread has read the request).
  const std::vector<std::string>& requests() const { return requests_; }

 private:
  forkpool::test::TempDir dir_;
  std::string path_;
  int listen_fd_ = -1;
  std::vector<std::string> requests_;
  std::thread thread_;
};

FakeMaster::Script reply_with(std::string text) {
  return [text = std::move(text)](int fd, const std::string&) { write_all_or_fail(fd, text); };
}

Invocation invocation(const std::string& path, std::chrono::milliseconds timeout = 2000ms) {
  Invocation inv;
  inv.socket = path;
  inv.timeout = timeout;
  inv.wait = false;  // a fake master answers one request; waiting asks for status again and again
  return inv;
}

int open_fd_count() {
  int n = 0;
  for (int fd = 0; fd < 4096; ++fd) n += ::fcntl(fd, F_GETFD) != -1 ? 1 : 0;
  return n;
}

}  // namespace

TEST_CASE("ctl client sends one JSON line and reads one reply", "[ctl][client]") {
  FakeMaster master(
      reply_with("{\"ok\":true,\"version\":\"0.1.0\",\"protocol\":1,\"control\":1}\n"));
  Client client = Client::connect(master.path());
  Line reply = client.call({{"cmd", "status"}, {"pool", "web"}});
  CHECK(reply.text == R"({"ok":true,"version":"0.1.0","protocol":1,"control":1})");
  CHECK(reply.body["version"] == "0.1.0");
  CHECK(reply.fds.empty());
  CHECK_FALSE(client.read_line_or_eof(1000ms).has_value());  // the fake closed
  REQUIRE(master.requests().size() == 1);
  CHECK(master.requests()[0] == R"({"cmd":"status","pool":"web"})");
}

TEST_CASE("ctl exit statuses: 0 ok, 1 error reply, 2 no connection or a broken reply",
          "[ctl][client]") {
  {
    FakeMaster master(reply_with("{\"ok\":true}\n"));
    CHECK(run_request(invocation(master.path()), {{"cmd", "reload"}}) == kExitOk);
    CHECK(master.requests().at(0) == R"({"cmd":"reload"})");
  }
  {
    FakeMaster master(reply_with("{\"ok\":false,\"error\":\"no pool named 'x'\"}\n"));
    CHECK(run_request(invocation(master.path()), {{"cmd", "stop"}, {"pool", "x"}}) ==
          kExitErrorReply);
  }
  {
    FakeMaster master(reply_with("{\"ok\":false,\"error\":\"no pool named 'x'\"}\n"));
    Client client = Client::connect(master.path());
    try {
      client.call({{"cmd", "stop"}, {"pool", "x"}});
      FAIL("no ReplyError");
    } catch (const ReplyError& e) {
      CHECK(std::string(e.what()) == "no pool named 'x'");
    }
  }
  {
    FakeMaster master(reply_with("not json\n"));
    CHECK(run_request(invocation(master.path()), {{"cmd", "version"}}) == kExitUsage);
  }
  {
    FakeMaster master(reply_with(""));  // closes without replying
    CHECK(run_request(invocation(master.path()), {{"cmd", "version"}}) == kExitUsage);
  }
  {
    // The client gives up after its 200 ms timeout, long before the silent master would
    // answer (the bound is loose so a loaded machine cannot fail it).
    FakeMaster master([](int, const std::string&) { std::this_thread::sleep_for(2500ms); });
    const auto t0 = std::chrono::steady_clock::now();
    CHECK(run_request(invocation(master.path(), 200ms), {{"cmd", "version"}}) == kExitUsage);
    CHECK(std::chrono::steady_clock::now() - t0 < 2000ms);
  }
  forkpool::test::TempDir dir;
  CHECK(run_request(invocation((dir / "absent.sock").string()), {{"cmd", "version"}}) ==
        kExitUsage);
}

TEST_CASE("ctl connection errors say what to check", "[ctl][client]") {
  forkpool::test::TempDir dir;
  const std::string absent = (dir / "absent.sock").string();
  try {
    Client::connect(absent);
    FAIL("connected to nothing");
  } catch (const ConnectionError& e) {
    CHECK(std::string(e.what()).find(absent) != std::string::npos);
    CHECK(std::string(e.what()).find("is the master running?") != std::string::npos);
  }
  // A socket file nobody listens on: what a killed master leaves behind.
  const std::string stale = (dir / "stale.sock").string();
  {
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, stale.c_str(), sizeof(addr.sun_path) - 1);
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
    ::close(fd);
  }
  try {
    Client::connect(stale);
    FAIL("connected to a stale socket");
  } catch (const ConnectionError& e) {
    CHECK(std::string(e.what()).find("connection refused: stale socket") != std::string::npos);
  }
  CHECK(explain_connect_error(EACCES) ==
        "permission denied: check the socket's mode/group (control_mode, control_group)");
  CHECK_THROWS_AS(Client::connect(std::string(200, 'x')), ConnectionError);
}

TEST_CASE("ctl client joins a reply split across many writes", "[ctl][client]") {
  const std::string reply = R"({"ok":true,"pools":[{"name":"web","workers":[]}],"note":"split"})";
  FakeMaster master([&reply](int fd, const std::string&) {
    for (std::size_t i = 0; i < reply.size(); i += 7) {
      write_all_or_fail(fd, reply.substr(i, 7));
      std::this_thread::sleep_for(2ms);
    }
    write_all_or_fail(fd, "\n{\"ok\":true,\"second\":1}\n");
  });
  Client client = Client::connect(master.path());
  Line line = client.call({{"cmd", "status"}});
  CHECK(line.text == reply);
  CHECK(line.body["note"] == "split");
  CHECK(client.read_line().body["second"] == 1);
}

TEST_CASE("ctl client reads a 12 MiB reply and refuses one over 16 MiB", "[ctl][client]") {
  const std::string big(12u << 20, 'x');
  {
    FakeMaster master(reply_with("{\"ok\":true,\"text\":\"" + big + "\"}\n"));
    Client client = Client::connect(master.path());
    Line line = client.call({{"cmd", "metrics"}});
    CHECK(line.body["text"].get<std::string>().size() == big.size());
  }
  {
    const std::string huge(17u << 20, 'x');
    FakeMaster master(reply_with("{\"ok\":true,\"text\":\"" + huge + "\"}\n"));
    Client client = Client::connect(master.path());
    try {
      client.call({{"cmd", "metrics"}});
      FAIL("accepted a line over 16 MiB");
    } catch (const ConnectionError& e) {
      CHECK(std::string(e.what()).find("longer than 16 MiB") != std::string::npos);
    }
  }
}

TEST_CASE("ctl scoreboard fds arrive in batches and attach read-only",
          "[ctl][client][scoreboard]") {
  shm::Scoreboard sb(2, 5);
  REQUIRE_FALSE(sb.make_pages(5));
  const std::int64_t now = shm::monotonic_ns();
  for (std::uint32_t slot = 0; slot < 5; ++slot) {
    const std::uint32_t pool = slot < 3 ? 0 : 1;
    sb.assign_slot(slot, pool, pool == 0 ? slot : slot - 3);
    REQUIRE_FALSE(sb.start_worker(slot, 1));
    sb.set_pid(slot, static_cast<pid_t>(1000 + slot), now);
    sb.mark_ready(slot);
  }
  sb.set_pool_state(0, shm::PoolState::Running);
  sb.set_pool_state(1, shm::PoolState::Failed);
  sb.set_pool_size(0, 3);
  sb.set_pool_size(1, 2);
  sb.count(0, shm::PoolCounter::Accepted, 17);
  sb.count(0, shm::PoolCounter::Completed, 15);
  sb.count(1, shm::PoolCounter::Crashed, 4);
  sb.set_usage(2, 13107200, 250000);
  sb.record_duration(0, 1500);
  fp_slot_writer w;
  REQUIRE(fp_slot_writer_attach(&w, sb.slot_fd(1)) == 0);
  fp_slot_writer_set_ready(&w);
  fp_slot_writer_mark_busy(&w, fp_slot_writer_now_ns());
  fp_slot_writer_mark_idle(&w);
  fp_slot_writer_mark_busy(&w, fp_slot_writer_now_ns());

  // Like the master, but at most 2 descriptors a line so that continuation lines are used.
  auto serve = [&sb](int fd, const std::string& request) {
    CHECK(request == R"({"cmd":"scoreboard"})");
    std::vector<int> fds{sb.region_fd()};
    nlohmann::json epochs = nlohmann::json::array();
    for (std::uint32_t s = 0; s < sb.slot_count(); ++s) {
      fds.push_back(sb.slot_fd(s));
      epochs.push_back(sb.slot_epoch(s));
    }
    const nlohmann::json first{{"ok", true},
                               {"fd_count", fds.size()},
                               {"slots", sb.slot_count()},
                               {"epochs", epochs},
                               {"pools", {"web", "jobs"}}};
    for (std::size_t sent = 0; sent < fds.size(); sent += 2) {
      const std::size_t n = std::min<std::size_t>(2, fds.size() - sent);
      send_with_fds(fd, (sent == 0 ? first.dump() : std::string(R"({"fds":true})")) + "\n",
                    std::span<const int>(fds).subspan(sent, n));
    }
  };
  const int fds_before = open_fd_count();
  {
    FakeMaster master(serve, 3);
    LiveScoreboard live = open_live_scoreboard(master.path());
    CHECK(live.pools == std::vector<std::string>{"web", "jobs"});
    REQUIRE(live.epochs.size() == 5);
    CHECK(live.board.slot_count() == 5);
    CHECK(live.board.pool_count() == 2);
    auto snap = live.board.snapshot();
    CHECK(snap.master_pid == ::getpid());
    CHECK(snap.pools.at(0).state == shm::PoolState::Running);
    CHECK(snap.pools.at(0).accepted == 17);
    CHECK(snap.pools.at(0).completed == 15);
    CHECK(snap.pools.at(0).duration.count == 1);
    CHECK(snap.pools.at(1).state == shm::PoolState::Failed);
    CHECK(snap.pools.at(1).crashed == 4);
    for (std::uint32_t s = 0; s < 5; ++s) {
      CHECK(snap.workers.at(s).pid == static_cast<pid_t>(1000 + s));
      CHECK(snap.workers.at(s).pool == (s < 3 ? 0u : 1u));
      CHECK(snap.workers.at(s).anomalies == 0);
    }
    CHECK(snap.workers.at(1).state == shm::WorkerState::Busy);
    CHECK(snap.workers.at(1).connections_handled == 1);
    CHECK(snap.workers.at(1).in_flight == 1);
    CHECK(snap.workers.at(2).rss_bytes == 13107200);
    CHECK_FALSE(has_stale_pages(snap, live.epochs.size()));

    // A worker restarts: its page is replaced, the attached view says so, and fetching
    // again gives the new page.
    sb.mark_exited(1, 9);
    REQUIRE_FALSE(sb.start_worker(1, 1));
    sb.set_pid(1, 2001, shm::monotonic_ns());
    snap = live.board.snapshot();
    CHECK(has_stale_pages(snap, live.epochs.size()));
    CHECK(snap.workers.at(1).anomalies == shm::kAnomalyStalePage);
    live = open_live_scoreboard(master.path());
    snap = live.board.snapshot();
    CHECK_FALSE(has_stale_pages(snap, live.epochs.size()));
    CHECK(snap.workers.at(1).pid == 2001);
    CHECK(snap.workers.at(1).connections_handled == 0);

    // `top --once` prints one frame from the same kind of reply.
    TopOptions options;
    options.socket = master.path();
    options.once = true;
    CHECK(run_top(options) == 0);
  }
  fp_slot_writer_detach(&w);
  CHECK(open_fd_count() == fds_before);  // every received descriptor was closed
}

TEST_CASE("ctl scoreboard reply with missing descriptors is refused", "[ctl][client][scoreboard]") {
  FakeMaster master(
      reply_with(R"({"ok":true,"fd_count":3,"slots":2,"epochs":[1,1],"pools":["web"]})"
                 "\n"));
  Client client = Client::connect(master.path());
  CHECK_THROWS_AS(fetch_scoreboard(client), ConnectionError);
}

TEST_CASE("ctl client closes descriptors that come with an ordinary reply", "[ctl][client]") {
  const int fds_before = open_fd_count();
  {
    FakeMaster master([](int fd, const std::string&) {
      const int devnull = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
      send_with_fds(fd, "{\"ok\":true}\n", std::span<const int>(&devnull, 1));
      ::close(devnull);
    });
    CHECK(run_request(invocation(master.path()), {{"cmd", "version"}}) == kExitOk);
  }
  CHECK(open_fd_count() == fds_before);
}
