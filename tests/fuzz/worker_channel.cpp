// SPDX-License-Identifier: Apache-2.0
// Fuzz target: the master's channel receiver, WorkerChannel::receive, on a real
// SOCK_SEQPACKET socketpair. The input plays a worker: it is cut into records, some with
// descriptors attached (SCM_RIGHTS), sent from the worker's end, which then stays open,
// half-closes or closes; the master's end receives until Nothing or EndOfFile.
//
// Input: byte 0 says how the worker's end finishes (bits 0-1: 0 or 3 open, 1 shutdown
// SHUT_WR, 2 close). Then records, each: a flags byte (bits 0-2: descriptors to attach,
// 0 to 7), a length byte, and that many bytes of payload (fewer if the input ends).
//
// What must hold: every 16-byte record with at most 4 descriptors (what the receive
// buffer holds) comes out as Record with the bytes sent; every other record (another
// size, an empty one included, or too many descriptors) as Malformed (or a finer kind of
// refusal); then Nothing while the worker's end is open, EndOfFile once it is not. No
// descriptor is left open.

#include <dirent.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "base/owned_fd.hpp"
#include "supervisor/dispatch/worker_channel.hpp"

namespace {

using forkpool::base::OwnedFd;
using forkpool::supervisor::WorkerChannel;
using Received = WorkerChannel::Received;

constexpr std::size_t kFdsThatFit = 4;  // receive's buffer: CMSG_SPACE(sizeof(int) * 4)
constexpr std::size_t kMaxRecords = 64;

struct Record {
  std::vector<std::uint8_t> bytes;
  std::size_t fds = 0;
};

[[noreturn]] void fail(const char* what, std::size_t record) {
  std::fprintf(stderr, "worker_channel: record %zu: %s\n", record, what);
  std::abort();
}

const char* name(Received r) {
  switch (r) {
    case Received::Record: return "Record";
    case Received::Nothing: return "Nothing";
    case Received::Malformed: return "Malformed";
    case Received::EndOfFile: return "EndOfFile";
    default: return "another refusal";
  }
}

// Malformed, or whatever finer kind of refusal receive may grow (an empty record, say).
bool refused(Received r) { return r != Received::Record && r != Received::Nothing && r != Received::EndOfFile; }

int open_fds() {
  int n = 0;
  DIR* d = ::opendir("/proc/self/fd");
  if (d == nullptr) std::abort();
  while (const dirent* e = ::readdir(d))
    if (e->d_name[0] != '.') ++n;
  ::closedir(d);
  return n;
}

uv_loop_t* loop() {
  static uv_loop_t* l = [] {
    auto* created = new uv_loop_t;
    if (uv_loop_init(created) != 0) std::abort();
    return created;
  }();
  return l;
}

bool send_record(int fd, const Record& r) {
  iovec iov{const_cast<std::uint8_t*>(r.bytes.data()), r.bytes.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  std::vector<OwnedFd> attached;
  std::vector<char> control(CMSG_SPACE(sizeof(int) * 8));
  if (r.fds > 0) {
    for (std::size_t i = 0; i < r.fds; ++i) attached.emplace_back(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    msg.msg_control = control.data();
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * r.fds);
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * r.fds);
    for (std::size_t i = 0; i < r.fds; ++i) {
      const int f = attached[i].get();
      if (f < 0) std::abort();
      std::memcpy(CMSG_DATA(c) + i * sizeof(int), &f, sizeof f);
    }
  }
  ssize_t n;
  do {
    n = ::sendmsg(fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS)) return false;
  if (n != static_cast<ssize_t>(r.bytes.size())) std::abort();  // the harness's own fault
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const int finish = data[0] & 3;
  std::vector<Record> records;
  for (std::size_t at = 1; at + 2 <= size && records.size() < kMaxRecords;) {
    Record r;
    r.fds = data[at] & 7;
    std::size_t len = data[at + 1];
    at += 2;
    if (len > size - at) len = size - at;
    r.bytes.assign(data + at, data + at + len);
    at += len;
    records.push_back(std::move(r));
  }

  uv_loop_t* const uv = loop();  // made on the first input, before counting descriptors
  const int fds_before = open_fds();
  {
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) std::abort();
    OwnedFd worker(sv[1]);
    WorkerChannel channel(uv, OwnedFd(sv[0]));

    std::size_t sent = 0;
    while (sent < records.size() && send_record(worker.get(), records[sent])) ++sent;
    if (finish == 1) ::shutdown(worker.get(), SHUT_WR);
    if (finish == 2) worker.reset();
    const bool worker_open = finish == 0 || finish == 3;

    bool ended = false;
    for (std::size_t i = 0; i < sent && !ended; ++i) {
      fp_msg m{};
      const Received got = channel.receive(m);
      const Record& r = records[i];
      const bool whole = r.bytes.size() == sizeof m && r.fds <= kFdsThatFit;
      if (whole) {
        if (got != Received::Record) {
          std::fprintf(stderr, "worker_channel: a whole record with %zu fds gave %s\n", r.fds, name(got));
          fail("a whole record not received as Record", i);
        }
        if (std::memcmp(&m, r.bytes.data(), sizeof m) != 0) fail("the record received differs from the one sent", i);
        continue;
      }
      if (refused(got)) continue;
      // An empty record and the end of the stream both read as 0 bytes; once the worker's
      // end is shut, taking an empty record for the end is as good as any answer.
      if (r.bytes.empty() && !worker_open && got == Received::EndOfFile) {
        ended = true;
        continue;
      }
      std::fprintf(stderr, "worker_channel: %zu bytes with %zu fds gave %s, expected Malformed\n", r.bytes.size(),
                   r.fds, name(got));
      fail(r.bytes.empty() ? "an empty record from a live worker is not Malformed (issue 10, defect 5)"
                           : "a record of the wrong size or with too many fds is not Malformed",
           i);
    }
    fp_msg m{};
    // After an EndOfFile the master reads no more; records still queued are the kernel's.
    const Received last = ended ? Received::EndOfFile : channel.receive(m);
    if (last != (worker_open ? Received::Nothing : Received::EndOfFile))
      fail(worker_open ? "not Nothing after the last record" : "not EndOfFile after the last record", sent);
    channel.close();
  }
  // The channel's uv_poll handle is freed in its close callback.
  uv_run(uv, UV_RUN_NOWAIT);
  if (open_fds() != fds_before) fail("descriptors leaked", records.size());
  return 0;
}
