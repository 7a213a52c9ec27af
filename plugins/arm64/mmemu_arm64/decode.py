"""The address a faulting AArch64 load or store accessed, from its instruction.

Unicorn reports a data abort without writing ESR_EL1 and FAR_EL1 (/work/shared/unicorn-
riscv-arm64/README.md, B2, X3); the adapter reads QEMU's own syndrome and address instead
(cpustate.py), and the walker's referee (referee.py) finds the address independently: it
decodes the instruction at the PC with capstone (once per PC: :class:`Decoder` caches) and
computes the address from the registers, which the aborted instruction has not changed yet: base + offset
for the immediate, unscaled and pre-indexed forms (a pre-index writes the base back only when
the access completes), the base alone for post-indexed forms (capstone gives them offset 0),
base + extended and shifted index for the register forms, the literal's address for a
PC-relative load, ``Xn & ~63`` for ``dc zva``. Pairs and unaligned accesses that cross a
page are split the way QEMU 5's softmmu does (cputlb.c load_helper/store_helper), so the
address reported for a fault on the second page is the one the CPU's translation saw.
"""

from __future__ import annotations

from dataclasses import dataclass

from capstone import CS_ARCH_ARM64, CS_MODE_ARM, Cs
from capstone.arm64 import (ARM64_EXT_SXTB, ARM64_EXT_SXTH, ARM64_EXT_SXTW, ARM64_EXT_UXTB, ARM64_EXT_UXTH,
                            ARM64_EXT_UXTW, ARM64_OP_IMM, ARM64_OP_MEM, ARM64_OP_REG, ARM64_SFT_LSL)
from unicorn.arm64_const import UC_ARM64_REG_SP, UC_ARM64_REG_X0, UC_ARM64_REG_X29, UC_ARM64_REG_X30

MASK64 = (1 << 64) - 1
PAGE = 4096

#: store mnemonics that are not ``st*`` (the LSE atomics read and write; Unicorn's Cortex-A72
#: model has none, but a MAX model would)
_RMW_PREFIXES = ("swp", "cas", "ldadd", "ldclr", "ldeor", "ldset", "ldsmax", "ldsmin", "ldumax", "ldumin")
_PAIRS = ("ldp", "stp", "ldnp", "stnp", "ldxp", "stxp", "ldaxp", "stlxp", "ldpsw")
_REG_BYTES = {"x": 8, "w": 4, "b": 1, "h": 2, "s": 4, "d": 8, "q": 16, "v": 16}


#: Unicorn's register -> its index in QEMU's xregs[] (31: the current SP)
XREG = {**{UC_ARM64_REG_X0 + i: i for i in range(29)}, UC_ARM64_REG_X29: 29, UC_ARM64_REG_X30: 30,
        UC_ARM64_REG_SP: 31}


def uc_reg(name: str) -> int | None:
    """Unicorn's register for a capstone register name (None: the zero register)."""
    if name in ("sp", "wsp"):
        return UC_ARM64_REG_SP
    if name in ("xzr", "wzr"):
        return None
    if name in ("fp", "x29", "w29"):
        return UC_ARM64_REG_X29
    if name in ("lr", "x30", "w30"):
        return UC_ARM64_REG_X30
    if name[0] in "xw" and name[1:].isdigit() and int(name[1:]) <= 28:
        return UC_ARM64_REG_X0 + int(name[1:])
    raise ValueError(f"not a general-purpose register: {name}")


def _extend(value: int, ext: int, shift: int) -> int:
    if ext == ARM64_EXT_UXTB:
        value &= 0xFF
    elif ext == ARM64_EXT_UXTH:
        value &= 0xFFFF
    elif ext == ARM64_EXT_UXTW:
        value &= 0xFFFFFFFF
    elif ext == ARM64_EXT_SXTB:
        value = (value & 0xFF) - ((value & 0x80) << 1)
    elif ext == ARM64_EXT_SXTH:
        value = (value & 0xFFFF) - ((value & 0x8000) << 1)
    elif ext == ARM64_EXT_SXTW:
        value = (value & 0xFFFFFFFF) - ((value & 0x80000000) << 1)
    return (value << shift) & MASK64


