"""Random sequences of kernel operations (hypothesis state machines), one small machine per
arch and era: vmalloc/vfree/vmap/vunmap, kmap/kunmap, kmap_local/kunmap_local, processes
with mmap/munmap/mprotect/brk/fork/exit and accesses from user and kernel mode.

After every step ``k.check_invariants()`` must hold, including after the operations that
fail (they must fail with the kernel's error and change nothing). Besides, a small model
kept here independently of mmemu says which user accesses must succeed, and what every
byte read back must be (copy-on-write, MAP_FIXED replacing, munmap, brk, exit).
"""

from __future__ import annotations

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

import mmemu
from mmemu.errors import KernelBug, KernelWarning, MmemuError, Oops, OutOfMemory, SegmentationFault, WouldBlock
from mmemu.kernel import MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE, PROT_EXEC, PROT_NONE, PROT_READ, PROT_WRITE

PAGE = 4096
PROTS = [PROT_NONE, PROT_READ, PROT_READ | PROT_WRITE, PROT_READ | PROT_EXEC, PROT_WRITE,
         PROT_READ | PROT_WRITE | PROT_EXEC]
FIXED_ZONE = 0x20000000  # MAP_FIXED mappings go into the 64 pages from here
FIXED_PAGES = 64
MAX_PROCS = 5
MAX_LOCAL = 8  # stay well below KM_MAX_IDX (16): the fault path takes slots too (HIGHPTE)


class Base(RuleBasedStateMachine):
    """The machine, the model, and the invariant checked after every step."""

    SPEC: dict = {}

    def __init__(self):
        super().__init__()
        self.k = mmemu.boot(**self.SPEC)
        k = self.k
        self.task = k.layout["TASK_SIZE"]
        self.vmallocs: list[tuple[int, int]] = []  # (addr, pages)
        self.vmaps: list[tuple[int, list]] = []  # (addr, pages)
        self.kmaps: dict[int, int] = {}  # pfn -> kmap count
        self.kmap_pages: dict[int, object] = {}  # pfn -> Page
        self.locals: list[tuple[int, object]] = []  # (vaddr, page), innermost last
        self.procs: list = []
        # the model: per pid, page -> PROT_* and address -> byte written; the heap's end
        self.pages: dict[int, dict[int, int]] = {}
        self.heap: dict[int, set[int]] = {}
        self.data: dict[int, dict[int, int]] = {}
        self.brk_end: dict[int, int] = {}
        self.counter = 0

    def teardown(self):
        k = self.k
        try:
            for p in list(self.procs):
                k.exit_mm(p)
            k.check_invariants()
            leaked = [rec.owner for rec in k.frames.allocated.values() if rec.owner.startswith("anon (")]
            assert not leaked, leaked
        finally:
            k.close()

    def next_byte(self) -> int:
        self.counter = (self.counter + 1) % 255
        return self.counter + 1

    @invariant()
    def invariants_hold(self):
        self.k.check_invariants()


