// SPDX-License-Identifier: Apache-2.0
#pragma once
// The three parts of systemd's service protocol the master speaks, written out instead of
// linking libsystemd (which brings libgcrypt, liblzma, liblz4, libzstd and libcap into the
// master's memory for three functions: ~0.9 MiB of PSS, docs/performance.md):
//   - sd_notify(3): one datagram to the AF_UNIX socket named by $NOTIFY_SOCKET (a path,
//     or "@name" in the abstract namespace);
//   - sd_listen_fds(3): $LISTEN_FDS descriptors from 3 on, when $LISTEN_PID is our pid;
//     the variables are removed so that workers never see the master's;
//   - sd_watchdog_enabled(3): $WATCHDOG_USEC, when $WATCHDOG_PID is unset or our pid.

#include <cstdint>
#include <string_view>

namespace forkpool::supervisor::systemd {

inline constexpr int kListenFdsStart = 3;  // SD_LISTEN_FDS_START

// Sends `state` to $NOTIFY_SOCKET; false when the variable is unset or invalid, or the
// send failed (as sd_notify, the caller has nothing to do about it).
bool notify(std::string_view state);

// The number of descriptors passed by socket activation (0 when none or not for us),
// after unsetting LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES.
int take_listen_fds();

// The watchdog interval systemd asked for in microseconds, 0 when none.
std::uint64_t watchdog_usec();

}  // namespace forkpool::supervisor::systemd
