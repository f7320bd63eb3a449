// SPDX-License-Identifier: Apache-2.0
#pragma once
// Config errors that point at the place in the file: "file:line:col: key: message".

#include <stdexcept>
#include <string>
#include <vector>

namespace forkpool::config {

struct Diagnostic {
  std::string file;         // as the user named it
  std::uint32_t line = 0;   // 1-based; 0 when the problem is the file as a whole
  std::uint32_t column = 0;
  std::string key;          // dotted path, e.g. "pools.web.max_inflight"; may be empty
  std::string message;

  std::string to_string() const;
};

// Thrown by load_file/load_string with every problem found in the file, in file order.
class ConfigError : public std::runtime_error {
 public:
  explicit ConfigError(std::vector<Diagnostic> diagnostics);
  const std::vector<Diagnostic>& diagnostics() const { return diagnostics_; }

 private:
  std::vector<Diagnostic> diagnostics_;
};

}  // namespace forkpool::config
