// SPDX-License-Identifier: Apache-2.0
// Issue 13: keepalive = "master". Idle keep-alive connections wait in the master
// (PARK), not in a worker, so a max_inflight = 1 worker serves many keep-alive clients;
// each is dispatched again with the same id when its next request arrives, and closed
// after keepalive_timeout or when the client goes. Counted exactly (docs/protocol.md).


#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <future>
#include <iterator>
#include <sstream>
#include <thread>

#include "integration/test_common.hpp"
#include "support/http_connection.hpp"
#include "support/run_command.hpp"

using namespace forkpool::test;
using namespace forkpool::test::reliability;
namespace fs = std::filesystem;

namespace {

// One keep-alive connection, request after request: GET bodies of 200 answers.
class KeepAliveClient {
 public:
  explicit KeepAliveClient(const std::string& address) : conn_(std::make_unique<HttpConnection>(address)) {}
  void close() { conn_.reset(); }
  std::optional<std::string> get(const std::string& path = "/") {
    if (!conn_ || !conn_->request("GET", path)) return std::nullopt;
    const auto r = conn_->read_response();
    if (!r || r->status != 200) return std::nullopt;
    return r->body;
  }
  // The server closed the connection (within the connection's 10 s timeout).
  bool closed_by_server() { return conn_ && conn_->closed_by_peer(); }

 private:
  std::unique_ptr<HttpConnection> conn_;
};

std::uint64_t c(const json& pool, const char* name) { return counter(pool, name); }

// The identities of docs/protocol.md, exactly.
void check_identities(const json& p) {
  INFO(p.dump());
  const std::uint64_t queued = p["queue"]["length"].get<std::uint64_t>();
  CHECK(c(p, "accepted") + c(p, "resumed") == c(p, "dispatched") + queued + c(p, "queue_timeouts") + c(p, "closed"));
  CHECK(c(p, "dispatched") == c(p, "completed") + c(p, "parked") + c(p, "lost") + c(p, "in_flight"));
  CHECK(c(p, "parked") == c(p, "resumed") + c(p, "keepalive_timeouts") + c(p, "keepalive_closed") +
                              c(p, "parked_closed") + c(p, "parked_now"));
}

std::string hello_keepalive_pool(int workers, const std::string& extra = "") {
  return hello_pool("web", workers, "max_inflight = 1\nkeepalive = \"master\"\n" + extra);
}

}  // namespace

TEST_CASE("keepalive = master: one max_inflight = 1 worker serves many keep-alive clients in turn",
          "[keepalive]") {
  Setup s(supervisor_section() + hello_keepalive_pool(1, "keepalive_timeout = \"6s\"\n"));
  const std::string address = s.master->wait_listen_address("web");
  REQUIRE(!s.master->wait_log("every pool has its workers ready").empty());
  auto ctl = s.client();

  // With the worker holding each connection, the second client would wait for the first
  // to close. Parked between requests, all eight take turns on the one worker.
  std::vector<std::unique_ptr<KeepAliveClient>> clients;
  for (int i = 0; i < 8; ++i) clients.push_back(std::make_unique<KeepAliveClient>(address));
  for (int round = 0; round < 3; ++round)
    for (auto& client : clients) {
      const auto body = client->get();
      REQUIRE(body.has_value());
      CHECK(*body == "Hello, world\n");
    }
  REQUIRE(wait_until([&] { return c(pool_status(ctl, "web"), "parked") == 24; }));
  json p = pool_status(ctl, "web");
  CHECK(p["keepalive"] == "master");
  CHECK(c(p, "accepted") == 8);
  CHECK(c(p, "dispatched") == 24);
  CHECK(c(p, "resumed") == 16);
  CHECK(c(p, "parked_now") == 8);
  CHECK(c(p, "completed") == 0);
  CHECK(c(p, "protocol_errors") == 0);
  // The worker handled every request, each one handed back with PARK.
  REQUIRE(p["workers"].size() == 1);
  CHECK(p["workers"][0]["handled"] == 24);
  check_identities(p);

  // Four clients leave: the master sees them go.
  for (int i = 0; i < 4; ++i) clients[static_cast<std::size_t>(i)]->close();
  REQUIRE(wait_until([&] { return c(pool_status(ctl, "web"), "keepalive_closed") == 4; }));
  // The other four are closed by the master once idle for keepalive_timeout.
  for (int i = 4; i < 8; ++i) CHECK(clients[static_cast<std::size_t>(i)]->closed_by_server());
  REQUIRE(wait_until([&] { return c(pool_status(ctl, "web"), "keepalive_timeouts") == 4; }));
  p = pool_status(ctl, "web");
  CHECK(c(p, "parked_now") == 0);
  check_identities(p);
  CHECK(!s.master->wait_log("\\[keepalive.closed\\] pool web: parked connection [0-9]+ from 127.0.0.1:[0-9]+ closed after keepalive_timeout").empty());
  stop_master(*s.master);
}

