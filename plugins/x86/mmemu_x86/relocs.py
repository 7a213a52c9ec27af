"""The relocations the kernel's module loader applies on x86, by era
(arch/x86/kernel/module.c: ``apply_relocate`` for i386's SHT_REL, ``apply_relocate_add``
for x86_64's SHT_RELA).

Each function computes the psABI formula named in its docstring from ``S`` (the symbol's
address), ``A`` (the addend) and ``P`` (the place), and returns what the loader writes
there: ``(width, value)``. The checks are the kernel's: x86_64 refuses a 32-bit value that
its sign- or zero-extension does not give back (``overflow in relocation type``); the
PC-relative ones were never checked by the kernel (the check sits under ``#if 0``), so a
value is truncated to its place as the kernel truncates it.
"""

from __future__ import annotations

from mmemu.module.reloc import RelocOverflow, RelocTable, RelocType

M32 = 0xFFFFFFFF
M64 = (1 << 64) - 1

# include/uapi/linux/elf-em.h, the psABIs' relocation numbers
R_386_32, R_386_PC32, R_386_PLT32 = 1, 2, 4
R_X86_64_NONE, R_X86_64_64, R_X86_64_PC32, R_X86_64_PLT32 = 0, 1, 2, 4
R_X86_64_32, R_X86_64_32S, R_X86_64_PC64 = 10, 11, 24


def r_386_32(S: int, A: int, P: int) -> tuple[int, int]:
    """R_386_32: word32 = S + A (``*location += sym->st_value``)."""
    return 4, (S + A) & M32


def r_386_pc32(S: int, A: int, P: int) -> tuple[int, int]:
    """R_386_PC32 (and R_386_PLT32, treated as PC32: there is no PLT in the kernel):
    word32 = S + A - P (``*location += sym->st_value - (uint32_t)location``)."""
    return 4, (S + A - P) & M32


def r_x86_64_none(S: int, A: int, P: int) -> tuple[int, int]:
    """R_X86_64_NONE: nothing is written."""
    return 0, 0


def r_x86_64_64(S: int, A: int, P: int) -> tuple[int, int]:
    """R_X86_64_64: word64 = S + A."""
    return 8, (S + A) & M64


def r_x86_64_32(S: int, A: int, P: int) -> tuple[int, int]:
    """R_X86_64_32: word32 = S + A, which must zero-extend back to the 64-bit value."""
    value = (S + A) & M64
    if value > M32:
        raise RelocOverflow(value)
    return 4, value


def r_x86_64_32s(S: int, A: int, P: int) -> tuple[int, int]:
    """R_X86_64_32S: word32 = S + A, which must sign-extend back to the 64-bit value (the
    kernel code model: every kernel and module address is in the top 2 GiB)."""
    value = (S + A) & M64
    signed = value - (1 << 64) if value >> 63 else value
    if not -(1 << 31) <= signed < (1 << 31):
        raise RelocOverflow(value)
    return 4, value & M32


def r_x86_64_pc32(S: int, A: int, P: int) -> tuple[int, int]:
    """R_X86_64_PC32 (and R_X86_64_PLT32, treated as PC32): word32 = S + A - P, truncated
    as the kernel truncates it (its overflow check sits under ``#if 0``)."""
    return 4, (S + A - P) & M32


def r_x86_64_pc64(S: int, A: int, P: int) -> tuple[int, int]:
    """R_X86_64_PC64: word64 = S + A - P."""
    return 8, (S + A - P) & M64


def _messages(era) -> dict[str, str]:
    """The kernel's messages of *era* (arch/x86/kernel/module.c). Before pr_fmt they read
    ``module hello: ...``; with it, ``module: hello: ...`` (and ``module: `` before the
    overflow and x86/modules lines too)."""
    pre = era.module_msg_prefix
    named = (lambda text: "module {module}: " + text) if pre == "module " else (lambda text: pre + "{module}: " + text)
    line = (lambda text: text) if pre == "module " else (lambda text: pre + text)
    return {
        "unknown32": named("Unknown relocation: {type}"),
        "unknown64": named("Unknown rela relocation: {type}"),
        "overflow": line("overflow in relocation type {type} val {value:x}") + "\n"
        + line("`{module}' likely not compiled with -mcmodel=kernel"),
        "nonzero": line(era.module_reloc_nonzero) if era.module_reloc_nonzero else "",
    }


def i386_relocations(era) -> RelocTable:
    """apply_relocate of *era* (X86_MM): R_386_32, R_386_PC32, and R_386_PLT32 where the era
    treats it as PC32. No overflow or non-zero checks (a 32-bit place holds any value)."""
    types = {R_386_32: RelocType(R_386_32, "R_386_32", r_386_32),
             R_386_PC32: RelocType(R_386_PC32, "R_386_PC32", r_386_pc32)}
    if era.module_plt32_32:
        types[R_386_PLT32] = RelocType(R_386_PLT32, "R_386_PLT32", r_386_pc32)
    msg = _messages(era)
    return RelocTable(types, rela=False, unknown=msg["unknown32"], overflow=msg["overflow"])


def x86_64_relocations(era) -> RelocTable:
    """apply_relocate_add of *era* (X86_MM): NONE, 64, 32, 32S, PC32, and PLT32 and PC64
    where the era accepts them; the zero-target check where the era has it."""
    zero = era.module_reloc_zero_check
    types = {R_X86_64_NONE: RelocType(R_X86_64_NONE, "R_X86_64_NONE", r_x86_64_none, 0),
             R_X86_64_64: RelocType(R_X86_64_64, "R_X86_64_64", r_x86_64_64, 8, zero),
             R_X86_64_32: RelocType(R_X86_64_32, "R_X86_64_32", r_x86_64_32, 4, zero),
             R_X86_64_32S: RelocType(R_X86_64_32S, "R_X86_64_32S", r_x86_64_32s, 4, zero),
             R_X86_64_PC32: RelocType(R_X86_64_PC32, "R_X86_64_PC32", r_x86_64_pc32, 4, zero)}
    if era.module_plt32_64:
        types[R_X86_64_PLT32] = RelocType(R_X86_64_PLT32, "R_X86_64_PLT32", r_x86_64_pc32, 4, zero)
    if era.module_pc64:
        types[R_X86_64_PC64] = RelocType(R_X86_64_PC64, "R_X86_64_PC64", r_x86_64_pc64, 8, zero)
    msg = _messages(era)
    return RelocTable(types, rela=True, unknown=msg["unknown64"], overflow=msg["overflow"], nonzero=msg["nonzero"])
