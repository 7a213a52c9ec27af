"""/sys/kernel/debug/kernel_page_tables as arch/arm64/mm/dump.c (3.18-5.6) and ptdump.c
(5.7+) print it.

note_page(): a line ``0x%016lx-0x%016lx   `` then ``%9lu%c`` -- the size in K/M/G/T/P/E
(``delta = (addr - start) >> 10``, divided by 1024 while it divides) -- and, from 4.8, `` %s``
the level name; then, when the range's protection is not 0, one word per prot_bits[] entry,
each preceded by a blank: ``.set`` when ``(prot & mask) == val``, else ``.clear`` (nothing
when NULL). Until the generic ptdump walker (5.6) a range whose protection is 0 (a hole) is
not printed at all. The protection compared between neighbours is ``val &
pg_level[level].mask``, the OR of every prot_bits[] mask. The walk starts at VA_START
(3.18-5.3, ``kernel_ptdump_info.base_addr``) or PAGE_OFFSET (5.4+) and runs to the top of
the address space.

Markers: note_page() moves to the next marker once while flushing a range and once more
after it (``if (addr >= st->marker[1].start_address)`` twice, verified in every copy); the
core's ``marker_loop`` passes every marker the address has reached, which prints the same
as long as no single entry spans more than two marker addresses (checked for every era by
tests/test_ptdump.py against a transcription of the kernel's note_page()).

Markers and words per era (eras.py REPORTS.ptdump); arm64 had no kernel page-table dump
before 3.18, where the 3.18 format is used.
"""

from __future__ import annotations

from mmemu.render.ptdump import PtdumpFormat

from .eras import ARM64, REPORTS
from .formats import (PTE_AF, PTE_ATTRINDX, PTE_CONT, PTE_GP, PTE_NG, PTE_PXN, PTE_RDONLY, PTE_SHARED,
                      PTE_TABLE_BIT, PTE_USER, PTE_UXN, PTE_VALID)

PTE_ATTRINDX_MASK = 7 << 2
_UNITS = "KMGTPE"

# memory.h MT_* indices: 3.7-5.9 DEVICE_nGnRnE 0, DEVICE_nGnRE 1, DEVICE_GRE 2, NORMAL_NC 3, NORMAL 4
# (verified 4.x copy); 5.10+ NORMAL 0, NORMAL_TAGGED 1, NORMAL_NC 2, NORMAL_WT 3, DEVICE_nGnRnE 4,
# DEVICE_nGnRE 5, DEVICE_GRE 6 (verified 5.10-era copy)
_MT_OLD = {"DEVICE_nGnRnE": 0, "DEVICE_nGnRE": 1, "DEVICE_GRE": 2, "NORMAL_NC": 3, "NORMAL": 4}
_MT_NEW = {"NORMAL": 0, "NORMAL_TAGGED": 1, "NORMAL_NC": 2, "NORMAL_WT": 3, "DEVICE_nGnRnE": 4, "DEVICE_nGnRE": 5,
           "DEVICE_GRE": 6}


