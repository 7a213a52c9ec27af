"""The CPU state Unicorn saves (``uc_context_save``), read in place: the general-purpose
registers, the PC and PSTATE's EL for the fault path (a ``context_update`` and a few memory
reads cost a fifth of one ``reg_read_batch``: the data abort of every demand fault needs
five registers), and what QEMU knew about the last abort: the syndrome it built (ESR_ELx)
and the faulting virtual address (FAR_ELx).

Unicorn reports an abort to ``UC_HOOK_INTR`` without taking the exception, so ESR_EL1 and
FAR_EL1 are never written (/work/shared/unicorn-riscv-arm64/README.md, X1, X3). QEMU's
arm_deliver_fault() has filled in ``env->exception`` (``uint32_t syndrome; uint32_t fsr;
uint64_t vaddress``) all the same, and that lives in the CPU state ``uc_context_save``
copies. The byte offsets inside a saved context are found once per process (registers set
to known values, known aborts provoked in a scratch engine), never hard-coded: a Unicorn
build with another layout is detected and refused instead of misread.

The adapter reads every abort from them (syndrome and address, as the kernel reads ESR_EL1
and FAR_EL1); the tests check that reading against the walker's (referee.py) and against
the walker's faults of probed accesses (tests/test_cpu.py: the Unicorn referee).
"""

from __future__ import annotations

import ctypes
import struct
from dataclasses import dataclass
from functools import lru_cache

from unicorn import UC_ARCH_ARM64, UC_HOOK_INTR, UC_MODE_ARM, Uc, UcError
from unicorn.arm64_const import (UC_ARM64_REG_PC, UC_ARM64_REG_PSTATE, UC_ARM64_REG_SP, UC_ARM64_REG_X0,
                                 UC_ARM64_REG_X29, UC_ARM64_REG_X30, UC_CPU_ARM64_A72)

from mmemu.cpu.adapter import context_calls
from mmemu.errors import MmemuError

_RAM = 0x40000000
_KVA = 0xFFFF000000000000
# ldr x1, [x0] ; str x1, [x0] ; b .
_CODE = bytes.fromhex("010040f9" "010000f9" "00000014")
_PROBES = ((0x0000123456789AB0, 0, False), (0x00007EDCBA987650, 4, True))


@dataclass(frozen=True)
class Offsets:
    xregs: int  # env->xregs[0] (u64; xregs[31] is the current SP)
    pc: int  # env->pc (u64)
    pstate: int  # env->pstate (u32: M[4:0], EL in [3:2]; NZCV and DAIF are kept elsewhere)
    syndrome: int  # env->exception.syndrome (u32)
    vaddress: int  # env->exception.vaddress (u64)


def _scratch() -> Uc:
    """EL1 with the MMU on: the code page at _KVA through TTBR1, an empty TTBR0 table."""
    uc = Uc(UC_ARCH_ARM64, UC_MODE_ARM)
    uc.ctl_set_cpu_model(UC_CPU_ARM64_A72)
    uc.mem_map(_RAM, 0x10000)
    l0, l1, l2, l3, empty = (_RAM + 0x1000 * i for i in range(1, 6))
    for table, nxt in ((l0, l1), (l1, l2), (l2, l3)):
        uc.mem_write(table, struct.pack("<Q", nxt | 3))
    uc.mem_write(l3, struct.pack("<Q", _RAM | 3 | 1 << 10 | 3 << 8 | 1 << 54))  # page: AF, SH, EL1 RW, UXN
    uc.mem_write(_RAM, _CODE)
    uc.cpr_write(3, 6, 1, 1, 0, 1 << 10)  # SCR_EL3.RW
    uc.cpr_write(3, 0, 10, 2, 0, 0xFF)  # MAIR_EL1
    uc.cpr_write(3, 0, 2, 0, 2, 16 | 1 << 8 | 1 << 10 | 3 << 12 | 16 << 16 | 1 << 24 | 1 << 26 | 3 << 28 | 2 << 30
                 | 4 << 32)  # TCR_EL1: 48-bit, 4 KiB granules
    uc.cpr_write(3, 0, 2, 0, 0, empty)  # TTBR0_EL1
    uc.cpr_write(3, 0, 2, 0, 1, l0)  # TTBR1_EL1
    uc.reg_write(UC_ARM64_REG_PSTATE, 0x3C5)
    uc.cpr_write(3, 0, 1, 0, 0, uc.cpr_read(3, 0, 1, 0, 0) | 1 | 1 << 2 | 1 << 12)  # SCTLR_EL1.M|C|I
    return uc


def _context_at_abort(address: int, code_offset: int) -> bytes:
    uc = _scratch()
    seen: list[bytes] = []

    def on_intr(uc: Uc, intno: int, user_data) -> None:
        if intno == 4 and not seen:
            seen.append(bytes(uc.context_save()))
        uc.emu_stop()

    uc.hook_add(UC_HOOK_INTR, on_intr)
    uc.reg_write(UC_ARM64_REG_X0, address)
    try:
        uc.emu_start(_KVA + code_offset, _KVA + code_offset + 4, count=1)
    except UcError:
        pass
    if not seen:
        raise MmemuError("arm64 fault state: the scratch engine raised no data abort")
    return seen[0]


