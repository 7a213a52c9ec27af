"""The page-fault path: SIGSEGV for bad user accesses, the oops of each era for bad kernel
accesses, vmalloc_fault where the era has it, and the mmemu_handle_fault hook.

Expected texts are written out from the kernel sources of each era
(arch/i386/mm/fault.c 2.6.12, arch/x86_64/mm/fault.c 2.6.12, arch/x86/mm/fault.c 3.10,
4.14 and 5.10+, arch/x86/kernel/dumpstack.c), and the page-table values they print are
read straight from emulated physical memory here, not through mmemu's walker.
"""

from __future__ import annotations

import pytest

import mmemu
from mmemu.errors import MmemuError, Oops, SegmentationFault
from mmemu.kernel import MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE, PROT_EXEC, PROT_READ, FaultResolution
from mmemu.plugins import get_plugin_manager

PAGE = 4096
P, RW, US, PS = 0x1, 0x2, 0x4, 0x80
ADDR = {"i386": 0xFFFFF000, "i386_pae": 0x000FFFFFFFFFF000, "x86_64": 0x000FFFFFFFFFF000}
# x86 error code bits
PF_PROT, PF_WRITE, PF_USER, PF_INSTR = 1, 2, 4, 16


def x86_fault(k, address, code, process):
    """The fault an x86 CPU would report with this error code (CR2 = address)."""
    f = k.codec.fault_from_code(address, code)
    f.process = process
    return f


def boot(arch, kernel, ram="1G", **kw):
    return mmemu.boot(arch=arch, kernel=kernel, ram=ram, **kw)


def entry(k, table, index, size):
    return int.from_bytes(k.mem.read(table + index * size, size), "little")


def lowmem_end(k) -> int:
    return k.layout["high_memory"] - k.layout["PAGE_OFFSET"]


def kver(k) -> tuple[int, ...]:
    v = k.spec.kernel
    return (v.major, v.minor, v.patch)


def walk_line(k, root, va) -> str:
    """dump_pagetable() of the era, from the raw entries."""
    arch = k.spec.arch
    kv = kver(k)
    if arch == "x86_64":
        parts = []
        table = root
        for shift, name in ((39, "PGD"), (30, "PUD"), (21, "PMD"), (12, "PTE")):
            raw = entry(k, table, (va >> shift) & 511, 8)
            parts.append(f"{name} {raw:x}")
            if name == "PGD" and kv >= (4, 12):
                parts.append(f"P4D {raw:x}")  # folded: p4d_offset() is the pgd entry
            if name == "PTE" or not raw & P or raw & PS:
                break
            table = raw & ADDR[arch]
        # "PGD %lx " ... "PMD %lx " "PTE %lx" "\n"
        return " ".join(parts) + ("" if parts[-1].startswith("PTE") else " ")
    if arch == "i386":
        pde = entry(k, root, va >> 22, 4)
        lines = [f"*pde = {pde:08x}"]
        if kv < (2, 6, 26):  # 2.6.12: one printk per entry; no *pte with CONFIG_HIGHPTE
            if pde & P and not k.highpte:
                lines.append(f"*pte = {entry(k, pde & ADDR[arch], (va >> 12) & 1023, 4):08x}")
            return "\n".join(lines)
        if pde & P and not pde & PS and (pde & ADDR[arch]) < lowmem_end(k):
            lines.append(f"*pte = {entry(k, pde & ADDR[arch], (va >> 12) & 1023, 4):08x}")
        return " ".join(lines) + " "
    # PAE, 2.6.26+
    pdpt = entry(k, root, va >> 30, 8)
    parts = [f"*pdpt = {pdpt:016x}"]
    if pdpt & P:
        pde = entry(k, pdpt & ADDR[arch], (va >> 21) & 511, 8)
        parts.append(f"*pde = {pde:016x}")
        if pde & P and not pde & PS and (pde & ADDR[arch]) < lowmem_end(k):
            parts.append(f"*pte = {entry(k, pde & ADDR[arch], (va >> 12) & 511, 8):016x}")
    return " ".join(parts) + " "


