#include "ctl/commands.hpp"

#include <unistd.h>

#include <cstdio>
#include <iostream>

#include "base/printable.hpp"
#include "ctl/client.hpp"
#include "ctl/format.hpp"
#include "ctl/render_reply.hpp"
#include "ctl/render_status.hpp"
#include "ctl/socket_path.hpp"
#include "ctl/top.hpp"
#include "ctl/upgrade.hpp"

namespace forkpool::ctl {

namespace {

// Messages may quote what the master was sent or found (names, a worker's text).
void print_error(const std::string& message) {
  std::cerr << "forkpoolctl: " << base::printable(message) << "\n";
}

// A connection problem: the message, where the socket path came from, and why the config
// file did not give one.
int connection_failed(const SocketChoice& choice, const std::string& message) {
  print_error(message);
  if (choice.source != "-s")
    print_error("socket path " + choice.path + " taken from " + choice.source);
  if (!choice.note.empty()) print_error("note: " + choice.note);
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

}  // namespace

int run_request(const Invocation& inv, const nlohmann::json& request) {
  const SocketChoice choice = choose_socket(inv.socket);
  const std::string cmd = request.value("cmd", "");
  try {
    Client client = Client::connect(choice.path, inv.timeout);
    client.send(request, inv.timeout);
    Line reply = client.read_line(inv.timeout);
    try {
      expect_ok(reply);
    } catch (const ReplyError& e) {
      if (inv.json) out(reply.text + "\n");
      print_error(e.what());
      // A refused reload lists every problem, one "file:line:col: key: message" a line.
      if (const auto errors = reply.body.find("errors"); !inv.json && errors != reply.body.end() && errors->is_array())
        for (const auto& line : *errors)
          if (line.is_string() && line.get<std::string>() != e.what())
            std::cerr << "  " << base::printable(line.get<std::string>()) << "\n";
      return kExitErrorReply;
    }
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
  const SocketChoice choice = choose_socket(inv.socket);
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
