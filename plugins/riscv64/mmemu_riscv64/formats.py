"""Sv39, Sv48 and Sv57: the entry formats (construct structs, the specification) and the
codec the engine runs on (plain integers).

RISC-V privileged specification, "Sv39/Sv48/Sv57: Page-Based Virtual-Memory Systems": every
level holds 512 eight-byte PTEs; a PTE with V=1 and R=W=X=0 points to the next level, any
other valid PTE is a leaf, at any level (Sv39: 1 GiB gigapages, 2 MiB megapages, 4 KiB
pages; Sv48 adds 512 GiB terapages; Sv57 256 TiB petapages). The walk raises a page fault
(scause 12 instruction, 13 load, 15 store/AMO) when:

- V=0, or R=0 and W=1 (reserved, with or without X);
- the last level holds a pointer (V=1, R=W=X=0);
- a superpage's PPN is not aligned to its size ("misaligned superpage");
- a reserved bit is set: bits 63..54 (spec 1.12; Svpbmt and Svnapot, which would give bits
  62..61 and 63 a meaning, are not implemented by the emulated CPU);
- the rights do not allow the access.

The rights modelled are Linux's: SUM=0 (the kernel sets SUM only inside uaccess routines)
and MXR=0, so a U=1 page gives user rights only and a U=0 page supervisor rights only, each
R, W, X as the bits say (no read from an execute-only page). A and D need not be set: the
emulated CPU sets them itself (QEMU's get_physical_address updates the PTE, see
/work/shared/unicorn-riscv-arm64 A3), so they never fault.

Unicorn 2.1.4 (QEMU 5.0's target/riscv) differs in one corner: it does not check bits
63..54, it shifts them into the physical address (``ppn = pte >> PTE_PPN_SHIFT``), which
then lies above the 56-bit physical space. The kernel never sets those bits on this CPU.

Level names follow the kernel: Sv39 is pgd (folding p4d and pud) / pmd / pte (4.15-5.16:
asm-generic pgtable-nopud.h; 5.17+: p4d and pud folded at run time, pgtable_l4_enabled
false); Sv48 pgd (folding p4d) / pud / pmd / pte; Sv57 pgd / p4d / pud / pmd / pte.
"""

from __future__ import annotations


from mmemu.arch import (ALL_RIGHTS, KR, KW, KX, LEAF, NONE, RESERVED, SIGN_EXTENDED, TABLE, UR, UW, UX, EntryCodec,
                        EntryFormat, EntryView, Level, PagingMode)
from mmemu.arch import entry_struct as _entry_struct
from mmemu.errors import MappingError

from .pgtable_bits import (_PAGE_ACCESSED, _PAGE_CHG_MASK, _PAGE_DIRTY, _PAGE_EXEC, _PAGE_GLOBAL, _PAGE_IO_SVPBMT,
                           _PAGE_NAPOT, _PAGE_NOCACHE_SVPBMT, _PAGE_PFN_MASK, _PAGE_PFN_SHIFT, _PAGE_PRESENT,
                           _PAGE_READ, _PAGE_RESERVED_HIGH, _PAGE_SOFT, _PAGE_TABLE, _PAGE_USER, _PAGE_WRITE,
                           CRASH_FLAGS, PPN_BITS)
from .pgtable_bits import _PAGE_SPECIAL

#: QEMU target/riscv/cpu-param.h (riscv64): TARGET_PHYS_ADDR_SPACE_BITS 56 ("44-bit PPN"; from
#: recollection), which is also what a 44-bit PPN of 4 KiB pages spans
PA_BITS = 56
PAGE_SHIFT = 12

# ---- the construct structs --------------------------------------------------------------

#: the fields of a PTE from bit 63 down, as the privileged spec draws them (Figure "Sv39
#: page table entry"): N, PBMT, reserved, PPN, RSW, D A G U X W R V. One layout for pointers
#: and leaves; in a pointer D, A and U are reserved for future use and the RSW bits free.
_FIELDS = (("napot", 1), ("pbmt_io", 1), ("pbmt_nc", 1), ("reserved", 7), ("address", PPN_BITS, PAGE_SHIFT),
           ("rsw9", 1), ("rsw8", 1), ("dirty", 1), ("accessed", 1), ("global", 1), ("user", 1), ("exec", 1),
           ("write", 1), ("read", 1), ("valid", 1))