def guard_page(k) -> int:
    """A vmalloc guard page: unmapped, inside the vmalloc space."""
    a = k.vmalloc(PAGE)
    assert not k.walk(a + PAGE).mapped
    return a + PAGE


# -- SIGSEGV --------------------------------------------------------------------------------

SEGV_LINES = [
    # (arch, kernel, the show_signal_msg line of a user read at 0x1000 with ip = sp = 0)
    ("x86_64", "6.6", "a.out[{pid}]: segfault at 1000 ip 0000000000000000 sp 0000000000000000 error 4"
                      " likely on CPU 0 (core 0, socket 0)"),
    ("i386", "6.6", "a.out[{pid}]: segfault at 1000 ip 00000000 sp 00000000 error 4 likely on CPU 0 (core 0, socket 0)"),
    ("x86_64", "5.10", "a.out[{pid}]: segfault at 1000 ip 0000000000000000 sp 0000000000000000 error 4"),
    ("i386", "3.10", "a.out[{pid}]: segfault at 1000 ip 00000000 sp 00000000 error 4"),
    ("x86_64", "3.10", "a.out[{pid}]: segfault at 1000 ip 0000000000000000 sp 0000000000000000 error 4"),
    ("x86_64", "2.6.12", "a.out[{pid}]: segfault at 0000000000001000 rip 0000000000000000 rsp 0000000000000000 error 4"),
]


@pytest.mark.parametrize("arch, kernel, line", SEGV_LINES)
def test_user_fault_outside_any_vma_is_sigsegv_with_the_eras_line(arch, kernel, line):
    k = boot(arch, kernel)
    try:
        k.create_process("init")
        p = k.create_process("a.out")
        vmas = [(v.vm_start, v.vm_end) for v in p.vmas]
        with pytest.raises(SegmentationFault) as exc:
            k.read(0x1000, 1, user=True, process=p)
        assert exc.value.report == line.format(pid=p.pid)
        assert exc.value.signal == 11
        # the stack does not grow 8 MiB and more (RLIMIT_STACK) down to the address
        assert [(v.vm_start, v.vm_end) for v in p.vmas] == vmas
        k.check_invariants()
    finally:
        k.close()


def test_2612_i386_logs_no_segfault_line():
    k = boot("i386", "2.6.12")
    try:
        p = k.create_process("a.out")
        with pytest.raises(SegmentationFault) as exc:
            k.read(0x1000, 1, user=True, process=p)
        assert "segfault at" not in exc.value.report
    finally:
        k.close()


@pytest.mark.parametrize("arch, kernel, err", [("x86_64", "6.6", 5), ("i386", "3.10", 5), ("x86_64", "2.6.12", 4)])
def test_user_access_to_a_kernel_address(arch, kernel, err):
    """A user access above TASK_SIZE: SIGSEGV, reported as a protection fault since
    3.x (``if (address >= TASK_SIZE) error_code |= PF_PROT``)."""
    k = boot(arch, kernel)
    try:
        p = k.create_process("a.out")
        g = guard_page(k)
        with pytest.raises(SegmentationFault) as exc:
            k.read(g, 1, user=True, process=p)
        shown = f"segfault at {g:016x} rip" if kernel == "2.6.12" else f"segfault at {g:x} ip"
        assert shown in exc.value.report and exc.value.report.endswith(
            f" error {err}" + (" likely on CPU 0 (core 0, socket 0)" if kernel == "6.6" else ""))
        # a present kernel page: the CPU itself says P|U (5)
        with pytest.raises(SegmentationFault) as exc:
            k.read(k.layout["PAGE_OFFSET"] + 0x100000, 1, user=True, process=p)
        assert " error 5" in exc.value.report
    finally:
        k.close()


