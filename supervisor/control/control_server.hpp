// SPDX-License-Identifier: Apache-2.0
#pragma once
// The control socket: a Unix stream socket speaking one JSON object per line each way.
// It owns framing, limits and peer checks; what a command does is the handler's business.
//
// Limits, none of which block the loop or other clients: a request line of at most
// 64 KiB; at most 64 clients, of which any one user other than root and the master's own
// may hold 16, and all such users together 60, so the operator can always get in; when
// all 64 places are taken, the client idle the longest (nothing begun, nothing unwritten,
// not subscribed) is closed to make room, so silent connections lock nobody out; a
// request must be complete within 5 s of its first byte, however slowly the bytes (or
// empty lines) trickle in; a client not subscribed to events that sends no request for
// 60 s is closed; a client that does not read its replies is closed once 4 MiB wait.
// A command may answer later (DeferredReply: an upgrade's checks run while the loop goes
// on); until it has, that client's next requests wait unread, in order.

#include <sys/types.h>
#include <uv.h>

#include <cstdint>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <vector>
#include <string>

#include "base/socket_file.hpp"
#include "config/config.hpp"
#include "supervisor/observe/log_limiter.hpp"
#include "supervisor/uv_handles.hpp"

namespace forkpool::supervisor {

class ControlServer;
class ControlClient;

// The reply to a request that is answered later, from another loop turn. The client may
// be gone by then: the reply is dropped. While a reply is deferred, the client's further
// requests are not read (their replies keep the order of the requests), it is not closed
// as idle and never gives its place to a newcomer.
class DeferredReply {
 public:
  DeferredReply() = default;
  // Still owed to a client that is still connected.
  bool pending() const;
  // Sends the reply (if the client is still there) and reads its next requests.
  void reply(const nlohmann::json& object);
  // The client, while the reply is still owed to it (nullptr otherwise): for a line
  // written before the reply that ends the deferral.
  ControlClient* client() const;

 private:
  friend class ControlClient;
  std::weak_ptr<ControlClient*> client_;
};

class ControlClient {
 public:
  void reply(const nlohmann::json& object);
  // A reply already written as one line of JSON (without its newline).
  void reply_text(std::string json_line);
  void error(const std::string& message);
  // From now on the client receives events; further requests are still answered.
  void subscribe() { subscribed_ = true; }
  bool subscribed() const { return subscribed_; }
  // Sends `line` with `fds` attached (SCM_RIGHTS), at most 200 per message.
  bool send_fds(const nlohmann::json& first, std::span<const int> fds);
  void close();
  uid_t uid() const { return uid_; }
  // This request is answered later, through the DeferredReply (one at a time).
  DeferredReply defer();

 private:
  friend class ControlServer;
  friend class DeferredReply;
  ControlServer* server_ = nullptr;
  uv_pipe_t* pipe_ = nullptr;
  std::string buffer_;
  bool subscribed_ = false;
  bool closing_ = false;
  bool admitted_ = false;    // passed the peer check and the limits
  bool privileged_ = false;  // root or the master's user: never crowded out by others
  uid_t uid_ = 0;
  // Loop time (ms) of the first byte of the request not yet complete, if any; and of the
  // last complete request (or the connection). Empty lines complete nothing.
  std::optional<std::uint64_t> request_started_;
  std::uint64_t last_request_ = 0;
  uv_timer_t* timer_ = nullptr;
  std::list<std::unique_ptr<ControlClient>>::iterator self_;
  // What DeferredReply holds on to; reset when the client is dropped.
  std::shared_ptr<ControlClient*> ref_ = std::make_shared<ControlClient*>(this);
  bool deferred_ = false;  // a reply is owed: reading is stopped until it is given
  // Complete requests wait in buffer_ for the next loop turn (kRequestsPerTurn a turn):
  // reading is stopped until they are answered.
  bool backlog_ = false;
  bool eof_ = false;  // the client half-closed while a reply was owed or requests waited
  void resume();
  void write_raw(std::string data);
  // Closes once every queued reply is written (a refused peer, a client that half-closed).
  void close_after_writes();
};

class ControlServer {
 public:
  using Handler = std::function<void(ControlClient&, const nlohmann::json& request)>;

