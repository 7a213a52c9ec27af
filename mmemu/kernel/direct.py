"""The direct mapping's services: pages and their addresses, the page allocator, kmalloc.

arch/x86/include/asm/page.h (``__pa``/``__va`` are in :mod:`mmemu.kernel.base`),
include/linux/mm.h (``page_address``, ``virt_to_page``, ``lowmem_page_address``),
mm/page_alloc.c (``alloc_pages``, ``__get_free_pages``), mm/slab_common.c and mm/slub.c
(``kmalloc`` size classes).
"""

from __future__ import annotations

import bisect
import itertools
import operator
from dataclasses import dataclass, field

from ..buddy import NR_ORDERS, Page
from ..errors import AddressError, KernelBug, MmemuError, OutOfMemory
from ..units import PAGE_SHIFT, PAGE_SIZE
from .base import need_int, operation

#: kmalloc size classes (mm/slab_common.c kmalloc_info[]: 8..8192 with 96 and 192), the
#: largest object SLUB serves from a cache (KMALLOC_MAX_CACHE_SIZE = 2 pages); bigger
#: requests go to the page allocator (kmalloc_large).
KMALLOC_SIZES = (8, 16, 32, 64, 96, 128, 192, 256, 512, 1024, 2048, 4096, 8192)
#: the size class of each request size up to the largest (index into KMALLOC_SIZES): a
#: table looked up per kmalloc, as mm/slab_common.c kmalloc_slab() looks sizes up to 192 in
#: size_index[(size - 1) / 8] (and fls(size - 1) beyond), with the same answers
KMALLOC_MAX_CACHE_SIZE = KMALLOC_SIZES[-1]
KMALLOC_INDEX = [bisect.bisect_left(KMALLOC_SIZES, size) for size in range(KMALLOC_MAX_CACHE_SIZE + 1)]
#: mm/slub.c MIN_PARTIAL: empty slabs a cache keeps before giving pages back
MIN_PARTIAL = 5
#: include/linux/slab.h: what kmalloc(0) returns; kfree accepts it
ZERO_SIZE_PTR = 16


def _pfn(page: "Page | int") -> int:
    return page.pfn if isinstance(page, Page) else need_int(page, "a page (a Page or a pfn)")


@dataclass(slots=True)
class KmemCache:
    """A kmalloc cache: slabs of one or two pages cut into equal objects (slotted: every
    kmalloc and kfree reads its fields)."""

    name: str
    size: int
    order: int
    slabs: dict[int, list[int]] = field(default_factory=dict)  # slab pfn -> free object addresses
    partial: list[int] = field(default_factory=list)  # slab pfns with free objects
    #: every free object of every slab (what the free lists hold, as a set: kfree's double
    #: free check in O(1), not a scan of a 512-object list)
    free_objs: set[int] = field(default_factory=set, repr=False, compare=False)
    #: objects in one slab (read on every kfree that empties one)
    objects_per_slab: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.objects_per_slab = (PAGE_SIZE << self.order) // self.size


