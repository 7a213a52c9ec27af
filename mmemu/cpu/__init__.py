"""The CPU: Unicorn, with paging on and mmemu's own page tables (the only Unicorn import).

The machine's RAM is mapped into Unicorn zero-copy at physical address 0. Two MMU modes:

- ``cpu``: Unicorn's own x86 MMU walks the tables mmemu wrote in that RAM (which proves
  they are valid hardware tables); page faults arrive at ``UC_HOOK_INTR`` as vector 14 and
  go to the kernel model's fault path; a resolved fault returns from the hook and the
  instruction is retried.
- ``plugin``: Unicorn's virtual TLB, filled by ``UC_HOOK_TLB_FILL`` from the arch's walker
  (for architectures Unicorn's MMU does not model). A refused fill stops the CPU at the
  faulting instruction; the fault goes to the same path and the run resumes there. The
  fill hook is told only the page, so the fault address is the page's first byte.

Guest-side pieces are placed where the kernel has them: the GDT in a page of low memory
(``gdt_page``), a kernel stack, and the entry stubs (``iret`` to user mode, the return
stub of kernel calls, the probe instructions) in the last page of the kernel's text,
like the kernel's ``.entry.text``.

Unicorn behaviours this module works around (each found by a test here):
``old_exception`` is never reset after a fault handled in the hook (issue #1883: the next
fault would be a double fault), so the hook resets it in the saved CPU state; a fault
raised while a block is translated is raised once more on the way out of ``emu_stop()``;
``emu_start(until=X)`` with X at a page start translates the byte before X.
"""

from __future__ import annotations

import ctypes
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from unicorn import (UC_ARCH_X86, UC_ERR_EXCEPTION, UC_HOOK_CODE, UC_HOOK_INSN, UC_HOOK_INTR, UC_HOOK_MEM_READ,
                     UC_HOOK_MEM_WRITE, UC_HOOK_TLB_FILL, UC_MODE_32, UC_MODE_64, UC_PROT_ALL, UC_PROT_EXEC,
                     UC_PROT_READ, UC_PROT_WRITE, UC_TLB_VIRTUAL, Uc, UcError)
from unicorn.unicorn_const import UC_CTL_IO_WRITE, UC_CTL_TLB_FLUSH
from unicorn.x86_const import (UC_X86_INS_SYSCALL, UC_X86_REG_AL, UC_X86_REG_CR0, UC_X86_REG_CR2, UC_X86_REG_CR3,
                               UC_X86_REG_CR4, UC_X86_REG_CS, UC_X86_REG_DS, UC_X86_REG_EAX, UC_X86_REG_EBX,
                               UC_X86_REG_ECX, UC_X86_REG_EDX, UC_X86_REG_EIP, UC_X86_REG_ES, UC_X86_REG_ESP,
                               UC_X86_REG_GDTR, UC_X86_REG_R8, UC_X86_REG_R9, UC_X86_REG_RAX, UC_X86_REG_RBX,
                               UC_X86_REG_RCX, UC_X86_REG_RDI, UC_X86_REG_RDX, UC_X86_REG_RIP, UC_X86_REG_RSI,
                               UC_X86_REG_RSP, UC_X86_REG_SS)

from ..arch import KR, KW, KX, UR, UW, UX
from ..errors import MmemuError
from . import x86
from .faultstate import find_offsets

if TYPE_CHECKING:
    from ..kernel import Kernel, Process

EFER_MSR = 0xC0000080
PAGE = 4096
KERNEL_STACK_ORDER = 2  # THREAD_SIZE: 16 KiB

#: exception names for reports (arch/x86/include/asm/trapnr.h)
VECTORS = {0: "divide error", 1: "debug", 3: "int3", 4: "overflow", 5: "bounds", 6: "invalid opcode",
           7: "device not available", 8: "double fault", 10: "invalid TSS", 11: "segment not present",
           12: "stack segment", 13: "general protection fault", 14: "page fault", 16: "coprocessor error",
           17: "alignment check", 19: "SIMD exception"}