TEST_CASE("keepalive = master under ab -k and a rolling restart: no failed request, identities exact",
          "[keepalive]") {
  Setup s(supervisor_section() + hello_keepalive_pool(2));
  const std::string address = s.master->wait_listen_address("web");
  REQUIRE(!s.master->wait_log("every pool has its workers ready").empty());
  auto ctl = s.client();

  auto ab = std::async(std::launch::async, [&] {
    return run_command({"/usr/bin/ab", "-q", "-k", "-n", "20000", "-c", "16", "http://" + address + "/"}, 120s);
  });
  // A rolling restart while ab runs: each draining worker parks its connections, so their
  // next requests go to the new workers.
  REQUIRE(wait_until([&] { return c(pool_status(ctl, "web"), "resumed") > 500; }, 30s));
  const json reply = ctl.request({{"cmd", "restart"}, {"pool", "web"}});
  CHECK(reply.value("ok", false));
  const RunResult r = ab.get();
  INFO(r.out << r.err);
  CHECK(r.out.find("Complete requests:      20000") != std::string::npos);
  CHECK(r.out.find("Failed requests:        0") != std::string::npos);
  // ab closes its connections at the end; the master sees every one go.
  REQUIRE(wait_until([&] {
    const json p = pool_status(ctl, "web");
    return c(p, "parked_now") == 0 && c(p, "in_flight") == 0;
  }));
  const json p = pool_status(ctl, "web");
  CHECK(c(p, "lost") == 0);
  CHECK(c(p, "resumed") > 0);
  CHECK(c(p, "protocol_errors") == 0);
  check_identities(p);
  stop_master(*s.master);
}

