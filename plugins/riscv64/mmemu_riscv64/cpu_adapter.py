"""The riscv64 CPU adapter: Unicorn's RISC-V hart (UC_ARCH_RISCV, UC_MODE_RISCV64) running the
kernel's Sv39/Sv48/Sv57 tables, in S-mode for kernel code and U-mode for user code.

The hart is put in the state Linux keeps it in: satp = MODE (8 Sv39, 9 Sv48, 10 Sv57) << 60 |
ASID 0 | PPN of the root table (csr.h SATP_MODE_*, SATP_PPN; switch_mm writes it, then
``sfence.vma``: the core flushes the TLB after :meth:`set_root`); sstatus with SUM=0 (the kernel
sets SUM only inside its uaccess routines: ``__enable_user_access()``, ``csrs sstatus, SR_SUM``)
and MXR=0. A kernel stack (THREAD_SIZE 16 KiB) and the entry code live where the kernel has
them: the stack in the linear map, the entry stubs (``sret`` to user mode, the return stub of
kernel calls, the probe instructions) in the last page of the kernel's text, like the kernel's
entry.S. User mode is entered as ``ret_from_exception`` enters it: ``sret`` with sepc = the
entry point and sstatus.SPP = 0 (SPIE = 1, FS = Initial, as start_thread() sets them).

The quirks of Unicorn 2.1.4 on riscv64 (../shared/unicorn-riscv-arm64/README.md) and how each
is handled here:

- No trap entry (X1): nothing writes scause/stval/sepc and the hart stays at the faulting
  privilege; the interrupt hook reads the privilege from the PRIV register, and the kernel's
  fault path runs in Python, as the core does for every arch.
- No register holds the faulting address (X3, A2): a fetch fault is at the faulting pc (or at
  the next page when a 4-byte instruction straddles a page end); for a load, store or AMO the
  instruction at the faulting pc is read (``uc_vmem_read`` through ctypes, X4, at the faulting
  privilege; the kernel's walker and RAM as a fallback) and decoded with capstone (compressed
  forms included) into its base register and offset; decodings are cached by instruction bytes.
- The pc at the hook is the faulting pc + 4, even for a 2-byte compressed instruction (A2):
  :meth:`decode_interrupt` reports pc - 4, and :meth:`resume_after_fault` writes it back so
  that the instruction runs again (not: resumes 4 bytes on, in the middle of the next one).
- The fault kind is not reported (scause is not written): it comes from the kernel's walker;
  an access the walker allows now faulted on a stale TLB entry: a protection fault.
- CSRs through the register API obey the current privilege (A1: at PRIV=0 a read gives
  garbage and a write is dropped): every CSR access here is made at PRIV=3, then PRIV is set
  to what the run needs (PRIV accepts 0, 1 and 3).
- ecall is intno 8 from every privilege (A5), pc already past it: U-mode is a system call (a7
  the number, a0..a5 the arguments, a0 the result); S-mode would be an SBI call, which no
  firmware here answers: an exception.
- satp writes through the register API do not flush the TLB (X7, A1): the core flushes after
  :meth:`set_root`. Translated code goes stale when memory changes behind Unicorn (X8): the
  core drops it (``ctl_flush_tb``) whenever the kernel's code generation moved.
- An all-zero halfword at the start of a translated block is reported as an instruction page
  fault (A7). Probed here: QEMU then also fetches the page before the block (its code reads
  pc - 1), which faults when the hart may not execute that page (a vmalloc area after its
  guard page, the first page of a VMA); with the page before executable, the zeros arrive as
  the illegal instruction (2) they are. So a fetch fault at a pc the walker lets the hart
  execute, on a zero halfword, is reported as that illegal instruction.
- After a run with an instruction count, the next run without one makes Unicorn fetch the
  page of the previous run's last pc with the new run's privilege (reproduced on bare
  Unicorn). With the cpu MMU that fetch fails quietly; with the plugin MMU the core's fill
  hook refuses it (a user page at S-mode) and makes a page fault of it (see the report).
- The ``plugin`` MMU (UC_TLB_VIRTUAL, A6) ignores satp; its refused fills stop the run at the
  faulting instruction itself (no +4) and never reach the interrupt hook: the core handles
  them; :meth:`user_mode` tells its fill hook the privilege (PRIV) and :meth:`uaccess`
  whether sstatus.SUM lets S-mode load and store user pages.
- The Python binding's register calls cost 2-9 us each (X11); the fault path reads pc, PRIV,
  sp and the base register from one copy of the saved hart state (cpustate.py) and writes
  the pc back through a ctypes call of the C API.
"""

