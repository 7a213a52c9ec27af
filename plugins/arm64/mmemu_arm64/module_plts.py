"""Module PLTs: arch/arm64/kernel/module-plts.c (6.5+ as the module loader of mmemu's arm64
config has them; read from torvalds/linux @03c60192).

A module reaches the kernel and other modules with ``BL``/``B`` (CALL26/JUMP26, +/-128 MiB).
``module_frob_arch_sections`` finds the empty ``.plt`` and ``.init.plt`` sections the
module's linker script (scripts/module.lds.S with arch/arm64/include/asm/module.lds.h) put
in the ``.ko`` and sizes them: one 12-byte ``struct plt_entry`` per branch that may need one
(``count_plts``, which counts only ``if (IS_ENABLED(CONFIG_RANDOMIZE_BASE))``: none on the
non-KASLR kernel mmemu models) plus one spare. A branch out of range at relocation time gets
``module_emit_plt_entry``: ``adrp x16, target; add x16, x16, :lo12:target; br x16`` in the
PLT of its part (core or init), the previous entry reused when it has the same target.
"""

from __future__ import annotations

from dataclasses import replace

from mmemu.errors import ModuleError
from mmemu.module.reloc import RelocOverflow

from .eras import MODULES
from .insn import decode_adrp_offset, gen_add_imm, gen_adrp, gen_br
from .relocs import R_AARCH64_CALL26, R_AARCH64_JUMP26, AdrpVeneer

# include/uapi/linux/elf.h (the gABI's numbers)
SHT_SYMTAB, SHT_RELA, SHT_NOBITS = 2, 4, 8
SHF_ALLOC, SHF_EXECINSTR = 0x2, 0x4

PLT_ENTRY_SIZE = 12  # sizeof(struct plt_entry): adrp, add, br
L1_CACHE_BYTES = 64  # arch/arm64/include/asm/cache.h: L1_CACHE_SHIFT 6
ENOEXEC = 8


def get_plt_entry(dst: int, pc: int) -> tuple[int, int, int]:
    """``get_plt_entry``: ``adrp x16, dst; add x16, x16, #(dst % SZ_4K); br x16`` at *pc*
    (x16, IP0, is the scratch register AAPCS64 lets a veneer clobber)."""
    return gen_adrp(pc, dst, 16), gen_add_imm(16, 16, dst % 4096), gen_br(16)


def plt_entries_equal(a: tuple[int, int, int], a_pc: int, b: tuple[int, int, int], b_pc: int) -> bool:
    """``plt_entries_equal``: the same ``add`` and ``br``, and ADRPs reaching the same page."""
    if a[1] != b[1] or a[2] != b[2]:
        return False
    p, q = a_pc & ~0xFFF, b_pc & ~0xFFF
    if a[0] == b[0] and p == q:
        return True
    return p + decode_adrp_offset(a[0]) == q + decode_adrp_offset(b[0])


def count_plts(mf, rel, randomize_base: bool) -> int:
    """``count_plts``: the branches of one relocation section that may need a PLT entry:
    CALL26/JUMP26 against a symbol of another section, a repeated (type, symbol, addend 0)
    counted once -- and only with CONFIG_RANDOMIZE_BASE."""
    if not randomize_base:
        return 0
    seen = set()
    n = 0
    for rtype, symi, addend in zip(rel.types, rel.symbols, rel.addends or [0] * len(rel)):
        if rtype not in (R_AARCH64_JUMP26, R_AARCH64_CALL26):
            continue
        if symi < len(mf.symbols) and mf.symbols[symi].shndx == rel.target:
            continue
        key = (rtype, symi, addend)
        if addend != 0 or key not in seen:
            n += 1
        seen.add(key)
    return n


