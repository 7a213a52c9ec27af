"""The relocations the arm64 kernel's module loader applies, by era: ``apply_relocate_add``
of arch/arm64/kernel/module.c (SHT_RELA only), with its helpers ``reloc_data``,
``reloc_insn_movw``, ``reloc_insn_imm`` and ``reloc_insn_adrp``.

Every function computes what the ELF for the Arm 64-bit Architecture (AAELF64, "Static
AArch64 relocations") defines from ``S`` (the symbol's address), ``A`` (the addend) and
``P`` (the place): its docstring gives the formula. ``Page(x)`` is ``x & ~0xfff``. The
kernel's three operations (``do_reloc``) are ``ABS`` = S + A, ``PREL`` = S + A - P and
``PAGE`` = Page(S + A) - Page(P), taken as a signed 64-bit value. The checks are the
kernel's, which are not always the psABI's (see :func:`data` and :func:`movw`); a type the
kernel does not check (``overflow_check = false``: the ``_NC`` ones, ABS64, PREL64,
MOVW_*_G3) is written truncated, as the kernel writes it. A value that does not fit raises
:class:`RelocOverflow` with ``val`` = S + A, what the kernel prints.

A branch (CALL26, JUMP26) out of range is the one relocation the kernel can repair: where
the era has module PLTs it emits a veneer in the module's ``.plt`` (module-plts.c) and
branches there; the loader asks the table's ``veneer`` for it (:mod:`.module_plts`).
"""

from __future__ import annotations

from collections.abc import Callable

from mmemu.module.reloc import RelocOverflow, RelocTable, RelocType

from .insn import IMM_12, IMM_14, IMM_16, IMM_19, IMM_26, IMM_ADR, encode_immediate

M64 = (1 << 64) - 1

# include/uapi/linux/elf.h (the AAELF64 numbers; R_ARM_NONE is 0)
R_ARM_NONE, R_AARCH64_NONE = 0, 256
R_AARCH64_ABS64, R_AARCH64_ABS32, R_AARCH64_ABS16 = 257, 258, 259
R_AARCH64_PREL64, R_AARCH64_PREL32, R_AARCH64_PREL16 = 260, 261, 262
R_AARCH64_MOVW_UABS_G0, R_AARCH64_MOVW_UABS_G0_NC = 263, 264
R_AARCH64_MOVW_UABS_G1, R_AARCH64_MOVW_UABS_G1_NC = 265, 266
R_AARCH64_MOVW_UABS_G2, R_AARCH64_MOVW_UABS_G2_NC = 267, 268
R_AARCH64_MOVW_UABS_G3 = 269
R_AARCH64_MOVW_SABS_G0, R_AARCH64_MOVW_SABS_G1, R_AARCH64_MOVW_SABS_G2 = 270, 271, 272
R_AARCH64_LD_PREL_LO19, R_AARCH64_ADR_PREL_LO21 = 273, 274
R_AARCH64_ADR_PREL_PG_HI21, R_AARCH64_ADR_PREL_PG_HI21_NC = 275, 276
R_AARCH64_ADD_ABS_LO12_NC, R_AARCH64_LDST8_ABS_LO12_NC = 277, 278
R_AARCH64_TSTBR14, R_AARCH64_CONDBR19 = 279, 280
R_AARCH64_JUMP26, R_AARCH64_CALL26 = 282, 283
R_AARCH64_LDST16_ABS_LO12_NC, R_AARCH64_LDST32_ABS_LO12_NC = 284, 285
R_AARCH64_LDST64_ABS_LO12_NC = 286
R_AARCH64_MOVW_PREL_G0, R_AARCH64_MOVW_PREL_G0_NC = 287, 288
R_AARCH64_MOVW_PREL_G1, R_AARCH64_MOVW_PREL_G1_NC = 289, 290
R_AARCH64_MOVW_PREL_G2, R_AARCH64_MOVW_PREL_G2_NC = 291, 292
R_AARCH64_MOVW_PREL_G3 = 293
R_AARCH64_LDST128_ABS_LO12_NC = 299

ABS, PREL, PAGE = "ABS", "PREL", "PAGE"


