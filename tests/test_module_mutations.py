"""Malformed modules: a mutation corpus over the example objects (hypothesis), and the named
cases of the issue one by one.

Every mutant of an example object (examples/modules/build: both arches, every era) is
loaded into a kernel booted once per (arch, era) and kept across the mutants; the loader
runs the module's init (and rmmod its exit) on the CPU, with an instruction budget.
Whatever the mutant is, the load

- is refused with one of mmemu's own errors (:class:`mmemu.errors.MmemuError`: a
  TypeError, an OverflowError, a struct.error or an exception of pyelftools is a bug),
  with a message that names what is wrong (not empty, no Python repr of an internal
  object, not Python's own words), and the kernel exactly as it was:
  :func:`mmemu.testing.kernel_state` (frames, page tables, slabs, vmap areas, counters),
  RAM (by checksum) and the loader's records (the modules, the export table, the call
  traps, the stubs);
- or oopses in the module's init (the kernel's answer, not a refusal: insmod is killed and
  the module stays listed, COMING), with the kernel's invariants holding;
- or succeeds, and then the module unloads (its exit may oops, the kernel's answer again,
  or fail, and then it is removed without it), the kernel's invariants hold, and once the
  lazily freed areas are purged nothing of the loader's is left: no module in
  ``k.modules``, no vmap area and no frame of ``module_alloc``.

A load taking more than ``MMEMU_MUTANT_SECONDS`` (20) fails the mutant.

The mutations are structural, not only random bytes: ELF header fields (e_shoff, e_shnum,
e_shstrndx, e_shentsize, e_machine, EI_CLASS...), any field of any section header, any
field of any symbol (st_shndx SHN_COMMON/SHN_ABS/out of range, st_value, st_name...), any
part of any relocation (r_offset beyond its section, a symbol index out of range, unknown
types, addends, the whole table rewritten as the other kind, REL/RELA), .modinfo (a
changed vermagic, a missing tag, missing NULs, the license), code (loops, privileged and
invalid instructions, random bytes at a function's entry) and the raw ones (bit flips,
bytes and words overwritten, truncation, bytes deleted, inserted or copied over others,
section headers swapped). A mutant is one to three of them.

``MMEMU_MUTANTS`` (default 400: under a minute on two cores) is the number of mutants,
spread over the machines; ``MMEMU_MUTANTS=5000`` runs thousands. ``pytest -s`` prints what
the mutants of each machine did. ``MMEMU_MUTANT_BUDGET`` (200000) is the instruction
budget of init and exit.

The last section, ``test_reproducer_<n>``, holds the smallest mutant found for each way the
corpus made mmemu fail (an exception not its own, a kernel or RAM not as it was, broken
invariants).
"""

from __future__ import annotations

import os
import re
import signal
import struct
import threading
import time
import zlib
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import NamedTuple

import pytest
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

import mmemu
from mmemu.errors import MmemuError, ModuleError, Oops
from mmemu.module.elf import SHT_NOBITS, ModuleFile
from mmemu.testing import kernel_state

BUILD = Path(__file__).resolve().parent.parent / "examples" / "modules" / "build"
MODULES = ("hello", "vbuf", "highpage", "kmap_nested", "rodata_oops")
MUTANTS = int(os.environ.get("MMEMU_MUTANTS", "560"))  # 43 a machine: enough that some load
#: seconds one load may take before the mutant counts as a hang
LOAD_TIME_LIMIT = float(os.environ.get("MMEMU_MUTANT_SECONDS", "20"))
#: the instruction budget of a mutant's init and exit (the examples need under 100000;
#: the default 10 million would make each runaway mutant a 10 s one)
BUDGET = int(os.environ.get("MMEMU_MUTANT_BUDGET", "200000"))

