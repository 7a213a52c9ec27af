"""riscv64's relocation functions (mmemu_riscv64.relocs) on hand-assembled instruction words:
each rewritten word is decoded back with capstone (the referee), which must find the offset
or value the psABI formula gives in the immediate and every other field untouched.

The words (riscv-spec encodings; capstone prints each as written beside it) have zero
immediates, so that only the relocation puts bits there.
"""

from __future__ import annotations

import pytest
from capstone import CS_ARCH_RISCV, CS_MODE_RISCV64, CS_MODE_RISCVC, Cs
from capstone.riscv import RISCV_OP_IMM, RISCV_OP_MEM

from mmemu.layout import MachineSpec
from mmemu.module.reloc import RelocError
from mmemu_riscv64 import relocs as R

CS = Cs(CS_ARCH_RISCV, CS_MODE_RISCV64 | CS_MODE_RISCVC)
CS.detail = True

BEQ_A0_A1 = 0x00B50063  # beq a0, a1, 0
JAL_RA = 0x000000EF  # jal ra, 0
C_BEQZ_A0 = 0xC101  # c.beqz a0, 0
C_J = 0xA001  # c.j 0
AUIPC_A0 = 0x00000517  # auipc a0, 0
ADDI_A0_A0 = 0x00150513  # addi a0, a0, 1 (not 0: capstone would print its alias mv; the 1 is cleared)
SD_A1_A0 = 0x00B53023  # sd a1, 0(a0)
LUI_A0 = 0x00000537  # lui a0, 0
CALL_RA = 0x000080E7_00000097  # auipc ra, 0 ; jalr ra, 0(ra)

P = 0xFFFFFFFF01420010  # a place in the module area of a 6.6 Sv39 kernel


def decode(word: int, width: int):
    """(mnemonic, registers, immediate) of the one instruction in *word*."""
    ins = next(CS.disasm(word.to_bytes(width, "little"), 0))
    assert ins.size == width, f"{word:#x} decodes as {ins.size} bytes"
    imm = 0
    regs = []
    for op in ins.operands:
        if op.type == RISCV_OP_IMM:
            imm = op.imm
        elif op.type == RISCV_OP_MEM:
            imm = op.mem.disp
            regs.append(op.mem.base)
        else:
            regs.append(op.reg)
    return ins.mnemonic, regs, imm


def same_fields(old: int, new: int, width: int):
    """The mnemonic and registers of *new* are those of *old*."""
    m0, r0, _ = decode(old, width)
    m1, r1, imm = decode(new, width)
    assert (m1, r1) == (m0, r0), f"{old:#x} -> {new:#x}: {m0} {r0} became {m1} {r1}"
    return imm


@pytest.mark.parametrize("offset", [0x7FE, -0x800, 0x10, -0x1000, 0xFFE])
def test_branch_puts_s_plus_a_minus_p_in_the_b_immediate(offset):
    width, new = R.r_riscv_branch(P + offset - 8, 8, P, BEQ_A0_A1)
    assert width == 4 and same_fields(BEQ_A0_A1, new, 4) == offset


@pytest.mark.parametrize("offset", [0x7FFFE, -0x100000, 0x802, -2])
def test_jal_puts_s_plus_a_minus_p_in_the_j_immediate(offset):
    width, new = R.r_riscv_jal(P + offset, 0, P, JAL_RA)
    assert width == 4 and decode(new, 4)[2] == offset
    assert new & 0xFFF == JAL_RA & 0xFFF  # rd = ra kept


@pytest.mark.parametrize("offset", [0xFE, -0x100, 0x2, -0x42])
def test_rvc_branch(offset):
    width, new = R.r_riscv_rvc_branch(P + offset, 0, P, C_BEQZ_A0)
    assert width == 2 and same_fields(C_BEQZ_A0, new, 2) == offset


@pytest.mark.parametrize("offset", [0x7FE, -0x800, 0x2AA, -0x556])
def test_rvc_jump(offset):
    width, new = R.r_riscv_rvc_jump(P + offset, 0, P, C_J)
    assert width == 2 and same_fields(C_J, new, 2) == offset