def _register_offsets() -> tuple[int, int, int]:
    """xregs, pc and pstate: registers written with known values, the saved state scanned."""
    uc = Uc(UC_ARCH_ARM64, UC_MODE_ARM)
    uc.ctl_set_cpu_model(UC_CPU_ARM64_A72)
    uc.mem_map(_RAM, 0x1000)
    values = [(UC_ARM64_REG_X0 + i, 0x5A5A000000000011 | i << 8) for i in range(29)]
    values += [(UC_ARM64_REG_X29, 0x5A5A000000001D11), (UC_ARM64_REG_X30, 0x5A5A000000001E11),
               (UC_ARM64_REG_SP, 0x5A5A00000000FF11), (UC_ARM64_REG_PC, 0x5A5A00000000AA10)]
    uc.reg_write_batch(values)
    blobs = {}
    for pstate in (0x3C5, 0x0):
        uc.reg_write(UC_ARM64_REG_PSTATE, pstate)
        blobs[pstate] = bytes(uc.context_save())
    blob = blobs[0x3C5]
    xregs = [off for off in range(0, len(blob) - 8, 8) if struct.unpack_from("<Q", blob, off)[0] == values[0][1]]
    if len(xregs) != 1:
        raise MmemuError(f"arm64 CPU state: x0 found at {xregs} in Unicorn's saved CPU state")
    x0 = xregs[0]
    regs = struct.unpack_from("<33Q", blob, x0)
    if list(regs) != [v for _, v in values]:
        raise MmemuError("arm64 CPU state: the registers after x0 are not x1..x30, sp, pc")
    pstate = x0 + 33 * 8
    if (struct.unpack_from("<I", blob, pstate)[0], struct.unpack_from("<I", blobs[0], pstate)[0]) != (0x5, 0x0):
        raise MmemuError("arm64 CPU state: PSTATE is not after the PC")
    return x0, x0 + 32 * 8, pstate


@lru_cache(maxsize=None)
def find_offsets() -> Offsets:
    candidates = None
    for address, offset, write in _PROBES:
        blob = _context_at_abort(address, offset)
        found = set()
        for off in range(8, len(blob) - 8, 8):
            if struct.unpack_from("<Q", blob, off)[0] != address:
                continue
            syn = struct.unpack_from("<I", blob, off - 8)[0]
            # a data abort taken to the current EL (EC 0x25), level 0 translation fault (FSC 4)
            if syn >> 26 == 0x25 and syn & 0x3F == 0x04 and bool(syn & 1 << 6) == write:
                found.add(off)
        candidates = found if candidates is None else candidates & found
    if not candidates or len(candidates) != 1:
        raise MmemuError("arm64 CPU state: cannot find env->exception in Unicorn's saved CPU state "
                         f"(candidates {sorted(candidates or [])}); this Unicorn build is not the one mmemu knows")
    vaddress = candidates.pop()
    xregs, pc, pstate = _register_offsets()
    return Offsets(xregs=xregs, pc=pc, pstate=pstate, syndrome=vaddress - 8, vaddress=vaddress)


class CpuState:
    """The saved state of a running engine, refreshed by :meth:`update` (in a hook: what the
    CPU holds now) and read in place."""

    def __init__(self, uc: Uc):
        self.uc = uc
        off = self.offsets = find_offsets()
        self._ctx = uc.context_save()
        self._update = context_calls(uc, self._ctx)[0]  # uc.context_update, straight into libunicorn
        base = ctypes.cast(self._ctx.context, ctypes.c_void_p).value
        self._x = (ctypes.c_uint64 * 32).from_address(base + off.xregs)
        self._pc = ctypes.c_uint64.from_address(base + off.pc)
        self._pstate = ctypes.c_uint32.from_address(base + off.pstate)
        self._syndrome = ctypes.c_uint32.from_address(base + off.syndrome)
        self._vaddress = ctypes.c_uint64.from_address(base + off.vaddress)

    def update(self) -> tuple[int, int, int]:
        """Refresh the state; return (pc, EL, sp): what every exception reads first."""
        err = self._update()
        if err:
            raise UcError(err)
        return self._pc.value, (self._pstate.value >> 2) & 3, self._x[31]

    @property
    def x(self):
        """x0..x30, then the current SP (xregs[31])."""
        return self._x

    @property
    def pc(self) -> int:
        return self._pc.value

    @property
    def el(self) -> int:
        return (self._pstate.value >> 2) & 3

    @property
    def sp(self) -> int:
        return self._x[31]

    @property
    def syndrome(self) -> int:
        """The syndrome QEMU built for the exception being reported (as of :meth:`update`)."""
        return self._syndrome.value

    def last_abort(self) -> tuple[int, int]:
        """(syndrome, vaddress) of the last abort QEMU delivered (as of :meth:`update`)."""
        return self._syndrome.value, self._vaddress.value


class FaultState(CpuState):
    """What the tests read after a probe: QEMU's syndrome and FAR of the last abort."""

    def read(self) -> tuple[int, int]:
        self.update()
        return self.last_abort()