def entry_struct(fields=_FIELDS):
    """A little-endian 64-bit PTE as a construct struct (:func:`mmemu.arch.entry_struct`).
    ``address`` parses to the physical address its PPN encodes (PPN << 12)."""
    return _entry_struct(64, fields)


PTE_STRUCT = entry_struct()

#: attribute -> field: the neutral attributes, then the extras (``soft`` is crash's SOFT,
#: the kernel's _PAGE_SOFT/_PAGE_SPECIAL, bit 8; napot and pbmt are 6.x's Svnapot/Svpbmt bits)
ATTRS = {"valid": "valid", "read": "read", "write": "write", "exec": "exec", "user": "user", "global": "global",
         "accessed": "accessed", "dirty": "dirty", "soft": "rsw8", "napot": "napot", "pbmt_io": "pbmt_io",
         "pbmt_nc": "pbmt_nc"}

#: the table format and the leaf format are the same bits: one struct, read two ways
TABLE_FORMAT = EntryFormat(PTE_STRUCT, ATTRS)
LEAF_FORMAT = EntryFormat(PTE_STRUCT, ATTRS)

_ATTR_BITS = (("valid", _PAGE_PRESENT), ("read", _PAGE_READ), ("write", _PAGE_WRITE), ("exec", _PAGE_EXEC),
              ("user", _PAGE_USER), ("global", _PAGE_GLOBAL), ("accessed", _PAGE_ACCESSED), ("dirty", _PAGE_DIRTY),
              ("soft", _PAGE_SOFT), ("napot", _PAGE_NAPOT), ("pbmt_io", _PAGE_IO_SVPBMT),
              ("pbmt_nc", _PAGE_NOCACHE_SVPBMT))


def _rights_table() -> tuple[int, ...]:
    """Rights of a valid leaf by (R, W, X, U) = bits 1..4 of the PTE, with SUM=0 and MXR=0."""
    out = []
    for i in range(16):
        r, w, x, u = i & 1, i & 2, i & 4, i & 8
        if u:
            out.append((UR if r else 0) | (UW if w else 0) | (UX if x else 0))
        else:
            out.append((KR if r else 0) | (KW if w else 0) | (KX if x else 0))
    return tuple(out)


_RIGHTS = _rights_table()
_NONE = (NONE, 0, 0)
_RESERVED = (RESERVED, 0, 0)


#: scause of a page fault by access (fault_code)
_SCAUSE = {"exec": 12, "read": 13, "write": 15}