namespace {

// A worker written from docs/protocol.md alone: READY, then for each CONN one request
// answered with the connection's id, and PARK (or, in "garbage" mode, PARKs that break
// the rules, one kind per connection). In "flags" mode the answer is what the CONN said
// in `reserved` and whether the socket has TCP_NODELAY, and the PARK repeats
// FP_FD_NODELAY, except the second time a connection comes: then the worker clears the
// option and its PARK does not say it. Its READY does not ask for non-blocking
// connections, so every CONN must bring a blocking one (it exits if not). In "shared"
// mode it is a shared-dispatch worker instead: it accepts on the inherited listener
// (fd 3) and answers with the listener's and the connection's TCP_NODELAY.
constexpr const char* kProtocolWorker = R"(
import array, fcntl, os, socket, struct, sys
MSG = struct.Struct("=HHIQ")
mode = sys.argv[1]

def read_head(conn):
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = conn.recv(4096)
        if not chunk:
            break
        head += chunk
    return head

def answer(conn, body, close=False):
    extra = b"Connection: close\r\n" if close else b""
    conn.sendall(b"HTTP/1.1 200 OK\r\n%sContent-Length: %d\r\n\r\n" % (extra, len(body)) + body)

if mode == "shared":
    listener = socket.socket(fileno=3)
    nodelay = lambda s: s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    while True:
        conn, _ = listener.accept()
        read_head(conn)
        answer(conn, b"listener %d conn %d\n" % (nodelay(listener), nodelay(conn)), close=True)
        conn.close()

chan = socket.socket(fileno=int(os.environ["FORKPOOL_CHANNEL_FD"]))
chan.send(MSG.pack(16, 0, 0, 0))
served = 0
seen = {}
while True:
    data, anc, flags, _ = chan.recvmsg(16, socket.CMSG_SPACE(4 * 4))
    if not data:
        sys.exit(0)
    kind, listener, reserved, ident = MSG.unpack(data)
    fds = array.array("i")
    for level, ctype, cdata in anc:
        fds.frombytes(cdata[: len(cdata) - len(cdata) % 4])
    if kind != 1 or len(fds) != 1:
        continue
    if fcntl.fcntl(fds[0], fcntl.F_GETFL) & os.O_NONBLOCK:
        sys.exit(3)
    conn = socket.socket(fileno=fds[0])
    try:
        nodelay = conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    except OSError:
        nodelay = -1  # a Unix socket has no such option
    head = read_head(conn)
    if head:
        answer(conn, b"flags %d nodelay %d\n" % (reserved, nodelay) if mode == "flags" else b"connection %d\n" % ident)
    rights = lambda *fds: [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))]
    if mode == "flags" and head:
        seen[ident] = seen.get(ident, 0) + 1
        park_flags = reserved & 2
        if seen[ident] == 2 and nodelay == 1:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 0)
            park_flags = 0
        chan.sendmsg([MSG.pack(18, 0, park_flags, ident)], rights(conn.fileno()))
    elif mode == "park" and head:
        chan.sendmsg([MSG.pack(18, 0, 0, ident)], rights(conn.fileno()))
    elif mode == "park_keep" and head:  # keeps a copy of what it parks, as a forked child would
        seen[ident] = os.dup(conn.fileno())
        chan.sendmsg([MSG.pack(18, 0, 0, ident)], rights(conn.fileno()))
    elif mode == "done_twice":  # a second DONE for a connection it no longer holds
        chan.send(MSG.pack(17, 0, 0, ident))
        chan.send(MSG.pack(17, 0, 0, ident))
    elif mode == "done_fd":  # a DONE that brings a descriptor along
        chan.sendmsg([MSG.pack(17, 0, 0, ident)], rights(conn.fileno()))
    elif mode == "garbage":
        bad = served % 4
        if bad == 0:    # PARK without the descriptor
            chan.send(MSG.pack(18, 0, 0, ident))
        elif bad == 1:  # PARK with two descriptors
            chan.sendmsg([MSG.pack(18, 0, 0, ident)], rights(conn.fileno(), conn.fileno()))
        elif bad == 2:  # PARK for a connection it does not hold, then DONE for the real one
            chan.sendmsg([MSG.pack(18, 0, 0, ident + 1000000)], rights(conn.fileno()))
            chan.send(MSG.pack(17, 0, 0, ident))
        else:           # PARK with a pipe holding a request instead of the connection
            r, w = os.pipe()
            os.write(w, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            chan.sendmsg([MSG.pack(18, 0, 0, ident)], rights(r))
            os.close(r)
            os.close(w)
    else:
        chan.send(MSG.pack(17, 0, 0, ident))
    conn.close()
    served += 1
)";

std::string protocol_worker_pool(const fs::path& script, const std::string& mode, const std::string& keepalive,
                                 const std::string& name = "py") {
  return "[pools." + name + "]\ncommand = [\"/usr/bin/python3\", " + quoted(script.string()) + ", \"" + mode +
         "\"]\nlisten = [\"tcp://127.0.0.1:0\"]\nworkers = 1\nmax_inflight = 1\nkeepalive = \"" + keepalive + "\"\n";
}

