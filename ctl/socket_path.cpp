#include "ctl/socket_path.hpp"

#include <cstdlib>
#include <system_error>

#include "config/load.hpp"

namespace forkpool::ctl {

namespace {

constexpr const char* kFallback = "./forkpool.sock";

// The first line of a (possibly multi-line) config error, so the note stays one line.
std::string first_line(const std::string& s) {
  const auto nl = s.find('\n');
  return nl == std::string::npos ? s : s.substr(0, nl) + " (and more)";
}

}  // namespace

SocketChoice choose_socket(const std::string& explicit_path,
                           const std::filesystem::path& config_file) {
  if (!explicit_path.empty()) return {explicit_path, "-s", ""};
  if (const char* env = std::getenv("FORKPOOL_SOCKET"); env != nullptr && *env != '\0') {
    return {env, "FORKPOOL_SOCKET", ""};
  }
  std::error_code ec;
  if (!std::filesystem::exists(config_file, ec)) return {kFallback, "default", ""};
  try {
    const auto cfg = config::load_file(config_file);
    if (!cfg.supervisor.control_socket.empty()) {
      // Relative to the current folder when possible: sun_path holds only 107 bytes.
      auto path = cfg.supervisor.control_socket;
      const auto rel = std::filesystem::relative(path, ec);
      if (!ec && !rel.empty() && rel.string().size() < path.string().size()) path = rel;
      return {path.string(), config_file.string(), ""};
    }
    return {kFallback, "default", ""};
  } catch (const std::exception& e) {
    return {kFallback, "default",
            config_file.string() + " could not be loaded (" + first_line(e.what()) + "), so " +
                kFallback + " was tried"};
  }
}

}  // namespace forkpool::ctl
