"""User processes: page directories, VMAs, demand paging, fork with copy-on-write, exit.

The expectations come from the kernel's own rules and numbers (arch/x86/mm/pgtable.c
pgd_alloc, mm/mmap.c, mm/mprotect.c, mm/memory.c, kernel/fork.c, fs/proc/task_mmu.c), and
the page-table entries are read straight from emulated physical memory with a small walker
written here, not through mmemu's own walker.
"""

from __future__ import annotations

import pytest

import mmemu
from mmemu.errors import MmemuError, SegmentationFault
from mmemu.kernel import MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE, MAP_SHARED, PROT_EXEC, PROT_NONE, PROT_READ, PROT_WRITE

PAGE = 4096
# x86 entry bits (arch/x86/include/asm/pgtable_types.h)
P, RW, US, A, D, PS, G = 0x1, 0x2, 0x4, 0x20, 0x40, 0x80, 0x100
NX = 1 << 63
PROTNONE = G  # _PAGE_PROTNONE is _PAGE_GLOBAL's bit
ADDR = {"i386": 0xFFFFF000, "i386_pae": 0x000FFFFFFFFFF000, "x86_64": 0x000FFFFFFFFFF000}
#: (shift, entries, entry size) per level, top down
LEVELS = {
    "i386": [(22, 1024, 4), (12, 1024, 4)],
    "i386_pae": [(30, 4, 8), (21, 512, 8), (12, 512, 8)],
    "x86_64": [(39, 512, 8), (30, 512, 8), (21, 512, 8), (12, 512, 8)],
    "x86_64-5": [(48, 512, 8), (39, 512, 8), (30, 512, 8), (21, 512, 8), (12, 512, 8)],
}
#: TASK_SIZE: i386 PAGE_OFFSET (3G split); x86_64 (1 << 47) - PAGE_SIZE
TASK_SIZE = {"i386": 0xC0000000, "i386_pae": 0xC0000000, "x86_64": 0x7FFFFFFFF000}
#: arch/x86/mm/mmap.c: the gap below the stack is at least 128 MiB
MIN_GAP = 128 << 20

MACHINES = [
    pytest.param(dict(arch="i386", kernel="6.6", ram="1G"), id="i386-highpte"),
    pytest.param(dict(arch="i386", kernel="6.6", ram="1G", options={"HIGHPTE": "n"}), id="i386-nohighpte"),
    pytest.param(dict(arch="i386_pae", kernel="6.6", ram="2G"), id="pae-highpte"),
    pytest.param(dict(arch="i386_pae", kernel="6.6", ram="2G", options={"HIGHPTE": "n"}), id="pae-nohighpte"),
    pytest.param(dict(arch="x86_64", kernel="6.6", ram="1G"), id="x86_64"),
]


def levels_of(k) -> list[tuple[int, int, int]]:
    arch = k.spec.arch
    if arch == "x86_64" and len(k.paging.levels) == 5:
        return LEVELS["x86_64-5"]
    return LEVELS[arch]


def nx_bit(k) -> int:
    return 0 if k.spec.arch == "i386" else NX


def read_entry(k, table: int, index: int, size: int) -> int:
    return int.from_bytes(k.mem.read(table + index * size, size), "little")


def raw_walk(k, root: int, va: int) -> list[tuple[int, int]]:
    """(table address, raw entry) per level, top down, stopping at a non-present entry or
    a large page. Independent of mmemu.pagetable."""
    out = []
    table = root
    levels = levels_of(k)
    mask = ADDR[k.spec.arch]
    for li, (shift, n, size) in enumerate(levels):
        raw = read_entry(k, table, (va >> shift) & (n - 1), size)
        out.append((table, raw))
        if not raw & P or li == len(levels) - 1:
            break
        if raw & PS and not (k.spec.arch == "i386_pae" and li == 0):
            break
        table = raw & mask
    return out


def user_pte(k, proc, va: int) -> int | None:
    """The last-level entry of *va* in *proc*, None if no page table reaches it."""
    steps = raw_walk(k, proc.pgd, va)
    return steps[-1][1] if len(steps) == len(levels_of(k)) else None


def pte_table(k, proc, va: int) -> int | None:
    steps = raw_walk(k, proc.pgd, va)
    return steps[-1][0] if len(steps) == len(levels_of(k)) else None


def pfn_of(k, pte: int) -> int:
    return (pte & ADDR[k.spec.arch]) >> 12


def refcount(k, pfn: int) -> int:
    return k.frames.allocated[pfn].refcount


def lowmem_end(k) -> int:
    """Physical end of low memory (high_memory - PAGE_OFFSET)."""
    return k.layout["high_memory"] - k.layout["PAGE_OFFSET"]


@pytest.fixture(params=MACHINES)
def k(request):
    kern = mmemu.boot(**request.param)
    yield kern
    kern.close()


# -- page directories -----------------------------------------------------------------

