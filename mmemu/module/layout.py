"""Where each section of a module goes: the kernel's ``layout_sections`` of each era.

The kernel sorts the SHF_ALLOC sections into groups by their flags, in a fixed order
(``masks[]`` in kernel/module.c, kernel/module/main.c from 6.4): executable code, read-only
data, read-only-after-init data (4.8+), writable data, then the small-data sections
(ARCH_SHF_SMALL, none on x86), each group of the core part and then of the init part
(sections named ``.init*``). Inside a group a section is placed at the next offset its
``sh_addralign`` allows (``get_offset``). Before 6.4 the groups of a part follow each other
in one allocation (``core_layout``/``init_layout``, with ``text_size``, ``ro_size``,
``ro_after_init_size`` marking the group ends, page-aligned where the era's strict module
RWX says so); from 6.4 each group is its own allocation (``mod_mem_type``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..units import PAGE_SIZE
from .elf import SHF_ALLOC, SHF_EXECINSTR, SHF_WRITE, ModuleFile, Section

#: include/linux/module.h (4.8+): the flag the loader puts on .data..ro_after_init
SHF_RO_AFTER_INIT = 0x00200000

#: the kinds of memory a module has, by what the kernel allows in them once loaded
TEXT, RODATA, RO_AFTER_INIT, DATA = "text", "rodata", "ro_after_init", "data"

# kernel/module/main.c layout_sections (6.4): masks[] and the mod_mem_type of each
_MASKS = ((SHF_EXECINSTR | SHF_ALLOC, 0, TEXT),
          (SHF_ALLOC, SHF_WRITE, RODATA),
          (SHF_RO_AFTER_INIT | SHF_ALLOC, 0, RO_AFTER_INIT),
          (SHF_WRITE | SHF_ALLOC, 0, DATA),
          (SHF_ALLOC, 0, DATA))  # ARCH_SHF_SMALL | SHF_ALLOC: no small sections on x86

#: 6.4+ names (enum mod_mem_type, include/linux/module.h)
MOD_MEM_NAMES = {(False, TEXT): "MOD_TEXT", (False, RODATA): "MOD_RODATA", (False, RO_AFTER_INIT): "MOD_RO_AFTER_INIT",
                 (False, DATA): "MOD_DATA", (True, TEXT): "MOD_INIT_TEXT", (True, RODATA): "MOD_INIT_RODATA",
                 (True, DATA): "MOD_INIT_DATA"}


@dataclass(frozen=True)
class LayoutRules:
    """The era's layout rules (from :data:`mmemu.kernel.eras.MM`)."""

    #: one allocation per mod_mem_type (6.4+); else one core and one init allocation
    mem_types: bool
    #: the sections the loader marks SHF_RO_AFTER_INIT, their own group (4.8+:
    #: .data..ro_after_init; __jump_table too from 5.0); empty before
    ro_after_init: tuple[str, ...]
    #: the groups start on page boundaries (CONFIG_DEBUG_SET_MODULE_RONX /
    #: CONFIG_STRICT_MODULE_RWX: the permissions are set per page)
    page_aligned: bool


@dataclass
class Span:
    """A run of one region with one kind of memory (text, rodata...)."""

    kind: str
    start: int
    end: int


@dataclass
class Region:
    """One allocation of the module: ``core``/``init`` before 6.4, a mod_mem_type from 6.4."""

    name: str
    init: bool
    size: int = 0
    spans: list[Span] = field(default_factory=list)
    #: where the loader put it (set by the allocation step)
    base: int | None = None


@dataclass
class Placement:
    """A section's place: its region and offset there."""

    section: Section
    region: Region
    offset: int
    kind: str

    @property
    def address(self) -> int | None:
        return None if self.region.base is None else self.region.base + self.offset


@dataclass
class ModuleLayout:
    regions: list[Region]
    placements: dict[int, Placement]  # by section index

    def region(self, name: str) -> Region | None:
        return next((r for r in self.regions if r.name == name), None)


def module_init_section(name: str) -> bool:
    """``module_init_section`` (kernel/module.c; the generic one on x86): ``.init*``."""
    return name.startswith(".init")


def _align(value: int, align: int) -> int:
    return (value + align - 1) & ~(align - 1) if align > 1 else value


def layout_sections(mf: ModuleFile, rules: LayoutRules, skip: frozenset[int] = frozenset()) -> ModuleLayout:
    """Place every SHF_ALLOC section of *mf* except those in *skip* (the ones the loader took
    the SHF_ALLOC flag off: .modinfo, __versions, the per-cpu section)."""
    regions: list[Region] = []
    placements: dict[int, Placement] = {}
    for init in (False, True):
        part = None if rules.mem_types else Region("init" if init else "core", init)
        for must, must_not, kind in _MASKS:
            if kind == RO_AFTER_INIT and not rules.ro_after_init:
                continue  # no such group before 4.8
            if rules.mem_types:
                if init and kind == RO_AFTER_INIT:
                    continue  # no MOD_INIT_RO_AFTER_INIT (init_m_to_mem_type: MOD_INVALID)
                name = MOD_MEM_NAMES[(init, kind)]
                region = next((r for r in regions if r.name == name), None)
                if region is None:
                    region = Region(name, init)
                    regions.append(region)
            else:
                region = part
            start = region.size
            for sec in mf.sections:
                if sec.index in placements or sec.index in skip or not sec.index:
                    continue
                flags = sec.flags | (SHF_RO_AFTER_INIT if sec.name in rules.ro_after_init else 0)
                if (flags & must) != must or flags & must_not or module_init_section(sec.name) != init:
                    continue
                offset = _align(region.size, sec.align or 1)
                region.size = offset + sec.size
                placements[sec.index] = Placement(sec, region, offset, kind)
            if rules.page_aligned:
                region.size = _align(region.size, PAGE_SIZE)
            if region.size > start:
                region.spans.append(Span(kind, start, region.size))
        if part is not None:
            regions.append(part)
    return ModuleLayout([r for r in regions if r.size], placements)
