"""The x86_64 ``enum fixed_addresses`` of each kernel era, as data.

The fixmap is a set of compile-time virtual addresses just below ``FIXADDR_TOP``, one page
per enum index, counting down: ``__fix_to_virt(i) = FIXADDR_TOP - (i << PAGE_SHIFT)``.
Each era below is the enum of ``fixmap.h`` transcribed in enum order: an entry is one
enumerator (or a run of them, ``FIX_IO_APIC_BASE_0 .. FIX_IO_APIC_BASE_END``) and the
``CONFIG_`` options its ``#ifdef`` needs. :func:`compute_fixmap` evaluates a table for one
configuration the way the C compiler does, and gives every index, ``FIXADDR_TOP`` and
``FIXADDR_START``: ``set_fixmap(idx, phys)`` is then one PTE at ``__fix_to_virt(idx)``.

Entries that only exist on 32-bit (``FIX_HOLE``, ``FIX_VDSO``, ``FIX_WP_TEST``, the VISWS,
F00F and Cyclone slots, ``FIX_KMAP_*`` before 5.11) are left out: they sit under
``#ifdef CONFIG_X86_32`` (or 32-bit-only options) in every era.

Which release each table starts at, and how sure that is, is written on each era. The tables
were read from the kernel's own headers of those releases where a copy was at hand
(2.6.12, the last include/asm-x86/fixmap_64.h, 2.6.32, 3.10, 4.12, 4.19, 5.10, 6.x); the
releases in between take the table of the era they fall in, and where an entry's first or
last release is only bounded the comment says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from mmemu.units import PAGE_SHIFT, PAGE_SIZE, KernelVersion

PMD_SHIFT = 21  # arch/x86/include/asm/pgtable_64_types.h: #define PMD_SHIFT 21
PTRS_PER_PTE = 512  # arch/x86/include/asm/pgtable_64_types.h: #define PTRS_PER_PTE 512
MASK64 = (1 << 64) - 1

# include/asm-x86_64/vsyscall.h (2.6.12 .. 3.15):
#   #define VSYSCALL_START (-10UL << 20)
#   #define VSYSCALL_END (-2UL << 20)
VSYSCALL_START = (-10 << 20) & MASK64  # 0xffffffffff600000
VSYSCALL_END = (-2 << 20) & MASK64  # 0xffffffffffe00000
# arch/x86/include/uapi/asm/vsyscall.h (3.16+): #define VSYSCALL_ADDR (-10UL << 20)
VSYSCALL_ADDR = (-10 << 20) & MASK64  # 0xffffffffff600000

#: include/asm-x86_64/fixmap.h (2.6.12 .. 3.15): VSYSCALL_FIRST_PAGE = VSYSCALL_LAST_PAGE +
#: ((VSYSCALL_END-VSYSCALL_START) >> PAGE_SHIFT) - 1, i.e. 2048 slots for the 8 MiB vsyscall area
VSYSCALL_PAGES = (VSYSCALL_END - VSYSCALL_START) >> PAGE_SHIFT

#: Constants that size multi-slot entries (``count`` names them).
CONSTANTS: dict[str, int] = {
    # arch/x86/include/asm/apicdef.h (include/asm-x86_64/mpspec.h in 2.6.12):
    #   #ifdef CONFIG_X86_32 ... #else # define MAX_IO_APICS 128
    "MAX_IO_APICS": 128,
    # include/asm-x86/efi.h (2.6.25 .. 2.6.29): #define MAX_EFI_IO_PAGES 100 (not re-checked)
    "MAX_EFI_IO_PAGES": 100,
    # include/asm-x86/acpi.h (2.6.26 .. 2.6.29): #define FIX_ACPI_PAGES 4 (not re-checked)
    "FIX_ACPI_PAGES": 4,
    # include/asm-generic/kmap_size.h (5.11+): KM_MAX_IDX is 33 with CONFIG_DEBUG_KMAP_LOCAL,
    # which CONFIG_DEBUG_KMAP_LOCAL_FORCE_MAP selects (the only way x86_64 gets KMAP_LOCAL)
    "KM_MAX_IDX": 33,
}


def pvclock_vsyscall_nr_pages(nr_cpus: int) -> int:
    """arch/x86/include/asm/pvclock.h (3.8 .. 4.x): ``PVCLOCK_VSYSCALL_NR_PAGES
    (((NR_CPUS-1)/(PAGE_SIZE/PVTI_SIZE))+1)`` with ``PVTI_SIZE`` 64 bytes."""
    return (nr_cpus - 1) // (PAGE_SIZE // 64) + 1


@dataclass(frozen=True)
class Fix:
    """One enumerator of ``enum fixed_addresses`` (or a run of ``count`` of them).

    ``count`` is a number of slots, or the name of a constant (``"MAX_IO_APICS"``, ``"NR_CPUS"``,
    ``"KM_MAX_IDX*NR_CPUS"``, ``"PVCLOCK_VSYSCALL_NR_PAGES"``). A run names its first slot
    ``name`` and its last ``last`` (``FIX_IO_APIC_BASE_0`` .. ``FIX_IO_APIC_BASE_END``).
    ``config`` lists the ``CONFIG_`` options that must all be set (nested ``#ifdef``).
    ``at="vsyscall"`` is the explicit ``VSYSCALL_PAGE = (FIXADDR_TOP - VSYSCALL_ADDR) >>
    PAGE_SHIFT`` of 3.16+."""

    name: str
    count: int | str = 1
    last: str | None = None
    config: tuple[str, ...] = ()
    at: str | None = None


@dataclass(frozen=True)
class FixmapEra:
    """``enum fixed_addresses`` as one run of kernels has it."""

    since: str  # first release of the era
    source: str  # where the table was read
    #: "vsyscall_end": FIXADDR_TOP = VSYSCALL_END - PAGE_SIZE (2.6.12 .. 3.15);
    #: "round_up": FIXADDR_TOP = round_up(VSYSCALL_ADDR + PAGE_SIZE, 1<<PMD_SHIFT) - PAGE_SIZE (3.16+)
    top: str
    #: the permanent entries, in enum order, up to __end_of_permanent_fixed_addresses
    entries: tuple[Fix, ...]
    #: the FIX_BTMAP_END formula (None: no boot-time slots and no
    #: __end_of_permanent_fixed_addresses in this era)
    btmap: str | None
    #: entries after FIX_BTMAP_BEGIN, before __end_of_fixed_addresses
    tail: tuple[Fix, ...] = ()
    #: what FIXADDR_SIZE counts: "all" (__end_of_fixed_addresses, boot slots included) or
    #: "permanent" (__end_of_permanent_fixed_addresses)
    size: str = "permanent"
    notes: str = ""


# --- building blocks shared by several eras -------------------------------------------------

_OLD_VSYSCALL = Fix("VSYSCALL_LAST_PAGE", VSYSCALL_PAGES, last="VSYSCALL_FIRST_PAGE")
_NEW_VSYSCALL = Fix("VSYSCALL_PAGE", at="vsyscall", config=("CONFIG_X86_VSYSCALL_EMULATION",))
_APIC = Fix("FIX_APIC_BASE", config=("CONFIG_X86_LOCAL_APIC",))  # local (CPU) APIC
_IO_APIC = Fix("FIX_IO_APIC_BASE_0", "MAX_IO_APICS", last="FIX_IO_APIC_BASE_END", config=("CONFIG_X86_IO_APIC",))
_OHCI = Fix("FIX_OHCI1394_BASE", config=("CONFIG_PROVIDE_OHCI1394_DMA_INIT",))
_PARAVIRT = Fix("FIX_PARAVIRT_BOOTMAP", config=("CONFIG_PARAVIRT",))
_TEXT_POKE = (Fix("FIX_TEXT_POKE1"),  # reserve 2 pages for text_poke()
              Fix("FIX_TEXT_POKE0"))  # first page is last, because allocation is backward
_LNW_VRTC = Fix("FIX_LNW_VRTC", config=("CONFIG_X86_INTEL_MID",))
_GHES = (Fix("FIX_APEI_GHES_IRQ", config=("CONFIG_ACPI_APEI_GHES",)),
         Fix("FIX_APEI_GHES_NMI", config=("CONFIG_ACPI_APEI_GHES",)))
_PVCLOCK = Fix("PVCLOCK_FIXMAP_BEGIN", "PVCLOCK_VSYSCALL_NR_PAGES", last="PVCLOCK_FIXMAP_END",
               config=("CONFIG_PARAVIRT_CLOCK",))
_TBOOT = (Fix("FIX_TBOOT_BASE", config=("CONFIG_INTEL_TXT",)),)
_DBGP_EARLYCON = (Fix("FIX_DBGP_BASE"), Fix("FIX_EARLYCON_MEM_BASE"))

#: Every era, oldest first. ``fixmap_era(kernel)`` picks the last one whose ``since`` <= kernel.
ERAS: tuple[FixmapEra, ...] = (
    FixmapEra(
        since="2.6.12",
        source="include/asm-x86_64/fixmap.h (2.6.12)",
        top="vsyscall_end",
        entries=(_OLD_VSYSCALL, Fix("VSYSCALL_HPET"), Fix("FIX_HPET_BASE"), _APIC, _IO_APIC),
        btmap=None, size="all",
        notes="2.6.13 .. 2.6.25 added FIX_EARLYCON_MEM_BASE, FIX_EFI_IO_MAP, FIX_OHCI1394_BASE and the "
              "early_ioremap slots one by one; those releases keep this table (an approximation: the "
              "release of each addition is not pinned down here)",
    ),
    FixmapEra(
        # The last version of include/asm-x86/fixmap_64.h before the 2.6.28 move to
        # arch/x86/include/asm/; used from 2.6.26 (bounded: 2.6.12 < first use <= 2.6.27)
        # until the 2.6.30 x86_32/x86_64 unification of fixmap.h.
        since="2.6.26",
        source="include/asm-x86/fixmap_64.h (2.6.26/2.6.27)",
        top="vsyscall_end",
        entries=(_OLD_VSYSCALL, Fix("VSYSCALL_HPET"), *_DBGP_EARLYCON, Fix("FIX_HPET_BASE"),
                 Fix("FIX_APIC_BASE"), Fix("FIX_IO_APIC_BASE_0", "MAX_IO_APICS", last="FIX_IO_APIC_BASE_END"),
                 Fix("FIX_EFI_IO_MAP_LAST_PAGE", "MAX_EFI_IO_PAGES", last="FIX_EFI_IO_MAP_FIRST_PAGE"),
                 _PARAVIRT,
                 Fix("FIX_ACPI_BEGIN", "FIX_ACPI_PAGES", last="FIX_ACPI_END", config=("CONFIG_ACPI",)),
                 _OHCI),
        # FIX_BTMAP_END = __end_of_permanent_fixed_addresses + 512 -
        #                 (__end_of_permanent_fixed_addresses & 511),
        # FIX_BTMAP_BEGIN = FIX_BTMAP_END + NR_FIX_BTMAPS*FIX_BTMAPS_NESTING - 1  (64 * 4)
        btmap="round512_nesting4", size="all",
    ),
    FixmapEra(
        # "x86_32 and x86_64 integration by Gustavo F. Padovan, February 2009" (2.6.30);
        # read from 2.6.32. FIX_TEXT_POKE0/1 are taken as present from 2.6.30 (bounded by 2.6.32).
        since="2.6.30",
        source="arch/x86/include/asm/fixmap.h (2.6.32)",
        top="vsyscall_end",
        entries=(_OLD_VSYSCALL, Fix("VSYSCALL_HPET"), *_DBGP_EARLYCON, _OHCI, _APIC, _IO_APIC, _PARAVIRT,
                 *_TEXT_POKE),
        # FIX_BTMAP_END = __end_of_permanent_fixed_addresses + 256 -
        #                 (__end_of_permanent_fixed_addresses & 255),
        # FIX_BTMAP_BEGIN = FIX_BTMAP_END + NR_FIX_BTMAPS*FIX_BTMAPS_SLOTS - 1  (64 * 4)
        btmap="round256", tail=_TBOOT,
    ),
    FixmapEra(
        # commit "x86-64: Give vvars their own page" (3.1): VVAR_PAGE after the vsyscall pages
        # (release from recollection; 3.10 has it)
        since="3.1",
        source="arch/x86/include/asm/fixmap.h (2.6.32) + VVAR_PAGE (3.1)",
        top="vsyscall_end",
        entries=(_OLD_VSYSCALL, Fix("VVAR_PAGE"), Fix("VSYSCALL_HPET"), *_DBGP_EARLYCON, _OHCI, _APIC, _IO_APIC,
                 _PARAVIRT, *_TEXT_POKE),
        btmap="round256", tail=_TBOOT,
    ),
    FixmapEra(
        # FIX_RO_IDT: "x86: Use a read-only IDT alias on all CPUs" (3.10). The XOR form of
        # FIX_BTMAP_END (round up only when the slots would cross a page table) is in 3.10;
        # its first release is bounded by 2.6.32 < first <= 3.10.
        # PVCLOCK_FIXMAP_* came in 3.8 under CONFIG_PARAVIRT_CLOCK (off here).
        since="3.10",
        source="arch/x86/include/asm/fixmap.h (3.10)",
        top="vsyscall_end",
        entries=(_OLD_VSYSCALL, Fix("VVAR_PAGE"), Fix("VSYSCALL_HPET"), _PVCLOCK, *_DBGP_EARLYCON, _OHCI, _APIC,
                 _IO_APIC, Fix("FIX_RO_IDT"), _PARAVIRT, *_TEXT_POKE, _LNW_VRTC),
        # FIX_BTMAP_END = (__end_of_permanent_fixed_addresses ^
        #   (__end_of_permanent_fixed_addresses + TOTAL_FIX_BTMAPS - 1)) & -PTRS_PER_PTE
        #   ? __end_of_permanent_fixed_addresses + TOTAL_FIX_BTMAPS -
        #     (__end_of_permanent_fixed_addresses & (TOTAL_FIX_BTMAPS - 1))
        #   : __end_of_permanent_fixed_addresses,      TOTAL_FIX_BTMAPS = 64 * 4
        btmap="xor256", tail=_TBOOT,
    ),
    FixmapEra(
        # 3.16 (vDSO/vsyscall rework): the vvar and HPET pages leave the fixmap, the vsyscall
        # area shrinks to the one page VSYSCALL_PAGE = (FIXADDR_TOP - VSYSCALL_ADDR) >> PAGE_SHIFT
        # and FIXADDR_TOP becomes round_up(VSYSCALL_ADDR + PAGE_SIZE, 1<<PMD_SHIFT) - PAGE_SIZE.
        # The #ifdef CONFIG_X86_VSYSCALL_EMULATION around VSYSCALL_PAGE came in 4.2: before, the
        # option does not exist and the page is always there.
        since="3.16",
        source="arch/x86/include/asm/fixmap.h (3.16 .. 4.5)",
        top="round_up",
        entries=(_NEW_VSYSCALL, _PVCLOCK, *_DBGP_EARLYCON, _OHCI, _APIC, _IO_APIC, Fix("FIX_RO_IDT"), _PARAVIRT,
                 *_TEXT_POKE, _LNW_VRTC),
        btmap="xor256", tail=_TBOOT,
    ),
    FixmapEra(
        # FIX_BTMAPS_SLOTS 4 -> 8 (TOTAL_FIX_BTMAPS 512): release from recollection (4.6),
        # bounded by 3.10 < first <= 4.12.
        since="4.6",
        source="arch/x86/include/asm/fixmap.h (4.6 .. 4.11)",
        top="round_up",
        entries=(_NEW_VSYSCALL, _PVCLOCK, *_DBGP_EARLYCON, _OHCI, _APIC, _IO_APIC, Fix("FIX_RO_IDT"), _PARAVIRT,
                 *_TEXT_POKE, _LNW_VRTC),
        btmap="xor512", tail=_TBOOT,
    ),
    FixmapEra(
        # 4.12: one fixmap page per CPU to remap the GDT read-only ("x86: Make the GDT remapping
        # read-only on 64-bit"); MODULES_END follows the fixmap (pgtable_64_types.h, 4.12 .. 4.14).
        # PVCLOCK_FIXMAP_* are gone by 4.12.
        since="4.12",
        source="arch/x86/include/asm/fixmap.h (4.12)",
        top="round_up",
        entries=(_NEW_VSYSCALL, *_DBGP_EARLYCON, _OHCI, _APIC, _IO_APIC, Fix("FIX_RO_IDT"), _PARAVIRT, *_TEXT_POKE,
                 _LNW_VRTC,
                 # Fixmap entries to remap the GDTs, one per processor.
                 Fix("FIX_GDT_REMAP_BEGIN", "NR_CPUS", last="FIX_GDT_REMAP_END")),
        btmap="xor512", tail=_TBOOT,
    ),
    FixmapEra(
        # 4.13: FIX_APEI_GHES_IRQ/NMI ("ACPI / APEI: Replace ioremap_page_range() with fixmap").
        # Their place relative to FIX_GDT_REMAP in 4.13/4.14 is assumed (after it).
        since="4.13",
        source="arch/x86/include/asm/fixmap.h (4.13 .. 4.14)",
        top="round_up",
        entries=(_NEW_VSYSCALL, *_DBGP_EARLYCON, _OHCI, _APIC, _IO_APIC, Fix("FIX_RO_IDT"), _PARAVIRT, *_TEXT_POKE,
                 _LNW_VRTC, Fix("FIX_GDT_REMAP_BEGIN", "NR_CPUS", last="FIX_GDT_REMAP_END"), *_GHES),
        btmap="xor512", tail=_TBOOT,
    ),
    FixmapEra(
        # 4.15: the GDT remap and the read-only IDT move into the cpu_entry_area
        # (arch/x86/include/asm/cpu_entry_area.h); read from 4.19.
        since="4.15",
        source="arch/x86/include/asm/fixmap.h (4.19)",
        top="round_up",
        entries=(_NEW_VSYSCALL, *_DBGP_EARLYCON, _OHCI, _APIC, _IO_APIC, _PARAVIRT, *_TEXT_POKE, _LNW_VRTC, *_GHES),
        btmap="xor512", tail=_TBOOT,
    ),
    FixmapEra(
        # 5.2: "x86/alternative: Use temporary mm for text poking" removes FIX_TEXT_POKE0/1.
        since="5.2",
        source="arch/x86/include/asm/fixmap.h (5.2 .. 5.9)",
        top="round_up",
        entries=(_NEW_VSYSCALL, *_DBGP_EARLYCON, _OHCI, _APIC, _IO_APIC, _PARAVIRT, _LNW_VRTC, *_GHES),
        btmap="xor512", tail=_TBOOT,
    ),
    FixmapEra(
        # FIX_PARAVIRT_BOOTMAP moves under CONFIG_PARAVIRT_XXL (Xen PV only); read from 5.10.
        # First release bounded by 5.2 < first <= 5.10 (5.10 from recollection of the series).
        since="5.10",
        source="arch/x86/include/asm/fixmap.h (5.10)",
        top="round_up",
        entries=(_NEW_VSYSCALL, *_DBGP_EARLYCON, _OHCI, _APIC, _IO_APIC,
                 Fix("FIX_PARAVIRT_BOOTMAP", config=("CONFIG_PARAVIRT_XXL",)), _LNW_VRTC, *_GHES),
        btmap="xor512", tail=_TBOOT,
    ),
    FixmapEra(
        # 5.11: generic kmap_local ("x86/mm/highmem: Use generic kmap atomic implementation"):
        # FIX_KMAP_* under CONFIG_KMAP_LOCAL instead of CONFIG_X86_32. On x86_64 only
        # CONFIG_DEBUG_KMAP_LOCAL_FORCE_MAP turns KMAP_LOCAL on (off here). FIX_LNW_VRTC
        # (CONFIG_X86_INTEL_MID, off here) is dropped from this era on: its removal release
        # is not pinned down, and with the option off it changes no index.
        # Read from a 6.x tree: 6.6 has this table.
        since="5.11",
        source="arch/x86/include/asm/fixmap.h (6.x)",
        top="round_up",
        entries=(_NEW_VSYSCALL, *_DBGP_EARLYCON, _OHCI, _APIC, _IO_APIC,
                 Fix("FIX_KMAP_BEGIN", "KM_MAX_IDX*NR_CPUS", last="FIX_KMAP_END", config=("CONFIG_KMAP_LOCAL",)),
                 Fix("FIX_PCIE_MCFG", config=("CONFIG_KMAP_LOCAL", "CONFIG_PCI_MMCONFIG")),
                 Fix("FIX_PARAVIRT_BOOTMAP", config=("CONFIG_PARAVIRT_XXL",)), *_GHES),
        btmap="xor512", tail=_TBOOT,
    ),
)


def fixmap_era(kernel: KernelVersion | str) -> FixmapEra:
    """The table of the era *kernel* belongs to (the caller checks the version is supported)."""
    kernel = KernelVersion.parse(kernel)
    chosen = ERAS[0]
    for era in ERAS:
        if kernel >= era.since:
            chosen = era
    return chosen


def fixaddr_top(era: FixmapEra) -> int:
    if era.top == "vsyscall_end":
        # include/asm-x86_64/fixmap.h (2.6.12 .. 3.15): #define FIXADDR_TOP (VSYSCALL_END-PAGE_SIZE)
        return VSYSCALL_END - PAGE_SIZE
    # arch/x86/include/asm/fixmap.h (3.16+):
    #   #define FIXADDR_TOP (round_up(VSYSCALL_ADDR + PAGE_SIZE, 1<<PMD_SHIFT) - PAGE_SIZE)
    pmd = 1 << PMD_SHIFT
    return ((VSYSCALL_ADDR + PAGE_SIZE + pmd - 1) // pmd) * pmd - PAGE_SIZE


def fix_to_virt(top: int, idx: int) -> int:
    """``#define __fix_to_virt(x) (FIXADDR_TOP - ((x) << PAGE_SHIFT))``."""
    return top - (idx << PAGE_SHIFT)


def _btmap_end(variant: str, end_perm: int) -> tuple[int, int]:
    """(FIX_BTMAP_END, number of boot-time slots) for one of the eras' formulas."""
    if variant == "round512_nesting4":
        return end_perm + 512 - (end_perm & 511), 64 * 4
    if variant == "round256":
        return end_perm + 256 - (end_perm & 255), 64 * 4
    total = {"xor256": 64 * 4, "xor512": 64 * 8}[variant]  # NR_FIX_BTMAPS * FIX_BTMAPS_SLOTS
    crosses = (end_perm ^ (end_perm + total - 1)) & ~(PTRS_PER_PTE - 1)
    return (end_perm + total - (end_perm & (total - 1)) if crosses else end_perm), total


@dataclass
class Fixmap:
    """One evaluated ``enum fixed_addresses``."""

    era: FixmapEra
    top: int  # FIXADDR_TOP
    #: (name, index) in enum order, __end_of_permanent_fixed_addresses (where the era has it)
    #: and __end_of_fixed_addresses included
    enum: list[tuple[str, int]] = field(default_factory=list)

    def __getitem__(self, name: str) -> int:
        for n, i in self.enum:
            if n == name:
                return i
        raise KeyError(name)

    def __contains__(self, name: str) -> bool:
        return any(n == name for n, _ in self.enum)

    def virt(self, name_or_idx: str | int) -> int:
        idx = self[name_or_idx] if isinstance(name_or_idx, str) else name_or_idx
        return fix_to_virt(self.top, idx)

    @property
    def end(self) -> int:
        return self["__end_of_fixed_addresses"]

    @property
    def end_permanent(self) -> int:
        """__end_of_permanent_fixed_addresses, or __end_of_fixed_addresses in eras without it."""
        return self["__end_of_permanent_fixed_addresses"] if self.era.btmap else self.end

    @property
    def size(self) -> int:
        """FIXADDR_SIZE: ``(__end_of_permanent_fixed_addresses << PAGE_SHIFT)`` (2.6.30+), or
        ``(__end_of_fixed_addresses << PAGE_SHIFT)`` (before)."""
        return (self.end if self.era.size == "all" else self.end_permanent) << PAGE_SHIFT

    @property
    def start(self) -> int:
        """FIXADDR_START: ``#define FIXADDR_START (FIXADDR_TOP - FIXADDR_SIZE)``."""
        return self.top - self.size

    def boot_slots(self) -> tuple[int, int] | None:
        """(FIX_BTMAP_END, FIX_BTMAP_BEGIN), or None in eras without early_ioremap slots."""
        if not self.era.btmap:
            return None
        return self["FIX_BTMAP_END"], self["FIX_BTMAP_BEGIN"]

    def vsyscall_indices(self) -> range:
        """The enum indices that hold the vsyscall page(s)."""
        if "VSYSCALL_LAST_PAGE" in self:
            return range(self["VSYSCALL_LAST_PAGE"], self["VSYSCALL_FIRST_PAGE"] + 1)
        if "VSYSCALL_PAGE" in self:
            return range(self["VSYSCALL_PAGE"], self["VSYSCALL_PAGE"] + 1)
        return range(0)


def _count(fix: Fix, params: Mapping[str, int]) -> int:
    if isinstance(fix.count, int):
        return fix.count
    n = 1
    for term in fix.count.split("*"):
        n *= params[term]
    return n


def compute_fixmap(kernel: KernelVersion | str, config: Mapping[str, object], nr_cpus: int) -> Fixmap:
    """Evaluate the era's enum for *config* (``CONFIG_`` names to truthy values; a name
    missing from *config* is off) and ``NR_CPUS``, as the compiler would."""
    era = fixmap_era(kernel)
    fm = Fixmap(era=era, top=fixaddr_top(era))
    params = dict(CONSTANTS, NR_CPUS=nr_cpus, PVCLOCK_VSYSCALL_NR_PAGES=pvclock_vsyscall_nr_pages(nr_cpus))

    def enabled(fix: Fix) -> bool:
        return all(config.get(c) for c in fix.config)

    def emit(entries: tuple[Fix, ...], idx: int) -> int:
        for fix in entries:
            if not enabled(fix):
                continue
            if fix.at == "vsyscall":
                # VSYSCALL_PAGE = (FIXADDR_TOP - VSYSCALL_ADDR) >> PAGE_SHIFT,
                idx = (fm.top - VSYSCALL_ADDR) >> PAGE_SHIFT
            n = _count(fix, params)
            fm.enum.append((fix.name, idx))
            if fix.last is not None:
                fm.enum.append((fix.last, idx + n - 1))
            idx += n
        return idx

    idx = emit(era.entries, 0)
    if era.btmap:
        fm.enum.append(("__end_of_permanent_fixed_addresses", idx))
        bend, total = _btmap_end(era.btmap, idx)
        fm.enum.append(("FIX_BTMAP_END", bend))
        fm.enum.append(("FIX_BTMAP_BEGIN", bend + total - 1))
        idx = emit(era.tail, bend + total)
    fm.enum.append(("__end_of_fixed_addresses", idx))
    return fm
