"""The arm64 codec against the construct specification, and the rights, faults and ESR
values by hand against the Arm ARM (DDI 0487) encodings."""

from __future__ import annotations

import random

import pytest

from mmemu.arch import AF_FAULT, ALL_RIGHTS, KR, KW, KX, LEAF, NONE, RESERVED, TABLE, UR, UW, UX
from mmemu.errors import MappingError
from mmemu.faults import ACCESS_FLAG, NOT_PRESENT, PROTECTION
from mmemu.faults import RESERVED as RESERVED_KIND
from mmemu.faults import Fault
from mmemu.layout import MachineSpec
from mmemu_arm64 import ARCH
from mmemu_arm64.formats import (PA_BITS, PTE_AF, PTE_NG, PTE_PXN, PTE_RDONLY, PTE_USER, PTE_UXN,
                                 TABLE_AP0, TABLE_AP1, TABLE_PXN, TABLE_UXN, bits)
from mmemu_arm64.prot import pgprots

MASK64 = (1 << 64) - 1
ERAS = ["3.7", "3.11", "3.14", "3.17", "4.6", "4.14", "5.4", "5.13", "6.6", "6.10"]


def mode(kernel="6.6", va="48"):
    return ARCH.paging(MachineSpec.make("arm64", kernel=kernel, ram="1G", options={"va_bits": va}))


MODES = [mode("6.6", "48"), mode("6.6", "39"), mode("3.7", "39"), mode("4.14", "48"), mode("6.10", "48")]


def field_value(parsed, name: str) -> bool:
    neg = name.startswith("!")
    v = bool(parsed[name.lstrip("!")])
    return not v if neg else v


def random_entries(rng: random.Random, n: int):
    """Random 64-bit entries biased to each descriptor type, with in-range addresses."""
    for _ in range(n):
        raw = rng.getrandbits(64)
        choice = rng.random()
        if choice < 0.7:  # keep the output address inside the CPU's PA range most of the time
            raw &= ~bits(PA_BITS, 47)
        if choice < 0.35:
            raw = (raw & ~3) | 3
        elif choice < 0.6:
            raw = (raw & ~3) | 1
        yield raw


@pytest.mark.parametrize("pm", MODES, ids=lambda m: m.name)
def test_codec_agrees_with_the_construct_structs(pm):
    """Every attribute of every EntryFormat equals its field; the decoder's address equals
    the construct address field; build(parse(x)) == x."""
    rng = random.Random(1234)
    codec = pm.codec
    for li, lv in enumerate(pm.levels):
        decode = codec.decoder(li)
        for raw in random_entries(rng, 400):
            data = raw.to_bytes(8, "little")
            kind, addr, _rights = decode(raw)
            fmt = codec.format_for(li, raw)
            parsed = fmt.struct.parse(data)
            assert fmt.struct.build(parsed) == data
            view = codec.describe(li, raw)
            for attr, fld in fmt.attrs.items():
                assert view.attrs[attr] == field_value(parsed, fld), (lv.name, hex(raw), attr)
            if kind == TABLE:
                assert fmt is lv.table and addr == parsed.address
            elif kind == LEAF:
                assert fmt is lv.leaf and addr == parsed.address
            for name in ("valid", "read", "write", "exec", "user", "global", "accessed", "dirty"):
                assert name in view.attrs


@pytest.mark.parametrize("pm", MODES, ids=lambda m: m.name)
def test_mk_leaf_and_mk_table_parse_back(pm):
    rng = random.Random(99)
    codec = pm.codec
    prot = ARCH.pgprot["PAGE_KERNEL"]
    for li, lv in enumerate(pm.levels):
        for _ in range(200):
            frame = rng.randrange(0, 1 << (PA_BITS - 12)) << 12
            if lv.table is not None:
                raw = codec.mk_table(li, frame, user=rng.random() < 0.5)
                kind, addr, _ = codec.decoder(li)(raw)
                assert kind == TABLE and addr == frame
                assert lv.table.struct.parse(raw.to_bytes(8, "little")).address == frame
            if lv.leaf is not None:
                pa = frame & ~(lv.span - 1)
                raw = codec.mk_leaf(li, pa, prot)
                kind, addr, rights = codec.decoder(li)(raw)
                assert kind == LEAF and addr == pa
                assert lv.leaf.struct.parse(raw.to_bytes(8, "little")).address == pa
                assert codec.leaf_prot(li, raw) == prot
                assert rights == KR | KW  # PAGE_KERNEL: PXN, UXN, AP=00, AF set


