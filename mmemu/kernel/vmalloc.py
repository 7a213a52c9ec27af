"""vmalloc: virtually contiguous kernel memory over scattered frames (mm/vmalloc.c).

A ``vmap_area`` reserves ``[va_start, va_end)`` of the vmalloc space, lowest fit first
between VMALLOC_START and VMALLOC_END (``alloc_vmap_area``/``__alloc_vmap_area``), and
includes the guard page that ``__get_vm_area_node`` adds to every area unless VM_NO_GUARD
(``size += PAGE_SIZE``). Its ``vm_struct`` lists the pages. The structures themselves
are kmalloc'd, so they take real slab memory and have real addresses (``kmem -v`` shows
them).

Freeing follows the era: before 2.6.28 ``remove_vm_area`` unmapped, flushed the TLB and
released the range at once; since Nick Piggin's vmap rewrite (2.6.28) the page-table
entries are cleared at once but the TLB flush and the release of the range are lazy:
freed areas stay reserved until more than ``lazy_max_pages()`` pages are waiting, or an
allocation finds no room, and then ``__purge_vmap_area_lazy`` flushes the whole span once
and frees them all. Until then a CPU may still hold the old translations, as on real
hardware.
"""

from __future__ import annotations

import bisect
import itertools
import operator
from dataclasses import dataclass, field
from typing import Iterable

from ..buddy import Page
from ..errors import KernelWarning, MmemuError, OutOfMemory
from ..units import PAGE_SHIFT, PAGE_SIZE
from .base import need_int, operation

# include/linux/vmalloc.h
VM_IOREMAP = 0x00000001
VM_ALLOC = 0x00000002
VM_MAP = 0x00000004
VM_USERMAP = 0x00000008
VM_NO_GUARD = 0x00000040

_NEW = object.__new__

@dataclass(slots=True)
class VmStruct:
    """``struct vm_struct``: one vmalloc/vmap/ioremap area."""

    addr: int
    size: int  # including the guard page, as the kernel counts it
    flags: int
    pages: list[int] = field(default_factory=list)  # pfns
    phys_addr: int = 0
    caller: str = ""
    kaddr: int = 0  # where the vm_struct itself lives (kmalloc)
    pages_kaddr: int = 0  # the kmalloc'd array of page pointers

    @property
    def nr_pages(self) -> int:
        return len(self.pages)

    def get_vm_area_size(self) -> int:
        """``get_vm_area_size``: the usable size, without the guard page."""
        return self.size - (0 if self.flags & VM_NO_GUARD else PAGE_SIZE)


@dataclass(slots=True)
class VmapArea:
    """``struct vmap_area``: a reserved range of the vmalloc space."""

    va_start: int
    va_end: int
    vm: VmStruct | None
    kaddr: int  # where the vmap_area itself lives (kmalloc)
    lazy: bool = False  # freed, waiting for the lazy purge
    early: bool = False  # taken at boot (vm_area_add_early): never freed


# the fields a purge reads of thousands of areas, at C speed
_is_lazy, _va_start, _va_end, _kaddr = (operator.attrgetter(f) for f in ("lazy", "va_start", "va_end", "kaddr"))


def _merged(gaps: list[list[int]], areas: list[VmapArea]) -> list[list[int]]:
    """The free space *gaps* ([start, end) lists, sorted, disjoint) with the ranges of
    *areas* added (one at least, in address order, disjoint from the gaps and each other):
    sorted, ranges that touch merged. New lists (the journal keeps the old ones for the
    undo). The areas are taken as runs of areas that touch (a purge frees thousands, mostly
    side by side), found by comparing each area's end with the next one's start at C speed."""
    starts, ends = list(map(_va_start, areas)), list(map(_va_end, areas))
    breaks = list(map(operator.ne, ends[:-1], starts[1:]))  # after area i, a hole
    runs = zip([starts[0], *itertools.compress(starts[1:], breaks)], [*itertools.compress(ends, breaks), ends[-1]])
    out: list[list[int]] = []
    for start, end in sorted([(g[0], g[1]) for g in gaps] + list(runs)):
        if out and out[-1][1] == start:
            out[-1][1] = end
        else:
            out.append([start, end])
    return out


