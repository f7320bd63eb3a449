// SPDX-License-Identifier: Apache-2.0
#include "supervisor/control/control_server.hpp"

#include <grp.h>
#include <malloc.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <stdexcept>

#include <fmt/format.h>

#include "base/proc_text.hpp"
#include "config/validate.hpp"
#include "supervisor/generation/listeners.hpp"
#include "supervisor/observe/log.hpp"

namespace forkpool::supervisor {
namespace {

constexpr std::size_t kFdsPerMessage = 200;
// A reply at least this long is followed by malloc_trim, kTrimAfter after the last one
// (ControlServer::trim_later).
constexpr std::size_t kLargeReply = 64 * 1024;

struct WriteRequest {
  uv_write_t req;
  std::string data;
  bool close_after;
};

// One read buffer for every client: reads are handled before the next one starts. No
// larger than a request line may be: what a deferral or a backlog leaves unread in a
// client's buffer_ then never exceeds kMaxLine unless a line does.
std::array<char, 65536> g_read_buffer;
static_assert(sizeof g_read_buffer <= ControlServer::kMaxLine);

bool in_supplementary_groups(pid_t pid, gid_t group) {
  const auto status = base::read_proc_text("/proc/" + std::to_string(pid) + "/status");
  if (!status) return false;
  const auto groups = base::status_value(*status, "Groups");
  if (!groups) return false;
  std::string_view rest = *groups;
  while (!rest.empty()) {
    const auto start = rest.find_first_not_of(" \t");
    if (start == std::string_view::npos) break;
    rest.remove_prefix(start);
    gid_t g = 0;
    const auto [end, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), g);
    if (ec != std::errc()) break;
    if (g == group) return true;
    rest.remove_prefix(static_cast<std::size_t>(end - rest.data()));
  }
  return false;
}

}  // namespace

// ---- ControlClient ----

void ControlClient::write_raw(std::string data) {
  if (closing_) return;
  const std::size_t queued = uv_stream_get_write_queue_size(reinterpret_cast<uv_stream_t*>(pipe_));
  if (queued > ControlServer::kMaxPendingWrite) {
    log::warn("control.slow_client", "a control client does not read its replies; closing it");
    close();
    return;
  }
  // Small replies piling up unread (pipelined requests, a client that reads slowly) leave
  // as much heap behind as one large reply.
  if (data.size() >= kLargeReply || queued >= kLargeReply) server_->trim_later();
  auto* w = new WriteRequest{{}, std::move(data), false};
  w->req.data = this;
  uv_buf_t buf = uv_buf_init(w->data.data(), static_cast<unsigned>(w->data.size()));
  const int rc = uv_write(&w->req, reinterpret_cast<uv_stream_t*>(pipe_), &buf, 1, [](uv_write_t* req, int) {
    delete reinterpret_cast<WriteRequest*>(req);
  });
  if (rc != 0) {
    delete w;
    close();
  }
}

