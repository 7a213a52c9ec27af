"""Code on Unicorn's AArch64 CPU with the kernel model's tables, in both MMU modes: kernel
calls, demand paging, copy-on-write, SIGSEGV and the oops in arm64's words, runaway code,
the access flag; the load/store decoder against Unicorn's own accesses; and Unicorn's MMU as
the referee of the walker (same physical address, or a fault where the walker faults, with
QEMU's own syndrome equal to the ESR the adapter reports).

Guest code was assembled with ``llvm-mc -triple=aarch64 -filetype=obj`` and extracted with
``llvm-objcopy -O binary --only-section=.text``; each hex string is preceded by its source.
"""

from __future__ import annotations

import random
import struct

import pytest

import mmemu
from mmemu.arch import KW
from mmemu.cpu import Cpu
from mmemu.errors import MmemuError
from mmemu.kernel import PROT_EXEC, PROT_NONE, PROT_READ, PROT_WRITE
from mmemu_arm64.cpustate import FaultState
from mmemu_arm64.formats import OA_MASK, PTE_AF

PAGE = 4096
MMUS = ("cpu", "plugin")

# add x0, x0, x1
# ret
ADD = bytes.fromhex("0000018b" "c0035fd6")
# strb w1, [x0]
# add  x2, x0, #1, lsl #12
# strb w1, [x2, #4095]
# mov  x3, #8192
# strb w1, [x0, x3]
# mov  x0, #3
# ret
STORE_3_PAGES = bytes.fromhex("01000039" "02044091" "41fc3f39" "030084d2" "01682338" "600080d2" "c0035fd6")
# ldrb w0, [x0]
# ret
READ_BYTE = bytes.fromhex("00004039" "c0035fd6")
# x0 = first page, x1 = byte, x3 = n:
#     mov  x2, x0
# 1:  strb w1, [x2]
#     add  x2, x2, #1, lsl #12
#     subs x3, x3, #1
#     b.ne 1b
#     mov  x0, #0
#     mov  x8, #93          // exit
#     svc  #0
#     b    .
TOUCH = bytes.fromhex("e20300aa" "41000039" "42044091" "630400f1" "a1ffff54" "000080d2" "a80b80d2" "010000d4"
                      "00000014")
# ldp  x1, x2, [x0]
# str  x1, [x0, #-8]
# mov  x0, #7
# mov  x8, #94          // exit_group
# svc  #0
LDP = bytes.fromhex("010840a9" "01801ff8" "e00080d2" "c80b80d2" "010000d4")
# ldr  x1, [x0]
# mov  x8, #93
# svc  #0
LOAD = bytes.fromhex("010040f9" "a80b80d2" "010000d4")
# mov  x8, #172         // getpid: not implemented, -ENOSYS in x0
# svc  #0
# mov  x8, #93          // exit(x0)
# svc  #0
GETPID_EXIT = bytes.fromhex("881580d2" "010000d4" "a80b80d2" "010000d4")
# 1:  add x0, x0, #1
#     b   1b
RUNAWAY = bytes.fromhex("00040091" "ffffff17")
# udf #0
UDF = bytes.fromhex("00000000")
# ldxr x1, [x0]
# mov  x8, #93
# svc  #0
LDXR = bytes.fromhex("017c5fc8" "a80b80d2" "010000d4")


def boot(kernel="6.6", va="48", ram="1G", cmdline=""):
    return mmemu.boot(arch="arm64", kernel=kernel, ram=ram, cmdline=cmdline, options={"va_bits": va})


def kernel_text(k, code: bytes) -> int:
    """Kernel code where modules go (module_alloc: PAGE_KERNEL_EXEC in the vmalloc space)."""
    fn = k.vmalloc_range(PAGE, k.layout["VMALLOC_START"], k.layout["VMALLOC_END"], prot="PAGE_KERNEL_EXEC",
                         caller="module_alloc")
    k.write(fn, code)
    return fn


def user_text(k, p, code: bytes) -> int:
    text = k.mmap(p, None, PAGE, PROT_READ | PROT_EXEC)
    k.install_user_pages(p, text, code)
    return text


@pytest.fixture(params=MMUS)
def mmu(request):
    return request.param


# ---- kernel calls -------------------------------------------------------------------------------

