"""The ``mmemu`` command.

Every command takes the same machine options (``--arch``, ``--kernel``, ``--ram``, ``--cpus``,
``--cmdline``, ``--option``). Errors a user can cause end the command with a one-line
``mmemu: error: ...`` on stderr and exit status 2; never a traceback (set MMEMU_DEBUG=1 to
see one for an internal error, exit status 70). Output that cannot be written (a full disk,
``> /dev/full``) ends it with ``mmemu: error: cannot write output: ...`` and exit status 74; a
reader that goes away (``| head``) ends it quietly.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
from pathlib import Path
from typing import Sequence

from .errors import ConfigError, MmemuError, Oops
from .units import KernelVersion, check_ascii, memparse, parse_address, parse_count

EXIT_USAGE = 2
EXIT_INTERNAL = 70  # EX_SOFTWARE
EXIT_IOERR = 74  # EX_IOERR (sysexits.h): an error while doing I/O on a file, here the output


class UsageError(ConfigError):
    """A command line argparse refuses (unknown option, option without its value...)."""


class OutputError(Exception):
    """Writing the command's output failed (ENOSPC, EIO...): not a bug, not bad input."""

    def __init__(self, cause: OSError):
        super().__init__(cause.strerror or str(cause))
        self.cause = cause


class _Parser(argparse.ArgumentParser):
    """argparse, but a refused command line is one ``mmemu: error:`` line like every other
    bad input (no usage block), raised as :class:`UsageError` for ``main()`` to print."""

    def error(self, message: str):  # type: ignore[override]
        raise UsageError(f"{message} (see `{self.prog} --help`)")


class _Output:
    """``sys.stdout`` while a command runs: a failed write or flush becomes
    :class:`OutputError` (BrokenPipeError stays itself: the reader went away)."""

    def __init__(self, stream):
        self._stream = stream  # None when started with stdout closed (`mmemu arches >&-`)

    def write(self, text: str) -> int:
        if self._stream is None:
            raise OutputError(OSError(errno.EBADF, "standard output is closed"))
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise OutputError(exc) from exc

    def flush(self) -> None:
        if self._stream is None:
            return
        try:
            self._stream.flush()
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise OutputError(exc) from exc

    def __getattr__(self, name: str):
        if self._stream is None:
            raise AttributeError(name)
        return getattr(self._stream, name)


#: the machine when neither an option nor a scenario says otherwise
MACHINE_DEFAULTS = {"arch": "x86_64", "kernel": "6.6", "ram": "1G", "cpus": 1, "cmdline": ""}


def _machine_options(p: argparse.ArgumentParser, scenario: bool = False) -> None:
    """The machine options. An option not given is None: the default applies, or with a
    scenario (*scenario*: ``--scenario FILE [--step N]``) the scenario's machine."""
    g = p.add_argument_group("machine")
    g.add_argument("--arch", help="architecture (see `mmemu arches`; default x86_64)")
    g.add_argument("--kernel", metavar="VERSION",
                   help="kernel version whose memory layout rules apply, e.g. 2.6.12, 3.10, 4.14, 5.1, 6.6 (default 6.6)")
    g.add_argument("--ram", metavar="SIZE", help="RAM size, e.g. 512M, 4G, 64G (default 1G)")
    g.add_argument("--cpus", metavar="N", help="number of CPUs (default 1)")
    g.add_argument("--cmdline", metavar="TEXT",
                   help='kernel command line, e.g. "vmalloc=256M mem=768M nopse nogbpages"')
    g.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="arch option, e.g. levels=5 on x86_64 (repeatable)")
    if scenario:
        g.add_argument("--scenario", metavar="FILE",
                       help="show the machine after running this scenario (its [machine], overridden by the "
                            "options above)")
        g.add_argument("--step", metavar="N", help="... after its step N only (default: every step)")


def _overrides(args) -> dict:
    return {"arch": args.arch, "kernel": args.kernel, "ram": args.ram, "cpus": args.cpus,
            "cmdline": args.cmdline, "options": _options(args.option)}


def _machine(args) -> dict:
    """The machine the options describe: the defaults, or the scenario's machine, with the
    options given on top."""
    if getattr(args, "scenario", None):
        from .scenario import load, machine_of

        return machine_of(load(args.scenario), _overrides(args))
    m = dict(MACHINE_DEFAULTS, options=_options(args.option))
    m.update({k: v for k, v in _overrides(args).items() if v is not None and k != "options"})
    return m


