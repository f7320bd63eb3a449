// SPDX-License-Identifier: Apache-2.0
#include "base/socket_type.hpp"
#include "supervisor/generation/listeners.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

#include "supervisor/observe/log.hpp"
#include "supervisor/systemd_protocol.hpp"

namespace forkpool::supervisor {
namespace {

union SockAddr {
  sockaddr sa;
  sockaddr_in in4;
  sockaddr_in6 in6;
  sockaddr_un un;
  sockaddr_storage storage;
};

[[noreturn]] void fail(const std::string& what, const config::ListenAddress& a, int err) {
  throw std::runtime_error(what + " " + a.text + ": " + std::strerror(err));
}

socklen_t make_sockaddr(const config::ListenAddress& a, SockAddr& out) {
  std::memset(&out, 0, sizeof out);
  if (a.kind == config::ListenAddress::Kind::Unix) {
    out.un.sun_family = AF_UNIX;
    const std::string& p = a.path.native();
    std::memcpy(out.un.sun_path, p.data(), p.size());
    if (!p.empty() && p[0] == '@') out.un.sun_path[0] = '\0';  // abstract namespace
    return static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + p.size() + (p[0] == '@' ? 0 : 1));
  }
  if (a.ipv6) {
    out.in6.sin6_family = AF_INET6;
    out.in6.sin6_port = htons(a.port);
    ::inet_pton(AF_INET6, a.host.c_str(), &out.in6.sin6_addr);
    return sizeof out.in6;
  }
  out.in4.sin_family = AF_INET;
  out.in4.sin_port = htons(a.port);
  ::inet_pton(AF_INET, a.host.c_str(), &out.in4.sin_addr);
  return sizeof out.in4;
}

// The address `fd` is bound to, written as a listen address is ("tcp://127.0.0.1:8080",
// "tcp://[::1]:8080", "unix:/run/app.sock", "unix:@name"); empty if it has none of these.
std::string socket_address(int fd) {
  SockAddr addr{};
  socklen_t len = sizeof addr;
  if (::getsockname(fd, &addr.sa, &len) != 0) return {};
  char host[INET6_ADDRSTRLEN] = {};
  switch (addr.sa.sa_family) {
    case AF_INET6:
      ::inet_ntop(AF_INET6, &addr.in6.sin6_addr, host, sizeof host);
      return "tcp://[" + std::string(host) + "]:" + std::to_string(ntohs(addr.in6.sin6_port));
    case AF_INET:
      ::inet_ntop(AF_INET, &addr.in4.sin_addr, host, sizeof host);
      return "tcp://" + std::string(host) + ":" + std::to_string(ntohs(addr.in4.sin_port));
    case AF_UNIX: {
      const std::size_t n = len > offsetof(sockaddr_un, sun_path) ? len - offsetof(sockaddr_un, sun_path) : 0;
      if (n == 0) return {};
      if (addr.un.sun_path[0] == '\0') return "unix:@" + std::string(addr.un.sun_path + 1, n - 1);
      return "unix:" + std::string(addr.un.sun_path, ::strnlen(addr.un.sun_path, n));
    }
  }
  return {};
}

std::string describe_bound(int fd, const config::ListenAddress& a) {
  if (a.kind == config::ListenAddress::Kind::Unix) return a.text;
  const std::string bound = socket_address(fd);
  return bound.empty() ? a.text : bound;
}

// A passed socket for the log: its address, and what is odd about it.
std::string describe_passed(int fd) {
  std::string text = socket_address(fd);
  if (text.empty()) text = "fd " + std::to_string(fd) + " (no TCP or Unix address)";
  if (base::socket_type(fd) != SOCK_STREAM) text += " (not a stream socket)";
  return text;
}

bool same_address(int fd, const config::ListenAddress& a) {
  if (a.kind == config::ListenAddress::Kind::Tcp && a.port == 0) return false;
  SockAddr want{}, have{};
  const socklen_t want_len = make_sockaddr(a, want);
  socklen_t have_len = sizeof have;
  if (::getsockname(fd, &have.sa, &have_len) != 0) return false;
  if (have.sa.sa_family != want.sa.sa_family) return false;
  switch (want.sa.sa_family) {
    case AF_INET:
      return have.in4.sin_port == want.in4.sin_port && have.in4.sin_addr.s_addr == want.in4.sin_addr.s_addr;
    case AF_INET6:
      return have.in6.sin6_port == want.in6.sin6_port &&
             std::memcmp(&have.in6.sin6_addr, &want.in6.sin6_addr, sizeof(in6_addr)) == 0;
    case AF_UNIX:
      return have_len == want_len && std::memcmp(have.un.sun_path, want.un.sun_path,
                                                 want_len - offsetof(sockaddr_un, sun_path)) == 0;
  }
  return false;
}

}  // namespace

