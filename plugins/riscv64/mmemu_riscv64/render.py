"""riscv64's output formats: the kernel page-table dump (arch/riscv/mm/ptdump.c), crash's
``vtop`` (crash riscv64.c), the oops (arch/riscv/mm/fault.c, arch/riscv/kernel/traps.c die(),
process.c show_regs()) and the unhandled-signal line (traps.c do_trap()).

What mmemu cannot know and how it is shown:

- registers: an access knows its address, the kind of access, the privilege, the
  instruction (``fault.ip``, None for an access made through mmemu's API) and the stack
  pointer (``fault.sp``). The oops prints epc, sp, badaddr and cause from these, status with
  the bits mmemu knows (UXL=2 of RV64, SPP for a kernel-mode trap; not SIE/SPIE/SUM/FS), and
  the other registers as the hart had them when its code faulted (module code), 0 for an
  access made through the API.
- symbols: where the kernel prints ``%pS`` (``epc : hello_init+0x12/0x40 [hello]``) mmemu
  names a module's functions and the exported kernel functions, else prints the address;
  the call trace (dump_backtrace, 5.11+) and the ``Code:`` line (dump_kernel_instr) are
  left out.
- taint: the kernel's ``print_tainted()`` (``Tainted: G           O`` once an out-of-tree
  module loaded).
"""

from __future__ import annotations

from dataclasses import dataclass

from mmemu.arch import LEAF, TABLE
from mmemu.render.ptdump import PtdumpFormat

from .eras import RISCV
from .pgtable_bits import (_PAGE_ACCESSED, _PAGE_DIRTY, _PAGE_EXEC, _PAGE_GLOBAL, _PAGE_IO_SVPBMT,
                           _PAGE_MTMASK_SVPBMT, _PAGE_NAPOT, _PAGE_NOCACHE_SVPBMT, _PAGE_PFN_SHIFT, _PAGE_PRESENT,
                           _PAGE_READ, _PAGE_RSW, _PAGE_SOFT, _PAGE_USER, _PAGE_WRITE, CRASH_FLAGS)

PAGE_SIZE = 4096
MASK64 = (1 << 64) - 1

# ---- ptdump ---------------------------------------------------------------------------------

#: ptdump.c pte_bits[] (6.x, read): (mask, set, clear) in print order
_PTE_BITS_SVPBMT = ((_PAGE_NAPOT, "N", "."), (_PAGE_MTMASK_SVPBMT, "MT(%s)", "  ..  "), (_PAGE_RSW, "RSW(%d)", "  ..  "),
                    (_PAGE_DIRTY, "D", "."), (_PAGE_ACCESSED, "A", "."), (_PAGE_GLOBAL, "G", "."),
                    (_PAGE_USER, "U", "."), (_PAGE_EXEC, "X", "."), (_PAGE_WRITE, "W", "."),
                    (_PAGE_READ, "R", "."), (_PAGE_PRESENT, "V", "."))
#: the earlier table (from recollection, NOT VERIFIED: eras.py ptdump_bits): 'RSW' or three blanks
#: for _PAGE_SOFT, then D A G U X W R V
_PTE_BITS_CLASSIC = ((_PAGE_SOFT, "RSW", "   "), (_PAGE_DIRTY, "D", "."), (_PAGE_ACCESSED, "A", "."),
                     (_PAGE_GLOBAL, "G", "."), (_PAGE_USER, "U", "."), (_PAGE_EXEC, "X", "."),
                     (_PAGE_WRITE, "W", "."), (_PAGE_READ, "R", "."), (_PAGE_PRESENT, "V", "."))


