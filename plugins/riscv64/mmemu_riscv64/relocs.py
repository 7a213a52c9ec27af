"""The relocations riscv64's module loader applies, by era: ``apply_relocate_add`` of
arch/riscv/kernel/module.c, with the PLT and GOT of arch/riscv/kernel/module-sections.c
(CONFIG_MODULE_SECTIONS, selected for 64-bit kernels with modules).

Sources read (stored copies of the kernel's file in each era):

- 4.15: riscvarchive/riscv-linux (the first module loader, Zihao Yu 2017): 64, BRANCH,
  JAL, PCREL_HI20, PCREL_LO12_I/S, CALL_PLT, RELAX; a PC-relative offset must fit an s32;
  a PCREL_LO12 entry takes its value from *any* entry at its symbol's address ("Can not find
  HI20 PC-relative relocation information").
- 4.18 (the 4.19 side of an Android 4.19 tree, Elchanz3/Samsung_Galaxy-S20FE-SM8250; the
  series 'RISC-V: Support kernel module' by Zong Li, release not verified): adds 32,
  RVC_BRANCH, RVC_JUMP, HI20, LO12_I/S, GOT_HI20, CALL, ALIGN, ADD32, SUB32, the PLT and GOT
  (module-sections.c) and a search for a PCREL_HI20 or GOT_HI20 entry ("Can not find HI20
  relocation information").
- 5.10 (openharmony/kernel_linux_5.10): adds ADD64, SUB64; the range of auipc+jalr
  [-2^31 - 2^11, 2^31 - 2^11) (``riscv_insn_valid_32bit_offset``) instead of the s32 check
  (the 4.19 tree has it only on its rebased side: a backport; the mainline release between
  4.19 and 5.10 is not dated here, mmemu takes 5.10).
- 6.0 (torvalds/linux, a 6.1-6.3 version with ``apply_module_alternatives``): adds ADD16,
  SUB16 (absent in 5.10; the release in between not verified, mmemu takes 6.0).

- 6.7 ('riscv: Add remaining module relocations', Charlie Jenkins; read in
  ruyisdk/linux-xuantie-kernel, a 6.6-based tree that carries it; the release from the
  series' date): adds ADD8, SUB8, SUB6, SET6, SET8, SET16, SET32, 32_PCREL, PLT32 (with a PLT
  entry out of reach), SET_ULEB128, SUB_ULEB128, refuses the dynamic-linking and TLS types
  with messages of their own, and no longer adds ADD/SUB/SET values to the place: it sums
  them per place in a buffer that starts at 0 (``process_accumulated_relocations``) and
  writes the sum once, checked against the width of the place's last relocation.

Each function computes what its docstring gives (riscv-elf-psabi "Relocations": S the
symbol's value, A the addend, P the place) and puts it in the instruction's immediate as
the kernel does; it gets the place's current word (``insn``) and returns it rewritten.
The kernel checks nothing but what is said; a value it does not check is truncated as its
bit operations truncate it.
"""

from __future__ import annotations

from dataclasses import replace

from mmemu.errors import ModuleError
from mmemu.module.reloc import RelocError, RelocTable, RelocType

from .eras import RISCV

M16, M32, M64 = 0xFFFF, 0xFFFFFFFF, (1 << 64) - 1

# riscv-elf-psabi, include/uapi/linux/elf.h / arch/riscv/include/uapi/asm/elf.h
R_RISCV_32, R_RISCV_64 = 1, 2
#: 6.7: refused with "Dynamic linking not supported in kernel modules PC = %p"
DYNAMIC = {3: "R_RISCV_RELATIVE", 4: "R_RISCV_COPY", 5: "R_RISCV_JUMP_SLOT", 6: "R_RISCV_TLS_DTPMOD32",
           7: "R_RISCV_TLS_DTPMOD64", 8: "R_RISCV_TLS_DTPREL32", 9: "R_RISCV_TLS_DTPREL64", 10: "R_RISCV_TLS_TPREL32",
           11: "R_RISCV_TLS_TPREL64", 58: "R_RISCV_IRELATIVE"}
