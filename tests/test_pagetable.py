"""The page-table engine (mmemu.pagetable) on the toy modes of tests/toyarch.py.

Expectations are raw entry values worked out by hand from the x86 entry layout (address
bits | flag bits), read back from emulated RAM by hand (``ToyMachine.u64`` and
``entry_addr``), not through the engine's own decoders; walks are checked against the
SDM's rules (RW and US anded over the levels, XD ored, reserved bits only in present
entries) and the #PF error code of arch/x86/include/asm/trap_pf.h.
"""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmemu.errors import AddressError, MappingError, OutOfMemory
from mmemu.pagetable import PageTables
from mmemu.testing import check_addr_mask

try:
    from toyarch import (
        KERNPG_TABLE,
        NX,
        PAGE,
        PAGE_KERNEL,
        PAGE_KERNEL_EXEC,
        PAGE_KERNEL_RO,
        PAGE_READONLY,
        PAGE_SHARED,
        PAGE_TABLE,
        PAT_PTE,
        PCD,
        PS,
        PWT,
        RW,
        TOY,
        TOY3,
        TOY48,
        TOY_NONX,
        US,
        A,
        D,
        G,
        GiB,
        MiB,
        P,
        ToyMachine,
    )
except ImportError:  # tests/ made a package
    from tests.toyarch import (
        KERNPG_TABLE,
        NX,
        PAGE,
        PAGE_KERNEL,
        PAGE_KERNEL_EXEC,
        PAGE_KERNEL_RO,
        PAGE_READONLY,
        PAGE_SHARED,
        PAGE_TABLE,
        PAT_PTE,
        PCD,
        PS,
        PWT,
        RW,
        TOY,
        TOY3,
        TOY48,
        TOY_NONX,
        US,
        A,
        D,
        G,
        GiB,
        MiB,
        P,
        ToyMachine,
    )

M2 = 2 * MiB
ADDR = ((1 << 40) - 1) & ~0xFFF


@pytest.fixture
def m():
    return ToyMachine(TOY)


def leaves(m, start=0, end=None):
    return [(va, size, phys) for va, size, phys, _raw, _li in m.pt.iter_leaves(m.root, start, end)]


def pte_values(m, table):
    return [m.u64(table + 8 * i) for i in range(512)]


def walk_state(m, va):
    w = m.pt.walk(m.root, va)
    return w.phys, w.page_size, w.writable, w.user, w.nx, w.missing


def reachable_tables(m):
    """Every table reachable from the root, followed by hand."""
    found = {m.root}
    todo = [(m.root, 0)]
    while todo:
        table, li = todo.pop()
        lv = m.mode.levels[li]
        if li == len(m.mode.levels) - 1:
            continue
        for i in range(lv.entries):
            raw = m.u64(table + 8 * i)
            if raw & P and not (lv.leaf is not None and raw & PS):
                found.add(raw & ADDR)
                todo.append((raw & ADDR, li + 1))
    return found


def assert_no_leak(m):
    """The engine's table records, the allocator's page-table frames and the tables the
    root reaches are one and the same set."""
    allocated = {p.phys for p in m.frames.allocated.values() if p.owner.startswith("page table")}
    assert set(m.pt.tables) == reachable_tables(m) == allocated


# -- map and walk --------------------------------------------------------------------------


def test_map_4k_and_walk(m):
    va, pa = 0x3FE01000, 0x12345000  # pmd index 511, pte index 1
    op = m.pt.map(m.root, va, pa, PAGE, PAGE_KERNEL, writer="test")
    assert (op.kind, op.va, op.size, op.writer) == ("map", va, PAGE, "test")
    (t,) = op.tables_allocated
    assert m.u64(m.root + 8 * 511) == t | KERNPG_TABLE
    assert m.u64(t + 8 * 1) == pa | PAGE_KERNEL
    assert sum(1 for v in pte_values(m, t) if v) == 1
    w = m.pt.walk(m.root, va + 0x234)
    assert (w.phys, w.page_size, w.writable, w.user, w.nx, w.missing, w.mapped) == \
        (pa + 0x234, PAGE, True, False, True, None, True)
    assert [(s.level.name, s.table, s.index, s.entry_addr, s.raw) for s in w.steps] == [
        ("pmd", m.root, 511, m.root + 8 * 511, t | KERNPG_TABLE), ("pte", t, 1, t + 8, pa | PAGE_KERNEL)]
    assert w.leaf.raw == pa | PAGE_KERNEL
    # the next page: the pte is empty; the pmd below: the walk stops at the pmd
    w = m.pt.walk(m.root, va + PAGE)
    assert (w.phys, w.missing, len(w.steps), w.leaf) == (None, "not-present", 2, None)
    w = m.pt.walk(m.root, va - M2)
    assert (w.phys, w.missing, [s.index for s in w.steps]) == (None, "not-present", [510])


def test_large_page_when_both_addresses_aligned(m):
    op = m.pt.map(m.root, 0x200000, 0x40000000, M2, PAGE_KERNEL, writer="t")
    assert op.tables_allocated == []
    assert m.u64(m.root + 8) == 0x40000000 | PAGE_KERNEL | PS
    w = m.pt.walk(m.root, 0x2ABCDE)
    assert (w.phys, w.page_size, len(w.steps), w.writable, w.nx) == (0x400ABCDE, M2, 1, True, True)
    assert leaves(m) == [(0x200000, M2, 0x40000000)]


def test_no_large_page_when_phys_misaligned(m):
    op = m.pt.map(m.root, 0x200000, 0x40001000, M2, PAGE_KERNEL, writer="t")
    (t,) = op.tables_allocated
    assert m.u64(m.root + 8) == t | KERNPG_TABLE
    assert pte_values(m, t) == [(0x40001000 + k * PAGE) | PAGE_KERNEL for k in range(512)]


def test_no_large_page_when_virt_misaligned(m):
    m.pt.map(m.root, 0x201000, 0x40000000, M2, PAGE_KERNEL, writer="t")
    got = leaves(m)
    assert got == [(0x201000 + k * PAGE, PAGE, 0x40000000 + k * PAGE) for k in range(512)]


def test_mixed_sizes_follow_alignment(m):
    m.pt.map(m.root, 0x1FF000, 0x401FF000, M2 + 2 * PAGE, PAGE_KERNEL, writer="t")
    assert leaves(m) == [(0x1FF000, PAGE, 0x401FF000), (0x200000, M2, 0x40200000), (0x400000, PAGE, 0x40400000)]
    assert m.u64(m.root + 8) == 0x40200000 | PAGE_KERNEL | PS


def test_run_of_large_pages_and_tail(m):
    m.pt.map(m.root, 0, 0, 3 * M2 + 5 * PAGE, PAGE_KERNEL_EXEC, writer="direct")
    assert leaves(m) == [(0, M2, 0), (M2, M2, M2), (2 * M2, M2, 2 * M2)] + \
        [(3 * M2 + k * PAGE, PAGE, 3 * M2 + k * PAGE) for k in range(5)]
    assert [m.u64(m.root + 8 * i) for i in range(3)] == [i * M2 | PAGE_KERNEL_EXEC | PS for i in range(3)]


def test_page_sizes_4k_only(m):
    m.pt.map(m.root, 0x200000, 0x40000000, M2, PAGE_KERNEL, writer="t", page_sizes=(PAGE,))
    assert len(leaves(m)) == 512 and all(size == PAGE for _, size, _ in leaves(m))
    assert not m.u64(m.root + 8) & PS


def test_page_sizes_large_only_still_uses_4k_for_edges(m):
    m.pt.map(m.root, 0x1FF000, 0x1FF000, M2 + PAGE, PAGE_KERNEL, writer="t", page_sizes=(M2,))
    assert leaves(m) == [(0x1FF000, PAGE, 0x1FF000), (0x200000, M2, 0x200000)]