@dataclass
class RiscvPtdumpFormat(PtdumpFormat):
    """arch/riscv/mm/ptdump.c of the era (5.7+).

    The walk covers [KERN_VIRT_START, ULONG_MAX] (kernel_ptd_info.base_addr); the markers are
    address_markers[] as ptdump_init() fills them; ``prot`` is ``val & pg_level[level].mask``
    (the OR of every pte_bits mask); a line is dump_addr() + dump_prot():
    ``0x%016lx-0x%016lx   `` start and end, `` 0x%016lx `` the physical start, ``%9lu%c %s``
    the size (from K up, as the kernel divides by 1024 first) and the level's name, then
    `` %s`` per bit. note_page() prints a range only if its protection is non-zero (holes
    are never printed: :meth:`line` returns None) and, when it crosses markers, prints every
    marker passed (``while (addr >= st->marker[1].start_address)``: ``marker_loop``). The
    core's :func:`mmemu.render.ptdump.ptdump` runs the rest of the algorithm."""

    bits: tuple = _PTE_BITS_SVPBMT
    prot_mask: int = 0
    prints_empty_ranges: bool = False
    marker_loop: bool = True

    def __post_init__(self):
        if not self.prot_mask:
            m = 0
            for mask, _s, _c in self.bits:
                m |= mask
            self.prot_mask = m

    def prot(self, level: int, val: int) -> int:
        return val & self.prot_mask

    def run_mask(self, level: int) -> int:
        return self.prot_mask

    def effective(self, level: int, val: int, higher: int) -> int:
        return 0

    def dump_prot(self, prot: int) -> str:
        out = []
        for mask, set_, clear in self.bits:
            val = prot & mask
            if val:
                if mask == _PAGE_RSW or (mask == _PAGE_SOFT and "%d" in set_):
                    s = set_ % (val >> 8)
                elif mask == _PAGE_MTMASK_SVPBMT:
                    s = set_ % ("NC" if val == _PAGE_NOCACHE_SVPBMT else "IO" if val == _PAGE_IO_SVPBMT else "??")
                else:
                    s = set_
            else:
                s = clear
            out.append(f" {s}")
        return "".join(out)

    def line(self, start: int, end: int, size: int, start_pa: int, prot: int, level: int) -> str | None:
        if not prot and not self.prints_empty_ranges:
            return None  # note_page: 'if (st->current_prot)'

        delta = (size >> 10) & MASK64
        units = "KMGTPE"
        u = 0
        while not delta & 1023 and u < len(units) - 1:
            delta >>= 10
            u += 1
        name = self.level_names[level] if 0 <= level < len(self.level_names) else "PTE"
        return (f"0x{start:016x}-0x{end & MASK64:016x}   " + f" 0x{start_pa:016x} " + f"{delta:9d}{units[u]} {name}"
                + self.dump_prot(prot))


def ptdump_format(layout) -> RiscvPtdumpFormat:
    """address_markers[] and pg_level[] of arch/riscv/mm/ptdump.c for this layout's era."""
    from mmemu.errors import ConfigError

    era = RISCV(layout.kernel)
    if not era.ptdump:
        raise ConfigError(f"riscv64 kernel {layout.kernel} has no kernel page-table dump: arch/riscv/mm/ptdump.c "
                          "(/sys/kernel/debug/kernel_page_tables) came in 5.7")
    s = layout.symbols
    markers = [(s["FIXADDR_START"], "Fixmap start", 0), (s["FIXADDR_TOP"], "Fixmap end", 0),
               (s["PCI_IO_START"], "PCI I/O start", 0), (s["PCI_IO_END"], "PCI I/O end", 0),
               (s["VMEMMAP_START"], "vmemmap start", 0), (s["VMEMMAP_END"], "vmemmap end", 0),
               (s["VMALLOC_START"], "vmalloc() area", 0), (s["VMALLOC_END"], "vmalloc() end", 0),
               (s["PAGE_OFFSET"], "Linear mapping", 0)]
    if era.ptdump_modules_marker and "MODULES_VADDR" in s:
        markers += [(s["MODULES_VADDR"], "Modules/BPF mapping", 0), (s["KERNEL_LINK_ADDR"], "Kernel mapping", 0)]
    # pg_level[]: "PGD", then P4D/PUD/PMD where CONFIG_PGTABLE_LEVELS has them, else "PGD"
    n = era.pgtable_levels
    names = ("PGD", "P4D" if n > 4 else "PGD", "PUD" if n > 3 else "PGD", "PMD" if n > 2 else "PGD", "PTE")
    bits = _PTE_BITS_SVPBMT if era.ptdump_bits == "svpbmt_napot" else _PTE_BITS_CLASSIC
    return RiscvPtdumpFormat(markers=markers, ranges=[(s["KERN_VIRT_START"], None)], width=16, level_names=names,
                             debugfs="/sys/kernel/debug/kernel_page_tables", bits=bits)


