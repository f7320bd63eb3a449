// SPDX-License-Identifier: Apache-2.0
#pragma once
// "Did you mean ...?" for misspelt keys and values.

#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace forkpool::config {

// The candidate closest to `word` by edit distance (adjacent swaps count as one edit),
// if it is close enough to be a plausible typo; ties go to the earlier candidate.
std::optional<std::string> closest_match(std::string_view word, std::span<const std::string> candidates);

std::size_t edit_distance(std::string_view a, std::string_view b);

}  // namespace forkpool::config
