"""x86_64 4-level and 5-level paging (arch/x86/include/asm/pgtable_64_types.h): 64-bit
entries, 512 per table at every level. PGDIR_SHIFT 39 (4-level) or 48 (5-level, with a
p4d level of shift 39 under it); PUD_SHIFT 30 (1 GiB pages with PS), PMD_SHIFT 21 (2 MiB
pages). With 4-level paging the p4d is folded into the pgd (asm-generic pgtable-nop4d.h).

Bits 51..MAXPHYADDR are reserved; bits 62..52 are ignored (available to software); PS is
reserved in PML4 and PML5 entries (SDM vol. 3, 4.5).
"""

from mmemu_x86.codec import X86Bits, X86Codec
from mmemu_x86.pgtable_types import _PAGE_NX, _PAGE_PSE, FLAG_NAMES_64, bits, entry_format, low_flags, x86_attrs

from mmemu.arch import SIGN_EXTENDED, EntryFormat, Level, PagingMode

PA_BITS = 40  # MAXPHYADDR of the emulated CPU (Unicorn's x86_64 model)
RESERVED = bits(PA_BITS, 51)
ADDR = bits(12, PA_BITS - 1)

_HIGH = [("nx", 1), ("avl_high", 11), ("reserved_high", 12)]
TABLE = entry_format(64, _HIGH + [("address", 28, 12)] + low_flags("pse"))
PUD_1G = entry_format(64, _HIGH + [("address", 10, 30), ("reserved", 17), ("pat", 1)] + low_flags("pse"))
PMD_2M = entry_format(64, _HIGH + [("address", 19, 21), ("reserved", 8), ("pat", 1)] + low_flags("pse"))
PTE = entry_format(64, _HIGH + [("address", 28, 12)] + low_flags("pat"))

_TABLE_FMT = EntryFormat(TABLE, x86_attrs("pse", True))


def _top(name: str, shift: int, folds: tuple[str, ...] = ()) -> Level:
    """A PML5/PML4 entry: always points to a table; PS is reserved."""
    return Level(name, shift=shift, bits=9, entry_size=8, table=_TABLE_FMT, folds=folds)


_PUD = Level("pud", shift=30, bits=9, entry_size=8, table=_TABLE_FMT,
             leaf=EntryFormat(PUD_1G, x86_attrs("pse", True, pat_large=True)))
_PMD = Level("pmd", shift=21, bits=9, entry_size=8, table=_TABLE_FMT,
             leaf=EntryFormat(PMD_2M, x86_attrs("pse", True, pat_large=True)))
_PTE = Level("pte", shift=12, bits=9, entry_size=8, leaf=EntryFormat(PTE, x86_attrs("pat", True)))

_TOP_BITS = X86Bits(addr_mask=ADDR, reserved=RESERVED | _PAGE_PSE)
_PUD_BITS = X86Bits(addr_mask=ADDR, large_addr_mask=bits(30, PA_BITS - 1), reserved=RESERVED,
                    large_reserved=RESERVED | bits(13, 29))
_PMD_BITS = X86Bits(addr_mask=ADDR, large_addr_mask=bits(21, PA_BITS - 1), reserved=RESERVED,
                    large_reserved=RESERVED | bits(13, 20))
_PTE_BITS = X86Bits(addr_mask=ADDR, reserved=RESERVED)

PAGING_4LEVEL = PagingMode(name="4-level", levels=(_top("pgd", 39, folds=("p4d",)), _PUD, _PMD, _PTE),
                           va_bits=48, pa_bits=PA_BITS, form=SIGN_EXTENDED,
                           codec=X86Codec((_TOP_BITS, _PUD_BITS, _PMD_BITS, _PTE_BITS), _PAGE_NX, FLAG_NAMES_64))
PAGING_5LEVEL = PagingMode(name="5-level", levels=(_top("pgd", 48), _top("p4d", 39), _PUD, _PMD, _PTE),
                           va_bits=57, pa_bits=PA_BITS, form=SIGN_EXTENDED,
                           codec=X86Codec((_TOP_BITS, _TOP_BITS, _PUD_BITS, _PMD_BITS, _PTE_BITS), _PAGE_NX,
                                          FLAG_NAMES_64))
