"""Code on the CPU: kernel functions at CPL 0, user programs at CPL 3, demand faults and
copy-on-write taken by running code, oopses and SIGSEGV, runaway code, back-to-back
faults (Unicorn issue #1883), and the TLB: a missing flush shows as a stale translation.

The machine code is written by hand below; every branch offset is worked out in a comment
and checked by the assembler helpers (``rel8``).
"""

from __future__ import annotations

import struct
import time

import pytest
from unicorn import UC_HOOK_INTR

import mmemu
from mmemu.cpu import Cpu
from mmemu.errors import MmemuError
from mmemu.kernel import MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE, PROT_EXEC, PROT_READ, PROT_WRITE

PAGE = 4096
ARCHES = ["i386", "i386_pae", "x86_64"]
MMUS = ["cpu", "plugin"]
RAM = {"i386": "1G", "i386_pae": "2G", "x86_64": "1G"}
ADDR = {"i386": 0xFFFFF000, "i386_pae": 0x000FFFFFFFFFF000, "x86_64": 0x000FFFFFFFFFF000}
LEVELS = {"i386": [(22, 1024, 4), (12, 1024, 4)],
          "i386_pae": [(30, 4, 8), (21, 512, 8), (12, 512, 8)],
          "x86_64": [(39, 512, 8), (30, 512, 8), (21, 512, 8), (12, 512, 8)]}


def rel8(at: int, target: int) -> int:
    """The rel8 byte of a 2-byte short jump at offset *at* to *target*."""
    rel = target - (at + 2)
    assert -128 <= rel <= 127
    return rel & 0xFF


def imm(value: int, size: int) -> str:
    return value.to_bytes(size, "little").hex()


def raw_pte_phys(k, root: int, va: int) -> int | None:
    """Physical address of *va* through the raw entries (no large pages in user space)."""
    arch = k.spec.arch
    table = root
    for shift, n, size in LEVELS[arch]:
        raw = int.from_bytes(k.mem.read(table + ((va >> shift) & (n - 1)) * size, size), "little")
        if not raw & 1:
            return None
        if raw & 0x80 and not (arch == "i386_pae" and shift == 30) and shift != 12:
            return None
        table = raw & ADDR[arch]
    return table | (va & 0xFFF)


# -- programs -------------------------------------------------------------------------------


def exit_code(bits: int, status: int) -> str:
    if bits == 64:
        return "b83c000000" + "bf" + imm(status, 4) + "0f05"  # mov eax, 60; mov edi, status; syscall
    return "b801000000" + "bb" + imm(status, 4) + "cd80"  # mov eax, 1; mov ebx, status; int 0x80


def touch_program(bits: int, base: int, n: int, value: int = 0x5A, status: int = 0) -> bytes:
    """Store *value* at the first byte of each of *n* pages from *base*, then exit."""
    if bits == 64:
        # 0: mov rbx, base (10)  10: mov rcx, n (10)
        # 20: mov byte [rbx], value (3)  23: add rbx, 0x1000 (7)  30: dec rcx (3)  33: jnz 20
        head = "48bb" + imm(base, 8) + "48b9" + imm(n, 8)
        loop = "c603" + f"{value:02x}" + "4881c300100000" + "48ffc9"
        loop_at, jnz_at = 20, 33
    else:
        # 0: mov ebx, base (5)  5: mov ecx, n (5)
        # 10: mov byte [ebx], value (3)  13: add ebx, 0x1000 (6)  19: dec ecx (1)  20: jnz 10
        head = "bb" + imm(base, 4) + "b9" + imm(n, 4)
        loop = "c603" + f"{value:02x}" + "81c300100000" + "49"
        loop_at, jnz_at = 10, 20
    assert len(bytes.fromhex(head)) == loop_at and len(bytes.fromhex(head + loop)) == jnz_at
    jnz = "75" + f"{rel8(jnz_at, loop_at):02x}"
    assert jnz == ("75f1" if bits == 64 else "75f4")  # -15 / -12, worked out by hand
    return bytes.fromhex(head + loop + jnz + exit_code(bits, status))


def store_program(bits: int, addr: int, value: int) -> tuple[bytes, int]:
    """mov byte [addr], value; exit 0. Returns the code and the offset of the store."""
    if bits == 64:
        return bytes.fromhex("48bb" + imm(addr, 8) + "c603" + f"{value:02x}" + exit_code(64, 0)), 10
    return bytes.fromhex("bb" + imm(addr, 4) + "c603" + f"{value:02x}" + exit_code(32, 0)), 5


