#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""bench/smaps_breakdown.py PID: the PSS of one process by category, from /proc/PID/smaps.

Used by bench/master_memory.sh. Prints one line per category (KiB of PSS, USS,
RSS) and the total, which equals /proc/PID/smaps_rollup's Pss.
"""
import os
import re
import sys

# (category, predicate on the mapping's path) in order; the first match wins.
LIBS = [
    ("libstdc++", "libstdc++"),
    ("libspdlog", "libspdlog"),
    ("libfmt", "libfmt"),
    ("libuv", "libuv"),
    ("libc", "/libc.so"),
    ("libm", "/libm.so"),
    ("libgcc_s", "libgcc_s"),
    ("libsystemd", "libsystemd"),
    ("ld.so", "ld-linux"),
]


def category(path, start, end, binary, stacks):
    if path == binary or (path.endswith("/forkpool") and not path.startswith("/memfd")):
        return "forkpool binary"
    for name, needle in LIBS:
        if needle in path:
            return name
    if path.startswith("/memfd:"):
        return "scoreboard (memfd)"
    if path == "[heap]":
        return "heap (brk)"
    if path == "[stack]":
        return "main stack"
    if path in ("[vdso]", "[vvar]", "[vsyscall]", "[vvar_vclock]"):
        return "vdso/vvar"
    if path.startswith("/"):
        return "other file " + os.path.basename(path)
    if any(start <= sp < end for sp in stacks):
        return "thread stacks"
    return "anonymous (mmap, arenas)"


def thread_stack_pointers(pid):
    sps = []
    main_tid = int(pid)
    for tid in os.listdir(f"/proc/{pid}/task"):
        if int(tid) == main_tid:
            continue
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            # field 29 (kstkesp) is 0 unless the reader may ptrace; fall back to syscall
            sp = int(fields[26])
            if sp == 0:
                with open(f"/proc/{pid}/task/{tid}/syscall") as f:
                    parts = f.read().split()
                if len(parts) >= 2:
                    sp = int(parts[-2], 16)
            if sp:
                sps.append(sp)
        except (OSError, ValueError, IndexError):
            pass
    return sps


def main():
    pid = sys.argv[1]
    binary = os.readlink(f"/proc/{pid}/exe")
    stacks = thread_stack_pointers(pid)
    threads = len(os.listdir(f"/proc/{pid}/task"))
    totals = {}
    head = re.compile(r"^([0-9a-f]+)-([0-9a-f]+) \S+ \S+ \S+ \S+\s*(.*)$")
    cur = None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            m = head.match(line)
            if m:
                start, end, path = int(m.group(1), 16), int(m.group(2), 16), m.group(3).strip()
                cur = totals.setdefault(category(path, start, end, binary, stacks),
                                        {"Pss": 0, "Rss": 0, "Private_Clean": 0, "Private_Dirty": 0, "maps": 0})
                cur["maps"] += 1
                continue
            key, _, rest = line.partition(":")
            if cur is not None and key in ("Pss", "Rss", "Private_Clean", "Private_Dirty"):
                cur[key] += int(rest.split()[0])
    total = sum(v["Pss"] for v in totals.values())
    uss = sum(v["Private_Clean"] + v["Private_Dirty"] for v in totals.values())
    # USS (private pages: mapped by this process only) does not depend on what else runs
    # on the machine; PSS shares each shared page among the processes that map it.
    print(f"  {'category':28} {'PSS KiB':>8} {'USS KiB':>8} {'RSS KiB':>8} {'maps':>5}")
    for name, v in sorted(totals.items(), key=lambda kv: -kv[1]["Pss"]):
        if v["Pss"] == 0 and v["Rss"] == 0:
            continue
        print(f"  {name:28} {v['Pss']:8} {v['Private_Clean'] + v['Private_Dirty']:8} {v['Rss']:8} {v['maps']:5}")
    rollup = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if rest.strip().endswith("kB"):
                rollup[key] = int(rest.split()[0])
    print(f"  {'total':28} {total:8} {uss:8} (smaps_rollup Pss {rollup.get('Pss', 0)} kB = "
          f"{rollup.get('Pss', 0) / 1024:.2f} MiB, Rss {rollup.get('Rss', 0)} kB), threads {threads}")


if __name__ == "__main__":
    main()