def prot_bits(kernel) -> list[tuple[int, int, str, str | None]]:
    """pte_bits[] (mask, val, set, clear) of the era. 6.x (verified ptdump.c): F, USR, ro/RW, NX/x,
    SHD, AF, NG, CON, BLK, UXN, GP and the memory types; the older lists drop what the
    kernel did not have yet (CON and BLK with contiguous/block reporting, F for invalid
    entries, GP for BTI 5.10 -- releases of these additions are recollection)."""
    era = ARM64(kernel)
    kv = era.version
    mt = _MT_NEW if kv >= "5.10" else _MT_OLD
    out: list[tuple[int, int, str, str | None]] = []
    if kv >= "4.6":
        out.append((PTE_VALID, PTE_VALID, " ", "F"))
    out += [(PTE_USER, PTE_USER, "USR", "   "), (PTE_RDONLY, PTE_RDONLY, "ro", "RW"), (PTE_PXN, PTE_PXN, "NX", "x "),
            (PTE_SHARED, PTE_SHARED, "SHD", "   "), (PTE_AF, PTE_AF, "AF", "  "), (PTE_NG, PTE_NG, "NG", "  ")]
    if kv >= "4.6":
        out += [(PTE_CONT, PTE_CONT, "CON", "   "), (PTE_TABLE_BIT, PTE_TABLE_BIT, "   ", "BLK")]
    out.append((PTE_UXN, PTE_UXN, "UXN", "   " if kv >= "5.10" else None))
    if kv >= "5.10":
        out.append((PTE_GP, PTE_GP, "GP", "  "))
        names = [("DEVICE_nGnRnE", "DEVICE/nGnRnE"), ("DEVICE_nGnRE", "DEVICE/nGnRE"), ("NORMAL_NC", "MEM/NORMAL-NC"),
                 ("NORMAL", "MEM/NORMAL"), ("NORMAL_TAGGED", "MEM/NORMAL-TAGGED")]
    else:
        names = [("DEVICE_nGnRnE", "DEVICE/nGnRnE"), ("DEVICE_nGnRE", "DEVICE/nGnRE"), ("DEVICE_GRE", "DEVICE/GRE"),
                 ("NORMAL_NC", "MEM/NORMAL-NC"), ("NORMAL", "MEM/NORMAL")]
    for key, word in names:
        out.append((PTE_ATTRINDX_MASK, PTE_ATTRINDX(mt[key]), word, None))
    return out


def markers(layout) -> list[tuple[int, str, int]]:
    """address_markers[] of the era (the markers whose address is 0 at build time are set by
    ptdump_init(), as here)."""
    s = layout.symbols
    style = REPORTS(layout.kernel).ptdump
    vm_end = s["VMEMMAP_END"]
    pci = [(s["PCI_IO_START"], "PCI I/O start"), (s["PCI_IO_END"], "PCI I/O end")] if "PCI_IO_START" in s else []
    # no fixmap before 3.15 (no FIXADDR_* at all): no Fixmap markers
    fix = [(s.get("FIXADDR_TOT_START", s["FIXADDR_START"]), "Fixmap start"), (s["FIXADDR_TOP"], "Fixmap end")] \
        if "FIXADDR_TOP" in s else []
    if style in (None, "dump-3.18"):  # (no dump before 3.18: its format)
        # dump.c 3.18-4.5 (verified 3.18 and 4.4): vmalloc() Area, vmalloc() End, vmemmap start/end
        # (virt_to_page(PAGE_OFFSET), virt_to_page(high_memory): vmemmap + pfn), Fixmap start/end, PCI I/O
        # start/end, Modules start/end, Kernel Mapping
        vmemmap, pfn0 = s["vmemmap"], s["PHYS_OFFSET"] >> 12
        pfn_high = pfn0 + ((s["high_memory"] - s["PAGE_OFFSET"]) >> 12)
        m = [(s["VMALLOC_START"], "vmalloc() Area"), (s["VMALLOC_END"], "vmalloc() End"),
             (vmemmap + pfn0 * 64, "vmemmap start"), (vmemmap + pfn_high * 64, "vmemmap end")] + fix + pci + \
            [(s["MODULES_VADDR"], "Modules start"), (s["MODULES_END"], "Modules end"),
             (s["PAGE_OFFSET"], "Kernel Mapping")]
    elif style == "dump-4.6":
        # dump.c 4.6 (verified patch; 4.14 copy): Modules start/end, vmalloc() Area/End, Fixmap start/end, PCI
        # I/O start/end, vmemmap start/end (VMEMMAP_START + VMEMMAP_SIZE), Linear Mapping
        m = [(s["MODULES_VADDR"], "Modules start"), (s["MODULES_END"], "Modules end"),
             (s["VMALLOC_START"], "vmalloc() Area"), (s["VMALLOC_END"], "vmalloc() End")] + fix + pci + \
            [(s["VMEMMAP_START"], "vmemmap start"), (vm_end, "vmemmap end"), (s["PAGE_OFFSET"], "Linear Mapping")]
        if "BPF_JIT_REGION_START" in s:
            m = [(s["BPF_JIT_REGION_START"], "BPF start"), (s["BPF_JIT_REGION_END"], "BPF end")] + m
    else:
        # dump.c 5.4 / ptdump.c 5.7+ (verified): Linear Mapping start/end, [BPF start/end], Modules start/end,
        # vmalloc() area/end, Fixmap start/end, PCI I/O start/end, vmemmap start/end (6.9: vmemmap before PCI I/O)
        m = [(s["PAGE_OFFSET"], "Linear Mapping start"), (s["PAGE_END"], "Linear Mapping end")]
        if "BPF_JIT_REGION_START" in s and style != "dump-5.4":
            m += [(s["BPF_JIT_REGION_START"], "BPF start"), (s["BPF_JIT_REGION_END"], "BPF end")]
        m += [(s["MODULES_VADDR"], "Modules start"), (s["MODULES_END"], "Modules end"),
              (s["VMALLOC_START"], "vmalloc() area"), (s["VMALLOC_END"], "vmalloc() end")] + fix
        vm = [(s["VMEMMAP_START"], "vmemmap start"), (vm_end, "vmemmap end")]
        m += (vm + pci) if style == "ptdump-6.9" else (pci + vm)
    return [(a, n, 0) for a, n in sorted(m, key=lambda x: x[0])]


