// SPDX-License-Identifier: Apache-2.0
// Fuzz target: the control socket's commands, run_command, behind a real ControlServer.
//
// ControlClient cannot be made outside the server (its handle and server are private,
// set only by ControlServer::accept_one), and a reply goes out through that handle. So
// the harness keeps one ControlServer on a socket in a temporary folder, driven by
// uv_run, whose handler is run_command over a fake ControlTarget; every input is sent as
// one request line by a client of that socket, which then half-closes and reads replies
// until the server closes. The server's own framing (handle_input) reads the line, as it
// would from forkpoolctl.
//
// What must hold: the harness decides, as handle_input does (strip one '\r', skip an
// empty line, nlohmann::json::parse, an object with a string "cmd"), whether the line
// reaches run_command; it does exactly then, with an equal request; run_command lets no
// exception out; the client gets exactly one reply line, a JSON object with a boolean
// "ok" (and a string "error" when it is false); no descriptor is left open.

#include <dirent.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <uv.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "supervisor/control/control_commands.hpp"
#include "supervisor/control/control_server.hpp"
#include "supervisor/observe/log.hpp"

namespace {

using namespace forkpool;
using namespace forkpool::supervisor;
using nlohmann::json;

[[noreturn]] void fail(const char* what, std::string_view detail = {}) {
  std::fprintf(stderr, "control_command: %s\n%.*s\n", what, static_cast<int>(detail.size()), detail.data());
  std::abort();
}

// Pools exist by name only: a real Pool needs a master (scoreboard, spawner, loop) and
// its commands fork and signal processes, which a fuzz loop must not do.
class FakeTarget final : public ControlTarget {
 public:
  StatusModel status_model() override {
    StatusModel m;
    m.master_pid = 1;
    m.version = "fuzz";
    m.config_file = "/etc/forkpool/forkpool.toml";
    m.state = "running";
    m.generation = 1;
    PoolStatus p;
    p.name = "web";
    p.state = "running";
    p.dispatch = "master";
    p.balance = "least-busy";
    p.target = 1;
    WorkerStatus w;
    w.pid = 2;
    w.state = "idle";
    w.role = "serving";
    w.status_text = "STATUS text";
    p.workers.push_back(w);
    m.pools.push_back(p);
    return m;
  }
  Pool* find_pool(std::string_view) override { return nullptr; }
  std::vector<std::string> pool_names() const override { return {"web", "api"}; }
  void request_shutdown() override { ++shutdowns; }
  std::vector<shm::OwnedFd> scoreboard_fds(json& info) override {
    info["slots"] = 2;
    std::vector<shm::OwnedFd> fds;
    for (int i = 0; i < 2; ++i) fds.emplace_back(::memfd_create("fuzz", MFD_CLOEXEC));
    return fds;
  }
  json reload(std::string_view trigger) override { return {{"ok", false}, {"error", std::string(trigger)}}; }
  void upgrade(std::string_view trigger, ControlClient* c) override {
    if (c != nullptr) c->error(std::string(trigger));
  }

  int shutdowns = 0;
};

// The temporary folder, removed when the fuzzer exits normally (-max_total_time, -runs).
std::filesystem::path g_dir;

void remove_dir() {
  std::error_code ec;
  std::filesystem::remove_all(g_dir, ec);
}

struct Harness {
  uv_loop_t loop{};
  FakeTarget target;
  std::unique_ptr<ControlServer> server;
  // The request of the current input as the harness parsed it; handled once.
  std::optional<json> expected;
  int handled = 0;

  Harness() {
    char tmpl[] = "/tmp/forkpool-fuzz-control-XXXXXX";
    if (::mkdtemp(tmpl) == nullptr) fail("mkdtemp");
    g_dir = tmpl;
    std::atexit(remove_dir);
    log::setup({.level = "off"});
    if (uv_loop_init(&loop) != 0) fail("uv_loop_init");
    config::SupervisorConfig cfg;
    cfg.control_socket = g_dir / "control.sock";
    server = std::make_unique<ControlServer>(&loop, cfg, [this](ControlClient& c, const json& request) {
      ++handled;
      if (!expected || request != *expected) fail("run_command got a request the harness did not expect", request.dump());
      try {
        run_command(target, c, request);
      } catch (const std::exception& e) {
        fail("an exception escaped run_command", e.what());
      } catch (...) {
        fail("an exception escaped run_command");
      }
    });
  }
};

Harness& harness() {
  static Harness* h = new Harness;  // never destroyed: the fuzzer exits from inside its loop
  return *h;
}

int open_fds() {
  int n = 0;
  DIR* d = ::opendir("/proc/self/fd");
  if (d == nullptr) std::abort();
  while (const dirent* e = ::readdir(d))
    if (e->d_name[0] != '.') ++n;
  ::closedir(d);
  return n;
}

// Reads what is there; closes descriptors that came with it (scoreboard). False at EOF.
bool read_some(int fd, std::string& into) {
  char buf[65536];
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 256)];
  iovec iov{buf, sizeof buf};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  const ssize_t n = ::recvmsg(fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); n >= 0 && c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    const std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (std::size_t i = 0; i < count; ++i) {
      int passed;
      std::memcpy(&passed, CMSG_DATA(c) + i * sizeof(int), sizeof passed);
      ::close(passed);
    }
  }
  if (n > 0) into.append(buf, static_cast<std::size_t>(n));
  if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return false;  // reset: ended
  return n != 0;
}

