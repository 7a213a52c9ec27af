"""The codec against the construct structs, and the RISC-V page-walk rules by hand.

The rules checked by hand are the privileged specification's (Sv39/Sv48/Sv57 "Virtual Address
Translation Process") as the emulated CPU applies them (/work/shared/unicorn-riscv-arm64 A3:
'W=1,R=0 (reserved) -> 13', 'S load from U page, SUM=0 -> 13', 'U load from non-U page -> 13',
'S exec from RW page -> 12', 'PTE with A=0,D=0: no fault', 'a misaligned gigapage gives fault 13').
"""

from __future__ import annotations

import random

import pytest

from mmemu.arch import ALL_RIGHTS, KR, KW, KX, LEAF, NONE, RESERVED, SIGN_EXTENDED, TABLE, UR, UW, UX
from mmemu.errors import MappingError
from mmemu.faults import Fault
from mmemu_riscv64.formats import PA_BITS, PTE_STRUCT, paging_mode
from mmemu_riscv64.pgtable_bits import (_PAGE_ACCESSED, _PAGE_DIRTY, _PAGE_EXEC, _PAGE_GLOBAL, _PAGE_PRESENT,
                                        _PAGE_READ, _PAGE_USER, _PAGE_WRITE, pgprots)

MODES = [paging_mode(m, pn) for m in ("sv39", "sv48", "sv57") for pn in (_PAGE_READ, _PAGE_GLOBAL)]
V, R, W, X, U, G, A, D = (_PAGE_PRESENT, _PAGE_READ, _PAGE_WRITE, _PAGE_EXEC, _PAGE_USER, _PAGE_GLOBAL,
                          _PAGE_ACCESSED, _PAGE_DIRTY)


def _raws(rng: random.Random, n: int) -> list[int]:
    """Random PTEs, biased towards the interesting ones: valid, R/W/X combinations, high
    bits sometimes set, PPNs sometimes aligned."""
    out = []
    for _ in range(n):
        raw = rng.getrandbits(64)
        choice = rng.random()
        if choice < 0.5:
            raw &= (1 << 54) - 1  # no reserved high bits
        if choice < 0.25:
            raw &= ~((1 << 28) - 1 << 10)  # a PPN aligned for a large page
        if rng.random() < 0.7:
            raw |= V
        out.append(raw)
    return out + [0, V, V | R, V | W, V | X, V | W | X, V | R | W | X | U, 1 << 63, (1 << 54) - 1]


def _field(parsed, spec: str) -> bool:
    if spec.startswith("!"):
        return not bool(parsed[spec[1:]])
    return bool(parsed[spec])


@pytest.mark.parametrize("mode", MODES, ids=lambda m: f"{m.name}-{m.codec.prot_none:#x}")
def test_codec_agrees_with_construct(mode):
    rng = random.Random(hash(mode.name) & 0xFFFF)
    codec = mode.codec
    for li, lv in enumerate(mode.levels):
        decode = codec.decoder(li)
        for raw in _raws(rng, 400):
            data = raw.to_bytes(8, "little")
            parsed = PTE_STRUCT.parse(data)
            assert PTE_STRUCT.build(parsed) == data  # build(parse(x)) == x
            view = codec.describe(li, raw)
            fmt = codec.format_for(li, raw)
            for attr, spec in fmt.attrs.items():
                assert view.attrs[attr] == _field(parsed, spec), (mode.name, li, hex(raw), attr)
            kind, addr, _rights = decode(raw)
            assert view.kind == kind
            if kind in (TABLE, LEAF):
                assert addr == parsed.address, (mode.name, li, hex(raw))
                assert view.addr == parsed.address


@pytest.mark.parametrize("mode", MODES[::2], ids=lambda m: m.name)
def test_mk_leaf_and_mk_table_parse_back(mode):
    rng = random.Random(7)
    codec = mode.codec
    prot = pgprots("6.6")["PAGE_KERNEL"]
    for li, lv in enumerate(mode.levels):
        decode = codec.decoder(li)
        for _ in range(200):
            frame = rng.getrandbits(PA_BITS - 12) << 12
            if lv.table is not None:
                t = codec.mk_table(li, frame, user=bool(rng.getrandbits(1)))
                assert PTE_STRUCT.parse(t.to_bytes(8, "little")).address == frame
                assert decode(t) == (TABLE, frame, ALL_RIGHTS)
            page = frame & ~(lv.span - 1)
            leaf = codec.mk_leaf(li, page, prot)
            assert PTE_STRUCT.parse(leaf.to_bytes(8, "little")).address == page
            kind, addr, rights = decode(leaf)
            assert (kind, addr) == (LEAF, page)
            assert rights == KR | KW
            assert codec.leaf_prot(li, leaf) == prot
            # leaf_run is linear in the physical address
            if page + 3 * lv.span <= 1 << PA_BITS:
                run = codec.leaf_run(li, page, 3, prot)
                assert [decode(e)[1] for e in run] == [page + i * lv.span for i in range(3)]