void ControlClient::reply(const nlohmann::json& object) {
  write_raw(object.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
}

void ControlClient::reply_text(std::string json_line) {
  json_line += '\n';
  write_raw(std::move(json_line));
}

void ControlClient::error(const std::string& message) { reply({{"ok", false}, {"error", message}}); }

bool ControlClient::send_fds(const nlohmann::json& first, std::span<const int> fds) {
  // Raw sendmsg keeps the fds attached to their line; only safe when libuv has nothing
  // queued for this client, or the order of lines would change.
  if (closing_ || uv_stream_get_write_queue_size(reinterpret_cast<uv_stream_t*>(pipe_)) != 0) return false;
  uv_os_fd_t fd;
  if (uv_fileno(reinterpret_cast<uv_handle_t*>(pipe_), &fd) != 0) return false;
  std::size_t sent = 0;
  bool first_line = true;
  do {
    const std::size_t n = std::min(kFdsPerMessage, fds.size() - sent);
    std::string line = (first_line ? first.dump() : std::string(R"({"fds":true})")) + "\n";
    std::vector<char> control(CMSG_SPACE(sizeof(int) * std::max<std::size_t>(n, 1)));
    iovec iov{line.data(), line.size()};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    if (n > 0) {
      msg.msg_control = control.data();
      msg.msg_controllen = CMSG_SPACE(sizeof(int) * n);
      cmsghdr* c = CMSG_FIRSTHDR(&msg);
      c->cmsg_level = SOL_SOCKET;
      c->cmsg_type = SCM_RIGHTS;
      c->cmsg_len = CMSG_LEN(sizeof(int) * n);
      std::memcpy(CMSG_DATA(c), fds.data() + sent, sizeof(int) * n);
    }
    ssize_t rc;
    do {
      rc = ::sendmsg(fd, &msg, MSG_NOSIGNAL);
    } while (rc < 0 && errno == EINTR);
    if (rc != static_cast<ssize_t>(line.size())) return false;
    sent += n;
    first_line = false;
  } while (sent < fds.size());
  return true;
}

DeferredReply ControlClient::defer() {
  deferred_ = true;
  uv_read_stop(reinterpret_cast<uv_stream_t*>(pipe_));
  uv_timer_stop(timer_);
  DeferredReply d;
  d.client_ = ref_;
  return d;
}

void ControlClient::resume() {
  deferred_ = false;
  if (closing_) return;
  // The idle clock starts at the reply, and so does the deadline of a request that was
  // half here when the reply was deferred: its sender waited for that reply too.
  last_request_ = uv_now(server_->loop_);
  request_started_ = buffer_.empty() ? std::nullopt : std::optional<std::uint64_t>(last_request_);
  // Requests that came with or after the deferred one, then the half-close if it came.
  server_->handle_input(*this);
  if (closing_ || deferred_ || backlog_) return;
  if (eof_)
    close_after_writes();
  else
    server_->start_reading(*this);
}

bool DeferredReply::pending() const {
  const auto c = client_.lock();
  return c && *c != nullptr && (*c)->deferred_ && !(*c)->closing_;
}

ControlClient* DeferredReply::client() const { return pending() ? *client_.lock() : nullptr; }

void DeferredReply::reply(const nlohmann::json& object) {
  const auto c = client_.lock();
  client_.reset();
  if (!c || *c == nullptr || (*c)->closing_) return;
  ControlClient& client = **c;
  client.reply(object);
  // Its next requests run on the next loop turn, never inside the caller (a shutdown
  // refusing the upgrade must not run a queued `scale` halfway through itself). The
  // client's timer is free meanwhile (no deadline runs while a reply is owed); drop()
  // stops it.
  uv_timer_start(client.timer_, [](uv_timer_t* t) {
    auto* owner = static_cast<ControlClient*>(t->data);
    if (owner != nullptr && !owner->closing_) owner->resume();
  }, 0, 0);
}

void ControlClient::close_after_writes() {
  if (closing_) return;
  uv_timer_stop(timer_);
  uv_read_stop(reinterpret_cast<uv_stream_t*>(pipe_));
  auto* req = new uv_shutdown_t;
  req->data = this;
  const int rc = uv_shutdown(req, reinterpret_cast<uv_stream_t*>(pipe_), [](uv_shutdown_t* r, int status) {
    auto* client = static_cast<ControlClient*>(r->data);
    delete r;
    // Cancelled: the handle is being closed and the client may already be freed.
    if (status == UV_ECANCELED || client == nullptr || client->closing_) return;
    client->close();
  });
  if (rc != 0) {
    delete req;
    close();
  }
}

void ControlClient::close() {
  if (closing_) return;
  server_->drop(*this);
}

// ---- ControlServer ----

ControlServer::ControlServer(uv_loop_t* loop, const config::SupervisorConfig& config, Handler handler)
    : loop_(loop), trim_timer_(loop), backlog_turn_(loop), config_(config), handler_(std::move(handler)) {
  const std::string path = config_.control_socket.string();
  group_ = resolve_group(config_.control_group);
  prepare_socket_path(config_.control_socket);
  listener_ = new uv_pipe_t;
  uv_pipe_init(loop_, listener_, 0);
  listener_->data = this;
  // Created with no permissions at all, then opened up to control_mode: never briefly
  // wider than configured.
  // Bound here rather than by uv_pipe_bind, which reports a missing folder (ENOENT) as
  // EACCES: the operator gets the errno of bind(2) itself.
  std::string failure;
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) {
    failure = std::string("socket(AF_UNIX): ") + std::strerror(errno);
  } else {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, path.c_str(), std::min(path.size(), sizeof(addr.sun_path) - 1));
    const mode_t old_umask = ::umask(0777);
    const int brc = ::bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr));
    const int err = errno;
    ::umask(old_umask);
    if (brc != 0) {
      failure = std::strerror(err);
      if (err == ENOENT) failure += " (the folder " + config_.control_socket.parent_path().string() + " does not exist)";
      ::close(fd);
    } else if (const int orc = uv_pipe_open(listener_, fd); orc != 0) {
      failure = std::string("uv_pipe_open: ") + uv_strerror(orc);
      ::close(fd);
      ::unlink(path.c_str());
    }
  }
  if (!failure.empty()) {
    uv_close(reinterpret_cast<uv_handle_t*>(listener_), [](uv_handle_t* h) { delete reinterpret_cast<uv_pipe_t*>(h); });
    listener_ = nullptr;
    throw std::runtime_error("bind control socket " + path + ": " + failure);
  }
  file_ = base::SocketFile::at(path.c_str());
  if (group_ != static_cast<gid_t>(-1) && ::chown(path.c_str(), static_cast<uid_t>(-1), group_) != 0)
    log::warn("control.chown", "chown {} to group {}: {}", path, config_.control_group, std::strerror(errno));
  if (::chmod(path.c_str(), config_.control_mode) != 0)
    log::warn("control.chmod", "chmod {} {:o}: {}", path, config_.control_mode, std::strerror(errno));
  start_listening();
  log::info("control.listen", "control socket {} (mode {:04o}{})", path, config_.control_mode,
            config_.control_group.empty() ? "" : ", group " + config_.control_group);
}