@dataclass(frozen=True)
class Probe:
    """What the CPU did with one access: the physical address it reached, or the
    exception it raised (``vector`` 14 with ``error_code`` for a page fault)."""

    va: int
    access: str
    user: bool
    phys: int | None
    vector: int | None = None
    error_code: int | None = None
    cr2: int | None = None

    @property
    def faulted(self) -> bool:
        return self.vector is not None


@dataclass
class RunResult:
    """How a run on the CPU ended.

    ``reason``: ``return`` (a kernel function returned; ``value`` holds rax/eax),
    ``exit`` (user code called exit; ``value`` is the status), ``oops``, ``sigsegv``,
    ``oom``, ``exception`` (another CPU exception), ``budget`` (the instruction budget ran
    out), ``timeout`` (the wall-clock limit). ``faults``: page faults handled and retried.
    """

    reason: str
    value: int | None = None
    faults: int = 0
    report: str = ""
    ip: int = 0
    fault_log: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.reason in ("return", "exit")


class _RunState:
    __slots__ = ("faults", "stop", "log", "pending", "until", "exit_fill", "executed")

    def __init__(self, until: int = 0):
        self.faults = 0
        self.stop: RunResult | None = None
        self.log: list = []
        self.pending = None  # plugin MMU: the fault a refused TLB fill stands for
        self.until = until  # where the run ends (the return stub)
        #: plugin MMU: Unicorn stopping a run (budget, timeout) asks for a fetch of the
        #: page of ``until`` with the CPL of the code it stopped; a CPL 3 run is refused it
        self.exit_fill = False
        #: plugin MMU with a budget: instructions run so far (each fault ends emu_start)
        self.executed = 0