void prepare_socket_path(const std::filesystem::path& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return;
  const std::string where = "unix:" + path.string();
  if (!S_ISSOCK(st.st_mode)) throw std::runtime_error("bind " + where + ": the path exists and is not a socket");
  config::ListenAddress a;
  a.kind = config::ListenAddress::Kind::Unix;
  a.path = path;
  OwnedFd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  SockAddr addr{};
  const socklen_t len = make_sockaddr(a, addr);
  // A socket file left by a dead process refuses connections; a live one accepts them
  // (or would, once its backlog drains: EAGAIN means alive too).
  if (::connect(probe.get(), &addr.sa, len) == 0 || errno == EAGAIN || errno == EINPROGRESS)
    throw std::runtime_error("bind " + where + ": another process is listening on this socket");
  if (errno == ECONNREFUSED || errno == ENOENT) ::unlink(path.c_str());
}

namespace {

struct Claimed {
  bool done = false;
  std::vector<int> fds;          // open sockets, close-on-exec now
  std::size_t not_sockets = 0;   // LISTEN_FDS counted them, but they are closed or not sockets
};

Claimed& claimed() {
  static Claimed c;
  return c;
}

}  // namespace

void InheritedSockets::claim_at_start() {
  Claimed& c = claimed();
  if (c.done) return;
  c.done = true;
  const int n = systemd::take_listen_fds();
  for (int i = 0; i < n; ++i) {
    const int fd = systemd::kListenFdsStart + i;
    struct stat st {};
    const bool open = ::fstat(fd, &st) == 0;
    if (!open || !S_ISSOCK(st.st_mode)) {
      // Open but not a socket: not ours to close, but no program of ours inherits it.
      if (open) ::fcntl(fd, F_SETFD, FD_CLOEXEC);
      ++c.not_sockets;
      continue;
    }
    ::fcntl(fd, F_SETFD, FD_CLOEXEC);
    c.fds.push_back(fd);
  }
}

InheritedSockets InheritedSockets::from_environment() {
  claim_at_start();
  Claimed& c = claimed();
  InheritedSockets s;
  for (int fd : c.fds) s.fds_.emplace_back(fd);
  c.fds.clear();
  if (c.not_sockets > 0)
    log::warn("listener.passed_invalid",
              "LISTEN_FDS named {} descriptor(s) from {} on that are not open sockets; ignored them", c.not_sockets,
              systemd::kListenFdsStart);
  c.not_sockets = 0;
  return s;
}

OwnedFd InheritedSockets::take(const config::ListenAddress& address) {
  for (auto& fd : fds_) {
    if (!fd) continue;
    // Only a stream socket serves a listen address: a datagram socket bound to the same
    // address (ListenDatagram=) stays unclaimed and is closed with a warning.
    if (base::socket_type(fd.get()) == SOCK_STREAM && same_address(fd.get(), address)) return std::move(fd);
  }
  return OwnedFd();
}

std::vector<std::string> InheritedSockets::close_unclaimed() {
  std::vector<std::string> closed;
  for (auto& fd : fds_)
    if (fd) {
      closed.push_back(describe_passed(fd.get()));
      fd.reset();
    }
  return closed;
}

