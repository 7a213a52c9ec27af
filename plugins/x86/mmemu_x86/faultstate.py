"""Two fields of Unicorn's x86 CPU state that its API does not expose: the #PF error code
and ``old_exception``.

Unicorn reports a page fault to ``UC_HOOK_INTR`` as interrupt 14 without delivering it
through a guest IDT, so QEMU never runs the part of ``do_interrupt_all`` that resets
``env->old_exception`` to -1. The next fault is then combined with the "pending" one into a
double fault (interrupt 8), and the one after that stops emulation silently (Unicorn issue
#1883). Both fields live in the CPU state that ``uc_context_save`` copies; their byte
offsets inside a saved context are found here once per process by provoking known faults
in a scratch engine, never hard-coded: a Unicorn build with another layout is detected and
refused instead of misread.
"""

from __future__ import annotations

import ctypes
import struct
from dataclasses import dataclass
from functools import lru_cache

from unicorn import UC_ARCH_X86, UC_HOOK_INTR, UC_MODE_32, Uc, UcError
from unicorn.x86_const import UC_X86_REG_CR0, UC_X86_REG_CR3, UC_X86_REG_CR4, UC_X86_REG_EBX

from mmemu.errors import MmemuError

_RAM = 8 << 20  # two 4 MiB pages
_PD = 0x1000
_CODE = 0x2000


@dataclass(frozen=True)
class FaultStateOffsets:
    error_code: int
    old_exception: int


def _scratch(entry_4m_1: int) -> tuple[Uc, bytearray]:
    """A 32-bit engine with 2-level paging: 0-4M identity mapped (code), 4M-8M as given."""
    uc = Uc(UC_ARCH_X86, UC_MODE_32)
    uc.mem_map(0, _RAM)
    pd = bytearray(4096)
    struct.pack_into("<I", pd, 0, 0x83)  # 4 MiB page at 0: P|RW|PS
    struct.pack_into("<I", pd, 4, entry_4m_1)
    uc.mem_write(_PD, bytes(pd))
    uc.mem_write(_CODE, bytes.fromhex("8803" "8803" "f4"))  # mov [ebx],al ; mov [ebx],al ; hlt
    uc.reg_write(UC_X86_REG_CR3, _PD)
    uc.reg_write(UC_X86_REG_CR4, 1 << 4)  # PSE
    uc.reg_write(UC_X86_REG_CR0, 0x80010001)  # PG|WP|PE
    uc.reg_write(UC_X86_REG_EBX, 0x400000)
    return uc, pd


def _context_at_fault(entry_4m_1: int) -> bytes:
    uc, _ = _scratch(entry_4m_1)
    seen: list[bytes] = []

    def on_intr(uc: Uc, intno: int, user_data) -> None:
        seen.append(bytes(uc.context_save()))
        uc.emu_stop()

    uc.hook_add(UC_HOOK_INTR, on_intr)
    uc.emu_start(_CODE, _CODE + 4)
    if len(seen) != 1:
        raise MmemuError("Unicorn did not report the probe page fault")
    return seen[0]


def _fresh_context() -> bytes:
    uc, _ = _scratch(0)
    return bytes(uc.context_save())


def _int32s(raw: bytes) -> list[int]:
    return list(struct.unpack_from("<%di" % (len(raw) // 4), raw))


@lru_cache(maxsize=1)
def find_offsets() -> FaultStateOffsets:
    """Find the two offsets, then prove the reset works: with it, two faults in a row
    both arrive as 14."""
    try:
        write_np = _int32s(_context_at_fault(0))  # write, not present: error code 2
        write_ro = _int32s(_context_at_fault(0x400000 | 0x81))  # write to read-only: error code 3
        fresh = _int32s(_fresh_context())
    except UcError as exc:
        raise MmemuError(f"Unicorn could not run the fault probe: {exc}") from exc
    err = [i for i, (a, b) in enumerate(zip(write_np, write_ro)) if a == 2 and b == 3]
    old = [i for i, (a, b, c) in enumerate(zip(write_np, write_ro, fresh)) if a == 14 and b == 14 and c == -1]
    if len(err) != 1 or len(old) != 1:
        raise MmemuError("cannot locate the #PF error code and old_exception in Unicorn's CPU state "
                         f"(candidates {err}, {old}); mmemu needs unicorn==2.1.4")
    offsets = FaultStateOffsets(error_code=err[0] * 4, old_exception=old[0] * 4)
    _verify(offsets)
    return offsets


def _verify(offsets: FaultStateOffsets) -> None:
    uc, _ = _scratch(0)
    ctx = uc.context_save()
    seen: list[int] = []

    def on_intr(uc: Uc, intno: int, user_data) -> None:
        seen.append(intno)
        uc.context_update(ctx)
        base = ctypes.cast(ctx.context, ctypes.c_void_p).value
        ctypes.c_int32.from_address(base + offsets.old_exception).value = -1
        uc.context_restore(ctx)
        uc.emu_stop()

    uc.hook_add(UC_HOOK_INTR, on_intr)
    for _ in range(2):
        uc.emu_start(_CODE, _CODE + 2)
    if seen != [14, 14]:
        raise MmemuError(f"resetting old_exception did not work: faults arrived as {seen}; mmemu needs unicorn==2.1.4")


@dataclass(frozen=True)
class RegisterOffsets:
    """Byte offsets of CR2, the instruction pointer and the stack pointer in a saved
    context: the fault hook reads them from the context it saves anyway (one copy) instead
    of three register reads through the binding (each costs microseconds)."""

    cr2: int
    ip: int
    sp: int


@lru_cache(maxsize=1)
def find_register_offsets() -> RegisterOffsets:
    """Write two sets of distinctive values with reg_write, save the context each time,
    and keep the one offset where each register's values show (the same CPUX86State
    serves 32- and 64-bit mode: target_ulong is 64 bits)."""
    from unicorn import UC_MODE_64
    from unicorn.x86_const import UC_X86_REG_CR2, UC_X86_REG_RIP, UC_X86_REG_RSP

    regs = {"cr2": UC_X86_REG_CR2, "ip": UC_X86_REG_RIP, "sp": UC_X86_REG_RSP}
    samples = ({"cr2": 0x1122334455667788, "ip": 0x2233445566778899, "sp": 0x33445566778899AA},
               {"cr2": 0x0102030405060708, "ip": 0x0203040506070809, "sp": 0x030405060708090A})
    found: dict[str, list[int]] = {}
    for values in samples:
        uc = Uc(UC_ARCH_X86, UC_MODE_64)
        for name, value in values.items():
            uc.reg_write(regs[name], value)
        raw = bytes(uc.context_save())
        for name, value in values.items():
            hits = {i for i in range(0, len(raw) - 7) if struct.unpack_from("<Q", raw, i)[0] == value}
            found[name] = sorted(hits & set(found[name])) if name in found else sorted(hits)
    if any(len(v) != 1 for v in found.values()):
        raise MmemuError(f"cannot locate CR2/RIP/RSP in Unicorn's saved x86 state ({found}); mmemu needs unicorn==2.1.4")
    return RegisterOffsets(**{name: v[0] for name, v in found.items()})