@pytest.mark.parametrize("offset", [0x12345678, -0x12345678, 0x7FF, 0x800, -0x801, 0x7FFFF7FF])
def test_pcrel_hi20_and_its_lo12_reach_the_target(offset):
    """auipc's hi20 and the addi's (or sd's) lo12, each decoded, add up to S + A - P: the
    lo12 is the one the kernel derives from the HI20 entry (``resolve``)."""
    hi_fn = R._pcrel_hi20(R.fits_auipc_jalr)
    width, auipc = hi_fn(P + offset, 0, P, AUIPC_A0)
    hi = same_fields(AUIPC_A0, auipc, 4)
    hi = hi - (1 << 20) if hi >> 19 else hi
    lo12 = offset - R._hi20(offset)
    _, addi = R.r_riscv_pcrel_lo12_i(lo12, 0, P + 4, ADDI_A0_A0)
    _, sd = R.r_riscv_pcrel_lo12_s(lo12, 0, P + 4, SD_A1_A0)
    assert (hi << 12) + same_fields(ADDI_A0_A0, addi, 4) == offset
    assert (hi << 12) + same_fields(SD_A1_A0, sd, 4) == offset


def test_hi20_lo12_absolute():
    value = 0xFFFFFFFF81234FFF  # a kernel-image address: sign-extended 32-bit
    _, lui = R.r_riscv_hi20(value, 0, P, LUI_A0)
    hi = same_fields(LUI_A0, lui, 4)
    _, addi = R.r_riscv_lo12_i(value, 0, P, ADDI_A0_A0)
    _, sd = R.r_riscv_lo12_s(value, 0, P, SD_A1_A0)
    hi = hi - (1 << 20) if hi >> 19 else hi
    assert ((hi << 12) + decode(addi, 4)[2]) & R.M64 == value
    assert ((hi << 12) + decode(sd, 4)[2]) & R.M64 == value


@pytest.mark.parametrize("offset", [0x7FFFF7FF, -0x80000800, 0x1000, -4])
def test_call_pair_reaches_the_target(offset):
    width, new = R._call(R.fits_auipc_jalr)(P + offset, 0, P, CALL_RA)
    assert width == 8
    hi = same_fields(CALL_RA & R.M32, new & R.M32, 4)
    hi = hi - (1 << 20) if hi >> 19 else hi
    jalr = new >> 32
    lo = jalr >> 20
    lo = lo - (1 << 12) if lo >> 11 else lo
    assert jalr & 0xFFFFF == CALL_RA >> 32 & 0xFFFFF  # rd, rs1, funct3, opcode kept
    assert (hi << 12) + lo == offset


def test_the_two_range_checks_of_the_eras():
    """4.15-5.9 refuse an offset that is no s32; 5.10 on, what auipc+jalr cannot reach:
    0x7ffff800 is an s32 that the pair cannot reach (the lo12 would be -0x800 of a hi20 that
    overflows), -0x80000800 is no s32 that it can."""
    call_s32, call_auipc = R._call(R.fits_s32), R._call(R.fits_auipc_jalr)
    call_s32(P + 0x7FFFF800, 0, P, CALL_RA)
    with pytest.raises(RelocError) as err:
        call_auipc(P + 0x7FFFF800, 0, P, CALL_RA)
    assert err.value.message == ("{module}: target ffffffff8141f810 can not be addressed by the 32-bit offset "
                                 "from PC = ffffffff01420010")
    call_auipc(P - 0x80000800, 0, P, CALL_RA)
    with pytest.raises(RelocError):
        call_s32(P - 0x80000800, 0, P, CALL_RA)


def test_data_relocations():
    assert R.r_riscv_64(0xFFFFFFFF01420000, 0x10, P) == (8, 0xFFFFFFFF01420010)
    assert R.r_riscv_32(0x1000, 4, P) == (4, 0x1004)
    with pytest.raises(RelocError, match=r"^\{module\}: value ffffffff01420000 out of range for 32-bit field$"):
        R.r_riscv_32(0xFFFFFFFF01420000, 0, P)
    assert R.r_riscv_add32(0x10, 2, P, 0xFFFFFFFF) == (4, 0x11)
    assert R.r_riscv_sub16(0x10, 2, P, 0x5) == (2, 0xFFF3)
    assert R.r_riscv_add64(1, 0, P, R.M64) == (8, 0)
    assert R.r_riscv_sub64(0x20, 0, P, 0x30) == (8, 0x10)
    assert R.r_riscv_relax(1, 2, P) == (0, 0)
    with pytest.raises(RelocError, match=r"The unexpected relocation type 'R_RISCV_ALIGN' from PC = ffffffff01420010"):
        R.r_riscv_align(0, 0, P)


def _spec(era: str) -> MachineSpec:
    return MachineSpec.make("riscv64", kernel=era)


def test_every_function_names_its_type_and_formula():
    for t in R.riscv64_relocations(_spec("6.6")).types.values():
        assert t.apply.__doc__ and t.name in t.apply.__doc__, t.name