@pytest.mark.parametrize("arch", ["i386", "i386_pae", "x86_64"])
def test_write_to_a_read_only_vma_is_segv_accerr(arch):
    k = boot(arch, "6.6")
    try:
        p = k.create_process("a.out")
        ro = k.mmap(p, None, 2 * PAGE, PROT_READ)
        # not present yet: the error code is user|write (6)
        res = k.handle_page_fault(x86_fault(k, ro, PF_USER | PF_WRITE, p))
        assert (res.action, res.how) == ("sigsegv", "SEGV_ACCERR")
        with pytest.raises(SegmentationFault) as exc:
            k.write(ro, b"x", user=True, process=p)
        assert f"segfault at {ro:x} " in exc.value.report and " error 6" in exc.value.report
        # present (the zero page after a read): user|write|protection (7)
        assert k.read(ro + PAGE, 1, user=True, process=p) == b"\0"
        with pytest.raises(SegmentationFault) as exc:
            k.write(ro + PAGE, b"x", user=True, process=p)
        assert " error 7" in exc.value.report
        # outside every VMA: SEGV_MAPERR
        res = k.handle_page_fault(x86_fault(k, ro - 16 * PAGE, PF_USER, p))
        assert (res.action, res.how) == ("sigsegv", "SEGV_MAPERR")
        # a fetch from a readable, non-executable page: SEGV_ACCERR as well
        if arch != "i386":
            res = k.handle_page_fault(x86_fault(k, ro + PAGE, PF_USER | PF_INSTR | PF_PROT, p))
            assert (res.action, res.how) == ("sigsegv", "SEGV_ACCERR")
        k.check_invariants()
    finally:
        k.close()


# -- oops ---------------------------------------------------------------------------------

OOPS_MACHINES = [("x86_64", "6.6"), ("x86_64", "5.10"), ("i386", "6.6"), ("i386_pae", "6.6"),
                 ("i386", "3.10"), ("x86_64", "3.10"), ("x86_64", "4.14"), ("i386", "2.6.12"),
                 ("x86_64", "2.6.12")]


def expected_head(k, g, err=0x2, kind="paging request") -> list[str]:
    """The first lines of the oops for a kernel access at g (ip 0), as each era prints them."""
    kv = kver(k)
    b64 = k.spec.arch == "x86_64"
    w = 16 if b64 else 8
    null = g < PAGE
    if kv < (2, 6, 26):
        what = "NULL pointer dereference" if null else "paging request"
        if b64:
            return [f"Unable to handle kernel {what} at {g:016x} RIP: ", f"[<{0:016x}>]"]
        return [f"Unable to handle kernel {what} at virtual address {g:08x}", " printing eip:", f"{0:08x}"]
    if kv < (5, 2):
        what = "NULL pointer dereference" if null else "paging request"
        return [f"BUG: unable to handle kernel {what} at {g:0{w}x}"]  # then the IP: line
    access = {0: "read access", 2: "write access", 0x10: "instruction fetch"}[err & (PF_WRITE | PF_INSTR)]
    reason = "permissions violation" if err & PF_PROT else "not-present page"
    first = (f"BUG: kernel NULL pointer dereference, address: {g:0{w}x}" if null
             else f"BUG: unable to handle page fault for address: {g:0{w}x}")
    return [first, f"#PF: supervisor {access} in kernel mode", f"#PF: error_code(0x{err:04x}) - {reason}"]


def check_oops(k, report, g, root, err=0x2, counter=1):
    lines = report.splitlines()
    head = expected_head(k, g, err)
    assert lines[:len(head)] == head
    rest = lines[len(head):]
    kv = kver(k)
    if (2, 6, 26) <= kv < (4, 15):
        ip_line = rest.pop(0)
        w = 16 if k.spec.arch == "x86_64" else 8
        if kv < (4, 14):
            assert ip_line.startswith(f"IP: [<{0:0{w}x}>]")  # " [<%p>] %pB" after "IP:"
        else:
            assert ip_line.startswith("IP: ") and "[<" not in ip_line  # "IP: %pS"
    dump = walk_line(k, root, g).split("\n")
    assert rest[:len(dump)] == dump
    header = rest[len(dump)]
    if kv < (2, 6, 26) and k.spec.arch == "x86_64":
        assert header.startswith(f"Oops: {err:04x} [{counter}] ")  # x86_64 __die: "[%u]"
    else:
        assert header.startswith(f"Oops: {err:04x} [#{counter}]")
    if kv >= (2, 6, 26) or k.spec.arch == "x86_64":
        assert f"CR2: {g:016x}" in lines  # "CR2: %016lx", on i386 too


