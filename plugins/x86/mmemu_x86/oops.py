"""The oops a kernel-mode page fault ends in, and the segfault line of a user one, in the
kernel's words for the era (arch/x86/mm/fault.c ``show_fault_oops``/``no_context``/
``dump_pagetable``/``show_signal_msg``; arch/x86/kernel/dumpstack.c ``__die``;
lib/dump_stack.c). The eras, from the sources read (2.6.12, 3.10, 5.10; 4.14 and 6.6
bounded by excerpts and patches):

- before 2.6.26: ``Unable to handle kernel paging request at virtual address ...``
  (i386, then ``printing eip:``) or ``... at ... RIP:`` (x86_64); i386 dumps ``*pde``
  and ``*pte``, x86_64 ``PGD PUD PMD PTE``; ``Oops: 0002 [#1]`` (x86_64: ``[1]``).
- 2.6.26 to 4.14: ``BUG: unable to handle kernel paging request at ...`` and an ``IP:``
  line; 4.15 to 5.1 without the ``IP:`` line, 5.0 and 5.1 with ``#PF error: [WRITE]``.
- since 5.2: ``BUG: unable to handle page fault for address: ...``, ``#PF: supervisor
  write access in kernel mode``, ``#PF: error_code(0x0002) - not-present page``.

The page-table line: i386 ``*pdpt = ...`` (PAE, since 2.6.2x), ``*pde = ...``, and
``*pte = ...`` only when the page table is in lowmem; x86_64 ``PGD ... P4D ... PUD ...
PMD ... PTE ...`` (P4D since 4.12). There are no symbols here: where the kernel prints
``func+0x12/0x40`` mmemu prints the address.
"""

from __future__ import annotations

from mmemu.eras import EraTable, Feature, Variant
from mmemu.faults import Fault
from mmemu.units import PAGE_SIZE

from .codec import X86_PF_INSTR, X86_PF_PK, X86_PF_PROT, X86_PF_RSVD, X86_PF_USER, X86_PF_WRITE

#: The oops and segfault wording of each era (arch/x86/mm/fault.c, arch/x86/kernel/dumpstack.c).
OOPS = EraTable(
    Variant("header", [("2.6.26", "bug_unable"), ("5.2", "pf")], before="unable",
            source="arch/x86/mm/fault.c: 'Unable to handle kernel paging request' (i386/x86_64 before the "
                   "2.6.26 unification), 'BUG: unable to handle kernel paging request' (2.6.26), "
                   "'BUG: unable to handle page fault for address:' with #PF lines (5.2, show_fault_oops)"),
    Variant("ip_line", [("4.14", "short"), ("4.15", None)], before="long",
            source="arch/x86/mm/fault.c show_fault_oops: 'IP: [<%p>] %pS' until 4.13, 'IP: %pS' in 4.14, "
                   "gone in 4.15 (the RIP line of __show_regs says it)"),
    Feature("pf_error_line", since="5.0", source="arch/x86/mm/fault.c (5.0): '#PF error: [WRITE]' tokens"),
    Feature("p4d", since="4.12", source="arch/x86/mm/fault.c dump_pagetable prints P4D since 5-level "
                                       "support (4.12)"),
    Feature("pdpt_line", since="2.6.26", source="arch/x86/mm/fault.c dump_pagetable (32-bit PAE): '*pdpt = '"),
    Feature("nopti", since="4.15", source="arch/x86/kernel/dumpstack.c __die_header: ' NOPTI' (4.15, PTI)"),
    Variant("die_header", [("2.6.26", "trailing"), ("4.14", "leading")], before="classic",
            source="arch/x86/kernel/dumpstack*.c die(): 'Oops: %04lx [#%d] ' with each flag followed by a "
                   "blank; 4.14: each flag preceded by one"),
    Feature("cpu_task_line", since="3.10", source="lib/dump_stack.c dump_stack_print_info (3.10): 'CPU: %d PID: "
                                                  "%d Comm: %.20s' replaces 'Pid: %d, comm: %.20s'"),
    Feature("short_rip", since="4.9", source="arch/x86/kernel/process_64.c __show_regs: 'RIP: %04lx:%pS' (4.9)"),
    Feature("short_eip", since="4.15", source="arch/x86/kernel/process_32.c __show_regs: 'EIP: %pS' (4.15)"),
    Feature("modules_after_regs", since="4.10",
            source="arch/x86/kernel/dumpstack.c __die: print_modules() before show_regs() in 2.6.2x-3.x, after it "
                   "by 5.0 (read in the die_addr patch: 'show_regs(regs); print_modules();'); the release between "
                   "is not dated here"),
    Feature("cr2_line", since="2.6.26", source="arch/x86/kernel/dumpstack.c: 'CR2: %016lx' after the oops"),
    Feature("end_trace", since="2.6.26", source="kernel/panic.c print_oops_end_marker: '---[ end trace %016llx ]---'"),
    Feature("segfault_prot_for_kernel_address", since="3.0",
            source="arch/x86/mm/fault.c __bad_area_nosemaphore: a user access to a kernel address is "
                   "reported with X86_PF_PROT set"),
    Feature("segfault_likely_cpu", since="6.1", source="arch/x86/mm/fault.c show_signal_msg (6.1): "
                                                       "' likely on CPU %d (core %d, socket %d)'"),
)