HALVES = [
    # machine, KERNEL_PGD_BOUNDARY = pgd_index(PAGE_OFFSET) worked out by hand
    pytest.param(dict(arch="i386", kernel="6.6", ram="1G"), 0xC0000000 >> 22, id="i386-6.6"),  # 768
    pytest.param(dict(arch="i386", kernel="6.6", ram="1G", options={"VMSPLIT": "2G"}), 0x80000000 >> 22,
                 id="i386-2G-split"),
    pytest.param(dict(arch="i386", kernel="2.6.12", ram="1G"), 768, id="i386-2.6.12"),
    pytest.param(dict(arch="i386", kernel="3.10", ram="1G", options={"HIGHPTE": "n"}), 768, id="i386-3.10"),
    pytest.param(dict(arch="i386_pae", kernel="6.6", ram="2G"), 3, id="pae-6.6"),  # PTI: kernel pmds of its own
    pytest.param(dict(arch="i386_pae", kernel="6.6", ram="2G", cmdline="nopti"), 3, id="pae-6.6-nopti"),
    pytest.param(dict(arch="i386_pae", kernel="6.16", ram="2G", cmdline="nopti"), 3, id="pae-6.16-nopti"),  # unshared
    pytest.param(dict(arch="i386_pae", kernel="6.6", ram="2G", options={"VMSPLIT": "2G"}), 2, id="pae-2G-split"),
    pytest.param(dict(arch="i386_pae", kernel="2.6.12", ram="1G"), 3, id="pae-2.6.12"),
    pytest.param(dict(arch="x86_64", kernel="6.6", ram="1G"), (0xFFFF888000000000 >> 39) & 511, id="x86_64-6.6"),
    pytest.param(dict(arch="x86_64", kernel="4.14", ram="1G"), (0xFFFF880000000000 >> 39) & 511, id="x86_64-4.14"),
    pytest.param(dict(arch="x86_64", kernel="2.6.12", ram="1G"), (0xFFFF810000000000 >> 39) & 511,
                 id="x86_64-2.6.12"),
    pytest.param(dict(arch="x86_64", kernel="6.6", ram="1G", options={"levels": "5"}),
                 (0xFF11000000000000 >> 48) & 511, id="x86_64-5level"),
]


@pytest.mark.parametrize("machine, boundary", HALVES)
def test_kernel_half_of_a_new_pgd_is_the_masters(machine, boundary):
    k = mmemu.boot(**machine)
    try:
        assert k.KERNEL_PGD_BOUNDARY == boundary
        shift, n, size = levels_of(k)[0]
        # some kernel work first, so that the master has more than the boot entries
        k.vmalloc(5 * PAGE)
        procs = [k.create_process("a"), k.create_process("b")]
        procs.append(k.fork(procs[0]))
        master = [read_entry(k, k.pgd, i, size) for i in range(n)]
        assert any(master[boundary:])
        for proc in procs:
            mine = [read_entry(k, proc.pgd, i, size) for i in range(n)]
            if k.plan.kernel_copy_level:
                # PAE under PTI (SHARED_KERNEL_PMD 0): pgd_prepopulate_pmd gives the pgd a
                # kernel pmd of its own, a copy of swapper_pg_dir's
                for i in range(boundary, n):
                    own, theirs = mine[i] & ADDR["i386_pae"], master[i] & ADDR["i386_pae"]
                    assert own != theirs and mine[i] & 0xFFF == P, f"pid {proc.pid}"
                    assert k.mem.read(own, PAGE) == k.mem.read(theirs, PAGE)
            else:
                assert mine[boundary:] == master[boundary:], f"pid {proc.pid}"
            if k.spec.arch == "i386_pae":
                # pgd_prepopulate_pmd: every user pdpt entry is a fresh, zeroed pmd with
                # _PAGE_PRESENT only (the CPU loads the pdpt with CR3; RW/US are reserved)
                pmds = [e & ADDR["i386_pae"] for e in mine[:boundary]]
                assert all(e & 0xFFF == P for e in mine[:boundary])
                assert len(set(pmds)) == boundary and not set(pmds) & {e & ADDR["i386_pae"] for e in master}
                for pmd in pmds:
                    assert k.frames.page(pmd >> 12).state == "allocated"
                    assert k.mem.read(pmd, PAGE) == bytes(PAGE)
            else:
                assert not any(mine[:boundary]), "a new process has no user mappings"
        k.check_invariants()
    finally:
        k.close()


def test_pae_preallocates_the_user_pmds_and_frees_them_on_exit():
    k = mmemu.boot(arch="i386_pae", kernel="6.6", ram="2G", options={"VMSPLIT": "2G"}, cmdline="nopti")
    try:
        free0 = k.frames.nr_free_pages()
        p = k.create_process()
        # the pdpt page + PREALLOCATED_PMDS = KERNEL_PGD_BOUNDARY (= 2 with a 2G split)
        assert free0 - k.frames.nr_free_pages() == 1 + 2
        a = k.mmap(p, None, PAGE)
        k.write(a, b"x", user=True)
        # a user page in the first GiB goes under the preallocated pmd: no new pmd, one pte table
        assert free0 - k.frames.nr_free_pages() == 1 + 2 + 1 + 1
        k.switch_to(None)
        k.exit_mm(p)
        assert k.frames.nr_free_pages() == free0
    finally:
        k.close()


# -- mmap ---------------------------------------------------------------------------------


