"""Every benchmark of mmemu. Prints one line per figure, then, as the last line, one JSON
object of all figures by name (what `make bench` reports).

Timings are the best of several runs in this process (the machine is shared; the minimum is
the least disturbed). Memory is measured in a fresh child process so that nothing else
this script allocated counts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import mmemu
import mmemu.errors

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/floors.py


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


def walks_per_s(n: int = 200_000, **machine) -> float:
    """Software walks of random addresses of the kernel's mappings of a booted machine,
    through the arch's codec (x86_64 with nogbpages: 2 MiB pages for most of the direct
    map, so most walks stop a level early; arm64 6.6: a page-granular linear map, every walk
    goes down to the last level)."""
    machine = machine or dict(arch="x86_64", kernel="6.6", ram="8G", cmdline="nogbpages")
    k = mmemu.boot(**machine)
    from floors import mapped_addresses

    addrs = mapped_addresses(k, n)
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


PTDUMP_64G_CHILD = r"""
import json, resource, time, mmemu
from mmemu.render.ptdump import ptdump
t = time.perf_counter()
k = mmemu.boot(arch='x86_64', kernel='6.6', ram='64G', cmdline='nopse nogbpages')
boot = time.perf_counter() - t
dumps = []
for _ in range(2):
    t = time.perf_counter()
    text = ptdump(k)
    dumps.append(time.perf_counter() - t)
assert '---[ High Kernel Mapping ]---' in text
print(json.dumps([boot, min(dumps), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024]))
"""


def ptdump_64g_4k() -> tuple[float, float, float]:
    """Issue 8's figure: a 64 GiB x86_64 machine booted with ``nopse nogbpages`` (16.7 M
    ptes), its boot, its full ptdump (best of 2) and the child's peak RSS (MiB), in a
    fresh process so that nothing else counts."""
    out = subprocess.run([sys.executable, "-c", PTDUMP_64G_CHILD], capture_output=True, text=True, check=True).stdout
    boot, dump, peak = json.loads(out.strip().splitlines()[-1])
    return boot, dump, peak


def demand_faults_per_s(n: int = 40_000, **machine) -> float:
    """User code on the CPU (cpu MMU mode) touching n fresh anonymous pages: every touch is
    a demand fault handled by the kernel model, then retried. The program is the arch
    adapter's own."""
    from mmemu.cpu import Cpu
    from mmemu.kernel import PROT_EXEC, PROT_READ

    machine = machine or dict(arch="x86_64", kernel="6.6", ram="2G")
    k = mmemu.boot(**machine)
    cpu = Cpu(k)
    best_rate = 0.0
    for _ in range(3):
        p = k.create_process("toucher")
        data = k.mmap(p, None, n * 4096)
        text = k.mmap(p, None, 4096, PROT_READ | PROT_EXEC)
        k.install_user_pages(p, text, cpu.adapter.program_touch_pages(data, n))
        t = time.perf_counter()
        r = cpu.run_user(p, text, timeout=120)
        dt = time.perf_counter() - t
        assert r.reason == "exit" and r.faults == n, r
        best_rate = max(best_rate, r.faults / dt)
        k.switch_to(None)
        k.exit_mm(p)
    k.close()
    return best_rate


# kernel loop: rcx iterations reading one qword per page of a 16-page working set at rdi
# xor edx,edx; mov rcx,count; loop: mov rax,[rdi+rdx]; add rdx,4096; and edx,0xffff;
# dec rcx; jnz loop; ret
LOOP_X86_64 = ("31d2" "48c7c1{count}" "488b0417" "4881c200100000" "81e2ffff0000" "48ffc9" "75ea" "c3")


