"""Mapping-changed events: every operation on the kernel mappings reports what it wrote
(the entries before and after, the frames, who wrote them), to ``k.recent_events`` and to
every plugin implementing the ``mmemu_mapping_changed`` hook; a failed operation reports
nothing.

Expected entries are computed from what the operation is known to do (the frames it
mapped, by walking afterwards and by the kernel's formulas for slot addresses), never
taken from the event to check the event.
"""

from __future__ import annotations

import pytest

import mmemu
from mmemu.errors import KernelBug, KernelWarning, MmemuError, OutOfMemory, WouldBlock
from mmemu.plugins import get_plugin_manager

PAGE = 4096
ARCHES = [("i386", "6.6", "1G"), ("i386_pae", "3.10", "2G"), ("x86_64", "6.6", "1G"), ("i386", "2.6.12", "1G")]
HIGHMEM = [a for a in ARCHES if a[0] != "x86_64"]


class Recorder:
    """A third-party observer, registered like any plugin."""

    def __init__(self):
        self.calls = []

    @mmemu.hookimpl
    def mmemu_mapping_changed(self, kernel, event):
        self.calls.append((kernel, event))


@pytest.fixture
def boot():
    booted = []

    def _boot(**kw):
        rec = Recorder()
        pm = get_plugin_manager(plugins=[rec])
        k = mmemu.boot(plugin_manager=pm, **kw)
        k._recorder = rec
        booted.append(k)
        return k, rec
    yield _boot
    for k in booted:
        k.close()


def addr_mask(k):
    return ((1 << 52) - 1) & ~0xFFF


class Watch:
    """The events one operation produced, seen both ways; they must agree."""

    def __init__(self, k, rec):
        self.k, self.rec = k, rec

    def __enter__(self):
        self.seq = self.k.event_seq
        self.n = len(self.rec.calls)
        return self

    def __exit__(self, *exc):
        self.events = [e for e in self.k.recent_events if e.seq > self.seq]
        calls = self.rec.calls[self.n:]
        self.plugin_events = [e for _k, e in calls]
        assert all(kk is self.k for kk, _e in calls)
        return False

    def check(self):
        assert self.plugin_events == self.events  # the same objects, in the same order
        assert [e.seq for e in self.events] == list(range(self.seq + 1, self.seq + 1 + len(self.events)))
        return self.events


def leaf_changes(k, events):
    last = k.paging.levels[-1].name
    return [c for e in events for c in e.entries() if c.level == last]


def read_entry(k, change):
    return int.from_bytes(k.mem.read(change.entry_addr, change.entry_size), "little")


# -- successful operations ---------------------------------------------------------------------

