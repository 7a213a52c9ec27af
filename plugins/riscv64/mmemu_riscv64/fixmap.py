"""``enum fixed_addresses`` of arch/riscv/include/asm/fixmap.h, per era.

The slots count down from FIXADDR_TOP (asm-generic/fixmap.h: ``__fix_to_virt(x) =
FIXADDR_TOP - (x << PAGE_SHIFT)``); FIX_HOLE, index 0, is never mapped (__set_fixmap:
``BUG_ON(idx <= FIX_HOLE || idx >= __end_of_fixed_addresses)``), so on riscv, where
FIXADDR_TOP is the first byte *after* the area (PCI_IO_START, or VMALLOC_START before 5.4),
every slot lies below FIXADDR_TOP.

The eras (the enum as read in each file; the releases as the sources in eras.py say):

=====  ==========================================================================================
5.2    FIX_HOLE, FIX_FDT_END, FIX_FDT = FIX_FDT_END + FIX_FDT_SIZE / PAGE_SIZE - 1 (FIX_FDT_SIZE
       SZ_1M), FIX_PTE, FIX_PMD, FIX_EARLYCON_MEM_BASE, __end_of_fixed_addresses (fixmap.h at
       its first version, read).
5.7    FIX_TEXT_POKE1, FIX_TEXT_POKE0 after FIX_PMD ('riscv: add support for fixmap text poke',
       Zong Li, patch read; release 5.7 from recollection).
5.10   the FDT leaves the fixmap ('RISC-V: Move DT mapping outof fixmap') and early_ioremap's
       slots come in: FIX_HOLE, FIX_PTE, FIX_PMD, FIX_TEXT_POKE1, FIX_TEXT_POKE0,
       FIX_EARLYCON_MEM_BASE, __end_of_permanent_fixed_addresses, FIX_BTMAP_END =
       __end_of_permanent_fixed_addresses, FIX_BTMAP_BEGIN = FIX_BTMAP_END + TOTAL_FIX_BTMAPS -
       1 with NR_FIX_BTMAPS (SZ_256K / PAGE_SIZE) and FIX_BTMAPS_SLOTS 7 (fixmap.h of 5.10-5.16,
       read). The 5.10 release is from recollection (the EFI stub series).
5.17   FIX_PUD and FIX_P4D after FIX_PMD (sv48 series; read in the 6.x enum).
6.4    the FDT back in, before FIX_PTE, now FIX_FDT_SIZE (MAX_FDT_SIZE + SZ_2M) with
       MAX_FDT_SIZE PMD_SIZE: 4 MiB, two PMD leaves of fixmap_pmd ('riscv: Move early dtb mapping
       into the fixmap region'; the 6.x enum read).
=====  ==========================================================================================

Before 5.2 riscv has no fixmap: the enum is empty.
"""

from __future__ import annotations

from mmemu.units import KernelVersion, MiB

PAGE_SIZE = 4096
NR_FIX_BTMAPS = (256 * 1024) // PAGE_SIZE  # SZ_256K / PAGE_SIZE
FIX_BTMAPS_SLOTS = 7
TOTAL_FIX_BTMAPS = NR_FIX_BTMAPS * FIX_BTMAPS_SLOTS


def fixmap_enum(kernel: KernelVersion) -> list[tuple[str, int]]:
    """(name, index) pairs in enum order, ``__end_of_fixed_addresses`` included."""
    k = kernel
    if k < "5.2":
        return []
    out: list[tuple[str, int]] = []
    idx = 0

    def add(name: str, value: int | None = None) -> int:
        nonlocal idx
        if value is not None:
            idx = value
        out.append((name, idx))
        idx += 1
        return idx - 1

    add("FIX_HOLE")
    if k < "5.10":
        # fixmap.h (5.2): '#define FIX_FDT_SIZE SZ_1M'
        fdt_end = add("FIX_FDT_END")
        add("FIX_FDT", fdt_end + (1 * MiB) // PAGE_SIZE - 1)
    elif k >= "6.4":
        # fixmap.h (6.4+): FIX_FDT_SIZE (MAX_FDT_SIZE + SZ_2M), MAX_FDT_SIZE PMD_SIZE (pgtable.h)
        fdt_end = add("FIX_FDT_END")
        add("FIX_FDT", fdt_end + (2 * MiB + 2 * MiB) // PAGE_SIZE - 1)
    add("FIX_PTE")
    add("FIX_PMD")
    if k >= "5.17":
        add("FIX_PUD")
        add("FIX_P4D")
    if k >= "5.7":
        add("FIX_TEXT_POKE1")
        add("FIX_TEXT_POKE0")
    add("FIX_EARLYCON_MEM_BASE")
    if k >= "5.10":
        end_perm = add("__end_of_permanent_fixed_addresses")
        out.append(("FIX_BTMAP_END", end_perm))
        add("FIX_BTMAP_BEGIN", end_perm + TOTAL_FIX_BTMAPS - 1)
    add("__end_of_fixed_addresses")
    return out