def test_page_sizes_choose_among_several_large_sizes():
    m = ToyMachine(TOY48)
    m.pt.map(m.root, GiB, GiB, GiB, PAGE_KERNEL, writer="t")
    assert leaves(m) == [(GiB, GiB, GiB)]
    m.pt.map(m.root, 2 * GiB, 2 * GiB, GiB, PAGE_KERNEL, writer="t", page_sizes=(M2, PAGE))  # nogbpages
    got = leaves(m, 2 * GiB)
    assert got == [(2 * GiB + k * M2, M2, 2 * GiB + k * M2) for k in range(512)]


def test_flags_written_verbatim(m):
    prot = P | RW | US | PWT | PCD | A | D | G | NX
    m.pt.map(m.root, 0x200000, 0x5000, PAGE, prot, writer="t", user_tables=True)
    assert m.u64(m.entry_addr(0x200000, 1)) == 0x5000 | prot
    assert m.u64(m.root + 8) & 0xFFF == PAGE_TABLE


def test_a_protection_that_maps_nothing_is_refused(m):
    before = m.snapshot()
    with pytest.raises(MappingError, match="maps nothing"):
        m.pt.map(m.root, 0x200000, 0x5000, PAGE, RW | US | A | D, writer="t")  # no P
    assert m.snapshot() == before


def test_pat_bit_in_a_pte_is_not_a_large_page(m):
    m.pt.map(m.root, 0x200000, 0x5000, PAGE, PAGE_KERNEL, writer="t")
    m.put(m.entry_addr(0x200000, 1), 0x5000 | PAGE_KERNEL | PAT_PTE)
    w = m.pt.walk(m.root, 0x200123)
    assert (w.phys, w.page_size) == (0x5123, PAGE)


# -- refusing to map over what is mapped ---------------------------------------------------


def test_map_over_present_pte_rolls_back_new_tables(m):
    m.pt.map(m.root, 0x400000, 0x9000, PAGE, PAGE_KERNEL, writer="t")
    seen = []
    m.pt.observers.append(seen.append)
    before = m.snapshot()
    allocs = m.table_allocs
    # pmd 1 gets a new table and 512 ptes, then pmd 2's pte 0 is in use
    with pytest.raises(MappingError):
        m.pt.map(m.root, 0x200000, 0x1000, 2 * M2, PAGE_KERNEL, writer="t")
    assert m.table_allocs == allocs + 1 and len(m.table_frees) == 1
    assert m.snapshot() == before
    assert seen == []


@pytest.mark.parametrize("va, size, pa", [
    (0x205000, PAGE, 0x1000),  # a 4K page inside a large page
    (0x200000, M2, 0x800000),  # a large page over a large page
    (0x1FF000, 2 * PAGE, 0x1000),  # straddling into a large page
])
def test_map_over_large_page_refused(m, va, size, pa):
    m.pt.map(m.root, 0x200000, 0x40000000, M2, PAGE_KERNEL, writer="t")
    before = m.snapshot()
    with pytest.raises(MappingError):
        m.pt.map(m.root, va, pa, size, PAGE_KERNEL, writer="t")
    assert m.snapshot() == before


def test_large_page_over_present_ptes_refused(m):
    m.pt.map(m.root, 0x3FF000, 0x1000, PAGE, PAGE_KERNEL, writer="t")
    before = m.snapshot()
    with pytest.raises(MappingError):
        m.pt.map(m.root, 0x200000, 0x40000000, M2, PAGE_KERNEL, writer="t")
    assert m.snapshot() == before


def test_not_present_nonzero_entries_are_not_mappings(m):
    m.pt.map(m.root, 0x200000, 0x1000, PAGE, PAGE_KERNEL, writer="t")
    m.put(m.entry_addr(0x200000, 1), 0xABC000)  # e.g. a swap entry: P clear
    m.pt.map(m.root, 0x200000, 0x7000, PAGE, PAGE_KERNEL, writer="t")
    assert m.pt.walk(m.root, 0x200000).phys == 0x7000


def test_replace_inside_large_page_splits_it(m):
    m.pt.map(m.root, 0x200000, 0x40000000, M2, PAGE_KERNEL, writer="t")
    before = {va: walk_state(m, va) for va in range(0x200000, 0x400000, PAGE)}
    op = m.pt.map(m.root, 0x205000, 0x9000, PAGE, PAGE_KERNEL_RO, writer="t", replace=True)
    (t,) = op.tables_allocated
    assert m.u64(m.root + 8) == t | KERNPG_TABLE
    for va, st_ in before.items():
        if va == 0x205000:
            assert walk_state(m, va) == (0x9000, PAGE, False, False, True, None)
        else:
            assert walk_state(m, va) == (st_[0], PAGE) + st_[2:]


def test_remap_after_unmap_reuses_the_kept_table(m):
    # the kernel keeps its own page tables after unmapping (vunmap): a later mapping of
    # the same range, large-page aligned this time, must still succeed
    m.pt.map(m.root, 0x200000, 0x1000, M2, PAGE_KERNEL, writer="t")
    m.pt.unmap(m.root, 0x200000, M2, writer="t")
    assert m.u64(m.root + 8) & P  # the table is still there, empty
    m.pt.map(m.root, 0x200000, 0x40000000, M2, PAGE_KERNEL, writer="t")
    for va in range(0x200000, 0x400000, 0x11000):
        assert m.pt.walk(m.root, va + 0x123).phys == 0x40000000 + (va - 0x200000) + 0x123
    assert_no_leak(m)


def test_replace_over_a_table_does_not_leak_it(m):
    m.pt.map(m.root, 0x200000, 0x1000, 4 * PAGE, PAGE_KERNEL, writer="t")
    m.pt.map(m.root, 0x200000, 0x40000000, M2, PAGE_KERNEL_RO, writer="t", replace=True)
    for va in range(0x200000, 0x400000, 0x11000):
        w = m.pt.walk(m.root, va)
        assert (w.phys, w.writable) == (0x40000000 + va - 0x200000, False)
    assert_no_leak(m)


# -- unmap ---------------------------------------------------------------------------------


def test_unmap_part_of_a_large_page_splits_and_keeps_the_rest(m):
    flags = P | RW | PWT | PCD | A | D | G | NX
    m.pt.map(m.root, 0x200000, 0x40000000, M2, flags, writer="t")
    before = {va: walk_state(m, va) for va in range(0x200000, 0x400000, PAGE)}
    op = m.pt.unmap(m.root, 0x205000, 3 * PAGE, writer="t")
    assert op.unmapped == [(0x205000 + k * PAGE, 0x40005000 + k * PAGE, PAGE) for k in range(3)]
    (t,) = op.tables_allocated
    assert m.u64(m.root + 8) == t | KERNPG_TABLE
    assert pte_values(m, t) == [0 if 5 <= k < 8 else (0x40000000 + k * PAGE) | flags for k in range(512)]
    for va, st_ in before.items():
        if 0x205000 <= va < 0x208000:
            assert walk_state(m, va)[-1] == "not-present"
        else:
            assert walk_state(m, va) == (st_[0], PAGE) + st_[2:]


def test_split_of_a_user_large_page_gets_a_user_table(m):
    m.pt.map(m.root, 0x200000, 0x40000000, M2, PAGE_SHARED, writer="t")
    op = m.pt.unmap(m.root, 0x3FF000, PAGE, writer="t")
    (t,) = op.tables_allocated
    assert m.u64(m.root + 8) == t | PAGE_TABLE
    assert m.pt.walk(m.root, 0x200000).user


def test_unmap_whole_large_page_needs_no_table(m):
    m.pt.map(m.root, 0x200000, 0x40000000, M2, PAGE_KERNEL, writer="t")
    op = m.pt.unmap(m.root, 0x200000, M2, writer="t")
    assert op.tables_allocated == [] and op.unmapped == [(0x200000, 0x40000000, M2)]
    assert m.u64(m.root + 8) == 0


def test_unmap_across_two_large_pages(m):
    m.pt.map(m.root, 0x200000, 0x40000000, 2 * M2, PAGE_KERNEL, writer="t")
    op = m.pt.unmap(m.root, 0x3FF000, 2 * PAGE, writer="t")
    assert op.unmapped == [(0x3FF000, 0x401FF000, PAGE), (0x400000, 0x40200000, PAGE)]
    assert len(op.tables_allocated) == 2
    assert len(leaves(m)) == 2 * 511


