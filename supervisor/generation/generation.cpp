// SPDX-License-Identifier: Apache-2.0
#include "supervisor/generation/generation.hpp"

namespace forkpool::supervisor {

Generation::Generation(unsigned number, ConfigRef config, ListenerSet listeners)
    : number_(number), config_(std::move(config)), listeners_(std::move(listeners)) {}

Pool* Generation::find_pool(std::string_view name) const {
  for (const auto& pool : pools_)
    if (pool->name() == name) return pool.get();
  return nullptr;
}

std::unique_ptr<Pool> Generation::make_pool(MasterContext& ctx, const config::PoolConfig& pool) const {
  return std::make_unique<Pool>(ctx, pool_config(pool), number_, listeners_.for_pool(pool));
}

}  // namespace forkpool::supervisor
