// SPDX-License-Identifier: Apache-2.0
// A master that turns a client away (too many control clients) writes why and closes at
// once, often before forkpoolctl has sent its request. forkpoolctl must then print that
// reply, not "the master closed the connection before reading the request".

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <atomic>
#include <cstring>
#include <string>
#include <thread>

#include "ctl/client.hpp"
#include "ctl/commands.hpp"
#include "support/temp_dir.hpp"

using namespace forkpool::ctl;
using namespace std::chrono_literals;

namespace {

const std::string kRefusal = R"j({"ok":false,"error":"too many control clients (at most 64)"})j"
                             "\n";

// A listening socket; refuse_next() accepts one client, writes the refusal and closes it
// before the client does anything more.
class RefusingMaster {
 public:
  RefusingMaster() : path_((dir_ / "ctl.sock").string()) {
    fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path_.c_str(), sizeof(addr.sun_path) - 1);
    REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
    REQUIRE(::listen(fd_, 8) == 0);
  }
  ~RefusingMaster() { ::close(fd_); }

  // No Catch2 assertions here: it also runs on a thread of its own.
  bool refuse_next() {
    const int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) return false;
    const bool sent = ::send(c, kRefusal.data(), kRefusal.size(), MSG_NOSIGNAL) ==
                      static_cast<ssize_t>(kRefusal.size());
    ::close(c);
    return sent;
  }
  const std::string& path() const { return path_; }

 private:
  forkpool::test::TempDir dir_;
  std::string path_;
  int fd_ = -1;
};

}  // namespace

TEST_CASE("ctl client turned away before sending reports the master's reason", "[ctl][client]") {
  RefusingMaster master;
  Client client = Client::connect(master.path(), 2000ms);
  REQUIRE(master.refuse_next());  // closed before the request goes out: sending it fails (EPIPE)
  CHECK_THROWS_MATCHES(client.call({{"cmd", "status"}}, 2000ms), ReplyError,
                       Catch::Matchers::Message("too many control clients (at most 64)"));
}

TEST_CASE("forkpoolctl turned away prints the reason and exits 1 like any error reply",
          "[ctl][client]") {
  // Turned away every time (before or after its request went out: both): forkpoolctl asks
  // again until --timeout, then the master's reason is its answer.
  RefusingMaster master;
  std::atomic<bool> done{false};
  std::atomic<int> refusals{0};
  std::thread t([&] {
    while (!done)
      if (master.refuse_next()) ++refusals;
  });
  Invocation inv;
  inv.socket = master.path();
  inv.timeout = 2000ms;
  const int rc = run_request(inv, {{"cmd", "status"}});
  done = true;
  try {
    Client::connect(master.path(), 1000ms);  // wakes the refusing thread's last accept
  } catch (const ConnectionError&) {
  }
  t.join();
  CHECK(refusals >= 2);  // it asked again
  CHECK(rc == kExitErrorReply);
}

TEST_CASE("forkpoolctl turned away once, then not answered, reports the timeout, not the refusal", "[ctl][client]") {
  // Its request went out the second time: what became of it is that request's, and a
  // master that does not answer it is a timeout (exit 2), not "too many control clients".
  RefusingMaster master;
  bool refused = false;
  std::thread t([&] { refused = master.refuse_next(); });
  Invocation inv;
  inv.socket = master.path();
  inv.timeout = 1000ms;
  const int rc = run_request(inv, {{"cmd", "status"}});
  t.join();
  CHECK(refused);
  CHECK(rc == kExitUsage);
}