def test_unmap_splits_1g_into_2m_then_4k():
    m = ToyMachine(TOY48)
    m.pt.map(m.root, GiB, 2 * GiB, GiB, PAGE_KERNEL, writer="t")
    op = m.pt.unmap(m.root, GiB + 3 * PAGE, PAGE, writer="t")
    t_pmd, t_pte = op.tables_allocated
    pgd_t = m.u64(m.root) & ADDR
    assert m.u64(pgd_t + 8 * 1) == t_pmd | KERNPG_TABLE
    assert [m.u64(t_pmd + 8 * k) for k in range(512)] == \
        [t_pte | KERNPG_TABLE] + [(2 * GiB + k * M2) | PAGE_KERNEL | PS for k in range(1, 512)]
    assert pte_values(m, t_pte) == [0 if k == 3 else (2 * GiB + k * PAGE) | PAGE_KERNEL for k in range(512)]
    assert op.unmapped == [(GiB + 3 * PAGE, 2 * GiB + 3 * PAGE, PAGE)]


def test_unmap_nothing_is_fine(m):
    op = m.pt.unmap(m.root, 0x200000, 4 * M2, writer="t")
    assert op.unmapped == [] and op.changes == []


def test_unmap_keeps_tables_unless_asked(m):
    free0 = m.frames.nr_free_pages()
    op = m.pt.map(m.root, 0x200000, 0x1000, 2 * PAGE, PAGE_KERNEL, writer="t")
    (t,) = op.tables_allocated
    m.pt.unmap(m.root, 0x200000, PAGE, writer="t", free_tables=True)  # one pte left: kept
    assert m.u64(m.root + 8) == t | KERNPG_TABLE
    m.pt.unmap(m.root, 0x201000, PAGE, writer="t")  # empty now, but not asked to free
    assert m.u64(m.root + 8) == t | KERNPG_TABLE and t in m.pt.tables
    op = m.pt.unmap(m.root, 0x200000, M2, writer="t", free_tables=True)
    assert op.tables_freed == [t] and m.table_frees == [t]
    assert m.u64(m.root + 8) == 0 and t not in m.pt.tables
    assert m.frames.nr_free_pages() == free0
    assert m.pt.writer_of(t) == ""


def test_unmap_free_tables_cascades():
    m = ToyMachine(TOY48)
    free0 = m.frames.nr_free_pages()
    va = 0x00007F0012345000
    op = m.pt.map(m.root, va, 0x5000, PAGE, PAGE_SHARED, writer="t", user_tables=True)
    assert len(op.tables_allocated) == 3
    op2 = m.pt.unmap(m.root, va, PAGE, writer="t", free_tables=True)
    assert sorted(op2.tables_freed) == sorted(op.tables_allocated)
    assert m.u64(m.root + 8 * ((va >> 39) & 511)) == 0
    assert set(m.pt.tables) == {m.root} and m.frames.nr_free_pages() == free0


# -- protect -------------------------------------------------------------------------------


def test_protect_splits_at_the_edges_and_changes_only_the_range(m):
    m.pt.map(m.root, 0x200000, 0x40000000, M2, PAGE_KERNEL, writer="direct")
    op = m.pt.protect(m.root, 0x205000, 2 * PAGE, PAGE_KERNEL_RO, writer="set_memory_ro")
    (t,) = op.tables_allocated
    assert op.kind == "protect"
    assert m.u64(m.root + 8) == t | KERNPG_TABLE
    assert pte_values(m, t) == [(0x40000000 + k * PAGE) | (PAGE_KERNEL_RO if k in (5, 6) else PAGE_KERNEL)
                                for k in range(512)]
    assert [m.pt.walk(m.root, 0x200000 + k * PAGE).writable for k in range(4, 8)] == [True, False, False, True]


def test_protect_of_a_whole_large_page_keeps_it_large(m):
    m.pt.map(m.root, 0x200000, 0x40000000, 2 * M2, PAGE_KERNEL, writer="t")
    op = m.pt.protect(m.root, 0x200000, 2 * M2, (PAGE_KERNEL & ~RW) | US, writer="t")
    assert op.tables_allocated == []
    assert [m.u64(m.root + 8 * i) for i in (1, 2)] == \
        [(0x40000000 + i * M2) | (PAGE_KERNEL & ~RW) | US | PS for i in (0, 1)]


