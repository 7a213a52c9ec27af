"""Each failure reported against mmemu's promises (a clear error, nothing left behind), as it
was reproduced by hand: the call, and what must hold after it. The general checks (every
operation under fault injection, random valid and invalid calls) are in mmemu.testing and
test_failure_stateful.py; these pin the reported cases."""

from __future__ import annotations

import pytest

import mmemu
from mmemu.cpu import Cpu
from mmemu.errors import KernelBug, MmemuError, OutOfMemory
from mmemu.kernel import MAP_ANONYMOUS, MAP_PRIVATE, MAP_SHARED, PROT_READ, PROT_WRITE
from mmemu.testing import kernel_state

PAGE = 4096


@pytest.fixture
def k64(boot):
    return boot(arch="x86_64", kernel="6.6", ram="128M")


def unchanged(k, fn, error=MmemuError, match=None):
    """fn() raises *error* (matching *match*) and the kernel is exactly as before."""
    before = kernel_state(k)
    with pytest.raises(error, match=match):
        fn()
    assert kernel_state(k) == before
    k.check_invariants()


# 3. failed vmalloc / vmap / vmalloc_range leave no slab page; vmalloc(1 TiB) says vmalloc's words
def test_failed_vmallocs_leave_nothing(k64):
    k = k64
    unchanged(k, lambda: k.vmalloc(1 << 40), OutOfMemory, "vmalloc error: size 1099511627776, exceeds total pages")
    page = k.alloc_pages(0, owner="test")
    unchanged(k, lambda: k.vmap([page], prot="PAGE_NOSUCH"), MmemuError, "unknown protection 'PAGE_NOSUCH'")
    vs = k.layout["VMALLOC_START"]
    unchanged(k, lambda: k.vmalloc_range(PAGE, vs, vs + PAGE), OutOfMemory, "vmap allocation for size 8192 failed")
    unchanged(k, lambda: k.vmalloc_range(PAGE, 0x1000, 0x5000), MmemuError, "not inside the vmalloc")


# 4. install_user_pages is all or nothing
def test_install_user_pages_is_all_or_nothing(k64, exhaust):
    k = k64
    p = k.create_process("loader")
    a = k.mmap(p, None, 2 * PAGE, PROT_READ)
    unchanged(k, lambda: k.install_user_pages(p, a, b"x" * (3 * PAGE)), MmemuError, "is in no VMA")
    top = k.task_size - PAGE
    unchanged(k, lambda: k.install_user_pages(p, top, b"x" * (2 * PAGE)), MmemuError, "TASK_SIZE")
    unchanged(k, lambda: k.install_user_pages(p, a, "text"), MmemuError, "data must be bytes")
    held = exhaust(k)
    k.free_page_block(held.pop())  # one frame: the first page fits, its page table does not
    unchanged(k, lambda: k.install_user_pages(p, a, b"x" * (2 * PAGE)), OutOfMemory)


# 5. fork failing for memory leaves no reference and the parent's entries writable
def test_fork_failing_for_memory_undoes_everything(k64, exhaust):
    k = k64
    p = k.create_process("parent")
    a = k.mmap(p, None, 4 * PAGE)
    k.write(a, b"y" * (4 * PAGE), user=True, process=p)
    held = exhaust(k)
    for _ in range(3):
        k.free_page_block(held.pop())
    unchanged(k, lambda: k.fork(p), OutOfMemory)
    assert k.walk_mm(a, p).writable


# 6. a Cpu whose set-up fails for memory gives its frames back
def test_cpu_failing_for_memory_leaks_nothing(k64, exhaust):
    k = k64
    held = exhaust(k)
    k.free_page_block(held.pop())  # the gdt_page fits, the kernel stack does not
    free = k.frames.nr_free_pages()
    with pytest.raises(OutOfMemory):
        Cpu(k)
    assert k.frames.nr_free_pages() == free and not k.cpus


