"""HighMem: persistent kmaps (mm/highmem.c kmap_high, map_new_virtual,
flush_all_zero_pkmaps, kunmap_high), the atomic kmaps of each era
(arch/x86/mm/highmem_32.c; mm/highmem.c kmap_local since 5.11) and CONFIG_HIGHPTE.

Expected values come from the kernel's rules: PKMAP_ADDR(nr) = PKMAP_BASE + nr * 4096,
LAST_PKMAP 1024 (512 with PAE), the slot counter starts at 0 and is pre-incremented, the
atomic slots at ``__fix_to_virt(FIX_KMAP_BEGIN + idx + per_cpu * cpu)`` =
``FIXADDR_TOP - (FIX_KMAP_BEGIN + idx + per_cpu * cpu) * 4096`` with the km_type enum
values of the era (KM_USER0 = 3, KM_PTE0 = 7; KM_TYPE_NR 13 in 2.6.12, 20 from 3.x) or
the stack depth, and KM_MAX_IDX = 16 for kmap_local (research notes, section 4).
"""

from __future__ import annotations

import pytest

from mmemu.errors import KernelBug, KernelWarning, MmemuError, WouldBlock

PAGE = 4096
FIXADDR_TOP_32 = 0xFFFFF000  # include/asm-i386/fixmap.h, arch/x86/mm/pgtable_32.c: every era

HIGHMEM = [("i386", "6.6", "1G"), ("i386_pae", "6.6", "2G"), ("i386", "3.10", "1G"), ("i386_pae", "3.10", "4G"),
           ("i386", "2.6.12", "1G")]

#: enum km_type (include/asm-i386/kmap_types.h 2.6.12, arch/x86/include/asm/kmap_types.h)
KM_USER0, KM_USER1, KM_PTE0 = 3, 4, 7


def last_pkmap(arch):
    return 512 if arch == "i386_pae" else 1024


def pkmap_addr(k, nr):
    return k.layout["PKMAP_BASE"] + nr * PAGE


def fix_begin(k):
    return dict(k.layout.fixmap)["FIX_KMAP_BEGIN"]


def slot_va(k, idx, cpu=0, per_cpu=0):
    """__fix_to_virt(FIX_KMAP_BEGIN + idx + per_cpu * cpu), by the formula."""
    return FIXADDR_TOP_32 - (fix_begin(k) + idx + per_cpu * cpu) * PAGE


def mapped_pfn(k, va):
    w = k.walk(va)
    return w.phys // PAGE if w.mapped else None


def state(k):
    tables = {t: k.mem.read(t, PAGE) for t in sorted(k.pgtable.tables)}
    return (list(k.pkmap_count), k.last_pkmap_nr, dict(k.page_address_map),
            [list(s) for s in k.kmap_atomic_stack], tables, k.event_seq, k.frames.nr_free_pages())


def highmem_pages(k, n):
    pages = [k.alloc_pages(0, "HighMem") for _ in range(n)]
    low_pfn = (k.layout["high_memory"] - k.layout["PAGE_OFFSET"]) // PAGE
    assert all(p.pfn >= low_pfn for p in pages)  # really HighMem, by the kernel's boundary
    return pages


# -- persistent kmaps ------------------------------------------------------------------------

@pytest.mark.parametrize("arch,kv,ram", HIGHMEM)
def test_kmap_of_a_lowmem_page_is_its_direct_address(boot, arch, kv, ram):
    k = boot(arch=arch, kernel=kv, ram=ram)
    before = state(k)
    for zone in ("DMA", "Normal"):
        page = k.alloc_pages(0, zone)
        assert k.kmap(page) == k.layout["PAGE_OFFSET"] + page.pfn * PAGE
        k.kunmap(page)
    after = state(k)
    # no slot, no counter, no entry written, no event
    assert after[:6] == before[:6]
    k.check_invariants()