LOOP = bytes.fromhex("ebfe")  # 0: jmp 0 (rel8 = 0 - 2 = -2)
assert LOOP[1] == rel8(0, 0)


def kernel_text(k, code: bytes) -> int:
    """Kernel code in vmalloc space, executable (module_alloc)."""
    vs, ve = k.layout["VMALLOC_START"], k.layout["VMALLOC_END"]
    text = k.vmalloc_range(PAGE, vs, ve, prot="PAGE_KERNEL_EXEC", caller="module_alloc")
    k.write(text, code)
    return text


def user_text(k, p, code: bytes, addr: int = 0x08048000) -> int:
    text = k.mmap(p, addr, PAGE, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED)
    k.install_user_pages(p, text, code)
    return text


@pytest.fixture(params=[(a, m) for a in ARCHES for m in MMUS], ids=lambda am: f"{am[0]}-{am[1]}")
def machine(request):
    arch, mmu = request.param
    k = mmemu.boot(arch=arch, kernel="6.6", ram=RAM[arch])
    cpu = Cpu(k, mmu=mmu)
    yield k, cpu
    k.close()


def bits_of(k) -> int:
    return 64 if k.spec.arch == "x86_64" else 32


# -- kernel code at CPL 0 ---------------------------------------------------------------------


def test_kernel_functions_return_values(machine):
    k, cpu = machine
    b64 = bits_of(k) == 64
    # f(x, y) = x - y: the argument order of the calling convention (SysV; i386 regparm(3))
    sub = kernel_text(k, bytes.fromhex("4889f84829f0c3" if b64 else "29d0c3"))
    r = cpu.call(sub, 100, 58)
    assert (r.reason, r.value, r.faults, r.ok) == ("return", 42, 0, True)
    # the last register argument: r9 (sixth) / ecx (third)
    last = kernel_text(k, bytes.fromhex("4c89c8c3" if b64 else "89c8c3"))
    args = [11, 22, 33, 44, 55, 66] if b64 else [11, 22, 33]
    assert cpu.call(last, *args).value == args[-1]
    # a full-width result
    big = 0x1122334455667788 if b64 else 0x89ABCDEF
    ret = kernel_text(k, bytes.fromhex(("48b8" + imm(big, 8) if b64 else "b8" + imm(big, 4)) + "c3"))
    assert cpu.call(ret).value == big
    # memory through vmalloc: return *(long *)arg0
    load = kernel_text(k, bytes.fromhex("488b07c3" if b64 else "8b00c3"))
    buf = k.vmalloc(2 * PAGE)
    k.write(buf + PAGE + 8, (0x0123456789ABCDEF if b64 else 0x01234567).to_bytes(8 if b64 else 4, "little"))
    assert cpu.call(load, buf + PAGE + 8).value == (0x0123456789ABCDEF if b64 else 0x01234567)
    with pytest.raises(MmemuError):
        cpu.call(sub, *range(7 if b64 else 4))
    k.check_invariants()


def test_kernel_code_faulting_on_user_pages_is_demand_paged(machine):
    """copy_to_user-style stores from CPL 0 into the current process's VMA: three demand
    faults in a row (supervisor write, not present: error code 2)."""
    k, cpu = machine
    b64 = bits_of(k) == 64
    if b64:  # mov byte [rdi], 'A'; mov byte [rdi+0x1000], 'B'; mov byte [rdi+0x2000], 'C'; ret
        code = "c60741" + "c68700100000" + "42" + "c68700200000" + "43" + "c3"
    else:  # the same with [eax]
        code = "c60041" + "c68000100000" + "42" + "c68000200000" + "43" + "c3"
    fn = kernel_text(k, bytes.fromhex(code))
    p = k.create_process("a.out")
    a = k.mmap(p, None, 3 * PAGE)
    r = cpu.call(fn, a)
    assert (r.reason, r.faults) == ("return", 3)
    assert [(addr, how) for addr, err, action, how in r.fault_log] == [
        (a, "do_anonymous_page"), (a + PAGE, "do_anonymous_page"), (a + 2 * PAGE, "do_anonymous_page")]
    if cpu.mmu == "cpu":
        assert [err for addr, err, action, how in r.fault_log] == [2, 2, 2]
    assert [k.read(a + i * PAGE, 1, user=True) for i in range(3)] == [b"A", b"B", b"C"]
    k.check_invariants()