def test_levels_and_arm_level_numbers():
    m48, m39 = mode("6.6", "48"), mode("6.6", "39")
    assert [lv.name for lv in m48.levels] == ["pgd", "pud", "pmd", "pte"]
    assert [lv.shift for lv in m48.levels] == [39, 30, 21, 12]
    assert [lv.name for lv in m39.levels] == ["pgd", "pmd", "pte"]
    assert m39.levels[0].display_names == ("pgd", "p4d", "pud")
    assert [lv.shift for lv in m39.levels] == [30, 21, 12]
    assert m48.levels[0].leaf is None  # no blocks at ARM level 0 with a 4 KiB granule
    assert m48.leaf_sizes() == (1 << 30, 2 << 20, 4096) == m39.leaf_sizes()
    assert m48.form == "split" and m48.pa_bits == 44
    assert m48.kernel_half == 0xFFFF000000000000 and m39.kernel_half == 0xFFFFFF8000000000


def test_invalid_descriptors_are_translation_faults():
    m48 = mode("6.6", "48")
    c = m48.codec
    page = 0x40000000
    # ARM level 0: 0b01 is not a block with a 4 KiB granule -> translation fault (NONE)
    assert c.decoder(0)(page | 1)[0] == NONE
    assert c.decoder(0)(page | 3)[0] == TABLE
    # level 3: 0b01 is reserved, "behaves as invalid" -> NONE; 0b11 is a page
    assert c.decoder(3)(page | 1 | PTE_AF)[0] == NONE
    assert c.decoder(3)(page | 3 | PTE_AF)[0] == LEAF
    # bit 0 clear: invalid at every level, whatever else is set (a PROT_NONE pte)
    for li in range(4):
        assert c.decoder(li)(page | 2 | (1 << 58))[0] == NONE
        assert c.decoder(li)(0)[0] == NONE
    # levels 1 and 2: 0b01 is a block
    assert c.decoder(1)((1 << 30) | 1 | PTE_AF)[:2] == (LEAF, 1 << 30)
    assert c.decoder(2)((2 << 20) | 1 | PTE_AF)[:2] == (LEAF, 2 << 20)
    # an output address beyond the 44-bit PA range: address size fault (RESERVED)
    assert c.decoder(3)((1 << 45) | 3 | PTE_AF)[0] == RESERVED
    assert c.decoder(0)((1 << 46) | 3)[0] == RESERVED


def rights_of(raw: int, li: int = 3, m=None) -> int:
    m = m or mode("6.6", "48")
    kind, _addr, rights = m.codec.decoder(li)(raw)
    assert kind == LEAF
    return rights


