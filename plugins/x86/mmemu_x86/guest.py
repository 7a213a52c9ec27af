"""x86 pieces the CPU needs in guest memory: segment descriptors and entry stubs."""

from __future__ import annotations

import struct
from dataclasses import dataclass


def segment_descriptor(access: int, flags: int, base: int = 0, limit: int = 0xFFFFF) -> bytes:
    """An 8-byte GDT descriptor (SDM vol. 3, 3.4.5): *access* is the byte P|DPL|S|type,
    *flags* the nibble G|D/B|L|AVL."""
    value = ((limit & 0xFFFF) | ((base & 0xFFFFFF) << 16) | (access << 40) | (((limit >> 16) & 0xF) << 48)
             | (flags << 52) | ((base >> 24) << 56))
    return struct.pack("<Q", value)


KERNEL_CODE, KERNEL_DATA, USER_CODE, USER_DATA = 0x9B, 0x93, 0xFB, 0xF3
FLAGS_32 = 0xC  # G, D (32-bit default operand size)
FLAGS_64_CODE = 0xA  # G, L (64-bit code)


def build_gdt(bits: int, kernel_cs: int, kernel_ds: int, user_cs: int, user_ds: int, gdt_entries: int) -> bytes:
    """The kernel's flat GDT at the selectors of asm/segment.h (what cpu_init loads)."""
    gdt = bytearray(8 * gdt_entries)
    code_flags = FLAGS_64_CODE if bits == 64 else FLAGS_32
    for selector, access, flags in ((kernel_cs, KERNEL_CODE, code_flags), (kernel_ds, KERNEL_DATA, FLAGS_32),
                                    (user_cs, USER_CODE, code_flags), (user_ds, USER_DATA, FLAGS_32)):
        i = selector >> 3
        gdt[8 * i:8 * i + 8] = segment_descriptor(access, flags)
    return bytes(gdt)


# Probe instructions, the same bytes in 32- and 64-bit mode ([ebx] / [rbx]).
PROBE_READ = bytes.fromhex("8a03")  # mov al, [rbx]
# A plain store. (A read-modify-write such as ``add byte [rbx], 0`` would fault as a read
# first and report W=0.) The prober loads AL with the byte already there, so nothing changes.
PROBE_WRITE = bytes.fromhex("8803")  # mov [rbx], al
PROBE_READ_OFF = 0
PROBE_WRITE_OFF = 4
PROBE_STUB = PROBE_READ + b"\x90\x90" + PROBE_WRITE + b"\xf4"  # read @0, write @4, hlt


def iret(bits: int) -> bytes:
    return b"\x48\xcf" if bits == 64 else b"\xcf"  # iretq / iret


@dataclass(frozen=True)
class EntryStubs:
    """The entry page: offsets of the iret stub, the probe stub and the return stub."""

    code: bytes
    iret: int
    probe: int
    ret: int


def entry_stubs(bits: int) -> EntryStubs:
    """The page of entry code: ``iret`` at 0, the probe instructions at 16, and at 64 the
    return stub that kernel calls return to (runs stop before executing it; ``hlt``)."""
    code = bytearray(b"\x90" * 128)
    i = iret(bits)
    code[0:len(i)] = i
    code[16:16 + len(PROBE_STUB)] = PROBE_STUB
    code[64] = 0xF4  # hlt
    return EntryStubs(bytes(code), 0, 16, 64)


def iret_frame(bits: int, ip: int, cs: int, flags: int, sp: int, ss: int) -> bytes:
    """The stack an ``iret`` to an outer privilege level pops: ip, cs, flags, sp, ss."""
    return struct.pack("<5Q" if bits == 64 else "<5I", ip, cs, flags, sp, ss)


def touch_pages_code(bits: int, base: int, n: int) -> bytes:
    """User code: write one byte in each of *n* pages from *base*, then exit(0)."""
    if bits == 64:  # mov rbx,base; mov rcx,n; 1: mov [rbx],al; add rbx,4096; dec rcx; jnz 1b; exit
        return bytes.fromhex("48bb" + base.to_bytes(8, "little").hex() + "48b9" + n.to_bytes(8, "little").hex()
                             + "8803" "4881c300100000" "48ffc9" "75f2" "b83c000000" "31ff" "0f05")
    # mov ebx,base; mov ecx,n; 1: mov [ebx],al; add ebx,4096; dec ecx; jnz 1b; mov eax,1; xor ebx,ebx; int 0x80
    return bytes.fromhex("bb" + base.to_bytes(4, "little").hex() + "b9" + n.to_bytes(4, "little").hex()
                         + "8803" "81c300100000" "49" "75f5" "b801000000" "31db" "cd80")


def read_byte_code(bits: int) -> bytes:
    """Kernel code: return the byte at the address in the first argument (rdi; eax with
    regparm(3) on i386)."""
    return bytes.fromhex("0fb607c3") if bits == 64 else bytes.fromhex("0fb600c3")  # movzx eax,byte [rdi|eax]; ret
