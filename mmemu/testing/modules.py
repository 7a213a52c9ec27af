"""Relocatable objects made to order, for any arch that loads modules: what the
conformance suite, the fault-injection suite and the benchmarks load when no compiler for
the arch is at hand.

pyelftools reads ELF files but does not write them, so the object is assembled here with
:mod:`struct`: the sections a module has (``.text``, ``.rodata``, ``.data``, ``.bss``,
``.init.text``, ``.modinfo`` with the kernel's vermagic, the empty sections of the
kernel's module link the arch asks for), its symbols (section symbols,
``init_module``, ``cleanup_module``, imports of exported kernel functions) and one
relocation section for ``.text`` with the arch's own relocation types (those whose value
fits in the module area: tried against the arch's table before they are used).
"""

from __future__ import annotations

import random
import struct

from elftools.elf.enums import ENUM_E_MACHINE

from ..module.reloc import RelocError, RelocOverflow, RelocSection
from ..units import PAGE_SIZE

_SHT = {"PROGBITS": 1, "SYMTAB": 2, "STRTAB": 3, "RELA": 4, "NOBITS": 8, "REL": 9}
_SHF_WRITE, _SHF_ALLOC, _SHF_EXEC = 1, 2, 4


class _NoModule:
    """The module of a lone probe entry: a resolve that needs the module (a PLT or GOT
    entry to make) finds none."""

    def __getattr__(self, name):
        raise RelocError(f"a lone entry has no module ({name})")

    def section_address(self, name):
        raise RelocError(f"a lone entry has no module (section {name})")


def _no_write(va: int, data: bytes) -> None:
    raise RelocError("a lone entry writes no module memory")


def _usable_types(kernel) -> list:
    """The arch's relocation types (of a non-zero width) whose value fits when a module's
    code refers to the module area and to the kernel's text, and that stand on their own
    (the table's ``resolve`` asks nothing of other entries or of the module: not riscv64's
    PCREL_LO12, which names its HI20 entry, nor a GOT or PLT entry)."""
    table = kernel.arch.module_relocations(kernel.spec)
    start, end, _ = kernel.arch.module_alloc(kernel.spec, kernel.layout)
    text = next(s for s in kernel.layout.image if s.name == "text")
    P = start + 64
    out = []
    for t in table.types.values():
        try:
            for S in (start, end - PAGE_SIZE, text.virt):
                if table.resolve is not None:
                    alone = RelocSection([64], [t.number], [1], [0], [0, S], start, _NoModule(), _no_write)
                    S_, A_ = table.resolve(alone, 0, S, 0)
                    if (S_, A_) != (S, 0):
                        raise RelocError("resolved from elsewhere")
                width, _ = t.apply(S, 0, P, 0) if t.insn else t.apply(S, 0, P)
        except (RelocOverflow, RelocError):
            continue
        if width:
            out.append(t)
    return out