class RiscvCodec(EntryCodec):
    """The codec of one Sv mode; *prot_none* is the era's ``_PAGE_PROT_NONE`` bit (what
    ``pte_present()`` counts besides V: _PAGE_READ until 5.16, _PAGE_GLOBAL from 5.17)."""

    def __init__(self, nlevels: int, prot_none: int):
        self.nlevels = nlevels
        self.prot_none = prot_none
        self._last = nlevels - 1
        self._decoders = {}

    # -- the hot path ---------------------------------------------------------------------

    def decoder(self, li: int):
        dec = self._decoders.get(li)
        if dec is not None:
            return dec
        last = li == self._last
        shift = PAGE_SHIFT + 9 * (self._last - li)
        # a superpage's PPN[i] below its level must be zero: bits 10 .. 10+(shift-12)-1
        misaligned = ((1 << (shift - PAGE_SHIFT)) - 1) << _PAGE_PFN_SHIFT
        ppn = _PAGE_PFN_MASK
        high = _PAGE_RESERVED_HIGH
        rights = _RIGHTS
        none, reserved = _NONE, _RESERVED

        if last:
            def decode(raw: int):
                if not raw & 1:
                    return none
                if raw & high or not raw & 0xE or raw & 6 == 4:
                    return reserved  # reserved bits, a pointer at the last level, W without R
                return LEAF, (raw & ppn) << 2, rights[(raw >> 1) & 15]
        else:
            def decode(raw: int):
                if not raw & 1:
                    return none
                if raw & high:
                    return reserved
                if not raw & 0xE:
                    return TABLE, (raw & ppn) << 2, ALL_RIGHTS
                if raw & 6 == 4 or raw & misaligned:
                    return reserved  # W without R; a misaligned superpage
                return LEAF, (raw & ppn) << 2, rights[(raw >> 1) & 15]
        self._decoders[li] = decode
        return decode

    def addr_mask(self, li: int) -> tuple[int, int]:
        """``_PAGE_PFN_MASK`` (the PPN, bits 10..53), shifted up by ``PAGE_SHIFT -
        _PAGE_PFN_SHIFT`` into an address (arch/riscv/include/asm/pgtable-64.h
        ``pte_pfn``/``pfn_pte``, ``pmd_page_vaddr``) at every level; an entry's kind and
        rights are in its other bits (a superpage's alignment aside)."""
        return _PAGE_PFN_MASK, PAGE_SHIFT - _PAGE_PFN_SHIFT

    # -- encoding -------------------------------------------------------------------------

    def mk_leaf(self, li: int, pa: int, prot: int) -> int:
        """``pfn_pte(pfn, prot)``; a large page is the same (``pmd_mkhuge`` and
        ``pte_mkhuge`` are identities on riscv: pgtable.h)."""
        return ((pa >> PAGE_SHIFT) << _PAGE_PFN_SHIFT) | prot

    def pfn_pte(self, pfn: int, prot: int) -> int:
        """``pfn_pte``: mk_leaf of the last level in one step (every demand fault makes one)."""
        return (pfn << _PAGE_PFN_SHIFT) | prot

    def mk_table(self, li: int, table_pa: int, user: bool) -> int:
        """``pfn_pgd/pfn_pmd(PFN_DOWN(next_phys), PAGE_TABLE)`` (arch/riscv/mm/init.c
        create_*_mapping) and ``pmd_populate``: _PAGE_TABLE (V alone) for kernel and user
        tables alike."""
        return ((table_pa >> PAGE_SHIFT) << _PAGE_PFN_SHIFT) | _PAGE_TABLE

    def leaf_prot(self, li: int, raw: int) -> int:
        """``pte_pgprot``: everything but the PPN (the same at every level)."""
        return raw & ~_PAGE_PFN_MASK

    def check_prot(self, prot: int) -> None:
        if prot < 0 or prot >= 1 << 64 or prot & _PAGE_PFN_MASK:
            raise MappingError(f"protection {prot:#x} carries PPN bits (53..10)")
        if prot & _PAGE_PRESENT and not prot & (_PAGE_READ | _PAGE_WRITE | _PAGE_EXEC):
            raise MappingError(f"protection {prot:#x} is _PAGE_TABLE (V with R=W=X=0): a pointer, not a page")
        if prot & _PAGE_PRESENT and prot & (_PAGE_READ | _PAGE_WRITE) == _PAGE_WRITE:
            raise MappingError(f"protection {prot:#x} is writable but not readable: a reserved leaf encoding")
        if prot & _PAGE_RESERVED_HIGH:
            raise MappingError(f"protection {prot:#x} sets bits 63..54, reserved on this CPU (no Svpbmt/Svnapot)")

    def chg_mask(self, li: int) -> int:
        """_PAGE_CHG_MASK without the PPN: A, D, RSW and bits 63..54."""
        return _PAGE_CHG_MASK & ~_PAGE_PFN_MASK

    def fault_code(self, fault) -> int:
        """scause (privileged spec, "Supervisor Cause Register"; arch/riscv/include/asm/csr.h
        EXC_INST_PAGE_FAULT 12, EXC_LOAD_PAGE_FAULT 13, EXC_STORE_PAGE_FAULT 15): the
        kind of access, whatever the reason (not present, rights, reserved bits)."""
        return _SCAUSE[fault.access]

    # -- pte accessors: arch/riscv/include/asm/pgtable.h ----------------------------------

    def pte_pfn(self, raw: int) -> int:
        """``pte_pfn``: (pte_val & _PAGE_PFN_MASK) >> _PAGE_PFN_SHIFT (6.x; earlier eras
        shift without the mask, the same for every PTE the kernel writes)."""
        return (raw & _PAGE_PFN_MASK) >> _PAGE_PFN_SHIFT

    def pte_present(self, raw: int) -> bool:
        """``pte_val(pte) & (_PAGE_PRESENT | _PAGE_PROT_NONE)`` with the era's PROT_NONE bit."""
        return bool(raw & (_PAGE_PRESENT | self.prot_none))

    def pte_write(self, raw: int) -> bool:
        return bool(raw & _PAGE_WRITE)

    def pte_wrprotect(self, raw: int) -> int:
        return raw & ~_PAGE_WRITE

    def pte_mkwrite(self, raw: int) -> int:
        return raw | _PAGE_WRITE

    def pte_mkdirty(self, raw: int) -> int:
        return raw | _PAGE_DIRTY

    def pte_mkyoung(self, raw: int) -> int:
        return raw | _PAGE_ACCESSED

    def pte_mkold(self, raw: int) -> int:
        return raw & ~_PAGE_ACCESSED

    def pte_dirty(self, raw: int) -> bool:
        return bool(raw & _PAGE_DIRTY)

    def pte_mkspecial(self, raw: int) -> int:  # arch/riscv/include/asm/pgtable.h: _PAGE_SPECIAL
        return raw | _PAGE_SPECIAL

    def pte_special(self, raw: int) -> bool:
        return bool(raw & _PAGE_SPECIAL)

    # -- description ------------------------------------------------------------------------

    def describe(self, li: int, raw: int) -> EntryView:
        kind, addr, _rights = self.decoder(li)(raw)
        attrs = {name: bool(raw & bit) for name, bit in _ATTR_BITS}
        if kind not in (TABLE, LEAF):
            addr = (raw & _PAGE_PFN_MASK) << 2 if raw else None
        return EntryView(kind, addr, attrs)

    def flag_names(self, li: int, raw: int) -> list[str]:
        """crash riscv64.c riscv64_translate_pte(): PRESENT READ WRITE EXEC USER GLOBAL
        ACCESSED DIRTY SOFT, in that order."""
        return [name for name, bit in CRASH_FLAGS if raw & bit]

    def looks_like_leaf(self, li: int, raw: int) -> bool:
        return bool(raw & (_PAGE_READ | _PAGE_WRITE | _PAGE_EXEC))


