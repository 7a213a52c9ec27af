"""Relocation tables: what an arch plugin gives the module loader.

A table maps a relocation type (the number in ``ELF_R_TYPE(r_info)``) to a small function
that computes what is written at the place, from the psABI's symbols: ``S`` (the symbol's
address), ``A`` (the addend: ``r_addend`` of a RELA entry, or the word already at the place
for REL), ``P`` (the place's address). Each function's docstring gives its psABI formula;
it returns ``(width in bytes, value)`` or raises :class:`RelocOverflow`, and the loader
writes the value little-endian. An instruction relocation (``insn``: arm64's ADRP/ADD/LDR/B
immediates, riscv64's U/I/S/B/J-type fields) only rewrites some bits of the instruction at
the place: its function is called with a fourth argument, the place's current contents
(``width`` bytes, unsigned little-endian), and returns the whole new word. The set of types is exactly what the kernel's
``apply_relocate`` / ``apply_relocate_add`` of that arch and era accepts: any other type
fails the load with the kernel's message. A table may also :attr:`RelocTable.resolve` an
entry's ``S`` and ``A`` from the rest of its section first (riscv64's PCREL_LO12 relocations
name the auipc of their HI20 relocation, not their target).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


class RelocOverflow(Exception):
    """Raised by a relocation function: *value* does not fit the place. The loader turns it
    into a :class:`ModuleError` with the arch's message (``overflow in relocation type``)."""

    def __init__(self, value: int):
        super().__init__(f"{value:#x}")
        self.value = value


class RelocError(Exception):
    """Raised by a relocation function (or a table's :attr:`RelocTable.resolve`) that the
    kernel refuses with a message of its own (riscv64's ``target ... can not be addressed by
    the 32-bit offset from PC = ...``): *message*, where ``{module}`` stands for the
    module's name. The loader fails the load with it."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


@dataclass
class RelocSection:
    """What :attr:`RelocTable.resolve` sees of the relocation section being applied: its
    entries (``offsets``, ``types``, ``symbols``, ``addends``), every symbol's final value
    (``values``, by symbol index), the address of the target section (``base``), and the
    module (``module``: the loader's :class:`mmemu.kernel.module.Module`, whose ``arch``
    dict is the arch's own per-module state, ``struct mod_arch_specific``, and whose
    sections' addresses ``module.section_address(name)`` gives) with ``write(va, data)``
    to write module memory (PLT/GOT entries)."""

    offsets: list
    types: list
    symbols: list
    addends: list
    values: list
    base: int
    module: object
    write: Callable[[int, bytes], None]


@dataclass(frozen=True)
class RelocType:
    """One relocation type: its number, its psABI name, and the function computing it."""

    number: int
    name: str
    apply: Callable[[int, int, int], tuple[int, int]]
    #: the width of the place (bytes) for a REL table, whose addend is read from it
    width: int = 4
    #: the kernel refuses to overwrite a place that is not zero (x86_64 5.x+: a
    #: relocation applied twice); checked by the loader before writing
    zero_target: bool = False
    #: an instruction relocation: ``apply(S, A, P, old)`` gets the place's current
    #: ``width``-byte word (unsigned) and returns the word with its immediate rewritten
    insn: bool = False
    #: a value out of range is not the end: the table's ``veneer`` may repair it (arm64's
    #: module PLTs for a CALL26/JUMP26 beyond +/-128 MiB)
    veneer: bool = False


@dataclass(frozen=True)
class RelocTable:
    """An arch's relocations for one era.

    ``rela``: the arch uses SHT_RELA (explicit addends; x86_64) or SHT_REL (addend in the
    place; i386). ``unknown``: the kernel's message for a type not in ``types`` (a
    format with ``{module}`` and ``{type}``). ``overflow``: its message for a value that
    does not fit (``{module}``, ``{type}``, ``{value}``). ``nonzero``: its message for a
    place that is not zero where ``zero_target`` is set (``{type}``, ``{place}``,
    ``{value}``). ``veneer``: for a type marked ``veneer`` whose function raised
    :class:`RelocOverflow`, ``veneer(kernel, module, type, S, A, P, old, overflow)`` returns
    the ``(width, value)`` to write instead (a branch to a veneer it placed in the module's
    memory) or raises :class:`mmemu.errors.ModuleError` with the kernel's words."""

    types: dict[int, RelocType]
    rela: bool
    unknown: str
    overflow: str
    nonzero: str = ""
    veneer: Callable | None = None
    #: an optional step the kernel makes for some entries before calling the type's
    #: function: ``resolve(section, i, S, A)`` (``section`` a :class:`RelocSection`, ``i``
    #: the entry) returns the ``(S, A)`` to use, or raises :class:`RelocError` (riscv64:
    #: a PCREL_LO12 entry takes its value from the HI20 entry at the address its symbol
    #: names; a call through a PLT entry, a GOT entry)
    resolve: Callable | None = None
    #: an optional last step of each relocation section: ``finish(section, contents)`` (the
    #: target section's bytes as relocated so far) returns
    #: ``{offset in the target section: bytes}`` to write there after every entry was
    #: applied, or raises :class:`RelocError` (riscv64 6.7+: the ADD/SUB/SET relocations of
    #: a place are summed first and written once, ``process_accumulated_relocations``)
    finish: Callable | None = None

    def name(self, number: int) -> str:
        t = self.types.get(number)
        return t.name if t else f"type {number}"
