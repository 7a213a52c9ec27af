"""The QEMU monitor's ``info tlb`` and ``info mem`` for x86 (qemu/qemu target/i386/monitor.c),
read from the page tables in RAM as QEMU reads them from guest memory, quirks included:

- ``info tlb`` prints one line a present leaf, ``TARGET_FMT_plx ": " TARGET_FMT_plx`` (16
  hex digits, the address canonicalised) and the flags X G P D A C T U W (``-`` when clear).
  The frame is the entry ANDed with a mask per mode: 2-level 4 MiB pages ``~((1 << 21) -
  1)`` and PAE 2 MiB pages ``~((1 << 20) - 1)`` (so bit 21, respectively bit 20, of a large
  entry shows, as in QEMU), 4-level ``0x3ffffc0000000`` / ``0x3ffffffe00000`` /
  ``0x3fffffffff000``; a 4 KiB entry is printed without its bit 7 (PAT there, not PSE).
- ``info mem`` merges the runs of equal ``U|W|P`` rights (leaf ANDed with the entries
  above it, except on 2-level and PAE, where large pages use the pde's rights alone) into
  ``start-end size`` lines with ``u``/``-``, ``r``, ``w``/``-``; the size is canonicalised
  like the addresses. There is no X: ``info mem`` does not show NX.

5-level paging: QEMU's ``mem_info_la57`` tests the pdpe and pde present bits inverted (it
prints nothing useful); here it walks as ``mem_info_la48`` does, one level more.
"""

from __future__ import annotations

import struct

P, RW, US, PWT, PCD, A, D, PSE, G = 1, 2, 4, 8, 16, 32, 64, 128, 256
NX = 1 << 63
ADDR = 0x3fffffffff000


def _canonical(addr: int, la57: bool) -> int:
    """addr_canonical: sign-extend from bit 47 (bit 56 with LA57)."""
    top = 56 if la57 else 47
    if addr & (1 << top):
        addr |= -(1 << (top + 1)) & ((1 << 64) - 1)
    return addr


def _table(mem, phys: int, n: int, size: int) -> tuple:
    return struct.unpack_from(f"<{n}{'I' if size == 4 else 'Q'}", mem.read(phys, n * size))


def _flags(pte: int) -> str:
    return "".join(c if pte & bit else "-" for c, bit in
                   (("X", NX), ("G", G), ("P", PSE), ("D", D), ("A", A), ("C", PCD), ("T", PWT), ("U", US), ("W", RW)))


def _leaves(kernel, root: int):
    """(address, entry, frame mask, the entries above ANDed as mem_info_* ANDs them (-1:
    none), size) of every present leaf, in address order, as monitor.c walks them."""
    mem, levels = kernel.mem, len(kernel.paging.levels)
    if not kernel.paging.bits64 and levels == 2:  # tlb_info_32 (CR4.PSE is set)
        for l1, pde in enumerate(_table(mem, root & ~0xFFF, 1024, 4)):
            if not pde & P:
                continue
            if pde & PSE:
                yield l1 << 22, pde, ~((1 << 21) - 1), -1, 1 << 22
                continue
            for l2, pte in enumerate(_table(mem, pde & ~0xFFF, 1024, 4)):
                if pte & P:
                    yield (l1 << 22) + (l2 << 12), pte & ~PSE, ~0xFFF, pde, 4096
        return
    if not kernel.paging.bits64:  # tlb_info_pae32
        for l1, pdpe in enumerate(_table(mem, root & ~0x1F, 4, 8)):
            if not pdpe & P:
                continue
            for l2, pde in enumerate(_table(mem, pdpe & ADDR, 512, 8)):
                if not pde & P:
                    continue
                if pde & PSE:
                    yield (l1 << 30) + (l2 << 21), pde, ~((1 << 20) - 1), -1, 1 << 21
                    continue
                for l3, pte in enumerate(_table(mem, pde & ADDR, 512, 8)):
                    if pte & P:
                        yield (l1 << 30) + (l2 << 21) + (l3 << 12), pte & ~PSE, ~0xFFF, pde, 4096
        return
    tops = [(0, root & ADDR, -1)] if levels == 4 else \
        [(l0, e & ADDR, e) for l0, e in enumerate(_table(mem, root & ADDR, 512, 8)) if e & P]
    for l0, pml4, pml5e in tops:  # tlb_info_la48 (under each pml5e: tlb_info_la57)
        for l1, pml4e in enumerate(_table(mem, pml4, 512, 8)):
            if not pml4e & P:
                continue
            for l2, pdpe in enumerate(_table(mem, pml4e & ADDR, 512, 8)):
                if not pdpe & P:
                    continue
                base = (l0 << 48) + (l1 << 39) + (l2 << 30)
                if pdpe & PSE:
                    yield base, pdpe, 0x3ffffc0000000, pml5e & pml4e, 1 << 30
                    continue
                for l3, pde in enumerate(_table(mem, pdpe & ADDR, 512, 8)):
                    if not pde & P:
                        continue
                    if pde & PSE:
                        yield base + (l3 << 21), pde, 0x3ffffffe00000, pml5e & pml4e & pdpe, 1 << 21
                        continue
                    for l4, pte in enumerate(_table(mem, pde & ADDR, 512, 8)):
                        if pte & P:
                            yield (base + (l3 << 21) + (l4 << 12), pte & ~PSE, ADDR, pml5e & pml4e & pdpe & pde,
                                   4096)


def info_tlb(kernel, root: int) -> str:
    """``info tlb`` with CR3 = *root*."""
    la57 = len(kernel.paging.levels) == 5
    return "".join(f"{_canonical(va, la57):016x}: {pte & mask & ((1 << 64) - 1):016x} {_flags(pte)}\n"
                   for va, pte, mask, _above, _size in _leaves(kernel, root))


def info_mem(kernel, root: int) -> str:
    """``info mem`` with CR3 = *root*: the runs of equal user/write rights."""
    levels = len(kernel.paging.levels)
    la57 = levels == 5
    out = []
    start, last = None, 0

    def mem_print(end: int, prot: int) -> None:
        nonlocal start, last
        if prot == last:
            return
        if start is not None:
            out.append(f"{_canonical(start, la57):016x}-{_canonical(end, la57):016x} "
                       f"{_canonical(end - start, la57):016x} {'u' if last & US else '-'}r{'w' if last & RW else '-'}\n")
        start = end if prot else None
        last = prot

    cursor = None
    for va, pte, _mask, above, size in _leaves(kernel, root):
        if cursor is not None and va != cursor:
            mem_print(cursor, 0)  # the slots between two leaves are not present: prot 0
        mem_print(va, pte & above & (US | RW | P))
        cursor = va + size
    if cursor is not None:
        mem_print(cursor, 0)
    mem_print(1 << (57 if la57 else 48 if kernel.paging.bits64 else 32), 0)  # "Flush last range"
    return "".join(out)
