"""The buddy allocator, zones and frame records (mmemu.buddy), against mm/page_alloc.c.

Every expected free list below was worked out by hand from the kernel's rules:
``__free_pages_memory`` frees a range in the largest blocks its alignment allows
(``min(MAX_ORDER - 1, __ffs(pfn))``, shrunk to fit), ``__free_one_page`` merges a block
with its buddy ``pfn ^ (1 << order)`` while that buddy is free at the same order in the
same zone, ``__rmqueue_smallest`` takes the first block of the smallest order that has one
and ``expand()`` hands out the low half, putting the high halves back one per order. Lists
are LIFO (``list_add`` at the head, as the classic kernels do).
"""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from mmemu.buddy import BadPageState, FrameAllocator
from mmemu.errors import MmemuError, OutOfMemory
from mmemu.layout import ZoneSpan


def lists(fr: FrameAllocator, zone: str) -> list[list[int]]:
    """The free lists of *zone*, in list order, oldest first."""
    return [list(fa) for fa in fr.zones[zone].free_area]


def state(fr: FrameAllocator):
    zones = tuple((z.name, z.nr_free, z.managed_pages, tuple(tuple(fa) for fa in z.free_area))
                  for z in fr.zones.values())
    allocated = tuple(sorted((p.pfn, p.order, p.zone, p.refcount, p.owner) for p in fr.allocated.values()))
    return zones, allocated, tuple(fr.reserved)


def only(order_to_pfns: dict[int, list[int]]) -> list[list[int]]:
    return [order_to_pfns.get(o, []) for o in range(11)]


def one_zone(pages: int, start: int = 0, name: str = "Normal") -> FrameAllocator:
    fr = FrameAllocator([ZoneSpan(name, start, start + pages)])
    fr.memblock_init([(start, start + pages)], [])
    return fr


# -- memblock_init: what the lists hold after boot -----------------------------------------


def test_aligned_range_is_freed_in_max_order_blocks():
    fr = one_zone(4096)
    assert lists(fr, "Normal") == only({10: [0, 1024, 2048, 3072]})
    z = fr.zones["Normal"]
    assert z.nr_free == z.managed_pages == 4096
    fr.check()


def test_range_starting_at_pfn_1_gives_one_block_per_order():
    # [1, 1024): 1 (order 0), 2 (1), 4 (2) ... 512 (9): the pages below an order-10 block
    fr = FrameAllocator([ZoneSpan("DMA", 0, 1024)])
    fr.memblock_init([(1, 1024)], [])
    assert lists(fr, "DMA") == only({o: [1 << o] for o in range(10)})
    assert fr.nr_free_pages() == 1023


def pc_machine() -> FrameAllocator:
    """A PC's low memory: e820 usable [0, 0x9f000) and [1 MiB, 32 MiB); page 0 (BIOS data)
    and the kernel image at 16 MiB reserved; DMA below 16 MiB, Normal above."""
    fr = FrameAllocator([ZoneSpan("DMA", 0, 0x1000), ZoneSpan("Normal", 0x1000, 0x2000)])
    fr.memblock_init([(0, 0x9f), (0x100, 0x2000)], [(0, 1, "BIOS data area"), (0x1000, 0x1400, "kernel image")])
    return fr


def test_pc_low_memory_lists():
    fr = pc_machine()
    # [1, 0x9f): 1 2 4 8 0x10 0x20 0x40, then 0x80 only fits 16 pages, 0x90 8, 0x98 4, 0x9c 2, 0x9e 1
    # [0x100, 0x1000): 0x100 (order 8), 0x200 (9), 0x400, 0x800, 0xc00 (10)
    assert lists(fr, "DMA") == only({0: [0x1, 0x9e], 1: [0x2, 0x9c], 2: [0x4, 0x98], 3: [0x8, 0x90],
                                     4: [0x10, 0x80], 5: [0x20], 6: [0x40], 8: [0x100], 9: [0x200],
                                     10: [0x400, 0x800, 0xc00]})
    # [0x1400, 0x2000) after the kernel image: three order-10 blocks
    assert lists(fr, "Normal") == only({10: [0x1400, 0x1800, 0x1c00]})
    assert fr.zones["DMA"].nr_free == fr.zones["DMA"].managed_pages == (0x9f - 1) + (0x1000 - 0x100) == 3998
    assert fr.zones["Normal"].nr_free == fr.zones["Normal"].managed_pages == 3072
    fr.check()