// A master with one pool "py" of the protocol worker in `mode`, ready, and a control client.
struct ProtocolMaster {
  TempDir dir;
  MasterProcess master;
  std::string address;
  ControlClient ctl;
  ProtocolMaster(const std::string& mode, const std::string& keepalive)
      : master(config(dir, mode, keepalive)), address(master.wait_listen_address("py")), ctl(dir / "ctl.sock", 10s) {
    REQUIRE(!master.wait_log("every pool has its workers ready").empty());
  }
  static fs::path config(const TempDir& dir, const std::string& mode, const std::string& keepalive) {
    write_file(dir / "worker.py", kProtocolWorker);
    write_file(dir / "f.toml", supervisor_section() + protocol_worker_pool(dir / "worker.py", mode, keepalive));
    return dir / "f.toml";
  }
};

}  // namespace

TEST_CASE("a worker written from docs/protocol.md parks: each request comes back as a CONN with the same id",
          "[keepalive]") {
  ProtocolMaster pm("park", "master");
  MasterProcess& master = pm.master;
  const std::string& address = pm.address;
  ControlClient& ctl = pm.ctl;

  KeepAliveClient a(address), b(address);
  const auto a1 = a.get(), b1 = b.get(), a2 = a.get(), a3 = a.get(), b2 = b.get();
  REQUIRE((a1 && b1 && a2 && a3 && b2));
  CHECK(*a1 == *a2);  // "connection N": the id stays with the client's connection
  CHECK(*a2 == *a3);
  CHECK(*b1 == *b2);
  CHECK(*a1 != *b1);
  REQUIRE(wait_until([&] { return c(pool_status(ctl, "py"), "parked") == 5; }));
  const json p = pool_status(ctl, "py");
  CHECK(c(p, "accepted") == 2);
  CHECK(c(p, "resumed") == 3);
  CHECK(c(p, "parked_now") == 2);
  check_identities(p);
  stop_master(master);
}

namespace {

// `forkpoolctl top --once`: the fields of the row of the worker with this pid (SLOT W PID
// STATE INFL CURRENT HANDLED ...), empty when there is none.
std::vector<std::string> top_row(const TempDir& dir, pid_t pid) {
  const auto frame = run_command(
      {std::string(FORKPOOL_BINARY_DIR) + "/ctl/forkpoolctl", "-s", (dir / "ctl.sock").string(), "top", "--once"}, 20s);
  INFO(frame.describe());
  std::istringstream lines(frame.out);
  for (std::string line; std::getline(lines, line);) {
    std::istringstream in(line);
    std::vector<std::string> fields{std::istream_iterator<std::string>(in), std::istream_iterator<std::string>()};
    if (fields.size() > 6 && fields[2] == std::to_string(pid)) return fields;
  }
  return {};
}

}  // namespace

TEST_CASE("forkpoolctl top shows what the master counts of a worker that never writes its scoreboard page",
          "[keepalive][top]") {
  // The worker of docs/protocol.md alone: READY, DONE, nothing else. `top` reads the
  // scoreboard, not the master's status: in master dispatch the master keeps its account
  // of each worker there, so the row says busy and the connections handled.
  ProtocolMaster pm("done", "worker");
  TempDir& dir = pm.dir;
  MasterProcess& master = pm.master;
  const std::string& address = pm.address;
  ControlClient& ctl = pm.ctl;
  const pid_t pid = pool_status(ctl, "py")["workers"][0]["pid"].get<pid_t>();
  for (int i = 0; i < 3; ++i) REQUIRE(KeepAliveClient(address).get());
  REQUIRE(wait_until([&] { return c(pool_status(ctl, "py"), "completed") == 3; }));
  auto row = top_row(dir, pid);
  REQUIRE(row.size() > 6);
  CHECK(row[3] == "idle");
  CHECK(row[4] == "0");  // INFL
  CHECK(row[6] == "3");  // HANDLED

  HttpConnection held(address);  // half a request: the worker waits for the rest
  REQUIRE(held.send("GET / HTTP/1.1\r\nHost: x\r\n"));
  REQUIRE(wait_until([&] { return c(pool_status(ctl, "py"), "in_flight") == 1; }));
  row = top_row(dir, pid);
  REQUIRE(row.size() > 6);
  CHECK(row[3] == "busy");
  CHECK(row[4] == "1");
  CHECK(row[5] != "-");  // CURRENT: how long it has held the connection
  CHECK(row[6] == "3");
  REQUIRE(held.send("\r\n"));
  REQUIRE(held.read_response());
  REQUIRE(wait_until([&] { return top_row(dir, pid).size() > 6 && top_row(dir, pid)[6] == "4"; }));
  stop_master(master);
}

