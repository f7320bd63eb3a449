// SPDX-License-Identifier: Apache-2.0
// The one translation unit that compiles toml++'s implementation (its parser, printers
// and node types) into forkpool, so no binary maps libtomlplusplus.so. The flags this file
// gets are in config/CMakeLists.txt.

#define TOML_IMPLEMENTATION
#include <toml++/toml.h>