@pytest.mark.parametrize("kernel,va", [("6.6", "48"), ("4.9", "39"), ("3.10", "39")])
def test_a_kernel_function_returns_its_value(mmu, kernel, va):
    k = boot(kernel, va)
    try:
        cpu = Cpu(k, mmu=mmu)
        fn = kernel_text(k, ADD)
        r = cpu.call(fn, 40, 2)
        assert (r.reason, r.value, r.faults) == ("return", 42, 0), r
        # the entry code lives in the kernel's text, the stack in the direct map
        ad = cpu.adapter
        text = next(s for s in k.layout.image if s.name == "text")
        assert text.virt <= ad.return_va < text.virt + text.size
        assert k.walk(ad.stack_top - 16).rights & KW
    finally:
        k.close()


def test_kernel_code_stores_to_three_fresh_user_pages(mmu):
    k = boot()
    try:
        cpu = Cpu(k, mmu=mmu)
        fn = kernel_text(k, STORE_3_PAGES)
        p = k.create_process("writer")
        data = k.mmap(p, None, 3 * PAGE)
        k.switch_to(p)  # the kernel works in the current process's address space (TTBR0)
        r = cpu.call(fn, data, 0xA5)
        assert (r.reason, r.value, r.faults) == ("return", 3, 3), r
        assert [how for _, _, _, how in r.fault_log] == ["do_anonymous_page"] * 3
        # ESR: a data abort at the current EL (EC 0x25), a write (WnR), a translation fault
        assert all(code >> 26 == 0x25 and code & 1 << 6 and code & 0x3C == 0x04 for _, code, _, _ in r.fault_log)
        # (the plugin MMU's TLB fill is told the page only: the fault is at its first byte)
        page = ~(PAGE - 1) if mmu == "plugin" else -1
        assert [a for a, _, _, _ in r.fault_log] == [data, (data + PAGE + 4095) & page, data + 2 * PAGE]
        assert k.read(data, 1, user=True, process=p) == b"\xa5"
        assert k.read(data + PAGE + 4095, 1, user=True, process=p) == b"\xa5"
        assert k.read(data + 2 * PAGE, 1, user=True, process=p) == b"\xa5"
    finally:
        k.close()


# ---- user code ----------------------------------------------------------------------------------

@pytest.mark.parametrize("kernel,va", [("6.6", "48"), ("6.6", "39"), ("4.14", "48"), ("3.10", "39")])
def test_user_code_demand_faults_its_pages_then_exits(mmu, kernel, va):
    k = boot(kernel, va)
    try:
        cpu = Cpu(k, mmu=mmu)
        n = 24
        p = k.create_process("toucher")
        data = k.mmap(p, None, n * PAGE)
        text = user_text(k, p, TOUCH)
        r = run_user(cpu, p, text, x0=data, x1=0x5A, x3=n)
        assert (r.reason, r.value, r.faults) == ("exit", 0, n), r
        assert all(how == "do_anonymous_page" for _, _, _, how in r.fault_log)
        # a data abort from EL0 (EC 0x24), write, level 3 translation fault (the page table exists after the first)
        assert all(code >> 26 == 0x24 and code & 1 << 6 for _, code, _, _ in r.fault_log)
        assert r.fault_log[-1][1] & 0x3F == 0x07
        for i in range(n):
            assert k.read(data + i * PAGE, 1, user=True, process=p) == b"\x5a"
        k.check_invariants()
    finally:
        k.close()


def run_user(cpu, p, entry, x0=0, x1=0, x3=0, **kw):
    """run_user with argument registers set (the adapter's entry keeps them)."""
    from unicorn.arm64_const import UC_ARM64_REG_X0, UC_ARM64_REG_X1, UC_ARM64_REG_X3

    ad = cpu.adapter
    orig = ad.enter_user

    def enter(e, sp):
        begin, until = orig(e, sp)
        ad.uc.reg_write_batch([(UC_ARM64_REG_X0, x0), (UC_ARM64_REG_X1, x1), (UC_ARM64_REG_X3, x3)])
        return begin, until
    ad.enter_user = enter
    try:
        return cpu.run_user(p, entry, **kw)
    finally:
        ad.enter_user = orig


# ldr  x0, [x0]
# mov  x8, #93          // exit(the word loaded)
# svc  #0
LOAD_EXIT = bytes.fromhex("000040f9" "a80b80d2" "010000d4")


