"""The contract an arch plugin fills in.

Like Linux's ``pgtable-2level.h`` / ``pgtable-3level.h`` / ``pgtable_64.h``, an arch supplies
only constants and formats: its paging levels (:class:`Level`), gathered in a
:class:`PagingMode`, its kernel layouts, and its CPU set-up. One generic engine
(:mod:`mmemu.pagetable`) walks and maps every arch from this description.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Mapping

import construct

from .errors import ConfigError

if TYPE_CHECKING:
    from .layout import Layout, MachineSpec


@dataclass(frozen=True)
class Level:
    """One level of the page-table tree, named as the kernel names it."""

    name: str  # "pgd", "p4d", "pud", "pmd", "pte"
    shift: int  # log2 of the bytes one entry spans
    bits: int  # index bits: the table has 1 << bits entries
    entry_size: int  # bytes per entry (4 or 8)
    #: format of an entry that points to a next-level table (at the last level: to a page)
    format: construct.Construct
    #: format of an entry that maps a large page at this level; None if it cannot
    large_format: construct.Construct | None = None
    #: kernel names of the levels folded into this one (``pgtable-nopmd.h``): the 2-level
    #: i386 pgd folds p4d, pud and pmd, so tools print it once per folded name
    folds: tuple[str, ...] = ()
    #: False where the entry's RW/US/NX bits take no part in access control (the PAE PDPT)
    access_bits: bool = True
    addr_mask: int = 0  # bits of the next table's (or page's) physical address
    large_addr_mask: int = 0  # bits of a large page's physical address
    reserved: int = 0  # must-be-zero bits of a present entry that points to a table
    large_reserved: int = 0  # must-be-zero bits of a present large-page entry
    #: flags of a table entry the kernel writes for kernel / user tables (_KERNPG_TABLE,
    #: _PAGE_TABLE; the PAE PDPT gets _PAGE_PRESENT only)
    table_flags_kernel: int = 0
    table_flags_user: int = 0

    @property
    def entries(self) -> int:
        return 1 << self.bits

    @property
    def span(self) -> int:
        """Bytes mapped by one entry (the page size if it is a leaf)."""
        return 1 << self.shift

    @property
    def table_size(self) -> int:
        return self.entry_size << self.bits

    @property
    def display_names(self) -> tuple[str, ...]:
        """The names tools print for this level: the folded ones first, then its own
        (crash's ``PGD:`` then ``PMD:`` for one 2-level i386 directory entry)."""
        return (self.name,) + self.folds


@dataclass(frozen=True)
class PagingMode:
    """A paging mode: the levels top-down and the meaning of the flag bits.

    The walker needs only masks: present, write, user, large (PS), nx (0 when the mode
    has no NX bit or EFER.NXE is off: the bit is then reserved). ``flags`` lists every flag
    bit by the name the construct formats give its field, in the order crash prints them.
    """

    name: str  # "2-level", "PAE", "4-level", "5-level"
    levels: tuple[Level, ...]
    va_bits: int  # linear address width (32, 48, 57)
    pa_bits: int  # MAXPHYADDR of the emulated CPU
    present: int
    write: int
    user: int
    accessed: int
    dirty: int
    large: int
    global_: int
    nx: int
    flags: tuple[tuple[str, int], ...]
    #: x86_64: addresses are sign-extended from bit va_bits-1 (canonical form)
    canonical: bool = False
    #: the PAT bit of a last-level entry and of a large-page entry (x86: bit 7 and bit 12);
    #: splitting a large page moves one to the other (the kernel's pgprot_large_2_4k)
    pat: int = 0
    pat_large: int = 0

    @property
    def page_shift(self) -> int:
        return self.levels[-1].shift

    @property
    def page_size(self) -> int:
        return 1 << self.page_shift

    @property
    def va_limit(self) -> int:
        """One past the highest linear address (2**32 or 2**64)."""
        return 1 << (64 if self.canonical else self.va_bits)

    def is_canonical(self, va: int) -> bool:
        if not self.canonical:
            return 0 <= va < (1 << self.va_bits)
        top = va >> (self.va_bits - 1)
        return 0 <= va < (1 << 64) and top in (0, (1 << (65 - self.va_bits)) - 1)

    def leaf_sizes(self) -> tuple[int, ...]:
        """Every page size the mode can map, largest first."""
        sizes = [lv.span for lv in self.levels if lv.large_format is not None]
        sizes.append(self.levels[-1].span)
        return tuple(sorted(set(sizes), reverse=True))

    def level(self, name: str) -> Level:
        for lv in self.levels:
            if lv.name == name or name in lv.folds:
                return lv
        raise KeyError(name)


@dataclass(frozen=True)
class CpuSetup:
    """How to put Unicorn's CPU into this arch's paging mode. Plain numbers, read by
    :mod:`mmemu.cpu`: the arch never touches Unicorn itself."""

    unicorn_arch: str  # "x86"
    bits: int  # 32 or 64: Unicorn mode
    cr0: int  # PE|PG|WP...
    cr4: int  # PSE, PAE, LA57...
    efer: int  # LME|LMA|NXE (64-bit, PAE+NX)
    #: GDT selectors as the kernel lays them out (asm/segment.h)
    kernel_cs: int
    kernel_ds: int
    user_cs: int
    user_ds: int
    gdt_entries: int  # GDT_ENTRIES


@dataclass(frozen=True)
class ArchOption:
    """An ``--option KEY=VALUE`` the arch understands."""

    key: str
    help: str
    choices: tuple[str, ...] = ()  # empty: free text, validated by the arch
    default: str | None = None


class Arch(abc.ABC):
    """An architecture as a plugin registers it (``mmemu_register_arch``)."""

    #: short name used on the command line (``--arch i386_pae``)
    name: str
    #: one line for ``mmemu arches``
    summary: str
    options: tuple[ArchOption, ...] = ()

    def check_options(self, spec: "MachineSpec") -> dict[str, str]:
        """Validate ``spec.options`` against :attr:`options`; return them with defaults."""
        known = {o.key: o for o in self.options}
        out = {o.key: o.default for o in self.options if o.default is not None}
        for key, value in spec.options.items():
            opt = known.get(key)
            if opt is None:
                names = ", ".join(sorted(known)) or "none"
                raise ConfigError(f"arch {self.name} has no option {key!r}; its options: {names}")
            if opt.choices and value not in opt.choices:
                raise ConfigError(f"option {key}={value!r} is not one of {', '.join(opt.choices)} for arch {self.name}")
            out[key] = value
        return out

    @abc.abstractmethod
    def paging(self, spec: "MachineSpec") -> PagingMode:
        """The paging mode a machine of this spec runs in."""

    @abc.abstractmethod
    def layout(self, spec: "MachineSpec") -> "Layout":
        """The kernel's memory map for this spec, from the kernel's formulas of its era.
        Raises :class:`ConfigError` on a spec the kernel could not boot."""

    @abc.abstractmethod
    def cpu_setup(self, spec: "MachineSpec") -> CpuSetup:
        """Control registers and segments for running code with paging on."""

    @abc.abstractmethod
    def boot_page_sizes(self, spec: "MachineSpec") -> tuple[int, ...]:
        """Page sizes the kernel uses for its direct mapping on this spec, largest first
        (the command line can forbid large pages: ``nopse``, ``nogbpages``)."""

    #: named page protections (pgprot values, asm/pgtable_types.h) the kernel model uses:
    #: PAGE_KERNEL, PAGE_KERNEL_RO, PAGE_KERNEL_EXEC, PAGE_KERNEL_RX, PAGE_SHARED...
    pgprot: Mapping[str, int] = MappingProxyType({})

    def ptdump_markers(self, layout: "Layout") -> list[tuple[int, str, int]]:
        """The address markers of the kernel page-table dump: (address, name, max_lines),
        ascending. The default marks every region of the layout."""
        return [(0, "User Space", 0)] + [(r.start, r.name, 0) for r in layout.regions if r.start > 0]

    def ptdump_ranges(self, layout: "Layout") -> list[tuple[int, int | None]]:
        """The virtual ranges the dump walks, [start, end) with None for "to the top"."""
        return [(0, None)]

    #: which crash utility machine type ``mmemu vtop`` imitates: "x86" or "x86_64"
    crash_machine: str = ""

    def __repr__(self) -> str:
        return f"<Arch {self.name}>"
