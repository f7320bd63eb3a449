// SPDX-License-Identifier: Apache-2.0
#pragma once
// The Prometheus text exposition (format 0.0.4) of a StatusModel: GET /metrics and the
// `metrics` control command.

#include <string>
#include <string_view>

#include "supervisor/observe/status_model.hpp"

namespace forkpool::supervisor {

inline constexpr std::string_view kPrometheusContentType =
    "text/plain; version=0.0.4; charset=utf-8";

// Every family has # HELP and # TYPE, is named forkpool_*, and carries a `pool` label
// (plus `worker` and `pid` per worker). Latencies are histograms in seconds.
std::string prometheus_text(const StatusModel& model);

}  // namespace forkpool::supervisor
