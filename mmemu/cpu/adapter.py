"""The contract of an arch's CPU adapter: what :class:`mmemu.cpu.Cpu` needs from an arch to
run code on Unicorn with the kernel's page tables.

The core owns the run: the instruction budget and the wall-clock limit, the hand-off of
every page fault to the kernel's fault path and the retry, the exit system call, TLB
flushes, the TLB-fill hook of the ``plugin`` MMU mode, and the frames the CPU takes from
the kernel. The adapter owns everything that differs by arch: creating the engine (its
arch, mode, CPU model and the registers that make paging work), the guest pieces the
kernel would have (a GDT, a kernel stack, entry code), switching the root table (CR3,
satp, TTBR0), entering kernel code and user mode, and reading what an interrupt means (a
page fault with its address and access, a system call, another exception), including the
quirks of Unicorn on that arch (see ``../shared/unicorn-riscv-arm64/README.md`` and the
x86 adapter for examples).
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from ..errors import MmemuError
from ..faults import Fault

if TYPE_CHECKING:
    from unicorn import Uc

    from . import Cpu

FAULT = "fault"
SYSCALL = "syscall"
EXCEPTION = "exception"
#: code called a kernel function: the trap at its address (``ip``) was reached
KCALL = "kcall"


@dataclass(slots=True)
class Trap:
    """What one call of Unicorn's interrupt hook means.

    ``kind``: :data:`FAULT` (``fault`` is the page fault, its address, access, privilege,
    kind and arch code filled in; ``ip``/``sp`` of the faulting instruction),
    :data:`SYSCALL` (``nr`` and ``args`` of the call), :data:`KCALL` (a call reached the
    trap at a kernel function's address: ``ip`` is that address), or :data:`EXCEPTION`
    (anything else: ``description`` names it as the arch's manuals do)."""

    kind: str
    intno: int = 0
    fault: Fault | None = None
    nr: int = 0
    args: tuple[int, ...] = ()
    description: str = ""
    ip: int = 0
    sp: int = 0


class CpuAdapter(abc.ABC):
    """One CPU of one kernel on one arch. Built by :meth:`mmemu.Arch.cpu_adapter`; the core
    sets :attr:`cpu` and calls :meth:`create`, then :meth:`setup`."""

    #: the Cpu this adapter serves (set by the core before :meth:`create`)
    cpu: "Cpu"
    #: the engine (set by :meth:`create`)
    uc: "Uc"
    #: the arch's exit and exit_group system call numbers (a user program ends with one)
    exit_syscalls: tuple[int, ...] = ()
    #: the most integer arguments :meth:`enter_call` passes in registers
    max_call_args: int = 0
    #: code for probing one access: a byte load that runs from offset ``probe_read[0]`` up
    #: to (not including) ``probe_read[1]``, a byte store (of the byte :meth:`enter_probe`
    #: put in a register) from ``probe_write[0]`` to ``probe_write[1]``
    probe_stub: bytes = b""
    probe_read: tuple[int, int] = (0, 0)
    probe_write: tuple[int, int] = (0, 0)

    def __init__(self, kernel, mmu: str):
        self.kernel = kernel
        self.mmu = mmu

    # -- creation -------------------------------------------------------------------------

    @abc.abstractmethod
    def create(self) -> "Uc":
        """Make the engine: arch, mode, CPU model, the system registers paging needs. No
        memory is mapped yet (the core maps RAM right after). Also sets :attr:`uc`."""

    def install_hooks(self) -> None:
        """Hooks of the arch beyond the interrupt hook the core installs (x86_64's
        ``syscall`` instruction). Default: none."""

    @abc.abstractmethod
    def setup(self, root: int) -> None:
        """Put the CPU into the kernel's state with *root* as its table: allocate what the
        kernel keeps per CPU through ``self.cpu.alloc_pages(order, owner)`` (freed by the
        core on close or on a failure here), write the entry code, load the registers."""

    # -- the running kernel ----------------------------------------------------------------

    @abc.abstractmethod
    def set_root(self, root: int) -> None:
        """Switch to the page table at *root* (a process's, or the kernel's own):
        ``switch_mm`` writes CR3 / satp / TTBR0. The core flushes the TLB after."""

    def current_root(self) -> int | None:
        """The root table the CPU's register holds now, where it can differ from the one
        :meth:`set_root` loaded (x86 PTI switches CR3 to the user copy around user mode);
        the ``plugin`` MMU's TLB fill walks it. Default: None (the one set_root loaded)."""
        return None

    @abc.abstractmethod
    def enter_call(self, func: int, args: tuple[int, ...]) -> tuple[int, int]:
        """Prepare a call of kernel code at *func* with integer *args* in the arch's calling
        convention, on the kernel stack, at kernel privilege. Return (begin, until): where
        the run starts and the return address at which it stops."""

    @abc.abstractmethod
    def enter_user(self, entry: int, sp: int) -> tuple[int, int]:
        """Prepare a run of user code at *entry* with stack pointer *sp*, entered the way
        the kernel enters user mode. Return (begin, until); *until* is never reached (user
        code ends with the exit system call)."""

    @abc.abstractmethod
    def return_value(self) -> int:
        """The integer return value of a kernel call that returned."""

    @abc.abstractmethod
    def pc(self) -> int:
        """The program counter now."""

    @abc.abstractmethod
    def sp(self) -> int:
        """The stack pointer now."""

    @abc.abstractmethod
    def user_mode(self) -> bool:
        """Whether the CPU runs at user privilege now (for the ``plugin`` MMU's TLB fill)."""

    def uaccess(self) -> bool:
        """Whether kernel code may load and store user pages now (RISC-V sstatus.SUM, arm64
        PSTATE.PAN clear): the ``plugin`` MMU's TLB fill and the fault path grant kernel
        accesses the user rights too while it is. Default: False (the kernel's own rights
        only; x86 without SMAP gives the kernel user pages through its own bits anyway)."""
        return False

    # -- what happened ---------------------------------------------------------------------

    @abc.abstractmethod
    def decode_interrupt(self, intno: int) -> Trap:
        """What the interrupt hook's *intno* means, read from the CPU's state, in the hook.
        Also undo whatever Unicorn left pending that would change the next exception."""

    @abc.abstractmethod
    def fault_intno(self, fault: Fault) -> int:
        """The interrupt number Unicorn reports for this page fault (x86 14; RISC-V 12, 13,
        15 by access; arm64 3 or 4): the ``plugin`` MMU, which raises no exception, reports
        its refusals with it."""

    def resume_after_fault(self, trap: Trap) -> None:
        """The kernel fixed the fault: make the faulting instruction run again when the
        hook returns (RISC-V: Unicorn moved the pc past it). Default: nothing."""

    def fault_resume(self) -> Callable[[Trap], None] | None:
        """What the core calls after each resolved fault, asked once after :meth:`setup`:
        :meth:`resume_after_fault`, or None where it does nothing on this machine (a call
        saved on every demand fault). Default: :meth:`resume_after_fault` if the adapter
        overrides it."""
        if type(self).resume_after_fault is CpuAdapter.resume_after_fault:
            return None
        return self.resume_after_fault

    def registers(self) -> dict[str, int]:
        """The CPU's registers now, by the names the arch's oops prints them with (x86:
        ``ax``, ``bx`` ... ``flags``, ``cs``, ``cr0`` ...), for the register dump of an oops
        raised by code on this CPU (read in the interrupt hook, where they are those of
        the faulting instruction). Default: none known (the oops prints no dump)."""
        return {}

    # -- kernel functions called by kernel code (modules) --------------------------------

    def kcall_args(self, n: int, varargs: bool, asmlinkage: bool = False) -> "KcallArgs":
        """The arguments of the kernel function whose trap was just reached, in the arch's
        calling convention for the kernel: the first *n* fixed ones, then (*varargs*) a
        reader of the variable ones. *asmlinkage*: declared asmlinkage (i386: every
        argument on the stack). Default: this arch calls no kernel function."""
        raise MmemuError(f"the {self.kernel.arch.name} CPU adapter cannot call kernel functions")

    def kcall_return(self, value: int | None) -> None:
        """Return from the kernel function to its caller, with *value* in the return
        register (None: leave it, as a thunk jumped to instead of called does)."""
        raise MmemuError(f"the {self.kernel.arch.name} CPU adapter cannot call kernel functions")

    @abc.abstractmethod
    def set_syscall_return(self, value: int) -> None:
        """Return *value* from the system call being handled."""

    def after_run(self) -> None:
        """Called after every ``emu_start`` returns (clear what a stopped run left pending).
        Default: nothing."""

    def default_user_sp(self, process) -> int:
        return process.start_stack - 64

    # -- small programs (the demo, the conformance suite) -----------------------------------

    def program_touch_pages(self, base: int, n: int) -> bytes:
        """User code: store one byte in each of *n* pages from *base*, then exit(0) with the
        arch's exit system call. Position independent."""
        raise MmemuError(f"the {self.kernel.arch.name} CPU adapter has no touch-pages program")

    def program_loop(self) -> bytes:
        """Code that jumps to itself forever (runaway code, at either privilege)."""
        raise MmemuError(f"the {self.kernel.arch.name} CPU adapter has no endless-loop program")

    def function_read_byte(self) -> bytes:
        """Kernel code: a function returning the byte at the address in its first argument.
        Position independent."""
        raise MmemuError(f"the {self.kernel.arch.name} CPU adapter has no read-byte function")

    # -- probing one access (tests, the conformance suite) ---------------------------------

    @abc.abstractmethod
    def enter_probe(self, stub_va: int, user: bool, va: int, byte: int) -> None:
        """Prepare the registers for running the probe stub at *stub_va* (the kernel's own
        copy at kernel privilege, or a user-executable copy at user privilege) on address
        *va*, storing *byte* if it stores. The core then runs from the stub's read or write
        instruction to the instruction after it."""

    @abc.abstractmethod
    def kernel_probe_stub(self) -> int:
        """The virtual address of the kernel's copy of :attr:`probe_stub` (placed by
        :meth:`setup`, executable at kernel privilege)."""


def context_calls(uc: "Uc", ctx) -> tuple[Callable[[], int], Callable[[], int]]:
    """(update, restore): ``uc.context_update(ctx)`` and ``uc.context_restore(ctx)`` for one
    engine and one context (a ``uc.context_save()``), straight into libunicorn, each
    returning Unicorn's error code (0: done) for the caller to raise ``UcError`` on, as the
    binding would. The binding's methods read a property and go through Python layers that
    cost as much as the copy itself; an adapter's fault hook (which saves the CPU state to
    read it, and on x86 restores it to reset ``old_exception``) binds these once."""
    from unicorn.unicorn_py3.unicorn import uclib

    return (partial(uclib.uc_context_save, uc._uch, ctx._context),
            partial(uclib.uc_context_restore, uc._uch, ctx._context))


class KcallArgs:
    """The arguments of one kernel function call: ``fixed`` (the first n, as integers of the
    word size) and :meth:`next` for the variable ones (``next(8)`` takes a 64-bit one, two
    stack slots on a 32-bit arch)."""

    def __init__(self, fixed: list[int], next_vararg):
        self.fixed = fixed
        self._next = next_vararg

    def next(self, size: int) -> int:
        return self._next(size)