ControlServer::ControlServer(uv_loop_t* loop, const config::SupervisorConfig& config, Handler handler,
                             int listening_fd, base::SocketFile file)
    : loop_(loop), trim_timer_(loop), backlog_turn_(loop), config_(config),
      file_(file.known ? file : base::SocketFile::at(config.control_socket.c_str())), handler_(std::move(handler)) {
  group_ = resolve_group(config_.control_group);
  listener_ = new uv_pipe_t;
  uv_pipe_init(loop_, listener_, 0);
  listener_->data = this;
  if (const int rc = uv_pipe_open(listener_, listening_fd); rc != 0) {
    uv_close(reinterpret_cast<uv_handle_t*>(listener_), [](uv_handle_t* h) { delete reinterpret_cast<uv_pipe_t*>(h); });
    listener_ = nullptr;
    throw std::runtime_error("control socket " + config_.control_socket.string() + ": " + uv_strerror(rc));
  }
  start_listening();
}

void ControlServer::start_listening() {
  const int rc = uv_listen(reinterpret_cast<uv_stream_t*>(listener_), 128, &ControlServer::on_connection);
  if (rc != 0) throw std::runtime_error("listen on control socket " + config_.control_socket.string() + ": " + uv_strerror(rc));
}

int ControlServer::listening_fd() const {
  uv_os_fd_t fd = -1;
  if (listener_ == nullptr || uv_fileno(reinterpret_cast<const uv_handle_t*>(listener_), &fd) != 0) return -1;
  return fd;
}

void ControlServer::trim_later() {
  // A large reply (status of a big pool) is built from heap blocks that are all free again
  // once it is written, in the middle of the heap where free() cannot give them back:
  // without a trim, a status of 1,000 workers leaves ~1.8 MiB resident in the master
  // (docs/performance.md, master memory). Trimmed at once, though, every status refaults
  // those pages (a third of its time with 1,000 workers), so the trim waits until large
  // replies stop: a dashboard or top polling status keeps its pages, a single request gives
  // them back 10 s later.
  trim_timer_.start(kTrimAfter, [] { ::malloc_trim(0); });
}

ControlServer::~ControlServer() {
  while (!clients_.empty()) drop(*clients_.front());
  stop_listening();
}

gid_t ControlServer::resolve_group(const std::string& name) {
  if (name.empty()) return static_cast<gid_t>(-1);
  if (const auto id = config::numeric_id(name)) return *id;
  if (group* g = ::getgrnam(name.c_str())) return g->gr_gid;
  throw std::runtime_error("control_group \"" + name + "\" does not exist");
}

void ControlServer::stop_listening() {
  if (listener_ == nullptr) return;
  listener_->data = nullptr;
  uv_close(reinterpret_cast<uv_handle_t*>(listener_), [](uv_handle_t* h) { delete reinterpret_cast<uv_pipe_t*>(h); });
  listener_ = nullptr;
  // Only while the path still names the socket bound here: moved away, and bound again by
  // another master, it is that master's now.
  file_.unlink_if_named_by(config_.control_socket.c_str());
}

