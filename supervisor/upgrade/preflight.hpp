// SPDX-License-Identifier: Apache-2.0
#pragma once
// The pre-flight of a binary upgrade: nothing changes while it runs. The new binary must
// run, describe itself (--upgrade-info), read this image's state format and accept the
// running configuration file (--check).
//
// The two runs are children of the master watched from its loop, so a new binary that
// is slow or hangs never stops the master from dispatching, reaping or answering:
//
//   Preflight: Info --exit--> Check --exit--> done(NewBinary)
//                 \--fails, or kProbeTimeout passes (SIGKILL)--> done(refusal)
//
// The master reaps every child; it hands the exit of the pid owns() names to exited(),
// after killing the run's process group (what a script started goes with it) while the
// zombie still holds the group's id.

#include <sys/types.h>
#include <uv.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <variant>
#include <vector>

#include "base/owned_fd.hpp"
#include "supervisor/uv_handles.hpp"

namespace forkpool::supervisor::upgrade {

// The upgrade is refused; the message says why, for the reply, the log and the event.
struct UpgradeRefused : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct NewBinary {
  std::string path;
  std::string version;
};

// How long each run of the new binary may take before it is killed and the upgrade refused.
inline constexpr std::chrono::seconds kProbeTimeout{10};

// What one run of the new binary did.
struct ProbeResult {
  int wait_status = 0;
  std::string output;  // stdout and stderr together, at most 64 KiB
};

// The path /proc/self/exe names now ("" if it cannot be read).
std::string own_binary_path();

class Preflight {
 public:
  // The new binary, or why the upgrade is refused.
  using Outcome = std::variant<NewBinary, UpgradeRefused>;
  using Done = std::function<void(Outcome)>;

  // Starts `BINARY --upgrade-info`; BINARY is `resolved` (the path of /proc/self/exe at
  // start-up) unless empty, else /proc/self/exe. Throws UpgradeRefused if that cannot even
  // begin (no such file, not an executable file, spawn failed). `done` is called once, from a loop
  // callback (or from exited()), unless the Preflight is destroyed first; the Preflight
  // may be destroyed inside it.
  Preflight(uv_loop_t* loop, const std::string& resolved, std::filesystem::path config_file, Done done);
  // A run still going is killed (SIGKILL); the master reaps it as any other child.
  ~Preflight();
  Preflight(const Preflight&) = delete;
  Preflight& operator=(const Preflight&) = delete;

  // The pid of the run in progress, if any.
  bool owns(pid_t pid) const { return pid_ > 0 && pid == pid_; }
  // The master reaped our run with this wait status.
  void exited(int wait_status);

 private:
  enum class Step { Info, Check, Done };
  void start(std::vector<std::string> args);  // throws UpgradeRefused
  void drain();                               // reads what the run has printed so far
  void timed_out();
  void finish(Outcome outcome);

  uv_loop_t* loop_;
  std::string binary_;
  std::filesystem::path config_file_;
  Done done_;
  Step step_ = Step::Info;
  NewBinary info_;
  std::vector<std::string> args_;  // of the run in progress
  pid_t pid_ = -1;
  bool killed_ = false;            // by the deadline
  ProbeResult result_;
  base::OwnedFd output_;           // the read end of the run's stdout and stderr
  std::unique_ptr<FdWatch> output_watch_;  // declared after output_: closed before it
  Timer deadline_;
};

}  // namespace forkpool::supervisor::upgrade
