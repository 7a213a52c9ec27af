"""A relocatable ELF object as the kernel's module loader reads it.

pyelftools parses the ELF header and the section headers (and checks them as it goes); the
symbol table and the relocation tables, which a real module holds tens of thousands of
entries of, are read in bulk with :mod:`struct` (pyelftools builds one object per entry,
a hundred times slower). The checks are those of the kernel's ``elf_validity_check`` (5.x,
6.x; ``elf_header_check`` and ``rewrite_section_headers`` before): a message names what
is wrong, and nothing here changes the emulated kernel.
"""

from __future__ import annotations

import io
import struct
import sys
from dataclasses import dataclass, field

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

from ..errors import ModuleError

# include/uapi/linux/elf.h
SHT_PROGBITS, SHT_SYMTAB, SHT_STRTAB, SHT_RELA, SHT_NOBITS, SHT_REL = 1, 2, 3, 4, 8, 9
SHF_WRITE, SHF_ALLOC, SHF_EXECINSTR = 0x1, 0x2, 0x4
SHN_UNDEF, SHN_LORESERVE, SHN_ABS, SHN_COMMON, SHN_XINDEX = 0, 0xFF00, 0xFFF1, 0xFFF2, 0xFFFF
STB_LOCAL, STB_GLOBAL, STB_WEAK = 0, 1, 2
STT_NOTYPE, STT_OBJECT, STT_FUNC, STT_SECTION, STT_FILE = 0, 1, 2, 3, 4

_SH_TYPES = {"SHT_NULL": 0, "SHT_PROGBITS": 1, "SHT_SYMTAB": 2, "SHT_STRTAB": 3, "SHT_RELA": 4, "SHT_HASH": 5,
             "SHT_DYNAMIC": 6, "SHT_NOTE": 7, "SHT_NOBITS": 8, "SHT_REL": 9, "SHT_SHLIB": 10, "SHT_DYNSYM": 11,
             "SHT_INIT_ARRAY": 14, "SHT_FINI_ARRAY": 15, "SHT_PREINIT_ARRAY": 16, "SHT_GROUP": 17,
             "SHT_SYMTAB_SHNDX": 18}


@dataclass(frozen=True, slots=True)
class Section:
    """One section header (``Elf_Shdr``), its name resolved."""

    index: int
    name: str
    type: int
    flags: int
    offset: int
    size: int
    link: int
    info: int
    align: int
    entsize: int

    @property
    def alloc(self) -> bool:
        return bool(self.flags & SHF_ALLOC)

    @property
    def nobits(self) -> bool:
        return self.type == SHT_NOBITS


@dataclass(frozen=True, slots=True)
class Symbol:
    """One ``Elf_Sym``."""

    index: int
    name: str
    value: int
    size: int
    bind: int
    type: int
    shndx: int


@dataclass(slots=True)
class Relocations:
    """One ``SHT_REL``/``SHT_RELA`` section: the relocations it applies to section
    ``target`` (its ``sh_info``), as parallel lists (offset, type, symbol index, addend;
    the addend is None for SHT_REL, whose addend is the word at the place)."""

    section: Section
    target: int
    rela: bool
    offsets: list[int] = field(default_factory=list)
    types: list[int] = field(default_factory=list)
    symbols: list[int] = field(default_factory=list)
    addends: list[int] | None = None

    def __len__(self) -> int:
        return len(self.offsets)