def test_rights_by_ap_uxn_pxn():
    """Arm ARM D5.4, stage 1 EL1&0 permissions without PAN (ARMv8.0), WXN off."""
    base = 0x41000000 | 3 | PTE_AF
    ap = {0b00: 0, 0b01: PTE_USER, 0b10: PTE_RDONLY, 0b11: PTE_USER | PTE_RDONLY}
    # AP=00: EL1 RW; EL0 none; both may execute (EL0 execute-only!)
    assert rights_of(base | ap[0b00]) == KR | KW | KX | UX
    # AP=01: EL1 RW, EL0 RW; implicit PXN: EL1 may not execute an EL0-writable page
    assert rights_of(base | ap[0b01]) == KR | KW | UR | UW | UX
    # AP=10: EL1 RO, EL0 none
    assert rights_of(base | ap[0b10]) == KR | KX | UX
    # AP=11: RO at both
    assert rights_of(base | ap[0b11]) == KR | KX | UR | UX
    # UXN / PXN
    assert rights_of(base | ap[0b11] | PTE_UXN) == KR | KX | UR
    assert rights_of(base | ap[0b11] | PTE_PXN) == KR | UR | UX
    assert rights_of(base | ap[0b01] | PTE_PXN | PTE_UXN) == KR | KW | UR | UW
    # the kernel's protections
    p = pgprots("6.6")
    assert rights_of(0x41000000 | p["PAGE_KERNEL"]) == KR | KW
    assert rights_of(0x41000000 | p["PAGE_KERNEL_RO"]) == KR
    assert rights_of(0x41000000 | p["PAGE_KERNEL_ROX"]) == KR | KX
    assert rights_of(0x41000000 | p["PAGE_KERNEL_EXEC"]) == KR | KW | KX
    assert rights_of(0x41000000 | p["PAGE_READONLY_EXEC"]) == KR | UR | UX
    assert rights_of(0x41000000 | p["PAGE_SHARED"]) == KR | UR  # clean: RDONLY until the write fault


def test_access_flag_clear_adds_af_fault():
    r = rights_of(0x41000000 | 3 | PTE_USER | PTE_RDONLY)  # AF clear
    assert r & AF_FAULT and r & ~AF_FAULT == KR | KX | UR | UX
    m39 = mode("6.6", "39")
    assert m39.codec.decoder(0)((1 << 30) | 1)[2] & AF_FAULT  # a 1 GiB block without AF


def test_table_attributes_restrict_the_levels_below():
    c = mode("6.6", "48").codec
    t = 0x42000000 | 3
    assert c.decoder(1)(t)[2] == ALL_RIGHTS
    assert c.decoder(1)(t | TABLE_PXN)[2] == ALL_RIGHTS & ~KX
    assert c.decoder(1)(t | TABLE_UXN)[2] == ALL_RIGHTS & ~UX
    assert c.decoder(1)(t | TABLE_AP0)[2] == ALL_RIGHTS & ~(UR | UW)
    assert c.decoder(1)(t | TABLE_AP1)[2] == ALL_RIGHTS & ~(KW | UW)
    # 5.13+: user tables carry PXNTable, kernel tables UXNTable (pgalloc.h __pmd_populate)
    assert c.mk_table(2, 0x43000000, user=True) == 0x43000000 | 3 | TABLE_PXN
    assert c.mk_table(2, 0x43000000, user=False) == 0x43000000 | 3 | TABLE_UXN
    old = mode("5.4", "48").codec
    assert old.mk_table(2, 0x43000000, user=True) == 0x43000000 | 3


def F(access, user, kind, level, address=0x1000):
    return Fault(address=address, access=access, user=user, kind=kind, level=level)


def test_esr_values_by_hand():
    """ESR_ELx: EC [31:26], IL [25], ISS: WnR [6], DFSC/IFSC [5:0] (Arm ARM D17.2.37)."""
    c48 = mode("6.6", "48").codec
    c39 = mode("6.6", "39").codec
    # EL1 read, level 0 translation fault (48-bit NULL dereference): 0x96000004
    assert c48.fault_code(F("read", False, NOT_PRESENT, 0)) == 0x96000004
    # the same on 39 bits: the walk stops at index 0 = ARM level 1: 0x96000005
    assert c39.fault_code(F("read", False, NOT_PRESENT, 0)) == 0x96000005
    # EL1 write, level 3 translation fault: WnR: 0x96000047
    assert c48.fault_code(F("write", False, NOT_PRESENT, 3)) == 0x96000047
    # EL1 write to a read-only page, level 3 permission fault: 0x9600004f
    assert c48.fault_code(F("write", False, PROTECTION, 3)) == 0x9600004F
    # EL0 read of a level 3 page with AF clear: DABT lower EL, access flag fault L3: 0x9200000b
    assert c48.fault_code(F("read", True, ACCESS_FLAG, 3)) == 0x9200000B
    # EL0 write, level 3 permission: 0x9200004f
    assert c48.fault_code(F("write", True, PROTECTION, 3)) == 0x9200004F
    # EL0 instruction fetch, level 2 translation: IABT lower EL (0x20): 0x82000006
    assert c48.fault_code(F("exec", True, NOT_PRESENT, 2)) == 0x82000006
    # EL1 instruction fetch from a PXN page at level 3: IABT current EL (0x21): 0x8600000f
    assert c48.fault_code(F("exec", False, PROTECTION, 3)) == 0x8600000F
    # address size fault at level 1 (index 1 on 48 bits): FSC 0b000001
    assert c48.fault_code(F("read", False, RESERVED_KIND, 1)) == 0x96000001
    # 39-bit: index 2 is ARM level 3
    assert c39.fault_code(F("read", True, NOT_PRESENT, 2)) == 0x92000007


