#!/usr/bin/env python3
"""Load every module of Debian's 6.1 kernels into mmemu (``make check-real-modules``).

An opt-in check, not part of ``make test``: it needs Debian's archive and takes minutes.

1. Fetch. For each corpus (x86_64: ``linux-image-6.1.0-*-cloud-amd64-unsigned``; i386:
   ``...-686-unsigned``; i386_pae: ``...-686-pae-unsigned``; the signed package when the
   unsigned one is absent), find the newest package with ``apt-cache``, ``apt-get download``
   it and extract it with ``dpkg-deb -x`` into the cache (``.cache/real-modules/`` under the
   repository, or ``$MMEMU_REAL_MODULES_CACHE``). apt runs on a private state directory in
   the cache (its own package lists, for the Debian arch of the corpus: amd64 or i386), so
   the machine's apt configuration is not changed and no ``dpkg --add-architecture`` is
   needed. An extracted tree already in the cache is used as it is (``--refresh`` looks
   for a newer package).
2. Load. One mmemu kernel per corpus (kernel 6.1); each module is loaded with
   ``stub_missing=True`` (its init is not run: parse, lay out, allocate, copy, relocate,
   map, set permissions), then ``delete_module``, and every ``--purge-every`` modules and
   at the end ``purge_vmap_area_lazy``. Each module is loaded, refused (``ModuleError``,
   the kernel's reason) or crashed (any other exception). After the corpus no module
   area, no module page and no module may be left, and ``check_invariants`` must pass.
3. Report. Per corpus: the counts, the refusal reasons, every crash, the relocation types
   applied, the load times; then one JSON line of everything. Per-module results go to
   ``results-<arch>.json`` in the cache. Exit status 1 if anything crashed or was left
   mapped, else 0.

Standard library and mmemu only.
"""

from __future__ import annotations

import argparse
import inspect
import json
import lzma
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter, defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_CACHE = REPO / ".cache" / "real-modules"

#: mmemu arch -> (Debian arch, kernel flavour, RAM of the emulated machine)
CORPORA = {
    "x86_64": ("amd64", "cloud-amd64", "4G"),
    "i386": ("i386", "686", "1G"),
    "i386_pae": ("i386", "686-pae", "4G"),
}
KERNEL = "6.1"
MODULE_SUFFIXES = (".ko", ".ko.xz", ".ko.zst")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- fetching ---------------------------------------------------------------------------------


