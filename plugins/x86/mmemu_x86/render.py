"""x86's output formats: crash's ``vtop`` walk lines (the ptdump is mmemu_x86.ptdump).

crash prints, per machine type (x86.c ``x86_kvtop``/``x86_kvtop_PAE``, x86_64.c
``x86_64_kvtop``):

- x86 (2-level): ``PAGE DIRECTORY:`` the pgd's virtual address; ``PGD:`` and ``PMD:`` the
  same directory entry (the pmd is folded), at its virtual address; ``PTE:`` at the page
  table's physical address; `` PAGE:`` with ``(4MB)`` for a large page.
- x86 PAE: ``PGD:`` the PDPT entry (virtual address), ``PMD:``/``PTE:`` at physical addresses,
  entries as 64-bit numbers, ``(2MB)`` pages.
- x86_64: ``PGD DIRECTORY:`` the pgd's virtual address, ``PAGE DIRECTORY:`` the pgd entry's
  value, then ``P4D:`` (5-level), ``PUD:``, ``PMD:``, ``PTE:`` at physical addresses,
  ``PAGE:`` with ``(1GB)``/``(2MB)``.
"""

from __future__ import annotations

from mmemu.render.text import center, page_size_suffix, table_va

from .pgtable_types import (
    _PAGE_ACCESSED,
    _PAGE_DIRTY,
    _PAGE_GLOBAL,
    _PAGE_NX,
    _PAGE_PCD,
    _PAGE_PRESENT,
    _PAGE_PROTNONE,
    _PAGE_PSE,
    _PAGE_PWT,
    _PAGE_RW,
    _PAGE_USER,
)

# crash defs.h: PHYSICAL_PAGE_MASK (x86_64, ~(PAGESIZE()-1) & __PHYSICAL_MASK, 52 bits at most),
# PAE_PAGEBASE (i386 PAE) and NONPAE_PAGEBASE (i386): the frame of an entry as crash takes it
_PHYSICAL_PAGE_MASK = ((1 << 52) - 1) & ~0xFFF
_NONPAE_PAGEBASE = 0xFFFFF000


def _frame_mask(kernel) -> int:
    return _PHYSICAL_PAGE_MASK if kernel.paging.levels[0].entry_size == 8 else _NONPAE_PAGEBASE


def vtop_paddr(kernel, walk, user: bool) -> int | None:
    """What crash's x86 uvtop/kvtop find: the walk's page, or a last-level entry that is not
    present for the CPU but is ``_PAGE_PRESENT | _PAGE_PROTNONE`` (a PROT_NONE page, present
    for the kernel): x86.c x86_uvtop/x86_kvtop/x86_uvtop_PAE/x86_kvtop_PAE test the pte
    against both bits, x86_64.c x86_64_uvtop_level4 too, but x86_64_kvtop against
    _PAGE_PRESENT alone (crash-utility/crash x86.c, x86_64.c as read). crash takes the
    PROTNONE bit as _PAGE_GLOBAL from 2.6.28 and _PAGE_PSE before (x86_64_init/x86_init
    page_protnone); mmemu's PAGE_NONE has the global bit in every era, and that is the bit
    read here.

    A kernel address crash does not take for a vmalloc one gets ``VTOP()`` without a walk,
    whatever the tables say (x86_64_kvtop, x86_kvtop: ``if (!IS_VMALLOC_ADDR(kvaddr)) {
    *paddr = VTOP(kvaddr); if (!verbose) return TRUE; }``): on i386 everything from
    PAGE_OFFSET up to vmalloc_start (``vaddr - PAGE_OFFSET``); on x86_64 all but
    x86_64_IS_VMALLOC_ADDR's ranges, through x86_64_VTOP (below)."""
    if not user:
        s = kernel.layout.symbols
        va = walk.va
        if not kernel.paging.bits64:
            if s["PAGE_OFFSET"] <= va < s["VMALLOC_START"]:
                return va - s["PAGE_OFFSET"] + kernel.PHYS_OFFSET
        elif va >= s["PAGE_OFFSET"] and not _x86_64_is_vmalloc_addr(kernel, va):  # x86_64_is_kvaddr
            return _x86_64_vtop(kernel, va)
    return _walk_paddr(kernel, walk, user)