@pytest.mark.parametrize("arch, kernel", OOPS_MACHINES)
def test_kernel_write_to_an_unmapped_kernel_address_oopses_in_the_eras_words(arch, kernel):
    k = boot(arch, kernel)
    try:
        g = guard_page(k)
        with pytest.raises(Oops) as exc:
            k.write(g, b"x")
        check_oops(k, exc.value.report, g, k.pgd)
        # the emulator stays usable: the next oops is the second one, state is sound
        k.check_invariants()
        a = k.vmalloc(3 * PAGE)
        k.write(a, b"abc")
        assert k.read(a, 3) == b"abc"
        with pytest.raises(Oops) as exc:
            k.read(g, 1)
        check_oops(k, exc.value.report, g, k.pgd, err=0, counter=2)
        k.vfree(a)
        k.check_invariants()
    finally:
        k.close()


@pytest.mark.parametrize("arch, kernel", [("i386", "2.6.12"), ("i386", "6.6")])
def test_oops_page_table_line_without_highpte(arch, kernel):
    """Without CONFIG_HIGHPTE 2.6.12 prints the *pte line too (its own line)."""
    k = boot(arch, kernel, options={"HIGHPTE": "n"})
    try:
        g = guard_page(k)
        with pytest.raises(Oops) as exc:
            k.write(g, b"x")
        check_oops(k, exc.value.report, g, k.pgd)
        assert "*pte = 00000000" in exc.value.report
    finally:
        k.close()


@pytest.mark.parametrize("arch, kernel", OOPS_MACHINES)
def test_null_pointer_wording(arch, kernel):
    k = boot(arch, kernel)
    try:
        with pytest.raises(Oops) as exc:
            k.read(0x10, 4)  # no current process: a kernel thread
        check_oops(k, exc.value.report, 0x10, k.pgd, err=0)
        # in a process: the same (the address is in no VMA)
        p = k.create_process("a.out")
        k.mmap(p, None, PAGE)
        with pytest.raises(Oops) as exc:
            k.write(0x20, b"\0", process=p)
        assert exc.value.report.splitlines()[0] == expected_head(k, 0x20)[0]
        # from user mode it is a plain SIGSEGV, never an oops
        with pytest.raises(SegmentationFault):
            k.read(0x10, 1, user=True, process=p)
    finally:
        k.close()


def test_kernel_write_to_read_only_kernel_memory_is_a_permissions_violation():
    k = boot("x86_64", "6.6")
    try:
        text = next(s for s in k.layout.image if s.name == "text")
        with pytest.raises(Oops) as exc:
            k.write(text.virt + 0x1000, b"\xcc")
        check_oops(k, exc.value.report, text.virt + 0x1000, k.pgd, err=0x3)
    finally:
        k.close()


def test_kernel_fetch_from_an_nx_page():
    k = boot("x86_64", "6.6")
    try:
        a = k.vmalloc(PAGE)  # PAGE_KERNEL: NX
        with pytest.raises(Oops) as exc:
            k.access(a, "exec")
        report = exc.value.report.splitlines()
        assert report[0] == "kernel tried to execute NX-protected page - exploit attempt? (uid: 0)"
        assert report[1:4] == expected_head(k, a, err=0x11)
    finally:
        k.close()


def test_user_mode_access_in_a_kernel_thread_is_refused():
    k = boot("x86_64", "6.6")
    try:
        with pytest.raises(MmemuError):
            k.read(0x1000, 1, user=True)  # no process: no user address space
    finally:
        k.close()


# -- vmalloc_fault --------------------------------------------------------------------------


def _top(k):
    return {"i386": (22, 1024, 4), "i386_pae": (30, 4, 8), "x86_64": (39, 512, 8)}[k.spec.arch]


def _vmalloc_until_new_top_entry(k, limit=4000):
    """vmalloc pages until the master gets a new top-level entry; returns (address,
    index of the entry)."""
    shift, n, size = _top(k)
    before = [entry(k, k.pgd, i, size) for i in range(n)]
    for _ in range(limit):
        a = k.vmalloc(PAGE)
        idx = (a >> shift) & (n - 1)
        if entry(k, k.pgd, idx, size) != before[idx]:
            return a, idx
    raise AssertionError("no vmalloc needed a new top-level entry")