  // Throws std::runtime_error naming the path when the socket cannot be made.
  ControlServer(uv_loop_t* loop, const config::SupervisorConfig& config, Handler handler);
  // A binary upgrade: the listening socket the previous image bound, already at its path
  // with its mode and group. Throws std::runtime_error if libuv cannot take it.
  // `file` is the socket file it bound (unknown from an older image: then whatever socket
  // is at the path now).
  ControlServer(uv_loop_t* loop, const config::SupervisorConfig& config, Handler handler, int listening_fd,
                base::SocketFile file = {});
  ~ControlServer();
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;

  void broadcast(const nlohmann::json& event);
  const std::filesystem::path& path() const { return config_.control_socket; }
  // A reload moved the control socket: this one stops taking connections and removes
  // its file; clients already connected are still answered until they leave.
  void stop_listening();
  // A reload changed control_mode/control_group of the same socket path.
  void set_access(mode_t mode, const std::string& group);
  // The gid of `group` ("" = none); throws std::runtime_error when it does not exist.
  static gid_t resolve_group(const std::string& group);
  std::size_t clients() const { return clients_.size(); }
  // The listening socket (-1 once it stopped listening), for the upgrade state.
  int listening_fd() const;
  // The socket file this server bound, removed at the end only while the path names it.
  const base::SocketFile& socket_file() const { return file_; }

  static constexpr std::size_t kMaxLine = 64 * 1024;
  // Requests one client gets answered in one turn of the loop; the rest wait for the
  // next turn, after the traffic and the other clients (a pipelined flood cannot hold the
  // master for seconds).
  static constexpr int kRequestsPerTurn = 8;
  static constexpr std::size_t kMaxClients = 64;
  static constexpr std::size_t kOwnerReserve = 4;  // places only root and the master's user get
  static constexpr std::size_t kMaxPerUser = 16;   // for any other user
  static constexpr std::size_t kMaxPendingWrite = 4 * 1024 * 1024;
  static constexpr std::uint64_t kRequestMs = 5'000;  // from a request's first byte to its newline
  static constexpr std::uint64_t kIdleMs = 60'000;    // after a request (or connecting), no next one
  static constexpr std::chrono::seconds kTrimAfter{10};

 private:
  friend class ControlClient;
  static void on_connection(uv_stream_t* server, int status);
  static void on_read(uv_stream_t* stream, ssize_t n, const uv_buf_t* buf);
  void start_listening();
  void accept_one();
  // A large reply was written: the heap it freed goes back to the kernel kTrimAfter after
  // the last one (control_server.cpp).
  void trim_later();
  bool peer_allowed(int fd, uid_t& uid) const;
  void handle_input(ControlClient& c);
  void arm_timer(ControlClient& c);
  void drop(ControlClient& c);
  struct Crowding {
    std::string message;
    bool full;  // every place is taken (not a quota of other users)
  };
  // Why `c` may not take a place now, or nothing.
  std::optional<Crowding> crowded(const ControlClient& c) const;
  // The admitted client idle the longest with no request begun, no reply unwritten and no
  // events subscribed to; it gives way to a newcomer when every place is taken.
  ControlClient* idlest_client(bool for_privileged) const;
  void start_reading(ControlClient& c);
  // The rate-limited warning of `event` for clients of `uid`.
  log::RepeatedWarning& warning(std::map<uid_t, std::unique_ptr<log::RepeatedWarning>>& by_uid, uid_t uid,
                                const char* event);

  uv_loop_t* loop_;
  Timer trim_timer_;
  // Clients with requests waiting for the next turn (backlog_): one batch each a turn.
  EachTurn backlog_turn_;
  std::vector<std::weak_ptr<ControlClient*>> backlogged_;
  void answer_backlogs();
  config::SupervisorConfig config_;
  base::SocketFile file_;
  Handler handler_;
  uv_pipe_t* listener_ = nullptr;
  gid_t group_ = static_cast<gid_t>(-1);
  std::list<std::unique_ptr<ControlClient>> clients_;
  // One refused user reconnecting in a loop must not flood the log either.
  std::map<uid_t, std::unique_ptr<log::RepeatedWarning>> refused_warnings_;
  std::map<uid_t, std::unique_ptr<log::RepeatedWarning>> crowded_warnings_;
};

}  // namespace forkpool::supervisor