def release(k) -> str:
    v = k.spec.kernel
    return f"{v.major}.{v.minor}.{v.patch}"


def _era(k):
    return OOPS(k.spec.kernel)


def dump_pagetable(k, root: int, address: int) -> str:
    """The page-table line of the oops (dump_pagetable of the era)."""
    steps = k.pgtable.walk(root, address).steps
    era = _era(k)
    if k.paging.bits64:
        parts = []
        for s in steps:
            names = [s.level.name.upper()] + [f.upper() for f in s.level.folds]
            if not era.p4d:
                names = [n for n in names if n != "P4D"]
            for name in names:
                parts.append(f"{name} {s.raw:x}")
        # each printed level ends with a blank, except the PTE ("PTE %lx")
        return " ".join(parts) + ("" if steps[-1].level.name == "pte" else " ")
    pae = k.paging.levels[0].entry_size == 8
    width = 16 if pae else 8
    parts = []
    if pae and era.pdpt_line:
        parts.append(f"*pdpt = {steps[0].raw:016x}")
        if k.pgtable.decode(0, steps[0].raw)[0] == 0:
            return " ".join(parts) + " "
    pde = steps[1] if pae and len(steps) > 1 else steps[0]
    parts.append(f"*pde = {pde.raw:0{width}x}")
    pte = steps[-1] if steps[-1].level.name == "pte" else None
    if pte is not None:
        zone = k.frames.zone_of(pte.table >> 12)
        lowmem = zone is not None and zone.name != "HighMem"
        if lowmem and not (era.header == "unable" and k.highpte):  # !low_pfn(): no kmap in an oops
            parts.append(f"*pte = {pte.raw:0{width}x}")
    if era.header == "unable":  # one printk(KERN_ALERT "*pde = %08lx\n") per entry
        return "\n".join(parts)
    return " ".join(parts) + " "


def _ip(fault: Fault) -> int:
    return fault.ip if fault.ip is not None else 0


def _die_flags(k) -> list[str]:
    cfg = k.layout.config
    flags = []
    if cfg.get("CONFIG_PREEMPT"):
        flags.append("PREEMPT")
    if cfg.get("CONFIG_SMP", True):
        flags.append("SMP")
    if _era(k).nopti and cfg.get("CONFIG_PAGE_TABLE_ISOLATION"):
        flags.append("NOPTI")  # the emulated kernel keeps one set of page tables: PTI is off
    return flags


def die_header(k, what: str, err: int, counter: int) -> list[str]:
    """``__die``'s first line(s): ``Oops: 0002 [#1] SMP`` in the era's layout."""
    style = _era(k).die_header
    flags = _die_flags(k)
    if style == "classic":
        if k.paging.bits64:
            return [f"{what}: {err & 0xFFFF:04x} [{counter}] " + "".join(f"{f} " for f in flags)]
        return [f"{what}: {err & 0xFFFF:04x} [#{counter}]"] + (["".join(f"{f} " for f in flags)] if flags else [])
    if style == "trailing":
        return [f"{what}: {err & 0xFFFF:04x} [#{counter}] " + "".join(f"{f} " for f in flags)]
    return [f"{what}: {err & 0xFFFF:04x} [#{counter}]" + "".join(f" {f}" for f in flags)]


def task_line(k, fault: Fault) -> str:
    proc = fault.process
    comm, pid = (proc.comm, proc.pid) if proc is not None else ("swapper", 0)
    if not _era(k).cpu_task_line:
        return f"Pid: {pid}, comm: {comm[:20]} {k.print_tainted()} {release(k)} #1"
    # lib/dump_stack.c dump_stack_print_info: "CPU: %d PID: %d Comm: %.20s %s%s %s %.*s"
    return f"CPU: {fault.cpu} PID: {pid} Comm: {comm[:20]} {k.print_tainted()} {release(k)} #1"


def symbol(k, ip: int) -> str:
    """%pS: ``hello_init+0x12/0x30 [hello]`` where kallsyms knows the address, else the
    address (``0x...``)."""
    return k.symbol_at(ip) or f"0x{ip:x}"


def ip_line(k, fault: Fault) -> str:
    ip = _ip(fault)
    era = _era(k)
    sym = symbol(k, ip)
    # an access made through the API has no instruction: say so where the kernel would
    # name one
    api = "  (no instruction: an access made through mmemu's API)" if fault.ip is None else ""
    if k.paging.bits64:
        if not era.short_rip:
            return f"RIP: 0010:[<{ip:016x}>]  [<{ip:016x}>] {sym}{api}"
        return f"RIP: 0010:{sym}{api}"
    if not era.short_eip:
        return f"EIP: 0060:[<{ip:08x}>] EFLAGS: 00010246 CPU: {fault.cpu}\nEIP is at {sym}{api}"
    return f"EIP: {sym}{api}"


