// SPDX-License-Identifier: Apache-2.0
#include "supervisor/generation/listener_set.hpp"

#include <cerrno>
#include <cstring>
#include <stdexcept>

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
        // Never one socket under two keys (two pools, or two entries of one): the loop
        // would watch it twice, and an upgrade would find it named twice.
        if (ListenerRef kept = previous->find(key, pool, i); kept && !set.holds(kept)) {
          set.by_address_.emplace(key, std::move(kept));
          continue;
        }
      }
      // Throws; `set` goes out of scope and closes what it bound (unlinking socket files).
      try {
        set.by_address_.emplace(key, open_listener(pool.listen[i], pool.backlog, inherited));
      } catch (const std::runtime_error& e) {
        if (pool.listen[i].place.empty()) throw;
        throw std::runtime_error(pool.listen[i].place + ": " + e.what());
      }
    }
  }
  return set;
}

nlohmann::json ListenerSet::export_state(upgrade::FdList& fds) const {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& [key, l] : by_address_)
    out.push_back({{"key", key},
                   {"fd", fds.add(l->fd.get())},
                   {"bound", l->bound},
                   {"backlog", l->backlog},
                   {"adopted", l->adopted},
                   {"created_file", l->created_file},
                   {"file_dev", l->file.dev},
                   {"file_ino", l->file.ino}});
  return out;
}

ListenerSet ListenerSet::adopt(const config::Config& config, const nlohmann::json& state, upgrade::AdoptedFds& fds) {
  std::map<std::string, const nlohmann::json*> by_key;
  for (const auto& entry : state) by_key[upgrade::need(entry, "key").get<std::string>()] = &entry;
  ListenerSet set;
  for (const auto& pool : config.pools) {
    for (std::size_t i = 0; i < pool.listen.size(); ++i) {
      const std::string key = key_of(pool, i);
      if (set.by_address_.count(key) != 0) continue;
      auto it = by_key.find(key);
      if (it == by_key.end()) throw upgrade::StateError("upgrade state: no socket for listener " + key);
      const nlohmann::json& e = *it->second;
      auto l = std::make_shared<Listener>();
      l->address = pool.listen[i];
      l->fd = fds.claim(upgrade::need(e, "fd"), upgrade::FdKind::Listener, "listener " + key);
      l->bound = upgrade::need(e, "bound").get<std::string>();
      l->backlog = upgrade::need(e, "backlog").get<int>();
      l->adopted = e.value("adopted", false);
      l->created_file = e.value("created_file", false);
      // An image before file_dev/file_ino: the file at the path now is taken for ours, as
      // the previous image would have.
      if (l->created_file)
        l->file = e.contains("file_ino") ? base::SocketFile::from(e.value("file_dev", std::uint64_t{0}),
                                                                  e.value("file_ino", std::uint64_t{0}))
                                         : base::SocketFile::at(l->address.path.c_str());
      set.by_address_.emplace(key, std::move(l));
      by_key.erase(it);
    }
  }
  if (!by_key.empty()) throw upgrade::StateError("upgrade state: listener " + by_key.begin()->first + " is not in the configuration");
  return set;
}

std::vector<ListenerRef> ListenerSet::for_pool(const config::PoolConfig& pool) const {
  std::vector<ListenerRef> out;
  for (std::size_t i = 0; i < pool.listen.size(); ++i) out.push_back(by_address_.at(key_of(pool, i)));
  return out;
}

bool ListenerSet::holds(const ListenerRef& listener) const {
  for (const auto& [address, l] : by_address_)
    if (l == listener) return true;
  return false;
}

std::vector<std::string> ListenerSet::added_since(const ListenerSet* previous) const {
  std::vector<std::string> out;
  for (const auto& [address, listener] : by_address_)
    if (previous == nullptr || !previous->holds(listener)) out.push_back(listener->bound);
  return out;
}

ListenerRef ListenerSet::find(const std::string& key, const config::PoolConfig& pool, std::size_t index) const {
  if (auto it = by_address_.find(key); it != by_address_.end()) return it->second;
  // The port-0 listener of this very entry (same pool, same place in its list) whose port
  // the operator has since written into the file ("tcp://127.0.0.1:0" became
  // "tcp://127.0.0.1:41234"): the same socket, kept; binding it again would only fail
  // with EADDRINUSE against ourselves. Another pool naming that port is refused so.
  const config::ListenAddress& address = pool.listen[index];
  if (address.kind == config::ListenAddress::Kind::Tcp && address.port != 0) {
    const std::string entry = "#" + pool.name + "[" + std::to_string(index) + "]";
    for (const auto& [k, l] : by_address_)
      if (k.ends_with(entry) && l->bound == address.text) return l;
  }
  return nullptr;
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