from __future__ import annotations

import ctypes

from unicorn import UC_ARCH_RISCV, UC_MODE_RISCV64, UC_PROT_EXEC, Uc
from unicorn import riscv_const as rc

from mmemu.cpu.adapter import EXCEPTION, FAULT, KCALL, SYSCALL, CpuAdapter, KcallArgs, Trap
from mmemu.errors import MmemuError
from mmemu.faults import NOT_PRESENT, PROTECTION, Fault

from .cpustate import HartState
from .formats import SATP_MODE

PAGE = 4096
MASK64 = (1 << 64) - 1
KERNEL_STACK_ORDER = 2  # arch/riscv/include/asm/thread_info.h: THREAD_SIZE_ORDER 2 (16 KiB, no KASAN)

# sstatus bits (arch/riscv/include/asm/csr.h)
SR_SIE = 1 << 1
SR_SPIE = 1 << 5
SR_SPP = 1 << 8
SR_FS_INITIAL = 1 << 13
SR_SUM = 1 << 18
SR_MXR = 1 << 19

PRIV_U, PRIV_S, PRIV_M = 0, 1, 3

#: exception codes of the privileged specification (mcause/scause, "Exception Code" table) and
#: asm/csr.h EXC_*; Unicorn reports the code itself as the interrupt number
EXCEPTIONS = {0: "Instruction address misaligned", 1: "Instruction access fault", 2: "Illegal instruction",
              3: "Breakpoint", 4: "Load address misaligned", 5: "Load access fault",
              6: "Store/AMO address misaligned", 7: "Store/AMO access fault", 8: "Environment call from U-mode",
              9: "Environment call from S-mode", 11: "Environment call from M-mode", 12: "Instruction page fault",
              13: "Load page fault", 15: "Store/AMO page fault"}
FAULT_ACCESS = {12: "exec", 13: "read", 15: "write"}
FAULT_INTNO = {"exec": 12, "read": 13, "write": 15}

# The entry page, at the start of the last page of the kernel text (assembled with llvm-mc
# -triple=riscv64 -mattr=+m,+a, no compressed forms):
#   0x00  73 00 20 10   sret             enter_user: to sepc, at the privilege sstatus.SPP says
#   0x04  6f 00 00 00   j .              the return address of kernel calls (never executed)
#   0x08  03 c3 02 00   lbu t1, 0(t0)    the probe stub: a byte load ...
#   0x0c  23 80 62 00   sb t1, 0(t0)     ... and a byte store of t1 at t0
#   0x10  6f 00 00 00   j .
ENTRY_CODE = bytes.fromhex("73002010" "6f000000" "03c30200" "23806200" "6f000000")
SRET_OFF, RETURN_OFF, PROBE_OFF = 0x0, 0x4, 0x8
PROBE_STUB = ENTRY_CODE[PROBE_OFF:]

# User code: one byte (0x5a) into each of n pages from base, then exit(0). Position independent:
# base and n are 8-byte literals at offsets 48 and 56 (llvm-mc -triple=riscv64 -mattr=+m,+a,+c):
#    0 97020000  auipc t0, 0          18 23807200  sb t2, 0(t0)
#    4 03b38203  ld t1, 56(t0)        22 f292      c.add t0, t3
#    8 83b20203  ld t0, 48(t0)        24 7d13      c.addi t1, -1
#   12 9303a005  li t2, 0x5a          26 e31c03fe  bnez t1, 18
#   16 056e      c.lui t3, 1          30 0145      c.li a0, 0
#                                     32 9308d005  li a7, 93 (exit)
#                                     36 73000000  ecall
TOUCH_CODE = bytes.fromhex("9702000003b3820383b202039303a005056e23807200f2927d13e31c03fe01459308d00573000000")
TOUCH_LITERALS = 48
# Kernel code: return the byte at the address in a0: lbu a0, 0(a0); ret (c.jr ra)
READ_BYTE_CODE = bytes.fromhex("03450500" "8280")
# 1: c.j 1b
LOOP_CODE = bytes.fromhex("01a0")

