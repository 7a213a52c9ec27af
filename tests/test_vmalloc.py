"""vmalloc (mm/vmalloc.c): placement, guard pages, frames, vmap/vunmap, bad frees, lazy
purging and its TLB flush, running out of space and out of memory.

Expected values come from the kernel's rules: areas lowest fit first from VMALLOC_START,
each followed by one unmapped guard page (``size += PAGE_SIZE`` unless VM_NO_GUARD);
``GFP_KERNEL | __GFP_HIGHMEM`` pages; lazy freeing since 2.6.28 with
``lazy_max_pages() = fls(num_online_cpus()) * 32 MiB / PAGE_SIZE``; the era's messages
(see the research notes, section 3).
"""

from __future__ import annotations

import re

import pytest

from mmemu.cpu import Cpu
from mmemu.errors import KernelWarning, MmemuError, Oops, OutOfMemory
from mmemu.kernel.vmalloc import VM_ALLOC, VmapArea, VmStruct

PAGE = 4096
MiB = 1 << 20

ARCHES = [("i386", "6.6", "1G"), ("i386_pae", "6.6", "2G"), ("x86_64", "6.6", "1G"),
          ("i386", "3.10", "1G"), ("x86_64", "3.10", "1G"), ("i386", "2.6.12", "1G")]
I386 = [a for a in ARCHES if a[0] != "x86_64"]


def VS(k):
    return k.layout["VMALLOC_START"]


def VE(k):
    return k.layout["VMALLOC_END"]


def lazy_era(kv):
    return kv >= "2.6.28"


def snapshot(k):
    """Everything a failed vmalloc/vfree must leave as it was."""
    tables = {t: k.mem.read(t, PAGE) for t in sorted(k.pgtable.tables)}
    areas = [(a.va_start, a.va_end, a.lazy, a.kaddr,
              None if a.vm is None else (a.vm.addr, a.vm.size, a.vm.flags, tuple(a.vm.pages), a.vm.kaddr))
             for a in k.vmap_areas]
    return (k.frames.nr_free_pages(), tables, areas, [tuple(g) for g in k.vmap_free], k.vmap_lazy_nr,
            sorted(k.frames.allocated), k.event_seq)


def zone_by_pfn(k, pfn):
    low_pfn = (k.layout["high_memory"] - k.layout["PAGE_OFFSET"]) // PAGE
    if pfn < (16 * MiB) // PAGE:
        return "DMA"
    if k.layout["PAGE_OFFSET"] == 0xC0000000:
        return "Normal" if pfn < low_pfn else "HighMem"
    return "DMA32" if pfn < (4 << 30) // PAGE else "Normal"


def mapped_pfn(k, va):
    w = k.walk(va)
    return None if not w.mapped else w.phys // PAGE


# -- placement and the guard page ------------------------------------------------------------

@pytest.mark.parametrize("arch,kv,ram", ARCHES)
def test_areas_are_placed_lowest_fit_first_with_a_guard_page_each(boot, arch, kv, ram):
    k = boot(arch=arch, kernel=kv, ram=ram)
    vs = VS(k)
    a = k.vmalloc(2 * PAGE)
    b = k.vmalloc(1)  # rounded up to a page
    c = k.vmalloc(3 * PAGE)
    d = k.vmalloc(4 * PAGE)
    e = k.vmalloc(PAGE)
    # each area is its pages plus one guard page, one after the other from VMALLOC_START
    assert a == vs
    assert b == vs + 3 * PAGE
    assert c == b + 2 * PAGE
    assert d == c + 4 * PAGE
    assert e == d + 5 * PAGE
    for start, n in ((a, 2), (b, 1), (c, 3), (d, 4), (e, 1)):
        for i in range(n):
            assert k.walk(start + i * PAGE).mapped
        assert not k.walk(start + n * PAGE).mapped  # the guard page
        area = k.find_vm_area(start)
        assert (area.addr, area.size, area.nr_pages) == (start, (n + 1) * PAGE, n)
    k.check_invariants()
    # holes: b's (2 pages with guard), d's (5 pages with guard)
    k.vfree(b)
    k.vfree(d)
    k.purge_vmap_area_lazy()
    k.check_invariants()
    assert k.vmalloc(2 * PAGE) == d  # 3 pages do not fit in b's hole: the next one up
    assert k.vmalloc(PAGE) == b  # 2 pages: b's hole exactly, the lowest that fits
    assert k.vmalloc(PAGE) == d + 3 * PAGE  # the 2 pages left of d's hole
    assert k.vmalloc(PAGE) == e + 2 * PAGE  # no hole left: past the last area
    k.check_invariants()


@pytest.mark.parametrize("arch,kv,ram", ARCHES)
def test_every_area_lies_between_vmalloc_start_and_end(boot, arch, kv, ram):
    k = boot(arch=arch, kernel=kv, ram=ram)
    for size in (PAGE, 5 * PAGE, 1 * MiB, 3 * MiB + 1):
        va = k.vmalloc(size)
        pages = (size + PAGE - 1) // PAGE
        assert VS(k) <= va and va + (pages + 1) * PAGE <= VE(k) + 1
        assert va % PAGE == 0
    k.check_invariants()