// What handle_input does with one line before it calls the handler.
std::optional<json> request_of(std::string_view line) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  if (line.empty() || line.size() > ControlServer::kMaxLine) return std::nullopt;
  json request;
  try {
    request = json::parse(line);
  } catch (const json::exception&) {
    return std::nullopt;
  }
  if (!request.is_object() || !request.contains("cmd") || !request["cmd"].is_string()) return std::nullopt;
  return request;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view line(reinterpret_cast<const char*>(data), size);
  // One input is one request line; the server would split a line feed into two.
  if (line.find('\n') != std::string_view::npos) return 0;
  Harness& h = harness();
  const int fds_before = open_fds();
  h.expected = request_of(line);
  h.handled = 0;
  std::string stripped(line);
  if (!stripped.empty() && stripped.back() == '\r') stripped.pop_back();
  const bool answered = !stripped.empty();  // an empty line gets no reply

  std::string replies;
  {
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) fail("socket");
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    const std::string path = h.server->path().string();
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) fail("connect", std::strerror(errno));
    std::string request(line);
    request += '\n';
    for (std::size_t off = 0; off < request.size();) {
      const ssize_t n = ::send(fd, request.data() + off, request.size() - off, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) off += static_cast<std::size_t>(n);
      else if (n < 0 && (errno == EAGAIN || errno == EINTR)) uv_run(&h.loop, UV_RUN_NOWAIT);
      else fail("send", std::strerror(errno));
    }
    ::shutdown(fd, SHUT_WR);
    // The server answers, then closes once its replies are written; read them meanwhile.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    for (int spins = 0;;) {
      uv_run(&h.loop, UV_RUN_NOWAIT);
      if (!read_some(fd, replies)) break;
      if (std::chrono::steady_clock::now() > deadline) fail("the server did not finish the request", line);
      // libuv adds new watchers to its epoll set only inside uv_run, so waiting on its
      // backend fd could sleep through work it has queued: spin, and sleep only when the
      // server has taken a while (it may be waiting for the kernel).
      if (++spins > 100) {
        pollfd p[2] = {{fd, POLLIN, 0}, {uv_backend_fd(&h.loop), POLLIN, 0}};
        ::poll(p, 2, 1);
      }
    }
    ::close(fd);
    // The server drops the client (and closes its end) in a callback of its own.
    while (h.server->clients() != 0) {
      if (std::chrono::steady_clock::now() > deadline) fail("the server did not drop the client", line);
      uv_run(&h.loop, UV_RUN_ONCE);
    }
    uv_run(&h.loop, UV_RUN_NOWAIT);  // close callbacks free the client's handles
  }
  log::set_level("off");  // a log-level request must not make the next inputs noisy

  if (h.handled != (h.expected ? 1 : 0)) fail("run_command was called a wrong number of times", line);
  std::vector<std::string_view> lines;
  for (std::string_view rest = replies; !rest.empty();) {
    const auto nl = rest.find('\n');
    if (nl == std::string_view::npos) fail("a reply without a line feed", replies);
    lines.push_back(rest.substr(0, nl));
    rest.remove_prefix(nl + 1);
  }
  if (lines.size() != (answered ? 1u : 0u)) fail("not exactly one reply line", replies);
  for (std::string_view reply : lines) {
    json r;
    try {
      r = json::parse(reply);
    } catch (const json::exception&) {
      fail("a reply that is not JSON", reply);
    }
    if (!r.is_object() || !r.contains("ok") || !r["ok"].is_boolean()) fail("a reply without a boolean \"ok\"", reply);
    if (!r["ok"].get<bool>() && !(r.contains("error") && r["error"].is_string()))
      fail("a failure without an error message", reply);
  }
  if (open_fds() != fds_before) fail("descriptors leaked", line);
  return 0;
}