void ControlServer::set_access(mode_t mode, const std::string& group_name) {
  const std::string path = config_.control_socket.string();
  group_ = resolve_group(group_name);
  config_.control_mode = mode;
  config_.control_group = group_name;
  if (::chown(path.c_str(), static_cast<uid_t>(-1), group_ == static_cast<gid_t>(-1) ? ::getegid() : group_) != 0)
    log::warn("control.chown", "chown {} to group {}: {}", path, group_name, std::strerror(errno));
  if (::chmod(path.c_str(), mode) != 0)
    log::warn("control.chmod", "chmod {} {:o}: {}", path, mode, std::strerror(errno));
}

void ControlServer::on_connection(uv_stream_t* server, int status) {
  auto* self = static_cast<ControlServer*>(server->data);
  if (self == nullptr || status < 0) return;
  self->accept_one();
}

bool ControlServer::peer_allowed(int fd, uid_t& uid) const {
  ucred cred{};
  socklen_t len = sizeof cred;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return false;
  uid = cred.uid;
  if (cred.uid == 0 || cred.uid == ::geteuid()) return true;
  if (group_ == static_cast<gid_t>(-1)) return false;
  return cred.gid == group_ || in_supplementary_groups(cred.pid, group_);
}

void ControlServer::accept_one() {
  auto client = std::make_unique<ControlClient>();
  client->server_ = this;
  client->pipe_ = new uv_pipe_t;
  uv_pipe_init(loop_, client->pipe_, 0);
  client->timer_ = new uv_timer_t;
  uv_timer_init(loop_, client->timer_);
  clients_.push_front(std::move(client));
  ControlClient& c = *clients_.front();
  c.self_ = clients_.begin();
  c.pipe_->data = &c;
  c.timer_->data = &c;
  if (uv_accept(reinterpret_cast<uv_stream_t*>(listener_), reinterpret_cast<uv_stream_t*>(c.pipe_)) != 0) {
    drop(c);
    return;
  }
  uv_os_fd_t fd = -1;
  uv_fileno(reinterpret_cast<uv_handle_t*>(c.pipe_), &fd);
  uid_t uid = 0;
  if (!peer_allowed(fd, uid)) {
    warning(refused_warnings_, uid, "control.refused").warn(fmt::format("uid {} refused", uid), [&] {
      return fmt::format("refused a control client with uid {}: not root, not the master's user{}", uid,
                         group_ == static_cast<gid_t>(-1) ? "" : ", not in control_group");
    });
    c.error("permission denied");
    c.close_after_writes();
    return;
  }
  c.uid_ = uid;
  c.privileged_ = uid == 0 || uid == ::geteuid();
  // Every place taken: an idle client gives way, the way an HTTP server closes an idle
  // keep-alive connection, so silent connections cannot lock the operator out.
  if (auto why = crowded(c); why && why->full) {
    if (ControlClient* idlest = idlest_client(c.privileged_)) {
      log::debug(
          "control.evicted",
          "closed the control client of uid {} idle for {} ms to make room for one of uid {}",
          idlest->uid_, uv_now(loop_) - idlest->last_request_, uid);
      idlest->error("closed to make room for another client: this one was idle the longest");
      idlest->close();
    }
  }
  if (auto why = crowded(c)) {
    warning(crowded_warnings_, uid, "control.too_many_clients")
        .warn(fmt::format("uid {} turned away", uid), [&] {
          return "turned away a control client with uid " + std::to_string(uid) + ": " +
                 why->message;
        });
    c.error(why->message);
    // Written before closing, so the client (forkpoolctl) can say why it was turned away.
    c.close_after_writes();
    return;
  }
  c.admitted_ = true;
  c.last_request_ = uv_now(loop_);
  start_reading(c);
  arm_timer(c);
}

void ControlServer::start_reading(ControlClient& c) {
  uv_read_start(
      reinterpret_cast<uv_stream_t*>(c.pipe_),
      [](uv_handle_t*, size_t, uv_buf_t* buf) { *buf = uv_buf_init(g_read_buffer.data(), g_read_buffer.size()); },
      &ControlServer::on_read);
}

