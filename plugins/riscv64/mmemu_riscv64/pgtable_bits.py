"""The riscv64 PTE bits and the kernel's named protections, per era.

The bit positions are the RISC-V privileged specification's (Sv39/Sv48/Sv57 PTE: V R W X U
G A D in bits 0..7, RSW in 9..8, PPN in 53..10, bits 63..54 reserved; Svpbmt puts PBMT in
62..61 and Svnapot N in 63), named as arch/riscv/include/asm/pgtable-bits.h names them (every
era: 4.15 .. 6.x; read in 5.4 and 5.17+) and pgtable-64.h (6.x: _PAGE_PFN_MASK GENMASK(53, 10),
_PAGE_NAPOT, _PAGE_MTMASK_SVPBMT: names from recollection, values the spec's).
"""

from __future__ import annotations

from types import MappingProxyType

from .eras import RISCV

_PAGE_PRESENT = 1 << 0
_PAGE_READ = 1 << 1  # Readable
_PAGE_WRITE = 1 << 2  # Writable
_PAGE_EXEC = 1 << 3  # Executable
_PAGE_USER = 1 << 4  # User
_PAGE_GLOBAL = 1 << 5  # Global
_PAGE_ACCESSED = 1 << 6  # Set by hardware on any access
_PAGE_DIRTY = 1 << 7  # Set by hardware on any write
_PAGE_SOFT = 1 << 8  # Reserved for software (pgtable-bits.h 4.15 .. 5.x: bit 8 only; crash's _page_soft)
_PAGE_RSW = 3 << 8  # the two RSW bits of the spec (9..8)
_PAGE_SPECIAL = _PAGE_SOFT
_PAGE_TABLE = _PAGE_PRESENT  # pgtable-bits.h: '#define _PAGE_TABLE _PAGE_PRESENT'
#: pgtable-bits.h (5.17+): 'when all of R/W/X are zero, the PTE is a pointer to the next level'
_PAGE_LEAF = _PAGE_READ | _PAGE_WRITE | _PAGE_EXEC
_PAGE_PFN_SHIFT = 10

PPN_BITS = 44  # Sv39/48/57: PPN[...] spans bits 53..10 of a PTE, 44 bits
#: pgtable-64.h (6.x): _PAGE_PFN_MASK GENMASK(53, 10)
_PAGE_PFN_MASK = ((1 << PPN_BITS) - 1) << _PAGE_PFN_SHIFT
#: privileged spec 1.12 (Sv39): 'Bits 63-54 are reserved for future standard use ... If any of
#: these bits are set, a page-fault exception is raised' (Svpbmt and Svnapot give 62..61 and
#: 63 a meaning; the emulated CPU has neither, so they stay reserved here)
_PAGE_RESERVED_HIGH = ((1 << 10) - 1) << 54
_PAGE_NAPOT = 1 << 63  # pgtable-64.h (6.x), Svnapot
_PAGE_NOCACHE_SVPBMT = 1 << 61  # pgtable-64.h (6.x), Svpbmt PBMT=NC
_PAGE_IO_SVPBMT = 1 << 62  # PBMT=IO
_PAGE_MTMASK_SVPBMT = _PAGE_NOCACHE_SVPBMT | _PAGE_IO_SVPBMT

#: pgtable-bits.h (every era read: 5.4, 5.17+): '#define _PAGE_CHG_MASK (~(unsigned long)(
#: _PAGE_PRESENT | _PAGE_READ | _PAGE_WRITE | _PAGE_EXEC | _PAGE_USER | _PAGE_GLOBAL))' - the
#: bits pte_modify() keeps; the PPN among them (the codec keeps the frame itself)
_PAGE_CHG_MASK = ((1 << 64) - 1) & ~(_PAGE_PRESENT | _PAGE_READ | _PAGE_WRITE | _PAGE_EXEC | _PAGE_USER | _PAGE_GLOBAL)

#: crash riscv64.c riscv64_translate_pte(): CHECK_PAGE_FLAG order and names
CRASH_FLAGS = (("PRESENT", _PAGE_PRESENT), ("READ", _PAGE_READ), ("WRITE", _PAGE_WRITE), ("EXEC", _PAGE_EXEC),
               ("USER", _PAGE_USER), ("GLOBAL", _PAGE_GLOBAL), ("ACCESSED", _PAGE_ACCESSED),
               ("DIRTY", _PAGE_DIRTY), ("SOFT", _PAGE_SOFT))


def prot_none_bit(version) -> int:
    """``_PAGE_PROT_NONE`` of the era: _PAGE_READ until 5.16, _PAGE_GLOBAL from 5.17."""
    return _PAGE_GLOBAL if RISCV(version).prot_none == "global" else _PAGE_READ