# 7. set_fixmap with a physical address out of range: a clear error, the slot as it was
def test_set_fixmap_refuses_what_it_cannot_map(k64):
    k = k64
    page = k.alloc_pages(0, owner="test")
    k.set_fixmap("FIX_APIC_BASE", page.phys)
    unchanged(k, lambda: k.set_fixmap("FIX_APIC_BASE", 1 << 52), MmemuError, "outside the 40-bit physical")
    unchanged(k, lambda: k.set_fixmap("FIX_APIC_BASE", -PAGE), MmemuError, "outside")
    unchanged(k, lambda: k.set_fixmap("FIX_APIC_BASE", 4096.0), MmemuError, "must be an int")
    assert k.walk(k.fix_to_virt("FIX_APIC_BASE")).phys == page.phys


# 8. __free_pages with a float pfn changes nothing
def test_free_pages_with_a_float_changes_nothing(k64):
    k = k64
    page = k.alloc_pages(0, owner="test")
    unchanged(k, lambda: k.free_page_block(float(page.pfn)), MmemuError, "not a page frame number|must be an int")
    unchanged(k, lambda: k.free_page_block(page.pfn, 0.0), MmemuError, "must be an int")


# 9. a KernelBug raised in the fault path keeps no page table
def test_a_bug_in_the_fault_path_keeps_nothing(k64):
    k = k64
    p = k.create_process("bug")
    a = k.mmap(p, None, PAGE)

    class Buggy:
        @mmemu.hookimpl
        def mmemu_handle_fault(self, kernel, fault):
            kernel.pte_lookup(fault.process, fault.address, alloc=True)  # allocates the page table
            raise kernel.BUG("test", "a bug after a page table was allocated")

    buggy = Buggy()
    k.pm.register(buggy)  # the plugin manager is the process's: every kernel would see it
    try:
        unchanged(k, lambda: k.access(a, "write", user=True, process=p), KernelBug)
    finally:
        k.pm.unregister(buggy)


# 10. operations on an exited process are refused
def test_an_exited_process_is_refused(k64):
    k = k64
    p = k.create_process("gone")
    a = k.mmap(p, None, PAGE)
    k.exit_mm(p)
    for call in (lambda: k.fork(p), lambda: k.mmap(p, None, PAGE), lambda: k.brk(p, p.brk + PAGE),
                 lambda: k.access(a, "read", user=True, process=p), lambda: k.munmap(p, a, PAGE),
                 lambda: k.mprotect(p, a, PAGE, PROT_READ), lambda: k.exit_mm(p), lambda: k.switch_to(p)):
        unchanged(k, call, MmemuError, "has exited")


# 11. negative and out-of-range user addresses and lengths are refused
def test_wild_user_ranges_are_refused(k64):
    k = k64
    p = k.create_process("wild")
    unchanged(k, lambda: k.mmap(p, -PAGE, PAGE, flags=MAP_PRIVATE | MAP_ANONYMOUS | 0x10), MmemuError, "negative")
    unchanged(k, lambda: k.munmap(p, -PAGE, PAGE), MmemuError, "negative")
    unchanged(k, lambda: k.mprotect(p, k.task_size, PAGE, PROT_READ), MmemuError, "TASK_SIZE")
    unchanged(k, lambda: k.mmap(p, None, 1 << 60), OutOfMemory, "more than the user address space")
    unchanged(k, lambda: k.munmap(p, 0, -PAGE), MmemuError, "length must be positive")
    k.exit_mm(p)  # the process can still exit
    k.check_invariants()


