"""AArch64 stage 1 translation table descriptors, 4 KiB granule, and the entry codec.

The specification (construct structs) follows the Arm ARM (DDI 0487, D5.3 "VMSAv8-64
translation table format descriptors") and arch/arm64/include/asm/pgtable-hwdef.h:

- every level: bit 0 valid; descriptors with bit 0 clear are invalid (the kernel keeps
  software entries in them: PROT_NONE, swap);
- levels 0..2: bits[1:0] = 0b11 is a *table* descriptor: next-level table address in bits
  [47:12], and the hierarchical attributes NSTable (63), APTable (62:61), UXNTable/XNTable
  (60), PXNTable (59) (pgtable-hwdef.h: PMD_TABLE_PXN/UXN, PUD_TABLE_PXN/UXN);
- levels 1 and 2: bits[1:0] = 0b01 is a *block* (1 GiB at level 1, 2 MiB at level 2,
  PUD_TYPE_SECT / PMD_TYPE_SECT); at level 0 the encoding 0b01 is invalid with a 4 KiB
  granule (no 512 GiB blocks in VMSAv8-64 before FEAT_LPA2): the MMU reports a
  *translation fault* at level 0, so the codec calls it NONE;
- level 3: bits[1:0] = 0b11 is a *page* (PTE_TYPE_PAGE); 0b01 is reserved and "behaves as
  invalid" (Arm ARM D5.3.2): a translation fault at level 3, so NONE again;
- leaf attributes (pgtable-hwdef.h PTE_*): AttrIndx[2:0] (4:2), NS (5), AP[1] (6,
  PTE_USER), AP[2] (7, PTE_RDONLY), SH[1:0] (9:8, PTE_SHARED), AF (10, PTE_AF), nG (11,
  PTE_NG), GP (50, PTE_GP, BTI), DBM (51, PTE_DBM), Contiguous (52, PTE_CONT), PXN (53),
  UXN (54); bits [58:55] are ignored by the MMU and used by software (PTE_DIRTY 55,
  PTE_SPECIAL 56, then PTE_WRITE 57 (3.14-4.2) or PTE_DEVMAP 57, PTE_PROT_NONE 58).

Levels are the kernel's: with 39-bit VAs (3 levels) the ARM level 1 table is the pgd (the
pud is folded: asm-generic pgtable-nopud.h), with 48-bit VAs (4 levels) ARM level 0 is the
pgd. Index i of PagingMode.levels is ARM level ``i + 4 - len(levels)``.

Rights (Arm ARM D5.4 "Memory access control", table "Stage 1 data access permissions" and
"instruction execution permissions", for the EL1&0 regime without PAN, WXN off -- the
Unicorn model is ARMv8.0, see /work/shared/unicorn-riscv-arm64/README.md, B3):

- EL1 may read every valid page; EL1 may write when AP[2] == 0;
- EL0 may read when AP[1] == 1 and write when AP[2:1] == 0b01;
- EL0 may execute when UXN == 0, *whatever AP says* (an AP[1] == 0 page with UXN clear is
  execute-only at EL0; the kernel used that for PROT_EXEC-only mappings in 4.9);
- EL1 may execute when PXN == 0, except that a page writable at EL0 (AP == 0b01) is
  implicitly PXN (Arm ARM: "a region that is writable at EL0 is treated as PXN");
- AF == 0: every access takes an access-flag fault (no hardware AF update in ARMv8.0 and in
  Unicorn: README B3 "AF=0 ... 4; AF stays 0"): the codec adds AF_FAULT.

Table descriptors restrict the rights below them: PXNTable removes EL1 execute, UXNTable
EL0 execute, APTable[0] (bit 61) EL0 data access, APTable[1] (bit 62) writes at both ELs.
(The Arm ARM computes the implicit PXN after APTable has been applied; an AND of masks
cannot express that: an APTable[0] table above an AP=0b01 page removes EL0 access *and*
the implicit PXN. Linux never sets APTable, so nothing the kernel builds is affected.)

Output addresses above the CPU's physical address size (44 bits: Unicorn's Cortex-A72
model, ID_AA64MMFR0.PARange = 4) make an *address size fault* (Arm ARM D5.2.6); the codec
reports such descriptors as RESERVED, and :meth:`Arm64Codec.fault_code` encodes a RESERVED
fault with the address-size-fault FSC (0b0000nn).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mmemu.arch import (
    AF_FAULT,
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
    EntryFormat,
    EntryView,
    Level,
    entry_struct,
)
from mmemu.errors import MappingError
from mmemu.faults import ACCESS_FLAG, NON_CANONICAL, NOT_PRESENT, PROTECTION, Fault
from mmemu.faults import RESERVED as RESERVED_FAULT

# ---- arch/arm64/include/asm/pgtable-hwdef.h ------------------------------------------------
PTE_VALID = 1 << 0
PTE_TABLE_BIT = 1 << 1
PTE_TYPE_MASK = 3
PTE_TYPE_PAGE = 3
PMD_TYPE_TABLE = 3
PMD_TYPE_SECT = 1
PTE_USER = 1 << 6  # AP[1]
PTE_RDONLY = 1 << 7  # AP[2]
PTE_SHARED = 3 << 8  # SH[1:0] inner shareable
PTE_AF = 1 << 10
PTE_NG = 1 << 11
PTE_GP = 1 << 50  # BTI guarded page (5.10+)
PTE_DBM = 1 << 51
PTE_CONT = 1 << 52
PTE_PXN = 1 << 53
PTE_UXN = 1 << 54
PTE_ATTRINDX_MASK = 7 << 2
#: software bits (pgtable.h / pgtable-prot.h); 57 and 58 change meaning by era (eras.py)
PTE_DIRTY = 1 << 55
PTE_SPECIAL = 1 << 56
PTE_SW57 = 1 << 57
PTE_SW58 = 1 << 58
# table descriptor attributes (PMD_TABLE_PXN/UXN 59/60; APTable 62:61; NSTable 63)
TABLE_PXN = 1 << 59
TABLE_UXN = 1 << 60
TABLE_AP0 = 1 << 61  # APTable[0]: no EL0 access below
TABLE_AP1 = 1 << 62  # APTable[1]: no write access below
TABLE_NS = 1 << 63


def PTE_ATTRINDX(t: int) -> int:
    """pgtable-hwdef.h: #define PTE_ATTRINDX(t) (_AT(pteval_t, (t)) << 2)"""
    return t << 2


