// SPDX-License-Identifier: Apache-2.0
#include "supervisor/dispatch/listen_backlog.hpp"

#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "base/owned_fd.hpp"

namespace forkpool::supervisor {
namespace {

constexpr unsigned kTcpListen = 10;  // TCP_LISTEN, the state a listening Unix socket reports

std::optional<std::uint32_t> tcp_backlog(int fd) {
  tcp_info info{};
  socklen_t len = sizeof info;
  if (::getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len) != 0) return std::nullopt;
  if (info.tcpi_state != TCP_LISTEN) return std::nullopt;
  return info.tcpi_unacked;
}

// One exact lookup by inode; the kernel answers at once, so the blocking receive is brief.
std::optional<std::uint32_t> unix_backlog(int fd) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return std::nullopt;
  base::OwnedFd nl(::socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG));
  if (!nl) return std::nullopt;
  struct {
    nlmsghdr header;
    unix_diag_req request;
  } query{};
  query.header.nlmsg_len = sizeof query;
  query.header.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  query.header.nlmsg_flags = NLM_F_REQUEST;
  query.header.nlmsg_seq = 1;
  query.request.sdiag_family = AF_UNIX;
  query.request.udiag_states = 1U << kTcpListen;
  query.request.udiag_ino = static_cast<std::uint32_t>(st.st_ino);
  query.request.udiag_show = UDIAG_SHOW_RQLEN;
  query.request.udiag_cookie[0] = INET_DIAG_NOCOOKIE;
  query.request.udiag_cookie[1] = INET_DIAG_NOCOOKIE;
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  if (::sendto(nl.get(), &query, sizeof query, 0, reinterpret_cast<sockaddr*>(&kernel), sizeof kernel) < 0)
    return std::nullopt;
  alignas(nlmsghdr) unsigned char buf[1024];
  ssize_t n;
  do n = ::recv(nl.get(), buf, sizeof buf, 0);
  while (n < 0 && errno == EINTR);
  // One message: nlmsghdr, unix_diag_msg, then attributes (each 4-byte aligned).
  const auto size = static_cast<std::size_t>(std::max<ssize_t>(n, 0));
  nlmsghdr header{};
  if (size < sizeof header) return std::nullopt;
  std::memcpy(&header, buf, sizeof header);
  if (header.nlmsg_type != SOCK_DIAG_BY_FAMILY || header.nlmsg_len > size) return std::nullopt;
  auto align = [](std::size_t x) { return (x + 3) & ~std::size_t{3}; };
  unix_diag_msg msg{};
  if (header.nlmsg_len < align(sizeof header) + sizeof msg) return std::nullopt;
  std::memcpy(&msg, buf + align(sizeof header), sizeof msg);
  // An exact lookup answers for any state: only a listener has an accept queue.
  if (msg.udiag_state != kTcpListen || msg.udiag_ino != query.request.udiag_ino) return std::nullopt;
  std::size_t at = align(sizeof header) + align(sizeof(unix_diag_msg));
  while (at + sizeof(rtattr) <= header.nlmsg_len) {
    rtattr attr{};
    std::memcpy(&attr, buf + at, sizeof attr);
    if (attr.rta_len < sizeof attr || at + attr.rta_len > header.nlmsg_len) break;
    if (attr.rta_type == UNIX_DIAG_RQLEN && attr.rta_len >= sizeof attr + sizeof(unix_diag_rqlen)) {
      unix_diag_rqlen rq{};
      std::memcpy(&rq, buf + at + align(sizeof attr), sizeof rq);
      return rq.udiag_rqueue;
    }
    at += align(attr.rta_len);
  }
  return std::nullopt;
}

}  // namespace

std::optional<std::uint32_t> listen_backlog(int fd) {
  int domain = 0;
  socklen_t len = sizeof domain;
  if (::getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) != 0) return std::nullopt;
  if (domain == AF_INET || domain == AF_INET6) return tcp_backlog(fd);
  if (domain == AF_UNIX) return unix_backlog(fd);
  return std::nullopt;
}

}  // namespace forkpool::supervisor
