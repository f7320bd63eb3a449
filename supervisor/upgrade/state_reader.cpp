// SPDX-License-Identifier: Apache-2.0
#include "supervisor/upgrade/state_reader.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <iterator>

#include "supervisor/upgrade/state_format.hpp"

namespace forkpool::supervisor::upgrade {
namespace {

std::uint64_t get_le(const unsigned char* in, std::size_t bytes) {
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < bytes; ++i) v |= std::uint64_t{in[i]} << (8 * i);
  return v;
}

const char* kind_name(FdKind k) {
  switch (k) {
    case FdKind::Listener:
      return "a listening stream socket";
    case FdKind::StreamSocket:
      return "a stream socket";
    case FdKind::SeqpacketSocket:
      return "a seqpacket socket";
    case FdKind::DgramSocket:
      return "a datagram socket";
    case FdKind::Pipe:
      return "a pipe";
    case FdKind::Memory:
      return "a memfd";
  }
  return "?";
}

}  // namespace

nlohmann::json parse_state(std::string_view bytes) {
  if (bytes.size() < kStateHeaderSize)
    throw StateError("upgrade state: " + std::to_string(bytes.size()) +
                     " bytes, shorter than its " + std::to_string(kStateHeaderSize) +
                     "-byte header");
  const auto* h = reinterpret_cast<const unsigned char*>(bytes.data());
  if (std::memcmp(h, kStateMagic, sizeof kStateMagic) != 0)
    throw StateError("upgrade state: bad magic (not a forkpool upgrade state)");
  const auto format = static_cast<std::uint32_t>(get_le(h + 8, 4));
  if (std::find(std::begin(kReadableStateFormats), std::end(kReadableStateFormats), format) ==
      std::end(kReadableStateFormats))
    throw StateError("upgrade state: format " + std::to_string(format) +
                     " is not one this binary reads (it reads " + std::to_string(kStateFormat) +
                     ")");
  const std::uint64_t length = get_le(h + 16, 8);
  if (length > kMaxStatePayload || length != bytes.size() - kStateHeaderSize)
    throw StateError("upgrade state: header says " + std::to_string(length) +
                     " payload bytes, there are " +
                     std::to_string(bytes.size() - kStateHeaderSize));
  nlohmann::json j = nlohmann::json::parse(bytes.substr(kStateHeaderSize), nullptr, false);
  if (j.is_discarded() || !j.is_object())
    throw StateError("upgrade state: the payload is not a JSON object");
  return j;
}

nlohmann::json read_state(int fd) {
  struct stat st {};
  if (::fstat(fd, &st) != 0)
    throw StateError("upgrade state: fstat descriptor " + std::to_string(fd) + ": " +
                     std::strerror(errno));
  if (!S_ISREG(st.st_mode))
    throw StateError("upgrade state: descriptor " + std::to_string(fd) + " is not a memfd");
  if (static_cast<std::uint64_t>(st.st_size) > kMaxStatePayload + kStateHeaderSize)
    throw StateError("upgrade state: " + std::to_string(st.st_size) + " bytes is too large");
  std::string bytes(static_cast<std::size_t>(st.st_size), '\0');
  std::size_t got = 0;
  while (got < bytes.size()) {
    const ssize_t n = ::pread(fd, bytes.data() + got, bytes.size() - got, static_cast<off_t>(got));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += static_cast<std::size_t>(n);
  }
  bytes.resize(got);
  return parse_state(bytes);
}

const nlohmann::json& need(const nlohmann::json& object, const char* key) {
  if (!object.is_object() || !object.contains(key) || object[key].is_null())
    throw StateError(std::string("upgrade state: missing field \"") + key + "\"");
  return object[key];
}

base::OwnedFd AdoptedFds::claim(const nlohmann::json& value, FdKind kind, std::string_view what) {
  if (!value.is_number_integer())
    throw StateError("upgrade state: " + std::string(what) + ": no descriptor number");
  const int fd = value.get<int>();
  const std::string name = std::string(what) + " (descriptor " + std::to_string(fd) + ")";
  if (fd < 3) throw StateError("upgrade state: " + name + " cannot be a standard stream");
  if (!claimed_.insert(fd).second) throw StateError("upgrade state: " + name + " is named twice");
  struct stat st {};
  if (::fstat(fd, &st) != 0)
    throw StateError("upgrade state: " + name + ": " + std::strerror(errno));
  bool ok = false;
  if (kind == FdKind::Pipe)
    ok = S_ISFIFO(st.st_mode);
  else if (kind == FdKind::Memory)
    ok = S_ISREG(st.st_mode);
  else if (S_ISSOCK(st.st_mode)) {
    int type = 0, listening = 0;
    socklen_t len = sizeof type;
    socklen_t len2 = sizeof listening;
    if (::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0 &&
        ::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len2) == 0) {
      switch (kind) {
        case FdKind::Listener:
          ok = type == SOCK_STREAM && listening != 0;
          break;
        case FdKind::StreamSocket:
          ok = type == SOCK_STREAM && listening == 0;
          break;
        case FdKind::SeqpacketSocket:
          ok = type == SOCK_SEQPACKET;
          break;
        case FdKind::DgramSocket:
          ok = type == SOCK_DGRAM;
          break;
        default:
          break;
      }
    }
  }
  if (!ok) throw StateError("upgrade state: " + name + " is not " + kind_name(kind));
  ::fcntl(fd, F_SETFD, FD_CLOEXEC);
  return base::OwnedFd(fd);
}

}  // namespace forkpool::supervisor::upgrade