def bits(lo: int, hi: int) -> int:
    """Mask of bits lo..hi inclusive."""
    return ((1 << (hi + 1)) - 1) & ~((1 << lo) - 1)


#: output address bits of a 48-bit-OA descriptor (ARMv8.0, no FEAT_LPA): bits [47:12]
OA_MASK = bits(12, 47)
#: Unicorn's default arm64 CPU (Cortex-A72, MIDR 0x410fd083): ID_AA64MMFR0_EL1 = 0x1124,
#: PARange = 0b0100 = 44 bits (/work/shared/unicorn-riscv-arm64/README.md, B1)
PA_BITS = 44

# ---- the construct specification --------------------------------------------------------------


def entry_format(fields: list[tuple]):
    """A little-endian 64-bit descriptor as a construct struct, fields from bit 63 down, as
    the Arm ARM draws them (:func:`mmemu.arch.entry_struct`)."""
    return entry_struct(64, fields)


# Upper attributes of a block/page descriptor, bits 63..48 (Arm ARM D5.3.3): 63:59 ignored
# (58:55 "reserved for software use"), 54 UXN, 53 PXN, 52 Contiguous, 51 DBM, 50 GP, 49:48 RES0
_UPPER = [("ignored_hi", 5), ("sw58", 1), ("sw57", 1), ("special", 1), ("dirty", 1), ("uxn", 1), ("pxn", 1),
          ("contiguous", 1), ("dbm", 1), ("gp", 1), ("res0_hi", 2)]
# Lower attributes, bits 11..2: nG, AF, SH[1:0], AP[2] (RDONLY), AP[1] (USER), NS, AttrIndx[2:0]
_LOWER = [("ng", 1), ("af", 1), ("sh", 2), ("ap2", 1), ("ap1", 1), ("ns", 1), ("attrindx", 3)]

#: table descriptor (levels 0..2)
TABLE_DESC = entry_format([("ns_table", 1), ("ap_table1", 1), ("ap_table0", 1), ("uxn_table", 1), ("pxn_table", 1),
                           ("ignored_hi", 7), ("res0_hi", 4), ("address", 36, 12), ("ignored_lo", 10),
                           ("table", 1), ("valid", 1)])
#: level 3 page descriptor
PAGE_DESC = entry_format(_UPPER + [("address", 36, 12)] + _LOWER + [("page", 1), ("valid", 1)])
#: level 2 block descriptor: 2 MiB, OA in bits [47:21], bits [20:12] RES0 (ARMv8.0: nT is v8.4)
BLOCK_2M = entry_format(_UPPER + [("address", 27, 21), ("res0_lo", 9)] + _LOWER + [("table", 1), ("valid", 1)])
#: level 1 block descriptor: 1 GiB, OA in bits [47:30], bits [29:12] RES0
BLOCK_1G = entry_format(_UPPER + [("address", 18, 30), ("res0_lo", 18)] + _LOWER + [("table", 1), ("valid", 1)])

