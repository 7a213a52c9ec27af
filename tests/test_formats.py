"""The real x86 entry formats (construct) against the integer masks the x86 codec walks with.

For every level of every x86 paging mode, and for both of a level's formats (the table/4K
one and the large-page one where the level has one), on random raw entries: the construct
parse agrees with the codec's masks (each flag of the codec's crash flag list against its
field, the address against ``addr_mask`` / ``large_addr_mask``, the reserved fields
against ``reserved`` / ``large_reserved``), build(parse(x)) == x, the size is the entry
size, and the engine's walk over a table holding that entry goes where the construct
decode says (the next table, or the page plus the offset). The generic codec/construct
agreement of every registered arch is in the conformance suite; this is the x86 detail.

The bit positions themselves are checked against the SDM (vol. 3, 4.3-4.5) by hand.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmemu.pagetable import PageTables
from mmemu.physmem import PhysMem

fmt_2level = pytest.importorskip("mmemu_i386.formats")
fmt_pae = pytest.importorskip("mmemu_i386_pae.formats")
fmt_64 = pytest.importorskip("mmemu_x86_64.formats")

MODES = {"2-level": fmt_2level.PAGING_2LEVEL, "PAE": fmt_pae.PAGING_PAE,
         "4-level": fmt_64.PAGING_4LEVEL, "5-level": fmt_64.PAGING_5LEVEL}

# SDM bit numbers, by the names crash prints
SDM_FLAGS_32 = {"PRESENT": 0, "RW": 1, "USER": 2, "PWT": 3, "PCD": 4, "ACCESSED": 5, "DIRTY": 6, "PSE": 7,
                "GLOBAL": 8}
SDM_FLAGS_64 = {**SDM_FLAGS_32, "NX": 63}
# the construct field of each flag; bit 7 is PS in a directory entry and PAT in a PTE
FIELD = {"PRESENT": "present", "RW": "rw", "USER": "user", "PWT": "pwt", "PCD": "pcd", "ACCESSED": "accessed",
         "DIRTY": "dirty", "GLOBAL": "global", "NX": "nx"}
RESERVED_FIELDS = ("reserved", "pse36_high")  # names (prefixes) of must-be-zero fields
P, PS = 1 << 0, 1 << 7  # SDM: present, page size


def mask(lo, hi):
    return ((1 << (hi + 1)) - 1) & ~((1 << lo) - 1)


CASES = []  # (mode name, level index, large?)
for _name, _mode in MODES.items():
    for _li, _lv in enumerate(_mode.levels):
        CASES.append((_name, _li, False))
        if _lv.leaf is not None and _li < len(_mode.levels) - 1:
            CASES.append((_name, _li, True))
CASE_IDS = [f"{n}-{MODES[n].levels[li].name}-{'large' if large else 'table' if li < len(MODES[n].levels) - 1 else '4k'}"
            for n, li, large in CASES]


def case(name, li, large):
    mode = MODES[name]
    lv = mode.levels[li]
    last = li == len(mode.levels) - 1
    fmt = (lv.leaf if (large or last) else lv.table).struct
    return mode, lv, last, fmt


def bits_of(mode, li):
    """The x86 codec's masks of a level."""
    return mode.codec.bits[li]


def has_large(lv, last):
    return lv.leaf is not None and not last


def field_mask(fmt, size, field):
    """The bits a field occupies, found by building an entry with only that field set."""
    obj = _zero(fmt, size)
    if isinstance(obj[field], bool):
        obj[field] = True
    else:
        for width in range(1, 65):  # the widest all-ones value the field accepts
            try:
                fmt.build({**obj, field: (1 << width) - 1})
            except Exception:
                break
            obj[field] = (1 << width) - 1
    return int.from_bytes(fmt.build(obj), "little")


def reserved_mask(fmt, size):
    zero = fmt.parse(bytes(size))
    out = 0
    for k in zero:
        if k.startswith(RESERVED_FIELDS):
            out |= field_mask(fmt, size, k)
    return out


# -- the bit numbers, by hand --------------------------------------------------------------


@pytest.mark.parametrize("name", list(MODES))
def test_flag_bits_are_the_sdm_ones(name):
    mode = MODES[name]
    expect = SDM_FLAGS_32 if name == "2-level" else SDM_FLAGS_64
    assert dict(mode.codec.flags) == {k: 1 << b for k, b in expect.items()}
    assert mode.codec.nx == (0 if name == "2-level" else 1 << 63)