def synthetic_module(kernel, name: str = "synthetic", text_size: int = PAGE_SIZE, relocations: int = 32,
                     seed: int = 1, imports: int = 3, license: str = "GPL") -> bytes:
    """A module for *kernel*'s arch and era: *text_size* bytes of .text carrying
    *relocations* relocations (spread over the arch's usable types, against the module's
    own sections and *imports* exported kernel functions), an init part, and a .modinfo
    that passes check_modinfo; no init_module or cleanup_module (nothing runs on the
    CPU). Deterministic for a *seed*. *license*: its ``MODULE_LICENSE`` (``.modinfo``
    ``license=``)."""
    table = kernel.arch.module_relocations(kernel.spec)
    if table is None:
        raise ValueError(f"arch {kernel.arch.name} loads no modules")
    bits64 = kernel.paging.bits64
    rng = random.Random(seed)
    types = _usable_types(kernel)
    stride = 16
    text_size = max(text_size, relocations * stride + 16)

    # -- sections' contents
    modinfo = b"".join(f"{k}={v}\0".encode() for k, v in (("license", license), ("name", name),
                                                           ("vermagic", kernel.arch.vermagic(kernel.spec))))
    contents = {
        ".text": bytearray(text_size),
        ".rodata": bytes(range(64)),
        ".data": bytes(64),
        ".init.text": bytes(16),
        ".modinfo": modinfo,
    }
    # name, type, flags, align, size (for NOBITS)
    layout = [(".text", "PROGBITS", _SHF_ALLOC | _SHF_EXEC, 16), (".rodata", "PROGBITS", _SHF_ALLOC, 8),
              (".data", "PROGBITS", _SHF_ALLOC | _SHF_WRITE, 8), (".bss", "NOBITS", _SHF_ALLOC | _SHF_WRITE, 8),
              (".init.text", "PROGBITS", _SHF_ALLOC | _SHF_EXEC, 16), (".modinfo", "PROGBITS", _SHF_ALLOC, 1)]
    # the empty sections of the kernel's module link the arch's loader needs (arm64's PLTs, riscv64's PLT and GOT):
    # one byte each, as "BYTE(0)" in the linker script leaves them
    for n in kernel.arch.module_linker_sections(kernel.spec):
        layout.append((n, "PROGBITS", _SHF_ALLOC, 1))
        contents[n] = b"\0"
    index = {n: i + 1 for i, (n, *_) in enumerate(layout)}

    # -- symbols: null, a section symbol per loaded section, then globals
    names = list(kernel.ksymtab)[:imports]
    strtab = bytearray(b"\0")

    def string(s: str) -> int:
        off = len(strtab)
        strtab.extend(s.encode() + b"\0")
        return off

    syms = [(0, 0, 0, 0, 0)]  # name, value, size, info, shndx
    for sec in (".text", ".rodata", ".data", ".bss", ".init.text"):
        syms.append((0, 0, 0, 3, index[sec]))  # STB_LOCAL, STT_SECTION
    first_global = len(syms)
    # functions of no code (zeros): named so that the loader finds no init_module or
    # cleanup_module to run, as in a module without module_init/module_exit
    syms.append((string(f"{name}_init"), 0, 16, (1 << 4) | 2, index[".init.text"]))
    syms.append((string(f"{name}_exit"), 0, 16, (1 << 4) | 2, index[".text"]))
    imported = []
    for n in names:
        imported.append(len(syms))
        syms.append((string(n), 0, 0, (1 << 4) | 0, 0))  # STB_GLOBAL, STT_NOTYPE, undefined
    targets = list(range(1, first_global)) + imported

    # -- relocations of .text, one every *stride* bytes
    rels = []
    text = contents[".text"]
    for i in range(relocations):
        t = types[i % len(types)]
        off = 16 + i * stride
        sym = targets[rng.randrange(len(targets))]
        addend = rng.randrange(0, 32) if sym < first_global else 0
        if table.rela:
            rels.append((off, t.number, sym, addend))
        else:
            text[off:off + t.width] = addend.to_bytes(t.width, "little")
            rels.append((off, t.number, sym, None))

    # -- the file: header, section data, then the section headers
    if bits64:
        sym_fmt, sym_pack = "<IBBHQQ", lambda s: (s[0], s[3], 0, s[4], s[1], s[2])
        rel_fmt = "<QQq" if table.rela else "<QQ"
        info = lambda sym, typ: (sym << 32) | typ
        ehsize, shentsize = 64, 64
    else:
        sym_fmt, sym_pack = "<IIIBBH", lambda s: (s[0], s[1], s[2], s[3], 0, s[4])
        rel_fmt = "<IIi" if table.rela else "<II"
        info = lambda sym, typ: (sym << 8) | typ
        ehsize, shentsize = 52, 40
    symtab = b"".join(struct.pack(sym_fmt, *sym_pack(s)) for s in syms)
    reltab = b"".join(struct.pack(rel_fmt, off, info(sym, typ), *(() if a is None else (a,)))
                      for off, typ, sym, a in rels)
    relname = ".rela.text" if table.rela else ".rel.text"
    sections = [(n, _SHT[t], f, a, contents.get(n, b""), 0, 0, 0) for n, t, f, a in layout]
    sym_index = len(sections) + 1
    sections.append((".symtab", _SHT["SYMTAB"], 0, 8, symtab, sym_index + 1, first_global,
                     struct.calcsize(sym_fmt)))
    sections.append((".strtab", _SHT["STRTAB"], 0, 1, bytes(strtab), 0, 0, 0))
    sections.append((relname, _SHT["RELA" if table.rela else "REL"], 0, 8, reltab, sym_index, index[".text"],
                     struct.calcsize(rel_fmt)))
    shstr = bytearray(b"\0")
    name_off = []
    for n, *_ in sections + [(".shstrtab",)]:
        name_off.append(len(shstr))
        shstr.extend(n.encode() + b"\0")
    sections.append((".shstrtab", _SHT["STRTAB"], 0, 1, bytes(shstr), 0, 0, 0))

    body = bytearray()
    offsets = []
    for n, typ, flags, align, data, *_ in sections:
        pos = ehsize + len(body)
        pad = (-pos) % max(align, 1)
        body.extend(bytes(pad))
        offsets.append(ehsize + len(body))
        if typ != _SHT["NOBITS"]:
            body.extend(data)
    shoff = ehsize + len(body) + ((-(ehsize + len(body))) % 8)
    body.extend(bytes(shoff - ehsize - len(body)))
    shdrs = bytearray(bytes(shentsize))  # the null section
    for i, (n, typ, flags, align, data, link, sinfo, entsize) in enumerate(sections):
        size = 64 if n == ".bss" else len(data)
        if bits64:
            shdrs += struct.pack("<IIQQQQIIQQ", name_off[i], typ, flags, 0, offsets[i], size, link, sinfo, align,
                                 entsize)
        else:
            shdrs += struct.pack("<IIIIIIIIII", name_off[i], typ, flags, 0, offsets[i], size, link, sinfo, align,
                                 entsize)
    machine = ENUM_E_MACHINE[kernel.arch.elf_machine]
    ident = b"\x7fELF" + bytes([2 if bits64 else 1, 1, 1, 0]) + bytes(8)
    if bits64:
        header = ident + struct.pack("<HHIQQQIHHHHHH", 1, machine, 1, 0, 0, shoff, 0, ehsize, 0, 0, shentsize,
                                     len(sections) + 1, len(sections))
    else:
        header = ident + struct.pack("<HHIIIIIHHHHHH", 1, machine, 1, 0, 0, shoff, 0, ehsize, 0, 0, shentsize,
                                     len(sections) + 1, len(sections))
    return bytes(header) + bytes(body) + bytes(shdrs)