def guard_oops_lines(k, addr, write):
    """The first lines of the page-fault oops of a kernel access to *addr* (not present),
    in the words of the kernel era (arch/x86/mm/fault.c)."""
    kv = k.spec.kernel
    i386 = k.layout["PAGE_OFFSET"] == 0xC0000000
    if kv >= "5.2":
        access = "write access" if write else "read access"
        return [f"BUG: unable to handle page fault for address: {addr:0{8 if i386 else 16}x}",
                f"#PF: supervisor {access} in kernel mode",
                f"#PF: error_code(0x{2 if write else 0:04x}) - not-present page"]
    if kv >= "2.6.25":  # show_fault_oops, unified x86
        return [f"BUG: unable to handle kernel paging request at {addr:0{8 if i386 else 16}x}"]
    if i386:
        return [f"Unable to handle kernel paging request at virtual address {addr:08x}"]
    return [f"Unable to handle kernel paging request at {addr:016x}"]


@pytest.mark.parametrize("arch,kv,ram", ARCHES)
@pytest.mark.parametrize("access", ["read", "write"])
def test_touching_the_guard_page_oopses_like_the_kernel(boot, arch, kv, ram, access):
    k = boot(arch=arch, kernel=kv, ram=ram)
    va = k.vmalloc(2 * PAGE)
    k.access(va, access)
    k.access(va + 2 * PAGE - 1, access)
    guard = va + 2 * PAGE
    before = snapshot(k)
    with pytest.raises(Oops) as ei:
        k.access(guard + 0x10, access)
    report = ei.value.report
    lines = report.splitlines()
    for want in guard_oops_lines(k, guard + 0x10, access == "write"):
        assert want in lines, (want, report)
    assert snapshot(k) == before  # the emulator survives the oops, nothing changed
    # the kernel goes on working
    assert k.access(va) == k.walk(va).phys
    k.check_invariants()


@pytest.mark.parametrize("arch,kv,ram", [("i386", "6.6", "1G"), ("i386_pae", "6.6", "2G"), ("x86_64", "6.6", "1G"),
                                         ("x86_64", "4.14", "1G")])
def test_vm_no_guard_areas_are_back_to_back(boot, arch, kv, ram):
    """VM_NO_GUARD (4.0+): no guard page is added (get_vm_area_size == size)."""
    k = boot(arch=arch, kernel=kv, ram=ram)
    a = k.vmalloc_range(2 * PAGE, VS(k), VE(k), guard=False)
    b = k.vmalloc_range(PAGE, VS(k), VE(k), guard=False)
    c = k.vmalloc(PAGE)
    assert (a, b, c) == (VS(k), VS(k) + 2 * PAGE, VS(k) + 3 * PAGE)
    area = k.find_vm_area(a)
    assert area.size == 2 * PAGE and area.nr_pages == 2
    assert k.walk(a + 2 * PAGE).mapped  # no hole: the next area's page is right there
    assert not k.walk(c + PAGE).mapped  # the ordinary area keeps its guard
    k.check_invariants()


@pytest.mark.parametrize("arch,kv,ram", [("i386", "6.6", "1G"), ("x86_64", "6.6", "1G")])
def test_vmalloc_range_stays_inside_its_window(boot, arch, kv, ram):
    k = boot(arch=arch, kernel=kv, ram=ram)
    lo = VS(k) + 64 * PAGE
    hi = lo + 8 * PAGE
    a = k.vmalloc_range(3 * PAGE, lo, hi)
    b = k.vmalloc_range(3 * PAGE, lo, hi)
    assert (a, b) == (lo, lo + 4 * PAGE)
    before = snapshot(k)
    with pytest.raises(OutOfMemory):
        k.vmalloc_range(PAGE, lo, hi)
    assert snapshot(k) == before
    assert k.vmalloc(PAGE) == VS(k)  # ordinary vmalloc is not confined to the window
    k.check_invariants()


# -- frames ----------------------------------------------------------------------------------

@pytest.mark.parametrize("arch,kv,ram", ARCHES)
def test_vmalloc_frames_come_from_highmem_first(boot, arch, kv, ram):
    k = boot(arch=arch, kernel=kv, ram=ram)
    va = k.vmalloc(16 * PAGE)
    pfns = [mapped_pfn(k, va + i * PAGE) for i in range(16)]
    assert pfns == k.find_vm_area(va).pages
    want = "HighMem" if arch != "x86_64" else "DMA32"
    assert {zone_by_pfn(k, p) for p in pfns} == {want}
    for p in pfns:
        assert k.frames.page(p).state == "allocated"
    if arch != "x86_64":
        # with HighMem used up, vmalloc falls back to Normal
        z = k.frames.zones["HighMem"]
        hold = []
        for order in range(10, -1, -1):
            while any(z.free_area[o] for o in range(order, 11)):
                hold.append(k.frames.alloc_pages(order, "HighMem"))
        va2 = k.vmalloc(4 * PAGE)
        assert {zone_by_pfn(k, mapped_pfn(k, va2 + i * PAGE)) for i in range(4)} == {"Normal"}
    k.check_invariants()