# ---- crash vtop -------------------------------------------------------------------------------

def _center(text: str, width: int, rjust: bool) -> str:
    """crash's mkstring(CENTER|LJUST/RJUST): centred, the odd space right (LJUST) or left."""
    pad = width - len(text)
    if pad <= 0:
        return text
    left = (pad + 1) // 2 if rjust else pad // 2
    return " " * left + text + " " * (pad - left)


#: crash defs.h (RISCV64): the bits kept of an entry before its PFN is taken (PPN and flags,
#: bits 53..0); value from the spec's PTE layout, the macro's text NOT VERIFIED
PTE_PFN_PROT_MASK = (1 << 54) - 1


def translate_pte(pte: int) -> list[str]:
    """riscv64_translate_pte(): the PTE / PHYSICAL / FLAGS table. For an entry without
    _PAGE_PRESENT crash prints the PTE header alone, without a newline (returned as one
    unterminated piece, the caller appends what crash prints next)."""
    ptebuf = f"{pte:x}"
    len1 = max(len(ptebuf), len("PTE"))
    head = _center("PTE", len1, False) + "  "
    if not pte & _PAGE_PRESENT:
        return [head]
    paddr = (pte >> _PAGE_PFN_SHIFT) << 12  # PTOB(pte >> _PAGE_PFN_SHIFT)
    physbuf = f"{paddr:x}"
    len2 = max(len(physbuf), len("PHYSICAL"))
    head += _center("PHYSICAL", len2, False) + "  FLAGS"
    names = [name for name, bit in CRASH_FLAGS if pte & bit] if pte else ["no mapping"]
    return [head, f"{_center(ptebuf, len1, True)}  {_center(physbuf, len2, True)}  ({'|'.join(names)})"]


def _table_va(kernel, table: int) -> int:
    """Where crash reads a top-level table: swapper_pg_dir's symbol value, or mm->pgd (a
    linear-map address)."""
    if table == kernel.pgd:
        va = getattr(kernel, "pgd_va", None)
        if va is None:
            va = getattr(kernel, "_pgd_va", None)
        if va is not None:
            return va
    try:
        return kernel.phys_to_virt(table)
    except Exception:
        s = kernel.layout.symbols
        return (table - s.get("PHYS_OFFSET", 0) + s["PAGE_OFFSET"]) & MASK64