class DirectMapMixin:
    """Pages, their addresses in the direct mapping, and kmalloc."""

    def _init_direct(self) -> None:
        self.kmalloc_caches = [KmemCache(f"kmalloc-{size}", size, 1 if size > PAGE_SIZE else 0)
                               for size in KMALLOC_SIZES]
        self._slab_of: dict[int, KmemCache] = {}  # slab pfn -> cache
        self._kmalloc_large: set[int] = set()  # pfns of kmalloc_large blocks

    # -- struct page ----------------------------------------------------------------------

    def page_to_pfn(self, page: "Page | int") -> int:
        return _pfn(page)

    def pfn_to_page(self, pfn: int) -> Page:
        """The record of the allocated block whose first frame is *pfn*."""
        rec = self.frames.allocated.get(pfn)
        if rec is None:
            info = self.frames.page(pfn)
            raise MmemuError(f"pfn_to_page({pfn:#x}): the frame is {info.state}"
                             + (f" (block at pfn {info.head:#x})" if info.state == "allocated" else "")
                             + ", not the first frame of an allocated block")
        return rec

    def PageHighMem(self, page: "Page | int") -> bool:
        zone = self.frames.zone_of(_pfn(page))
        return zone is not None and zone.name == "HighMem"

    def lowmem_page_address(self, page: "Page | int") -> int:
        """``lowmem_page_address``: ``__va(PFN_PHYS(page_to_pfn(page)))``; a HighMem page has
        no such address (VIRTUAL_BUG_ON with CONFIG_DEBUG_VIRTUAL)."""
        return self.phys_to_virt(_pfn(page) << PAGE_SHIFT)

    def page_address(self, page: "Page | int") -> int | None:
        """``page_address``: the direct-map address of a lowmem page; for a HighMem page
        the address it is kmapped at, or None (the kernel's NULL) if it is not kmapped."""
        pfn = _pfn(page)
        if not self.PageHighMem(pfn):
            return self.lowmem_page_address(pfn)
        return self.page_address_map.get(pfn)

    def page_count(self, page: "Page | int") -> int:
        """``page_count``: the reference count of the block the frame belongs to (0 for a
        free frame)."""
        return self.frames.page(_pfn(page)).refcount

    def page_mapcount(self, page: "Page | int") -> int:
        """``page_mapcount``: how many user page-table entries map the frame, PROT_NONE
        ones included (pte_present). The zero page counts none: its entries are special
        (vm_normal_page() skips them, so no rmap counts them). mmemu keeps no reverse map:
        this walks every process's page tables."""
        pfn = _pfn(page)
        if pfn == self.zero_pfn:
            return 0
        return sum(1 for proc in self.pgd_list for _, raw in self.user_ptes(proc, 0, self.task_size)
                   if self.pte_pfn(raw) == pfn)

    def ZERO_PAGE(self, vaddr: int = 0) -> int:
        """``ZERO_PAGE(vaddr)``: the pfn of empty_zero_page, which every read fault of
        anonymous memory maps (one page whatever *vaddr*, as on x86, RISC-V and arm64)."""
        return self.zero_pfn

    def virt_to_page(self, va: int) -> int:
        """``virt_to_page``: the pfn behind a direct-mapped address. Any other address (a
        vmalloc one, say) is the bug it is in the kernel: use vmalloc_to_page."""
        page_offset, high_memory, _ = self._direct_span
        if not page_offset <= va < high_memory and self.image_phys(va) is None:
            raise AddressError(f"virt_to_page({va:#x}): not a direct-mapped address (for vmalloc space "
                               f"use vmalloc_to_page)")
        return self.virt_to_phys(va) >> PAGE_SHIFT

    # -- the page allocator -----------------------------------------------------------------

    @operation
    def alloc_pages(self, order: int = 0, zone: str = "Normal", owner: str = "alloc_pages", zero: bool = False) -> Page:
        """``alloc_pages(gfp, order)``; *zone* is the highest zone the GFP flags allow
        (``"HighMem"`` for __GFP_HIGHMEM, ``"DMA"`` for GFP_DMA...); *zero*: __GFP_ZERO."""
        need_int(order, "alloc_pages: order", 0)
        return self._alloc_pages(order, zone, owner, zero)

    def _alloc_pages(self, order: int, zone: str, owner: str, zero: bool = False) -> Page:
        """:meth:`alloc_pages` for the kernel's own callers, inside their operation (the
        arguments are theirs, already right)."""
        if zone == "HighMem" and "HighMem" not in self.frames.zones:
            zone = "Normal"  # __GFP_HIGHMEM on a machine without HighMem: ZONE_NORMAL
        page = self.frames.alloc_pages(order, zone, owner)
        if zero:
            self.mem.zero(page.pfn << PAGE_SHIFT, PAGE_SIZE << order)
        return page

    @operation
    def free_page_block(self, page: "Page | int", order: int | None = None) -> bool:
        """``__free_pages(page, order)``: drop a reference; free the block on the last."""
        if order is not None:
            need_int(order, "__free_pages: order", 0)
        return self.frames.free_pages(page, order)

    @operation
    def get_free_pages(self, order: int = 0, zone: str = "Normal", zero: bool = False) -> int:
        """``__get_free_pages``: lowmem pages, returned by their direct-map address."""
        if zone == "HighMem":
            raise MmemuError("__get_free_pages cannot return HighMem pages: they have no kernel address")
        return self.lowmem_page_address(self.alloc_pages(order, zone, owner="__get_free_pages", zero=zero))

    @operation
    def free_pages(self, addr: int, order: int = 0) -> None:
        """``free_pages(addr, order)``: by direct-map address."""
        need_int(addr, "free_pages: addr")
        need_int(order, "free_pages: order", 0)
        self.frames.free_pages(self.virt_to_page(addr), order)

    # -- kmalloc ----------------------------------------------------------------------------

    @operation
    def kmalloc(self, size: int, zero: bool = False) -> int:
        """``kmalloc(size, GFP_KERNEL)``: an object from the smallest size class that fits,
        or whole pages beyond 8 KiB (``kmalloc_large``). Returns its direct-map address."""
        need_int(size, "kmalloc: size")
        if size == 0:
            return ZERO_SIZE_PTR  # include/linux/slab.h: a pointer that faults when used
        if size < 0:
            raise MmemuError(f"kmalloc({size}): negative size")
        return self._kmalloc(size, zero)

    def kmalloc_slab(self, size: int) -> KmemCache | None:
        """``kmalloc_slab``: the cache kmalloc(*size*) takes its object from (None beyond
        KMALLOC_MAX_CACHE_SIZE: kmalloc_large)."""
        return self.kmalloc_caches[KMALLOC_INDEX[size]] if size <= KMALLOC_MAX_CACHE_SIZE else None

    def _kmalloc(self, size: int, zero: bool = False) -> int:
        """:meth:`kmalloc` of a positive size, for the kernel's own callers inside their
        operation (vmalloc's page array)."""
        if size <= KMALLOC_MAX_CACHE_SIZE:
            return self._slab_alloc(self.kmalloc_caches[KMALLOC_INDEX[size]], zero, size)
        order = (size - 1).bit_length() - PAGE_SHIFT
        if order >= NR_ORDERS:  # kmalloc_large: order > MAX_ORDER fails (the kernel WARNs)
            raise OutOfMemory(f"kmalloc({size}): more than the page allocator's largest block "
                              f"(order {NR_ORDERS - 1})")
        page = self._alloc_pages(max(0, order), "Normal", f"kmalloc_large ({size} bytes)", zero)
        self.journal.add(self._kmalloc_large, page.pfn)
        return self.lowmem_page_address(page)

    def _slab_alloc(self, cache: KmemCache, zero: bool = False, size: int = 0) -> int:
        """``slab_alloc_node``: an object of *cache* (kmalloc(*size*), or of the cache's own
        size), for the kernel's own callers inside their operation (vmalloc's vm_struct and
        vmap_area come here directly, their cache known). An object from a partial slab
        (the common case) is one undo record."""
        j = self.journal
        if j.injection is not None:
            j.inject("slab", f"kmalloc({size or cache.size})")  # CONFIG_FAILSLAB: should_failslab()
        if not cache.partial:
            page = self._alloc_pages(cache.order, "Normal", f"slab ({cache.name})")
            base = self.lowmem_page_address(page)
            # objects handed out lowest address first, as a fresh SLUB slab's freelist does
            objs = [base + i * cache.size for i in reversed(range(cache.objects_per_slab))]
            j.setitem(cache.slabs, page.pfn, objs)
            j.record(cache.free_objs.difference_update, objs)
            cache.free_objs.update(objs)
            j.append(cache.partial, page.pfn)
            j.setitem(self._slab_of, page.pfn, cache)
        slab = cache.partial[-1]
        free = cache.slabs[slab]
        obj = free.pop()
        cache.free_objs.discard(obj)
        full = not free
        if full:
            cache.partial.pop()
        if j.undo is not None:
            j.undo.append((_unkmalloc, (cache, slab, obj, full)))
        if zero:
            self.mem.zero(self.virt_to_phys(obj), cache.size)
        return obj

    def kzalloc(self, size: int) -> int:
        """``kzalloc(size, GFP_KERNEL)``: kmalloc, zeroed."""
        return self.kmalloc(size, zero=True)

    @operation
    def kfree(self, addr: int) -> None:
        """``kfree``: back to its cache (or to the page allocator for kmalloc_large). An
        address kmalloc did not hand out is refused with nothing changed. ``kfree(NULL)``
        (and of ZERO_SIZE_PTR) does nothing, as ZERO_OR_NULL_PTR makes it in the kernel."""
        need_int(addr, "kfree: addr")
        self._kfree(addr)

    def _kfree(self, addr: int) -> None:
        """:meth:`kfree` of an int, for the kernel's own callers inside their operation. An
        object back to a slab that stays in use (the common case) is one undo record."""
        if 0 <= addr <= 16:  # include/linux/slab.h ZERO_OR_NULL_PTR
            return
        page_offset, high_memory, phys_offset = self._direct_span
        if page_offset <= addr < high_memory:  # virt_to_page, inline: where kmalloc memory is
            head = (addr - page_offset + phys_offset) >> PAGE_SHIFT
        else:
            try:
                head = self.virt_to_page(addr)
            except AddressError:
                raise MmemuError(f"kfree({addr:#x}): not a kmalloc'd address (outside the direct mapping)") from None
        cache = self._slab_of.get(head)
        if cache is None:  # not the first frame of a slab
            head, cache = self._kfree_block(addr, head)
            if cache is None:
                return
        base = (head << PAGE_SHIFT) - phys_offset + page_offset  # lowmem_page_address(head)
        if (addr - base) % cache.size:
            raise MmemuError(f"kfree({addr:#x}): not the start of a {cache.name} object")
        self._slab_free(cache, head, addr)

    def _slab_free(self, cache: KmemCache, head: int, addr: int) -> None:
        """``slab_free``: the object at *addr* back to its slab (first frame *head*) of
        *cache*: what :meth:`_kfree` does once it has found them. An object back to a slab
        that stays in use (the common case) is one undo record."""
        free = cache.slabs[head]
        if addr in cache.free_objs:
            raise self.BUG("mm/slub.c", f"double free of {addr:#x} in {cache.name}")
        free.append(addr)
        cache.free_objs.add(addr)
        partial = len(free) == 1
        if partial:
            cache.partial.append(head)
        j = self.journal
        if j.undo is not None:
            j.undo.append((_unkfree, (cache, head, addr, partial)))
        if len(free) == cache.objects_per_slab and len(cache.partial) > MIN_PARTIAL:
            self._discard_slab(cache, head)

    def _kmem_cache_free(self, cache: KmemCache, addr: int) -> None:
        """``kmem_cache_free``: the object at *addr*, one the caller got from *cache* (vfree's
        vm_struct), back to its slab, found by arithmetic (``virt_to_slab``: slabs are blocks
        of the buddy allocator, aligned to their order, in the direct map)."""
        page_offset, _, phys_offset = self._direct_span
        order = cache.order
        self._slab_free(cache, ((addr - page_offset + phys_offset) >> (PAGE_SHIFT + order)) << order, addr)

    def _slab_free_bulk(self, cache: KmemCache, addrs: list[int]) -> None:
        """``kmem_cache_free_bulk``: the objects at *addrs*, each one the caller got from
        *cache*, back to their slabs in that order, with the same result as a
        :meth:`_kmem_cache_free` of each (the vmap_areas of a lazy purge: thousands).

        As the kernel's build_detached_freelist, it takes them a run at a time: the
        objects of one slab that follow each other (a purge frees areas in address order,
        whose vmap_areas came one after the other from the same slabs). What a free of
        each would change for a run happens at once: its objects appended to the slab's
        free list in their order, the slab made partial at the run's first object if it
        was full, and, at its last, the slab emptied (and perhaps discarded), since only
        the last free of a slab can empty it. Slabs are found by arithmetic, as
        :meth:`_kmem_cache_free` does; the double-free check is one set operation; the
        runs between two discarded slabs are one undo record."""
        free_objs = cache.free_objs
        before = len(free_objs)
        if free_objs.isdisjoint(addrs):
            free_objs.update(addrs)
            if len(free_objs) == before + len(addrs):  # no object twice either
                self._slab_free_runs(cache, addrs)
                return
            free_objs.difference_update(addrs)
        for addr in addrs:  # a double free: raised where a kfree of each would raise it
            self._kmem_cache_free(cache, addr)

    def _slab_free_runs(self, cache: KmemCache, addrs: list[int]) -> None:
        """:meth:`_slab_free_bulk` once the objects are in ``free_objs``: each run of
        objects of one slab onto its free list."""
        page_offset, _, phys_offset = self._direct_span
        order = cache.order
        heads = map(operator.rshift, map(operator.add, addrs, itertools.repeat(phys_offset - page_offset)),
                    itertools.repeat(PAGE_SHIFT + order))
        if order:
            heads = map(operator.lshift, heads, itertools.repeat(order))
        slabs, partial, per = cache.slabs, cache.partial, cache.objects_per_slab
        j = self.journal
        runs: list[tuple[int, int, int, bool]] = []  # (slab, first, end, made partial) since the last record
        i = 0
        try:
            for head, run in itertools.groupby(heads):
                free = slabs[head]
                made_partial = not free
                end = i + len(list(run))
                free.extend(addrs[i:end])
                if made_partial:
                    partial.append(head)
                runs.append((head, i, end, made_partial))
                i = end
                if len(free) == per and len(partial) > MIN_PARTIAL:
                    if j.undo is not None:  # (the discard's own records come after these)
                        j.undo.append((_unfree_runs, (cache, addrs, runs)))
                    runs = []
                    self._discard_slab(cache, head)
        finally:
            if i < len(addrs):  # (a model bug raised: the objects not freed are not free)
                cache.free_objs.difference_update(addrs[i:])
            if runs and j.undo is not None:
                j.undo.append((_unfree_runs, (cache, addrs, runs)))

    def _discard_slab(self, cache: KmemCache, head: int) -> None:
        """A kfree has just emptied the slab *head*: SLUB keeps a few empty slabs
        (min_partial); beyond, this one goes back to the page allocator (``discard_slab``).
        Counted only when more slabs than that are partial: the empty ones are among them."""
        per, slabs, empty = cache.objects_per_slab, cache.slabs, 0
        for pfn in cache.partial:  # (a loop: a generator costs more than the short list)
            if len(slabs[pfn]) == per:
                empty += 1
        if empty > MIN_PARTIAL:
            j = self.journal
            free = slabs[head]
            j.remove(cache.partial, head)
            j.record(cache.free_objs.update, list(free))
            cache.free_objs.difference_update(free)
            j.delitem(cache.slabs, head)
            j.delitem(self._slab_of, head)
            self.frames.free_pages(head)

    def _kfree_block(self, addr: int, pfn: int) -> tuple[int | None, KmemCache | None]:
        """:meth:`_kfree` of an address that is not in the first frame of a slab: a
        kmalloc_large block (freed here: (None, None)), a later frame of a two-page slab
        ((its head, its cache)), or no kmalloc'd memory at all (refused)."""
        rec = self.frames.allocated.get(pfn)
        if rec is not None:  # the first frame of an allocated block
            head, state, owner = pfn, "allocated", rec.owner
        else:
            info = self.frames.page(pfn)
            if info.state == "free":
                # a freed kmalloc_large block (or any free page): __free_pages on a page whose
                # refcount is already 0, the kernel's "BUG: Bad page state"
                raise KernelBug(f"BUG: Bad page state: kfree({addr:#x}) of pfn {pfn:#x}, which is already free "
                                "(double free?)")
            state, owner = info.state, info.owner
            head = info.head if state == "allocated" else None
        if head in self._kmalloc_large and addr == self.lowmem_page_address(head):
            self.journal.discard(self._kmalloc_large, head)
            self.frames.free_pages(head)
            return None, None
        cache = self._slab_of.get(head) if head is not None else None
        if cache is None:
            raise MmemuError(f"kfree({addr:#x}): the page is not a slab page (it is {state}"
                             f"{': ' + owner if owner else ''})")
        return head, cache