namespace {

// Registrations in the process's epoll sets ("tfd:" lines of their fdinfo).
std::size_t epoll_registrations(pid_t pid) {
  std::size_t n = 0;
  const std::string proc = "/proc/" + std::to_string(pid);
  for (const auto& e : fs::directory_iterator(proc + "/fd")) {
    std::error_code ec;
    if (fs::read_symlink(e.path(), ec).string() != "anon_inode:[eventpoll]") continue;
    std::istringstream info(read_text(proc + "/fdinfo/" + e.path().filename().string()));
    for (std::string line; std::getline(info, line);)
      if (line.rfind("tfd:", 0) == 0) ++n;
  }
  return n;
}

}  // namespace

TEST_CASE("a parked connection the client closes leaves the master's epoll set though the worker kept a copy",
          "[keepalive]") {
  // Closing a descriptor drops its epoll registration only with the last reference to the
  // socket; a worker that kept a copy of what it parked (one that forked while holding
  // it) kept the registration alive, and its hang-up fired for ever: a busy master.
  ProtocolMaster pm("park_keep", "master");
  MasterProcess& master = pm.master;
  const std::string& address = pm.address;
  ControlClient& ctl = pm.ctl;
  for (std::uint64_t round = 1; round <= 2; ++round) {
    // The first round makes the parked set's own epoll set (registered in the loop's).
    const std::size_t before = epoll_registrations(master.pid());
    {
      KeepAliveClient a(address);
      REQUIRE(a.get());
      REQUIRE(wait_until([&] { return c(pool_status(ctl, "py"), "parked_now") == 1; }));
      if (round == 2) CHECK(epoll_registrations(master.pid()) == before + 1);
    }
    REQUIRE(wait_until([&] { return c(pool_status(ctl, "py"), "keepalive_closed") == round; }));
    if (round == 2) CHECK(epoll_registrations(master.pid()) == before);
  }
  check_identities(pool_status(ctl, "py"));
  stop_master(master);
}

TEST_CASE("a DONE for a connection the worker does not hold, or with a descriptor, is a protocol error",
          "[keepalive][channel]") {
  TempDir dir;
  write_file(dir / "worker.py", kProtocolWorker);
  write_file(dir / "f.toml", supervisor_section() + protocol_worker_pool(dir / "worker.py", "done_twice", "worker") +
                                 protocol_worker_pool(dir / "worker.py", "done_fd", "worker", "fd"));
  MasterProcess master(dir / "f.toml");
  const std::string twice = master.wait_listen_address("py");
  const std::string with_fd = master.wait_listen_address("fd");
  REQUIRE(!master.wait_log("every pool has its workers ready").empty());
  ControlClient ctl(dir / "ctl.sock", 10s);
  for (int i = 0; i < 3; ++i) {
    CHECK(KeepAliveClient(twice).get().has_value());
    CHECK(KeepAliveClient(with_fd).get().has_value());
  }
  REQUIRE(wait_until([&] {
    return c(pool_status(ctl, "py"), "protocol_errors") == 3 && c(pool_status(ctl, "fd"), "protocol_errors") == 3;
  }));
  for (const char* name : {"py", "fd"}) {
    const json p = pool_status(ctl, name);
    CHECK(c(p, "completed") == 3);  // each connection once: the second DONE finishes nothing
    CHECK(c(p, "in_flight") == 0);
    check_identities(p);
  }
  CHECK(!master.all_matches("(\\[channel.bad_done\\] worker py\\[0\\] pid [0-9]+ sent DONE for a connection it does "
                            "not hold)").empty());
  CHECK(!master.all_matches("(\\[channel.bad_done\\] worker fd\\[0\\] pid [0-9]+ sent DONE with a descriptor)").empty());
  stop_master(master);
}

