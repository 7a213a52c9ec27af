"""The kernel's ``vsprintf`` for ``printk`` from module code (lib/vsprintf.c).

Conversions: ``d i u x X o c s p %`` with the flags ``- 0 + space #``, a width and a
precision (digits or ``*``), and the lengths ``hh h l ll z t``; of the pointer extensions,
``%px`` (the raw pointer), ``%pa`` (a ``phys_addr_t`` passed by reference, printed
``0x`` and zero-padded to its size), and plain ``%p``, printed as ``%px`` is: the pointer
hashing of 4.15+ depends on a random boot key, so mmemu prints what a kernel booted with
``no_hash_pointers`` (and every kernel before 4.15) prints. A string that cannot be read is
``(efault)``, NULL ``(null)``. The level comes from the KERN_SOH prefix
(include/linux/kern_levels.h).
"""

from __future__ import annotations

import re

from ..errors import Oops

_SPEC = re.compile(rb"%([-0+ #]*)(\*|\d+)?(?:\.(\*|\d+))?(hh|h|ll|l|z|t|L)?([diuxXocsp%])")
_KERN_SOH = 0x01
#: KERN_DEFAULT: printk's default level (MESSAGE_LOGLEVEL_DEFAULT, 4)
DEFAULT_LEVEL = 4


def _level(fmt: bytes) -> tuple[int, bytes]:
    if len(fmt) >= 2 and fmt[0] == _KERN_SOH and chr(fmt[1]) in "01234567":
        return int(chr(fmt[1])), fmt[2:]
    if len(fmt) >= 2 and fmt[0] == _KERN_SOH:  # KERN_CONT, KERN_DEFAULT
        return DEFAULT_LEVEL, fmt[2:]
    return DEFAULT_LEVEL, fmt


def vsprintf(k, fmt: bytes, args) -> tuple[int, str]:
    """(level, text) of ``printk(fmt, ...)`` with the variable arguments read from *args*
    (:class:`mmemu.cpu.adapter.KcallArgs`)."""
    from .exports import _read_string

    level, fmt = _level(fmt)
    word = 8 if k.paging.bits64 else 4
    phys_size = 8 if (k.paging.bits64 or k.paging.levels[0].entry_size == 8) else 4
    out = []
    pos = 0
    for m in _SPEC.finditer(fmt):
        out.append(fmt[pos:m.start()].decode("latin-1"))
        pos = m.end()
        flags, width, prec, length, conv = m.groups()
        flags = flags.decode()
        if conv == b"%":
            out.append("%")
            continue
        width = args.next(4) if width == b"*" else int(width) if width else None
        prec = args.next(4) if prec == b"*" else int(prec) if prec is not None else None
        if width is not None and width >= 1 << 31:  # a negative * width: left-justify
            width, flags = (1 << 32) - width, flags + "-"
        size = {b"ll": 8, b"L": 8, b"l": word, b"z": word, b"t": word}.get(length, 4)
        if conv == b"s":
            ptr = args.next(word)
            if ptr == 0:
                text = "(null)"
            else:
                try:
                    text = _read_string(k, ptr, prec if prec is not None else 4096).decode("latin-1")
                except Oops:
                    text = "(efault)"
            if prec is not None:
                text = text[:prec]
            out.append(_pad(text, width, flags))
            continue
        if conv == b"c":
            out.append(_pad(chr(args.next(4) & 0xFF), width, flags))
            continue
        if conv == b"p":
            ext = fmt[pos:pos + 1]
            ptr = args.next(word)
            if ext == b"a":  # %pa: phys_addr_t by reference
                pos += 1
                value = int.from_bytes(k.read(ptr, phys_size), "little")
                out.append(f"0x{value:0{phys_size * 2}x}")
            else:
                if ext == b"x":
                    pos += 1
                out.append(_pad(f"{ptr:0{word * 2}x}", width, flags))
            continue
        value = args.next(size)
        bits = 8 * size
        if length == b"hh":
            value, bits = value & 0xFF, 8
        elif length == b"h":
            value, bits = value & 0xFFFF, 16
        value &= (1 << bits) - 1
        if conv in b"di" and value >> (bits - 1):
            value -= 1 << bits
        out.append(_number(value, conv, width, prec, flags))
    out.append(fmt[pos:].decode("latin-1"))
    return level, "".join(out)


def _pad(text: str, width: int | None, flags: str) -> str:
    if width is None or len(text) >= width:
        return text
    return text.ljust(width) if "-" in flags else text.rjust(width)


def _number(value: int, conv: bytes, width: int | None, prec: int | None, flags: str) -> str:
    base = {b"x": 16, b"X": 16, b"o": 8}.get(conv, 10)
    neg = value < 0
    digits = format(abs(value), {16: "x", 8: "o", 10: "d"}[base])
    if conv == b"X":
        digits = digits.upper()
    if prec is not None:
        digits = digits.zfill(prec) if prec else ("" if value == 0 else digits)
    sign = "-" if neg else "+" if "+" in flags and conv in b"di" else " " if " " in flags and conv in b"di" else ""
    prefix = ("0x" if conv == b"x" else "0X" if conv == b"X" else "0" if base == 8 else "") \
        if "#" in flags and value else ""
    body = sign + prefix + digits
    if width is not None and len(body) < width:
        if "-" in flags:
            return body.ljust(width)
        if "0" in flags and prec is None:
            return sign + prefix + digits.zfill(width - len(sign) - len(prefix))
        return body.rjust(width)
    return body