def test_kernel_oops_on_a_vmalloc_guard_page(machine):
    k, cpu = machine
    b64 = bits_of(k) == 64
    store = kernel_text(k, bytes.fromhex("c60701c3" if b64 else "c60001c3"))  # *(char *)arg0 = 1
    buf = k.vmalloc(PAGE)
    guard = buf + PAGE
    r = cpu.call(store, guard)
    assert r.reason == "oops" and not r.ok
    lines = r.report.splitlines()
    w = 16 if b64 else 8
    assert lines[:3] == [f"BUG: unable to handle page fault for address: {guard:0{w}x}",
                         "#PF: supervisor write access in kernel mode",
                         "#PF: error_code(0x0002) - not-present page"]
    assert (f"RIP: 0010:0x{store:x}" if b64 else f"EIP: 0x{store:x}") in lines
    assert r.ip == store
    # the CPU and the kernel go on
    r = cpu.call(store, buf)
    assert r.reason == "return" and k.read(buf, 1) == b"\x01"
    r = cpu.call(store, guard)
    assert r.reason == "oops" and "Oops: 0002 [#2]" in r.report
    k.check_invariants()


# -- user code at CPL 3 -----------------------------------------------------------------------


def test_user_code_touching_fresh_pages_faults_once_per_page(machine):
    k, cpu = machine
    n = 64
    p = k.create_process("toucher")
    data = k.mmap(p, None, n * PAGE)
    text = user_text(k, p, touch_program(bits_of(k), data, n))
    free0 = k.frames.nr_free_pages()
    r = cpu.run_user(p, text)
    assert (r.reason, r.value, r.faults) == ("exit", 0, n), r.report
    assert [how for _, _, _, how in r.fault_log] == ["do_anonymous_page"] * n
    assert [addr & ~0xFFF for addr, _, _, _ in r.fault_log] == [data + i * PAGE for i in range(n)]
    assert [err for _, err, _, _ in r.fault_log] == [6] * n  # user write, not present
    for i in range(n):
        assert k.read(data + i * PAGE, 2, user=True) == b"\x5a\x00"
    # n data pages and the page table(s) they needed
    tables = {"i386": 1, "i386_pae": 1, "x86_64": 3}[k.spec.arch]  # x86_64: pud, pmd, pte (the text is under another pgd entry)
    assert free0 - k.frames.nr_free_pages() == n + tables
    # touching them again: no fault at all
    r = cpu.run_user(p, text)
    assert (r.reason, r.faults) == ("exit", 0)
    k.check_invariants()


@pytest.mark.parametrize("arch", ARCHES)
def test_exit_status(arch):
    k = mmemu.boot(arch=arch, kernel="6.6", ram=RAM[arch])
    try:
        cpu = Cpu(k)
        p = k.create_process("exiter")
        text = user_text(k, p, bytes.fromhex(exit_code(bits_of(k), 42)))
        r = cpu.run_user(p, text)
        assert (r.reason, r.value, r.faults) == ("exit", 42, 0)
    finally:
        k.close()


def test_three_faults_in_a_row_arrive_as_page_faults(machine):
    """Unicorn issue #1883: without resetting old_exception the second fault would arrive
    as a double fault (8) and the third would stop the CPU silently."""
    k, cpu = machine
    seen = []
    cpu.uc.hook_add(UC_HOOK_INTR, lambda uc, intno, ud: seen.append(intno))
    p = k.create_process("three")
    data = k.mmap(p, None, 3 * PAGE)
    text = user_text(k, p, touch_program(bits_of(k), data, 3))
    r = cpu.run_user(p, text)
    assert (r.reason, r.value, r.faults) == ("exit", 0, 3)
    if cpu.mmu == "cpu":
        expected = [14, 14, 14] + ([0x80] if bits_of(k) == 32 else [])  # then the exit system call
        assert seen == expected
    else:
        assert 8 not in seen and 14 not in seen  # refused TLB fills, not exceptions
    # and again, many times over
    data2 = k.mmap(p, None, 300 * PAGE)
    text2 = user_text(k, p, touch_program(bits_of(k), data2, 300), addr=0x08050000)
    r = cpu.run_user(p, text2)
    assert (r.reason, r.faults) == ("exit", 300)
    assert 8 not in seen


