"""Zones, the buddy frame allocator and the per-frame records (``struct page``).

Follows mm/page_alloc.c: each zone keeps one free list per order (0..MAX_ORDER-1, i.e.
blocks of 4 KiB to 4 MiB); an allocation takes the first block of the smallest order that
has one and splits it (``expand()``: the lower half is used, upper halves go back on the
lower lists); a free merges a block with its buddy (``pfn ^ (1 << order)``) while the
buddy is free at the same order in the same zone (``__free_one_page``). Lists are LIFO, as
the kernel's are: the most recently freed block is handed out first.

Records are sparse so that a 64 GiB machine does not cost a Python object per frame: an
allocated block has one :class:`Page` (its head), memblock-reserved ranges one record per
range, and free frames are described by the free lists themselves.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Iterable

from .errors import MmemuError, OutOfMemory
from .layout import ZoneSpan
from .units import PAGE_SHIFT

_NEW = object.__new__

#: orders 0..10 (MAX_ORDER 11 in the classic kernels, MAX_PAGE_ORDER 10 in 6.x: same lists)
NR_ORDERS = 11

#: allocation fallback order, highest zone first (the kernel's zonelist)
ZONE_ORDER = ("HighMem", "Normal", "DMA32", "DMA")


class BadPageState(MmemuError):
    """Freeing a frame that is not allocated, or with the wrong order (the kernel's
    ``BUG: Bad page state``)."""


@dataclass(slots=True)
class Page:
    """The record of an allocated block, kept on its head frame (``struct page``)."""

    pfn: int
    order: int
    zone: str
    refcount: int
    owner: str  # what the frames are used for, e.g. "page table (pmd)", "vmalloc"

    @property
    def nr_pages(self) -> int:
        return 1 << self.order

    @property
    def phys(self) -> int:
        return self.pfn << PAGE_SHIFT


@dataclass(frozen=True, slots=True)
class FrameInfo:
    """What one frame is, as ``page(pfn)`` reports it."""

    pfn: int
    zone: str | None  # None: not RAM
    state: str  # "free", "allocated", "reserved", "hole"
    head: int  # pfn of the block (or reserved range) the frame belongs to
    order: int  # order of that block (-1 for reserved ranges and holes)
    refcount: int
    owner: str


class Zone:
    """One memory zone: its span and its free lists."""

    def __init__(self, span: ZoneSpan):
        self.name = span.name
        self.start_pfn = span.start_pfn
        self.end_pfn = span.end_pfn
        #: free_area[order]: an insertion-ordered dict used as the free list (LIFO)
        self.free_area: list[dict[int, None]] = [dict() for _ in range(NR_ORDERS)]
        self.nr_free = 0  # free pages
        self.managed_pages = 0  # pages ever handed to the buddy allocator

    @property
    def spanned_pages(self) -> int:
        return self.end_pfn - self.start_pfn

    def __repr__(self) -> str:
        return f"<Zone {self.name} pfn {self.start_pfn:#x}-{self.end_pfn:#x} free {self.nr_free}>"


class FrameAllocator:
    """The buddy allocator over all zones of a machine, with the frame records."""

    def __init__(self, zones: Iterable[ZoneSpan]):
        self.zones: dict[str, Zone] = {}
        for span in zones:
            if span.end_pfn > span.start_pfn:
                self.zones[span.name] = Zone(span)
        self._zone_list = sorted(self.zones.values(), key=lambda z: z.start_pfn)
        self._zone_starts = [z.start_pfn for z in self._zone_list]
        self.allocated: dict[int, Page] = {}
        #: memblock-reserved ranges, sorted: (start_pfn, end_pfn, owner)
        self.reserved: list[tuple[int, int, str]] = []
        self._ram: list[tuple[int, int]] = []  # usable pfn ranges
        self._zonelists: dict[str, list[Zone]] = {}
        #: totalram_pages: the sum of the zones' managed_pages (set at boot, read by every vmalloc)
        self._managed = 0
        #: the kernel operation's undo journal (mmemu.journal.Journal), None outside a kernel
        self.journal = None

    # -- boot ---------------------------------------------------------------------------

    def zone_of(self, pfn: int) -> Zone | None:
        i = bisect.bisect_right(self._zone_starts, pfn) - 1
        if i >= 0:
            z = self._zone_list[i]
            if pfn < z.end_pfn:
                return z
        return None

    def memblock_init(self, ram: list[tuple[int, int]], reserved: list[tuple[int, int, str]]) -> None:
        """Hand all usable RAM except the reserved ranges to the buddy allocator, in the
        largest aligned blocks (``memblock_free_all`` -> ``__free_pages_memory``)."""
        self._ram = sorted(ram)
        self.reserved = sorted(reserved)
        for start, end in self._ram:
            cur = start
            for rs, re_, _ in self.reserved:
                if re_ <= cur or rs >= end:
                    continue
                if rs > cur:
                    self._free_range(cur, min(rs, end))
                cur = max(cur, re_)
            if cur < end:
                self._free_range(cur, end)

    def _free_range(self, start: int, end: int) -> None:
        # split at zone boundaries: a block never straddles two zones
        while start < end:
            zone = self.zone_of(start)
            if zone is None:
                raise MmemuError(f"usable RAM at pfn {start:#x} lies in no zone (layout bug)")
            stop = min(end, zone.end_pfn)
            pfn = start
            while pfn < stop:
                order = min(NR_ORDERS - 1, (pfn & -pfn).bit_length() - 1 if pfn else NR_ORDERS - 1)
                while pfn + (1 << order) > stop:
                    order -= 1
                zone.managed_pages += 1 << order
                self._managed += 1 << order
                self._free_one(zone, pfn, order)
                pfn += 1 << order
            start = stop

    # -- the allocator ------------------------------------------------------------------

    def _free_one(self, zone: Zone, pfn: int, order: int) -> None:
        zone.nr_free += 1 << order
        free_area = zone.free_area
        while order < NR_ORDERS - 1:
            buddy = pfn ^ (1 << order)
            fa = free_area[order]
            if buddy not in fa:
                break
            del fa[buddy]
            pfn &= ~(1 << order)
            order += 1
        free_area[order][pfn] = None

    def _unalloc(self, zone: Zone, order: int, pfn: int, taken_from: int) -> None:
        """The exact inverse of an allocation by :meth:`alloc_pages` (the block taken from the
        free list of order *taken_from*, split down to *order*): its record dropped, the
        halves it freed (the newest entries of their lists) taken back, the block back as the
        newest of its own list: the lists' order too."""
        del self.allocated[pfn]
        free_area = zone.free_area
        for cur in range(order, taken_from):
            del free_area[cur][pfn + (1 << cur)]
        free_area[taken_from][pfn] = None
        zone.nr_free += 1 << order

    def zonelist(self, zone: str) -> list[Zone]:
        """The zones an allocation for *zone* may use, preferred first."""
        zl = self._zonelists.get(zone)
        if zl is None:
            if zone not in ZONE_ORDER:
                raise MmemuError(f"unknown zone {zone!r}; zones: {', '.join(ZONE_ORDER)}")
            i = ZONE_ORDER.index(zone)
            zl = self._zonelists[zone] = [self.zones[z] for z in ZONE_ORDER[i:] if z in self.zones]
        return zl

    def alloc_pages(self, order: int = 0, zone: str = "Normal", owner: str = "") -> Page:
        """``alloc_pages(gfp, order)``: a block of ``1 << order`` frames from *zone* or a
        lower one. Raises :class:`OutOfMemory` (and changes nothing) if none is free."""
        if type(order) is not int or not 0 <= order < NR_ORDERS:  # (a bool is refused too)
            raise MmemuError(f"order {order!r} is not a whole number in 0..{NR_ORDERS - 1} (MAX_ORDER)")
        zones = self._zonelists.get(zone) or self.zonelist(zone)
        j = self.journal
        if j is not None and j.injection is not None:
            j.inject("page", f"order {order}, {owner or 'alloc_pages'}")
        for z in zones:
            free_area = z.free_area
            for cur in range(order, NR_ORDERS):
                fa = free_area[cur]
                if fa:
                    pfn = fa.popitem()[0]
                    taken_from = cur
                    while cur > order:  # expand(): keep the low half, free the high halves
                        cur -= 1
                        free_area[cur][pfn + (1 << cur)] = None
                    z.nr_free -= 1 << order
                    # the record, filled in without a call of __init__ (every demand fault)
                    page = _NEW(Page)
                    page.pfn, page.order, page.zone, page.refcount, page.owner = pfn, order, z.name, 1, owner
                    self.allocated[pfn] = page
                    if j is not None and j.undo is not None:  # one record undoes it all
                        j.undo.append((self._unalloc, (z, order, pfn, taken_from)))
                    return page
        tried = ", ".join(z.name for z in zones) or "none"
        raise OutOfMemory(f"page allocation failure: order:{order}, zone:{zone} (no free block of order >= {order} in {tried})")

    def free_pages(self, page: "Page | int", order: int | None = None) -> bool:
        """``__free_pages``: drop one reference; the block returns to the free lists when
        the last one goes. Returns True if the block was freed."""
        pfn = page.pfn if isinstance(page, Page) else page
        if isinstance(pfn, bool) or not isinstance(pfn, int):
            raise BadPageState(f"BUG: Bad page state: {pfn!r} is not a page frame number")
        rec = self.allocated.get(pfn)
        if rec is None or rec.refcount <= 0:
            raise BadPageState(f"BUG: Bad page state: pfn:{pfn:#x} is not an allocated block (double free?)")
        if order is not None and order != rec.order:
            raise BadPageState(f"BUG: Bad page state: pfn:{pfn:#x} freed with order {order}, allocated with order {rec.order}")
        j = self.journal
        if j is not None and j.undo is not None:
            # inside a kernel operation: the reference goes now, the block returns to the
            # free lists at the commit (a buddy merge could not be undone exactly)
            rec.refcount -= 1
            j.undo.append((_restore_refcount, (rec,)))
            if rec.refcount > 0:
                return False
            j.commit_actions.append((self._release, (rec,)))
            return True
        rec.refcount -= 1
        if rec.refcount > 0:
            return False
        self._release(rec)
        return True

    def free_pages_many(self, pfns) -> list[int]:
        """:meth:`free_pages` of each of *pfns* (order 0 or the block's own), as one step: the
        references dropped in one pass, one undo record and one commit action for them all
        (``release_pages`` / ``free_pages_and_swap_cache`` of an unmap: thousands of pages).
        Returns the pfns of the blocks whose last reference went (freed now, or at the
        commit inside a kernel operation), in order."""
        allocated = self.allocated
        j = self.journal
        inside = j is not None and j.active
        dropped: list[Page] = []
        released: list[Page] = []
        gone: list[int] = []
        try:
            for pfn in pfns:
                rec = allocated.get(pfn)
                if rec is None or rec.refcount <= 0 or type(pfn) is not int:
                    # raises the error free_pages gives (or frees an odd one: a Page)
                    if self.free_pages(pfn):
                        gone.append(pfn.pfn if isinstance(pfn, Page) else pfn)
                    continue
                rec.refcount -= 1
                dropped.append(rec)
                if rec.refcount == 0:
                    released.append(rec)
                    gone.append(pfn)
        finally:
            if not inside:
                for rec in released:
                    self._release(rec)
            elif dropped:
                j.undo.append((_restore_refcounts, (dropped,)))
        if released and inside:
            j.on_commit(self._release_many, released)
        return gone

    def _release_many(self, recs: list[Page]) -> None:
        j = self.journal
        if j is not None and j.undo is not None:  # an undoable commit: each one recorded
            for rec in recs:
                self._release(rec)
            return
        allocated, zones = self.allocated, self.zones
        for rec in recs:  # _release without the record, and _free_one inline: thousands a process exit
            pfn, order = rec.pfn, rec.order
            del allocated[pfn]
            zone = zones[rec.zone]
            zone.nr_free += 1 << order
            free_area = zone.free_area
            while order < NR_ORDERS - 1:  # merge with the free buddy, as long as there is one
                fa = free_area[order]
                if pfn ^ (1 << order) not in fa:
                    break
                del fa[pfn ^ (1 << order)]
                pfn &= ~(1 << order)
                order += 1
            free_area[order][pfn] = None

    def _release(self, rec: Page) -> None:
        zone = self.zones[rec.zone]
        j = self.journal
        if j is not None and j.undo is not None:
            # only while an undoable commit runs (Journal.keep): a merge can be undone
            # exactly by restoring the free lists it touched, in their order
            j.undo.append((self._unrelease, (rec, zone, self._free_lists_touched(zone, rec.pfn, rec.order),
                                             zone.nr_free)))
        del self.allocated[rec.pfn]
        self._free_one(zone, rec.pfn, rec.order)

    def _free_lists_touched(self, zone: Zone, pfn: int, order: int) -> list[tuple[int, list[int]]]:
        """The free lists _free_one will change for this block, each as it is now."""
        touched = []
        fa = zone.free_area
        while order < NR_ORDERS - 1 and (pfn ^ (1 << order)) in fa[order]:
            touched.append(order)
            pfn &= ~(1 << order)
            order += 1
        touched.append(order)
        return [(o, list(fa[o])) for o in touched]

    def _unrelease(self, rec: Page, zone: Zone, lists: list, nr_free: int) -> None:
        for order, pfns in lists:
            fa = zone.free_area[order]
            fa.clear()
            fa.update(dict.fromkeys(pfns))
        zone.nr_free = nr_free
        self.allocated[rec.pfn] = rec

    def get_page(self, pfn: int) -> Page:
        """Take a reference on the allocated block whose head is *pfn*."""
        rec = self.allocated.get(pfn)
        if rec is None or rec.refcount <= 0:
            raise BadPageState(f"BUG: get_page on pfn:{pfn:#x}, which is not an allocated block head")
        if self.journal is not None:
            self.journal.set(rec, "refcount", rec.refcount + 1)
        else:
            rec.refcount += 1
        return rec

    # -- looking at frames --------------------------------------------------------------

    def page(self, pfn: int) -> FrameInfo:
        """What frame *pfn* is: free (in which block), allocated (its record), reserved, or
        not RAM at all."""
        zone = self.zone_of(pfn)
        for order in range(NR_ORDERS):
            head = pfn & ~((1 << order) - 1)
            rec = self.allocated.get(head)
            if rec is not None and pfn < head + (1 << rec.order):
                return FrameInfo(pfn, rec.zone, "allocated", head, rec.order, rec.refcount, rec.owner)
            if zone is not None and head in zone.free_area[order]:
                return FrameInfo(pfn, zone.name, "free", head, order, 0, "")
        i = bisect.bisect_right(self.reserved, (pfn, float("inf"), "")) - 1
        if i >= 0:
            rs, re_, owner = self.reserved[i]
            if rs <= pfn < re_:
                return FrameInfo(pfn, zone.name if zone else None, "reserved", rs, -1, 1, owner)
        return FrameInfo(pfn, None, "hole", pfn, -1, 0, "")  # not RAM: no zone, even inside a zone's span

    def is_ram(self, pfn: int) -> bool:
        return any(s <= pfn < e for s, e in self._ram)

    def managed_pages(self) -> int:
        """``totalram_pages()``: every page ever handed to the buddy allocator."""
        return self._managed

    def nr_free_pages(self) -> int:
        return sum(z.nr_free for z in self.zones.values())

    def buddyinfo(self) -> str:
        """The text of ``/proc/buddyinfo`` (mm/vmstat.c ``frag_show_print``)."""
        lines = []
        for z in self._zone_list:
            counts = "".join(f"{len(fa):6d} " for fa in z.free_area)
            lines.append(f"Node 0, zone {z.name:>8s} {counts}")
        return "\n".join(lines) + "\n"

    def check(self) -> None:
        """Consistency of the records (for tests): free blocks aligned, inside their zone,
        disjoint from each other, from allocated blocks and from reserved ranges; free
        counters match."""
        seen: list[tuple[int, int, str]] = []
        for z in self._zone_list:
            total = 0
            for order, fa in enumerate(z.free_area):
                for pfn in fa:
                    if pfn & ((1 << order) - 1):
                        raise MmemuError(f"free block {pfn:#x} of order {order} is misaligned")
                    if not (z.start_pfn <= pfn and pfn + (1 << order) <= z.end_pfn):
                        raise MmemuError(f"free block {pfn:#x} of order {order} is outside zone {z.name}")
                    seen.append((pfn, pfn + (1 << order), "free"))
                    total += 1 << order
            if total != z.nr_free:
                raise MmemuError(f"zone {z.name}: nr_free {z.nr_free} but the lists hold {total} pages")
        seen += [(p.pfn, p.pfn + (1 << p.order), "allocated") for p in self.allocated.values()]
        seen += [(s, e, "reserved") for s, e, _ in self.reserved]
        seen.sort()
        for (s1, e1, k1), (s2, e2, k2) in zip(seen, seen[1:]):
            if s2 < e1:
                raise MmemuError(f"{k1} pfns {s1:#x}-{e1:#x} overlap {k2} pfns {s2:#x}-{e2:#x}")


def _restore_refcount(rec: Page) -> None:
    """Undo of :meth:`FrameAllocator.free_pages` inside an operation: the reference back."""
    rec.refcount += 1


def _restore_refcounts(recs: list) -> None:
    """Undo of :meth:`FrameAllocator.free_pages_many`: one reference back on each."""
    for rec in recs:
        rec.refcount += 1
