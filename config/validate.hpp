// SPDX-License-Identifier: Apache-2.0
#pragma once
// Checks of config values against the system and each other. Each returns the problem
// phrased as a message, or nothing; the loader attaches the location.

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include "config/units.hpp"

namespace forkpool::config {

// A user or group given by number ("65534", as systemd's User= takes it): the id, or
// nothing when `text` is a name.
std::optional<std::uint32_t> numeric_id(std::string_view text);
// A name must exist. A number need not (a container's uid): then `group` must be given,
// since there is no passwd entry to take the primary group from.
std::optional<std::string> check_user_exists(const std::string& user, bool group_given);
// A name must exist; a number need not.
std::optional<std::string> check_group_exists(const std::string& group);
std::optional<std::string> check_directory(const std::filesystem::path& dir);

// Only {pool} and {worker} are placeholders; "{name}" with any other name is a typo.
// A '{' right after a '$' opens none: "$${HOME}" in the file is "${HOME}" for the program.
std::optional<std::string> check_placeholders(std::string_view text);

// A stop_signal whose default action stops (freezes) the process rather than ending it:
// STOP cannot even be handled, and TSTP, TTIN and TTOU leave a program that does not
// handle them frozen until graceful_timeout, then killed.
std::optional<std::string> check_stop_signal(int signo);
// "; did you mean \"TERM\"?" for a misspelt signal name ("TREM", "kil", "SIGTREM"), in the
// way it was written (with or without "SIG"); "" when nothing is close. With `stop`, only
// signals check_stop_signal accepts are offered.
std::string signal_suggestion(std::string_view written, bool stop);

// restart_delay "0" with flap_window "0": no delay would slow a crash loop down and no
// window would stop it, so the master would fork as fast as the worker can crash.
std::optional<std::string> check_restart_policy(Duration restart_delay, Duration flap_window);

// An env variable name: letters, digits and '_', not starting with a digit.
bool is_env_name(std::string_view name);
// A pool name usable in env values, metric labels and LISTEN_FDNAMES.
bool is_pool_name(std::string_view name);

// command[0]: a path with a '/' must be an executable file; a bare name must be on PATH.
// Returns the executable's path (absolute when it had a '/').
Parsed<std::filesystem::path> resolve_executable(const std::string& argv0,
                                                 const std::filesystem::path& base_dir);

}  // namespace forkpool::config
