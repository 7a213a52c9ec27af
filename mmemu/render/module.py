"""Modules as people look at them: ``modinfo``'s fields, and what ``mmemu insmod`` shows
(where each section landed, the relocations, the symbols, each step of the load)."""

from __future__ import annotations

from ..arch import KR, KW, KX
from typing import TYPE_CHECKING, Iterable

from ..kernel.module import LIVE

if TYPE_CHECKING:
    from ..kernel import Kernel
    from ..kernel.module import LoadStep, Module
    from ..module.elf import ModuleFile


def modinfo_text(mf: "ModuleFile", filename: str) -> str:
    """kmod's modinfo: ``filename:`` then each field of .modinfo in file order, the field
    name and its colon left-aligned in 16 columns (tools/modinfo.c: ``%-16s%s``)."""
    lines = [f"{'filename:':<16}{filename}"]
    lines += [f"{tag + ':':<16}{value}" for tag, value in mf.modinfo]
    return "\n".join(lines) + "\n"


def _perms(kernel, address: int, size: int, freed: bool) -> str:
    """The kernel's rights on the page at *address*, from a walk of the master table (what
    the MMU would allow), or ``freed`` for the init part once init ran."""
    if freed:
        return "freed"
    if size == 0 or address is None:
        return "empty"
    w = kernel.walk(address)
    if not w.mapped:
        return "---"
    r = w.rights
    return "".join(c if r & b else "-" for c, b in (("r", KR), ("w", KW), ("x", KX)))


def sections(kernel, mod) -> list[dict]:
    out = []
    for p in sorted(mod.layout.placements.values(), key=lambda p: (p.region.base or 0, p.offset)):
        out.append({"index": p.section.index, "name": p.section.name, "region": p.region.name,
                    "address": p.address, "size": p.section.size, "kind": p.kind,
                    "permissions": _perms(kernel, p.address, p.section.size, p.region.init and mod.state == LIVE)})
    return out


#: the sections listing code the kernel patches after relocation (module_finalize,
#: ftrace_module_init, jump_label_apply_nops...): ftrace call sites, alternatives,
#: paravirt calls, jump labels, static calls, retpoline and return-thunk sites; riscv64's
#: alternatives (module_finalize: apply_module_alternatives of ".alternative") and ftrace's
#: patchable function entries (-fpatchable-function-entry)
PATCH_SECTIONS = ("__mcount_loc", ".altinstructions", ".parainstructions", "__jump_table",
                  ".static_call_sites", ".retpoline_sites", ".return_sites", ".call_sites", ".ibt_endbr_seal",
                  ".alternative", "__patchable_function_entries")


def code_patching(mod) -> dict:
    """What the kernel would patch in this module and mmemu does not: the patch-site
    sections present, with their sizes. mmemu runs a module's code as compiled (calls to
    ``__fentry__`` stay calls, to an implementation that returns; ``jmp
    __x86_return_thunk`` stays a jump to one that returns)."""
    return {s.name: s.size for s in mod.file.sections if s.name in PATCH_SECTIONS and s.size}


def percpu_row(kernel, mod) -> dict | None:
    """The per-cpu section of an SMP kernel: not in the module's memory but at a per-cpu
    pointer, one copy per CPU (the addresses of the copies in the direct map)."""
    if mod.percpu is None:
        return None
    name = kernel.era.module_percpu_section
    index = next(s.index for s in mod.file.sections if s.name == name)
    return {"index": index, "name": name, "pointer": mod.percpu, "size": mod.percpu_size,
            "copies": [kernel.per_cpu_ptr(mod.percpu, cpu) for cpu in range(kernel.pcpu.nr_cpus)]}


