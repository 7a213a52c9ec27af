"""The kernel's own names and signatures where a kernel programmer reaches for them:
``set_fixmap`` returns nothing and ``set_fixmap_offset`` the address
(include/asm-generic/fixmap.h), ``__free_pages``, ``page_count``, ``page_mapcount``,
``ZERO_PAGE``, and a walk of an address the MMU does not translate, which faults as the CPU
does (x86_64: #GP(0), Intel SDM vol. 3A 6.15; RISC-V: a page fault, privileged spec 4.3.1/4.4.1;
arm64: a level-0 translation fault) instead of raising."""

from __future__ import annotations

import pytest

import mmemu
from mmemu.faults import NON_CANONICAL


@pytest.fixture(scope="module")
def k():
    k = mmemu.boot(arch="x86_64", kernel="6.6", ram="256M")
    yield k
    k.close()


def test_set_fixmap_returns_nothing_set_fixmap_offset_the_address(k):
    page = k.alloc_pages(0, "Normal", owner="test")
    assert k.set_fixmap("FIX_APIC_BASE", page.phys) is None
    va = k.fix_to_virt("FIX_APIC_BASE")
    assert k.walk(va).phys == page.phys
    k.clear_fixmap("FIX_APIC_BASE")
    assert not k.walk(va).mapped
    # fix_to_virt(idx) + (phys & (PAGE_SIZE - 1))
    assert k.set_fixmap_offset("FIX_APIC_BASE", page.phys + 0x123) == va + 0x123
    assert k.walk(va + 0x123).phys == page.phys + 0x123
    k.clear_fixmap("FIX_APIC_BASE")
    k.free_page_block(page)


def test_free_pages_by_the_kernel_name_and_page_count(k):
    free = k.frames.nr_free_pages()
    page = k.alloc_pages(1, "Normal", owner="test")
    assert k.page_count(page) == 1 and k.page_count(page.pfn + 1) == 1
    assert k.frames.nr_free_pages() == free - 2
    assert getattr(k, "__free_pages")(page) is True  # k.__free_pages(page), outside a class body
    assert k.frames.nr_free_pages() == free and k.page_count(page) == 0


def test_page_mapcount_counts_user_entries_and_zero_page_is_shared_and_uncounted(k):
    p = k.create_process("mapper")
    try:
        stack = p.vmas[-1]
        va = stack.vm_end - 0x1000
        pa = k.access(va, "read", user=True, process=p)
        assert pa >> 12 == k.ZERO_PAGE(va) == k.ZERO_PAGE()  # a read fault maps empty_zero_page
        assert k.page_mapcount(k.ZERO_PAGE()) == 0
        pa = k.access(va, "write", user=True, process=p)  # now a page of its own
        pfn = pa >> 12
        assert pfn != k.ZERO_PAGE() and k.page_mapcount(pfn) == 1 and k.page_count(pfn) == 1
        child = k.fork(p)
        try:
            assert k.page_mapcount(pfn) == 2 and k.page_count(pfn) == 2  # shared copy-on-write
            k.access(va, "write", user=True, process=child)  # the child breaks the sharing
            assert k.page_mapcount(pfn) == 1
        finally:
            k.exit_mm(child)
        assert k.page_mapcount(pfn) == 1
    finally:
        k.exit_mm(p)


@pytest.mark.parametrize("arch, va, access, code", [
    ("x86_64", 0x0000800000000000, "write", 0),  # #GP(0), not a #PF
    ("x86_64", 0xFFFF7FFFFFFFF000, "read", 0),
    ("riscv64", 0x0000004000000000, "read", 13),  # EXC_LOAD_PAGE_FAULT
    ("riscv64", 0x0000004000000000, "write", 15),  # EXC_STORE_PAGE_FAULT
])
def test_walk_of_an_untranslated_address_faults(arch, va, access, code):
    k = mmemu.boot(arch=arch, ram="256M")
    try:
        w = k.walk(va)
        assert not w.mapped and w.missing == NON_CANONICAL and w.steps == []
        f = w.fault(access)
        assert f.kind == NON_CANONICAL and f.code == code
        assert k.walk_mm(va).missing == NON_CANONICAL
    finally:
        k.close()


def test_arm64_untranslated_address_is_a_level0_translation_fault():
    k = mmemu.boot(arch="arm64", ram="256M")
    try:
        va = 0x0001000000000000  # neither TTBR0's nor TTBR1's range with 48-bit VAs
        f = k.walk(va).fault("read")
        # ESR_ELx: EC 0x25 (data abort, same EL), IL, DFSC 0b000100 (translation fault, level 0)
        assert f.code >> 26 == 0x25 and f.code & 0x3F == 0b000100
    finally:
        k.close()


def test_wrong_root_is_still_an_error():
    k = mmemu.boot(arch="arm64", ram="256M")
    try:
        p = k.create_process("t")
        with pytest.raises(mmemu.errors.AddressError):
            k.walk(0xFFFF000000000000, root=p.pgd)  # a kernel address through TTBR0's table
        k.exit_mm(p)
    finally:
        k.close()
