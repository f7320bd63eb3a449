// SPDX-License-Identifier: Apache-2.0
#include "supervisor/command_line.hpp"

#include <charconv>
#include <string_view>

#include "supervisor/upgrade/state_format.hpp"
#include "supervisor/version.hpp"

namespace forkpool::supervisor {
namespace {

constexpr int kExitUsage = 2;

constexpr std::string_view kHelp =
    "forkpool: a prefork worker-pool supervisor\n"
    "Usage: forkpool [OPTIONS]\n"
    "\n"
    "Options:\n"
    "  -h, --help           print this help and exit\n"
    "  --version            print the version and exit\n"
    "  -c, --config FILE    config file (default: ./forkpool.toml, then /etc/forkpool/forkpool.toml)\n"
    "  --check              validate the config, print the effective config and exit (0 ok, 2 errors)\n"
    "  --upgrade-info       print the version and the upgrade state formats read, as JSON\n";

CommandLineResult usage_error(std::string message) {
  CommandLineResult r;
  r.exit_code = kExitUsage;
  r.err = "forkpool: " + message + "\nRun with --help for more information.\n";
  return r;
}

}  // namespace

CommandLineResult parse_command_line(int argc, const char* const* argv) {
  CommandLine line;
  const std::string_view state_fd_flag = upgrade::kStateFdFlag;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    // An option's value: after '=' (long) or attached (-cFILE), else the next argument.
    std::string_view name = arg;
    std::optional<std::string_view> attached;
    if (arg.starts_with("--")) {
      if (const auto eq = arg.find('='); eq != std::string_view::npos) {
        name = arg.substr(0, eq);
        attached = arg.substr(eq + 1);
      }
    } else if (arg.starts_with("-c") && arg.size() > 2) {
      name = "-c";
      attached = arg.substr(2);
    }
    auto value = [&]() -> std::optional<std::string_view> {
      if (attached) return attached;
      if (i + 1 < argc) return std::string_view(argv[++i]);
      return std::nullopt;
    };
    auto flag = [&](bool& target) {
      if (attached) return false;
      target = true;
      return true;
    };
    if (name == "-h" || name == "--help") {
      if (attached) return usage_error(std::string(name) + " takes no value");
      CommandLineResult r;
      r.out = kHelp;
      return r;
    }
    if (name == "--version") {
      if (attached) return usage_error("--version takes no value");
      CommandLineResult r;
      r.out = std::string("forkpool ") + kVersion + " (worker protocol " + std::to_string(kWorkerProtocol) + ")\n";
      return r;
    }
    if (name == "-c" || name == "--config") {
      const auto file = value();
      if (!file || file->empty()) return usage_error(std::string(name) + " needs a value: the config file");
      line.config_file = std::string(*file);
    } else if (name == "--check") {
      if (!flag(line.check_only)) return usage_error("--check takes no value");
    } else if (name == "--upgrade-info") {
      if (!flag(line.upgrade_info)) return usage_error("--upgrade-info takes no value");
    } else if (name == state_fd_flag) {
      const auto text = value();
      int fd = -1;
      const auto [end, ec] = text ? std::from_chars(text->data(), text->data() + text->size(), fd)
                                  : std::from_chars_result{nullptr, std::errc::invalid_argument};
      if (!text || ec != std::errc{} || end != text->data() + text->size() || fd < 0)
        return usage_error(std::string(state_fd_flag) + " needs a descriptor number");
      line.state_fd = fd;
    } else if (arg == "--") {
      if (i + 1 < argc) return usage_error("unexpected argument: " + std::string(argv[i + 1]));
      break;
    } else if (arg.starts_with("-") && arg.size() > 1) {
      return usage_error("unknown option " + std::string(arg));
    } else {
      return usage_error("unexpected argument: " + std::string(arg));
    }
  }
  CommandLineResult r;
  r.run = std::move(line);
  return r;
}

}  // namespace forkpool::supervisor