def _uninsert_area(kernel, i: int, g: int, n: int, gap: list[int]) -> None:
    """Undo of :meth:`VmallocMixin._insert_area`: the area out of the lists, the gap whole."""
    del kernel._vmap_starts[i]
    del kernel.vmap_areas[i]
    kernel.vmap_free[g:g + n] = [gap]


def _unlazy(kernel, area: VmapArea, vm: VmStruct, lazy_nr: int) -> None:
    """Undo of a lazy free: the area busy with its vm_struct again."""
    area.vm, area.lazy = vm, False
    kernel.vmap_lazy_nr = lazy_nr


class VmallocMixin:
    """``vmalloc``, ``vzalloc``, ``vmap``, ``vunmap``, ``vfree``, ``vmalloc_to_page``,
    ``find_vm_area`` and the ``kmem -v`` listing."""

    def _init_vmalloc(self) -> None:
        self.vmap_areas: list[VmapArea] = []  # busy and lazily freed, sorted by va_start
        self._vmap_starts: list[int] = []
        #: the free space (free_vmap_area_list of 5.2+): sorted, merged [start, end) gaps
        # the vmalloc space and the module area (one space on i386, apart on x86_64 and
        # RISC-V), merged where they touch
        syms = self.layout.symbols
        spaces = [(syms["VMALLOC_START"], syms["VMALLOC_END"])]
        if "MODULES_VADDR" in syms and "MODULES_END" in syms:
            spaces.append((syms["MODULES_VADDR"], syms["MODULES_END"]))
        merged: list[tuple[int, int]] = []
        for s_, e_ in sorted(spaces):
            if merged and s_ <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], e_))
            else:
                merged.append((s_, e_))
        self.vmap_spaces: tuple[tuple[int, int], ...] = tuple(merged)
        self._vmalloc_space = (syms["VMALLOC_START"], syms["VMALLOC_END"])  # vmalloc()'s own
        self.vmap_free: list[list[int]] = [[s_, e_] for s_, e_ in merged]
        # vm_area_add_early: what the kernel took at boot (arm64's image) is a busy area
        # from the start, whose structures are the boot's own (no kmalloc)
        for start, end, caller in self.plan.early_vm_areas:
            vm = VmStruct(start, end - start, VM_MAP | VM_NO_GUARD, caller=caller)
            g = bisect.bisect_right(self.vmap_free, [start, 1 << 65]) - 1
            self._insert_area(VmapArea(start, end, vm, 0, early=True), g)
        self.vmap_lazy_nr = 0  # pages waiting for the purge
        self._lazy_max_pages = self.lazy_max_pages()  # of the CPUs the machine boots with
        self.lazy_purge = self.era.lazy_vunmap
        #: totalram_pages(): fixed once the boot has handed RAM to the buddy allocator
        self._totalram_pages = self.frames.managed_pages()
        self._sync_kernel_mappings_now = self.plan.copies_kernel_pgd and self.arch.syncs_kernel_mappings(self.spec)
        # what every vmalloc asks for, looked up once: PAGE_KERNEL; the zone of its pages
        # (GFP_KERNEL | __GFP_HIGHMEM: HighMem first where the machine has it) and the
        # zones it may fall back to; the kmalloc caches of its vm_struct and vmap_area
        self._page_kernel = self.pgprot["PAGE_KERNEL"]
        self._vmalloc_zone = "HighMem" if "HighMem" in self.frames.zones else "Normal"
        self._vmalloc_zones = self.frames.zonelist(self._vmalloc_zone)
        self._vm_struct_cache = self.kmalloc_slab(16 * self.ptr_size)  # sizeof(struct vm_struct)
        self._vmap_area_cache = self.kmalloc_slab(8 * self.ptr_size)  # sizeof(struct vmap_area)

    # -- the address space ------------------------------------------------------------

    def lazy_max_pages(self) -> int:
        """mm/vmalloc.c (2.6.28+): ``fls(num_online_cpus()) * (32UL * 1024 * 1024 / PAGE_SIZE)``."""
        return self.spec.cpus.bit_length() * ((32 << 20) // PAGE_SIZE)

    def _find_gap(self, size: int, align: int, vstart: int, vend: int) -> tuple[int, int] | None:
        """(index of the gap, address): the lowest address in [vstart, vend) where *size*
        bytes aligned to *align* fit in the free space (the areas busy or waiting for the
        purge are not in it), as find_vmap_lowest_match; None if there is none."""
        free = self.vmap_free
        first = bisect.bisect_right(free, [vstart, 1 << 65]) - 1
        for k in range(first if first > 0 else 0, len(free)):  # (indices: a slice would copy the rest)
            start, end = free[k]
            if start >= vend:
                break
            addr = ((start if start > vstart else vstart) + align - 1) & ~(align - 1)
            if addr + size <= (end if end < vend else vend):
                return k, addr
        return None

    # The free space is a list of [start, end) gaps; each change replaces a slice of it
    # with new gap lists (never edits one in place), so that the journal can put it back.

    def _give_space(self, start: int, end: int) -> None:
        free = self.vmap_free
        i = bisect.bisect_left(free, [start, 0])
        lo, hi = i, i
        if i > 0 and free[i - 1][1] == start:  # merge with the gap before
            lo = i - 1
            start = free[i - 1][0]
        if i < len(free) and free[i][0] == end:  # and with the one after
            hi = i + 1
            end = free[i][1]
        self.journal.splice(free, lo, hi, [[start, end]])

    def _insert_area(self, area: VmapArea, g: int) -> None:
        """Put *area* in the sorted lists and take its range out of the free gap *g* holding
        it (split in two, one or none: adjust_va_to_fit_type): one undo record for the three
        lists."""
        start, end = area.va_start, area.va_end
        starts = self._vmap_starts
        if not starts or starts[-1] < start:  # above every area (the lowest fit, often)
            i = len(starts)
        else:
            i = bisect.bisect_left(starts, start)
        starts.insert(i, start)
        self.vmap_areas.insert(i, area)
        free = self.vmap_free
        gap = free[g]
        pieces = [[gap[0], start]] if gap[0] < start else []
        if end < gap[1]:
            pieces.append([end, gap[1]])
        free[g:g + 1] = pieces  # new gap lists, never the old one edited: the undo puts it back
        j = self.journal
        if j.undo is not None:
            j.undo.append((_uninsert_area, (self, i, g, len(pieces), gap)))

    def _remove_area(self, area: VmapArea) -> None:
        i = bisect.bisect_left(self._vmap_starts, area.va_start)
        while self.vmap_areas[i] is not area:
            i += 1
        self.journal.delitem(self._vmap_starts, i)
        self.journal.delitem(self.vmap_areas, i)
        self._give_space(area.va_start, area.va_end)

    def alloc_vmap_area(self, size: int, align: int, vstart: int, vend: int) -> tuple[int, int]:
        """Where *size* bytes fit (the caller has added the guard page), as :meth:`_find_gap`
        gives it: lowest fit; on failure purge the lazily freed areas and try once more,
        then fail like the kernel."""
        fit = self._find_gap(size, align, vstart, vend)
        if fit is None and self.vmap_lazy_nr:
            self.purge_vmap_area_lazy()
            fit = self._find_gap(size, align, vstart, vend)
        if fit is None:
            raise OutOfMemory(self.era.vmap_area_fail.format(size=size))
        return fit

    @operation
    def purge_vmap_area_lazy(self) -> int:
        """``__purge_vmap_area_lazy``: one TLB flush over the span of every lazily freed
        area, then their ranges become free. Returns how many areas were released."""
        areas = self.vmap_areas
        lazy = list(filter(_is_lazy, areas))
        if not lazy:
            return 0
        # (the areas are in address order and disjoint: the span is from the first to the last)
        self.flush_tlb_kernel_range(lazy[0].va_start, lazy[-1].va_end)
        # they all leave at once (up to lazy_max_pages of them: thousands): the busy areas
        # kept in order, the freed ranges merged into the free space in one pass, each
        # list replaced whole (one undo record each, not one per area)
        j = self.journal
        busy = list(itertools.filterfalse(_is_lazy, areas))
        j.splice(areas, 0, len(areas), busy)
        j.splice(self._vmap_starts, 0, len(self._vmap_starts), list(map(_va_start, busy)))
        j.splice(self.vmap_free, 0, len(self.vmap_free),
                 _merged(self.vmap_free, lazy))
        self._slab_free_bulk(self._vmap_area_cache, list(map(_kaddr, lazy)))
        j.set(self, "vmap_lazy_nr", 0)
        return len(lazy)

    # -- areas --------------------------------------------------------------------------

    def _get_vm_area(self, size: int, flags: int, start: int, end: int, caller: str, align: int = PAGE_SIZE) -> VmapArea:
        """``__get_vm_area_node``: a vm_struct and its vmap_area, guard page included."""
        size = (size + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)
        if size <= 0:
            raise MmemuError(f"{caller}: size 0 (the kernel returns NULL)")
        if not flags & VM_NO_GUARD:
            size += PAGE_SIZE
        # the structures first (__get_vm_area_node kmallocs the vm_struct, alloc_vmap_area
        # the vmap_area), then the range; a failure undoes them with the operation
        vm_kaddr = self._slab_alloc(self._vm_struct_cache)
        va_kaddr = self._slab_alloc(self._vmap_area_cache)
        g, addr = self.alloc_vmap_area(size, align, start, end)
        # both records filled in without a call of their dataclass __init__ (every vmalloc)
        vm = _NEW(VmStruct)
        vm.addr, vm.size, vm.flags, vm.pages, vm.phys_addr, vm.caller, vm.kaddr, vm.pages_kaddr = \
            addr, size, flags, [], 0, caller, vm_kaddr, 0
        area = _NEW(VmapArea)
        area.va_start, area.va_end, area.vm, area.kaddr, area.lazy, area.early = \
            addr, addr + size, vm, va_kaddr, False, False
        self._insert_area(area, g)
        return area

    def find_vmap_area(self, addr: int) -> VmapArea | None:
        """The busy area whose range contains *addr*."""
        i = bisect.bisect_right(self._vmap_starts, addr) - 1
        if i >= 0:
            area = self.vmap_areas[i]
            if area.va_start <= addr < area.va_end and not area.lazy:
                return area
        return None

    def find_vm_area(self, addr: int) -> VmStruct | None:
        """``find_vm_area``: the vm_struct of the area containing *addr*, or None."""
        area = self.find_vmap_area(addr)
        return area.vm if area else None

    # -- vmalloc ------------------------------------------------------------------------

    def _check_vmalloc_size(self, size: int, what: str) -> int:
        if type(size) is not int:
            need_int(size, f"{what}: size")
        if size <= 0:
            raise MmemuError(f"{what}({size}): size must be positive (the kernel returns NULL)")
        size = (size + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)
        # __vmalloc_node_range: "if (!size || (size >> PAGE_SHIFT) > totalram_pages()) fail"
        if size >> PAGE_SHIFT > self._totalram_pages:
            raise OutOfMemory(self.era.vmalloc_exceeds_ram.format(size=size))
        return size

    def __vmalloc_node_range(self, size: int, start: int, end: int, prot: int, caller: str,
                             flags: int = 0, zero: bool = False, align: int = PAGE_SIZE) -> int:
        """Allocate pages (HighMem first: GFP_KERNEL | __GFP_HIGHMEM) and map them in a
        new area of [start, end). All or nothing (the operation's transaction)."""
        size = self._check_vmalloc_size(size, caller)
        area = self._get_vm_area(size, VM_ALLOC | flags, start, end, caller, align)
        vm = area.vm
        nr = size >> PAGE_SHIFT  # (size is the usable size, whole pages, at least one)
        pages = vm.pages
        short, mapping = None, False  # short: the pages the free lists had, known to be too few
        try:
            # __vmalloc_area_node: the array of page pointers is kmalloc'd, or vmalloc'd
            # itself when it is larger than a page
            array_size = nr * self.ptr_size
            try:
                if array_size > PAGE_SIZE:
                    vm.pages_kaddr = self.__vmalloc_node_range(array_size, self.layout["VMALLOC_START"],
                                                               self.layout["VMALLOC_END"], self._page_kernel,
                                                               caller)
                else:
                    vm.pages_kaddr = self._kmalloc(array_size)
            except OutOfMemory as exc:
                text = self.era.vmalloc_array_fail
                raise OutOfMemory(text.format(size=nr * PAGE_SIZE, array_size=array_size) if text else
                                  self._vmalloc_oom_text(size, 0, nr)) from exc
            # the pages (HighMem first); a request the free lists cannot meet fails on the
            # page the allocator has no more of: say so without taking them all first
            zone, zones = self._vmalloc_zone, self._vmalloc_zones
            if nr > zones[0].nr_free and self.journal.injection is None:  # the first zone may not do
                free = sum(z.nr_free for z in zones)
                if nr > free:
                    short = free
                    raise OutOfMemory("out of pages")
            if zero:
                for _ in range(nr):
                    pages.append(self._alloc_pages(0, zone, caller, True).pfn)
            else:  # (the zone is one the machine has: the buddy allocator's own call)
                alloc = self.frames.alloc_pages
                for _ in range(nr):
                    pages.append(alloc(0, zone, caller).pfn)
            mapping = True
            op = self.pgtable.map_frames(self.pgd, vm.addr, pages, prot, writer=caller)
        except OutOfMemory as exc:
            got = len(pages) if short is None else short
            raise OutOfMemory(self._vmalloc_oom_text(size, got, nr, mapping)) from exc
        if self._sync_kernel_mappings_now:
            self._sync_kernel_mappings(op)
        return vm.addr

    def _vmalloc_oom_text(self, size: int, got: int, want: int, mapping: bool = False) -> str:
        """The warning of a failed page allocation inside vmalloc, by era (2.6.12 printed
        none: vmalloc just returned NULL). *mapping*: every page was there, the page
        tables were not. Since 5.13 ``__vmalloc_area_node`` prints ``area->nr_pages *
        PAGE_SIZE``, the bytes it did get, as "size"."""
        if mapping and self.era.vmalloc_map_fail_message:  # vmap_pages_range() failed
            return f"vmalloc error: size {got * PAGE_SIZE}, failed to map pages"
        return self.era.vmalloc_page_fail.format(got=got, want=want, got_bytes=got * PAGE_SIZE,
                                                 want_bytes=(want + 1) * PAGE_SIZE)

    @operation
    def vmalloc(self, size: int) -> int:
        """``vmalloc(size)``: the address of *size* bytes (rounded up to pages) of
        virtually contiguous memory."""
        start, end = self._vmalloc_space
        return self.__vmalloc_node_range(size, start, end, self._page_kernel, "vmalloc")

    @operation
    def vzalloc(self, size: int) -> int:
        """``vzalloc(size)``: vmalloc, zeroed."""
        start, end = self._vmalloc_space
        return self.__vmalloc_node_range(size, start, end, self._page_kernel, "vzalloc", zero=True)

    def _pgprot(self, prot: str, what: str) -> int:
        if not isinstance(prot, str) or prot not in self.pgprot:
            raise MmemuError(f"{what}: unknown protection {prot!r}; known: {', '.join(self.pgprot)}")
        return self.pgprot[prot]

    @operation
    def vmalloc_range(self, size: int, start: int, end: int, prot: str = "PAGE_KERNEL", caller: str = "vmalloc",
                      guard: bool = True) -> int:
        """``__vmalloc_node_range``: vmalloc in [start, end) with a named protection (the
        module loader's ``module_alloc``). ``guard=False`` is VM_NO_GUARD."""
        need_int(start, "vmalloc_range: start")
        need_int(end, "vmalloc_range: end")
        if not any(lo <= start < end <= hi for lo, hi in self.vmap_spaces):
            where = ", ".join(f"[{lo:#x}, {hi:#x})" for lo, hi in self.vmap_spaces)
            raise MmemuError(f"vmalloc_range: [{start:#x}, {end:#x}) is not inside the vmalloc or module space "
                             f"({where})")
        return self.__vmalloc_node_range(size, start, end, self._pgprot(prot, "vmalloc_range"), caller,
                                         flags=0 if guard else VM_NO_GUARD)

    @operation
    def vmap(self, pages: Iterable[Page | int], prot: str = "PAGE_KERNEL", guard: bool = True) -> int:
        """``vmap(pages, count, VM_MAP, prot)``: map existing pages (each a Page or a pfn)
        contiguously in vmalloc space, a guard page after them unless *guard* is False."""
        pgprot = self._pgprot(prot, "vmap")
        pfns = []
        for p in pages:
            pfn = p.pfn if isinstance(p, Page) else p
            need_int(pfn, "vmap: a page (a Page or a pfn)")
            if not self.frames.is_ram(pfn):
                raise MmemuError(f"vmap: pfn {pfn:#x} is not RAM")
            pfns.append(pfn)
        if not pfns:
            raise MmemuError("vmap: no pages (the kernel returns NULL)")
        area = self._get_vm_area(len(pfns) * PAGE_SIZE, VM_MAP | (0 if guard else VM_NO_GUARD),
                                 self.layout["VMALLOC_START"], self.layout["VMALLOC_END"], "vmap")
        area.vm.pages = pfns
        op = self.pgtable.map_frames(self.pgd, area.va_start, pfns, pgprot, writer="vmap")
        if self._sync_kernel_mappings_now:
            self._sync_kernel_mappings(op)
        return area.va_start

    def _free_area(self, addr: int, who: str, free_pages: bool) -> VmStruct:
        if addr & (PAGE_SIZE - 1):
            raise KernelWarning(f"Trying to vfree() bad address ({addr:#x})")
        area = self.find_vmap_area(addr)
        if area is None or area.va_start != addr or area.vm is None:
            if who == "vunmap" and self.era.vunmap_nonexistent == "vunmap":
                raise KernelWarning(f"Trying to vunmap() nonexistent vm area ({addr:#x})")
            raise KernelWarning(f"Trying to vfree() nonexistent vm area ({addr:#x})")
        if area.early:
            raise KernelWarning(f"Trying to {who}() the vm area at {addr:#x} the kernel took at boot "
                                f"({area.vm.caller}): it is never freed")
        vm = area.vm
        # vfree() of a vmap() area unmaps it like vunmap(): its pages belong to the caller
        # (the vm_struct of a vmap has no pages of its own to free)
        free_pages = free_pages and bool(vm.flags & VM_ALLOC)
        size = vm.get_vm_area_size()
        # remove_vm_area: unmap at once (vunmap_range_noflush / unmap_kernel_range_noflush),
        # then the range: lazily (2.6.28+) or flushed and released at once
        self.pgtable.unmap(self.pgd, vm.addr, size, writer=who)
        j = self.journal
        if self.lazy_purge:
            # free_vmap_area_noflush: the area waits for the purge (one undo record)
            lazy_nr = self.vmap_lazy_nr
            if j.undo is not None:
                j.undo.append((_unlazy, (self, area, vm, lazy_nr)))
            area.vm, area.lazy = None, True
            lazy_nr += (area.va_end - area.va_start) >> PAGE_SHIFT
            self.vmap_lazy_nr = lazy_nr
            if lazy_nr > self._lazy_max_pages:
                self.purge_vmap_area_lazy()
        else:
            j.set(area, "vm", None)
            self.flush_tlb_kernel_range(area.va_start, area.va_end)
            self._remove_area(area)
            self._kfree(area.kaddr)
        # then vfree frees the pages, the page array (kvfree) and the vm_struct
        if free_pages:
            free = self.frames.free_pages
            for pfn in vm.pages:
                free(pfn)
        if vm.pages_kaddr:  # kvfree of the page array, made as __vmalloc_area_node made it
            array_size = len(vm.pages) * self.ptr_size
            if array_size > PAGE_SIZE:
                self.vfree(vm.pages_kaddr)
            else:
                self._kmem_cache_free(self.kmalloc_slab(array_size), vm.pages_kaddr)
        self._kmem_cache_free(self._vm_struct_cache, vm.kaddr)
        return vm

    @operation
    def vfree(self, addr: int) -> None:
        """``vfree(addr)``: unmap the area and free its pages. vfree(0) does nothing."""
        if type(addr) is not int:
            need_int(addr, "vfree: addr")
        if addr:
            self._free_area(addr, "vfree", True)

    @operation
    def vunmap(self, addr: int) -> None:
        """``vunmap(addr)``: unmap an area made by vmap (its pages stay allocated)."""
        need_int(addr, "vunmap: addr")
        self._free_area(addr, "vunmap", free_pages=False)

    def is_vmalloc_addr(self, addr: int) -> bool:
        """``is_vmalloc_or_module_addr``."""
        for lo, hi in self.vmap_spaces:
            if lo <= addr < hi:
                return True
        return False

    @operation
    def kvfree(self, addr: int) -> None:
        """``kvfree``: vfree for a vmalloc address, kfree for anything else."""
        if self.is_vmalloc_addr(addr):
            self.vfree(addr)
        else:
            self.kfree(addr)

    def vmalloc_to_page(self, addr: int) -> int:
        """``vmalloc_to_page``: the pfn mapped at a vmalloc address (by walking the master
        page table, as the kernel does)."""
        if not self.layout["VMALLOC_START"] <= addr < self.layout["VMALLOC_END"]:
            modules = (self.layout.symbols.get("MODULES_VADDR"), self.layout.symbols.get("MODULES_END"))
            if None in modules or not modules[0] <= addr < modules[1]:
                raise MmemuError(f"vmalloc_to_page({addr:#x}): not a vmalloc or module address")
        w = self.walk(addr)
        if not w.mapped:
            raise MmemuError(f"vmalloc_to_page({addr:#x}): nothing is mapped there (the kernel returns NULL)")
        return w.phys >> PAGE_SHIFT

    def vmalloc_to_pfn(self, addr: int) -> int:
        return self.vmalloc_to_page(addr)

    # -- keeping other page directories in step ---------------------------------------

    def _sync_kernel_mappings(self, op) -> None:
        """Where the arch asks for it (``_sync_kernel_mappings_now``, which the callers test:
        arch_sync_kernel_mappings since 5.8, sync_global_pgds)
        a new top-level kernel entry is copied into every page directory at once; else each
        process picks it up on its first fault there (vmalloc_fault) or needs none (a
        preallocated or separate kernel root). Only after a mapping *op* that changed an
        entry above the last level, i.e. allocated a table: mm/vmalloc.c (5.8+)
        vmap_range_noflush and vmap_small_pages_range_noflush collect the levels they
        modified in a pgtbl_mod_mask and call arch_sync_kernel_mappings() only ``if (mask &
        ARCH_PAGE_TABLE_SYNC_MASK)``; a vmap into page tables that exist changes none."""
        if op.tables_allocated:
            self.sync_kernel_pgds()

    # -- looking ------------------------------------------------------------------------

    def kmem_v(self) -> str:
        """The crash utility's ``kmem -v`` (memory.c dump_vmlist/dump_vmap_area, read at
        commit 004218c5). From 2.6.28 (the kernel has vmap_area_list) one row per busy
        vmap_area: ``VMAP_AREA  VM_STRUCT     ADDRESS RANGE        SIZE`` over
        ``f7048e00   f7048e40   f7dfe000 - f7e00000     8192`` (its help text): the two
        structure addresses centred in max(VADDR_PRLEN, 9) columns, the range centred in
        2 * VADDR_PRLEN + 3, ``%7ld`` of va_end - va_start (guard page included) under
        ``     SIZE``. Before, crash walks the vmlist of vm_structs: ``VM_STRUCT`` centred in
        max(VADDR_PRLEN, 9), ``ADDRESS RANGE``, ``    SIZE``; rows ``%s%s  %s - %s  %6ld``
        of the vm_struct centred in VADDR_PRLEN and space(MINSPACE - 1), addr right-justified,
        addr + size left-justified, and vm_struct.size. A size wider than its column widens
        its own row only (printf)."""
        w = 2 * self.ptr_size
        cw, rw = max(w, len("VMAP_AREA")), 2 * w + 3
        busy = [a for a in self.vmap_areas if not a.lazy and a.vm is not None]
        # str.format centres with the odd column on the right, as crash's mkstring(CENTER|LJUST)
        if not self.era.vmap_area_list:
            rows = [f"{'VM_STRUCT':^{max(w, len('VM_STRUCT'))}}  {'ADDRESS RANGE':^{rw}}    SIZE"]
            for a in busy:
                vm = a.vm
                rows.append(f"{vm.kaddr:^{w}x}   {vm.addr:>{w}x} - {vm.addr + vm.size:<{w}x}  {vm.size:6d}")
            return "\n".join(rows) + "\n"
        rows = [f"{'VMAP_AREA':^{cw}}  {'VM_STRUCT':^{cw}}  {'ADDRESS RANGE':^{rw}}  {'SIZE':>7}"]
        for a in busy:
            rng = f"{a.va_start:0{w}x} - {a.va_end:0{w}x}"
            rows.append(f"{a.kaddr:^{cw}x}  {a.vm.kaddr:^{cw}x}  {rng:^{rw}}  {a.va_end - a.va_start:>7d}")
        return "\n".join(rows) + "\n"