def _unkmalloc(cache: KmemCache, slab: int, obj: int, full: bool) -> None:
    """Undo of a kmalloc from a partial slab: the object back on its free list (last, where
    it was taken from), the slab back on the partial list if it had filled up."""
    cache.slabs[slab].append(obj)
    cache.free_objs.add(obj)
    if full:
        cache.partial.append(slab)


def _unkfree(cache: KmemCache, slab: int, obj: int, partial: bool) -> None:
    """Undo of a kfree into a slab: the object off its free list (it is the last), the slab
    off the partial list if the free made it partial."""
    cache.slabs[slab].pop()
    cache.free_objs.discard(obj)
    if partial:
        cache.partial.pop()


def _unfree_runs(cache: KmemCache, addrs: list[int], runs: list[tuple[int, int, int, bool]]) -> None:
    """Undo of runs of frees of :meth:`DirectMapMixin._slab_free_bulk` (each the objects
    ``addrs[first:end]`` onto the slab's free list), newest first."""
    slabs, free_objs, partial = cache.slabs, cache.free_objs, cache.partial
    for slab, first, end, made_partial in reversed(runs):
        del slabs[slab][first - end:]
        free_objs.difference_update(addrs[first:end])
        if made_partial:
            partial.pop()


# the kernel's names, reachable as kernel.__free_pages(...) outside class bodies
setattr(DirectMapMixin, "__free_pages", DirectMapMixin.free_page_block)
setattr(DirectMapMixin, "__get_free_pages", DirectMapMixin.get_free_pages)