std::optional<ControlServer::Crowding> ControlServer::crowded(const ControlClient& c) const {
  std::size_t all = 0, others = 0, same_user = 0;
  for (const auto& other : clients_) {
    if (other.get() == &c || !other->admitted_ || other->closing_) continue;
    ++all;
    if (!other->privileged_) ++others;
    if (other->uid_ == c.uid_) ++same_user;
  }
  // The quotas of other users first: an idle client gives way for a newcomer only when
  // the newcomer is within them.
  if (!c.privileged_ && same_user >= kMaxPerUser)
    return Crowding{"too many control clients of uid " + std::to_string(c.uid_) + " (at most " +
                        std::to_string(kMaxPerUser) + " a user)",
                    false};
  if (!c.privileged_ && others >= kMaxClients - kOwnerReserve)
    return Crowding{"too many control clients (the last " + std::to_string(kOwnerReserve) +
                        " places are kept for root and the master's user)",
                    false};
  if (all >= kMaxClients)
    return Crowding{
        "too many control clients (at most " + std::to_string(kMaxClients) + "), none of them idle",
        true};
  return std::nullopt;
}

ControlClient* ControlServer::idlest_client(bool for_privileged) const {
  ControlClient* idlest = nullptr;
  for (const auto& other : clients_) {
    const ControlClient& o = *other;
    // Another user makes room only among other users' clients: never by closing an
    // operator's (root's or the master's user's) idle connection.
    if (!for_privileged && o.privileged_) continue;
    if (!o.admitted_ || o.closing_ || o.subscribed_ || o.deferred_ || o.request_started_ || !o.buffer_.empty() ||
        uv_stream_get_write_queue_size(reinterpret_cast<const uv_stream_t*>(o.pipe_)) != 0)
      continue;
    // Newest first in clients_: on a tie the older connection wins.
    if (idlest == nullptr || o.last_request_ <= idlest->last_request_) idlest = other.get();
  }
  return idlest;
}

log::RepeatedWarning& ControlServer::warning(std::map<uid_t, std::unique_ptr<log::RepeatedWarning>>& by_uid,
                                             uid_t uid, const char* event) {
  // Bounded: as many uids as can reach the socket, and forgotten (summed up) past that.
  if (by_uid.size() >= 256 && by_uid.count(uid) == 0) by_uid.clear();
  auto& w = by_uid[uid];
  if (!w) w = std::make_unique<log::RepeatedWarning>(loop_, event);
  return *w;
}

void ControlServer::on_read(uv_stream_t* stream, ssize_t n, const uv_buf_t* buf) {
  auto* c = static_cast<ControlClient*>(stream->data);
  if (c == nullptr || c->closing_) return;
  if (n == UV_EOF) {
    // The client sent everything it will (a half-close, e.g. `nc -N`): answer what
    // arrived complete, then close once the replies are written.
    c->server_->handle_input(*c);
    if (c->closing_) return;
    if (c->deferred_ || c->backlog_)
      c->eof_ = true;  // closed once the owed reply is written, or the waiting requests answered
    else
      c->close_after_writes();
    return;
  }
  if (n < 0) {
    c->close();
    return;
  }
  // The deadline of a request runs from its first byte; more bytes do not extend it.
  if (!c->request_started_ && n > 0) c->request_started_ = uv_now(c->server_->loop_);
  c->buffer_.append(buf->base, static_cast<std::size_t>(n));
  c->server_->handle_input(*c);
}

