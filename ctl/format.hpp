// SPDX-License-Identifier: Apache-2.0
#pragma once
// Text formatting shared by every forkpoolctl view: human units, colour, and tables whose
// columns line up even when cells carry ANSI colour.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace forkpool::ctl {

// "0ms", "850ms", "1.2s", "59.9s", "3m12s", "2h05m", "3d04h". Negative values print as "0ms".
std::string format_duration(double seconds);
// Latencies: "0ms", "0.42ms", "12.5ms", "340ms", then as format_duration.
std::string format_ms(double ms);
// "512 B", "12.5 KiB", "12.5 MiB", "1.20 GiB".
std::string format_bytes(std::uint64_t bytes);
// "0.0/s", "12.5/s", "1234/s".
std::string format_rate(double per_second);

enum class Colour { None, Red, Green, Yellow, Blue, Magenta, Cyan, Dim, Bold };

// The colour a worker or pool state is shown in, by its name (shm::to_string spelling).
Colour state_colour(std::string_view state);
// `text` wrapped in the escape sequences for `colour` when `enabled`, else `text`.
std::string paint(std::string_view text, Colour colour, bool enabled);

// True when `fd` is a terminal and NO_COLOR is not set (https://no-color.org).
bool colour_wanted(int fd);

// Columns a string takes on a terminal: ANSI escape sequences take none, a UTF-8 code point
// takes one.
std::size_t display_width(std::string_view s);
// Cuts `s` to at most `width` columns without splitting an escape sequence or a code point;
// appends a reset when colour was cut off. width 0 means no limit.
std::string truncate_to_width(std::string_view s, std::size_t width);

enum class Align { Left, Right };

struct Cell {
  std::string text;
  Colour colour = Colour::None;
};

// Rows of cells rendered with every column padded to its widest cell; colour is applied
// after padding so it never shifts a column.
class Table {
 public:
  explicit Table(std::vector<std::string> headers, std::vector<Align> aligns = {});
  void add_row(std::vector<Cell> row);
  std::size_t row_count() const { return rows_.size(); }
  // One line per row (header first), each ending in '\n', no trailing spaces.
  std::string render(bool colour, std::string_view indent = "") const;

 private:
  std::vector<std::string> headers_;
  std::vector<Align> aligns_;
  std::vector<std::vector<Cell>> rows_;
};

}  // namespace forkpool::ctl
