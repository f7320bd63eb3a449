// SPDX-License-Identifier: Apache-2.0
#pragma once
// One configuration generation (nginx calls it a cycle): the configuration, read once
// and shared read-only with every pool and worker started under it, the listeners it
// binds, and the pools that run it. Generation 1 is built at start-up; each reload
// builds the next from the previous one, adopting its sockets and pools.

#include <memory>
#include <string_view>
#include <vector>

#include "config/config.hpp"
#include "supervisor/generation/listener_set.hpp"
#include "supervisor/master_context.hpp"
#include "supervisor/pool/pool.hpp"

namespace forkpool::supervisor {

using ConfigRef = std::shared_ptr<const config::Config>;

class Generation {
 public:
  Generation(unsigned number, ConfigRef config, ListenerSet listeners);

  unsigned number() const { return number_; }
  const config::Config& config() const { return *config_; }
  const ListenerSet& listeners() const { return listeners_; }
  ListenerSet& listeners() { return listeners_; }
  std::vector<std::unique_ptr<Pool>>& pools() { return pools_; }
  const std::vector<std::unique_ptr<Pool>>& pools() const { return pools_; }
  Pool* find_pool(std::string_view name) const;

  // A pool's configuration as a reference that keeps this generation's whole
  // configuration alive for as long as a pool or worker holds it.
  PoolConfigRef pool_config(const config::PoolConfig& pool) const { return PoolConfigRef(config_, &pool); }
  // Creates a pool of this configuration (not started); throws std::runtime_error.
  std::unique_ptr<Pool> make_pool(MasterContext& ctx, const config::PoolConfig& pool) const;

 private:
  unsigned number_;
  ConfigRef config_;
  ListenerSet listeners_;
  std::vector<std::unique_ptr<Pool>> pools_;  // in file order
};

}  // namespace forkpool::supervisor