def test_each_process_runs_on_its_own_tables_at_el0_after_a_switch(mmu):
    """switch_mm() between two processes with the same user address holding different
    words, back and forth: each run reads its own (TTBR0 is the current process's in both
    the user and the kernel state), still at EL0 (a kernel address is refused: SIGSEGV)."""
    k = boot()
    try:
        cpu = Cpu(k, mmu=mmu)
        procs = []
        for word in (0x1111, 0x2222):
            p = k.create_process(f"p{word:x}")
            data = k.mmap(p, 0x7000000, PAGE, PROT_READ | PROT_WRITE)
            k.write(data, struct.pack("<Q", word), user=True, process=p)
            procs.append((p, user_text(k, p, LOAD_EXIT), word))
        for p, text, word in procs + procs + [procs[1]]:
            r = run_user(cpu, p, text, x0=0x7000000)
            assert (r.reason, r.value) == ("exit", word), r
        p, text, _ = procs[0]
        r = run_user(cpu, p, text, x0=k.layout["PAGE_OFFSET"])
        assert r.reason == "sigsegv" and r.fault_log[-1][1] >> 26 == 0x24, r
        k.switch_to(None)  # a kernel thread: the reserved table in TTBR0
        r = cpu.call(kernel_text(k, READ_BYTE), 0x7000000)
        assert r.reason == "oops" and r.fault_log[0][1] == 0x96000004, r
    finally:
        k.close()


def test_fork_then_a_user_write_breaks_copy_on_write(mmu):
    k = boot()
    try:
        cpu = Cpu(k, mmu=mmu)
        p = k.create_process("parent")
        data = k.mmap(p, None, 2 * PAGE)
        k.write(data, b"parent", user=True, process=p)
        k.write(data + PAGE, b"second", user=True, process=p)
        text = user_text(k, p, TOUCH)
        child = k.fork(p)
        r = run_user(cpu, child, text, x0=data, x1=0x43, x3=2)
        # fork copies the ptes old (mm/memory.c copy_present_pte: pte_mkold), and without a
        # hardware access flag every first access faults on it (FSC 0x0B, level 3): the
        # text's fetch (made young: a spurious fault), then each write, resolved by do_wp_page
        assert (r.reason, r.value, r.faults) == ("exit", 0, 3), r
        fetch, *writes = r.fault_log
        assert fetch[1] & 0x3F == 0x0B and fetch[1] >> 26 == 0x20 and "spurious" in fetch[3], r.fault_log
        assert all(how.startswith("do_wp_page") for _, _, _, how in writes), r.fault_log
        assert all(code & 0x3F == 0x0B and code & 1 << 6 for _, code, _, _ in writes)
        assert k.read(data, 6, user=True, process=child) == b"Carent"
        assert k.read(data, 6, user=True, process=p) == b"parent"
        assert k.walk_mm(data, child).phys != k.walk_mm(data, p).phys
        k.check_invariants()
    finally:
        k.close()


def test_an_old_user_page_is_made_young_and_the_access_retried(mmu):
    """No hardware access flag (ARMv8.0, Unicorn): an access to a page mapped old takes an
    access-flag fault; the fault path sets AF (pte_mkyoung) and the load runs again."""
    k = boot()
    try:
        cpu = Cpu(k, mmu=mmu)
        p = k.create_process("aging")
        data = k.mmap(p, None, PAGE)
        k.write(data, b"\x11" * 8, user=True, process=p)
        pte = k.read_user_pte(p, data)
        k.set_user_pte(p, data, pte & ~PTE_AF, "ptep_test_and_clear_young")
        k.flush_tlb_all()
        assert k.walk_mm(data, p).fault("read", True).kind == "access-flag"
        text = user_text(k, p, LOAD)
        r = run_user(cpu, p, text, x0=data)
        assert (r.reason, r.faults) == ("exit", 1), r
        addr, code, action, how = r.fault_log[0]
        # a data abort from EL0, level 3 access flag fault (FSC 0b001011)
        assert (addr, code, action) == (data, 0x9200000B, "retry") and how.startswith("handle_pte_fault")
        assert k.read_user_pte(p, data) & PTE_AF
        assert r.value == data  # exit(x0): the load went to x1
    finally:
        k.close()


