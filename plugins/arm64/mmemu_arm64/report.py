"""arm64's text formats: crash's ``vtop`` walk (crash arm64.c), the oops of a kernel-mode
abort (arch/arm64/mm/fault.c die_kernel_fault()/__do_kernel_fault(), mem_abort_decode(),
show_pte(); arch/arm64/kernel/traps.c die()) and the unhandled-signal line of a user one.

crash (arm64.c arm64_vtop_3level_4k / arm64_vtop_4level_4k, verified text):

    PAGE DIRECTORY: <pgd, a kernel virtual address>
       PGD: <entry's kernel virtual address> => <value>
       PUD: ...                      (4 levels only)
       PMD: ...
       PTE: ...
      PAGE: <physical>  (1GB|2MB)

    <arm64_translate_pte: PTE  PHYSICAL  FLAGS table>

Every entry address is virtual: the pgd's own (``swapper_pg_dir`` or ``mm->pgd``) plus the
index, the lower tables through PTOV() = ``(pa - PHYS_OFFSET) | PAGE_OFFSET``. A walk stops
after an empty entry; a non-zero invalid pte is followed by a blank line and
arm64_translate_pte(), which prints the SWAP/OFFSET columns for a non-present entry (mmemu
has no swap devices: it prints the swap type number where crash prints the device name).

What mmemu cannot know for an oops: registers other than the faulting pc (and sp when the
CPU ran), symbols (crash and the kernel print ``func+0x12/0x40``), the call trace and the
modules list; an access made through mmemu's API has no instruction at all. Those lines
say so instead of inventing values.
"""

from __future__ import annotations

from mmemu.faults import ACCESS_FLAG, NOT_PRESENT, PROTECTION
from mmemu.faults import RESERVED as RESERVED_FAULT

from .eras import REPORTS
from .formats import (EC_NAMES, ESR_ELx_CM, ESR_ELx_EC_DABT_LOW, ESR_ELx_EC_IABT_LOW, ESR_ELx_EC_SHIFT,
                      ESR_ELx_FSC, ESR_ELx_FSC_FAULT, ESR_ELx_FSC_PERM, ESR_ELx_FSC_TYPE, ESR_ELx_IL, ESR_ELx_WNR,
                      OA_MASK, PTE_VALID)

PAGE_SIZE = 4096


def _center(text: str, width: int, rjust: bool) -> str:
    """crash's mkstring(CENTER|LJUST/RJUST): centred, the odd blank right (LJUST) or left."""
    pad = width - len(text)
    if pad <= 0:
        return text
    left = (pad + 1) // 2 if rjust else pad // 2
    return " " * left + text + " " * (pad - left)


def ptov(layout, pa: int) -> int:
    """crash arm64_PTOV(): (paddr - phys_offset) | PAGE_OFFSET."""
    s = layout.symbols
    return ((pa - s.get("PHYS_OFFSET", 0)) | s["PAGE_OFFSET"]) & ((1 << 64) - 1)


def translate_pte(codec, li: int, raw: int, kernel_rules=None) -> list[str]:
    """crash arm64_translate_pte(): the PTE / PHYSICAL / FLAGS table (or PTE / SWAP / OFFSET
    for a non-present entry)."""
    ptebuf = f"{raw:x}"
    len1 = max(len(ptebuf), len("PTE"))
    present = bool(raw & PTE_VALID) or (raw and codec.pte_present(raw))
    if raw and not present:
        # crash: swap_location(pte, buf) -> "<device>  OFFSET: <n>"; mmemu has no swap device names
        rules = codec.rules
        shift, nbits = (2, 6) if rules.prot_none in (1 << 58, 0) else (3, 6)
        swp_type = (raw >> shift) & ((1 << nbits) - 1)
        swp_off = raw >> (shift + nbits)
        dev, off = f"type{swp_type}", f"{swp_off}"
        len2, len3 = max(len(dev), len("SWAP")), max(len(off), len("OFFSET"))
        return [f"{_center('PTE', len1, False)}  {_center('SWAP', len2, False)}  {_center('OFFSET', len3, False)}",
                f"{_center(ptebuf, len1, True)}  {_center(dev, len2, True)}  {_center(off, len3, True)}"]
    paddr = raw & OA_MASK
    physbuf = f"{paddr:x}"
    len2 = max(len(physbuf), len("PHYSICAL"))
    flags = "|".join(codec.flag_names(li, raw)) if raw else "no mapping"
    return [f"{_center('PTE', len1, False)}  {_center('PHYSICAL', len2, False)}  FLAGS",
            f"{_center(ptebuf, len1, True)}  {_center(physbuf, len2, True)}  ({flags})"]