class Apt:
    """apt-get/apt-cache on a private state directory for one Debian arch."""

    def __init__(self, cache: Path, debarch: str):
        self.root = cache / "apt" / debarch
        self.lists = self.root / "lists"
        self.archives = self.root / "archives"
        (self.lists / "partial").mkdir(parents=True, exist_ok=True)
        (self.archives / "partial").mkdir(parents=True, exist_ok=True)
        self.opts = [
            "-o", f"Dir::State::Lists={self.lists}",
            "-o", f"Dir::Cache={self.root}",
            "-o", f"Dir::Cache::archives={self.archives}",
            "-o", "Dir::Cache::pkgcache=", "-o", "Dir::Cache::srcpkgcache=",
            "-o", f"APT::Architecture={debarch}",
            "-o", f"APT::Architectures::={debarch}",
            "-o", "Debug::NoLocking=1",
        ]
        if os.geteuid() == 0:
            # the private directories belong to root, which the _apt sandbox cannot write
            self.opts += ["-o", "APT::Sandbox::User=root"]
        self.updated = False

    def run(self, tool: str, *args: str, cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess:
        cmd = [tool, "-q", *self.opts, *args]
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
        if check and proc.returncode:
            raise RuntimeError(f"{' '.join([tool, *args])} failed ({proc.returncode}):\n{proc.stderr.strip()}")
        return proc

    def update(self) -> None:
        if self.updated:
            return
        log(f"apt-get update (lists in {self.lists})")
        proc = self.run("apt-get", "update", check=False)
        if proc.returncode:
            # a mirror in sync can fail one index (bookworm-security...); the others may do
            have = [p for p in self.lists.iterdir() if p.name.endswith(("Packages", "Packages.lz4", "Packages.xz"))]
            if not have:
                raise RuntimeError(f"apt-get update failed and no package list is there:\n{proc.stderr.strip()}")
            log("  apt-get update reported errors (continuing with the lists it got):\n    "
                + "\n    ".join(line for line in proc.stderr.strip().splitlines() if line.startswith(("E:", "W:"))))
        self.updated = True

    def candidate(self, package: str) -> str | None:
        out = self.run("apt-cache", "policy", package).stdout
        m = re.search(r"^\s*Candidate:\s*(\S+)", out, re.M)
        return m.group(1) if m and m.group(1) != "(none)" else None

    def newest_image(self, flavour: str) -> tuple[str, str]:
        """The newest ``linux-image-6.1.0-N-<flavour>-unsigned`` (or the signed one when the
        unsigned is absent) with a candidate version: (package, version)."""
        pattern = rf"^linux-image-6\.1\.0-[0-9]+-{re.escape(flavour)}(-unsigned)?$"
        out = self.run("apt-cache", "search", "--names-only", pattern).stdout
        names = [line.split(" - ", 1)[0].strip() for line in out.splitlines() if line.strip()]
        rx = re.compile(rf"^linux-image-6\.1\.0-([0-9]+)-{re.escape(flavour)}(-unsigned)?$")
        ranked = []
        for n in names:
            m = rx.match(n)
            if m:
                ranked.append((int(m.group(1)), m.group(2) is not None, n))
        for _abi, _unsigned, name in sorted(ranked, reverse=True):
            version = self.candidate(name)
            if version:
                return name, version
        raise RuntimeError(f"no linux-image-6.1.0-*-{flavour}[-unsigned] package found in the archive "
                           f"(apt-cache search: {names or 'nothing'})")


def cached_tree(cache: Path, flavour: str) -> tuple[Path, dict] | None:
    """The newest extracted tree of *flavour* in the cache, with its marker's contents."""
    rx = re.compile(rf"^linux-image-6\.1\.0-([0-9]+)-{re.escape(flavour)}(-unsigned)?$")
    found = []
    trees = cache / "trees"
    if not trees.is_dir():
        return None
    for marker in trees.glob("*/.extracted.json"):
        try:
            info = json.loads(marker.read_text())
        except (OSError, ValueError):
            continue
        m = rx.match(info.get("package", ""))
        if m:
            found.append((int(m.group(1)), m.group(2) is not None, marker.parent, info))
    if not found:
        return None
    _abi, _u, path, info = max(found, key=lambda t: (t[0], t[1]))
    return path, info


def fetch(cache: Path, arch: str, refresh: bool, apts: dict) -> tuple[Path, dict]:
    """The extracted tree of *arch*'s corpus (downloaded and extracted if needed)."""
    debarch, flavour, _ram = CORPORA[arch]
    have = cached_tree(cache, flavour)
    if have and not refresh:
        log(f"{arch}: using the cached tree of {have[1]['package']} {have[1]['version']}")
        return have
    for tool in ("apt-get", "apt-cache", "dpkg-deb"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} is not installed: the check fetches Debian's packages with it")
    apt = apts.get(debarch) or apts.setdefault(debarch, Apt(cache, debarch))
    apt.update()
    package, version = apt.newest_image(flavour)
    if have and have[1]["package"] == package and have[1]["version"] == version:
        log(f"{arch}: the cached {package} {version} is the newest")
        return have
    dest = cache / "trees" / f"{package}_{version}"
    debs = cache / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    log(f"{arch}: apt-get download {package}={version}")
    apt.run("apt-get", "download", f"{package}={version}", cwd=debs)
    deb = next((p for p in debs.glob(f"{package}_*.deb") if version.replace(":", "%3a") in p.name), None)
    if deb is None:
        raise RuntimeError(f"apt-get download {package}={version} left no .deb in {debs}")
    (cache / "trees").mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{package}.", dir=cache / "trees"))
    log(f"{arch}: dpkg-deb -x {deb.name}")
    subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp)], check=True)
    info = {"package": package, "version": version, "debarch": debarch, "deb": deb.name,
            "deb_bytes": deb.stat().st_size}
    (tmp / ".extracted.json").write_text(json.dumps(info, indent=1) + "\n")
    if dest.exists():
        shutil.rmtree(dest)
    tmp.rename(dest)
    deb.unlink()  # the tree is what the cache keeps
    return dest, info


def module_files(tree: Path) -> list[Path]:
    out = [p for p in tree.rglob("*") if p.name.endswith(MODULE_SUFFIXES) and p.is_file()]
    return sorted(out, key=lambda p: str(p.relative_to(tree)))


