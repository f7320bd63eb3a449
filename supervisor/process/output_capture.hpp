// SPDX-License-Identifier: Apache-2.0
#pragma once
// stdout/stderr = "log": a pipe whose lines go into the master's log, prefixed by the
// pool and worker ("web[3] stderr: ...").

#include <uv.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "shm/mapping.hpp"
#include "supervisor/uv_handles.hpp"

namespace forkpool::supervisor {

class OutputCapture {
 public:
  // Throws std::system_error if the pipe cannot be made.
  OutputCapture(uv_loop_t* loop, std::string prefix);
  // A binary upgrade: the read end the previous image held (the worker has the write end).
  OutputCapture(uv_loop_t* loop, std::string prefix, shm::OwnedFd read_end);
  int read_end() const { return read_end_.get(); }
  ~OutputCapture();

  // The worker's facts for the JSON log (pool, worker, pid, generation), once its pid is
  // known; "stream" is added here.
  void set_subject(nlohmann::json fields);

  // The end the worker writes to; the caller closes it once the worker holds it.
  int write_end() const { return write_end_.get(); }
  void close_write_end() { write_end_.reset(); }

 private:
  void drain();
  void flush_lines(bool all);

  void emit(std::string_view line);

  std::string prefix_;
  nlohmann::json fields_ = nlohmann::json::object();
  shm::OwnedFd read_end_;
  shm::OwnedFd write_end_;
  std::unique_ptr<FdWatch> watch_;
  std::string pending_;
};

}  // namespace forkpool::supervisor