def _root_va(kernel, root: int) -> int:
    """The pgd's kernel virtual address: the kernel's root (swapper_pg_dir) where the kernel
    model knows it, else PTOV() of the table."""
    layout = kernel.layout
    if root == getattr(kernel, "pgd", None):
        for name in ("pgd_va", "_pgd_va"):
            va = getattr(kernel, name, None)
            if isinstance(va, int):
                return va
        sym = layout.symbols.get("swapper_pg_dir")
        if sym:
            return sym
    return ptov(layout, root)


def vtop_lines(kernel, walk, root: int, process=None) -> list[str]:
    layout = kernel.layout
    codec = kernel.paging.codec
    nlevels = len(kernel.paging.levels)
    pgd_va = _root_va(kernel, root)
    out = [f"PAGE DIRECTORY: {pgd_va:x}"]
    # crash's labels: 3 levels PGD, PMD, PTE; 4 levels PGD, PUD, PMD, PTE
    labels = ("PGD", "PMD", "PTE") if nlevels == 3 else ("PGD", "PUD", "PMD", "PTE")
    steps = list(walk.steps)
    for i, step in enumerate(steps):
        if i == 0:
            entry_va = pgd_va + (step.entry_addr - step.table)
        else:
            entry_va = ptov(layout, step.entry_addr)
        out.append(f"   {labels[i]}: {entry_va:x} => {step.raw:x}")
    if not steps:
        return out
    last = steps[-1]
    li = len(steps) - 1
    if walk.mapped:
        size = {1 << 30: "  (1GB)", 2 << 20: "  (2MB)"}.get(walk.page_size, "")
        page = walk.phys & ~(walk.page_size - 1) if size else walk.phys & ~(PAGE_SIZE - 1)
        out.append(f"  PAGE: {page:x}{size}")
        out.append("")
        out += translate_pte(codec, li, last.raw)
    elif last.raw and li == nlevels - 1:
        out.append("")
        out += translate_pte(codec, li, last.raw)
    return out


# ---- faults -----------------------------------------------------------------------------------

def fault_name(esr: int, kernel_version) -> str:
    """fault.c fault_info[esr & ESR_ELx_FSC].name."""
    fsc = esr & ESR_ELx_FSC
    n = fsc & 3
    kind = fsc & ESR_ELx_FSC_TYPE
    if kind == 0:
        return "ttbr address size fault" if n == 0 else f"level {n} address size fault"
    if kind == ESR_ELx_FSC_FAULT:
        return REPORTS(kernel_version).fault_name_4 if n == 0 else f"level {n} translation fault"
    if kind == 0x08:
        return "reserved access flag fault" if n == 0 else f"level {n} access flag fault"
    if kind == ESR_ELx_FSC_PERM:
        return "reserved permission fault" if n == 0 else f"level {n} permission fault"
    return f"unknown {fsc}"


def _esr(fault, codec) -> int:
    return fault.code or codec.fault_code(fault)


def _walk(kernel, root, address):
    try:
        return kernel.pgtable.walk(root, address)
    except Exception:  # the core's walker is being rewritten: an oops must not fail on it
        return None


def _fault_root(kernel, fault):
    if fault.address < kernel.layout.symbols["TASK_SIZE"] and fault.process is not None:
        return getattr(fault.process, "pgd", None), False
    return getattr(kernel, "pgd", None), True


def _release(kernel) -> str:
    v = kernel.spec.kernel
    return f"{v.major}.{v.minor}.{v.patch}"