class Skip(Exception):
    """A module file that cannot be read here (a .ko.zst without the zstd command)."""


def read_module(path: Path) -> bytes:
    name = path.name
    if name.endswith(".ko.xz"):
        return lzma.decompress(path.read_bytes())
    if name.endswith(".ko.zst"):
        zstd = shutil.which("zstd")
        if zstd is None:
            raise Skip("a .ko.zst and no zstd command to decompress it")
        return subprocess.run([zstd, "-dcq", str(path)], check=True, capture_output=True).stdout
    return path.read_bytes()


def module_label(path: Path) -> str:
    """The name messages call the file: its name without the compression suffix."""
    name = path.name
    for ext in (".xz", ".zst"):
        if name.endswith(ext):
            return name[:-len(ext)]
    return name


# -- loading ----------------------------------------------------------------------------------

_HEX = re.compile(r"0x[0-9a-fA-F]+|\b[0-9a-fA-F]{8,16}\b")
_NUM = re.compile(r"\b\d{3,}\b")


def reason_key(msg: str, names: tuple[str, ...]) -> str:
    """A refusal message grouped by its first words: the first line, the module's names
    and the addresses taken out."""
    line = msg.strip().splitlines()[0] if msg.strip() else "(empty message)"
    if "version magic" in line:
        return "vermagic: version magic '...' should be '...'"
    for n in sorted(names, key=len, reverse=True):
        if n:
            line = line.replace(n, "<mod>")
    line = re.sub(r"^(module:?\s+)?<mod>:\s*", "", line)
    line = _HEX.sub("0x…", line)
    line = _NUM.sub("N", line)
    line = re.sub(r"'[^']*'", "'…'", line)
    words = line.split()
    return " ".join(words[:9]) + (" …" if len(words) > 9 else "")


def last_frame(exc: BaseException) -> str:
    tb = traceback.extract_tb(exc.__traceback__)
    if not tb:
        return "?"
    f = tb[-1]
    path = f.filename
    try:
        path = str(Path(path).resolve().relative_to(REPO))
    except ValueError:
        pass
    return f"{path}:{f.lineno} in {f.name}: {(f.line or '').strip()}"


def module_state_left(k) -> dict:
    """What of the modules is left in *k*: module areas, module pages, modules."""
    lo, hi = k.layout["MODULES_VADDR"], k.layout["MODULES_END"]
    areas = [(a.va_start, a.va_end, a.vm.caller if a.vm else "?", a.lazy)
             for a in k.vmap_areas if a.va_start < hi and lo < a.va_end and not a.early]
    owners = Counter(rec.owner for rec in k.frames.allocated.values()) if hasattr(k.frames, "allocated") else Counter()
    return {"areas": [f"{s:#x}-{e:#x} {c}{' (lazy)' if lz else ''}" for s, e, c, lz in areas],
            "module_alloc_pages": owners.get("module_alloc", 0),
            "modules": [m.name for m in k.modules]}


