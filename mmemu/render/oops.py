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

from typing import TYPE_CHECKING

from ..pagetable import X86_PF_INSTR, X86_PF_PROT, X86_PF_RSVD, X86_PF_USER, X86_PF_WRITE

if TYPE_CHECKING:
    from ..kernel import Kernel
    from ..kernel.fault import Fault

PAGE_SIZE = 4096
X86_PF_PK = 1 << 5


def release(k: "Kernel") -> str:
    v = k.spec.kernel
    return f"{v.major}.{v.minor}.{v.patch}"


def dump_pagetable(k: "Kernel", root: int, address: int) -> str:
    """The page-table line of the oops (dump_pagetable of the era)."""
    steps = k.pgtable.walk(root, address).steps
    kv = k.spec.kernel
    if k.paging.canonical:
        parts = []
        for s in steps:
            names = [s.level.name.upper()] + [f.upper() for f in s.level.folds]
            if kv < "4.12":
                names = [n for n in names if n != "P4D"]
            for name in names:
                parts.append(f"{name} {s.raw:x}")
        # each printed level ends with a blank, except the PTE ("PTE %lx")
        return " ".join(parts) + ("" if steps[-1].level.name == "pte" else " ")
    pae = k.paging.levels[0].entry_size == 8
    width = 16 if pae else 8
    parts = []
    if pae and kv >= "2.6.26":
        parts.append(f"*pdpt = {steps[0].raw:016x}")
        if not steps[0].raw & k.paging.present:
            return " ".join(parts) + " "
    pde = steps[1] if pae and len(steps) > 1 else steps[0]
    parts.append(f"*pde = {pde.raw:0{width}x}")
    pte = steps[-1] if steps[-1].level.name == "pte" else None
    if pte is not None:
        zone = k.frames.zone_of(pte.table >> 12)
        lowmem = zone is not None and zone.name != "HighMem"
        if lowmem and not (kv < "2.6.26" and k.highpte):  # !low_pfn(): no kmap in an oops
            parts.append(f"*pte = {pte.raw:0{width}x}")
    if kv < "2.6.26":  # one printk(KERN_ALERT "*pde = %08lx\n") per entry
        return "\n".join(parts)
    return " ".join(parts) + " "


def _ip(k: "Kernel", fault: "Fault") -> int:
    return fault.ip if fault.ip is not None else 0


def _die_flags(k: "Kernel") -> list[str]:
    cfg = k.layout.config
    flags = []
    if cfg.get("CONFIG_PREEMPT"):
        flags.append("PREEMPT")
    if cfg.get("CONFIG_SMP", True):
        flags.append("SMP")
    if k.spec.kernel >= "4.15" and cfg.get("CONFIG_PAGE_TABLE_ISOLATION"):
        flags.append("NOPTI")  # the emulated kernel keeps one set of page tables: PTI is off
    return flags


def die_header(k: "Kernel", what: str, err: int, counter: int) -> list[str]:
    """``__die``'s first line(s): ``Oops: 0002 [#1] SMP`` in the era's layout."""
    kv = k.spec.kernel
    flags = _die_flags(k)
    if kv < "2.6.26":
        if k.paging.canonical:
            return [f"{what}: {err & 0xFFFF:04x} [{counter}] " + "".join(f"{f} " for f in flags)]
        return [f"{what}: {err & 0xFFFF:04x} [#{counter}]"] + (["".join(f"{f} " for f in flags)] if flags else [])
    if kv < "4.14":
        return [f"{what}: {err & 0xFFFF:04x} [#{counter}] " + "".join(f"{f} " for f in flags)]
    return [f"{what}: {err & 0xFFFF:04x} [#{counter}]" + "".join(f" {f}" for f in flags)]


def task_line(k: "Kernel", fault: "Fault") -> str:
    proc = fault.process
    comm, pid = (proc.comm, proc.pid) if proc is not None else ("swapper", 0)
    if k.spec.kernel < "3.10":
        return f"Pid: {pid}, comm: {comm[:20]} Not tainted {release(k)} #1"
    return f"CPU: {fault.cpu} PID: {pid} Comm: {comm[:20]} Not tainted {release(k)} #1"