_REG_PC, _REG_PRIV, _REG_SP = rc.UC_RISCV_REG_PC, rc.UC_RISCV_REG_PRIV, rc.UC_RISCV_REG_SP
_REG_A0, _REG_RA = rc.UC_RISCV_REG_A0, rc.UC_RISCV_REG_RA
_REG_T0, _REG_T1 = rc.UC_RISCV_REG_T0, rc.UC_RISCV_REG_T1
_ARG_REGS = tuple(getattr(rc, f"UC_RISCV_REG_A{i}") for i in range(8))
_SYS_REGS = (rc.UC_RISCV_REG_A7,) + _ARG_REGS[:6]
_X0 = rc.UC_RISCV_REG_X0
#: x1..x31 by their psABI names (Unicorn numbers x1..x31 as UC_RISCV_REG_X1..X31)
ABI_NAMES = ("ra", "sp", "gp", "tp", "t0", "t1", "t2", "s0", "s1", "a0", "a1", "a2", "a3", "a4", "a5", "a6", "a7",
             "s2", "s3", "s4", "s5", "s6", "s7", "s8", "s9", "s10", "s11", "t3", "t4", "t5", "t6")
_ABI_REGS = tuple(getattr(rc, f"UC_RISCV_REG_X{i}") for i in range(1, 32))

# ---- fast register access on the fault path ------------------------------------------------
# The Python binding's reg_write costs about 2.4 us (README X11); the C function it wraps,
# called through ctypes with a buffer made once, 1.1 us. Every demand fault writes the pc back
# (the reads come from the saved state: cpustate.py).


class _PcWriter:
    """uc_reg_write of the pc, through ctypes."""

    def __init__(self, uc: Uc):
        from unicorn.unicorn_py3.unicorn import uclib

        self._h = uc._uch
        self._write = uclib.uc_reg_write
        self._val = ctypes.c_uint64()
        self._pval = ctypes.byref(self._val)

    def __call__(self, value: int) -> None:
        self._val.value = value & MASK64
        if self._write(self._h, _REG_PC, self._pval):
            raise MmemuError("Unicorn refused to write the pc")


# ---- reading guest memory through the hart's own MMU (README X4) ----------------------------

_vmem_read = None


def _uc_vmem_read():
    """libunicorn's uc_vmem_read (no Python wrapper in 2.1.4): read guest-virtual memory with
    the hart's MMU at its current privilege, in probe mode (no exception)."""
    global _vmem_read
    if _vmem_read is None:
        try:
            from unicorn.unicorn_py3.unicorn import uclib

            fn = uclib.uc_vmem_read
            fn.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t]
            fn.restype = ctypes.c_int
            _vmem_read = fn
        except (ImportError, AttributeError):
            _vmem_read = False
    return _vmem_read


# ---- decoding the faulting load, store or AMO (capstone) -----------------------------------

_cs = None
#: access widths by mnemonic (the base name: capstone prints "c.ld", "amoadd.d.aqrl"...)
_WIDTH = {"lb": 1, "lbu": 1, "sb": 1, "lh": 2, "lhu": 2, "sh": 2, "lw": 4, "lwu": 4, "sw": 4, "flw": 4, "fsw": 4,
          "ld": 8, "sd": 8, "fld": 8, "fsd": 8, "lwsp": 4, "swsp": 4, "ldsp": 8, "sdsp": 8, "fldsp": 8, "fsdsp": 8}


def _capstone():
    global _cs
    if _cs is None:
        from capstone import CS_ARCH_RISCV, CS_MODE_RISCV64, CS_MODE_RISCVC, Cs

        _cs = Cs(CS_ARCH_RISCV, CS_MODE_RISCV64 | CS_MODE_RISCVC)
        _cs.detail = True
    return _cs