def test_a_pair_crossing_into_a_fresh_page_faults_on_the_second(mmu):
    k = boot()
    try:
        cpu = Cpu(k, mmu=mmu)
        p = k.create_process("pair")
        data = k.mmap(p, None, 2 * PAGE)
        k.write(data + PAGE - 8, struct.pack("<Q", 77), user=True, process=p)
        text = user_text(k, p, LDP)
        r = run_user(cpu, p, text, x0=data + PAGE - 8)
        assert (r.reason, r.value, r.faults) == ("exit", 7, 1), r
        # the second element, at the start of the second page, read: the zero page
        assert r.fault_log[0][0] == data + PAGE and r.fault_log[0][3] == "do_anonymous_page (zero page)"
        assert k.read(data + PAGE - 16, 8, user=True, process=p) == struct.pack("<Q", 77)
    finally:
        k.close()


def test_an_unknown_system_call_returns_enosys(mmu):
    k = boot()
    try:
        cpu = Cpu(k, mmu=mmu)
        p = k.create_process("sys")
        r = cpu.run_user(p, user_text(k, p, GETPID_EXIT))
        assert (r.reason, r.value) == ("exit", (-38) & (1 << 64) - 1), r
    finally:
        k.close()


def test_a_user_access_outside_every_vma_is_sigsegv(mmu):
    k = boot()
    try:
        cpu = Cpu(k, mmu=mmu)
        p = k.create_process("crasher")
        text = user_text(k, p, LOAD)
        bad = 0x10123
        r = run_user(cpu, p, text, x0=bad)
        assert r.reason == "sigsegv", r
        addr, esr, action, how = r.fault_log[-1]
        page = ~(PAGE - 1) if mmu == "plugin" else -1
        assert (addr, action) == (bad & page, "sigsegv") and esr >> 26 == 0x24 and esr & 0x3C == 0x04
        # arch/arm64/kernel/traps.c arm64_show_signal() of 6.x
        level = esr & 3
        assert r.report == (f"crasher[{p.pid}]: unhandled exception: DABT (lower EL), ESR 0x{esr:016x}, "
                            f"level {level} translation fault")
    finally:
        k.close()


def test_a_kernel_read_of_a_vmalloc_guard_page_is_an_oops(mmu):
    k = boot()
    try:
        cpu = Cpu(k, mmu=mmu)
        fn = kernel_text(k, READ_BYTE)
        v = k.vmalloc(2 * PAGE)
        r = cpu.call(fn, v + 2 * PAGE + 0x10)
        assert r.reason == "oops", r
        lines = r.report.splitlines()
        bad = v + 2 * PAGE + (0 if mmu == "plugin" else 0x10)  # the plugin MMU knows the page only
        assert lines[0] == f"Unable to handle kernel paging request at virtual address {bad:016x}"
        # a data abort at the current EL, read, level 3 translation fault (the area's pte table exists)
        assert lines[1:7] == ["Mem abort info:", "  ESR = 0x0000000096000007",
                              "  EC = 0x25: DABT (current EL), IL = 32 bits", "  SET = 0, FnV = 0",
                              "  EA = 0, S1PTW = 0", "  FSC = 0x07: level 3 translation fault"]
        assert f"swapper pgtable: 4k pages, 48-bit VAs, pgdp={k.pgd:016x}" in lines
        assert "Internal error: Oops: 0000000096000007 [#1] PREEMPT SMP" in lines
        assert f"pc : 0x{fn:x}" in lines
    finally:
        k.close()


def test_an_undefined_instruction_is_named(mmu):
    k = boot()
    try:
        cpu = Cpu(k, mmu=mmu)
        r = cpu.call(kernel_text(k, UDF))
        assert r.reason == "exception" and r.report.startswith("Undefined Instruction"), r
    finally:
        k.close()


def test_an_unaligned_exclusive_is_an_alignment_fault_not_a_page_fault(mmu):
    """The tables allow the access: without QEMU's syndrome it would look like a stale TLB
    entry, retried for ever."""
    k = boot()
    try:
        cpu = Cpu(k, mmu=mmu)
        p = k.create_process("unaligned")
        data = k.mmap(p, None, PAGE)
        k.write(data, b"\0" * 16, user=True, process=p)
        r = run_user(cpu, p, user_text(k, p, LDXR), x0=data + 1, timeout=5)
        assert r.reason == "exception" and "Alignment fault" in r.report and r.faults == 0, r
        r = run_user(cpu, p, user_text(k, p, LDXR), x0=data + 8)
        assert (r.reason, r.value) == ("exit", data + 8), r
    finally:
        k.close()


