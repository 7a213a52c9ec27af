"""The x86 CPU adapter: Unicorn's x86 CPU in the kernel's paging mode (i386 2-level, PAE,
x86_64 4- and 5-level).

Guest-side pieces are placed where the kernel has them: the GDT in a page of low memory
(``gdt_page``), a kernel stack, and the entry stubs (``iret`` to user mode, the return stub
of kernel calls, the probe instructions) in the last page of the kernel's text, like the
kernel's ``.entry.text``. User mode is entered as the kernel enters it: an ``iret`` from
the kernel stack (writing CS/SS with ``reg_write`` does not change the CPL in 64-bit mode,
and a ring-3 SS write is refused in 32-bit mode).

Unicorn behaviours this adapter works around (each found by a test): ``old_exception`` is
never reset after a fault handled in the hook (issue #1883: the next fault would be a
double fault), so the hook resets it in the saved CPU state (:mod:`.faultstate`); a fault
raised while a block is translated is raised once more on the way out of ``emu_stop()``;
in 32-bit mode a segment-register write while the GDT is unmapped crashes the host, so the
GDT's mapping is checked before every load.
"""

from __future__ import annotations

import ctypes
import operator
import struct

from unicorn import UC_ARCH_X86, UC_HOOK_INSN, UC_MODE_32, UC_MODE_64, Uc, UcError, x86_const
from unicorn.x86_const import (
    UC_X86_INS_SYSCALL,
    UC_X86_REG_AL,
    UC_X86_REG_CR0,
    UC_X86_REG_CR2,
    UC_X86_REG_CR3,
    UC_X86_REG_CR4,
    UC_X86_REG_CS,
    UC_X86_REG_DS,
    UC_X86_REG_EAX,
    UC_X86_REG_EBX,
    UC_X86_REG_ECX,
    UC_X86_REG_EDI,
    UC_X86_REG_EDX,
    UC_X86_REG_EIP,
    UC_X86_REG_ES,
    UC_X86_REG_ESI,
    UC_X86_REG_ESP,
    UC_X86_REG_FS,
    UC_X86_REG_GDTR,
    UC_X86_REG_GS_BASE,
    UC_X86_REG_R8,
    UC_X86_REG_R9,
    UC_X86_REG_R10,
    UC_X86_REG_RAX,
    UC_X86_REG_RBX,
    UC_X86_REG_RCX,
    UC_X86_REG_RDI,
    UC_X86_REG_RDX,
    UC_X86_REG_RIP,
    UC_X86_REG_RSI,
    UC_X86_REG_RSP,
    UC_X86_REG_SS,
)

from mmemu.cpu.adapter import EXCEPTION, FAULT, KCALL, SYSCALL, CpuAdapter, KcallArgs, Trap, context_calls
from mmemu.errors import MmemuError
from mmemu.units import PAGE_SIZE as PAGE

from . import guest
from .boot_maps import cea_va, percpu_pfn
from .faultstate import find_offsets, find_register_offsets
from .pti import entry_text

EFER_MSR = 0xC0000080
KERNEL_STACK_ORDER = 2  # THREAD_SIZE: 16 KiB

#: exception names for reports (arch/x86/include/asm/trapnr.h)
VECTORS = {0: "divide error", 1: "debug", 3: "int3", 4: "overflow", 5: "bounds", 6: "invalid opcode",
           7: "device not available", 8: "double fault", 10: "invalid TSS", 11: "segment not present",
           12: "stack segment", 13: "general protection fault", 14: "page fault", 16: "coprocessor error",
           17: "alignment check", 19: "SIMD exception"}


