"""check_invariants() is the referee of every stateful and failure test: it must catch what
it claims to catch, on every arch (a vmalloc address mapping a free frame, a leaked
anonymous page, a user page mapped more often than it is counted, a dirty zero page)."""

from __future__ import annotations

import pytest

import mmemu
from mmemu.kernel.invariants import InvariantError

PAGE = 4096
MACHINES = [dict(arch="i386", kernel="6.6", ram="1G"), dict(arch="x86_64", kernel="6.6", ram="1G"),
            dict(arch="riscv64", kernel="6.6", ram="1G"), dict(arch="arm64", kernel="6.6", ram="1G")]


@pytest.fixture(params=MACHINES, ids=lambda m: m["arch"])
def k(request):
    k = mmemu.boot(**request.param)
    k.check_invariants()
    yield k
    k.close()


def test_a_kernel_mapping_of_a_free_frame(k):
    v = k.vmalloc(PAGE)
    free = k.alloc_pages(0, "Normal", owner="test")
    k.free_page_block(free)
    k.pgtable.set_pte(k.pgd, v, k.codec.pfn_pte(free.pfn, k.pgprot["PAGE_KERNEL"]), writer="test")
    with pytest.raises(InvariantError, match=f"maps pfn {free.pfn:#x}, which is free"):
        k.check_invariants()


def test_a_leaked_anonymous_page(k):
    p = k.create_process("leak")
    k.alloc_pages(0, "HighMem", owner=p.anon_owner)
    with pytest.raises(InvariantError, match="leaked"):
        k.check_invariants()


def test_a_user_page_mapped_twice_and_counted_once(k):
    p = k.create_process("twice")
    a = k.mmap(p, None, 2 * PAGE)
    k.write(a, b"x", user=True, process=p)
    pte = k.pgtable.read_pte(p.pgd, a)
    k.write(a + PAGE, b"y", user=True, process=p)
    k.pgtable.set_pte(p.pgd, a + PAGE, pte, writer="test")  # the second page's frame leaks too
    with pytest.raises(InvariantError, match="mapped 2 times but has refcount 1"):
        k.check_invariants()


def test_a_dirty_zero_page(k):
    k.mem.write(k.zero_pfn << 12, b"\x01")
    with pytest.raises(InvariantError, match="zero page is not zero"):
        k.check_invariants()
