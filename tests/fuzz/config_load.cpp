// SPDX-License-Identifier: Apache-2.0
// Fuzz target: the config loader. Any bytes, read as the TOML text of a config file,
// give a Config or a ConfigError; nothing else may escape. An error lists at least one
// diagnostic, each naming the file, a place inside the text and (unless the TOML itself
// is broken) the key; a loaded config printed by `--check` loads again to the same text.

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <string>
#include <string_view>

#include "config/load.hpp"
#include "config/print.hpp"

namespace {

using namespace forkpool;

// Relative paths in the seeds (copies of examples/) resolve as they do for the real files.
const std::filesystem::path kFile = FORKPOOL_SOURCE_DIR "/examples/fuzz.toml";

[[noreturn]] void fail(const char* what, std::string_view detail) {
  std::fprintf(stderr, "config_load: %s\n%.*s\n", what, static_cast<int>(detail.size()), detail.data());
  std::abort();
}

void check_error(const config::ConfigError& e, std::string_view text) {
  if (e.diagnostics().empty()) fail("a ConfigError without diagnostics", text);
  const auto lines = static_cast<std::uint32_t>(std::count(text.begin(), text.end(), '\n')) + 1;
  for (const config::Diagnostic& d : e.diagnostics()) {
    const std::string shown = d.to_string();
    if (d.file != kFile.string()) fail("a diagnostic names another file", shown);
    if (d.message.empty()) fail("a diagnostic without a message", shown);
    // A syntax error is about the text, not a key; everything else names its key.
    if (d.key.empty() && !d.message.starts_with("TOML syntax error")) fail("a diagnostic without a key", shown);
    if (d.line > lines) fail("a diagnostic points past the end of the text", shown);
    if (d.line == 0 && d.column != 0) fail("a diagnostic with a column but no line", shown);
  }
}

config::Config load(std::string_view text, const char* stage) {
  try {
    return config::load_string(text, kFile, config::Includes::Skip);  // reads no other file
  } catch (const config::ConfigError&) {
    throw;
  } catch (const std::exception& e) {
    fail(stage, e.what());
  } catch (...) {
    fail(stage, "(not a std::exception)");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size > config::kMaxConfigBytes) return 0;  // load_file refuses those before parsing
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  config::Config loaded;
  try {
    loaded = load(text, "an exception other than ConfigError while loading");
  } catch (const config::ConfigError& e) {
    check_error(e, text);
    return 0;
  }

  const std::string printed = config::to_toml(loaded);
  config::Config again;
  try {
    again = load(printed, "an exception other than ConfigError while loading the printout");
  } catch (const config::ConfigError& e) {
    fail("the printed configuration does not load", printed + "\n--- errors:\n" + e.what());
  }
  const std::string reprinted = config::to_toml(again);
  if (reprinted != printed) fail("the printout of the printout differs", printed + "\n--- then:\n" + reprinted);
  return 0;
}