@dataclass(frozen=True)
class MemAccess:
    """What one load/store instruction accesses. ``base``/``index``: Unicorn registers (None:
    none, or the zero register); ``disp``: the immediate offset (the literal's address when
    ``base`` is None); ``elements``: (offset, size) of each access in order; ``write``: it
    stores; ``unprivileged``: LDTR/STTR (EL0 permissions at EL1); ``align``: the address is
    rounded down to it (``dc zva``)."""

    text: str
    base: int | None
    index: int | None
    index_w: bool
    ext: int
    shift: int
    disp: int
    elements: tuple[tuple[int, int], ...]
    write: bool
    unprivileged: bool = False
    align: int = 1

    def __post_init__(self):
        # the referee's view: registers as indices of the saved xregs[] (31: SP), the access kind
        object.__setattr__(self, "base_x", XREG.get(self.base))
        object.__setattr__(self, "index_x", XREG.get(self.index))
        object.__setattr__(self, "access", "write" if self.write else "read")

    def regs(self) -> tuple[int, ...]:
        return tuple(r for r in (self.base, self.index) if r is not None)

    def address_x(self, x) -> int:
        """The first byte accessed, given the xregs[] (x0..x30, SP) of the CPU."""
        addr = self.disp
        if self.base_x is not None:
            addr += x[self.base_x]
        if self.index_x is not None:
            v = x[self.index_x]
            if self.index_w:
                v &= 0xFFFFFFFF
            addr += _extend(v, self.ext, self.shift)
        addr &= MASK64
        if self.align > 1:
            addr &= ~(self.align - 1)
        return addr

    def address(self, values: dict) -> int:
        """The first byte accessed, given the values of :meth:`regs`."""
        addr = self.disp
        if self.base is not None:
            addr += values[self.base]
        if self.index is not None:
            v = values[self.index]
            if self.index_w:
                v &= 0xFFFFFFFF
            addr += _extend(v, self.ext, self.shift)
        addr &= MASK64
        if self.align > 1:
            addr &= ~(self.align - 1)
        return addr

    def parts(self, addr: int) -> list[int]:
        """The addresses the CPU translates, in order: one per element, two for an element
        that crosses a page (QEMU 5 load_helper: the aligned word and the next one;
        store_helper: the address, then the start of the second page)."""
        out = []
        for off, size in self.elements:
            a = (addr + off) & MASK64
            if size > 1 and (a & (PAGE - 1)) + size > PAGE:
                if self.write:
                    out += [a, (a + size) & ~(PAGE - 1) & MASK64]
                else:
                    first = a & ~(size - 1)
                    out += [first, (first + size) & MASK64]
            else:
                out.append(a)
        return out


class Decoder:
    """capstone's AArch64 decoder with the per-PC cache of what each instruction accesses."""

    def __init__(self):
        self.cs = Cs(CS_ARCH_ARM64, CS_MODE_ARM)
        self.cs.detail = True
        self.cache: dict[int, MemAccess | None] = {}

    def clear(self) -> None:
        self.cache.clear()

    def decode(self, code: bytes, pc: int) -> MemAccess | None:
        """The access of the instruction *code* at *pc* (None: not a memory access)."""
        try:
            insn = next(self.cs.disasm(code, pc, 1))
        except StopIteration:
            return None
        m = insn.mnemonic
        text = f"{m} {insn.op_str}"
        ops = insn.operands
        write = m.startswith("st") or m.startswith(_RMW_PREFIXES)
        unpriv = m.startswith(("ldtr", "sttr"))
        if m == "dc" and insn.op_str.startswith("zva"):
            reg = next(o for o in ops if o.type == ARM64_OP_REG)
            # DCZID_EL0.BS = 4 on the Cortex-A72: 16 words, 64 bytes
            return MemAccess(text, uc_reg(insn.reg_name(reg.reg)), None, False, 0, 0, 0, ((0, 64),), True, align=64)
        if m.startswith("prfm") or m.startswith("prfum"):
            return None  # a prefetch never faults
        mem = next((o for o in ops if o.type == ARM64_OP_MEM), None)
        regs = [insn.reg_name(o.reg) for o in ops if o.type == ARM64_OP_REG]
        if mem is None:
            imm = next((o for o in ops if o.type == ARM64_OP_IMM), None)
            if imm is not None and m in ("ldr", "ldrsw") and regs:  # LDR (literal): PC-relative
                return MemAccess(text, None, None, False, 0, 0, imm.imm & MASK64,
                                 ((0, 4 if m == "ldrsw" else _REG_BYTES.get(regs[0][0], 8)),), False)
            return None
        # the data registers: store-exclusives name the status register first
        data = regs[1:] if m.startswith(("stx", "stlx")) else regs
        data = [r for r in data if r[0] in _REG_BYTES]
        if m.endswith("sw"):
            size = 4
        elif m.endswith(("b", "sb")) and not m.startswith(("ld1", "st1", "ld2", "st2", "ld3", "st3", "ld4", "st4")):
            size = 1
        elif m.endswith(("h", "sh")) and not m.startswith(("ld1", "st1", "ld2", "st2", "ld3", "st3", "ld4", "st4")):
            size = 2
        elif data:
            size = _REG_BYTES[data[0][0]]
        else:
            size = 8
        if m.startswith(_PAIRS):
            elements = ((0, size), (size, size))
        elif m[:3] in ("ld1", "ld2", "ld3", "ld4", "st1", "st2", "st3", "st4"):
            elements = ((0, 16 * max(1, sum(1 for r in data if r[0] == "v"))),)
        else:
            elements = ((0, size),)
        base = uc_reg(insn.reg_name(mem.mem.base)) if mem.mem.base else None
        index = None
        index_w = False
        if mem.mem.index:
            name = insn.reg_name(mem.mem.index)
            index, index_w = uc_reg(name), name.startswith("w")
        shift = mem.shift.value if mem.shift.type == ARM64_SFT_LSL else 0
        return MemAccess(text, base, index, index_w, mem.ext, shift, mem.mem.disp, elements, write, unpriv)

    def at(self, pc: int, read_code) -> MemAccess | None:
        """The access of the instruction at *pc*, decoded once; *read_code(pc)* gives its
        four bytes."""
        try:
            return self.cache[pc]
        except KeyError:
            acc = self.decode(read_code(pc), pc)
            self.cache[pc] = acc
            return acc
