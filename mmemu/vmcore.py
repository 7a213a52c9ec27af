"""The machine as a kdump-style ELF core (a "vmcore"), for drgn and the other vmcore readers.

The file is what ``/proc/vmcore`` gives the capture kernel after a crash, the way
kexec-tools (kexec/crashdump-elf.c) and the kernel (kernel/crash_core.c,
crash_prepare_elf64_headers) lay it out: an ELF header of type ET_CORE for the arch's
machine, a PT_NOTE segment holding the VMCOREINFO note, then one PT_LOAD segment per range
of physical memory, ``p_paddr`` its physical address and ``p_vaddr`` its address in the
direct mapping (``__va(paddr)``), or -1 where it has none (kexec-tools: "HIGMEM has a
virtual address of -1"). A range is cut where the direct map's cover changes: ``p_vaddr``
is only given where mmemu's page tables really map ``__va(pa)`` to ``pa``, so a reader
that takes virtual addresses from the segments reads what the page tables would give it.

drgn (libdrgn/program.c, drgn_program_set_core_dump) reads physical addresses from
``p_paddr``, virtual ones from the ``p_vaddr`` segments, and every other virtual address
through the kernel's page tables with its own walker, from ``SYMBOL(swapper_pg_dir)``. The
VMCOREINFO lines it parses (libdrgn/drgn_program_parse_vmcoreinfo.inc.strswitch, drgn
0.3.0): OSRELEASE, PAGESIZE and SYMBOL(swapper_pg_dir) are required; the arch adds what
its walker needs (x86_64: NUMBER(phys_base), to read swapper_pg_dir by its physical
address, and NUMBER(pgtable_l5_enabled), 4 or 5 levels). The generic lines here are the
first ones of the kernel's crash_save_vmcoreinfo_init() (kernel/crash_core.c) whose
values mmemu knows; the arch's come from :meth:`mmemu.arch.Arch.vmcoreinfo`, its
arch_crash_save_vmcoreinfo(). mmemu keeps no struct contents, so the struct sizes and
offsets of a real VMCOREINFO (SIZE(page), OFFSET(...)) and the kallsyms symbols are not
there: drgn reads memory from such a core without a vmlinux, but its helpers need types.

The RAM is streamed into the file a chunk at a time; all-zero pages are skipped with a seek
when the file can seek, leaving holes (the file reads the same, the disk holds only what the
machine touched). No NT_PRSTATUS notes are written: the CPUs' registers are not
part of the state a vmcore reader needs to read memory.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from typing import BinaryIO

from .errors import ConfigError
from .units import PAGE_SIZE

# include/uapi/linux/elf.h
ELFCLASS64 = 2
ELFDATA2LSB = 1
EV_CURRENT = 1
ET_CORE = 4
PT_LOAD = 1
PT_NOTE = 4
PF_X, PF_W, PF_R = 1, 2, 4
#: Elf64_Ehdr and Elf64_Phdr, little-endian
EHDR64 = struct.Struct("<16sHHIQQQIHHHHHH")
PHDR64 = struct.Struct("<IIQQQQQQ")
#: Elf64_Nhdr: n_namesz, n_descsz, n_type
NHDR = struct.Struct("<III")
#: include/linux/crash_core.h VMCOREINFO_NOTE_NAME; the note's type is 0 (append_elf_note())
VMCOREINFO_NOTE_NAME = b"VMCOREINFO"
#: p_vaddr of memory that has no address in the direct mapping (kexec/crashdump-elf.c)
NO_VADDR = (1 << 64) - 1
#: the bytes streamed at a time
CHUNK = 1 << 20

#: what drgn's own page-table walkers cover (drgn 0.3.0: libdrgn/arch_*.c that define
#: linux_kernel_pgtable_iterator_next): elsewhere it reads a core's physical memory only
DRGN_PGTABLE_ARCHES = "x86-64, AArch64, Arm, ppc64 and s390x"


@dataclass(frozen=True)
class Segment:
    """One PT_LOAD: *size* bytes of physical memory at *paddr*, at *offset* in the file;
    *vaddr* its direct-map address, or None."""

    paddr: int
    size: int
    vaddr: int | None
    offset: int = 0


@dataclass
class Vmcore:
    """What :func:`write_vmcore` wrote."""

    machine: str  # the ELF e_machine's name (EM_X86_64)
    vmcoreinfo: str
    segments: list[Segment] = field(default_factory=list)
    size: int = 0  # bytes of the file


def supported_arches() -> list[str]:
    """The registered arches mmemu writes a vmcore for (those whose plugin gives VMCOREINFO)."""
    from .arch import Arch
    from .plugins import default

    return [a.name for a in default()[1] if type(a).vmcoreinfo is not Arch.vmcoreinfo]


def vmcoreinfo(kernel) -> str:
    """The VMCOREINFO note's text: the generic lines, then the arch's. Raises ConfigError
    for an arch mmemu writes no vmcore for."""
    arch_lines = kernel.arch.vmcoreinfo(kernel)
    if arch_lines is None:
        raise ConfigError(f"no vmcore for arch {kernel.arch.name}: drgn, the reader it is for, translates kernel "
                          f"addresses through the page tables of {DRGN_PGTABLE_ARCHES} only; mmemu writes "
                          f"vmcores for {', '.join(supported_arches()) or 'no arch'}")
    v = kernel.spec.kernel
    lines = [f"OSRELEASE={v.major}.{v.minor}.{v.patch}",  # init_uts_ns.name.release (UTS_RELEASE)
             f"PAGESIZE={kernel.paging.page_size}",
             # VMCOREINFO_SYMBOL_ARRAY(swapper_pg_dir): the master page table, whatever the arch calls it
             f"SYMBOL(swapper_pg_dir)={kernel.pgd_va:x}"]
    return "".join(line + "\n" for line in lines + list(arch_lines))


def direct_map_runs(kernel, start: int, end: int) -> list[tuple[int, int, int | None]]:
    """Physical memory [start, end) cut where the direct map's cover changes: (start, end,
    virtual address of start or None), a virtual address only where the master page table
    maps ``__va(pa)`` to *pa* itself, page by page (a large page at a time)."""
    page_offset = kernel.PAGE_OFFSET
    base = kernel.PHYS_OFFSET
    low_end = base + kernel.high_memory - page_offset  # the end of what __va() covers
    runs: list[tuple[int, int, int | None]] = []
    pa = start
    while pa < end:
        if not base <= pa < low_end:  # no __va at all: up to where the direct map starts, or to the end
            step_end, linear = (min(end, base) if pa < base else end), False
        else:
            va = pa - base + page_offset
            w = kernel.walk(va)
            span = w.page_size if w.mapped else 1 << w.steps[-1].level.shift
            step_end = min(end, low_end, pa + span - (va & (span - 1)))
            linear = w.mapped and w.phys == pa
        if runs and (runs[-1][2] is not None) == linear and runs[-1][1] == pa:
            runs[-1] = (runs[-1][0], step_end, runs[-1][2])
        else:
            runs.append((pa, step_end, pa - base + page_offset if linear else None))
        pa = step_end
    return runs


def _note(name: bytes, ntype: int, desc: bytes) -> bytes:
    def pad(b: bytes) -> bytes:
        return b + bytes(-len(b) % 4)

    return NHDR.pack(len(name) + 1, len(desc), ntype) + pad(name + b"\0") + pad(desc)


def write_vmcore(kernel, path_or_file: "str | os.PathLike | BinaryIO", sparse: bool = True) -> Vmcore:
    """Write the state of *kernel* as an ELF kdump core to *path_or_file* (a path, or a
    binary file open for writing) and return what was written. *sparse*: skip all-zero
    pages with a seek where the file can seek. Raises ConfigError for an arch with no
    vmcore (before anything is written), OSError when the file cannot be written."""
    from elftools.elf.enums import ENUM_E_MACHINE

    text = vmcoreinfo(kernel)
    if kernel.ptr_size != 8:
        raise ConfigError(f"no vmcore for arch {kernel.arch.name}: only ELFCLASS64 cores are written")
    machine = kernel.arch.elf_machine
    note = _note(VMCOREINFO_NOTE_NAME, 0, text.encode())
    runs = [run for start, end in kernel.mem.ranges for run in direct_map_runs(kernel, start, end)]
    headers = EHDR64.size + PHDR64.size * (1 + len(runs))
    offset = -(-(headers + len(note)) // PAGE_SIZE) * PAGE_SIZE
    segments = []
    for start, end, va in runs:
        segments.append(Segment(start, end - start, va, offset))
        offset += end - start
    core = Vmcore(machine, text, segments, offset)

    ident = b"\x7fELF" + bytes((ELFCLASS64, ELFDATA2LSB, EV_CURRENT))
    out = [EHDR64.pack(ident, ET_CORE, ENUM_E_MACHINE[machine], EV_CURRENT, 0, EHDR64.size, 0, 0,
                       EHDR64.size, PHDR64.size, 1 + len(segments), 0, 0, 0),
           PHDR64.pack(PT_NOTE, 0, headers, 0, 0, len(note), len(note), 0)]
    out += [PHDR64.pack(PT_LOAD, PF_R | PF_W | PF_X, s.offset, NO_VADDR if s.vaddr is None else s.vaddr, s.paddr,
                        s.size, s.size, 0) for s in segments]
    out.append(note)
    head = b"".join(out)

    if isinstance(path_or_file, (str, os.PathLike)):
        with open(path_or_file, "wb") as f:
            _stream(kernel, f, head, segments, core.size, sparse)
    else:
        _stream(kernel, path_or_file, head, segments, core.size, sparse)
    return core


def _stream(kernel, f: BinaryIO, head: bytes, segments: list[Segment], size: int, sparse: bool) -> None:
    seekable = sparse and f.seekable()
    start = f.tell() if seekable else 0  # (a file already written to: offsets count from here)
    f.write(head)
    pos = len(head)  # where the file ends so far, holes included
    zeros = bytes(CHUNK)

    def put(at: int, data: bytes) -> None:
        nonlocal pos
        if at > pos:
            if seekable:
                f.seek(start + at)
            else:
                f.write(bytes(at - pos))
        f.write(data)
        pos = at + len(data)

    for s in segments:
        for off in range(0, s.size, CHUNK):
            data = kernel.mem.read(s.paddr + off, min(CHUNK, s.size - off))
            if not seekable:
                put(s.offset + off, data)
            elif data != zeros[:len(data)]:  # the pages with something in them; the zero ones are holes
                pages = range(0, len(data), PAGE_SIZE)
                used = [i for i in pages if data[i:i + PAGE_SIZE] != zeros[:PAGE_SIZE]]
                run = used[0]
                for i, nxt in zip(used, used[1:] + [None]):
                    if nxt != i + PAGE_SIZE:
                        put(s.offset + off + run, data[run:i + PAGE_SIZE])
                        run = nxt
    if pos < size:  # trailing zeros: the last byte written makes the file its size
        if seekable:
            f.seek(start + size - 1)
            f.write(b"\0")
        else:
            f.write(bytes(size - pos))