@pytest.mark.parametrize("arch,kv,ram", HIGHMEM)
def test_kmap_takes_a_slot_counts_users_and_reuses_the_slot(boot, arch, kv, ram):
    k = boot(arch=arch, kernel=kv, ram=ram)
    assert k.LAST_PKMAP == last_pkmap(arch) == len(k.pkmap_count)
    page, other = highmem_pages(k, 2)
    assert k.last_pkmap_nr == 0 and k.pkmap_count[1] == 0
    va = k.kmap(page)
    # the counter is pre-incremented: the first slot used is 1
    assert va == pkmap_addr(k, 1) and k.last_pkmap_nr == 1
    assert k.pkmap_count[1] == 2  # mapped, one user
    assert mapped_pfn(k, va) == page.pfn
    assert k.page_address(page) == va
    k.check_invariants()
    assert k.kmap(page) == va and k.pkmap_count[1] == 3  # a second user
    k.kunmap(page)
    assert k.pkmap_count[1] == 2
    k.kunmap(page)
    assert k.pkmap_count[1] == 1  # no users, still mapped until the next flush
    assert mapped_pfn(k, va) == page.pfn and k.page_address(page) == va
    k.check_invariants()
    # another page does not get the count-1 slot: the counter moves on
    va2 = k.kmap(other)
    assert va2 == pkmap_addr(k, 2) and k.last_pkmap_nr == 2
    # the same page again: page_address still knows it, same slot, no new entry
    seq = k.event_seq
    assert k.kmap(page) == va and k.pkmap_count[1] == 2
    assert k.event_seq == seq and k.last_pkmap_nr == 2
    k.check_invariants()


@pytest.mark.parametrize("arch,kv,ram", HIGHMEM)
def test_slot_counter_wrap_flushes_every_unused_slot(boot, arch, kv, ram):
    k = boot(arch=arch, kernel=kv, ram=ram)
    last = last_pkmap(arch)
    pages = highmem_pages(k, last + 2)
    for i in range(1, last):  # slots 1 .. LAST_PKMAP-1, no wrap yet
        assert k.kmap(pages[i]) == pkmap_addr(k, i)
    assert k.last_pkmap_nr == last - 1
    unused = [i for i in range(1, last) if i % 3 == 0]
    for i in unused:
        k.kunmap(pages[i])  # count 1: entry and page_address kept
    for i in unused:
        assert k.pkmap_count[i] == 1 and mapped_pfn(k, pkmap_addr(k, i)) == pages[i].pfn
    k.check_invariants()
    # the next kmap wraps last_pkmap_nr to 0: flush_all_zero_pkmaps, then slot 0 is free
    va = k.kmap(pages[last])
    assert k.last_pkmap_nr == 0 and va == pkmap_addr(k, 0)
    for i in unused:
        assert k.pkmap_count[i] == 0
        assert not k.walk(pkmap_addr(k, i)).mapped  # entry cleared
        assert k.page_address(pages[i]) is None  # set_page_address(page, NULL)
    for i in range(1, last):
        if i not in unused:  # slots in use are untouched
            assert k.pkmap_count[i] == 2 and mapped_pfn(k, pkmap_addr(k, i)) == pages[i].pfn
    # the flushed slots are usable again, the lowest one after the counter first
    assert k.kmap(pages[last + 1]) == pkmap_addr(k, unused[0])
    # a flushed page is mapped afresh on its next kmap
    assert k.kmap(pages[unused[1]]) == pkmap_addr(k, unused[1])
    k.check_invariants()


@pytest.mark.parametrize("arch,kv,ram", [("i386", "6.6", "1G"), ("i386_pae", "3.10", "2G"), ("i386", "2.6.12", "1G")])
def test_all_slots_busy_would_block_and_changes_nothing(boot, arch, kv, ram):
    k = boot(arch=arch, kernel=kv, ram=ram)
    last = last_pkmap(arch)
    pages = highmem_pages(k, last + 1)
    for p in pages[:last]:
        k.kmap(p)
    assert all(c >= 2 for c in k.pkmap_count)
    before = state(k)
    with pytest.raises(WouldBlock):
        k.kmap(pages[last])
    assert state(k) == before
    # a page that already has a slot needs no new one
    assert k.kmap(pages[5]) == k.page_address(pages[5])
    k.kunmap(pages[5])
    # one kunmap (to count 1) frees a slot at the next wrap: now it can be had
    k.kunmap(pages[7])
    va = k.kmap(pages[last])
    assert k.page_address(pages[7]) is None
    assert mapped_pfn(k, va) == pages[last].pfn
    k.check_invariants()