def paged_vs_flat_ips_ratio(iterations: int = 3_000_000) -> float:
    """The same kernel loop (a TLB-resident working set of 16 pages) run on the CPU under
    mmemu's page tables and in a Unicorn engine without paging; ratio of instruction rates
    (the instruction counts are equal, so it is the ratio of the run times)."""
    from unicorn import UC_ARCH_X86, UC_MODE_64, Uc
    from unicorn.x86_const import UC_X86_REG_RDI, UC_X86_REG_RSP

    from mmemu.cpu import Cpu

    code = bytes.fromhex(LOOP_X86_64.format(count=iterations.to_bytes(4, "little").hex()))
    k = mmemu.boot(arch="x86_64", kernel="6.6", ram="1G")
    cpu = Cpu(k)
    vs, ve = k.layout["VMALLOC_START"], k.layout["VMALLOC_END"]
    text = k.vmalloc_range(4096, vs, ve, prot="PAGE_KERNEL_EXEC", caller="module_alloc")
    k.write(text, code)
    buf = k.vmalloc(16 * 4096)
    uc = Uc(UC_ARCH_X86, UC_MODE_64)  # long mode, paging off: addresses are physical
    uc.mem_map(0, 1 << 20)
    uc.mem_write(0x1000, code)
    uc.mem_write(0x80000, (0x1000 + len(code) - 1).to_bytes(8, "little"))  # return address

    def paged_run():
        t = time.perf_counter()
        r = cpu.call(text, buf, timeout=60)
        assert r.reason == "return", r
        return time.perf_counter() - t

    def flat_run():
        uc.reg_write(UC_X86_REG_RSP, 0x80000)
        uc.reg_write(UC_X86_REG_RDI, 0x40000)
        t = time.perf_counter()
        uc.emu_start(0x1000, 0x1000 + len(code) - 1)
        return time.perf_counter() - t

    paged_run(), flat_run()  # warm up: translation, TLB
    ratios = []
    for _ in range(5):  # interleaved: each ratio from two runs a moment apart
        p = paged_run()
        ratios.append(flat_run() / p)
    k.close()
    import statistics

    return statistics.median(ratios), max(ratios)


def vmalloc_vfree_pairs_per_s(n: int = 20_000) -> float:
    """vmalloc(4096) then vfree, n times, on x86_64 6.6 (lazy purging included)."""
    k = mmemu.boot(arch="x86_64", kernel="6.6", ram="1G")
    best = 0.0
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(n):
            k.vfree(k.vmalloc(4096))
        best = max(best, n / (time.perf_counter() - t))
    k.check_invariants()
    k.close()
    return best


def _real_modules(n: int) -> list[Path]:
    """A fixed sample of *n* amd64 modules of Debian's 6.1 kernel from the corpus
    `make check-real-modules` caches (every k-th .ko by path), or [] without it."""
    root = Path(os.environ.get("MMEMU_REAL_MODULES_CACHE", Path(__file__).resolve().parent.parent
                                / ".cache" / "real-modules"))
    files = sorted(p for p in root.glob("**/*amd64*/**/*.ko") if p.is_file()) if root.is_dir() else []
    if len(files) < n:
        return []
    step = len(files) // n
    return files[::step][:n]


def module_load_mean_ms(n: int = 200) -> tuple[float, str]:
    """Mean time to parse, lay out, allocate, relocate, map and protect one module (no init)
    on x86_64 6.1, over a fixed sample of real modules when the corpus is cached, else over
    generated stand-ins of a typical module's size (16 KiB of text, 1,500 relocations)."""
    from mmemu.testing.modules import synthetic_module

    k = mmemu.boot(arch="x86_64", kernel="6.1", ram="2G")
    files = _real_modules(n)
    if files:
        items = [(f.name, f.read_bytes()) for f in files]
        what = f"{n} of Debian's 6.1 cloud-amd64 modules"
    else:
        items = [(f"standin{i}.ko", synthetic_module(k, f"standin{i}", text_size=16 << 10, relocations=1500, seed=i))
                 for i in range(n)]
        what = f"{n} generated stand-ins (no cached corpus: make check-real-modules fetches it)"
    total, loaded = 0.0, 0
    for name, data in items:
        t = time.perf_counter()
        try:
            mod = k.load_module(data, name, stub_missing=True, force_vermagic=True, run_init=False)
        except mmemu.errors.MmemuError:
            continue  # refused as the kernel refuses it: not a load to time
        total += time.perf_counter() - t
        loaded += 1
        k.delete_module(mod.name, run_exit=False)
        k.purge_vmap_area_lazy()
    k.close()
    return total / max(loaded, 1) * 1000, f"{what}, {loaded} loaded"