@pytest.mark.parametrize("arch, kernel", [("i386", "3.10"), ("x86_64", "4.14"), ("i386", "2.6.12"),
                                          ("x86_64", "2.6.12"), ("x86_64", "3.10")])
def test_vmalloc_fault_copies_the_missing_top_level_entry(arch, kernel):
    k = boot(arch, kernel)
    try:
        shift, n, size = _top(k)
        p = k.create_process("old")
        a, idx = _vmalloc_until_new_top_entry(k)
        master = entry(k, k.pgd, idx, size)
        assert master & P
        assert entry(k, p.pgd, idx, size) == 0, "the process was created before the entry existed"
        k.check_invariants()  # allowed: vmalloc_fault will copy it
        # a kernel access in the process (its CR3) copies the entry and succeeds
        k.switch_to(p)
        seq = k.event_seq
        k.write(a, b"vm")
        assert k.read(a, 2) == b"vm"
        assert entry(k, p.pgd, idx, size) == master
        writers = [e.writer for e in k.recent_events if e.seq > seq]
        assert writers.count("vmalloc_fault") == 1
        # processes made now get it from pgd_alloc
        q = k.create_process("new")
        assert entry(k, q.pgd, idx, size) == master
        k.check_invariants()
    finally:
        k.close()


@pytest.mark.parametrize("arch, kernel", [("i386", "3.10"), ("x86_64", "4.14")])
def test_vmalloc_fault_for_an_access_made_in_a_process_that_is_not_current(arch, kernel):
    """An access through the API for a process walks that process's directory; the fault
    it takes is that directory's (its CR3), whatever process is current."""
    k = boot(arch, kernel)
    try:
        shift, n, size = _top(k)
        p1, p2, q = k.create_process("p1"), k.create_process("p2"), k.create_process("q")
        a, idx = _vmalloc_until_new_top_entry(k)
        for current, p in ((None, p1), (q, p2)):
            k.switch_to(current)
            k.write(a, b"k")  # in the current directory (init_mm's for None)
            assert entry(k, p.pgd, idx, size) == 0
            assert k.read(a, 1, process=p) == b"k"
            assert entry(k, p.pgd, idx, size) == entry(k, k.pgd, idx, size)
        assert entry(k, q.pgd, idx, size) == entry(k, k.pgd, idx, size)  # from its own write
        k.check_invariants()
    finally:
        k.close()


@pytest.mark.parametrize("arch, kernel", [("i386", "3.10"), ("x86_64", "4.14"), ("i386", "2.6.12")])
def test_vmalloc_fault_copies_the_entry_even_when_the_page_is_not_mapped(arch, kernel):
    """vmalloc_sync_one() / set_pgd() run before the lower levels of the master are
    checked: a bad access under a missing entry copies it, then oopses, and the oops
    prints the walk of the (now copied) entry."""
    k = boot(arch, kernel)
    try:
        shift, n, size = _top(k)
        p = k.create_process("old")
        a, idx = _vmalloc_until_new_top_entry(k)
        g = a + PAGE  # the guard page, under the same entry
        assert (g >> shift) & (n - 1) == idx and not k.walk(g).mapped
        k.switch_to(p)
        with pytest.raises(Oops) as exc:
            k.write(g, b"x")
        assert entry(k, p.pgd, idx, size) == entry(k, k.pgd, idx, size)
        check_oops(k, exc.value.report, g, p.pgd)
        # the walk printed is the process's own, through the copied entry
        assert "*pde = 00000000" not in exc.value.report and "PGD 0 " not in exc.value.report
        k.check_invariants()
    finally:
        k.close()


