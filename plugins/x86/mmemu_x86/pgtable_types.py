"""What every x86 paging mode shares: the flag bits, the kernel's named protections, and a
way to write an entry format as a construct struct.

Values from arch/x86/include/asm/pgtable_types.h (the ``_PAGE_BIT_*`` numbers have not
changed since i386 got PAE; NX exists only in 64-bit entries, i.e. PAE and long mode).
"""

from __future__ import annotations

from mmemu.arch import entry_struct

_PAGE_PRESENT = 1 << 0
_PAGE_RW = 1 << 1
_PAGE_USER = 1 << 2
_PAGE_PWT = 1 << 3
_PAGE_PCD = 1 << 4
_PAGE_ACCESSED = 1 << 5
_PAGE_DIRTY = 1 << 6
_PAGE_PSE = 1 << 7  # in a PTE this bit is PAT
_PAGE_GLOBAL = 1 << 8
_PAGE_PAT_LARGE = 1 << 12
_PAGE_NX = 1 << 63
#: _PAGE_BIT_PROTNONE = _PAGE_BIT_GLOBAL: only meaningful when _PAGE_PRESENT is clear
_PAGE_PROTNONE = _PAGE_GLOBAL
#: _PAGE_BIT_SPECIAL = _PAGE_BIT_SOFTW1 (bit 9), x86's pte_special() since 2.6.26 ("x86:
#: implement pte_special"); the zero page's user ptes carry it (mm/memory.c do_anonymous_page)
_PAGE_SPECIAL = 1 << 9

#: flag names in the order crash's x86_translate_pte / x86_64_translate_pte prints them
FLAG_NAMES_32 = (("PRESENT", _PAGE_PRESENT), ("RW", _PAGE_RW), ("USER", _PAGE_USER), ("PWT", _PAGE_PWT),
                 ("PCD", _PAGE_PCD), ("ACCESSED", _PAGE_ACCESSED), ("DIRTY", _PAGE_DIRTY), ("PSE", _PAGE_PSE),
                 ("GLOBAL", _PAGE_GLOBAL))
FLAG_NAMES_64 = FLAG_NAMES_32 + (("NX", _PAGE_NX),)

# Table entries (arch/x86/include/asm/pgtable_types.h)
_KERNPG_TABLE = _PAGE_PRESENT | _PAGE_RW | _PAGE_ACCESSED | _PAGE_DIRTY
_PAGE_TABLE = _KERNPG_TABLE | _PAGE_USER


def pgprots(nx: int) -> dict[str, int]:
    """The kernel's named protections (``PAGE_KERNEL`` & co), with *nx* the NX bit of the
    mode (0 without NX: the 2-level i386 entries have none, and the kernel's
    ``__supported_pte_mask`` drops it)."""
    kernel_exec = _PAGE_PRESENT | _PAGE_RW | _PAGE_DIRTY | _PAGE_ACCESSED | _PAGE_GLOBAL
    kernel = kernel_exec | nx
    user = _PAGE_PRESENT | _PAGE_USER | _PAGE_ACCESSED
    return {
        "PAGE_NONE": _PAGE_PROTNONE | _PAGE_ACCESSED,  # not present for the CPU, pte_present() for the kernel
        "PAGE_KERNEL": kernel,
        "PAGE_KERNEL_RO": kernel & ~_PAGE_RW,
        "PAGE_KERNEL_EXEC": kernel_exec,
        "PAGE_KERNEL_RX": kernel_exec & ~_PAGE_RW,
        "PAGE_KERNEL_NOCACHE": kernel | _PAGE_PCD | _PAGE_PWT,
        "PAGE_SHARED": user | _PAGE_RW | nx,
        "PAGE_SHARED_EXEC": user | _PAGE_RW,
        "PAGE_COPY": user | nx,
        "PAGE_COPY_EXEC": user,
        "PAGE_READONLY": user | nx,
        "PAGE_READONLY_EXEC": user,
        "_KERNPG_TABLE": _KERNPG_TABLE,
        "_PAGE_TABLE": _PAGE_TABLE,
    }


def entry_format(bits: int, fields: list[tuple]):
    """A little-endian entry of *bits* bits as a construct struct (:func:`mmemu.arch.entry_struct`),
    *fields* from the most significant bit down, as the SDM's figures draw them."""
    return entry_struct(bits, fields)


# The low twelve bits, shared by every x86 entry; bit 7 is PS in a directory entry and PAT
# in a PTE, bit 8 (global) is ignored in directory entries that point to a table.
def low_flags(bit7: str) -> list[tuple]:
    """The fields of bits 11..0, most significant first; bit 7 named *bit7* (pse or pat)."""
    return [("avl", 3), ("global", 1), (bit7, 1), ("dirty", 1), ("accessed", 1), ("pcd", 1), ("pwt", 1),
            ("user", 1), ("rw", 1), ("present", 1)]


def bits(lo: int, hi: int) -> int:
    """Mask of bits lo..hi inclusive."""
    return ((1 << (hi + 1)) - 1) & ~((1 << lo) - 1)


def x86_attrs(bit7: str, nx: bool, pat_large: bool = False) -> dict[str, str]:
    """The attribute -> field mapping of an x86 entry format (mmemu.arch.EntryFormat):
    *bit7* is the name of bit 7's field, *nx* whether the format has an NX field the mode
    uses, *pat_large* whether the format is a large page's (PAT in bit 12)."""
    attrs = {"valid": "present", "write": "rw", "user": "user", "global": "global", "accessed": "accessed",
             "dirty": "dirty", "pwt": "pwt", "pcd": "pcd", bit7: bit7}
    if pat_large:
        attrs["pat"] = "pat"
    if nx:
        attrs["exec"] = "!nx"
    return attrs
