"""The ``mmemu`` command.

Every command takes the same machine options (``--arch``, ``--kernel``, ``--ram``, ``--cpus``,
``--cmdline``, ``--option``). Errors a user can cause end the command with a one-line
``mmemu: error: ...`` on stderr and exit status 2; never a traceback (set MMEMU_DEBUG=1 to
see one for an internal error).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Sequence

from .errors import ConfigError, MmemuError
from .units import parse_address

EXIT_USAGE = 2
EXIT_INTERNAL = 70  # EX_SOFTWARE


def _machine_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("machine")
    g.add_argument("--arch", default="x86_64", help="architecture (see `mmemu arches`; default x86_64)")
    g.add_argument("--kernel", default="6.6", metavar="VERSION",
                   help="kernel version whose memory layout rules apply, e.g. 2.6.12, 3.10, 4.14, 5.1, 6.6 (default 6.6)")
    g.add_argument("--ram", default="1G", metavar="SIZE", help="RAM size, e.g. 512M, 4G, 64G (default 1G)")
    g.add_argument("--cpus", default="1", metavar="N", help="number of CPUs (default 1)")
    g.add_argument("--cmdline", default="", metavar="TEXT",
                   help='kernel command line, e.g. "vmalloc=256M mem=768M nopse nogbpages"')
    g.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="arch option, e.g. levels=5 on x86_64 (repeatable)")


def _options(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key or not value:
            raise ConfigError(f"malformed --option {pair!r}: expected KEY=VALUE, e.g. levels=5")
        out[key] = value
    return out


def _spec(args):
    from .layout import MachineSpec
    from .plugins import default

    _, registry = default()
    arch = registry.get(args.arch)
    spec = MachineSpec.make(arch=args.arch, kernel=args.kernel, ram=args.ram, cpus=args.cpus,
                            cmdline=args.cmdline, options=_options(args.option))
    return arch, spec


def _boot(args):
    from . import boot

    return boot(arch=args.arch, kernel=args.kernel, ram=args.ram, cpus=args.cpus, cmdline=args.cmdline,
                options=_options(args.option))


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
    from .render.layout import layout_json, layout_table

    arch, spec = _spec(args)
    layout = arch.layout(spec)
    layout.check()
    width = 16 if arch.paging(spec).bits64 else 8
    print(layout_json(layout) if args.json else layout_table(layout, width), end="" if not args.json else "\n")
    return 0


def cmd_ptdump(args) -> int:
    from .render.ptdump import ptdump

    kernel = _boot(args)
    sys.stdout.write(ptdump(kernel))
    return 0


def cmd_vtop(args) -> int:
    from .render.vtop import vtop

    kernel = _boot(args)
    va = parse_address(args.address, what="virtual address")
    kernel.pgtable.check_va(va)
    if args.json:
        print(json.dumps(walk_json(kernel, va), indent=2))
    else:
        sys.stdout.write(vtop(kernel, va))
    return 0


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


def cmd_demo(args) -> int:
    """A headless tour of the mappings (mmemu.demo)."""
    from .demo import run

    run()
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mmemu", description="Emulate and inspect how the Linux kernel maps memory.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    s = sub.add_parser("arches", help="list the registered architectures", description="List the registered architectures, their plugin package and version.")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(func=cmd_arches)

    s = sub.add_parser("layout", help="the kernel's virtual memory layout", description="Print the kernel's virtual memory layout (mm.rst style table and symbols) for a machine.")
    _machine_options(s)
    s.add_argument("--json", action="store_true", help='one JSON object: {"arch", "kernel", "symbols", "regions", ...}')
    s.set_defaults(func=cmd_layout)

    s = sub.add_parser("ptdump", help="the kernel page tables, as /sys/kernel/debug/page_tables/kernel", description="Boot the machine and dump the kernel page tables in the format of Linux's /sys/kernel/debug/page_tables/kernel.")
    _machine_options(s)
    s.set_defaults(func=cmd_ptdump)

    s = sub.add_parser("vtop", help="walk one virtual address, as crash's vtop", description="Boot the machine and walk one virtual address through the master kernel page table, in the format of the crash utility's vtop.")
    s.add_argument("address", help="virtual address (hexadecimal, 0x optional)")
    _machine_options(s)
    s.add_argument("--json", action="store_true", help="print the walk as JSON")
    s.set_defaults(func=cmd_vtop)

    s = sub.add_parser("demo", help="a headless tour of the kernel's mappings", description="Boot an i386 machine with HighMem and an x86_64 one, make each kind of kernel mapping, run user code that faults its pages in, fork, and oops; print what each step looks like in the kernel's own formats.")
    s.set_defaults(func=cmd_demo)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except MmemuError as exc:
        print(f"mmemu: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        return 0
    except Exception as exc:  # a bug: say so in one line unless asked for the traceback
        if os.environ.get("MMEMU_DEBUG"):
            raise
        print(f"mmemu: internal error: {type(exc).__name__}: {exc} (set MMEMU_DEBUG=1 for the traceback)",
              file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
