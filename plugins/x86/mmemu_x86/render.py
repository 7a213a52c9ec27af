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
    _PAGE_GLOBAL,
    _PAGE_NX,
    _PAGE_PCD,
    _PAGE_PRESENT,
    _PAGE_PSE,
    _PAGE_PWT,
    _PAGE_RW,
    _PAGE_USER,
)


def translate_pte(kernel, raw: int) -> list[str]:
    """x86_translate_pte / x86_64_translate_pte: the PTE / PHYSICAL / FLAGS table."""
    codec = kernel.codec
    last = len(kernel.paging.levels) - 1
    paddr = raw & codec.bits[-1].addr_mask
    ptebuf, physbuf = f"{raw:x}", f"{paddr:x}"
    len1 = max(len(ptebuf), 3)
    len2 = max(len(physbuf), len("PHYSICAL"))
    header = f"{center('PTE', len1)}  {center('PHYSICAL', len2)}  FLAGS"
    names = []
    if raw:
        present = bool(raw & _PAGE_PRESENT)
        for name in codec.flag_names(last, raw):
            if name == "PSE" and not present:
                continue
            names.append(name)
        if not present and raw & _PAGE_GLOBAL:  # _PAGE_PROTNONE is the global bit when not present
            names = [n for n in names if n != "GLOBAL"] + ["PROTNONE"]
    flags = "|".join(names) if raw else "no mapping"
    return [header, f"{center(ptebuf, len1, True)}  {center(physbuf, len2, True)}  ({flags})"]


def _leaf_lines(kernel, walk, page_fmt: str) -> list[str]:
    """The PAGE line (with the large-page size) and the PTE/PHYSICAL/FLAGS table; for an
    entry that is not present but not empty (a swap entry, PROT_NONE) the table alone."""
    last = walk.steps[-1]
    if walk.mapped:
        return [page_fmt.format(walk.phys & ~(walk.page_size - 1)) + page_size_suffix(walk.page_size), ""] + \
            translate_pte(kernel, last.raw)
    if last.raw and last.level.name == "pte":
        return [""] + translate_pte(kernel, last.raw)
    return []


def vtop_lines_x86(kernel, walk, root: int, process=None) -> list[str]:
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
    return out + _leaf_lines(kernel, walk, " PAGE: {:>8x}")


def vtop_lines_x86_64(kernel, walk, root: int, process=None) -> list[str]:
    steps = walk.steps
    out = [f"PGD DIRECTORY: {table_va(kernel, root):x}", f"PAGE DIRECTORY: {steps[0].raw:x}"]
    for step in steps[1:]:
        out.append(f"   {step.level.name.upper()}: {step.entry_addr:x} => {step.raw:x}")
    out += _leaf_lines(kernel, walk, "  PAGE: {:x}")
    if process is not None:
        # x86_64_uvtop_level4: the user walk starts at the PGD entry, with its address
        first = steps[0]
        out = [f"   PGD: {first.entry_addr:x} => {first.raw:x}"] + out[2:]
    return out