@pytest.mark.parametrize("arch,kv,ram", ARCHES)
def test_vzalloc_zeroes_vmalloc_does_not(boot, arch, kv, ram):
    k = boot(arch=arch, kernel=kv, ram=ram)
    n = 8
    k.vfree(k.vmalloc(n * PAGE))  # warm the kmalloc caches vmalloc uses: no slab page is taken below
    k.purge_vmap_area_lazy()
    va = k.vmalloc(n * PAGE)
    k.write(va, b"\xAA" * (n * PAGE))
    first = set(k.find_vm_area(va).pages)
    k.vfree(va)
    z = k.vzalloc(n * PAGE)
    second = set(k.find_vm_area(z).pages)
    assert len(first & second) >= n // 2  # freed frames are handed out again (the test means something)
    assert k.read(z, n * PAGE) == bytes(n * PAGE)
    k.write(z, b"\x55" * (n * PAGE))
    k.vfree(z)
    v = k.vmalloc(n * PAGE)
    vm = k.find_vm_area(v)
    reused = [i for i, pfn in enumerate(vm.pages) if pfn in second]
    assert len(reused) >= n // 2
    for i in reused:  # plain vmalloc hands the old contents out
        assert k.read(v + i * PAGE, 16) == b"\x55" * 16
    k.check_invariants()


@pytest.mark.parametrize("arch,kv,ram", ARCHES)
def test_vmalloc_memory_is_virtually_contiguous(boot, arch, kv, ram):
    k = boot(arch=arch, kernel=kv, ram=ram)
    va = k.vmalloc(3 * PAGE)
    data = bytes(range(256)) * 48  # 3 pages
    k.write(va, data)
    assert k.read(va, len(data)) == data
    for i, pfn in enumerate(k.find_vm_area(va).pages):  # each page landed in its own frame
        assert k.mem.read(pfn * PAGE, PAGE) == data[i * PAGE:(i + 1) * PAGE]
    k.check_invariants()


# -- vmap / vunmap ---------------------------------------------------------------------------

@pytest.mark.parametrize("arch,kv,ram", ARCHES)
def test_vmap_maps_given_pages_and_vunmap_leaves_them_allocated(boot, arch, kv, ram):
    k = boot(arch=arch, kernel=kv, ram=ram)
    pages = [k.alloc_pages(0, "HighMem"), k.alloc_pages(0, "DMA"), k.alloc_pages(0, "Normal")]
    for i, p in enumerate(pages):
        k.mem.write(p.phys, bytes([i + 1]) * PAGE)
    free0 = k.frames.nr_free_pages()
    va = k.vmap(pages)
    assert va == VS(k)
    for i, p in enumerate(pages):
        assert mapped_pfn(k, va + i * PAGE) == p.pfn
        assert k.read(va + i * PAGE, 4) == bytes([i + 1]) * 4
        assert k.vmalloc_to_page(va + i * PAGE) == p.pfn
    assert not k.walk(va + 3 * PAGE).mapped  # guard
    vm = k.find_vm_area(va)
    assert vm.pages == [p.pfn for p in pages] and vm.size == 4 * PAGE
    k.check_invariants()
    k.vunmap(va)
    for i, p in enumerate(pages):
        assert not k.walk(va + i * PAGE).mapped
        rec = k.frames.page(p.pfn)
        assert rec.state == "allocated" and rec.refcount == 1  # vunmap does not put the pages
    assert k.find_vm_area(va) is None
    # only the page-table frames vmap needed may differ; the mapped pages were never freed
    assert k.frames.nr_free_pages() <= free0
    k.check_invariants()
    for p in pages:
        k.free_page_block(p)
    k.check_invariants()