class KernelRules(Base):
    """vmalloc/vfree/vmap/vunmap, kmap/kunmap, kmap_local/kunmap_local, with bad calls."""

    # -- vmalloc and vmap ---------------------------------------------------------------------

    @rule(pages=st.integers(1, 24))
    def vmalloc(self, pages):
        try:
            a = self.k.vmalloc(pages * PAGE)
        except OutOfMemory:
            return
        b = self.next_byte()
        self.k.write(a, bytes([b]))
        self.k.write(a + pages * PAGE - 1, bytes([b]))
        self.vmallocs.append((a, pages))

    @precondition(lambda self: self.vmallocs)
    @rule(i=st.integers(0, 1000))
    def vfree(self, i):
        a, pages = self.vmallocs.pop(i % len(self.vmallocs))
        assert self.k.read(a, 1) == self.k.read(a + pages * PAGE - 1, 1)
        self.k.vfree(a)

    @precondition(lambda self: self.vmallocs)
    @rule(i=st.integers(0, 1000), how=st.sampled_from(["inside", "unaligned", "guard"]))
    def bad_vfree(self, i, how):
        a, pages = self.vmallocs[i % len(self.vmallocs)]
        addr = {"inside": a + (pages - 1) * PAGE if pages > 1 else a + PAGE, "unaligned": a + 8,
                "guard": a + pages * PAGE}[how]
        try:
            self.k.vfree(addr)
        except KernelWarning:
            return
        raise AssertionError(f"vfree({addr:#x}) was accepted")

    @precondition(lambda self: self.vmaps)
    @rule(i=st.integers(0, 1000))
    def vfree_of_a_vmap_area(self, i):
        """vfree() of a vmap() area: unmapped like vunmap(); its pages are the caller's
        (the vm_struct has nr_pages 0, so nothing is freed)."""
        a, pages = self.vmaps.pop(i % len(self.vmaps))
        self.k.vfree(a)
        assert not self.k.walk(a).mapped
        for pg in pages:
            assert self.k.frames.page(pg.pfn).state == "allocated"
            self.k.frames.free_pages(pg)

    @rule(n=st.integers(1, 6), zone=st.sampled_from(["HighMem", "Normal"]))
    def vmap(self, n, zone):
        k = self.k
        try:
            pages = [k.alloc_pages(0, zone, owner="test vmap") for _ in range(n)]
        except OutOfMemory:
            return
        try:
            a = k.vmap(pages)
        except OutOfMemory:
            for pg in pages:
                k.frames.free_pages(pg)
            return
        for i, pg in enumerate(pages):
            b = self.next_byte()
            k.write(a + i * PAGE + 5, bytes([b]))
            assert k.mem.read(pg.phys + 5, 1) == bytes([b]), "vmap maps its pages in order"
        self.vmaps.append((a, pages))

    @precondition(lambda self: self.vmaps)
    @rule(i=st.integers(0, 1000))
    def vunmap(self, i):
        a, pages = self.vmaps.pop(i % len(self.vmaps))
        self.k.vunmap(a)
        for pg in pages:
            assert self.k.frames.page(pg.pfn).state == "allocated", "vunmap keeps the pages"
            self.k.frames.free_pages(pg)

    @precondition(lambda self: self.vmallocs)
    @rule(i=st.integers(0, 1000))
    def kernel_touches_a_guard_page(self, i):
        a, pages = self.vmallocs[i % len(self.vmallocs)]
        try:
            self.k.write(a + pages * PAGE, b"!")
        except Oops:
            return
        raise AssertionError("a write to a guard page did not oops")

    # -- kmap ---------------------------------------------------------------------------------

    @precondition(lambda self: self.k.has_highmem)
    @rule(reuse=st.booleans(), i=st.integers(0, 1000))
    def kmap(self, reuse, i):
        k = self.k
        if reuse and self.kmap_pages:
            pfn = sorted(self.kmap_pages)[i % len(self.kmap_pages)]
            page = self.kmap_pages[pfn]
        else:
            try:
                page = k.alloc_pages(0, "HighMem", owner="test kmap")
            except OutOfMemory:
                return
            self.kmap_pages[page.pfn] = page
        try:
            va = k.kmap(page)
        except WouldBlock:
            return
        self.kmaps[page.pfn] = self.kmaps.get(page.pfn, 0) + 1
        b = self.next_byte()
        k.write(va + 100, bytes([b]))
        assert k.mem.read(page.phys + 100, 1) == bytes([b])

    @precondition(lambda self: any(self.kmaps.values()))
    @rule(i=st.integers(0, 1000))
    def kunmap(self, i):
        live = sorted(p for p, c in self.kmaps.items() if c)
        pfn = live[i % len(live)]
        self.k.kunmap(pfn)
        self.kmaps[pfn] -= 1
        if not self.kmaps[pfn]:
            del self.kmaps[pfn]
            self.k.frames.free_pages(self.kmap_pages.pop(pfn))

    @precondition(lambda self: self.k.has_highmem)
    @rule()
    def kunmap_of_a_page_not_kmapped(self):
        k = self.k
        page = k.alloc_pages(0, "HighMem", owner="test kunmap")
        try:
            k.kunmap(page)
        except KernelBug:
            return
        finally:
            k.frames.free_pages(page)
        raise AssertionError("kunmap of a page never kmapped was accepted")

    @precondition(lambda self: self.k.has_highmem and self.k.kmap_scheme == "kmap_local"
                  and len(self.locals) < MAX_LOCAL)
    @rule()
    def kmap_local(self):
        k = self.k
        page = k.alloc_pages(0, "HighMem", owner="test kmap_local")
        va = k.kmap_local_page(page)
        b = self.next_byte()
        k.write(va + 7, bytes([b]))
        assert k.mem.read(page.phys + 7, 1) == bytes([b])
        self.locals.append((va, page))

    @precondition(lambda self: self.locals)
    @rule(out_of_order=st.booleans())
    def kunmap_local(self, out_of_order):
        k = self.k
        if out_of_order and len(self.locals) >= 2:
            try:
                k.kunmap_local(self.locals[0][0])
            except KernelWarning:
                return
            raise AssertionError("an out-of-order kunmap_local was accepted")
        va, page = self.locals.pop()
        k.kunmap_local(va)
        k.frames.free_pages(page)