class ModuleFile:
    """A relocatable object (``.ko`` or ``.o``) read from *data*; *name* is what messages
    call it (the file's name). Raises :class:`ModuleError` for anything the kernel's
    loader would refuse before looking at the contents."""

    def __init__(self, data: bytes, name: str = "module"):
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise ModuleError(f"{name}: a module is bytes, not {type(data).__name__}")
        self.data = bytes(data)
        self.name = name
        self._check_ident()
        try:
            self.elf = ELFFile(io.BytesIO(self.data))
            self._read_header()
            self.sections = self._read_sections()
        except ELFError as exc:
            raise ModuleError(f"{name}: malformed ELF file: {exc}") from None
        except (struct.error, ValueError, UnicodeDecodeError, OverflowError) as exc:
            # pyelftools seeks where a header points: an offset beyond any file overflows
            raise ModuleError(f"{name}: malformed ELF file: {exc}") from None
        self.symtab_index = self._find_symtab()
        self.symbols = self._read_symbols()
        self.relocations = self._read_relocations()
        self.modinfo = self._read_modinfo()

    # -- the header -----------------------------------------------------------------------

    def _check_ident(self) -> None:
        d = self.data
        if len(d) < 16 or d[:4] != b"\x7fELF":
            # kernel/module/main.c elf_validity_check: "Invalid ELF header magic: != \177ELF"
            raise ModuleError(f"{self.name}: Invalid ELF header magic: != \\177ELF")
        if d[4] not in (1, 2):
            raise ModuleError(f"{self.name}: Invalid ELF class {d[4]} (neither ELFCLASS32 nor ELFCLASS64)")
        if d[5] != 1:
            raise ModuleError(f"{self.name}: not a little-endian ELF file (EI_DATA {d[5]})")
        need = 52 if d[4] == 1 else 64
        if len(d) < need:
            raise ModuleError(f"{self.name}: Module len {len(d)} truncated (the ELF header is {need} bytes)")

    def _read_header(self) -> None:
        h = self.elf.header
        self.elfclass = self.elf.elfclass
        self.machine = h["e_machine"]  # pyelftools' name (EM_386, EM_X86_64...)
        self.e_machine = struct.unpack_from("<H", self.data, 18)[0]
        if h["e_type"] != "ET_REL":
            raise ModuleError(f"{self.name}: Invalid ELF header type: {h['e_type']} != ET_REL (a module is a "
                              "relocatable object)")
        shentsize = 40 if self.elfclass == 32 else 64
        if h["e_shentsize"] != shentsize:
            raise ModuleError(f"{self.name}: Invalid ELF section header size ({h['e_shentsize']}, not {shentsize})")
        shoff, shnum = h["e_shoff"], h["e_shnum"]
        if shoff >= len(self.data) or shnum * shentsize > len(self.data) - shoff:
            raise ModuleError(f"{self.name}: Invalid ELF section header overflow (e_shoff {shoff:#x}, "
                              f"{shnum} headers, file of {len(self.data)} bytes)")
        if h["e_shstrndx"] >= shnum or h["e_shstrndx"] == SHN_UNDEF:
            raise ModuleError(f"{self.name}: Invalid ELF section name index: {h['e_shstrndx']} || "
                              f"e_shstrndx ({h['e_shstrndx']}) >= e_shnum ({shnum})")

    def _check_section_bounds(self) -> None:
        """Every section that occupies the file lies inside it (rewrite_section_headers'
        "Module len %lu truncated"), checked on the raw headers before pyelftools reads any
        section's name or contents there."""
        h = self.elf.header
        fmt, sz = ("<IIIIIIIIII", 40) if self.elfclass == 32 else ("<IIQQQQIIQQ", 64)
        size = len(self.data)
        headers = [struct.unpack_from(fmt, self.data, h["e_shoff"] + i * sz) for i in range(h["e_shnum"])]

        def inside(hdr) -> bool:
            return hdr[1] == SHT_NOBITS or (hdr[4] <= size and hdr[5] <= size - hdr[4])
        names = headers[h["e_shstrndx"]]
        strings = self.data[names[4]:names[4] + names[5]] if inside(names) else b""
        for i, hdr in enumerate(headers[1:], 1):
            if not inside(hdr):
                end = strings.find(b"\0", hdr[0])
                name = strings[hdr[0]:end].decode("latin-1") + " " if 0 <= hdr[0] < end else ""
                raise ModuleError(f"{self.name}: Module len {size} truncated (section {i} {name}at "
                                  f"{hdr[4]:#x}+{hdr[5]:#x})")

    def _read_sections(self) -> list[Section]:
        self._check_section_bounds()
        out = []
        size = len(self.data)
        for i in range(self.elf.num_sections()):
            s = self.elf.get_section(i)
            h = s.header
            stype = h["sh_type"]
            stype = _SH_TYPES.get(stype, stype) if isinstance(stype, str) else stype
            if not isinstance(stype, int):
                stype = _raw_sh_type(self.data, self.elf.header, i, self.elfclass)
            sec = Section(i, s.name if i else "", stype, h["sh_flags"], h["sh_offset"], h["sh_size"],
                          h["sh_link"], h["sh_info"], h["sh_addralign"], h["sh_entsize"])
            # elf_validity_check: "Module len %lu truncated" for a section beyond the file
            if stype != SHT_NOBITS and i and (sec.offset > size or sec.size > size - sec.offset):
                raise ModuleError(f"{self.name}: Module len {size} truncated (section {i} {sec.name or '?'} "
                                  f"at {sec.offset:#x}+{sec.size:#x})")
            if sec.align and sec.align & (sec.align - 1):
                raise ModuleError(f"{self.name}: section {i} {sec.name}: alignment {sec.align} is not a power of 2")
            out.append(sec)
        return out

    def section_data(self, sec: Section) -> bytes:
        if sec.nobits:
            return bytes(sec.size)
        return self.data[sec.offset:sec.offset + sec.size]

    def section_by_name(self, name: str) -> Section | None:
        return next((s for s in self.sections if s.name == name), None)

    # -- symbols --------------------------------------------------------------------------

    def _find_symtab(self) -> int:
        found = [s.index for s in self.sections if s.type == SHT_SYMTAB]
        if len(found) != 1:
            # elf_validity_check: "module %s: has no symbols (stripped?)" / "Multiple symbol tables"
            raise ModuleError(f"{self.name}: has no symbols (stripped?)" if not found else
                              f"{self.name}: {len(found)} symbol tables (the loader takes exactly one)")
        return found[0]

    def _read_symbols(self) -> list[Symbol]:
        st = self.sections[self.symtab_index]
        if st.link >= len(self.sections) or self.sections[st.link].type != SHT_STRTAB:
            raise ModuleError(f"{self.name}: the symbol table's string table (section {st.link}) is not a "
                              "string table")
        strtab = self.section_data(self.sections[st.link])
        if self.elfclass == 32:
            fmt, esize = "<IIIBBH", 16  # st_name, st_value, st_size, st_info, st_other, st_shndx
        else:
            fmt, esize = "<IBBHQQ", 24  # st_name, st_info, st_other, st_shndx, st_value, st_size
        if st.entsize not in (0, esize) or st.size % esize:
            raise ModuleError(f"{self.name}: symbol table entries of {st.entsize} bytes (Elf{self.elfclass}_Sym "
                              f"is {esize}) or a size ({st.size}) not a multiple of them")
        raw = self.section_data(st)
        out = []
        nsec = len(self.sections)
        for i, fields in enumerate(struct.iter_unpack(fmt, raw)):
            if self.elfclass == 32:
                name_off, value, size, info, _other, shndx = fields
            else:
                name_off, info, _other, shndx, value, size = fields
            if name_off >= len(strtab) and name_off:
                raise ModuleError(f"{self.name}: symbol {i}: name offset {name_off:#x} beyond the string table")
            end = strtab.find(b"\0", name_off)
            name = strtab[name_off:end if end >= 0 else len(strtab)].decode("utf-8", "replace")
            if shndx == SHN_XINDEX or (shndx >= nsec and shndx < SHN_LORESERVE):
                raise ModuleError(f"{self.name}: symbol {i} ({name}): section index {shndx} out of range "
                                  f"({nsec} sections)")
            out.append(Symbol(i, name, value, size, info >> 4, info & 15, shndx))
        return out

    def symbol(self, name: str) -> Symbol | None:
        """The defined global (or weak) symbol *name*, or None."""
        for sym in self.symbols:
            if sym.name == name and sym.bind in (STB_GLOBAL, STB_WEAK) and sym.shndx != SHN_UNDEF:
                return sym
        return None

    # -- relocations ----------------------------------------------------------------------

    def _read_relocations(self) -> list[Relocations]:
        out = []
        nsec = len(self.sections)
        nsym = len(self.symbols)
        for sec in self.sections:
            if sec.type not in (SHT_REL, SHT_RELA):
                continue
            rela = sec.type == SHT_RELA
            if sec.info >= nsec or sec.info == 0:
                raise ModuleError(f"{self.name}: relocation section {sec.index} ({sec.name}) applies to section "
                                  f"{sec.info}, which does not exist")
            if sec.link != self.symtab_index:
                raise ModuleError(f"{self.name}: relocation section {sec.index} ({sec.name}) uses section "
                                  f"{sec.link} as its symbol table, not the symbol table ({self.symtab_index})")
            # the table as words (a memoryview cast: no object per field), then the
            # r_info halves and the addends by slicing
            word, shift, mask = (4, 8, 0xFF) if self.elfclass == 32 else (8, 32, 0xFFFFFFFF)
            fields = 3 if rela else 2
            esize = word * fields
            if sec.size % esize:
                raise ModuleError(f"{self.name}: relocation section {sec.name}: size {sec.size} is not a multiple "
                                  f"of its entries ({esize} bytes)")
            r = Relocations(sec, sec.info, rela)
            raw = self.section_data(sec)
            if sys.byteorder == "little":
                words = memoryview(raw).cast("I" if word == 4 else "Q")
                r.offsets = words[0::fields].tolist()
                infos = words[1::fields].tolist()
                if rela:
                    r.addends = memoryview(raw).cast("i" if word == 4 else "q")[2::fields].tolist()
            else:  # a big-endian host: the file's little-endian words one by one
                fmt = "<" + ("I" if word == 4 else "Q") * 2 + (("i" if word == 4 else "q") if rela else "")
                entries = list(struct.iter_unpack(fmt, raw))
                r.offsets = [e[0] for e in entries]
                infos = [e[1] for e in entries]
                if rela:
                    r.addends = [e[2] for e in entries]
            r.types = [i & mask for i in infos]
            r.symbols = [i >> shift for i in infos]
            bad = next((s for s in r.symbols if s >= nsym), None)
            if bad is not None:
                raise ModuleError(f"{self.name}: relocation section {sec.name}: symbol index {bad} out of range "
                                  f"({nsym} symbols)")
            out.append(r)
        return out

    # -- .modinfo -------------------------------------------------------------------------

    def _read_modinfo(self) -> list[tuple[str, str]]:
        """The ``tag=value`` strings of ``.modinfo``, in file order (what ``modinfo`` prints)."""
        sec = self.section_by_name(".modinfo")
        if sec is None:
            return []
        out = []
        for item in self.section_data(sec).split(b"\0"):
            if not item:
                continue
            text = item.decode("utf-8", "replace")
            tag, sep, value = text.partition("=")
            out.append((tag, value) if sep else (text, ""))
        return out

    def get_modinfo(self, tag: str) -> str | None:
        """``get_modinfo``: the first value of *tag*, or None."""
        return next((v for t, v in self.modinfo if t == tag), None)


def _raw_sh_type(data: bytes, header, index: int, elfclass: int) -> int:
    shentsize = 40 if elfclass == 32 else 64
    return struct.unpack_from("<I", data, header["e_shoff"] + index * shentsize + 4)[0]