def module_load_1mib_s() -> float:
    """A generated x86_64 module of 1 MiB of text with 50,000 relocations: best of 3 loads."""
    from mmemu.testing.modules import synthetic_module

    k = mmemu.boot(arch="x86_64", kernel="6.6", ram="1G")
    data = synthetic_module(k, "big", text_size=1 << 20, relocations=50_000)

    def once():
        mod = k.load_module(data, "big.ko")
        k.delete_module(mod.name)
        k.purge_vmap_area_lazy()
    once()
    t = best(once, 3)
    k.close()
    return t


def scenario_10k(steps: int = 10_000) -> tuple[float, float]:
    """A generated 10,000-step mixed scenario (mmemu.testing.scenarios) on x86_64, run
    headless with the trace on (each step's JSON line written to a file), as `mmemu run
    --trace` does: the seconds it takes; then the median of 100 step backs from its end, in
    milliseconds."""
    import statistics
    import tempfile

    from mmemu.scenario import ScenarioRun, loads
    from mmemu.testing.scenarios import random_scenario

    text = random_scenario(7, steps, "x86_64", ram="1G")
    run = ScenarioRun(loads(text, "bench.toml"))
    with tempfile.TemporaryFile("w") as trace:
        t0 = time.perf_counter()
        for rec in run.run():
            trace.write(json.dumps(rec.to_json()) + "\n")
        elapsed = time.perf_counter() - t0
    assert run.ok, run.stopped or run.failed[:1]
    backs = []
    for _ in range(100):
        t = time.perf_counter()
        run.step_back()
        backs.append(time.perf_counter() - t)
    run.close()
    return elapsed, statistics.median(backs) * 1000


# -- the figures, by name -----------------------------------------------------------------
# Each entry: the names of the figures one measurement gives, and the function that measures
# them, prints its line(s) and returns them by name. `--only NAME` runs the entries giving NAME.

def _single(name: str, fn, line: str):
    """The entry of one figure: *fn*() measures it, *line*.format(value) is its line."""
    def measure():
        value = fn()
        print(line.format(value))
        return {name: value}
    return (name,), measure


def _floor(name: str, fn, line: str, fmt: str = ".2f"):
    """The entry of a ratio against a floor (bench/floors.py): its median and best, the line
    *line* followed by both and the two rates."""
    def measure():
        r = fn()
        print(f"{line} {r['ratio_median']:{fmt}} median, {r['ratio_best']:{fmt}} best "
              f"({r['subject_per_s']:.0f} vs {r['floor_per_s']:.0f} /s)")
        return {name: r["ratio_median"], f"{name}_best": r["ratio_best"]}
    return (name, f"{name}_best"), measure


def _ptdump_64g():
    b, d, peak = ptdump_64g_4k()
    print(f"64 GiB x86_64, nopse nogbpages: boot {b:.2f} s, ptdump {d:.2f} s, peak RSS {peak:.0f} MiB "
          "(targets < 2 s, < 2 s, < 300 MiB)")
    return {"boot_x86_64_64g_4k_s": b, "ptdump_x86_64_64g_4k_s": d, "ptdump_64g_4k_rss_mib": peak}