def reason(fault: Fault) -> str:
    """show_fault_oops' decoding of the error code (5.2+)."""
    if not fault.code & X86_PF_PROT:
        return "not-present page"
    if fault.code & X86_PF_RSVD:
        return "reserved bit violation"
    if fault.code & X86_PF_PK:
        return "protection keys violation"
    return "permissions violation"


def oops_report(k, fault: Fault, die_counter: int, why: str = "") -> str:
    """The whole oops for *fault* (the die_counter-th one of this boot)."""
    era = _era(k)
    b64 = k.paging.bits64
    w = 16 if b64 else 8
    addr = fault.address
    err = fault.code
    ip = _ip(fault)
    lines: list[str] = []
    if fault.instr and fault.protection and not fault.user and k.codec.nx:
        walk = k.pgtable.walk(k.fault_pgd(fault), addr)
        if walk.mapped and walk.nx:
            lines.append("kernel tried to execute NX-protected page - exploit attempt? (uid: 0)")
    if era.header == "unable":
        kind = "NULL pointer dereference" if addr < PAGE_SIZE else "paging request"
        if b64:
            lines.append(f"Unable to handle kernel {kind} at {addr:016x} RIP: ")
            lines.append(f"[<{ip:016x}>]")
        else:
            lines.append(f"Unable to handle kernel {kind} at virtual address {addr:08x}")
            lines.append(" printing eip:")
            lines.append(f"{ip:08x}")
    elif era.header == "bug_unable":
        kind = "NULL pointer dereference" if addr < PAGE_SIZE else "paging request"
        lines.append(f"BUG: unable to handle kernel {kind} at {addr:0{w}x}")
        if era.ip_line == "long":
            lines.append(f"IP: [<{ip:0{w}x}>] {symbol(k, ip)}")
        elif era.ip_line == "short":
            lines.append(f"IP: {symbol(k, ip)}")
        if era.pf_error_line:
            tokens = [t for bit, t in ((X86_PF_PROT, "[PROT]"), (X86_PF_WRITE, "[WRITE]"), (X86_PF_USER, "[USER]"),
                                       (X86_PF_RSVD, "[RSVD]"), (X86_PF_INSTR, "[INSTR]"), (X86_PF_PK, "[PK]"))
                      if err & bit]
            lines.append(f"#PF error: {' '.join(tokens) if err else '[normal kernel read fault]'}")
    else:
        if addr < PAGE_SIZE and not fault.user:
            lines.append(f"BUG: kernel NULL pointer dereference, address: {addr:0{w}x}")
        else:
            lines.append(f"BUG: unable to handle page fault for address: {addr:0{w}x}")
        lines.append(f"#PF: {fault.describe()}")
        lines.append(f"#PF: error_code(0x{err:04x}) - {reason(fault)}")
    lines.append(dump_pagetable(k, k.fault_pgd(fault), addr))  # read_cr3() at the fault
    what = "Oops"
    if why == "Bad pagetable":
        proc = fault.process
        lines.append(f"{proc.comm if proc else 'swapper'}: Corrupted page table at address {addr:x}")
        what = "Bad pagetable"
    lines += die_header(k, what, err, die_counter)
    if k.modules and not era.modules_after_regs:
        lines.append(k.modules_linked_in())
    if era.cpu_task_line or b64:
        lines.append(task_line(k, fault))
    lines.append(ip_line(k, fault))
    if k.modules and era.modules_after_regs:
        lines.append(k.modules_linked_in())
    if era.cr2_line or b64:
        lines.append(f"CR2: {addr:016x}")
    if era.end_trace:
        lines.append("---[ end trace 0000000000000000 ]---")
    return "\n".join(lines)


def segfault_line(k, fault: Fault) -> str:
    """``show_signal_msg``: the line a user SIGSEGV leaves in the log (none in 2.6.12 i386)."""
    proc = fault.process
    comm, pid = (proc.comm, proc.pid) if proc is not None else ("swapper", 0)
    era = _era(k)
    err = fault.code
    sp = fault.sp
    if era.segfault_prot_for_kernel_address and fault.address >= k.task_size:
        err |= X86_PF_PROT  # a user access to a kernel address is reported as a protection fault
    ip = _ip(fault)
    w = 16 if k.paging.bits64 else 8
    if era.header == "unable":
        if not k.paging.bits64:
            return f"{comm}[{pid}]: SIGSEGV at {fault.address:08x} (this kernel logs no segfault line)"
        return f"{comm}[{pid}]: segfault at {fault.address:016x} rip {ip:016x} rsp {sp:016x} error {err:x}"
    line = f"{comm}[{pid}]: segfault at {fault.address:x} ip {ip:0{w}x} sp {sp:0{w}x} error {err:x}"
    if era.segfault_likely_cpu:
        line += f" likely on CPU {fault.cpu} (core 0, socket 0)"
    return line