def test_mmap_is_top_down_below_mmap_base(k):
    p = k.create_process()
    task = TASK_SIZE[k.spec.arch]
    base = (task - MIN_GAP) & ~(PAGE - 1)  # mmap_base(): PAGE_ALIGN(TASK_SIZE - gap), gap = MIN_GAP
    a = k.mmap(p, None, 3 * PAGE)
    assert a == base - 3 * PAGE
    b = k.mmap(p, None, 5000)  # rounded up to two pages, right below
    assert b == a - 2 * PAGE
    c = k.mmap(p, None, PAGE, PROT_READ)
    assert c == b - PAGE
    # a hole opens where a was; the highest gap that fits is used first
    k.munmap(p, a, 3 * PAGE)
    assert k.mmap(p, None, PAGE) == base - PAGE
    assert k.mmap(p, None, 2 * PAGE) == base - 3 * PAGE
    # a request that no longer fits above goes below everything
    assert k.mmap(p, None, 4 * PAGE) == c - 4 * PAGE
    # nothing is mapped until touched
    for v in p.vmas:
        if v.name != "[stack]":
            for va in range(v.vm_start, v.vm_end, PAGE):
                pte = user_pte(k, p, va)
                assert not pte
    k.check_invariants()


def test_mmap_fixed_and_hint(k):
    p = k.create_process()
    fixed = 0x10000000
    a = k.mmap(p, fixed, 4 * PAGE, flags=MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED)
    assert a == fixed
    assert [(v.vm_start, v.vm_end) for v in p.vmas if v.vm_start == fixed] == [(fixed, fixed + 4 * PAGE)]
    # a hint without MAP_FIXED is taken where the range is free ...
    hint = 0x20000000
    assert k.mmap(p, hint, PAGE) == hint
    # ... and ignored where it is not: the top-down search decides
    base = (TASK_SIZE[k.spec.arch] - MIN_GAP) & ~(PAGE - 1)
    assert k.mmap(p, fixed + PAGE, PAGE) == base - PAGE
    # MAP_FIXED over pages in use: they are unmapped and freed, the new range is empty
    k.write(fixed, b"A" * (4 * PAGE), user=True)
    free_before = k.frames.nr_free_pages()
    k.mmap(p, fixed + PAGE, 2 * PAGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED)
    assert k.frames.nr_free_pages() == free_before + 2
    spans = sorted((v.vm_start, v.vm_end, v.perms()) for v in p.vmas if fixed <= v.vm_start < fixed + 4 * PAGE)
    assert spans == [(fixed, fixed + PAGE, "rw-p"), (fixed + PAGE, fixed + 3 * PAGE, "r--p"),
                     (fixed + 3 * PAGE, fixed + 4 * PAGE, "rw-p")]
    assert k.read(fixed + PAGE, 2 * PAGE, user=True) == bytes(2 * PAGE)
    assert k.read(fixed, 1, user=True) == b"A" and k.read(fixed + 3 * PAGE, 1, user=True) == b"A"
    k.check_invariants()


def test_mmap_bad_arguments(k):
    p = k.create_process()
    before = [(v.vm_start, v.vm_end) for v in p.vmas]
    with pytest.raises(MmemuError):
        k.mmap(p, 0x10000001, PAGE, flags=MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED)  # -EINVAL
    with pytest.raises(MmemuError):
        k.mmap(p, TASK_SIZE[k.spec.arch], PAGE, flags=MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED)
    with pytest.raises(MmemuError):
        k.mmap(p, None, PAGE, flags=MAP_ANONYMOUS)  # neither MAP_SHARED nor MAP_PRIVATE
    with pytest.raises(MmemuError):
        k.mmap(p, None, 0)
    assert [(v.vm_start, v.vm_end) for v in p.vmas] == before


# -- munmap -------------------------------------------------------------------------------


def test_munmap_splits_vmas_and_frees_pages_and_empty_tables(k):
    p = k.create_process()
    a = k.mmap(p, None, 4 * PAGE)
    k.write(a, bytes(range(256)) * 64, user=True)  # all four pages
    table = pte_table(k, p, a)
    assert table is not None
    free0 = k.frames.nr_free_pages()
    k.munmap(p, a + PAGE, 2 * PAGE)
    assert [(v.vm_start, v.vm_end) for v in p.vmas if v.name != "[stack]"] == [(a, a + PAGE),
                                                                                (a + 3 * PAGE, a + 4 * PAGE)]
    assert k.frames.nr_free_pages() == free0 + 2  # two pages; the page table still maps two
    assert not user_pte(k, p, a + PAGE) and not user_pte(k, p, a + 2 * PAGE)
    assert user_pte(k, p, a) & P and user_pte(k, p, a + 3 * PAGE) & P
    assert k.frames.page(table >> 12).state == "allocated"
    # the rest: the pages, and the tables free_pgtables frees between the floor and the
    # ceiling (mm/memory.c free_pgd_range): the pte table only; the stack VMA is the next
    # one, in the same pmd (and pud) table's range, so those stay although it has no page
    # yet (tests/test_pgtable_lifetimes.py pins the rule)
    tables = 1
    k.munmap(p, a, 4 * PAGE)
    assert k.frames.nr_free_pages() == free0 + 4 + tables
    assert k.frames.page(table >> 12).state == "free"
    assert [v.name for v in p.vmas] == ["[stack]"]
    with pytest.raises(SegmentationFault):
        k.read(a, 1, user=True)
    k.check_invariants()


def test_munmap_of_a_range_without_vma_is_an_error_and_changes_nothing(k):
    p = k.create_process()
    a = k.mmap(p, None, PAGE)
    k.write(a, b"z", user=True)
    before = [(v.vm_start, v.vm_end, v.vm_flags) for v in p.vmas]
    free0 = k.frames.nr_free_pages()
    with pytest.raises(MmemuError, match="no VMA"):
        k.munmap(p, a - 16 * PAGE, 8 * PAGE)
    with pytest.raises(MmemuError):
        k.munmap(p, a + 1, PAGE)  # not page aligned: -EINVAL
    assert [(v.vm_start, v.vm_end, v.vm_flags) for v in p.vmas] == before
    assert k.frames.nr_free_pages() == free0
    assert k.read(a, 1, user=True) == b"z"


