// SPDX-License-Identifier: Apache-2.0
// The upgrade state's framing (supervisor/upgrade, docs/upgrade.md "The state"): what the
// writer produces reads back, and the reader refuses anything else with a clear message.

#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <string>

#include "supervisor/upgrade/state_format.hpp"
#include "supervisor/upgrade/state_reader.hpp"
#include "supervisor/upgrade/state_writer.hpp"

using namespace forkpool::supervisor::upgrade;
using nlohmann::json;

namespace {

std::string read_all(int fd) {
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<std::size_t>(n));
  return out;
}

std::string written(const json& payload) {
  const auto fd = write_state(payload);
  return read_all(fd.get());
}

std::string error_of(const std::string& bytes) {
  try {
    parse_state(bytes);
  } catch (const StateError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("the upgrade state written to a memfd reads back the same", "[upgrade][unit]") {
  const json payload = {{"generation", 3}, {"pools", json::array({{{"name", "web"}}})}};
  const auto fd = write_state(payload);
  CHECK(read_state(fd.get()) == payload);
  const std::string bytes = written(payload);
  CHECK(bytes.compare(0, 8, "FPUPSTAT") == 0);
  CHECK(static_cast<unsigned char>(bytes[8]) == kStateFormat);
  CHECK(bytes.size() == kStateHeaderSize + payload.dump().size());
}

TEST_CASE("the upgrade state reader refuses bad magic, an unknown format and truncated input",
          "[upgrade][unit]") {
  const std::string good = written({{"generation", 1}});
  REQUIRE(error_of(good).empty());

  std::string magic = good;
  magic[0] = 'X';
  CHECK(error_of(magic).find("bad magic") != std::string::npos);

  std::string version = good;
  version[8] = static_cast<char>(kStateFormat + 1);
  CHECK(error_of(version).find("format " + std::to_string(kStateFormat + 1) +
                               " is not one this binary reads") != std::string::npos);

  CHECK(error_of(good.substr(0, 10)).find("shorter than its 24-byte header") != std::string::npos);
  CHECK(error_of(good.substr(0, good.size() - 1)).find("payload bytes") != std::string::npos);
  CHECK(error_of(good + "x").find("payload bytes") != std::string::npos);
  CHECK(error_of("").find("shorter") != std::string::npos);

  std::string not_json = good;
  not_json[kStateHeaderSize] = '[';
  CHECK(error_of(not_json).find("not a JSON object") != std::string::npos);
}

TEST_CASE("an adopted descriptor must be of the kind the state says, and named once",
          "[upgrade][unit]") {
  int pair[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) == 0);
  forkpool::base::OwnedFd other(pair[1]);
  AdoptedFds fds;
  CHECK_THROWS_WITH(fds.claim(pair[0], FdKind::Listener, "listener x"),
                    Catch::Contains("is not a listening stream socket"));
  AdoptedFds fresh;
  auto owned = fresh.claim(pair[0], FdKind::SeqpacketSocket, "channel");
  CHECK(owned.get() == pair[0]);
  CHECK_THROWS_WITH(fresh.claim(pair[0], FdKind::SeqpacketSocket, "channel"),
                    Catch::Contains("named twice"));
  CHECK_THROWS_WITH(AdoptedFds().claim(987, FdKind::Pipe, "stdout"),
                    Catch::Contains("Bad file descriptor"));
  CHECK_THROWS_WITH(AdoptedFds().claim("3", FdKind::Pipe, "stdout"),
                    Catch::Contains("no descriptor number"));
}

TEST_CASE("peer addresses round-trip through hex, and bad hex is refused", "[upgrade][unit]") {
  const unsigned char raw[] = {0x02, 0x00, 0x1f, 0x90, 0x7f, 0x00, 0x00, 0x01};
  const std::string hex = to_hex(raw, sizeof raw);
  CHECK(hex == "02001f907f000001");
  unsigned char back[16] = {};
  std::size_t size = 0;
  REQUIRE(from_hex(hex, back, sizeof back, size));
  CHECK(size == sizeof raw);
  CHECK(std::memcmp(back, raw, sizeof raw) == 0);
  CHECK_FALSE(from_hex("0g", back, sizeof back, size));
  CHECK_FALSE(from_hex("abc", back, sizeof back, size));
  CHECK_FALSE(from_hex(std::string(40, 'a'), back, sizeof back, size));
}