@pytest.mark.parametrize("arch,kv,ram", ARCHES)
def test_vmalloc_and_vfree_events(boot, arch, kv, ram):
    k, rec = boot(arch=arch, kernel=kv, ram=ram)
    with Watch(k, rec) as w:
        va = k.vmalloc(3 * PAGE)
    events = w.check()
    assert [e.writer for e in events] == ["vmalloc"]
    (ev,) = events
    assert (ev.kind, ev.va, ev.size) == ("map", va, 3 * PAGE)
    pfns = [k.walk(va + i * PAGE).phys // PAGE for i in range(3)]
    leaves = leaf_changes(k, events)
    assert [(c.old, c.new & addr_mask(k)) for c in leaves] == [(0, pfn * PAGE) for pfn in pfns]
    assert all(c.new & 1 for c in leaves)  # present
    entry_size = 4 if arch == "i386" else 8
    for c in ev.entries():
        assert c.entry_size == entry_size
        assert read_entry(k, c) == c.new  # the entry really holds the "after" value
    # the first area needed a new page table: allocated, and entered one level up
    for t in ev.tables_allocated:
        assert t in k.pgtable.tables
        assert any(c.new & addr_mask(k) == t for c in ev.entries())
    with Watch(k, rec) as w:
        k.vfree(va)
    (ev,) = w.check()
    assert (ev.writer, ev.kind, ev.va, ev.size) == ("vfree", "unmap", va, 3 * PAGE)
    assert ev.unmapped == [(va + i * PAGE, pfn * PAGE, PAGE) for i, pfn in enumerate(pfns)]
    assert [(c.old & addr_mask(k), c.new) for c in ev.entries()] == [(pfn * PAGE, 0) for pfn in pfns]
    k.check_invariants()


@pytest.mark.parametrize("arch,kv,ram", ARCHES)
def test_vzalloc_vmap_vunmap_events(boot, arch, kv, ram):
    k, rec = boot(arch=arch, kernel=kv, ram=ram)
    with Watch(k, rec) as w:
        z = k.vzalloc(PAGE)
    assert [(e.writer, e.va) for e in w.check()] == [("vzalloc", z)]
    pages = [k.alloc_pages(0, "Normal"), k.alloc_pages(0, "DMA")]
    with Watch(k, rec) as w:
        va = k.vmap(pages)
    events = w.check()
    assert [(e.writer, e.kind, e.va, e.size) for e in events] == [("vmap", "map", va, 2 * PAGE)]
    assert [c.new & addr_mask(k) for c in leaf_changes(k, events)] == [p.phys for p in pages]
    with Watch(k, rec) as w:
        k.vunmap(va)
    (ev,) = w.check()
    assert (ev.writer, ev.kind) == ("vunmap", "unmap")
    assert ev.unmapped == [(va, pages[0].phys, PAGE), (va + PAGE, pages[1].phys, PAGE)]
    k.check_invariants()


@pytest.mark.parametrize("arch,kv,ram", HIGHMEM)
def test_kmap_kunmap_and_flush_events(boot, arch, kv, ram):
    k, rec = boot(arch=arch, kernel=kv, ram=ram)
    last = k.layout["LAST_PKMAP"]
    pages = [k.alloc_pages(0, "HighMem") for _ in range(last + 1)]
    slot1 = k.layout["PKMAP_BASE"] + PAGE
    with Watch(k, rec) as w:
        va = k.kmap(pages[1])
    (ev,) = w.check()
    assert (ev.writer, ev.va, va) == ("kmap_high", slot1, slot1)
    (c,) = list(ev.entries())
    assert c.old == 0 and c.new & addr_mask(k) == pages[1].phys and c.level == k.paging.levels[-1].name
    # kunmap and a second kmap of a mapped page write nothing
    with Watch(k, rec) as w:
        k.kunmap(pages[1])
        k.kmap(pages[1])
        k.kunmap(pages[1])
        k.kmap(k.alloc_pages(0, "Normal"))
    assert w.check() == []
    # fill the rest, then wrap: the flush clears slot 1 (count 1) and says which frame it held
    for p in pages[2:last]:
        k.kmap(p)
    with Watch(k, rec) as w:
        k.kmap(pages[last])
    events = w.check()
    writers = [e.writer for e in events]
    assert writers == ["flush_all_zero_pkmaps", "kmap_high"]
    flush = events[0]
    assert flush.va == slot1 and flush.unmapped == [(slot1, pages[1].phys, PAGE)]
    (fc,) = list(flush.entries())
    assert fc.old == c.new and fc.new == 0
    assert events[1].va == k.layout["PKMAP_BASE"]  # slot 0, after the wrap
    k.check_invariants()


def test_atomic_kmap_events_by_era(boot):
    fixaddr_top = 0xFFFFF000
    # 2.6.12: a named slot; re-mapping it shows the old entry as "before"
    k, rec = boot(arch="i386", kernel="2.6.12", ram="1G")
    p1, p2 = k.alloc_pages(0, "HighMem"), k.alloc_pages(0, "HighMem")
    slot = fixaddr_top - (dict(k.layout.fixmap)["FIX_KMAP_BEGIN"] + 3) * PAGE  # KM_USER0 = 3
    with Watch(k, rec) as w:
        k.kmap_atomic(p1, "KM_USER0")
        k.kunmap_atomic(slot, "KM_USER0")
        k.kmap_atomic(p2, "KM_USER0")
    events = w.check()
    assert [(e.writer, e.va) for e in events] == [("kmap_atomic", slot), ("kmap_atomic", slot)]
    first, second = (list(e.entries())[0] for e in events)
    assert first.old == 0 and first.new & addr_mask(k) == p1.phys
    assert second.old == first.new and second.new & addr_mask(k) == p2.phys  # replaced, never cleared
    # 6.6: kmap_local_page / kunmap_local
    k, rec = boot(arch="i386_pae", kernel="6.6", ram="2G")
    p = k.alloc_pages(0, "HighMem")
    slot = fixaddr_top - dict(k.layout.fixmap)["FIX_KMAP_BEGIN"] * PAGE
    with Watch(k, rec) as w:
        va = k.kmap_local_page(p)
        k.kunmap_local(va)
    events = w.check()
    assert [(e.writer, e.va) for e in events] == [("kmap_local_page", slot), ("kunmap_local", slot)]
    assert events[1].unmapped == [(slot, p.phys, PAGE)]
    k.check_invariants()


@pytest.mark.parametrize("arch,kv,ram", ARCHES)
def test_fixmap_events(boot, arch, kv, ram):
    k, rec = boot(arch=arch, kernel=kv, ram=ram)
    page = k.alloc_pages(0, "Normal")
    idx = dict(k.layout.fixmap)["FIX_APIC_BASE"]
    slot = k.layout["FIXADDR_TOP"] - idx * PAGE
    with Watch(k, rec) as w:
        k.set_fixmap(idx, page.phys)
        k.clear_fixmap(idx)
    events = w.check()
    assert [(e.writer, e.va, e.entry_count) for e in events] == [("__set_fixmap", slot, 1), ("clear_fixmap", slot, 1)]
    assert events[1].unmapped == [(slot, page.phys, PAGE)]
    assert next(events[0].entries()).new & addr_mask(k) == page.phys


@pytest.mark.parametrize("arch,kv,ram", ARCHES)
def test_demand_paging_events_name_the_process_work(boot, arch, kv, ram):
    k, rec = boot(arch=arch, kernel=kv, ram=ram)
    p = k.create_process("t")
    a = k.mmap(p, None, PAGE)
    with Watch(k, rec) as w:
        k.access(a, "write", user=True)
    events = w.check()
    anon = [e for e in events if e.writer == "do_anonymous_page"]
    assert len(anon) == 1 and anon[0].va == a
    (c,) = list(anon[0].entries())
    assert c.old == 0 and c.new & addr_mask(k) == k.pgtable.walk(p.pgd, a).phys
    k.check_invariants()


# -- failed operations report nothing ----------------------------------------------------------

@pytest.mark.parametrize("arch,kv,ram", ARCHES)
def test_failed_operations_emit_nothing(boot, arch, kv, ram):
    k, rec = boot(arch=arch, kernel=kv, ram=ram)
    va = k.vmalloc(PAGE)
    with Watch(k, rec) as w:
        with pytest.raises(KernelWarning):
            k.vfree(va + 8 * PAGE)
        with pytest.raises(KernelWarning):
            k.vunmap(va + 8 * PAGE)
        with pytest.raises(OutOfMemory):
            k.vmalloc_range(2 * PAGE, va, va + 2 * PAGE)  # only the busy area's range
        with pytest.raises(KernelBug):
            k.set_fixmap(dict(k.layout.fixmap)["__end_of_fixed_addresses"], 0)
        with pytest.raises(MmemuError):
            k.set_fixmap("FIX_NOPE", 0)
        with pytest.raises(MmemuError):
            k.kfree(va)
    assert w.check() == []
    assert rec.calls and len(rec.calls) == k.event_seq  # every successful event was seen


@pytest.mark.parametrize("arch,kv,ram", HIGHMEM)
def test_failed_kmaps_emit_nothing(boot, arch, kv, ram):
    k, rec = boot(arch=arch, kernel=kv, ram=ram)
    last = k.layout["LAST_PKMAP"]
    pages = [k.alloc_pages(0, "HighMem") for _ in range(last + 1)]
    for p in pages[:last]:
        k.kmap(p)
    with Watch(k, rec) as w:
        with pytest.raises(WouldBlock):
            k.kmap(pages[last])  # every slot in use
        k.kunmap(pages[0])  # to count 1: nothing is written either
        with pytest.raises(KernelBug):
            k.kunmap(pages[0])
        with pytest.raises(KernelBug):
            k.kunmap(pages[last])
    assert w.check() == []


def test_failed_kmap_atomic_and_local_emit_nothing(boot):
    k, rec = boot(arch="i386", kernel="2.6.30", ram="1G")
    p1, p2 = k.alloc_pages(0, "HighMem"), k.alloc_pages(0, "HighMem")
    k.kmap_atomic(p1, "KM_USER0")
    with Watch(k, rec) as w:
        with pytest.raises(KernelBug):
            k.kmap_atomic(p2, "KM_USER0")
    assert w.check() == []
    k, rec = boot(arch="i386", kernel="6.6", ram="1G")
    pages = [k.alloc_pages(0, "HighMem") for _ in range(16)]
    vas = [k.kmap_local_page(p) for p in pages[:15]]
    with Watch(k, rec) as w:
        with pytest.raises(KernelBug):
            k.kmap_local_page(pages[15])
        with pytest.raises(KernelWarning):
            k.kunmap_local(vas[0])
    assert w.check() == []


def test_vmalloc_out_of_memory_emits_nothing(boot, exhaust):
    k, rec = boot(arch="i386", kernel="6.6", ram="64M")
    k.vfree(k.vmalloc(4 * PAGE))
    k.purge_vmap_area_lazy()
    held = exhaust(k)
    k.free_page_block(held.pop())
    with Watch(k, rec) as w:
        with pytest.raises(OutOfMemory):
            k.vmalloc(4 * PAGE)
    assert w.check() == []
    k.check_invariants()


def test_no_plugin_no_hook_call_but_recent_events_still_kept():
    pm = get_plugin_manager()
    k = mmemu.boot(arch="i386", kernel="6.6", ram="1G", plugin_manager=pm)
    try:
        k.vmalloc(PAGE)
        assert [e.writer for e in k.recent_events] == ["vmalloc"]
        assert "vmalloc" in repr(k.recent_events[0])
    finally:
        k.close()


def test_event_names_the_frames_and_what_it_was_done_for():
    """A demand fault's event names the page it mapped and the fault it resolved; a vfree's
    the pages it unmapped; neither names the page tables."""
    k = mmemu.boot(arch="x86_64", kernel="6.6", ram="512M")
    try:
        p = k.create_process("ctx")
        a = k.mmap(p, None, 4096)
        k.access(a, "write", user=True)
        ev = next(e for e in reversed(k.recent_events) if e.writer == "do_anonymous_page")
        pfn = k.walk(a, p.pgd).phys >> 12
        assert ev.frames() == ([pfn], [])
        assert ev.context == f"page fault at {a:#x} in ctx[{p.pid}]"
        v = k.vmalloc(2 * 4096)
        pfns = [k.vmalloc_to_page(v), k.vmalloc_to_page(v + 4096)]
        k.vfree(v)
        ev = k.recent_events[-1]
        assert ev.writer == "vfree" and ev.frames() == ([], pfns)
        assert ev.context == ""
    finally:
        k.close()


@pytest.mark.parametrize("arch,kv,ram", ARCHES)
def test_a_fault_event_read_late_says_what_was_true_then(boot, arch, kv, ram):
    """The entry a fault wrote, the page it mapped and the words of its context, read only
    after the page was unmapped and the process is gone: as they were at the fault."""
    k, rec = boot(arch=arch, kernel=kv, ram=ram)
    p = k.create_process("late")
    a = k.mmap(p, None, PAGE)
    seq = k.event_seq
    k.access(a, "write", user=True)
    phys = k.pgtable.walk(p.pgd, a).phys
    pte = k.read_user_pte(p, a)
    k.munmap(p, a, PAGE)
    pid = p.pid
    k.exit_mm(p)
    (ev,) = [e for e in k.recent_events if e.seq > seq and e.writer == "do_anonymous_page"]
    (c,) = list(ev.entries())
    assert (c.old, c.new) == (0, pte) and pte & addr_mask(k) == phys
    assert ev.frames() == ([phys >> 12], []) and ev.unmapped == []
    assert ev.size == PAGE and ev.context == f"page fault at {a:#x} in late[{pid}]"
    # the munmap's event names the user page it unmapped (i386's HIGHPTE kmap slots aside)
    unmap = [e for e in k.recent_events if e.seq > seq and e.unmapped]
    assert [u for e in unmap for u in e.unmapped if u[0] < k.task_size] == [(a, phys, PAGE)]


def test_recent_events_of_many_faults_without_a_listener():
    """Without a mmemu_mapping_changed hook, the kernel keeps the newest RECENT_EVENTS events
    (every demand fault's among them), numbered in order, each read back the same every time,
    and taken back newest first as the scenario stepper does."""
    pm = get_plugin_manager()
    k = mmemu.boot(arch="x86_64", kernel="6.6", ram="512M", plugin_manager=pm)
    try:
        n, keep = k.RECENT_EVENTS + 100, k.RECENT_EVENTS
        p = k.create_process("many")
        a = k.mmap(p, None, n * PAGE)
        for i in range(n):
            k.access(a + i * PAGE, "write", user=True)
        events = list(k.recent_events)
        assert len(events) == len(k.recent_events) == keep
        assert [e.seq for e in events] == list(range(k.event_seq - keep + 1, k.event_seq + 1))
        last, top = k.recent_events[-1], a + (n - 1) * PAGE
        assert last.writer == "do_anonymous_page" and last.va == top
        assert last.context == f"page fault at {top:#x} in many[{p.pid}]"
        (c,) = list(last.entries())
        assert (c.old, c.new) == (0, k.read_user_pte(p, top))
        again = k.recent_events[-1]
        assert (again.seq, again.writer, list(again.entries()), again.frames()) == \
            (last.seq, last.writer, [c], last.frames())
        assert [e.seq for e in reversed(k.recent_events)][:2] == [k.event_seq, k.event_seq - 1]
        assert k.recent_events.pop().seq == k.event_seq and len(k.recent_events) == keep - 1
    finally:
        k.close()


def test_one_entry_writes_reach_engine_observers_and_the_kernel_stream_alike(boot):
    """The kernel's event stream is told of a one-entry write (a demand fault's pte) by its
    plain values (PageTables.on_entry), no EntryWrite made for it;
    an observer of the engine still gets an EntryWrite, the same write; a hook listener, a
    kernel without one and the engine's observer all see the same entry, old and new."""
    from mmemu.pagetable import EntryWrite

    k, rec = boot(arch="x86_64", kernel="6.6", ram="512M")
    quiet = mmemu.boot(arch="x86_64", kernel="6.6", ram="512M", plugin_manager=get_plugin_manager())
    try:
        for kern in (k, quiet):
            assert kern.pgtable.on_entry is not None and kern.pgtable.on_operation is not None
            assert not kern.pgtable.observers  # the kernel's stream is not one of them
            seen = []
            kern.pgtable.observers.append(seen.append)
            p = kern.create_process("one")
            a = kern.mmap(p, None, PAGE)
            kern.access(a, "write", user=True)
            kern.pgtable.observers.remove(seen.append)
            writes = [op for op in seen if isinstance(op, EntryWrite)]
            (fault_op,) = [op for op in writes if op.writer == "do_anonymous_page"]
            assert fault_op.va == a
            assert (fault_op._old, fault_op._new) == (0, kern.read_user_pte(p, a))
            ev = [e for e in kern.recent_events if e.writer == "do_anonymous_page"][-1]
            assert ev.va == a and ev.kind == fault_op.kind and ev.op.fields() == fault_op.fields()
            assert ev.context == f"page fault at {a:#x} in one[{p.pid}]"
        hooked = [e for _k, e in rec.calls if e.writer == "do_anonymous_page"]
        assert len(hooked) == 1 and isinstance(hooked[0].op, EntryWrite)
    finally:
        quiet.close()
