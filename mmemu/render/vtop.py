"""The crash utility's ``vtop`` output for one address (memory.c ``do_vtop``; the walk lines
from x86.c ``x86_kvtop``/``x86_kvtop_PAE`` and x86_64.c ``x86_64_kvtop``), followed by the
frame record, in the place where crash prints the ``struct page`` line.

crash prints, per machine type:

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

from typing import TYPE_CHECKING

from ..errors import MmemuError

if TYPE_CHECKING:
    from ..kernel import Kernel
    from ..pagetable import Walk


def _center(text: str, width: int, rjust: bool) -> str:
    """crash's mkstring(CENTER|LJUST/RJUST): centred, the odd space right (LJUST) or left."""
    pad = width - len(text)
    if pad <= 0:
        return text
    left = (pad + 1) // 2 if rjust else pad // 2
    return " " * left + text + " " * (pad - left)


def translate_pte(kernel: "Kernel", raw: int) -> list[str]:
    """x86_translate_pte / x86_64_translate_pte: the PTE / PHYSICAL / FLAGS table."""
    mode = kernel.paging
    addr_mask = kernel.pgtable.flag_bits ^ ((1 << 64) - 1)
    paddr = raw & addr_mask
    ptebuf, physbuf = f"{raw:x}", f"{paddr:x}"
    len1 = max(len(ptebuf), 3)
    len2 = max(len(physbuf), len("PHYSICAL"))
    header = f"{_center('PTE', len1, False)}  {_center('PHYSICAL', len2, False)}  FLAGS"
    names = []
    if raw:
        present = bool(raw & mode.present)
        for name, mask in mode.flags:
            if name == "PSE" and not present:
                continue
            if raw & mask:
                names.append(name)
        if not present and raw & mode.global_:  # _PAGE_PROTNONE is the global bit when not present
            names = [n for n in names if n != "GLOBAL"] + ["PROTNONE"]
    flags = "|".join(names) if raw else "no mapping"
    return [header, f"{_center(ptebuf, len1, True)}  {_center(physbuf, len2, True)}  ({flags})"]


def vtop(kernel: "Kernel", va: int, root: int | None = None, process=None) -> str:
    """crash's ``vtop``: a kernel address through the master table (or *root*), a user
    address through *process*'s page directory, followed by its VMA, as ``vtop -u``."""
    arch = kernel.arch
    if arch.crash_machine not in ("x86", "x86_64"):
        raise MmemuError(f"arch {arch.name} has no crash vtop format (crash_machine {arch.crash_machine!r})")
    user = process is not None and va < kernel.task_size
    if process is not None:
        root = process.pgd
    root = kernel.pgd if root is None else root
    bits64 = arch.crash_machine == "x86_64"
    prlen = 16 if bits64 else 8
    walk = kernel.pgtable.walk(root, va)
    out = [f"{'VIRTUAL':<{prlen}}  {'PHYSICAL':<{prlen}}"]
    # do_vtop: fprintf(fp, "%-8lx  %-8lx\n\n", vaddr, paddr) (so: padded, as crash pads)
    out.append(f"{va:<8x}  {walk.phys:<8x}" if walk.mapped else f"{va:<8x}  (not mapped)")
    out.append("")
    pgd_va = kernel.pgd_va if root == kernel.pgd else None
    lines = (_walk_x86_64 if bits64 else _walk_x86)(kernel, walk, root, pgd_va)
    if user and bits64:
        # x86_64_uvtop_level4: the user walk starts at the PGD entry, with its address
        first = walk.steps[0]
        lines = [f"   PGD: {first.entry_addr:x} => {first.raw:x}"] + lines[2:]
    out += lines
    out.append("")
    if user:
        vma = process.find_vma(va)
        if vma is not None and vma.vm_start <= va:
            out.append(f"{'VMA':^{prlen}}  {'START':^{prlen}}  {'END':^{prlen}}  FLAGS  FILE")
            out.append(f"{'-':^{prlen}}  {vma.vm_start:>{prlen}x}  {vma.vm_end:>{prlen}x}  {vma.vm_flags:5x}  "
                       f"{vma.name}")
            out.append("")
    if walk.mapped:
        out += page_line(kernel, walk.phys)
    return "\n".join(out).rstrip("\n") + "\n"


def _table_va(kernel: "Kernel", root: int, pgd_va: int | None) -> int:
    if pgd_va is not None:
        return pgd_va
    try:
        return kernel.phys_to_virt(root)
    except Exception:
        return root


def _walk_x86(kernel, walk: "Walk", root, pgd_va) -> list[str]:
    pae = kernel.paging.levels[0].entry_size == 8
    base_va = _table_va(kernel, root, pgd_va)
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


def _leaf_lines(kernel, walk: "Walk", page_fmt: str) -> list[str]:
    """The PAGE line (with the large-page size) and the PTE/PHYSICAL/FLAGS table; for an
    entry that is not present but not empty (a swap entry, PROT_NONE) the table alone."""
    last = walk.steps[-1]
    if walk.mapped:
        size = {1 << 30: "  (1GB)", 4 << 20: "  (4MB)", 2 << 20: "  (2MB)"}.get(walk.page_size, "")
        return [page_fmt.format(walk.phys & ~(walk.page_size - 1)) + size, ""] + translate_pte(kernel, last.raw)
    if last.raw and last.level.name == "pte":
        return [""] + translate_pte(kernel, last.raw)
    return []


def _walk_x86_64(kernel, walk: "Walk", root, pgd_va) -> list[str]:
    steps = walk.steps
    out = [f"PGD DIRECTORY: {_table_va(kernel, root, pgd_va):x}", f"PAGE DIRECTORY: {steps[0].raw:x}"]
    for step in steps[1:]:
        out.append(f"   {step.level.name.upper()}: {step.entry_addr:x} => {step.raw:x}")
    return out + _leaf_lines(kernel, walk, "  PAGE: {:x}")


def page_line(kernel: "Kernel", phys: int) -> list[str]:
    """Where crash prints the frame's ``struct page`` (dump_mem_map), mmemu prints its own
    frame record: the struct page address (vmemmap + pfn * 64 where the arch has a vmemmap,
    else the pfn), the physical address, the reference count and what the frame is."""
    pfn = phys >> 12
    info = kernel.frames.page(pfn)
    vmemmap = kernel.layout.symbols.get("VMEMMAP_START")
    page = f"{vmemmap + pfn * 64:x}" if vmemmap is not None else f"pfn:{pfn:x}"
    if info.state == "free":
        what = f"buddy (free block of order {info.order} at pfn {info.head:#x}, zone {info.zone})"
    elif info.state == "allocated":
        what = f"{info.owner or 'allocated'} (order {info.order} block at pfn {info.head:#x}, zone {info.zone})"
    elif info.state == "reserved":
        what = f"reserved: {info.owner}"
    else:
        what = "not RAM"
    w = max(len(page), 4)
    return [f"{'PAGE':>{w}}  {'PHYSICAL':>10}  CNT  FLAGS", f"{page:>{w}}  {phys & ~0xFFF:>10x}  {info.refcount:3d}  {what}"]
