"""The module loader on arm64: apply_relocate_add of each era and what it writes, checked
by referees outside mmemu (capstone decodes every rewritten instruction, binutils' readelf
lists the relocations, the AAELF64 formulas are written out here again), the kernel's
messages for what it refuses, module PLTs, the W+X audit, and the command line.
(The examples' init and exit on the CPU are in test_module.py, parametrised with arm64.)
"""

from __future__ import annotations

import json
import struct

import capstone
import pytest

from mmemu.arch import KW, KX
from mmemu.errors import ModuleError, Oops
from mmemu.module.reloc import RelocOverflow
from mmemu.testing import kernel_state

from test_module import obj, readelf_relocations, symbol_address

ERAS = ("3.10", "4.19", "5.10", "6.6")
MODULES = ("hello", "vbuf", "highpage", "kmap_nested", "rodata_oops")
M64 = (1 << 64) - 1

_md = capstone.Cs(capstone.CS_ARCH_ARM64, capstone.CS_MODE_ARM)
_md.detail = True


def decode(word: int, pc: int):
    """capstone's reading of one instruction word at *pc*."""
    insns = list(_md.disasm(struct.pack("<I", word), pc))
    assert insns, f"{word:#010x} does not decode"
    return insns[0]


def imm_operands(i) -> list[int]:
    return [o.imm & M64 for o in i.operands if o.type == capstone.arm64.ARM64_OP_IMM]


def mem_disp(i) -> int:
    return next(o.mem.disp for o in i.operands if o.type == capstone.arm64.ARM64_OP_MEM)


def table(era: str):
    from mmemu_arm64.eras import MODULES as ERA
    from mmemu_arm64.relocs import arm64_relocations

    return arm64_relocations(ERA(era))


def apply(era: str, number: int, S: int, A: int, P: int, old: int = 0) -> int:
    kind = table(era).types[number]
    width, value = kind.apply(S, A, P, old) if kind.insn else kind.apply(S, A, P)
    return value


P = 0xFFFF800079806010           # a place in the module area
S = 0xFFFF800080001234           # a kernel function, 40 MiB above it

# (type, instruction at the place, what capstone must read back from it)
BRANCHES = [
    (283, 0x94000000, "bl", lambda i: imm_operands(i)[-1] == S + 8),             # CALL26: BL S+A
    (282, 0x14000000, "b", lambda i: imm_operands(i)[-1] == S + 8),              # JUMP26: B S+A
]
NEAR = P + 0x3F0  # within reach of the short branches and literals
SHORT = [
    (280, 0x54000000, "b.eq", NEAR),   # CONDBR19: B.cond
    (280, 0xB4000000, "cbz", NEAR),    # CONDBR19: CBZ
    (279, 0x36000000, "tbz", NEAR),    # TSTBR14: TBZ
    (273, 0x58000000, "ldr", NEAR),    # LD_PREL_LO19: LDR (literal)
    (274, 0x10000000, "adr", NEAR),    # ADR_PREL_LO21: ADR
]


@pytest.mark.parametrize("era", ERAS)
@pytest.mark.parametrize("number,word,mnemonic,check", BRANCHES)
def test_call26_jump26_reach_s_plus_a(era, number, word, mnemonic, check):
    """CALL26/JUMP26: S + A - P, bits [27:2], into imm26."""
    i = decode(apply(era, number, S, 8, P, word), P)
    assert i.mnemonic == mnemonic and check(i), i.op_str


@pytest.mark.parametrize("number,word,mnemonic,target", SHORT)
def test_short_pc_relative_immediates(number, word, mnemonic, target):
    """CONDBR19/TSTBR14/LD_PREL_LO19/ADR_PREL_LO21: S + A - P into imm19/imm14/immlo:immhi."""
    i = decode(apply("6.6", number, target - 4, 4, P, word), P)
    assert i.mnemonic == mnemonic and imm_operands(i)[-1] == target, i.op_str


