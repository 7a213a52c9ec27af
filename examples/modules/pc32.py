#!/usr/bin/env python3
"""Rewrite an x86_64 object's R_X86_64_PLT32 relocations as R_X86_64_PC32, in place.

binutils 2.31 (2018) made gas write ``call foo`` as R_X86_64_PLT32; the binutils of the
kernels before 4.16 wrote R_X86_64_PC32, and those kernels' apply_relocate_add refuses
PLT32 ("Unknown rela relocation: 4"; 4.16 added "x86: Treat R_X86_64_PLT32 as
R_X86_64_PC32"). For non-PIC kernel code the two mean the same (S + A - P, no PLT), so
the objects built for those eras are given the relocation their own assembler wrote.
Standard library only: the Makefile runs it with the machine's python3.
"""

import struct
import sys

R_X86_64_PC32, R_X86_64_PLT32, SHT_RELA = 2, 4, 4


def rewrite(path: str) -> int:
    with open(path, "rb") as f:
        data = bytearray(f.read())
    if data[:4] != b"\x7fELF" or data[4] != 2:
        raise SystemExit(f"{path}: not an ELF64 object")
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    changed = 0
    for i in range(shnum):
        sh = shoff + i * shentsize
        sh_type, = struct.unpack_from("<I", data, sh + 4)
        if sh_type != SHT_RELA:
            continue
        offset, size = struct.unpack_from("<QQ", data, sh + 0x18)
        for rel in range(offset, offset + size, 24):
            info, = struct.unpack_from("<Q", data, rel + 8)
            if info & 0xFFFFFFFF == R_X86_64_PLT32:
                struct.pack_into("<Q", data, rel + 8, (info & ~0xFFFFFFFF) | R_X86_64_PC32)
                changed += 1
    with open(path, "wb") as f:
        f.write(data)
    return changed


if __name__ == "__main__":
    for p in sys.argv[1:]:
        rewrite(p)