def _s64(x: int) -> int:
    x &= M64
    return x - (1 << 64) if x >> 63 else x


def do_reloc(op: str, S: int, A: int, P: int) -> int:
    """``do_reloc``: S + A (ABS), S + A - P (PREL), Page(S + A) - Page(P) (PAGE), as s64."""
    val = S + A
    if op == ABS:
        return _s64(val)
    if op == PREL:
        return _s64(val - P)
    return _s64((val & ~0xFFF) - (P & ~0xFFF))


def _named(fn: Callable, name: str, doc: str) -> Callable:
    fn.__name__ = fn.__qualname__ = name.lower()
    fn.__doc__ = doc
    return fn


# -- the null relocations ------------------------------------------------------------------


def r_none(S: int, A: int, P: int) -> tuple[int, int]:
    """R_ARM_NONE, R_AARCH64_NONE: nothing is written."""
    return 0, 0


# -- data: reloc_data ----------------------------------------------------------------------


def data(name: str, op: str, bits: int, checked: bool, split: bool, formula: str) -> Callable:
    """``reloc_data(op, place, val, bits)``: the value's low *bits* bits at the place. The
    range checked (*checked*: not ABS64/PREL64) is the psABI's [-2^(n-1), 2^n) for both
    ABS and PREL until 5.1 (``(u64)(sval + 1) > 2`` on the bits above n-1 in 3.7, ``sval <
    Sxx_MIN || sval > Uxx_MAX`` later); from 5.2 (*split*; "arm64/module: deal with
    ambiguity in PRELxx relocation ranges" and "revert to unsigned interpretation of
    ABS16/32 relocations", both in 5.2-rc) ABS is [0, Uxx_MAX] and PREL [Sxx_MIN, Sxx_MAX]."""
    width, mask = bits // 8, (1 << bits) - 1

    def apply(S: int, A: int, P: int) -> tuple[int, int]:
        sval = do_reloc(op, S, A, P)
        if checked:
            if not split:
                lo, hi = -(1 << (bits - 1)), (1 << bits) - 1
            elif op == ABS:
                lo, hi = 0, (1 << bits) - 1
            else:
                lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
            if not lo <= sval <= hi:
                raise RelocOverflow((S + A) & M64)
        return width, sval & mask
    return _named(apply, name, f"{name}: {formula} (reloc_data {op}, {bits} bits)")


# -- MOVZ/MOVN/MOVK: reloc_insn_movw -----------------------------------------------------------

MOVNZ, MOVKZ = "MOVNZ", "MOVKZ"


def movw(name: str, op: str, lsb: int, kind: str, checked: bool, era: str, formula: str) -> Callable:
    """``reloc_insn_movw(op, place, val, lsb, kind)``: bits [lsb+15:lsb] of the value into
    the imm16 field. A signed one (*kind* MOVNZ: SABS, PREL_Gn) sets the opcode MOVZ for a
    value >= 0 and MOVN (the field inverted) for a negative one. The era (*era*):

    - ``movk`` (3.7-3.12, module.c's own encoder): the sign is taken from the 16-bit field,
      which is never negative, so a signed one is always MOVZ; the bits above the field must
      be 0 (unsigned) or 0 or all ones (signed, ``sval++; limit++``);
    - ``movk16`` (3.13-4.5: ``#define AARCH64_INSN_IMM_MOVK AARCH64_INSN_IMM_16`` when the
      encoder moved to insn.c): the same, but every check is the unsigned one;
    - ``movkz`` (4.6+, "fix relocation of movz instruction with negative immediate"): the
      sign of the whole value chooses MOVZ/MOVN, and the (inverted) ``sval >> lsb`` must be
      at most U16_MAX."""

    def apply(S: int, A: int, P: int, old: int) -> tuple[int, int]:
        sval = do_reloc(op, S, A, P)
        insn = old
        if era == "movkz":
            imm = (sval >> lsb) & M64
            if kind == MOVNZ:
                insn &= ~(3 << 29)
                if sval >= 0:
                    insn |= 2 << 29
                else:
                    imm = ~imm & M64
            insn = encode_immediate(IMM_16, insn, imm)
            if checked and imm > 0xFFFF:
                raise RelocOverflow((S + A) & M64)
            return 4, insn
        sval >>= lsb
        imm = sval & 0xFFFF
        signed = False
        if kind == MOVNZ:
            insn = insn & ~(3 << 29) | 2 << 29  # (s64)imm >= 0 always: MOVZ
            signed = era == "movk"  # INSN_IMM_MOVK is its own type only before 3.13
        insn = encode_immediate(IMM_16, insn, imm)
        upper = sval >> 16
        if checked and ((upper + 1) & M64 > 1 if signed else upper & M64 > 0):
            raise RelocOverflow((S + A) & M64)
        return 4, insn
    return _named(apply, name, f"{name}: {formula} (reloc_insn_movw {op}, lsb {lsb}, {kind})")


