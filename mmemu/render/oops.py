"""The oops a kernel-mode page fault ends in, in the kernel's words for the era
(arch/x86/mm/fault.c ``show_fault_oops``/``dump_pagetable``, arch/x86/kernel/dumpstack.c
``__die``).

Since 5.1 (Sean Christopherson's rework)::

    BUG: unable to handle page fault for address: ffffc90000005000
    #PF: supervisor write access in kernel mode
    #PF: error_code(0x0002) - not-present page
    PGD 100000067 P4D 100000067 PUD 100123067 PMD 0
    Oops: 0002 [#1] SMP

Before, ``BUG: unable to handle kernel paging request at ...`` (or ``NULL pointer
dereference``) and an ``IP:`` line. The page-table line is ``*pde = ...`` (with
``*pdpt = ...`` first on PAE, ``*pte = ...`` last when the page table is in lowmem) on
i386, ``PGD ... P4D ... PUD ... PMD ... PTE ...`` on x86_64 (P4D since 4.12).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..kernel import Kernel
    from ..kernel.fault import Fault

PAGE_SIZE = 4096


def dump_pagetable(k: "Kernel", root: int, address: int) -> str:
    """The page-table line of the oops: the entries the walk reads, in the kernel's format."""
    walk = k.pgtable.walk(root, address)
    steps = walk.steps
    if k.paging.canonical:
        parts = []
        names = [n for s in steps for n in ([s.level.name.upper()] + [f.upper() for f in s.level.folds])]
        values = [s.raw for s in steps for _ in range(1 + len(s.level.folds))]
        if k.spec.kernel < "4.12":
            pairs = [(n, v) for n, v in zip(names, values) if n != "P4D"]
        else:
            pairs = list(zip(names, values))
        for name, value in pairs:
            parts.append(f"{name} {value:x}")
        return " ".join(parts) + " "
    pae = k.paging.levels[0].entry_size == 8
    parts = []
    width = 16 if pae else 8
    if pae:
        parts.append(f"*pdpt = {steps[0].raw:016x}")
        if len(steps) < 2:
            return " ".join(parts) + " "
        pde = steps[1]
    else:
        pde = steps[0]
    parts.append(f"*pde = {pde.raw:0{width}x}")
    # the pte is read only when its page table is in lowmem (no kmap in an oops)
    pte_step = next((s for s in steps if s.level.name == "pte"), None)
    if pte_step is not None and k.frames.zone_of(pte_step.table >> 12) is not None \
            and k.frames.zone_of(pte_step.table >> 12).name != "HighMem":
        parts.append(f"*pte = {pte_step.raw:0{width}x}")
    return " ".join(parts) + " "


def oops_report(k: "Kernel", fault: "Fault", die_counter: int, why: str = "") -> str:
    w = 16 if k.paging.canonical else 8
    addr = fault.address
    lines = []
    modern = k.spec.kernel >= "5.1"
    if fault.instr and not fault.user and fault.protection:
        lines.append("kernel tried to execute NX-protected page - exploit attempt? (uid: 0)")
    if modern:
        if addr < PAGE_SIZE:
            lines.append(f"BUG: kernel NULL pointer dereference, address: {addr:0{w}x}")
        else:
            lines.append(f"BUG: unable to handle page fault for address: {addr:0{w}x}")
        lines.append(f"#PF: {fault.describe()}")
        lines.append(f"#PF: error_code(0x{fault.error_code:04x}) - {fault.reason()}")
    else:
        kind = "kernel NULL pointer dereference" if addr < PAGE_SIZE else "kernel paging request"
        lines.append(f"BUG: unable to handle {kind} at {addr:0{w}x}")
        ip = fault.ip if fault.ip is not None else 0
        lines.append(f"IP: [<{ip:0{w}x}>] 0x{ip:x}")
    root = k.current_pgd()
    lines.append(dump_pagetable(k, root, addr).rstrip())
    if why == "Bad pagetable":
        lines.append(f"{k.spec.arch}: Corrupted page table at address {addr:x}")
    smp = " SMP" if k.spec.cpus > 1 or k.layout.config.get("CONFIG_SMP", True) else ""
    lines.append(f"Oops: {fault.error_code & 0xFFFF:04x} [#{die_counter}]{smp}")
    proc = fault.process
    comm, pid = (proc.comm, proc.pid) if proc is not None else ("swapper", 0)
    lines.append(f"CPU: {fault.cpu} PID: {pid} Comm: {comm} Not tainted {k.spec.kernel} #1")
    ip = fault.ip
    ip_text = f"0x{ip:x}" if ip is not None else "(an access made through the emulator's API)"
    if k.paging.canonical:
        lines.append(f"RIP: 0010:{ip_text}")
    else:
        lines.append(f"EIP: {ip_text}")
    lines.append(f"CR2: {addr:0{w}x}")
    lines.append("---[ end trace 0000000000000000 ]---")
    return "\n".join(lines)