#: 6.7: refused with "Thread local storage not supported in kernel modules PC = %p"
TLS = {21: "R_RISCV_TLS_GOT_HI20", 22: "R_RISCV_TLS_GD_HI20", 29: "R_RISCV_TPREL_HI20", 30: "R_RISCV_TPREL_LO12_I",
       31: "R_RISCV_TPREL_LO12_S", 32: "R_RISCV_TPREL_ADD"}
R_RISCV_ADD8, R_RISCV_SUB8, R_RISCV_SUB6, R_RISCV_SET6 = 33, 37, 52, 53
R_RISCV_SET8, R_RISCV_SET16, R_RISCV_SET32, R_RISCV_32_PCREL = 54, 55, 56, 57
R_RISCV_PLT32, R_RISCV_SET_ULEB128, R_RISCV_SUB_ULEB128 = 59, 60, 61
R_RISCV_BRANCH, R_RISCV_JAL, R_RISCV_CALL, R_RISCV_CALL_PLT, R_RISCV_GOT_HI20 = 16, 17, 18, 19, 20
R_RISCV_PCREL_HI20, R_RISCV_PCREL_LO12_I, R_RISCV_PCREL_LO12_S = 23, 24, 25
R_RISCV_HI20, R_RISCV_LO12_I, R_RISCV_LO12_S = 26, 27, 28
R_RISCV_ADD16, R_RISCV_ADD32, R_RISCV_ADD64 = 34, 35, 36
R_RISCV_SUB16, R_RISCV_SUB32, R_RISCV_SUB64 = 38, 39, 40
R_RISCV_ALIGN, R_RISCV_RVC_BRANCH, R_RISCV_RVC_JUMP, R_RISCV_RELAX = 43, 44, 45, 51

#: arch/riscv/include/asm/module.h emit_plt_entry: auipc t0; ld t1; jalr t1 (OPC_AUIPC 0x17,
#: OPC_LD 0x3003, OPC_JALR 0x67, REG_T0 5, REG_T1 6); struct plt_entry is 3 words, a
#: got_entry one unsigned long; the sections are aligned to L1_CACHE_BYTES (64)
PLT_ENTRY, GOT_ENTRY, L1_CACHE_BYTES = 12, 8, 64
SHF_ALLOC, SHF_EXECINSTR, SHT_NOBITS = 0x2, 0x4, 8


def _s64(v: int) -> int:
    v &= M64
    return v - (1 << 64) if v >> 63 else v


def _s32(v: int) -> int:
    v &= M32
    return v - (1 << 32) if v >> 31 else v


def fits_s32(offset: int) -> bool:
    """4.15-5.9: ``offset != (s32)offset`` refuses the offset."""
    return offset == _s32(offset)


def fits_auipc_jalr(offset: int) -> bool:
    """``riscv_insn_valid_32bit_offset`` (64-bit): auipc+jalr reach [-2^31 - 2^11, 2^31 - 2^11)."""
    return -(1 << 31) - (1 << 11) <= offset < (1 << 31) - (1 << 11)


def _far(v: int, P: int) -> str:
    """pr_err's "%s: target %016llx can not be addressed by the 32-bit offset from PC = %p"
    (``%p`` as a kernel booted with no_hash_pointers prints it: the address, 16 digits)."""
    return f"{{module}}: target {v & M64:016x} can not be addressed by the 32-bit offset from PC = {P & M64:016x}"


# -- data ---------------------------------------------------------------------------------

def r_riscv_32(S: int, A: int, P: int) -> tuple[int, int]:
    """R_RISCV_32: word32 = S + A, refused unless the 64-bit value zero-extends from 32
    bits ("value %016llx out of range for 32-bit field")."""
    v = (S + A) & M64
    if v > M32:
        raise RelocError(f"{{module}}: value {v:016x} out of range for 32-bit field")
    return 4, v


def r_riscv_64(S: int, A: int, P: int) -> tuple[int, int]:
    """R_RISCV_64: word64 = S + A."""
    return 8, (S + A) & M64