def test_vmap_refuses_frames_that_are_not_ram(boot):
    k = boot(arch="i386", kernel="6.6", ram="1G")
    before = snapshot(k)
    with pytest.raises(MmemuError):
        k.vmap([(1 << 30) // PAGE + 5])  # beyond the machine's RAM
    with pytest.raises(MmemuError):
        k.vmap([])
    assert snapshot(k) == before


# -- bad vfree / vunmap ----------------------------------------------------------------------

@pytest.mark.parametrize("arch,kv,ram", ARCHES)
def test_vfree_of_no_area_warns_with_the_kernel_text_and_changes_nothing(boot, arch, kv, ram):
    k = boot(arch=arch, kernel=kv, ram=ram)
    a = k.vmalloc(2 * PAGE)
    k.vfree(k.vmalloc(PAGE))  # a lazily freed area (2.6.28+) is no area either
    freed = a + 3 * PAGE
    before = snapshot(k)
    for bad in (VS(k) + 64 * PAGE, freed, k.layout["PAGE_OFFSET"] + 0x100000):
        with pytest.raises(KernelWarning) as ei:
            k.vfree(bad)
        msg = str(ei.value)
        assert "Trying to vfree() nonexistent vm area (" in msg and f"{bad:x}" in msg
        assert snapshot(k) == before
    with pytest.raises(KernelWarning, match=re.escape("Trying to vfree() bad address (")):
        k.vfree(a + 0x10)
    assert snapshot(k) == before
    # vunmap shares the text up to 6.2; 6.3+ has its own (mm/vmalloc.c vunmap)
    word = "vunmap" if kv >= "6.3" else "vfree"
    with pytest.raises(KernelWarning, match=re.escape(f"Trying to {word}() nonexistent vm area (")):
        k.vunmap(VS(k) + 64 * PAGE)
    assert snapshot(k) == before
    k.vfree(0)  # vfree(NULL) does nothing
    assert snapshot(k) == before
    k.check_invariants()


def test_vfree_2_6_12_needs_the_exact_start(boot):
    """2.6.12 __remove_vm_area compares tmp->addr == addr: an address inside an area is
    "nonexistent"."""
    k = boot(arch="i386", kernel="2.6.12", ram="1G")
    a = k.vmalloc(3 * PAGE)
    before = snapshot(k)
    with pytest.raises(KernelWarning, match=re.escape("Trying to vfree() nonexistent vm area")):
        k.vfree(a + PAGE)
    assert snapshot(k) == before


@pytest.mark.parametrize("arch,kv,ram", [("i386", "6.6", "1G"), ("x86_64", "3.10", "1G")])
def test_double_vfree_warns_and_changes_nothing(boot, arch, kv, ram):
    k = boot(arch=arch, kernel=kv, ram=ram)
    a = k.vmalloc(PAGE)
    k.vfree(a)
    before = snapshot(k)
    with pytest.raises(KernelWarning, match="nonexistent vm area"):
        k.vfree(a)
    assert snapshot(k) == before
    k.check_invariants()


# -- vmalloc_to_page, find_vm_area, kmem -v ----------------------------------------------------

@pytest.mark.parametrize("arch,kv,ram", ARCHES)
def test_vmalloc_to_page_and_find_vm_area(boot, arch, kv, ram):
    k = boot(arch=arch, kernel=kv, ram=ram)
    va = k.vmalloc(3 * PAGE)
    vm = k.find_vm_area(va)
    for i in range(3):
        assert k.vmalloc_to_page(va + i * PAGE + 0x123) == mapped_pfn(k, va + i * PAGE) == vm.pages[i]
        assert k.find_vm_area(va + i * PAGE + 0x123) is vm
    assert k.find_vm_area(va + 3 * PAGE) is vm  # the guard page belongs to the area's range
    assert k.find_vm_area(va + 4 * PAGE) is None
    assert k.find_vm_area(VS(k) - PAGE) is None
    with pytest.raises(MmemuError):
        k.vmalloc_to_page(va + 3 * PAGE)  # nothing mapped (the kernel's NULL)
    with pytest.raises(MmemuError):
        k.vmalloc_to_page(k.layout["PAGE_OFFSET"])  # not a vmalloc address
    assert (vm.addr, vm.size, vm.nr_pages, vm.get_vm_area_size()) == (va, 4 * PAGE, 3, 3 * PAGE)
    # every field of both records is set (vmalloc fills them in without their __init__)
    area = k.find_vmap_area(va)
    assert area == VmapArea(va, va + 4 * PAGE, vm, area.kaddr)
    assert vm == VmStruct(va, 4 * PAGE, VM_ALLOC, vm.pages, caller="vmalloc", kaddr=vm.kaddr,
                          pages_kaddr=vm.pages_kaddr)
    k.vfree(va)
    assert k.find_vm_area(va) is None
    k.check_invariants()


ROW = re.compile(r"^\s*([0-9a-f]+)\s+([0-9a-f]+)\s+([0-9a-f]+) - ([0-9a-f]+)\s+(\d+)$")


# crash reads vmap_area_list from 2.6.28; the vmlist layout of older kernels: tests/test_vtop_crash.py
@pytest.mark.parametrize("arch,kv,ram", [a for a in ARCHES if a[1] != "2.6.12"])
def test_kmem_v_lists_busy_areas_like_crash(boot, arch, kv, ram):
    k = boot(arch=arch, kernel=kv, ram=ram)
    a = k.vmalloc(2 * PAGE)
    b = k.vmap([k.alloc_pages(0, "Normal")])
    c = k.vmalloc(5 * PAGE)
    k.vunmap(b)  # freed areas (lazy or not) are not listed
    lines = k.kmem_v().rstrip("\n").splitlines()
    head = lines[0]
    cols = [head.index(w) for w in ("VMAP_AREA", "VM_STRUCT", "ADDRESS RANGE", "SIZE")]
    assert cols == sorted(cols)
    rows = [ROW.match(line) for line in lines[1:]]
    assert all(rows), lines
    got = [(int(m[3], 16), int(m[4], 16), int(m[5])) for m in rows]
    # one row per busy area, in address order; SIZE includes the guard page (end - start)
    assert got == [(a, a + 3 * PAGE, 3 * PAGE), (c, c + 6 * PAGE, 6 * PAGE)]
    width = 16 if arch == "x86_64" else 8
    po, hm = k.layout["PAGE_OFFSET"], k.layout["high_memory"]
    for m, line in zip(rows, lines[1:]):
        assert all(len(m[i]) == width for i in (1, 2, 3, 4))  # VADDR_PRLEN hex digits
        # the vmap_area and vm_struct are kernel objects in the direct map, distinct
        va_obj, vm_obj = int(m[1], 16), int(m[2], 16)
        assert po <= va_obj < hm and po <= vm_obj < hm and va_obj != vm_obj
        # SIZE is right-aligned under its header, the range under its (centred) header
        assert len(line) == len(head)
        assert line.index(" - ") - width <= cols[2] and cols[2] + len("ADDRESS RANGE") <= line.index(" - ") + 3 + width
    if width == 8:
        # crash's own help text (32-bit): the same columns to the character
        assert head == "VMAP_AREA  VM_STRUCT     ADDRESS RANGE        SIZE"
        for m, line in zip(rows, lines[1:]):
            assert line == f"{m[1]}   {m[2]}   {m[3]} - {m[4]}  {int(m[5]):>7}"
    k.check_invariants()


# -- lazy freeing and purging ------------------------------------------------------------------

@pytest.mark.parametrize("arch,kv,ram", ARCHES + [("i386", "2.6.27", "1G"), ("i386", "2.6.28", "1G")])
def test_vfree_releases_the_range_at_once_before_2_6_28_lazily_after(boot, arch, kv, ram):
    k = boot(arch=arch, kernel=kv, ram=ram)
    a = k.vmalloc(4 * PAGE)
    free0 = k.frames.nr_free_pages()
    k.vfree(a)
    # the pages go back and the entries are cleared at once in every era
    assert k.frames.nr_free_pages() >= free0 + 4
    for i in range(4):
        assert not k.walk(a + i * PAGE).mapped
    k.check_invariants()
    b = k.vmalloc(PAGE)
    if lazy_era(kv):
        # the range [a, a + 5 pages) stays reserved until the purge
        assert b == a + 5 * PAGE
        assert k.vmap_lazy_nr == 5  # pages, guard included
        assert k.purge_vmap_area_lazy() == 1
        assert k.vmap_lazy_nr == 0
        assert k.vmalloc(PAGE) == a
    else:
        assert b == a
        assert k.vmap_lazy_nr == 0
    k.check_invariants()


@pytest.mark.parametrize("arch,kv,cpus", [("i386", "6.6", 1), ("x86_64", "3.10", 1), ("i386_pae", "2.6.28", 1),
                                          ("x86_64", "6.6", 2), ("i386", "6.6", 3)])
def test_lazy_purge_when_more_than_lazy_max_pages_wait(boot, arch, kv, cpus):
    ram = "2G" if arch == "i386_pae" else "1G"
    k = boot(arch=arch, kernel=kv, ram=ram, cpus=cpus)
    fls = cpus.bit_length()
    lazy_max = fls * (32 * MiB // PAGE)
    assert k.lazy_max_pages() == lazy_max
    # An area whose pages and its page array (vmalloc'd itself when larger than a page:
    # __vmalloc_area_node), both with their guard pages, make lazy_max - 1 pages: no purge
    # when they are freed; two more pages make it purge with one CPU.
    ptr = k.ptr_size

    def array_pages(n):  # the page array's area: its pages and its guard
        return (n * ptr + PAGE - 1) // PAGE + 1

    nr = next(n for n in range(8192, 0, -1) if (n + 1) + array_pages(n) == 8191)
    big = k.vmalloc(nr * PAGE)
    small = k.vmalloc(PAGE)  # 2 pages with the guard
    k.vfree(big)  # the area, then its page array (vfree: remove_vm_area first, kvfree(pages) after)
    assert k.vmap_lazy_nr == 8191
    assert [a.lazy for a in k.vmap_areas] == [True, True, False]
    k.check_invariants()
    k.vfree(small)
    waiting = 8191 + 2
    if waiting > lazy_max:  # one CPU: 8193 > 8192, purged now
        assert k.vmap_lazy_nr == 0 and k.vmap_areas == []
        assert k.vmalloc(PAGE) == VS(k)
    else:  # two or more CPUs: the budget is fls(ncpus) * 8192 pages
        assert k.vmap_lazy_nr == waiting and len(k.vmap_areas) == 3
        assert k.vmalloc(PAGE) == VS(k) + waiting * PAGE
    k.check_invariants()


@pytest.mark.parametrize("arch,kv,ram,cmdline", [("i386", "6.6", "2G", "vmalloc=4M"),
                                                 ("i386_pae", "3.10", "4G", "vmalloc=4M")])
def test_lazy_areas_are_purged_when_space_runs_out(boot, arch, kv, ram, cmdline):
    k = boot(arch=arch, kernel=kv, ram=ram, cmdline=cmdline)
    space = VE(k) - VS(k)
    assert space == 4 * MiB
    a = k.vmalloc(space // 2 - PAGE)
    b = k.vmalloc(space // 2 - PAGE)
    assert (a, b) == (VS(k), VS(k) + space // 2)
    k.vfree(a)
    assert k.vmap_lazy_nr == space // 2 // PAGE  # far below lazy_max_pages: still waiting
    c = k.vmalloc(PAGE)  # no room but a's lazy range: alloc_vmap_area purges and retries
    assert c == VS(k)
    assert k.vmap_lazy_nr == 0 and all(not x.lazy for x in k.vmap_areas)
    k.check_invariants()
    # a request that does not fit even after the purge fails; the kernel would keep the
    # purge it made on the way, mmemu's failed operation leaves everything as it was
    # (mmemu.journal): b's range still waits
    k.vfree(b)
    assert k.vmap_lazy_nr == space // 2 // PAGE
    lazy = [(x.va_start, x.lazy) for x in k.vmap_areas]
    with pytest.raises(OutOfMemory, match="vmap allocation for size"):
        k.vmalloc(space)
    assert k.vmap_lazy_nr == space // 2 // PAGE and [(x.va_start, x.lazy) for x in k.vmap_areas] == lazy
    assert k.vmalloc(space // 2 - PAGE) == c + 2 * PAGE  # purged now: b's range merged with what a left
    k.check_invariants()


def _gaps(k):
    """The free space as the busy and waiting areas leave it: the gaps between them inside
    the vmalloc spaces, touching gaps merged."""
    out = []
    for lo, hi in k.vmap_spaces:
        cur = lo
        for a in k.vmap_areas:
            if lo <= a.va_start < hi:
                if a.va_start > cur:
                    out.append((cur, a.va_start))
                cur = a.va_end
        if cur < hi:
            out.append((cur, hi))
    return out


def test_a_purge_releases_every_lazy_area_merged_and_a_failure_puts_them_back(boot):
    """__purge_vmap_area_lazy releases every waiting area at once: afterwards the free space
    is exactly the gaps between the busy areas, touching ranges merged into one. A vmalloc
    that purged on its way (no room otherwise) and then failed (its page) leaves the
    waiting areas, the free space, the slabs and the tables as they were."""
    k = boot(arch="i386", kernel="6.6", ram="2G", cmdline="vmalloc=4M")
    addrs = [k.vmalloc(PAGE * (1 + i % 3)) for i in range(12)]
    fill = k.vmalloc(VE(k) - k.vmap_free[-1][0] - PAGE)  # the rest of the space, guard page included
    assert k.vmap_free == []
    busy = {addrs[4], addrs[9], fill}
    for a in addrs:
        if a not in busy:
            k.vfree(a)
    assert sum(a.lazy for a in k.vmap_areas) == 10 and k.vmap_free == []
    before, slabs = snapshot(k), [(c.name, sorted(c.free_objs)) for c in k.kmalloc_caches]
    k.inject_failures(page=1)
    with pytest.raises(OutOfMemory, match="failed to allocate pages"):  # after the purge: its page
        k.vmalloc(PAGE)
    k.stop_injecting()
    assert snapshot(k) == before and [(c.name, sorted(c.free_objs)) for c in k.kmalloc_caches] == slabs
    assert k.vmalloc(PAGE) == addrs[0]  # purged: the lowest fit again
    assert not any(a.lazy for a in k.vmap_areas) and k.vmap_lazy_nr == 0
    assert [tuple(g) for g in k.vmap_free] == _gaps(k)
    # three gaps, each of several freed areas merged: up to addrs[4], up to addrs[9], up to fill
    assert [(g[0], g[1]) for g in k.vmap_free] == [(addrs[1], addrs[4]), (addrs[5], addrs[9]), (addrs[10], fill)]
    k.check_invariants()


def _slab_state(k):
    """The slab caches (free lists in order, partial lists, free objects) and the page
    allocator's free lists and blocks."""
    caches = [(c.name, dict(c.slabs), list(c.partial), sorted(c.free_objs)) for c in k.kmalloc_caches]
    zones = [(z.name, z.nr_free, [list(fa) for fa in z.free_area]) for z in k.frames.zones.values()]
    return caches, zones, sorted((p.pfn, p.order, p.owner) for p in k.frames.allocated.values())


def _many_lazy_areas(k, n):
    """*n* one-page areas vmalloc'd, then vfree'd: their vmap_areas wait for the purge."""
    addrs = [k.vmalloc(PAGE) for _ in range(n)]
    for a in addrs:
        k.vfree(a)
    assert sum(a.lazy for a in k.vmap_areas) == n
    return addrs


def test_a_purge_frees_the_vmap_areas_as_a_kfree_of_each_in_turn(boot):
    """The purge gives back hundreds of vmap_area objects at once: their slabs end exactly
    as a kfree of each, in the order of the areas, leaves them (objects back on their slab's
    free list in that order, slabs emptied beyond min_partial back to the page allocator)."""
    purged, freed = (boot(arch="x86_64", kernel="6.6", ram="1G") for _ in range(2))
    for k in (purged, freed):
        _many_lazy_areas(k, 700)  # 700 vmap_areas: eleven slabs of kmalloc-64
    cache = purged.kmalloc_caches[3]
    slabs = len(cache.slabs)
    assert purged.purge_vmap_area_lazy() == 700
    for kaddr in [a.kaddr for a in freed.vmap_areas if a.lazy]:
        freed.kfree(kaddr)
    assert _slab_state(purged) == _slab_state(freed)
    # MIN_PARTIAL (5) empty slabs kept, the others given back
    assert cache.name == "kmalloc-64" and len(cache.partial) == len(cache.slabs) == 5 < slabs - 5
    purged.check_invariants()


def test_an_undone_purge_puts_every_slab_back(boot):
    """A vmalloc that purged hundreds of lazy areas on its way (no room otherwise), emptying
    slabs, and then failed (its page) leaves the slabs, the page allocator and the areas
    as they were."""
    k = boot(arch="i386", kernel="6.6", ram="2G", cmdline="vmalloc=16M")
    _many_lazy_areas(k, 900)  # 900 vmap_areas: eight slabs of kmalloc-32, emptied
    while k.vmap_free:  # the rest of the space, in areas whose page arrays are kmalloc'd
        start, end = k.vmap_free[-1]
        k.vmalloc(min(end - start - PAGE, 1024 * PAGE))
    assert sum(a.lazy for a in k.vmap_areas) == 900
    before, slabs = snapshot(k), _slab_state(k)
    k.inject_failures(page=1)
    with pytest.raises(OutOfMemory, match="failed to allocate pages"):  # after the purge: its page
        k.vmalloc(PAGE)
    k.stop_injecting()
    assert snapshot(k) == before and _slab_state(k) == slabs
    k.vmalloc(PAGE)  # now purged for good
    assert not any(a.lazy for a in k.vmap_areas) and _slab_state(k) != slabs
    k.check_invariants()


@pytest.mark.parametrize("arch,kv,ram", [("i386", "6.6", "1G"), ("i386_pae", "3.10", "2G"), ("x86_64", "6.6", "1G"),
                                         ("x86_64", "2.6.28", "1G")])
def test_stale_translation_survives_a_lazy_vfree_until_the_purge(boot, arch, kv, ram):
    """The kernel clears the ptes at vfree but flushes the TLB only when it purges: a CPU
    that had the translation cached can still reach the old frame until then."""
    k = boot(arch=arch, kernel=kv, ram=ram)
    cpu = Cpu(k)
    va = k.vmalloc(PAGE)
    pfn = k.find_vm_area(va).pages[0]
    assert cpu.probe(va, "read").phys == pfn * PAGE
    k.vfree(va)
    assert not k.walk(va).mapped
    stale = cpu.probe(va, "read")
    assert stale.phys == pfn * PAGE and stale.trap is None  # still cached: no flush yet
    k.check_invariants()
    # push the waiting pages past lazy_max_pages(): the purge flushes the TLB
    nr = k.lazy_max_pages() - 1
    k.vfree(k.vmalloc(nr * PAGE))
    # purged; then vfree's kvfree of the area's page array (vmalloc'd: larger than a page)
    # leaves that array's area waiting
    assert k.vmap_lazy_nr == (nr * k.ptr_size + PAGE - 1) // PAGE + 1
    after = cpu.probe(va, "read")
    assert after.phys is None and after.trap == 14 and after.fault.address == va
    assert after.fault.code & 1 == 0  # not-present
    k.check_invariants()


@pytest.mark.parametrize("arch,kv,ram", [("i386", "2.6.12", "1G"), ("x86_64", "2.6.12", "1G"),
                                         ("i386", "2.6.27", "1G")])
def test_vfree_flushes_at_once_before_lazy_purging(boot, arch, kv, ram):
    k = boot(arch=arch, kernel=kv, ram=ram)
    cpu = Cpu(k)
    va = k.vmalloc(PAGE)
    assert cpu.probe(va, "read").phys == k.walk(va).phys
    k.vfree(va)
    p = cpu.probe(va, "read")
    assert p.phys is None and p.trap == 14
    k.check_invariants()


# -- running out of vmalloc space ----------------------------------------------------------------

def space_failed_text(kv, size):
    if kv < "2.6.28":  # __get_vm_area
        return "allocation failed: out of vmalloc space - use vmalloc=<size> to increase size."
    text = f"vmap allocation for size {size} failed: use vmalloc=<size> to increase size"
    return text + ("." if kv < "4.12" else "")


@pytest.mark.parametrize("kv,cmdline,space", [("2.6.12", "vmalloc=32M", 16 * MiB - 2 * PAGE),
                                              ("2.6.30", "vmalloc=16M", 16 * MiB),
                                              ("3.10", "vmalloc=16M", 16 * MiB),
                                              ("4.11", "vmalloc=16M", 16 * MiB),
                                              ("6.6", "vmalloc=16M", 16 * MiB)])
def test_out_of_vmalloc_space_fails_with_the_era_text_and_changes_nothing(boot, kv, cmdline, space):
    k = boot(arch="i386", kernel=kv, ram="2G", cmdline=cmdline)
    assert VE(k) - VS(k) == space
    # on a machine that never vmalloc'ed (cold kmalloc caches too)
    before = snapshot(k)
    too_big = space  # plus the guard page: one page too many
    with pytest.raises(OutOfMemory) as ei:
        k.vmalloc(too_big)
    assert str(ei.value) == space_failed_text(kv, too_big + PAGE)
    assert snapshot(k) == before
    k.check_invariants()
    # fill the space exactly (the area, its guard, its page array's area and guard:
    # __vmalloc_area_node vmallocs an array larger than a page), then one page more
    pages = space // PAGE
    nr = next(n for n in range(pages, 0, -1) if n + 1 + (n * k.ptr_size + PAGE - 1) // PAGE + 1 == pages)
    a = k.vmalloc(nr * PAGE)
    assert a == VS(k)
    before = snapshot(k)
    with pytest.raises(OutOfMemory) as ei:
        k.vmalloc(PAGE)
    assert str(ei.value) == space_failed_text(kv, 2 * PAGE)
    assert snapshot(k) == before
    k.check_invariants()


def test_out_of_vmalloc_space_x86_64_by_filling_a_window(boot):
    k = boot(arch="x86_64", kernel="6.6", ram="1G")
    lo = VS(k)
    hi = lo + 16 * PAGE
    k.vmalloc_range(15 * PAGE, lo, hi)
    before = snapshot(k)
    with pytest.raises(OutOfMemory) as ei:
        k.vmalloc_range(PAGE, lo, hi)
    assert str(ei.value) == space_failed_text("6.6", 2 * PAGE)
    assert snapshot(k) == before


# -- running out of memory in the middle of a vmalloc ---------------------------------------------

def oom_text(kv, got, want_with_guard):
    if kv >= "6.4":
        return f"vmalloc error: size {got * PAGE}, failed to allocate pages"
    if kv >= "3.0":
        return f"vmalloc: allocation failure, allocated {got * PAGE} of {want_with_guard * PAGE} bytes"
    return None  # 2.6.12 vmalloc just returns NULL, without a word


@pytest.mark.parametrize("arch,kv", [("i386", "6.6"), ("i386_pae", "3.10"), ("x86_64", "6.6"), ("x86_64", "3.10"),
                                     ("i386", "2.6.12")])
def test_page_allocation_failure_in_vmalloc_leaves_nothing_half_mapped(boot, arch, kv, exhaust):
    k = boot(arch=arch, kernel=kv, ram="64M")
    n = 8
    # warm the kmalloc caches vmalloc uses, and the page table of the first area
    k.vfree(k.vmalloc(n * PAGE))
    k.purge_vmap_area_lazy()
    held = exhaust(k)
    for _ in range(3):
        k.free_page_block(held.pop())
    before = snapshot(k)
    seq = k.event_seq
    with pytest.raises(OutOfMemory) as ei:
        k.vmalloc(n * PAGE)
    want = oom_text(kv, 3, n + 1)
    if want is not None:
        assert str(ei.value) == want
    assert snapshot(k) == before
    assert k.event_seq == seq
    assert k.frames.nr_free_pages() == 3
    k.check_invariants()
    # and with the memory back, the same request succeeds where the failed one would have gone
    for p in held[:20]:
        k.free_page_block(p)
    va = k.vmalloc(n * PAGE)
    assert va == VS(k)
    k.check_invariants()


@pytest.mark.parametrize("arch,kv", [("i386", "6.6"), ("x86_64", "6.6"), ("i386_pae", "3.10")])
def test_page_table_allocation_failure_in_vmalloc_is_rolled_back(boot, arch, kv, exhaust):
    """The pages are there but the page table the area needs is not: map_frames fails as a
    whole, every page goes back."""
    k = boot(arch=arch, kernel=kv, ram="64M")
    # warm the caches without leaving any page table behind in the vmalloc space
    for size in (8, 16, 32, 64, 128):
        k.kfree(k.kmalloc(size))
    held = exhaust(k)
    first_va = VS(k)
    if k.pgtable.pte_slot(k.pgd, first_va) is not None:
        pytest.skip("the first vmalloc page table exists from boot on this arch/era")
    n = 2
    for _ in range(n):
        k.free_page_block(held.pop())
    before = snapshot(k)
    with pytest.raises(OutOfMemory) as ei:
        k.vmalloc(n * PAGE)
    if kv >= "5.13":  # __vmalloc_area_node: vmap_pages_range failed
        assert str(ei.value) == f"vmalloc error: size {n * PAGE}, failed to map pages"
    else:  # 3.x: map_vm_area failed, the same warning as for the pages
        assert str(ei.value) == f"vmalloc: allocation failure, allocated {n * PAGE} of {(n + 1) * PAGE} bytes"
    assert snapshot(k) == before
    k.check_invariants()


def test_vfree_of_a_vmap_area_unmaps_it_and_frees_no_page(boot):
    """mm/vmalloc.c: a vmap()'s vm_struct owns no pages, so vfree() of its address only
    unmaps it, as vunmap() would; the caller's pages stay allocated."""
    k = boot(arch="i386", kernel="6.6", ram="1G")
    pages = [k.alloc_pages(0, "HighMem") for _ in range(2)]
    v = k.vmap(pages)
    free = k.frames.nr_free_pages()
    k.vfree(v)
    assert not k.walk(v).mapped and not k.walk(v + 4096).mapped
    assert k.frames.nr_free_pages() == free
    assert all(k.frames.page(p.pfn).state == "allocated" for p in pages)
    k.check_invariants()