def test_level_geometry():
    geo = {name: [(lv.name, lv.shift, lv.bits, lv.entry_size, has_large(lv, li == len(m.levels) - 1))
                  for li, lv in enumerate(m.levels)] for name, m in MODES.items()}
    assert geo == {
        "2-level": [("pgd", 22, 10, 4, True), ("pte", 12, 10, 4, False)],
        "PAE": [("pgd", 30, 2, 8, False), ("pmd", 21, 9, 8, True), ("pte", 12, 9, 8, False)],
        "4-level": [("pgd", 39, 9, 8, False), ("pud", 30, 9, 8, True), ("pmd", 21, 9, 8, True),
                    ("pte", 12, 9, 8, False)],
        "5-level": [("pgd", 48, 9, 8, False), ("p4d", 39, 9, 8, False), ("pud", 30, 9, 8, True),
                    ("pmd", 21, 9, 8, True), ("pte", 12, 9, 8, False)],
    }
    assert [b.access_bits for b in MODES["PAE"].codec.bits] == [False, True, True]


# -- hand-decoded examples -----------------------------------------------------------------


def test_known_entries():
    pgd4m = fmt_2level.PAGING_2LEVEL.levels[0].leaf.struct.parse((0xC00001E3).to_bytes(4, "little"))
    assert (pgd4m.address, pgd4m.pse, pgd4m["global"], pgd4m.rw, pgd4m.user, pgd4m.present) == \
        (0xC0000000, True, True, True, False, True)
    pte = fmt_pae.PAGING_PAE.levels[2].leaf.struct.parse((0x8000000012345163).to_bytes(8, "little"))
    assert (pte.nx, pte.address, pte.pat, pte["global"], pte.dirty, pte.accessed, pte.rw, pte.present) == \
        (True, 0x12345000, False, True, True, True, True, True)
    pud1g = fmt_64.PAGING_4LEVEL.levels[1].leaf.struct.parse((0x80000000C00011E3).to_bytes(8, "little"))
    assert (pud1g.nx, pud1g.address, pud1g.pat, pud1g.pse, pud1g.reserved) == (True, 0xC0000000, True, True, 0)
    pdpte = fmt_pae.PAGING_PAE.levels[0].table.struct.parse((0x0000000001234001).to_bytes(8, "little"))
    assert (pdpte.address, pdpte.present, pdpte.pcd, pdpte.reserved_2_1) == (0x1234000, True, False, 0)


# -- the property: construct and the integer masks agree -----------------------------------


@pytest.mark.parametrize("name, li, large", CASES, ids=CASE_IDS)
def test_masks_match_the_format_fields(name, li, large):
    mode, lv, last, fmt = case(name, li, large)
    b = bits_of(mode, li)
    assert fmt.sizeof() == lv.entry_size
    rsv = reserved_mask(fmt, lv.entry_size)
    if large:
        assert rsv == b.large_reserved
    elif last or has_large(lv, last):
        assert rsv == b.reserved
    else:  # a level that never maps a page: PS is reserved too (PML4E, PML5E; the PDPTE has it in a field)
        assert rsv | PS == b.reserved | PS and b.reserved & PS
    # address fields: exactly the mask's bits, and disjoint from the reserved ones
    amask = b.large_addr_mask if large else b.addr_mask
    assert int.from_bytes(fmt.build({**_zero(fmt, lv.entry_size), "address": amask}), "little") == amask
    assert not amask & rsv
    assert amask == mask(lv.shift if large else 12, mode.pa_bits - 1)


def _zero(fmt, size):
    return {k: v for k, v in fmt.parse(bytes(size)).items() if not k.startswith("_")}


@st.composite
def raw_entries(draw, size):
    """Random entries, biased towards the interesting bits being set."""
    bits = 8 * size
    raw = draw(st.integers(0, (1 << bits) - 1))
    if draw(st.booleans()):
        raw |= 1  # present
    return raw