def _add(width: int):
    mask = (1 << 8 * width) - 1

    def apply(S: int, A: int, P: int, old: int) -> tuple[int, int]:
        return width, (old + S + A) & mask
    apply.__doc__ = f"R_RISCV_ADD{8 * width}: word{8 * width} = V + S + A (V: what the place holds)."
    return apply


def _sub(width: int):
    mask = (1 << 8 * width) - 1

    def apply(S: int, A: int, P: int, old: int) -> tuple[int, int]:
        return width, (old - S - A) & mask
    apply.__doc__ = f"R_RISCV_SUB{8 * width}: word{8 * width} = V - S - A (V: what the place holds)."
    return apply


r_riscv_add16, r_riscv_add32, r_riscv_add64 = _add(2), _add(4), _add(8)
r_riscv_sub16, r_riscv_sub32, r_riscv_sub64 = _sub(2), _sub(4), _sub(8)


# -- instruction immediates -----------------------------------------------------------------

def r_riscv_branch(S: int, A: int, P: int, old: int) -> tuple[int, int]:
    """R_RISCV_BRANCH: B-type immediate = S + A - P (imm[12|10:5] in bits 31:25, imm[4:1|11]
    in bits 11:7); unchecked."""
    o = S + A - P
    imm = ((o & 0x1000) << 19) | ((o & 0x800) >> 4) | ((o & 0x7E0) << 20) | ((o & 0x1E) << 7)
    return 4, (old & 0x1FFF07F) | imm


def r_riscv_jal(S: int, A: int, P: int, old: int) -> tuple[int, int]:
    """R_RISCV_JAL: J-type immediate = S + A - P (imm[20|10:1|11|19:12] in bits 31:12);
    unchecked."""
    o = S + A - P
    imm = ((o & 0x100000) << 11) | (o & 0xFF000) | ((o & 0x800) << 9) | ((o & 0x7FE) << 20)
    return 4, (old & 0xFFF) | imm


def r_riscv_rvc_branch(S: int, A: int, P: int, old: int) -> tuple[int, int]:
    """R_RISCV_RVC_BRANCH: CB-type immediate (c.beqz/c.bnez) = S + A - P; unchecked."""
    o = S + A - P
    imm = ((o & 0x100) << 4) | ((o & 0xC0) >> 1) | ((o & 0x20) >> 3) | ((o & 0x18) << 7) | ((o & 0x6) << 2)
    return 2, (old & 0xE383) | imm


def r_riscv_rvc_jump(S: int, A: int, P: int, old: int) -> tuple[int, int]:
    """R_RISCV_RVC_JUMP: CJ-type immediate (c.j) = S + A - P; unchecked."""
    o = S + A - P
    imm = (((o & 0x800) << 1) | ((o & 0x400) >> 2) | ((o & 0x300) << 1) | ((o & 0x80) >> 1)
           | ((o & 0x40) << 1) | ((o & 0x20) >> 3) | ((o & 0x10) << 7) | ((o & 0xE) << 2))
    return 2, (old & 0xE003) | imm


def _hi20(value: int) -> int:
    """The U-type immediate that, with a sign-extended lo12 added, gives *value*: (value +
    0x800) & 0xfffff000."""
    return (value + 0x800) & 0xFFFFF000


def _pcrel_hi20(fits):
    def apply(S: int, A: int, P: int, old: int) -> tuple[int, int]:
        o = _s64(S + A - P)
        if not fits(o):
            raise RelocError(_far(S + A, P))
        return 4, (old & 0xFFF) | _hi20(o)
    apply.__doc__ = ("R_RISCV_PCREL_HI20: auipc's U-type immediate = S + A - P rounded for its lo12 "
                     "(``(offset + 0x800) & 0xfffff000``), refused out of the era's 32-bit range.")
    return apply


def r_riscv_got_hi20(S: int, A: int, P: int, old: int) -> tuple[int, int]:
    """R_RISCV_GOT_HI20: auipc's U-type immediate = G + GOT + A - P; here S is already the GOT
    entry of S + A (module_emit_got_entry, :func:`resolve`); unchecked."""
    return 4, (old & 0xFFF) | _hi20(_s64(S + A - P))


