"""The direct mapping's services: __pa/__va, page_address, virt_to_page, the page
allocator by zone, __get_free_pages, and kmalloc/kzalloc/kfree.

Expected values come from the kernel's rules (arch/x86/include/asm/page.h: ``__pa(x) =
x - PAGE_OFFSET`` in the direct map; include/linux/mm.h ``lowmem_page_address``;
mm/page_alloc.c zonelists: HighMem -> Normal -> DMA, never upwards; ZONE_DMA below
16 MiB; mm/slab_common.c kmalloc_info[] size classes 8..8192 with 96 and 192, and
kmalloc_large above KMALLOC_MAX_CACHE_SIZE = 8 KiB), never from the code under test.
"""

from __future__ import annotations

import pytest

from mmemu.errors import AddressError, KernelBug, MmemuError, OutOfMemory
from mmemu.kernel.base import operation

PAGE = 4096
MiB = 1 << 20
DMA_END_PFN = (16 * MiB) // PAGE  # ZONE_DMA: the ISA DMA limit, 16 MiB, on both arches

ARCHES = [("i386", "6.6", "1G"), ("i386_pae", "3.10", "2G"), ("x86_64", "6.6", "1G"), ("i386", "2.6.12", "1G")]

#: mm/slab_common.c kmalloc_info[] (KMALLOC_MIN_SIZE 8 on x86), up to KMALLOC_MAX_CACHE_SIZE
SIZE_CLASSES = (8, 16, 32, 64, 96, 128, 192, 256, 512, 1024, 2048, 4096, 8192)


def __pa(k, va):
    return getattr(k, "__pa")(va)


def __va(k, pa):
    return getattr(k, "__va")(pa)


def lowmem_bytes(k):
    """max_low_pfn << PAGE_SHIFT: high_memory - PAGE_OFFSET."""
    return k.layout["high_memory"] - k.layout["PAGE_OFFSET"]


def slab_state(k):
    return [(c.name, {pfn: list(objs) for pfn, objs in c.slabs.items()}, list(c.partial)) for c in k.kmalloc_caches]


def whole_state(k):
    return (k.frames.nr_free_pages(), slab_state(k), sorted(k.frames.allocated), k.event_seq)


# -- __pa / __va ---------------------------------------------------------------------------