class X86Adapter(CpuAdapter):
    """i386 (32-bit mode) or x86_64 (long mode), as :attr:`setup` (the arch's CpuSetup) says."""

    probe_stub = guest.PROBE_STUB
    probe_read = (guest.PROBE_READ_OFF, guest.PROBE_READ_OFF + len(guest.PROBE_READ))
    probe_write = (guest.PROBE_WRITE_OFF, guest.PROBE_WRITE_OFF + len(guest.PROBE_WRITE))

    def __init__(self, kernel, mmu: str, setup):
        super().__init__(kernel, mmu)
        self.setup_regs = setup
        self.bits = setup.bits
        b64 = self.bits == 64
        # 32-bit mode takes the 32-bit register names (Unicorn ignores RBX/RSP there)
        self._reg_bx = UC_X86_REG_RBX if b64 else UC_X86_REG_EBX
        self._reg_sp = UC_X86_REG_RSP if b64 else UC_X86_REG_ESP
        self._reg_ip = UC_X86_REG_RIP if b64 else UC_X86_REG_EIP
        self._reg_ax = UC_X86_REG_RAX if b64 else UC_X86_REG_EAX
        # x86_64: SysV (rdi, rsi, rdx, rcx, r8, r9); i386: regparm(3) (eax, edx, ecx)
        self._arg_regs = ((UC_X86_REG_RDI, UC_X86_REG_RSI, UC_X86_REG_RDX, UC_X86_REG_RCX, UC_X86_REG_R8, UC_X86_REG_R9)
                          if b64 else (UC_X86_REG_EAX, UC_X86_REG_EDX, UC_X86_REG_ECX))
        self.max_call_args = len(self._arg_regs)
        # the system call ABI: x86_64 syscall (rax; rdi, rsi, rdx, r10, r8, r9), exit 60 and
        # exit_group 231; i386 int 0x80 (eax; ebx, ecx, edx, esi, edi), exit 1, exit_group 252
        self._sys_regs = ((UC_X86_REG_RAX, UC_X86_REG_RDI, UC_X86_REG_RSI, UC_X86_REG_RDX, UC_X86_REG_R10,
                           UC_X86_REG_R8, UC_X86_REG_R9) if b64 else
                          (UC_X86_REG_EAX, UC_X86_REG_EBX, UC_X86_REG_ECX, UC_X86_REG_EDX, UC_X86_REG_ESI,
                           UC_X86_REG_EDI))
        self.exit_syscalls = (60, 231) if b64 else (1, 252)
        self._fault_regs = (UC_X86_REG_CR2, self._reg_ip, self._reg_sp)
        self._mask = (1 << self.bits) - 1
        self._user_ctx: dict[tuple[int, int], object] = {}
        self.pti = False  # the kernel has user copies of its pgds (set in setup)
        self._from_user = False  # the trap being handled came from user mode (PTI: CR3 switched)

    # -- creation -------------------------------------------------------------------------

    def create(self) -> Uc:
        self._offsets = find_offsets()
        self._regs = find_register_offsets()
        self.uc = Uc(UC_ARCH_X86, UC_MODE_64 if self.bits == 64 else UC_MODE_32)
        self._scratch_ctx = self.uc.context_save()
        self._ctx_base = ctypes.cast(self._scratch_ctx.context, ctypes.c_void_p).value
        # the fault hook's save and restore of it, straight into libunicorn
        self._ctx_update, self._ctx_restore = context_calls(self.uc, self._scratch_ctx)
        # the saved context as a buffer: the fault hook reads the error code, CR2, ip and sp
        # with one unpack (fields in offset order, the gaps skipped) and resets old_exception
        # with one pack
        self._ctx_view = memoryview((ctypes.c_char * self._scratch_ctx.size).from_address(self._ctx_base)).cast("B")
        fields = sorted([(self._offsets.error_code, "I", 0), (self._regs.cr2, "Q", 1), (self._regs.ip, "Q", 2),
                         (self._regs.sp, "Q", 3)])
        fmt, pos = "<", 0
        for off, code, _ in fields:
            fmt += f"{off - pos}x{code}"
            pos = off + struct.calcsize(code)
        self._fault_fields = struct.Struct(fmt)
        # back from offset order to (error code, CR2, ip, sp), in C
        roles = [i for _, _, i in fields]
        self._fault_order = operator.itemgetter(*(roles.index(r) for r in range(4)))
        return self.uc

    def install_hooks(self) -> None:
        if self.bits == 64:
            self.uc.hook_add(UC_HOOK_INSN, self._on_syscall_insn, aux1=UC_X86_INS_SYSCALL)

    def setup(self, root: int) -> None:
        k = self.kernel
        s = self.setup_regs
        gdt_page = self.cpu.alloc_pages(0, "gdt_page")
        stack = self.cpu.alloc_pages(KERNEL_STACK_ORDER, "kernel stack")
        gdt = bytearray(guest.build_gdt(self.bits, s.kernel_cs, s.kernel_ds, s.user_cs, s.user_ds, s.gdt_entries))
        if k.pcpu is not None and s.kernel_percpu:
            # arch/x86/kernel/cpu/common.c: the GDT entry of __KERNEL_PERCPU has the CPU's
            # __per_cpu_offset as its base (i386 %fs)
            i = s.kernel_percpu >> 3
            gdt[8 * i:8 * i + 8] = guest.segment_descriptor(guest.KERNEL_DATA, guest.FLAGS_32,
                                                            base=k.per_cpu_offset(self.cpu.index))
        self.pti = k.user_pgd(k.pgd) != k.pgd
        if self.pti:
            # PTI: the GDT user mode can see, the CPU's read-only one in the cpu_entry_area
            # (load_fixmap_gdt: get_cpu_gdt_ro), backed by its per-cpu gdt_page; the iret to
            # user mode pops its frame from the CPU's entry stack there (the trampoline stack
            # of swapgs_restore_regs_and_return_to_usermode), mapped in both copies
            k.mem.write(percpu_pfn(k, self.cpu.index, "gdt") << 12, gdt)
            self.gdt_va = cea_va(k, self.cpu.index, "gdt")
            self.entry_stack_top = cea_va(k, self.cpu.index, "entry_stack_page") + PAGE
        else:
            k.mem.write(gdt_page.phys, gdt)
            self.gdt_va = k.phys_to_virt(gdt_page.phys)
        self.gdt_size = len(gdt)
        self.stack_top = k.phys_to_virt(stack.phys) + (PAGE << KERNEL_STACK_ORDER)
        self.entry_va, _end = entry_text(k.layout)
        self.entry_pa = k.image_phys(self.entry_va)
        stub = guest.entry_stubs(self.bits)
        k.mem.write(self.entry_pa, stub.code)
        self.iret_va = self.entry_va + stub.iret
        self.probe_va = self.entry_va + stub.probe
        self.return_va = self.entry_va + stub.ret
        self._load_cpu_state(root)

    def _check_gdt(self, root: int) -> None:
        # A segment load reads the GDT through paging; with the GDT unmapped Unicorn
        # crashes the host process (32-bit mode), so check the mapping first.
        if self.kernel.pgtable.walk(root, self.gdt_va).fault("read") is not None:
            raise MmemuError(f"the GDT at {self.gdt_va:#x} is not mapped in the page table at {root:#x}")

    def _load_cpu_state(self, root: int) -> None:
        """Control registers, GDT and segments, once: what cpu_init leaves."""
        uc, s = self.uc, self.setup_regs
        uc.reg_write(UC_X86_REG_CR3, root)
        uc.reg_write(UC_X86_REG_CR4, s.cr4)
        if s.efer:
            uc.msr_write(EFER_MSR, s.efer)
        uc.reg_write(UC_X86_REG_CR0, s.cr0)
        self._check_gdt(root)
        uc.reg_write(UC_X86_REG_GDTR, (0, self.gdt_va, self.gdt_size - 1, 0))
        if self.bits == 32:
            uc.reg_write(UC_X86_REG_CS, s.kernel_cs)
        uc.reg_write(UC_X86_REG_SS, s.kernel_ds)
        # i386 Linux runs the kernel with __USER_DS in DS/ES (entry_32.S), so that an iret
        # to user mode keeps them valid; 64-bit mode ignores them, and x86_64 Linux leaves
        # them 0 (a kernel thread's oops shows 'DS: 0000 ES: 0000').
        if self.bits == 32:
            uc.reg_write(UC_X86_REG_DS, s.user_ds)
            uc.reg_write(UC_X86_REG_ES, s.user_ds)
        if self.kernel.pcpu is not None:
            # the per-cpu base: i386 loads __KERNEL_PERCPU into %fs on kernel entry;
            # x86_64's MSR_GS_BASE holds __per_cpu_offset (cpu_kernelmode_gs_base)
            if self.bits == 32 and s.kernel_percpu:
                uc.reg_write(UC_X86_REG_FS, s.kernel_percpu)
            elif self.bits == 64:
                uc.reg_write(UC_X86_REG_GS_BASE, self.kernel.per_cpu_offset(self.cpu.index))
        uc.reg_write(self._reg_sp, self.stack_top)
        self._kernel_ctx = uc.context_save()
        self._user_ctx.clear()

    # -- the running kernel ----------------------------------------------------------------

    def set_root(self, root: int) -> None:
        """A CR3 write. The GDT lives in the shared kernel part, so the segments stay."""
        self._check_gdt(root)
        self.uc.context_restore(self._kernel_ctx)
        self.uc.reg_write(UC_X86_REG_CR3, root)
        self._kernel_ctx = self.uc.context_save()
        self._user_ctx.clear()

    def enter_call(self, func: int, args: tuple[int, ...]) -> tuple[int, int]:
        uc = self.uc
        uc.context_restore(self._kernel_ctx)
        word = self.bits // 8
        sp = ((self.stack_top - 64) & ~0xF) - word
        self.kernel.mem.write(self.kernel.virt_to_phys(sp), self.return_va.to_bytes(word, "little"))
        uc.reg_write(self._reg_sp, sp)
        for reg, value in zip(self._arg_regs, args):
            uc.reg_write(reg, value & self._mask)
        return func, self.return_va

    def enter_user(self, entry: int, sp: int) -> tuple[int, int]:
        uc, s = self.uc, self.setup_regs
        uc.context_restore(self._kernel_ctx)
        self._prepare_iret(guest.iret_frame(self.bits, entry, s.user_cs, 0x202, sp, s.user_ds), 128)
        # the kernel enters user mode with an iret; nothing returns to the return stub
        return self.iret_va, self.return_va

    def _prepare_iret(self, frame: bytes, below_top: int) -> None:
        """The iret frame on the stack the exit to user mode pops it from: *below_top*
        bytes under the top of the kernel stack; with PTI at the top of the CPU's entry
        stack, with CR3 switched to the user copy first (SWITCH_TO_USER_CR3_STACK: the iret
        itself runs on the user copy, from the entry text mapped there)."""
        k = self.kernel
        if self.pti:
            sp = self.entry_stack_top - len(frame)
            k.mem.write(k.pgtable.walk(k.pgd, sp).phys, frame)
            self._write_cr3(k.user_pgd(self.cpu.cr3))
        else:
            sp = self.stack_top - below_top
            k.mem.write(k.virt_to_phys(sp), frame)
        self.uc.reg_write(self._reg_sp, sp)

    def _kernel_entry(self) -> bool:
        """PTI: an exception or system call from user mode enters the kernel on the user
        copy; the entry code switches CR3 to the kernel's pgd (SWITCH_TO_KERNEL_CR3).
        Returns whether it did (the exit path then switches back)."""
        if self.pti and self.user_mode():
            self._write_cr3(self.cpu.cr3)
            return True
        return False

    def _exit_to_user(self) -> None:
        """SWITCH_TO_USER_CR3 on the way back to user mode."""
        self._write_cr3(self.kernel.user_pgd(self.cpu.cr3))

    def _write_cr3(self, root: int) -> None:
        """A CR3 write without PCID: the TLB's translations go (Unicorn's virtual TLB, which
        the plugin MMU fills, ignores CR3 writes: flushed here)."""
        self.uc.reg_write(UC_X86_REG_CR3, root)
        if self.mmu == "plugin":
            self.cpu.flush_tlb()

    def current_root(self) -> int | None:
        return self.uc.reg_read(UC_X86_REG_CR3) & ~0xFFF if self.pti else None

    def return_value(self) -> int:
        return self.uc.reg_read(self._reg_ax)

    def pc(self) -> int:
        return self.uc.reg_read(self._reg_ip)

    def sp(self) -> int:
        return self.uc.reg_read(self._reg_sp)

    def user_mode(self) -> bool:
        return (self.uc.reg_read(UC_X86_REG_CS) & 3) == 3

    # -- what happened ---------------------------------------------------------------------

    def _read_and_forget_fault(self) -> int:
        """The #PF error code, and old_exception reset (Unicorn issue #1883)."""
        uc, ctx, base = self.uc, self._scratch_ctx, self._ctx_base
        uc.context_update(ctx)
        error = ctypes.c_int32.from_address(base + self._offsets.error_code).value & 0xFFFFFFFF
        ctypes.c_int32.from_address(base + self._offsets.old_exception).value = -1
        uc.context_restore(ctx)
        return error

    def decode_interrupt(self, intno: int) -> Trap:
        self._from_user = self.pti and self._kernel_entry()
        if intno == 14:
            # the error code, CR2, ip and sp from the context saved to reset old_exception
            # (one copy, one unpack: cheaper than reading registers)
            view = self._ctx_view
            err = self._ctx_update()
            if err:
                raise UcError(err)
            error, cr2, ip, sp = self._fault_order(self._fault_fields.unpack_from(view))
            struct.pack_into("<i", view, self._offsets.old_exception, -1)
            err = self._ctx_restore()
            if err:
                raise UcError(err)
            mask = self._mask
            return Trap(FAULT, intno, self.kernel.codec.fault_from_code(cr2 & mask, error), ip=ip & mask, sp=sp & mask)
        error = self._read_and_forget_fault()
        if intno == 3:
            at = (self.pc() - 1) & self._mask  # int3 is a trap: the ip is past it
            if at in self.kernel.kcall_addresses:
                return Trap(KCALL, intno, ip=at, sp=self.sp())
        if intno == 0x80 and self.bits == 32:
            nr, *args = self.uc.reg_read_batch(self._sys_regs)
            return Trap(SYSCALL, intno, nr=nr, args=tuple(args), ip=self.pc())
        ip = self.pc()
        name = VECTORS.get(intno, f"exception {intno}")
        code = f" error_code {error:#x}" if intno in (8, 10, 11, 12, 13, 17) else ""
        return Trap(EXCEPTION, intno, description=f"{name}: {intno}{code}", ip=ip)

    def fault_intno(self, fault) -> int:
        return 14  # #PF

    def fault_resume(self):
        """Without PTI nothing is switched back after a fault: no call."""
        return self.resume_after_fault if self.pti else None

    def resume_after_fault(self, trap: Trap) -> None:
        if self._from_user:
            self._exit_to_user()

    def registers(self) -> dict[str, int]:
        """pt_regs and the control registers as __show_regs prints them (arch/x86/kernel/
        process_32.c, process_64.c): the general registers (``ax`` ... ``r15``), ``ip``,
        ``sp``, ``flags``, the selectors, FS/GS bases and KERNEL_GS_BASE (64-bit), CR0-4 and
        the debug registers, read from the engine in the interrupt hook."""
        uc, b64 = self.uc, self.bits == 64
        names = (("ax", "RAX", "EAX"), ("bx", "RBX", "EBX"), ("cx", "RCX", "ECX"), ("dx", "RDX", "EDX"),
                 ("si", "RSI", "ESI"), ("di", "RDI", "EDI"), ("bp", "RBP", "EBP"), ("sp", "RSP", "ESP"),
                 ("ip", "RIP", "EIP"), ("flags", "EFLAGS", "EFLAGS"))
        regs = {name: uc.reg_read(getattr(x86_const, f"UC_X86_REG_{r64 if b64 else r32}")) & self._mask
                for name, r64, r32 in names}
        if b64:
            for i in range(8, 16):
                regs[f"r{i}"] = uc.reg_read(getattr(x86_const, f"UC_X86_REG_R{i}"))
            regs["fs_base"] = uc.reg_read(x86_const.UC_X86_REG_FS_BASE)
            regs["gs_base"] = uc.reg_read(x86_const.UC_X86_REG_GS_BASE)
            regs["kernel_gs_base"] = uc.msr_read(0xC0000102)  # MSR_KERNEL_GS_BASE
        for name in ("cs", "ss", "ds", "es", "fs", "gs", "cr0", "cr2", "cr3", "cr4", "dr0", "dr1", "dr2", "dr3",
                     "dr6", "dr7"):
            regs[name] = uc.reg_read(getattr(x86_const, f"UC_X86_REG_{name.upper()}"))
        if b64 and regs["cs"] == 0 and not self.user_mode():
            # long mode runs with the CS the adapter never loads (Unicorn keeps 0 there): the
            # kernel's code segment is the GDT's __KERNEL_CS, which the CPU's frame would hold
            regs["cs"] = self.setup_regs.kernel_cs
        return regs

    # -- kernel functions ---------------------------------------------------------------------

    def _stack_word(self, sp: int, i: int, word: int) -> int:
        return int.from_bytes(self.kernel.read(sp + word * i, word), "little")

    def kcall_args(self, n: int, varargs: bool, asmlinkage: bool = False) -> KcallArgs:
        """x86_64: System V (rdi, rsi, rdx, rcx, r8, r9, then the stack above the return
        address), variable arguments the same. i386: the kernel is built with
        -mregparm=3 (eax, edx, ecx, then the stack); a variadic or asmlinkage function takes
        every argument on the stack."""
        uc, word = self.uc, self.bits // 8
        sp = self.sp()
        if self.bits == 64:
            in_regs = [uc.reg_read(r) for r in self._arg_regs]
        elif varargs or asmlinkage:
            in_regs = []
        else:
            in_regs = [uc.reg_read(r) for r in self._arg_regs]
        pos = [0]

        def arg() -> int:
            i = pos[0]
            pos[0] += 1
            if i < len(in_regs):
                return in_regs[i]
            return self._stack_word(sp, 1 + i - len(in_regs), word)  # 1: past the return address

        fixed = [arg() for _ in range(n)]

        def next_vararg(size: int) -> int:
            if size <= word:
                return arg()
            lo = arg()
            return lo | (arg() << 32)  # a 64-bit value in two 32-bit slots, low first
        return KcallArgs(fixed, next_vararg)

    def kcall_return(self, value: int | None) -> None:
        """``ret``: the return address popped from the stack into the ip; *value* in
        eax/rax."""
        uc, word = self.uc, self.bits // 8
        if value is not None:
            uc.reg_write(self._reg_ax, value & self._mask)
        sp = self.sp()
        uc.reg_write(self._reg_sp, (sp + word) & self._mask)
        uc.reg_write(self._reg_ip, self._stack_word(sp, 0, word))

    def _on_syscall_insn(self, uc, user_data) -> None:
        nr, *args = uc.reg_read_batch(self._sys_regs)
        from_user = self._kernel_entry()
        self.cpu.syscall(nr, tuple(args))
        if from_user and nr not in self.exit_syscalls:
            self._exit_to_user()

    def set_syscall_return(self, value: int) -> None:
        self.uc.reg_write(self._reg_ax, value & self._mask)

    def after_run(self) -> None:
        """Reset old_exception after a run stopped on a fault. A fault raised while QEMU
        translates a block is raised a second time on the way out once emu_stop() is
        pending, without reaching the hook, and would turn the next fault into a double
        fault."""
        uc, ctx = self.uc, self._scratch_ctx
        uc.context_update(ctx)
        slot = ctypes.c_int32.from_address(self._ctx_base + self._offsets.old_exception)
        if slot.value != -1:
            slot.value = -1
            uc.context_restore(ctx)

    # -- small programs ---------------------------------------------------------------------

    def program_touch_pages(self, base: int, n: int) -> bytes:
        return guest.touch_pages_code(self.bits, base, n)

    def program_loop(self) -> bytes:
        return bytes.fromhex("ebfe")  # jmp $

    def function_read_byte(self) -> bytes:
        return guest.read_byte_code(self.bits)

    # -- probing ----------------------------------------------------------------------------

    def kernel_probe_stub(self) -> int:
        return self.probe_va

    def enter_probe(self, stub_va: int, user: bool, va: int, byte: int) -> None:
        uc = self.uc
        uc.context_restore(self._user_context(stub_va) if user else self._kernel_ctx)
        uc.reg_write(self._reg_bx, va)
        uc.reg_write(UC_X86_REG_AL, byte)

    def _user_context(self, user_stub_va: int):
        """A CPL 3 context stopped at *user_stub_va*, reached the way the kernel reaches user
        mode: an ``iret`` from the kernel stack (cached per root and stub)."""
        key = (self.cpu.cr3, user_stub_va)
        ctx = self._user_ctx.get(key)
        if ctx is None:
            uc, s = self.uc, self.setup_regs
            uc.context_restore(self._kernel_ctx)
            self._prepare_iret(guest.iret_frame(self.bits, user_stub_va, s.user_cs, 0x2, user_stub_va + PAGE - 16,
                                                s.user_ds), 64)
            self.cpu.run_to(self.iret_va, user_stub_va)
            trap = self.cpu.last_trap
            if trap is not None:
                code = trap.fault.code if trap.fault is not None else 0
                raise MmemuError(f"cannot enter user mode at {user_stub_va:#x}: exception {trap.intno} "
                                 f"(error code {code:#x}); map the user stub user-executable")
            ctx = uc.context_save()
            self._user_ctx[key] = ctx
        return ctx