def module_frob_arch_sections(kernel, mf, mod) -> str:
    """``module_frob_arch_sections``: the module must carry ``.plt`` and ``.init.plt`` (else
    ``%s: module PLT section(s) missing``, -ENOEXEC); each becomes SHT_NOBITS, executable,
    aligned to L1_CACHE_BYTES, sized for its part's PLT entries plus one."""
    core = next((s for s in mf.sections if s.name == ".plt"), None)
    init = next((s for s in mf.sections if s.name == ".init.plt"), None)
    if core is None or init is None:
        raise ModuleError(f"{MODULES(kernel.spec.kernel).module_msg_prefix}{mod.name}: module PLT section(s) missing",
                          ENOEXEC)
    if not any(s.type == SHT_SYMTAB for s in mf.sections):
        raise ModuleError(f"{MODULES(kernel.spec.kernel).module_msg_prefix}{mod.name}: module symtab section missing",
                          ENOEXEC)
    randomize = bool(kernel.layout.config.get("CONFIG_RANDOMIZE_BASE"))
    plts = {False: 0, True: 0}
    for rel in mf.relocations:
        dst = mf.sections[rel.target] if rel.target < len(mf.sections) else None
        if rel.section.type != SHT_RELA or dst is None or not dst.flags & SHF_EXECINSTR:
            continue  # "ignore relocations that operate on non-exec sections"
        plts[dst.name.startswith(".init")] += count_plts(mf, rel, randomize)
    for sec, is_init in ((core, False), (init, True)):
        mf.sections[sec.index] = replace(sec, type=SHT_NOBITS, flags=SHF_EXECINSTR | SHF_ALLOC,
                                         align=L1_CACHE_BYTES, size=(plts[is_init] + 1) * PLT_ENTRY_SIZE)
        mod.arch["init" if is_init else "core"] = {"plt_shndx": sec.index, "plt_num_entries": 0,
                                                   "plt_max_entries": plts[is_init]}
    return (f".plt {plts[False]} entries, .init.plt {plts[True]} entries (+1 each"
            + ("" if randomize else "; count_plts counts none without CONFIG_RANDOMIZE_BASE") + ")")


def _within_init(mod, place: int) -> bool:
    return any(r.init and r.base is not None and r.base <= place < r.base + r.size for r in mod.layout.regions)


def module_emit_plt_entry(kernel, mod, place: int, val: int) -> int:
    """``module_emit_plt_entry``: a PLT entry for *val* in the PLT of *place*'s part; its
    address, or 0 when the PLT is full (``WARN_ON(plt_num_entries > plt_max_entries)``)."""
    pltsec = mod.arch["init" if _within_init(mod, place) else "core"]
    base = mod.layout.placements[pltsec["plt_shndx"]].address
    i = pltsec["plt_num_entries"]
    j = i - 1
    entry = get_plt_entry(val, base + i * PLT_ENTRY_SIZE)
    kernel.write(base + i * PLT_ENTRY_SIZE, b"".join(w.to_bytes(4, "little") for w in entry))
    if j >= 0:
        prev = tuple(int.from_bytes(kernel.read(base + j * PLT_ENTRY_SIZE + 4 * k, 4), "little") for k in range(3))
        if plt_entries_equal(entry, base + i * PLT_ENTRY_SIZE, prev, base + j * PLT_ENTRY_SIZE):
            return base + j * PLT_ENTRY_SIZE
    pltsec["plt_num_entries"] += i - j
    if pltsec["plt_num_entries"] > pltsec["plt_max_entries"]:
        return 0
    return base + i * PLT_ENTRY_SIZE


def veneer(kernel, mod, kind, S: int, A: int, P: int, old: int, overflow) -> tuple[int, int]:
    """apply_relocate_add's repair of a CALL26/JUMP26 out of range (``if (ovf == -ERANGE)``):
    branch to a PLT entry instead; no entry left is -ENOEXEC after the WARN (no pr_err), a
    PLT itself out of range the usual overflow. (An ADRP at an erratum-843419 offset would
    need ``module_emit_veneer_for_adrp``; the emulated Cortex-A72 has no such erratum.)"""
    if isinstance(overflow, AdrpVeneer):
        raise ModuleError(f"module {mod.name}: no ADRP veneer: the emulated CPU has no erratum 843419", ENOEXEC)
    prefix = MODULES(kernel.spec.kernel).module_msg_prefix
    plt = module_emit_plt_entry(kernel, mod, P, (S + A) & ((1 << 64) - 1))
    if not plt:
        part = "init" if _within_init(mod, P) else "core"
        n = mod.arch[part]
        # the splat of a real one (LKML, March 2021, 'insert ko failed because count_plts return 0
        # when CONFIG_RANDOMIZE_BASE is not set'): "WARNING: CPU: 2 PID: 1998 at
        # arch/arm64/kernel/module-plts.c:39 module_emit_plt_entry+0x100/0x118"
        raise ModuleError(f"WARNING: CPU: 0 at arch/arm64/kernel/module-plts.c module_emit_plt_entry: "
                          f"WARN_ON(pltsec->plt_num_entries > pltsec->plt_max_entries) ({n['plt_num_entries']} > "
                          f"{n['plt_max_entries']}, {part} PLT of module {mod.name}): apply_relocate_add fails with "
                          "-ENOEXEC", ENOEXEC)
    try:
        return kind.apply(plt, 0, P, old)
    except RelocOverflow:  # the PLT itself out of range: "goto overflow" with val = the PLT's address
        raise ModuleError(f"{prefix}module {mod.name}: overflow in relocation type {kind.number} val {plt:x}",
                          ENOEXEC) from None
