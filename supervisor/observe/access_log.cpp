// SPDX-License-Identifier: Apache-2.0
#include "supervisor/observe/access_log.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "base/owned_fd.hpp"
#include "base/printable.hpp"
#include "supervisor/observe/log.hpp"

namespace forkpool::access_log {
namespace {

struct State {
  Options options;
  base::OwnedFd fd;
  bool failing = false;  // the last write failed; said once until one succeeds again
};

State& state() {
  static State s;
  return s;
}

base::OwnedFd open_file(const std::filesystem::path& file) {
  const int fd = ::open(file.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0)
    throw std::runtime_error("cannot open access log " + file.string() + ": " +
                             std::strerror(errno));
  return base::OwnedFd(fd);
}

// "127.0.0.1:50312", "[::1]:50312", "unix" (a Unix socket's peer has no useful name);
// never a space, so the text format stays split by spaces.
std::string peer_text(const sockaddr_storage* peer, socklen_t len) {
  if (peer == nullptr) return "-";
  char host[INET6_ADDRSTRLEN] = {};
  if (peer->ss_family == AF_INET && len >= sizeof(sockaddr_in)) {
    const auto* a = reinterpret_cast<const sockaddr_in*>(peer);
    ::inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
    return std::string(host) + ":" + std::to_string(ntohs(a->sin_port));
  }
  if (peer->ss_family == AF_INET6 && len >= sizeof(sockaddr_in6)) {
    const auto* a = reinterpret_cast<const sockaddr_in6*>(peer);
    ::inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
    return "[" + std::string(host) + "]:" + std::to_string(ntohs(a->sin6_port));
  }
  if (peer->ss_family == AF_UNIX) return "unix";
  return "-";
}

// Whole microseconds as exact decimal seconds with six places: 1234 -> "0.001234".
std::string seconds(std::chrono::microseconds d) {
  const auto us = d.count() < 0 ? 0 : static_cast<std::uint64_t>(d.count());
  return fmt::format("{}.{:06}", us / 1'000'000, us % 1'000'000);
}

}  // namespace

std::string_view to_string(Outcome o) {
  switch (o) {
    case Outcome::Done:
      return "done";
    case Outcome::Parked:
      return "parked";
    case Outcome::Lost:
      return "lost";
    case Outcome::QueueTimeout:
      return "queue_timeout";
    case Outcome::Closed:
      return "closed";
  }
  return "unknown";
}

Opened open(const Options& options) {
  Opened o{options, {}};
  if (!options.file.empty()) o.fd = open_file(options.file);
  return o;
}

void install(Opened opened) {
  State& s = state();
  s.options = std::move(opened.options);
  s.fd = std::move(opened.fd);
  s.failing = false;
}

void setup(const Options& options) {
  install(open(options));
}

void reopen() {
  State& s = state();
  if (s.options.file.empty()) return;
  try {
    s.fd = open_file(s.options.file);
    s.failing = false;
    log::info("access_log.reopen", "reopened access log {}", s.options.file.string());
  } catch (const std::exception& e) {
    log::error("access_log.reopen_failed", "{}; still writing to the previous file", e.what());
  }
}

bool enabled() {
  return static_cast<bool>(state().fd);
}

const Options& options() {
  return state().options;
}

std::string format(const Record& r, config::LogFormat f) {
  const std::string peer = peer_text(r.peer, r.peer_len);
  if (f == config::LogFormat::Json) {
    nlohmann::ordered_json j = {{"time", log::timestamp()}, {"pool", r.pool}};
    j["worker"] = r.worker ? nlohmann::ordered_json(*r.worker) : nlohmann::ordered_json(nullptr);
    j["pid"] = r.pid > 0 ? nlohmann::ordered_json(r.pid) : nlohmann::ordered_json(nullptr);
    j["peer"] = peer;
    j["conn"] = r.id;
    j["queue_wait_s"] = static_cast<double>(r.queue_wait.count()) / 1e6;
    j["held_s"] = r.held ? nlohmann::ordered_json(static_cast<double>(r.held->count()) / 1e6)
                         : nlohmann::ordered_json(nullptr);
    j["outcome"] = to_string(r.outcome);
    return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  }
  // Pool names are letters, digits, '_', '-' and '.', so no field holds a space.
  return fmt::format("{} {} {} {} {} {} {} {} {}", log::timestamp(), base::printable(r.pool),
                     r.worker ? std::to_string(*r.worker) : "-",
                     r.pid > 0 ? std::to_string(r.pid) : "-", peer, r.id, seconds(r.queue_wait),
                     r.held ? seconds(*r.held) : "-", to_string(r.outcome));
}

void write(const Record& r) {
  State& s = state();
  if (!s.fd) return;
  std::string line = format(r, s.options.format);
  line += '\n';
  std::string_view rest = line;
  while (!rest.empty()) {
    const ssize_t n = ::write(s.fd.get(), rest.data(), rest.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      if (!s.failing)
        log::error("access_log.write_failed",
                   "writing access log {}: {}; lines are lost until a write succeeds",
                   s.options.file.string(), n < 0 ? std::strerror(errno) : "nothing written");
      s.failing = true;
      return;
    }
    rest.remove_prefix(static_cast<std::size_t>(n));
  }
  s.failing = false;
}

}  // namespace forkpool::access_log