#: neutral attribute -> construct field, for block and page descriptors. ``exec`` is EL1's
#: (PXN clear); EL0's is the extra ``uxn``. ``dirty`` is the software PTE_DIRTY bit 55 (the
#: kernel's pte_dirty() also counts a writable-clean DBM entry whose RDONLY is clear).
LEAF_ATTRS = {"valid": "valid", "write": "!ap2", "exec": "!pxn", "user": "ap1", "global": "!ng", "accessed": "af",
              "dirty": "dirty", "pxn": "pxn", "uxn": "uxn", "contiguous": "contiguous", "af": "af", "ng": "ng",
              "dbm": "dbm", "rdonly": "ap2", "gp": "gp", "special": "special"}
#: for table descriptors: the rights they leave to the entries below
TABLE_ATTRS = {"valid": "valid", "write": "!ap_table1", "user": "!ap_table0", "exec": "!pxn_table",
               "pxn_table": "pxn_table", "uxn_table": "uxn_table", "ap_table0": "ap_table0",
               "ap_table1": "ap_table1", "table": "table"}

_TABLE_FMT = EntryFormat(TABLE_DESC, TABLE_ATTRS)
_PAGE_FMT = EntryFormat(PAGE_DESC, {**LEAF_ATTRS, "page": "page"})
_BLOCK_2M_FMT = EntryFormat(BLOCK_2M, {**LEAF_ATTRS, "table": "table"})
_BLOCK_1G_FMT = EntryFormat(BLOCK_1G, {**LEAF_ATTRS, "table": "table"})


def levels_for(va_bits: int) -> tuple[Level, ...]:
    """The kernel's levels for the 4 KiB granule (pgtable-hwdef.h:
    ARM64_HW_PGTABLE_LEVEL_SHIFT(n) = (PAGE_SHIFT - 3) * (4 - n) + 3: 39, 30, 21, 12)."""
    pte = Level("pte", shift=12, bits=9, entry_size=8, leaf=_PAGE_FMT)
    pmd = Level("pmd", shift=21, bits=9, entry_size=8, table=_TABLE_FMT, leaf=_BLOCK_2M_FMT)
    if va_bits == 39:
        # CONFIG_PGTABLE_LEVELS=3: the pud is folded into the pgd (ARM level 1, 1 GiB blocks)
        pgd = Level("pgd", shift=30, bits=9, entry_size=8, table=_TABLE_FMT, leaf=_BLOCK_1G_FMT,
                    folds=("p4d", "pud"))
        return (pgd, pmd, pte)
    if va_bits == 48:
        # ARM level 0: tables only (a 0b01 descriptor at level 0 is a translation fault)
        pgd = Level("pgd", shift=39, bits=9, entry_size=8, table=_TABLE_FMT, folds=("p4d",))
        pud = Level("pud", shift=30, bits=9, entry_size=8, table=_TABLE_FMT, leaf=_BLOCK_1G_FMT)
        return (pgd, pud, pmd, pte)
    raise ValueError(f"arm64 with 4 KiB pages has 39- or 48-bit VAs, not {va_bits}")


# ---- rights -------------------------------------------------------------------------------------


def leaf_rights(ap: int, uxn: bool, pxn: bool) -> int:
    """Rights of a valid block/page descriptor by AP[2:1], UXN, PXN (see the module doc)."""
    r = KR
    if not ap & 2:  # AP[2] == 0
        r |= KW
    if ap & 1:  # AP[1] == 1
        r |= UR
        if not ap & 2:
            r |= UW
    if not uxn:
        r |= UX
    if not pxn and ap != 0b01:  # implicit PXN of an EL0-writable location
        r |= KX
    return r


def table_rights(raw: int) -> int:
    """Rights a table descriptor leaves to the levels below."""
    r = ALL_RIGHTS
    if raw & TABLE_PXN:
        r &= ~KX
    if raw & TABLE_UXN:
        r &= ~UX
    if raw & TABLE_AP0:
        r &= ~(UR | UW)
    if raw & TABLE_AP1:
        r &= ~(KW | UW)
    return r


#: by (AP << 2 | UXN << 1 | PXN); AF_FAULT added when AF is clear
_LEAF_RIGHTS = tuple(leaf_rights(i >> 2, bool(i & 2), bool(i & 1)) for i in range(16))
#: by the four table attribute bits 62..59 (index: raw >> 59 & 15)
_TABLE_RIGHTS = tuple(table_rights(i << 59) for i in range(16))