TEST_CASE("master dispatch hands out TCP connections with TCP_NODELAY set and says so, and a PARK's word comes back with the resume",
          "[keepalive][dispatch]") {
  TempDir dir;
  write_file(dir / "worker.py", kProtocolWorker);
  const std::string command =
      "command = [\"/usr/bin/python3\", " + quoted((dir / "worker.py").string()) + ", \"flags\"]\n";
  const std::string unix_path = (dir / "web.sock").string();
  write_file(dir / "f.toml", supervisor_section() + "[pools.tcp]\n" + command +
                                 "listen = [\"tcp://127.0.0.1:0\"]\nmax_inflight = 1\nkeepalive = \"master\"\n\n"
                                 "[pools.unix]\n" + command + "listen = [\"unix:" + unix_path +
                                 "\"]\nmax_inflight = 1\nkeepalive = \"master\"\n");
  MasterProcess master(dir / "f.toml");
  const std::string address = master.wait_listen_address("tcp");
  REQUIRE(!master.wait_log("every pool has its workers ready").empty());

  KeepAliveClient tcp(address);
  // Accepted by the master: the option inherited from the listener, FP_FD_NODELAY (2).
  CHECK(tcp.get() == "flags 2 nodelay 1\n");
  // Parked with FP_FD_NODELAY and resumed: the master passes on what the PARK said.
  CHECK(tcp.get() == "flags 2 nodelay 1\n");
  // Parked after the worker cleared the option, without the flag: the resume says nothing.
  CHECK(tcp.get() == "flags 0 nodelay 0\n");
  CHECK(tcp.get() == "flags 0 nodelay 0\n");
  // A fresh connection still gets it: the listener's option is untouched.
  KeepAliveClient again(address);
  CHECK(again.get() == "flags 2 nodelay 1\n");
  // A Unix socket: no flag.
  KeepAliveClient local("unix:" + unix_path);
  CHECK(local.get() == "flags 0 nodelay -1\n");
  stop_master(master);
}

namespace {

// A TCP connection to 127.0.0.1:PORT of `address` that sends nothing (a browser's
// preconnect, a health check that only connects).
int connect_silently(const std::string& address) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(std::stoi(address.substr(address.rfind(':') + 1))));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

}  // namespace

TEST_CASE("keepalive = master: clients that connect and send nothing take no worker until they send",
          "[keepalive]") {
  Setup s(supervisor_section() + hello_keepalive_pool(1, "keepalive_timeout = \"20s\"\n") +
          "[pools.plain]\ncommand = [" + quoted(hello_binary().string()) +
          "]\nlisten = [\"tcp://127.0.0.1:0\"]\nworkers = 1\nmax_inflight = 1\n");
  const std::string address = s.master->wait_listen_address("web");
  const std::string plain = s.master->wait_listen_address("plain");
  REQUIRE(!s.master->wait_log("every pool has its workers ready").empty());
  auto ctl = s.client();

  std::vector<int> silent;
  for (int i = 0; i < 3; ++i) silent.push_back(connect_silently(address));
  for (const int fd : silent) REQUIRE(fd >= 0);
  // The one worker serves another client at once: the silent ones wait in the kernel
  // (TCP_DEFER_ACCEPT), not in the worker or the master's queue.
  KeepAliveClient client(address);
  CHECK(client.get() == "Hello, world\n");
  CHECK(c(pool_status(ctl, "web"), "accepted") == 1);
  // One of them sends its request: it is accepted and answered like any other.
  const std::string request = "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  REQUIRE(::write(silent[0], request.data(), request.size()) == static_cast<ssize_t>(request.size()));
  std::string answer;
  char buf[512];
  for (ssize_t n; (n = ::read(silent[0], buf, sizeof buf)) > 0;) answer.append(buf, static_cast<std::size_t>(n));
  CHECK(answer.rfind("HTTP/1.1 200", 0) == 0);
  CHECK(c(pool_status(ctl, "web"), "accepted") == 2);

  // keepalive = "worker" (the default) keeps the plain behaviour: the master takes a
  // connection as soon as it is made.
  const int idle = connect_silently(plain);
  REQUIRE(idle >= 0);
  CHECK(wait_until([&] { return c(pool_status(ctl, "plain"), "accepted") == 1; }));
  ::close(idle);
  for (const int fd : silent) ::close(fd);
  check_identities(pool_status(ctl, "web"));
  stop_master(*s.master);
}