@pytest.mark.parametrize("arch,kv,ram", HIGHMEM)
def test_bad_kunmap_is_a_kernel_bug_and_changes_nothing(boot, arch, kv, ram):
    k = boot(arch=arch, kernel=kv, ram=ram)
    mapped, never = highmem_pages(k, 2)
    k.kmap(mapped)
    k.kunmap(mapped)
    before = state(k)
    with pytest.raises(KernelBug, match="kernel BUG at"):
        k.kunmap(mapped)  # double kunmap: the count would go from 1 to 0
    assert state(k) == before
    with pytest.raises(KernelBug, match="kernel BUG at"):
        k.kunmap(never)  # page_address is NULL
    assert state(k) == before
    k.check_invariants()


@pytest.mark.parametrize("arch,kv,ram", HIGHMEM)
def test_every_pkmap_slot_lives_in_one_page_table(boot, arch, kv, ram):
    k = boot(arch=arch, kernel=kv, ram=ram)
    last = last_pkmap(arch)
    base = k.layout["PKMAP_BASE"]
    pmd_size = (2 if arch == "i386_pae" else 4) << 20
    assert base % pmd_size == 0 and last * PAGE == pmd_size  # exactly one pte page's reach
    for p in highmem_pages(k, 5):
        k.kmap(p)
    dir_entries, tables = set(), set()
    walks = [k.walk(pkmap_addr(k, i)) for i in range(last)]
    for i, w in enumerate(walks):
        steps = w.steps
        pte, pde = steps[-1], steps[-2]
        dir_entries.add(pde.entry_addr)
        tables.add(pte.table)
        assert pte.index == i
        assert pte.entry_addr == pte.table + i * pte.level.entry_size  # consecutive entries
    assert len(dir_entries) == 1 and len(tables) == 1
    # that directory entry is the master kernel page table's and points to the table
    (pde_addr,) = dir_entries
    w = walks[0]
    assert w.steps[0].table == k.pgd
    assert w.steps[-2].raw & ~0xFFF & ((1 << 52) - 1) == next(iter(tables))
    assert len(walks[0].steps) == (3 if arch == "i386_pae" else 2)
    # the page just below the area is under another directory entry
    depth = len(walks[0].steps) - 2
    below = k.walk(base - PAGE).steps
    assert len(below) <= depth or below[depth].entry_addr != pde_addr
    k.check_invariants()


@pytest.mark.parametrize("kv", ["6.6", "3.10", "2.6.12"])
def test_x86_64_kmap_is_page_address(boot, kv):
    k = boot(arch="x86_64", kernel=kv, ram="1G")
    seq = k.event_seq
    for zone in ("DMA", "Normal", "HighMem"):
        page = k.alloc_pages(0, zone)
        direct = k.layout["PAGE_OFFSET"] + page.pfn * PAGE
        assert k.kmap(page) == k.page_address(page) == direct
        k.kunmap(page)
        k.kunmap(page)  # nothing to count: no BUG either
        if kv >= "5.11":
            assert k.kmap_local_page(page) == direct
            k.kunmap_local(direct)
        assert k.kmap_atomic(page) == direct
        k.kunmap_atomic(direct)
    assert k.event_seq == seq  # nothing was mapped
    assert k.LAST_PKMAP == 0
    k.check_invariants()


# -- atomic kmaps: the classic named slots ------------------------------------------------------

