"""The A64 instruction fields the module loader rewrites, and the few instructions it
generates (a PLT entry, a branch): arch/arm64/kernel/insn.c (arch/arm64/lib/insn.c from
5.x), ``aarch64_insn_encode_immediate``, ``aarch64_insn_gen_branch_imm``,
``aarch64_insn_gen_adr``, ``aarch64_insn_gen_add_sub_imm``, ``aarch64_insn_gen_branch_reg``.
Encodings: Arm ARM (DDI 0487) C4.1, "A64 instruction set encoding"."""

from __future__ import annotations

M32 = 0xFFFFFFFF

# enum aarch64_insn_imm_type: (mask, shift) of the field in the instruction word
IMM_26 = (0x3FFFFFF, 0)   # B, BL: imm26
IMM_19 = (0x7FFFF, 5)     # B.cond, CBZ, LDR (literal): imm19
IMM_16 = (0xFFFF, 5)      # MOVZ, MOVN, MOVK: imm16
IMM_14 = (0x3FFF, 5)      # TBZ, TBNZ: imm14
IMM_12 = (0xFFF, 10)      # ADD (immediate), LDR/STR (unsigned offset): imm12
IMM_ADR = "adr"           # ADR, ADRP: immlo (bits 30:29), immhi (bits 23:5)


def encode_immediate(kind, insn: int, imm: int) -> int:
    """``aarch64_insn_encode_immediate``: *insn* with the immediate field of *kind*
    replaced by the low bits of *imm* (``insn &= ~(mask << shift); insn |= (imm & mask)
    << shift``; ADR's 21 bits split as immlo = imm[1:0] at 29, immhi = imm[20:2] at 5)."""
    if kind == IMM_ADR:
        immlo, immhi = imm & 0x3, (imm >> 2) & 0x7FFFF
        return (insn & ~(0x3 << 29 | 0x7FFFF << 5) | immlo << 29 | immhi << 5) & M32
    mask, shift = kind
    return (insn & ~(mask << shift) | (imm & mask) << shift) & M32


def decode_adrp_offset(insn: int) -> int:
    """``aarch64_insn_adrp_get_offset``: the byte offset (a multiple of 4 KiB, signed) an
    ADRP instruction adds to its page."""
    imm = ((insn >> 5) & 0x7FFFF) << 2 | (insn >> 29) & 0x3
    if imm & (1 << 20):
        imm -= 1 << 21
    return imm << 12


def gen_branch(pc: int, target: int) -> int:
    """``aarch64_insn_gen_branch_imm(pc, target, AARCH64_INSN_BRANCH_NOLINK)``: ``B target``
    (0x14000000 | imm26), the offset within +/-128 MiB."""
    off = (target - pc) & ((1 << 64) - 1)
    return 0x14000000 | (off >> 2) & 0x3FFFFFF


def gen_adrp(pc: int, target: int, reg: int) -> int:
    """``aarch64_insn_gen_adr(pc, target, reg, AARCH64_INSN_ADR_TYPE_ADRP)``: ``ADRP xN,
    target`` (0x90000000 | Rd), the page offset (target & ~0xfff) - (pc & ~0xfff)."""
    off = ((target & ~0xFFF) - (pc & ~0xFFF)) >> 12
    return encode_immediate(IMM_ADR, 0x90000000 | reg, off)


def gen_add_imm(rd: int, rn: int, imm12: int) -> int:
    """``aarch64_insn_gen_add_sub_imm(rd, rn, imm12, 64BIT, ADD)``: ``ADD xd, xn, #imm12``
    (0x91000000 | imm12 << 10 | rn << 5 | rd)."""
    return 0x91000000 | (imm12 & 0xFFF) << 10 | rn << 5 | rd


def gen_br(reg: int) -> int:
    """``aarch64_insn_gen_branch_reg(reg, AARCH64_INSN_BRANCH_NOLINK)``: ``BR xN``."""
    return 0xD61F0000 | reg << 5
