// SPDX-License-Identifier: Apache-2.0
#pragma once
// Listener addresses: tcp://HOST:PORT, tcp://[V6]:PORT, unix:PATH (or unix:@abstract).

#include <filesystem>
#include <string_view>

#include "config/config.hpp"
#include "config/units.hpp"

namespace forkpool::config {

// Relative Unix paths resolve against `base_dir`. Hosts must be IP literals or "localhost";
// names are not resolved, so a listener never depends on DNS at start-up.
Parsed<ListenAddress> parse_listen_address(std::string_view text, const std::filesystem::path& base_dir);

// "HOST:PORT" or "[V6]:PORT", as used by metrics_listen.
Parsed<ListenAddress> parse_host_port(std::string_view text);

}  // namespace forkpool::config