def test_buddyinfo_format():
    # mm/vmstat.c frag_show_print: "Node %d, zone %8s " then "%6lu " per order, then '\n'
    fr = pc_machine()
    assert fr.buddyinfo() == (
        "Node 0, zone      DMA      2      2      2      2      2      1      1      0      1      1      3 \n"
        "Node 0, zone   Normal      0      0      0      0      0      0      0      0      0      0      3 \n")


def test_buddyinfo_zone_order_and_names():
    fr = FrameAllocator([ZoneSpan("HighMem", 0x300, 0x400), ZoneSpan("DMA", 0, 0x100),
                         ZoneSpan("DMA32", 0x100, 0x200), ZoneSpan("Normal", 0x200, 0x300)])
    fr.memblock_init([(0, 0x400)], [])
    lines = fr.buddyinfo().splitlines()
    assert [line[:21] for line in lines] == ["Node 0, zone      DMA", "Node 0, zone    DMA32",
                                            "Node 0, zone   Normal", "Node 0, zone  HighMem"]
    for line in lines:  # one order-8 block each
        assert line[21:] == " " + "     0 " * 8 + "     1 " + "     0 " * 2


def test_blocks_never_straddle_a_zone_boundary():
    fr = FrameAllocator([ZoneSpan("DMA", 0, 16), ZoneSpan("Normal", 16, 64), ZoneSpan("HighMem", 64, 128)])
    fr.memblock_init([(0, 128)], [])
    assert lists(fr, "DMA") == only({4: [0]})
    assert lists(fr, "Normal") == only({4: [16], 5: [32]})  # 0/16 are buddies, but in two zones
    assert lists(fr, "HighMem") == only({6: [64]})


def test_unaligned_zone_boundary_no_cross_zone_merge():
    fr = FrameAllocator([ZoneSpan("Normal", 0, 100), ZoneSpan("HighMem", 100, 256)])
    fr.memblock_init([(0, 256)], [])
    assert lists(fr, "Normal") == only({6: [0], 5: [64], 2: [96]})
    assert lists(fr, "HighMem") == only({2: [100], 3: [104], 4: [112], 7: [128]})
    # 96 and 100 are order-2 buddies, in different zones: freeing either must not merge
    p = fr.alloc_pages(2, "HighMem")
    assert (p.pfn, p.zone) == (100, "HighMem")
    fr.free_pages(p)
    q = fr.alloc_pages(2, "Normal")
    assert (q.pfn, q.zone) == (96, "Normal")
    fr.free_pages(q)
    assert lists(fr, "Normal") == only({6: [0], 5: [64], 2: [96]})
    assert lists(fr, "HighMem") == only({2: [100], 3: [104], 4: [112], 7: [128]})
    fr.check()


def test_ram_outside_every_zone_is_a_layout_bug():
    fr = FrameAllocator([ZoneSpan("Normal", 0, 64)])
    with pytest.raises(MmemuError, match="no zone"):
        fr.memblock_init([(0, 128)], [])


def test_empty_zone_is_dropped():
    fr = FrameAllocator([ZoneSpan("DMA", 0, 16), ZoneSpan("HighMem", 16, 16)])
    assert list(fr.zones) == ["DMA"]


# -- alloc / split / merge -----------------------------------------------------------------


def test_order0_from_a_fresh_max_order_block_leaves_one_block_per_lower_order():
    fr = one_zone(1024)
    p = fr.alloc_pages(0)
    assert (p.pfn, p.order, p.zone, p.refcount) == (0, 0, "Normal", 1)
    # expand(): the low half is kept, 512 (order 9), 256 (8) ... 1 (0) go back
    assert lists(fr, "Normal") == only({o: [1 << o] for o in range(10)})
    assert fr.zones["Normal"].nr_free == 1023
    fr.check()