def test_write_after_fork_breaks_cow_on_the_cpu(machine):
    k, cpu = machine
    parent = k.create_process("parent")
    data = k.mmap(parent, None, PAGE)
    k.write(data, b"P", user=True)
    code, _ = store_program(bits_of(k), data, ord("C"))
    text = user_text(k, parent, code)
    child = k.fork(parent, "child")
    shared = raw_pte_phys(k, parent.pgd, data)
    assert raw_pte_phys(k, child.pgd, data) == shared
    r = cpu.run_user(child, text)
    assert (r.reason, r.faults) == ("exit", 1)
    assert r.fault_log[0][3] == "do_wp_page (copy)"
    assert r.fault_log[0][1] == 7  # user write to a present, read-only page
    assert raw_pte_phys(k, child.pgd, data) != shared
    assert k.read(data, 1, user=True, process=child) == b"C"
    assert k.read(data, 1, user=True, process=parent) == b"P"
    # the parent is alone with the old page now: its write reuses it
    r = cpu.run_user(parent, text)
    assert (r.reason, r.faults) == ("exit", 1)
    assert r.fault_log[0][3] == "do_wp_page (reuse)"
    assert raw_pte_phys(k, parent.pgd, data) == shared
    assert k.read(data, 1, user=True, process=parent) == b"C"
    k.check_invariants()


def test_user_code_touching_an_address_outside_its_vmas_gets_sigsegv(machine):
    k, cpu = machine
    b64 = bits_of(k) == 64
    p = k.create_process("crasher")
    bad = 0x10000000  # page aligned: the plugin MMU reports faults by page
    code, store_at = store_program(bits_of(k), bad, 1)
    text = user_text(k, p, code)
    stack = next(v for v in p.vmas if v.name == "[stack]")
    sp = stack.vm_end - 0x100
    r = cpu.run_user(p, text, sp=sp)
    assert r.reason == "sigsegv" and not r.ok
    w = 16 if b64 else 8
    line, code = r.report.splitlines()
    assert line == (f"crasher[{p.pid}]: segfault at {bad:x} ip {text + store_at:0{w}x} sp {sp:0{w}x} "
                    "error 6 likely on CPU 0 (core 0, socket 0)")
    # show_opcodes (4.18+): the code starts its page, the 42 bytes before the ip are not mapped
    assert code == f"Code: Unable to access opcode bytes at RIP 0x{text + store_at - 42:x}."
    assert r.fault_log[-1][2:] == ("sigsegv", "SEGV_MAPERR")
    # a write into a read-only VMA: SEGV_ACCERR
    ro = k.mmap(p, bad, PAGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED)
    assert ro == bad
    r = cpu.run_user(p, text, sp=sp)
    assert r.reason == "sigsegv" and r.fault_log[-1][2:] == ("sigsegv", "SEGV_ACCERR")
    # and the CPU goes on: make it writable and the same program exits
    k.mprotect(p, bad, PAGE, PROT_READ | PROT_WRITE)
    r = cpu.run_user(p, text, sp=sp)
    assert (r.reason, r.faults) == ("exit", 1)
    assert k.read(bad, 1, user=True, process=p) == b"\x01"


# -- runaway code -----------------------------------------------------------------------------


def test_runaway_kernel_code_stops_on_budget_and_timeout(machine):
    k, cpu = machine
    loop = kernel_text(k, LOOP)
    r = cpu.call(loop, budget=50_000)
    assert r.reason == "budget" and not r.ok
    assert "instruction budget of 50000" in r.report and f"{loop:#x}" in r.report
    t = time.monotonic()
    r = cpu.call(loop, timeout=0.3)
    elapsed = time.monotonic() - t
    assert r.reason == "timeout" and "wall-clock limit of 0.3 s" in r.report
    assert 0.25 <= elapsed < 5
    # the CPU is usable afterwards
    ret = kernel_text(k, bytes.fromhex("b807000000c3"))  # mov eax, 7; ret
    assert cpu.call(ret).value == 7


