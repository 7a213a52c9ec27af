"""The x86 entry codec: what the engine reads and writes, in integers.

Every x86 paging mode shares the low flag bits (arch/x86/include/asm/pgtable_types.h) and
the SDM's rules (vol. 3, 4.3-4.6): P in bit 0 makes an entry valid; in a directory entry
that may map a large page, PS (bit 7) makes it a leaf, whose PAT bit moves to bit 12
(bit 7 is PAT in a pte); bits that must be zero in a present entry make the walk fault
with PF_RSVD; the rights are RW and US ANDed over every level and XD (NX) ORed, with
CR0.WP set (the kernel always sets it) so that read-only pages are read-only for the
kernel too, and no SMEP/SMAP (the kernel may access user pages). The PAE PDPT carries only
P and the cache bits: its entries take no part in access control.

The per-level masks differ by mode and come from each paging-mode plugin (:class:`X86Bits`).
"""

from __future__ import annotations

from dataclasses import dataclass

from mmemu.arch import (
    ALL_RIGHTS,
    KR,
    KW,
    KX,
    LEAF,
    NONE,
    RESERVED,
    TABLE,
    UR,
    UW,
    UX,
    EntryCodec,
    EntryView,
    check_page_aligned_prot,
)
from mmemu.errors import MappingError
from mmemu.faults import NON_CANONICAL, NOT_PRESENT, PROTECTION, Fault
from mmemu.faults import RESERVED as RESERVED_FAULT

from .pgtable_types import (
    _KERNPG_TABLE,
    _PAGE_ACCESSED,
    _PAGE_DIRTY,
    _PAGE_GLOBAL,
    _PAGE_PAT_LARGE,
    _PAGE_PCD,
    _PAGE_PRESENT,
    _PAGE_PROTNONE,
    _PAGE_PSE,
    _PAGE_PWT,
    _PAGE_RW,
    _PAGE_SPECIAL,
    _PAGE_TABLE,
    _PAGE_USER,
)

# x86 page-fault error code bits (arch/x86/include/asm/trap_pf.h: enum x86_pf_error_code)
X86_PF_PROT = 1 << 0
X86_PF_WRITE = 1 << 1
X86_PF_USER = 1 << 2
X86_PF_RSVD = 1 << 3
X86_PF_INSTR = 1 << 4
X86_PF_PK = 1 << 5

#: PTE_PFN_MASK of x86_64 and PAE (__PHYSICAL_MASK_SHIFT 52): what the L1TF inversion flips
PTE_PFN_MASK = ((1 << 52) - 1) & ~0xFFF
#: bits 40..51 of an entry: above the emulated CPU's MAXPHYADDR (40), so zero in every
#: entry made for a frame of this machine, and all set in one whose frame was inverted
_INVERTED_HIGH = ((1 << 52) - 1) & ~((1 << 40) - 1)

#: arch/x86/include/asm/pgtable_types.h _PAGE_CHG_MASK: what pte_modify() keeps (the
#: frame, the cache bits, accessed, dirty; _PAGE_SPECIAL & co are not modelled)
_PAGE_CHG_MASK = _PAGE_PCD | _PAGE_PWT | _PAGE_ACCESSED | _PAGE_DIRTY


@dataclass(frozen=True)
class X86Bits:
    """The masks of one level of an x86 paging mode."""

    addr_mask: int  # bits of the next table's (or the 4 KiB page's) physical address
    large_addr_mask: int = 0  # bits of a large page's physical address (0: no large pages here)
    reserved: int = 0  # must-be-zero bits of a present entry that points to a table (or a pte)
    large_reserved: int = 0  # must-be-zero bits of a present large-page entry
    #: False where the entry's RW/US/NX bits take no part in access control (the PAE PDPT)
    access_bits: bool = True
    #: flags of a table entry the kernel writes for kernel / user tables
    table_kernel: int = _KERNPG_TABLE
    table_user: int = _PAGE_TABLE


def _rights_table(nx_shift_bit: int) -> tuple[int, ...]:
    """Rights by (RW, US, NX) packed as an index: bit 0 RW, bit 1 US, bit 2 NX."""
    out = []
    for i in range(8):
        w, u, x = i & 1, i & 2, not i & 4
        r = KR | (KW if w else 0) | (KX if x else 0)
        if u:
            r |= UR | (UW if w else 0) | (UX if x else 0)
        out.append(r)
    return tuple(out)


_RIGHTS = _rights_table(0)