void ControlServer::handle_input(ControlClient& c) {
  std::size_t start = 0;
  bool completed = false;  // a request line, not just empty lines
  bool more = false;       // complete requests left for the next turn
  int budget = kRequestsPerTurn;
  while (!c.closing_ && !c.deferred_) {
    const auto nl = c.buffer_.find('\n', start);
    if (nl == std::string::npos) break;
    std::string_view line(c.buffer_.data() + start, nl - start);
    if (!line.empty() && line != "\r" && budget == 0) {
      more = true;
      break;
    }
    start = nl + 1;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) continue;
    completed = true;
    --budget;
    if (line.size() > kMaxLine) {
      c.error("request line longer than " + std::to_string(kMaxLine) + " bytes");
      c.close();
      return;
    }
    nlohmann::json request;
    try {
      request = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      c.error(std::string("malformed request: not JSON (") + e.what() + ")");
      continue;
    }
    if (!request.is_object() || !request.contains("cmd") || !request["cmd"].is_string()) {
      c.error("malformed request: expected a JSON object with a string \"cmd\"");
      continue;
    }
    handler_(c, request);
  }
  if (c.closing_) return;
  c.buffer_.erase(0, start);
  if (more) {
    // The rest on the next turn of the loop, after what else is due (connections, the
    // workers' messages, other clients); nothing more is read from this one meanwhile,
    // and no deadline runs while the master owes the answers.
    c.backlog_ = true;
    uv_read_stop(reinterpret_cast<uv_stream_t*>(c.pipe_));
    uv_timer_stop(c.timer_);
    backlogged_.push_back(c.ref_);
    backlog_turn_.start([this] { answer_backlogs(); });
    return;
  }
  if (c.buffer_.size() > kMaxLine) {
    c.error("request line longer than " + std::to_string(kMaxLine) + " bytes");
    c.close();
    return;
  }
  if (completed) {
    // The next request's clock starts now if part of it is here already.
    c.last_request_ = uv_now(loop_);
    c.request_started_ = c.buffer_.empty() ? std::nullopt : std::optional<std::uint64_t>(c.last_request_);
  }
  arm_timer(c);
}

void ControlServer::answer_backlogs() {
  // One batch for each client that had requests waiting; those with more come back.
  std::vector<std::weak_ptr<ControlClient*>> turn;
  turn.swap(backlogged_);
  for (const auto& ref : turn) {
    const auto held = ref.lock();
    if (!held || *held == nullptr || (*held)->closing_) continue;
    ControlClient& c = **held;
    c.backlog_ = false;
    handle_input(c);
    if (c.closing_ || c.deferred_ || c.backlog_) continue;
    if (c.eof_)
      c.close_after_writes();
    else
      start_reading(c);
  }
  if (backlogged_.empty()) backlog_turn_.stop();
}

void ControlServer::arm_timer(ControlClient& c) {
  if (c.deferred_) {  // the master owes the reply: nothing is due from the client
    uv_timer_stop(c.timer_);
    return;
  }
  // Fixed deadlines, not silence timers: a byte or an empty line every few seconds must not
  // keep a place for ever (a slowloris). Streaming clients may stay silent for ever.
  std::uint64_t deadline = 0;
  if (c.request_started_) {
    deadline = *c.request_started_ + kRequestMs;
  } else if (!c.subscribed_) {
    deadline = c.last_request_ + kIdleMs;
  } else {
    uv_timer_stop(c.timer_);
    return;
  }
  const std::uint64_t now = uv_now(loop_);
  uv_timer_start(c.timer_, [](uv_timer_t* t) {
    auto* client = static_cast<ControlClient*>(t->data);
    if (client == nullptr || client->closing_) return;
    client->error(client->request_started_ ? "incomplete request line; timed out" : "idle for too long");
    client->close();
  }, deadline > now ? deadline - now : 0, 0);
}

void ControlServer::drop(ControlClient& c) {
  if (c.closing_ && c.pipe_ == nullptr) return;
  c.closing_ = true;
  c.ref_.reset();  // a reply still deferred goes nowhere
  auto it = c.self_;
  std::unique_ptr<ControlClient> owned = std::move(*it);
  clients_.erase(it);
  // Both handles close asynchronously; the client is freed when the last one has.
  auto* raw = owned.release();
  raw->pipe_->data = nullptr;
  raw->timer_->data = raw;
  uv_timer_stop(raw->timer_);
  uv_close(reinterpret_cast<uv_handle_t*>(raw->pipe_), [](uv_handle_t* h) { delete reinterpret_cast<uv_pipe_t*>(h); });
  uv_close(reinterpret_cast<uv_handle_t*>(raw->timer_), [](uv_handle_t* h) {
    delete static_cast<ControlClient*>(h->data);
    delete reinterpret_cast<uv_timer_t*>(h);
  });
  raw->pipe_ = nullptr;
}

void ControlServer::broadcast(const nlohmann::json& event) {
  std::string line;
  for (auto it = clients_.begin(); it != clients_.end();) {
    ControlClient& c = **it;
    ++it;  // write_raw may drop the client
    if (!c.subscribed_) continue;
    if (line.empty()) line = event.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
    c.write_raw(line);
  }
}

}  // namespace forkpool::supervisor