def vtop_lines(kernel, walk, root: int, process=None) -> list[str]:
    """crash riscv64.c riscv64_vtop_{3,4,5}level_4k(), called by riscv64_kvtop/uvtop with
    verbose set, after do_vtop's VIRTUAL/PHYSICAL header.

    crash prints the PGD line with the entry's *virtual* address, and every lower line with
    the *physical address of the table* (pt_phys), not of the entry: ``  PMD: %016lx =>
    %016lx`` (PUD and P4D the same), ``  PTE: %lx => %lx``, then `` PAGE: %016lx``, a blank
    line and the PTE table. An entry of 0 ends the walk with ``invalid``; a last-level entry
    without _PAGE_PRESENT prints the PTE header, then `` PAGE: 0000000000000000 not
    present`` (5-level: ``!_PAGE_PRESENT``). crash's riscv64 walk (as read, 2023) treats every
    upper-level entry as a pointer; where the walk reaches a leaf above the last level (a
    2 MiB or 1 GiB page) mmemu prints the PAGE line for that large page there, as crash does
    for a last-level page, and its PTE table."""
    steps = walk.steps
    nlevels = len(kernel.paging.levels)
    out: list[str] = []
    for k, step in enumerate(steps):
        label = step.level.name.upper()
        raw = step.raw
        last_level = step.li == nlevels - 1
        if k == 0:
            entry_va = _table_va(kernel, step.table) + step.index * 8
            out.append(f"  PGD: {entry_va:x} => {raw:x}")
        elif last_level:
            out.append(f"  PTE: {step.table:x} => {raw:x}")
        else:
            out.append(f"  {label}: {step.table:016x} => {raw:016x}")
        if not raw:
            out.append("invalid")
            return out
        kind = kernel.paging.codec.decoder(step.li)(raw)[0]
        if kind == TABLE:
            continue
        val = raw & PTE_PFN_PROT_MASK
        if kind == LEAF and walk.mapped and k == len(steps) - 1:
            out.append(f" PAGE: {walk.phys & ~(walk.page_size - 1):016x}")
            out.append("")
            out += translate_pte(val)
            return out
        if last_level and not val & _PAGE_PRESENT:
            out.append("")
            head = translate_pte(val)
            if nlevels == 5:
                out += head
                out.append("!_PAGE_PRESENT")
            else:
                out.append(head[0] + " PAGE: 0000000000000000 not present")
                out.append("")
            return out
        # a malformed entry (reserved bits, W without R, a misaligned large page) or one
        # without V above the last level: crash would go on reading it as a table; mmemu's
        # walk stops here, as the MMU does
        out.append("")
        out += translate_pte(val)
        return out
    return out


# ---- the oops ----------------------------------------------------------------------------------

def _release(kernel) -> str:
    v = kernel.spec.kernel
    return f"{v.major}.{v.minor}.{v.patch}"


def _fault_root(kernel, fault) -> int:
    try:
        return kernel.fault_pgd(fault)
    except Exception:
        proc = fault.process
        return proc.pgd if proc is not None and getattr(proc, "pgd", None) else kernel.pgd


def oops_report(kernel, fault, die_counter: int, why: str = "") -> str:
    """The oops of a kernel-mode page fault nothing fixes: fault.c no_context() /
    die_kernel_fault() ``Unable to handle kernel %s at virtual address`` REG_FMT (every era
    4.15-6.x; 'NULL pointer dereference' below PAGE_SIZE, else 'paging request', or the
    reason *why* gives, as die_kernel_fault's 'access to user memory without uaccess
    routines'), then traps.c die(): ``Oops [#%d]``, print_modules(), show_regs()."""
    era = RISCV(kernel.spec.kernel)
    addr = fault.address
    if why and why not in ("page_fault_oops", "no_context"):
        msg = why
    else:
        msg = "NULL pointer dereference" if addr < PAGE_SIZE else "paging request"
    lines = [f"Unable to handle kernel {msg} at virtual address {addr:016x}",
             f"Oops [#{die_counter}]",
             kernel.modules_linked_in()]  # print_modules()
    proc = fault.process
    comm, pid = (proc.comm, proc.pid) if proc is not None else ("swapper/0", 0)
    # show_regs_print_info -> dump_stack_print_info (lib/dump_stack.c)
    lines.append(f"CPU: {fault.cpu} PID: {pid} Comm: {comm[:20]} {kernel.print_tainted()} {_release(kernel)} #1")
    if era.show_regs_symbols:
        # 'riscv: Add machine name to kernel boot log and stack dump output' (5.11): the DT model of
        # QEMU's virt machine
        lines.append("Hardware name: riscv-virtio,qemu (DT)")
    lines += show_regs(kernel, fault)
    lines.append("---[ end trace 0000000000000000 ]---")
    return "\n".join(lines)