def _paged_vs_flat():
    med, best_ = paged_vs_flat_ips_ratio()
    print(f"kernel loop, paged vs flat Unicorn:      {med:8.2f} median, {best_:.2f} best (target >= 0.9 in the median)")
    return {"paged_vs_flat_ips_ratio": med, "paged_vs_flat_ips_ratio_best": best_}


def _module_mean():
    ms, sample = module_load_mean_ms()
    print(f"module load (no init), mean:             {ms:8.2f} ms  (target < 10 ms; {sample})")
    return {"module_load_mean_ms": ms}


def _nopti_faults(arch: str = "x86_64"):
    """The default x86_64 (4.15+) and i386_pae (4.19+) machines run with PTI on mmemu's
    Meltdown-affected CPU: two CR3 writes per fault from user mode, each a whole-TLB flush
    (no PCID). The same faults with nopti, and the ratio of the two, measured one after the
    other."""
    machine = dict(arch=arch, kernel="6.6", ram="2G")
    pti = demand_faults_per_s(**machine)
    nopti = demand_faults_per_s(**machine, cmdline="nopti")
    label = f"demand faults, nopti{'' if arch == 'x86_64' else ', ' + arch}:"
    print(f"{label:40} {nopti:8.0f} /s  (PTI/nopti {pti / nopti:.2f})")
    sfx = _suffix(arch)
    return {f"demand_faults_per_s_nopti{sfx}": nopti, f"demand_faults_pti_vs_nopti{sfx}": pti / nopti}


def _scenario():
    s, back = scenario_10k()
    print(f"scenario of 10,000 steps, trace on:      {s:8.2f} s   (target < 10 s)")
    print(f"one step back at its end (median of 100): {back:7.3f} ms  (target < 10 ms)")
    return {"scenario_10k_steps_s": s, "step_back_ms": back}


#: the non-x86 arches' machines and labels (separate distributions: run where installed)
OTHER_ARCHES = {
    "riscv64": (dict(arch="riscv64", kernel="6.6", options={"mmu": "sv39"}), "riscv64 Sv39", "riscv64_sv39"),
    "arm64": (dict(arch="arm64", kernel="6.6", options={"va_bits": "48"}), "arm64 48-bit", "arm64_48"),
}


def _arch_figures(arch: str) -> list:
    machine, label, boot_name = OTHER_ARCHES[arch]
    return [
        _single(f"walks_per_s_{arch}", lambda: walks_per_s(**machine, ram="8G", cmdline=""),
                f"software walks, {label + ':':25}{{:8.0f}} /s  (target >= 300000)"),
        _single(f"boot_{boot_name}_8g_s", lambda: boot_time(**machine, ram="8G"),
                f"boot {label}, 8 GiB (s):{'':{16 - len(label)}}{{:8.4f}} s   (target < 0.2 s)"),
        _single(f"demand_faults_per_s_{arch}", lambda: demand_faults_per_s(**machine, ram="2G"),
                f"demand faults on the CPU, {arch + ':':15}{{:8.0f}} /s  (target >= 30000)"),
    ]


