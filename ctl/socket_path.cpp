// SPDX-License-Identifier: Apache-2.0
#include "ctl/socket_path.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <system_error>

#include "config/diagnostics.hpp"
#include "config/load.hpp"

namespace forkpool::ctl {

namespace {

// Relative to the current folder when that is shorter: sun_path holds only 107 bytes.
std::string shortest(const std::filesystem::path& path) {
  std::error_code ec;
  const auto rel = std::filesystem::relative(path, ec);
  if (!ec && !rel.empty() && rel.string().size() < path.string().size()) return rel.string();
  return path.string();
}

// The socket of one config file, or the reason it gives none.
bool from_config(const std::filesystem::path& file, const std::string& source, SocketChoice& out) {
  try {
    out.path = shortest(config::load_control_socket(file));
    out.source = source;
    return true;
  } catch (const config::ConfigError& e) {
    out.problem = e.diagnostics().empty() ? e.what() : e.diagnostics().front().to_string();
    out.tried.push_back(source + ": " + out.problem);
    return false;
  }
}

}  // namespace

SocketChoice choose_socket(SocketSearch search) {
  SocketChoice out;
  if (!search.socket.empty()) {
    out.path = search.socket;
    out.source = "-s";
    return out;
  }
  if (!search.config.empty()) {
    from_config(search.config, "-c " + search.config, out);
    return out;  // named explicitly: no other place stands in for it
  }
  out.tried.push_back("-s SOCKET: not given");
  out.tried.push_back("-c CONFIG: not given");
  if (const char* env = std::getenv("FORKPOOL_SOCKET"); env != nullptr && *env != '\0') {
    out.path = env;
    out.source = "$FORKPOOL_SOCKET";
    return out;
  }
  out.tried.push_back("$FORKPOOL_SOCKET: not set");
  if (search.config_files.empty()) search.config_files = config::config_search_paths();
  for (const auto& file : search.config_files) {
    const std::string name = file.is_absolute() ? file.string() : "./" + file.string();
    if (::access(file.c_str(), F_OK) != 0) {
      out.tried.push_back(name + ": no such file");
      continue;
    }
    // A file that is there speaks for the master; a broken one is reported, not skipped
    // for another file that may belong to another master.
    from_config(file, name, out);
    return out;
  }
  struct stat st {};
  if (!search.packaged.empty() && ::stat(search.packaged.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) {
    out.path = search.packaged.string();
    out.source = "the packaged default";
    return out;
  }
  out.tried.push_back(search.packaged.string() + " (the packaged default): no such socket");
  return out;
}

}  // namespace forkpool::ctl