def r_riscv_pcrel_lo12_i(S: int, A: int, P: int, old: int) -> tuple[int, int]:
    """R_RISCV_PCREL_LO12_I: I-type immediate (bits 31:20) = the lo12 of the HI20 entry's
    S + A - P; S + A here is that lo12 (the kernel computes it before the handler:
    :func:`resolve`)."""
    return 4, (old & 0xFFFFF) | (((S + A) & 0xFFF) << 20)


def r_riscv_pcrel_lo12_s(S: int, A: int, P: int, old: int) -> tuple[int, int]:
    """R_RISCV_PCREL_LO12_S: S-type immediate (imm[11:5] bits 31:25, imm[4:0] bits 11:7) = the
    lo12 of the HI20 entry's S + A - P (S + A here: :func:`resolve`)."""
    v = S + A
    return 4, (old & 0x1FFF07F) | ((v & 0xFE0) << 20) | ((v & 0x1F) << 7)


def r_riscv_hi20(S: int, A: int, P: int, old: int) -> tuple[int, int]:
    """R_RISCV_HI20: lui's U-type immediate = S + A rounded for its lo12, of the value as an
    s32 (a medany kernel never refuses it: the refusal is under CONFIG_CMODEL_MEDLOW)."""
    return 4, (old & 0xFFF) | _hi20(_s32(S + A))


def r_riscv_lo12_i(S: int, A: int, P: int, old: int) -> tuple[int, int]:
    """R_RISCV_LO12_I: I-type immediate = the low 12 bits of S + A."""
    return 4, (old & 0xFFFFF) | (((S + A) & 0xFFF) << 20)


def r_riscv_lo12_s(S: int, A: int, P: int, old: int) -> tuple[int, int]:
    """R_RISCV_LO12_S: S-type immediate = the low 12 bits of S + A."""
    v = S + A
    return 4, (old & 0x1FFF07F) | ((v & 0xFE0) << 20) | ((v & 0x1F) << 7)


def _call(fits):
    def apply(S: int, A: int, P: int, old: int) -> tuple[int, int]:
        o = _s64(S + A - P)
        if not fits(o):
            raise RelocError(_far(S + A, P))
        hi = _hi20(o)
        lo = (o - hi) & 0xFFF
        auipc, jalr = old & M32, old >> 32
        return 8, ((auipc & 0xFFF) | hi) | (((jalr & 0xFFFFF) | (lo << 20)) << 32)
    apply.__doc__ = ("R_RISCV_CALL / R_RISCV_CALL_PLT: the auipc+jalr pair's immediates = S + A - P "
                     "(hi20 in auipc, lo12 in jalr), refused out of the era's range; a CALL_PLT out of "
                     "range goes through a PLT entry where the era has them (:func:`resolve`).")
    return apply


def r_riscv_32_pcrel(S: int, A: int, P: int) -> tuple[int, int]:
    """R_RISCV_32_PCREL (6.7): word32 = S + A - P, unchecked."""
    return 4, (S + A - P) & M32


def _plt32(fits):
    def apply(S: int, A: int, P: int) -> tuple[int, int]:
        o = _s64(S + A - P)
        if not fits(o):
            raise RelocError(_far(S + A, P))
        return 4, o & M32
    apply.__doc__ = ("R_RISCV_PLT32 (6.7): word32 = S + A - P, through a PLT entry when out of auipc+jalr's "
                     "reach (:func:`resolve`).")
    return apply


def _refused(what: str):
    def apply(S: int, A: int, P: int) -> tuple[int, int]:
        raise RelocError(f"{{module}}: {what} not supported in kernel modules PC = {P & M64:016x}")
    apply.__doc__ = f"refused (6.7): \"{what} not supported in kernel modules PC = %p\""
    return apply