@pytest.mark.parametrize("arch,kv,ram", ARCHES)
def test_pa_va_are_the_direct_map_offset(boot, arch, kv, ram):
    k = boot(arch=arch, kernel=kv, ram=ram)
    po, lowmem = k.layout["PAGE_OFFSET"], lowmem_bytes(k)
    if arch.startswith("i386"):
        expected_po = 0xC0000000  # the default 3G/1G split
    else:  # Documentation/x86/x86_64/mm.txt: ffff810000000000 until 2.6.x, ffff880000000000, ffff888000000000 (4.20+)
        expected_po = 0xFFFF888000000000 if kv >= "4.20" else (0xFFFF810000000000 if kv < "2.6.27" else 0xFFFF880000000000)
    assert po == expected_po
    for pa in (0, 0x1000, 0x123456, lowmem // 2 + 0x567, lowmem - 1):
        assert __va(k, pa) == po + pa
        assert __pa(k, po + pa) == pa
        # and the MMU agrees: the direct map really maps va to pa
        assert k.walk(po + pa).phys == pa
    k.check_invariants()


@pytest.mark.parametrize("arch,kv,ram", ARCHES)
def test_pa_va_refuse_addresses_outside_the_direct_map(boot, arch, kv, ram):
    k = boot(arch=arch, kernel=kv, ram=ram)
    lowmem = lowmem_bytes(k)
    with pytest.raises(AddressError):
        __va(k, lowmem)  # the first byte of HighMem (or beyond RAM on x86_64)
    with pytest.raises(AddressError):
        __pa(k, k.layout["VMALLOC_START"])
    with pytest.raises(AddressError):
        __pa(k, 0x1000)  # a user address
    k.check_invariants()


def test_pa_of_the_x86_64_kernel_image_alias(boot):
    """x86_64 ``__phys_addr``: the image mapping at __START_KERNEL_map is also accepted."""
    k = boot(arch="x86_64", kernel="6.6", ram="1G")
    for sec in k.layout.image:
        assert __pa(k, sec.virt) == sec.phys
        assert __pa(k, sec.virt + 0x10) == sec.phys + 0x10


# -- page_address / virt_to_page -----------------------------------------------------------

@pytest.mark.parametrize("arch,kv,ram", ARCHES)
def test_page_address_of_lowmem_pages(boot, arch, kv, ram):
    k = boot(arch=arch, kernel=kv, ram=ram)
    for zone in ("DMA", "Normal"):
        page = k.alloc_pages(0, zone)
        assert k.page_address(page) == k.layout["PAGE_OFFSET"] + page.pfn * PAGE
        assert k.page_address(page.pfn) == k.layout["PAGE_OFFSET"] + page.pfn * PAGE
        assert k.virt_to_page(k.page_address(page)) == page.pfn
        assert k.virt_to_page(k.page_address(page) + 0xABC) == page.pfn
    k.check_invariants()


@pytest.mark.parametrize("arch,kv,ram", [("i386", "6.6", "1G"), ("i386_pae", "3.10", "2G"), ("i386", "2.6.12", "1G")])
def test_page_address_of_a_highmem_page_is_null_unless_kmapped(boot, arch, kv, ram):
    k = boot(arch=arch, kernel=kv, ram=ram)
    page = k.alloc_pages(0, "HighMem")
    assert page.pfn * PAGE >= lowmem_bytes(k)
    assert k.page_address(page) is None  # the kernel's NULL
    with pytest.raises(AddressError):
        k.lowmem_page_address(page)  # no direct-map address at all
    va = k.kmap(page)
    pkmap_base, last = k.layout["PKMAP_BASE"], k.layout["LAST_PKMAP"]
    assert pkmap_base <= va < pkmap_base + last * PAGE
    assert k.page_address(page) == va
    k.kunmap(page)
    # kunmap leaves the slot (count 1) and page_address until the next flush
    assert k.page_address(page) == va
    k.check_invariants()


@pytest.mark.parametrize("arch,kv,ram", ARCHES)
def test_virt_to_page_refuses_a_vmalloc_address(boot, arch, kv, ram):
    k = boot(arch=arch, kernel=kv, ram=ram)
    va = k.vmalloc(PAGE)
    with pytest.raises(AddressError, match="vmalloc_to_page"):
        k.virt_to_page(va)
    with pytest.raises(MmemuError):
        k.virt_to_page(0x1000)
    # the right call for it
    assert k.vmalloc_to_page(va) == k.walk(va).phys // PAGE
    k.check_invariants()


# -- alloc_pages, zones and fallback -------------------------------------------------------

def zone_of(k, pfn):
    """Which zone a pfn is in, by the kernel's boundaries (not by asking the allocator)."""
    low_pfn = lowmem_bytes(k) // PAGE
    if pfn < DMA_END_PFN:
        return "DMA"
    if k.layout["PAGE_OFFSET"] == 0xC0000000:
        return "Normal" if pfn < low_pfn else "HighMem"
    if "DMA32" in k.frames.zones:
        return "DMA32" if pfn < (4 << 30) // PAGE else "Normal"
    return "Normal"


@pytest.mark.parametrize("arch,kv,ram", ARCHES)
def test_alloc_pages_by_zone(boot, arch, kv, ram):
    k = boot(arch=arch, kernel=kv, ram=ram)
    x86_64 = arch == "x86_64"
    expect = {"DMA": "DMA",
              "Normal": ("DMA32" if kv >= "2.6.15" else "Normal") if x86_64 else "Normal",
              "HighMem": ("DMA32" if kv >= "2.6.15" else "Normal") if x86_64 else "HighMem"}
    for zone, want in expect.items():
        for order in (0, 3):
            page = k.alloc_pages(order, zone)
            assert page.order == order and page.nr_pages == 1 << order
            assert page.pfn % (1 << order) == 0  # buddy blocks are naturally aligned
            assert zone_of(k, page.pfn) == want, (zone, order, hex(page.pfn))
            assert zone_of(k, page.pfn + (1 << order) - 1) == want
            assert k.frames.page(page.pfn).state == "allocated"
    k.check_invariants()


def exhaust(k, zone):
    """Allocate every block of *zone* (and only of it): order 10 down to 0."""
    got = []
    z = k.frames.zones[zone]
    for order in range(10, -1, -1):
        while any(z.free_area[o] for o in range(order, 11)):
            got.append(k.frames.alloc_pages(order, zone))
            assert got[-1].zone == zone
    assert z.nr_free == 0
    return got


@pytest.mark.parametrize("arch,kv,ram", [("i386", "6.6", "1G"), ("i386_pae", "3.10", "2G")])
def test_alloc_pages_falls_back_to_lower_zones_never_higher(boot, arch, kv, ram):
    k = boot(arch=arch, kernel=kv, ram=ram)
    exhaust(k, "HighMem")
    page = k.alloc_pages(0, "HighMem")  # __GFP_HIGHMEM: HighMem, then Normal, then DMA
    assert zone_of(k, page.pfn) == "Normal"
    exhaust(k, "DMA")
    before = k.frames.nr_free_pages()
    with pytest.raises(OutOfMemory):
        k.alloc_pages(0, "DMA")  # GFP_DMA never takes Normal or HighMem pages
    assert k.frames.nr_free_pages() == before
    # Normal falls back to DMA only: it is exhausted too, so a Normal request stays in Normal
    assert zone_of(k, k.alloc_pages(0, "Normal").pfn) == "Normal"
    k.check_invariants()


def test_alloc_pages_x86_64_dma32_falls_back_to_dma(boot):
    k = boot(arch="x86_64", kernel="6.6", ram="1G")
    exhaust(k, "DMA32")
    assert zone_of(k, k.alloc_pages(0, "Normal").pfn) == "DMA"
    assert zone_of(k, k.alloc_pages(0, "HighMem").pfn) == "DMA"
    k.check_invariants()


def test_alloc_pages_out_of_memory_changes_nothing(boot, exhaust):
    k = boot(arch="i386", kernel="6.6", ram="64M")
    with pytest.raises(MmemuError):
        k.alloc_pages(11, "Normal")  # beyond MAX_ORDER
    held = exhaust(k)
    before = whole_state(k)
    with pytest.raises(OutOfMemory):
        k.alloc_pages(0, "Normal")
    assert whole_state(k) == before
    k.free_page_block(held.pop())
    assert k.frames.nr_free_pages() == 1
    k.check_invariants()


# -- __get_free_pages ----------------------------------------------------------------------

@pytest.mark.parametrize("arch,kv,ram", ARCHES)
def test_get_free_pages_returns_a_direct_map_address(boot, arch, kv, ram):
    k = boot(arch=arch, kernel=kv, ram=ram)
    po = k.layout["PAGE_OFFSET"]
    free0 = k.frames.nr_free_pages()
    addr = k.get_free_pages(2)
    assert po <= addr < k.layout["high_memory"] and (addr - po) % (4 * PAGE) == 0
    assert k.frames.nr_free_pages() == free0 - 4
    rec = k.frames.page((addr - po) // PAGE)
    assert rec.state == "allocated" and rec.order == 2
    dma = k.get_free_pages(0, zone="DMA")
    assert (dma - po) // PAGE < DMA_END_PFN
    # zeroed on request (__GFP_ZERO), after the memory was dirty
    k.mem.write(dma - po, b"\xAA" * PAGE)
    k.free_pages(dma, 0)
    z = k.get_free_pages(0, zone="DMA", zero=True)
    assert z == dma  # the free lists are LIFO: the page just freed comes back first
    assert k.mem.read(z - po, PAGE) == bytes(PAGE)
    with pytest.raises(MmemuError):
        k.get_free_pages(0, zone="HighMem")  # no kernel address to return
    k.free_pages(addr, 2)
    k.free_pages(z, 0)
    assert k.frames.nr_free_pages() == free0
    k.check_invariants()


# -- kmalloc / kzalloc / kfree -------------------------------------------------------------

@pytest.mark.parametrize("arch,kv,ram", ARCHES)
def test_kmalloc_size_classes(boot, arch, kv, ram):
    """Two objects of one size in a row are one size class apart in a fresh slab, and each
    lies inside the direct mapping."""
    k = boot(arch=arch, kernel=kv, ram=ram)
    po, hm = k.layout["PAGE_OFFSET"], k.layout["high_memory"]
    requests = [1, 8, 9, 16, 17, 32, 33, 64, 65, 96, 97, 128, 129, 192, 193, 256, 257, 512, 513, 1024, 1025, 2048]
    for size in requests:
        cls = next(c for c in SIZE_CLASSES if c >= size)
        a = k.kmalloc(size)
        b = k.kmalloc(size)
        assert po <= a < hm and po <= b < hm
        assert (a - po) % min(cls, 64) == 0 or cls in (96, 192), (size, hex(a))
        if (a & ~0xFFF) == (b & ~0xFFF):
            assert b - a == cls, (size, cls, b - a)
        else:  # the slab filled up: a fresh slab starts at its page boundary
            assert b % PAGE == 0
    k.check_invariants()


@pytest.mark.parametrize("arch,kv,ram", ARCHES)
def test_kmalloc_page_sized_classes_and_kmalloc_large(boot, arch, kv, ram):
    k = boot(arch=arch, kernel=kv, ram=ram)
    free0 = k.frames.nr_free_pages()
    a = k.kmalloc(4096)  # kmalloc-4096: page-aligned objects
    assert a % PAGE == 0
    b = k.kmalloc(4097)  # kmalloc-8192: objects of two pages
    block = k.frames.page(k.virt_to_page(b))
    assert block.state == "allocated" and block.order >= 1
    assert (b - k.layout["PAGE_OFFSET"] - block.head * PAGE) % (2 * PAGE) == 0
    assert k.virt_to_page(b) + 1 < block.head + (1 << block.order)  # both pages are the object's
    assert free0 - k.frames.nr_free_pages() >= 3
    f1 = k.frames.nr_free_pages()
    big = k.kmalloc(8193)  # beyond KMALLOC_MAX_CACHE_SIZE: kmalloc_large, get_order(8193) = 2
    assert (big - k.layout["PAGE_OFFSET"]) % (4 * PAGE) == 0
    assert f1 - k.frames.nr_free_pages() == 4
    rec = k.frames.page(k.virt_to_page(big))
    assert rec.state == "allocated" and rec.order == 2
    huge = k.kmalloc(64 * 1024 + 1)  # order 5
    assert f1 - k.frames.nr_free_pages() == 4 + 32
    k.kfree(big)
    k.kfree(huge)
    assert k.frames.nr_free_pages() == f1  # kmalloc_large blocks go straight back
    k.check_invariants()


def test_kmalloc_of_size_zero_is_zero_size_ptr(boot):
    """include/linux/slab.h: kmalloc(0) returns ZERO_SIZE_PTR ((void *)16), which faults
    when used and which kfree accepts; nothing is allocated."""
    k = boot(arch="i386", kernel="6.6", ram="1G")
    free = k.frames.nr_free_pages()
    assert k.kmalloc(0) == 16
    k.kfree(16)
    assert k.frames.nr_free_pages() == free
    with pytest.raises(MmemuError):
        k.kmalloc(-1)


@pytest.mark.parametrize("arch,kv,ram", ARCHES)
def test_kzalloc_zeroes_and_kmalloc_does_not(boot, arch, kv, ram):
    k = boot(arch=arch, kernel=kv, ram=ram)
    po = k.layout["PAGE_OFFSET"]
    a = k.kmalloc(64)
    slab = (a - po) & ~0xFFF
    k.mem.write(slab, b"\xAA" * PAGE)  # dirty every object of the slab
    k.kfree(a)
    z = k.kzalloc(64)
    assert k.mem.read(z - po, 64) == bytes(64)
    m = k.kmalloc(64)
    assert k.mem.read(m - po, 64) == b"\xAA" * 64
    big = k.kmalloc(3 * PAGE)  # kmalloc-8192 is cut from fresh pages: dirty them, then kzalloc
    k.mem.write(big - po, b"\x55" * 2 * PAGE)
    k.kfree(big)
    zbig = k.kzalloc(3 * PAGE)
    assert k.mem.read(zbig - po, 3 * PAGE) == bytes(3 * PAGE)
    k.check_invariants()


@pytest.mark.parametrize("arch,kv,ram", ARCHES)
def test_kfree_returns_objects_for_reuse_and_empty_slabs_eventually_to_the_buddy(boot, arch, kv, ram):
    k = boot(arch=arch, kernel=kv, ram=ram)
    free0 = k.frames.nr_free_pages()
    objs = [k.kmalloc(2048) for _ in range(2 * 20)]  # two per page: 20 slab pages
    assert free0 - k.frames.nr_free_pages() == 20
    for o in objs:
        k.kfree(o)
    # SLUB keeps a few empty slabs (MIN_PARTIAL = 5) and gives the others back
    kept = free0 - k.frames.nr_free_pages()
    assert 1 <= kept <= 6, kept
    again = k.kmalloc(2048)
    assert again in objs  # a freed object is reused
    k.check_invariants()


@pytest.mark.parametrize("arch,kv,ram", ARCHES)
def test_double_kfree_is_a_kernel_bug_and_changes_nothing(boot, arch, kv, ram):
    k = boot(arch=arch, kernel=kv, ram=ram)
    a = k.kmalloc(100)
    keep = k.kmalloc(100)  # keeps the slab alive
    k.kfree(a)
    before = whole_state(k)
    with pytest.raises(KernelBug):
        k.kfree(a)
    assert whole_state(k) == before
    big = k.kmalloc(20000)
    k.kfree(big)
    before = whole_state(k)
    with pytest.raises(KernelBug):
        k.kfree(big)  # kfree of a freed kmalloc_large block: BUG: Bad page state
    assert whole_state(k) == before
    k.kfree(keep)
    k.check_invariants()


def test_a_bulk_free_is_a_kfree_of_each_a_double_free_among_them_included(boot):
    """kmem_cache_free_bulk (a lazy purge's vmap_areas) leaves the slabs as a kfree of each
    object in turn does, emptied slabs given back beyond min_partial; an object in it twice
    is the double free a kfree of each would hit, and the operation changes nothing."""
    bulk, each = (boot(arch="x86_64", kernel="6.6", ram="1G") for _ in range(2))
    objs = [[k.kmalloc(64) for _ in range(64 * 9)] for k in (bulk, each)]
    assert objs[0] == objs[1]
    order = objs[0][64 * 4:] + objs[0][:64 * 4]  # a slab's objects in one run, most of them
    cache = bulk.kmalloc_slab(64)
    before = whole_state(bulk)
    with pytest.raises(KernelBug, match="double free"):
        operation(lambda k: k._slab_free_bulk(cache, order + order[5:6]))(bulk)
    assert whole_state(bulk) == before and sorted(cache.free_objs) == sorted(each.kmalloc_slab(64).free_objs)
    operation(lambda k: k._slab_free_bulk(cache, order))(bulk)
    for addr in order:
        each.kfree(addr)
    assert slab_state(bulk) == slab_state(each) and sorted(bulk.frames.allocated) == sorted(each.frames.allocated)
    assert sorted(cache.free_objs) == sorted(each.kmalloc_slab(64).free_objs)
    bulk.check_invariants()


@pytest.mark.parametrize("arch,kv,ram", ARCHES)
def test_kfree_of_a_non_kmalloc_address_changes_nothing(boot, arch, kv, ram):
    k = boot(arch=arch, kernel=kv, ram=ram)
    obj = k.kmalloc(64)
    page = k.get_free_pages(0)
    big = k.kmalloc(9000)
    vm = k.vmalloc(PAGE)
    before = whole_state(k)
    for bad in (page, obj + 8, obj + 1, big + PAGE, vm, 0x1000, k.layout["PAGE_OFFSET"]):
        with pytest.raises(MmemuError) as ei:
            k.kfree(bad)
        assert f"{bad:x}" in str(ei.value)
        assert whole_state(k) == before, hex(bad)
    k.kfree(obj)
    k.kfree(big)
    k.free_pages(page)
    k.vfree(vm)
    k.check_invariants()


def test_kfree_null_does_nothing(boot):
    """kfree(NULL) (and ZERO_SIZE_PTR) is a no-op in every kernel (ZERO_OR_NULL_PTR)."""
    k = boot(arch="i386", kernel="6.6", ram="1G")
    before = whole_state(k)
    k.kfree(0)
    assert whole_state(k) == before