def test_higher_order_split():
    fr = one_zone(1024)
    p = fr.alloc_pages(3)
    assert (p.pfn, p.nr_pages, p.phys) == (0, 8, 0)
    assert lists(fr, "Normal") == only({o: [1 << o] for o in range(3, 10)})


def test_order0_allocations_come_in_ascending_order_then_oom():
    fr = one_zone(1024)
    got = [fr.alloc_pages(0).pfn for _ in range(1024)]
    assert got == list(range(1024))
    assert fr.nr_free_pages() == 0
    with pytest.raises(OutOfMemory):
        fr.alloc_pages(0)


def test_freeing_everything_merges_back():
    fr = one_zone(2048)
    rng = random.Random(1)
    pages = []
    for _ in range(300):
        pages.append(fr.alloc_pages(rng.choice([0, 0, 0, 1, 2, 3])))
    rng.shuffle(pages)
    for p in pages:
        assert fr.free_pages(p) is True
    assert lists(fr, "Normal") == [[] for _ in range(10)] + [sorted(lists(fr, "Normal")[10])]
    assert sorted(lists(fr, "Normal")[10]) == [0, 1024]
    assert fr.nr_free_pages() == 2048 and not fr.allocated
    fr.check()


def test_free_lists_are_lifo_and_merge_exactly():
    fr = one_zone(1024)
    assert [fr.alloc_pages(0).pfn for _ in range(3)] == [0, 1, 2]
    assert lists(fr, "Normal")[0] == [3]
    fr.free_pages(1)  # buddy 0 is allocated: no merge
    assert lists(fr, "Normal")[0] == [3, 1]
    assert fr.alloc_pages(0).pfn == 1  # the most recently freed block first
    fr.free_pages(0)
    assert lists(fr, "Normal")[0] == [3, 0]
    fr.free_pages(1)  # merges with 0 into (0, order 1); its buddy 2 is allocated
    assert lists(fr, "Normal")[:2] == [[3], [0]]
    fr.free_pages(2)  # 2+3 -> (2,1) -> with (0,1) -> (0,2) -> ... -> (0,10)
    assert lists(fr, "Normal") == only({10: [0]})


def test_free_returns_false_while_references_remain():
    fr = one_zone(1024)
    p = fr.alloc_pages(1, owner="x")
    assert fr.get_page(p.pfn).refcount == 2
    assert fr.free_pages(p) is False
    assert fr.page(p.pfn).refcount == 1 and fr.nr_free_pages() == 1022
    assert fr.free_pages(p.pfn, 1) is True
    assert fr.nr_free_pages() == 1024


# -- zones: the zonelist fallback ----------------------------------------------------------


def three_zones() -> FrameAllocator:
    fr = FrameAllocator([ZoneSpan("DMA", 0, 16), ZoneSpan("Normal", 16, 64), ZoneSpan("HighMem", 64, 128)])
    fr.memblock_init([(0, 128)], [])
    return fr


def test_highmem_falls_back_to_normal_then_dma():
    fr = three_zones()
    assert (fr.alloc_pages(6, "HighMem").pfn, fr.zones["HighMem"].nr_free) == (64, 0)
    p = fr.alloc_pages(5, "HighMem")
    assert (p.pfn, p.zone) == (32, "Normal")
    p = fr.alloc_pages(4, "HighMem")
    assert (p.pfn, p.zone) == (16, "Normal")
    p = fr.alloc_pages(4, "HighMem")
    assert (p.pfn, p.zone) == (0, "DMA")
    with pytest.raises(OutOfMemory):
        fr.alloc_pages(0, "HighMem")


def test_normal_never_takes_highmem_and_dma_never_takes_normal():
    fr = three_zones()
    assert fr.alloc_pages(5, "Normal").pfn == 32
    with pytest.raises(OutOfMemory):  # HighMem has an order-6 block, but Normal may not use it
        fr.alloc_pages(5, "Normal")
    assert fr.alloc_pages(4, "Normal").pfn == 16
    p = fr.alloc_pages(4, "Normal")
    assert (p.pfn, p.zone) == (0, "DMA")
    fr.free_pages(p)
    fr2 = three_zones()
    fr2.alloc_pages(4, "DMA")
    with pytest.raises(OutOfMemory):
        fr2.alloc_pages(0, "DMA")
    assert fr2.zones["Normal"].nr_free == 48 and fr2.zones["HighMem"].nr_free == 64


