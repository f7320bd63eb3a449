// SPDX-License-Identifier: Apache-2.0
#include "supervisor/process/spawn_plan.hpp"

#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include <map>
#include <optional>
#include <stdexcept>

#include "config/validate.hpp"

extern char** environ;

namespace forkpool::supervisor {
namespace {

// Variables that describe the master's own environment (systemd, a parent forkpool)
// and would mislead a worker if inherited.
bool inherited_variable_is_ours(std::string_view name) {
  return name == "NOTIFY_SOCKET" || name == "LISTEN_FDS" || name == "LISTEN_PID" ||
         name == "LISTEN_FDNAMES" || name == "WATCHDOG_USEC" || name == "WATCHDOG_PID" ||
         name.starts_with("FORKPOOL_");
}

struct Account {
  uid_t uid;
  gid_t gid;
  std::string name;
  std::string home;
};

// kNoGid: a numeric user without a passwd entry has no primary group of its own.
constexpr gid_t kNoGid = static_cast<gid_t>(-1);

Account lookup_user(const std::string& user) {
  std::vector<char> buf(16384);
  passwd pw{};
  passwd* result = nullptr;
  if (const auto id = config::numeric_id(user)) {
    if (::getpwuid_r(*id, &pw, buf.data(), buf.size(), &result) == 0 && result != nullptr)
      return {pw.pw_uid, pw.pw_gid, pw.pw_name, pw.pw_dir};
    return {*id, kNoGid, user, "/"};  // as systemd runs a numeric User= it cannot name
  }
  if (::getpwnam_r(user.c_str(), &pw, buf.data(), buf.size(), &result) != 0 || result == nullptr)
    throw std::runtime_error("user \"" + user + "\" does not exist");
  return {pw.pw_uid, pw.pw_gid, pw.pw_name, pw.pw_dir};
}

gid_t lookup_group(const std::string& group) {
  if (const auto id = config::numeric_id(group)) return *id;
  std::vector<char> buf(16384);
  struct group gr {};
  struct group* result = nullptr;
  if (::getgrnam_r(group.c_str(), &gr, buf.data(), buf.size(), &result) != 0 || result == nullptr)
    throw std::runtime_error("group \"" + group + "\" does not exist");
  return gr.gr_gid;
}

// The user's groups with `primary` in place of the passwd group, as initgroups(3) does.
std::vector<gid_t> supplementary_groups(const Account& a, gid_t primary) {
  int n = 64;
  std::vector<gid_t> groups(static_cast<std::size_t>(n));
  while (::getgrouplist(a.name.c_str(), primary, groups.data(), &n) < 0) groups.resize(static_cast<std::size_t>(n));
  groups.resize(static_cast<std::size_t>(n));
  return groups;
}

std::string join(const std::vector<std::string>& items, std::string_view sep) {
  std::string out;
  for (const auto& s : items) {
    if (!out.empty()) out += sep;
    out += s;
  }
  return out;
}

}  // namespace

uid_t worker_uid(const config::PoolConfig& pool) {
  return pool.user.empty() ? ::getuid() : lookup_user(pool.user).uid;
}

std::string substitute(std::string_view text, std::string_view pool, unsigned worker) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size();) {
    if (text.substr(i).starts_with("${")) {
      // From "$${" in the file: a literal, never a placeholder (config::check_placeholders).
      out += "${";
      i += 2;
    } else if (text.substr(i).starts_with("{pool}")) {
      out += pool;
      i += 6;
    } else if (text.substr(i).starts_with("{worker}")) {
      out += std::to_string(worker);
      i += 8;
    } else {
      out += text[i++];
    }
  }
  return out;
}