# -- mprotect -----------------------------------------------------------------------------


def test_mprotect_changes_vmas_and_ptes(k):
    p = k.create_process()
    a = k.mmap(p, None, 4 * PAGE)
    k.write(a, b"1" * (4 * PAGE), user=True)
    for va in range(a, a + 4 * PAGE, PAGE):
        assert user_pte(k, p, va) & (P | RW | US) == P | RW | US
    k.mprotect(p, a + PAGE, 2 * PAGE, PROT_READ)
    assert [(v.vm_start, v.vm_end, v.perms()) for v in p.vmas if v.name != "[stack]"] == [
        (a, a + PAGE, "rw-p"), (a + PAGE, a + 3 * PAGE, "r--p"), (a + 3 * PAGE, a + 4 * PAGE, "rw-p")]
    for i in range(4):
        pte = user_pte(k, p, a + i * PAGE)
        assert pte & P and pte & US
        assert bool(pte & RW) == (i in (0, 3)), i
        assert pte & NX == nx_bit(k)  # no PROT_EXEC anywhere: NX where the arch has it
    with pytest.raises(SegmentationFault):
        k.write(a + PAGE, b"x", user=True)
    assert k.read(a + PAGE, 1, user=True) == b"1"
    # executable: NX goes (PAE and x86_64)
    k.mprotect(p, a + PAGE, PAGE, PROT_READ | PROT_EXEC)
    assert user_pte(k, p, a + PAGE) & NX == 0
    assert [v.perms() for v in p.vmas if v.vm_start == a + PAGE] == ["r-xp"]
    # back to read-write: the VMAs merge again, and writing works
    k.mprotect(p, a, 4 * PAGE, PROT_READ | PROT_WRITE)
    assert [(v.vm_start, v.vm_end, v.perms()) for v in p.vmas if v.name != "[stack]"] == [
        (a, a + 4 * PAGE, "rw-p")]
    k.write(a + PAGE, b"2", user=True)
    assert k.read(a + PAGE, 1, user=True) == b"2"
    k.check_invariants()


def test_mprotect_none_keeps_the_page_and_its_data(k):
    p = k.create_process()
    a = k.mmap(p, None, PAGE)
    k.write(a, b"secret", user=True)
    pfn = pfn_of(k, user_pte(k, p, a))
    k.mprotect(p, a, PAGE, PROT_NONE)
    pte = user_pte(k, p, a)
    # PAGE_NONE: not present for the CPU, but _PAGE_PROTNONE keeps it a pte_present() page;
    # from 4.18 x86_64 and PAE store its frame inverted (L1TF: pgtable-invert.h protnone_mask)
    stored = pfn_of(k, pte ^ (ADDR[k.spec.arch] if k.spec.arch != "i386" else 0))
    assert not pte & P and pte & PROTNONE and stored == pfn
    assert k.frames.page(pfn).state == "allocated"
    with pytest.raises(SegmentationFault):
        k.read(a, 1, user=True)
    k.mprotect(p, a, PAGE, PROT_READ)
    assert k.read(a, 6, user=True) == b"secret"
    assert pfn_of(k, user_pte(k, p, a)) == pfn
    k.check_invariants()


def test_mprotect_on_a_hole_is_enomem_and_changes_nothing(k):
    p = k.create_process()
    a = k.mmap(p, 0x30000000, PAGE, flags=MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED)
    b = k.mmap(p, 0x30002000, PAGE, flags=MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED)
    k.write(a, b"a", user=True)
    before = [(v.vm_start, v.vm_end, v.vm_flags) for v in p.vmas]
    pte = user_pte(k, p, a)
    with pytest.raises(MmemuError, match="ENOMEM"):
        k.mprotect(p, a, 3 * PAGE, PROT_READ)  # the middle page is a hole
    assert [(v.vm_start, v.vm_end, v.vm_flags) for v in p.vmas] == before
    assert user_pte(k, p, a) == pte
    assert b == a + 2 * PAGE


def test_mprotect_keeps_a_cow_shared_page_read_only(k):
    p = k.create_process()
    a = k.mmap(p, None, 2 * PAGE)
    k.write(a, b"P" * (2 * PAGE), user=True)
    c = k.fork(p)
    shared = pfn_of(k, user_pte(k, p, a))
    k.mprotect(p, a, 2 * PAGE, PROT_READ | PROT_WRITE)  # the VMA is writable: change_protection runs
    for proc in (p, c):
        pte = user_pte(k, proc, a)
        assert pte & P and not pte & RW and pfn_of(k, pte) == shared
    assert refcount(k, shared) == 2
    # the copy happens on the write, as always
    k.write(a, b"p", user=True, process=p)
    assert pfn_of(k, user_pte(k, p, a)) != shared
    assert k.read(a, 2, user=True, process=c) == b"PP"
    k.check_invariants()


# -- brk ------------------------------------------------------------------------------------


