"""i386 PAE paging (arch/x86/include/asm/pgtable-3level_types.h): 64-bit entries; a
4-entry page-directory-pointer table (the pgd, PGDIR_SHIFT 30; p4d and pud folded into it,
asm-generic pgtable-nopud.h), page directories of 512 entries (PMD_SHIFT 21, 2 MiB pages
with PS) and page tables of 512 PTEs. NX in bit 63 (with EFER.NXE).

A PDPT entry carries only P (and the cache bits): its RW/US/A/D/PS bits are reserved and
it takes no part in access control (SDM vol. 3, 4.4.1).
"""

from mmemu_x86.codec import X86Bits, X86Codec
from mmemu_x86.pgtable_types import _PAGE_NX, _PAGE_PRESENT, FLAG_NAMES_64, bits, entry_format, low_flags, x86_attrs

from mmemu.arch import EntryFormat, Level, PagingMode

PA_BITS = 40  # MAXPHYADDR of the emulated CPU (Unicorn's x86 model): bits 62..40 are reserved

PGD_PDPTE = entry_format(64, [("reserved_nx", 1), ("reserved_high", 23), ("address", 28, 12), ("avl", 3),
                              ("reserved_8_5", 4), ("pcd", 1), ("pwt", 1), ("reserved_2_1", 2), ("present", 1)])
PMD_TABLE = entry_format(64, [("nx", 1), ("reserved_high", 23), ("address", 28, 12)] + low_flags("pse"))
PMD_2M = entry_format(64, [("nx", 1), ("reserved_high", 23), ("address", 19, 21), ("reserved", 8), ("pat", 1)]
                      + low_flags("pse"))
PTE = entry_format(64, [("nx", 1), ("reserved_high", 23), ("address", 28, 12)] + low_flags("pat"))

ADDR = bits(12, PA_BITS - 1)
CODEC = X86Codec(
    (X86Bits(addr_mask=ADDR, reserved=bits(PA_BITS, 63) | bits(5, 8) | bits(1, 2), access_bits=False,
             table_kernel=_PAGE_PRESENT, table_user=_PAGE_PRESENT),
     X86Bits(addr_mask=ADDR, large_addr_mask=bits(21, PA_BITS - 1), reserved=bits(PA_BITS, 62),
             large_reserved=bits(PA_BITS, 62) | bits(13, 20)),
     X86Bits(addr_mask=ADDR, reserved=bits(PA_BITS, 62))),
    nx=_PAGE_NX, flag_names=FLAG_NAMES_64)

PAGING_PAE = PagingMode(
    name="PAE",
    levels=(
        Level("pgd", shift=30, bits=2, entry_size=8,
              table=EntryFormat(PGD_PDPTE, {"valid": "present", "pwt": "pwt", "pcd": "pcd"}), folds=("p4d", "pud")),
        Level("pmd", shift=21, bits=9, entry_size=8, table=EntryFormat(PMD_TABLE, x86_attrs("pse", True)),
              leaf=EntryFormat(PMD_2M, x86_attrs("pse", True, pat_large=True))),
        Level("pte", shift=12, bits=9, entry_size=8, leaf=EntryFormat(PTE, x86_attrs("pat", True))),
    ),
    va_bits=32,
    pa_bits=PA_BITS,
    codec=CODEC,
)
