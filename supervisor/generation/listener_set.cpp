#include "supervisor/generation/listener_set.hpp"

#include <cerrno>
#include <cstring>

namespace forkpool::supervisor {
namespace {

// Port 0 asks for a port of the kernel's choosing, so several pools may each say
// "tcp://127.0.0.1:0" and each get a socket of its own: such a listener is the pool's,
// at that position, and stays across reloads while the pool keeps it there.
std::string key_of(const config::PoolConfig& pool, std::size_t index) {
  const config::ListenAddress& a = pool.listen[index];
  if (a.kind == config::ListenAddress::Kind::Tcp && a.port == 0)
    return a.text + "#" + pool.name + "[" + std::to_string(index) + "]";
  return a.text;
}

}  // namespace

ListenerSet ListenerSet::build(const config::Config& config, const ListenerSet* previous,
                               InheritedSockets& inherited) {
  ListenerSet set;
  for (const auto& pool : config.pools) {
    for (std::size_t i = 0; i < pool.listen.size(); ++i) {
      const std::string key = key_of(pool, i);
      if (set.by_address_.count(key) != 0) continue;
      if (previous != nullptr) {
        auto it = previous->by_address_.find(key);
        if (it != previous->by_address_.end()) {
          set.by_address_.emplace(key, it->second);
          continue;
        }
      }
      // Throws; `set` goes out of scope and closes what it bound (unlinking socket files).
      set.by_address_.emplace(key, open_listener(pool.listen[i], pool.backlog, inherited));
    }
  }
  return set;
}

std::vector<ListenerRef> ListenerSet::for_pool(const config::PoolConfig& pool) const {
  std::vector<ListenerRef> out;
  for (std::size_t i = 0; i < pool.listen.size(); ++i) out.push_back(by_address_.at(key_of(pool, i)));
  return out;
}

std::vector<std::string> ListenerSet::added_since(const ListenerSet* previous) const {
  std::vector<std::string> out;
  for (const auto& [address, listener] : by_address_)
    if (previous == nullptr || previous->by_address_.count(address) == 0) out.push_back(listener->bound);
  return out;
}

std::vector<std::string> ListenerSet::apply_backlogs(const config::Config& config) {
  std::vector<std::string> problems;
  for (const auto& pool : config.pools) {
    for (std::size_t i = 0; i < pool.listen.size(); ++i) {
      Listener& l = *by_address_.at(key_of(pool, i));
      if (l.backlog == pool.backlog) continue;
      if (!l.set_backlog(pool.backlog))
        problems.push_back("listen " + l.bound + " with backlog " + std::to_string(pool.backlog) + ": " +
                           std::strerror(errno));
    }
  }
  return problems;
}

}  // namespace forkpool::supervisor