def test_brk_grows_and_shrinks_the_heap(k):
    p = k.create_process()
    start = p.start_brk
    assert k.brk(p, start - PAGE) == start  # below start_brk: refused, the break stays
    assert k.brk(p, start + 10000) == start + 10000
    heap = [v for v in p.vmas if v.name == "[heap]"]
    assert [(v.vm_start, v.vm_end, v.perms()) for v in heap] == [(start, start + 3 * PAGE, "rw-p")]
    k.write(start, b"h" * (3 * PAGE), user=True)
    free0 = k.frames.nr_free_pages()
    assert k.brk(p, start + PAGE + 1) == start + PAGE + 1  # PAGE_ALIGN: two pages stay
    assert k.frames.nr_free_pages() == free0 + 1
    assert [(v.vm_start, v.vm_end) for v in p.vmas if v.name == "[heap]"] == [(start, start + 2 * PAGE)]
    with pytest.raises(SegmentationFault):
        k.read(start + 2 * PAGE, 1, user=True)
    assert k.read(start + PAGE, 1, user=True) == b"h"
    # growing again gives a fresh, empty page
    assert k.brk(p, start + 3 * PAGE) == start + 3 * PAGE
    assert k.read(start + 2 * PAGE, 4, user=True) == bytes(4)
    assert k.brk(p, start) == start
    assert not [v for v in p.vmas if v.name == "[heap]"]
    k.check_invariants()


def test_brk_keeps_a_page_away_from_the_next_mapping(k):
    p = k.create_process()
    start = p.start_brk
    other = start + 4 * PAGE
    k.mmap(p, other, PAGE, flags=MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED)
    # mm/mmap.c brk: find_vma_intersection(mm, oldbrk, newbrk + PAGE_SIZE) refuses
    assert k.brk(p, other) == start
    assert k.brk(p, other - PAGE + 1) == start
    assert k.brk(p, other - PAGE) == other - PAGE
    assert [(v.vm_start, v.vm_end) for v in p.vmas if v.name == "[heap]"] == [(start, other - PAGE)]


# -- demand paging --------------------------------------------------------------------------


def _dirty_free_frames(k, n=64):
    """Fill n frames with garbage and free them again, so that a page that is not zeroed
    before use would show it. Returns their pfns."""
    pages = [k.alloc_pages(0, "HighMem", owner="garbage") for _ in range(n)]
    for pg in pages:
        k.mem.write(pg.phys, b"\xAA" * PAGE)
    pfns = {pg.pfn for pg in pages}
    for pg in reversed(pages):
        k.frames.free_pages(pg)
    return pfns


def test_first_read_maps_the_zero_page_read_only(k):
    p = k.create_process()
    q = k.create_process()
    a = k.mmap(p, None, 2 * PAGE)
    b = k.mmap(q, None, PAGE)
    free0 = k.frames.nr_free_pages()
    assert k.read(a, 16, user=True) == bytes(16)
    assert k.read(a + PAGE, 16, user=True) == bytes(16)
    assert k.read(b, 16, user=True, process=q) == bytes(16)
    ptes = [user_pte(k, p, a), user_pte(k, p, a + PAGE), user_pte(k, q, b)]
    zero = {pfn_of(k, pte) for pte in ptes}
    assert len(zero) == 1, "one shared zero page"
    (zpfn,) = zero
    assert zpfn == k.zero_pfn
    assert k.frames.page(zpfn).state == "reserved"  # empty_zero_page is in the kernel image
    assert k.mem.read(zpfn << 12, PAGE) == bytes(PAGE)
    for pte in ptes:
        # PAGE_COPY of a private writable VMA: present, user, read-only, NX where it exists,
        # and _PAGE_SPECIAL (bit 9: mm/memory.c do_anonymous_page's pte_mkspecial, 2.6.32+)
        assert pte & ~ADDR[k.spec.arch] & ~(A | D) == P | US | nx_bit(k) | 1 << 9
    # only page tables were allocated, no data page
    table_pages = {"i386": 2, "i386_pae": 2, "x86_64": 6}[k.spec.arch]  # p and q: pte (+pmd +pud)
    assert free0 - k.frames.nr_free_pages() == table_pages
    k.check_invariants()


def test_first_write_maps_a_fresh_zeroed_page(k):
    p = k.create_process()
    a = k.mmap(p, None, PAGE)
    dirty = _dirty_free_frames(k)
    k.write(a + 100, b"!", user=True)
    pte = user_pte(k, p, a)
    pfn = pfn_of(k, pte)
    assert pfn in dirty, "the test must reuse a dirtied frame to mean anything"
    assert pte & ~ADDR[k.spec.arch] & ~A == P | RW | US | D | nx_bit(k)
    data = k.mem.read(pfn << 12, PAGE)
    assert data[100:101] == b"!" and data[:100] == bytes(100) and data[101:] == bytes(PAGE - 101)
    assert refcount(k, pfn) == 1
    # a read after the write: the same page, no new fault
    count = k.fault_count
    assert k.read(a + 100, 1, user=True) == b"!"
    assert k.fault_count == count
    k.check_invariants()


def test_write_after_read_copies_from_the_zero_page(k):
    p = k.create_process()
    a = k.mmap(p, None, PAGE)
    count = k.fault_count
    k.read(a, 1, user=True)
    k.write(a, b"w", user=True)
    assert k.fault_count == count + 2  # zero page, then do_wp_page
    pte = user_pte(k, p, a)
    assert pfn_of(k, pte) != k.zero_pfn and pte & RW
    assert k.read(a, 2, user=True) == b"w\x00"
    k.check_invariants()


