"""The CPU: Unicorn, with paging on and mmemu's own page tables (the only Unicorn import of
the core; the arch plugins' adapters import it too).

The machine's RAM is mapped into Unicorn zero-copy at its physical addresses. Two MMU modes:

- ``cpu``: Unicorn's own MMU walks the tables mmemu wrote in that RAM (which proves they
  are valid hardware tables); page faults arrive at ``UC_HOOK_INTR``, the arch's adapter
  says what they are, and they go to the kernel model's fault path; a resolved fault
  returns from the hook and the instruction is retried.
- ``plugin``: Unicorn's virtual TLB, filled by ``UC_HOOK_TLB_FILL`` from the arch's walker.
  A refused fill stops the CPU at the faulting instruction; the fault goes to the same path
  and the run resumes there. The fill hook is told only the page, so the fault address is
  the page's first byte.

The run loop here is the same for every arch: an instruction budget and a wall-clock limit
that hold on every run, faults resolved and retried, the exit system call, TLB flushes when
the kernel model flushes, and translated code dropped whenever the model may have changed
the code behind it (Unicorn never learns of writes made through the host mapping). What
differs by arch is the :class:`~mmemu.cpu.adapter.CpuAdapter` the arch plugin supplies.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from unicorn import (
    UC_ERR_EXCEPTION,
    UC_HOOK_CODE,
    UC_HOOK_INTR,
    UC_HOOK_MEM_READ,
    UC_HOOK_MEM_WRITE,
    UC_HOOK_TLB_FILL,
    UC_PROT_ALL,
    UC_PROT_EXEC,
    UC_PROT_READ,
    UC_PROT_WRITE,
    UC_TLB_VIRTUAL,
    UcError,
)
from unicorn.unicorn_const import UC_CTL_IO_WRITE, UC_CTL_TLB_FLUSH

from ..arch import KR, KW, KX, UR, UW, UX
from ..errors import MmemuError
from ..faults import Fault
from ..units import PAGE_SIZE as PAGE
from .adapter import FAULT, KCALL, SYSCALL, CpuAdapter, Trap

if TYPE_CHECKING:
    from ..kernel import Kernel, Process

ENOSYS = 38

__all__ = ["Cpu", "RunResult", "Probe", "CpuAdapter", "Trap"]


@dataclass(frozen=True)
class Probe:
    """What the CPU did with one access: the physical address it reached, or the page fault
    (``fault``, with the arch's code) or other exception (``trap``: the interrupt number
    Unicorn reported) it raised."""

    va: int
    access: str
    user: bool
    phys: int | None
    trap: int | None = None
    fault: Fault | None = None
    description: str = ""

    @property
    def faulted(self) -> bool:
        return self.trap is not None


@dataclass
class RunResult:
    """How a run on the CPU ended.

    ``reason``: ``return`` (a kernel function returned; ``value`` holds the return value),
    ``exit`` (user code called exit; ``value`` is the status), ``oops``, ``sigsegv``,
    ``oom``, ``exception`` (another CPU exception), ``kcall`` (a kernel function called by
    the code refused: a stub, a panic, bad arguments; ``report`` says which),
    ``budget`` (the instruction budget ran out), ``timeout`` (the wall-clock limit). ``faults``: page faults handled and retried;
    ``fault_log``: (address, arch code, action, how) per fault.
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
        self.until = until  # where the run ends (the return address)
        #: plugin MMU: Unicorn stopping a run (budget, timeout) asks for a fetch of the
        #: page of ``until`` with the privilege of the code it stopped; a user run is refused it
        self.exit_fill = False
        #: with a budget: instructions run so far (each fault may end emu_start)
        self.executed = 0