def run_corpus(arch: str, tree: Path, info: dict, args) -> dict:
    import mmemu
    from mmemu.errors import ModuleError

    _debarch, _flavour, ram = CORPORA[arch]
    files = module_files(tree)
    total_files = len(files)
    if args.limit:
        files = files[:args.limit]
    if args.match:
        files = [p for p in files if re.search(args.match, str(p.relative_to(tree)))]
    log(f"{arch}: {total_files} module files in {info['package']} {info['version']}; loading {len(files)} "
        f"(kernel {KERNEL}, {ram} RAM)")
    # Debian's kernels are SMP (686: CONFIG_NR_CPUS=32; cloud-amd64: 8192): two CPUs, so that
    # every corpus has per-cpu areas and its modules' .data..percpu goes there
    options = {"NR_CPUS": "32"} if arch.startswith("i386") else {}
    k = mmemu.boot(arch=arch, kernel=KERNEL, ram=ram, cpus=2, options=options)
    k.purge_vmap_area_lazy()
    percpu_with = []
    params = inspect.signature(k.load_module).parameters
    has_force = "force_vermagic" in params
    kwargs = {"stub_missing": True}
    if args.force_vermagic and has_force:
        kwargs["force_vermagic"] = True
    if "run_init" in params:
        kwargs["run_init"] = False  # the check loads without running init
    # ... and unloads without running exit (the stubs of stub_missing would stop it)
    unload_kwargs = {"run_exit": False} if "run_exit" in inspect.signature(k.delete_module).parameters else {}

    results = []
    counts = Counter()
    reasons: dict[str, list[str]] = defaultdict(list)
    reason_sample: dict[str, str] = {}
    crashes: dict[tuple, list[str]] = defaultdict(list)
    crash_detail: dict[tuple, dict] = {}
    left_mapped: list[str] = []
    relocs = Counter()
    skipped: dict[str, list[str]] = defaultdict(list)
    times_loaded: list[tuple[float, str]] = []
    stubbed_total = 0
    t_corpus = time.perf_counter()

    for i, path in enumerate(files):
        rel = str(path.relative_to(tree))
        label = module_label(path)
        entry = {"file": rel}
        try:
            data = read_module(path)
        except Skip as exc:
            skipped[str(exc)].append(rel)
            entry.update(status="skipped", reason=str(exc))
            results.append(entry)
            counts["skipped"] += 1
            continue
        stem = label[:-3] if label.endswith(".ko") else label
        t0 = time.perf_counter()
        try:
            mod = k.load_module(data, label, **kwargs)
        except ModuleError as exc:
            ms = (time.perf_counter() - t0) * 1e3
            msg = str(exc)
            key = reason_key(msg, (label, stem, stem.replace("-", "_")))
            reasons[key].append(rel)
            reason_sample.setdefault(key, msg.strip().splitlines()[0] if msg.strip() else "")
            status = "refused (vermagic)" if key.startswith("vermagic") else "refused"
            counts[status] += 1
            entry.update(status=status, reason=msg, ms=round(ms, 3))
            results.append(entry)
            continue
        except Exception as exc:  # noqa: BLE001 - every other exception is a crash to report
            ms = (time.perf_counter() - t0) * 1e3
            frame = last_frame(exc)
            key = ("load", type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "", frame)
            crashes[key].append(rel)
            crash_detail.setdefault(key, {"traceback": traceback.format_exc()})
            counts["crashed"] += 1
            entry.update(status="crashed", phase="load", exception=type(exc).__name__, message=str(exc),
                         frame=frame, ms=round(ms, 3))
            results.append(entry)
            continue
        ms = (time.perf_counter() - t0) * 1e3
        relocs.update(mod.relocations)
        stubbed_total += len(mod.stubbed)
        regions = [(r.name, r.base, r.size) for r in mod.layout.regions if not r.init and r.base is not None]
        entry.update(status="loaded", name=mod.name, ms=round(ms, 3), relocations=sum(mod.relocations.values()),
                     stubbed=len(mod.stubbed), regions={n: s for n, _b, s in regions})
        try:
            k.delete_module(mod.name, **unload_kwargs)
        except Exception as exc:  # noqa: BLE001
            frame = last_frame(exc)
            key = ("unload", type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "", frame)
            crashes[key].append(rel)
            crash_detail.setdefault(key, {"traceback": traceback.format_exc()})
            counts["crashed"] += 1
            entry.update(status="crashed", phase="unload", exception=type(exc).__name__, message=str(exc),
                         frame=frame)
            results.append(entry)
            continue
        # the module's pages are unmapped at once (the range waits for the lazy purge)
        still = []
        for rname, base, size in regions:
            for va in range(base, base + size, 4096):
                if k.walk(va).mapped:
                    still.append(f"{rname} {va:#x}")
                    break
        # mod->init read from the relocated struct module must be the module's init_module
        for field_, sym in (("init", "init_module"), ("exit", "cleanup_module")):
            if sym in mod.symbols and getattr(mod, field_) != mod.symbols[sym]:
                still.append(f"mod->{field_} {getattr(mod, field_)!r} is not {sym} {mod.symbols[sym]:#x}")
        if getattr(mod, "percpu", None) is not None:
            percpu_with.append(rel)
            if k.pcpu.areas:
                still.append(f"per-cpu {mod.percpu:#x}")
        if still:
            left_mapped.append(f"{rel}: {', '.join(still)} still mapped after delete_module")
            entry["left_mapped"] = still
        counts["loaded"] += 1
        times_loaded.append((ms, rel))
        results.append(entry)
        if args.purge_every and (i + 1) % args.purge_every == 0:
            k.purge_vmap_area_lazy()
        if args.progress and (i + 1) % args.progress == 0:
            log(f"  {arch}: {i + 1}/{len(files)} ({dict(counts)}) {time.perf_counter() - t_corpus:.0f}s")

    k.purge_vmap_area_lazy()
    left = module_state_left(k)
    if left["areas"]:
        left_mapped.append(f"module areas left after the last purge: {left['areas'][:10]}"
                           + (f" (+{len(left['areas']) - 10})" if len(left["areas"]) > 10 else ""))
    if left["module_alloc_pages"]:
        left_mapped.append(f"{left['module_alloc_pages']} module_alloc pages still allocated")
    if left["modules"]:
        left_mapped.append(f"modules still in the list: {left['modules'][:10]}")
    invariants = "ok"
    try:
        k.check_invariants()
    except Exception as exc:  # noqa: BLE001
        invariants = f"{type(exc).__name__}: {exc}"
    elapsed = time.perf_counter() - t_corpus
    try:
        k.close()
    except Exception:  # noqa: BLE001
        pass

    ms_list = [t for t, _ in times_loaded]
    summary = {
        "arch": arch, "kernel": KERNEL, "ram": ram,
        "package": info["package"], "version": info["version"],
        "module_files": total_files, "attempted": len(files),
        "counts": {"loaded": counts["loaded"], "refused": counts["refused"],
                   "refused (vermagic)": counts["refused (vermagic)"], "crashed": counts["crashed"],
                   "skipped": counts["skipped"]},
        "force_vermagic": {"asked": bool(args.force_vermagic), "supported": has_force},
        "refusals": [{"reason": r, "count": len(m), "example": reason_sample[r], "modules": m[:3]}
                     for r, m in sorted(reasons.items(), key=lambda kv: -len(kv[1]))],
        "crashes": [{"phase": key[0], "exception": key[1], "message": key[2], "frame": key[3], "count": len(m),
                     "modules": m[:5], "traceback": crash_detail[key]["traceback"]}
                    for key, m in sorted(crashes.items(), key=lambda kv: -len(kv[1]))],
        "skipped": {r: {"count": len(m), "modules": m[:3]} for r, m in skipped.items()},
        "left_mapped": left_mapped,
        "invariants": invariants,
        "relocations": dict(relocs.most_common()),
        "stubbed_symbols": stubbed_total,
        "percpu_modules": {"count": len(percpu_with), "modules": percpu_with[:5]},
        "load_ms": {"mean": round(statistics.fmean(ms_list), 3) if ms_list else None,
                    "median": round(statistics.median(ms_list), 3) if ms_list else None,
                    "max": round(max(ms_list), 3) if ms_list else None,
                    "slowest": [{"module": m, "ms": round(t, 1)} for t, m in sorted(times_loaded, reverse=True)[:5]]},
        "seconds": round(elapsed, 1),
    }
    out = Path(args.cache) / f"results-{arch}.json"
    try:
        out.write_text(json.dumps({"summary": summary, "modules": results}, indent=1) + "\n")
        summary["results_file"] = str(out)
    except OSError as exc:
        log(f"could not write {out}: {exc}")
    return summary