@pytest.mark.parametrize("where", ["kernel", "user"])
def test_runaway_code_stops_by_budget_and_by_timeout(mmu, where):
    k = boot()
    try:
        cpu = Cpu(k, mmu=mmu)
        if where == "kernel":
            fn = kernel_text(k, RUNAWAY)
            runs = [lambda **kw: cpu.call(fn, 0, **kw)]
        else:
            p = k.create_process("spin")
            text = user_text(k, p, RUNAWAY)
            runs = [lambda **kw: cpu.run_user(p, text, **kw)]
        for run in runs:
            r = run(budget=None, timeout=0.2)
            assert r.reason == "timeout", r
            r = run(budget=50_000, timeout=30)
            assert r.reason == "budget", r
            r = run(budget=None, timeout=0.1)
            assert r.reason == "timeout", r
    finally:
        k.close()


def test_a_kernel_thread_has_no_user_address_space():
    """TTBR0_EL1 of init_mm is the reserved (empty) table: a user address from a kernel
    thread is a level 0 translation fault, an oops ("user address but active_mm is
    swapper")."""
    k = boot()
    try:
        cpu = Cpu(k, mmu="cpu")
        p = k.create_process("gone")
        data = k.mmap(p, None, PAGE)
        k.write(data, b"x", user=True, process=p)
        k.switch_to(None)
        r = cpu.call(kernel_text(k, READ_BYTE), data)
        assert r.reason == "oops" and r.fault_log[0][1] == 0x96000004, r
        assert f"[{data:016x}] user address but active_mm is swapper" in r.report
    finally:
        k.close()


def test_the_walker_referee_stops_a_run_on_a_syndrome_it_does_not_read_the_same(monkeypatch):
    """The referee is live (conftest.py turns it on): a fault read from the syndrome that
    differs from the walker's reading (here one level off) stops the run with both named."""
    k = boot()
    try:
        cpu = Cpu(k, mmu="cpu")
        codec = cpu.adapter.codec
        real = codec.fault_from_esr

        def one_level_off(esr, far):
            f = real(esr, far)
            f.level = (f.level + 1) % codec.nlevels
            return f
        monkeypatch.setattr(codec, "fault_from_esr", one_level_off)
        p = k.create_process("toucher")
        data = k.mmap(p, None, PAGE)
        with pytest.raises(MmemuError, match="QEMU's syndrome says .* the walker"):
            run_user(cpu, p, user_text(k, p, TOUCH), x0=data, x1=1, x3=1)
    finally:
        k.close()


def test_an_entry_made_valid_needs_no_flush(mmu):
    """The MMU caches no failed translation (README X7): a page fault, then the entry made
    valid (a translation fault) or young (an access-flag fault) with no TLB flush, and the
    next access reaches the frame. So the demand-fault path writes its pte and retries
    without flushing; only a change of a valid entry needs one (the last step)."""
    k = boot()
    try:
        cpu = Cpu(k, mmu=mmu)
        a = k.vmalloc(PAGE)
        pte = k.pgtable.walk(k.pgd, a).steps[-1].raw
        k.pgtable.set_pte(k.pgd, a, 0, writer="behind the kernel's back")
        k.flush_tlb_all()
        probe = cpu.probe(a)
        assert probe.faulted and probe.fault.kind == "not-present" and probe.fault.code == 0x96000007, probe
        k.pgtable.set_pte(k.pgd, a, pte, writer="behind the kernel's back")  # invalid -> valid, no flush
        assert cpu.probe(a).phys == k.walk(a).phys
        k.pgtable.set_pte(k.pgd, a, pte & ~PTE_AF, writer="behind the kernel's back")
        k.flush_tlb_all()
        probe = cpu.probe(a)
        assert probe.faulted and probe.fault.kind == "access-flag" and probe.fault.code == 0x9600000B, probe
        k.pgtable.set_pte(k.pgd, a, pte, writer="behind the kernel's back")  # made young, no flush
        assert cpu.probe(a).phys == k.walk(a).phys
        # a valid entry changed without a flush: the CPU keeps the old frame until one
        other = k.alloc_pages(0, "Normal", owner="test", zero=True)
        k.pgtable.set_pte(k.pgd, a, (pte & ~OA_MASK) | other.phys, writer="behind the kernel's back")
        assert cpu.probe(a).phys != other.phys
        k.flush_tlb_all()
        assert cpu.probe(a).phys == other.phys
    finally:
        k.close()


