"""Every benchmark of mmemu. Prints one line per figure, then, as the last line, one JSON
object of all figures by name (what `make bench` reports).

Timings are the best of several runs in this process (the machine is shared; the minimum is
the least disturbed). Memory is measured in a fresh child process so that nothing else
this script allocated counts.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time

import mmemu


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def boot_time(repeat: int = 5, **machine) -> float:
    def once():
        k = mmemu.boot(**machine)
        k.close()
    once()  # warm the imports and caches
    return best(once, repeat)


def walks_per_s(n: int = 200_000) -> float:
    k = mmemu.boot(arch="x86_64", kernel="6.6", ram="8G", cmdline="nogbpages")
    rng = random.Random(1)
    leaves = list(k.pgtable.iter_leaves(k.pgd))
    addrs = []
    for _ in range(n):
        va, size, *_ = leaves[rng.randrange(len(leaves))]
        addrs.append(va + rng.randrange(size))
    walk, root = k.pgtable.walk, k.pgd
    t = time.perf_counter()
    for va in addrs:
        walk(root, va)
    dt = time.perf_counter() - t
    k.close()
    return n / dt


RSS_CHILD = r"""
import gc, mmemu
def rss():
    for line in open('/proc/self/status'):
        if line.startswith('VmRSS:'):
            return int(line.split()[1]) / 1024
before = rss()
k = mmemu.boot(arch='x86_64', kernel='6.6', ram='64G')
gc.collect()
print(rss() - before)
"""


def boot_rss_mib() -> float:
    # import mmemu (and its dependencies) before the first reading: count only the boot
    code = "import mmemu, mmemu.kernel.boot, mmemu_x86_64, construct, pluggy\n" + RSS_CHILD
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return float(out.strip().splitlines()[-1])


def main() -> None:
    figures = {}
    figures["boot_x86_64_64g_s"] = boot_time(arch="x86_64", kernel="6.6", ram="64G")
    print(f"boot x86_64, 64 GiB, 1 GiB pages:        {figures['boot_x86_64_64g_s'] * 1000:8.1f} ms  (target < 200 ms)")
    figures["boot_i386_pae_4g_4k_s"] = boot_time(arch="i386_pae", kernel="6.6", ram="4G", cmdline="nopse")
    print(f"boot i386 PAE, 4 GiB, 4 KiB pages only:  {figures['boot_i386_pae_4g_4k_s'] * 1000:8.1f} ms  (target < 500 ms)")
    figures["walks_per_s_x86_64"] = walks_per_s()
    print(f"software walks, x86_64 4-level:          {figures['walks_per_s_x86_64']:8.0f} /s  (target >= 300000)")
    figures["boot_64g_rss_mib"] = boot_rss_mib()
    print(f"resident memory added by a 64 GiB boot:  {figures['boot_64g_rss_mib']:8.1f} MiB (target < 100)")
    print(json.dumps({k: round(v, 6) for k, v in figures.items()}))


if __name__ == "__main__":
    main()