def insmod_text(kernel: "Kernel", mod: "Module", steps: "Iterable[LoadStep]", log: Iterable[str] = ()) -> str:
    """What ``mmemu insmod`` prints: the module's sections (where each landed, its size and
    permissions), its memory regions, the loader's steps and the lines it logged."""
    w = 16 if kernel.paging.bits64 else 8
    out = [f"module {mod.name} ({mod.state}) on {kernel.arch.name} {kernel.spec.kernel}"
           + (f", taints {mod.taints}" if mod.taints else ""), ""]
    out.append("Sections:")
    out.append(f"  {'Idx':>3} {'Name':<24} {'Address':<{w + 2}} {'Size':>8}  {'Perm':<5} Region")
    for s in sections(kernel, mod):
        addr = "-" if s["address"] is None else f"{s['address']:#0{w + 2}x}"
        out.append(f"  {s['index']:>3} {s['name']:<24} {addr:<{w + 2}} {s['size']:>#8x}  "
                   f"{s['permissions']:<5} {s['region']}")
    pc = percpu_row(kernel, mod)
    if pc is not None:
        out.append(f"  {pc['index']:>3} {pc['name']:<24} {pc['pointer']:<#{w + 2}x} {pc['size']:>#8x}  "
                   "rw-   per-cpu pointer; copies: " + ", ".join(f"cpu{i} {a:#x}" for i, a in enumerate(pc["copies"])))
    out.append("")
    patch = code_patching(mod)
    out.append("Code patching: none by mmemu; the code runs as compiled"
               + (" (the kernel would patch: " + ", ".join(f"{n} {sz:#x} bytes" for n, sz in patch.items()) + ")"
                  if patch else ""))
    out.append("Relocations applied: " + (", ".join(f"{n} {t}" for t, n in sorted(mod.relocations.items()))
                                          or "none"))
    if mod.skipped_relocations:
        out.append(f"  ({mod.skipped_relocations} against sections the kernel does not load: skipped)")
    out.append("")
    out.append(f"Kernel symbols resolved ({len(mod.resolved)}):")
    for name, addr in sorted(mod.resolved.items(), key=lambda kv: kv[1]):
        out.append(f"  {addr:#0{w + 2}x} {name}" + ("  (stub)" if name in mod.stubbed else ""))
    if mod.init is not None or mod.exit is not None:
        out.append("")
        if mod.init is not None:
            out.append(f"init_module    {mod.init:#0{w + 2}x}")
        if mod.exit is not None:
            out.append(f"cleanup_module {mod.exit:#0{w + 2}x}")
    if log:
        out += ["", "Kernel log:"] + [f"  {line}" for line in log]
    out.append("")
    out.append("Steps:")
    for i, step in enumerate(steps, 1):
        out.append(f"  {i:>3}. {step.function}: {step.what}")
        for op in step.operations:
            out.append(f"       {op.writer}: {op.kind} {op.va:#0{w + 2}x}+{op.size:#x} "
                       f"({len(op.changes)} entry runs written)")
    return "\n".join(out) + "\n"


def insmod_json(kernel: "Kernel", mod: "Module", steps: "Iterable[LoadStep]", log: Iterable[str] = ()) -> dict:
    """``mmemu insmod --json``: the same as :func:`insmod_text`, as one JSON object."""
    return {
        "module": mod.name, "state": mod.state, "arch": kernel.arch.name, "kernel": str(kernel.spec.kernel),
        "vermagic": mod.vermagic, "license": mod.license, "taints": mod.taints,
        "regions": [{"name": r.name, "address": r.base, "size": r.size, "init": r.init,
                     "spans": [{"kind": s.kind, "start": s.start, "end": s.end} for s in r.spans]}
                    for r in mod.layout.regions],
        "sections": sections(kernel, mod),
        "relocations": dict(sorted(mod.relocations.items())),
        "skipped_relocations": mod.skipped_relocations,
        "resolved": dict(sorted(mod.resolved.items())),
        "stubbed": sorted(mod.stubbed),
        "symbols": dict(sorted(mod.symbols.items())),
        "percpu": percpu_row(kernel, mod),
        "code_patching": {"applied": False, "sites": code_patching(mod)},
        "init": mod.init, "exit": mod.exit,
        "steps": [{"function": s.function, "what": s.what,
                   "operations": [{"writer": op.writer, "kind": op.kind, "va": op.va, "size": op.size,
                                   "entries": sum(len(c.old) // c.level.entry_size for c in op.changes)}
                                  for op in s.operations]} for s in steps],
        "log": list(log),
    }