def _deferred(name: str):
    def apply(S: int, A: int, P: int) -> tuple[int, int]:
        return 0, 0
    apply.__doc__ = (f"{name} (6.7+): nothing at once; V = S + A joins the place's sum, written by "
                     ":func:`finish` (process_accumulated_relocations)")
    return apply


#: 6.7's accumulated relocations: how each changes the buffer (a long, starting at 0) and
#: the width class its accumulate_handler checks and writes (6, 8, 16, 32, 64 bits, uleb)
ACCUMULATED = {R_RISCV_ADD8: ("add", 8), R_RISCV_ADD16: ("add", 16), R_RISCV_ADD32: ("add", 32),
               R_RISCV_ADD64: ("add", 64), R_RISCV_SUB8: ("sub", 8), R_RISCV_SUB16: ("sub", 16),
               R_RISCV_SUB32: ("sub", 32), R_RISCV_SUB64: ("sub", 64), R_RISCV_SUB6: ("sub6", 6),
               R_RISCV_SET6: ("set6", 6), R_RISCV_SET8: ("set", 8), R_RISCV_SET16: ("set", 16),
               R_RISCV_SET32: ("set", 32), R_RISCV_SET_ULEB128: ("set_uleb", "uleb"),
               R_RISCV_SUB_ULEB128: ("sub_uleb", "uleb")}


def accumulate(buffer: int, rtype: int, v: int) -> int:
    """One reloc_handler of 6.7 applied to the buffer (a u64 here): ADDn/SUBn change its low
    n bits (``*(uN *)&buffer += v``), SUB6/SET6 the low 6 bits of its first byte, SETn its low
    n bits, SET_ULEB128 sets and SUB_ULEB128 subtracts the whole long."""
    kind, bits = ACCUMULATED[rtype]
    if kind in ("add", "sub", "set"):
        mask = (1 << bits) - 1
        low = (buffer + v if kind == "add" else buffer - v if kind == "sub" else v) & mask
        return (buffer & ~mask & M64) | low
    if kind in ("sub6", "set6"):
        b = buffer & 0xFF
        b = ((b - (v & 0x3F)) & 0x3F) if kind == "sub6" else (b & 0xC0) | (v & 0x3F)
        return (buffer & ~0xFF & M64) | b
    return (v if kind == "set_uleb" else buffer - v) & M64