# ---- the decoder against Unicorn ------------------------------------------------------------------

# Each load/store form (one instruction, then `b .`), with the registers it uses; Unicorn runs
# it with the MMU off and reports the addresses it accessed.
#   ldr x1, [x0, #8]          ldr x1, [x0, #8]!        ldr x1, [x0], #8          ldur x1, [x0, #-3]
#   ldr x1, [x0, x2, lsl #3]  ldr w1, [x0, w2, sxtw]   ldr w1, [x0, w2, uxtw #2] ldrb w1, [x0, x2, sxtx]
#   ldp x1, x2, [x0, #16]!    ldp x1, x2, [x0], #-32   stp x29, x30, [sp, #-16]! ldxr x1, [x0]
#   stxr w3, x1, [x0]         ldaxp x1, x2, [x0]       stlr x1, [x0]             ldrsw x1, [x0, #4]
#   ldtr x1, [x0, #8]         str q0, [x0, #32]        strh w1, [x0, #-2]!       ldr x1, [x0, x2, sxtx #3]
FORMS = bytes.fromhex(
    "010440f9" "018c40f8" "018440f8" "01d05ff8" "017862f8" "01c862b8" "015862b8" "01e86238"
    "0108c1a9" "0108fea8" "fd7bbfa9" "017c5fc8" "017c03c8" "01887fc8" "01fc9fc8" "010480b9"
    "018840f8" "0008803d" "01ec1f78" "01f862f8")


def test_the_decoder_finds_the_address_unicorn_accesses():
    from unicorn import UC_ARCH_ARM64, UC_HOOK_MEM_READ, UC_HOOK_MEM_WRITE, UC_MODE_ARM, Uc
    from unicorn.arm64_const import (UC_ARM64_REG_PC, UC_ARM64_REG_SP, UC_ARM64_REG_X0, UC_ARM64_REG_X2,
                                     UC_ARM64_REG_X29)

    from mmemu_arm64.decode import Decoder

    dec = Decoder()
    rng = random.Random(5)
    code_at = 0x10000
    for i in range(0, len(FORMS), 4):
        insn = FORMS[i:i + 4]
        acc = dec.decode(insn, code_at)
        assert acc is not None, insn.hex()
        for _ in range(4):
            uc = Uc(UC_ARCH_ARM64, UC_MODE_ARM)
            uc.mem_map(0, 0x200000)
            uc.mem_write(code_at, insn + bytes.fromhex("00000014"))
            base = 0x100000 + rng.randrange(0x1000) * 16
            idx = rng.choice([3, -5, 0x40, 0x7FFFFFF0 >> 8]) & ((1 << 64) - 1)
            uc.reg_write_batch([(UC_ARM64_REG_X0, base), (UC_ARM64_REG_X2, idx), (UC_ARM64_REG_SP, base),
                                (UC_ARM64_REG_X29, 1)])
            seen = []
            uc.hook_add(UC_HOOK_MEM_READ | UC_HOOK_MEM_WRITE,
                        lambda uc, kind, addr, size, value, ud: seen.append((kind, addr, size)))
            values = dict(zip(acc.regs(), uc.reg_read_batch(list(acc.regs()))))
            expect = acc.address(values)
            if insn.hex() in ("017c03c8",):  # stxr without a monitor: no access, nothing to compare
                continue
            if not 0x100000 <= expect < 0x1F0000:
                uc.mem_map(expect & ~(PAGE - 1), 2 * PAGE)
            uc.emu_start(code_at, code_at + 4)
            assert seen, (acc.text, "no access")
            assert seen[0][1] == expect, (acc.text, hex(seen[0][1]), hex(expect))
            assert (seen[0][0] == 17) == acc.write, acc.text  # UC_MEM_WRITE
            assert uc.reg_read(UC_ARM64_REG_PC) == code_at + 4


# ---- Unicorn's MMU as the referee ---------------------------------------------------------------------

@pytest.mark.parametrize("kernel,va,cmdline", [("6.6", "48", "rodata=on"), ("6.6", "39", ""), ("4.14", "39", ""),
                                               ("3.10", "39", "")])
