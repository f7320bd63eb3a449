// SPDX-License-Identifier: Apache-2.0
#include "config/names.hpp"

#include <sys/resource.h>

#include <array>
#include <csignal>
#include <cstdlib>
#include <charconv>

#include "config/diff.hpp"

namespace forkpool::config {
namespace {

template <typename E, std::size_t N>
std::optional<E> lookup(const std::array<std::pair<std::string_view, E>, N>& table, std::string_view s) {
  for (const auto& [name, value] : table)
    if (name == s) return value;
  return std::nullopt;
}

template <typename E, std::size_t N>
std::string_view reverse(const std::array<std::pair<std::string_view, E>, N>& table, E e) {
  for (const auto& [name, value] : table)
    if (value == e) return name;
  std::abort();  // Every enumerator has a name; a missing one is a programming error.
}

constexpr std::array<std::pair<std::string_view, Dispatch>, 2> kDispatch{
    {{"master", Dispatch::Master}, {"shared", Dispatch::Shared}}};
constexpr std::array<std::pair<std::string_view, Balance>, 2> kBalance{
    {{"least-busy", Balance::LeastBusy}, {"round-robin", Balance::RoundRobin}}};
constexpr std::array<std::pair<std::string_view, Readiness>, 3> kReadiness{
    {{"exec", Readiness::Exec}, {"notify", Readiness::Notify}, {"protocol", Readiness::Protocol}}};
constexpr std::array<std::pair<std::string_view, LogFormat>, 2> kLogFormat{
    {{"text", LogFormat::Text}, {"json", LogFormat::Json}}};
constexpr std::array<std::pair<std::string_view, Isolation>, 2> kIsolation{
    {{"none", Isolation::None}, {"pid", Isolation::Pid}}};
constexpr std::array<std::pair<std::string_view, KeepAlive>, 2> kKeepAlive{
    {{"worker", KeepAlive::Worker}, {"master", KeepAlive::Master}}};

constexpr std::array<std::string_view, 7> kLogLevels{"trace", "debug", "info",    "warn",
                                                     "error", "critical", "off"};

constexpr std::array<std::pair<std::string_view, int>, 20> kSignals{{
    {"HUP", SIGHUP},   {"INT", SIGINT},     {"QUIT", SIGQUIT},   {"ABRT", SIGABRT},
    {"KILL", SIGKILL}, {"USR1", SIGUSR1},   {"SEGV", SIGSEGV},   {"USR2", SIGUSR2},
    {"PIPE", SIGPIPE}, {"ALRM", SIGALRM},   {"TERM", SIGTERM},   {"CONT", SIGCONT},
    {"STOP", SIGSTOP}, {"TSTP", SIGTSTP},   {"TTIN", SIGTTIN},   {"TTOU", SIGTTOU},
    {"WINCH", SIGWINCH}, {"XCPU", SIGXCPU}, {"PWR", SIGPWR},     {"BUS", SIGBUS},
}};

constexpr std::array<RlimitName, 16> kRlimits{{
    {"as", RLIMIT_AS, true},
    {"core", RLIMIT_CORE, true},
    {"cpu", RLIMIT_CPU, false},
    {"data", RLIMIT_DATA, true},
    {"fsize", RLIMIT_FSIZE, true},
    {"locks", RLIMIT_LOCKS, false},
    {"memlock", RLIMIT_MEMLOCK, true},
    {"msgqueue", RLIMIT_MSGQUEUE, true},
    {"nice", RLIMIT_NICE, false},
    {"nofile", RLIMIT_NOFILE, false},
    {"nproc", RLIMIT_NPROC, false},
    {"rss", RLIMIT_RSS, true},
    {"rtprio", RLIMIT_RTPRIO, false},
    {"rttime", RLIMIT_RTTIME, false},
    {"sigpending", RLIMIT_SIGPENDING, false},
    {"stack", RLIMIT_STACK, true},
}};

}  // namespace

std::string_view to_string(Dispatch d) { return reverse(kDispatch, d); }
std::string_view to_string(Balance b) { return reverse(kBalance, b); }
std::string_view to_string(Readiness r) { return reverse(kReadiness, r); }
std::string_view to_string(LogFormat f) { return reverse(kLogFormat, f); }
std::string_view to_string(Isolation i) { return reverse(kIsolation, i); }
std::string_view to_string(KeepAlive k) { return reverse(kKeepAlive, k); }

std::optional<Dispatch> dispatch_from_string(std::string_view s) { return lookup(kDispatch, s); }
std::optional<Balance> balance_from_string(std::string_view s) { return lookup(kBalance, s); }
std::optional<Readiness> readiness_from_string(std::string_view s) { return lookup(kReadiness, s); }
std::optional<LogFormat> log_format_from_string(std::string_view s) { return lookup(kLogFormat, s); }
std::optional<Isolation> isolation_from_string(std::string_view s) { return lookup(kIsolation, s); }
std::optional<KeepAlive> keepalive_from_string(std::string_view s) { return lookup(kKeepAlive, s); }

std::span<const std::string_view> log_levels() { return kLogLevels; }

bool is_log_level(std::string_view s) {
  for (auto l : kLogLevels)
    if (l == s) return true;
  return false;
}

std::optional<int> signal_from_name(std::string_view s) {
  if (s.starts_with("SIG")) s.remove_prefix(3);
  if (auto v = lookup(kSignals, s)) return v;
  int n = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
  if (ec == std::errc{} && p == s.data() + s.size() && n >= 1 && n < NSIG) return n;
  return std::nullopt;
}

std::string signal_name(int signo) {
  for (const auto& [name, value] : kSignals)
    if (value == signo) return std::string(name);
  return std::to_string(signo);
}

std::vector<std::string> signal_names() {
  std::vector<std::string> names;
  for (const auto& [name, value] : kSignals) names.emplace_back(name);
  return names;
}

std::optional<std::string_view> table_of_key(std::string_view key) {
  // include is a [supervisor] key that to_toml never prints (it prints the included pools
  // instead), so the reload rules do not list it.
  if (key == "include") return "[supervisor]";
  for (auto k : supervisor_keys())
    if (k == key) return "[supervisor]";
  for (const auto& rule : pool_key_rules())
    if (rule.key == key) return "[pools.NAME]";
  return std::nullopt;
}

std::span<const RlimitName> rlimit_names() { return kRlimits; }

const RlimitName* find_rlimit(std::string_view name) {
  for (const auto& r : kRlimits)
    if (r.name == name) return &r;
  return nullptr;
}

const RlimitName* find_rlimit(int resource) {
  for (const auto& r : kRlimits)
    if (r.resource == resource) return &r;
  return nullptr;
}

}  // namespace forkpool::config