class _Watchdog:
    """The wall-clock limit of runs, kept by one sleeping thread for every CPU of the process.

    Unicorn's own limit (``emu_start(timeout=...)``) starts a thread for each call that
    polls every couple of microseconds until the call ends: about 170 us to start and join
    on every ``emu_start`` (a run that stops at each fault, the plugin MMU's, restarts it at
    each one) and part of the second core for as long as the code runs. Here a run is
    armed once with its deadline; the thread sleeps until the soonest deadline and stops
    that engine (``uc.emu_stop``), then again every 10 ms until the run is disarmed (a stop
    that falls between two ``emu_start`` calls is lost: each call clears it). The run loop
    decides from the clock, as before, whether a stop was the limit."""

    RETRY = 0.01

    def __init__(self):
        self._cond = threading.Condition()
        self._armed: dict[int, tuple[float, object]] = {}
        self._next = 0
        self._thread: threading.Thread | None = None

    def arm(self, uc, deadline: float) -> int:
        with self._cond:
            self._next += 1
            token = self._next
            self._armed[token] = (deadline, uc)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="mmemu-watchdog", daemon=True)
                self._thread.start()
            self._cond.notify()
        return token

    def disarm(self, token: int) -> None:
        with self._cond:
            self._armed.pop(token, None)

    def _loop(self) -> None:
        with self._cond:
            while True:
                wait = None
                now = time.monotonic()
                for deadline, uc in list(self._armed.values()):
                    left = deadline - now
                    if left <= 0:
                        uc.emu_stop()
                        left = self.RETRY
                    wait = left if wait is None else min(wait, left)
                self._cond.wait(wait)


_watchdog = _Watchdog()


