// SPDX-License-Identifier: Apache-2.0
#include "config/listen_address.hpp"

#include <arpa/inet.h>
#include <sys/un.h>

#include <charconv>

namespace forkpool::config {
namespace {

constexpr std::size_t kMaxUnixPath = sizeof(sockaddr_un::sun_path) - 1;

bool is_ipv4(const std::string& host) {
  in_addr a{};
  return ::inet_pton(AF_INET, host.c_str(), &a) == 1;
}

bool is_ipv6(const std::string& host) {
  in6_addr a{};
  return ::inet_pton(AF_INET6, host.c_str(), &a) == 1;
}

Parsed<ListenAddress> tcp_from_host_port(std::string_view hp, std::string_view prefix) {
  using P = Parsed<ListenAddress>;
  ListenAddress a;
  a.kind = ListenAddress::Kind::Tcp;
  std::string_view port_text;
  if (hp.starts_with('[')) {
    auto close = hp.find(']');
    if (close == std::string_view::npos || close + 1 >= hp.size() || hp[close + 1] != ':')
      return P::fail("an IPv6 address in brackets followed by a port, such as \"[::1]:8080\"");
    a.host = std::string(hp.substr(1, close - 1));
    port_text = hp.substr(close + 2);
    if (!is_ipv6(a.host)) return P::fail("a valid IPv6 address inside the brackets");
    a.ipv6 = true;
  } else {
    auto colon = hp.rfind(':');
    if (colon == std::string_view::npos || colon == 0)
      return P::fail("HOST:PORT, such as \"127.0.0.1:8080\" (IPv6 in brackets: \"[::1]:8080\")");
    a.host = std::string(hp.substr(0, colon));
    port_text = hp.substr(colon + 1);
    if (a.host == "localhost") a.host = "127.0.0.1";
    if (a.host.find(':') != std::string::npos)
      return P::fail("an IPv6 address in brackets, such as \"[::1]:8080\"");
    if (!is_ipv4(a.host))
      return P::fail("an IP address or \"localhost\" as host (names are not resolved), got \"" + a.host + "\"");
  }
  unsigned port = 0;
  auto [ptr, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (port_text.empty() || ec != std::errc{} || ptr != port_text.data() + port_text.size() || port > 65535)
    return P::fail("a port from 0 to 65535 (0 lets the kernel choose)");
  a.port = static_cast<std::uint16_t>(port);
  a.text = std::string(prefix) + (a.ipv6 ? "[" + a.host + "]" : a.host) + ":" + std::to_string(a.port);
  return P::ok(std::move(a));
}

}  // namespace

namespace {

// Every failure names what was written, once.
Parsed<ListenAddress> with_input(Parsed<ListenAddress> p, std::string_view text) {
  if (!p && p.error.find(", got ") == std::string::npos) p.error += ", got \"" + std::string(text) + "\"";
  return p;
}

Parsed<ListenAddress> parse_listen_address_impl(std::string_view text, const std::filesystem::path& base_dir) {
  using P = Parsed<ListenAddress>;
  if (text.starts_with("tcp://")) return tcp_from_host_port(text.substr(6), "tcp://");
  if (text.starts_with("unix:")) {
    std::string_view rest = text.substr(5);
    if (rest.starts_with("//")) rest.remove_prefix(2);  // tolerate unix:///abs/path
    if (rest.empty()) return P::fail("a socket path after \"unix:\"");
    ListenAddress a;
    a.kind = ListenAddress::Kind::Unix;
    if (rest == "@") return P::fail("a name after \"@\" for an abstract socket");
    if (rest.starts_with('@')) {
      a.path = std::string(rest);  // abstract namespace; never touches the file system
    } else {
      std::filesystem::path p(rest);
      a.path = (p.is_absolute() ? p : base_dir / p).lexically_normal();
    }
    if (a.path.native().size() > kMaxUnixPath)
      return P::fail("a Unix socket path of at most " + std::to_string(kMaxUnixPath) + " bytes, got " +
                     std::to_string(a.path.native().size()) + " after resolving it");
    a.text = "unix:" + a.path.string();
    return P::ok(std::move(a));
  }
  return P::fail("an address such as \"tcp://127.0.0.1:8080\", \"tcp://[::1]:8080\" or \"unix:PATH\"");
}

}  // namespace

Parsed<ListenAddress> parse_listen_address(std::string_view text, const std::filesystem::path& base_dir) {
  return with_input(parse_listen_address_impl(text, base_dir), text);
}

Parsed<ListenAddress> parse_host_port(std::string_view text) { return with_input(tcp_from_host_port(text, ""), text); }

}  // namespace forkpool::config
