/* SPDX-License-Identifier: Apache-2.0 */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>

void hello_log(const char* fmt, ...) {
  /* Format into one buffer and write it with one write(2), so that lines of
   * concurrent workers sharing stderr do not interleave mid-line. */
  char line[512];
  int n = snprintf(line, sizeof line, "forkpool-hello[%ld]: ", (long)getpid());
  if (n < 0) return;
  va_list ap;
  va_start(ap, fmt);
  int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
  va_end(ap);
  if (m < 0) return;
  size_t len = (size_t)n + (size_t)m;
  if (len > sizeof line - 2) len = sizeof line - 2;
  line[len++] = '\n';
  ssize_t ignored = write(STDERR_FILENO, line, len);
  (void)ignored;
}