# -- reporting ---------------------------------------------------------------------------------


def print_report(s: dict) -> None:
    c = s["counts"]
    print(f"== {s['arch']} (kernel {s['kernel']}, {s['ram']}): {s['package']} {s['version']}")
    print(f"   {s['module_files']} module files, {s['attempted']} attempted in {s['seconds']}s")
    print(f"   loaded {c['loaded']}, refused {c['refused']}, refused (vermagic) {c['refused (vermagic)']}, "
          f"crashed {c['crashed']}, skipped {c['skipped']}")
    fv = s["force_vermagic"]
    if fv["asked"] and not fv["supported"]:
        print("   --force-vermagic: load_module has no force_vermagic keyword yet; vermagic refusals are counted")
    if s["refusals"]:
        print("   refusals (top 15):")
        for r in s["refusals"][:15]:
            print(f"     {r['count']:6d}  {r['reason']}")
            print(f"             e.g. {', '.join(Path(m).name for m in r['modules'])}: {r['example'][:160]}")
        if len(s["refusals"]) > 15:
            print(f"     ... {len(s['refusals']) - 15} more reasons (all in {s.get('results_file', 'the results file')})")
    if s["crashes"]:
        print("   CRASHES:")
        for cr in s["crashes"]:
            print(f"     {cr['count']:6d}  [{cr['phase']}] {cr['exception']}: {cr['message'][:200]}")
            print(f"             at {cr['frame']}")
            print(f"             modules: {', '.join(cr['modules'])}")
    for reason, v in s["skipped"].items():
        print(f"   skipped {v['count']}: {reason} (e.g. {', '.join(v['modules'])})")
    if s["left_mapped"]:
        print("   LEFT MAPPED:")
        for line in s["left_mapped"][:20]:
            print(f"     {line}")
    print(f"   invariants after the corpus: {s['invariants']}")
    rel = s["relocations"]
    print(f"   relocations applied: {sum(rel.values())} ("
          + ", ".join(f"{n} {t}" for t, n in rel.items()) + ")")
    print(f"   symbols stubbed: {s['stubbed_symbols']}")
    pc = s["percpu_modules"]
    print(f"   modules with per-cpu data (percpu_modalloc): {pc['count']}"
          + (f" (e.g. {', '.join(Path(m).name for m in pc['modules'][:3])})" if pc["modules"] else ""))
    lm = s["load_ms"]
    if lm["mean"] is not None:
        print(f"   load time per loaded module: mean {lm['mean']:.1f} ms, median {lm['median']:.1f} ms, "
              f"max {lm['max']:.1f} ms ({lm['slowest'][0]['module']})")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", action="append", choices=sorted(CORPORA),
                   help="a corpus to check (repeatable; default: all three)")
    p.add_argument("--limit", type=int, default=0, metavar="N",
                   help="load only the first N modules of each corpus (sorted by path)")
    p.add_argument("--match", metavar="REGEX", help="load only the modules whose path matches REGEX")
    p.add_argument("--force-vermagic", action="store_true",
                   help="pass force_vermagic=True to load_module (as modprobe --force-vermagic) when mmemu "
                        "has that keyword; without it the vermagic refusals are counted apart")
    p.add_argument("--purge-every", type=int, default=64, metavar="N",
                   help="purge_vmap_area_lazy every N modules (default 64)")
    p.add_argument("--progress", type=int, default=250, metavar="N", help="a progress line every N modules")
    p.add_argument("--refresh", action="store_true",
                   help="ask the archive for a newer package even when the cache has an extracted tree")
    p.add_argument("--fetch-only", action="store_true", help="fetch and extract, load nothing")
    p.add_argument("--cache", default=os.environ.get("MMEMU_REAL_MODULES_CACHE") or str(DEFAULT_CACHE),
                   help="cache directory (default $MMEMU_REAL_MODULES_CACHE or .cache/real-modules)")
    args = p.parse_args(argv)
    cache = Path(args.cache).resolve()
    args.cache = str(cache)
    cache.mkdir(parents=True, exist_ok=True)
    ignore = cache / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# the check's downloads and results (tools/check_real_modules.py)\n*\n")
    arches = args.arch or list(CORPORA)

    trees = {}
    apts: dict = {}
    for arch in arches:
        try:
            trees[arch] = fetch(cache, arch, args.refresh, apts)
        except (RuntimeError, subprocess.CalledProcessError, OSError) as exc:
            log(f"{arch}: fetching failed: {exc}")
            print(json.dumps({"error": f"fetch {arch}: {exc}"}))
            return 2
    if args.fetch_only:
        for arch, (tree, info) in trees.items():
            print(f"{arch}: {info['package']} {info['version']}: {len(module_files(tree))} module files in {tree}")
        return 0

    summaries = []
    for arch in arches:
        tree, info = trees[arch]
        s = run_corpus(arch, tree, info, args)
        print_report(s)
        sys.stdout.flush()
        summaries.append(s)

    failed = any(s["counts"]["crashed"] or s["left_mapped"] or s["invariants"] != "ok" for s in summaries)
    final = {"ok": not failed, "corpora": [
        {k: v for k, v in s.items() if k not in ("crashes", "refusals")}
        | {"refusals": [{kk: r[kk] for kk in ("reason", "count", "modules")} for r in s["refusals"]],
           "crashes": [{kk: cr[kk] for kk in ("phase", "exception", "message", "frame", "count", "modules")}
                       for cr in s["crashes"]]}
        for s in summaries]}
    print(json.dumps(final, separators=(",", ":")))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