@pytest.mark.parametrize("mmu", MMUS)
def test_runaway_user_code_stops(mmu):
    k = mmemu.boot(arch="x86_64", kernel="6.6", ram="1G")
    try:
        cpu = Cpu(k, mmu=mmu)
        p = k.create_process("spinner")
        text = user_text(k, p, LOOP)
        r = cpu.run_user(p, text, budget=10_000)
        assert r.reason == "budget" and r.ip == text
        r = cpu.run_user(p, text, timeout=0.2)
        assert r.reason == "timeout" and "wall-clock limit" in r.report
        # code that keeps faulting runs out of the budget too (each fault restarts the
        # CPU; the budget is for the whole run)
        many = k.mmap(p, None, 1000 * PAGE)
        toucher = user_text(k, p, touch_program(64, many, 1000), addr=0x08060000)
        r = cpu.run_user(p, toucher, budget=100)
        assert r.reason == "budget" and 10 <= r.faults <= 25, (r.reason, r.faults)  # 4 instructions a page
        # the next program runs normally
        data = k.mmap(p, None, 2 * PAGE)
        good = user_text(k, p, touch_program(64, data, 2, status=3), addr=0x08050000)
        r = cpu.run_user(p, good)
        assert (r.reason, r.value, r.faults) == ("exit", 3, 2)
    finally:
        k.close()


# -- the TLB ------------------------------------------------------------------------------------


def test_a_missing_flush_shows_as_a_stale_translation(machine):
    k, cpu = machine
    a = k.vmalloc(PAGE)
    old = raw_pte_phys(k, k.pgd, a)
    assert cpu.probe(a).phys == old  # the CPU has cached the translation now
    other = k.alloc_pages(0, "Normal", owner="test", zero=True)
    prot = k.arch.pgprot["PAGE_KERNEL"]
    k.pgtable.set_pte(k.pgd, a, other.phys | prot, writer="behind the kernel's back")  # no flush
    assert raw_pte_phys(k, k.pgd, a) == other.phys
    assert cpu.probe(a).phys == old, "the CPU must still use its cached translation"
    k.flush_tlb_all()
    assert cpu.probe(a).phys == other.phys
    # revoking without a flush: still reachable; with one: a page fault
    k.pgtable.set_pte(k.pgd, a, 0, writer="behind the kernel's back")
    assert cpu.probe(a).phys == other.phys
    k.flush_tlb_one_kernel(a)
    probe = cpu.probe(a)
    assert probe.faulted and probe.trap == 14 and probe.fault.code == 0 and probe.fault.address == a


def test_the_kernel_flushes_where_it_changes_user_entries(machine):
    """fork write-protects, do_wp_page replaces, mprotect and munmap revoke: each time the
    CPU, which had the old translation cached, must see the new state."""
    k, cpu = machine
    p = k.create_process("p")
    a = k.mmap(p, None, 2 * PAGE)
    k.write(a, b"x" * (2 * PAGE), user=True)
    assert not cpu.probe(a, "write").faulted  # cached writable (the kernel may write user pages)
    c = k.fork(p)
    probe = cpu.probe(a, "write")
    assert probe.faulted and probe.fault.code == 3  # supervisor write to a read-only page
    before = cpu.probe(a).phys
    k.write(a, b"y", user=True, process=p)  # do_wp_page copies for the current process
    now = raw_pte_phys(k, p.pgd, a)
    assert now != before and cpu.probe(a).phys == now
    assert not cpu.probe(a, "write").faulted
    k.mprotect(p, a, PAGE, PROT_READ)
    assert cpu.probe(a, "write").faulted
    assert not cpu.probe(a + PAGE).faulted
    k.munmap(p, a, 2 * PAGE)
    probe = cpu.probe(a + PAGE)
    assert probe.faulted and probe.fault.code == 0
    k.exit_mm(c)
    k.check_invariants()


def test_user_probe_sees_user_permissions():
    """At CPL 3 the CPU refuses what the kernel's ptes refuse (U/S and R/W)."""
    from mmemu_x86.guest import PROBE_STUB

    k = mmemu.boot(arch="x86_64", kernel="6.6", ram="1G")
    try:
        cpu = Cpu(k)
        p = k.create_process("u")
        stub = user_text(k, p, PROBE_STUB)
        a = k.mmap(p, None, PAGE, PROT_READ)
        k.read(a, 1, user=True)  # the zero page, read-only
        assert not cpu.probe(a, "read", user=True, user_stub_va=stub).faulted
        probe = cpu.probe(a, "write", user=True, user_stub_va=stub)
        assert probe.faulted and probe.fault.code == 7
        # PTI (on by default: mmemu_x86.pti): the user copy does not map the direct map at
        # all, a not-present fault (without PTI a protection fault, 5: tests/test_pti.py)
        probe = cpu.probe(k.layout["PAGE_OFFSET"], "read", user=True, user_stub_va=stub)
        assert probe.faulted and probe.fault.code == 4
    finally:
        k.close()


