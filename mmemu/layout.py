"""What a machine is asked to be (:class:`MachineSpec`) and the kernel's memory map that an
arch plugin computes from it (:class:`Layout`).

The core knows no kernel numbers: every value here is filled in by an arch plugin from the
kernel's own formulas. The core only reads them (boot, renderers, the CLI).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterator, Mapping

from .errors import ConfigError
from .units import ASCII_BLANKS, KernelVersion, check_ascii, memparse, parse_count


class Cmdline(Mapping[str, "str | None"]):
    """The boot command line, parsed like the kernel's ``parse_args()``: words separated by
    blanks, ``key=value`` or a bare ``flag``; a later word overrides an earlier one with the
    same key. Values keep their text; :meth:`size` parses one with ``memparse``."""

    def __init__(self, text: str = ""):
        if text is None:
            text = ""
        if not isinstance(text, str):
            raise ConfigError(f"the kernel command line must be a str, not {type(text).__name__}")
        check_ascii(text, "kernel command line")
        # lib/cmdline.c next_arg(): words are separated by ASCII blanks only (isspace())
        words = [w for w in re.split(f"[{re.escape(ASCII_BLANKS)}]+", text) if w]
        self.text = " ".join(words)
        self._args: dict[str, str | None] = {}
        for word in words:
            key, sep, value = word.partition("=")
            if not key:
                raise ConfigError(f"malformed kernel command line word {word!r}: empty parameter name")
            self._args[key] = value if sep else None

    def __getitem__(self, key: str) -> str | None:
        return self._args[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._args)

    def __len__(self) -> int:
        return len(self._args)

    def size(self, key: str) -> int | None:
        """``vmalloc=256M`` -> 268435456; None when the parameter is absent."""
        if key not in self._args:
            return None
        value = self._args[key]
        if value is None:
            raise ConfigError(f"kernel parameter {key}= needs a size, e.g. {key}=256M")
        return memparse(value, what=f"size in kernel parameter {key}=")

    def __repr__(self) -> str:
        return f"Cmdline({self.text!r})"


@dataclass(frozen=True)
class MachineSpec:
    """Everything a machine is built from: the CLI's machine options, the API's ``boot()``
    arguments. ``options`` are arch options (``--option levels=5``), validated by the arch."""

    arch: str
    kernel: KernelVersion
    ram: int
    cpus: int = 1
    cmdline: Cmdline = field(default_factory=Cmdline)
    options: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def make(cls, arch: str, kernel: "str | KernelVersion" = "6.6", ram: "str | int" = "1G",
             cpus: int = 1, cmdline: "str | Cmdline" = "", options: "Mapping[str, str] | None" = None) -> "MachineSpec":
        if isinstance(ram, str):
            ram_bytes = memparse(ram, what="RAM size")
        elif isinstance(ram, int) and not isinstance(ram, bool):
            ram_bytes = ram
        else:
            raise ConfigError(f"RAM size must be a size such as '1G' or a whole number of bytes, not {ram!r}")
        if ram_bytes <= 0:
            raise ConfigError(f"RAM size must be positive, not {ram!r}")
        if ram_bytes % 4096:
            raise ConfigError(f"RAM size {ram!r} is not a whole number of 4 KiB pages")
        cpus = parse_count(cpus, "CPU count")
        if cpus < 1:
            raise ConfigError(f"CPU count must be at least 1, not {cpus}")
        if not isinstance(arch, str):
            raise ConfigError(f"arch must be a name such as 'x86_64', not {arch!r}")
        if options is not None and not isinstance(options, Mapping):
            raise ConfigError(f"options must be a mapping of KEY to VALUE, not {type(options).__name__}")
        for key, value in (options or {}).items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise ConfigError(f"arch option {key!r}={value!r}: keys and values are str")
            check_ascii(key, "arch option"), check_ascii(value, f"arch option {key}")
        return cls(arch=arch, kernel=KernelVersion.parse(kernel), ram=ram_bytes, cpus=cpus,
                   cmdline=cmdline if isinstance(cmdline, Cmdline) else Cmdline(cmdline),
                   options=dict(options or {}))


@dataclass(frozen=True)
class Region:
    """A named range of the virtual address space, half-open: ``[start, end)``."""

    name: str
    start: int
    end: int
    #: what the region is for, in words the core understands: "user", "direct", "vmalloc",
    #: "pkmap", "fixmap", "modules", "kernel-text", "vmemmap", "cpu-entry-area", "ldt",
    #: "hole", "guard", or anything else (rendered as is).
    kind: str = ""

    @property
    def size(self) -> int:
        return self.end - self.start


def fill_holes(regions, end: int, arch: str) -> list[Region]:
    """*regions* sorted, every gap of [0, *end*) named ``... unused hole``: the regions then
    cover the address space, as the kernel's mm.rst tables do. Regions that overlap are a
    bug of *arch*'s layout (ConfigError naming both)."""
    out: list[Region] = []
    pos = 0
    for r in sorted(regions, key=lambda r: r.start):
        if r.start < pos:
            raise ConfigError(f"{arch} layout bug: {r.name} ({r.start:#x}) overlaps "
                              f"{out[-1].name} (ends {pos:#x})")
        if r.start > pos:
            out.append(Region("... unused hole", pos, r.start, "hole"))
        out.append(r)
        pos = r.end
    if pos < end:
        out.append(Region("... unused hole", pos, end, "hole"))
    return out