def decode_access(code: bytes) -> tuple[int, int, int, str]:
    """(base register as Unicorn numbers it, displacement, access width, mnemonic) of the
    load/store/AMO at the start of *code*. Capstone 5's RISC-V operands: a full-size load or
    store has a memory operand (base, disp); a compressed one [reg, imm, base]; LR/SC/AMO
    name the base register last. Capstone's x0..x31 are 1..32, as Unicorn's UC_RISCV_REG_X*."""
    from capstone.riscv import RISCV_OP_IMM, RISCV_OP_MEM, RISCV_OP_REG

    ins = next(_capstone().disasm(code, 0), None)
    if ins is None:
        raise MmemuError(f"cannot decode the faulting instruction {code.hex()}")
    ops = ins.operands
    name = ins.mnemonic
    base_name = name[2:] if name.startswith("c.") else name
    mem = [o for o in ops if o.type == RISCV_OP_MEM]
    if mem:
        base, disp = mem[0].mem.base, mem[0].mem.disp
    elif len(ops) == 3 and ops[1].type == RISCV_OP_IMM and ops[2].type == RISCV_OP_REG:
        base, disp = ops[2].reg, ops[1].imm
    elif ops and ops[-1].type == RISCV_OP_REG and base_name.startswith(("lr.", "sc.", "amo")):
        base, disp = ops[-1].reg, 0
    else:
        raise MmemuError(f"the faulting instruction {name} {ins.op_str} ({code[:ins.size].hex()}) "
                         "is not a load, store or AMO")
    if base_name.startswith(("lr.", "sc.", "amo")):
        width = 8 if base_name.split(".")[1] == "d" else 4
    else:
        width = _WIDTH.get(base_name, 1)
    if not 1 <= base <= 32:
        raise MmemuError(f"the faulting instruction {name} {ins.op_str}: base register {base} is not x0..x31")
    return base, disp, width, f"{name} {ins.op_str}"