def show_regs(kernel, fault) -> list[str]:
    """process.c (__)show_regs() of the era, with what mmemu knows (module docstring)."""
    era = RISCV(kernel.spec.kernel)
    epc = fault.ip if fault.ip is not None else 0
    sp = fault.sp or 0
    api = "  (no instruction: an access made through mmemu's API)" if fault.ip is None else ""
    status = (2 << 32) | (0 if fault.user else 1 << 8)  # sstatus.UXL = 2 (RV64); SPP = 1 for a kernel trap
    cause = kernel.paging.codec.fault_code(fault)
    regs = _cpu_registers(kernel, fault)
    ra = regs.get("ra", 0)
    out = []
    symbols = era.show_regs_symbols and not fault.user
    if symbols:
        # '%pS': a module's function (kallsyms) or an exported one, else the address
        out.append(f"epc : {kernel.symbol_at(epc) or f'0x{epc:x}'}{api}")
        out.append(f" ra : {kernel.symbol_at(ra) or f'0x{ra:x}'}")
    label = "epc : " if era.show_regs_symbols else "sepc: "
    out.append(f"{label}{epc:016x} ra : {ra:016x} sp : {sp:016x}" + ("" if symbols else api))
    rows = (("gp", "tp", "t0"), ("t1", "t2", "s0"), ("s1", "a0", "a1"), ("a2", "a3", "a4"), ("a5", "a6", "a7"),
            ("s2", "s3", "s4"), ("s5", "s6", "s7"), ("s8", "s9", "s10"), ("s11", "t3", "t4"), ("t5", "t6"))
    for row in rows:
        out.append("".join(f" {name:<3}: {regs.get(name, 0):016x}" for name in row))
    if era.show_regs_csr_names == "s":
        out.append(f"sstatus: {status:016x} sbadaddr: {fault.address:016x} scause: {cause:016x}")
    else:
        out.append(f"status: {status:016x} badaddr: {fault.address:016x} cause: {cause:016x}")
    return out


def _cpu_registers(kernel, fault) -> dict[str, int]:
    """The registers of the hart whose code faulted, read in its interrupt hook (zeros for an
    access made through mmemu's API, which has none)."""
    if fault.ip is None:
        return {}
    for cpu in kernel.cpus:
        if cpu.running and cpu.index == fault.cpu:
            return cpu.adapter.registers()
    return {}


def segfault_report(kernel, fault) -> str:
    """traps.c do_trap(): ``%s[%d]: unhandled signal %d code 0x%x at 0x`` REG_FMT, then
    print_vma_addr(`` in ``, epc) for a file-backed VMA (every era 4.15-6.x). The code is
    SEGV_MAPERR (1) without a VMA at the address (and for kernel addresses), SEGV_ACCERR (2)
    when access_error() refused the access of a VMA (fault.c bad_area)."""
    proc = fault.process
    comm, pid = (proc.comm, proc.pid) if proc is not None else ("swapper/0", 0)
    code = 1
    vma = None
    if proc is not None and fault.address < kernel.layout.symbols["TASK_SIZE"]:
        try:
            vma = proc.find_vma(fault.address)
        except Exception:
            vma = None
        if vma is not None and vma.vm_start <= fault.address:
            code = 2
    line = f"{comm}[{pid}]: unhandled signal 11 code 0x{code:x} at 0x{fault.address:016x}"
    if fault.ip is not None and proc is not None:
        try:
            ivma = proc.find_vma(fault.ip)
        except Exception:
            ivma = None
        name = getattr(ivma, "name", "") if ivma is not None and ivma.vm_start <= fault.ip else ""
        if name and not name.startswith("["):
            line += f" in {name.rsplit('/', 1)[-1]}[{ivma.vm_start:x}+{ivma.vm_end - ivma.vm_start:x}]"
    return line