# ---- ESR_ELx (arch/arm64/include/asm/esr.h) -----------------------------------------------------
ESR_ELx_EC_SHIFT = 26
ESR_ELx_EC_IABT_LOW = 0x20
ESR_ELx_EC_IABT_CUR = 0x21
ESR_ELx_EC_DABT_LOW = 0x24
ESR_ELx_EC_DABT_CUR = 0x25
ESR_ELx_IL = 1 << 25
ESR_ELx_WNR = 1 << 6
ESR_ELx_CM = 1 << 8
ESR_ELx_FSC = 0x3F
ESR_ELx_FSC_TYPE = 0x3C
ESR_ELx_FSC_ADDRSZ = 0x00  # address size fault, level in FSC[1:0]
ESR_ELx_FSC_FAULT = 0x04  # translation fault
ESR_ELx_FSC_ACCESS = 0x08  # access flag fault
ESR_ELx_FSC_PERM = 0x0C  # permission fault
#: ESR_ELx.FSC & ESR_ELx_FSC_TYPE -> the kind of fault the tables raised (the other FSC values:
#: alignment, external aborts, TLB conflicts... are not faults of the tables)
FSC_KINDS = {ESR_ELx_FSC_ADDRSZ: RESERVED_FAULT, ESR_ELx_FSC_FAULT: NOT_PRESENT, ESR_ELx_FSC_ACCESS: ACCESS_FLAG,
             ESR_ELx_FSC_PERM: PROTECTION}
#: esr.h esr_class_str[]
EC_NAMES = {ESR_ELx_EC_IABT_LOW: "IABT (lower EL)", ESR_ELx_EC_IABT_CUR: "IABT (current EL)",
            ESR_ELx_EC_DABT_LOW: "DABT (lower EL)", ESR_ELx_EC_DABT_CUR: "DABT (current EL)"}


# ---- the codec ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PteRules:
    """The kernel's software bits and pte accessors of one era (arch/arm64/include/asm/
    pgtable.h, pgtable-prot.h). Values are bit masks (0: the era has no such bit)."""

    prot_none: int  # PTE_PROT_NONE (only when !PTE_VALID); 0 from 6.10 (PTE_PRESENT_INVALID)
    present_invalid: int  # PTE_PRESENT_INVALID (6.10+: PTE_NG when !PTE_VALID)
    write: int  # PTE_WRITE: 0 (3.7-3.13: write = !RDONLY), bit 57 (3.14-4.2), DBM bit 51 (4.3+)
    file: int  # PTE_FILE (non-linear file ptes, until 3.19)
    #: set_pte_at() computes PTE_RDONLY of user ptes ("dirty_write": RDONLY unless DIRTY and
    #: WRITE (3.14-4.13); "dirty": wrprotect unless DIRTY (3.7-3.13)); "" from 4.14, when
    #: the accessors move RDONLY themselves
    set_pte_at: str
    #: pte_modify() mask (the bits taken from the new protection)
    modify_mask: int
    #: pte_modify() first turns a hardware-dirty pte into a software-dirty one (4.3+)
    modify_hw_dirty: bool
    #: table descriptors carry PXNTable/UXNTable (5.13+, pgalloc.h __pmd_populate)
    xn_tables: bool