@pytest.mark.parametrize("kernel", ["5.10", "6.6"])
def test_i386_syncs_new_kernel_entries_at_vmalloc_time(kernel):
    """5.8+: arch_sync_kernel_mappings() copies a new pde into every page directory when
    vmalloc makes it (32-bit keeps vmalloc_fault from 5.9, but it is not needed here)."""
    k = boot("i386", kernel)
    try:
        shift, n, size = _top(k)
        p = k.create_process("old")
        seq = k.event_seq
        a, idx = _vmalloc_until_new_top_entry(k)
        assert entry(k, p.pgd, idx, size) == entry(k, k.pgd, idx, size) != 0
        assert "arch_sync_kernel_mappings" in [e.writer for e in k.recent_events if e.seq > seq]
        k.switch_to(p)
        seq = k.event_seq
        k.write(a, b"x")
        assert "vmalloc_fault" not in [e.writer for e in k.recent_events if e.seq > seq]
        k.check_invariants()
    finally:
        k.close()


@pytest.mark.parametrize("kernel", ["5.10", "6.6"])
def test_x86_64_preallocates_the_vmalloc_top_level_entries(kernel):
    """5.8+ (preallocate_vmalloc_pages): every pgd entry of the vmalloc space exists at
    boot, so no vmalloc ever changes the top level and nothing needs syncing."""
    k = boot("x86_64", kernel)
    try:
        vs, ve = k.layout["VMALLOC_START"], k.layout["VMALLOC_END"]
        indexes = range((vs >> 39) & 511, ((ve >> 39) & 511) + 1)
        assert all(entry(k, k.pgd, i, 8) & P for i in indexes)
        p = k.create_process("old")
        master = [entry(k, k.pgd, i, 8) for i in range(512)]
        addrs = [k.vmalloc(64 * PAGE) for _ in range(40)]
        assert [entry(k, k.pgd, i, 8) for i in range(512)] == master
        k.switch_to(p)
        seq = k.event_seq
        for a in addrs:
            k.write(a, b"x")
        assert not [e for e in k.recent_events if e.seq > seq and e.writer in ("vmalloc_fault",
                                                                                "arch_sync_kernel_mappings")]
        k.check_invariants()
    finally:
        k.close()


def test_pae_shares_the_kernel_pmd():
    """PAE (SHARED_KERNEL_PMD): the kernel's pdpt entry points at the one kernel pmd, so a
    vmalloc anywhere is seen by every process at once."""
    k = boot("i386_pae", "3.10")
    try:
        p = k.create_process("old")
        assert entry(k, p.pgd, 3, 8) == entry(k, k.pgd, 3, 8)
        a = k.vmalloc(600 * PAGE)  # more than one pmd entry's 2 MiB
        k.switch_to(p)
        seq = k.event_seq
        k.write(a + 599 * PAGE, b"x")
        assert "vmalloc_fault" not in [e.writer for e in k.recent_events if e.seq > seq]
    finally:
        k.close()


# -- the mmemu_handle_fault hook ------------------------------------------------------------


class Recorder:
    def __init__(self):
        self.faults = []

    @mmemu.hookimpl
    def mmemu_handle_fault(self, kernel, fault):
        self.faults.append((fault.address, fault.code, fault.source, fault.process.pid if fault.process else 0))
        return None


class Answer:
    def __init__(self, resolution):
        self.resolution = resolution
        self.calls = 0

    @mmemu.hookimpl
    def mmemu_handle_fault(self, kernel, fault):
        self.calls += 1
        return self.resolution


class Mapper:
    """Resolves a user fault itself: maps its own frame at the page."""

    def __init__(self):
        self.frames = []

    @mmemu.hookimpl
    def mmemu_handle_fault(self, kernel, fault):
        if not fault.user:
            return None
        page = kernel.alloc_pages(0, "Normal", owner="plugin page", zero=True)
        kernel.mem.write(page.phys, b"plugin!")
        self.frames.append(page.pfn)
        prot = kernel.arch.pgprot["PAGE_SHARED"]
        kernel.pgtable.set_pte(fault.process.pgd, fault.address, page.phys | prot, writer="plugin", user_tables=True)
        return FaultResolution("retry", "plugin")