@pytest.mark.parametrize("arch,ram", [("i386", "1G"), ("i386_pae", "2G")])
def test_kmap_atomic_2_6_12_named_slots_leave_the_pte(boot, arch, ram):
    k = boot(arch=arch, kernel="2.6.12", ram=ram, cpus=2)
    assert fix_begin(k) == 11  # FIX_HOLE, FIX_VSYSCALL, FIX_APIC_BASE, FIX_IO_APIC_BASE_0..+7
    p1, p2, p3 = highmem_pages(k, 3)
    va = k.kmap_atomic(p1, "KM_USER0")
    assert va == FIXADDR_TOP_32 - (11 + KM_USER0) * PAGE
    assert mapped_pfn(k, va) == p1.pfn
    assert k.read(va, 4) == k.mem.read(p1.phys, 4)
    # the second CPU's KM_USER0: KM_TYPE_NR (13) slots further down
    va_cpu1 = k.kmap_atomic(p3, "KM_USER0", cpu=1)
    assert va_cpu1 == FIXADDR_TOP_32 - (11 + KM_USER0 + 13) * PAGE
    k.kunmap_atomic(va, "KM_USER0")
    # without CONFIG_DEBUG_HIGHMEM 2.6.12 does not clear the pte
    assert mapped_pfn(k, va) == p1.pfn
    k.check_invariants()
    # the next kmap_atomic of the slot just overwrites it (set_pte + __flush_tlb_one)
    assert k.kmap_atomic(p2, "KM_USER0") == va
    assert mapped_pfn(k, va) == p2.pfn
    # and even a slot still in use is overwritten without a word in 2.6.12
    assert k.kmap_atomic(p1, "KM_USER0") == va and mapped_pfn(k, va) == p1.pfn
    vb = k.kmap_atomic(p2, "KM_PTE0")
    assert vb == FIXADDR_TOP_32 - (11 + KM_PTE0) * PAGE
    k.check_invariants()


def test_kmap_atomic_classic_needs_a_known_km_type(boot):
    k = boot(arch="i386", kernel="2.6.12", ram="1G")
    (p,) = highmem_pages(k, 1)
    before = state(k)
    with pytest.raises(MmemuError, match="km_type"):
        k.kmap_atomic(p)
    with pytest.raises(MmemuError, match="KM_BOGUS"):
        k.kmap_atomic(p, "KM_BOGUS")
    assert state(k) == before


@pytest.mark.parametrize("arch,ram", [("i386", "1G"), ("i386_pae", "2G")])
def test_kmap_atomic_2_6_30_clears_the_pte_and_bugs_on_a_busy_slot(boot, arch, ram):
    k = boot(arch=arch, kernel="2.6.30", ram=ram)
    p1, p2 = highmem_pages(k, 2)
    va = k.kmap_atomic(p1, "KM_USER0")
    assert va == slot_va(k, KM_USER0)
    vb = k.kmap_atomic(p2, "KM_USER1")  # another type, another slot
    assert vb == slot_va(k, KM_USER1) == va - PAGE
    before = state(k)
    with pytest.raises(KernelBug):
        k.kmap_atomic(p2, "KM_USER0")  # the slot is still mapped: BUG_ON(!pte_none(...))
    assert state(k) == before
    assert mapped_pfn(k, va) == p1.pfn
    k.kunmap_atomic(va, "KM_USER0")
    assert not k.walk(va).mapped  # kpte_clear_flush
    assert mapped_pfn(k, vb) == p2.pfn
    assert k.kmap_atomic(p2, "KM_USER0") == va  # free again
    k.kunmap_atomic(va, "KM_USER0")
    k.kunmap_atomic(vb, "KM_USER1")
    assert not k.walk(vb).mapped
    k.check_invariants()


@pytest.mark.parametrize("kv", ["2.6.12", "2.6.30", "3.10", "6.6"])
def test_atomic_kmap_of_a_lowmem_page_takes_no_slot(boot, kv):
    k = boot(arch="i386", kernel=kv, ram="1G")
    page = k.alloc_pages(0, "Normal")
    km = "KM_USER0" if kv < "2.6.37" else None
    before = state(k)
    direct = k.layout["PAGE_OFFSET"] + page.pfn * PAGE
    assert k.kmap_atomic(page, km) == direct
    if kv >= "5.11":
        assert k.kmap_local_page(page) == direct
        k.kunmap_local(direct)
    k.kunmap_atomic(direct, km)
    assert state(k) == before
    # the first HighMem map after it still takes the first slot
    (hp,) = highmem_pages(k, 1)
    first = KM_USER0 if km else 0
    assert k.kmap_atomic(hp, km) == slot_va(k, first)
    k.check_invariants()


# -- atomic kmaps: the per-CPU stack (2.6.37 .. 5.10) ---------------------------------------------

