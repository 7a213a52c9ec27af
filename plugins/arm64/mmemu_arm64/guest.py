"""Guest code of the arm64 CPU adapter: the entry page the kernel's text ends with, and the
small programs of the demo and the conformance suite.

Every piece was assembled with ``llvm-mc -triple=aarch64 -filetype=obj`` and extracted with
``llvm-objcopy -O binary --only-section=.text``; the bytes are kept here with their source so
that no assembler is needed at run time.
"""

from __future__ import annotations

import struct

#: the entry page, at the start of the last page of the kernel text (the adapter's ``setup``):
#:
#:     0x00  ldrb w1, [x0]        // the probe: a byte load from the address in x0
#:     0x04  strb w1, [x0]        // the probe: store the byte in w1 back
#:     0x08  b    .
#:     0x0c  nop
#:     0x10  b    .               // the return stub: x30 of a kernel call; the run stops here
ENTRY_PAGE = bytes.fromhex("01004039" "01000039" "00000014" "1f2003d5" "00000014")
PROBE_OFF = 0x00
PROBE_STUB = ENTRY_PAGE[:12]
PROBE_READ = (0x00, 0x04)
PROBE_WRITE = (0x04, 0x08)
RETURN_OFF = 0x10

#: user code touching one byte in each of n pages, then exit(0) (asm-generic unistd: 93):
#:
#:         ldr  x0, 2f            // the first page
#:         ldr  x1, 3f            // n
#:     1:  strb wzr, [x0]
#:         add  x0, x0, #1, lsl #12
#:         subs x1, x1, #1
#:         b.ne 1b
#:         mov  x0, #0
#:         mov  x8, #93
#:         svc  #0
#:         b    .
#:     2:  .quad base
#:     3:  .quad n
TOUCH_PAGES = bytes.fromhex("40010058" "61010058" "1f000039" "00044091" "210400f1" "a1ffff54" "000080d2" "a80b80d2"
                            "010000d4" "00000014")


def touch_pages_code(base: int, n: int) -> bytes:
    return TOUCH_PAGES + struct.pack("<QQ", base, n)


#: a kernel function returning the byte at the address in its first argument:
#:     ldrb w0, [x0]
#:     ret
READ_BYTE = bytes.fromhex("00004039" "c0035fd6")

#: b .
LOOP = bytes.fromhex("00000014")

#: ``brk #0x4d4d`` ("MM"; BRK is 0xd4200000 | imm16 << 5): the trap placed at every exported
#: kernel function; an immediate none of the kernel's BRK handlers claims (asm/brk-imm.h:
#: FAULT 0x100, KGDB 0x400/0x401, BUG 0x800, KASAN 0x900-0x9ff, UBSAN 0x5500-0x55ff, CFI
#: 0x8000-0x8fff)
KCALL_BRK = 0xD4200000 | 0x4D4D << 5
