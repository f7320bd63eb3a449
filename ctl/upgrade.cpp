// SPDX-License-Identifier: Apache-2.0
#include "ctl/upgrade.hpp"

#include <cstdio>
#include <iostream>
#include <thread>

#include "base/printable.hpp"

namespace forkpool::ctl {
namespace {

using nlohmann::json;

std::uint64_t upgrades_of(const json& status) {
  if (!status.contains("master") || !status["master"].is_object()) return 0;
  const json& m = status["master"];
  return m.contains("upgrades") && m["upgrades"].is_number_unsigned()
             ? m["upgrades"].get<std::uint64_t>()
             : 0;
}

}  // namespace

int finish_upgrade(const Invocation& inv, const std::string& socket, Client& client,
                   const Line& first) {
  const std::uint64_t before = first.body.value("upgrades", std::uint64_t{0});
  // A second line means the exec failed and the old image carries on.
  if (auto line = client.read_line_or_eof(inv.timeout)) {
    if (inv.json) std::cout << line->text << "\n";
    std::cerr << "forkpoolctl: " << base::printable(line->body.value("error", line->text)) << "\n";
    return kExitErrorReply;
  }
  const auto deadline = std::chrono::steady_clock::now() + inv.timeout;
  std::string last_problem = "no reply";
  while (std::chrono::steady_clock::now() < deadline) {
    try {
      Client c = Client::connect(socket, inv.timeout);
      const Line status = c.call(json{{"cmd", "status"}}, inv.timeout);
      if (upgrades_of(status.body) > before) {
        const json& m = status.body["master"];
        if (inv.json) {
          std::cout << first.text << "\n" << status.body["master"].dump() << "\n";
        } else {
          std::cout << "upgraded: forkpool " << base::printable(first.body.value("from", "?"))
                    << " -> " << base::printable(m.value("version", "?")) << ", master pid "
                    << m.value("pid", 0) << " (unchanged), upgrade " << upgrades_of(status.body)
                    << " since start\n";
        }
        return kExitOk;
      }
      last_problem =
          "the master still reports " + std::to_string(upgrades_of(status.body)) + " upgrade(s)";
    } catch (const std::exception& e) {
      last_problem = e.what();  // the new image is not listening yet
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  std::cerr << "forkpoolctl: the master did not confirm the upgrade in time ("
            << base::printable(last_problem) << "); see its log\n";
  return kExitErrorReply;
}

}  // namespace forkpool::ctl