SpawnPlan build_spawn_plan(const config::PoolConfig& pool, const WorkerContext& ctx) {
  SpawnPlan plan;
  plan.master_pid = ctx.master_pid;
  plan.new_pid_namespace = pool.isolate == config::Isolation::Pid;
  for (const auto& arg : pool.command) plan.argv_storage.push_back(substitute(arg, pool.name, ctx.worker));
  plan.executable = plan.argv_storage.front();
  if (plan.executable.find('/') == std::string::npos) {
    // A bare name: look it up now, in the master, so the child does no PATH walking.
    const char* path = std::getenv("PATH");
    std::string_view dirs = path != nullptr ? path : "/usr/local/bin:/usr/bin:/bin";
    std::string found;
    while (found.empty()) {
      auto colon = dirs.find(':');
      std::string candidate = std::string(dirs.substr(0, colon)) + "/" + plan.executable;
      if (colon != 0 && ::access(candidate.c_str(), X_OK) == 0) found = candidate;
      if (colon == std::string_view::npos) break;
      dirs.remove_prefix(colon + 1);
    }
    if (found.empty()) throw std::runtime_error("\"" + plan.executable + "\" was not found in PATH");
    plan.executable = found;
  }

  // Environment: inherited (unless clear_env), then the pool's env, then ours.
  std::map<std::string, std::string> env;
  if (!pool.clear_env) {
    for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
      std::string_view kv(*e);
      auto eq = kv.find('=');
      if (eq == std::string_view::npos || inherited_variable_is_ours(kv.substr(0, eq))) continue;
      env[std::string(kv.substr(0, eq))] = std::string(kv.substr(eq + 1));
    }
  }

  std::optional<Account> account;
  if (!pool.user.empty()) {
    account = lookup_user(pool.user);
    plan.change_ids = true;
    plan.uid = account->uid;
    plan.gid = pool.group.empty() ? account->gid : lookup_group(pool.group);
    if (plan.gid == kNoGid)
      throw std::runtime_error("uid " + pool.user + " has no passwd entry to take a primary group from; give `group` too");
    // A uid without a passwd entry belongs to no group list: its group alone.
    plan.groups = account->gid == kNoGid ? std::vector<gid_t>{plan.gid} : supplementary_groups(*account, plan.gid);
    if (!pool.group.empty())  // the passwd group is replaced, not added to
      std::erase_if(plan.groups, [&](gid_t g) { return g == account->gid && g != plan.gid; });
    env["USER"] = account->name;
    env["LOGNAME"] = account->name;
    env["HOME"] = account->home;
  } else if (!pool.group.empty()) {
    plan.change_gid_only = true;
    plan.gid = lookup_group(pool.group);
  }
  for (const auto& [k, v] : pool.env) env[k] = substitute(v, pool.name, ctx.worker);

  // Descriptors: 0-2, then listeners (shared mode), then the channel and the slot page.
  plan.fds.push_back({ctx.stdin_fd, 0});
  plan.fds.push_back({ctx.stdout_fd, 1});
  plan.fds.push_back({ctx.stderr_fd, 2});
  int next = 3;
  std::vector<std::string> names;
  for (std::size_t i = 0; i < ctx.listener_fds.size(); ++i) {
    plan.fds.push_back({ctx.listener_fds[i], next++});
    names.push_back(pool.name + "-" + std::to_string(i));
  }
  const int channel = next++;
  const int scoreboard = next++;
  plan.fds.push_back({ctx.channel_fd, channel});
  plan.fds.push_back({ctx.scoreboard_fd, scoreboard});
  plan.highest_target = next - 1;

  env["FORKPOOL_PROTOCOL"] = "1";
  env["FORKPOOL_POOL"] = pool.name;
  env["FORKPOOL_WORKER"] = std::to_string(ctx.worker);
  env["FORKPOOL_GENERATION"] = std::to_string(ctx.generation);
  if (pool.keepalive == config::KeepAlive::Master) env["FORKPOOL_KEEPALIVE"] = "master";
  env["FORKPOOL_CHANNEL_FD"] = std::to_string(channel);
  env["FORKPOOL_SCOREBOARD_FD"] = std::to_string(scoreboard);
  env["FORKPOOL_LISTENERS"] = join(ctx.listener_texts, " ");
  if (!ctx.listener_fds.empty()) {
    env["LISTEN_FDS"] = std::to_string(ctx.listener_fds.size());
    env["LISTEN_FDNAMES"] = join(names, ":");
  }
  if (!ctx.notify_socket.empty()) env["NOTIFY_SOCKET"] = ctx.notify_socket;
  if (pool.watchdog.count() > 0) env["WATCHDOG_USEC"] = std::to_string(pool.watchdog.count() * 1000);

  for (const auto& [k, v] : env) plan.env_storage.push_back(k + "=" + v);
  constexpr std::size_t kPidWidth = 12;
  if (!ctx.listener_fds.empty()) plan.env_storage.push_back("LISTEN_PID=" + std::string(kPidWidth, '\0'));

  for (auto& s : plan.argv_storage) plan.argv.push_back(s.data());
  plan.argv.push_back(nullptr);
  for (auto& s : plan.env_storage) plan.envp.push_back(s.data());
  plan.envp.push_back(nullptr);
  if (!ctx.listener_fds.empty()) {
    plan.listen_pid_digits = plan.env_storage.back().data() + std::string_view("LISTEN_PID=").size();
    plan.listen_pid_width = kPidWidth;
  }

  if (!pool.cwd.empty()) plan.cwd = pool.cwd.string();
  if (pool.umask) {
    plan.set_umask = true;
    plan.umask_value = *pool.umask;
  }
  for (const auto& [name, limit] : pool.rlimits)
    plan.rlimits.push_back({limit.resource, rlimit{static_cast<rlim_t>(limit.value), static_cast<rlim_t>(limit.value)}});
  return plan;
}

}  // namespace forkpool::supervisor