TEST_CASE("a pool a reload moves from master to shared dispatch gets its listener back without TCP_NODELAY",
          "[keepalive][dispatch][reload]") {
  TempDir dir;
  write_file(dir / "worker.py", kProtocolWorker);
  auto pool = [&](const char* mode, const std::string& settings) {
    return supervisor_section() + "[pools.web]\ncommand = [\"/usr/bin/python3\", " +
           quoted((dir / "worker.py").string()) + ", " + quoted(mode) +
           "]\nlisten = [\"tcp://127.0.0.1:0\"]\nworkers = 1\n" + settings;
  };
  write_file(dir / "f.toml", pool("flags", "max_inflight = 1\nkeepalive = \"master\"\n"));
  MasterProcess master(dir / "f.toml");
  const std::string address = master.wait_listen_address("web");
  REQUIRE(!master.wait_log("every pool has its workers ready").empty());
  {
    KeepAliveClient tcp(address);
    CHECK(tcp.get() == "flags 2 nodelay 1\n");
  }
  write_file(dir / "f.toml", pool("shared", "dispatch = \"shared\"\n"));
  ControlClient ctl(dir / "ctl.sock", 30s);
  const json r = ctl.request({{"cmd", "reload"}});
  INFO(r.dump());
  REQUIRE(r.value("ok", false));
  // The port is the same socket; once the new worker serves it, nothing set TCP_NODELAY.
  std::optional<std::string> answer;
  REQUIRE(wait_until([&] {
    KeepAliveClient tcp(address);
    answer = tcp.get();
    return answer && answer->rfind("listener", 0) == 0;
  }));
  CHECK(*answer == "listener 0 conn 0\n");
  stop_master(master);
}

TEST_CASE("forkpoolctl stop closes a pool's parked connections and counts them out of parked_now", "[keepalive]") {
  TempDir dir;
  write_file(dir / "f.toml", supervisor_section() + hello_keepalive_pool(2, "keepalive_timeout = \"30s\"\n"));
  MasterProcess master(dir / "f.toml");
  const std::string address = master.wait_listen_address("web");
  REQUIRE(!master.wait_log("every pool has its workers ready").empty());
  ControlClient ctl(dir / "ctl.sock", 10s);
  KeepAliveClient a(address), b(address);
  REQUIRE(a.get());
  REQUIRE(b.get());
  REQUIRE(wait_until([&] { return c(pool_status(ctl, "web"), "parked_now") == 2; }));
  REQUIRE(ctl.request({{"cmd", "stop"}, {"pool", "web"}}).value("ok", false));
  CHECK(a.closed_by_server());
  CHECK(b.closed_by_server());
  const json p = pool_status(ctl, "web");
  CHECK(c(p, "parked_closed") == 2);
  CHECK(c(p, "parked_now") == 0);
  check_identities(p);
  stop_master(master);
}

