// SPDX-License-Identifier: Apache-2.0
// Durations, sizes, octal modes, listen addresses, signal names and typo suggestions:
// the small parsers the config loader is built from.

#include <catch2/catch.hpp>

#include <sys/resource.h>

#include <csignal>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "config/listen_address.hpp"
#include "config/names.hpp"
#include "config/suggest.hpp"
#include "config/units.hpp"

namespace cfg = forkpool::config;
using cfg::Duration;

namespace {

std::int64_t ms(std::string_view text) {
  auto p = cfg::parse_duration(text);
  INFO("duration \"" << std::string(text) << "\": " << p.error);
  REQUIRE(p);
  return p.value->count();
}

std::uint64_t bytes(std::string_view text) {
  auto p = cfg::parse_size(text);
  INFO("size \"" << std::string(text) << "\": " << p.error);
  REQUIRE(p);
  return *p.value;
}

const std::filesystem::path kBase = "/srv/app";

}  // namespace

TEST_CASE("config units: durations with every unit", "[config][units]") {
  CHECK(ms("250ms") == 250);
  CHECK(ms("30s") == 30'000);
  CHECK(ms("5m") == 300'000);
  CHECK(ms("2h") == 7'200'000);
  CHECK(ms("1.5s") == 1'500);
  CHECK(ms("0.25s") == 250);
  CHECK(ms("1.5m") == 90'000);
  CHECK(ms("0.001s") == 1);
  CHECK(ms("0") == 0);
  CHECK(ms("0ms") == 0);
  CHECK(ms("0s") == 0);
  CHECK(ms("9223372036854775807ms") == INT64_MAX);
}

TEST_CASE("config units: bad durations are rejected with a reason", "[config][units]") {
  for (const char* bad : {"100", "1.5ms", "", "-1s", "s", "ms", "1.s", "1..5s", "1.5.5s", "1 s", " 1s",
                          "1s ", "1sec", "1S", "1d", "1e3s", "0.0001s", "+1s", "1,5s", "abc"}) {
    INFO("input \"" << bad << "\"");
    auto p = cfg::parse_duration(bad);
    CHECK_FALSE(p);
    CHECK_FALSE(p.error.empty());
  }
}

TEST_CASE("config units: duration overflow is rejected and not wrapped", "[config][units]") {
  CHECK_FALSE(cfg::parse_duration("9223372036854775808ms"));   // INT64_MAX + 1
  CHECK_FALSE(cfg::parse_duration("18446744073709551616ms"));  // UINT64_MAX + 1
  CHECK_FALSE(cfg::parse_duration("99999999999999999999h"));
  CHECK_FALSE(cfg::parse_duration("2562047788015216h"));  // fits uint64 ms, not int64
  CHECK_FALSE(cfg::parse_duration("18446744073709551615h"));
  CHECK_FALSE(cfg::parse_duration("1.00000000000000000000001s"));
}

TEST_CASE("config units: format_duration picks the largest exact unit", "[config][units]") {
  CHECK(cfg::format_duration(Duration{0}) == "0");
  CHECK(cfg::format_duration(Duration{1}) == "1ms");
  CHECK(cfg::format_duration(Duration{1'500}) == "1500ms");
  CHECK(cfg::format_duration(Duration{30'000}) == "30s");
  CHECK(cfg::format_duration(Duration{90'000}) == "90s");
  CHECK(cfg::format_duration(Duration{60'000}) == "1m");
  CHECK(cfg::format_duration(Duration{3'600'000}) == "1h");
  CHECK(cfg::format_duration(Duration{7'260'000}) == "121m");
}

TEST_CASE("config units: durations round trip through format and parse", "[config][units]") {
  for (std::int64_t v : std::initializer_list<std::int64_t>{0, 1, 999, 1'000, 1'001, 59'999, 60'000,
                                                            3'600'000, 86'400'000, 123'456'789, INT64_MAX}) {
    const std::string text = cfg::format_duration(Duration{v});
    INFO(v << " -> " << text);
    CHECK(ms(text) == v);
  }
}

TEST_CASE("config units: sizes with binary units", "[config][units]") {
  CHECK(bytes("0") == 0);
  CHECK(bytes("100B") == 100);
  CHECK(bytes("1KiB") == 1024);
  CHECK(bytes("512MiB") == 512ull << 20);
  CHECK(bytes("2GiB") == 2ull << 30);
  CHECK(bytes("3TiB") == 3ull << 40);
  CHECK(bytes("64K") == 64ull << 10);
  CHECK(bytes("5M") == 5ull << 20);
  CHECK(bytes("7G") == 7ull << 30);
  CHECK(bytes("1.5KiB") == 1536);
  CHECK(bytes("0.5MiB") == 512ull << 10);
}

TEST_CASE("config units: bad sizes are rejected", "[config][units]") {
  for (const char* bad : {"", "100", "-1B", "1.5B", "1kib", "1KB", "1 MiB", "MiB", "1.KiB", "1PiB",
                          "18446744073709551616B", "16777216TiB", "1e3B", "0.1B"}) {
    INFO("input \"" << bad << "\"");
    auto p = cfg::parse_size(bad);
    CHECK_FALSE(p);
    CHECK_FALSE(p.error.empty());
  }
}

TEST_CASE("config units: format_size and its round trip", "[config][units]") {
  CHECK(cfg::format_size(0) == "0");
  CHECK(cfg::format_size(1) == "1B");
  CHECK(cfg::format_size(1000) == "1000B");
  CHECK(cfg::format_size(1024) == "1KiB");
  CHECK(cfg::format_size(1536) == "1536B");
  CHECK(cfg::format_size(512ull << 20) == "512MiB");
  CHECK(cfg::format_size(2ull << 30) == "2GiB");
  CHECK(cfg::format_size(5ull << 40) == "5TiB");
  for (std::uint64_t v : std::initializer_list<std::uint64_t>{0, 1, 1023, 1024, 1025, 3ull << 20,
                                                             (1ull << 40) + 1024, UINT64_MAX,
                                                             UINT64_MAX - (UINT64_MAX % 1024)}) {
    const std::string text = cfg::format_size(v);
    INFO(v << " -> " << text);
    CHECK(bytes(text) == v);
  }
}

TEST_CASE("config units: octal modes", "[config][units]") {
  auto mode = [](std::string_view t) {
    auto p = cfg::parse_octal_mode(t);
    REQUIRE(p);
    return *p.value;
  };
  CHECK(mode("0600") == 0600);
  CHECK(mode("022") == 022);
  CHECK(mode("0777") == 0777);
  CHECK(mode("000") == 0);
  CHECK(mode("0") == 0);
  for (const char* bad : {"", "0800", "0999", "1777", "07777", "rw-", "-022", "0x1ff", "6 00"}) {
    INFO("input \"" << bad << "\"");
    CHECK_FALSE(cfg::parse_octal_mode(bad));
  }
  CHECK(cfg::format_octal_mode(0600) == "0600");
  CHECK(cfg::format_octal_mode(022) == "0022");
  CHECK(cfg::format_octal_mode(0) == "0000");
  for (mode_t m = 0; m <= 0777; ++m) {
    auto p = cfg::parse_octal_mode(cfg::format_octal_mode(m));
    REQUIRE(p);
    REQUIRE(*p.value == m);
  }
}

TEST_CASE("config units: tcp listen addresses", "[config][units][listen]") {
  auto ok = [](std::string_view t) {
    auto p = cfg::parse_listen_address(t, kBase);
    INFO("address \"" << std::string(t) << "\": " << p.error);
    REQUIRE(p);
    return *p.value;
  };
  auto a = ok("tcp://127.0.0.1:8080");
  CHECK(a.kind == cfg::ListenAddress::Kind::Tcp);
  CHECK(a.host == "127.0.0.1");
  CHECK_FALSE(a.ipv6);
  CHECK(a.port == 8080);
  CHECK(a.text == "tcp://127.0.0.1:8080");

  auto v6 = ok("tcp://[::1]:443");
  CHECK(v6.ipv6);
  CHECK(v6.host == "::1");
  CHECK(v6.port == 443);
  CHECK(v6.text == "tcp://[::1]:443");

  auto any6 = ok("tcp://[::]:0");
  CHECK(any6.host == "::");
  CHECK(any6.port == 0);

  auto local = ok("tcp://localhost:9000");
  CHECK(local.host == "127.0.0.1");
  CHECK(local.text == "tcp://127.0.0.1:9000");

  CHECK(ok("tcp://0.0.0.0:0").port == 0);
  CHECK(ok("tcp://0.0.0.0:65535").port == 65535);
}

TEST_CASE("config units: bad tcp listen addresses", "[config][units][listen]") {
  for (const char* bad :
       {"tcp://127.0.0.1:65536", "tcp://127.0.0.1:-1", "tcp://127.0.0.1:", "tcp://127.0.0.1",
        "tcp://127.0.0.1:http", "tcp://127.0.0.1:80x", "tcp://:80", "tcp://example.com:80",
        "tcp://::1:80", "tcp://[::1]", "tcp://[::1]:", "tcp://[::1]80", "tcp://[127.0.0.1]:80",
        "tcp://[::1:80", "tcp://256.0.0.1:80", "127.0.0.1:80", "udp://127.0.0.1:80", "http://x:1", "",
        "tcp://"}) {
    INFO("input \"" << bad << "\"");
    auto p = cfg::parse_listen_address(bad, kBase);
    CHECK_FALSE(p);
    CHECK_FALSE(p.error.empty());
  }
  // A host name is refused with a reason that says names are not resolved.
  auto named = cfg::parse_listen_address("tcp://example.com:80", kBase);
  CHECK_THAT(named.error, Catch::Contains("not resolved"));
}

TEST_CASE("config units: unix listen addresses", "[config][units][listen]") {
  auto ok = [](std::string_view t) {
    auto p = cfg::parse_listen_address(t, kBase);
    INFO("address \"" << std::string(t) << "\": " << p.error);
    REQUIRE(p);
    REQUIRE(p.value->kind == cfg::ListenAddress::Kind::Unix);
    return *p.value;
  };
  CHECK(ok("unix:/run/app.sock").path == "/run/app.sock");
  CHECK(ok("unix:/run/app.sock").text == "unix:/run/app.sock");
  CHECK(ok("unix:app.sock").path == "/srv/app/app.sock");
  CHECK(ok("unix:app.sock").text == "unix:/srv/app/app.sock");
  CHECK(ok("unix:sub/../app.sock").path == "/srv/app/app.sock");
  CHECK(ok("unix:///run/x.sock").path == "/run/x.sock");
  auto abstract = ok("unix:@forkpool-web");
  CHECK(abstract.path == "@forkpool-web");
  CHECK(abstract.text == "unix:@forkpool-web");

  CHECK_FALSE(cfg::parse_listen_address("unix:", kBase));
  CHECK_FALSE(cfg::parse_listen_address("unix://", kBase));
}

TEST_CASE("config units: unix socket path length limit", "[config][units][listen]") {
  // sun_path holds 108 bytes including the terminating NUL.
  const std::string p107 = "/" + std::string(106, 'a');
  const std::string p108 = "/" + std::string(107, 'a');
  CHECK(cfg::parse_listen_address("unix:" + p107, kBase));
  auto too_long = cfg::parse_listen_address("unix:" + p108, kBase);
  CHECK_FALSE(too_long);
  CHECK_THAT(too_long.error, Catch::Contains("107"));
  // A relative path counts after it is resolved against the config's folder.
  const std::string rel = std::string(107 - kBase.native().size() - 1, 'r');
  CHECK(cfg::parse_listen_address("unix:" + rel, kBase));
  CHECK_FALSE(cfg::parse_listen_address("unix:" + rel + "x", kBase));
  CHECK_FALSE(cfg::parse_listen_address("unix:@" + std::string(200, 'z'), kBase));
}

TEST_CASE("config units: host:port for metrics_listen", "[config][units][listen]") {
  auto p = cfg::parse_host_port("127.0.0.1:9464");
  REQUIRE(p);
  CHECK(p.value->text == "127.0.0.1:9464");
  auto v6 = cfg::parse_host_port("[::1]:9464");
  REQUIRE(v6);
  CHECK(v6.value->text == "[::1]:9464");
  auto local = cfg::parse_host_port("localhost:0");
  REQUIRE(local);
  CHECK(local.value->text == "127.0.0.1:0");
  CHECK_FALSE(cfg::parse_host_port("tcp://127.0.0.1:9464"));
  CHECK_FALSE(cfg::parse_host_port("9464"));
  CHECK_FALSE(cfg::parse_host_port("metrics.example:9464"));
  CHECK_FALSE(cfg::parse_host_port("127.0.0.1:70000"));
}

TEST_CASE("config units: signal names", "[config][units][names]") {
  CHECK(cfg::signal_from_name("TERM") == SIGTERM);
  CHECK(cfg::signal_from_name("SIGTERM") == SIGTERM);
  CHECK(cfg::signal_from_name("15") == SIGTERM);
  CHECK(cfg::signal_from_name("KILL") == SIGKILL);
  CHECK(cfg::signal_from_name("INT") == SIGINT);
  CHECK(cfg::signal_from_name("QUIT") == SIGQUIT);
  CHECK(cfg::signal_from_name("HUP") == SIGHUP);
  CHECK(cfg::signal_from_name("USR1") == SIGUSR1);
  CHECK(cfg::signal_from_name("SIGUSR2") == SIGUSR2);
  CHECK(cfg::signal_from_name("WINCH") == SIGWINCH);
  CHECK(cfg::signal_from_name("1") == 1);
  CHECK(cfg::signal_from_name(std::to_string(NSIG - 1)) == NSIG - 1);
  for (const char* bad : {"", "SIG", "term", "SIGterm", "TREM", "0", "-15", "15x", "SIGSIGTERM", " TERM",
                          "99999999999999999999"}) {
    INFO("input \"" << bad << "\"");
    CHECK_FALSE(cfg::signal_from_name(bad).has_value());
  }
  CHECK_FALSE(cfg::signal_from_name(std::to_string(NSIG)).has_value());

  CHECK(cfg::signal_name(SIGTERM) == "TERM");
  CHECK(cfg::signal_name(SIGKILL) == "KILL");
  CHECK(cfg::signal_name(SIGQUIT) == "QUIT");
  CHECK(cfg::signal_name(40) == "40");
  for (int s = 1; s < NSIG; ++s) {
    INFO("signal " << s);
    CHECK(cfg::signal_from_name(cfg::signal_name(s)) == s);
  }
}

TEST_CASE("config units: enum and rlimit names round trip", "[config][units][names]") {
  for (auto d : {cfg::Dispatch::Master, cfg::Dispatch::Shared})
    CHECK(cfg::dispatch_from_string(cfg::to_string(d)) == d);
  for (auto b : {cfg::Balance::LeastBusy, cfg::Balance::RoundRobin})
    CHECK(cfg::balance_from_string(cfg::to_string(b)) == b);
  for (auto r : {cfg::Readiness::Exec, cfg::Readiness::Notify, cfg::Readiness::Protocol})
    CHECK(cfg::readiness_from_string(cfg::to_string(r)) == r);
  for (auto f : {cfg::LogFormat::Text, cfg::LogFormat::Json})
    CHECK(cfg::log_format_from_string(cfg::to_string(f)) == f);
  CHECK(cfg::to_string(cfg::Balance::LeastBusy) == "least-busy");
  CHECK_FALSE(cfg::balance_from_string("least_busy"));
  CHECK(cfg::log_levels().size() == 7);
  for (auto l : cfg::log_levels()) CHECK(cfg::is_log_level(l));
  CHECK_FALSE(cfg::is_log_level("INFO"));
  CHECK_FALSE(cfg::is_log_level("warning"));

  for (const auto& r : cfg::rlimit_names()) {
    CHECK(cfg::find_rlimit(r.name) == &r);
    CHECK(cfg::find_rlimit(r.resource) == &r);
  }
  REQUIRE(cfg::find_rlimit("nofile") != nullptr);
  CHECK(cfg::find_rlimit("nofile")->resource == RLIMIT_NOFILE);
  CHECK_FALSE(cfg::find_rlimit("nofile")->bytes);
  CHECK(cfg::find_rlimit("as")->bytes);
  CHECK(cfg::find_rlimit("nofil") == nullptr);
}

TEST_CASE("config units: edit_distance counts a transposition as one edit", "[config][units][suggest]") {
  CHECK(cfg::edit_distance("", "") == 0);
  CHECK(cfg::edit_distance("abc", "abc") == 0);
  CHECK(cfg::edit_distance("", "abc") == 3);
  CHECK(cfg::edit_distance("abc", "") == 3);
  CHECK(cfg::edit_distance("ab", "ba") == 1);
  CHECK(cfg::edit_distance("max_infilght", "max_inflight") == 1);
  CHECK(cfg::edit_distance("max_infligt", "max_inflight") == 1);
  CHECK(cfg::edit_distance("kitten", "sitting") == 3);
  CHECK(cfg::edit_distance("workers", "wrokers") == 1);
  CHECK(cfg::edit_distance("flaw", "lawn") == 2);
  CHECK(cfg::edit_distance("abcd", "badc") == 2);
}

TEST_CASE("config units: closest_match suggests plausible typos only", "[config][units][suggest]") {
  const std::vector<std::string> keys{"workers", "min_workers", "max_workers", "max_inflight",
                                      "max_requests", "backlog"};
  CHECK(cfg::closest_match("max_infligt", keys) == std::optional<std::string>("max_inflight"));
  CHECK(cfg::closest_match("max_infilght", keys) == std::optional<std::string>("max_inflight"));
  CHECK(cfg::closest_match("wrokers", keys) == std::optional<std::string>("workers"));
  CHECK(cfg::closest_match("backlg", keys) == std::optional<std::string>("backlog"));
  CHECK_FALSE(cfg::closest_match("completely_unrelated", keys).has_value());
  CHECK_FALSE(cfg::closest_match("zz", keys).has_value());
  CHECK_FALSE(cfg::closest_match("anything", std::vector<std::string>{}).has_value());
  // Ties go to the earlier candidate.
  const std::vector<std::string> tie{"abd", "abe"};
  CHECK(cfg::closest_match("abc", tie) == std::optional<std::string>("abd"));
  // A short word allows only one edit.
  const std::vector<std::string> shorts{"as"};
  CHECK(cfg::closest_match("a", shorts) == std::optional<std::string>("as"));
  CHECK_FALSE(cfg::closest_match("xy", shorts).has_value());
}