@dataclass(frozen=True)
class ZoneSpan:
    """A memory zone as the kernel sizes it: pfns ``[start_pfn, end_pfn)``."""

    name: str  # "DMA", "DMA32", "Normal", "HighMem"
    start_pfn: int
    end_pfn: int


def zone_spans(limits, start_pfn: int, end_pfn: int) -> list[ZoneSpan]:
    """The zones of RAM [start_pfn, end_pfn) from ``max_zone_pfns[]`` (mm/page_alloc.c
    free_area_init): *limits* is (name, end pfn) in zone order; each zone runs from the end of
    the one before to its limit, clamped to the RAM. Empty zones are left out."""
    zones, lo = [], start_pfn
    for name, hi in limits:
        hi = min(hi, end_pfn)
        if hi > lo:
            zones.append(ZoneSpan(name, lo, hi))
            lo = hi
    return zones


@dataclass(frozen=True)
class MemoryRange:
    """One line of the firmware memory map (e820): ``[start, end)`` of a type."""

    start: int
    end: int
    type: str  # "usable" or "reserved"


@dataclass(frozen=True)
class ImageSection:
    """A part of the kernel image as the linker script lays it out and the kernel maps it
    after ``mark_rodata_ro()``: text read-only executable, rodata read-only, data and bss
    writable, both non-executable where the arch has NX."""

    name: str  # "text", "rodata", "data", "bss"
    virt: int
    phys: int
    size: int
    writable: bool
    executable: bool
    #: the named protection the kernel gives the section, where it is not the one
    #: writable/executable imply (PAGE_KERNEL_EXEC for an era that left its image RWX)
    prot: str | None = None


@dataclass
class Layout:
    """The kernel's virtual memory map for one machine.

    ``symbols`` maps the kernel's own names (``PAGE_OFFSET``, ``VMALLOC_START``,
    ``high_memory``, ``max_low_pfn``...) to their values, in the order a reader expects them.
    ``regions`` are sorted by start and do not overlap. ``config`` records the
    compile-time configuration the formulas assumed (``CONFIG_HIGHMEM``, ``NR_CPUS``...),
    as the kernel's names with their values.
    """

    arch: str
    kernel: KernelVersion
    paging: str  # name of the paging mode, e.g. "2-level", "PAE", "4-level", "5-level"
    symbols: dict[str, int]
    regions: list[Region]
    zones: list[ZoneSpan]
    memory_map: list[MemoryRange]
    image: list[ImageSection]
    config: dict[str, object] = field(default_factory=dict)
    #: the fixmap's ``enum fixed_addresses`` for this era and config: (name, index) pairs in
    #: enum order, ``__end_of_permanent_fixed_addresses`` and ``__end_of_fixed_addresses`` included.
    fixmap: list[tuple[str, int]] = field(default_factory=list)
    #: what memblock reserves at boot besides the kernel image (which every arch reserves:
    #: ``memblock_reserve(_text, _end - _text)``): the PC's first page, RISC-V's firmware,
    #: a device tree... ``type`` names the owner, as the frame records will.
    reserved: list[MemoryRange] = field(default_factory=list)

    @property
    def phys_offset(self) -> int:
        """Physical address the direct map starts at (``PHYS_OFFSET``; 0 on x86)."""
        return self.symbols.get("PHYS_OFFSET", 0)

    @property
    def lowmem_bytes(self) -> int:
        """Bytes of physical memory the direct map covers (high_memory - PAGE_OFFSET)."""
        return self.symbols["high_memory"] - self.symbols["PAGE_OFFSET"]

    def ram_ranges(self) -> list[tuple[int, int]]:
        """Physical ranges [start, end) backed by memory (usable or firmware-reserved RAM),
        merged: what the machine's RAM buffer and the CPU map. The rest is a hole."""
        out: list[tuple[int, int]] = []
        for r in sorted(self.memory_map, key=lambda r: r.start):
            if out and r.start <= out[-1][1]:
                out[-1] = (out[-1][0], max(out[-1][1], r.end))
            else:
                out.append((r.start, r.end))
        return out

    def __getitem__(self, name: str) -> int:
        return self.symbols[name]

    def region(self, name: str) -> Region:
        for r in self.regions:
            if r.name == name:
                return r
        raise KeyError(name)

    def region_kind(self, kind: str) -> Region:
        """The first region of a kind ("direct", "vmalloc", "pkmap", ...)."""
        for r in self.regions:
            if r.kind == kind:
                return r
        raise KeyError(kind)

    def region_of(self, addr: int) -> Region | None:
        for r in self.regions:
            if r.start <= addr < r.end:
                return r
        return None

    def zone_of_pfn(self, pfn: int) -> ZoneSpan | None:
        for z in self.zones:
            if z.start_pfn <= pfn < z.end_pfn:
                return z
        return None

    def check(self) -> None:
        """Raise ConfigError if regions overlap or are unsorted (a plugin bug)."""
        prev = None
        for r in self.regions:
            if r.end <= r.start:
                raise ConfigError(f"layout region {r.name} is empty or reversed: {r.start:#x}-{r.end:#x}")
            if prev is not None and r.start < prev.end:
                raise ConfigError(f"layout regions {prev.name} and {r.name} overlap")
            prev = r
