"""i386 PAE paging (arch/x86/include/asm/pgtable-3level_types.h): 64-bit entries; a
4-entry page-directory-pointer table (the pgd, PGDIR_SHIFT 30; p4d and pud folded into it,
asm-generic pgtable-nopud.h), page directories of 512 entries (PMD_SHIFT 21, 2 MiB pages
with PS) and page tables of 512 PTEs. NX in bit 63 (with EFER.NXE).

A PDPT entry carries only P (and the cache bits): its RW/US/A/D/PS bits are reserved and
it takes no part in access control (SDM vol. 3, 4.4.1).
"""

from mmemu.arch import Level, PagingMode
from mmemu_x86.pgtable_types import (FLAG_NAMES_64, _KERNPG_TABLE, _PAGE_ACCESSED, _PAGE_DIRTY, _PAGE_GLOBAL,
                                     _PAGE_NX, _PAGE_PAT_LARGE, _PAGE_PRESENT, _PAGE_PSE, _PAGE_RW, _PAGE_TABLE, _PAGE_USER, bits,
                                     entry_format, low_flags)

PA_BITS = 40  # MAXPHYADDR of the emulated CPU (Unicorn's x86 model): bits 62..40 are reserved

PGD_PDPTE = entry_format(64, [("reserved_nx", 1), ("reserved_high", 23), ("address", 28, 12), ("avl", 3),
                              ("reserved_8_5", 4), ("pcd", 1), ("pwt", 1), ("reserved_2_1", 2), ("present", 1)])
PMD_TABLE = entry_format(64, [("nx", 1), ("reserved_high", 23), ("address", 28, 12)] + low_flags("pse"))
PMD_2M = entry_format(64, [("nx", 1), ("reserved_high", 23), ("address", 19, 21), ("reserved", 8), ("pat", 1)]
                      + low_flags("pse"))
PTE = entry_format(64, [("nx", 1), ("reserved_high", 23), ("address", 28, 12)] + low_flags("pat"))

PAGING_PAE = PagingMode(
    name="PAE",
    levels=(
        Level("pgd", shift=30, bits=2, entry_size=8, format=PGD_PDPTE, folds=("p4d", "pud"), access_bits=False,
              addr_mask=bits(12, PA_BITS - 1), reserved=bits(PA_BITS, 63) | bits(5, 8) | bits(1, 2),
              table_flags_kernel=_PAGE_PRESENT, table_flags_user=_PAGE_PRESENT),
        Level("pmd", shift=21, bits=9, entry_size=8, format=PMD_TABLE, large_format=PMD_2M,
              addr_mask=bits(12, PA_BITS - 1), large_addr_mask=bits(21, PA_BITS - 1),
              reserved=bits(PA_BITS, 62), large_reserved=bits(PA_BITS, 62) | bits(13, 20),
              table_flags_kernel=_KERNPG_TABLE, table_flags_user=_PAGE_TABLE),
        Level("pte", shift=12, bits=9, entry_size=8, format=PTE, addr_mask=bits(12, PA_BITS - 1),
              reserved=bits(PA_BITS, 62)),
    ),
    va_bits=32,
    pa_bits=PA_BITS,
    present=_PAGE_PRESENT, write=_PAGE_RW, user=_PAGE_USER, accessed=_PAGE_ACCESSED, dirty=_PAGE_DIRTY,
    large=_PAGE_PSE, global_=_PAGE_GLOBAL, nx=_PAGE_NX,
    flags=FLAG_NAMES_64, pat=_PAGE_PSE, pat_large=_PAGE_PAT_LARGE,
)