def test_plugin_and_cpu_mmu_agree_on_a_run():
    """The same program, the same faults, in both MMU modes."""
    logs = {}
    for mmu in MMUS:
        k = mmemu.boot(arch="i386_pae", kernel="6.6", ram="2G")
        try:
            cpu = Cpu(k, mmu=mmu)
            p = k.create_process("same")
            data = k.mmap(p, None, 8 * PAGE)
            k.read(data + 3 * PAGE, 1, user=True)  # one page already on the zero page
            text = user_text(k, p, touch_program(32, data, 8))
            r = cpu.run_user(p, text)
            assert r.reason == "exit"
            logs[mmu] = [(addr & ~0xFFF, err, how) for addr, err, _, how in r.fault_log]
        finally:
            k.close()
    assert logs["cpu"] == logs["plugin"]
    assert [how for _, _, how in logs["cpu"]].count("do_wp_page (copy)") == 1


def test_iret_frame_layout():
    """The frame run_user builds for iret: ip, cs, flags, sp, ss, word-sized."""
    from mmemu_x86.guest import iret_frame

    assert iret_frame(32, 1, 2, 3, 4, 5) == struct.pack("<5I", 1, 2, 3, 4, 5)
    assert iret_frame(64, 1, 2, 3, 4, 5) == struct.pack("<5Q", 1, 2, 3, 4, 5)


# -- the budget holds on every run; new code always runs (issue: reliability) -------------------


def test_the_budget_holds_for_code_that_ran_without_one(machine):
    """Unicorn plants the instruction counter in code when it translates it: code translated
    by a run without a budget must still be counted in a later run with one (at both
    privileges), and a run with neither budget nor clock still ends by the budget."""
    k, cpu = machine
    p = k.create_process("spinner")
    text = user_text(k, p, LOOP)
    assert cpu.run_user(p, text, budget=None, timeout=0.3).reason == "timeout"
    r = cpu.run_user(p, text, budget=50_000, timeout=20.0)
    assert r.reason == "budget", r
    r = cpu.run_user(p, text, budget=50_000, timeout=None)
    assert r.reason == "budget", r
    assert cpu.run_user(p, text, budget=None, timeout=0.2).reason == "timeout"
    k.switch_to(None)
    fn = kernel_text(k, LOOP)
    assert cpu.call(fn, budget=None, timeout=0.3).reason == "timeout"
    r = cpu.call(fn, budget=40_000, timeout=None)
    assert r.reason == "budget", r


def test_new_code_in_a_reused_frame_runs(machine):
    """The kernel writes code through the host mapping, which Unicorn's translated-code
    checks never see: a new program in a frame that held an old one at the same address,
    and a rewrite of kernel code in place, must run as written, not as translated before."""
    k, cpu = machine
    bits = bits_of(k)
    data_addr = 0x10000000
    for status in (7, 9):  # the same address, the same frame (freed and reallocated: LIFO)
        p = k.create_process(f"prog{status}")
        k.mmap(p, data_addr, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED)
        text = user_text(k, p, touch_program(bits, data_addr, 1, status=status))
        r = cpu.run_user(p, text)
        assert (r.reason, r.value) == ("exit", status), r
        k.switch_to(None)
        k.exit_mm(p)
    # munmap + mmap + install over the same address in one process
    p = k.create_process("remap")
    k.mmap(p, data_addr, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED)
    text = user_text(k, p, touch_program(bits, data_addr, 1, status=1))
    assert cpu.run_user(p, text).value == 1
    k.munmap(p, text, PAGE)
    text = user_text(k, p, touch_program(bits, data_addr, 1, status=2))
    assert cpu.run_user(p, text).value == 2
    # kernel code rewritten in place with k.write
    k.switch_to(None)
    ret1 = bytes.fromhex("b801000000c3")  # mov eax, 1; ret
    ret2 = bytes.fromhex("b802000000c3")  # mov eax, 2; ret
    fn = kernel_text(k, ret1)
    assert cpu.call(fn).value & 0xFF == 1
    k.write(fn, ret2)
    assert cpu.call(fn).value & 0xFF == 2