@pytest.mark.parametrize("era,types", [
    ("4.15", {"R_RISCV_64", "R_RISCV_BRANCH", "R_RISCV_JAL", "R_RISCV_PCREL_HI20", "R_RISCV_PCREL_LO12_I",
              "R_RISCV_PCREL_LO12_S", "R_RISCV_CALL_PLT", "R_RISCV_RELAX"}),
    ("4.19", "+R_RISCV_32 R_RISCV_RVC_BRANCH R_RISCV_RVC_JUMP R_RISCV_HI20 R_RISCV_LO12_I R_RISCV_LO12_S "
             "R_RISCV_GOT_HI20 R_RISCV_CALL R_RISCV_ALIGN R_RISCV_ADD32 R_RISCV_SUB32"),
    ("5.10", "+R_RISCV_ADD64 R_RISCV_SUB64"),
    ("6.6", "+R_RISCV_ADD16 R_RISCV_SUB16"),
])
def test_the_set_of_types_of_each_era(era, types):
    """Exactly what the era's apply_relocate_add has a handler for (relocs.py's sources)."""
    got = {t.name for t in R.riscv64_relocations(_spec(era)).types.values()}
    if isinstance(types, str):
        prev = {"4.19": "4.15", "5.10": "4.19", "6.6": "5.10"}[era]
        base = {t.name for t in R.riscv64_relocations(_spec(prev)).types.values()}
        types = base | set(types[1:].split())
    assert got == types


def test_6_7_adds_the_remaining_types_and_refuses_dynamic_and_tls_ones():
    got = {t.name for t in R.riscv64_relocations(_spec("6.7")).types.values()}
    six = {t.name for t in R.riscv64_relocations(_spec("6.6")).types.values()}
    assert got - six == ({"R_RISCV_ADD8", "R_RISCV_SUB8", "R_RISCV_SUB6", "R_RISCV_SET6", "R_RISCV_SET8",
                          "R_RISCV_SET16", "R_RISCV_SET32", "R_RISCV_32_PCREL", "R_RISCV_PLT32",
                          "R_RISCV_SET_ULEB128", "R_RISCV_SUB_ULEB128"} | set(R.DYNAMIC.values()) | set(R.TLS.values()))
    table = R.riscv64_relocations(_spec("6.7"))
    with pytest.raises(RelocError, match=r"^\{module\}: Dynamic linking not supported in kernel modules PC = "
                                         r"ffffffff01420010$"):
        table.types[3].apply(0, 0, P)
    with pytest.raises(RelocError, match=r"^\{module\}: Thread local storage not supported in kernel modules PC = "):
        table.types[29].apply(0, 0, P)
    assert table.types[R.R_RISCV_32_PCREL].apply(P - 8, 0, P) == (4, 0xFFFFFFF8)


class _Section:
    """What finish() reads of a relocation section: the accumulated (type, S + A) per place."""

    def __init__(self, accumulated):
        self.accumulated = accumulated


def test_6_7_sums_add_sub_set_per_place_and_writes_once():
    """process_accumulated_relocations: a buffer from 0 per place, each entry's handler on it,
    the last one's accumulate_handler writes (the place's old contents are not added, unlike
    4.18-6.6's ``*location += v``)."""
    sec = _Section({0: [(R.R_RISCV_ADD32, 0x1000), (R.R_RISCV_SUB32, 0x0F00)],
                    8: [(R.R_RISCV_SET6, 0x3F), (R.R_RISCV_SUB6, 0x01)],
                    9: [(R.R_RISCV_SET_ULEB128, 300)],
                    12: [(R.R_RISCV_ADD64, 5), (R.R_RISCV_SUB64, 7)]})
    contents = bytearray(b"\xff" * 20)
    writes = R.finish(sec, contents)
    assert writes[0] == (0x100).to_bytes(4, "little")
    assert writes[8] == bytes([0xC0 | 0x3E])  # the byte's top two bits kept
    assert writes[9] == bytes([0xAC, 0x02])  # 300 in ULEB128
    assert writes[12] == ((1 << 64) - 2).to_bytes(8, "little")
    with pytest.raises(RelocError, match=r"^\{module\}: value 256 out of range for 8-bit relocation\.$"):
        R.finish(_Section({0: [(R.R_RISCV_SET8, 0xFF), (R.R_RISCV_ADD16, 1), (R.R_RISCV_ADD8, 0)]}), contents)
    # a negative sum passes the signed check and is truncated
    assert R.finish(_Section({0: [(R.R_RISCV_SUB16, 1)]}), contents)[0] == b"\xff\xff"
