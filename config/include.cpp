// SPDX-License-Identifier: Apache-2.0
#include "config/include.hpp"

#include <glob.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace forkpool::config {

namespace {

bool has_wildcard(const std::string& s) { return s.find_first_of("*?[") != std::string::npos; }

}  // namespace

IncludeMatch expand_include(const std::string& pattern, const std::filesystem::path& base_dir) {
  IncludeMatch out;
  if (pattern.empty()) {
    out.error = "expected a file or a pattern such as \"conf.d/*.toml\", got \"\"";
    return out;
  }
  const std::filesystem::path full =
      (std::filesystem::path(pattern).is_absolute() ? std::filesystem::path(pattern) : base_dir / pattern)
          .lexically_normal();
  if (!has_wildcard(pattern)) {
    struct stat st {};
    if (::stat(full.c_str(), &st) != 0) {
      out.error = full.string() + ": " + std::strerror(errno);
      return out;
    }
    out.files.push_back(full);
    return out;
  }
  glob_t g{};
  errno = 0;
  const int rc = ::glob(full.c_str(), GLOB_ERR, nullptr, &g);
  const int err = errno;
  struct Freer {
    glob_t* g;
    ~Freer() { ::globfree(g); }
  } freer{&g};
  // A folder that is not there matches nothing, like an empty one; one that cannot be
  // read is an error (its files would be left out silently).
  if (rc == GLOB_NOMATCH || (rc == GLOB_ABORTED && (err == ENOENT || err == ENOTDIR))) return out;
  if (rc == GLOB_NOSPACE) {
    out.error = "out of memory expanding " + full.string();
    return out;
  }
  if (rc != 0) {
    out.error = "cannot read a folder of " + full.string() + ": " + std::strerror(err);
    return out;
  }
  for (std::size_t i = 0; i < g.gl_pathc; ++i) out.files.emplace_back(g.gl_pathv[i]);
  std::sort(out.files.begin(), out.files.end());  // glob sorts by locale; this is bytewise
  return out;
}

}  // namespace forkpool::config
