"""The arm64 CPU adapter: Unicorn's AArch64 CPU (Cortex-A72 model) at EL1 and EL0 with the
kernel's tables: TTBR1_EL1 the kernel's root (swapper_pg_dir), TTBR0_EL1 the current
process's, or for a kernel thread (init_mm) an empty table, as cpu_set_reserved_ttbr0()
loads: empty_zero_page, reserved_pg_dir in later kernels (eras.CPU).

Guest pieces are placed where the kernel has them: a kernel stack (THREAD_SIZE, 16 KiB) from
the buddy allocator, and the entry page (the probe and the return stub of kernel calls,
guest.py) at the start of the last page of the kernel's text.

Unicorn 2.1.4 behaviours this adapter works around (/work/shared/unicorn-riscv-arm64/
README.md; each one met again by a test here):

- Unicorn's arm64 TLB pages are 1 KiB by default: a TLB fill (the plugin MMU) is asked for
  a 1 KiB-aligned address, which the core's fill maps to the start of the 4 KiB frame.
  :meth:`create` sets 4 KiB pages (``ctl_set_page_size``), the kernel's granule.
- SCR_EL3.RW is 0 at reset, and QEMU then treats EL1 as AArch32 for translation: every
  fetch prefetch-aborts once SCTLR_EL1.M is set. :meth:`create` sets RW (B1).
- There is no exception entry: an abort reaches ``UC_HOOK_INTR`` with the faulting EL and
  PC unchanged and ESR_EL1/FAR_EL1 not written (X1, B2). The data abort (intno 4) has the PC
  at the instruction, the prefetch abort (intno 3) at the fetch address; svc (intno 2) the
  PC after the svc. The syndrome and address QEMU built for the abort are in its CPU state
  all the same (cpustate.py): the fault is read from them as the kernel reads ESR_EL1 and
  FAR_EL1 (codec.fault_from_esr), with no walk of the tables. The walker's own reading
  (referee.py: the decoded instruction, the tables) checks them in the tests
  (:attr:`Arm64Adapter.walker_referee`). Nothing is rewound: returning from the hook
  retries the instruction.
- A PSTATE write does not rebuild the cached translation flags (hflags: EL, mmu_idx), so
  every EL change is followed by a CP_REG write (B1); the CPU states of EL1h and EL0t are
  built that way once and switched by ``context_restore``.
- Each register read through the API costs 3-4 us (X11), and a data abort needs five: the
  hook reads them in place from the saved CPU state (cpustate.py: one ``context_update``).
- A TTBR write does not flush the TLB: the core flushes after :meth:`set_root` (B5, X7).
- No hardware access flag (B3): an old page takes an access-flag fault every time; the
  kernel's fault path makes it young (pte_mkyoung) and the access is retried.
"""

from __future__ import annotations

from unicorn import UC_ARCH_ARM64, UC_MODE_ARM, Uc
from unicorn.arm64_const import (UC_ARM64_REG_PC, UC_ARM64_REG_PSTATE, UC_ARM64_REG_SP, UC_ARM64_REG_SP_EL0,
                                 UC_ARM64_REG_X0, UC_ARM64_REG_X30, UC_CPU_ARM64_A72)

from mmemu.cpu.adapter import EXCEPTION, FAULT, KCALL, SYSCALL, CpuAdapter, KcallArgs, Trap
from mmemu.errors import MmemuError
from mmemu.faults import Fault

from . import guest
from .cpustate import CpuState
from .eras import ARM64, CPU

PAGE = 4096
MASK64 = (1 << 64) - 1
KERNEL_STACK_ORDER = 2  # THREAD_SIZE 16 KiB (arch/arm64/include/asm/memory.h, 4 KiB pages)

# system registers: (op0, op1, CRn, CRm, op2)
SCTLR_EL1 = (3, 0, 1, 0, 0)
CPACR_EL1 = (3, 0, 1, 0, 2)
TCR_EL1 = (3, 0, 2, 0, 2)
TTBR0_EL1 = (3, 0, 2, 0, 0)
TTBR1_EL1 = (3, 0, 2, 0, 1)
MAIR_EL1 = (3, 0, 10, 2, 0)
SCR_EL3 = (3, 6, 1, 1, 0)

