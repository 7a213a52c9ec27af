"""The fixmap (arch/x86/include/asm/fixmap.h): ``__fix_to_virt(x) = FIXADDR_TOP - (x <<
PAGE_SHIFT)``, set_fixmap / clear_fixmap, and the BUG on an index past
``__end_of_fixed_addresses``.

FIXADDR_TOP is the kernel's constant: 0xfffff000 on i386 in every era; on x86_64
``VSYSCALL_END - PAGE_SIZE`` = 0xffffffffffdff000 up to 3.x and
``round_up(VSYSCALL_ADDR + PAGE_SIZE, PMD_SIZE) - PAGE_SIZE`` = 0xffffffffff7ff000 since
(both put the vsyscall page at the fixed ABI address 0xffffffffff600000).
"""

from __future__ import annotations

import pytest

from mmemu.cpu import Cpu
from mmemu.errors import KernelBug, MmemuError

PAGE = 4096

ARCHES = [("i386", "6.6", "1G"), ("i386_pae", "6.6", "2G"), ("x86_64", "6.6", "1G"),
          ("i386", "2.6.12", "1G"), ("x86_64", "2.6.12", "1G"), ("x86_64", "3.10", "1G"), ("i386", "3.10", "1G")]


def fixaddr_top(arch, kv):
    if arch.startswith("i386"):
        return 0xFFFFF000
    return 0xFFFFFFFFFFDFF000 if kv < "3.16" else 0xFFFFFFFFFF7FF000


def end_of_fixed(k):
    return dict(k.layout.fixmap)["__end_of_fixed_addresses"]


def state(k):
    tables = {t: k.mem.read(t, PAGE) for t in sorted(k.pgtable.tables)}
    return tables, k.event_seq, k.frames.nr_free_pages()