@pytest.mark.parametrize("kernel, zero_page", [("2.6.12", True), ("2.6.23", True), ("2.6.24", False),
                                               ("2.6.31", False), ("2.6.32", True), ("3.10", True)])
def test_zero_page_by_era(kernel, zero_page):
    """2.6.24 removed the zero page for anonymous read faults ("mm: remove ZERO_PAGE"),
    2.6.32 brought it back; in between every fault allocates a private page, mapped with
    maybe_mkwrite(pte_mkdirty()) whatever the access."""
    k = mmemu.boot(arch="i386", kernel=kernel, ram="1G")
    try:
        p = k.create_process()
        a = k.mmap(p, None, PAGE)
        ro = k.mmap(p, None, PAGE, PROT_READ)
        free0 = k.frames.nr_free_pages()
        count = k.fault_count
        assert k.read(a, 8, user=True) == bytes(8)
        pte = user_pte(k, p, a)
        if zero_page:
            assert pfn_of(k, pte) == k.zero_pfn and not pte & RW
        else:
            assert pfn_of(k, pte) != k.zero_pfn and refcount(k, pfn_of(k, pte)) == 1
            assert pte & RW and pte & D
        k.write(a, b"x", user=True)
        assert k.fault_count == count + (2 if zero_page else 1)
        k.read(ro, 1, user=True)
        pte = user_pte(k, p, ro)
        assert not pte & RW
        if not zero_page:
            assert pte & D
        # data pages: a (one either way) and ro (only without the zero page); one pte table
        assert free0 - k.frames.nr_free_pages() == 1 + 1 + (0 if zero_page else 1)
        k.check_invariants()
    finally:
        k.close()


def test_access_to_the_stack_below_its_vma_grows_it(k):
    p = k.create_process()
    stack = next(v for v in p.vmas if v.name == "[stack]")
    below = stack.vm_start - 3 * PAGE + 8
    k.write(below, b"s", user=True)
    assert stack.vm_start == (below & ~(PAGE - 1))
    assert k.read(below, 1, user=True) == b"s"


# -- fork -----------------------------------------------------------------------------------


def test_fork_shares_pages_copy_on_write(k):
    p = k.create_process("parent")
    a = k.mmap(p, None, 3 * PAGE)
    k.write(a, b"A" * PAGE + b"B" * PAGE, user=True)  # two private pages
    k.read(a + 2 * PAGE, 1, user=True)  # the third maps the zero page
    pfns = [pfn_of(k, user_pte(k, p, a + i * PAGE)) for i in range(3)]
    c = k.fork(p, "child")
    assert c.parent == p.pid and c.pgd != p.pgd
    assert [(v.vm_start, v.vm_end, v.vm_flags) for v in c.vmas] == [(v.vm_start, v.vm_end, v.vm_flags)
                                                                     for v in p.vmas]
    for i in range(3):
        pp, cp = user_pte(k, p, a + i * PAGE), user_pte(k, c, a + i * PAGE)
        assert pfn_of(k, pp) == pfn_of(k, cp) == pfns[i]
        assert pp & P and cp & P and not pp & RW and not cp & RW, "both sides read-only"
    assert refcount(k, pfns[0]) == 2 and refcount(k, pfns[1]) == 2
    assert pfns[2] == k.zero_pfn and pfns[2] not in k.frames.allocated  # the zero page has no refcount
    # the child writes: do_wp_page copies
    k.write(a + 1, b"c", user=True, process=c)
    new = pfn_of(k, user_pte(k, c, a))
    assert new != pfns[0] and user_pte(k, c, a) & RW
    assert k.mem.read(new << 12, 4) == b"AcAA"
    assert refcount(k, pfns[0]) == 1 and refcount(k, new) == 1
    assert k.read(a, 4, user=True, process=p) == b"AAAA"
    # the parent writes the same page later: it is the only user left, so it is reused
    free0 = k.frames.nr_free_pages()
    k.write(a, b"p", user=True, process=p)
    assert pfn_of(k, user_pte(k, p, a)) == pfns[0] and user_pte(k, p, a) & RW
    assert k.frames.nr_free_pages() == free0
    # the parent writes the second page first this time: copy for it, reuse for the child
    k.write(a + PAGE, b"q", user=True, process=p)
    assert pfn_of(k, user_pte(k, p, a + PAGE)) != pfns[1]
    k.write(a + PAGE, b"r", user=True, process=c)
    assert pfn_of(k, user_pte(k, c, a + PAGE)) == pfns[1]
    assert k.read(a + PAGE, 2, user=True, process=p) == b"qB"
    assert k.read(a + PAGE, 2, user=True, process=c) == b"rB"
    # the zero page: a write in either copies from it
    k.write(a + 2 * PAGE, b"z", user=True, process=c)
    assert pfn_of(k, user_pte(k, c, a + 2 * PAGE)) not in (k.zero_pfn, pfns[2])
    assert pfn_of(k, user_pte(k, p, a + 2 * PAGE)) == k.zero_pfn
    k.check_invariants()