def test_zonelists():
    fr = FrameAllocator([ZoneSpan("DMA", 0, 16), ZoneSpan("DMA32", 16, 64), ZoneSpan("Normal", 64, 128)])
    assert [z.name for z in fr.zonelist("HighMem")] == ["Normal", "DMA32", "DMA"]
    assert [z.name for z in fr.zonelist("Normal")] == ["Normal", "DMA32", "DMA"]
    assert [z.name for z in fr.zonelist("DMA32")] == ["DMA32", "DMA"]
    assert [z.name for z in fr.zonelist("DMA")] == ["DMA"]
    with pytest.raises(MmemuError):
        fr.zonelist("Highmem")


def test_dma32_request_on_a_32bit_machine_uses_dma():
    fr = three_zones()
    p = fr.alloc_pages(0, "DMA32")
    assert p.zone == "DMA"


@pytest.mark.parametrize("order", [-1, 11])
def test_order_out_of_range(order):
    fr = three_zones()
    before = state(fr)
    with pytest.raises(MmemuError):
        fr.alloc_pages(order)
    assert state(fr) == before


def test_out_of_memory_changes_nothing():
    fr = three_zones()
    fr.alloc_pages(3, "Normal")  # leaves a fragmented Normal zone
    before, buddyinfo = state(fr), fr.buddyinfo()
    with pytest.raises(OutOfMemory) as exc:
        fr.alloc_pages(7, "HighMem")
    assert "order:7" in str(exc.value)
    assert exc.value.errno == 12
    assert state(fr) == before and fr.buddyinfo() == buddyinfo


# -- bad frees -----------------------------------------------------------------------------


def test_double_free_is_bad_page_state():
    fr = one_zone(1024)
    p = fr.alloc_pages(2)
    fr.free_pages(p)
    before = state(fr)
    with pytest.raises(BadPageState):
        fr.free_pages(p)
    assert state(fr) == before


def test_bad_frees_change_nothing():
    fr = pc_machine()
    p = fr.alloc_pages(2, "Normal", owner="x")
    before = state(fr)
    for bad in (lambda: fr.free_pages(p.pfn + 1),  # a tail page
                lambda: fr.free_pages(p.pfn, 1),  # the wrong order
                lambda: fr.free_pages(0),  # reserved (BIOS page)
                lambda: fr.free_pages(0x1000),  # reserved (kernel image)
                lambda: fr.free_pages(0x9f),  # not RAM
                lambda: fr.free_pages(0x200),  # free, never allocated
                lambda: fr.get_page(0x200)):
        with pytest.raises(BadPageState):
            bad()
        assert state(fr) == before
    assert fr.page(p.pfn).refcount == 1


# -- page(pfn) -----------------------------------------------------------------------------


def info(fr, pfn):
    i = fr.page(pfn)
    return i.pfn, i.zone, i.state, i.head, i.order, i.refcount, i.owner


def test_page_of_free_frames():
    fr = pc_machine()
    assert info(fr, 0x9e) == (0x9e, "DMA", "free", 0x9e, 0, 0, "")
    assert info(fr, 0x9d) == (0x9d, "DMA", "free", 0x9c, 1, 0, "")
    assert info(fr, 0x7f) == (0x7f, "DMA", "free", 0x40, 6, 0, "")
    assert info(fr, 0x1400) == (0x1400, "Normal", "free", 0x1400, 10, 0, "")
    assert info(fr, 0x17ff) == (0x17ff, "Normal", "free", 0x1400, 10, 0, "")


def test_page_of_reserved_frames_and_holes():
    fr = pc_machine()
    assert info(fr, 0) == (0, "DMA", "reserved", 0, -1, 1, "BIOS data area")
    assert info(fr, 0x1000) == (0x1000, "Normal", "reserved", 0x1000, -1, 1, "kernel image")
    assert info(fr, 0x13ff) == (0x13ff, "Normal", "reserved", 0x1000, -1, 1, "kernel image")
    for hole in (0x9f, 0xa0, 0xff, 0x2000, 0x123456):
        i = fr.page(hole)
        assert (i.state, i.head, i.order, i.refcount) == ("hole", hole, -1, 0)
        assert i.zone is None  # FrameInfo.zone: "None: not RAM"
    assert fr.is_ram(0x9e) and not fr.is_ram(0x9f) and fr.is_ram(0x100) and not fr.is_ram(0x2000)