class Arm64Ptdump(PtdumpFormat):
    """The arm64 dump (see the module doc)."""

    bits: list = []
    mask: int = 0
    #: the level name after the size (4.8+)
    show_level: bool = True
    #: ranges whose protection is 0 are printed (5.6+, the generic walker)
    show_holes: bool = True

    def prot(self, level: int, val: int) -> int:
        return val & self.mask

    def run_mask(self, level: int) -> int:
        return self.mask

    def effective(self, level: int, val: int, higher: int) -> int:
        return 0

    def line(self, start: int, end: int, size: int, start_pa: int, prot: int, level: int) -> str | None:
        if not prot and not self.show_holes:
            return None  # 3.18-5.5: "if (st->current_prot) { ... print ... }"
        delta = size >> 10
        unit = 0
        while not delta & 1023 and unit < len(_UNITS) - 1:
            delta >>= 10
            unit += 1
        text = f"0x{start:016x}-0x{end:016x}   {delta:9d}{_UNITS[unit]}"
        if self.show_level:
            text += f" {self.level_names[level]}"
        if prot:
            for mask, val, set_, clear in self.bits:
                word = set_ if (prot & mask) == val else clear
                if word is not None:
                    text += " " + word
        return text


def ptdump_format(layout) -> Arm64Ptdump:
    s = layout.symbols
    kv = layout.kernel
    four = layout.config.get("CONFIG_PGTABLE_LEVELS") == 4
    # pg_level[]: pgd "PGD"; p4d "P4D" (5.8+, folded p4d); pud (CONFIG_PGTABLE_LEVELS > 3) ? "PUD" : "PGD";
    # pmd "PMD"; pte "PTE" -- indexed by mm/ptdump.c level numbers (0 pgd .. 4 pte)
    names = ("PGD", "P4D" if kv >= "5.8" else "PGD", "PUD" if four else "PGD", "PMD", "PTE")
    base = s["PAGE_OFFSET"] if kv >= "5.4" else s.get("VA_START", s["VMALLOC_START"])
    fmt = Arm64Ptdump(markers=markers(layout), ranges=[(base, None)], width=16, level_names=names,
                      debugfs="/sys/kernel/debug/kernel_page_tables", marker_loop=True)
    rep = REPORTS(kv)
    fmt.show_level = rep.ptdump_level_name
    fmt.show_holes = rep.ptdump_holes
    fmt.bits = prot_bits(kv)
    mask = 0
    for m, _v, _s, _c in fmt.bits:
        mask |= m
    fmt.mask = mask
    return fmt