SCR_RW = 1 << 10  # EL2 and below are AArch64
SCTLR_M, SCTLR_C, SCTLR_I = 1 << 0, 1 << 2, 1 << 12
CPACR_FPEN = 3 << 20  # no trap of FP/SIMD at EL0 and EL1 (fpsimd_kernel / cpu_setup)
PSR_MODE_EL0t = 0x0
PSR_MODE_EL1h = 0x5
PSR_DAIF = 0xF << 6

# TCR_EL1 (arch/arm64/include/asm/pgtable-hwdef.h; proc.S __cpu_setup): 4 KiB granules in both
# halves, inner/outer write-back write-allocate, inner shareable, IPS from PARange
TCR_IRGN0_WBWA, TCR_ORGN0_WBWA, TCR_SH0_INNER = 1 << 8, 1 << 10, 3 << 12
TCR_IRGN1_WBWA, TCR_ORGN1_WBWA, TCR_SH1_INNER = 1 << 24, 1 << 26, 3 << 28
TCR_TG0_4K, TCR_TG1_4K = 0 << 14, 2 << 30
TCR_IPS_SHIFT = 32
#: ID_AA64MMFR0_EL1.PARange encodings (tcr_compute_pa_size)
PARANGE = {32: 0, 36: 1, 40: 2, 42: 3, 44: 4, 48: 5}

#: MAIR_EL1 of proc.S: attributes by MT_* index. 3.7-5.9: DEVICE_nGnRnE 0 (0x00), DEVICE_nGnRE 1
#: (0x04), DEVICE_GRE 2 (0x0c), NORMAL_NC 3 (0x44), NORMAL 4 (0xff), NORMAL_WT 5 (0xbb); 5.10+:
#: NORMAL 0 (0xff), NORMAL_TAGGED 1 (0xff without MTE), NORMAL_NC 2 (0x44), NORMAL_WT 3 (0xbb),
#: DEVICE_nGnRnE 4 (0x00), DEVICE_nGnRE 5 (0x04)
MAIR_OLD = 0x00 | 0x04 << 8 | 0x0C << 16 | 0x44 << 24 | 0xFF << 32 | 0xBB << 40
MAIR_NEW = 0xFF | 0xFF << 8 | 0x44 << 16 | 0xBB << 24 | 0x00 << 32 | 0x04 << 40

#: QEMU's EXCP_BKPT (target/arm/cpu.h): a BRK instruction
EXCP_BKPT = 7

#: ESR_ELx.FSC of the aborts that are not faults of the tables and that QEMU raises
#: (Arm ARM D17.2.37 DFSC/IFSC, named as arch/arm64/mm/fault.c fault_info[] names them)
FSC_NAMES = {0x10: "synchronous external abort", 0x11: "synchronous tag check fault", 0x21: "alignment fault",
             0x30: "TLB conflict abort"}

#: QEMU's EXCP_* numbers (target/arm/cpu.h), named as the Arm ARM names the exceptions: what
#: the adapter reports of an exception that is not an abort (aborts are read from the syndrome)
EXCEPTIONS = {1: "Undefined Instruction (ESR_ELx.EC 0x00 Unknown reason, or a trapped instruction)",
              2: "SVC instruction execution in AArch64 state", 3: "Instruction Abort", 4: "Data Abort",
              5: "IRQ interrupt", 6: "FIQ interrupt", 7: "Breakpoint Instruction (BRK) execution in AArch64 state",
              11: "HVC instruction execution in AArch64 state", 12: "exception taken to EL2 (trap)",
              13: "SMC instruction execution in AArch64 state", 14: "virtual IRQ", 15: "virtual FIQ",
              16: "semihosting call (HLT)", 22: "Alignment fault"}