def test_page_of_allocated_head_and_tails():
    fr = pc_machine()
    p = fr.alloc_pages(2, "Normal", owner="vmalloc")
    assert p.pfn == 0x1c00  # the last order-10 block freed at boot (LIFO), low half kept
    for pfn in range(0x1c00, 0x1c04):
        assert info(fr, pfn) == (pfn, "Normal", "allocated", 0x1c00, 2, 1, "vmalloc")
    assert info(fr, 0x1c04) == (0x1c04, "Normal", "free", 0x1c04, 2, 0, "")
    assert info(fr, 0x1e00) == (0x1e00, "Normal", "free", 0x1e00, 9, 0, "")
    fr.get_page(0x1c00)
    assert fr.page(0x1c03).refcount == 2
    fr.free_pages(p)
    fr.free_pages(p)
    assert info(fr, 0x1c03) == (0x1c03, "Normal", "free", 0x1c00, 10, 0, "")


def test_page_does_not_confuse_neighbouring_blocks():
    fr = one_zone(1024)
    a = fr.alloc_pages(0, owner="a")  # pfn 0
    b = fr.alloc_pages(0, owner="b")  # pfn 1
    c = fr.alloc_pages(1, owner="c")  # pfn 2-3
    assert (a.pfn, b.pfn, c.pfn) == (0, 1, 2)
    fr.free_pages(a)
    assert info(fr, 0)[2:5] == ("free", 0, 0)
    assert info(fr, 1)[2:5] == ("allocated", 1, 0)
    assert info(fr, 3)[2:5] == ("allocated", 2, 1)
    assert info(fr, 4)[2:5] == ("free", 4, 2)


# -- check() can fail ----------------------------------------------------------------------


def test_check_detects_corruption():
    fr = one_zone(1024)
    fr.alloc_pages(0)
    fr.check()
    fr.zones["Normal"].nr_free += 1
    with pytest.raises(MmemuError):
        fr.check()
    fr.zones["Normal"].nr_free -= 1
    fr.zones["Normal"].free_area[1][1] = None  # misaligned
    with pytest.raises(MmemuError):
        fr.check()
    del fr.zones["Normal"].free_area[1][1]
    fr.zones["Normal"].free_area[0][0] = None  # overlaps the allocated page
    fr.zones["Normal"].nr_free += 1
    with pytest.raises(MmemuError):
        fr.check()


# -- random sequences against an independent model -----------------------------------------

ZONES = (ZoneSpan("DMA", 0, 16), ZoneSpan("Normal", 16, 96), ZoneSpan("HighMem", 96, 160))
RAM = ((1, 40), (48, 150))
RESERVED = ((20, 23, "kernel image"),)
FALLBACK = ("HighMem", "Normal", "DMA32", "DMA")