# 12. unknown bits, both map types before 4.15, bad access names, wrong types: mmemu's errors
def test_malformed_arguments_get_mmemu_errors(k64, boot):
    k = k64
    p = k.create_process("bad")
    a = k.mmap(p, None, PAGE)
    unchanged(k, lambda: k.mprotect(p, a, PAGE, 0x40), MmemuError, "unknown protection bits 0x40")
    unchanged(k, lambda: k.access(a, "rw", user=True, process=p), MmemuError, "access must be")
    unchanged(k, lambda: k.vmalloc("4096"), MmemuError, "size must be an int, not str")
    unchanged(k, lambda: k.mmap(p, None, PAGE, prot="rw"), MmemuError, "prot must be an int, not str")
    unchanged(k, lambda: k.kmalloc(None), MmemuError, "size must be an int, not NoneType")
    both = MAP_SHARED | MAP_PRIVATE | MAP_ANONYMOUS
    old = boot(arch="x86_64", kernel="4.14", ram="128M")
    q = old.create_process("old")
    unchanged(old, lambda: old.mmap(q, None, PAGE, PROT_READ | PROT_WRITE, both), MmemuError, "-EINVAL before")
    shared = k.mmap(p, None, PAGE, flags=both)  # 4.15+: MAP_SHARED_VALIDATE, a shared mapping
    assert p.vma_at(shared).perms().endswith("s")


# 13. a fixmap of a frame the allocator owns is refused
def test_set_fixmap_of_free_ram_is_refused(k64):
    k = k64
    free_pfn = next(pfn for pfn in range(0x100, 0x8000) if k.frames.page(pfn).state == "free")
    unchanged(k, lambda: k.set_fixmap("FIX_APIC_BASE", free_pfn << 12), MmemuError, "free RAM")


def test_the_fault_injection_suite_covers_every_public_operation():
    """mmemu.testing.failure_operations (what check_failure_safety injects failures into, on
    every arch) calls every operation of the kernel model's API, over the three eras of
    atomic kmaps (named KM_* slots, a per-CPU stack, kmap_local)."""
    from mmemu.kernel import Kernel
    from mmemu.testing import failure_operations

    public = {n for n in dir(Kernel) if getattr(getattr(Kernel, n), "kernel_operation", False)}
    seen = set()
    for kernel in ("2.6.30", "3.10", "6.6"):
        k = mmemu.boot(arch="i386", kernel=kernel, ram="1G")
        depth = [0]

        def recording(name, fn):
            def call(*args, **kwargs):
                if depth[0] == 0:
                    seen.add(name)
                depth[0] += 1
                try:
                    return fn(*args, **kwargs)
                finally:
                    depth[0] -= 1
            return call

        for name in public:
            setattr(k, name, recording(name, getattr(k, name)))
        for _name, setup, action in failure_operations(k):
            depth[0] += 1  # what the setups call does not count
            try:
                arg = setup(k) if setup else None
            finally:
                depth[0] -= 1
            action(k, arg)
        k.check_invariants()
        k.close()
    # the aliases the kernel has two names for (__free_pages, __get_free_pages) count once;
    # handle_page_fault answers an allocation failure (VM_FAULT_OOM) instead of raising: it
    # is covered through access() (below for its own answer)
    aliases = {n for n in public if getattr(Kernel, n) in {getattr(Kernel, m) for m in seen}}
    assert public - seen - aliases == {"handle_page_fault"}


def test_a_fault_that_finds_no_memory_is_answered_and_keeps_the_kernel_consistent(k64):
    """handle_page_fault with the page allocation failing: the kernel's answer
    (pagefault_out_of_memory: the OOM killer's line), not an exception; what the fault did
    before the failure (the page table it allocated) stays, as in the kernel, and the
    invariants hold; the same fault then succeeds."""
    k = k64
    p = k.create_process("oom")
    a = k.mmap(p, None, PAGE)
    fault = k.pgtable.walk(p.pgd, a).fault("write", True)
    fault.process = p
    for n in (1, 2):  # the page table, then the page
        k.inject_failures(page=n)
        try:
            res = k.handle_page_fault(fault)
        finally:
            k.stop_injecting()
        assert res.action == "oom" and "Killed process" in res.report, res
        k.check_invariants()
    assert k.handle_page_fault(fault).action == "retry"
    assert k.walk_mm(a, p).phys is not None
    k.check_invariants()