class Arm64Codec(EntryCodec):
    """The codec of one paging mode (39- or 48-bit) and one era's software bits."""

    def __init__(self, nlevels: int, rules: PteRules, pa_bits: int = PA_BITS):
        self.nlevels = nlevels
        self.rules = rules
        self.pa_bits = pa_bits
        self.level_offset = 4 - nlevels  # ARM level of index 0
        self._oa_high = bits(pa_bits, 47)  # output address bits the CPU does not have
        # per level: the address mask of a block (0: the level maps no block)
        self._block_mask = []
        for li in range(nlevels):
            arm = li + self.level_offset
            self._block_mask.append({1: bits(30, 47), 2: bits(21, 47)}.get(arm, 0))
        self._decoders = [self._make_decoder(li) for li in range(nlevels)]

    # -- the hot path ---------------------------------------------------------------------

    def arm_level(self, li: int) -> int:
        return li + self.level_offset

    def decoder(self, li: int) -> Callable[[int], tuple[int, int, int]]:
        return self._decoders[li]

    def _make_decoder(self, li: int):
        last = li == self.nlevels - 1
        block_mask = self._block_mask[li]
        high = self._oa_high
        leaf_rights_t, table_rights_t = _LEAF_RIGHTS, _TABLE_RIGHTS
        none, reserved = (NONE, 0, 0), (RESERVED, 0, 0)
        oa = OA_MASK

        def leaf(raw: int, mask: int):
            if raw & high:
                return reserved
            r = leaf_rights_t[((raw >> 4) & 12) | ((raw >> 53) & 3)]
            if not raw & PTE_AF:
                r |= AF_FAULT
            return LEAF, raw & mask, r

        if last:
            # leaf() inline: the hot path of every walk. The usual page (valid, a page, no
            # high bit, AF set) passes one test; the rest are told apart after it.
            check, page, leaf_kind, af, af_fault = 3 | high | PTE_AF, 3 | PTE_AF, LEAF, PTE_AF, AF_FAULT

            def decode(raw: int):
                if raw & check == page:
                    return leaf_kind, raw & oa, leaf_rights_t[((raw >> 4) & 12) | ((raw >> 53) & 3)]
                if raw & 3 != 3:  # invalid, or the reserved 0b01 at level 3
                    return none
                if raw & high:
                    return reserved
                if raw & af:
                    return leaf_kind, raw & oa, leaf_rights_t[((raw >> 4) & 12) | ((raw >> 53) & 3)]
                return leaf_kind, raw & oa, leaf_rights_t[((raw >> 4) & 12) | ((raw >> 53) & 3)] | af_fault
            return decode
        if block_mask:
            def decode(raw: int):
                t = raw & 3
                if t == 3:
                    if raw & high:
                        return reserved
                    return TABLE, raw & oa, table_rights_t[(raw >> 59) & 15]
                if t == 1:
                    return leaf(raw, block_mask)
                return none
            return decode

        def decode(raw: int):  # ARM level 0 of the 48-bit mode: tables only
            if raw & 3 != 3:
                return none
            if raw & high:
                return reserved
            return TABLE, raw & oa, table_rights_t[(raw >> 59) & 15]
        return decode

    def addr_mask(self, li: int) -> tuple[int, int]:
        """``PTE_ADDR_MASK`` (OA bits [47:12], pgtable-hwdef.h; the table address of
        ``__pmd_to_phys`` too) less the bits above the CPU's PA size, which make the entry
        malformed (an address size fault)."""
        return OA_MASK & ~self._oa_high, 0

    # -- encoding -------------------------------------------------------------------------

    def _is_last(self, li: int) -> bool:
        return li == self.nlevels - 1

    def mk_leaf(self, li: int, pa: int, prot: int) -> int:
        """pfn_pte(pfn, prot) then set_pte_at() at the last level; pfn_pmd(pfn,
        mk_pmd_sect_prot(prot)) (= prot & ~PTE_TABLE_BIT) for a block."""
        if self._is_last(li):
            return self._set_pte_at(pa | prot)
        mask = self._block_mask[li]
        if not mask:
            raise MappingError(f"ARM level {self.arm_level(li)} maps no block with a 4 KiB granule")
        if pa & ~mask:
            raise MappingError(f"block at ARM level {self.arm_level(li)}: {pa:#x} is not aligned")
        return self._set_pte_at(pa | (prot & ~PTE_TABLE_BIT))

    def pfn_pte(self, pfn: int, prot: int) -> int:
        """``pfn_pte`` then set_pte_at(): :meth:`mk_leaf` of the last level in one step (every
        demand fault makes one)."""
        raw = (pfn << 12) | prot
        if not self.rules.set_pte_at:
            return raw
        return self._set_pte_at(raw)

    def mk_table(self, li: int, table_pa: int, user: bool) -> int:
        """__pmd_populate/__pud_populate/__pgd_populate: PMD_TYPE_TABLE, and from 5.13 the
        XN table attributes (pgalloc.h: user tables PMD_TABLE_PXN, kernel tables
        PMD_TABLE_UXN)."""
        if self._is_last(li):
            raise MappingError("the last level holds no table descriptors")
        raw = table_pa | PMD_TYPE_TABLE
        if self.rules.xn_tables:
            raw |= TABLE_PXN if user else TABLE_UXN
        return raw

    def leaf_prot(self, li: int, raw: int) -> int:
        """pte_pgprot()/pmd_pgprot(). In the eras where set_pte_at() derives PTE_RDONLY of
        user entries from PTE_DIRTY and PTE_WRITE (3.14-4.13), the protection is the one
        before it: none of the era's user protections carries PTE_RDONLY, and mk_leaf()
        derives it again. (3.7-3.13 cannot be inverted: there set_pte_at() write-protects a
        clean entry, and a clean PAGE_SHARED entry is PAGE_READONLY's.)"""
        if self._is_last(li):
            prot = raw & ~OA_MASK
        else:
            # a block's protection in pte form: the table/page bit set again (pte_pgprot of
            # pmd_pte; mk_sect_prot's inverse)
            prot = raw & ~(self._block_mask[li] or OA_MASK)
            prot &= ~bits(12, 29)  # RES0 address bits of a block
            prot = prot | PTE_TABLE_BIT if raw & PTE_VALID else prot | (raw & PTE_TABLE_BIT)
        if self.rules.set_pte_at == "dirty_write" and (raw & (PTE_VALID | PTE_USER)) == (PTE_VALID | PTE_USER):
            prot &= ~PTE_RDONLY
        return prot

    def check_prot(self, prot: int) -> None:
        if prot < 0 or prot >= 1 << 64:
            raise MappingError(f"protection {prot:#x} is not a 64-bit value")
        if prot & OA_MASK:
            raise MappingError(f"protection {prot:#x} carries output address bits [47:12]")
        if prot & PTE_TYPE_MASK == PMD_TYPE_SECT:
            raise MappingError(f"protection {prot:#x} is a block descriptor (bits[1:0] = 0b01); a pte-form "
                               "protection has PTE_TYPE_PAGE (0b11) or is invalid: map() chooses block sizes itself")

    def _set_pte_at(self, raw: int) -> int:
        """What arch/arm64 set_pte_at() stores for a user pte in the eras where it computes
        PTE_RDONLY (the core writes entries without a set_pte_at step)."""
        mode = self.rules.set_pte_at
        if not mode or (raw & (PTE_VALID | PTE_USER)) != (PTE_VALID | PTE_USER):
            return raw
        if mode == "dirty":  # 3.7-3.13: if (!pte_dirty(pte)) pte = pte_wrprotect(pte)
            return raw if raw & PTE_DIRTY else raw | PTE_RDONLY
        # 3.14-4.13: if (pte_dirty(pte) && pte_write(pte)) clear RDONLY else set RDONLY
        if raw & PTE_DIRTY and raw & self.rules.write:
            return raw & ~PTE_RDONLY
        return raw | PTE_RDONLY

    def chg_mask(self, li: int) -> int:
        return ~(self.rules.modify_mask | OA_MASK) & ((1 << 64) - 1)

    def modify(self, li: int, raw: int, prot: int) -> int:
        """pte_modify(pte, newprot): (pte & ~mask) | (newprot & mask), the mask of the era;
        from 4.3 a hardware-dirty pte is first made software-dirty."""
        if self.rules.modify_hw_dirty and self._hw_dirty(raw):
            raw |= PTE_DIRTY
        mask = self.rules.modify_mask
        if not self._is_last(li):
            prot &= ~PTE_TABLE_BIT
            mask &= ~PTE_TABLE_BIT
        return self._set_pte_at((raw & ~mask) | (prot & mask))

    # -- faults -----------------------------------------------------------------------------

    def fault_code(self, fault) -> int:
        """The ESR_EL1 value the kernel reads for *fault* (Arm ARM D17.2.37 ESR_ELx, ISS
        encoding for an exception from an Instruction/Data Abort): EC 0x20/0x21 for an
        instruction abort from EL0/EL1, 0x24/0x25 for a data abort; IL (bit 25) set; WnR
        (bit 6) for a data write; ISV and the other syndrome bits clear (mmemu does not know
        the instruction); FSC by kind and ARM level: translation 0b0001nn, access flag
        0b0010nn, permission 0b0011nn, address size 0b0000nn."""
        if fault.access == "exec":
            ec = ESR_ELx_EC_IABT_LOW if fault.user else ESR_ELx_EC_IABT_CUR
        else:
            ec = ESR_ELx_EC_DABT_LOW if fault.user else ESR_ELx_EC_DABT_CUR
        level = fault.level + self.level_offset
        if fault.kind == NON_CANONICAL:  # outside both TTBRs' ranges: a level-0 translation fault
            level = 0
        base = {NOT_PRESENT: ESR_ELx_FSC_FAULT, ACCESS_FLAG: ESR_ELx_FSC_ACCESS, PROTECTION: ESR_ELx_FSC_PERM,
                RESERVED_FAULT: ESR_ELx_FSC_ADDRSZ, NON_CANONICAL: ESR_ELx_FSC_FAULT}[fault.kind]
        esr = (ec << ESR_ELx_EC_SHIFT) | ESR_ELx_IL | base | (level & 3)
        if fault.access == "write":
            esr |= ESR_ELx_WNR
        return esr

    def fault_from_esr(self, esr: int, far: int) -> Fault | None:
        """The fault an abort's ESR_ELx and FAR_ELx describe, as the kernel's do_mem_abort()
        reads them (the inverse of :meth:`fault_code`, the ESR kept as it is): the access from
        the EC (instruction abort: a fetch) and WnR, the privilege from the EC (an abort from
        the lower EL: EL0), the kind and ARM level from the FSC. A level before the mode's
        first (the level 0 translation fault of an address outside both TTBRs' ranges on a
        3-level mode) is index 0. None: not an abort of the tables (another EC, or an FSC
        such as an alignment fault)."""
        ec = esr >> ESR_ELx_EC_SHIFT
        fsc = esr & ESR_ELx_FSC
        kind = FSC_KINDS.get(fsc & ESR_ELx_FSC_TYPE) if fsc < 0x10 else None
        if kind is None:
            return None
        if ec == ESR_ELx_EC_DABT_LOW or ec == ESR_ELx_EC_DABT_CUR:
            access = "write" if esr & ESR_ELx_WNR else "read"
        elif ec == ESR_ELx_EC_IABT_LOW or ec == ESR_ELx_EC_IABT_CUR:
            access = "exec"
        else:
            return None
        user = ec == ESR_ELx_EC_DABT_LOW or ec == ESR_ELx_EC_IABT_LOW
        level = max(0, (fsc & 3) - self.level_offset)
        return Fault(far, access, user, kind, level, esr)

    # -- pte accessors (arch/arm64/include/asm/pgtable.h of the era) -----------------------------

    def pte_pfn(self, raw: int) -> int:
        return (raw & OA_MASK) >> 12

    def pte_present(self, raw: int) -> bool:
        """pte_present(): PTE_VALID, or the era's PROT_NONE marker: PTE_PROT_NONE (bit 1
        before 3.11, bit 2 in 3.11/3.12, bit 58 in 3.13-6.9), PTE_PRESENT_INVALID (=PTE_NG,
        only with PTE_VALID clear) from 6.10."""
        if raw & PTE_VALID:
            return True
        r = self.rules
        if r.prot_none and raw & r.prot_none:
            return True
        return bool(r.present_invalid and raw & r.present_invalid)

    def _hw_dirty(self, raw: int) -> bool:
        # 4.3+: pte_hw_dirty(pte) (pte_write(pte) && !(pte_val(pte) & PTE_RDONLY))
        return self.rules.write == PTE_DBM and bool(raw & PTE_DBM) and not raw & PTE_RDONLY

    def pte_write(self, raw: int) -> bool:
        if not self.rules.write:  # 3.7-3.13: #define pte_write(pte) (!(pte_val(pte) & PTE_RDONLY))
            return not raw & PTE_RDONLY
        return bool(raw & self.rules.write)

    def pte_dirty(self, raw: int) -> bool:
        """pte_sw_dirty() || pte_hw_dirty() (4.3+: writable with DBM and not read-only)."""
        return bool(raw & PTE_DIRTY) or self._hw_dirty(raw)

    def pte_wrprotect(self, raw: int) -> int:
        r = self.rules
        if not r.write:  # PTE_BIT_FUNC(wrprotect, |= PTE_RDONLY)
            return raw | PTE_RDONLY
        if r.set_pte_at:  # clear_pte_bit(pte, PTE_WRITE), set_pte_at() sets RDONLY
            return self._set_pte_at(raw & ~r.write)
        # 4.14+: "if (pte_hw_dirty(pte)) pte = pte_mkdirty(pte)"; clear WRITE, set RDONLY
        if self._hw_dirty(raw):
            raw |= PTE_DIRTY
        return (raw & ~r.write) | PTE_RDONLY

    # In the "dirty" era (3.7-3.13) the accessors are the kernel's pure bit operations: the
    # write permission *is* PTE_RDONLY there, and set_pte_at() only adds PTE_RDONLY to clean
    # user ptes (mk_leaf() and modify() apply it). In the "dirty_write" era (3.14-4.13) PTE_RDONLY
    # is derived from PTE_DIRTY and PTE_WRITE by set_pte_at(), order-independently: the
    # accessors return what set_pte_at() would store, since the core stores their result as is.

    def pte_mkwrite(self, raw: int) -> int:
        r = self.rules
        if not r.write:  # PTE_BIT_FUNC(mkwrite, &= ~PTE_RDONLY)
            return raw & ~PTE_RDONLY
        if r.set_pte_at:
            return self._set_pte_at(raw | r.write)
        # 4.14+ pte_mkwrite(_novma): set PTE_WRITE, clear PTE_RDONLY
        return (raw | r.write) & ~PTE_RDONLY

    def pte_mkdirty(self, raw: int) -> int:
        r = self.rules
        raw |= PTE_DIRTY  # PTE_BIT_FUNC(mkdirty, |= PTE_DIRTY) / set_pte_bit(pte, PTE_DIRTY)
        if r.set_pte_at == "dirty":
            return raw
        if r.set_pte_at:
            return self._set_pte_at(raw)
        # 4.14+: if (pte_write(pte)) pte = clear_pte_bit(pte, PTE_RDONLY)
        if raw & r.write:
            raw &= ~PTE_RDONLY
        return raw

    def pte_mkyoung(self, raw: int) -> int:
        return raw | PTE_AF

    def pte_mkold(self, raw: int) -> int:  # PTE_BIT_FUNC(mkold, &= ~PTE_AF)
        return raw & ~PTE_AF


    def pte_mkspecial(self, raw: int) -> int:  # arch/arm64/include/asm/pgtable.h: PTE_SPECIAL
        return raw | PTE_SPECIAL

    def pte_special(self, raw: int) -> bool:
        return bool(raw & PTE_SPECIAL)

    # -- description --------------------------------------------------------------------------

    def describe(self, li: int, raw: int) -> EntryView:
        kind, addr, _rights = self.decoder(li)(raw)
        fmt = self.format_for(li, raw)
        # no descriptor bit says "readable": every valid entry is readable at EL1
        attrs: dict[str, bool] = {"read": bool(raw & PTE_VALID)}
        values = {
            "valid": bool(raw & PTE_VALID),
            # leaf fields
            "ap2": bool(raw & PTE_RDONLY), "ap1": bool(raw & PTE_USER), "pxn": bool(raw & PTE_PXN),
            "uxn": bool(raw & PTE_UXN), "ng": bool(raw & PTE_NG), "af": bool(raw & PTE_AF),
            "dirty": bool(raw & PTE_DIRTY), "contiguous": bool(raw & PTE_CONT), "dbm": bool(raw & PTE_DBM),
            "gp": bool(raw & PTE_GP), "special": bool(raw & PTE_SPECIAL), "page": bool(raw & PTE_TABLE_BIT),
            "table": bool(raw & PTE_TABLE_BIT),
            # table fields
            "pxn_table": bool(raw & TABLE_PXN), "uxn_table": bool(raw & TABLE_UXN),
            "ap_table0": bool(raw & TABLE_AP0), "ap_table1": bool(raw & TABLE_AP1),
        }
        for name, fld in fmt.attrs.items():
            neg = fld.startswith("!")
            v = values[fld.lstrip("!")]
            attrs[name] = not v if neg else v
        if fmt is TABLE_FORMAT:
            attrs.setdefault("global", True)
            attrs.setdefault("accessed", True)
            attrs.setdefault("dirty", False)
        # the kernel's view (software bits of the era)
        attrs["present"] = self.pte_present(raw) if (kind != TABLE) else True
        attrs["prot_none"] = bool(not raw & PTE_VALID and self.pte_present(raw))
        attrs["kernel_write"] = self.pte_write(raw) if kind == LEAF or fmt is not TABLE_FORMAT else False
        if kind not in (TABLE, LEAF):
            if fmt is TABLE_FORMAT or self._is_last(li):
                addr = raw & OA_MASK
            else:
                addr = raw & (self._block_mask[li] or OA_MASK)
        return EntryView(kind, addr, attrs)

    def looks_like_leaf(self, li: int, raw: int) -> bool:
        """An invalid or malformed entry of a level with both formats reads as a block when
        bits[1:0] == 0b01 (a block with PTE_VALID cleared, a PROT_NONE pmd)."""
        return raw & PTE_TABLE_BIT == 0

    def flag_names(self, li: int, raw: int) -> list[str]:
        """crash's arm64_translate_pte() words, in its order: VALID, FILE (kernels before
        4.0), PROT_NONE, USER, RDONLY, SHARED, AF, NG, PXN, UXN, DIRTY, SPECIAL (crash
        arm64.c; its PTE_PROT_NONE is bit 1 before 3.11, bit 2 in 3.11-3.12, bit 58 from
        3.13 -- crash has no 6.10 PTE_PRESENT_INVALID case, so it prints no PROT_NONE for
        those kernels, and neither does this)."""
        if not raw:
            return []
        r = self.rules
        crash_prot_none = r.prot_none or (PTE_SW58 if r.present_invalid else 0)
        out = []
        for name, mask in (("VALID", PTE_VALID), ("FILE", r.file), ("PROT_NONE", crash_prot_none),
                           ("USER", PTE_USER), ("RDONLY", PTE_RDONLY), ("SHARED", PTE_SHARED), ("AF", PTE_AF),
                           ("NG", PTE_NG), ("PXN", PTE_PXN), ("UXN", PTE_UXN), ("DIRTY", PTE_DIRTY),
                           ("SPECIAL", PTE_SPECIAL)):
            if mask and raw & mask:
                out.append(name)
        return out


TABLE_FORMAT = _TABLE_FMT
PAGE_FORMAT = _PAGE_FMT
BLOCK_FORMATS = {1: _BLOCK_1G_FMT, 2: _BLOCK_2M_FMT}