@pytest.mark.parametrize("arch,ram", [("i386", "1G"), ("i386_pae", "2G")])
def test_kmap_atomic_3_10_is_a_per_cpu_stack(boot, arch, ram):
    k = boot(arch=arch, kernel="3.10", ram=ram, cpus=2)
    km_type_nr = 20  # include/asm-generic/kmap_types.h since the km_type enum went (3.x)
    pages = highmem_pages(k, 4)
    vas = [k.kmap_atomic(p) for p in pages[:3]]
    assert vas == [slot_va(k, i) for i in range(3)]
    for va, p in zip(vas, pages):
        assert mapped_pfn(k, va) == p.pfn
    v1 = k.kmap_atomic(pages[3], cpu=1)
    assert v1 == slot_va(k, 0, cpu=1, per_cpu=km_type_nr)
    k.check_invariants()
    # unmapped innermost first; each unmap clears its pte
    k.kunmap_atomic(vas[2])
    assert not k.walk(vas[2]).mapped and mapped_pfn(k, vas[1]) == pages[1].pfn
    # the slot is pushed again at the same depth
    assert k.kmap_atomic(pages[3]) == vas[2]
    for va in reversed(vas):
        k.kunmap_atomic(va)
        assert not k.walk(va).mapped
    k.kunmap_atomic(v1, cpu=1)
    assert not k.walk(v1).mapped
    k.check_invariants()


# -- kmap_local (5.11+) ---------------------------------------------------------------------------

@pytest.mark.parametrize("arch,ram", [("i386", "1G"), ("i386_pae", "2G")])
def test_kmap_local_nests_up_to_the_kernel_limit(boot, arch, ram):
    """mm/highmem.c kmap_local_idx_push: ``idx += KM_INCR; BUG_ON(idx >= KM_MAX_IDX)``
    with KM_MAX_IDX 16: the 16th nested map BUGs, so 15 can be held at once."""
    k = boot(arch=arch, kernel="6.6", ram=ram)
    pages = highmem_pages(k, 16)
    vas = []
    for i in range(15):
        vas.append(k.kmap_local_page(pages[i]))
        assert vas[-1] == slot_va(k, i)
        assert mapped_pfn(k, vas[-1]) == pages[i].pfn
    k.check_invariants()
    before = state(k)
    with pytest.raises(KernelBug, match="KM_MAX_IDX"):
        k.kmap_local_page(pages[15])
    assert state(k) == before
    for va in reversed(vas):
        k.kunmap_local(va)
        assert not k.walk(va).mapped
    assert k.kmap_local_page(pages[15]) == slot_va(k, 0)
    k.check_invariants()


@pytest.mark.parametrize("arch,ram", [("i386", "1G"), ("i386_pae", "2G")])
def test_kunmap_local_out_of_order_warns_and_changes_nothing(boot, arch, ram):
    k = boot(arch=arch, kernel="6.6", ram=ram)
    p1, p2 = highmem_pages(k, 2)
    v1 = k.kmap_local_page(p1)
    v2 = k.kmap_local_page(p2)
    assert (v1, v2) == (slot_va(k, 0), slot_va(k, 1))
    before = state(k)
    with pytest.raises(KernelWarning):
        k.kunmap_local(v1)  # v2 is the innermost
    assert state(k) == before
    with pytest.raises(KernelWarning):
        k.kunmap_local(0x1000)  # not even a kernel address: WARN_ON_ONCE(addr < PAGE_OFFSET)
    assert state(k) == before
    k.kunmap_local(v2)
    k.kunmap_local(v1)
    assert not k.walk(v1).mapped and not k.walk(v2).mapped
    k.check_invariants()


def test_kmap_local_per_cpu_slots_and_kmap_atomic_on_6_6(boot):
    k = boot(arch="i386", kernel="6.6", ram="1G", cpus=2)
    p1, p2, p3 = highmem_pages(k, 3)
    v0 = k.kmap_local_page(p1)
    v1 = k.kmap_local_page(p2, cpu=1)
    assert v0 == slot_va(k, 0)
    assert v1 == slot_va(k, 0, cpu=1, per_cpu=16)  # kmap_local_calc_idx: idx + KM_MAX_IDX * cpu
    # kmap_atomic is kmap_local underneath: the next slot of the same stack
    va = k.kmap_atomic(p3)
    assert va == slot_va(k, 1)
    k.kunmap_atomic(va)
    k.kunmap_local(v0)
    k.kunmap_local(v1, cpu=1)
    for v in (v0, v1, va):
        assert not k.walk(v).mapped
    k.check_invariants()


