// SPDX-License-Identifier: Apache-2.0
#pragma once
// The listening sockets of one configuration generation, keyed by their address as
// written. A new generation adopts the previous one's sockets for every address that
// stays (the same socket: never closed and bound again, so no client is refused) and
// binds only the new addresses.

#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "config/config.hpp"
#include "supervisor/generation/listeners.hpp"
#include "supervisor/upgrade/state_reader.hpp"
#include "supervisor/upgrade/state_writer.hpp"

namespace forkpool::supervisor {

class ListenerSet {
 public:
  ListenerSet() = default;

  // Every address of `config`: adopted from `previous` when it has it, else bound (or
  // taken from `inherited`, systemd's sockets, at start-up). Throws std::runtime_error
  // naming the address on the first failure; what this call bound is closed again and
  // `previous` is untouched.
  static ListenerSet build(const config::Config& config, const ListenerSet* previous, InheritedSockets& inherited);

  // Binary upgrade (docs/upgrade.md): every socket with its key, its descriptor added to
  // `fds`; and the same sockets taken over by the new image for `config`, which must have
  // exactly these keys. adopt throws upgrade::StateError.
  nlohmann::json export_state(upgrade::FdList& fds) const;
  static ListenerSet adopt(const config::Config& config, const nlohmann::json& state, upgrade::AdoptedFds& fds);

  // The pool's listeners in its `listen` order.
  std::vector<ListenerRef> for_pool(const config::PoolConfig& pool) const;
  // Whether `listener` is one of this set's (a reload adopted it rather than binding it).
  bool holds(const ListenerRef& listener) const;
  // Addresses this set binds that `previous` did not have ("tcp://127.0.0.1:9000").
  std::vector<std::string> added_since(const ListenerSet* previous) const;
  // listen(2) again where a pool's backlog changed; returns one message per failure.
  std::vector<std::string> apply_backlogs(const config::Config& config);

 private:
  // The listener of `key` (key_of: the address as written, or one per port-0 entry), or
  // the port-0 one of entry `index` of `pool` already bound where that entry now points;
  // null when none.
  ListenerRef find(const std::string& key, const config::PoolConfig& pool, std::size_t index) const;
  std::map<std::string, ListenerRef> by_address_;
};

}  // namespace forkpool::supervisor
