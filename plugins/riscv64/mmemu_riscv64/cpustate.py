"""The hart's state as Unicorn saves it (``uc_context_save``), read in place on the fault path.

Every page fault needs the pc, the privilege, the stack pointer and the base register of the
faulting load or store. Through the register API that is a batch read and a single read
(about 3 us together through ctypes, more through the Python binding: README X11); one
``context_update`` (a copy of the hart's ~1.5 KiB CPURISCVState, under 1 us) and plain
memory reads give them all.

The byte offsets of ``env->gpr[]``, ``env->pc`` and ``env->priv`` inside the saved state are
found once per process, in a scratch engine, by writing known values through the register
API and looking for them; never hard-coded: a Unicorn build with another layout is refused
instead of misread.
"""

from __future__ import annotations

import ctypes
import struct
from dataclasses import dataclass
from functools import lru_cache

from unicorn import UC_ARCH_RISCV, UC_MODE_RISCV64, Uc, UcError
from unicorn import riscv_const as rc

from mmemu.cpu.adapter import context_calls
from mmemu.errors import MmemuError

#: x1..x31 and the pc get values no other field of a fresh hart holds
_MARK = 0x5A5A000000000100


@dataclass(frozen=True)
class Offsets:
    gpr: int  # env->gpr[0] (u64 x0..x31, Unicorn's UC_RISCV_REG_X0 + i)
    pc: int  # env->pc (u64)
    priv: int  # env->priv (the privilege: 0 U, 1 S, 3 M)


def _find(blob: bytes, value: int, fmt: str = "<Q", step: int = 8) -> list[int]:
    return [off for off in range(0, len(blob) - 7, step) if struct.unpack_from(fmt, blob, off)[0] == value]


@lru_cache(maxsize=None)
def find_offsets() -> Offsets:
    uc = Uc(UC_ARCH_RISCV, UC_MODE_RISCV64)
    values = [(rc.UC_RISCV_REG_X1 + i, _MARK | (i + 1)) for i in range(31)]
    uc.reg_write_batch(values + [(rc.UC_RISCV_REG_PC, _MARK | 0xAA00)])
    blobs = {}
    for priv in (3, 1, 0):
        uc.reg_write(rc.UC_RISCV_REG_PRIV, priv)
        blobs[priv] = bytes(uc.context_save())
    blob = blobs[3]
    x1 = _find(blob, _MARK | 1)
    pc = _find(blob, _MARK | 0xAA00)
    if len(x1) != 1 or len(pc) != 1 or list(struct.unpack_from("<31Q", blob, x1[0])) != [v for _, v in values]:
        raise MmemuError(f"riscv64 hart state: x1..x31 at {x1}, pc at {pc} in Unicorn's saved state; this "
                         "Unicorn build is not the one mmemu knows")
    priv = [off for off in range(0, len(blob) - 3, 4)
            if tuple(struct.unpack_from("<I", blobs[p], off)[0] for p in (3, 1, 0)) == (3, 1, 0)]
    if len(priv) != 1:
        raise MmemuError(f"riscv64 hart state: the privilege found at {priv} in Unicorn's saved state")
    return Offsets(gpr=x1[0] - 8, pc=pc[0], priv=priv[0])


class HartState:
    """The saved state of a running engine, refreshed by :meth:`update` (in a hook: what the
    hart holds now) and read in place: ``x[i]`` is register x\\ *i*, :attr:`pc`,
    :attr:`priv`."""

    def __init__(self, uc: Uc):
        self.uc = uc
        off = find_offsets()
        self._ctx = uc.context_save()
        self._update = context_calls(uc, self._ctx)[0]  # uc.context_update, straight into libunicorn
        base = ctypes.cast(self._ctx.context, ctypes.c_void_p).value
        self.x = (ctypes.c_uint64 * 32).from_address(base + off.gpr)
        self._pc = ctypes.c_uint64.from_address(base + off.pc)
        self._priv = ctypes.c_uint32.from_address(base + off.priv)

    def update(self) -> tuple[int, int, int]:
        """Refresh the state; return (pc, privilege, sp): what every trap reads first."""
        err = self._update()
        if err:
            raise UcError(err)
        return self._pc.value, self._priv.value & 3, self.x[2]

    @property
    def pc(self) -> int:
        return self._pc.value

    @property
    def priv(self) -> int:
        return self._priv.value & 3