def test_the_cpu_agrees_with_the_walker(kernel, va, cmdline):
    """A few hundred addresses read, written and fetched at EL1 and EL0: the same physical
    address, or a fault where the walker faults, with the ESR the walker's fault encodes
    equal to the syndrome QEMU built (EC, WnR, FSC) and QEMU's FAR the address."""
    k = boot(kernel, va, cmdline=cmdline)
    try:
        cpu = Cpu(k, mmu="cpu")
        fs = FaultState(cpu.uc)
        ad = cpu.adapter
        rng = random.Random(int(va) * 1000 + len(kernel))
        p = k.create_process("prober")
        stub = k.mmap(p, None, PAGE, PROT_READ | PROT_EXEC)
        k.install_user_pages(p, stub, ad.probe_stub)
        user = []
        for prot in (PROT_READ, PROT_READ | PROT_WRITE, PROT_READ | PROT_EXEC, PROT_READ | PROT_WRITE | PROT_EXEC,
                     PROT_EXEC, PROT_NONE):
            a = k.mmap(p, None, 4 * PAGE, prot)
            if prot:
                k.mprotect(p, a, 4 * PAGE, prot | PROT_READ | (PROT_WRITE if prot & PROT_WRITE else 0))
                for i in range(3):
                    k.access(a + i * PAGE, "write" if prot & PROT_WRITE else "read", user=True, process=p)
                k.mprotect(p, a, 4 * PAGE, prot)
            user.append(a)
        # one old page: an access-flag fault at either EL
        old = user[1]
        k.set_user_pte(p, old, k.read_user_pte(p, old) & ~PTE_AF, "ptep_test_and_clear_young")
        k.switch_to(p)
        leaves = list(k.pgtable.iter_leaves(k.pgd))
        blocks = [lf for lf in leaves if lf[1] > PAGE]
        addrs = set()
        for va_, size, _pa, _raw, _li in rng.sample(leaves, min(60, len(leaves))) + blocks[:20]:
            addrs.add(va_ + rng.randrange(size))
        for a in user:
            for off in range(0, 4 * PAGE, PAGE):
                addrs.add(a + off + rng.randrange(PAGE))
        mode = k.paging
        while len(addrs) < 200:
            a = rng.randrange(1 << mode.va_bits)
            addrs.add(a | mode.kernel_half if rng.random() < 0.5 else a)
        kinds = set()
        for va_ in sorted(addrs):
            w = k.walk_mm(va_, p)
            if w.mapped and not k.mem.is_ram(w.phys):
                continue
            for priv in (False, True):
                for access in ("read", "write", "exec"):
                    at = va_ & ~(PAGE - 1) if access == "exec" else va_
                    walk = k.walk_mm(at, p)
                    expected = walk.fault(access, priv)
                    probe = cpu.probe(at, access, user=priv, user_stub_va=stub)
                    where = f"{access} of {at:#x} at EL{0 if priv else 1}"
                    if expected is None:
                        assert not probe.faulted, f"{where}: the walker allows it, the CPU raised {probe}"
                        if access != "exec":
                            assert probe.phys == walk.phys, f"{where}: CPU {probe.phys:#x}, walker {walk.phys:#x}"
                        continue
                    assert probe.faulted and probe.fault is not None, f"{where}: the walker says {expected}"
                    assert probe.fault.code == expected.code, f"{where}: adapter {probe.fault}, walker {expected}"
                    syn, far = fs.read()
                    assert (syn >> 26, syn >> 6 & 1, syn & 0x3F) == \
                        (expected.code >> 26, expected.code >> 6 & 1, expected.code & 0x3F), \
                        f"{where}: QEMU's syndrome {syn:#x}, the walker's ESR {expected.code:#x}"
                    # (a fetch probe: QEMU translates up to the byte before the stop address, a page on)
                    assert far == at or access == "exec" and far & ~(PAGE - 1) == at, f"{where}: QEMU's FAR {far:#x}"
                    kinds.add((expected.kind, expected.code & 3))
        # every kind of fault was met: translation (several levels), permission, access flag
        assert {kind for kind, _ in kinds} >= {"not-present", "protection", "access-flag"}, kinds
        assert len({lvl for kind, lvl in kinds if kind == "not-present"}) >= 2, kinds
        # blocks in the linear map: rodata=on, or before rodata=full became the default (5.0)
        assert bool(blocks) == (cmdline == "rodata=on" or kernel in ("4.14", "3.10"))
    finally:
        k.close()

