// SPDX-License-Identifier: Apache-2.0
// Dispatcher across a binary upgrade (docs/upgrade.md): queued connections keep their
// descriptors, ids and accept times, so they are dispatched (or time out) as if nothing
// had happened; connection ids go on from where they were.

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include "supervisor/dispatch/dispatcher.hpp"
#include "supervisor/upgrade/state_clock.hpp"

namespace forkpool::supervisor {
namespace {

// The state does not say how the previous image left a carried connection's O_NONBLOCK
// and TCP_NODELAY (FP_FD_NONBLOCK, FP_FD_NODELAY); one look per connection, once, keeps
// what the workers are told true. getsockopt fails for a Unix socket: no flag.
std::uint32_t fd_flags_of(int fd) {
  const int fl = ::fcntl(fd, F_GETFL);
  int nodelay = 0;
  socklen_t len = sizeof nodelay;
  const bool has_nodelay = ::getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &nodelay, &len) == 0 && nodelay != 0;
  return (fl >= 0 && (fl & O_NONBLOCK) != 0 ? FP_FD_NONBLOCK : 0u) | (has_nodelay ? FP_FD_NODELAY : 0u);
}

// One carried connection: its descriptor (claimed), id, listener, a time and the peer.
struct CarriedConnection {
  base::OwnedFd fd;
  std::uint64_t id = 0;
  std::uint16_t listener = 0;
  Clock::time_point at;
  sockaddr_storage peer{};
  socklen_t peer_len = 0;
};

CarriedConnection carried(const nlohmann::json& q, const char* time_key, const char* what, const std::string& pool,
                          upgrade::AdoptedFds& fds) {
  CarriedConnection c;
  c.id = upgrade::need(q, "id").get<std::uint64_t>();
  c.fd = fds.claim(upgrade::need(q, "fd"), upgrade::FdKind::StreamSocket,
                   std::string(what) + " connection " + std::to_string(c.id) + " of pool " + pool);
  c.listener = upgrade::need(q, "listener").get<std::uint16_t>();
  c.at = upgrade::from_ns(upgrade::need(q, time_key).get<std::int64_t>());
  std::size_t len = 0;
  if (!upgrade::from_hex(upgrade::need(q, "peer").get<std::string>(), &c.peer, sizeof c.peer, len))
    throw upgrade::StateError(std::string("upgrade state: the peer of a ") + what + " connection is not hex");
  c.peer_len = static_cast<socklen_t>(len);
  return c;
}

}  // namespace

nlohmann::json Dispatcher::export_state(upgrade::FdList& fds) const {
  nlohmann::json queue = nlohmann::json::array();
  for (const Pending& p : queue_)
    queue.push_back({{"fd", fds.add(p.fd.get())},
                     {"listener", p.listener},
                     {"id", p.id},
                     {"accepted", upgrade::to_ns(p.accepted)},
                     {"peer", upgrade::to_hex(&p.peer, p.peer_len)}});
  // keepalive = "master": parked connections keep their ids and deadlines.
  nlohmann::json parked = nlohmann::json::array();
  if (parked_)
    parked_->for_each([&](const ParkedConnections::Connection& c) {
      parked.push_back({{"fd", fds.add(c.fd.get())},
                        {"listener", c.listener},
                        {"id", c.id},
                        {"parked_at", upgrade::to_ns(c.parked_at)},
                        {"peer", upgrade::to_hex(&c.peer, c.peer_len)}});
    });
  return {{"next_id", next_id_}, {"in_flight", in_flight_}, {"queue", std::move(queue)}, {"parked", std::move(parked)}};
}

void Dispatcher::adopt_state(const nlohmann::json& state, upgrade::AdoptedFds& fds) {
  next_id_ = upgrade::need(state, "next_id").get<std::uint64_t>();
  in_flight_ = upgrade::need(state, "in_flight").get<std::uint64_t>();
  for (const auto& q : upgrade::need(state, "queue")) {
    CarriedConnection c = carried(q, "accepted", "queued", pool_->name, fds);
    const std::uint32_t flags = fd_flags_of(c.fd.get());
    queue_.push_back(Pending{std::move(c.fd), c.listener, c.id, c.at, c.peer, c.peer_len, flags});
  }
  if (state.contains("parked")) {
    for (const auto& q : state["parked"]) {
      CarriedConnection c = carried(q, "parked_at", "parked", pool_->name, fds);
      const std::uint32_t flags = fd_flags_of(c.fd.get());
      parked_connections().adopt({std::move(c.fd), c.id, c.listener, c.peer, c.peer_len, c.at, flags});
    }
  }
  publish();
  arm_queue_timer();
  update_accepting();
}

}  // namespace forkpool::supervisor