def test_geometry():
    m39, m48, m57 = (paging_mode(m, _PAGE_GLOBAL) for m in ("sv39", "sv48", "sv57"))
    assert [lv.name for lv in m39.levels] == ["pgd", "pmd", "pte"]
    assert m39.levels[0].display_names == ("pgd", "p4d", "pud")
    assert [lv.name for lv in m48.levels] == ["pgd", "pud", "pmd", "pte"]
    assert [lv.name for lv in m57.levels] == ["pgd", "p4d", "pud", "pmd", "pte"]
    assert (m39.va_bits, m48.va_bits, m57.va_bits) == (39, 48, 57)
    assert all(m.form == SIGN_EXTENDED and m.pa_bits == 56 for m in (m39, m48, m57))
    # leaves at every level: 4K, 2M, 1G (Sv39), + 512G (Sv48), + 256T (Sv57)
    assert m39.leaf_sizes() == (1 << 30, 1 << 21, 1 << 12)
    assert m48.leaf_sizes() == (1 << 39, 1 << 30, 1 << 21, 1 << 12)
    assert m57.leaf_sizes() == (1 << 48, 1 << 39, 1 << 30, 1 << 21, 1 << 12)
    assert m39.kernel_half == 0xFFFFFFC000000000
    assert not m39.is_valid(0x0000004000000000) and m39.is_valid(0xFFFFFFC000000000)


def test_entry_kinds_and_rights_by_hand():
    codec = paging_mode("sv39", _PAGE_GLOBAL).codec
    pte, pmd, pgd = codec.decoder(2), codec.decoder(1), codec.decoder(0)
    frame = 0x80200 << 10
    # V=0: nothing, whatever else is set (PROT_NONE, swap entries)
    assert pte(frame | R | W)[0] == NONE
    assert pte(0)[0] == NONE
    # a pointer: V alone; at the last level it is reserved
    assert pgd(frame | V) == (TABLE, 0x80200000, ALL_RIGHTS)
    assert pmd(frame | V)[0] == TABLE
    assert pte(frame | V)[0] == RESERVED
    # W without R is reserved, with or without X, at any level
    for dec in (pte, pmd, pgd):
        assert dec(frame | V | W)[0] == RESERVED
        assert dec(frame | V | W | X)[0] == RESERVED
    # kernel pages: rights from R/W/X; no user rights
    assert pte(frame | V | R | W | A | D | G) == (LEAF, 0x80200000, KR | KW)
    assert pte(frame | V | R | X)[2] == KR | KX
    assert pte(frame | V | X)[2] == KX  # execute-only: MXR=0, no read
    # user pages: user rights only (SUM=0: the kernel may not touch them)
    assert pte(frame | V | R | W | U)[2] == UR | UW
    assert pte(frame | V | R | X | U)[2] == UR | UX
    # A and D clear do not fault: the rights are the same
    assert pte(frame | V | R)[2] == pte(frame | V | R | A | D)[2] == KR
    # superpages must be aligned: a 2 MiB leaf with PPN[0] != 0, a 1 GiB one with PPN[1:0] != 0
    assert pmd((0x80201 << 10) | V | R)[0] == RESERVED
    assert pmd((0x80200 << 10) | V | R) == (LEAF, 0x80200000, KR)
    assert pgd((0x80200 << 10) | V | R)[0] == RESERVED
    assert pgd((0x80000 << 10) | V | R) == (LEAF, 0x80000000, KR)
    # bits 63..54 are reserved (no Svpbmt, no Svnapot on the emulated CPU)
    assert pte(frame | V | R | (1 << 63))[0] == RESERVED
    assert pte(frame | V | R | (1 << 54))[0] == RESERVED
    assert pgd(frame | V | (1 << 61))[0] == RESERVED
    # the RSW bits are free
    assert pte(frame | V | R | (3 << 8))[0] == LEAF


def test_prot_none_is_present_for_mm_but_not_for_the_mmu():
    for version, bit in (("5.10", _PAGE_READ), ("6.6", _PAGE_GLOBAL)):
        codec = paging_mode("sv39", bit).codec
        none = pgprots(version)["PAGE_NONE"]
        raw = codec.pfn_pte(0x80300, none)
        assert codec.decoder(2)(raw)[0] == NONE
        assert codec.pte_present(raw)
        assert not codec.pte_present(codec.pfn_pte(0x80300, 0) | (1 << 6))  # a swap-like entry


def test_fault_codes_are_scause():
    codec = paging_mode("sv48", _PAGE_GLOBAL).codec
    assert codec.fault_code(Fault(0x1000, "exec", True)) == 12  # instruction page fault
    assert codec.fault_code(Fault(0x1000, "read", False)) == 13  # load page fault
    assert codec.fault_code(Fault(0x1000, "write", False, kind="protection")) == 15  # store/AMO page fault


def test_pte_accessors_and_prot_checks():
    codec = paging_mode("sv39", _PAGE_GLOBAL).codec
    raw = codec.pfn_pte(0x81234, pgprots("6.6")["PAGE_READ"])
    assert codec.pte_pfn(raw) == 0x81234
    assert not codec.pte_write(raw) and codec.pte_write(codec.pte_mkwrite(raw))
    assert codec.pte_wrprotect(codec.pte_mkwrite(raw)) == raw
    assert codec.pte_mkdirty(raw) & D and codec.pte_mkyoung(raw) & A
    # pte_modify keeps A, D (and the RSW bits): _PAGE_CHG_MASK
    young = codec.pte_mkdirty(raw) | A
    changed = codec.modify(2, young, pgprots("6.6")["PAGE_WRITE"])
    assert changed & D and changed & W and codec.pte_pfn(changed) == 0x81234
    assert codec.flag_names(2, V | R | W | A | D | (1 << 8)) == ["PRESENT", "READ", "WRITE", "ACCESSED", "DIRTY",
                                                                 "SOFT"]
    for bad in (V, V | W, 1 << 12, 1 << 63, -1):
        with pytest.raises(MappingError):
            codec.check_prot(bad)
    for good in pgprots("6.6").values():
        if good != V:  # PAGE_TABLE is a table's protection
            codec.check_prot(good)