def test_an_esr_reads_back_as_the_fault_it_encodes():
    """fault_from_esr() is fault_code()'s inverse for every abort of the tables (the ESR and
    FAR kept as the fault's code and address), and refuses what is not one."""
    for va in ("48", "39"):
        c = mode("6.6", va).codec
        for kind in (NOT_PRESENT, PROTECTION, ACCESS_FLAG, RESERVED_KIND):
            for access in ("read", "write", "exec"):
                for user in (False, True):
                    for level in range(c.nlevels):
                        f = F(access, user, kind, level, address=0xFFFF000012345678)
                        esr = c.fault_code(f)
                        back = c.fault_from_esr(esr, f.address)
                        assert (back.address, back.access, back.user, back.kind, back.level, back.code) == \
                            (f.address, access, user, kind, level, esr), (va, f, back)
    # a level 0 translation fault on 39 bits (outside both TTBRs' ranges): index 0, the ESR kept
    back = mode("6.6", "39").codec.fault_from_esr(0x96000004, 0x0000800000000000)
    assert (back.kind, back.level, back.code, back.user) == (NOT_PRESENT, 0, 0x96000004, False)
    c = mode().codec
    assert c.fault_from_esr(0x96000021, 0x1001) is None  # alignment fault (DABT, FSC 0b100001)
    assert c.fault_from_esr(0x92000010, 0x1000) is None  # synchronous external abort
    assert c.fault_from_esr(0x56000000, 0) is None  # SVC from AArch64 (EC 0x15)


def test_check_prot():
    c = mode().codec
    for name, prot in ARCH.pgprot.items():
        c.check_prot(prot)
    with pytest.raises(MappingError):
        c.check_prot(ARCH.pgprot["PAGE_KERNEL"] | 0x1000)
    with pytest.raises(MappingError):
        c.check_prot((ARCH.pgprot["PAGE_KERNEL"] & ~3) | 1)


@pytest.mark.parametrize("kernel", ERAS)
def test_pte_accessors_of_each_era(kernel):
    m = mode(kernel, "39")
    c = m.codec
    p = pgprots(kernel)
    pa = 0x45000000
    none = c.pfn_pte(pa >> 12, p["PAGE_NONE"])
    assert c.pte_present(none) and c.decoder(2)(none)[0] == NONE  # present for the kernel, invalid for the MMU
    assert c.pte_pfn(none) == pa >> 12
    ro = c.pfn_pte(pa >> 12, p["PAGE_READONLY"])
    assert c.pte_present(ro) and not rights_of(ro, 2, m) & UW
    # private writable (PAGE_COPY) is read-only until the COW break makes it writable and dirty
    cow = c.pfn_pte(pa >> 12, p["PAGE_COPY"])
    assert not rights_of(cow, 2, m) & UW
    shared = c.pfn_pte(pa >> 12, p["PAGE_SHARED"])
    # 3.7-3.13: set_pte_at() write-protects a clean user pte, and pte_write() is !PTE_RDONLY
    assert c.pte_write(shared) == bool(c.rules.write)
    assert not rights_of(shared, 2, m) & UW  # clean shared page: RDONLY until the first write
    dirty = c.pte_mkdirty(c.pte_mkwrite(shared))
    assert rights_of(dirty, 2, m) & UW and c.pte_write(dirty) and c.pte_dirty(dirty)
    back = c.pte_wrprotect(dirty)
    assert not c.pte_write(back) and not rights_of(back, 2, m) & UW
    assert c.pte_mkyoung(shared & ~PTE_AF) & PTE_AF
    # pte_modify to PAGE_NONE keeps the frame and makes the entry invalid but present
    mod = c.modify(2, dirty, p["PAGE_NONE"])
    assert c.pte_present(mod) and c.decoder(2)(mod)[0] == NONE and c.pte_pfn(mod) == pa >> 12