class Cpu:
    """One CPU of a booted kernel. ``mmu``: ``"cpu"`` (Unicorn's MMU walks mmemu's tables)
    or ``"plugin"`` (Unicorn's virtual TLB filled from the arch's walker)."""

    def __init__(self, kernel: "Kernel", mmu: str = "cpu", index: int = 0):
        if mmu not in ("cpu", "plugin"):
            raise MmemuError(f"unknown MMU mode {mmu!r}: 'cpu' or 'plugin'")
        self.kernel = kernel
        self.mmu = mmu
        self.index = index
        setup = kernel.arch.cpu_setup(kernel.spec)
        if setup.unicorn_arch != "x86":
            raise MmemuError(f"arch {kernel.arch.name}: Unicorn arch {setup.unicorn_arch!r} is not supported")
        self.setup = setup
        self.bits = setup.bits
        b64 = self.bits == 64
        # 32-bit mode takes the 32-bit register names (Unicorn ignores RBX/RSP there)
        self._reg_bx = UC_X86_REG_RBX if b64 else UC_X86_REG_EBX
        self._reg_sp = UC_X86_REG_RSP if b64 else UC_X86_REG_ESP
        self._reg_ip = UC_X86_REG_RIP if b64 else UC_X86_REG_EIP
        self._reg_ax = UC_X86_REG_RAX if b64 else UC_X86_REG_EAX
        self._arg_regs = ((UC_X86_REG_RDI, UC_X86_REG_RSI, UC_X86_REG_RDX, UC_X86_REG_RCX, UC_X86_REG_R8, UC_X86_REG_R9)
                          if b64 else (UC_X86_REG_EAX, UC_X86_REG_EDX, UC_X86_REG_ECX))  # i386: regparm(3)
        self._fault_regs = (UC_X86_REG_CR2, self._reg_ip, self._reg_sp)
        self._offsets = find_offsets()
        self.uc = Uc(UC_ARCH_X86, UC_MODE_64 if b64 else UC_MODE_32)
        for start, end in kernel.mem.ranges:
            self.uc.mem_map_ptr(start, end - start, UC_PROT_ALL, kernel.mem.host_address + start)
        self._scratch_ctx = self.uc.context_save()
        self._ctx_base = ctypes.cast(self._scratch_ctx.context, ctypes.c_void_p).value
        self._last_fault: tuple[int, int, int] | None = None
        self._user_ctx: dict[tuple[int, int], object] = {}
        self._run: _RunState | None = None  # set while code runs (faults go to the kernel)
        self.uc.hook_add(UC_HOOK_INTR, self._on_interrupt)
        if b64:
            self.uc.hook_add(UC_HOOK_INSN, self._on_syscall, aux1=UC_X86_INS_SYSCALL)
        self._owned = []
        self._place_guest_pieces()
        self._load_cpu_state(kernel.current_pgd())
        if mmu == "plugin":
            # The segments are loaded above through Unicorn's own MMU: a descriptor load that
            # goes through the TLB-fill hook outside a run crashes the host process (32-bit).
            # Switching the TLB mode is allowed until the first run.
            self.uc.ctl_set_tlb_mode(UC_TLB_VIRTUAL)
            self.uc.hook_add(UC_HOOK_TLB_FILL, self._tlb_fill)
            self.flush_tlb()
        kernel.cpus.append(self)

    # -- set-up -------------------------------------------------------------------------

    def _place_guest_pieces(self) -> None:
        k = self.kernel
        gdt_page = k.alloc_pages(0, "Normal", owner=f"gdt_page (cpu {self.index})")
        stack = k.alloc_pages(KERNEL_STACK_ORDER, "Normal", owner=f"kernel stack (cpu {self.index})")
        self._owned = [gdt_page, stack]
        s = self.setup
        gdt = x86.build_gdt(self.bits, s.kernel_cs, s.kernel_ds, s.user_cs, s.user_ds, s.gdt_entries)
        k.mem.write(gdt_page.phys, gdt)
        self.gdt_va = k.phys_to_virt(gdt_page.phys)
        self.gdt_size = len(gdt)
        self.stack_top = k.phys_to_virt(stack.phys) + (PAGE << KERNEL_STACK_ORDER)
        text = next(sec for sec in k.layout.image if sec.name == "text")
        last = (text.size - 1) & ~(PAGE - 1)
        self.entry_va, self.entry_pa = text.virt + last, text.phys + last
        stub = x86.entry_stubs(self.bits)
        k.mem.write(self.entry_pa, stub.code)
        self.iret_va = self.entry_va + stub.iret
        self.probe_va = self.entry_va + stub.probe
        self.return_va = self.entry_va + stub.ret

    def _load_cpu_state(self, root: int) -> None:
        """Control registers, GDT and segments, once: what cpu_init leaves."""
        uc, s = self.uc, self.setup
        uc.reg_write(UC_X86_REG_CR3, root)
        uc.reg_write(UC_X86_REG_CR4, s.cr4)
        if s.efer:
            uc.msr_write(EFER_MSR, s.efer)
        uc.reg_write(UC_X86_REG_CR0, s.cr0)
        # A segment load reads the GDT through paging; with the GDT unmapped Unicorn
        # crashes the host process (NOTES.md), so check the mapping first.
        walk = self.kernel.pgtable.walk(root, self.gdt_va)
        if walk.fault("read") is not None:
            raise MmemuError(f"the GDT at {self.gdt_va:#x} is not mapped in the page table at {root:#x}")
        uc.reg_write(UC_X86_REG_GDTR, (0, self.gdt_va, self.gdt_size - 1, 0))
        if self.bits == 32:
            uc.reg_write(UC_X86_REG_CS, s.kernel_cs)
        uc.reg_write(UC_X86_REG_SS, s.kernel_ds)
        # i386 Linux runs the kernel with __USER_DS in DS/ES (entry_32.S), so that an iret
        # to user mode keeps them valid; 64-bit mode ignores them.
        uc.reg_write(UC_X86_REG_DS, s.user_ds)
        uc.reg_write(UC_X86_REG_ES, s.user_ds)
        uc.reg_write(self._reg_sp, self.stack_top)
        self.cr3 = root
        self._kernel_ctx = uc.context_save()
        self._user_ctx.clear()

    def set_cr3(self, root: int) -> None:
        """Switch to the page table at *root* (a CR3 write: flushes the TLB). The GDT lives
        in the shared kernel part, so the segments stay as they are."""
        walk = self.kernel.pgtable.walk(root, self.gdt_va)
        if walk.fault("read") is not None:
            raise MmemuError(f"the GDT at {self.gdt_va:#x} is not mapped in the page table at {root:#x}")
        self.uc.context_restore(self._kernel_ctx)
        self.uc.reg_write(UC_X86_REG_CR3, root)
        self.cr3 = root
        self._kernel_ctx = self.uc.context_save()
        self._user_ctx.clear()
        if self.mmu == "plugin":
            self.flush_tlb()  # the virtual TLB does not flush on a CR3 write

    def flush_tlb(self) -> None:
        """Flush every cached translation (``__flush_tlb_all``)."""
        self.uc.ctl(UC_CTL_TLB_FLUSH, UC_CTL_IO_WRITE)

    def flush_tlb_page(self, va: int) -> None:
        """``invlpg``: Unicorn's API flushes whole TLBs only, so this flushes all; what the
        kernel model does *not* flush stays stale, which is what matters."""
        self.flush_tlb()

    def close(self) -> None:
        for page in self._owned:
            self.kernel.frames.free_pages(page)
        self._owned = []
        if self in self.kernel.cpus:
            self.kernel.cpus.remove(self)

    # -- exceptions ---------------------------------------------------------------------

    def _read_and_forget_fault(self, uc: Uc) -> int:
        """The #PF error code, and old_exception reset (Unicorn issue #1883)."""
        ctx = self._scratch_ctx
        uc.context_update(ctx)
        base = self._ctx_base
        error = ctypes.c_int32.from_address(base + self._offsets.error_code).value & 0xFFFFFFFF
        ctypes.c_int32.from_address(base + self._offsets.old_exception).value = -1
        uc.context_restore(ctx)
        return error

    def _on_interrupt(self, uc: Uc, intno: int, user_data) -> None:
        run = self._run
        error = self._read_and_forget_fault(uc)
        if run is None:  # probing: record and stop
            self._last_fault = (intno, error if intno == 14 else 0, uc.reg_read(UC_X86_REG_CR2))
            uc.emu_stop()
            return
        if intno == 14:
            cr2, ip, sp = uc.reg_read_batch(self._fault_regs)
            fault = self.kernel.codec.fault_from_code(cr2, error)
            fault.ip, fault.source, fault.process, fault.cpu, fault.sp = ip, "cpu", self.kernel.current, self.index, sp
            self._resolve(run, fault)
            return
        ip = uc.reg_read(self._reg_ip)
        if intno == 0x80 and self.bits == 32:
            self._syscall(uc, uc.reg_read(UC_X86_REG_EAX), uc.reg_read(UC_X86_REG_EBX))
            return
        name = VECTORS.get(intno, f"exception {intno}")
        code = f" error_code {error:#x}" if intno in (8, 10, 11, 12, 13, 17) else ""
        run.stop = RunResult("exception", None, run.faults, f"{name}: {intno}{code} ip:{ip:x}", ip, run.log)
        uc.emu_stop()

    def _resolve(self, run: _RunState, fault) -> bool:
        """Give a fault to the kernel; True if the access may be retried."""
        res = self.kernel.handle_page_fault(fault)
        run.log.append((fault.address, fault.code, res.action, res.how))
        if res.action == "retry":
            run.faults += 1
            return True
        run.stop = RunResult(res.action, None, run.faults, res.report, fault.ip or 0, run.log)
        self.uc.emu_stop()
        return False

    def _on_syscall(self, uc: Uc, user_data) -> None:
        self._syscall(uc, uc.reg_read(UC_X86_REG_RAX), uc.reg_read(UC_X86_REG_RDI))

    def _syscall(self, uc: Uc, nr: int, arg0: int) -> None:
        """The one system call user code here needs: exit (x86_64 60/231, i386 1/252)."""
        exits = (60, 231) if self.bits == 64 else (1, 252)
        if nr in exits and self._run is not None:
            self._run.stop = RunResult("exit", arg0, self._run.faults, "", uc.reg_read(self._reg_ip), self._run.log)
            uc.emu_stop()
            return
        uc.reg_write(self._reg_ax, (-38) & ((1 << self.bits) - 1))  # -ENOSYS

    def _tlb_fill(self, uc: Uc, vaddr: int, access: int, entry, user_data) -> bool:
        """The plugin MMU: translate through the arch's walker with the CPL of CS."""
        user = (uc.reg_read(UC_X86_REG_CS) & 3) == 3
        kind = "exec" if access == 18 else ("write" if access == 17 else "read")
        walk = self.kernel.pgtable.walk(self.cr3, vaddr)
        fault = walk.fault(kind, user)
        if fault is None:
            entry.paddr = walk.phys & ~(PAGE - 1)
            r = walk.rights
            perms = 0
            if r & (UR if user else KR):
                perms |= UC_PROT_READ
            if r & (UW if user else KW):
                perms |= UC_PROT_WRITE
            if r & (UX if user else KX):
                perms |= UC_PROT_EXEC
            entry.perms = perms
            return True
        code = fault.code
        ip = uc.reg_read(self._reg_ip)
        fault.ip, fault.source, fault.process, fault.cpu = ip, "cpu", self.kernel.current, self.index
        fault.sp = uc.reg_read(self._reg_sp)
        # the first refusal is the fault; Unicorn may ask again on its way out of the run
        # (for the page it started from, with the CPL of the faulting code): ignore that
        if self._run is not None:
            if access == 18 and vaddr == self._run.until & ~(PAGE - 1) and (ip ^ vaddr) >= PAGE:
                # not a fetch by the code (its ip is elsewhere): Unicorn on its way out of a
                # run stopped by the budget or the clock, looking at the exit address
                self._run.exit_fill = True
            elif self._run.pending is None:
                self._run.pending = fault
        elif self._last_fault is None:
            self._last_fault = (14, code, vaddr)
        return False

    # -- running code -------------------------------------------------------------------

    def _execute(self, begin: int, until: int, budget: int | None, timeout: float | None) -> RunResult:
        run = _RunState(until)
        self._run = run
        deadline = None if timeout is None else time.monotonic() + timeout
        pc = begin
        counter = None
        if budget and self.mmu == "plugin":
            # In this mode every fault ends emu_start, and Unicorn's count starts again with
            # the next one: the budget would never run out for code that keeps faulting.
            # Count the instructions here and give each restart what is left.
            def count(uc, address, size, user_data):
                run.executed += 1
            counter = self.uc.hook_add(UC_HOOK_CODE, count)
        try:
            while True:
                left_us = 0
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return RunResult("timeout", None, run.faults, f"wall-clock limit of {timeout} s reached at "
                                         f"ip {pc:#x}", pc, run.log)
                    left_us = max(1, int(left * 1e6))
                left_count = 0
                if budget:
                    left_count = budget - run.executed if counter is not None else budget
                    if left_count <= 0:
                        return RunResult("budget", None, run.faults, f"instruction budget of {budget} exhausted at "
                                         f"ip {pc:#x}", pc, run.log)
                try:
                    self.uc.emu_start(pc, until, timeout=left_us, count=left_count)
                except UcError as exc:
                    pc = self.uc.reg_read(self._reg_ip)
                    if run.stop is not None:  # exit/oops decided in a hook; the rest is Unicorn's way out
                        return run.stop
                    if exc.errno == UC_ERR_EXCEPTION and run.pending is not None:
                        fault, run.pending = run.pending, None
                        run.exit_fill = False
                        if self._resolve(run, fault):
                            continue  # resume at the faulting instruction
                        return run.stop
                    if not (exc.errno == UC_ERR_EXCEPTION and run.exit_fill):
                        return RunResult("exception", None, run.faults, f"the CPU stopped: {exc} at ip {pc:#x}",
                                         pc, run.log)
                    run.exit_fill = False  # a stop by budget or clock: decided below
                pc = self.uc.reg_read(self._reg_ip)
                if run.stop is not None:
                    return run.stop
                if pc == until:
                    return RunResult("return", self.uc.reg_read(self._reg_ax), run.faults, "", pc, run.log)
                if deadline is not None and time.monotonic() >= deadline:
                    return RunResult("timeout", None, run.faults, f"wall-clock limit of {timeout} s reached at "
                                     f"ip {pc:#x}", pc, run.log)
                if budget:
                    return RunResult("budget", None, run.faults, f"instruction budget of {budget} exhausted at "
                                     f"ip {pc:#x}", pc, run.log)
                return RunResult("exception", None, run.faults, f"the CPU stopped at ip {pc:#x}", pc, run.log)
        finally:
            self._run = None
            if counter is not None:
                self.uc.hook_del(counter)
            self._forget_pending_fault()

    def call(self, func: int, *args: int, budget: int | None = None, timeout: float | None = 5.0) -> RunResult:
        """Run kernel code at CPL 0: call *func* with integer *args* (SysV registers on
        x86_64, regparm(3) on i386) on this CPU's kernel stack, in the current page
        directory, until it returns. Page faults go through the kernel's fault path."""
        if len(args) > len(self._arg_regs):
            raise MmemuError(f"at most {len(self._arg_regs)} register arguments on {self.kernel.arch.name}")
        uc = self.uc
        uc.context_restore(self._kernel_ctx)
        word = self.bits // 8
        sp = (self.stack_top - 64) & ~0xF
        sp -= word
        self.kernel.mem.write(self.kernel.virt_to_phys(sp), self.return_va.to_bytes(word, "little"))
        uc.reg_write(self._reg_sp, sp)
        for reg, value in zip(self._arg_regs, args):
            uc.reg_write(reg, value & ((1 << self.bits) - 1))
        return self._execute(func, self.return_va, budget, timeout)

    def run_user(self, process: "Process", entry: int, sp: int | None = None, budget: int | None = None,
                 timeout: float | None = 5.0) -> RunResult:
        """Run user code at CPL 3 in *process* (made current) from *entry*, entered the way
        the kernel enters user mode (``iret`` from the kernel stack), until it calls exit
        or stops. Its faults go through the kernel's fault path (demand paging)."""
        k = self.kernel
        if k.current is not process:
            k.switch_to(process)
        uc, s = self.uc, self.setup
        uc.context_restore(self._kernel_ctx)
        if sp is None:
            sp = process.start_stack - 64
        frame = x86.iret_frame(self.bits, entry, s.user_cs, 0x202, sp, s.user_ds)
        ksp = self.stack_top - 128
        k.mem.write(k.virt_to_phys(ksp), frame)
        uc.reg_write(self._reg_sp, ksp)
        # the kernel enters user mode with an iret; nothing returns to `until`
        return self._execute(self.iret_va, self.return_va, budget, timeout)

    # -- probing the MMU (one access at a time) ----------------------------------------

    def _forget_pending_fault(self) -> None:
        """Reset old_exception after a run stopped on a fault. A fault raised while QEMU
        translates a block is raised a second time on the way out once emu_stop() is
        pending, without reaching the hook, and would turn the next fault into a double
        fault."""
        ctx = self._scratch_ctx
        self.uc.context_update(ctx)
        slot = ctypes.c_int32.from_address(self._ctx_base + self._offsets.old_exception)
        if slot.value != -1:
            slot.value = -1
            self.uc.context_restore(ctx)

    def _emu(self, begin: int, until: int) -> None:
        self._last_fault = None
        try:
            self.uc.emu_start(begin, until)
        except UcError:
            if self._last_fault is None:  # plugin MMU: a refused fill without a record
                raise
        finally:
            if self._last_fault is not None:
                self._forget_pending_fault()

    def _user_context(self, user_stub_va: int):
        """A CPL 3 context stopped at *user_stub_va*, reached the way the kernel reaches user
        mode: an ``iret`` from the kernel stack."""
        key = (self.cr3, user_stub_va)
        ctx = self._user_ctx.get(key)
        if ctx is None:
            uc, s = self.uc, self.setup
            uc.context_restore(self._kernel_ctx)
            frame = x86.iret_frame(self.bits, user_stub_va, s.user_cs, 0x2, user_stub_va + PAGE - 16, s.user_ds)
            sp = self.stack_top - 64
            self.kernel.mem.write(self.kernel.virt_to_phys(sp), frame)
            uc.reg_write(self._reg_sp, sp)
            self._last_fault = None
            self._run_to(self.iret_va, user_stub_va)
            if self._last_fault is not None:
                raise MmemuError(f"cannot enter user mode at {user_stub_va:#x}: exception {self._last_fault[0]} "
                                 f"(error code {self._last_fault[1]:#x}); map the user stub user-executable")
            ctx = uc.context_save()
            self._user_ctx[key] = ctx
        return ctx

    def _run_to(self, begin: int, stop: int) -> None:
        """Run from *begin* until the CPU is about to execute the instruction at *stop*
        (a code hook stops it before the instruction runs). Unicorn's own ``until``
        argument is not used for this: with ``until`` at a page start Unicorn translates
        the byte before it, which faults when the previous page is unmapped.

        With ``begin == stop`` this checks that the CPU may fetch from *begin*. QEMU 5
        translates a whole block first, up to 4064 bytes from its start, so a block that
        starts near a page end may run into the next page and fault there: a page start
        probes exactly one page. (``count=1`` would keep the block to one instruction,
        but leaves a stop pending that turns the next fault into a double fault.)"""
        hook = self.uc.hook_add(UC_HOOK_CODE, lambda uc, addr, size, ud: uc.emu_stop(), begin=stop, end=stop)
        try:
            self._emu(begin, stop + PAGE)
        finally:
            self.uc.hook_del(hook)

    def probe(self, va: int, access: str = "read", user: bool = False, user_stub_va: int | None = None) -> Probe:
        """Let the CPU make one access to *va* (a byte read, a byte write that leaves the
        byte unchanged, or an instruction fetch) at CPL 0, or CPL 3 with *user*, and report
        the physical address it reached or the exception it raised. Faults are reported,
        not handled.

        A fetch translates a block of instructions from *va*, whatever bytes are there,
        which may reach into the next page; probe a page start to learn exactly that
        page's permission.
        User probes run the probe stub from *user_stub_va*, where the caller mapped
        :data:`mmemu.cpu.x86.PROBE_STUB` user-executable (e.g. :meth:`user_stub_frame`)."""
        if access == "write":
            # learn the byte the store will rewrite, through the CPU's own translation: if
            # the read faults, so does the write (same present/user checks), whatever AL is
            seen = self.probe(va, "read", user, user_stub_va)
            al = self.kernel.mem.read(seen.phys, 1)[0] if seen.phys is not None else 0
        uc = self.uc
        if user:
            if user_stub_va is None:
                raise MmemuError("a user-mode probe needs user_stub_va: where the probe stub is mapped for CPL 3")
            uc.context_restore(self._user_context(user_stub_va))
            stub = user_stub_va
        else:
            uc.context_restore(self._kernel_ctx)
            stub = self.probe_va
        self._last_fault = None
        accesses: list[int] = []
        hook = None
        try:
            if access == "exec":
                # start at va and stop in a code hook on va: translating the first block
                # checks the fetch; the hook stops the CPU before the instruction runs.
                self._run_to(va, va)
            else:
                kind = UC_HOOK_MEM_READ if access == "read" else UC_HOOK_MEM_WRITE
                hook = uc.hook_add(kind, lambda uc, acc, addr, size, value, ud: accesses.append(addr))
                off = x86.PROBE_READ_OFF if access == "read" else x86.PROBE_WRITE_OFF
                insn = x86.PROBE_READ if access == "read" else x86.PROBE_WRITE
                uc.reg_write(self._reg_bx, va)
                if access == "write":
                    uc.reg_write(UC_X86_REG_AL, al)
                self._emu(stub + off, stub + off + len(insn))
        except UcError as exc:
            raise MmemuError(f"the CPU stopped on {access} of {va:#x}: {exc}") from exc
        finally:
            if hook is not None:
                uc.hook_del(hook)
        if self._last_fault is not None:
            vector, error, cr2 = self._last_fault
            return Probe(va, access, user, None, vector, error, cr2)
        # Unicorn reports the physical address of data accesses only: an allowed fetch
        # has phys None (the agreement tests compare fetches on faulting alone).
        return Probe(va, access, user, accesses[0] if accesses else None)

    def user_stub_frame(self):
        """A frame holding the probe stub, for a caller to map user-executable."""
        page = self.kernel.alloc_pages(0, "Normal", owner="user probe stub", zero=True)
        self.kernel.mem.write(page.phys, x86.PROBE_STUB)
        self._owned.append(page)
        return page