def test_fault_hook_sees_every_fault():
    rec = Recorder()
    pm = get_plugin_manager(plugins=[rec])
    k = mmemu.boot(arch="x86_64", kernel="6.6", ram="1G", plugin_manager=pm)
    try:
        p = k.create_process("a.out")
        a = k.mmap(p, None, 2 * PAGE)
        k.read(a, 1, user=True)  # not present: 4
        k.write(a, b"x", user=True)  # the zero page, read-only: 7
        k.write(a + PAGE, b"y", user=True)  # not present: 6
        with pytest.raises(SegmentationFault):
            k.read(0x1000, 1, user=True)
        g = guard_page(k)
        with pytest.raises(Oops):
            k.write(g, b"z")
        assert rec.faults == [(a, 4, "api", p.pid), (a, 7, "api", p.pid), (a + PAGE, 6, "api", p.pid),
                              (0x1000, 4, "api", p.pid), (g, 2, "api", p.pid)]
        assert k.fault_count == 5
        k.check_invariants()
    finally:
        k.close()


def test_fault_hook_first_result_wins():
    # pluggy calls the last registered implementation first
    first = Answer(FaultResolution("sigsegv", "second-called", "from the plugin called second"))
    second = Answer(FaultResolution("oops", "first-called", "Oops from the plugin called first"))
    pm = get_plugin_manager(plugins=[first, Recorder(), second])
    k = mmemu.boot(arch="i386", kernel="6.6", ram="1G", plugin_manager=pm)
    try:
        p = k.create_process("a.out")
        a = k.mmap(p, None, PAGE)
        with pytest.raises(Oops) as exc:
            k.read(a, 1, user=True)  # the kernel would have mapped the zero page
        assert exc.value.report == "Oops from the plugin called first"
        assert (second.calls, first.calls) == (1, 0)
    finally:
        k.close()


def test_fault_hook_can_resolve_faults_itself():
    mapper, rec = Mapper(), Recorder()
    pm = get_plugin_manager(plugins=[rec, mapper])
    k = mmemu.boot(arch="i386_pae", kernel="6.6", ram="1G", plugin_manager=pm)
    try:
        p = k.create_process("a.out")
        a = k.mmap(p, None, PAGE)
        seq = k.event_seq
        assert k.read(a, 7, user=True) == b"plugin!"
        writers = [e.writer for e in k.recent_events if e.seq > seq]
        assert "plugin" in writers and "do_anonymous_page" not in writers
        assert rec.faults == []  # the mapper answered first: the others are not asked
        assert k.walk(a, p.pgd).phys >> 12 == mapper.frames[0]
        # kernel faults go on to the kernel: mapper returns None, the recorder sees it
        g = guard_page(k)
        with pytest.raises(Oops):
            k.read(g, 1)
        assert rec.faults == [(g, 0, "api", p.pid)]
    finally:
        k.close()


def test_plugin_hook_with_a_wrong_name_is_refused():
    class Misspelt:
        @mmemu.hookimpl
        def mmemu_handle_fualt(self, kernel, fault):
            return None

    with pytest.raises(MmemuError):
        get_plugin_manager(plugins=[Misspelt()])


def test_api_access_that_keeps_faulting_stops():
    """A plugin that claims to have fixed a fault it did not fix: the access gives up
    after a bounded number of faults instead of spinning."""
    pm = get_plugin_manager(plugins=[Answer(FaultResolution("retry", "liar"))])
    k = mmemu.boot(arch="x86_64", kernel="6.6", ram="1G", plugin_manager=pm)
    try:
        p = k.create_process("a.out")
        a = k.mmap(p, None, PAGE)
        with pytest.raises(MmemuError, match="still faults"):
            k.read(a, 1, user=True)
    finally:
        k.close()


@pytest.mark.parametrize("arch", ["i386", "x86_64"])
def test_exec_mapping_fault_on_fetch(arch):
    """A user fetch from an executable VMA with nothing mapped yet is demand paged."""
    k = boot(arch, "6.6")
    try:
        p = k.create_process("a.out")
        x = k.mmap(p, 0x08048000, PAGE, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED)
        k.access(x, "exec", user=True, process=p)
        w = k.walk_mm(x, p, user=True)  # what user mode walks (x86_64 PTI: the user copy)
        assert w.mapped and not w.nx and not w.writable
    finally:
        k.close()