# -- other immediates: reloc_insn_imm ----------------------------------------------------------


def insn_imm(op: str, S: int, A: int, P: int, old: int, lsb: int, length: int, kind) -> tuple[int, bool]:
    """``reloc_insn_imm``: bits [lsb+len-1:lsb] of the value into the field of *kind*;
    (new word, overflowed): the bits above, sign included, must all equal the sign."""
    sval = do_reloc(op, S, A, P) >> lsb
    imm_mask = ((1 << (lsb + length)) - 1) >> lsb
    insn = encode_immediate(kind, old, sval & imm_mask)
    upper = (sval & ~(imm_mask >> 1)) >> (length - 1)
    return insn, (upper + 1) & M64 >= 2


def imm(name: str, op: str, lsb: int, length: int, kind, checked: bool, formula: str) -> Callable:
    """A relocation made by ``reloc_insn_imm(op, place, val, lsb, len, kind)``."""

    def apply(S: int, A: int, P: int, old: int) -> tuple[int, int]:
        insn, ovf = insn_imm(op, S, A, P, old, lsb, length, kind)
        if checked and ovf:
            raise RelocOverflow((S + A) & M64)
        return 4, insn
    return _named(apply, name, f"{name}: {formula} (reloc_insn_imm {op}, lsb {lsb}, {length} bits)")


class AdrpVeneer(RelocOverflow):
    """Raised by the erratum 843419 ADRP relocation when neither ADRP nor an ADR reaches:
    the loader asks the table's veneer for a branch to a veneer (``emit_veneer_for_adrp``)."""


def adrp_843419(name: str, checked: bool) -> Callable:
    """``reloc_insn_adrp`` on a CPU with Cortex-A53 erratum 843419 (4.17+, only when
    ``cpus_have_const_cap(ARM64_WORKAROUND_843419)``): an ADRP in the last two words of a
    page (``is_forbidden_offset_for_adrp``: P & 0xfff >= 0xff8) is rewritten as ``ADR xN,
    Page(S + A)`` (bit 31 cleared) when that is within +/-1 MiB, else as a branch to a veneer
    (``AdrpVeneer``); any other ADRP is the plain PAGE relocation."""

    def apply(S: int, A: int, P: int, old: int) -> tuple[int, int]:
        if (P & 0xFFF) < 0xFF8:
            insn, ovf = insn_imm(PAGE, S, A, P, old, 12, 21, IMM_ADR)
            if checked and ovf:
                raise RelocOverflow((S + A) & M64)
            return 4, insn
        insn, ovf = insn_imm(PREL, (S + A) & ~0xFFF, 0, P, old, 0, 21, IMM_ADR)
        if not ovf:
            return 4, insn & ~(1 << 31)
        raise AdrpVeneer((S + A) & M64)
    return _named(apply, name, f"{name}: Page(S+A) - Page(P), or ADR to Page(S+A) at a forbidden offset "
                               "(reloc_insn_adrp, erratum 843419)")


# -- the table of an era -----------------------------------------------------------------------