def test_kmap_local_does_not_exist_before_5_11(boot):
    k = boot(arch="i386", kernel="3.10", ram="1G")
    (p,) = highmem_pages(k, 1)
    before = state(k)
    with pytest.raises(MmemuError):
        k.kmap_local_page(p)
    assert state(k) == before


# -- CONFIG_HIGHPTE --------------------------------------------------------------------------------

@pytest.mark.parametrize("arch,kv,ram", [("i386", "2.6.12", "1G"), ("i386", "2.6.30", "1G"), ("i386", "3.10", "1G"),
                                         ("i386", "6.6", "1G"), ("i386_pae", "6.6", "2G"),
                                         ("i386_pae", "2.6.30", "2G")])
def test_highpte_user_page_tables_are_reached_through_the_pte_kmap_slot(boot, arch, kv, ram):
    k = boot(arch=arch, kernel=kv, ram=ram)
    p = k.create_process("t")
    a = k.mmap(p, None, 4096)
    seq = k.event_seq
    k.access(a, "write", user=True)
    events = [e for e in k.recent_events if e.seq > seq]
    # the user pte page came from HighMem
    pte_table = k.pgtable.walk(p.pgd, a).steps[-1].table
    low = k.layout["high_memory"] - k.layout["PAGE_OFFSET"]
    assert pte_table >= low
    # the slot: KM_PTE0 of CPU 0 in the classic kernels, the first stack slot later
    slot = slot_va(k, KM_PTE0 if kv < "2.6.37" else 0)
    names = [e.writer for e in events]
    assert "kmap_atomic" in names and "do_anonymous_page" in names
    i_map = names.index("kmap_atomic")
    i_pte = names.index("do_anonymous_page")
    assert i_map < i_pte
    kmap_ev, pte_ev = events[i_map], events[i_pte]
    assert kmap_ev.va == slot
    (ch,) = list(kmap_ev.entries())
    assert ch.old == 0 and ch.new & ~0xFFF & ((1 << 52) - 1) == pte_table and ch.new & 1
    # the pte itself was written into that HighMem page table
    (pch,) = list(pte_ev.entries())
    assert pch.table == pte_table and pte_ev.va == a
    if kv >= "2.6.22":
        # and the slot is cleared once the pte is written (pte_unmap -> kunmap_atomic)
        assert names.count("kunmap_atomic") == 1
        i_unmap = names.index("kunmap_atomic")
        assert i_pte < i_unmap
        assert events[i_unmap].va == slot
        (uch,) = list(events[i_unmap].entries())
        assert uch.old == ch.new and uch.new == 0
        assert not k.walk(slot).mapped
    else:
        # 2.6.12 leaves the slot mapped until the next kmap_atomic(KM_PTE0) replaces it
        assert "kunmap_atomic" not in names
        assert k.walk(slot).phys == pte_table
    k.check_invariants()
    # a second page in the same page table goes through the same slot again
    seq = k.event_seq
    b = k.mmap(p, None, 4096)
    if k.pgtable.walk(p.pgd, b).steps[-1].table == pte_table:
        k.access(b, "write", user=True)
        again = [e for e in k.recent_events if e.seq > seq and e.writer == "kmap_atomic"]
        assert again and again[0].va == slot
    k.check_invariants()


@pytest.mark.parametrize("arch,kv,ram,options", [("i386", "6.6", "1G", {"HIGHPTE": "n"}),
                                                 ("x86_64", "6.6", "1G", None)])
def test_without_highpte_page_tables_stay_in_lowmem_and_need_no_kmap(boot, arch, kv, ram, options):
    k = boot(arch=arch, kernel=kv, ram=ram, options=options)
    p = k.create_process("t")
    a = k.mmap(p, None, 4096)
    seq = k.event_seq
    k.access(a, "write", user=True)
    events = [e for e in k.recent_events if e.seq > seq]
    assert "kmap_atomic" not in [e.writer for e in events]
    pte_table = k.pgtable.walk(p.pgd, a).steps[-1].table
    assert pte_table < k.layout["high_memory"] - k.layout["PAGE_OFFSET"]
    k.check_invariants()