# ---- the modes ----------------------------------------------------------------------------

def _level(name: str, shift: int, last: bool = False, folds: tuple[str, ...] = ()) -> Level:
    return Level(name, shift=shift, bits=9, entry_size=8, table=None if last else TABLE_FORMAT, leaf=LEAF_FORMAT,
                 folds=folds)


#: (mode name, satp MODE, levels top-down)
_GEOMETRY = {
    "sv39": ("Sv39", 8, (("pgd", 30, ("p4d", "pud")), ("pmd", 21, ()), ("pte", 12, ()))),
    "sv48": ("Sv48", 9, (("pgd", 39, ("p4d",)), ("pud", 30, ()), ("pmd", 21, ()), ("pte", 12, ()))),
    "sv57": ("Sv57", 10, (("pgd", 48, ()), ("p4d", 39, ()), ("pud", 30, ()), ("pmd", 21, ()), ("pte", 12, ()))),
}
VA_BITS = {"sv39": 39, "sv48": 48, "sv57": 57}
#: csr.h SATP_MODE_39 8, SATP_MODE_48 9, SATP_MODE_57 10
SATP_MODE = {key: geo[1] for key, geo in _GEOMETRY.items()}
MODE_NAMES = {key: geo[0] for key, geo in _GEOMETRY.items()}

_MODES: dict[tuple[str, int], PagingMode] = {}


def paging_mode(mmu: str, prot_none: int) -> PagingMode:
    """The PagingMode of *mmu* (``sv39``, ``sv48``, ``sv57``) with a codec for the era's
    PROT_NONE bit (one object per combination, shared)."""
    key = (mmu, prot_none)
    mode = _MODES.get(key)
    if mode is None:
        name, _satp, geo = _GEOMETRY[mmu]
        levels = tuple(_level(n, s, last=(i == len(geo) - 1), folds=f) for i, (n, s, f) in enumerate(geo))
        mode = PagingMode(name=name, levels=levels, va_bits=VA_BITS[mmu], pa_bits=PA_BITS,
                          codec=RiscvCodec(len(levels), prot_none), form=SIGN_EXTENDED)
        _MODES[key] = mode
    return mode