ListenerRef open_listener(const config::ListenAddress& address, int backlog, InheritedSockets& inherited) {
  auto ref = std::make_shared<Listener>();
  Listener& l = *ref;
  l.address = address;
  l.backlog = backlog;
  if (OwnedFd fd = inherited.take(address)) {
    l.fd = std::move(fd);
    l.adopted = true;
    l.bound = describe_bound(l.fd.get(), address);
    // Bound but not listening (systemd's sockets always listen; a hand-made one may not):
    // it listens now, or connections to it would be refused.
    int listening = 0;
    socklen_t len = sizeof listening;
    if (::getsockopt(l.fd.get(), SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) == 0 && listening == 0 &&
        ::listen(l.fd.get(), backlog) != 0)
      fail("listen", address, errno);
    return ref;
  }
  const bool unix_socket = address.kind == config::ListenAddress::Kind::Unix;
  const int family = unix_socket ? AF_UNIX : (address.ipv6 ? AF_INET6 : AF_INET);
  // Blocking on purpose: in shared mode the workers inherit this very socket, and most
  // socket-activated programs expect a blocking listener.
  l.fd.reset(::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!l.fd) fail("socket", address, errno);
  const int one = 1;
  if (!unix_socket) {
    ::setsockopt(l.fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (address.ipv6) ::setsockopt(l.fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  } else if (address.path.native()[0] != '@') {
    prepare_socket_path(address.path);
  }
  SockAddr addr{};
  const socklen_t len = make_sockaddr(address, addr);
  if (::bind(l.fd.get(), &addr.sa, len) != 0) fail("bind", address, errno);
  l.created_file = unix_socket && address.path.native()[0] != '@';
  if (l.created_file) l.file = base::SocketFile::at(address.path.c_str());
  if (::listen(l.fd.get(), backlog) != 0) fail("listen", address, errno);  // ~Listener unlinks
  l.bound = describe_bound(l.fd.get(), address);
  return ref;
}

Listener::~Listener() { close(); }

void Listener::close() {
  // Only our own file: moved away and bound again by another process, the path is theirs.
  if (fd && created_file) file.unlink_if_named_by(address.path.c_str());
  // A socket systemd passed outlives this master (the socket unit keeps it for the next
  // start, which may be configured otherwise): what master dispatch set on it is undone,
  // so the next program finds it as systemd made it (DeferAcceptSec= and all).
  if (fd && adopted) undo_master_settings();
  fd.reset();
}

void Listener::undo_master_settings() {
  if (nonblocking) set_nonblocking(false);
  undo_master_options();
}

void Listener::undo_master_options() {
  if (nodelay) set_nodelay(false);
  if (defer_accept != 0) set_defer_accept(0);
}

bool Listener::is_nonblocking() const {
  const int flags = ::fcntl(fd.get(), F_GETFL);
  return flags >= 0 && (flags & O_NONBLOCK) != 0;
}

bool Listener::set_backlog(int n) {
  if (::listen(fd.get(), n) != 0) return false;
  backlog = n;
  return true;
}

bool Listener::set_nodelay(bool on) {
  if (address.kind != config::ListenAddress::Kind::Tcp) return false;
  const int value = on ? 1 : 0;
  if (::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &value, sizeof value) != 0) return false;
  nodelay = on;
  return true;
}

bool Listener::set_defer_accept(int seconds) {
  if (address.kind != config::ListenAddress::Kind::Tcp) return false;
  if (::setsockopt(fd.get(), IPPROTO_TCP, TCP_DEFER_ACCEPT, &seconds, sizeof seconds) != 0) return false;
  defer_accept = seconds;
  return true;
}

void Listener::set_nonblocking(bool on) {
  const int flags = ::fcntl(fd.get(), F_GETFL);
  if (flags < 0) return;
  // Recorded even when it was set already (by an earlier image of this master, or by
  // workers that accept): clearing it is for when no such worker runs (Pool::update_master_accepting).
  if (::fcntl(fd.get(), F_SETFL, on ? flags | O_NONBLOCK : flags & ~O_NONBLOCK) == 0) nonblocking = on;
}

void log_opened(const std::string& pool, const Listener& listener) {
  log::info("listener.open", "pool {} listens on {}{}", pool, listener.bound,
            listener.adopted ? " (socket passed by systemd)" : "");
}

}  // namespace forkpool::supervisor