def test_fork_keeps_shared_mappings_shared(k):
    p = k.create_process()
    a = k.mmap(p, None, PAGE, flags=MAP_SHARED | MAP_ANONYMOUS)
    k.write(a, b"s", user=True)
    c = k.fork(p)
    # shmem memory has no anon_vma: copy_page_range leaves it to the child's fault
    # (mm/memory.c; tests/test_pgtable_lifetimes.py), which finds the object's page
    assert not user_pte(k, c, a)
    k.write(a, b"t", user=True, process=c)
    pte_p, pte_c = user_pte(k, p, a), user_pte(k, c, a)
    assert pfn_of(k, pte_p) == pfn_of(k, pte_c) and pte_p & RW and pte_c & RW
    assert k.read(a, 1, user=True, process=p) == b"t"
    k.check_invariants()


def test_shared_anonymous_memory_never_maps_the_zero_page(k):
    """MAP_SHARED|MAP_ANONYMOUS is shmem in the kernel: a read fault gets a page of its own
    (shmem_fault), mapped PAGE_SHARED. Writing through a writable pte of the zero page
    would change what every process reads from untouched memory."""
    p = k.create_process()
    s = k.mmap(p, None, PAGE, flags=MAP_SHARED | MAP_ANONYMOUS)
    assert k.read(s, 4, user=True) == bytes(4)
    pte = user_pte(k, p, s)
    assert pfn_of(k, pte) != k.zero_pfn and pte & RW
    k.write(s, b"shm", user=True)
    assert k.mem.read(k.zero_pfn << 12, PAGE) == bytes(PAGE)
    other = k.create_process()
    a = k.mmap(other, None, PAGE)
    assert k.read(a, 3, user=True, process=other) == bytes(3)
    k.check_invariants()


# -- exit -----------------------------------------------------------------------------------


def _populate(k, p):
    a = k.mmap(p, None, 8 * PAGE)
    k.write(a, b"x" * (5 * PAGE), user=True)
    k.read(a + 6 * PAGE, 1, user=True)
    b = k.mmap(p, 0x08000000, PAGE, flags=MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED)
    k.write(b, b"y", user=True)
    k.brk(p, p.start_brk + 3 * PAGE)
    k.write(p.start_brk, b"h", user=True)
    stack = next(v for v in p.vmas if v.name == "[stack]")
    k.write(stack.vm_end - 8, b"st", user=True)
    return a


def test_exit_mm_frees_everything(k):
    free0 = k.frames.nr_free_pages()
    p = k.create_process()
    _populate(k, p)
    assert k.frames.nr_free_pages() < free0
    k.exit_mm(p)
    assert k.frames.nr_free_pages() == free0
    assert not p.alive and p.pid not in k.processes and k.current is None
    k.check_invariants()
    with pytest.raises(MmemuError):
        k.exit_mm(p)
    with pytest.raises(MmemuError):
        k.switch_to(p)


def test_exit_of_a_protnone_page_drops_its_anon_exclusive_flag(k):
    """zap_pte_range: a PROT_NONE page (pte_present, not valid for the MMU) is zapped with
    the others; its last reference goes, and with it PageAnonExclusive (a freed frame keeps
    no flag: the next owner of the frame starts without it)."""
    p = k.create_process()
    a = k.mmap(p, None, 3 * PAGE)
    for i in range(3):
        k.write(a + i * PAGE, b"x", user=True)
    pfns = [pfn_of(k, user_pte(k, p, a + i * PAGE)) for i in range(3)]
    assert set(pfns) <= k.anon_exclusive
    k.mprotect(p, a + PAGE, PAGE, PROT_NONE)  # the middle page: kept by the engine's unmap
    k.exit_mm(p)
    assert not set(pfns) & k.anon_exclusive
    assert all(k.frames.page(pfn).state == "free" for pfn in pfns)
    k.check_invariants()