TEST_CASE("PARKs that break the rules are counted as protocol errors, closed, and the worker is kept",
          "[keepalive]") {
  TempDir dir;
  write_file(dir / "worker.py", kProtocolWorker);
  write_file(dir / "f.toml", supervisor_section() + protocol_worker_pool(dir / "worker.py", "garbage", "master") +
                                 "[pools.plain]\ncommand = [\"/usr/bin/python3\", " +
                                 quoted((dir / "worker.py").string()) +
                                 ", \"park\"]\nlisten = [\"tcp://127.0.0.1:0\"]\nworkers = 1\n");
  MasterProcess master(dir / "f.toml");
  const std::string garbage_address = master.wait_listen_address("py");
  const std::string plain_address = master.wait_listen_address("plain");
  REQUIRE(!master.wait_log("every pool has its workers ready").empty());
  ControlClient ctl(dir / "ctl.sock", 10s);
  const pid_t garbage_worker = master.wait_worker_started("py", 0);
  const pid_t plain_worker = master.wait_worker_started("plain", 0);

  // Without the descriptor, with two, for a connection it does not hold, with a pipe
  // instead of the connection: each answered (the worker wrote its response first), each
  // refused and counted, and the pipe never reaches a worker as a CONN.
  for (int i = 0; i < 4; ++i) {
    KeepAliveClient client(garbage_address);
    CHECK(client.get().has_value());
    CHECK(client.closed_by_server());
  }
  // PARK from a pool without keepalive = "master".
  for (int i = 0; i < 2; ++i) {
    KeepAliveClient client(plain_address);
    CHECK(client.get().has_value());
    CHECK(client.closed_by_server());
  }
  REQUIRE(wait_until([&] {
    return c(pool_status(ctl, "py"), "protocol_errors") == 4 && c(pool_status(ctl, "plain"), "protocol_errors") == 2;
  }));
  for (const char* name : {"py", "plain"}) {
    const json p = pool_status(ctl, name);
    CHECK(c(p, "parked") == 0);
    CHECK(c(p, "lost") == 0);
    CHECK(c(p, "completed") == c(p, "dispatched"));
    check_identities(p);
  }
  CHECK(master.all_matches("\\[channel.bad_park\\] worker py\\[0\\] pid [0-9]+ sent PARK (without the connection's descriptor)").size() == 1);
  CHECK(master.all_matches("\\[channel.bad_park\\] worker py\\[0\\] pid [0-9]+ sent PARK (with more than one descriptor)").size() == 1);
  CHECK(master.all_matches("\\[channel.bad_park\\] worker py\\[0\\] pid [0-9]+ sent PARK (for a connection it does not hold)").size() == 1);
  CHECK(master.all_matches("\\[channel.bad_park\\] worker py\\[0\\] pid [0-9]+ sent PARK (with a descriptor that is no stream socket)").size() == 1);
  CHECK(master.all_matches("\\[channel.bad_park\\] worker plain\\[0\\] pid [0-9]+ sent PARK (but its pool does not have keepalive)").size() == 2);
  // Both workers kept.
  CHECK(master.wait_worker_started("py", 0) == garbage_worker);
  CHECK(master.wait_worker_started("plain", 0) == plain_worker);
  CHECK(process_alive(garbage_worker));
  CHECK(process_alive(plain_worker));
  stop_master(master);
}

TEST_CASE("parked connections are carried across a binary upgrade, deadlines and all", "[keepalive][upgrade]") {
  Setup s(supervisor_section() + hello_keepalive_pool(1, "keepalive_timeout = \"20s\"\n"));
  const std::string address = s.master->wait_listen_address("web");
  REQUIRE(!s.master->wait_log("every pool has its workers ready").empty());

  std::vector<std::unique_ptr<KeepAliveClient>> clients;
  for (int i = 0; i < 4; ++i) {
    clients.push_back(std::make_unique<KeepAliveClient>(address));
    REQUIRE(clients.back()->get().has_value());
  }
  {
    auto ctl = s.client();
    REQUIRE(wait_until([&] { return c(pool_status(ctl, "web"), "parked_now") == 4; }));
  }
  s.master->signal(SIGUSR2);
  REQUIRE(!s.master->wait_log("\\[master.upgraded\\]", 30s).empty());
  // The same connections, held by the new image, bring their next requests.
  for (auto& client : clients) CHECK(client->get() == std::optional<std::string>("Hello, world\n"));
  auto ctl = s.client();
  REQUIRE(wait_until([&] { return c(pool_status(ctl, "web"), "parked") == 8; }));
  const json p = pool_status(ctl, "web");
  CHECK(c(p, "resumed") == 4);
  CHECK(c(p, "parked_closed") == 0);
  CHECK(c(p, "accepted") == 4);
  check_identities(p);
  stop_master(*s.master);
}
