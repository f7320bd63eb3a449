/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* One line on stderr, prefixed with the program name and pid, so that lines of
 * many workers interleaved in the supervisor's log stay attributable. */
void hello_log(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