def pgprots(version) -> dict[str, int]:
    """The kernel's named protections of arch/riscv/include/asm/pgtable.h for *version*,
    plus the names mmemu's core asks for (:data:`mmemu.arch.REQUIRED_PGPROTS`).

    - ``_PAGE_BASE (_PAGE_PRESENT | _PAGE_ACCESSED | _PAGE_USER)``; PAGE_READ, PAGE_WRITE
      (R|W), PAGE_EXEC, PAGE_READ_EXEC, PAGE_WRITE_EXEC (R|X|W) from it (4.15 .. 6.x, read in
      5.4, 5.10 and 6.x).
    - PAGE_COPY PAGE_READ; PAGE_COPY_EXEC PAGE_EXEC (with PAGE_COPY_READ_EXEC
      PAGE_READ_EXEC) until 6.3, PAGE_READ_EXEC from 6.4; PAGE_SHARED PAGE_WRITE;
      PAGE_SHARED_EXEC PAGE_WRITE_EXEC.
    - PAGE_NONE: _PAGE_PROT_NONE (= _PAGE_READ) until 5.16; _PAGE_PROT_NONE (= _PAGE_GLOBAL)
      | _PAGE_READ from 5.17. Either way V=0: no access for the MMU, pte_present() for mm.
    - _PAGE_KERNEL: R|W|P|A|D, with _PAGE_GLOBAL from 5.14; PAGE_KERNEL_EXEC adds X;
      PAGE_KERNEL_READ (& ~W) and PAGE_KERNEL_READ_EXEC exist with STRICT_KERNEL_RWX (5.7+).

    mmemu's PAGE_KERNEL_RO and PAGE_KERNEL_RX are the kernel's PAGE_KERNEL_READ and
    PAGE_KERNEL_READ_EXEC (the values the same expressions give where the era lacks the
    names: before 5.7 the kernel maps its image PAGE_KERNEL_EXEC, read-write-execute).

    The user protections are what the core's protection_map[] takes from these names
    (mmemu.kernel.process: PAGE_COPY_EXEC for a private writable executable VMA,
    PAGE_READONLY_EXEC for a readonly executable one). riscv's own table (pgtable.h
    __P000..__S111; a protection_map[] array in later eras, same entries) gives a private
    R|W|X VMA __P111 = PAGE_COPY_READ_EXEC (R|X), and before 6.4 its PAGE_COPY_EXEC (PAGE_EXEC,
    execute-only) only to a private W|X VMA without R (__P110): mmemu's ``PAGE_COPY_EXEC`` is
    therefore __P111's value, R|X in every era, and the kernel's own PAGE_COPY_EXEC is under
    ``__P110``. Left as the core's table makes them (no per-arch protection_map in the
    contract): __P100/__S100 = PAGE_EXEC (execute-only) become PAGE_READONLY_EXEC (R|X), and a
    private W|X VMA without R gets R|X (before 6.4 the kernel gives it X, which its first write
    fault turns into a reserved W|X pte).
    """
    e = RISCV(version)
    base = _PAGE_PRESENT | _PAGE_ACCESSED | _PAGE_USER
    read = base | _PAGE_READ
    write = base | _PAGE_READ | _PAGE_WRITE
    exe = base | _PAGE_EXEC
    read_exec = base | _PAGE_READ | _PAGE_EXEC
    write_exec = base | _PAGE_READ | _PAGE_EXEC | _PAGE_WRITE
    prot_none = prot_none_bit(version)
    kernel = _PAGE_READ | _PAGE_WRITE | _PAGE_PRESENT | _PAGE_ACCESSED | _PAGE_DIRTY
    if e.global_kernel:
        kernel |= _PAGE_GLOBAL
    out = {
        "PAGE_NONE": prot_none | _PAGE_READ if e.prot_none == "global" else prot_none,
        "PAGE_READ": read,
        "PAGE_WRITE": write,
        "PAGE_EXEC": exe,
        "PAGE_READ_EXEC": read_exec,
        "PAGE_WRITE_EXEC": write_exec,
        "PAGE_COPY": read,
        "PAGE_COPY_EXEC": read_exec,  # protection_map[VM_EXEC | VM_WRITE | VM_READ]: __P111 (see above)
        "__P110": read_exec if e.copy_exec_readable else exe,  # the kernel's PAGE_COPY_EXEC
        "__P111": read_exec,  # PAGE_COPY_READ_EXEC until 6.3, PAGE_COPY_EXEC (PAGE_READ_EXEC) from 6.4
        "__P100": exe,  # PAGE_EXEC: execute-only
        "PAGE_SHARED": write,
        "PAGE_SHARED_EXEC": write_exec,
        "PAGE_READONLY": read,  # no such riscv name: what protection_map[VM_READ] holds (PAGE_READ)
        "PAGE_READONLY_EXEC": read_exec,  # protection_map[VM_EXEC | VM_READ] (PAGE_READ_EXEC)
        "PAGE_KERNEL": kernel,
        "PAGE_KERNEL_EXEC": kernel | _PAGE_EXEC,
        "PAGE_KERNEL_RO": kernel & ~_PAGE_WRITE,
        "PAGE_KERNEL_RX": (kernel & ~_PAGE_WRITE) | _PAGE_EXEC,
        "PAGE_TABLE": _PAGE_TABLE,
        "_PAGE_TABLE": _PAGE_TABLE,
        "_PAGE_KERNEL": kernel,
    }
    if not e.copy_exec_readable:
        out["PAGE_COPY_READ_EXEC"] = read_exec
    if e.strict_kernel_rwx:
        out["PAGE_KERNEL_READ"] = kernel & ~_PAGE_WRITE
        out["PAGE_KERNEL_READ_EXEC"] = (kernel & ~_PAGE_WRITE) | _PAGE_EXEC
    return out


#: the newest era's protections: what the Arch's static ``pgprot`` mapping shows
LATEST = MappingProxyType(pgprots("6.12"))