def _options(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        check_ascii(pair, "--option", example="levels=5")
        key, sep, value = pair.partition("=")
        if not sep or not key or not value:
            raise ConfigError(f"malformed --option {pair!r}: expected KEY=VALUE, e.g. levels=5")
        out[key] = value
    return out


def _spec(args):
    from .layout import MachineSpec
    from .plugins import default

    _, registry = default()
    m = _machine(args)
    arch = registry.get(m["arch"])
    spec = MachineSpec.make(**m)
    return arch, spec


def _boot(args):
    from . import boot

    if getattr(args, "scenario", None):
        return _after_scenario(args)
    return boot(**_machine(args))


def _after_scenario(args):
    """The kernel after the scenario's steps (up to --step): the inspection commands show it."""
    from .scenario import ScenarioRun, load

    scenario = load(args.scenario)
    last = len(scenario.steps)
    if args.step is not None:
        last = parse_count(args.step, what="--step")
        if not 1 <= last <= len(scenario.steps):
            raise ConfigError(f"--step {last}: {args.scenario} has steps 1 to {len(scenario.steps)}")
    run = ScenarioRun(scenario, _overrides(args))
    for spec in scenario.steps[:last]:
        for _ in run.run_step(spec):
            pass
        if run.stopped is not None:
            run.close()
            raise MmemuError(f"{args.scenario}: step {run.stopped.step} ({run.stopped.op}) failed before step {last}: "
                             f"{run.stopped.text}")
    run.k.scenario_run = run  # (the names its steps bound: vtop takes them as addresses)
    return run.k


def cmd_arches(args) -> int:
    from .plugins import default

    _, registry = default()
    rows = []
    for arch in registry:
        package, version = registry.origin(arch.name)
        rows.append({"name": arch.name, "plugin": package, "version": version, "summary": arch.summary})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    w = max((len(r["name"]) for r in rows), default=4)
    pw = max((len(r["plugin"]) for r in rows), default=6)
    print(f"{'ARCH':<{w}}  {'PLUGIN':<{pw}}  VERSION  DESCRIPTION")
    for r in rows:
        print(f"{r['name']:<{w}}  {r['plugin']:<{pw}}  {r['version']:<7}  {r['summary']}")
    return 0


def cmd_layout(args) -> int:
    from .render.layout import layout_text

    fmt = args.format or ("json" if args.json else "table")
    if args.json and fmt != "json":
        raise ConfigError(f"--json and --format {fmt} ask for two formats: give one")
    arch, spec = _spec(args)
    layout = arch.layout(spec)
    layout.check()
    width = 16 if arch.paging(spec).bits64 else 8
    sys.stdout.write(layout_text(arch, layout, fmt, width))
    return 0


def cmd_ptdump(args) -> int:
    from .render.ptdump import ptdump

    kernel = _boot(args)
    if args.check_wx:
        sys.stdout.write("".join(line + "\n" for line in kernel.check_wx()))
        return 0
    root = kernel.arch.ptdump_root(kernel, args.view, _process_arg(kernel, args))
    sys.stdout.write(ptdump(kernel, root))
    return 0


def cmd_info(args) -> int:
    """QEMU's monitor: ``info tlb`` / ``info mem`` of the kernel's page table, or of the
    process --pid after a scenario."""
    from .render.qemu import qemu_info

    kernel = _boot(args)
    sys.stdout.write(qemu_info(kernel, args.what, _process_arg(kernel, args)))
    return 0


def _process_arg(kernel, args):
    if args.pid is None:
        return None
    pid = parse_count(args.pid, what="--pid")
    process = kernel.processes.get(pid)
    if process is None or not process.alive:
        raise ConfigError(f"--pid {pid}: no such live process"
                          + ("" if args.scenario else " (processes come from a --scenario)"))
    return process


#: the kernel's own views of its state, each as the kernel prints it
VIEWS = {
    "maps": ("/proc/PID/maps of a process (--pid, after a --scenario)", lambda k, p: k.proc_maps(p)),
    "buddyinfo": ("/proc/buddyinfo: free blocks per zone and order", lambda k, p: k.frames.buddyinfo()),
    "kmem-v": ("crash's kmem -v: the vmalloc areas", lambda k, p: k.kmem_v()),
    "dmesg": ("the kernel log, as dmesg prints it with timestamps off", lambda k, p: k.dmesg()),
}


def cmd_view(args) -> int:
    kernel = _boot(args)
    process = _process_arg(kernel, args)
    if args.view == "maps" and process is None:
        raise ConfigError("maps needs --pid PID: the process whose mappings to print")
    text = VIEWS[args.view][1](kernel, process)
    sys.stdout.write(text if not text or text.endswith("\n") else text + "\n")
    return 0


def cmd_vtop(args) -> int:
    from .render.vtop import vtop

    kernel = _boot(args)
    process = _process_arg(kernel, args)
    va = _address(args, kernel)
    kernel.pgtable.check_va(va)
    if args.json:
        print(json.dumps(walk_json(kernel, va), indent=2))
    else:
        sys.stdout.write(vtop(kernel, va, process=process))
    return 0


def _address(args, kernel) -> int:
    """The address argument: hexadecimal, or after a scenario an expression over the names
    its steps bound (``buf + 0x1000``)."""
    run = getattr(kernel, "scenario_run", None)
    if run is None:
        return parse_address(args.address, what="virtual address")
    from .scenario import ExprError, parse

    try:
        return parse_address(args.address, what="virtual address")
    except ConfigError:
        pass
    try:
        return parse(args.address).evaluate(run.values)
    except ExprError as exc:
        raise ConfigError(f"address {args.address!r}: not hexadecimal, and as an expression over the scenario's "
                          f"names: {exc}") from None


def walk_json(kernel, va: int) -> dict:
    from .arch import KR, KW, KX, UR, UW, UX

    w = kernel.walk(va)
    steps = []
    for s in w.steps:
        view = kernel.codec.describe(s.li, s.raw)
        steps.append({"level": s.level.name, "table": f"{s.table:#x}",
                      "index": s.index, "entry": f"{s.entry_addr:#x}", "value": f"{s.raw:#x}",
                      "kind": view.kind_name, "flags": kernel.pgtable.flag_names(s.li, s.raw),
                      "attributes": dict(view.attrs),
                      "writer": kernel.pgtable.writer_of(s.entry_addr)})
    doc = {"virtual": f"{va:#x}", "physical": f"{w.phys:#x}" if w.mapped else None, "steps": steps}
    if w.mapped:
        r = w.rights
        doc["page_size"] = w.page_size
        doc["permissions"] = {"write": w.writable, "user": w.user, "exec": not w.nx,
                              "kernel": "".join(c if r & b else "-" for c, b in (("r", KR), ("w", KW), ("x", KX))),
                              "user_mode": "".join(c if r & b else "-" for c, b in (("r", UR), ("w", UW), ("x", UX)))}
    else:
        doc["fault"] = {"reason": w.missing, "error_code": {a: f"{w.code(a):#x}" for a in ("read", "write", "exec")}}
    info = kernel.frames.page(w.phys >> 12) if w.mapped else None
    if info is not None:
        doc["frame"] = {"pfn": f"{info.pfn:#x}", "zone": info.zone, "state": info.state, "owner": info.owner,
                        "refcount": info.refcount}
    return doc


def _read_module(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise MmemuError(f"cannot read module {path}: {exc.strerror or exc}") from None


def cmd_modinfo(args) -> int:
    """What kmod's ``modinfo FILE`` prints: the file, then every .modinfo field in order."""
    from .module.elf import ModuleFile
    from .render.module import modinfo_text

    mf = ModuleFile(_read_module(args.file), args.file)
    sys.stdout.write(modinfo_text(mf, args.file))
    return 0


def cmd_insmod(args) -> int:
    from .render.module import insmod_json, insmod_text

    kernel = _boot(args)
    first = len(kernel.log)
    load = kernel.load_module_steps(_read_module(args.file), args.file, stub_missing=args.stub_missing,
                                    force_vermagic=args.force_vermagic, run_init=not args.no_init)
    try:
        mod = load.run()
    except Oops:
        # the kernel's answer, not bad input: what it logged (the oops), and status 1
        sys.stdout.write("".join(r.text + "\n" for r in kernel.log[first:]))
        return 1
    log = [r.text for r in kernel.log[first:]]
    if args.json:
        print(json.dumps(insmod_json(kernel, mod, load.steps, log), indent=2))
    else:
        sys.stdout.write(insmod_text(kernel, mod, load.steps, log))
    return 0


#: the built-in scenarios (the tour of each arch is the default of `mmemu run`)
SCENARIOS = Path(__file__).resolve().parent.parent / "examples" / "scenarios"


def _scenario_path(args) -> Path:
    """The scenario a command names, or the built-in tour of its arch."""
    if args.scenario is not None:
        return Path(args.scenario)
    arch = args.arch or "x86_64"
    path = SCENARIOS / f"tour-{arch}.toml"
    if not path.is_file():
        raise MmemuError(f"no built-in tour for arch {arch!r} ({path.name}); give a scenario file")
    return path


def cmd_tui(args) -> int:
    """The terminal UI (mmemu.tui) on a scenario; a scenario that cannot run is refused here,
    before the screen is taken."""
    from .scenario import ScenarioError, ScenarioRun, load

    path = _scenario_path(args)
    if args.open_at < 0:
        raise MmemuError(f"--step must be 0 or more, not {args.open_at}")
    try:  # read and boot it once here: its errors go to the terminal, not into the UI
        ScenarioRun(load(path), _overrides(args)).close()
    except ScenarioError as exc:
        _say(f"error: {exc}")
        return EXIT_USAGE
    from .tui import run_tui

    return run_tui(path, _overrides(args), args.open_at)


def cmd_run(args) -> int:
    """Run a scenario headless: each step and what it changed, then a summary; 0 when every
    expectation holds, 1 when one fails or a step fails, 2 for a scenario that cannot run."""
    from .render.scenario import step_lines, summary
    from .scenario import OPS, ScenarioRun, load

    if args.list_ops:
        w = max(len(n) for n in OPS)
        for name, op in OPS.items():
            print(f"{name:<{w}}  {op.doc}")
            fields = ", ".join(f"{f}{'' if spec.required else '?'}" for f, spec in op.fields.items())
            print(f"{'':<{w}}  fields: {fields or '-'}")
        return 0
    scenario = load(_scenario_path(args))
    run = ScenarioRun(scenario, _overrides(args))
    trace = None
    try:
        if args.trace:
            try:
                trace = open(args.trace, "w", encoding="utf-8")
            except OSError as exc:
                raise MmemuError(f"cannot write the trace {args.trace}: {exc.strerror or exc}") from None
        m = run.machine
        if not args.json:
            print(f"scenario {scenario.file}" + (f": {scenario.title}" if scenario.title else ""))
            print(f"machine: {m['arch']} {m['kernel']}, {m['ram']} RAM, {m['cpus']} CPU(s)"
                  + (f", cmdline {m['cmdline']!r}" if m["cmdline"] else "")
                  + "".join(f", {k}={v}" for k, v in m["options"].items()))
        width = 2 * run.k.ptr_size
        for rec in run.run():
            line = json.dumps(rec.to_json())
            if trace is not None:
                trace.write(line + "\n")
            if args.json:
                print(line)
            else:
                print("\n".join(step_lines(rec, width)))
        end = {"summary": {"ok": run.ok, "steps": len(run.records), "expectations": run.expectations,
                           "failed": [r.step for r in run.failed],
                           "stopped": run.stopped.step if run.stopped else None, "machine": m}}
        if trace is not None:
            trace.write(json.dumps(end) + "\n")
        print(json.dumps(end) if args.json else summary(run))
    finally:
        if trace is not None:
            trace.close()
        run.close()
    return 0 if run.ok else 1


def cmd_vmcore(args) -> int:
    """The machine (after --scenario's steps) as a kdump-style ELF core (mmemu.vmcore), then
    what the file holds: its segments and the VMCOREINFO note."""
    from .units import format_size
    from .vmcore import write_vmcore

    kernel = _boot(args)
    try:
        core = write_vmcore(kernel, args.output)
    except OSError as exc:
        raise OutputError(OSError(exc.errno, f"{args.output}: {exc.strerror or exc}")) from exc
    print(f"{args.output}: ELF64 core ({core.machine}), {core.size} bytes")
    print(f"PT_NOTE  VMCOREINFO, {len(core.vmcoreinfo)} bytes")
    width = 2 * kernel.ptr_size
    for seg in core.segments:
        virt = f"{seg.vaddr:#0{width + 2}x}" if seg.vaddr is not None else "-"
        print(f"PT_LOAD  phys {seg.paddr:#x}-{seg.paddr + seg.size - 1:#x}  virt {virt}  "
              f"({format_size(seg.size)})")
    sys.stdout.write(core.vmcoreinfo)
    return 0


def cmd_demo(args) -> int:
    """A headless tour of the mappings (mmemu.demo)."""
    from .demo import run
    from .plugins import default

    if not args.arch:
        run()
        return 0
    registry = default()[1]
    for name in args.arch:
        registry.get(name)  # an unknown arch is an error before anything runs
    run(machines=[(name, args.kernel, args.ram) for name in args.arch])
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="mmemu", description="Emulate and inspect how the Linux kernel maps memory.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    s = sub.add_parser("arches", help="list the registered architectures", description="List the registered architectures, their plugin package and version.")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(func=cmd_arches)

    from .render.layout import LAYOUT_FORMATS

    s = sub.add_parser("layout", help="the kernel's virtual memory layout", description="Print the kernel's virtual memory layout for a machine: mmemu's table (mm.rst style) and the "
                       "kernel's symbols, or JSON, or the kernel's own texts of the era (--format mm.rst, dmesg).")
    _machine_options(s, scenario=True)
    s.add_argument("--json", action="store_true", help='one JSON object: {"arch", "kernel", "symbols", "regions", ...} '
                                                       '(the same as --format json)')
    s.add_argument("--format", choices=LAYOUT_FORMATS, metavar="FORMAT",
                   help="table (mmemu's, the default), json, mm.rst (the table of the kernel's "
                        "Documentation/arch/x86/x86_64/mm.rst, or the era's mm.txt: x86_64) or dmesg (the 'virtual "
                        "kernel memory layout:' block i386 printed at boot, 2.6.19-5.6)")
    s.set_defaults(func=cmd_layout)

    s = sub.add_parser("ptdump", help="the kernel page tables, as /sys/kernel/debug/page_tables/kernel",
                       description="Boot the machine and dump the kernel page tables in the format of the "
                                   "kernel's own dump of that era: on x86 /sys/kernel/debug/page_tables/kernel "
                                   "(4.15 and later; /sys/kernel/debug/kernel_page_tables from 2.6.25 to 4.14, "
                                   "none before), on riscv64 and arm64 /sys/kernel/debug/kernel_page_tables.")
    _machine_options(s, scenario=True)
    s.add_argument("--check-wx", action="store_true",
                   help="print the kernel's W+X audit (CONFIG_DEBUG_WX) instead of the dump")
    s.add_argument("--view", choices=("kernel", "current_kernel", "current_user"), default="kernel",
                   help="which debugfs file: kernel (the default), or x86 4.15+'s page_tables/current_kernel and "
                        "current_user (the process --pid's page directory, and its user copy under PTI)")
    s.add_argument("--pid", metavar="PID", help="the process reading current_kernel/current_user (from the scenario)")
    s.set_defaults(func=cmd_ptdump)

    s = sub.add_parser("info", help="QEMU's monitor: info tlb, info mem",
                       description="Print what QEMU's monitor prints for 'info tlb' (every present leaf: "
                                   "address, frame, flags) or 'info mem' (runs of equal rights) with the "
                                   "kernel's page table loaded, or a process's (--pid, after --scenario).")
    s.add_argument("what", choices=("tlb", "mem"), help="the monitor command")
    _machine_options(s, scenario=True)
    s.add_argument("--pid", metavar="PID", help="the page table of this process (from the scenario)")
    s.set_defaults(func=cmd_info)

    for view, (what, _fn) in VIEWS.items():
        s = sub.add_parser(view, help=what, description=f"Print {what}, for the booted machine or after a "
                                                          "scenario's steps.")
        _machine_options(s, scenario=True)
        s.add_argument("--pid", metavar="PID", help="the process (from the scenario)")
        s.set_defaults(func=cmd_view, view=view)

    s = sub.add_parser("vtop", help="walk one virtual address, as crash's vtop", description="Boot the machine and walk one virtual address through the master kernel page table, in the format of the crash utility's vtop.")
    s.add_argument("address", help="virtual address (hexadecimal, 0x optional)")
    _machine_options(s, scenario=True)
    s.add_argument("--json", action="store_true", help="print the walk as JSON")
    s.add_argument("--pid", metavar="PID", help="a user address in this process (from the scenario), as crash's "
                                                "vtop -c PID; without it a user address is not accessible, as for "
                                                "crash in a kernel thread's context")
    s.set_defaults(func=cmd_vtop)

    s = sub.add_parser("modinfo", help="the .modinfo fields of a module file, as modinfo prints them",
                       description="Print a kernel module's .modinfo fields (license, vermagic, ...) as kmod's "
                                   "modinfo does.")
    s.add_argument("file", help="a kernel module (.ko) or relocatable object (.o)")
    s.set_defaults(func=cmd_modinfo)

    s = sub.add_parser("insmod", help="load a module into the emulated kernel and show where it landed",
                       description="Boot the machine, load a kernel module as the kernel's loader of that era "
                                   "does (module_alloc, sections, relocations, symbols, permissions), and print "
                                   "where each section landed, the relocations applied, the symbols resolved and "
                                   "the page-table changes each step made.")
    s.add_argument("file", help="a kernel module (.ko) or relocatable object (.o) for the machine's arch")
    _machine_options(s)
    s.add_argument("--stub-missing", action="store_true",
                   help="bind every symbol the kernel does not export to a stub that stops the module if "
                        "called, instead of failing with 'Unknown symbol'")
    s.add_argument("--force-vermagic", action="store_true",
                   help="ignore a version magic that differs from the kernel's, as modprobe --force-vermagic "
                        "does (the kernel is tainted F)")
    s.add_argument("--no-init", action="store_true",
                   help="do not run the module's init function (load, relocate, map and protect only)")
    s.add_argument("--json", action="store_true", help="print everything as one JSON object")
    s.set_defaults(func=cmd_insmod)

    s = sub.add_parser("run", help="run a scenario headless and check its expectations",
                       description="Run a scenario (TOML: a machine and steps, each a kernel operation or an "
                                   "expectation) headless: print each step and what it changed, then a summary. "
                                   "Exit status 0 when every expectation holds, 1 when one fails, 2 when the "
                                   "scenario cannot run as written. Without SCENARIO: the built-in tour of --arch.")
    s.add_argument("scenario", nargs="?", help="the scenario file (default: examples/scenarios/tour-ARCH.toml)")
    _machine_options(s)
    s.add_argument("--json", action="store_true", help="one JSON object a step (JSON Lines), then a summary object")
    s.add_argument("--trace", metavar="FILE", help="also write the JSON Lines to FILE")
    s.add_argument("--list-ops", action="store_true", help="list the operations a step can name, and exit")
    s.set_defaults(func=cmd_run)

    s = sub.add_parser("tui", help="step through a scenario's mappings in a terminal UI",
                       description="Open the terminal UI on a scenario (default: the built-in tour of --arch): "
                                   "the address-space map, the page-table tree, the walk of an address, the "
                                   "frames and their aliases, a module's loader steps and code, the logs; step "
                                   "forwards and backwards (n, p; ? lists every key). `mmemu` alone opens it on "
                                   "the tour when it runs in a terminal.")
    s.add_argument("scenario", nargs="?", help="the scenario file (default: examples/scenarios/tour-ARCH.toml)")
    _machine_options(s)
    s.add_argument("--step", dest="open_at", type=int, default=0, metavar="N",
                   help="open at step N (0: as booted)")
    s.set_defaults(func=cmd_tui)

    s = sub.add_parser("vmcore", help="write the machine as a kdump-style ELF core (vmcore) for drgn",
                       description="Boot the machine (or run --scenario up to --step) and write its state as "
                                   "an ELF core like /proc/vmcore: a VMCOREINFO note and one PT_LOAD segment "
                                   "per range of physical memory. drgn opens it without a vmlinux and reads "
                                   "kernel addresses through the machine's page tables (x86_64 and arm64: the "
                                   "arches drgn walks).")
    _machine_options(s, scenario=True)
    s.add_argument("-o", "--output", required=True, metavar="FILE", help="the core file to write")
    s.set_defaults(func=cmd_vmcore)

    s = sub.add_parser("demo", help="a headless tour of the kernel's mappings", description="Boot an i386 machine with HighMem and an x86_64 one (or the arches named with --arch), make each kind of kernel mapping, run user code that faults its pages in, fork, and oops; print what each step looks like in the kernel's own formats.")
    s.add_argument("--arch", action="append", default=[], help="tour this arch instead (repeatable)")
    s.add_argument("--kernel", default="6.6", metavar="VERSION", help="kernel version of the --arch tours (default 6.6)")
    s.add_argument("--ram", default="1G", metavar="SIZE", help="RAM of the --arch tours (default 1G)")
    s.set_defaults(func=cmd_demo)
    return p


def _check_args(args) -> None:
    """Refuse a malformed machine option before anything is computed or booted, each with
    a ConfigError naming the option and its text. ASCII only: Python's int() and str.split()
    would take other scripts' digits (``٣``, ``４``) and blanks (U+00A0), the kernel would not."""
    if hasattr(args, "cpus"):  # (None: not given to `mmemu run`, the scenario's value holds)
        if args.arch is not None:
            check_ascii(args.arch, "arch (--arch)", example="x86_64")
        if args.kernel is not None:
            KernelVersion.parse(args.kernel)
        if args.ram is not None:
            memparse(args.ram, what="RAM size")
        if args.cpus is not None:
            args.cpus = parse_count(args.cpus, what="CPU count")
            if args.cpus < 1:
                raise ConfigError(f"CPU count must be at least 1, not {args.cpus}")
        # words are split on ASCII blanks, as the kernel's next_arg() does with isspace()
        if args.cmdline is not None:
            check_ascii(args.cmdline, "kernel command line (--cmdline)", example='"vmalloc=256M nopse"')
        _options(args.option)
    if getattr(args, "step", None) is not None and not getattr(args, "scenario", None):
        raise ConfigError("--step needs --scenario FILE: the step of which scenario?")
    if getattr(args, "address", None) is not None and not getattr(args, "scenario", None):
        parse_address(args.address, what="virtual address")  # before booting: fail fast


def _one_line(message: str) -> str:
    """*message* with line breaks and other unprintable characters escaped: one line."""
    return "".join(c if c.isprintable() or c == "\t" else repr(c)[1:-1] for c in message)


def _say(message: str) -> None:
    if sys.stderr is None:  # started with stderr closed (print would fall back to stdout)
        return
    try:
        print(f"mmemu: {_one_line(message)}", file=sys.stderr, flush=True)
    except (OSError, ValueError):  # stderr is gone or full too: the exit status still tells
        pass


def _silence_stdout(stdout) -> None:
    """After a failed write, point the real stdout at /dev/null so that the flush at
    interpreter shutdown cannot fail again ("Exception ignored ... OSError") and change the
    exit status (the recipe of the Python docs for SIGPIPE)."""
    try:
        fd = stdout.fileno()
    except (AttributeError, OSError, ValueError):  # not a file (pytest's capture): nothing to flush at exit
        return
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)
    except OSError:
        pass


def main(argv: Sequence[str] | None = None) -> int:
    stdout = sys.stdout
    sys.stdout = _Output(stdout)
    try:
        try:
            args = build_parser().parse_args(argv)
        except SystemExit as exc:  # --help (argparse exits after printing it)
            sys.stdout.flush()
            return exc.code if isinstance(exc.code, int) else 0
        if args.command is None:
            # `mmemu` alone: the UI on the built-in tour in a terminal, the headless tour
            # (`mmemu run`) where there is none (a pipe, CI)
            interactive = sys.stdin.isatty() and stdout is not None and stdout.isatty()
            args = build_parser().parse_args(["tui" if interactive else "run"])
        _check_args(args)
        code = args.func(args)
        sys.stdout.flush()  # here, not at interpreter shutdown, where an error is only "ignored"
        return code
    except MmemuError as exc:
        _say(f"error: {exc}")
        return EXIT_USAGE
    except OutputError as exc:
        _silence_stdout(stdout)
        _say(f"error: cannot write output: {exc}")
        return EXIT_IOERR
    except BrokenPipeError:
        _silence_stdout(stdout)
        return 0
    except Exception as exc:  # a bug: say so in one line unless asked for the traceback
        if os.environ.get("MMEMU_DEBUG"):
            raise
        _say(f"internal error: {type(exc).__name__}: {exc} (set MMEMU_DEBUG=1 for the traceback)")
        return EXIT_INTERNAL
    finally:
        sys.stdout = stdout
        try:  # what an error left in the buffer: written now, or never (the status already tells)
            if stdout is not None:
                stdout.flush()
        except (OSError, ValueError):
            _silence_stdout(stdout)


if __name__ == "__main__":
    sys.exit(main())
