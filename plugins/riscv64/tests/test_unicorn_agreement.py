"""The codec against Unicorn's RISC-V MMU (the referee): random Sv39/Sv48/Sv57 walks built in
guest RAM, translated by the hart (libunicorn's uc_vmem_translate, in probe mode, at the
current privilege: /work/shared/unicorn-riscv-arm64 X4) and by the codec's decoders, for
read, write and fetch in S-mode and U-mode. Both must give the same physical address or both
refuse.

Left out of the random entries: bits 63..54. The codec calls them reserved (privileged spec
1.12); Unicorn 2.1.4's QEMU 5.0 shifts them into the physical address instead (see
formats.py). The kernel never sets them on this CPU.
"""

from __future__ import annotations

import ctypes
import random
import struct

import pytest

from mmemu.arch import KR, KW, KX, LEAF, NONE, RESERVED, TABLE, UR, UW, UX
from mmemu_riscv64.formats import paging_mode
from mmemu_riscv64.pgtable_bits import _PAGE_GLOBAL

unicorn = pytest.importorskip("unicorn")
from unicorn import UC_ARCH_RISCV, UC_MODE_RISCV64, Uc  # noqa: E402
from unicorn import riscv_const as rc  # noqa: E402

try:
    from unicorn.unicorn_py3.unicorn import uclib
    uclib.uc_vmem_translate.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_int,
                                        ctypes.POINTER(ctypes.c_uint64)]
    uclib.uc_vmem_translate.restype = ctypes.c_int
except Exception as exc:  # pragma: no cover
    pytest.skip(f"libunicorn has no uc_vmem_translate: {exc}", allow_module_level=True)

RAM_BASE = 0x80000000
RAM_SIZE = 16 << 20
PROT = {"read": 1, "write": 2, "exec": 4}  # UC_PROT_READ/WRITE/EXEC
RIGHT = {(False, "read"): KR, (False, "write"): KW, (False, "exec"): KX,
         (True, "read"): UR, (True, "write"): UW, (True, "exec"): UX}


def translate(uc, va: int, access: str):
    pa = ctypes.c_uint64()
    err = uclib.uc_vmem_translate(uc._uch, va, PROT[access], ctypes.byref(pa))
    return pa.value if err == 0 else None


def _random_entry(rng: random.Random, li: int, last: bool, next_table: int) -> int:
    low = rng.getrandbits(10)
    r = rng.random()
    if r < 0.1:
        return low & ~1  # V=0
    if not last and r < 0.55:
        return ((next_table >> 12) << 10) | (low & ~0xE) | 1  # a pointer, random U/G/A/D/RSW
    ppn = rng.getrandbits(44)
    if rng.random() < 0.6:
        ppn &= ~((1 << (9 * li)) - 1)  # aligned for its level most of the time
    if not last and not low & 0xE:
        low |= 2  # a leaf, not a pointer into nowhere (at the last level R=W=X=0 stays: reserved)
    return (ppn << 10) | low | 1


@pytest.mark.parametrize("mmu,nlevels,satp_mode", [("sv39", 3, 8), ("sv48", 4, 9), ("sv57", 5, 10)])
def test_random_walks_agree_with_unicorn(mmu, nlevels, satp_mode):
    mode = paging_mode(mmu, _PAGE_GLOBAL)
    decoders = [mode.codec.decoder(li) for li in range(nlevels)]
    uc = Uc(UC_ARCH_RISCV, UC_MODE_RISCV64)
    uc.mem_map(RAM_BASE, RAM_SIZE)
    rng = random.Random(1234 + nlevels)
    tables = [RAM_BASE + 0x100000 + i * 0x1000 for i in range(nlevels)]
    checked = 0
    seen = set()
    for trial in range(250):
        for t in tables:
            uc.mem_write(t, b"\0" * 0x1000)
        va = rng.getrandbits(mode.va_bits - 12) << 12 | rng.getrandbits(12)
        va = mode.va_of(va & ((1 << mode.va_bits) - 1))
        # the entries along the walk of va, and what the codec says of them
        expect = None
        for li in range(nlevels):
            lv = mode.levels[li]
            idx = (va >> lv.shift) & 511
            last = li == nlevels - 1
            raw = _random_entry(rng, nlevels - 1 - li, last, tables[li + 1] if not last else 0)
            uc.mem_write(tables[li] + 8 * idx, struct.pack("<Q", raw))
            kind, addr, rights = decoders[li](raw)
            if kind == TABLE:
                assert addr == tables[li + 1]
                continue
            expect = (kind, addr | (va & (lv.span - 1)), rights) if kind == LEAF else (kind, None, 0)
            seen.add((kind, li))
            break
        uc.reg_write(rc.UC_RISCV_REG_PRIV, 3)
        uc.reg_write(rc.UC_RISCV_REG_SATP, (satp_mode << 60) | (tables[0] >> 12))
        uc.reg_write(rc.UC_RISCV_REG_MSTATUS, 0)  # SUM=0, MXR=0
        uc.ctl(unicorn.UC_CTL_TLB_FLUSH, unicorn.UC_CTL_IO_WRITE)
        for priv in (1, 0):
            uc.reg_write(rc.UC_RISCV_REG_PRIV, priv)
            for access in ("read", "write", "exec"):
                got = translate(uc, va, access)
                kind, pa, rights = expect
                want = pa if kind == LEAF and rights & RIGHT[(priv == 0, access)] else None
                assert got == want, (mmu, trial, hex(va), priv, access, got and hex(got), want and hex(want))
                checked += 1
            uc.reg_write(rc.UC_RISCV_REG_PRIV, 3)
    assert checked == 250 * 6
    # the walks met leaves at every level, empty and malformed entries
    assert {li for kind, li in seen if kind == LEAF} == set(range(nlevels))
    assert {kind for kind, _ in seen} == {LEAF, NONE, RESERVED}