def show_pte(kernel, fault) -> list[str]:
    """fault.c show_pte() of the era."""
    rep = REPORTS(kernel.spec.kernel)
    s = kernel.layout.symbols
    addr = fault.address
    root, is_kernel = _fault_root(kernel, fault)
    nlevels = len(kernel.paging.levels)
    walk = _walk(kernel, root, addr) if root is not None else None
    values = [st.raw for st in walk.steps] if walk is not None else []
    out = []
    if rep.show_pte == "star":
        # 3.x-4.16: pr_alert("pgd = %p\n", mm->pgd); pr_alert("[%08lx] *pgd=%016llx", addr, pgd_val(*pgd));
        # then ", *pud=%016llx" (the folded pud repeats the pgd on 3 levels), ", *pmd=", ", *pte="; each level
        # stops the line when pgd_none() || pgd_bad() (bad: bit 1 clear, a block)
        pgd_va = _root_va(kernel, root) if root is not None else 0
        out.append(f"pgd = {pgd_va:016x}")
        width = "08x" if rep.oops_header == "08lx" else "016x"
        seq = values[:1] + values if nlevels == 3 else list(values)
        labels = ["pgd", "pud", "pmd", "pte"]
        line = f"[{addr:{width}}]"
        for i, v in enumerate(seq[:4]):
            line += f"{',' if i else ''} *{labels[i]}={v:016x}"
            if i < 3 and (not v or not v & 2):
                break
        out.append(line)
        return out
    if addr < s["TASK_SIZE"]:
        if fault.process is None:
            return [f"[{addr:016x}] user address but active_mm is swapper"]
    elif addr < (1 << 64) - (1 << s["VA_BITS"]):
        return [f"[{addr:016x}] address between user and kernel address ranges"]
    who = "swapper" if is_kernel else "user"
    if rep.show_pte == "pgtable":
        # 4.17-4.20: "%s pgtable: %luk pages, %u-bit VAs, pgd = %p" (a hashed pointer in these kernels)
        pgd_va = _root_va(kernel, root) if root is not None else 0
        out.append(f"{who} pgtable: 4k pages, {s['VA_BITS']}-bit VAs, pgd = {pgd_va:016x}")
    else:
        out.append(f"{who} pgtable: 4k pages, {s['VA_BITS']}-bit VAs, pgdp={root or 0:016x}")
    # "[%016lx] pgd=%016llx" then ", p4d=" (5.8+, the folded p4d repeats the pgd), ", pud=", ", pmd=", ", pte="
    seq_names = ["pgd"] + (["p4d"] if rep.show_p4d else [])
    seq_vals = values[:1] * len(seq_names)
    rest = values[1:]
    if nlevels == 3:  # the pud is folded into the pgd: printed with the pgd's value
        seq_names.append("pud")
        seq_vals.append(values[0] if values else 0)
        seq_names += ["pmd", "pte"]
    else:
        seq_names += ["pud", "pmd", "pte"]
    seq_vals += rest
    line = f"[{addr:016x}]"
    for i, (n, v) in enumerate(zip(seq_names, seq_vals)):
        line += f"{', ' if i else ' '}{n}={v:016x}"
        if n != "pte" and (not v or not v & 2):
            break
    out.append(line)
    return out


def mem_abort_decode(kernel, esr: int) -> list[str]:
    rep = REPORTS(kernel.spec.kernel)
    ec = esr >> ESR_ELx_EC_SHIFT & 0x3F
    out = ["Mem abort info:"]
    out.append(f"  ESR = 0x{esr:016x}" if rep.esr_width == 64 else f"  ESR = 0x{esr:08x}")
    il = 32 if esr & ESR_ELx_IL else 16
    if rep.ec_line == "ec":
        out.append(f"  EC = 0x{ec:02x}: {EC_NAMES.get(ec, 'UNRECOGNIZED EC')}, IL = {il} bits")
    else:
        out.append(f"  Exception class = {EC_NAMES.get(ec, 'UNRECOGNIZED EC')}, IL = {il} bits")
    out.append("  SET = 0, FnV = 0")
    out.append("  EA = 0, S1PTW = 0")
    if rep.fsc_line:
        out.append(f"  FSC = 0x{esr & ESR_ELx_FSC:02x}: {fault_name(esr, kernel.spec.kernel)}")
    if ec in (0x24, 0x25):
        out.append("Data abort info:")
        iss = esr & 0x1FFFFFF
        if rep.iss2:
            out.append(f"  ISV = 0, ISS = 0x{iss:08x}, ISS2 = 0x00000000")
            out.append(f"  CM = {esr >> 8 & 1}, WnR = {esr >> 6 & 1}, TnD = 0, TagAccess = 0")
            out.append("  GCS = 0, Overlay = 0, DirtyBit = 0, Xs = 0")
        else:
            out.append(f"  ISV = 0, ISS = 0x{iss:08x}")
            out.append(f"  CM = {esr >> 8 & 1}, WnR = {esr >> 6 & 1}")
    return out


def kernel_fault_message(kernel, fault, esr: int) -> str:
    """__do_kernel_fault()'s msg of the era."""
    rep = REPORTS(kernel.spec.kernel)
    perm = (esr & ESR_ELx_FSC_TYPE) == ESR_ELx_FSC_PERM
    if rep.fault_msg != "basic" and perm:
        if esr & ESR_ELx_WNR:
            return "write to read-only memory"
        if rep.fault_msg == "perm-exec" and fault.access == "exec":
            return "execute from non-executable memory"
        return "read from unreadable memory"
    if fault.address < PAGE_SIZE:
        return "NULL pointer dereference"
    return "paging request"


