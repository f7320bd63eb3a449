// SPDX-License-Identifier: Apache-2.0
#include "ctl/commands.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <iostream>

#include "base/printable.hpp"
#include "ctl/client.hpp"
#include "ctl/format.hpp"
#include "ctl/json_access.hpp"
#include "ctl/render_reply.hpp"
#include "ctl/render_status.hpp"
#include "ctl/socket_path.hpp"
#include "ctl/top.hpp"
#include "ctl/upgrade.hpp"
#include "ctl/wait_plans.hpp"

namespace forkpool::ctl {

namespace {

using nlohmann::json;

// Messages may quote what the master was sent or found (names, a worker's text).
void print_error(const std::string& message) {
  std::cerr << "forkpoolctl: " << base::printable(message) << "\n";
}

// No socket to talk to: why, and every place that was looked at.
int no_socket(const SocketChoice& choice) {
  if (!choice.problem.empty() && choice.tried.empty()) {
    print_error("no control socket: " + choice.problem);
    return kExitUsage;
  }
  print_error("no control socket found; tried, in order:");
  for (const auto& t : choice.tried) std::cerr << "  " << base::printable(t) << "\n";
  std::cerr << "give one with -s SOCKET or -c CONFIG, or set FORKPOOL_SOCKET\n";
  return kExitUsage;
}

// A connection problem: the message, and where the socket path came from.
int connection_failed(const SocketChoice& choice, const std::string& message) {
  print_error(message);
  if (choice.source != "-s") print_error("socket path " + choice.path + " taken from " + choice.source);
  return kExitUsage;
}

// Writes the text and flushes, so events reach a pipe as they happen.
void out(const std::string& text) {
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fflush(stdout);
}

int stream_events(const Invocation& inv, Client& client, const Line& first) {
  if (inv.json) out(first.text + "\n");
  const bool colour = !inv.json && colour_wanted(STDOUT_FILENO);
  for (;;) {
    auto line = client.read_line_or_eof(std::nullopt);
    if (!line) {
      print_error("the master closed the event stream");
      return kExitOk;
    }
    out(inv.json ? line->text + "\n" : render_event(line->body, colour));
  }
}

// Prints an error reply; false when `reply` is ok.
bool error_reply(const Invocation& inv, const Line& reply) {
  try {
    expect_ok(reply);
    return false;
  } catch (const ReplyError& e) {
    if (inv.json) out(reply.text + "\n");
    print_error(e.what());
    // A refused reload lists every problem, one "file:line:col: key: message" a line.
    if (const auto errors = reply.body.find("errors");
        !inv.json && errors != reply.body.end() && errors->is_array())
      for (const auto& line : *errors)
        if (line.is_string() && line.get<std::string>() != e.what())
          std::cerr << "  " << base::printable(line.get<std::string>()) << "\n";
    return true;
  }
}

// `restart`, `stop`, `start` without a pool or with "all": one request per pool that the
// command applies to, in the master's order. Pools it does not apply to are skipped
// (start of a running pool), as supervisorctl does.
std::vector<json> expand_all(const json& request, const json& status) {
  const std::string cmd = str_field(request, "cmd");
  std::vector<json> out;
  if (const auto& pools = field(status, "pools"); pools.is_array()) {
    for (const auto& p : pools) {
      if (field(p, "removed").is_boolean() && field(p, "removed").get<bool>()) continue;
      const std::string state = str_field(p, "state");
      const bool applies = cmd == "start"   ? state == "stopped" || state == "failed"
                           : cmd == "stop"  ? state != "stopped"
                                            : state == "running" || state == "starting";
      if (!applies || (cmd == "restart" && u64_field(p, "target") == 0)) continue;
      json one = request;
      one["pool"] = str_field(p, "name");
      out.push_back(std::move(one));
    }
  }
  return out;
}

bool names_all(const json& request) {
  const std::string cmd = str_field(request, "cmd");
  if (cmd != "restart" && cmd != "stop" && cmd != "start") return false;
  const auto& pool = field(request, "pool");
  return pool.is_null() || (pool.is_string() && pool.get<std::string>() == "all");
}

int run_change(const Invocation& inv, const SocketChoice& choice, const json& request) {
  const std::string cmd = str_field(request, "cmd");
  // The connection's first request is the one a crowded master may turn away (ask()).
  std::optional<Client> client;
  // What it was like before: the workers a restart replaces, the pools "all" means.
  json before = json::object();
  if (inv.wait || names_all(request)) {
    auto [opened, first] = Client::ask(choice.path, {{"cmd", "status"}}, inv.timeout, inv.timeout);
    expect_ok(first);
    before = std::move(first.body);
    client.emplace(std::move(opened));
  }

  std::vector<json> requests;
  if (names_all(request)) {
    requests = expand_all(request, before);
    if (requests.empty()) {
      if (!inv.json)
        out(cmd + " all: nothing to do (" +
            (cmd == "start" ? "no pool is stopped or failed" : cmd == "stop" ? "every pool is stopped" : "no pool is running") +
            ")\n");
      return kExitOk;
    }
  } else {
    requests.push_back(request);
  }

  std::vector<WaitPlan> plans;
  int status = kExitOk;
  for (const auto& r : requests) {
    Line reply;
    if (client) {
      client->send(r, inv.timeout);
      reply = client->read_line(inv.timeout);
    } else {
      auto [opened, first] = Client::ask(choice.path, r, inv.timeout, inv.timeout);
      client.emplace(std::move(opened));
      reply = std::move(first);
    }
    if (error_reply(inv, reply)) {
      status = kExitErrorReply;
      continue;
    }
    if (inv.json) out(reply.text + "\n");
    else if (cmd == "reload" || !inv.wait) out(render_reply(r, reply.body));
    if (!inv.wait) continue;
    if (auto plan = wait_plan(r, reply.body, before)) plans.push_back(std::move(*plan));
  }
  if (plans.empty()) return status;
  WaitOptions options;
  options.socket = choice.path;
  options.find_socket = [&inv] {
    return choose_socket({inv.socket, inv.config, {}, "/run/forkpool/forkpool.sock"}).path;
  };
  options.timeout = inv.wait_timeout;
  options.reply_timeout = inv.timeout;
  options.progress = !inv.json;
  options.tty = ::isatty(STDOUT_FILENO) == 1;
  const int waited = wait_for(all_of(cmd + " all", std::move(plans)), options, std::move(*client));
  return status != kExitOk ? status : waited;
}

}  // namespace

// A new command that changes something (upgrade) is added here and gets a plan in
// wait_plans.cpp.
bool waits_for_change(const std::string& cmd) {
  return cmd == "restart" || cmd == "stop" || cmd == "start" || cmd == "scale" || cmd == "reload";
}

int run_request(const Invocation& inv, const json& request) {
  const SocketChoice choice = choose_socket({inv.socket, inv.config, {}, "/run/forkpool/forkpool.sock"});
  if (choice.path.empty()) return no_socket(choice);
  const std::string cmd = request.value("cmd", "");
  try {
    if (waits_for_change(cmd)) return run_change(inv, choice, request);
    // An upgrade is answered once the new binary has run twice (up to 10 s each).
    auto [client, reply] =
        Client::ask(choice.path, request, inv.timeout, cmd == "upgrade" ? std::max(inv.timeout, inv.wait_timeout) : inv.timeout);
    if (error_reply(inv, reply)) return kExitErrorReply;
    if (cmd == "events") return stream_events(inv, client, reply);
    if (cmd == "upgrade") return finish_upgrade(inv, choice.path, client, reply);
    if (inv.json) {
      out(reply.text + "\n");
    } else if (cmd == "status") {
      out(render_status(reply.body, colour_wanted(STDOUT_FILENO)));
    } else {
      out(render_reply(request, reply.body));
    }
    return kExitOk;
  } catch (const ConnectionError& e) {
    return connection_failed(choice, e.what());
  } catch (const ReplyError& e) {
    // Turned away before the request was read (too many control clients).
    print_error(e.what());
    return kExitErrorReply;
  }
}

int run_top_command(const Invocation& inv, bool once, std::chrono::milliseconds interval) {
  const SocketChoice choice = choose_socket({inv.socket, inv.config, {}, "/run/forkpool/forkpool.sock"});
  if (choice.path.empty()) return no_socket(choice);
  TopOptions options;
  options.socket = choice.path;
  options.once = once;
  options.interval = interval;
  options.colour = colour_wanted(STDOUT_FILENO);
  try {
    return run_top(options);
  } catch (const ConnectionError& e) {
    return connection_failed(choice, e.what());
  } catch (const ReplyError& e) {
    print_error(e.what());
    return kExitErrorReply;
  }
}

}  // namespace forkpool::ctl
