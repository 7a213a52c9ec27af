"""How long user page tables and pages live, as the kernel decides it: which page tables an
unmapping frees, what fork copies, and the object behind shared anonymous memory.

``free_pgtables``/``free_pgd_range`` (mm/memory.c): after munmap has zapped the ptes of the
detached VMAs, page tables are freed only inside the *floor* (the previous VMA's end) and
the *ceiling* (the next VMA's start): a table that still covers part of a neighbouring
VMA's range stays, even when it maps nothing. The code has been the same from 2.6.12 (Hugh
Dickins' "freeing page tables" rework) to 6.x, read in mm/memory.c of torvalds/linux (a 3.x
copy: free_pte_range, free_pmd_range, free_pud_range, free_pgd_range, free_pgtables). The
kernel's levels that mmemu's paging modes fold away (p4d and pud of 2- and 3-level x86, p4d
of 4-level) free nothing there (pgtable-nopud.h ``pud_free_tlb`` and ``pgd_clear`` are
empty), so the walk over the mode's own levels is the kernel's.

``copy_page_range`` (mm/memory.c): fork copies the ptes of a VMA only when a fault could
not fill them again: a private VMA with an ``anon_vma`` (a page of its own was ever
allocated there: do_anonymous_page and do_wp_page call ``anon_vma_prepare``; a read fault
that maps the zero page does not). 2.6.12 says "Don't copy ptes where a page fault will fill
them correctly" and tests ``!vma->anon_vma``; 6.x ``vma_needs_copy`` the same. Shared
anonymous memory is a shmem file (mm/shmem.c ``shmem_zero_setup``: "dev/zero"), so it has
no anon_vma and is never copied: the child's fault finds the page in the object.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from ..arch import TABLE
from ..errors import MmemuError
from ..units import PAGE_SHIFT

_shm_ids = itertools.count(1)
_anon_ids = itertools.count(1)


def new_anon_vma() -> int:
    """``anon_vma_prepare``: a new anon_vma (an identity: VMAs sharing one may merge)."""
    return next(_anon_ids)


@dataclass(eq=False)
class ShmemObject:
    """The shmem file behind a ``MAP_SHARED | MAP_ANONYMOUS`` mapping (shmem_zero_setup):
    its pages by page offset, each holding a reference of its own (the page cache's),
    dropped when no VMA maps the object any more (the file's last fput)."""

    size: int  # bytes (the mapping's length at mmap time)
    pages: dict[int, int] = field(default_factory=dict)  # pgoff -> pfn
    ino: int = field(default_factory=lambda: next(_shm_ids))


def free_pgd_range(k, proc, addr: int, end: int, floor: int, ceiling: int) -> int:
    """mm/memory.c ``free_pgd_range``: free the page tables of *proc* below the pgd that lie
    in [addr, end), none of whose range reaches below *floor* or above *ceiling* (0: the top
    of the address space). Returns how many tables were freed."""
    levels = k.paging.levels
    last = len(levels) - 1
    if last < 1:
        return 0
    top = 1 << (64 if k.paging.bits64 else 32)  # unsigned long: 0 - 1 is the top
    pmd = levels[last - 1].span  # PMD_SIZE: what one page table covers
    addr &= ~(pmd - 1)
    if addr < floor:
        addr += pmd
        if addr % top == 0:
            return 0
    if ceiling:
        ceiling &= ~(pmd - 1)
        if not ceiling:
            return 0
    if (end - 1) % top > (ceiling - 1) % top:
        end -= pmd
    if addr > (end - 1) % top:
        return 0
    return _free_level(k, proc, proc.pgd, 0, addr, end, floor, ceiling, top, last)


def _free_level(k, proc, table: int, li: int, addr: int, end: int, floor: int, ceiling: int, top: int,
                last: int) -> int:
    """The loop of free_p?d_range over the entries of *table* (level *li*) in [addr, end):
    a page table below is freed outright (free_pte_range), a higher one after its own walk
    when it lies inside floor and ceiling (the tail of free_pmd_range/free_pud_range)."""
    pt = k.pgtable
    lv = k.paging.levels[li]
    span = lv.span
    freed = 0
    row = pt.entries(table, li)
    while addr < end:
        nxt = min((addr | (span - 1)) + 1, end)  # p?d_addr_end
        idx = (addr >> lv.shift) & (lv.entries - 1)
        raw = row[idx]
        if raw:
            kind, child, _ = pt.decode(li, raw)
            if kind != TABLE:
                raise MmemuError(f"free_pgtables: a leaf at level {lv.name} of a user range ({raw:#x})")
            if li + 1 == last:
                freed += _free_table(k, proc, table, li, idx, child, addr & ~(span - 1))
            else:
                freed += _free_level(k, proc, child, li + 1, addr, nxt, floor, ceiling, top, last)
                # the tail of free_pmd_range (free_pud_range...): the table below this entry
                # goes when nothing outside [floor, ceiling) can still need it
                start = addr & ~(span - 1)
                ceil = ceiling
                if start >= floor and not (ceil and not ceil & ~(span - 1)):
                    ceil = ceil & ~(span - 1) if ceil else 0
                    if (nxt - 1) % top <= (ceil - 1) % top and not pt.tables[child].pinned:
                        freed += _free_table(k, proc, table, li, idx, child, start)
        addr = nxt
    return freed


def _free_table(k, proc, parent: int, li: int, idx: int, child: int, va: int) -> int:
    """``p?d_clear`` of the parent's entry, then ``p?d_free_tlb`` of the table: it must map
    nothing any more (the VMAs over it are gone and their ptes zapped)."""
    pt = k.pgtable
    child_li = li + 1
    if any(pt.entries(child, child_li)):
        raise MmemuError(f"free_pgtables: the {k.paging.levels[child_li].name} table at {child:#x} still maps "
                         f"something (process {proc.pid})")
    pt.set_entry(parent, li, idx, 0, writer="free_pgtables", va=va, kind="free_pgtables")
    pt.forget_table(child)
    k.frames.free_pages(child >> PAGE_SHIFT)
    if child in proc.pmds:  # a PAE pmd pgd_alloc preallocated: gone with the range
        k.journal.set(proc, "pmds", [p for p in proc.pmds if p != child])
    return 1


def free_pgtables(k, proc, detached: list[tuple[int, int]], floor: int, ceiling: int) -> int:
    """mm/memory.c ``free_pgtables`` over the detached VMAs' ranges (address order): runs of
    VMAs less than PMD_SIZE apart go down together ("gather nearby vmas into one call
    down"), each up to the next detached VMA's start or, for the last, *ceiling*; the floor
    stays the previous VMA's end for all of them, as in the kernel."""
    pmd = k.paging.levels[-2].span if len(k.paging.levels) > 1 else 0
    freed = 0
    i = 0
    while i < len(detached):
        start, end = detached[i]
        while i + 1 < len(detached) and detached[i + 1][0] <= end + pmd:
            i += 1
            end = detached[i][1]
        nxt_ceiling = detached[i + 1][0] if i + 1 < len(detached) else ceiling
        freed += free_pgd_range(k, proc, start, end, floor, nxt_ceiling)
        i += 1
    return freed


def live_shmem(k) -> list[ShmemObject]:
    """The shmem objects some VMA of a live process maps, each once."""
    seen: dict[int, ShmemObject] = {}
    for proc in k.processes.values():
        for v in proc.vmas:
            if v.shm is not None:
                seen.setdefault(id(v.shm), v.shm)
    return list(seen.values())


def release_shmem(k, objs) -> None:
    """The last ``fput`` of a shmem file (shmem_evict_inode, truncating its page cache): the
    pages of each of *objs* that no VMA of any process maps any more lose the object's
    reference (a pte that still maps one keeps it: no such pte outlives its VMA)."""
    live = {id(o) for o in live_shmem(k)}
    for obj in {id(o): o for o in objs if o is not None}.values():
        if id(obj) in live or not obj.pages:
            continue
        k.frames.free_pages_many(list(obj.pages.values()))
        k.journal.set(obj, "pages", {})