def oops_report(kernel, fault, die_counter: int, why: str = "") -> str:
    rep = REPORTS(kernel.spec.kernel)
    codec = kernel.paging.codec
    esr = _esr(fault, codec)
    s = kernel.layout.symbols
    addr = fault.address
    lines: list[str] = []
    if why:
        msg = why
    elif addr < s["TASK_SIZE"] and fault.kind == PROTECTION and fault.access == "exec" and rep.fault_msg != "basic":
        msg = "execution of user memory"  # do_page_fault(): is_el1_instruction_abort on a TTBR0 address
    else:
        msg = kernel_fault_message(kernel, fault, esr)
    width = "08x" if rep.oops_header == "08lx" else "016x"
    lines.append(f"Unable to handle kernel {msg} at virtual address {addr:{width}}")
    if rep.mem_abort_decode:
        lines += mem_abort_decode(kernel, esr)
    lines += show_pte(kernel, fault)
    err = f"{esr:016x}" if rep.esr_width == 64 else f"{esr:x}"
    # traps.c __die(): pr_emerg("Internal error: %s: %x [#%d]" S_PREEMPT S_SMP "\n", str, err, ++die_counter)
    lines.append(f"Internal error: Oops: {err} [#{die_counter}] PREEMPT SMP")
    lines.append(kernel.modules_linked_in())  # print_modules()
    proc = fault.process
    comm, pid = (proc.comm, proc.pid) if proc is not None else ("swapper/0", 0)
    lines.append(f"CPU: {fault.cpu} PID: {pid} Comm: {comm[:15]} {kernel.print_tainted()} {_release(kernel)} #1")
    lines.append("Hardware name: linux,dummy-virt (DT)")
    if fault.ip is None:
        lines.append("pc : (no instruction: an access made through mmemu's API)")
    else:
        # __show_regs(): printk("pc : %pS\n", (void *)regs->pc): a module's function by name
        lines.append(f"pc : {kernel.symbol_at(fault.ip) or f'0x{fault.ip:x}'}")
    lines.append("lr : (not known to mmemu)")
    lines.append(f"sp : {fault.sp:016x}")
    lines.append("Call trace: (not known to mmemu)")
    return "\n".join(lines) + "\n"


def user_esr(kernel, fault, esr: int) -> int:
    """fault.c set_thread_esr() (4.15+): a kernel address is reported to user space as a
    level 0 translation fault, keeping EC, IL, CM and WnR."""
    if not REPORTS(kernel.spec.kernel).sanitize_esr or fault.address < kernel.layout.symbols["TASK_SIZE"]:
        return esr
    ec = esr >> ESR_ELx_EC_SHIFT
    if ec == ESR_ELx_EC_DABT_LOW:
        return (esr & ((0x3F << ESR_ELx_EC_SHIFT) | ESR_ELx_IL | ESR_ELx_CM | ESR_ELx_WNR)) | ESR_ELx_FSC_FAULT
    if ec == ESR_ELx_EC_IABT_LOW:
        return (esr & ((0x3F << ESR_ELx_EC_SHIFT) | ESR_ELx_IL)) | ESR_ELx_FSC_FAULT
    return esr


def segfault_report(kernel, fault) -> str:
    rep = REPORTS(kernel.spec.kernel)
    codec = kernel.paging.codec
    esr = user_esr(kernel, fault, _esr(fault, codec))
    proc = fault.process
    comm, pid = (proc.comm, proc.pid) if proc is not None else ("init", 1)
    name = fault_name(esr, kernel.spec.kernel)
    if rep.segfault == "unhandled":
        # __do_user_fault(): "%s[%d]: unhandled %s (%d) at 0x%08lx, esr 0x%03x\n"
        return f"{comm}[{pid}]: unhandled {name} (11) at 0x{fault.address:08x}, esr 0x{esr:03x}"
    ec = esr >> ESR_ELx_EC_SHIFT & 0x3F
    width = "016x" if rep.esr_width == 64 else "08x"
    # arm64_show_signal(): "%s[%d]: unhandled exception: " then "%s, ESR 0x%08x, " (esr_get_class_string)
    # then the fault name (print_vma_addr adds " in file[...]" for a file mapping: mmemu has none)
    return f"{comm}[{pid}]: unhandled exception: {EC_NAMES.get(ec, 'UNRECOGNIZED EC')}, ESR 0x{esr:{width}}, {name}"


__all__ = ["vtop_lines", "oops_report", "segfault_report", "translate_pte", "fault_name", "ptov",
           "NOT_PRESENT", "ACCESS_FLAG", "RESERVED_FAULT"]