#: VSYSCALL_START (-10UL << 20) and VSYSCALL_END (-2UL << 20) of 2.6 arch/x86_64 vsyscall.h, the
#: constants crash keeps for the vsyscall range x86_64_IS_VMALLOC_ADDR leaves to the walk
_VSYSCALL_START, _VSYSCALL_END = 0xFFFFFFFFFF600000, 0xFFFFFFFFFFE00000


def _x86_64_is_vmalloc_addr(kernel, va: int) -> bool:
    """crash x86_64.c x86_64_IS_VMALLOC_ADDR (read in the current source): vmalloc space,
    the vmemmap (kernels that have one, 2.6.24+), the modules, the vsyscall range, the
    cpu_entry_area, and with 5-level paging the hole between VMALLOC_END and the vmemmap.
    The vmemmap and cpu_entry_area ends are mm.rst's (Documentation/arch/x86/x86_64/mm.rst:
    1 TB of vmemmap with 4 levels, 0.5 PB with 5; a 0.5 TB cpu_entry_area slot)."""
    s = kernel.layout.symbols
    five = len(kernel.paging.levels) == 5
    if s["VMALLOC_START"] <= va <= s["VMALLOC_END"] or s["MODULES_VADDR"] <= va <= s["MODULES_END"]:
        return True
    if _VSYSCALL_START <= va < _VSYSCALL_END:
        return True
    vmemmap = s.get("VMEMMAP_START")
    if vmemmap is not None and vmemmap <= va < vmemmap + (1 << (49 if five else 40)):
        return True
    cea = s.get("CPU_ENTRY_AREA_BASE")
    if cea is not None and cea <= va < cea + (1 << 39):
        return True
    return five and vmemmap is not None and s["VMALLOC_END"] < va < vmemmap


def _x86_64_vtop(kernel, va: int) -> int:
    """crash x86_64.c x86_64_VTOP: ``vaddr - __START_KERNEL_map + phys_base`` from
    __START_KERNEL_map up, ``vaddr - PAGE_OFFSET`` below: for any address it is given, which
    for an address of neither mapping (the fixmap, ESPfix) is a number and no page."""
    s = kernel.layout.symbols
    if va >= s["__START_KERNEL_map"]:
        text = s["__START_KERNEL"]  # _text: its __pa is phys_base + (_text - __START_KERNEL_map)
        return va - text + kernel.image_phys(text)
    return va - s["PAGE_OFFSET"]


def _walk_paddr(kernel, walk, user: bool) -> int | None:
    """The page crash's verbose walk reaches (PROT_NONE ptes included), or None."""
    if walk.mapped:
        return walk.phys
    steps = walk.steps
    if not steps:
        return None
    raw = steps[-1].raw
    if steps[-1].level.name != "pte" or raw & _PAGE_PRESENT or not raw & _PAGE_PROTNONE:
        return None
    if kernel.paging.bits64 and not user:
        return None
    return (raw & _frame_mask(kernel)) + (walk.va & 0xFFF)


def translate_pte(kernel, raw: int) -> list[str]:
    """x86_64_translate_pte (x86_64.c) / x86_translate_pte (x86.c): the PTE / PHYSICAL /
    FLAGS table, crash's flag words in crash's order. x86_64: PRESENT RW USER PWT PCD
    ACCESSED DIRTY, PSE if also _PAGE_PRESENT, PROTNONE if _PAGE_PROTNONE without
    _PAGE_PRESENT, GLOBAL, NX (the PROTNONE bit is the global bit: a PROT_NONE pte shows
    both). i386 tests ``(pte && _PAGE_PRESENT)``, a logical and that is true for any entry:
    PSE whenever the bit is set, GLOBAL, and never PROTNONE; NX only with PAE."""
    bits64 = kernel.paging.bits64
    paddr = raw & _frame_mask(kernel)
    ptebuf, physbuf = f"{raw:x}", f"{paddr:x}"
    len1 = max(len(ptebuf), len("PTE"))
    len2 = max(len(physbuf), len("PHYSICAL"))
    header = f"{center('PTE', len1)}  {center('PHYSICAL', len2)}  FLAGS"
    names = []
    if raw:
        present = bool(raw & _PAGE_PRESENT)
        for bit, name in ((_PAGE_PRESENT, "PRESENT"), (_PAGE_RW, "RW"), (_PAGE_USER, "USER"), (_PAGE_PWT, "PWT"),
                          (_PAGE_PCD, "PCD"), (_PAGE_ACCESSED, "ACCESSED"), (_PAGE_DIRTY, "DIRTY")):
            if raw & bit:
                names.append(name)
        if raw & _PAGE_PSE and (present or not bits64):
            names.append("PSE")
        if bits64 and raw & _PAGE_PROTNONE and not present:
            names.append("PROTNONE")
        if raw & _PAGE_GLOBAL:
            names.append("GLOBAL")
        if raw & _PAGE_NX and kernel.paging.levels[0].entry_size == 8:
            names.append("NX")
    flags = "|".join(names) if raw else "no mapping"
    return [header, f"{center(ptebuf, len1, True)}  {center(physbuf, len2, True)}  ({flags})"]