def test_munmap_over_several_page_tables_reports_every_page(k):
    """An unmap whose ptes span several page tables (each cleared as one run): its event
    lists every page it unmapped, (va, phys, size) in address order, the frames the ptes
    held, and they all go back to the allocator."""
    p = k.create_process()
    span = 512 * PAGE if k.spec.arch != "i386" else 1024 * PAGE  # one page table's reach
    n = span // PAGE + 40
    a = k.mmap(p, None, n * PAGE)
    start = (a + span - 1) // span * span - 20 * PAGE  # 20 pages before a table boundary
    if start < a:
        start += span
    count = min(n - (start - a) // PAGE, span // PAGE + 20)
    for i in range(count):
        k.write(start + i * PAGE, b"x", user=True)
    pfns = [pfn_of(k, user_pte(k, p, start + i * PAGE)) for i in range(count)]
    last = k.event_seq
    k.munmap(p, start, count * PAGE)
    got = [u for e in k.recent_events if e.seq > last and e.kind == "unmap" for u in e.unmapped]
    assert got == [(start + i * PAGE, pfn << 12, PAGE) for i, pfn in enumerate(pfns)]
    assert all(k.frames.page(pfn).state == "free" for pfn in pfns)
    assert not set(pfns) & k.anon_exclusive
    k.check_invariants()


@pytest.mark.parametrize("order", ["child-first", "parent-first"])
def test_exit_after_fork_frees_everything(k, order):
    free0 = k.frames.nr_free_pages()
    p = k.create_process()
    a = _populate(k, p)
    c = k.fork(p)
    k.write(a, b"c", user=True, process=c)  # one copied page
    first, second = (c, p) if order == "child-first" else (p, c)
    k.exit_mm(first)
    k.check_invariants()
    # what the survivor maps is intact
    assert k.read(a + PAGE, 1, user=True, process=second) == b"x"
    k.exit_mm(second)
    assert k.frames.nr_free_pages() == free0
    k.check_invariants()


@pytest.mark.parametrize("kernel", ["2.6.12", "3.10"])
def test_exit_frees_everything_with_classic_highpte(kernel):
    """The classic kernels reach HIGHPTE page tables through kmap_atomic slots; nothing
    of that may keep a frame."""
    k = mmemu.boot(arch="i386", kernel=kernel, ram="1G")
    try:
        assert k.highpte
        free0 = k.frames.nr_free_pages()
        p = k.create_process()
        _populate(k, p)
        c = k.fork(p)
        k.exit_mm(c)
        k.exit_mm(p)
        assert k.frames.nr_free_pages() == free0
        k.check_invariants()
    finally:
        k.close()


# -- HIGHPTE --------------------------------------------------------------------------------


def test_user_page_tables_live_in_highmem_with_highpte(k):
    p = k.create_process()
    a = k.mmap(p, None, PAGE)
    k.write(a, b"x", user=True)
    table = pte_table(k, p, a)
    highpte = k.spec.arch != "x86_64" and k.spec.options.get("HIGHPTE", "y") == "y"
    assert (table >= lowmem_end(k)) == highpte
    # the kernel reached that table through a temporary kernel mapping of it (pte_offset_map
    # -> kmap_local_page in 6.6) and took it down again
    tpfn = table >> 12
    mapped_at = [e.va for e in k.recent_events for ch in e.entries()
                 if ch.new & P and ch.level == "pte" and pfn_of(k, ch.new) == tpfn and e.va >= k.layout["PAGE_OFFSET"]]
    if highpte:
        assert mapped_at, "the HighMem page table was never kmapped"
        assert all(raw_walk(k, k.pgd, va)[-1][1] == 0 for va in mapped_at), "the kmap was not undone"
    else:
        assert not mapped_at


# -- /proc/PID/maps ---------------------------------------------------------------------------


def test_proc_maps_text(k):
    p = k.create_process()
    k.brk(p, p.start_brk + 2 * PAGE)
    a = k.mmap(p, None, 2 * PAGE, PROT_READ | PROT_EXEC)
    b = k.mmap(p, None, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS)
    c = k.mmap(p, None, PAGE, PROT_NONE)
    b64 = k.spec.arch == "x86_64"
    # fs/proc/task_mmu.c: "%08lx-%08lx %c%c%c%c %08llx %02x:%02x %lu " then, for a named
    # mapping, blanks up to column 25 + sizeof(void *) * 6 and the name
    name_col = 25 + (8 if b64 else 4) * 6
    task = TASK_SIZE[k.spec.arch]
    stack = task - (128 << 10)

    def line(s, e, perms, name=""):
        head = f"{s:08x}-{e:08x} {perms} 00000000 00:00 0 "
        return head + " " * (name_col - len(head)) + name if name else head

    expected = [line(p.start_brk, p.start_brk + 2 * PAGE, "rw-p", "[heap]"),
                line(c, c + PAGE, "---p"), line(b, b + PAGE, "rw-s"), line(a, a + 2 * PAGE, "r-xp"),
                line(stack, task, "rw-p", "[stack]")]
    if b64:  # the gate area, listed after the process's own VMAs (6.6: vsyscall=xonly)
        expected.append("ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0" + " " * 18 + "[vsyscall]")
    text = k.proc_maps(p)
    assert text == "\n".join(expected) + "\n"
    if b64:
        assert "7ffffffdf000-7ffffffff000 rw-p 00000000 00:00 0" + " " * 26 + "[stack]\n" in text
    else:
        assert "bffe0000-c0000000 rw-p 00000000 00:00 0" + " " * 10 + "[stack]\n" in text


# -- switching ------------------------------------------------------------------------------


@pytest.mark.parametrize("mmu", ["cpu", "plugin"])
@pytest.mark.parametrize("arch", ["i386", "i386_pae", "x86_64"])
def test_switch_to_sets_cr3_on_every_attached_cpu(arch, mmu):
    from unicorn.x86_const import UC_X86_REG_CR3

    from mmemu.cpu import Cpu

    k = mmemu.boot(arch=arch, kernel="6.6", ram="1G", cpus=2)
    try:
        cpus = [Cpu(k, mmu=mmu, index=0), Cpu(k, mmu=mmu, index=1)]
        mask = 0xFFFFFFE0 if arch == "i386_pae" else ADDR[arch]
        for cpu in cpus:
            assert cpu.uc.reg_read(UC_X86_REG_CR3) & mask == k.pgd
        p, q = k.create_process("p"), k.create_process("q")
        a = k.mmap(p, 0x40000000, PAGE, flags=MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED)
        k.mmap(q, a, PAGE, flags=MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED)
        k.write(a, b"p", user=True, process=p)
        k.write(a, b"q", user=True, process=q)
        for proc in (q, p, None, q):
            k.switch_to(proc)
            root = k.pgd if proc is None else proc.pgd
            assert k.current is proc
            for cpu in cpus:
                assert cpu.uc.reg_read(UC_X86_REG_CR3) & mask == root
                probe = cpu.probe(a)
                if proc is None:
                    assert probe.faulted  # init_mm has no user mappings
                else:
                    assert probe.phys == raw_walk(k, proc.pgd, a)[-1][1] & ADDR[arch]
    finally:
        k.close()