def arm64_relocations(era, cpu_843419: bool = False, veneer=None) -> RelocTable:
    """``apply_relocate_add`` of *era* (:data:`mmemu_arm64.eras.MODULES`). *cpu_843419*:
    the CPU has erratum 843419 (the emulated Cortex-A72 has not). *veneer*: the era's PLT
    emitter (None: a branch out of range is an overflow)."""
    split = era.module_reloc_data == "split"
    mw = era.module_reloc_movw
    types: dict[int, RelocType] = {}

    def add(number: int, name: str, fn: Callable, width: int = 4, insn: bool = False, far: bool = False):
        types[number] = RelocType(number, name, fn, width, insn=insn, veneer=far)

    add(R_ARM_NONE, "R_ARM_NONE", r_none, 0)
    add(R_AARCH64_NONE, "R_AARCH64_NONE", r_none, 0)
    for number, name, op, bits, checked, formula in (
            (R_AARCH64_ABS64, "R_AARCH64_ABS64", ABS, 64, False, "S + A"),
            (R_AARCH64_ABS32, "R_AARCH64_ABS32", ABS, 32, True, "S + A"),
            (R_AARCH64_ABS16, "R_AARCH64_ABS16", ABS, 16, True, "S + A"),
            (R_AARCH64_PREL64, "R_AARCH64_PREL64", PREL, 64, False, "S + A - P"),
            (R_AARCH64_PREL32, "R_AARCH64_PREL32", PREL, 32, True, "S + A - P"),
            (R_AARCH64_PREL16, "R_AARCH64_PREL16", PREL, 16, True, "S + A - P")):
        add(number, name, data(name, op, bits, checked, split, formula), bits // 8)
    for number, name, op, lsb, kind, checked in (
            (R_AARCH64_MOVW_UABS_G0_NC, "R_AARCH64_MOVW_UABS_G0_NC", ABS, 0, MOVKZ, False),
            (R_AARCH64_MOVW_UABS_G0, "R_AARCH64_MOVW_UABS_G0", ABS, 0, MOVKZ, True),
            (R_AARCH64_MOVW_UABS_G1_NC, "R_AARCH64_MOVW_UABS_G1_NC", ABS, 16, MOVKZ, False),
            (R_AARCH64_MOVW_UABS_G1, "R_AARCH64_MOVW_UABS_G1", ABS, 16, MOVKZ, True),
            (R_AARCH64_MOVW_UABS_G2_NC, "R_AARCH64_MOVW_UABS_G2_NC", ABS, 32, MOVKZ, False),
            (R_AARCH64_MOVW_UABS_G2, "R_AARCH64_MOVW_UABS_G2", ABS, 32, MOVKZ, True),
            (R_AARCH64_MOVW_UABS_G3, "R_AARCH64_MOVW_UABS_G3", ABS, 48, MOVKZ, False),
            (R_AARCH64_MOVW_SABS_G0, "R_AARCH64_MOVW_SABS_G0", ABS, 0, MOVNZ, True),
            (R_AARCH64_MOVW_SABS_G1, "R_AARCH64_MOVW_SABS_G1", ABS, 16, MOVNZ, True),
            (R_AARCH64_MOVW_SABS_G2, "R_AARCH64_MOVW_SABS_G2", ABS, 32, MOVNZ, True),
            (R_AARCH64_MOVW_PREL_G0_NC, "R_AARCH64_MOVW_PREL_G0_NC", PREL, 0, MOVKZ, False),
            (R_AARCH64_MOVW_PREL_G0, "R_AARCH64_MOVW_PREL_G0", PREL, 0, MOVNZ, True),
            (R_AARCH64_MOVW_PREL_G1_NC, "R_AARCH64_MOVW_PREL_G1_NC", PREL, 16, MOVKZ, False),
            (R_AARCH64_MOVW_PREL_G1, "R_AARCH64_MOVW_PREL_G1", PREL, 16, MOVNZ, True),
            (R_AARCH64_MOVW_PREL_G2_NC, "R_AARCH64_MOVW_PREL_G2_NC", PREL, 32, MOVKZ, False),
            (R_AARCH64_MOVW_PREL_G2, "R_AARCH64_MOVW_PREL_G2", PREL, 32, MOVNZ, True),
            (R_AARCH64_MOVW_PREL_G3, "R_AARCH64_MOVW_PREL_G3", PREL, 48, MOVNZ, False)):
        formula = ("S + A" if op == ABS else "S + A - P") + f", bits [{lsb + 15}:{lsb}]"
        add(number, name, movw(name, op, lsb, kind, checked, mw, formula), insn=True)
    plain_adrp = (R_AARCH64_ADR_PREL_PG_HI21_NC, R_AARCH64_ADR_PREL_PG_HI21)
    for number, name, op, lsb, length, kind, checked, formula in (
            (R_AARCH64_LD_PREL_LO19, "R_AARCH64_LD_PREL_LO19", PREL, 2, 19, IMM_19, True, "S + A - P, bits [20:2]"),
            (R_AARCH64_ADR_PREL_LO21, "R_AARCH64_ADR_PREL_LO21", PREL, 0, 21, IMM_ADR, True, "S + A - P, bits [20:0]"),
            (R_AARCH64_ADR_PREL_PG_HI21_NC, "R_AARCH64_ADR_PREL_PG_HI21_NC", PAGE, 12, 21, IMM_ADR, False,
             "Page(S + A) - Page(P), bits [32:12]"),
            (R_AARCH64_ADR_PREL_PG_HI21, "R_AARCH64_ADR_PREL_PG_HI21", PAGE, 12, 21, IMM_ADR, True,
             "Page(S + A) - Page(P), bits [32:12]"),
            (R_AARCH64_ADD_ABS_LO12_NC, "R_AARCH64_ADD_ABS_LO12_NC", ABS, 0, 12, IMM_12, False, "S + A, bits [11:0]"),
            (R_AARCH64_LDST8_ABS_LO12_NC, "R_AARCH64_LDST8_ABS_LO12_NC", ABS, 0, 12, IMM_12, False,
             "S + A, bits [11:0]"),
            (R_AARCH64_LDST16_ABS_LO12_NC, "R_AARCH64_LDST16_ABS_LO12_NC", ABS, 1, 11, IMM_12, False,
             "S + A, bits [11:1]"),
            (R_AARCH64_LDST32_ABS_LO12_NC, "R_AARCH64_LDST32_ABS_LO12_NC", ABS, 2, 10, IMM_12, False,
             "S + A, bits [11:2]"),
            (R_AARCH64_LDST64_ABS_LO12_NC, "R_AARCH64_LDST64_ABS_LO12_NC", ABS, 3, 9, IMM_12, False,
             "S + A, bits [11:3]"),
            (R_AARCH64_LDST128_ABS_LO12_NC, "R_AARCH64_LDST128_ABS_LO12_NC", ABS, 4, 8, IMM_12, False,
             "S + A, bits [11:4]"),
            (R_AARCH64_TSTBR14, "R_AARCH64_TSTBR14", PREL, 2, 14, IMM_14, True, "S + A - P, bits [15:2]"),
            (R_AARCH64_CONDBR19, "R_AARCH64_CONDBR19", PREL, 2, 19, IMM_19, True, "S + A - P, bits [20:2]"),
            (R_AARCH64_JUMP26, "R_AARCH64_JUMP26", PREL, 2, 26, IMM_26, True, "S + A - P, bits [27:2]"),
            (R_AARCH64_CALL26, "R_AARCH64_CALL26", PREL, 2, 26, IMM_26, True, "S + A - P, bits [27:2]")):
        if number in plain_adrp:
            if era.module_adrp == "refused":
                continue  # #ifndef CONFIG_ARM64_ERRATUM_843419: the kernel refuses them
            if era.module_adrp == "843419" and cpu_843419:
                add(number, name, adrp_843419(name, checked), insn=True, far=True)
                continue
        far = veneer is not None and number in (R_AARCH64_JUMP26, R_AARCH64_CALL26)
        add(number, name, imm(name, op, lsb, length, kind, checked, formula), insn=True, far=far)
    pre = era.module_msg_prefix
    return RelocTable(types, rela=True, unknown=pre + "module {module}: unsupported RELA relocation: {type}",
                      overflow=pre + "module {module}: overflow in relocation type {type} val {value:x}",
                      veneer=veneer)