def test_prot_none_marker_by_era():
    """PTE_PROT_NONE: bit 1 (3.7-3.10), bit 2 (3.11-3.12), bit 58 (3.13-6.9, crash arm64.c);
    6.10: PTE_PRESENT_INVALID = PTE_NG, only with PTE_VALID clear."""
    assert pgprots("3.7")["PAGE_NONE"] & (1 << 1)
    assert pgprots("3.11")["PAGE_NONE"] & (1 << 2)
    assert pgprots("4.14")["PAGE_NONE"] & (1 << 58)
    assert not pgprots("6.10")["PAGE_NONE"] & (1 << 58) and pgprots("6.10")["PAGE_NONE"] & PTE_NG
    c610 = mode("6.10", "48").codec
    # (pte & (PTE_VALID | PTE_PRESENT_INVALID)) == PTE_PRESENT_INVALID -> present
    assert c610.pte_present(0x41000000 | PTE_NG | 2) is True
    assert c610.pte_present(0x41000000 | 2) is False
    assert mode("5.4", "48").codec.pte_present(0x41000000 | PTE_NG | 2) is False
    assert mode("5.4", "48").codec.pte_present(0x41000000 | (1 << 58)) is True


def test_flag_names_are_cashs():
    c = mode("6.6", "48").codec
    raw = 0x41000000 | pgprots("6.6")["PAGE_KERNEL"]
    assert c.flag_names(3, raw) == ["VALID", "SHARED", "AF", "PXN", "UXN"]
    user = c.pte_mkdirty(c.pte_mkwrite(0x41000000 | pgprots("6.6")["PAGE_SHARED"]))
    assert c.flag_names(3, user) == ["VALID", "USER", "SHARED", "AF", "NG", "PXN", "UXN", "DIRTY"]
    assert c.flag_names(3, 0) == []
    none = 0x41000000 | pgprots("5.4")["PAGE_NONE"]
    assert "PROT_NONE" in mode("5.4", "48").codec.flag_names(3, none)


@pytest.mark.parametrize("kernel", ERAS)
@pytest.mark.parametrize("va", ["39", "48"])
def test_pfn_pte_is_mk_leaf_of_the_last_level(kernel, va):
    """pfn_pte, made in one step for the demand fault, is mk_leaf of the last level (pfn_pte
    then set_pte_at()) for every protection of every era, kernel and user, and for the
    protections the fault path derives from them (pte_mkdirty, pte_mkwrite)."""
    c = mode(kernel, va).codec
    last = c.nlevels - 1
    for pa in (0x45000000, 0x40001000, (1 << 40) - 4096):
        for prot in pgprots(kernel).values():
            if prot & 3 == 1:  # a block-form protection: no pte of it
                continue
            assert c.pfn_pte(pa >> 12, prot) == c.mk_leaf(last, pa, prot), (hex(pa), hex(prot))
            for derived in (c.pte_mkdirty(prot), c.pte_mkwrite(prot), c.pte_mkwrite(c.pte_mkdirty(prot))):
                assert c.pfn_pte(pa >> 12, derived) == c.mk_leaf(last, pa, derived)