class Arm64Adapter(CpuAdapter):
    """One AArch64 CPU of an arm64 kernel."""

    exit_syscalls = (93, 94)  # include/uapi/asm-generic/unistd.h: __NR_exit 93, __NR_exit_group 94
    max_call_args = 8  # AAPCS64: x0..x7
    probe_stub = guest.PROBE_STUB
    probe_read = guest.PROBE_READ
    probe_write = guest.PROBE_WRITE
    #: read every abort a second way, from the decoded instruction and the tables
    #: (referee.py), and stop the run on a disagreement with QEMU's syndrome: the tests
    walker_referee = False

    def __init__(self, kernel, mmu: str):
        super().__init__(kernel, mmu)
        self.va_bits = kernel.paging.va_bits
        self.pa_bits = kernel.paging.pa_bits
        self.ttbr0 = 0  # the physical address TTBR0_EL1 holds
        self.codec = kernel.paging.codec
        self.upper = (1 << (64 - self.va_bits)) - 1  # addr >> VA_BITS of the TTBR1 half
        self._referee = None

    # -- creation -------------------------------------------------------------------------

    def create(self) -> Uc:
        uc = Uc(UC_ARCH_ARM64, UC_MODE_ARM)
        uc.ctl_set_cpu_model(UC_CPU_ARM64_A72)  # ARMv8.0: no PAN, no hardware AF/DBM, PARange 44 bits
        # QEMU's arm target pages are 1 KiB unless set (TARGET_PAGE_BITS_VARY): the TLB (and the
        # plugin MMU's fills) then come in 1 KiB pieces; the kernel's granule is 4 KiB. Only
        # possible before the engine is initialised (the first register access does that).
        uc.ctl_set_page_size(PAGE)
        # SCR_EL3.RW: without it QEMU translates EL1 as AArch32 and every fetch aborts (README B1)
        uc.cpr_write(*SCR_EL3, SCR_RW)
        self.uc = uc
        # the registers, read in place from the saved state (cpustate.py)
        self.state = CpuState(uc)
        return uc

    def setup(self, root: int) -> None:
        k = self.kernel
        uc = self.uc
        stack = self.cpu.alloc_pages(KERNEL_STACK_ORDER, "kernel stack")
        self.stack_top = k.phys_to_virt(stack.phys) + (PAGE << KERNEL_STACK_ORDER)
        text = next(sec for sec in k.layout.image if sec.name == "text")
        last = (text.size - 1) & ~(PAGE - 1)
        self.entry_va, self.entry_pa = text.virt + last, text.phys + last
        k.mem.write(self.entry_pa, guest.ENTRY_PAGE)
        self.probe_va = self.entry_va + guest.PROBE_OFF
        self.return_va = self.entry_va + guest.RETURN_OFF
        self.reserved_ttbr0 = self._reserved_table()
        era_mair = MAIR_NEW if ARM64(k.spec.kernel).mt_normal == 0 else MAIR_OLD
        t0sz = t1sz = 64 - self.va_bits
        tcr = (t0sz | TCR_IRGN0_WBWA | TCR_ORGN0_WBWA | TCR_SH0_INNER | TCR_TG0_4K
               | t1sz << 16 | TCR_IRGN1_WBWA | TCR_ORGN1_WBWA | TCR_SH1_INNER | TCR_TG1_4K
               | PARANGE[self.pa_bits] << TCR_IPS_SHIFT)
        uc.cpr_write(*MAIR_EL1, era_mair)
        uc.cpr_write(*TCR_EL1, tcr)
        uc.cpr_write(*TTBR1_EL1, k.pgd)
        uc.cpr_write(*CPACR_EL1, CPACR_FPEN)
        self.ttbr0 = self._ttbr0_for(root)
        uc.cpr_write(*TTBR0_EL1, self.ttbr0)
        uc.cpr_write(*SCTLR_EL1, uc.cpr_read(*SCTLR_EL1) | SCTLR_M | SCTLR_C | SCTLR_I)
        self._save_contexts()

    def _reserved_table(self) -> int:
        """The physical address of the table TTBR0_EL1 holds for init_mm (always zero)."""
        k = self.kernel
        s = k.layout.symbols
        if CPU(k.spec.kernel).reserved_ttbr0 == "reserved_pg_dir" and "reserved_pg_dir" in s:
            pa = k.virt_to_phys(s["reserved_pg_dir"])
        else:
            pa = k.zero_pfn << 12  # empty_zero_page
        if any(k.mem.read(pa, PAGE)):
            raise MmemuError(f"the reserved TTBR0 table at {pa:#x} is not empty")
        return pa

    def _ttbr0_for(self, root: int) -> int:
        return self.reserved_ttbr0 if root == self.kernel.pgd else root

    def _save_contexts(self) -> None:
        """The CPU at EL1h on the kernel stack, and at EL0t, each with its translation flags
        rebuilt (a PSTATE write alone leaves them stale: README B1)."""
        uc = self.uc
        sctlr = uc.cpr_read(*SCTLR_EL1)
        uc.reg_write(UC_ARM64_REG_PSTATE, PSR_MODE_EL0t)  # user mode runs with DAIF clear
        uc.cpr_write(*SCTLR_EL1, sctlr)
        self._user_ctx = uc.context_save()
        uc.reg_write(UC_ARM64_REG_PSTATE, PSR_DAIF | PSR_MODE_EL1h)
        uc.cpr_write(*SCTLR_EL1, sctlr)
        uc.reg_write(UC_ARM64_REG_SP, self.stack_top)
        self._kernel_ctx = uc.context_save()

    # -- the running kernel ----------------------------------------------------------------

    def set_root(self, root: int) -> None:
        """switch_mm(): TTBR0_EL1 = the process's pgd (cpu_do_switch_mm), or the reserved
        table for init_mm (cpu_set_reserved_ttbr0). The core flushes the TLB after."""
        uc = self.uc
        self.ttbr0 = self._ttbr0_for(root)
        # each saved state gets the new TTBR0 in place (a CP_REG write rebuilds the
        # translation flags of the state it is made in: EL0t's stay EL0t's); the kernel's
        # is left current, as _save_contexts leaves it
        for ctx in (self._user_ctx, self._kernel_ctx):
            uc.context_restore(ctx)
            uc.cpr_write(*TTBR0_EL1, self.ttbr0)
            uc.context_update(ctx)

    def enter_call(self, func: int, args: tuple[int, ...]) -> tuple[int, int]:
        uc = self.uc
        uc.context_restore(self._kernel_ctx)
        regs = [(UC_ARM64_REG_X0 + i, a & MASK64) for i, a in enumerate(args)]
        regs.append((UC_ARM64_REG_X30, self.return_va))
        regs.append((UC_ARM64_REG_SP, (self.stack_top - 64) & ~0xF))
        uc.reg_write_batch(regs)
        return func, self.return_va

    def enter_user(self, entry: int, sp: int) -> tuple[int, int]:
        """ret_to_user/kernel_exit: EL0t at *entry* with SP_EL0 = *sp* (the EL0t context is
        current, so its SP is SP_EL0)."""
        self.uc.context_restore(self._user_ctx)
        # the live SP of EL0t (xregs[31]) and its banked copy SP_EL0 (which only an EL change reads)
        self.uc.reg_write_batch([(UC_ARM64_REG_SP, sp & MASK64), (UC_ARM64_REG_SP_EL0, sp & MASK64)])
        return entry, self.return_va

    def return_value(self) -> int:
        self.state.update()
        return self.state.x[0]

    def pc(self) -> int:
        self.state.update()
        return self.state.pc

    def sp(self) -> int:
        self.state.update()
        return self.state.sp

    def user_mode(self) -> bool:
        self.state.update()
        return self.state.el == 0

    # -- what happened ---------------------------------------------------------------------

    def decode_interrupt(self, intno: int) -> Trap:
        st = self.state
        pc, el, sp = st.update()
        if intno == 4 or intno == 3:  # data abort (PC at the instruction), prefetch abort (PC fetched)
            esr, far = st.last_abort()
            fault = self.codec.fault_from_esr(esr, far)
            if fault is None:
                # not a page fault (an exclusive or an acquire/release on an unaligned address,
                # say): the tables have no say in it
                what = "Data Abort" if intno == 4 else "Instruction Abort"
                fsc = esr & 0x3F
                name = FSC_NAMES.get(fsc, "not a fault of the tables")
                return Trap(EXCEPTION, intno, description=f"{what} ({name[0].upper()}{name[1:]}, ESR_ELx.FSC "
                            f"{fsc:#x}) at EL{el}", ip=pc, sp=sp)
            if self.walker_referee:
                if self._referee is None:
                    from .referee import Referee  # (capstone is loaded for it only)
                    self._referee = Referee(self)
                self._referee.check(intno, fault, pc, st.x, el)
            return Trap(FAULT, intno, fault, ip=pc, sp=sp)
        x = st.x
        if intno == EXCP_BKPT and pc in self.kernel.kcall_addresses:
            # a module called an exported kernel function: the brk at its address (the PC
            # at the brk, as QEMU raises it)
            return Trap(KCALL, intno, ip=pc, sp=sp)
        if intno == 2:  # svc: the PC is past it; x8 the number, x0..x5 the arguments
            return Trap(SYSCALL, intno, nr=x[8], args=tuple(x[0:6]), ip=pc, sp=sp)
        name = EXCEPTIONS.get(intno, f"exception {intno}")
        return Trap(EXCEPTION, intno, description=f"{name} (QEMU EXCP {intno}) at EL{el}", ip=pc, sp=sp)

    # -- kernel functions ---------------------------------------------------------------------

    def kcall_args(self, n: int, varargs: bool, asmlinkage: bool = False) -> KcallArgs:
        """AAPCS64 as Linux uses it (the kernel has no asmlinkage of its own on arm64): the
        first eight integer arguments in x0..x7, the rest in 8-byte stack slots from sp; a
        variadic function's variable arguments go the same way as the fixed ones (unlike
        Apple's ABI)."""
        st = self.state
        st.update()
        regs, sp = st.x[:8], st.x[31]
        pos = [0]

        def arg(_size: int = 8) -> int:
            i = pos[0]
            pos[0] += 1
            if i < 8:
                return regs[i]
            return int.from_bytes(self.kernel.read(sp + 8 * (i - 8), 8), "little")

        return KcallArgs([arg() for _ in range(n)], arg)

    def kcall_return(self, value: int | None) -> None:
        """``ret``: the PC from x30 (the BL's return address), *value* in x0."""
        self.state.update()
        regs = [(UC_ARM64_REG_PC, self.state.x[30])]
        if value is not None:
            regs.append((UC_ARM64_REG_X0, value & MASK64))
        self.uc.reg_write_batch(regs)

    def fault_intno(self, fault: Fault) -> int:
        return 3 if fault.access == "exec" else 4  # EXCP_PREFETCH_ABORT, EXCP_DATA_ABORT

    def set_syscall_return(self, value: int) -> None:
        self.uc.reg_write(UC_ARM64_REG_X0, value & MASK64)

    # -- small programs ---------------------------------------------------------------------

    def program_touch_pages(self, base: int, n: int) -> bytes:
        return guest.touch_pages_code(base, n)

    def program_loop(self) -> bytes:
        return guest.LOOP

    def function_read_byte(self) -> bytes:
        return guest.READ_BYTE

    # -- probing ----------------------------------------------------------------------------

    def kernel_probe_stub(self) -> int:
        return self.probe_va

    def enter_probe(self, stub_va: int, user: bool, va: int, byte: int) -> None:
        uc = self.uc
        uc.context_restore(self._user_ctx if user else self._kernel_ctx)
        uc.reg_write_batch([(UC_ARM64_REG_X0, va & MASK64), (UC_ARM64_REG_X0 + 1, byte & 0xFF)])
