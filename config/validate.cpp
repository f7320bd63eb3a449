// SPDX-License-Identifier: Apache-2.0
#include "config/validate.hpp"

#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cctype>
#include <cstring>
#include <vector>

#include "config/names.hpp"
#include "config/suggest.hpp"

namespace forkpool::config {

std::optional<std::uint32_t> numeric_id(std::string_view text) {
  if (text.empty() || text.size() > 10 || text.find_first_not_of("0123456789") != std::string_view::npos)
    return std::nullopt;
  const std::uint64_t v = std::stoull(std::string(text));
  // (uid_t) -1 means "unchanged" to setuid/setgid/chown: never an id.
  if (v >= 0xffffffffULL) return std::nullopt;
  return static_cast<std::uint32_t>(v);
}

std::optional<std::string> check_user_exists(const std::string& user, bool group_given) {
  std::vector<char> buf(16384);
  passwd pw{};
  passwd* result = nullptr;
  if (const auto id = numeric_id(user)) {
    const int rc = ::getpwuid_r(*id, &pw, buf.data(), buf.size(), &result);
    if (result != nullptr || group_given) return std::nullopt;
    if (rc != 0) return "cannot look up uid " + user + ": " + std::strerror(rc);
    return "uid " + user + " has no passwd entry to take a primary group from; give `group` too";
  }
  int rc = ::getpwnam_r(user.c_str(), &pw, buf.data(), buf.size(), &result);
  if (result != nullptr) return std::nullopt;
  if (rc != 0) return "cannot look up user \"" + user + "\": " + std::strerror(rc);
  return "no such user \"" + user + "\"";
}

std::optional<std::string> check_group_exists(const std::string& group) {
  if (numeric_id(group)) return std::nullopt;
  std::vector<char> buf(16384);
  struct group gr {};
  struct group* result = nullptr;
  int rc = ::getgrnam_r(group.c_str(), &gr, buf.data(), buf.size(), &result);
  if (result != nullptr) return std::nullopt;
  if (rc != 0) return "cannot look up group \"" + group + "\": " + std::strerror(rc);
  return "no such group \"" + group + "\"";
}

std::optional<std::string> check_directory(const std::filesystem::path& dir) {
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0) return dir.string() + ": " + std::strerror(errno);
  if (!S_ISDIR(st.st_mode)) return dir.string() + " is not a directory";
  return std::nullopt;
}

std::optional<std::string> check_placeholders(std::string_view text) {
  std::size_t pos = 0;
  while ((pos = text.find('{', pos)) != std::string_view::npos) {
    // "${" in a loaded value came from "$${" (a literal, for a shell): not a placeholder.
    if (pos > 0 && text[pos - 1] == '$') {
      ++pos;
      continue;
    }
    std::size_t end = pos + 1;
    while (end < text.size() && (std::isalnum(static_cast<unsigned char>(text[end])) || text[end] == '_')) ++end;
    if (end < text.size() && text[end] == '}' && end > pos + 1) {
      std::string_view name = text.substr(pos + 1, end - pos - 1);
      if (name != "pool" && name != "worker")
        return "unknown placeholder {" + std::string(name) + "}; the placeholders are {pool} and {worker}";
    }
    pos = end;
  }
  return std::nullopt;
}

// "; did you mean "TERM"?" for a misspelt signal name ("TREM", "kil", "SIGTREM"), written
// the way the user wrote it (with or without "SIG"). A stop_signal is never offered one
// that check_stop_signal would refuse.
std::string signal_suggestion(std::string_view written, bool stop) {
  std::string word;
  for (char c : written) word += static_cast<char>(c >= 'a' && c <= 'z' ? c - 'a' + 'A' : c);
  const bool sig_prefix = word.starts_with("SIG");
  if (sig_prefix) word.erase(0, 3);
  std::vector<std::string> candidates;
  for (auto& name : signal_names())
    if (!stop || !check_stop_signal(*signal_from_name(name))) candidates.push_back(std::move(name));
  auto best = closest_match(word, candidates);
  if (!best) return {};
  return "; did you mean \"" + std::string(sig_prefix ? "SIG" : "") + *best + "\"?";
}

std::optional<std::string> check_stop_signal(int signo) {
  if (signo != SIGSTOP && signo != SIGTSTP && signo != SIGTTIN && signo != SIGTTOU) return std::nullopt;
  return "SIG" + signal_name(signo) + (signo == SIGSTOP ? " cannot be handled and" : " by default") +
         " stops (freezes) a worker instead of ending it: it would sit frozen until graceful_timeout, then be "
         "killed; use the signal the program finishes its work on, such as \"TERM\", \"INT\" or \"QUIT\"";
}

std::optional<std::string> check_restart_policy(Duration restart_delay, Duration flap_window) {
  if (restart_delay.count() > 0 || flap_window.count() > 0) return std::nullopt;
  return "\"0\" together with flap_window = \"0\" would restart a crashing worker in a busy loop (nothing delays "
         "it and nothing counts it); give a delay such as \"100ms\", or a flap_window";
}

bool is_env_name(std::string_view name) {
  if (name.empty() || std::isdigit(static_cast<unsigned char>(name[0]))) return false;
  for (char c : name)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_') return false;
  return true;
}

bool is_pool_name(std::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  for (char c : name)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-' && c != '.') return false;
  return true;
}

Parsed<std::filesystem::path> resolve_executable(const std::string& argv0,
                                                 const std::filesystem::path& base_dir) {
  using P = Parsed<std::filesystem::path>;
  auto executable = [](const std::filesystem::path& p) {
    struct stat st {};
    return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(p.c_str(), X_OK) == 0;
  };
  if (argv0.find('/') != std::string::npos) {
    std::filesystem::path p(argv0);
    p = (p.is_absolute() ? p : base_dir / p).lexically_normal();
    if (!executable(p)) {
      struct stat st {};
      if (::stat(p.c_str(), &st) != 0) return P::fail(p.string() + ": " + std::strerror(errno));
      return P::fail(p.string() + " is not an executable file");
    }
    return P::ok(p);
  }
  const char* path_env = std::getenv("PATH");
  std::string_view dirs = path_env != nullptr ? path_env : "/usr/local/bin:/usr/bin:/bin";
  while (true) {
    auto colon = dirs.find(':');
    std::string_view dir = dirs.substr(0, colon);
    if (!dir.empty()) {
      std::filesystem::path candidate = std::filesystem::path(dir) / argv0;
      if (executable(candidate)) return P::ok(candidate);
    }
    if (colon == std::string_view::npos) break;
    dirs.remove_prefix(colon + 1);
  }
  return P::fail("\"" + argv0 + "\" was not found in PATH (write a path with a '/' to name a file)");
}

}  // namespace forkpool::config