@pytest.mark.parametrize("arch,kv,ram", ARCHES)
def test_fix_to_virt_by_number(boot, arch, kv, ram):
    k = boot(arch=arch, kernel=kv, ram=ram)
    top = fixaddr_top(arch, kv)
    end = end_of_fixed(k)
    for idx in (0, 1, 2, 17, end // 2, end - 1):
        assert k.fix_to_virt(idx) == top - idx * PAGE
        assert k.virt_to_fix(top - idx * PAGE) == idx
        assert k.virt_to_fix(top - idx * PAGE + 0x123) == idx


@pytest.mark.parametrize("arch,kv,ram", ARCHES)
def test_fix_to_virt_by_name(boot, arch, kv, ram):
    k = boot(arch=arch, kernel=kv, ram=ram)
    top = fixaddr_top(arch, kv)
    for name, idx in k.layout.fixmap:
        if name == "__end_of_fixed_addresses":
            continue
        assert k.fix_to_virt(name) == top - idx * PAGE, name
    names = dict(k.layout.fixmap)
    assert "FIX_APIC_BASE" in names and "FIX_IO_APIC_BASE_0" in names
    if arch.startswith("i386"):
        assert {"FIX_KMAP_BEGIN", "FIX_KMAP_END", "FIX_BTMAP_BEGIN", "FIX_BTMAP_END"} <= set(names)
        assert k.fix_to_virt("FIX_HOLE") == 0xFFFFF000


def test_well_known_fixmap_addresses(boot):
    # the i386 2.6 vsyscall page (the vDSO of 2.6.12): 0xffffe000
    k = boot(arch="i386", kernel="2.6.12", ram="1G")
    assert k.fix_to_virt("FIX_VSYSCALL") == 0xFFFFE000
    assert k.fix_to_virt("FIX_APIC_BASE") == 0xFFFFD000
    # x86_64: the legacy vsyscall page at 0xffffffffff600000 in every era
    k = boot(arch="x86_64", kernel="2.6.12", ram="1G")
    assert k.fix_to_virt("VSYSCALL_FIRST_PAGE") == 0xFFFFFFFFFF600000
    k = boot(arch="x86_64", kernel="6.6", ram="1G")
    assert k.fix_to_virt("VSYSCALL_PAGE") == 0xFFFFFFFFFF600000


@pytest.mark.parametrize("arch,kv,ram", ARCHES)
def test_set_fixmap_maps_the_page_and_clear_fixmap_clears_it(boot, arch, kv, ram):
    k = boot(arch=arch, kernel=kv, ram=ram)
    top = fixaddr_top(arch, kv)
    page = k.alloc_pages(0, "Normal")
    k.mem.write(page.phys + 0x120, b"fixmap!")
    idx = dict(k.layout.fixmap)["FIX_IO_APIC_BASE_0"]
    free0 = k.frames.nr_free_pages()
    va = k.set_fixmap_offset(idx, page.phys + 0x123)
    assert va == top - idx * PAGE + 0x123  # the slot's address plus the offset in the page
    w = k.walk(va)
    assert w.mapped and w.phys == page.phys + 0x123 and w.page_size == PAGE
    assert w.writable and not w.user
    assert k.read(va - 3, 7) == b"fixmap!"
    assert k.frames.nr_free_pages() == free0  # the fixmap's page tables exist from boot
    k.check_invariants()
    k.clear_fixmap(idx)
    assert not k.walk(top - idx * PAGE).mapped
    k.check_invariants()
    # by name too, read-only and uncached
    va = k.set_fixmap_offset("FIX_APIC_BASE", 0xFEE00000, "PAGE_KERNEL_NOCACHE")
    assert va == top - dict(k.layout.fixmap)["FIX_APIC_BASE"] * PAGE
    w = k.walk(va)
    assert w.phys == 0xFEE00000
    pcd = 0x10
    assert w.steps[-1].raw & pcd
    ro = k.set_fixmap_offset(idx, page.phys, "PAGE_KERNEL_RO")
    assert not k.walk(ro).writable
    k.clear_fixmap("FIX_APIC_BASE")
    k.clear_fixmap(idx)
    assert not k.walk(va).mapped and not k.walk(ro).mapped
    k.check_invariants()


@pytest.mark.parametrize("arch,kv,ram", ARCHES)
def test_every_fixmap_slot_has_its_page_table_from_boot(boot, arch, kv, ram):
    k = boot(arch=arch, kernel=kv, ram=ram)
    page = k.alloc_pages(0, "Normal")
    end = end_of_fixed(k)
    free0 = k.frames.nr_free_pages()
    for idx in (0, 1, end // 3, end - 1):
        k.set_fixmap(idx, page.phys)
        ev = k.recent_events[-1]
        assert ev.tables_allocated == [] and ev.entry_count == 1
        k.clear_fixmap(idx)
    assert k.frames.nr_free_pages() == free0
    k.check_invariants()


@pytest.mark.parametrize("arch,kv,ram", ARCHES)
def test_index_past_the_enum_is_a_kernel_bug_and_changes_nothing(boot, arch, kv, ram):
    k = boot(arch=arch, kernel=kv, ram=ram)
    end = end_of_fixed(k)
    page = k.alloc_pages(0, "Normal")
    before = state(k)
    for bad in (end, end + 1, 10 ** 6):
        with pytest.raises(KernelBug):
            k.set_fixmap(bad, page.phys)
        with pytest.raises(KernelBug):
            k.clear_fixmap(bad)
        with pytest.raises(KernelBug):
            k.fix_to_virt(bad)
    with pytest.raises(MmemuError):
        k.fix_to_virt(-1)
    with pytest.raises(KernelBug):
        k.set_fixmap("__end_of_fixed_addresses", page.phys)
    assert state(k) == before
    k.check_invariants()


@pytest.mark.parametrize("arch,kv,ram", [("i386", "6.6", "1G"), ("x86_64", "6.6", "1G"), ("x86_64", "2.6.12", "1G")])
def test_unknown_names_are_clear_errors_and_change_nothing(boot, arch, kv, ram):
    k = boot(arch=arch, kernel=kv, ram=ram)
    page = k.alloc_pages(0, "Normal")
    before = state(k)
    with pytest.raises(MmemuError) as ei:
        k.set_fixmap("FIX_NO_SUCH_SLOT", page.phys)
    msg = str(ei.value)
    assert "FIX_NO_SUCH_SLOT" in msg and "FIX_APIC_BASE" in msg  # names what exists
    assert not isinstance(ei.value, KernelBug)
    with pytest.raises(MmemuError, match="FIX_NO_SUCH_SLOT"):
        k.fix_to_virt("FIX_NO_SUCH_SLOT")
    with pytest.raises(MmemuError, match="FIX_NO_SUCH_SLOT"):
        k.clear_fixmap("FIX_NO_SUCH_SLOT")
    with pytest.raises(MmemuError, match="PAGE_BOGUS"):
        k.set_fixmap("FIX_APIC_BASE", page.phys, "PAGE_BOGUS")
    assert state(k) == before
    if arch == "x86_64":
        # a slot of another arch is unknown here (FIX_KMAP_* exist only on 32-bit HighMem)
        with pytest.raises(MmemuError, match="FIX_KMAP_BEGIN"):
            k.fix_to_virt("FIX_KMAP_BEGIN")


@pytest.mark.parametrize("arch,kv,ram", [("i386", "6.6", "1G"), ("i386_pae", "3.10", "2G"), ("x86_64", "6.6", "1G")])
def test_set_and_clear_fixmap_flush_the_tlb(boot, arch, kv, ram):
    """set_fixmap and clear_fixmap flush the slot's translation (__flush_tlb_one_kernel):
    the CPU sees the new page at once, and nothing after the clear."""
    k = boot(arch=arch, kernel=kv, ram=ram)
    cpu = Cpu(k)
    a, b = k.alloc_pages(0, "Normal"), k.alloc_pages(0, "Normal")
    idx = dict(k.layout.fixmap)["FIX_IO_APIC_BASE_0"]
    va = k.set_fixmap_offset(idx, a.phys)
    assert cpu.probe(va, "read").phys == a.phys
    k.set_fixmap(idx, b.phys)
    assert cpu.probe(va, "read").phys == b.phys
    k.clear_fixmap(idx)
    p = cpu.probe(va, "read")
    assert p.phys is None and p.trap == 14 and p.fault.address == va
    k.check_invariants()
