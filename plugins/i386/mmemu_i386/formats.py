"""i386 2-level paging (arch/x86/include/asm/pgtable-2level_types.h): 32-bit entries, a
page directory of 1024 entries each covering 4 MiB (PGDIR_SHIFT 22) and page tables of
1024 PTEs. The pmd, pud and p4d levels are folded into the pgd (asm-generic
pgtable-nopmd.h). With CR4.PSE a directory entry can map a 4 MiB page. No NX bit.
"""

from mmemu_x86.codec import X86Bits, X86Codec
from mmemu_x86.pgtable_types import FLAG_NAMES_32, bits, entry_format, low_flags, x86_attrs

from mmemu.arch import EntryFormat, Level, PagingMode

PGD_TABLE = entry_format(32, [("address", 20, 12)] + low_flags("pse"))
# A 4 MiB page: bits 31..22 address it. Bits 20..13 would carry physical address bits
# 39..32 with PSE-36; mmemu's i386 machines have no RAM above 4 GiB and the kernel never
# sets them, so the walker treats them as must-be-zero (as it does bit 21).
PGD_4M = entry_format(32, [("address", 10, 22), ("reserved", 1), ("pse36_high", 8), ("pat", 1)] + low_flags("pse"))
PTE = entry_format(32, [("address", 20, 12)] + low_flags("pat"))

CODEC = X86Codec(
    (X86Bits(addr_mask=bits(12, 31), large_addr_mask=bits(22, 31), reserved=0, large_reserved=bits(13, 21)),
     X86Bits(addr_mask=bits(12, 31))),
    nx=0, flag_names=FLAG_NAMES_32)

PAGING_2LEVEL = PagingMode(
    name="2-level",
    levels=(
        Level("pgd", shift=22, bits=10, entry_size=4, table=EntryFormat(PGD_TABLE, x86_attrs("pse", False)),
              leaf=EntryFormat(PGD_4M, x86_attrs("pse", False, pat_large=True)), folds=("p4d", "pud", "pmd")),
        Level("pte", shift=12, bits=10, entry_size=4, leaf=EntryFormat(PTE, x86_attrs("pat", False))),
    ),
    va_bits=32,
    pa_bits=32,
    codec=CODEC,
)