_ROUND = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("name, li, large", CASES, ids=CASE_IDS)
@_ROUND
@given(data=st.data())
def test_parse_agrees_with_integer_decode(name, li, large, data):
    mode, lv, last, fmt = case(name, li, large)
    b = bits_of(mode, li)
    raw = data.draw(raw_entries(lv.entry_size))
    blob = raw.to_bytes(lv.entry_size, "little")
    obj = fmt.parse(blob)
    assert fmt.build(obj) == blob
    for flag, m in mode.codec.flags:
        fld = ("pat" if (last and not large) else "pse") if flag == "PSE" else FIELD[flag]
        if fld in obj:
            assert obj[fld] is bool(raw & m), (flag, fld)
        else:  # the PDPTE: the bit is in a reserved field
            assert m & b.reserved, flag
    amask = b.large_addr_mask if large else b.addr_mask
    assert obj.address == raw & amask
    assert obj.avl == (raw >> 9) & 7
    if large:
        assert obj.pat is bool(raw & (1 << 12))  # the large-page PAT bit
    rsv = b.large_reserved if large else b.reserved
    assert construct_says_reserved(mode, lv, last, large, obj) == bool(raw & rsv)


def construct_says_reserved(mode, lv, last, large, obj) -> bool:
    """A must-be-zero field is set; PS counts as one in a level that never maps a page
    (PML4E, PML5E: the SDM reserves it there)."""
    out = any(obj[k] for k in obj if k.startswith(RESERVED_FIELDS))
    if not large and not last and not has_large(lv, last) and "pse" in obj:
        out = out or obj.pse
    return out


# -- the engine's walk goes where the format says ------------------------------------------

PAGE = 4096
ROOT = 0x1000
_MEM: dict[str, tuple[PhysMem, PageTables]] = {}


def _engine(name):
    if name not in _MEM:
        mem = PhysMem(16 * PAGE)

        def nope(*a):
            raise AssertionError("the walk allocates nothing")
        _MEM[name] = (mem, PageTables(MODES[name], mem, nope, nope))
    return _MEM[name]


def _put(mem, pa, size, value):
    mem.write(pa, value.to_bytes(size, "little"))


@pytest.mark.parametrize("name, li, large", CASES, ids=CASE_IDS)
@_ROUND
@given(data=st.data())
def test_walk_reaches_what_the_format_decodes(name, li, large, data):
    mode, lv, last, fmt = case(name, li, large)
    b = bits_of(mode, li)
    mem, pt = _engine(name)
    mem.zero(0, mem.size)
    va = data.draw(st.integers(0, (1 << mode.va_bits) - 1))
    if mode.bits64 and va >> (mode.va_bits - 1):
        va |= ((1 << 64) - 1) ^ ((1 << mode.va_bits) - 1)
    # the tables above: each entry points to the next table, with the level's user-table flags
    table = ROOT
    for k in range(li):
        up = mode.levels[k]
        nxt = ROOT + (k + 1) * PAGE
        _put(mem, table + ((va >> up.shift) & (up.entries - 1)) * up.entry_size, up.entry_size,
             nxt | bits_of(mode, k).table_user)
        table = nxt
    # the entry under test: random and present, PS as the format says, reserved bits
    # cleared (mostly) or left as drawn
    raw = data.draw(raw_entries(lv.entry_size)) | P
    keep_reserved = data.draw(st.integers(0, 3)) == 0
    if large:
        raw |= PS
    elif not last and has_large(lv, last):
        raw &= ~PS
    if not keep_reserved:
        raw &= ~(b.large_reserved if large else b.reserved)
    if not large and not last:
        raw = (raw & ~b.addr_mask) | (ROOT + 8 * PAGE)  # a table inside the emulated RAM
    _put(mem, table + ((va >> lv.shift) & (lv.entries - 1)) * lv.entry_size, lv.entry_size, raw)
    obj = fmt.parse(raw.to_bytes(lv.entry_size, "little"))

    w = pt.walk(ROOT, va)
    assert [s.raw for s in w.steps][li] == raw
    if construct_says_reserved(mode, lv, last, large, obj):
        assert w.missing == "reserved" and len(w.steps) == li + 1
        assert w.code("read") == 0x9  # P | RSVD
    elif large or last:
        assert w.missing is None
        assert w.phys == obj.address + (va & (lv.span - 1))
        assert w.page_size == lv.span
        if b.access_bits:
            assert (w.writable, w.user) == (obj.rw, obj.user)
            assert w.nx is (bool(obj.nx) if mode.codec.nx else False)
    else:
        assert w.steps[li + 1].table == obj.address
        assert w.missing == "not-present" and len(w.steps) == li + 2
