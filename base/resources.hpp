// SPDX-License-Identifier: Apache-2.0
#pragma once
// One answer to "did this fail because the system is short of something?": processes,
// memory or descriptors. Such a failure is the machine's state, not the program's
// fault, so whatever failed is retried later (with backoff) and never counted as a
// crash of the program, and accepting pauses instead of dropping work.

#include <cerrno>

namespace forkpool::base {

inline bool out_of_resources(int err) {
  return err == EAGAIN || err == ENOMEM || err == EMFILE || err == ENFILE || err == ENOBUFS;
}

}  // namespace forkpool::base