def figures_table() -> list:
    """Every measurement as (the figure names it gives, the function), in the order `make
    bench` runs them; the other arches' only where their plugins are installed."""
    import floors
    import tui
    from mmemu.plugins import default

    names = default()[1].names()
    table = [
        _single("boot_x86_64_64g_s", lambda: boot_time(arch="x86_64", kernel="6.6", ram="64G"),
                "boot x86_64, 64 GiB, 1 GiB pages (s):    {:8.4f} s   (target < 0.2 s)"),
        _single("boot_i386_pae_4g_4k_s", lambda: boot_time(arch="i386_pae", kernel="6.6", ram="4G", cmdline="nopse"),
                "boot i386 PAE, 4 GiB, 4 KiB pages only:  {:8.4f} s   (target < 0.5 s)"),
        _single("walks_per_s_x86_64", walks_per_s, "software walks, x86_64 4-level:          {:8.0f} /s  "
                "(target >= 300000)"),
        _single("boot_64g_rss_mib", boot_rss_mib,
                "resident memory added by a 64 GiB boot:  {:8.1f} MiB (target < 100)"),
        (("boot_x86_64_64g_4k_s", "ptdump_x86_64_64g_4k_s", "ptdump_64g_4k_rss_mib"), _ptdump_64g),
        _single("demand_faults_per_s", demand_faults_per_s, "demand faults on the CPU (cpu MMU):      {:8.0f} /s  "
                "(target >= 30000)"),
        (("demand_faults_per_s_nopti", "demand_faults_pti_vs_nopti"), _nopti_faults),
        (("demand_faults_per_s_nopti_i386_pae", "demand_faults_pti_vs_nopti_i386_pae"),
         lambda: _nopti_faults("i386_pae")),
    ]
    for arch in OTHER_ARCHES:
        if arch in names:
            table += _arch_figures(arch)
    table += [
        (("paged_vs_flat_ips_ratio", "paged_vs_flat_ips_ratio_best"), _paged_vs_flat),
        _single("vmalloc_vfree_pairs_per_s", vmalloc_vfree_pairs_per_s,
                "vmalloc(4096) + vfree pairs:             {:8.0f} /s  (target >= 10000)"),
        (("module_load_mean_ms",), _module_mean),
        _single("module_load_1mib_s", module_load_1mib_s, "module of 1 MiB, 50,000 relocations:     {:8.3f} s   "
                "(target < 0.5 s)"),
    ]
    for arch in ("x86_64", "riscv64", "arm64"):
        if arch in names:
            table.append(_floor(f"demand_fault_floor_ratio{_suffix(arch)}", lambda a=arch: floors.demand_fault_floor(a),
                                f"demand faults vs raw Unicorn + one pte, {arch:8} (target >= 0.5)"))
    table.append(_floor("run_limit_ratio", floors.run_limit_cost,
                        "demand faults with a wall-clock limit vs none, x86_64 (target >= 0.95)"))
    for arch in ("x86_64", "riscv64", "arm64"):
        table.append(_floor(f"walk_floor_ratio{_suffix(arch)}", lambda a=arch: floors.walk_floor(a),
                            f"walk vs a bare Python walk, {arch:8} (target >= 0.7)"))
    table += [
        _floor("vmalloc_floor_ratio", floors.vmalloc_floor, "vmalloc+vfree vs buddy frame + one pte (target >= 0.2)",
               ".3f"),
        (("scenario_10k_steps_s", "step_back_ms"), _scenario),
        _single("tui_first_screen_s", tui.tui_first_screen_s, "TUI, process start to first screen:      {:8.2f} s   "
                "(target < 1.5 s)"),
        _single("tui_step_redraw_ms", tui.tui_step_redraw_ms, "TUI, a step redrawn at step 1,000:       {:8.1f} ms  "
                "(target < 100 ms, median of 50)"),
    ]
    return table


def _suffix(arch: str) -> str:
    return "" if arch == "x86_64" else f"_{arch}"


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description="mmemu's benchmarks; the last line is one JSON object of figures")
    parser.add_argument("--only", metavar="NAME", action="append", default=[],
                        help="measure only the figure NAME (and those measured with it); may be repeated")
    parser.add_argument("--list", action="store_true", help="list the figures' names and exit")
    args = parser.parse_args(argv)
    table = figures_table()
    known = [n for names, _ in table for n in names]
    if args.list:
        print("\n".join(known))
        return
    unknown = [n for n in args.only if n not in known]
    if unknown:
        parser.error(f"no figure named {', '.join(unknown)} (--list gives the names)")
    figures = {}
    for names, measure in table:
        if not args.only or any(n in names for n in args.only):
            figures.update(measure())
    print(json.dumps({k: round(v, 6) for k, v in figures.items()}))


if __name__ == "__main__":
    main()