class BuddyMachine(RuleBasedStateMachine):
    """A model that knows only which frames are free, and the buddy system's promise: an
    allocation of order k from zone Z succeeds iff some zone of Z's zonelist holds an
    aligned run of 2**k free frames, and then it comes from the first such zone."""

    def __init__(self):
        super().__init__()
        self.fr = FrameAllocator(ZONES)
        self.fr.memblock_init([tuple(r) for r in RAM], [tuple(r) for r in RESERVED])
        ram = {p for s, e in RAM for p in range(s, e)}
        self.reserved = {p for s, e, _ in RESERVED for p in range(s, e)}
        self.free = ram - self.reserved
        self.initial_lists = [[set(fa) for fa in z.free_area] for z in self.fr.zones.values()]
        self.refs: dict[int, tuple[int, int]] = {}  # head -> (order, refcount)
        self.freed: list[int] = []

    def zone_of(self, pfn):
        return next(z.name for z in ZONES if z.start_pfn <= pfn < z.end_pfn)

    def predict(self, order, zone):
        for zname in FALLBACK[FALLBACK.index(zone):]:
            span = next((z for z in ZONES if z.name == zname), None)
            if span is None:
                continue
            first = -(-span.start_pfn // (1 << order)) << order  # aligned up
            for b in range(first, span.end_pfn, 1 << order):
                if b + (1 << order) <= span.end_pfn \
                        and all(p in self.free for p in range(b, b + (1 << order))):
                    return zname
        return None

    @rule(order=st.integers(0, 5), zone=st.sampled_from(FALLBACK))
    def alloc(self, order, zone):
        expect = self.predict(order, zone)
        if expect is None:
            before = state(self.fr)
            with pytest.raises(OutOfMemory):
                self.fr.alloc_pages(order, zone)
            assert state(self.fr) == before
            return
        p = self.fr.alloc_pages(order, zone, owner="t")
        assert p.zone == expect and p.order == order and p.pfn % (1 << order) == 0
        frames = set(range(p.pfn, p.pfn + (1 << order)))
        assert frames <= self.free
        assert {self.zone_of(f) for f in frames} == {expect}
        self.free -= frames
        self.refs[p.pfn] = (order, 1)

    @precondition(lambda self: self.refs)
    @rule(data=st.data())
    def free(self, data):
        head = data.draw(st.sampled_from(sorted(self.refs)))
        order, refs = self.refs[head]
        assert self.fr.free_pages(head) is (refs == 1)
        if refs == 1:
            del self.refs[head]
            self.free |= set(range(head, head + (1 << order)))
            self.freed.append(head)
        else:
            self.refs[head] = (order, refs - 1)

    @precondition(lambda self: self.refs)
    @rule(data=st.data())
    def get(self, data):
        head = data.draw(st.sampled_from(sorted(self.refs)))
        order, refs = self.refs[head]
        self.fr.get_page(head)
        self.refs[head] = (order, refs + 1)

    @precondition(lambda self: self.freed)
    @rule(data=st.data())
    def double_free(self, data):
        head = data.draw(st.sampled_from(self.freed))
        if head in self.refs:
            return
        before = state(self.fr)
        with pytest.raises(BadPageState):
            self.fr.free_pages(head)
        assert state(self.fr) == before

    @rule(pfn=st.integers(0, 170))
    def look(self, pfn):
        i = self.fr.page(pfn)
        if pfn in self.free:
            assert i.state == "free" and i.head <= pfn < i.head + (1 << i.order)
            assert all(p in self.free for p in range(i.head, i.head + (1 << i.order)))
        elif pfn in self.reserved:
            assert i.state == "reserved"
        elif any(h <= pfn < h + (1 << o) for h, (o, _) in self.refs.items()):
            h = next(h for h, (o, _) in self.refs.items() if h <= pfn < h + (1 << o))
            assert (i.state, i.head, i.order, i.refcount) == ("allocated", h, self.refs[h][0], self.refs[h][1])
        else:
            assert i.state == "hole"

    @rule()
    def free_everything(self):
        for head, (order, refs) in list(self.refs.items()):
            for _ in range(refs):
                self.fr.free_pages(head)
            self.free |= set(range(head, head + (1 << order)))
        self.refs.clear()
        assert [[set(fa) for fa in z.free_area] for z in self.fr.zones.values()] == self.initial_lists

    @invariant()
    def consistent(self):
        fr = self.fr
        fr.check()
        allocated = sum(1 << o for o, _ in self.refs.values())
        managed = sum(z.managed_pages for z in fr.zones.values())
        assert fr.nr_free_pages() == len(self.free)
        assert fr.nr_free_pages() + allocated + len(self.reserved) == managed + len(self.reserved)
        for z in fr.zones.values():
            assert z.nr_free == sum(1 for p in self.free if z.start_pfn <= p < z.end_pfn)
            # the buddy invariant: no two free buddies of one order in one zone
            for order, fa in enumerate(z.free_area[:-1]):
                assert not any((pfn ^ (1 << order)) in fa for pfn in fa)


TestBuddyMachine = BuddyMachine.TestCase
TestBuddyMachine.settings = settings(max_examples=60, stateful_step_count=40, deadline=None,
                                     suppress_health_check=[HealthCheck.too_slow])
