"""The CPU: Unicorn, with paging on and mmemu's own page tables (the only Unicorn import).

The machine's RAM is mapped into Unicorn zero-copy at physical address 0; once paging is
on, Unicorn's own x86 MMU walks the tables mmemu wrote in that RAM. Guest-side pieces the
CPU needs are placed where the kernel has them: the GDT in a page of low memory (the
``gdt_page``), a kernel stack, and the entry stubs (``iret`` to user mode, the probe
instructions) in the last page of the kernel's text, like the kernel's ``.entry.text``.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import TYPE_CHECKING

from unicorn import (UC_ARCH_X86, UC_HOOK_CODE, UC_HOOK_INTR, UC_HOOK_MEM_READ, UC_HOOK_MEM_WRITE, UC_MODE_32, UC_MODE_64,
                     UC_PROT_ALL, Uc, UcError)
from unicorn.unicorn_const import UC_CTL_IO_WRITE, UC_CTL_TLB_FLUSH
from unicorn.x86_const import (UC_X86_REG_CR0, UC_X86_REG_CR2, UC_X86_REG_CR3, UC_X86_REG_CR4, UC_X86_REG_CS,
                               UC_X86_REG_AL, UC_X86_REG_DS, UC_X86_REG_EBX, UC_X86_REG_ES, UC_X86_REG_ESP, UC_X86_REG_GDTR,
                               UC_X86_REG_RBX, UC_X86_REG_RSP, UC_X86_REG_SS)

from ..errors import MmemuError
from . import x86
from .faultstate import find_offsets

if TYPE_CHECKING:
    from ..kernel import Kernel

EFER_MSR = 0xC0000080
PAGE = 4096


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


class Cpu:
    """One CPU of a booted kernel, in the ``cpu`` MMU mode: Unicorn's MMU walks the tables."""

    def __init__(self, kernel: "Kernel"):
        self.kernel = kernel
        setup = kernel.arch.cpu_setup(kernel.spec)
        if setup.unicorn_arch != "x86":
            raise MmemuError(f"arch {kernel.arch.name}: Unicorn arch {setup.unicorn_arch!r} is not supported")
        self.setup = setup
        self.bits = setup.bits
        # 32-bit mode takes the 32-bit register names (Unicorn ignores RBX/RSP there)
        self._reg_bx = UC_X86_REG_RBX if self.bits == 64 else UC_X86_REG_EBX
        self._reg_sp = UC_X86_REG_RSP if self.bits == 64 else UC_X86_REG_ESP
        self._offsets = find_offsets()
        self.uc = Uc(UC_ARCH_X86, UC_MODE_64 if self.bits == 64 else UC_MODE_32)
        self.uc.mem_map_ptr(0, kernel.mem.size, UC_PROT_ALL, kernel.mem.host_address)
        self._scratch_ctx = self.uc.context_save()
        self._ctx_base = ctypes.cast(self._scratch_ctx.context, ctypes.c_void_p).value
        self._last_fault: tuple[int, int, int] | None = None
        self._accesses: list[int] | None = None
        self._user_ctx: dict[tuple[int, int], object] = {}
        self.uc.hook_add(UC_HOOK_INTR, self._on_interrupt)
        self._place_guest_pieces()
        self._enable_paging(kernel.pgd)

    # -- set-up -------------------------------------------------------------------------

    def _place_guest_pieces(self) -> None:
        k = self.kernel
        frames = k.frames
        gdt_page = frames.alloc_pages(0, "Normal", owner="gdt_page")
        stack = frames.alloc_pages(0, "Normal", owner="kernel stack (cpu 0)")
        self._owned = [gdt_page, stack]
        s = self.setup
        gdt = x86.build_gdt(self.bits, s.kernel_cs, s.kernel_ds, s.user_cs, s.user_ds, s.gdt_entries)
        k.mem.write(gdt_page.phys, gdt)
        self.gdt_va = k.phys_to_virt(gdt_page.phys)
        self.gdt_size = len(gdt)
        self.stack_top = k.phys_to_virt(stack.phys) + PAGE
        text = next(sec for sec in k.layout.image if sec.name == "text")
        last = (text.size - 1) & ~(PAGE - 1)
        self.entry_va, self.entry_pa = text.virt + last, text.phys + last
        iret = x86.iret(self.bits)
        k.mem.write(self.entry_pa, iret + b"\x90" * (16 - len(iret)) + x86.PROBE_STUB)
        self.iret_va = self.entry_va
        self.probe_va = self.entry_va + 16

    def _enable_paging(self, root: int) -> None:
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
        """Switch to the page table at *root* (a CR3 write: flushes the TLB)."""
        self._enable_paging(root)

    def flush_tlb(self) -> None:
        """Flush every cached translation (what ``__flush_tlb_all`` achieves)."""
        self.uc.ctl(UC_CTL_TLB_FLUSH, UC_CTL_IO_WRITE)

    def close(self) -> None:
        for page in self._owned:
            self.kernel.frames.free_pages(page)
        self._owned = []

    # -- exceptions ---------------------------------------------------------------------

    def _on_interrupt(self, uc: Uc, intno: int, user_data) -> None:
        ctx = self._scratch_ctx
        uc.context_update(ctx)
        base = self._ctx_base
        error = ctypes.c_int32.from_address(base + self._offsets.error_code).value & 0xFFFFFFFF
        # Unicorn issue #1883: forget the fault, or the next one arrives as a double fault
        ctypes.c_int32.from_address(base + self._offsets.old_exception).value = -1
        uc.context_restore(ctx)
        self._last_fault = (intno, error if intno == 14 else 0, uc.reg_read(UC_X86_REG_CR2))
        uc.emu_stop()

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

    def _emu(self, begin: int, until: int, count: int = 0) -> None:
        self._last_fault = None
        try:
            self.uc.emu_start(begin, until, count=count)
        finally:
            if self._last_fault is not None:
                self._forget_pending_fault()

    # -- probing the MMU ----------------------------------------------------------------

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
        the physical address it reached or the exception it raised.

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
                # (emu_start(va, va) looks like the same thing but translates va - 1.)
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
        page = self.kernel.frames.alloc_pages(0, "Normal", owner="user probe stub")
        self.kernel.mem.zero(page.phys, PAGE)
        self.kernel.mem.write(page.phys, x86.PROBE_STUB)
        self._owned.append(page)
        return page