def ip_line(k: "Kernel", fault: "Fault") -> str:
    ip = _ip(k, fault)
    kv = k.spec.kernel
    # an access made through the API has no instruction: say so where the kernel would
    # name one
    api = "  (no instruction: an access made through mmemu's API)" if fault.ip is None else ""
    if k.paging.canonical:
        if kv < "4.9":
            return f"RIP: 0010:[<{ip:016x}>]  [<{ip:016x}>] 0x{ip:x}{api}"
        return f"RIP: 0010:0x{ip:x}{api}"
    if kv < "4.15":
        return f"EIP: 0060:[<{ip:08x}>] EFLAGS: 00010246 CPU: {fault.cpu}\nEIP is at 0x{ip:x}{api}"
    return f"EIP: 0x{ip:x}{api}"


def oops_report(k: "Kernel", fault: "Fault", die_counter: int, why: str = "") -> str:
    """The whole oops for *fault* (the die_counter-th one of this boot)."""
    kv = k.spec.kernel
    b64 = k.paging.canonical
    w = 16 if b64 else 8
    addr = fault.address
    err = fault.error_code
    ip = _ip(k, fault)
    lines: list[str] = []
    if fault.instr and fault.protection and not fault.user and k.paging.nx:
        walk = k.pgtable.walk(k.fault_pgd(fault), addr)
        if walk.mapped and walk.nx:
            lines.append("kernel tried to execute NX-protected page - exploit attempt? (uid: 0)")
    if kv < "2.6.26":
        kind = "NULL pointer dereference" if addr < PAGE_SIZE else "paging request"
        if b64:
            lines.append(f"Unable to handle kernel {kind} at {addr:016x} RIP: ")
            lines.append(f"[<{ip:016x}>]")
        else:
            lines.append(f"Unable to handle kernel {kind} at virtual address {addr:08x}")
            lines.append(" printing eip:")
            lines.append(f"{ip:08x}")
    elif kv < "5.2":
        kind = "NULL pointer dereference" if addr < PAGE_SIZE else "paging request"
        lines.append(f"BUG: unable to handle kernel {kind} at {addr:0{w}x}")
        if kv < "4.15":
            lines.append(f"IP: [<{ip:0{w}x}>] 0x{ip:x}" if kv < "4.14" else f"IP: 0x{ip:x}")
        if kv >= "5.0":
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
        lines.append(f"#PF: error_code(0x{err:04x}) - {fault.reason()}")
    lines.append(dump_pagetable(k, k.fault_pgd(fault), addr))  # read_cr3() at the fault
    what = "Oops"
    if why == "Bad pagetable":
        proc = fault.process
        lines.append(f"{proc.comm if proc else 'swapper'}: Corrupted page table at address {addr:x}")
        what = "Bad pagetable"
    lines += die_header(k, what, err, die_counter)
    if kv >= "3.10" or b64:
        lines.append(task_line(k, fault))
    lines.append(ip_line(k, fault))
    if kv >= "2.6.26" or b64:
        lines.append(f"CR2: {addr:016x}")
    if kv >= "2.6.26":
        lines.append("---[ end trace 0000000000000000 ]---")
    return "\n".join(lines)


def segfault_line(k: "Kernel", fault: "Fault", sp: int = 0) -> str:
    """``show_signal_msg``: the line a user SIGSEGV leaves in the log (none in 2.6.12 i386)."""
    proc = fault.process
    comm, pid = (proc.comm, proc.pid) if proc is not None else ("swapper", 0)
    kv = k.spec.kernel
    err = fault.error_code
    if kv >= "3.0" and fault.address >= k.task_size:
        err |= X86_PF_PROT  # a user access to a kernel address is reported as a protection fault
    ip = _ip(k, fault)
    w = 16 if k.paging.canonical else 8
    if kv < "2.6.26":
        if not k.paging.canonical:
            return f"{comm}[{pid}]: SIGSEGV at {fault.address:08x} (this kernel logs no segfault line)"
        return f"{comm}[{pid}]: segfault at {fault.address:016x} rip {ip:016x} rsp {sp:016x} error {err:x}"
    line = f"{comm}[{pid}]: segfault at {fault.address:x} ip {ip:0{w}x} sp {sp:0{w}x} error {err:x}"
    if kv >= "6.1":
        line += f" likely on CPU {fault.cpu} (core 0, socket 0)"
    return line