class Cpu:
    """One CPU of a booted kernel. ``mmu``: ``"cpu"`` (Unicorn's MMU walks mmemu's tables)
    or ``"plugin"`` (Unicorn's virtual TLB filled from the arch's walker)."""

    def __init__(self, kernel: "Kernel", mmu: str = "cpu", index: int = 0):
        if mmu not in ("cpu", "plugin"):
            raise MmemuError(f"unknown MMU mode {mmu!r}: 'cpu' or 'plugin'")
        self.kernel = kernel
        self.mmu = mmu
        self.index = index
        self._owned: list = []
        self._stack_lo = 0  # the kernel stack's lowest address (set when the adapter takes it)
        self._run: _RunState | None = None  # set while code runs (faults go to the kernel)
        self.last_trap: Trap | None = None
        self._code_gen = -1  # the kernel's code generation the translated code is from
        self._counted: bool | None = None  # whether the translated code counts instructions
        adapter = kernel.arch.cpu_adapter(kernel, mmu)
        adapter.cpu = self
        self.adapter = adapter
        try:
            self.uc = adapter.create()
            for start, end in kernel.mem.ranges:
                self.uc.mem_map_ptr(start, end - start, UC_PROT_ALL, kernel.mem.host_address + start)
            self.uc.hook_add(UC_HOOK_INTR, self._on_interrupt)
            adapter.install_hooks()
            adapter.setup(kernel.current_pgd())
            # called after each resolved fault only where the arch needs it (RISC-V moves the
            # pc, x86 under PTI switches CR3 back)
            self._resume = adapter.fault_resume()
            self.cr3 = kernel.current_pgd()
            if mmu == "plugin":
                # switching the TLB mode is allowed until the first run
                self.uc.ctl_set_tlb_mode(UC_TLB_VIRTUAL)
                self.uc.hook_add(UC_HOOK_TLB_FILL, self._tlb_fill)
                self.flush_tlb()
        except BaseException:
            self._free_owned()
            raise
        kernel.cpus.append(self)

    # -- what the CPU takes from the kernel ---------------------------------------------

    @property
    def running(self) -> bool:
        """Code runs on this CPU now: a fault or a kernel call is being handled in its
        interrupt hook (the registers are those of the code that trapped)."""
        return self._run is not None

    def alloc_pages(self, order: int, owner: str):
        """A block of lowmem frames for this CPU (its kernel stack, its GDT...), zeroed,
        given back when the CPU is closed."""
        page = self.kernel.alloc_pages(order, "Normal", owner=f"{owner} (cpu {self.index})", zero=True)
        self._owned.append(page)
        if owner == "kernel stack":  # where journal_stores' guard page is
            self._stack_lo = self.kernel.phys_to_virt(page.phys)
        return page

    def _free_owned(self) -> None:
        for page in self._owned:
            self.kernel.frames.free_pages(page)
        self._owned = []

    def close(self) -> None:
        """Release the Unicorn engine (the kernel stays as it is)."""
        self._free_owned()
        if self in self.kernel.cpus:
            self.kernel.cpus.remove(self)

    # -- the kernel's side --------------------------------------------------------------

    def set_cr3(self, root: int) -> None:
        """``switch_mm``: the page table at *root* (CR3, satp, TTBR0), TLB flushed."""
        self.adapter.set_root(root)
        self.cr3 = root
        self.flush_tlb()

    def flush_tlb(self) -> None:
        """Flush every cached translation (``__flush_tlb_all``)."""
        self.uc.ctl(UC_CTL_TLB_FLUSH, UC_CTL_IO_WRITE)

    def flush_tlb_page(self, va: int) -> None:
        """``invlpg`` / ``sfence.vma va`` / ``tlbi vae1``: Unicorn's API flushes whole TLBs
        only, so this flushes all; what the kernel model does *not* flush stays stale,
        which is what matters."""
        self.flush_tlb()

    def _sync_code(self) -> None:
        """Drop translated code the kernel may have changed behind Unicorn's back (it
        writes RAM through the host mapping: Unicorn's self-modifying-code checks never see
        it), before a run."""
        gen = self.kernel.code_generation
        if gen != self._code_gen:
            self.uc.ctl_flush_tb()
            self._code_gen = gen

    # -- exceptions ---------------------------------------------------------------------

    def _on_interrupt(self, uc, intno: int, user_data) -> None:
        trap = self.adapter.decode_interrupt(intno)
        run = self._run
        if run is None:  # probing: record and stop
            self.last_trap = trap
            uc.emu_stop()
            return
        if trap.kind == FAULT:
            fault = trap.fault
            fault.ip, fault.sp, fault.source = trap.ip, trap.sp, "cpu"
            fault.process, fault.cpu = self.kernel.current, self.index
            # _resolve, inline for the retry (every demand fault)
            res = self.kernel.handle_page_fault(fault)
            if res.action == "retry":
                run.log.append((fault.address, fault.code, "retry", res.how))
                run.faults += 1
                if self._resume is not None:
                    self._resume(trap)
            else:
                self._stop_on(run, fault, res)
            return
        if trap.kind == SYSCALL:
            self.syscall(trap.nr, trap.args)
            return
        if trap.kind == KCALL:
            self._kcall(run, trap)
            return
        run.stop = RunResult("exception", None, run.faults, f"{trap.description} ip:{trap.ip:x}", trap.ip, run.log)
        uc.emu_stop()

    def _resolve(self, run: _RunState, fault: Fault) -> bool:
        """Give a fault to the kernel; True if the access may be retried."""
        res = self.kernel.handle_page_fault(fault)
        if res.action == "retry":
            # The fault path only maps frames it allocated (zeroed or copied) during a run:
            # no frame is freed and reused inside one, so no code translated from a frame's
            # old contents can be hit here; what changed between runs is dropped by
            # _sync_code before the next one. (Dropping a range from inside the hook is not
            # safe: Unicorn then raises a double fault.)
            run.log.append((fault.address, fault.code, "retry", res.how))
            run.faults += 1
            return True
        self._stop_on(run, fault, res)
        return False

    def _stop_on(self, run: _RunState, fault: Fault, res) -> None:
        """A fault the kernel did not resolve (an oops, a SIGSEGV, out of memory) ends the run."""
        run.log.append((fault.address, fault.code, res.action, res.how))
        run.stop = RunResult(res.action, None, run.faults, res.report, fault.ip or 0, run.log)
        self.uc.emu_stop()

    def _kcall(self, run: _RunState, trap: Trap) -> None:
        """Kernel code called an exported kernel function: run its implementation
        (:mod:`mmemu.module.exports`) on the kernel model with the arguments of the arch's
        calling convention, and return to the caller. A kernel function mmemu does not
        implement (a ``stub_missing`` stub), a panic or a refusal ends the run with
        ``kcall``; an oops in it ends it with ``oops``."""
        from ..errors import Oops
        from ..module.exports import function

        k = self.kernel
        name = k.kernel_symbol_name(trap.ip)
        fn = function(name)
        if fn is None:
            run.stop = RunResult("kcall", None, run.faults, f"the code called {name}, which mmemu does not "
                                 f"implement (a stub of stub_missing)", trap.ip, run.log)
            self.uc.emu_stop()
            return
        try:
            args = self.adapter.kcall_args(fn.nargs, fn.varargs, fn.asmlinkage)
            value = fn.impl(k, args)
        except Oops as exc:
            run.stop = RunResult("oops", None, run.faults, exc.report, trap.ip, run.log)
            self.uc.emu_stop()
            return
        except MmemuError as exc:
            run.stop = RunResult("kcall", None, run.faults, f"{name}: {exc}", trap.ip, run.log)
            self.uc.emu_stop()
            return
        self.adapter.kcall_return(None if value is None else int(value))

    def journal_stores(self, kernel_stack: bool = True):
        """A context in which every store the CPU makes is journaled first (the bytes it
        replaces), so that a kernel operation that runs code and then fails (a module's
        init) leaves RAM as it was, and a scenario step that ran code can be taken back;
        with *kernel_stack* (kernel code), a store made with the stack pointer below this
        CPU's kernel stack stops the run (``reason`` ``stack``): the stack has no guard page
        in the direct map, and an overflow would write the frames below it."""
        from contextlib import contextmanager

        @contextmanager
        def ctx():
            hook = self.uc.hook_add(UC_HOOK_MEM_WRITE, self._on_store if kernel_stack else self._on_user_store)
            try:
                yield
            finally:
                self.uc.hook_del(hook)
        return ctx()

    def _on_store(self, uc, access, address, size, value, user_data) -> None:
        # Unicorn gives the store's physical address here (the TLB has translated it: the
        # memory is mapped into Unicorn by physical address)
        k = self.kernel
        if self._run is not None and self._run.stop is None:
            sp = self.adapter.sp()
            if sp < self._stack_lo:  # the stack pointer left the stack's bottom: an overflow
                self._run.stop = RunResult("stack", None, self._run.faults,
                                           f"kernel stack overflow: sp {sp:#x} below the stack at {self._stack_lo:#x}",
                                           self.adapter.pc(), self._run.log)
                uc.emu_stop()
        k.mem.keep(address, size)

    def _on_user_store(self, uc, access, address, size, value, user_data) -> None:
        self.kernel.mem.keep(address, size)

    def syscall(self, nr: int, args: tuple[int, ...]) -> None:
        """A system call from the code running: exit and exit_group end the run; anything
        else returns -ENOSYS."""
        run = self._run
        if nr in self.adapter.exit_syscalls and run is not None:
            run.stop = RunResult("exit", args[0] if args else 0, run.faults, "", self.adapter.pc(), run.log)
            self.uc.emu_stop()
            return
        self.adapter.set_syscall_return(-ENOSYS)

    def _tlb_fill(self, uc, vaddr: int, access: int, entry, user_data) -> bool:
        """The plugin MMU: translate through the arch's walker at the current privilege."""
        user = self.adapter.user_mode()
        kind = "exec" if access == 18 else ("write" if access == 17 else "read")
        k = self.kernel
        if k.paging.in_kernel_root(vaddr):
            root = k.pgd
        elif self.cr3 == k.pgd and k.paging.form == "split":
            # a kernel thread on a mode with a separate kernel root: the user half has no
            # table (Linux points TTBR0 at an empty one); the zero page is one
            root = k.zero_pfn << 12
        else:
            # the table the CPU's root register holds now: x86 PTI runs user mode (and the
            # kernel's last steps before it) on the user copy
            root = self.adapter.current_root() or self.cr3
        walk = k.pgtable.walk(root, vaddr)
        uaccess = not user and self.adapter.uaccess()
        fault = walk.fault(kind, user, uaccess)
        if fault is None:
            entry.paddr = walk.phys  # of the TLB page's first byte, whatever Unicorn's page size
            r = walk.rights
            read, write = (UR, UW) if user else ((KR | UR, KW | UW) if uaccess else (KR, KW))
            perms = 0
            if r & read:
                perms |= UC_PROT_READ
            if r & write:
                perms |= UC_PROT_WRITE
            if r & (UX if user else KX):
                perms |= UC_PROT_EXEC
            entry.perms = perms
            return True
        ip = self.adapter.pc()
        fault.ip, fault.source, fault.process, fault.cpu = ip, "cpu", self.kernel.current, self.index
        fault.sp = self.adapter.sp()
        # the first refusal is the fault; Unicorn may ask again on its way out of the run
        # (for the page it started from, with the privilege of the faulting code): ignore that
        if self._run is not None:
            if access == 18 and vaddr == self._run.until & ~(PAGE - 1) and (ip ^ vaddr) >= PAGE:
                # not a fetch by the code (its ip is elsewhere): Unicorn on its way out of a
                # run stopped by the budget or the clock, looking at the exit address
                self._run.exit_fill = True
            elif self._run.pending is None:
                self._run.pending = fault
        elif self.last_trap is None:
            self.last_trap = Trap(FAULT, self.adapter.fault_intno(fault), fault=fault, ip=ip)
        return False

    # -- running code -------------------------------------------------------------------

    def _start(self, pc: int, until: int, count: int) -> None:
        # Unicorn counts instructions with code it plants when it translates a block: code
        # translated without a count is never counted, and the other way round. Translate
        # again whenever the run counts and the last one did not (or the reverse).
        counted = bool(count)
        if counted != self._counted:
            self.uc.ctl_flush_tb()
            self._counted = counted
        # no timeout here: the wall-clock limit is the watchdog's (_Watchdog)
        self.uc.emu_start(pc, until, count=count)

    def _execute(self, begin: int, until: int, budget: int | None, timeout: float | None) -> RunResult:
        if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int) or budget < 0):
            raise MmemuError(f"budget must be a non-negative whole number of instructions, not {budget!r}")
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                    or timeout < 0):
            raise MmemuError(f"timeout must be a non-negative number of seconds, not {timeout!r}")
        self._sync_code()
        run = _RunState(until)
        self._run = run
        deadline = None if timeout is None else time.monotonic() + timeout
        pc = begin
        counter = None
        if budget:
            # every fault may end emu_start, and Unicorn's count starts again with the next
            # one: the budget would never run out for code that keeps faulting. Count the
            # instructions here and give each restart what is left.
            def count(uc, address, size, user_data):
                run.executed += 1
            counter = self.uc.hook_add(UC_HOOK_CODE, count)
        guard = None if deadline is None else _watchdog.arm(self.uc, deadline)
        try:
            while True:
                if deadline is not None and deadline - time.monotonic() <= 0:
                    return RunResult("timeout", None, run.faults, f"wall-clock limit of {timeout} s reached at "
                                     f"ip {pc:#x}", pc, run.log)
                left_count = 0
                if budget:
                    left_count = budget - run.executed
                    if left_count <= 0:
                        return RunResult("budget", None, run.faults, f"instruction budget of {budget} exhausted at "
                                         f"ip {pc:#x}", pc, run.log)
                try:
                    self._start(pc, until, left_count)
                except UcError as exc:
                    pc = self.adapter.pc()
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
                finally:
                    self.adapter.after_run()
                pc = self.adapter.pc()
                if run.stop is not None:
                    return run.stop
                if pc == until:
                    return RunResult("return", self.adapter.return_value(), run.faults, "", pc, run.log)
                if deadline is not None and time.monotonic() >= deadline:
                    return RunResult("timeout", None, run.faults, f"wall-clock limit of {timeout} s reached at "
                                     f"ip {pc:#x}", pc, run.log)
                if budget and run.executed >= budget:
                    return RunResult("budget", None, run.faults, f"instruction budget of {budget} exhausted at "
                                     f"ip {pc:#x}", pc, run.log)
                if budget:
                    continue  # a stop with budget left (Unicorn ends a count early at a fault): go on
                return RunResult("exception", None, run.faults, f"the CPU stopped at ip {pc:#x}", pc, run.log)
        finally:
            if guard is not None:
                _watchdog.disarm(guard)
            self._run = None
            if counter is not None:
                self.uc.hook_del(counter)

    def call(self, func: int, *args: int, budget: int | None = None, timeout: float | None = 5.0) -> RunResult:
        """Run kernel code: call *func* with integer *args* (the arch's calling convention)
        on this CPU's kernel stack, in the current page directory, until it returns. Page
        faults go through the kernel's fault path."""
        if len(args) > self.adapter.max_call_args:
            raise MmemuError(f"at most {self.adapter.max_call_args} register arguments on {self.kernel.arch.name}")
        for a in (func,) + args:
            if isinstance(a, bool) or not isinstance(a, int):
                raise MmemuError(f"call: addresses and arguments are integers, not {type(a).__name__}")
        begin, until = self.adapter.enter_call(func, args)
        return self._execute(begin, until, budget, timeout)

    def run_user(self, process: "Process", entry: int, sp: int | None = None, budget: int | None = None,
                 timeout: float | None = 5.0) -> RunResult:
        """Run user code in *process* (made current) from *entry*, entered the way the
        kernel enters user mode, until it calls exit or stops. Its faults go through the
        kernel's fault path (demand paging)."""
        k = self.kernel
        if not process.alive:
            raise MmemuError(f"run_user: process {process.pid} has exited")
        if k.current is not process:
            k.switch_to(process)
        if sp is None:
            sp = self.adapter.default_user_sp(process)
        begin, until = self.adapter.enter_user(entry, sp)
        return self._execute(begin, until, budget, timeout)

    # -- probing the MMU (one access at a time) ----------------------------------------

    def _emu(self, begin: int, until: int) -> None:
        self.last_trap = None
        self._sync_code()
        try:
            self._start(begin, until, 0)
        except UcError:
            if self.last_trap is None:  # plugin MMU: a refused fill without a record
                raise
        finally:
            self.adapter.after_run()

    def run_to(self, begin: int, stop: int) -> None:
        """Run from *begin* until the CPU is about to execute the instruction at *stop*
        (a code hook stops it before the instruction runs). Unicorn's own ``until``
        argument is not used for this: with ``until`` at a page start Unicorn translates
        the byte before it, which faults when the previous page is unmapped.

        With ``begin == stop`` this checks that the CPU may fetch from *begin*. QEMU
        translates a whole block first, up to 4064 bytes from its start, so a block that
        starts near a page end may run into the next page and fault there: a page start
        probes exactly one page."""
        hook = self.uc.hook_add(UC_HOOK_CODE, lambda uc, addr, size, ud: uc.emu_stop(), begin=stop, end=stop)
        try:
            self._emu(begin, stop + PAGE)
        finally:
            self.uc.hook_del(hook)

    def probe(self, va: int, access: str = "read", user: bool = False, user_stub_va: int | None = None) -> Probe:
        """Let the CPU make one access to *va* (a byte read, a byte write that leaves the
        byte unchanged, or an instruction fetch) at kernel privilege, or user privilege with
        *user*, and report the physical address it reached or the exception it raised.
        Faults are reported, not handled.

        A fetch translates a block of instructions from *va*, whatever bytes are there,
        which may reach into the next page; probe a page start to learn exactly that
        page's permission. User probes run the adapter's probe stub from *user_stub_va*,
        where the caller mapped :attr:`CpuAdapter.probe_stub` user-executable."""
        if access not in ("read", "write", "exec"):
            raise MmemuError(f"access must be 'read', 'write' or 'exec', not {access!r}")
        byte = 0
        if access == "write":
            # learn the byte the store will rewrite, through the CPU's own translation: if
            # the read faults, so does the write (same present/user checks)
            seen = self.probe(va, "read", user, user_stub_va)
            byte = self.kernel.mem.read(seen.phys, 1)[0] if seen.phys is not None else 0
        ad = self.adapter
        if user:
            if user_stub_va is None:
                raise MmemuError("a user-mode probe needs user_stub_va: where the probe stub is mapped for user mode")
            stub = user_stub_va
        else:
            stub = ad.kernel_probe_stub()
        accesses: list[int] = []
        hook = None
        try:
            ad.enter_probe(stub, user, va, byte)
            if access == "exec":
                # start at va and stop in a code hook on va: translating the first block
                # checks the fetch; the hook stops the CPU before the instruction runs. A
                # block translated before (the entry code) would run its first instruction
                # before the stop is seen: drop it first.
                # (Only a mapped page can hold one: dropping an unmapped address makes the
                # CPU raise a fault internally.)
                if self.kernel.pgtable.walk(self.cr3 if not self.kernel.paging.in_kernel_root(va)
                                            else self.kernel.pgd, va).mapped:
                    self.uc.ctl_remove_cache(va, va + 1)
                    ad.after_run()
                self.run_to(va, va)
            else:
                kind = UC_HOOK_MEM_READ if access == "read" else UC_HOOK_MEM_WRITE
                hook = self.uc.hook_add(kind, lambda uc, acc, addr, size, value, ud: accesses.append(addr))
                start, end = ad.probe_read if access == "read" else ad.probe_write
                self._emu(stub + start, stub + end)
        except UcError as exc:
            raise MmemuError(f"the CPU stopped on {access} of {va:#x}: {exc}") from exc
        finally:
            if hook is not None:
                self.uc.hook_del(hook)
        trap = self.last_trap
        if trap is not None and not (access == "exec" and trap.kind != FAULT):
            return Probe(va, access, user, None, trap.intno, trap.fault, trap.description)
        # (an exec probe that raised anything but a page fault fetched the instruction:
        # what it then did, an illegal opcode say, is not the MMU's business)
        # Unicorn reports the physical address of data accesses only: an allowed fetch
        # has phys None (the agreement tests compare fetches on faulting alone).
        return Probe(va, access, user, accesses[0] if accesses else None)
