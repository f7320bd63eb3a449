// Dispatcher across a binary upgrade (docs/upgrade.md): queued connections keep their
// descriptors, ids and accept times, so they are dispatched (or time out) as if nothing
// had happened; connection ids go on from where they were.

#include "supervisor/dispatch/dispatcher.hpp"
#include "supervisor/upgrade/state_clock.hpp"

namespace forkpool::supervisor {

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
    Pending p{};
    p.id = upgrade::need(q, "id").get<std::uint64_t>();
    p.fd = fds.claim(upgrade::need(q, "fd"), upgrade::FdKind::StreamSocket,
                     "queued connection " + std::to_string(p.id) + " of pool " + pool_->name);
    p.listener = upgrade::need(q, "listener").get<std::uint16_t>();
    p.accepted = upgrade::from_ns(upgrade::need(q, "accepted").get<std::int64_t>());
    std::size_t len = 0;
    if (!upgrade::from_hex(upgrade::need(q, "peer").get<std::string>(), &p.peer, sizeof p.peer,
                           len))
      throw upgrade::StateError("upgrade state: the peer of a queued connection is not hex");
    p.peer_len = static_cast<socklen_t>(len);
    queue_.push_back(std::move(p));
  }
  if (state.contains("parked")) {
    for (const auto& q : state["parked"]) {
      ParkedConnections::Connection c;
      c.id = upgrade::need(q, "id").get<std::uint64_t>();
      c.fd = fds.claim(upgrade::need(q, "fd"), upgrade::FdKind::StreamSocket,
                       "parked connection " + std::to_string(c.id) + " of pool " + pool_->name);
      c.listener = upgrade::need(q, "listener").get<std::uint16_t>();
      c.parked_at = upgrade::from_ns(upgrade::need(q, "parked_at").get<std::int64_t>());
      std::size_t len = 0;
      if (!upgrade::from_hex(upgrade::need(q, "peer").get<std::string>(), &c.peer, sizeof c.peer, len))
        throw upgrade::StateError("upgrade state: the peer of a parked connection is not hex");
      c.peer_len = static_cast<socklen_t>(len);
      parked_connections().adopt(std::move(c));
    }
  }
  publish();
  arm_queue_timer();
  update_accepting();
}

}  // namespace forkpool::supervisor