def test_protect_covering_one_large_page_and_half_the_next(m):
    m.pt.map(m.root, 0x200000, 0x40000000, 2 * M2, PAGE_KERNEL, writer="t")
    op = m.pt.protect(m.root, 0x200000, M2 + M2 // 2, PAGE_KERNEL | PCD, writer="t")
    (t,) = op.tables_allocated
    assert m.u64(m.root + 8) == 0x40000000 | PAGE_KERNEL | PCD | PS
    assert m.u64(m.root + 16) == t | KERNPG_TABLE
    assert pte_values(m, t) == [(0x40200000 + k * PAGE) | PAGE_KERNEL | (PCD if k < 256 else 0) for k in range(512)]


def test_protect_of_4k_run_across_tables(m):
    m.pt.map(m.root, 0x200000, 0x1000, 2 * M2, PAGE_KERNEL, writer="t")
    t1, t2 = m.u64(m.root + 8) & ADDR, m.u64(m.root + 16) & ADDR
    before = pte_values(m, t1) + pte_values(m, t2)
    m.pt.protect(m.root, 0x3FE000, 4 * PAGE, (PAGE_KERNEL | US) & ~NX, writer="t")
    after = pte_values(m, t1) + pte_values(m, t2)
    changed = [k for k in range(1024) if before[k] != after[k]]
    assert changed == [510, 511, 512, 513]
    assert all(after[k] == (before[k] | US) & ~NX for k in changed)


def test_protect_skips_unmapped_pieces(m):
    m.pt.map(m.root, 0x201000, 0x1000, PAGE, PAGE_KERNEL, writer="t")
    m.pt.map(m.root, 0x203000, 0x3000, PAGE, PAGE_KERNEL, writer="t")
    m.pt.protect(m.root, 0, 4 * M2, PAGE_KERNEL_RO, writer="t")
    t = m.u64(m.root + 8) & ADDR
    assert [m.u64(t + 8 * k) for k in range(5)] == [0, 0x1000 | PAGE_KERNEL_RO, 0, 0x3000 | PAGE_KERNEL_RO, 0]
    assert [m.u64(m.root + 8 * i) for i in (0, 2, 3)] == [0, 0, 0]


@pytest.mark.parametrize("prot", [PAGE_KERNEL | PS, PAGE_KERNEL & ~P, PAGE_KERNEL | 0x1000, PAGE_KERNEL | 1 << 20])
def test_protect_refuses_what_is_not_a_protection(m, prot):
    m.pt.map(m.root, 0x200000, 0x1000, PAGE, PAGE_KERNEL, writer="t")
    before = m.snapshot()
    with pytest.raises(MappingError):
        m.pt.protect(m.root, 0x200000, PAGE, prot, writer="t")
    assert m.snapshot() == before


# -- effective permissions -----------------------------------------------------------------


def test_user_needs_us_at_every_level(m):
    m.pt.populate(m.root, 0x200000, M2, writer="t")  # kernel table: no US in the pmd
    m.pt.map(m.root, 0x200000, 0x1000, PAGE, PAGE_SHARED, writer="t")
    m.pt.map(m.root, 0x400000, 0x1000, PAGE, PAGE_SHARED, writer="t", user_tables=True)
    assert m.u64(m.root + 8) & 0xFFF == KERNPG_TABLE and m.u64(m.root + 16) & 0xFFF == PAGE_TABLE
    assert (m.pt.walk(m.root, 0x200000).user, m.pt.walk(m.root, 0x400000).user) == (False, True)
    assert m.pt.walk(m.root, 0x200000).code("read", user=True) == 0x5


def test_rw_anded_and_nx_ored_over_levels(m):
    m.pt.map(m.root, 0x200000, 0x1000, PAGE, PAGE_KERNEL_EXEC, writer="t")
    pmd = m.root + 8
    assert (m.pt.walk(m.root, 0x200000).writable, m.pt.walk(m.root, 0x200000).nx) == (True, False)
    m.put(pmd, m.u64(pmd) & ~RW)
    assert (m.pt.walk(m.root, 0x200000).writable, m.pt.walk(m.root, 0x200000).nx) == (False, False)
    m.put(pmd, m.u64(pmd) | RW | NX)
    assert (m.pt.walk(m.root, 0x200000).writable, m.pt.walk(m.root, 0x200000).nx) == (True, True)
    assert m.pt.walk(m.root, 0x200000).code("exec") == 0x11


def test_access_bits_false_level_is_ignored():
    m = ToyMachine(TOY3)
    va = 0xC0200000  # pgd index 3, pmd 1
    op = m.pt.map(m.root, va, 0x7000, PAGE, P | RW | US | A, writer="t", user_tables=True)
    t_pmd = op.tables_allocated[0]
    assert m.u64(m.root + 8 * 3) == t_pmd | P  # the PDPT entry gets _PAGE_PRESENT only
    w = m.pt.walk(m.root, va)
    assert (w.phys, w.writable, w.user, w.nx, len(w.steps)) == (0x7000, True, True, False, 3)
    m.put(m.root + 24, t_pmd | P | NX)  # its RW/US/NX bits take no part in access control
    w = m.pt.walk(m.root, va)
    assert (w.writable, w.user, w.nx) == (True, True, False)
    assert w.code("write", user=True) is None and w.code("exec", user=True) is None
    # ...but the pmd below does
    m.put(t_pmd + 8, m.u64(t_pmd + 8) & ~US)
    assert m.pt.walk(m.root, va).user is False


# -- fault error codes ---------------------------------------------------------------------

# error code bits: P 1, W 2, U 4, RSVD 8, I/D 0x10


@pytest.fixture
def faulty():
    m = ToyMachine(TOY)
    k = dict(writer="t")
    m.pt.map(m.root, 0x200000, 0x10000, PAGE, PAGE_KERNEL_RO, **k)  # kro
    m.pt.map(m.root, 0x201000, 0x11000, PAGE, PAGE_KERNEL, **k)  # krw (NX)
    m.pt.map(m.root, 0x202000, 0x12000, PAGE, PAGE_KERNEL_EXEC, **k)  # kx
    m.pt.map(m.root, 0x203000, 0x13000, PAGE, PAGE_KERNEL, **k)  # rsvd, below
    m.put(m.entry_addr(0x203000, 1), 0x13000 | PAGE_KERNEL | (1 << 45))
    m.put(m.entry_addr(0x204000, 1), 0x14000 | (1 << 45) | RW)  # not present, "reserved" bit: ignored
    m.pt.map(m.root, 0x400000, 0x20000, PAGE, PAGE_READONLY, user_tables=True, **k)  # uro
    m.pt.map(m.root, 0x401000, 0x21000, PAGE, PAGE_SHARED, user_tables=True, **k)  # urw
    m.pt.map(m.root, 0x402000, 0x22000, PAGE, P | US | A, user_tables=True, **k)  # ux
    return m


NONE, PTE_NONE, NP_RSVD = 0x600000, 0x205000, 0x204000
KRO, KRW, KX, RSVD, URO, URW, UX = 0x200000, 0x201000, 0x202000, 0x203000, 0x400000, 0x401000, 0x402000

FAULTS = [
    # not present, at the pmd and at the pte
    *[(va, acc, user, code) for va in (NONE, PTE_NONE, NP_RSVD) for acc, user, code in
      [("read", False, 0x0), ("write", False, 0x2), ("exec", False, 0x10),
       ("read", True, 0x4), ("write", True, 0x6), ("exec", True, 0x14)]],
    # kernel read-only NX page
    (KRO, "read", False, None), (KRO, "write", False, 0x3), (KRO, "exec", False, 0x11),
    (KRO, "read", True, 0x5), (KRO, "write", True, 0x7), (KRO, "exec", True, 0x15),
    # kernel RW NX page
    (KRW, "read", False, None), (KRW, "write", False, None), (KRW, "exec", False, 0x11),
    (KRW, "read", True, 0x5), (KRW, "write", True, 0x7),
    # kernel executable page
    (KX, "exec", False, None), (KX, "write", False, None), (KX, "exec", True, 0x15),
    # user pages (no SMEP/SMAP: the kernel may touch them)
    (URO, "read", True, None), (URO, "write", True, 0x7), (URO, "exec", True, 0x15),
    (URO, "read", False, None), (URO, "write", False, 0x3),
    (URW, "write", True, None), (URW, "exec", True, 0x15), (URW, "exec", False, 0x11),
    (UX, "exec", True, None), (UX, "read", True, None), (UX, "write", True, 0x7), (UX, "exec", False, None),
    # a reserved bit in a present entry: P and RSVD, whatever the access
    (RSVD, "read", False, 0x9), (RSVD, "write", False, 0xB), (RSVD, "exec", False, 0x19),
    (RSVD, "read", True, 0xD), (RSVD, "write", True, 0xF), (RSVD, "exec", True, 0x1D),
]


@pytest.mark.parametrize("va, access, user, code", FAULTS)
def test_fault_error_codes(faulty, va, access, user, code):
    w = faulty.pt.walk(faulty.root, va)
    assert w.code(access, user) == code
    fault = faulty.pt.translate(faulty.root, va, access, user)[1]
    assert (fault.code if fault else None) == code
    if fault is not None:  # the neutral description says the same
        assert (fault.access, fault.user, fault.address) == (access, user, va)
        assert fault.kind == ("reserved" if code & 8 else "protection" if code & 1 else "not-present")


def test_fault_walk_reasons(faulty):
    assert faulty.pt.walk(faulty.root, RSVD).missing == "reserved"
    assert faulty.pt.walk(faulty.root, NP_RSVD).missing == "not-present"
    assert faulty.pt.walk(faulty.root, RSVD).phys is None


def test_fault_bad_access_name(faulty):
    with pytest.raises(ValueError):
        faulty.pt.walk(faulty.root, KRO).code("fetch")


def test_no_instruction_fetch_bit_without_nx():
    m = ToyMachine(TOY_NONX)
    m.pt.map(m.root, 0x200000, 0x1000, PAGE, P | A, writer="t")
    w = m.pt.walk(m.root, 0x200000)
    assert w.nx is False
    assert (w.code("exec"), w.code("exec", user=True)) == (None, 0x5)
    assert m.pt.walk(m.root, 0x400000).code("exec") == 0x0
    assert m.pt.walk(m.root, 0x400000).code("exec", user=True) == 0x4


def test_reserved_bits_of_a_large_entry():
    m = ToyMachine(TOY)
    m.pt.map(m.root, 0x200000, 0x40000000, M2, PAGE_KERNEL, writer="t")
    m.put(m.root + 8, 0x40000000 | PAGE_KERNEL | PS | (1 << 13))  # bits 20..13 must be zero
    w = m.pt.walk(m.root, 0x200000)
    assert (w.missing, len(w.steps), w.code("read")) == ("reserved", 1, 0x9)
    # the same bit in a PTE is an address bit
    m.pt.map(m.root, 0x400000, 0x2000, PAGE, PAGE_KERNEL, writer="t")
    assert m.pt.walk(m.root, 0x400000).phys == 0x2000


def test_reserved_bit_in_a_table_entry_stops_the_walk(m):
    m.pt.map(m.root, 0x200000, 0x1000, PAGE, PAGE_KERNEL, writer="t")
    m.put(m.root + 8, m.u64(m.root + 8) | (1 << 51))
    w = m.pt.walk(m.root, 0x200000)
    assert (w.missing, len(w.steps), w.code("write", True)) == ("reserved", 1, 0xF)


def test_ps_is_reserved_in_a_level_without_large_pages():
    m = ToyMachine(TOY48)
    m.pt.map(m.root, 0x1000, 0x1000, PAGE, PAGE_KERNEL, writer="t")
    m.put(m.root, m.u64(m.root) | PS)
    w = m.pt.walk(m.root, 0x1000)
    assert (w.missing, len(w.steps), w.code("read")) == ("reserved", 1, 0x9)


def _walk_facts(w):
    return (w.va, w.phys, w.page_size, w.rights, w.missing, w.last_level,
            [(s.li, s.table, s.index, s.entry_addr, s.raw) for s in w.steps])


class _NoMaskCodec(type(TOY.codec)):
    """TOY's codec without its address masks: the walker calls the decoder at every level."""

    def addr_mask(self, li):
        return None


@pytest.mark.parametrize("masked", [True, False])
def test_generated_walk_agrees_with_the_reference_walk(masked):
    """The generated walk (entries decoded from the codec's address masks, or by the decoder
    when the codec gives none) against PageTables.walk, the loop it is generated from, on every
    kind of entry: 4 KiB and 2 MiB pages, each protection, accessed/dirty, not-present,
    reserved bits in a pte and in a pmd, a software (not present, nonzero) pte."""
    mode = TOY
    if not masked:
        codec = _NoMaskCodec(TOY.codec.bits, TOY.codec.nx, TOY.codec.flags)
        mode = type(TOY)(name="toy-nomask", levels=TOY.levels, va_bits=TOY.va_bits, pa_bits=TOY.pa_bits,
                         codec=codec, form=TOY.form)
    m = ToyMachine(mode)
    assert (m.pt.codec.addr_mask(0) is not None) == masked
    prots = [PAGE_KERNEL, PAGE_KERNEL_EXEC, PAGE_KERNEL_RO, PAGE_SHARED, PAGE_READONLY, PAGE_KERNEL | PCD | PWT]
    for i, prot in enumerate(prots):
        m.pt.map(m.root, i * PAGE, (0x100 + i) * PAGE, PAGE, prot, writer="t")
        m.pt.map(m.root, (i + 1) * M2, (i + 1) * M2, M2, prot, writer="t")
    pte_table = m.pt.pte_slot(m.root, 0)[0]
    m.put(pte_table + 8 * 20, 0x123000 | PAGE_KERNEL | (1 << 45))  # a reserved bit (above MAXPHYADDR)
    m.put(pte_table + 8 * 21, 0x124000 | (PAGE_SHARED & ~P))  # not present, not empty
    m.put(pte_table + 8 * 22, 0x125000 | PAGE_SHARED | A | D)
    m.put(m.root + 8 * 100, 100 * M2 | PAGE_KERNEL | PS | (1 << 14))  # a misaligned 2 MiB page
    vas = [i * PAGE + 0x123 for i in range(24)] + [(i + 1) * M2 + 0x4567 for i in range(len(prots))] + \
        [100 * M2, 200 * M2 + 5, (1 << 30) - 1]
    for va in vas:
        assert _walk_facts(m.pt.walk(m.root, va)) == _walk_facts(PageTables.walk(m.pt, m.root, va)), hex(va)
        # and the generated pte lookups against theirs (a large page or no table: None)
        assert m.pt.pte_slot(m.root, va) == PageTables.pte_slot(m.pt, m.root, va), hex(va)
        assert m.pt.pte_entry(m.root, va) == PageTables.pte_entry(m.pt, m.root, va), hex(va)
    assert m.pt.pte_entry(m.root, 22 * PAGE)[1] == 0x125000 | PAGE_SHARED | A | D
    assert m.pt.pte_entry(m.root, M2) is None  # a 2 MiB page: no page table
    w = m.pt.walk(m.root, 20 * PAGE)
    assert (w.phys, w.missing) == (None, "reserved")
    w = m.pt.walk(m.root, 22 * PAGE + 8)  # a user pte under a kernel table (no US in the pmd entry)
    assert (w.phys, w.page_size, w.user, w.writable, w.nx) == (0x125008, PAGE, False, True, True)


def test_a_false_pte_address_mask_fails_the_codec_check():
    """The conformance suite's check of EntryCodec.addr_mask can fail: a mask that takes in a
    rights bit (RW) does not describe the codec, at the last level or above it."""

    class WrongMask(type(TOY.codec)):
        def addr_mask(self, li):
            return ADDR | RW, 0

    codec = WrongMask(TOY.codec.bits, TOY.codec.nx, TOY.codec.flags)
    type(TOY)(name="toy-wrong", levels=TOY.levels, va_bits=TOY.va_bits, pa_bits=TOY.pa_bits, codec=codec,
              form=TOY.form)
    check_addr_mask(codec, 1, 0x5000 | PAGE_READONLY)  # RW clear: the claim holds on this pte
    with pytest.raises(AssertionError, match="without its address bits"):
        check_addr_mask(codec, 1, 0x5000 | PAGE_SHARED)
    with pytest.raises(AssertionError, match="without its address bits"):
        check_addr_mask(codec, 0, 0x5000 | KERNPG_TABLE)  # a pmd pointing to a table


# -- transactions: out of memory half-way --------------------------------------------------


@pytest.mark.parametrize("tables_left", [0, 1, 2])
def test_map_rolls_back_when_tables_run_out(tables_left):
    m = ToyMachine(TOY)
    m.pt.map(m.root, 0x200000, 0x40000000, M2, PAGE_KERNEL, writer="t")  # one present entry to keep
    m.starve(tables_left)
    seen = []
    m.pt.observers.append(seen.append)
    before = m.snapshot()
    with pytest.raises(OutOfMemory):  # needs three tables (pmd 2, 3, 4)
        m.pt.map(m.root, 0x400000, 0x1000, 3 * M2, PAGE_KERNEL, writer="other")
    assert m.snapshot() == before
    assert m.table_allocs - 1 == tables_left and len(m.table_frees) == tables_left
    assert seen == []
    m.feed()
    m.pt.map(m.root, 0x400000, 0x1000, 3 * M2, PAGE_KERNEL, writer="other")
    assert len(seen) == 1 and len(leaves(m)) == 1 + 3 * 512


@pytest.mark.parametrize("tables_left", [0, 1, 2])
def test_deep_map_rolls_back(tables_left):
    m = ToyMachine(TOY48)
    m.starve(tables_left)
    before = m.snapshot()
    with pytest.raises(OutOfMemory):
        m.pt.map(m.root, 0xFFFF888000001000, 0x1000, PAGE, PAGE_KERNEL, writer="t")
    assert m.snapshot() == before


def test_unmap_rolls_back_a_split_when_the_next_split_fails(m):
    m.pt.map(m.root, 0x200000, 0x40000000, 2 * M2, PAGE_KERNEL, writer="direct")
    m.starve(1)
    before = m.snapshot()
    with pytest.raises(OutOfMemory):
        m.pt.unmap(m.root, 0x3FF000, 2 * PAGE, writer="t")
    assert m.snapshot() == before
    assert leaves(m) == [(0x200000, M2, 0x40000000), (0x400000, M2, 0x40200000)]


def test_protect_rolls_back(m):
    m.pt.map(m.root, 0x200000, 0x40000000, 2 * M2, PAGE_KERNEL, writer="direct")
    m.starve(1)
    before = m.snapshot()
    with pytest.raises(OutOfMemory):
        m.pt.protect(m.root, 0x3FF000, 2 * PAGE, PAGE_KERNEL_RO, writer="t")
    assert m.snapshot() == before


def test_populate_rolls_back_and_refuses_large_pages(m):
    m.pt.map(m.root, 0x200000, 0x40000000, M2, PAGE_KERNEL, writer="t")
    before = m.snapshot()
    with pytest.raises(MappingError):  # pmd 0 gets a table, then pmd 1 is a large page
        m.pt.populate(m.root, 0, 2 * M2, writer="t")
    assert m.snapshot() == before and m.table_frees


# -- populate ------------------------------------------------------------------------------


def test_populate_makes_tables_and_maps_nothing(m):
    seen = []
    m.pt.observers.append(seen.append)
    op = m.pt.populate(m.root, 0x3FF000, M2, writer="page_table_range_init")
    t1, t2 = op.tables_allocated
    assert (m.u64(m.root + 8), m.u64(m.root + 16)) == (t1 | KERNPG_TABLE, t2 | KERNPG_TABLE)
    assert leaves(m) == [] and not any(pte_values(m, t1)) and not any(pte_values(m, t2))
    op2 = m.pt.populate(m.root, 0x200000, 2 * M2, writer="again")
    assert op2.tables_allocated == [] and len(seen) == 1
    op3 = m.pt.populate(m.root, 0x600000, PAGE, writer="u", user_tables=True)
    assert m.u64(m.root + 24) == op3.tables_allocated[0] | PAGE_TABLE
    w = m.pt.walk(m.root, 0x3FF000)
    assert (w.missing, len(w.steps)) == ("not-present", 2)


# -- observers -----------------------------------------------------------------------------


def test_observers_one_operation_per_success_none_on_failure(m):
    seen = []
    m.pt.observers.append(seen.append)
    op = m.pt.map(m.root, 0x200000, 0x5000, PAGE, PAGE_KERNEL, writer="vmalloc")
    assert seen == [op]
    (t,) = op.tables_allocated
    # the pmd entry, then the pte
    assert [(c.table, c.level.name, c.index, c.writer) for c in op.changes] == \
        [(m.root, "pmd", 1, "vmalloc"), (t, "pte", 0, "vmalloc")]
    assert list(op.changes[0].entries()) == [(1, 0, t | KERNPG_TABLE)]
    assert list(op.changes[1].entries()) == [(0, 0, 0x5000 | PAGE_KERNEL)]
    for bad in (lambda: m.pt.map(m.root, 0x200000, 0x6000, PAGE, PAGE_KERNEL, writer="x"),
                lambda: m.pt.map(m.root, 0x200001, 0x6000, PAGE, PAGE_KERNEL, writer="x"),
                lambda: m.pt.map(m.root, 1 << 30, 0x6000, PAGE, PAGE_KERNEL, writer="x"),
                lambda: m.pt.protect(m.root, 0x200000, PAGE, PAGE_KERNEL | PS, writer="x")):
        with pytest.raises((MappingError, AddressError)):
            bad()
    assert seen == [op]
    op2 = m.pt.protect(m.root, 0x200000, PAGE, PAGE_KERNEL_RO, writer="mprotect")
    op3 = m.pt.unmap(m.root, 0x200000, PAGE, writer="vunmap")
    assert seen == [op, op2, op3]
    assert list(op2.changes[0].entries()) == [(0, 0x5000 | PAGE_KERNEL, 0x5000 | PAGE_KERNEL_RO)]
    assert (op3.kind, op3.unmapped) == ("unmap", [(0x200000, 0x5000, PAGE)])


def test_map_without_record_writes_the_same_entries_and_lists_no_runs(m):
    """record=False (the boot's own tables): the same tables and entries, the operation's
    range and new tables kept, its runs of entries not copied; a failure still undoes it."""
    op = m.pt.map(m.root, 0x200000, 0x5000, 3 * PAGE, PAGE_KERNEL, writer="boot", record=False)
    assert op.changes == [] and len(op.tables_allocated) == 1 and (op.va, op.size) == (0x200000, 3 * PAGE)
    assert [m.pt.walk(m.root, 0x200000 + i * PAGE).phys for i in range(3)] == [0x5000, 0x6000, 0x7000]
    assert m.pt.writer_of(op.tables_allocated[0] + 8) == "boot"
    before = bytes(m.mem.mem[m.root:m.root + PAGE])
    frees = len(m.table_frees)
    with pytest.raises(MappingError):  # 0x200000 is mapped: the new table and its 2 entries go
        m.pt.map(m.root, 0x1FE000, 0x9000, 3 * PAGE, PAGE_KERNEL, writer="x", record=False)
    assert bytes(m.mem.mem[m.root:m.root + PAGE]) == before and len(m.table_frees) == frees + 1
    assert m.pt.walk(m.root, 0x1FE000).missing == "not-present"


def test_change_entries_lists_only_changed_entries(m):
    m.pt.map(m.root, 0x200000, 0x5000, 3 * PAGE, PAGE_KERNEL, writer="t")
    m.put(m.entry_addr(0x201000, 1), 0x6000 | PAGE_KERNEL_RO)
    op = m.pt.protect(m.root, 0x200000, 3 * PAGE, PAGE_KERNEL_RO, writer="t")
    got = [e for c in op.changes for e in c.entries()]
    assert got == [(0, 0x5000 | PAGE_KERNEL, 0x5000 | PAGE_KERNEL_RO), (2, 0x7000 | PAGE_KERNEL, 0x7000 | PAGE_KERNEL_RO)]


# -- who wrote each entry ------------------------------------------------------------------


def test_writer_records(m):
    m.pt.map(m.root, 0x200000, 0x40000000, M2, PAGE_KERNEL, writer="direct")
    m.pt.map(m.root, 0x400000, 0x5000, 2 * PAGE, PAGE_KERNEL, writer="vmalloc")
    t = m.u64(m.root + 16) & ADDR
    assert [m.pt.writer_of(m.root + 8 * i) for i in range(4)] == ["", "direct", "vmalloc", ""]
    assert [m.pt.writer_of(t + 8 * i) for i in range(3)] == ["vmalloc", "vmalloc", ""]
    m.pt.protect(m.root, 0x401000, PAGE, PAGE_KERNEL_RO, writer="mprotect")
    assert [m.pt.writer_of(t + 8 * i) for i in range(3)] == ["vmalloc", "mprotect", ""]
    op = m.pt.protect(m.root, 0x200000, PAGE, PAGE_KERNEL_RO, writer="set_memory_ro")
    (t2,) = op.tables_allocated
    assert m.pt.writer_of(m.root + 8) == "set_memory_ro"
    assert {m.pt.writer_of(t2 + 8 * i) for i in range(512)} == {"set_memory_ro"}
    assert m.pt.writer_of(0x300000) == ""  # not a table


# -- iter_leaves ---------------------------------------------------------------------------


def test_iter_leaves_range_filter(m):
    m.pt.map(m.root, 0x200000, 0x40000000, M2, PAGE_KERNEL, writer="t")
    m.pt.map(m.root, 0x400000, 0x1000, 2 * PAGE, PAGE_KERNEL, writer="t")
    everything = [(0x200000, M2, 0x40000000), (0x400000, PAGE, 0x1000), (0x401000, PAGE, 0x2000)]
    assert leaves(m) == everything
    assert leaves(m, 0x3FF000, 0x401000) == everything[:2]  # overlapping leaves count
    assert leaves(m, 0x401000) == everything[2:]
    assert leaves(m, 0, 0x200000) == []
    raws = [(raw, li) for _, _, _, raw, li in m.pt.iter_leaves(m.root)]
    assert raws == [(0x40000000 | PAGE_KERNEL | PS, 0), (0x1000 | PAGE_KERNEL, 1), (0x2000 | PAGE_KERNEL, 1)]


def expected_leaves(va, pa, size):
    """The kernel's rule, by hand: a 2 MiB page wherever both addresses are 2 MiB aligned
    and the whole page is inside the range, else 4 KiB pages."""
    out, end = [], va + size
    while va < end:
        s = M2 if va % M2 == 0 and pa % M2 == 0 and va + M2 <= end else PAGE
        out.append((va, s, pa))
        va, pa = va + s, pa + s
    return out


@st.composite
def disjoint_maps(draw):
    """Up to 4 disjoint ranges in the first 16 MiB of the toy's 1 GiB space, each with a
    physical address that is 2 MiB aligned or not, at the drawer's choice."""
    cuts = sorted(draw(st.sets(st.integers(0, 4096), min_size=2, max_size=8)))
    out = []
    for a, b in zip(cuts[::2], cuts[1::2]):
        pa_pfn = draw(st.one_of(st.integers(0, 1 << 20), st.integers(0, 1 << 11).map(lambda x: x * 512)))
        pa_pfn += draw(st.sampled_from([0, 0, a % 512]))
        out.append((a * PAGE, (b - a) * PAGE, pa_pfn * PAGE))
    return out


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(maps=disjoint_maps(),
       cut=st.tuples(st.one_of(st.integers(0, 4096), st.integers(0, 8).map(lambda x: x * 512)),
                     st.one_of(st.integers(1, 600), st.integers(1, 4).map(lambda x: x * 512))))
def test_iter_leaves_yields_exactly_what_was_mapped(maps, cut):
    m = ToyMachine(TOY)
    expect = []
    for va, size, pa in maps:
        m.pt.map(m.root, va, pa, size, PAGE_KERNEL, writer="t")
        expect += expected_leaves(va, pa, size)
    assert leaves(m) == sorted(expect)
    # unmap a random window; the 4 KiB pages left must be exactly the model's
    model = {lva + k: lpa + k for lva, s, lpa in expect for k in range(0, s, PAGE)}
    start, n = cut[0] * PAGE, cut[1] * PAGE
    n = min(n, (1 << 30) - start)
    m.pt.unmap(m.root, start, n, writer="t")
    model = {v: p for v, p in model.items() if not start <= v < start + n}
    got = {lva + k: lpa + k for lva, s, lpa in leaves(m) for k in range(0, s, PAGE)}
    assert got == model
    for va, pa in list(model.items())[::97]:
        assert m.pt.walk(m.root, va + 0x10).phys == pa + 0x10
    assert_no_leak(m)
    # map the window again (tables kept by the unmap are reused, none is orphaned)
    pa2 = (cut[0] % 7) * M2
    m.pt.map(m.root, start, pa2, n, PAGE_KERNEL, writer="t")
    model.update({start + k: pa2 + k for k in range(0, n, PAGE)})
    got = {lva + k: lpa + k for lva, s, lpa in leaves(m) for k in range(0, s, PAGE)}
    assert got == model
    assert_no_leak(m)


# -- addresses -----------------------------------------------------------------------------


@pytest.mark.parametrize("va", [1 << 47, 0xFFFF7FFFFFFFF000, 0x0000800000000000, 1 << 64, -PAGE])
def test_walk_rejects_non_canonical(va):
    m = ToyMachine(TOY48)
    with pytest.raises(AddressError):
        m.pt.walk(m.root, va)


@pytest.mark.parametrize("va, size", [(0x00007FFFFFFFF000, 2 * PAGE),  # runs into the hole
                                      (0xFFFFFFFFFFFFF000, 2 * PAGE),  # wraps past 2**64
                                      (0xFFFF7FFFFFFFF000, PAGE)])
def test_map_rejects_non_canonical(va, size):
    m = ToyMachine(TOY48)
    before = m.snapshot()
    with pytest.raises(AddressError):
        m.pt.map(m.root, va, 0x1000, size, PAGE_KERNEL, writer="t")
    assert m.snapshot() == before


def test_upper_half_is_sign_extended():
    m = ToyMachine(TOY48)
    m.pt.map(m.root, 0xFFFF800000000000, 0x1000, PAGE, PAGE_KERNEL, writer="t")
    m.pt.map(m.root, 0xFFFFFFFFFFFFF000, 0x2000, PAGE, PAGE_KERNEL, writer="t")
    m.pt.map(m.root, 0x00007FFFFFFFF000, 0x3000, PAGE, PAGE_KERNEL, writer="t")
    assert m.u64(m.root + 8 * 256) & P and m.u64(m.root + 8 * 511) & P and m.u64(m.root + 8 * 255) & P
    assert leaves(m) == [(0x00007FFFFFFFF000, PAGE, 0x3000), (0xFFFF800000000000, PAGE, 0x1000),
                         (0xFFFFFFFFFFFFF000, PAGE, 0x2000)]
    assert leaves(m, 0xFFFF800000000000) == leaves(m)[1:]
    assert m.pt.walk(m.root, 0xFFFFFFFFFFFFFFFF).phys == 0x2FFF


def test_32bit_space_limits(m):
    with pytest.raises(AddressError):
        m.pt.walk(m.root, 1 << 30)
    with pytest.raises(AddressError):
        m.pt.map(m.root, (1 << 30) - PAGE, 0, 2 * PAGE, PAGE_KERNEL, writer="t")
    m.pt.map(m.root, (1 << 30) - PAGE, 0x1000, PAGE, PAGE_KERNEL, writer="t")
    assert leaves(m) == [((1 << 30) - PAGE, PAGE, 0x1000)]


@pytest.mark.parametrize("va, pa, size", [(0x200800, 0x1000, PAGE), (0x200000, 0x1800, PAGE),
                                          (0x200000, 0x1000, 0x800), (0x200000, 0x1000, 0),
                                          (0x200000, (1 << 40) - PAGE, 2 * PAGE)])
def test_map_rejects_bad_ranges(m, va, pa, size):
    before = m.snapshot()
    with pytest.raises(MappingError):
        m.pt.map(m.root, va, pa, size, PAGE_KERNEL, writer="t")
    assert m.snapshot() == before


def test_roots_are_independent(m):
    other = m.pt.new_root("pgd of pid 1", user=True)
    m.pt.map(other, 0x200000, 0x1000, PAGE, PAGE_SHARED, writer="t", user_tables=True)
    assert m.pt.walk(m.root, 0x200000).phys is None
    assert m.pt.walk(other, 0x200000).phys == 0x1000
    assert m.pt.tables[other].level_index == 0


# -- decode --------------------------------------------------------------------------------


def test_decode_picks_the_format_by_ps(m):
    m.pt.map(m.root, 0x200000, 0x40000000, M2, PAGE_KERNEL, writer="t")
    op = m.pt.map(m.root, 0x400000, 0x5000, PAGE, PAGE_KERNEL, writer="t")
    (t,) = op.tables_allocated
    large = m.pt.parse(0, m.u64(m.root + 8))
    assert (large.address, large.pse, large.nx, large.rw) == (0x40000000, True, True, True)
    table = m.pt.parse(0, m.u64(m.root + 16))
    assert (table.address, table.pse) == (t, False)
    leaf = m.pt.parse(1, 0x5000 | PAGE_KERNEL | PAT_PTE)
    assert (leaf.address, leaf.pat) == (0x5000, True)
    assert m.pt.flag_names(1, 0x5000 | PAGE_KERNEL) == ["PRESENT", "RW", "ACCESSED", "DIRTY", "GLOBAL", "NX"]


# -- PAT across a split -------------------------------------------------------------------


def test_split_moves_the_large_pat_bit_to_the_pte_pat_bit(m):
    m.pt.map(m.root, 0x200000, 0x40000000, M2, PAGE_KERNEL, writer="t")
    m.put(m.root + 8, m.u64(m.root + 8) | (1 << 12))  # PAT in a 2 MiB entry
    op = m.pt.unmap(m.root, 0x200000, PAGE, writer="t")
    (t,) = op.tables_allocated
    assert m.u64(t + 8) == 0x40001000 | PAGE_KERNEL | PAT_PTE


def test_map_refuses_the_large_page_bit_in_a_protection(m):
    before = m.snapshot()
    with pytest.raises(MappingError, match="large-page bit"):
        m.pt.map(m.root, 0x200000, 0x40000000, M2, PAGE_KERNEL | PS, writer="t")
    assert m.snapshot() == before


# -- the real x86 modes (when the arch plugins import) -------------------------------------


def real_mode(module, name):
    return getattr(pytest.importorskip(module), name)


def u32(m, pa):
    return int.from_bytes(m.mem.read(pa, 4), "little")


def test_i386_2level_4m_pages():
    m = ToyMachine(real_mode("mmemu_i386.formats", "PAGING_2LEVEL"))
    prot = P | RW | A | D | G  # PAGE_KERNEL: no NX in 2-level entries
    op = m.pt.map(m.root, 0xC0000000, 0, 4 * MiB + PAGE, prot, writer="direct")
    (t,) = op.tables_allocated
    assert u32(m, m.root + 4 * 0x300) == 0x000001E3
    assert u32(m, m.root + 4 * 0x301) == t | KERNPG_TABLE
    assert u32(m, t) == 0x00400163 and u32(m, t + 4) == 0
    assert leaves(m) == [(0xC0000000, 4 * MiB, 0), (0xC0400000, PAGE, 0x400000)]
    w = m.pt.walk(m.root, 0xC0123456)
    assert (w.phys, w.page_size, w.nx) == (0x123456, 4 * MiB, False)
    assert w.code("exec") is None and w.code("write", user=True) == 0x7
    assert m.pt.walk(m.root, 0xD0000000).code("exec") == 0x0  # no I/D bit without NX
    with pytest.raises(AddressError):
        m.pt.walk(m.root, 1 << 32)


def test_i386_pae_pdpt_entries_carry_present_only():
    m = ToyMachine(real_mode("mmemu_i386_pae.formats", "PAGING_PAE"))
    op = m.pt.map(m.root, 0xC0000000, 0, M2, PAGE_KERNEL, writer="direct")
    (t,) = op.tables_allocated
    assert m.u64(m.root + 24) == t | P
    assert m.u64(t) == PAGE_KERNEL | PS
    op = m.pt.map(m.root, 0x08048000, 0x5000, PAGE, PAGE_SHARED, writer="do_anonymous_page", user_tables=True)
    t_pmd, t_pte = op.tables_allocated
    assert m.u64(m.root) == t_pmd | P  # no RW, no US: they are reserved in a PDPTE
    assert m.u64(t_pmd + 8 * 0x40) == t_pte | PAGE_TABLE
    assert m.u64(t_pte + 8 * 0x48) == 0x5000 | PAGE_SHARED
    w = m.pt.walk(m.root, 0x08048123)
    assert (w.phys, w.user, w.writable, w.nx) == (0x5123, True, True, True)
    assert (w.code("read", True), w.code("write", True), w.code("exec", True)) == (None, None, 0x15)
    assert [s.level.name for s in w.steps] == ["pgd", "pmd", "pte"]


def test_x86_64_4level_1g_direct_map():
    m = ToyMachine(real_mode("mmemu_x86_64.formats", "PAGING_4LEVEL"))
    base = 0xFFFF888000000000  # PAGE_OFFSET: pgd index 273
    op = m.pt.map(m.root, base, 0, GiB, PAGE_KERNEL, writer="direct")
    (t,) = op.tables_allocated
    assert m.u64(m.root + 8 * 273) == t | KERNPG_TABLE
    assert m.u64(t) == PAGE_KERNEL | PS
    assert leaves(m) == [(base, GiB, 0)]
    w = m.pt.walk(m.root, base + 0x12345678)
    assert (w.phys, w.page_size, [s.index for s in w.steps]) == (0x12345678, GiB, [273, 0])
    with pytest.raises(AddressError):
        m.pt.walk(m.root, 0x0000800000000000)


def test_x86_64_5level_walk():
    m = ToyMachine(real_mode("mmemu_x86_64.formats", "PAGING_5LEVEL"))
    base = 0xFF11000000000000  # PAGE_OFFSET with LA57: pgd index 273
    m.pt.map(m.root, base + 0x1000, 0x7000, PAGE, PAGE_KERNEL, writer="t")
    w = m.pt.walk(m.root, base + 0x1ABC)
    assert (w.phys, [s.level.name for s in w.steps]) == (0x7ABC, ["pgd", "p4d", "pud", "pmd", "pte"])
    assert [s.index for s in w.steps] == [273, 0, 0, 0, 1]
    assert leaves(m) == [(base + 0x1000, PAGE, 0x7000)]
    m.pt.walk(m.root, 0x00FF000000000000)  # canonical with 57 bits, not with 48
    with pytest.raises(AddressError):
        m.pt.walk(m.root, 0x0100000000000000)


# -- map_frames: one page written as one entry -----------------------------------------------

class _OddFrameCodec(type(TOY.codec)):
    """A codec with its own frame encoding (not the base class's linear one): odd frames
    get the PCD bit, as an arch with a cache attribute per frame might."""

    def leaves_for_frames(self, li, pfns, prot):
        out = super().leaves_for_frames(li, pfns, prot)
        for i, pfn in enumerate(pfns):
            if pfn & 1:
                out[i] |= PCD
        return out


@pytest.mark.parametrize("own_codec", [False, True])
def test_map_frames_of_one_page_writes_the_codecs_leaf_and_unmap_reports_it(own_codec):
    mode = TOY
    if own_codec:
        mode = dataclasses.replace(TOY, codec=_OddFrameCodec(TOY.codec.bits, NX, TOY.codec.flags))
    m = ToyMachine(mode)
    m.pt.map(m.root, 0x400000, 0x400000, PAGE, PAGE_KERNEL, writer="populate")  # the pte table exists
    seen = []
    m.pt.observers.append(seen.append)
    for va, pfn in ((0x401000, 0x123), (0x402000, 0x124)):
        op = m.pt.map_frames(m.root, va, [pfn], PAGE_KERNEL, writer="vmalloc")
        expected = mode.codec.leaves_for_frames(1, [pfn], PAGE_KERNEL)[0]
        assert m.pt.read_pte(m.root, va) == expected
        assert (op.kind, op.va, op.size, op.writer, op.unmapped, op.tables_allocated) == \
            ("map", va, PAGE, "vmalloc", [], [])
        assert list(op.changes[0].entries()) == [((va >> 12) & 511, 0, expected)]
        assert m.pt.writer_of(m.pt.pte_slot(m.root, va)[0] + 8 * ((va >> 12) & 511)) == "vmalloc"
    assert len(seen) == 2 and seen[-1] is op  # one operation each, reported
    before = m.mem.read(m.pt.pte_slot(m.root, 0x401000)[0], PAGE)
    with pytest.raises(MappingError, match="already mapped"):
        m.pt.map_frames(m.root, 0x401000, [0x200], PAGE_KERNEL, writer="vmalloc")
    assert m.mem.read(m.pt.pte_slot(m.root, 0x401000)[0], PAGE) == before and len(seen) == 2
    op = m.pt.unmap(m.root, 0x402000, PAGE, writer="vfree")
    assert op.unmapped == [(0x402000, 0x124 << 12, PAGE)] and op.kind == "unmap"
    assert m.pt.read_pte(m.root, 0x402000) == 0 and seen[-1] is op


def test_unmap_over_tables_lists_every_page_in_order_and_keeps_what_the_mmu_does_not_use(m):
    """An unmap over three page tables: the first with a hole and an entry the MMU does not
    use (not present, not empty: it stays, counted in ``kept``), the others leaves only
    (each cleared as one run, their pages kept as the entries until read). ``unmapped``
    lists every page, (va, phys, size) in address order; ``unmapped_pfns`` their frames."""
    start = 0x400000 - 40 * PAGE
    n = 600
    base = 0x1001000  # not 2 MiB aligned with the va: ptes only
    last = len(m.mode.levels) - 1
    m.pt.map(m.root, start, base, n * PAGE, PAGE_KERNEL, writer="t")
    hole, odd = start + 3 * PAGE, start + 7 * PAGE
    m.put(m.entry_addr(hole, last), 0)
    m.put(m.entry_addr(odd, last), 0x2)  # RW without P: not present
    op = m.pt.unmap(m.root, start, n * PAGE, writer="t")
    expect = [(start + i * PAGE, base + i * PAGE, PAGE) for i in range(n)
              if start + i * PAGE not in (hole, odd)]
    assert op.kept == 1
    assert op.unmapped_pfns(12) == [phys >> 12 for _, phys, _ in expect]
    assert op.unmapped == expect
    assert m.u64(m.entry_addr(odd, last)) == 0x2
    assert all(m.u64(m.entry_addr(start + i * PAGE, last)) == 0 for i in range(n) if start + i * PAGE != odd)
    assert [(c.index, len(c.old) // 8) for c in op.changes][-2:] == [(0, 512), (0, 48)]