def write_accumulated(buffer: int, rtype: int, old: bytes) -> bytes:
    """The accumulate_handler of the place's last relocation: the sum, checked (``buffer >
    U8_MAX``... compares a signed long: a negative sum passes) and written as 6 bits (the
    byte's top two kept), 1, 2, 4 or 8 bytes, or ULEB128 (nothing for a sum of 0)."""
    bits = ACCUMULATED[rtype][1]
    signed = _s64(buffer)
    if bits == "uleb":
        if signed < 0:
            raise RelocError("{module}: a negative ULEB128 value: 6.7's apply_uleb128_accumulation would never end "
                             "(an arithmetic shift of a negative long)")
        out = bytearray()
        while signed:
            byte = signed & 0x7F
            signed >>= 7
            out.append(byte | (0x80 if signed else 0))
        return bytes(out)
    limit = 0x3F if bits == 6 else (1 << bits) - 1
    if bits != 64 and signed > limit:
        raise RelocError(f"{{module}}: value {signed} out of range for {bits}-bit relocation.")
    if bits == 6:
        return bytes([(old[0] & 0xC0) | (buffer & 0x3F)])
    return (buffer & ((1 << bits) - 1)).to_bytes(bits // 8, "little")


def finish(section, contents) -> dict:
    """process_accumulated_relocations (6.7+): every place's sum written once, with the
    handler of its last relocation (places in address order; the kernel walks its hash
    buckets, so only which of several bad places it names first can differ)."""
    writes = {}
    for off, entries in sorted(getattr(section, "accumulated", {}).items()):
        buffer = 0
        for rtype, v in entries:
            buffer = accumulate(buffer, rtype, v)
        last = entries[-1][0]
        writes[off] = write_accumulated(buffer, last, bytes(contents[off:off + 1]) or b"\0")
    return writes


def r_riscv_relax(S: int, A: int, P: int) -> tuple[int, int]:
    """R_RISCV_RELAX: nothing (a hint for the linker)."""
    return 0, 0


def r_riscv_align(S: int, A: int, P: int) -> tuple[int, int]:
    """R_RISCV_ALIGN: refused ("The unexpected relocation type 'R_RISCV_ALIGN' from PC = %p"):
    the loader cannot delete the padding a relaxing linker would."""
    raise RelocError(f"{{module}}: The unexpected relocation type 'R_RISCV_ALIGN' from PC = {P & M64:016x}")


# -- the PLT and the GOT (module-sections.c) --------------------------------------------------

def module_frob_arch_sections(kernel, mod) -> str | None:
    """module-sections.c ``module_frob_arch_sections``: the empty ``.plt``, ``.got`` and
    ``.got.plt`` sections the module's final link made (its linker script,
    arch/riscv/kernel/module.lds, later asm/module.lds.h) are required ("module PLT
    section(s) missing", -ENOEXEC), then sized for one entry per distinct CALL_PLT and
    GOT_HI20 (type, symbol, addend) of the relocations of executable sections, plus one, as
    SHT_NOBITS aligned to L1_CACHE_BYTES."""
    if not RISCV(kernel.spec.kernel).module_sections:
        return None
    mf = mod.file
    found = {}
    for sec in mf.sections:
        if sec.name in (".plt", ".got", ".got.plt"):
            found[sec.name] = sec.index
    for name, what in ((".plt", "PLT"), (".got", "GOT"), (".got.plt", "GOT.PLT")):
        if name not in found:
            raise ModuleError(f"{mod.name}: module {what} section(s) missing", 8)
    plts, gots = set(), set()
    for rel in mf.relocations:
        if not rel.rela or not mf.sections[rel.target].flags & SHF_EXECINSTR:
            continue
        for rtype, sym, addend in zip(rel.types, rel.symbols, rel.addends):
            if rtype == R_RISCV_CALL_PLT or (rtype == R_RISCV_PLT32 and RISCV(kernel.spec.kernel).module_relocs_67):
                plts.add((rtype, sym, addend))
            elif rtype == R_RISCV_GOT_HI20:
                gots.add((sym, addend))
    sizes = {".plt": ((len(plts) + 1) * PLT_ENTRY, SHF_EXECINSTR | SHF_ALLOC),
             ".got": ((len(gots) + 1) * GOT_ENTRY, SHF_ALLOC), ".got.plt": ((len(plts) + 1) * GOT_ENTRY, SHF_ALLOC)}
    for name, (size, flags) in sizes.items():
        i = found[name]
        mf.sections[i] = replace(mf.sections[i], type=SHT_NOBITS, flags=flags, size=size, align=L1_CACHE_BYTES)
    mod.arch.update(plt=[], got=[], max_plt=len(plts), max_got=len(gots))
    return (f".plt {len(plts) + 1} entries, .got {len(gots) + 1}, .got.plt {len(plts) + 1} "
            f"({len(plts)} PLT and {len(gots)} GOT entries at most)")


def _emit_got_entry(section, val: int) -> int:
    """module_emit_got_entry: the GOT entry holding *val* (an existing one, else the next)."""
    mod = section.module
    got = mod.arch["got"]
    base = mod.section_address(".got")
    if val in got:
        return base + GOT_ENTRY * got.index(val)
    i = len(got)
    got.append(val)
    section.write(base + GOT_ENTRY * i, val.to_bytes(GOT_ENTRY, "little"))
    return base + GOT_ENTRY * i


def _emit_plt_entry(section, val: int) -> int:
    """module_emit_plt_entry: the PLT entry jumping to *val* through its .got.plt slot
    (emit_plt_entry of asm/module.h: auipc t0, hi20; ld t1, lo12(t0); jalr x0, 0(t1))."""
    mod = section.module
    plt = mod.arch["plt"]
    base, got_plt = mod.section_address(".plt"), mod.section_address(".got.plt")
    if val in plt:
        return base + PLT_ENTRY * plt.index(val)
    i = len(plt)
    plt.append(val)
    entry, slot = base + PLT_ENTRY * i, got_plt + GOT_ENTRY * i
    offset = (slot - entry) & M64
    hi = _hi20(offset) & M32
    lo = (offset - hi) & 0xFFF
    code = (0x17 | (5 << 7) | hi, 0x3003 | (lo << 20) | (5 << 15) | (6 << 7), 0x67 | (6 << 15))
    section.write(slot, val.to_bytes(GOT_ENTRY, "little"))
    section.write(entry, b"".join(w.to_bytes(4, "little") for w in code))
    return entry


def _resolver(era):
    """The table's ``resolve``: what apply_relocate_add does for an entry before its handler."""
    sections = era.module_sections
    fits = fits_auipc_jalr if era.module_auipc_range else fits_s32
    hi_types = (R_RISCV_PCREL_HI20, R_RISCV_GOT_HI20) if sections else None
    missing = ("{module}: Can not find HI20 relocation information" if sections
               else "{module}: Can not find HI20 PC-relative relocation information")

    def hi20_at(section) -> dict:
        """The first entry at each place (of a PCREL_HI20 or GOT_HI20 type, from 4.18): the
        kernel's search runs from the section's first entry every time."""
        found = getattr(section, "hi20_at", None)
        if found is None:
            found = {}
            for j, (off, t) in enumerate(zip(section.offsets, section.types)):
                if hi_types is None or t in hi_types:
                    found.setdefault(section.base + off, j)
            section.hi20_at = found
        return found

    accumulates = era.module_relocs_67
    plt_types = (R_RISCV_CALL_PLT, R_RISCV_PLT32) if accumulates else (R_RISCV_CALL_PLT,)

    def resolve(section, i: int, S: int, A: int) -> tuple[int, int]:
        t = section.types[i]
        if accumulates and t in ACCUMULATED:
            acc = getattr(section, "accumulated", None)
            if acc is None:
                acc = section.accumulated = {}
            acc.setdefault(section.offsets[i], []).append((t, (S + A) & M64))
            return S, A
        if t in (R_RISCV_PCREL_LO12_I, R_RISCV_PCREL_LO12_S):
            # the symbol names the auipc; its HI20 entry gives the offset whose lo12 this is
            j = hi20_at(section).get(S & M64)
            if j is None:
                raise RelocError(missing)
            loc = section.base + section.offsets[j]
            target = (section.values[section.symbols[j]] + section.addends[j]) & M64
            if sections and section.types[j] == R_RISCV_GOT_HI20:
                target = _emit_got_entry(section, target)
            offset = _s64(target - loc)
            return offset - _hi20(offset), 0
        if sections and t == R_RISCV_GOT_HI20:
            return _emit_got_entry(section, (S + A) & M64), 0
        if sections and t in plt_types and not fits(_s64(S + A - (section.base + section.offsets[i]))):
            return _emit_plt_entry(section, (S + A) & M64), 0
        return S, A
    return resolve


def riscv64_relocations(spec) -> RelocTable:
    """apply_relocate_add of *spec*'s era (see the module docstring)."""
    era = RISCV(spec.kernel)
    fits = fits_auipc_jalr if era.module_auipc_range else fits_s32
    call = _call(fits)
    insn = [(R_RISCV_BRANCH, "R_RISCV_BRANCH", r_riscv_branch, 4), (R_RISCV_JAL, "R_RISCV_JAL", r_riscv_jal, 4),
            (R_RISCV_PCREL_HI20, "R_RISCV_PCREL_HI20", _pcrel_hi20(fits), 4),
            (R_RISCV_PCREL_LO12_I, "R_RISCV_PCREL_LO12_I", r_riscv_pcrel_lo12_i, 4),
            (R_RISCV_PCREL_LO12_S, "R_RISCV_PCREL_LO12_S", r_riscv_pcrel_lo12_s, 4),
            (R_RISCV_CALL_PLT, "R_RISCV_CALL_PLT", call, 8)]
    data = [(R_RISCV_64, "R_RISCV_64", r_riscv_64, 8), (R_RISCV_RELAX, "R_RISCV_RELAX", r_riscv_relax, 0)]
    if era.module_sections:
        insn += [(R_RISCV_RVC_BRANCH, "R_RISCV_RVC_BRANCH", r_riscv_rvc_branch, 2),
                 (R_RISCV_RVC_JUMP, "R_RISCV_RVC_JUMP", r_riscv_rvc_jump, 2),
                 (R_RISCV_HI20, "R_RISCV_HI20", r_riscv_hi20, 4), (R_RISCV_LO12_I, "R_RISCV_LO12_I", r_riscv_lo12_i, 4),
                 (R_RISCV_LO12_S, "R_RISCV_LO12_S", r_riscv_lo12_s, 4),
                 (R_RISCV_GOT_HI20, "R_RISCV_GOT_HI20", r_riscv_got_hi20, 4), (R_RISCV_CALL, "R_RISCV_CALL", call, 8),
                 (R_RISCV_ADD32, "R_RISCV_ADD32", r_riscv_add32, 4), (R_RISCV_SUB32, "R_RISCV_SUB32", r_riscv_sub32, 4)]
        data += [(R_RISCV_32, "R_RISCV_32", r_riscv_32, 4), (R_RISCV_ALIGN, "R_RISCV_ALIGN", r_riscv_align, 0)]
    if era.module_auipc_range:
        insn += [(R_RISCV_ADD64, "R_RISCV_ADD64", r_riscv_add64, 8), (R_RISCV_SUB64, "R_RISCV_SUB64", r_riscv_sub64, 8)]
    if era.module_add16:
        insn += [(R_RISCV_ADD16, "R_RISCV_ADD16", r_riscv_add16, 2), (R_RISCV_SUB16, "R_RISCV_SUB16", r_riscv_sub16, 2)]
    types = {n: RelocType(n, name, fn, width, insn=True) for n, name, fn, width in insn}
    types.update({n: RelocType(n, name, fn, width) for n, name, fn, width in data})
    if era.module_relocs_67:
        names = {R_RISCV_ADD8: "R_RISCV_ADD8", R_RISCV_ADD16: "R_RISCV_ADD16", R_RISCV_ADD32: "R_RISCV_ADD32",
                 R_RISCV_ADD64: "R_RISCV_ADD64", R_RISCV_SUB8: "R_RISCV_SUB8", R_RISCV_SUB16: "R_RISCV_SUB16",
                 R_RISCV_SUB32: "R_RISCV_SUB32", R_RISCV_SUB64: "R_RISCV_SUB64", R_RISCV_SUB6: "R_RISCV_SUB6",
                 R_RISCV_SET6: "R_RISCV_SET6", R_RISCV_SET8: "R_RISCV_SET8", R_RISCV_SET16: "R_RISCV_SET16",
                 R_RISCV_SET32: "R_RISCV_SET32", R_RISCV_SET_ULEB128: "R_RISCV_SET_ULEB128",
                 R_RISCV_SUB_ULEB128: "R_RISCV_SUB_ULEB128"}
        types.update({n: RelocType(n, name, _deferred(name), 0) for n, name in names.items()})
        types[R_RISCV_32_PCREL] = RelocType(R_RISCV_32_PCREL, "R_RISCV_32_PCREL", r_riscv_32_pcrel, 4)
        types[R_RISCV_PLT32] = RelocType(R_RISCV_PLT32, "R_RISCV_PLT32", _plt32(fits), 4)
        types.update({n: RelocType(n, name, _refused("Dynamic linking"), 0) for n, name in DYNAMIC.items()})
        types.update({n: RelocType(n, name, _refused("Thread local storage"), 0) for n, name in TLS.items()})
    return RelocTable(types, rela=True, unknown="{module}: Unknown relocation type {type}",
                      overflow="{module}: relocation {type}: value {value:#x} does not fit", resolve=_resolver(era),
                      finish=finish if era.module_relocs_67 else None)