@pytest.mark.parametrize("era", ERAS)
def test_adrp_reaches_the_page_and_add_ldr_the_offset_in_it(era):
    """ADR_PREL_PG_HI21: Page(S + A) - Page(P) into ADRP; ADD_ABS_LO12_NC and
    LDSTn_ABS_LO12_NC: (S + A) bits [11:0], scaled by the access size."""
    target = 0xFFFF8000817FE468
    adrp = decode(apply(era, 275, target - 0x68, 0x68, P, 0x90000000), P)
    assert adrp.mnemonic == "adrp" and imm_operands(adrp)[-1] == target & ~0xFFF
    add = decode(apply(era, 277, target, 0, P, 0x91000000), P)
    assert add.mnemonic == "add" and imm_operands(add)[-1] == target & 0xFFF
    for number, word in ((278, 0x39400001), (284, 0x79400001), (285, 0xB9400001), (286, 0xF9400001),
                         (299, 0x3DC00000)):
        i = decode(apply(era, number, target & ~0xF, 0, P, word), P)
        assert i.mnemonic == "ldr" + {278: "b", 284: "h"}.get(number, "") and mem_disp(i) == target & 0xFF0, i.op_str


@pytest.mark.parametrize("lsb,number", [(0, 264), (16, 266), (32, 268), (48, 269)])
def test_movw_uabs_fills_each_16_bits(lsb, number):
    """MOVW_UABS_Gn_NC (and G3): (S + A) bits [lsb+15:lsb] into a MOVK's imm16 (its shift is the
    instruction's own hw field)."""
    value = 0xFFFF8000ABCD1234
    word = 0xF2800000 | (lsb // 16) << 21
    i = decode(apply("6.6", number, value, 0, P, word), P)
    assert i.mnemonic == "movk" and imm_operands(i) == [(value >> lsb) & 0xFFFF], i.op_str


@pytest.mark.parametrize("lsb,number", [(0, 288), (16, 290), (32, 292)])
def test_movw_prel_nc_fills_each_16_bits_of_s_plus_a_minus_p(lsb, number):
    """MOVW_PREL_Gn_NC: (S + A - P) bits [lsb+15:lsb] into a MOVK's imm16, unchecked."""
    value = (S + 0x10 - P) & M64
    i = decode(apply("6.6", number, S, 0x10, P, 0xF2800000 | (lsb // 16) << 21), P)
    assert i.mnemonic == "movk" and imm_operands(i) == [(value >> lsb) & 0xFFFF], i.op_str


@pytest.mark.parametrize("number,lsb", [(287, 0), (289, 16), (291, 32), (293, 48)])
def test_movw_prel_signed_is_movz_or_movn(number, lsb):
    """MOVW_PREL_G0..G3 (the G3 unchecked): S + A - P, MOVZ for a value >= 0, MOVN of the
    inverted field for a negative one: what capstone says the instruction loads has the
    value's bits from lsb up, and below them zeros (MOVZ) or ones (MOVN), for the MOVKs of
    the lower groups to fill."""
    for delta in (0x1234 << lsb, -(0x1234 << lsb)):
        i = decode(apply("6.6", number, P + delta, 0, P, 0xD2800000 | (lsb // 16) << 21), P)
        loaded = imm_operands(i)[-1]
        loaded -= (1 << 64) if loaded >> 63 else 0
        assert i.mnemonic == "mov" and loaded >> lsb == delta >> lsb, (hex(delta), i.op_str)
        assert loaded & ((1 << lsb) - 1) == (0 if delta >= 0 else (1 << lsb) - 1), (hex(delta), i.op_str)


def test_the_null_relocations_write_nothing():
    for number in (0, 256):  # R_ARM_NONE, R_AARCH64_NONE
        kind = table("6.6").types[number]
        assert kind.width == 0 and kind.apply(S, 0, P) == (0, 0)


def test_movw_sabs_is_movz_or_movn_by_the_sign_from_4_6():
    """MOVW_SABS_G0 of a negative value: MOVN with the field inverted from 4.6 (mov x0,
    #-5); 3.10's encoder took the sign of the 16-bit field, never negative: MOVZ of the
    low bits, and a value whose upper bits are all ones passes its signed check."""
    i = decode(apply("6.6", 270, 0, -5, P, 0xD2800000), P)
    assert i.op_str == "x0, #-5"
    i = decode(apply("3.10", 270, 0, -5, P, 0xD2800000), P)
    assert i.op_str == "x0, #0xfffb"
    with pytest.raises(RelocOverflow):  # 3.13-4.5 checked it as unsigned
        apply("4.4", 270, 0, -5, P, 0xD2800000)
    i = decode(apply("6.6", 271, 0x12345678, 0, P, 0xD2A00000), P)  # SABS_G1 positive: MOVZ lsl 16
    assert i.op_str == "x0, #0x12340000"


def test_data_relocations_and_their_ranges_by_era():
    """ABS64/32/16 = S + A, PREL64/32/16 = S + A - P, the value's low bits; the 16/32-bit
    ones accept the psABI's [-2^(n-1), 2^n) until 5.1, ABS [0, 2^n) and PREL [-2^(n-1),
    2^(n-1)) from 5.2."""
    assert apply("6.6", 257, S, 8, P) == S + 8
    assert apply("6.6", 261, P + 0x100, 0, P) == 0x100
    assert apply("6.6", 260, P - 0x100, 0, P) == (-0x100) & M64
    assert apply("6.6", 258, 0xFFFFFFFF, 0, P) == 0xFFFFFFFF
    assert apply("4.19", 258, 0, -1, P) == 0xFFFFFFFF           # ABS32 of -1: in range before 5.2
    with pytest.raises(RelocOverflow) as err:
        apply("6.6", 258, 0, -1, P)                               # ... unsigned from 5.2
    assert err.value.value == M64
    assert apply("4.19", 261, P + 0x80000000, 0, P) == 0x80000000  # PREL32 up to 2^32 before 5.2
    with pytest.raises(RelocOverflow):
        apply("6.6", 261, P + 0x80000000, 0, P)                   # ... signed from 5.2
    with pytest.raises(RelocOverflow):
        apply("6.6", 259, 0x10000, 0, P)                          # ABS16
    assert apply("6.6", 262, P - 0x8000, 0, P) == 0x8000          # PREL16 of -2^15


def test_out_of_range_values_raise_with_s_plus_a():
    """The checked types refuse what does not fit, with val = S + A (what the kernel prints);
    the _NC ones are written truncated."""
    far = P + (128 << 20)
    with pytest.raises(RelocOverflow) as err:
        apply("6.6", 283, far, 0, P, 0x94000000)
    assert err.value.value == far
    with pytest.raises(RelocOverflow):
        apply("6.6", 280, P + (1 << 20), 0, P, 0x54000000)       # CONDBR19: +/-1 MiB
    with pytest.raises(RelocOverflow):
        apply("6.6", 263, 0x10000, 0, P, 0xF2800000)              # MOVW_UABS_G0
    apply("6.6", 264, 0x10000, 0, P, 0xF2800000)                  # MOVW_UABS_G0_NC: not checked
    with pytest.raises(RelocOverflow):
        apply("6.6", 275, P + (1 << 32), 0, P, 0x90000000)        # ADRP: +/-4 GiB


def test_which_types_each_era_accepts():
    """ADR_PREL_PG_HI21(_NC) are refused in 4.3-4.16 (``#ifndef CONFIG_ARM64_ERRATUM_843419``,
    modules built -mcmodel=large then); the message gains pr_fmt's "Modules: " in 6.5."""
    assert 275 in table("4.2").types and 275 not in table("4.9").types and 275 in table("4.19").types
    assert set(table("6.6").types) == set(table("3.7").types)
    assert table("6.6").unknown.format(module="m", type=1) == "Modules: module m: unsupported RELA relocation: 1"
    assert table("5.10").overflow.format(module="m", type=283, value=S) == \
        f"module m: overflow in relocation type 283 val {S:x}"


def test_adrp_at_an_erratum_843419_offset_becomes_adr():
    """reloc_insn_adrp on a CPU with erratum 843419: an ADRP in the last 8 bytes of a page
    becomes ADR of the target page when it is within 1 MiB (bit 31 cleared); elsewhere,
    the plain ADRP. (The emulated Cortex-A72 has no such erratum: the loader never uses
    this; the function is the kernel's all the same.)"""
    from mmemu_arm64.relocs import adrp_843419

    fn = adrp_843419("R_AARCH64_ADR_PREL_PG_HI21", True)
    at = (P & ~0xFFF) | 0xFF8
    i = decode(fn(at + 0x5000, 0, at, 0x90000000)[1], at)
    assert i.mnemonic == "adr" and imm_operands(i)[-1] == (at + 0x5000) & ~0xFFF
    i = decode(fn(at + 0x5000, 0, at - 8, 0x90000000)[1], at - 8)
    assert i.mnemonic == "adrp"


# -- the examples, loaded ----------------------------------------------------------------------


def _check_place(k, mod, rtype: str, P: int, S: int, A: int) -> None:
    """What the kernel wrote at *P*, read back through the page tables: the AAELF64 formula
    of *rtype*, decoded by capstone for an instruction."""
    if rtype == "R_AARCH64_ABS64":
        assert k.read(P, 8) == ((S + A) & M64).to_bytes(8, "little")
        return
    if rtype == "R_AARCH64_PREL32":
        assert k.read(P, 4) == ((S + A - P) & 0xFFFFFFFF).to_bytes(4, "little")
        return
    i = decode(int.from_bytes(k.read(P, 4), "little"), P)
    want = {"R_AARCH64_CALL26": S + A, "R_AARCH64_JUMP26": S + A,
            "R_AARCH64_ADR_PREL_PG_HI21": (S + A) & ~0xFFF, "R_AARCH64_ADD_ABS_LO12_NC": (S + A) & 0xFFF}
    if rtype in want:
        assert imm_operands(i)[-1] == want[rtype], f"{rtype} at {P:#x}: {i.mnemonic} {i.op_str}"
    elif rtype.startswith("R_AARCH64_LDST"):
        assert mem_disp(i) == (S + A) & 0xFFF, f"{rtype} at {P:#x}: {i.mnemonic} {i.op_str}"
    else:
        raise AssertionError(f"no check for {rtype}")


@pytest.mark.parametrize("era", ERAS)
def test_examples_load_relocated_as_readelf_capstone_and_the_psabi_say(era, boot):
    k = boot(arch="arm64", kernel=era, ram="1G")
    for name in MODULES:
        path = obj("arm64", era, name)
        mod = k.load_module(path.read_bytes(), path.name, run_init=False)
        checked = 0
        for section, offset, rtype, sym, addend in readelf_relocations(path):
            target = section.removeprefix(".rela")
            placement = next(p for p in mod.layout.placements.values() if p.section.name == target)
            if placement.region.init:
                continue  # freed after init
            _check_place(k, mod, rtype, placement.address + offset, symbol_address(k, mod, sym), addend or 0)
            checked += 1
        assert checked
    k.check_invariants()


@pytest.mark.parametrize("era,region,prot", [("3.10", ("MODULES_VADDR", "MODULES_END"), "PAGE_KERNEL_EXEC"),
                                             ("4.19", ("_etext", -128 << 20), "PAGE_KERNEL_EXEC"),
                                             ("6.6", ("_end", -128 << 20), "PAGE_KERNEL")])
def test_module_alloc_range_and_permissions(era, region, prot, boot):
    """module_alloc: [MODULES_VADDR, MODULES_END) (3.x), within 128 MiB below _etext
    (module_alloc_base, 4.6+) or _end (module_direct_base, 6.5+): so that every BL to the
    kernel reaches without a PLT. Text RX, rodata RO+NX, data RW+NX where the era sets
    module permissions (3.18+); 3.10 leaves module memory as module_alloc mapped it."""
    k = boot(arch="arm64", kernel=era, ram="1G")
    mod = k.load_module(obj("arm64", era, "hello").read_bytes(), "hello.o", run_init=False)
    s = k.layout.symbols
    lo, hi = (s[region[0]], s[region[1]]) if isinstance(region[1], str) else (s[region[0]] + region[1], s[region[0]])
    assert k.arch.module_alloc(k.spec, k.layout) == (lo, hi, prot)
    for r in mod.layout.regions:
        if not r.init:
            area = k.find_vmap_area(r.base)
            assert area.vm.caller == "module_alloc" and lo <= area.va_start < area.va_end <= hi
    for p in mod.layout.placements.values():
        if not p.section.size or p.region.init:
            continue
        rights = k.walk(p.address).rights
        w, x = bool(rights & KW), bool(rights & KX)
        if era == "3.10":
            assert w and x  # PAGE_KERNEL_EXEC, no DEBUG_SET_MODULE_RONX yet
        else:
            assert (w, x) == {"text": (False, True), "rodata": (False, False)}.get(p.kind, (True, False)), p.section.name


def _retype(data: bytes, index: int, rtype: int | None = None, addend: int | None = None, section: str = "") -> bytes:
    """The object with relocation *index* of the first SHT_RELA section (or of *section*)
    given another type or addend."""
    from mmemu.module.elf import ModuleFile

    mf = ModuleFile(data, "m.o")
    rel = next(r for r in mf.relocations if not section or r.section.name == section)
    out = bytearray(data)
    entry = rel.section.offset + index * 24
    if rtype is not None:
        info = struct.unpack_from("<Q", out, entry + 8)[0]
        struct.pack_into("<Q", out, entry + 8, (info & ~0xFFFFFFFF) | rtype)
    if addend is not None:
        struct.pack_into("<q", out, entry + 16, addend)
    return bytes(out)


def _first_call26(data: bytes, section: str) -> int:
    from mmemu.module.elf import ModuleFile

    rel = next(r for r in ModuleFile(data, "m.o").relocations if r.section.name == section)
    return rel.types.index(283)


@pytest.mark.parametrize("era,prefix", [("4.19", ""), ("6.6", "Modules: ")])
def test_refused_relocations_leave_the_kernel_as_it_was(era, prefix, boot):
    k = boot(arch="arm64", kernel=era, ram="256M")
    data = obj("arm64", era, "hello").read_bytes()
    before = kernel_state(k)
    with pytest.raises(ModuleError, match=f"^{prefix}module hello: unsupported RELA relocation: 1$"):
        k.load_module(_retype(data, 0, rtype=1), "hello.o")
    assert kernel_state(k) == before
    # a kernel address in an ABS16: "overflow in relocation type 259 val <S + A>"
    with pytest.raises(ModuleError, match=f"^{prefix}module hello: overflow in relocation type 259 val ffff"):
        k.load_module(_retype(data, 0, rtype=259), "hello.o")
    assert kernel_state(k) == before
    assert f"{prefix}module hello: overflow in relocation type 259" in k.dmesg()


def test_a_branch_out_of_range_overflows_without_plts_and_exhausts_them_with(boot):
    """A BL 256 MiB away: 5.10 (no module PLTs without CONFIG_RANDOMIZE_BASE) prints the
    overflow; 6.6 (PLTs always) tries a PLT entry, but count_plts reserved none on a kernel
    without KASLR: WARN_ON and -ENOEXEC. The kernel is unchanged in both."""
    for era, message in (("5.10", "^module hello: overflow in relocation type 283 val "),
                         ("6.6", r"WARN_ON\(pltsec->plt_num_entries > pltsec->plt_max_entries\) \(1 > 0, init PLT")):
        k = boot(arch="arm64", kernel=era, ram="256M")
        data = obj("arm64", era, "hello").read_bytes()
        before = kernel_state(k)
        far = _retype(data, _first_call26(data, ".rela.init.text"), addend=256 << 20, section=".rela.init.text")
        with pytest.raises(ModuleError, match=message):
            k.load_module(far, "hello.o")
        assert kernel_state(k) == before


def _peek(k, va: int) -> int:
    """The word at *va*, read through the page tables (between two load steps, where the
    kernel's own read, an operation, must wait)."""
    return int.from_bytes(k.mem.read(k.walk(va).phys, 4), "little")


def test_module_plts_are_emitted_when_counted(boot, monkeypatch):
    """With PLT entries counted (CONFIG_RANDOMIZE_BASE: one per distinct branch target outside
    the branch's own section, as readelf lists them), the far BL goes through a veneer in
    .init.plt: adrp x16 / add x16 / br x16 to the target."""
    k = boot(arch="arm64", kernel="6.6", ram="1G")
    monkeypatch.setitem(k.layout.config, "CONFIG_RANDOMIZE_BASE", True)
    data = obj("arm64", "6.6", "hello").read_bytes()
    i = _first_call26(data, ".rela.init.text")
    far = _retype(data, i, addend=64 << 20, section=".rela.init.text")
    load = k.load_module_steps(far, "hello.o", run_init=False)
    seen = {}
    for step in load:
        seen[step.function] = step.what
        if step.function.startswith("apply_relocate") and ".rela.init.text" in step.what:
            mod = load.module
            plt = mod.layout.placements[mod.arch["init"]["plt_shndx"]].address
            words = [_peek(k, plt + 4 * n) for n in range(3)]
            adrp, add, br = (decode(w, plt + 4 * n) for n, w in enumerate(words))
            from mmemu.module.elf import ModuleFile
            mf = ModuleFile(far, "m.o")
            rel = next(r for r in mf.relocations if r.section.name == ".rela.init.text")
            target = symbol_address(k, mod, mf.symbols[rel.symbols[i]].name) + (64 << 20)
            assert (adrp.mnemonic, add.mnemonic, br.mnemonic, br.op_str) == ("adrp", "add", "br", "x16")
            assert imm_operands(adrp)[-1] + imm_operands(add)[-1] == target
            place = mod.section_address(".init.text") + rel.offsets[i]
            bl = decode(_peek(k, place), place)
            assert imm_operands(bl)[-1] == plt
            assert mod.arch["init"]["plt_num_entries"] == 1
    counted = {(t, sym) for sec, _o, t, sym, _a in readelf_relocations(obj("arm64", "6.6", "hello"))
               if sec == ".rela.init.text" and t in ("R_AARCH64_CALL26", "R_AARCH64_JUMP26") and sym != ".init.text"}
    assert f".init.plt {len(counted)} entries" in seen["module_frob_arch_sections"]


def _refused_on_another_era(boot, built: str, era: str, pattern: str) -> None:
    """The hello object of era *built*, its vermagic made *era*'s (as long: a NUL ends it),
    is refused by *era*'s kernel with *pattern*, the kernel as it was."""
    k = boot(arch="arm64", kernel=era, ram="256M")
    data = obj("arm64", built, "hello").read_bytes()
    old = f"{built}.0 SMP preempt mod_unload aarch64".encode()
    new = f"{era}.0 SMP preempt mod_unload aarch64".encode()
    data = data.replace(old, new + bytes(len(old) - len(new)))
    before = kernel_state(k)
    with pytest.raises(ModuleError, match=pattern):
        k.load_module(data, "hello.o")
    assert kernel_state(k) == before


def test_6_6_refuses_a_module_without_plt_sections(boot):
    """module_frob_arch_sections: '%s: module PLT section(s) missing' for an object that did
    not go through the module link (the 5.10 object, its vermagic made 6.6's)."""
    _refused_on_another_era(boot, "5.10", "6.6", "^Modules: hello: module PLT section\\(s\\) missing$")


def test_a_write_to_its_own_rodata_oopses_naming_the_function(boot):
    k = boot(arch="arm64", kernel="6.6", ram="1G")
    with pytest.raises(Oops) as err:
        k.load_module(obj("arm64", "6.6", "rodata_oops").read_bytes(), "rodata_oops.o")
    report = err.value.report
    assert "Unable to handle kernel write to read-only memory at virtual address" in report
    assert "pc : rodata_oops_init+0x" in report and "[rodata_oops]" in report
    assert "Modules linked in: rodata_oops(O+)" in report and "Tainted: " in report
    assert k.find_module("rodata_oops").state == "MODULE_STATE_COMING"


def test_the_w_x_audit_in_arm64s_words(boot):
    k = boot(arch="arm64", kernel="6.6", ram="256M")
    k.load_module(obj("arm64", "6.6", "vbuf").read_bytes(), "vbuf.o")
    assert k.check_wx() == ["Checked W+X mappings: passed, no W+X pages found"]
    va = k.vmalloc_range(2 * 4096, k.layout["VMALLOC_START"], k.layout["VMALLOC_END"], prot="PAGE_KERNEL_EXEC")
    assert k.check_wx() == [f"arm64/mm: Found insecure W+X mapping at address {va:016x}/0x{va:x}",
                            "Checked W+X mappings: FAILED, 2 W+X pages found, 0 non-UXN pages found"]
    with pytest.raises(Exception, match="4.10"):
        boot(arch="arm64", kernel="4.9", ram="1G").check_wx()


def test_insmod_and_modinfo_on_the_command_line(capsys):
    from mmemu.cli import main

    path = obj("arm64", "6.6", "hello")
    assert main(["modinfo", str(path)]) == 0
    assert "vermagic:       6.6.0 SMP preempt mod_unload aarch64\n" in capsys.readouterr().out
    assert main(["insmod", str(path), "--arch", "arm64", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["module"] == "hello" and doc["state"] == "MODULE_STATE_LIVE"
    assert sum(doc["relocations"].values()) == len(readelf_relocations(path))
    assert any(line.startswith("hello: hello from a module (kernel 6.6.0") for line in doc["log"])
    assert main(["insmod", str(path), "--arch", "arm64"]) == 0
    text = capsys.readouterr().out
    assert "R_AARCH64_CALL26" in text and "module_frob_arch_sections" in text
    assert main(["insmod", str(path), "--arch", "x86_64"]) == 2
    assert "Invalid architecture in ELF header" in capsys.readouterr().err


def test_an_unknown_symbol_refuses_the_load_and_a_stub_stops_the_call(boot):
    """``Unknown symbol kfreX (err -2)`` with nothing changed; with stub_missing the load
    succeeds, and the exit function's BL to the stub (its brk) stops it, naming the
    function, the module left live as it was."""
    k = boot(arch="arm64", kernel="6.6", ram="256M")
    bad = obj("arm64", "6.6", "hello").read_bytes().replace(b"\0kfree\0", b"\0kfreX\0")
    before = kernel_state(k)
    with pytest.raises(ModuleError, match=r"^hello: Unknown symbol kfreX \(err -2\)$"):
        k.load_module(bad, "hello.o")
    assert kernel_state(k) == before
    assert k.load_module(bad, "hello.o", stub_missing=True).stubbed == ["kfreX"]
    with pytest.raises(ModuleError, match="the code called kfreX, which mmemu does not implement"):
        k.delete_module("hello")
    assert k.find_module("hello").state == "MODULE_STATE_LIVE"


def test_4_9_refuses_the_adrp_of_a_small_code_model_module(boot):
    """4.3-4.16 with CONFIG_ARM64_ERRATUM_843419 (default y) have no case for
    ADR_PREL_PG_HI21: a module built without -mcmodel=large (the 4.19 object, its vermagic
    made 4.9's) is refused with the kernel's words, and nothing changes."""
    _refused_on_another_era(boot, "4.19", "4.9", "^module hello: unsupported RELA relocation: 275$")