class X86Codec(EntryCodec):
    """An x86 paging mode's codec. *nx*: the NX bit (bit 63) when the mode has it and
    EFER.NXE is on, else 0 (2-level entries have none: no I/D bit in error codes either)."""

    def __init__(self, bits: tuple[X86Bits, ...], nx: int, flag_names: tuple[tuple[str, int], ...]):
        self.bits = bits
        self.nx = nx
        self.flags = flag_names
        last = bits[-1]
        #: bits of a protection: everything that is not a frame address
        self._frame_bits = last.addr_mask

    # -- decoding -------------------------------------------------------------------------

    def decoder(self, li: int):
        b = self.bits[li]
        last = li == len(self.bits) - 1
        large = b.large_addr_mask != 0 and not last
        amask, laddr, rsv, lrsv = b.addr_mask, b.large_addr_mask, b.reserved, b.large_reserved
        nx = self.nx
        rights = _RIGHTS
        none, reserved = (NONE, 0, 0), (RESERVED, 0, 0)
        if not b.access_bits:
            def decode(raw: int):
                if not raw & 1:
                    return none
                if raw & rsv:
                    return reserved
                return TABLE, raw & amask, ALL_RIGHTS
            return decode
        if last:
            def decode(raw: int):
                if not raw & 1:
                    return none
                if raw & rsv:
                    return reserved
                return LEAF, raw & amask, rights[((raw >> 1) & 3) | (4 if raw & nx else 0)]
            return decode
        if large:
            def decode(raw: int):
                if not raw & 1:
                    return none
                if raw & 0x80:
                    if raw & lrsv:
                        return reserved
                    return LEAF, raw & laddr, rights[((raw >> 1) & 3) | (4 if raw & nx else 0)]
                if raw & rsv:
                    return reserved
                return TABLE, raw & amask, rights[((raw >> 1) & 3) | (4 if raw & nx else 0)]
            return decode

        def decode(raw: int):
            if not raw & 1:
                return none
            if raw & rsv:  # PS is reserved where the level maps no page
                return reserved
            return TABLE, raw & amask, rights[((raw >> 1) & 3) | (4 if raw & nx else 0)]
        return decode

    def addr_mask(self, li: int) -> tuple[int, int]:
        """A table's or a pte's address bits (12 up to MAXPHYADDR - 1; those above are
        reserved, SDM vol. 3, 4.5): nothing else of the entry lies there."""
        return self.bits[li].addr_mask, 0

    # -- encoding -------------------------------------------------------------------------

    def _is_large_level(self, li: int) -> bool:
        return li != len(self.bits) - 1

    def mk_leaf(self, li: int, pa: int, prot: int) -> int:
        if self._is_large_level(li):
            if not self.bits[li].large_addr_mask:
                raise MappingError(f"level {li} of this x86 mode maps no page")
            # pte form -> large form: PS set, the PAT bit from bit 7 to bit 12
            # (pgprot_4k_2_large)
            pat = prot & _PAGE_PSE
            return pa | (prot & ~_PAGE_PSE) | _PAGE_PSE | (_PAGE_PAT_LARGE if pat else 0)
        return pa | prot

    def pfn_pte(self, pfn: int, prot: int) -> int:
        """``pfn_pte``: mk_leaf of the last level in one step (every demand fault makes one)."""
        return (pfn << 12) | prot

    def mk_table(self, li: int, table_pa: int, user: bool) -> int:
        b = self.bits[li]
        return table_pa | (b.table_user if user else b.table_kernel)

    def leaf_prot(self, li: int, raw: int) -> int:
        if self._is_large_level(li):
            b = self.bits[li]
            flags = raw & ~(b.addr_mask | b.large_addr_mask | _PAGE_PAT_LARGE | _PAGE_PSE | b.large_reserved)
            return flags | (_PAGE_PSE if raw & _PAGE_PAT_LARGE else 0)  # pgprot_large_2_4k
        return raw & ~self.bits[li].addr_mask

    def check_prot(self, prot: int) -> None:
        check_page_aligned_prot(prot, self._frame_bits, "address bits")
        if prot & _PAGE_PSE:
            raise MappingError(f"protection {prot:#x} carries the large-page bit (PS; bit 7 is PAT in a pte): "
                               "map() chooses page sizes itself")

    def chg_mask(self, li: int) -> int:
        return _PAGE_CHG_MASK

    def fault_code(self, fault) -> int:
        if fault.kind == NON_CANONICAL:
            # not a #PF at all: a non-canonical address raises #GP with error code 0
            # (Intel SDM vol. 3A 6.15 "Interrupt 13"; the kernel's "general protection fault,
            # probably for non-canonical address", arch/x86/kernel/traps.c)
            return 0
        code = 0
        if fault.access == "write":
            code |= X86_PF_WRITE
        elif fault.access == "exec" and self.nx:  # I/D only where NX exists (PAE, long mode)
            code |= X86_PF_INSTR
        if fault.user:
            code |= X86_PF_USER
        if fault.kind == RESERVED_FAULT:
            code |= X86_PF_PROT | X86_PF_RSVD
        elif fault.kind != NOT_PRESENT:
            code |= X86_PF_PROT
        return code

    def fault_from_code(self, address: int, code: int) -> Fault:
        """The neutral description of a #PF from CR2 and its error code."""
        access = "write" if code & X86_PF_WRITE else ("exec" if code & X86_PF_INSTR else "read")
        kind = RESERVED_FAULT if code & X86_PF_RSVD else (PROTECTION if code & X86_PF_PROT else NOT_PRESENT)
        return Fault(address, access, bool(code & X86_PF_USER), kind, code=code)

    # -- pte accessors (arch/x86/include/asm/pgtable.h) ------------------------------------

    def pte_pfn(self, raw: int) -> int:
        return (raw & self.bits[-1].addr_mask) >> 12

    def pte_present(self, raw: int) -> bool:
        return bool(raw & (_PAGE_PRESENT | _PAGE_PROTNONE))

    def pte_write(self, raw: int) -> bool:
        return bool(raw & _PAGE_RW)

    def pte_wrprotect(self, raw: int) -> int:
        return raw & ~_PAGE_RW

    def pte_mkwrite(self, raw: int) -> int:
        return raw | _PAGE_RW

    def pte_mkdirty(self, raw: int) -> int:
        return raw | _PAGE_DIRTY

    def pte_mkyoung(self, raw: int) -> int:
        return raw | _PAGE_ACCESSED

    def pte_mkold(self, raw: int) -> int:
        return raw & ~_PAGE_ACCESSED

    def pte_dirty(self, raw: int) -> bool:
        return bool(raw & _PAGE_DIRTY)

    def pte_mkspecial(self, raw: int) -> int:
        return raw | _PAGE_SPECIAL

    def pte_special(self, raw: int) -> bool:
        return bool(raw & _PAGE_SPECIAL)

    def protnone_invert(self, raw: int) -> int:
        """arch/x86/include/asm/pgtable-invert.h (4.18, L1TF): an entry that is not zero and
        not present (__pte_needs_invert) has its frame bits inverted (protnone_mask, XOR
        with PTE_PFN_MASK: bits 12..51, __PHYSICAL_MASK_SHIFT 52 on x86_64 and, for this
        very reason, on PAE too: page_32_types.h); its own inverse."""
        return raw ^ PTE_PFN_MASK if raw and not raw & _PAGE_PRESENT else raw

    # -- description ----------------------------------------------------------------------

    def describe(self, li: int, raw: int) -> EntryView:
        kind, addr, rights = self.decoder(li)(raw)
        b = self.bits[li]
        last = li == len(self.bits) - 1
        large_form = not last and b.large_addr_mask and raw & _PAGE_PSE  # read with the large format
        attrs = {
            "valid": bool(raw & _PAGE_PRESENT),
            "read": True,
            "write": bool(raw & _PAGE_RW) or not b.access_bits,
            "exec": not (raw & self.nx) if b.access_bits else True,
            "user": bool(raw & _PAGE_USER) or not b.access_bits,
            "global": bool(raw & _PAGE_GLOBAL),
            "accessed": bool(raw & _PAGE_ACCESSED),
            "dirty": bool(raw & _PAGE_DIRTY),
            "pwt": bool(raw & _PAGE_PWT),
            "pcd": bool(raw & _PAGE_PCD),
        }
        if last:  # bit 7 of a pte is PAT
            attrs["pat"] = bool(raw & _PAGE_PSE)
        else:  # bit 7 of a directory entry is PS; a large page's PAT is bit 12
            attrs["pse"] = bool(raw & _PAGE_PSE)
            attrs["pat"] = bool(large_form and raw & _PAGE_PAT_LARGE)
        if kind not in (TABLE, LEAF):
            if last and raw & _INVERTED_HIGH == _INVERTED_HIGH:
                raw_frame = raw ^ PTE_PFN_MASK  # an L1TF-inverted PROT_NONE pte: pte_pfn undoes it
            else:
                raw_frame = raw
            addr = raw_frame & (b.large_addr_mask if large_form else b.addr_mask)
        return EntryView(kind, addr, attrs)

    def flag_names(self, li: int, raw: int) -> list[str]:
        """crash's x86_translate_pte / x86_64_translate_pte flag words (bit 7 is PSE there)."""
        return [name for name, mask in self.flags if raw & mask]

    def looks_like_leaf(self, li: int, raw: int) -> bool:
        return bool(raw & _PAGE_PSE and self.bits[li].large_addr_mask)