def _leaf_lines(kernel, walk, page_fmt: str, user: bool) -> list[str]:
    """The PAGE line (with the large-page size) and the PTE/PHYSICAL/FLAGS table, for a page
    crash finds (PROT_NONE ones too); for an entry that is not present but not empty the
    table alone, after a blank line. crash prints the entry's own frame
    (``PAGEBASE(pte) & PHYSICAL_PAGE_MASK``, NONPAE_PAGEBASE/PAE_PAGEBASE on i386)."""
    last = walk.steps[-1]
    if _walk_paddr(kernel, walk, user) is not None:
        size = walk.page_size if walk.mapped else 4096
        return [page_fmt.format(last.raw & _frame_mask(kernel)) + page_size_suffix(size), ""] + \
            translate_pte(kernel, last.raw)
    if last.raw and last.level.name == "pte":
        return [""] + translate_pte(kernel, last.raw)
    return []


def vtop_lines_x86(kernel, walk, root: int, process=None) -> list[str]:
    """x86.c x86_kvtop/x86_uvtop (2-level) and x86_kvtop_PAE/x86_uvtop_PAE: ``PAGE
    DIRECTORY: %lx`` (the pgd's kernel address), ``  PGD: %s => %lx`` with the entry's
    address right-justified in VADDR_PRLEN (the pgd's virtual address plus the index; the
    same entry again as ``PMD`` in 2-level, where the pmd is folded), ``  PMD``/``  PTE`` at
    the tables' physical addresses, `` PAGE: %s`` right-justified in VADDR_PRLEN."""
    pae = kernel.paging.levels[0].entry_size == 8
    base_va = table_va(kernel, root)
    out = [f"PAGE DIRECTORY: {base_va:x}"]
    steps = walk.steps
    for k, step in enumerate(steps):
        if k == 0:
            entry_va = base_va + (step.entry_addr - step.table)
            out.append(f"  PGD: {entry_va:>8x} => {step.raw:x}")
            if not pae and len(steps) > 1:  # the pmd is folded into the pgd: the same entry again
                out.append(f"  PMD: {entry_va:>8x} => {step.raw:x}")
        else:
            label = "PMD" if step.level.name == "pmd" else "PTE"
            out.append(f"  {label}: {step.entry_addr:>8x} => {step.raw:x}")
    return out + _leaf_lines(kernel, walk, " PAGE: {:>8x}", process is not None)


def vtop_lines_x86_64(kernel, walk, root: int, process=None) -> list[str]:
    """x86_64.c x86_64_kvtop (x86_64_kpgd_offset: ``PGD DIRECTORY: %lx`` the kernel pgd's
    address, ``PAGE DIRECTORY: %lx`` the entry) or x86_64_uvtop_level4 (x86_64_upgd_offset:
    ``   PGD: %lx => %lx`` at the entry's physical address), then ``   P4D``/``   PUD``/
    ``   PMD``/``   PTE: %lx => %lx`` at physical addresses and ``  PAGE: %lx`` with
    ``  (1GB)``/``  (2MB)``."""
    steps = walk.steps
    out = [f"PGD DIRECTORY: {table_va(kernel, root):x}", f"PAGE DIRECTORY: {steps[0].raw:x}"]
    for step in steps[1:]:
        out.append(f"   {step.level.name.upper()}: {step.entry_addr:x} => {step.raw:x}")
    out += _leaf_lines(kernel, walk, "  PAGE: {:x}", process is not None)
    if process is not None:
        # x86_64_uvtop_level4: the user walk starts at the PGD entry, with its address
        first = steps[0]
        out = [f"   PGD: {first.entry_addr:x} => {first.raw:x}"] + out[2:]
    return out