class UserRules(Base):
    """Processes and their memory, accessed from user and kernel mode."""

    # -- processes ----------------------------------------------------------------------------

    def _track_new(self, p, pages, data, heap, brk_end):
        self.procs.append(p)
        self.pages[p.pid] = pages
        self.data[p.pid] = data
        self.heap[p.pid] = heap
        self.brk_end[p.pid] = brk_end

    @initialize(n=st.integers(1, 12))
    def first_process(self, n):
        """Every run starts with a process that has some memory written."""
        self.create_process()
        p = self.procs[0]
        a = self.k.mmap(p, None, n * PAGE)
        for va in range(a, a + n * PAGE, PAGE):
            self.pages[p.pid][va] = PROT_READ | PROT_WRITE
        for off in range(0, n * PAGE, 3 * PAGE // 2):
            b = self.next_byte()
            self.k.write(a + off, bytes([b]), user=True, process=p)
            self.data[p.pid][a + off] = b

    @precondition(lambda self: len(self.procs) < MAX_PROCS)
    @rule()
    def create_process(self):
        p = self.k.create_process(f"p{len(self.procs)}")
        stack = {va: PROT_READ | PROT_WRITE for va in range(self.task - (128 << 10), self.task, PAGE)}
        self._track_new(p, stack, {}, set(), p.start_brk)

    def proc(self, i):
        return self.procs[i % len(self.procs)]

    def _forget(self, pid, start, end):
        pages, data = self.pages[pid], self.data[pid]
        for va in range(start, end, PAGE):
            pages.pop(va, None)
            self.heap[pid].discard(va)
        for addr in [a for a in data if start <= a < end]:
            del data[addr]

    @precondition(lambda self: self.procs)
    @rule(i=st.integers(0, 1000), n=st.integers(1, 8), prot=st.sampled_from(PROTS),
          fixed=st.none() | st.integers(0, FIXED_PAGES - 1))
    def mmap(self, i, n, prot, fixed):
        p = self.proc(i)
        pages = self.pages[p.pid]
        if fixed is None:
            a = self.k.mmap(p, None, n * PAGE, prot)
            assert a % PAGE == 0 and a + n * PAGE <= p.mmap_base
            assert not any(va in pages for va in range(a, a + n * PAGE)), "mmap returned a range in use"
        else:
            a = FIXED_ZONE + fixed * PAGE
            assert self.k.mmap(p, a, n * PAGE, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED) == a
            self._forget(p.pid, a, a + n * PAGE)
        for va in range(a, a + n * PAGE, PAGE):
            pages[va] = prot

    def _range(self, p, i, n, where):
        """A page-aligned range near what the process has mapped (or in the fixed zone)."""
        pages = sorted(self.pages[p.pid])
        written = sorted({a & ~(PAGE - 1) for a in self.data[p.pid]})
        if where == "data" and written:
            start = written[i % len(written)] - (i % 2) * PAGE
        elif where in ("mapped", "data") and pages:
            start = pages[i % len(pages)] - (i % 3) * PAGE
        else:
            start = FIXED_ZONE + (i % FIXED_PAGES) * PAGE
        start = min(start, self.task - n * PAGE)  # not past TASK_SIZE (that is -EINVAL)
        return start, start + n * PAGE

    @precondition(lambda self: self.procs)
    @rule(i=st.integers(0, 1000), j=st.integers(0, 1000), n=st.integers(1, 6),
          where=st.sampled_from(["mapped", "data", "fixed"]))
    def munmap(self, i, j, n, where):
        p = self.proc(i)
        start, end = self._range(p, j, n, where)
        present = any(va in self.pages[p.pid] for va in range(start, end, PAGE))
        try:
            self.k.munmap(p, start, end - start)
        except MmemuError:
            assert not present, "munmap of a mapped range failed"
            return
        assert present, "munmap of a range with no VMA succeeded"
        self._forget(p.pid, start, end)

    @precondition(lambda self: self.procs)
    @rule(i=st.integers(0, 1000), j=st.integers(0, 1000), n=st.integers(1, 6), prot=st.sampled_from(PROTS),
          where=st.sampled_from(["mapped", "data", "fixed"]))
    def mprotect(self, i, j, n, prot, where):
        p = self.proc(i)
        start, end = self._range(p, j, n, where)
        pages = self.pages[p.pid]
        whole = all(va in pages for va in range(start, end, PAGE))
        try:
            self.k.mprotect(p, start, end - start, prot)
        except MmemuError as exc:
            assert not whole and "ENOMEM" in str(exc), exc
            return
        assert whole, "mprotect over a hole succeeded"
        for va in range(start, end, PAGE):
            pages[va] = prot

    @precondition(lambda self: self.procs)
    @rule(i=st.integers(0, 1000), delta=st.integers(-4, 6))
    def brk(self, i, delta):
        p = self.proc(i)
        pid = p.pid
        old = self.brk_end[pid]
        new = old + delta * PAGE
        pages = self.pages[pid]
        if new < p.start_brk:
            assert self.k.brk(p, new) == p.brk
            return
        if new < old:
            if not any(va in pages for va in range(new, old, PAGE)):
                return  # the heap was unmapped by munmap: nothing to shrink (mmemu refuses that)
            assert self.k.brk(p, new) == new
            self._forget(pid, new, old)
        elif new > old:
            blocked = any(va in pages for va in range(old, new + PAGE, PAGE))
            got = self.k.brk(p, new)
            if blocked:  # find_vma_intersection(mm, oldbrk, newbrk + PAGE_SIZE)
                assert got == p.brk == old
                return
            assert got == new
            for va in range(old, new, PAGE):
                pages[va] = PROT_READ | PROT_WRITE
                self.heap[pid].add(va)
        self.brk_end[pid] = new

    def _target(self, p, i, where):
        pages = sorted(self.pages[p.pid])
        written = sorted(self.data[p.pid])
        if where == "data" and written:
            return written[i % len(written)]
        if where in ("mapped", "data") and pages:
            return pages[i % len(pages)] + (i * 37) % PAGE
        if where == "fixed":
            return FIXED_ZONE + (i % FIXED_PAGES) * PAGE + (i * 13) % PAGE
        return 0x10000 + (i % 64) * PAGE  # low memory: never mapped here

    @precondition(lambda self: self.procs)
    @rule(i=st.integers(0, 1000), j=st.integers(0, 100000), write=st.booleans(), user=st.booleans(),
          where=st.sampled_from(["mapped", "data", "data", "fixed", "low"]))
    def access(self, i, j, write, user, where):
        k = self.k
        p = self.proc(i)
        addr = self._target(p, j, where)
        prot = self.pages[p.pid].get(addr & ~(PAGE - 1))
        allowed = prot is not None and (bool(prot & PROT_WRITE) if write else prot != PROT_NONE)
        error = SegmentationFault if user else Oops
        try:
            if write:
                b = self.next_byte()
                k.write(addr, bytes([b]), user=user, process=p)
            else:
                got = k.read(addr, 1, user=user, process=p)[0]
        except error:
            assert not allowed, f"{'user' if user else 'kernel'} {'write' if write else 'read'} at {addr:#x} " \
                                f"(prot {prot}) faulted"
            return
        assert allowed, f"{'write' if write else 'read'} at {addr:#x} (prot {prot}) was allowed"
        if write:
            self.data[p.pid][addr] = b
        else:
            assert got == self.data[p.pid].get(addr, 0), f"read {got:#x} at {addr:#x}"

    # user memory is where the state gets intricate: the same rules once more, so that
    # they are drawn as often as the kernel-side ones together
    @precondition(lambda self: self.procs)
    @rule(i=st.integers(0, 1000), j=st.integers(0, 100000), write=st.booleans(), user=st.booleans(),
          where=st.sampled_from(["mapped", "data", "data", "fixed", "low"]))
    def access_more(self, i, j, write, user, where):
        self.access(i, j, write, user, where)

    @precondition(lambda self: self.procs)
    @rule(i=st.integers(0, 1000), j=st.integers(0, 1000), n=st.integers(1, 6), prot=st.sampled_from(PROTS),
          where=st.sampled_from(["mapped", "data", "fixed"]))
    def mprotect_more(self, i, j, n, prot, where):
        self.mprotect(i, j, n, prot, where)

    @precondition(lambda self: self.procs)
    @rule(i=st.integers(0, 1000), n=st.integers(1, 8), prot=st.sampled_from(PROTS),
          fixed=st.none() | st.integers(0, FIXED_PAGES - 1))
    def mmap_more(self, i, n, prot, fixed):
        self.mmap(i, n, prot, fixed)

    @precondition(lambda self: self.procs and len(self.procs) < MAX_PROCS)
    @rule(i=st.integers(0, 1000))
    def fork_more(self, i):
        self.fork(i)

    @precondition(lambda self: self.procs and self.vmallocs)
    @rule(i=st.integers(0, 1000), j=st.integers(0, 1000))
    def kernel_reads_vmalloc_in_a_process(self, i, j):
        """In the process's page directory (vmalloc_fault where the era has it)."""
        p = self.proc(i)
        a, pages = self.vmallocs[j % len(self.vmallocs)]
        assert self.k.read(a, 1, process=p) == self.k.read(a + pages * PAGE - 1, 1, process=p)

    @precondition(lambda self: self.procs and len(self.procs) < MAX_PROCS)
    @rule(i=st.integers(0, 1000))
    def fork(self, i):
        p = self.proc(i)
        c = self.k.fork(p)
        self._track_new(c, dict(self.pages[p.pid]), dict(self.data[p.pid]), set(self.heap[p.pid]),
                        self.brk_end[p.pid])

    @precondition(lambda self: self.procs)
    @rule(i=st.integers(0, 1000))
    def exit_mm(self, i):
        p = self.proc(i)
        self.k.exit_mm(p)
        self.procs.remove(p)
        for d in (self.pages, self.data, self.heap, self.brk_end):
            del d[p.pid]
        assert self.k.current is not p

    @rule(i=st.integers(0, 1000), none=st.booleans())
    def switch_to(self, i, none):
        p = None if none or not self.procs else self.proc(i)
        self.k.switch_to(p)
        assert self.k.current is p


class Everything(KernelRules, UserRules):
    pass


def machine_test(name, spec, rules=Everything, examples=8, steps=40):
    cls = type(f"Machine_{name}", (rules,), {"SPEC": spec})
    test = cls.TestCase
    # no shrinking: a failure is reported as found (shrinking these machines takes minutes)
    test.settings = settings(max_examples=examples, stateful_step_count=steps, deadline=None, derandomize=True,
                             phases=[Phase.explicit, Phase.reuse, Phase.generate],
                             suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    return test


# the classic and modern eras of each arch; HIGHPTE and vmalloc_fault where they exist
TestI386Modern = machine_test("i386_6_6", dict(arch="i386", kernel="6.6", ram="1G"))
TestI386Classic = machine_test("i386_2_6_12", dict(arch="i386", kernel="2.6.12", ram="1G"))
TestI386NoHighpte = machine_test("i386_3_10", dict(arch="i386", kernel="3.10", ram="1G", options={"HIGHPTE": "n"}))
TestPae = machine_test("pae_3_10", dict(arch="i386_pae", kernel="3.10", ram="1G"))
TestPaeModern = machine_test("pae_6_6", dict(arch="i386_pae", kernel="6.6", ram="2G"))  # PTI: kernel pmds per pgd
# PTI's per-pgd kernel pmds kept in step lazily (vmalloc_fault at the pmd level, before 5.8)
TestPaePtiVmallocFault = machine_test("pae_4_19", dict(arch="i386_pae", kernel="4.19", ram="1G"))
TestX86_64Modern = machine_test("x86_64_6_6", dict(arch="x86_64", kernel="6.6", ram="512M"))
TestX86_64VmallocFault = machine_test("x86_64_4_14", dict(arch="x86_64", kernel="4.14", ram="512M"))

# user memory alone, longer runs: mmap/munmap/mprotect/brk/fork/exit with accesses
TestUserI386 = machine_test("user_i386_6_6", dict(arch="i386", kernel="6.6", ram="1G"), UserRules, 10, 60)
TestUserPae = machine_test("user_pae_2_6_25", dict(arch="i386_pae", kernel="2.6.25", ram="1G"), UserRules, 10, 60)
TestUserPaePti = machine_test("user_pae_6_6", dict(arch="i386_pae", kernel="6.6", ram="1G"), UserRules, 10, 60)
TestUserX86_64 = machine_test("user_x86_64_6_6", dict(arch="x86_64", kernel="6.6", ram="512M"), UserRules, 10, 60)