class Riscv64Adapter(CpuAdapter):
    """One riscv64 hart of a kernel (see the module docstring)."""

    exit_syscalls = (93, 94)  # include/uapi/asm-generic/unistd.h: __NR_exit 93, __NR_exit_group 94
    max_call_args = 8  # a0..a7
    probe_stub = PROBE_STUB
    probe_read = (0, 4)
    probe_write = (4, 8)

    def __init__(self, kernel, mmu: str):
        super().__init__(kernel, mmu)
        layout = kernel.layout
        self.satp_mode = SATP_MODE[{39: "sv39", 48: "sv48", 57: "sv57"}[kernel.paging.va_bits]]
        #: sstatus as the kernel runs: SUM=0, MXR=0, SPP=1 (we came from S-mode), interrupts
        #: off in this model (no interrupt ever arrives), FS Off (kernel code uses no FPU)
        self.kernel_sstatus = SR_SPP
        #: sstatus before the sret to user mode (start_thread: SR_PIE | SR_FS_INITIAL; SPP=0)
        self.user_sstatus = SR_SPIE | SR_FS_INITIAL
        self.task_size = layout.symbols["TASK_SIZE"]
        self._decoded: dict[bytes, tuple[int, int, int, str]] = {}
        self._root = 0
        #: the lower (user) half of the mode's addresses: where an empty pte is a demand fault
        self._lower_half = 1 << (kernel.paging.va_bits - 1)
        self._last_level = len(kernel.paging.levels) - 1

    # -- creation -------------------------------------------------------------------------

    def create(self) -> Uc:
        self.uc = Uc(UC_ARCH_RISCV, UC_MODE_RISCV64)
        self._vmem = _uc_vmem_read()
        self._buf = ctypes.create_string_buffer(4)
        self._set_pc = _PcWriter(self.uc)
        self.state = HartState(self.uc)
        return self.uc

    def setup(self, root: int) -> None:
        k = self.kernel
        stack = self.cpu.alloc_pages(KERNEL_STACK_ORDER, "kernel stack")
        self.stack_top = k.phys_to_virt(stack.phys) + (PAGE << KERNEL_STACK_ORDER)
        text = next(sec for sec in k.layout.image if sec.name == "text")
        last = (text.size - 1) & ~(PAGE - 1)
        self.entry_va, self.entry_pa = text.virt + last, text.phys + last
        k.mem.write(self.entry_pa, ENTRY_CODE)
        self.sret_va = self.entry_va + SRET_OFF
        self.return_va = self.entry_va + RETURN_OFF
        self.probe_va = self.entry_va + PROBE_OFF
        # the hart's control registers, at PRIV=3 (M-mode may write every CSR: README A1)
        self.uc.reg_write_batch([(_REG_PRIV, PRIV_M), (rc.UC_RISCV_REG_MSTATUS, 0),
                                 (rc.UC_RISCV_REG_SSTATUS, self.kernel_sstatus),
                                 (rc.UC_RISCV_REG_SATP, self.satp(root)), (_REG_PRIV, PRIV_S),
                                 (_REG_SP, self.stack_top)])
        self._root = root

    def satp(self, root: int) -> int:
        """satp for the table at *root*: MODE << 60 | ASID 0 << 44 | PPN (csr.h SATP_MODE_*)."""
        return (self.satp_mode << 60) | (root >> 12)

    def _enter(self, priv: int, sstatus: int, regs: list) -> None:
        """sstatus (at PRIV=3, README A1), then the privilege, then the integer registers."""
        self.uc.reg_write_batch([(_REG_PRIV, PRIV_M), (rc.UC_RISCV_REG_SSTATUS, sstatus), (_REG_PRIV, priv)] + regs)

    # -- the running kernel ----------------------------------------------------------------

    def set_root(self, root: int) -> None:
        """switch_mm: ``csr_write(CSR_SATP, ...)`` (then ``local_flush_tlb_all``: the core's)."""
        priv = self.uc.reg_read(_REG_PRIV) & 3
        self.uc.reg_write_batch([(_REG_PRIV, PRIV_M), (rc.UC_RISCV_REG_SATP, self.satp(root)), (_REG_PRIV, priv)])
        self._root = root

    def enter_call(self, func: int, args: tuple[int, ...]) -> tuple[int, int]:
        sp = (self.stack_top - 64) & ~0xF  # the psABI's 16-byte aligned stack
        regs = [(_REG_SP, sp), (_REG_RA, self.return_va)]
        regs += [(reg, value & MASK64) for reg, value in zip(_ARG_REGS, args)]
        self._enter(PRIV_S, self.kernel_sstatus, regs)
        return func, self.return_va

    def enter_user(self, entry: int, sp: int) -> tuple[int, int]:
        """ret_from_exception: sepc = the entry point, sstatus.SPP = 0, then ``sret`` from the
        kernel's entry page; the user's sp and a zeroed a0 as start_thread leaves them."""
        self.uc.reg_write_batch([(_REG_PRIV, PRIV_M), (rc.UC_RISCV_REG_SSTATUS, self.user_sstatus),
                                 (rc.UC_RISCV_REG_SEPC, entry & MASK64), (_REG_PRIV, PRIV_S),
                                 (_REG_SP, sp & MASK64), (_REG_RA, 0), (_REG_A0, 0)])
        return self.sret_va, self.return_va

    def return_value(self) -> int:
        return self.uc.reg_read(_REG_A0)

    def pc(self) -> int:
        return self.uc.reg_read(_REG_PC)

    def sp(self) -> int:
        return self.uc.reg_read(_REG_SP)

    def user_mode(self) -> bool:
        return self.uc.reg_read(_REG_PRIV) & 3 == PRIV_U

    def uaccess(self) -> bool:
        """sstatus.SUM, set by the kernel's uaccess routines (``__enable_user_access``). Read
        at S-mode only: a CSR read through the register API at U-mode is garbage (README A1)."""
        return self.uc.reg_read(rc.UC_RISCV_REG_SSTATUS) & SR_SUM != 0

    # -- what happened ---------------------------------------------------------------------

    def decode_interrupt(self, intno: int) -> Trap:
        uc = self.uc
        pc, priv, sp = self.state.update()
        ip = (pc - 4) & MASK64  # Unicorn moved the pc 4 bytes on, whatever the instruction (README A2)
        user = priv & 3 == PRIV_U
        access = FAULT_ACCESS.get(intno)
        if access is not None:
            try:
                fault = self._page_fault(intno, access, ip, user)
            except MmemuError as exc:
                return Trap(EXCEPTION, intno, description=f"{EXCEPTIONS[intno]} ({exc})", ip=ip, sp=sp)
            if fault is None:  # README A7: zeros at the start of a block, not a page fault
                return Trap(EXCEPTION, 2, description=f"{EXCEPTIONS[2]} (an all-zero instruction)", ip=ip, sp=sp)
            return Trap(FAULT, intno, fault, ip=ip, sp=sp)
        if intno == 8:
            if user:
                nr, *args = uc.reg_read_batch(_SYS_REGS)
                return Trap(SYSCALL, intno, nr=nr, args=tuple(args), ip=ip)
            if priv & 3 == PRIV_S and ip in self.kernel.kcall_addresses:
                # the ecall at an exported kernel function's address (Arch.kcall_stub)
                return Trap(KCALL, intno, ip=ip, sp=sp)
            code = 9 if priv & 3 == PRIV_S else 11
            return Trap(EXCEPTION, code, description=f"{EXCEPTIONS[code]} (a7 {uc.reg_read(_SYS_REGS[0])}: "
                        "an SBI call, and no SBI firmware runs here)", ip=ip)
        name = EXCEPTIONS.get(intno, f"exception {intno}")
        return Trap(EXCEPTION, intno, description=f"{name}: scause {intno}", ip=ip)

    def _page_fault(self, intno: int, access: str, ip: int, user: bool) -> Fault | None:
        """The page fault at *ip*: its address (README X3: none is reported), and its kind from
        the kernel's walker. None: not a page fault at all (README A7)."""
        walk_of = self.kernel.pgtable.walk
        root = self.cpu.cr3
        uaccess = not user and self.uaccess()
        if access == "exec":
            address = ip
            walk = walk_of(root, address)
            fault = walk.fault("exec", user)
            if fault is None:
                first = self._read_insn(ip, 2)
                if first == b"\0\0":
                    return None
                if ip & (PAGE - 1) == PAGE - 2 and first[0] & 3 == 3:
                    # a 4-byte instruction straddling the page end: the fetch of its second
                    # half faulted, at the next page
                    address = (ip + 2) & MASK64
                    fault = walk_of(root, address).fault("exec", user)
        else:
            base, disp, width, _ = self._decode_at(ip)
            address = (self.state.x[base - _X0] + disp) & MASK64  # read in decode_interrupt
            fault = self._empty_pte_fault(root, address, access, user, uaccess)
            if fault is not None:
                return fault
            fault = walk_of(root, address).fault(access, user, uaccess)
            if fault is None and (address & (PAGE - 1)) + width > PAGE:
                # a misaligned access across a page end: QEMU splits it, the second half faulted
                address = (address | (PAGE - 1)) + 1
                fault = walk_of(root, address).fault(access, user, uaccess)
        if fault is None:
            # the tables allow it now: the hart used a stale TLB entry, which refused it
            fault = Fault(address, access, user, PROTECTION, level=len(self.kernel.paging.levels) - 1,
                          uaccess=uaccess)
            fault.code = intno
        return fault

    def _empty_pte_fault(self, root: int, address: int, access: str, user: bool, uaccess: bool) -> Fault | None:
        """The common case first (every demand fault): a user address whose pte is empty is
        not present at the last level, whatever the access, the privilege and SUM, as the
        walker would say with more work (plugins/riscv64/tests/test_cpu.py compares them).
        None: not that case (the walker decides)."""
        if address >= self._lower_half:
            return None
        pt = self.kernel.pgtable
        slot = pt.pte_slot(root, address)
        if slot is None or pt.read_entry(*slot):
            return None
        fault = Fault(address, access, user, NOT_PRESENT, self._last_level, source="walk", uaccess=uaccess)
        fault.code = self.kernel.codec.fault_code(fault)
        return fault

    def _read_insn(self, va: int, n: int) -> bytes:
        """*n* bytes of code at *va*: through the hart's MMU at its current privilege (README
        X4), else through the kernel's walker (a page-crossing read goes page by page)."""
        vmem = self._vmem
        if vmem:
            buf = self._buf
            if vmem(self.uc._uch, va, UC_PROT_EXEC, buf, n) == 0:
                return buf.raw[:n]
        out = b""
        while len(out) < n:
            walk = self.kernel.pgtable.walk(self.cpu.cr3, va)
            if walk.phys is None:
                raise MmemuError(f"the instruction at {va:#x} cannot be read: {walk.missing}")
            take = min(n - len(out), PAGE - (va & (PAGE - 1)))
            out += self.kernel.mem.read(walk.phys, take)
            va += take
        return out

    def _decode_at(self, ip: int) -> tuple[int, int, int, str]:
        if ip & (PAGE - 1) <= PAGE - 4:
            code = self._read_insn(ip, 4)
            if code[0] & 3 != 3:
                code = code[:2]  # a compressed instruction
        else:  # at the page's last halfword: a 4-byte instruction reaches into the next page
            code = self._read_insn(ip, 2)
            if code[0] & 3 == 3:
                code += self._read_insn(ip + 2, 2)
        dec = self._decoded.get(code)
        if dec is None:
            dec = decode_access(code)
            self._decoded[code] = dec
        return dec

    def fault_intno(self, fault: Fault) -> int:
        return FAULT_INTNO[fault.access]

    def resume_after_fault(self, trap: Trap) -> None:
        """Unicorn moved the pc 4 bytes past the faulting instruction (README A2): back to it."""
        self._set_pc(trap.ip)

    def registers(self) -> dict[str, int]:
        """The integer registers by their ABI names (``ra``, ``sp``, ``gp`` ... ``t6``), as
        show_regs prints them, read in the interrupt hook."""
        values = self.uc.reg_read_batch(_ABI_REGS)
        return dict(zip(ABI_NAMES, values))

    # -- kernel functions called by module code ----------------------------------------------

    def kcall_args(self, n: int, varargs: bool, asmlinkage: bool = False) -> KcallArgs:
        """The psABI's integer calling convention (riscv-elf-psabi, LP64): a0..a7, then the
        stack from sp up, 8 bytes a slot; variadic arguments the same way (after the fixed
        ones). asmlinkage means nothing on riscv."""
        regs = self.uc.reg_read_batch(_ARG_REGS)
        sp = self.sp()
        pos = [0]

        def arg() -> int:
            i = pos[0]
            pos[0] += 1
            if i < len(regs):
                return regs[i]
            return int.from_bytes(self.kernel.read(sp + 8 * (i - len(regs)), 8), "little")

        fixed = [arg() for _ in range(n)]
        return KcallArgs(fixed, lambda size: arg())

    def kcall_return(self, value: int | None) -> None:
        """``ret`` (jalr x0, 0(ra)): the pc from ra, *value* in a0."""
        regs = [(_REG_PC, self.uc.reg_read(_REG_RA))]
        if value is not None:
            regs.append((_REG_A0, value & MASK64))
        self.uc.reg_write_batch(regs)

    def set_syscall_return(self, value: int) -> None:
        self.uc.reg_write(_REG_A0, value & MASK64)

    def default_user_sp(self, process) -> int:
        return (process.start_stack - 64) & ~0xF

    # -- small programs ---------------------------------------------------------------------

    def program_touch_pages(self, base: int, n: int) -> bytes:
        code = TOUCH_CODE.ljust(TOUCH_LITERALS, b"\0")
        return code + (base & MASK64).to_bytes(8, "little") + (n & MASK64).to_bytes(8, "little")

    def program_loop(self) -> bytes:
        return LOOP_CODE

    def function_read_byte(self) -> bytes:
        return READ_BYTE_CODE

    # -- probing ----------------------------------------------------------------------------

    def kernel_probe_stub(self) -> int:
        return self.probe_va

    def enter_probe(self, stub_va: int, user: bool, va: int, byte: int) -> None:
        """The probe at S-mode (SUM=0) or U-mode: the privilege set through PRIV (README A1's
        second way in), t0 the address, t1 the byte a store writes back."""
        self._enter(PRIV_U if user else PRIV_S, self.kernel_sstatus, [(_REG_T0, va & MASK64), (_REG_T1, byte & 0xFF)])