#: (arch, era, RAM, compare RAM): the objects of an era on a kernel of that era. 64 MiB
#: machines are compared byte for byte (a CRC of all of RAM, 20 ms); the 1 GiB i386 one,
#: whose module pages come from HighMem, on everything but its RAM.
MACHINES = (
    ("i386", "3.10", "64M", True),
    ("i386_pae", "4.19", "64M", True),
    ("i386", "5.10", "64M", True),
    ("i386_pae", "6.6", "64M", True),
    ("x86_64", "3.10", "64M", True),
    ("x86_64", "4.19", "64M", True),
    ("x86_64", "5.10", "64M", True),
    ("x86_64", "6.6", "64M", True),
    ("i386", "6.6", "1G", False),
    ("arm64", "4.19", "64M", True),
    ("arm64", "6.6", "64M", True),
    ("riscv64", "5.10", "64M", True),
    ("riscv64", "6.6", "64M", True),
)
PER_MACHINE = max(1, MUTANTS // len(MACHINES))


def obj_path(arch: str, era: str, name: str) -> Path:
    return BUILD / f"{arch if arch in ('x86_64', 'arm64', 'riscv64') else 'i386'}-{era}" / f"{name}.o"


# -- the layout of an object: where each field is -------------------------------------------------

# (offset, struct format) of each field; little-endian throughout
EHDR32 = {"e_type": (16, "H"), "e_machine": (18, "H"), "e_version": (20, "I"), "e_entry": (24, "I"),
          "e_phoff": (28, "I"), "e_shoff": (32, "I"), "e_flags": (36, "I"), "e_ehsize": (40, "H"),
          "e_phentsize": (42, "H"), "e_phnum": (44, "H"), "e_shentsize": (46, "H"), "e_shnum": (48, "H"),
          "e_shstrndx": (50, "H")}
EHDR64 = {"e_type": (16, "H"), "e_machine": (18, "H"), "e_version": (20, "I"), "e_entry": (24, "Q"),
          "e_phoff": (32, "Q"), "e_shoff": (40, "Q"), "e_flags": (48, "I"), "e_ehsize": (52, "H"),
          "e_phentsize": (54, "H"), "e_phnum": (56, "H"), "e_shentsize": (58, "H"), "e_shnum": (60, "H"),
          "e_shstrndx": (62, "H")}
IDENT = {"EI_CLASS": (4, "B"), "EI_DATA": (5, "B"), "EI_VERSION": (6, "B"), "EI_OSABI": (7, "B")}
SHDR32 = {"sh_name": (0, "I"), "sh_type": (4, "I"), "sh_flags": (8, "I"), "sh_addr": (12, "I"),
          "sh_offset": (16, "I"), "sh_size": (20, "I"), "sh_link": (24, "I"), "sh_info": (28, "I"),
          "sh_addralign": (32, "I"), "sh_entsize": (36, "I")}
SHDR64 = {"sh_name": (0, "I"), "sh_type": (4, "I"), "sh_flags": (8, "Q"), "sh_addr": (16, "Q"),
          "sh_offset": (24, "Q"), "sh_size": (32, "Q"), "sh_link": (40, "I"), "sh_info": (44, "I"),
          "sh_addralign": (48, "Q"), "sh_entsize": (56, "Q")}
SYM32 = {"st_name": (0, "I"), "st_value": (4, "I"), "st_size": (8, "I"), "st_info": (12, "B"),
         "st_other": (13, "B"), "st_shndx": (14, "H")}
SYM64 = {"st_name": (0, "I"), "st_info": (4, "B"), "st_other": (5, "B"), "st_shndx": (6, "H"),
         "st_value": (8, "Q"), "st_size": (16, "Q")}


@dataclass(frozen=True)
class Obj:
    """An unmutated example object and where its fields are."""

    arch: str
    era: str
    name: str
    data: bytes
    mf: ModuleFile

    @property
    def bits64(self) -> bool:
        return self.mf.elfclass == 64

    @property
    def ehdr(self) -> dict:
        return EHDR64 if self.bits64 else EHDR32

    @property
    def shdr(self) -> dict:
        return SHDR64 if self.bits64 else SHDR32

    @property
    def sym(self) -> dict:
        return SYM64 if self.bits64 else SYM32

    @property
    def shoff(self) -> int:
        off, fmt = self.ehdr["e_shoff"]
        return struct.unpack_from("<" + fmt, self.data, off)[0]

    @property
    def shentsize(self) -> int:
        return 64 if self.bits64 else 40

    @property
    def symentsize(self) -> int:
        return 24 if self.bits64 else 16

    def shdr_field(self, index: int, field: str) -> tuple[int, str]:
        off, fmt = self.shdr[field]
        return self.shoff + index * self.shentsize + off, fmt

    def sym_field(self, index: int, field: str) -> tuple[int, str]:
        off, fmt = self.sym[field]
        return self.mf.sections[self.mf.symtab_index].offset + index * self.symentsize + off, fmt

    def rel_entry(self, rel, i: int) -> int:
        """The file offset of relocation *i* of the Relocations *rel*."""
        esize = (24 if rel.rela else 16) if self.bits64 else (12 if rel.rela else 8)
        return rel.section.offset + i * esize

    def read(self, off: int, fmt: str) -> int:
        return struct.unpack_from("<" + fmt, self.data, off)[0]


@cache
def load_obj(arch: str, era: str, name: str) -> Obj:
    data = obj_path(arch, era, name).read_bytes()
    return Obj(arch, era, name, data, ModuleFile(data, f"{name}.o"))


# -- mutations ---------------------------------------------------------------------------------------


class Mutation(NamedTuple):
    """One change to the object's bytes. *kind*: ``field`` (pack *value* = (offset, format,
    number) there), ``patch`` (value = (offset, bytes)), ``flip`` (value = (offset, bit)),
    ``truncate`` (value = new length), ``delete`` (value = (offset, n)), ``insert``
    (value = (offset, bytes)), ``copy`` (value = (from, to, n)), ``swap`` (value = (offset
    a, offset b, n): two section headers swapped), ``multi`` (value = mutations made in
    order: one change of several fields). *what* says what it is in words."""

    what: str
    kind: str
    value: tuple | int

    def __repr__(self) -> str:  # long byte strings cut: a falsifying example stays readable
        def short(v):
            if isinstance(v, Mutation):
                return repr(v)
            if isinstance(v, bytes) and len(v) > 24:
                return f"{v[:16]!r}...({len(v)} bytes)"
            if isinstance(v, tuple):
                return "(" + ", ".join(short(x) for x in v) + ("," if len(v) == 1 else "") + ")"
            return repr(v)
        return f"Mutation({self.what!r}, {self.kind!r}, {short(self.value)})"


def apply(data: bytes, mutations) -> bytes:
    """*data* with *mutations* made in order (a change past the end of the file as it then
    is is left out)."""
    buf = bytearray(data)
    for m in mutations:
        kind, v = m.kind, m.value
        if kind == "field":
            off, fmt, number = v
            if off + struct.calcsize("<" + fmt) <= len(buf):
                struct.pack_into("<" + fmt, buf, off, number)
        elif kind == "patch":
            off, raw = v
            if off + len(raw) <= len(buf):
                buf[off:off + len(raw)] = raw
        elif kind == "flip":
            off, bit = v
            if off < len(buf):
                buf[off] ^= 1 << bit
        elif kind == "truncate":
            del buf[v:]
        elif kind == "delete":
            off, n = v
            del buf[off:off + n]
        elif kind == "insert":
            off, raw = v
            buf[off:off] = raw
        elif kind == "copy":
            src, dst, n = v
            chunk = bytes(buf[src:src + n])[:max(0, len(buf) - dst)]
            buf[dst:dst + len(chunk)] = chunk
        elif kind == "multi":
            buf = bytearray(apply(bytes(buf), v))
        elif kind == "swap":
            a, b, n = v
            if max(a, b) + n <= len(buf):
                buf[a:a + n], buf[b:b + n] = bytes(buf[b:b + n]), bytes(buf[a:a + n])
        else:  # pragma: no cover
            raise AssertionError(f"unknown mutation kind {kind}")
    return bytes(buf)


def _bits(fmt: str) -> int:
    return 8 * struct.calcsize("<" + fmt)


SPECIALS = (0, 1, 2, 3, 4, 7, 8, 15, 16, 0x20, 0x3F, 0x40, 0x7F, 0x80, 0xFF, 0x100, 0x1000, 0x7FFF, 0x8000, 0xFFFF,
            0x10000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 1 << 32, (1 << 63) - 1, 1 << 63)


def numbers(fmt: str, original: int, extra=()) -> st.SearchStrategy[int]:
    """Values for a field of *fmt*: the edges, the ones this object makes interesting
    (*extra*: the file's length, another section's offset...), near the original, any."""
    bits = _bits(fmt)
    if fmt in "bhiq":  # signed
        lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
        specials = sorted({lo, hi, -1, -2, -4, -8, -0x1000, 0, 1, 4, 8, 0x1000} | {e for e in extra if lo <= e <= hi})
        return st.one_of(st.sampled_from(specials), st.integers(-64, 64).map(lambda d: max(lo, min(hi, original + d))),
                         st.integers(lo, hi))
    top = (1 << bits) - 1
    specials = sorted({s & top for s in SPECIALS} | {top, top - 1, top >> 1} | {e & top for e in extra if e >= 0})
    return st.one_of(st.sampled_from(specials), st.integers(-64, 64).map(lambda d: (original + d) & top),
                     st.integers(0, top))


def _field_mutation(draw, obj: Obj, what: str, off: int, fmt: str, extra=()) -> Mutation:
    original = obj.read(off, fmt)
    value = draw(numbers(fmt, original, extra))
    return Mutation(f"{what} {original:#x} -> {value:#x}", "field", (off, fmt, value))


@st.composite
def raw_mutation(draw, obj: Obj) -> Mutation:
    """Bytes, whatever they mean."""
    n = len(obj.data)
    kind = draw(st.sampled_from(["flip", "byte", "word", "truncate", "delete", "insert", "copy", "swap"]))
    if kind == "flip":
        off, bit = draw(st.integers(0, n - 1)), draw(st.integers(0, 7))
        return Mutation(f"bit {bit} of byte {off:#x} flipped", "flip", (off, bit))
    if kind == "byte":
        off = draw(st.integers(0, n - 1))
        value = draw(st.sampled_from([0, 1, 0x7F, 0x80, 0xFF]) | st.integers(0, 255))
        return Mutation(f"byte {off:#x} = {value:#x}", "field", (off, "B", value))
    if kind == "word":
        fmt = draw(st.sampled_from(["H", "I", "Q"]))
        size = struct.calcsize("<" + fmt)
        off = draw(st.integers(0, (n - size) // size)) * size
        value = draw(numbers(fmt, obj.read(off, fmt), (n, n - 1, obj.shoff)))
        return Mutation(f"{fmt} at {off:#x} = {value:#x}", "field", (off, fmt, value))
    if kind == "truncate":
        ends = [0, 4, 16, 17, 40, 52, 63, 64, obj.shoff, obj.shoff + 1, n - 1]
        ends += [obj.shoff + i * obj.shentsize + d for i in range(len(obj.mf.sections)) for d in (0, 20)]
        ends += [s.offset + s.size - d for s in obj.mf.sections if not s.nobits for d in (0, 1)]
        length = draw(st.sampled_from(sorted({e for e in ends if 0 <= e < n})) | st.integers(0, n - 1))
        return Mutation(f"truncated to {length} bytes", "truncate", length)
    if kind == "delete":
        off, k = draw(st.integers(0, n - 1)), draw(st.integers(1, 64))
        return Mutation(f"{k} bytes deleted at {off:#x}", "delete", (off, k))
    if kind == "insert":
        off, raw = draw(st.integers(0, n)), draw(st.binary(min_size=1, max_size=64))
        return Mutation(f"{len(raw)} bytes inserted at {off:#x}", "insert", (off, raw))
    if kind == "copy":
        src, dst, k = draw(st.integers(0, n - 1)), draw(st.integers(0, n - 1)), draw(st.integers(1, 256))
        return Mutation(f"{k} bytes copied from {src:#x} to {dst:#x}", "copy", (src, dst, k))
    nsec = len(obj.mf.sections)
    a, b = draw(st.integers(0, nsec - 1)), draw(st.integers(0, nsec - 1))
    return Mutation(f"section headers {a} and {b} swapped", "swap",
                    (obj.shoff + a * obj.shentsize, obj.shoff + b * obj.shentsize, obj.shentsize))


@st.composite
def header_mutation(draw, obj: Obj) -> Mutation:
    """A field of the ELF header (e_ident's class, data, version included)."""
    fields = {**IDENT, **obj.ehdr}
    name = draw(st.sampled_from(sorted(fields)))
    off, fmt = fields[name]
    n, nsec = len(obj.data), len(obj.mf.sections)
    extra = {"EI_CLASS": (0, 1, 2, 3), "EI_DATA": (0, 1, 2), "e_machine": (0, 3, 6, 40, 62, 183, 243),
             "e_type": (0, 1, 2, 3, 4, 0xFE00, 0xFF00),
             "e_shoff": (n, n - 1, n - obj.shentsize, obj.shoff + obj.shentsize, 52, 64),
             "e_shnum": (0, 1, nsec - 1, nsec + 1, 0xFFFF), "e_shstrndx": (0, nsec - 1, nsec, nsec + 1, 0xFFFF),
             "e_shentsize": (0, 40, 64, 39, 41, 63, 65)}.get(name, ())
    return _field_mutation(draw, obj, f"ELF header {name}", off, fmt, extra)


@st.composite
def section_mutation(draw, obj: Obj) -> Mutation:
    """A field of a section header (the null section's too)."""
    secs = obj.mf.sections
    i = draw(st.integers(0, len(secs) - 1))
    name = draw(st.sampled_from(sorted(obj.shdr)))
    off, fmt = obj.shdr_field(i, name)
    n, nsec = len(obj.data), len(secs)
    sec = secs[i]
    shstrtab = secs[obj.read(*obj.ehdr["e_shstrndx"])]
    shstr = obj.data[shstrtab.offset:shstrtab.offset + shstrtab.size]
    extra = {
        "sh_offset": [n, n - 1, n - sec.size, n - sec.size + 1, obj.shoff] + [s.offset for s in secs]
        + [s.offset + s.size // 2 for s in secs],
        "sh_size": [n, n - sec.offset, n - sec.offset + 1, sec.size + 1, sec.size - 1] + [s.size for s in secs],
        "sh_link": list(range(nsec + 2)) + [obj.mf.symtab_index],
        "sh_info": list(range(nsec + 2)) + [len(obj.mf.symbols), len(obj.mf.symbols) + 1],
        "sh_type": list(range(20)) + [0x6FFFFFF6, 0x70000001, 0x7FFFFFFF],
        "sh_flags": [1, 2, 3, 4, 6, 7, 0x10, 0x20, 0x30, 0x40, 0x80, 0x200, 0x200000, 0x200002, 0x80000000],
        "sh_addralign": [0, 1, 2, 3, 5, 6, 12, 16, 64, 4096, 1 << 20, 1 << 31, 1 << 63],
        "sh_entsize": [0, 1, 8, 12, 16, 24, 25],
        # every name and every tail of one (".init.text" inside ".rela.init.text", "text"...)
        "sh_name": [0, 1, shstrtab.size - 1, shstrtab.size] + [j for j, c in enumerate(shstr) if c in b"._"]
        + [j + 1 for j, c in enumerate(shstr) if c in b"._"],
    }.get(name, ())
    if name == "sh_size" and sec.nobits:  # no bytes in the file: any size, up to more than RAM
        extra = list(extra) + [1 << 16, 1 << 20, 1 << 24, 48 << 20, 1 << 26, 1 << 30]
    return _field_mutation(draw, obj, f"section {i} ({sec.name or 'null'}) {name}", off, fmt, extra)


@st.composite
def symbol_mutation(draw, obj: Obj) -> Mutation:
    """A field of a symbol (the null symbol's too)."""
    syms = obj.mf.symbols
    i = draw(st.integers(0, len(syms) - 1))
    name = draw(st.sampled_from(sorted(obj.sym)))
    off, fmt = obj.sym_field(i, name)
    nsec = len(obj.mf.sections)
    strtab = obj.mf.sections[obj.mf.sections[obj.mf.symtab_index].link]
    extra = {
        # SHN_UNDEF, SHN_LORESERVE, SHN_LIVEPATCH, SHN_ABS, SHN_COMMON, SHN_XINDEX, and past the sections
        "st_shndx": [0, 0xFF00, 0xFF1F, 0xFF20, 0xFFF1, 0xFFF2, 0xFFF3, 0xFFFF, nsec - 1, nsec, nsec + 1]
        + list(range(nsec)),
        "st_name": [0, strtab.size - 1, strtab.size, strtab.size + 1],
        "st_info": [0x00, 0x01, 0x02, 0x03, 0x04, 0x10, 0x11, 0x12, 0x13, 0x20, 0x22, 0xA0, 0x0A],
        "st_value": [0x1000, 1 << 31, 1 << 32],
    }.get(name, ())
    label = syms[i].name or f"section symbol of {syms[i].shndx}" if i else "null"
    return _field_mutation(draw, obj, f"symbol {i} ({label}) {name}", off, fmt, extra)


@st.composite
def relocation_mutation(draw, obj: Obj) -> Mutation:
    """One part of one relocation: r_offset, the symbol or the type of r_info, the addend."""
    rels = [r for r in obj.mf.relocations if len(r)]
    rel = draw(st.sampled_from(rels))
    i = draw(st.integers(0, len(rel) - 1))
    entry = obj.rel_entry(rel, i)
    parts = ["r_offset", "symbol", "type", "format"] + (["r_addend"] if rel.rela else [])
    part = draw(st.sampled_from(parts))
    if part == "format":
        return other_format(obj, rel)
    word = "Q" if obj.bits64 else "I"
    where = f"relocation {i} of {rel.section.name}"
    target = obj.mf.sections[rel.target]
    if part == "r_offset":
        return _field_mutation(draw, obj, f"{where} r_offset", entry, word,
                               [target.size - d for d in range(9)] + [target.size + 1, 1 << 31])
    if part == "r_addend":
        return _field_mutation(draw, obj, f"{where} r_addend", entry + (16 if obj.bits64 else 8), "q" if obj.bits64
                               else "i", [1 << 31, -(1 << 31), (1 << 31) - 1])
    shift, mask = (32, 0xFFFFFFFF) if obj.bits64 else (8, 0xFF)
    info_off = entry + (8 if obj.bits64 else 4)
    info = obj.read(info_off, word)
    sym, rtype = info >> shift, info & mask
    nsym = len(obj.mf.symbols)
    if part == "symbol":
        top = (1 << (_bits(word) - shift)) - 1
        new = draw(st.sampled_from([0, nsym - 1, nsym, nsym + 1, top]) | st.integers(0, nsym - 1) | st.integers(0, top))
        return Mutation(f"{where} symbol {sym} -> {new}", "field", (info_off, word, (new << shift) | rtype))
    new = draw(st.integers(0, 50) | st.sampled_from([0xFF, mask]) | st.integers(0, mask))
    return Mutation(f"{where} type {rtype} -> {new}", "field", (info_off, word, (sym << shift) | new))


def other_format(obj: Obj, rel) -> Mutation:
    """The relocation section rewritten as the other kind (SHT_REL as SHT_RELA with the
    addends it would have had, SHT_RELA as SHT_REL without them), entries and all, at the
    end of the file."""
    if obj.bits64:
        shift, fmt = 32, ("<QQ" if rel.rela else "<QQq")
    else:
        shift, fmt = 8, ("<II" if rel.rela else "<IIi")
    entries = []
    for j, (off, typ, sym) in enumerate(zip(rel.offsets, rel.types, rel.symbols)):
        entries.append(struct.pack(fmt, off, (sym << shift) | typ, *(() if rel.rela else (0,))))
    body = b"".join(entries)
    at = len(obj.data)
    new_type, entsize = (9, struct.calcsize(fmt)) if rel.rela else (4, struct.calcsize(fmt))
    i = rel.section.index
    return Mutation(f"relocation section {i} ({rel.section.name}) rewritten as {'SHT_REL' if rel.rela else 'SHT_RELA'}",
                    "multi", (Mutation("", "insert", (at, body)),
                              Mutation("", "field", (*obj.shdr_field(i, "sh_offset"), at)),
                              Mutation("", "field", (*obj.shdr_field(i, "sh_size"), len(body))),
                              Mutation("", "field", (*obj.shdr_field(i, "sh_type"), new_type)),
                              Mutation("", "field", (*obj.shdr_field(i, "sh_entsize"), entsize))))


#: instructions that are interesting to find in a module's code
CODE = (b"\xeb\xfe", b"\xc3", b"\x0f\x0b", b"\xcc", b"\xf4", b"\xcd\x80", b"\x0f\x05", b"\x0f\x34", b"\xfa", b"\xcf",
        b"\x0f\x22\xd8", b"\x0f\x20\xd8", b"\x0f\x01\xf8", b"\x0f\x30", b"\x0f\x32", b"\xee", b"\xec", b"\xff\xe0",
        b"\xff\xd0", b"\x8f\x00", b"\xc2\x00\x10", b"\x0f\x01\x10", b"\xf0\x0f\xc7\x08", b"\x66\x0f\x38\x00\xc0")


@st.composite
def code_mutation(draw, obj: Obj) -> Mutation:
    """Bytes of code (an SHF_EXECINSTR section): at a function's entry or anywhere, an
    interesting instruction (a loop, ret, ud2, int3, hlt, int 0x80, syscall, cli, iret,
    mov to/from cr3, swapgs, wrmsr, in/out, an indirect jump...) or random bytes."""
    secs = [s for s in obj.mf.sections if s.flags & 0x4 and s.size and not s.nobits]
    sec = draw(st.sampled_from(secs))
    entries = [sym.value for sym in obj.mf.symbols if sym.shndx == sec.index and sym.value < sec.size]
    off = draw(st.sampled_from(sorted(set(entries) | {0})) | st.integers(0, sec.size - 1))
    code = draw(st.sampled_from(CODE) | st.binary(min_size=1, max_size=8))
    code = code[:sec.size - off]
    return Mutation(f"{sec.name}+{off:#x} = {code.hex()}", "patch", (sec.offset + off, code))


@st.composite
def modinfo_mutation(draw, obj: Obj) -> Mutation:
    """.modinfo: the vermagic changed, a tag renamed, NULs gone, its size cut."""
    sec = obj.mf.section_by_name(".modinfo")
    body = obj.data[sec.offset:sec.offset + sec.size]
    vm = body.find(b"vermagic=")
    kind = draw(st.sampled_from(["vermagic", "tag", "nul", "nuls", "size", "name", "license"]))
    if kind == "license":  # a license that taints (P), or none
        pos = body.find(b"license=")
        ch = draw(st.sampled_from([b"X", b"\0", b"g"]))
        return Mutation(f".modinfo license's first byte = {ch!r}", "patch", (sec.offset + pos + 8, ch))
    if kind == "vermagic":  # one character of the value
        end = body.find(b"\0", vm)
        pos = draw(st.integers(vm + len(b"vermagic="), end - 1))
        ch = draw(st.sampled_from([b"0", b"9", b" ", b".", b"\xff", b"\0", b"="]) | st.binary(min_size=1, max_size=1))
        return Mutation(f".modinfo vermagic byte {pos - vm - 9} = {ch!r}", "patch", (sec.offset + pos, ch))
    if kind == "tag":  # vermagic= (or another tag) no longer a tag
        starts = [0] + [j + 1 for j, c in enumerate(body[:-1]) if c == 0]
        start = draw(st.sampled_from(starts))
        eq = body.find(b"=", start)
        pos = draw(st.integers(start, max(start, eq)))
        return Mutation(f".modinfo tag byte {pos} = 'X'", "patch", (sec.offset + pos, b"X"))
    if kind == "nul":  # one string runs into the next
        nuls = [j for j, c in enumerate(body) if c == 0]
        pos = draw(st.sampled_from(nuls))
        return Mutation(f".modinfo NUL at {pos} replaced", "patch", (sec.offset + pos, b"x"))
    if kind == "nuls":  # no string ends
        return Mutation(".modinfo without NULs", "patch", (sec.offset, body.replace(b"\0", b"x")))
    if kind == "name":  # name= (5.3+ objects) emptied or made strange
        pos = body.find(b"name=")
        if pos < 0:
            return Mutation(".modinfo name= appended over the last byte", "patch",
                            (sec.offset + sec.size - 1, b"n"))
        ch = draw(st.sampled_from([b"\0", b"/", b"-", b" ", b"\xff"]))
        return Mutation(f".modinfo name's first byte = {ch!r}", "patch", (sec.offset + pos + 5, ch))
    off, fmt = obj.shdr_field(sec.index, "sh_size")
    cut = draw(st.integers(1, sec.size))
    return Mutation(f".modinfo sh_size {sec.size} -> {sec.size - cut}", "field", (off, fmt, sec.size - cut))


def mutation(obj: Obj) -> st.SearchStrategy[Mutation]:
    return st.one_of(raw_mutation(obj), header_mutation(obj), section_mutation(obj), symbol_mutation(obj),
                     relocation_mutation(obj), modinfo_mutation(obj), code_mutation(obj))


@st.composite
def mutants(draw, arch: str, era: str) -> tuple[str, bool, tuple[Mutation, ...]]:
    """(example object's name, whether to load it with stub_missing, one to three
    mutations of it)."""
    name = draw(st.sampled_from(MODULES))
    obj = load_obj(arch, era, name)
    stub_missing = draw(st.sampled_from([False, False, False, True]))
    return name, stub_missing, tuple(draw(st.lists(mutation(obj), min_size=1, max_size=3)))


# -- the checks --------------------------------------------------------------------------------------


def ram_crc(k) -> int:
    crc = 0
    with memoryview(k.mem.mem) as mv:
        for s, e in k.mem.ranges:
            with mv[s:e] as part:
                crc = zlib.crc32(part, crc)
    return crc


def loader_records(k) -> tuple:
    """What kernel_state leaves out and a load touches: the modules, the export table, the
    addresses a call from module code is trapped at, the stubs (``stub_missing``)."""
    return (tuple((m.name, m.state) for m in k.modules), tuple(k.ksymtab.items()),
            tuple(sorted(k.kcall_addresses.items())), tuple(sorted(k._stub_syms.items())))


def parses(data: bytes) -> bool:
    """Whether the ELF checks pass (:class:`ModuleFile` touches no kernel: a mutant it
    refuses cannot have changed RAM, and a RAM checksum is the costly part)."""
    try:
        ModuleFile(data, "m.ko")
    except MmemuError:
        return False
    except Exception:  # noqa: BLE001 - the load itself will raise it, and fail the mutant
        return True
    return True


#: what in a message is Python's, not the kernel's or mmemu's words
INTERNAL = re.compile(r"<[\w.]+ object at 0x|<mmemu|Traceback|\b(KeyError|IndexError|TypeError|AttributeError|"
                      r"NoneType)\b|list index out of range|unpack requires|unpack_from requires|"
                      r"object has no attribute|not subscriptable|codec can't decode|too large to convert|"
                      r"^\W*\d*\W*$")


def check_message(exc: BaseException) -> None:
    msg = str(exc)
    assert msg.strip(), f"{type(exc).__name__} with an empty message"
    assert not INTERNAL.search(msg), f"{type(exc).__name__}: a message in Python's words, not mmemu's: {msg!r}"
    assert len(re.findall(r"[A-Za-z]{3,}", msg)) >= 2, f"{type(exc).__name__}: a message naming nothing: {msg!r}"


@contextmanager
def time_limit(seconds: float):
    """A load taking longer than *seconds* fails the mutant (SIGALRM: the main thread only)."""
    if threading.current_thread() is not threading.main_thread() or seconds <= 0:
        yield
        return

    def alarm(signum, frame):
        raise TimeoutError(f"the load ran for more than {seconds} s")
    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


class Booted:
    """A kernel kept across mutants, with its state before the next one (recomputed only
    after a mutant that loaded: a refused one leaves it as it was). A mutant whose init or
    exit oopsed leaves its module stuck, as the kernel does: the kernel is booted again."""

    def __init__(self, arch: str, era: str, ram: str, compare_ram: bool):
        self.spec = {"arch": arch, "kernel": era, "ram": ram}
        self.compare_ram = compare_ram
        self.k = mmemu.boot(**self.spec)
        self._state = self._crc = None
        self.outcomes: Counter = Counter()

    def reboot(self) -> None:
        self.k.close()
        self.k = mmemu.boot(**self.spec)
        self._state = self._crc = None

    def state(self) -> tuple:
        if self._state is None:
            self._state = (kernel_state(self.k, ram=False), loader_records(self.k))
        return self._state

    def crc(self) -> int:
        if self._crc is None:
            self._crc = ram_crc(self.k)
        return self._crc

    def check(self, data: bytes, stub_missing: bool = False) -> str:
        """Load *data* (with *stub_missing*: an unknown symbol bound to a stub, which stops
        the module if called): refused cleanly, or oopsed, or loaded and unloaded with
        nothing left. Returns what happened: "loaded", "loaded (exit ...)", "Oops in
        init", the error's class name."""
        try:
            outcome = self._check(data, stub_missing)
        except BaseException:
            self.reboot()  # whatever it left, the next mutant gets a clean kernel
            raise
        self.outcomes[outcome] += 1
        return outcome

    def _check(self, data: bytes, stub_missing: bool) -> str:
        k = self.k
        ram = self.compare_ram and parses(data)
        before = self.state()
        crc = self.crc() if ram else None
        try:
            with time_limit(LOAD_TIME_LIMIT):
                mod = k.load_module(data, "m.ko", budget=BUDGET, stub_missing=stub_missing)
        except Oops as exc:
            # the kernel's answer, not a refusal: insmod killed, the module left COMING
            check_message(exc)
            assert [m.state for m in k.modules] == ["MODULE_STATE_COMING"], \
                f"an init that oopsed left the modules {[(m.name, m.state) for m in k.modules]}"
            k.check_invariants()
            self.reboot()
            return "Oops in init"
        except MmemuError as exc:
            check_message(exc)
            after = (kernel_state(k, ram=False), loader_records(k))
            assert after == before, \
                f"a refused load ({type(exc).__name__}: {exc}) changed the kernel: {_diff(before, after)}"
            assert not ram or ram_crc(k) == crc, f"a refused load ({type(exc).__name__}: {exc}) changed RAM"
            return type(exc).__name__
        # loaded: it unloads and gives back everything of the loader's
        self._state = self._crc = None
        assert mod.state == "MODULE_STATE_LIVE" and k.find_module(mod.name) is mod, \
            f"a load returned module {mod.name!r} in state {mod.state}, not found live"
        k.check_invariants()
        outcome = "loaded"
        try:
            k.delete_module(mod.name, budget=BUDGET)
        except Oops as exc:  # the kernel's answer again: rmmod killed, the module left GOING
            check_message(exc)
            k.check_invariants()
            self.reboot()
            return "loaded (Oops in exit)"
        except ModuleError as exc:  # the exit did not return or stopped: nothing done
            check_message(exc)
            assert k.find_module(mod.name) is mod and mod.state == "MODULE_STATE_LIVE", \
                f"a refused rmmod ({exc}) left the module {mod.state}"
            k.delete_module(mod.name, run_exit=False)
            outcome = "loaded (exit refused)"
        k.purge_vmap_area_lazy()
        k.check_invariants()
        assert k.modules == [], f"modules left after rmmod: {[m.name for m in k.modules]}"
        left = [hex(a.va_start) for a in k.vmap_areas if a.vm is not None and a.vm.caller == "module_alloc"]
        assert not left, f"module_alloc areas left after rmmod and purge: {left}"
        owned = [p.pfn for p in k.frames.allocated.values() if p.owner == "module_alloc"]
        assert not owned, f"{len(owned)} module_alloc frames left after rmmod"
        return outcome


def _diff(a: tuple, b: tuple) -> str:
    names = ("frame allocator", "allocated blocks", "page tables", "slab caches", "vmap areas", "processes",
             "HighMem", "counters")
    out = [n for n, x, y in zip(names, a[0], b[0]) if x != y]
    out += [n for n, x, y in zip(("modules", "export table", "call traps", "stubs"), a[1], b[1]) if x != y]
    return ", ".join(out) or "?"


@pytest.fixture(scope="module")
def kernels():
    """``kernels(machine)``: the kernel of a (arch, era, ram, compare_ram), booted once for
    the whole file."""
    booted: dict = {}

    def get(machine) -> Booted:
        if machine not in booted:
            booted[machine] = Booted(*machine)
        return booted[machine]
    yield get
    for b in booted.values():
        b.k.close()


def _machine_id(m) -> str:
    return f"{m[0]}-{m[1]}-{m[2]}"


# -- the corpus ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("machine", MACHINES, ids=[_machine_id(m) for m in MACHINES])
def test_mutants_are_refused_cleanly_or_load_and_unload(machine, kernels):
    arch, era = machine[:2]
    booted = kernels(machine)
    start = time.monotonic()

    # derandomized, with a seed of its own per machine (the same inner function would
    # otherwise draw the same choices on every machine)
    @seed(zlib.crc32(_machine_id(machine).encode()))
    # no explain phase: its tracing makes a load with the CPU ten times slower (a false hang)
    @settings(max_examples=PER_MACHINE, deadline=None, derandomize=True, database=None, print_blob=False,
              suppress_health_check=list(HealthCheck), phases=[p for p in Phase if p.name != "explain"])
    @given(case=mutants(arch, era))
    def run(case):
        name, stub_missing, mutations = case
        booted.check(apply(load_obj(arch, era, name).data, mutations), stub_missing)

    outcomes = booted.outcomes
    try:
        run()
    finally:  # pytest -s shows it, a failing run's too (counted up to the failure, shrinking included)
        print(f"{_machine_id(machine)}: {sum(outcomes.values())} mutants in {time.monotonic() - start:.1f} s: "
              + ", ".join(f"{n} {what}" for what, n in outcomes.most_common()))
    assert sum(n for what, n in outcomes.items() if not what.startswith("loaded")), \
        "no mutant was refused: the mutator is broken"
    if PER_MACHINE >= 40:
        assert outcomes["loaded"], "no mutant loaded: every mutant is refused at the first check"


# -- the named cases ------------------------------------------------------------------------------------

X64 = ("x86_64", "6.6")
I386 = ("i386", "3.10")
BOTH = pytest.mark.parametrize("machine", [X64, I386], ids=["x86_64-6.6", "i386-3.10"])


@pytest.fixture
def kernel(boot):
    """``kernel(arch, era)``: a fresh 64 MiB machine."""
    return lambda arch, era: boot(arch=arch, kernel=era, ram="64M")


def refused(k, data: bytes, pattern: str, name: str = "hello.ko", **kw) -> ModuleError:
    """Load *data*: refused with a message matching *pattern*, the kernel exactly as it was
    (RAM included, by checksum)."""
    before = (kernel_state(k, ram=False), loader_records(k))
    crc = ram_crc(k)
    with pytest.raises(ModuleError, match=pattern) as err:
        k.load_module(data, name, **kw)
    check_message(err.value)
    after = (kernel_state(k, ram=False), loader_records(k))
    assert after == before, f"a refused load changed the kernel: {_diff(before, after)}"
    assert ram_crc(k) == crc, "a refused load changed RAM"
    return err.value


def patched(obj: Obj, *fields: tuple[int, str, int]) -> bytes:
    return apply(obj.data, [Mutation("", "field", f) for f in fields])


@pytest.mark.parametrize("length,pattern", [
    (0, r"^hello\.ko: Invalid ELF header magic: != \\177ELF$"),
    (3, r"^hello\.ko: Invalid ELF header magic"),
    (16, r"^hello\.ko: Module len 16 truncated \(the ELF header is 64 bytes\)$"),
    (63, r"^hello\.ko: Module len 63 truncated \(the ELF header is 64 bytes\)$"),
    (64, r"^hello\.ko: Invalid ELF section header overflow \(e_shoff 0x908, 18 headers, file of 64 bytes\)$"),
    ("shoff", r"^hello\.ko: Invalid ELF section header overflow \(e_shoff 0x908, 18 headers, file of 2312 bytes\)$"),
    ("shoff+100", r"^hello\.ko: Invalid ELF section header overflow"),
    ("-1", r"^hello\.ko: Invalid ELF section header overflow"),
])
def test_a_truncated_file_is_refused(length, pattern, kernel):
    obj = load_obj(*X64, "vbuf")
    n = {"shoff": obj.shoff, "shoff+100": obj.shoff + 100, "-1": len(obj.data) - 1}.get(length, length)
    refused(kernel(*X64), obj.data[:n], pattern)


def test_a_section_cut_off_by_the_end_of_the_file_is_refused(kernel):
    """The section headers moved to the front (right after the ELF header, the contents
    after them: the same module) and the file cut in the middle of its last section."""
    k = kernel(*X64)
    obj = load_obj(*X64, "hello")
    size = len(obj.mf.sections) * obj.shentsize
    headers = bytearray(obj.data[obj.shoff:obj.shoff + size])
    for i, sec in enumerate(obj.mf.sections):
        if i and not sec.nobits:
            o, fmt = SHDR64["sh_offset"]
            struct.pack_into("<" + fmt, headers, i * obj.shentsize + o, sec.offset + size)
    data = bytearray(obj.data[:64] + headers + obj.data[64:obj.shoff])
    struct.pack_into("<Q", data, obj.ehdr["e_shoff"][0], 64)
    assert k.load_module(bytes(data), "hello.ko").name == "hello"
    k.delete_module("hello")
    last = max((s for s in obj.mf.sections if not s.nobits and s.size), key=lambda s: s.offset + s.size)
    cut = last.offset + size + last.size // 2
    # (the name may be left out: the section cut off is the name table itself here)
    refused(k, bytes(data[:cut]), rf"^hello\.ko: Module len {cut} truncated \(section {last.index} "
                                  rf"({re.escape(last.name)} )?at {last.offset + size:#x}\+{last.size:#x}\)$")


@pytest.mark.parametrize("machine,value,pattern", [
    (X64, 40, (r"^hello\.ko: Invalid architecture in ELF header: 40 \(ELFCLASS64, EM_ARM; this kernel loads "
              r"ELFCLASS64 EM_X86_64\)$")),
    (X64, 3, (r"^hello\.ko: Invalid architecture in ELF header: 3 \(ELFCLASS64, EM_386; this kernel loads "
             r"ELFCLASS64 EM_X86_64\)$")),
    (I386, 62, (r"^hello\.ko: Invalid architecture in ELF header: 62 \(ELFCLASS32, EM_X86_64; this kernel loads "
               r"ELFCLASS32 EM_386\)$")),
    (X64, 0xFFFF, r"^hello\.ko: Invalid architecture in ELF header: 65535"),
], ids=["x86_64-EM_ARM", "x86_64-EM_386", "i386-EM_X86_64", "x86_64-0xffff"])
def test_the_wrong_machine_is_refused(machine, value, pattern, kernel):
    obj = load_obj(*machine, "hello")
    refused(kernel(*machine), patched(obj, (obj.ehdr["e_machine"][0], "H", value)), pattern)


def test_an_object_of_the_other_arch_is_refused(kernel):
    refused(kernel(*X64), load_obj("i386", "6.6", "hello").data,
            r"^hello\.ko: Invalid architecture in ELF header: 3 \(ELFCLASS32, EM_386; this kernel loads ELFCLASS64 "
            r"EM_X86_64\)$")
    refused(kernel(*I386), load_obj("x86_64", "3.10", "hello").data,
            r"^hello\.ko: Invalid architecture in ELF header: 62 \(ELFCLASS64, EM_X86_64; this kernel loads "
            r"ELFCLASS32 EM_386\)$")


@pytest.mark.parametrize("machine,value,pattern", [
    (X64, 0, r"^hello\.ko: Invalid ELF class 0 \(neither ELFCLASS32 nor ELFCLASS64\)$"),
    (X64, 3, r"^hello\.ko: Invalid ELF class 3 \(neither ELFCLASS32 nor ELFCLASS64\)$"),
    # the other class: the header read with the other layout says something else
    (X64, 1, r"^hello\.ko: Invalid ELF section header size \(0, not 40\)$"),
    (I386, 2, r"^hello\.ko: Invalid ELF section header size \(25960, not 64\)$"),
], ids=["x86_64-0", "x86_64-3", "x86_64-as-32", "i386-as-64"])
def test_the_wrong_class_is_refused(machine, value, pattern, kernel):
    obj = load_obj(*machine, "hello")
    refused(kernel(*machine), patched(obj, (4, "B", value)), pattern)


def test_a_32_bit_object_in_a_64_bit_header_is_refused_for_its_section_headers(kernel):
    """An i386 object given a whole ELFCLASS64 EM_X86_64 header is still refused: its
    section headers are Elf32_Shdr (40 bytes)."""
    obj = load_obj("i386", "6.6", "hello")
    hdr = bytearray(64)
    hdr[:16] = b"\x7fELF\x02\x01\x01" + bytes(9)
    for name in ("e_type", "e_version", "e_shoff", "e_shentsize", "e_shnum", "e_shstrndx"):
        value = obj.read(*obj.ehdr[name]) + (12 if name == "e_shoff" else 0)  # the header is 12 bytes longer
        struct.pack_into("<" + EHDR64[name][1], hdr, EHDR64[name][0], value)
    struct.pack_into("<H", hdr, EHDR64["e_machine"][0], 62)
    refused(kernel(*X64), bytes(hdr) + obj.data[52:], r"^hello\.ko: Invalid ELF section header size \(40, not 64\)$")


@pytest.mark.parametrize("field,value", [("sh_offset", "len"), ("sh_offset", 1 << 40), ("sh_size", "len"),
                                         ("sh_size", (1 << 64) - 1)])
def test_a_section_beyond_the_file_is_refused(field, value, kernel):
    obj = load_obj(*X64, "vbuf")
    sec = obj.mf.section_by_name(".init.text")
    n = len(obj.data)
    if value == "len":  # one byte too far
        value = n - (sec.offset if field == "sh_size" else sec.size) + 1
    offset, size = (value, sec.size) if field == "sh_offset" else (sec.offset, value)
    refused(kernel(*X64), patched(obj, (*obj.shdr_field(sec.index, field), value)),
            rf"^hello\.ko: Module len {n} truncated \(section {sec.index} \.init\.text at {offset:#x}\+{size:#x}\)$")


def test_a_nobits_section_may_say_any_offset(kernel):
    """.bss (SHT_NOBITS) has no bytes in the file: its sh_offset is not checked (the kernel
    skips SHT_NOBITS in the same check): the module loads, its .bss zeroed."""
    k = kernel(*X64)
    obj = load_obj(*X64, "hello")
    bss = obj.mf.section_by_name(".bss")
    assert bss.type == SHT_NOBITS
    mod = k.load_module(patched(obj, (*obj.shdr_field(bss.index, "sh_offset"), 1 << 40)), "hello.ko", run_init=False)
    assert k.read(mod.section_address(".bss"), bss.size) == bytes(bss.size)
    k.delete_module(mod.name, run_exit=False)


@BOTH
@pytest.mark.parametrize("info", ["nsec", 0xFFFF, 0])
def test_a_relocation_section_for_a_missing_section_is_refused(machine, info, kernel):
    """sh_info of .rel(a).init.text names the section it relocates: past the last section
    (or the null section), the load is refused. (The kernel's apply_relocations skips such
    a section silently: ``if (infosec >= info->hdr->e_shnum) continue;``.)"""
    obj = load_obj(*machine, "hello")
    rel = next(r for r in obj.mf.relocations if r.section.name.endswith(".init.text"))
    value = len(obj.mf.sections) if info == "nsec" else info
    refused(kernel(*machine), patched(obj, (*obj.shdr_field(rel.section.index, "sh_info"), value)),
            rf"^hello\.ko: relocation section {rel.section.index} \({re.escape(rel.section.name)}\) applies to "
            rf"section {value}, which does not exist$")


@BOTH
def test_a_relocation_with_a_symbol_index_out_of_range_is_refused(machine, kernel):
    k = kernel(*machine)
    obj = load_obj(*machine, "hello")
    rel = obj.mf.relocations[0]
    nsym = len(obj.mf.symbols)
    word, shift = ("Q", 32) if obj.bits64 else ("I", 8)
    info_off = obj.rel_entry(rel, 0) + (8 if obj.bits64 else 4)
    for sym in (nsym, nsym + 1, (1 << (_bits(word) - shift)) - 1):
        refused(k, patched(obj, (info_off, word, (sym << shift) | rel.types[0])),
                rf"^hello\.ko: relocation section {re.escape(rel.section.name)}: symbol index {sym} out of range "
                rf"\({nsym} symbols\)$")


@BOTH
def test_a_relocation_outside_its_section_is_refused(machine, kernel):
    k = kernel(*machine)
    obj = load_obj(*machine, "hello")
    rel = next(r for r in obj.mf.relocations if r.section.name.endswith(".init.text"))
    size = obj.mf.sections[rel.target].size
    word = "Q" if obj.bits64 else "I"
    for offset in (size, size - 1, size - 3, (1 << _bits(word)) - 1):
        refused(k, patched(obj, (obj.rel_entry(rel, 0), word, offset)),
                rf"^hello: relocation 0 of {re.escape(rel.section.name)} at offset {offset:#x} is outside "
                rf"\.init\.text \({size:#x} bytes\)$")


@pytest.mark.parametrize("machine,pattern", [
    (X64, r"^module: hello: Unknown rela relocation: 200$"),
    (I386, r"^module: hello: Unknown relocation: 200$"),
], ids=["x86_64-6.6", "i386-3.10"])
def test_an_unknown_relocation_type_is_refused(machine, pattern, kernel):
    obj = load_obj(*machine, "hello")
    rel = obj.mf.relocations[0]
    word, shift = ("Q", 32) if obj.bits64 else ("I", 8)
    info_off = obj.rel_entry(rel, 0) + (8 if obj.bits64 else 4)
    refused(kernel(*machine), patched(obj, (info_off, word, (rel.symbols[0] << shift) | 200)), pattern)


def _symbol(obj: Obj, name: str):
    return next(s for s in obj.mf.symbols if s.name == name)


@BOTH
@pytest.mark.parametrize("shndx", ["nsec", 0xFEFF, 0xFFFF])
def test_a_symbol_with_a_section_index_out_of_range_is_refused(machine, shndx, kernel):
    obj = load_obj(*machine, "hello")
    sym = _symbol(obj, "init_module")
    nsec = len(obj.mf.sections)
    value = nsec if shndx == "nsec" else shndx
    refused(kernel(*machine), patched(obj, (*obj.sym_field(sym.index, "st_shndx"), value)),
            rf"^hello\.ko: symbol {sym.index} \(init_module\): section index {value} out of range \({nsec} "
            rf"sections\)$")


@BOTH
def test_a_symbol_of_a_reserved_index_is_its_value(machine, kernel):
    """SHN_LORESERVE..SHN_HIRESERVE (but SHN_COMMON, SHN_XINDEX) are no sections: the
    symbol's value is taken as it is, as simplify_symbols' default case does for an index
    it does not know... here init_module's value 0: its init is called at address 0, the
    NULL pointer dereference of the kernel, the module left COMING."""
    k = kernel(*machine)
    obj = load_obj(*machine, "hello")
    sym = _symbol(obj, "init_module")
    with pytest.raises(Oops, match="NULL pointer dereference"):
        k.load_module(patched(obj, (*obj.sym_field(sym.index, "st_shndx"), 0xFF00)), "hello.ko")
    assert [(m.name, m.state) for m in k.modules] == [("hello", "MODULE_STATE_COMING")]
    with pytest.raises(ModuleError, match="is MODULE_STATE_COMING, not live"):
        k.delete_module("hello")
    k.check_invariants()


@BOTH
def test_a_common_symbol_asks_for_fno_common(machine, kernel):
    """SHN_COMMON: simplify_symbols' "%s: please compile with -fno-common"."""
    obj = load_obj(*machine, "vbuf")
    sym = next(s for s in obj.mf.symbols[1:] if s.shndx not in (0, 0xFFF1))
    refused(kernel(*machine), patched(obj, (*obj.sym_field(sym.index, "st_shndx"), 0xFFF2)),
            r"^vbuf: please compile with -fno-common$", name="vbuf.ko")


@BOTH
def test_an_absolute_symbol_is_its_value(machine, kernel):
    """SHN_ABS: the value is the address, nothing added (simplify_symbols)."""
    k = kernel(*machine)
    obj = load_obj(*machine, "hello")
    sym = _symbol(obj, "cleanup_module")
    mod = k.load_module(patched(obj, (*obj.sym_field(sym.index, "st_shndx"), 0xFFF1)), "hello.ko")
    assert mod.exit == sym.value
    k.delete_module(mod.name, run_exit=False)


@BOTH
def test_vermagic_and_modinfo_damage_is_refused(machine, kernel):
    k = kernel(*machine)
    obj = load_obj(*machine, "hello")
    sec = obj.mf.section_by_name(".modinfo")
    body = obj.data[sec.offset:sec.offset + sec.size]
    vm = sec.offset + body.index(b"vermagic=")
    expected = k.arch.vermagic(k.spec)
    # a changed version: check_modinfo's message
    refused(k, apply(obj.data, [Mutation("", "patch", (vm + 9, b"9"))]),
            rf"^hello: version magic '9{re.escape(expected[1:])}' should be '{re.escape(expected)}'$")
    # no vermagic= tag at all
    refused(k, apply(obj.data, [Mutation("", "patch", (vm, b"X"))]),
            r"^hello: the module has no vermagic in \.modinfo: the kernel refuses it \(-ENOEXEC, no message\)$")
    # the NUL before vermagic= gone: the tag is inside the previous string's value
    refused(k, apply(obj.data, [Mutation("", "patch", (vm - 1, b"x"))]),
            r": the module has no vermagic in \.modinfo: the kernel refuses it")
    # no NUL at all in .modinfo: one string, whose tag is the first one's
    refused(k, apply(obj.data, [Mutation("", "patch", (sec.offset, body.replace(b"\0", b"x")))]),
            r"the module has no vermagic in \.modinfo")
    # the NUL ending the last string (the vermagic) cut off with sh_size: the value ends
    # with the section, the same string
    end = body.index(b"\0", body.index(b"vermagic="))
    assert end == len(body) - 1
    mod = k.load_module(patched(obj, (*obj.shdr_field(sec.index, "sh_size"), sec.size - 1)), "hello.ko")
    assert mod.vermagic == expected
    k.delete_module(mod.name)


def test_sections_overlapping_in_the_file_load_each_with_the_shared_bytes(kernel):
    """The kernel does not check that sections are apart in the file (nor does mmemu): two
    sections reading the same bytes are each copied from them. Here .rodata.str1.1 is made
    to start inside .rodata.str1.8: the module loads and each section holds the file's
    bytes at its (overlapping) offset."""
    k = kernel(*X64)
    obj = load_obj(*X64, "vbuf")
    a, b = obj.mf.section_by_name(".rodata.str1.8"), obj.mf.section_by_name(".rodata.str1.1")
    assert b.size <= a.size
    data = patched(obj, (*obj.shdr_field(b.index, "sh_offset"), a.offset + 4))
    mod = k.load_module(data, "vbuf.ko", run_init=False)
    # neither section is relocated: the bytes through the page tables are the file's
    for sec, at in ((a, a.offset), (b, a.offset + 4)):
        assert k.read(mod.section_address(sec.name), sec.size) == obj.data[at:at + sec.size]
    k.check_invariants()
    k.delete_module(mod.name, run_exit=False)


def test_section_headers_over_the_contents_are_read_as_they_are(kernel):
    """e_shoff pointing into the sections' contents: the headers read from there are
    garbage, refused with a message, nothing changed."""
    k = kernel(*X64)
    obj = load_obj(*X64, "vbuf")
    for shoff in (64, 0x100, 0x350, obj.shoff - obj.shentsize):
        refused(k, patched(obj, (*obj.ehdr["e_shoff"], shoff)), r"^vbuf\.ko: ", name="vbuf.ko")


#: where hello's init_module can take other code: (offset in it, bytes) that no relocation
#: touches. x86_64 6.6: after the call of __fentry__ (5 bytes); i386 3.10: at its start,
#: jumping over the relocated mov to the 10 bytes before the call of kmalloc
INIT_LOOP = {X64: [(5, b"\xeb\xfe")], I386: [(0, b"\xeb\xfe")]}  # jmp .
INIT_ENOMEM = {X64: [(5, b"\x6a\xf4\x58\xc3")],  # push -12; pop rax; ret
               I386: [(0, b"\xeb\x09"), (0x0B, b"\xb8\xf4\xff\xff\xff\xc3")]}  # jmp +9; mov eax, -12; ret


#: and its cleanup_module: x86_64 6.6 at its start, i386 3.10 after the load of .bss
EXIT_LOOP = {X64: [(0, b"\xeb\xfe")], I386: [(5, b"\xeb\xfe")]}


def hello_with_init(machine, patches, function: str = "init_module") -> bytes:
    obj = load_obj(*machine, "hello")
    init = _symbol(obj, function)
    sec = obj.mf.sections[init.shndx]
    for rel in obj.mf.relocations:
        if rel.target == sec.index:
            for off, code in patches:
                start = init.value + off
                assert all(not (start < o + 4 and o < start + len(code)) for o in rel.offsets), \
                    "the code would be relocated"
    return apply(obj.data, [Mutation("", "patch", (sec.offset + init.value + off, code)) for off, code in patches])


@BOTH
def test_an_init_that_never_returns_is_stopped_and_the_load_undone(machine, kernel):
    """``jmp .`` in init_module: the instruction budget runs out; refused, nothing changed
    (the kernel would hang in insmod for ever)."""
    err = refused(kernel(*machine), hello_with_init(machine, INIT_LOOP[machine]),
                  r"^hello: the init function did not return \(instruction budget of 20000 exhausted at ip "
                  r"0x[0-9a-f]+\): stopped, and the load undone$", budget=20_000)
    assert err.errno == 8


@BOTH
def test_an_exit_that_never_returns_is_stopped_and_the_module_stays(machine, kernel):
    """``jmp .`` in cleanup_module: rmmod is refused (the kernel would hang in it), the
    module still live, the kernel as it was; removed without its exit, nothing is left."""
    k = kernel(*machine)
    mod = k.load_module(hello_with_init(machine, EXIT_LOOP[machine], "cleanup_module"), "hello.ko")
    before = (kernel_state(k, ram=False), loader_records(k))
    crc = ram_crc(k)
    with pytest.raises(ModuleError, match=r"^hello: the exit function did not return \(instruction budget of 20000 "
                                          r"exhausted at ip 0x[0-9a-f]+\)$") as err:
        k.delete_module("hello", budget=20_000)
    check_message(err.value)
    assert (kernel_state(k, ram=False), loader_records(k)) == before and ram_crc(k) == crc
    assert k.find_module("hello") is mod and mod.state == "MODULE_STATE_LIVE"
    k.delete_module("hello", run_exit=False)
    k.purge_vmap_area_lazy()
    assert k.modules == [] and not [p for p in k.frames.allocated.values() if p.owner == "module_alloc"]
    k.check_invariants()


@BOTH
def test_an_init_that_fails_undoes_the_load(machine, kernel):
    """init_module returning -ENOMEM: do_init_module's fail path, the load undone."""
    err = refused(kernel(*machine), hello_with_init(machine, INIT_ENOMEM[machine]),
                  r"^hello: init_module returned -12: the load is undone \(insmod: ERROR: could not insert module: "
                  r"Cannot allocate memory\)$")
    assert err.errno == 12


# -- reproducers: the smallest mutants that made mmemu fail -------------------------------------------
#
# Each of these failed when it was written (the corpus above finds them again): a mutant
# made mmemu raise an exception not its own, or left the kernel not as it was. Each test
# states what mmemu should do; the smallest mutation found is the test's input.


def _contract(machine: tuple, data: bytes, ram: str = "64M") -> str:
    """The corpus' check of one mutant on a fresh kernel: refused cleanly (kernel and RAM
    as they were), or an oops with the kernel's invariants holding, or loaded and unloaded
    with nothing of the loader's left. Returns the outcome."""
    b = Booted(*machine, ram, True)
    try:
        return b.check(data)
    finally:
        b.k.close()


def _retarget(obj: Obj, rel_name: str, i: int, symbol: str) -> Mutation:
    """Relocation *i* of section *rel_name* made to refer to *symbol*."""
    rel = next(r for r in obj.mf.relocations if r.section.name == rel_name)
    sym = _symbol(obj, symbol)
    word, shift = ("Q", 32) if obj.bits64 else ("I", 8)
    info = obj.rel_entry(rel, i) + (8 if obj.bits64 else 4)
    return Mutation(f"relocation {i} of {rel_name}: symbol {obj.mf.symbols[rel.symbols[i]].name} -> {symbol}",
                    "field", (info, word, (sym.index << shift) | rel.types[i]))


def test_reproducer_1(kernel):
    """ELF64: the section name table's sh_offset at 2**63 or more. pyelftools seeks there
    to read the section names, before mmemu's check that the section lies in the file:
    ``OverflowError: Python int too large to convert to C ssize_t`` out of ModuleFile
    (mmemu/module/elf.py, _read_sections, ``self.elf.get_section(i)``). The corpus gets
    there by any mutation that shifts the section headers (e_shoff moved by a few bytes,
    bytes inserted before the headers). The kernel: "Invalid ELF section hdr(type 3)" (6.x:
    validate_section_offset of the string table), "Module len %lu truncated" (3.x/4.x)."""
    k = kernel(*X64)
    obj = load_obj(*X64, "hello")
    shstrndx = obj.read(*obj.ehdr["e_shstrndx"])
    for offset in (1 << 63, (1 << 64) - 1):
        refused(k, patched(obj, (*obj.shdr_field(shstrndx, "sh_offset"), offset)),
                r"^hello\.ko: .*(truncated|Invalid ELF section)")
    # the corpus' smallest: 7 zero bytes inserted at 0x3f (the headers read 7 bytes early)
    refused(k, apply(obj.data, [Mutation("7 bytes inserted at 0x3f", "insert", (63, bytes(7)))]), r"^hello\.ko: ")


def test_reproducer_2(kernel):
    """x86_64 (a RELA arch) given an SHT_REL relocation section (.rela.exit.text rewritten
    as SHT_REL, entries and all): mmemu's _apply_relocations takes the addend from
    ``rel.addends``, None for SHT_REL: ``TypeError: 'NoneType' object is not subscriptable``
    (mmemu/kernel/module.py). The kernel calls apply_relocate for SHT_REL, which x86_64
    does not have (the generic weak one): "module %s: REL relocation unsupported", -ENOEXEC."""
    obj = load_obj(*X64, "hello")
    rel = next(r for r in obj.mf.relocations if r.section.name == ".rela.exit.text")
    refused(kernel(*X64), apply(obj.data, [other_format(obj, rel)]),
            r"^module hello: REL relocation unsupported$")


def test_reproducer_3(kernel):
    """i386 (a REL arch) given an SHT_RELA relocation section (.rel.exit.text rewritten as
    SHT_RELA, addends 0): mmemu loads it, applying the entries as REL ones (the addend
    read at the place, r_addend ignored). The kernel calls apply_relocate_add for
    SHT_RELA, which i386 does not have (the generic weak one): "module %s: RELA relocation
    unsupported", -ENOEXEC. (Not a crash: a module the kernel refuses, loaded.)"""
    obj = load_obj(*I386, "hello")
    rel = next(r for r in obj.mf.relocations if r.section.name == ".rel.exit.text")
    refused(kernel(*I386), apply(obj.data, [other_format(obj, rel)]),
            r"^module hello: RELA relocation unsupported$")


@pytest.mark.parametrize("machine,mutation", [
    # the call of printk after the first kmap_atomic relocated at offset 0 instead: init
    # writes 'A' and 'B' into the two pages it allocated and kmapped, then runs into an
    # invalid instruction
    (("i386_pae", "4.19"), lambda obj: Mutation(
        "relocation 11 of .rel.init.text r_offset 0x8d -> 0", "field",
        (obj.rel_entry(next(r for r in obj.mf.relocations if r.section.name == ".rel.init.text"), 11), "I", 0))),
    # the addend of the same call 7 instead of -4: init writes 'A', then runs in the
    # kernel's text until its budget ends
    (("x86_64", "5.10"), lambda obj: Mutation(
        "relocation 7 of .rela.init.text r_addend -4 -> 7", "field",
        (obj.rel_entry(next(r for r in obj.mf.relocations if r.section.name == ".rela.init.text"), 7) + 16, "q",
         7))),
], ids=["i386_pae-4.19", "x86_64-5.10"])
def test_reproducer_4(machine, mutation):
    """kmap_nested's init allocates pages (alloc_pages), writes into them (through
    kmap_atomic) and then fails (the CPU stops, or the budget ends): the load is refused
    and undone, every record as it was, but RAM is not: the pages init allocated are free
    again holding the bytes init wrote. The journal undoes the kernel model's own writes
    (mem.write); the module code's stores go through Unicorn to RAM and are never recorded.
    (Also: corrupted code writing into any other RAM before a refusal.)"""
    obj = load_obj(*machine, "kmap_nested")
    m = mutation(obj)
    assert obj.read(m.value[0], m.value[1]) in (0x8D, -4)  # the field the mutation names
    outcome = _contract(machine, apply(obj.data, [m]))
    assert outcome == "ModuleError"


@pytest.mark.parametrize("machine,name,rel_name,i", [
    (("x86_64", "3.10"), "hello", ".rela.init.text", 20),
    (("i386_pae", "4.19"), "hello", ".rel.init.text", 20),
    (("i386_pae", "4.19"), "vbuf", ".rel.init.text", 12),
], ids=["x86_64-3.10-hello", "i386_pae-4.19-hello", "i386_pae-4.19-vbuf"])
def test_reproducer_5(machine, name, rel_name, i):
    """init_module calling itself (its last call of printk relocated against init_module):
    the recursion runs the CPU's kernel stack (a block of the buddy allocator, in the
    direct map, no guard page) down into the frames below it. Here these are the page
    tables of the module area (mapped just before): the writes break them, the next access
    to the module oopses, and after the oops the kernel's invariants fail ("vmap area
    ... is not mapped to pfn ...", "page tables no directory reaches"); or a free frame
    below it is written and the budget ends first: the load is refused with RAM changed.
    The kernel with CONFIG_VMAP_STACK (x86_64 from 4.9) hits the stack's guard page: "BUG:
    stack guard page was hit", "kernel stack overflow (double-fault)". mmemu should stop
    the overflow before it writes frames the kernel model owns (a guard page under the
    stack: an oops, the kernel consistent)."""
    obj = load_obj(*machine, name)
    m = _retarget(obj, rel_name, i, "init_module")
    assert "printk" in m.what
    _contract(machine, apply(obj.data, [m]))
