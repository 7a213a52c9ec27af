"""The i386 fixmap: ``enum fixed_addresses`` of every kernel era, as data.

The fixmap is a set of compile-time virtual pages just below ``FIXADDR_TOP``, one
``enum fixed_addresses`` index each, counted downwards::

    __fix_to_virt(idx) = FIXADDR_TOP - (idx << PAGE_SHIFT)

(include/asm-i386/fixmap.h in 2.6.12, arch/x86/include/asm/fixmap.h and
include/asm-generic/fixmap.h later). The enum is ordered; its length decides
``FIXADDR_START`` (permanent entries) and ``FIXADDR_BOOT_START`` / ``FIXADDR_TOT_START``
(permanent + the boot-time early_ioremap slots), which in turn place pkmap, the
cpu_entry_area and the end of vmalloc. So the table below is the one place that knows
which entries exist in which release, with the ``#ifdef`` of each decided by the
distro-style configuration of :func:`fixmap_config`.

Each :class:`Fix` row carries the version range it exists in (``since`` inclusive,
``until`` exclusive) and the file it comes from. Where a row's first or last release could
only be bounded from the sources read (listed in the row's ``source``), the chosen release is
the one stated there and the bound is given; rows whose ``CONFIG_`` option is off in the
assumed configuration are kept for completeness and never change a number.

The per-CPU atomic-kmap slots (``FIX_KMAP_BEGIN..FIX_KMAP_END``) are sized by the era's
scheme, see :func:`kmap_scheme`:

- ``"km_type"`` (2.6.12 .. 2.6.36): ``kmap_atomic(page, KM_xxx)`` maps into slot
  ``type + KM_TYPE_NR * smp_processor_id()`` (mm/highmem.c, arch/i386/mm/highmem.c);
  the ``KM_*`` names are :func:`km_types`.
- ``"stack"`` (2.6.37 .. 5.10): the type argument is gone; each CPU uses its
  ``KM_TYPE_NR`` slots as a stack (``kmap_atomic_idx_push()``, include/linux/highmem.h).
- ``"kmap_local"`` (5.11+): ``kmap_local_page()``/``kmap_atomic()`` push onto a per-task
  stack of ``KM_MAX_IDX`` = 16 slots per CPU (include/asm-generic/kmap_size.h).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping

from mmemu.errors import ConfigError
from mmemu.units import PAGE_SHIFT, PAGE_SIZE, KernelVersion

#: ``FIXADDR_TOP`` on i386, the same value in every era:
#:  - 2.6.12 .. 2.6.20: include/asm-i386/fixmap.h ``#define __FIXADDR_TOP 0xfffff000``;
#:  - 2.6.21+: a variable, arch/i386/mm/pgtable.c (arch/x86/mm/pgtable_32.c from 2.6.24)
#:    ``unsigned long __FIXADDR_TOP = 0xfffff000;`` that only ``reserve_top_address()``
#:    (a hypervisor, or ``reservetop=``) moves down; mmemu does not model that.
#: (arch/x86/mm/init_32.c ``mem_init()`` redefines it as ``(-PAGE_SIZE)`` for its
#: BUILD_BUG_ON layout checks: the same 0xfffff000.)
FIXADDR_TOP = 0xFFFFF000
#: first release where __FIXADDR_TOP is a variable (bounded: a constant in 2.6.12, the
#: variable in the 2.6.21-era include/asm-i386/fixmap.h that has FIX_PARAVIRT_BOOTMAP).
FIXADDR_TOP_VARIABLE_SINCE = "2.6.21"


def fix_to_virt(idx: int, fixaddr_top: int = FIXADDR_TOP) -> int:
    """The kernel's ``__fix_to_virt()``:
    ``#define __fix_to_virt(x) (FIXADDR_TOP - ((x) << PAGE_SHIFT))``"""
    return fixaddr_top - (idx << PAGE_SHIFT)


def virt_to_fix(vaddr: int, fixaddr_top: int = FIXADDR_TOP) -> int:
    """The kernel's ``__virt_to_fix()``:
    ``#define __virt_to_fix(x) ((FIXADDR_TOP - ((x)&PAGE_MASK)) >> PAGE_SHIFT)``"""
    return (fixaddr_top - (vaddr & ~(PAGE_SIZE - 1))) >> PAGE_SHIFT


# --------------------------------------------------------------------------------------
# enum km_type / KM_TYPE_NR / KM_MAX_IDX
# --------------------------------------------------------------------------------------

#: include/asm-i386/kmap_types.h (2.6.12; unchanged in include/asm-x86/kmap_types.h of
#: 2.6.24..2.6.27), without CONFIG_DEBUG_HIGHMEM's __KM_FENCE_n entries.
KM_TYPES_2_6_12 = (
    "KM_BOUNCE_READ", "KM_SKB_SUNRPC_DATA", "KM_SKB_DATA_SOFTIRQ", "KM_USER0", "KM_USER1",
    "KM_BIO_SRC_IRQ", "KM_BIO_DST_IRQ", "KM_PTE0", "KM_PTE1", "KM_IRQ0", "KM_IRQ1",
    "KM_SOFTIRQ0", "KM_SOFTIRQ1",
)
#: arch/x86/include/asm/kmap_types.h after the move to arch/x86/include (2.6.28):
#: KM_IRQ_PTE, KM_NMI, KM_NMI_PTE added (16 types).
KM_TYPES_2_6_28 = (
    "KM_BOUNCE_READ", "KM_SKB_SUNRPC_DATA", "KM_SKB_DATA_SOFTIRQ", "KM_USER0", "KM_USER1",
    "KM_BIO_SRC_IRQ", "KM_BIO_DST_IRQ", "KM_PTE0", "KM_PTE1", "KM_IRQ0", "KM_IRQ1",
    "KM_IRQ_PTE", "KM_SOFTIRQ0", "KM_SOFTIRQ1", "KM_NMI", "KM_NMI_PTE",
)
#: include/asm-generic/kmap_types.h, which x86 includes in 2.6.32 (19 types; verified in a
#: preprocessed 2.6.32 tree).
KM_TYPES_2_6_32 = (
    "KM_BOUNCE_READ", "KM_SKB_SUNRPC_DATA", "KM_SKB_DATA_SOFTIRQ", "KM_USER0", "KM_USER1",
    "KM_BIO_SRC_IRQ", "KM_BIO_DST_IRQ", "KM_PTE0", "KM_PTE1", "KM_IRQ0", "KM_IRQ1",
    "KM_SOFTIRQ0", "KM_SOFTIRQ1", "KM_SYNC_ICACHE", "KM_SYNC_DCACHE", "KM_UML_USERCOPY",
    "KM_IRQ_PTE", "KM_NMI", "KM_NMI_PTE",
)
#: include/asm-generic/kmap_types.h with KM_KDB (kdb merged in 2.6.35): KM_TYPE_NR = 20.
KM_TYPES_2_6_35 = KM_TYPES_2_6_32 + ("KM_KDB",)

#: (first release, KM_TYPE_NR, names or None once the names are gone). Thresholds:
#:  - 2.6.28: the 16-entry arch/x86 file (the include/asm-x86 copy had 13); assumed to come
#:    with the move to arch/x86/include, bounded (2.6.27, 2.6.32];
#:  - 2.6.32: the generic 19-entry enum, verified at 2.6.32, bounded (2.6.28, 2.6.32];
#:  - 2.6.35: KM_KDB;
#:  - 3.6: include/asm-generic/kmap_types.h becomes ``# define KM_TYPE_NR 20`` (41 with
#:    __WITH_KM_FENCE) without names; the value does not change, only the names go
#:    (release from memory, bounded (3.2, 4.x]).
_KM_ERAS: tuple[tuple[str, int, tuple[str, ...] | None], ...] = (
    ("2.6.12", 13, KM_TYPES_2_6_12),
    ("2.6.28", 16, KM_TYPES_2_6_28),
    ("2.6.32", 19, KM_TYPES_2_6_32),
    ("2.6.35", 20, KM_TYPES_2_6_35),
    ("3.6", 20, None),
)

#: 2.6.37: "mm: highmem: stack based kmap_atomic()" (the km_type argument is ignored).
KMAP_STACK_SINCE = "2.6.37"
#: 5.11: x86 switches to the generic kmap_local (include/asm-generic/kmap_size.h).
KMAP_LOCAL_SINCE = "5.11"
#: include/asm-generic/kmap_size.h: ``# define KM_MAX_IDX 16`` (33 with DEBUG_KMAP_LOCAL)
KM_MAX_IDX = 16


def kmap_scheme(kernel: KernelVersion) -> str:
    """``"km_type"``, ``"stack"`` or ``"kmap_local"``: how kmap_atomic picks its slot."""
    if kernel >= KMAP_LOCAL_SINCE:
        return "kmap_local"
    if kernel >= KMAP_STACK_SINCE:
        return "stack"
    return "km_type"


def _km_era(kernel: KernelVersion) -> tuple[str, int, tuple[str, ...] | None]:
    era = _KM_ERAS[0]
    for row in _KM_ERAS:
        if kernel >= row[0]:
            era = row
    return era


def km_type_nr(kernel: KernelVersion) -> int | None:
    """``KM_TYPE_NR`` of the era (without CONFIG_DEBUG_HIGHMEM), None in kmap_local kernels."""
    if kmap_scheme(kernel) == "kmap_local":
        return None
    return _km_era(kernel)[1]


def km_types(kernel: KernelVersion) -> tuple[str, ...] | None:
    """The ``enum km_type`` names, in order (their value is the slot), or None where the
    kernel no longer has them."""
    if kmap_scheme(kernel) == "kmap_local":
        return None
    return _km_era(kernel)[2]


def kmap_slots_per_cpu(kernel: KernelVersion) -> int:
    """Fixmap pages per CPU for atomic kmaps: KM_TYPE_NR, or KM_MAX_IDX (5.11+)."""
    nr = km_type_nr(kernel)
    return KM_MAX_IDX if nr is None else nr


# --------------------------------------------------------------------------------------
# The configuration the enum's #ifdefs are decided with
# --------------------------------------------------------------------------------------

#: ``MAX_IO_APICS`` for i386: include/asm-i386/apicdef.h of 2.6.12 has
#: ``#ifdef CONFIG_NUMA 32 #else 8``; a later include/asm-i386/apicdef.h (before
#: APIC_EILVT appeared) and include/asm-x86/apicdef_32.h have ``64``, as has
#: arch/x86/include/asm/apicdef.h (``#ifdef CONFIG_X86_32 # define MAX_IO_APICS 64``).
#: The change is bounded (2.6.12, 2.6.17]; 2.6.14 is assumed.
MAX_IO_APICS_64_SINCE = "2.6.14"


def max_io_apics(kernel: KernelVersion) -> int:
    return 64 if kernel >= MAX_IO_APICS_64_SINCE else 8


def fixmap_config(kernel: KernelVersion) -> dict[str, object]:
    """The CONFIG_ choices that decide the i386 ``enum fixed_addresses``: a distro-style
    SMP "686" kernel of the era (Debian/Fedora/Ubuntu i386 flavours), PC sub-arch."""
    k = kernel
    return {
        "CONFIG_HIGHMEM": True,                      # HIGHMEM4G or HIGHMEM64G, never NOHIGHMEM
        "CONFIG_X86_LOCAL_APIC": True,
        "CONFIG_X86_IO_APIC": True,
        "MAX_IO_APICS": max_io_apics(k),
        "CONFIG_X86_VISWS_APIC": False,              # SGI Visual Workstation sub-arch
        "CONFIG_X86_F00F_BUG": False,                # only for 386/486/586 CPU choices; 686 kernel
        "CONFIG_X86_CYCLONE_TIMER": False,           # IBM Summit sub-arch
        "CONFIG_ACPI": True,                         # CONFIG_ACPI_BOOT in 2.6.12
        "CONFIG_PCI_MMCONFIG": True,
        "CONFIG_PARAVIRT": k >= "2.6.21",            # VMI/Xen/KVM guest support
        "CONFIG_PARAVIRT_XXL": "4.20" <= k < "5.9",  # selected by 32-bit XEN_PV, gone in 5.9
        "CONFIG_PARAVIRT_CLOCK": k >= "3.8",         # KVM_GUEST/XEN select it
        "CONFIG_PROVIDE_OHCI1394_DMA_INIT": False,
        "CONFIG_X86_INTEL_MID": False,
        "CONFIG_ACPI_APEI_GHES": k >= "4.13",
        "CONFIG_INTEL_TXT": False,
        "CONFIG_DEBUG_HIGHMEM": False,
        "CONFIG_DEBUG_KMAP_LOCAL": False,
        "CONFIG_KMAP_LOCAL": k >= KMAP_LOCAL_SINCE,
    }


@dataclass(frozen=True)
class FixmapParams:
    """What an ``enum fixed_addresses`` depends on."""

    kernel: KernelVersion
    nr_cpus: int
    pae: bool
    config: Mapping[str, object]

    @property
    def ptrs_per_pte(self) -> int:
        """pgtable-2level_types.h: 1024; pgtable-3level_types.h: 512."""
        return 512 if self.pae else 1024


# --------------------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------------------

Count = Callable[[FixmapParams], int]


@dataclass(frozen=True)
class Fix:
    """One entry (``count == 1``) or range (``name`` .. ``end_name``) of the enum.

    ``kind`` is ``"entry"``, ``"marker"`` (``__end_of_permanent_fixed_addresses`` /
    ``__end_of_fixed_addresses``: a value, no page of its own) or ``"btmap"`` (the
    boot-time FIX_BTMAP_END/BEGIN pair, whose placement rule changed by era)."""

    name: str
    count: int | Count = 1
    end_name: str | None = None
    since: str = "2.6.12"
    until: str | None = None
    config: str | None = None
    kind: str = "entry"
    source: str = ""

    def present(self, p: FixmapParams) -> bool:
        if p.kernel < self.since or (self.until is not None and p.kernel >= self.until):
            return False
        return self.config is None or bool(p.config.get(self.config))

    def size(self, p: FixmapParams) -> int:
        return self.count(p) if callable(self.count) else self.count


def _kmap_count(p: FixmapParams) -> int:
    # KM_TYPE_NR*NR_CPUS (fixmap.h, every era up to 5.10); KM_MAX_IDX*NR_CPUS (5.11+)
    return kmap_slots_per_cpu(p.kernel) * p.nr_cpus


def _pvclock_pages(p: FixmapParams) -> int:
    # arch/x86/include/asm/pvclock.h (3.8+): PVCLOCK_VSYSCALL_NR_PAGES =
    # (((NR_CPUS-1)/(PAGE_SIZE/PVTI_SIZE))+1), PVTI_SIZE = sizeof(struct
    # pvclock_vsyscall_time_info) = 64 (cache-line aligned)
    return (p.nr_cpus - 1) // (PAGE_SIZE // 64) + 1


_F = "include/asm-i386/fixmap.h"
_X = "arch/x86/include/asm/fixmap.h"

#: ``enum fixed_addresses`` for i386, every era at once, in enum order.
FIXMAP_32: tuple[Fix, ...] = (
    Fix("FIX_HOLE", source=f"{_F} (2.6.12) .. {_X} (6.6)"),
    Fix("FIX_VSYSCALL", until="2.6.18", source=f"{_F} (2.6.12)"),
    # renamed with the relocatable vDSO; bounded (2.6.12, 2.6.21], 2.6.18 assumed. Gone
    # when the 32-bit vDSO moved out of the fixmap: present in 3.10.4, absent in a 3.14
    # tree, so bounded (3.10, 3.14]; 3.14 assumed.
    Fix("FIX_VDSO", since="2.6.18", until="3.14", source=f"{_F} (2.6.21), {_X} (2.6.32, 3.10)"),
    # Outside the 64-bit #ifdef in 3.10 (so on i386 too), inside it in 3.14.
    Fix("PVCLOCK_FIXMAP_BEGIN", _pvclock_pages, "PVCLOCK_FIXMAP_END", since="3.8", until="3.14",
        config="CONFIG_PARAVIRT_CLOCK", source=f"{_X} (3.10)"),
    # present in the 2.6.26-era include/asm-x86/fixmap_32.h and in 2.6.32; bounded
    # (2.6.21, 2.6.26], 2.6.25 assumed
    Fix("FIX_DBGP_BASE", since="2.6.25", source="include/asm-x86/fixmap_32.h (2.6.26), " + _X),
    Fix("FIX_EARLYCON_MEM_BASE", since="2.6.25", source="include/asm-x86/fixmap_32.h (2.6.26), " + _X),
    Fix("FIX_OHCI1394_BASE", since="2.6.26", config="CONFIG_PROVIDE_OHCI1394_DMA_INIT", source=_X),
    Fix("FIX_APIC_BASE", config="CONFIG_X86_LOCAL_APIC", source=f"{_F}, {_X}"),
    Fix("FIX_IO_APIC_BASE_0", lambda p: int(p.config["MAX_IO_APICS"]), "FIX_IO_APIC_BASE_END",
        config="CONFIG_X86_IO_APIC", source=f"{_F}, {_X}: FIX_IO_APIC_BASE_0 + MAX_IO_APICS - 1"),
    Fix("FIX_CO_CPU", 4, "FIX_LI_PCIB", until="3.12", config="CONFIG_X86_VISWS_APIC",
        source=f"{_F}: FIX_CO_CPU, FIX_CO_APIC, FIX_LI_PCIA, FIX_LI_PCIB"),
    Fix("FIX_F00F_IDT", until="3.10", config="CONFIG_X86_F00F_BUG", source=_F),
    Fix("FIX_CYCLONE_TIMER", until="2.6.30", config="CONFIG_X86_CYCLONE_TIMER", source=_F),
    # "x86: Use a read-only IDT alias on all CPUs" (3.10); moved into the cpu_entry_area (4.15)
    Fix("FIX_RO_IDT", since="3.10", until="4.15", source=f"{_X} (3.10 .. 4.14)"),
    Fix("FIX_KMAP_BEGIN", _kmap_count, "FIX_KMAP_END", config="CONFIG_HIGHMEM",
        source=f"{_F}: FIX_KMAP_BEGIN+(KM_TYPE_NR*NR_CPUS)-1; {_X} (5.11+): "
               "FIX_KMAP_BEGIN + (KM_MAX_IDX * NR_CPUS) - 1"),
    # FIX_ACPI_PAGES = 4 (include/asm-i386/acpi.h); gone when ACPI table mapping moved to
    # early_ioremap: present in 2.6.26, absent in 2.6.32; 2.6.28 assumed
    Fix("FIX_ACPI_BEGIN", 4, "FIX_ACPI_END", until="2.6.28", config="CONFIG_ACPI",
        source=f"{_F}: FIX_ACPI_END = FIX_ACPI_BEGIN + FIX_ACPI_PAGES - 1"),
    Fix("FIX_PCIE_MCFG", config="CONFIG_PCI_MMCONFIG", source=f"{_F}, {_X}"),
    Fix("FIX_PARAVIRT_BOOTMAP", since="2.6.21", until="4.20", config="CONFIG_PARAVIRT",
        source=f"{_F} (2.6.21), {_X}"),
    Fix("FIX_PARAVIRT_BOOTMAP", since="4.20", config="CONFIG_PARAVIRT_XXL", source=f"{_X} (5.0, 5.10, 6.6)"),
    # text_poke() through the fixmap: absent in 2.6.26, present in 2.6.32 (2.6.30 assumed);
    # present in 5.0, absent in 5.10 (replaced by a temporary mm; 5.2 assumed)
    Fix("FIX_TEXT_POKE1", since="2.6.30", until="5.2", source=f"{_X} (2.6.32 .. 5.0)"),
    Fix("FIX_TEXT_POKE0", since="2.6.30", until="5.2", source=f"{_X} (2.6.32 .. 5.0)"),
    Fix("FIX_LNW_VRTC", since="2.6.36", until="5.11", config="CONFIG_X86_INTEL_MID", source=_X),
    # "Fixmap entries to remap the GDTs, one per processor" (4.12 .. 4.14); the GDT moved
    # into the cpu_entry_area in 4.15
    Fix("FIX_GDT_REMAP_BEGIN", lambda p: p.nr_cpus, "FIX_GDT_REMAP_END", since="4.12", until="4.15",
        source=f"{_X} (4.12): FIX_GDT_REMAP_BEGIN + NR_CPUS - 1"),
    # "ACPI / APEI: Replace ioremap_page_range() with fixmap"; absent in the 4.12-era file,
    # present in 5.0; 4.13 assumed
    Fix("FIX_APEI_GHES_IRQ", since="4.13", config="CONFIG_ACPI_APEI_GHES", source=f"{_X} (5.0 .. 6.6)"),
    Fix("FIX_APEI_GHES_NMI", since="4.13", config="CONFIG_ACPI_APEI_GHES", source=f"{_X} (5.0 .. 6.6)"),
    Fix("__end_of_permanent_fixed_addresses", 0, kind="marker", source=f"{_F}, {_X}"),
    Fix("FIX_BTMAP_END", 0, "FIX_BTMAP_BEGIN", kind="btmap", source="see btmap_rule()"),
    Fix("FIX_WP_TEST", source=f"{_F} (2.6.12) .. {_X} (6.6)"),
    Fix("FIX_TBOOT_BASE", since="2.6.32", config="CONFIG_INTEL_TXT", source=_X),
    Fix("__end_of_fixed_addresses", 0, kind="marker", source=f"{_F}, {_X}"),
)


def btmap_rule(kernel: KernelVersion) -> tuple[str, int]:
    """How FIX_BTMAP_END/BEGIN (early_ioremap's boot-time slots) are placed after
    ``__end_of_permanent_fixed_addresses``: (rule, TOTAL_FIX_BTMAPS).

    - ``"plain"``, 16 (2.6.12, include/asm-i386/fixmap.h): ``FIX_BTMAP_END =
      __end_of_permanent_fixed_addresses, FIX_BTMAP_BEGIN = FIX_BTMAP_END + NR_FIX_BTMAPS - 1``;
    - ``"plain"``, 64 (NR_FIX_BTMAPS 16 * FIX_BTMAPS_NESTING 4; include/asm-x86/fixmap_32.h of
      2.6.26; bounded (2.6.24, 2.6.26], 2.6.25 assumed);
    - ``"round"``, 256 (2.6.32: ``FIX_BTMAP_END = __end_of_permanent_fixed_addresses + 256 -
      (__end_of_permanent_fixed_addresses & 255)``; bounded (2.6.26, 2.6.32], 2.6.29 assumed);
    - ``"cond"``, 256 (3.10: round up only if the slots would cross a page-table boundary,
      ``(end ^ (end + TOTAL - 1)) & -PTRS_PER_PTE ? end + TOTAL - (end & (TOTAL - 1)) : end``;
      bounded (2.6.32, 3.10], 3.0 assumed);
    - ``"cond"``, 512 (FIX_BTMAPS_SLOTS 8; 3.14 .. 6.6; bounded (3.10, 3.14], 3.14 assumed).
    """
    if kernel >= "3.14":
        return "cond", 512
    if kernel >= "3.0":
        return "cond", 256
    if kernel >= "2.6.29":
        return "round", 256
    if kernel >= "2.6.25":
        return "plain", 64
    return "plain", 16


def _btmap_end(end_perm: int, p: FixmapParams) -> tuple[int, int]:
    rule, total = btmap_rule(p.kernel)
    if rule == "plain":
        end = end_perm
    elif rule == "round":
        end = end_perm + total - (end_perm & (total - 1))
    else:
        crosses = (end_perm ^ (end_perm + total - 1)) & -p.ptrs_per_pte
        end = end_perm + total - (end_perm & (total - 1)) if crosses else end_perm
    return end, end + total - 1


@dataclass(frozen=True)
class FixSlot:
    """One member of the decided enum: ``name`` = ``index``; a range spans ``count``
    indices and ends at ``end_name`` = ``index + count - 1``."""

    name: str
    index: int
    count: int = 1
    end_name: str | None = None
    source: str = ""

    @property
    def end_index(self) -> int:
        return self.index + self.count - 1


@dataclass(frozen=True)
class Fixmap32:
    """A decided ``enum fixed_addresses`` and the addresses it implies."""

    params: FixmapParams
    slots: tuple[FixSlot, ...]
    end_of_permanent: int
    end_of_fixed: int
    fixaddr_top: int = FIXADDR_TOP
    _index: dict[str, int] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        for s in self.slots:
            self._index[s.name] = s.index
            if s.end_name:
                self._index[s.end_name] = s.end_index

    # -- the enum ------------------------------------------------------------------
    def index(self, name: str) -> int:
        """The value of an enum constant (``FIX_KMAP_BEGIN``, ``FIX_BTMAP_BEGIN``,
        ``__end_of_fixed_addresses``...); KeyError if this era/config lacks it."""
        return self._index[name]

    def __contains__(self, name: str) -> bool:
        return name in self._index

    def pairs(self) -> list[tuple[str, int]]:
        """(name, index) in enum order, both ends of ranges, the two markers included:
        the shape of :attr:`mmemu.layout.Layout.fixmap`."""
        out: list[tuple[str, int]] = []
        for s in self.slots:
            out.append((s.name, s.index))
            if s.end_name:
                out.append((s.end_name, s.end_index))
        return out

    def slot_of(self, idx: int) -> FixSlot | None:
        """The entry or range an index belongs to (None: a hole in the enum, e.g. the
        rounding before FIX_BTMAP_END)."""
        for s in self.slots:
            if s.count and s.index <= idx <= s.end_index:
                return s
        return None

    # -- addresses -------------------------------------------------------------------
    def fix_to_virt(self, idx: int | str) -> int:
        if isinstance(idx, str):
            idx = self.index(idx)
        if idx >= self.end_of_fixed:  # fix_to_virt(): __this_fixmap_does_not_exist()
            raise ConfigError(f"fixmap index {idx} is beyond __end_of_fixed_addresses ({self.end_of_fixed})")
        return fix_to_virt(idx, self.fixaddr_top)

    def virt_to_fix(self, vaddr: int) -> int:
        return virt_to_fix(vaddr, self.fixaddr_top)

    @property
    def FIXADDR_SIZE(self) -> int:
        # __FIXADDR_SIZE / FIXADDR_SIZE = __end_of_permanent_fixed_addresses << PAGE_SHIFT
        return self.end_of_permanent << PAGE_SHIFT

    @property
    def FIXADDR_START(self) -> int:
        return self.fixaddr_top - self.FIXADDR_SIZE

    @property
    def FIXADDR_TOT_SIZE(self) -> int:
        # __FIXADDR_BOOT_SIZE (2.6.12), FIXADDR_BOOT_SIZE, FIXADDR_TOT_SIZE (4.19+):
        # __end_of_fixed_addresses << PAGE_SHIFT
        return self.end_of_fixed << PAGE_SHIFT

    @property
    def FIXADDR_TOT_START(self) -> int:
        """FIXADDR_BOOT_START in older kernels, FIXADDR_TOT_START in newer: same formula."""
        return self.fixaddr_top - self.FIXADDR_TOT_SIZE

    FIXADDR_BOOT_START = FIXADDR_TOT_START

    # -- atomic kmaps ----------------------------------------------------------------
    @property
    def kmap_scheme(self) -> str:
        return kmap_scheme(self.params.kernel)

    @property
    def kmap_slots_per_cpu(self) -> int:
        return kmap_slots_per_cpu(self.params.kernel)

    def kmap_idx(self, cpu: int, slot: int | str) -> int:
        """The fixmap index of atomic-kmap slot *slot* of *cpu*:
        ``FIX_KMAP_BEGIN + type + KM_TYPE_NR*smp_processor_id()`` (kmap_atomic(), all eras up
        to 5.10; *slot* is the km_type, or the stack depth from 2.6.37) or
        ``FIX_KMAP_BEGIN + idx + KM_MAX_IDX*smp_processor_id()`` (mm/highmem.c
        ``kmap_local_calc_idx()``, 5.11+). A KM_* name is accepted in km_type kernels."""
        per_cpu = self.kmap_slots_per_cpu
        if isinstance(slot, str):
            names = km_types(self.params.kernel)
            if not names or slot not in names:
                raise ConfigError(f"{slot} is not a km_type of Linux {self.params.kernel}")
            slot = names.index(slot)
        if not 0 <= slot < per_cpu:
            raise ConfigError(f"atomic kmap slot {slot} out of range 0..{per_cpu - 1}")
        if not 0 <= cpu < self.params.nr_cpus:
            raise ConfigError(f"CPU {cpu} out of range: NR_CPUS={self.params.nr_cpus}")
        return self.index("FIX_KMAP_BEGIN") + slot + per_cpu * cpu

    def kmap_vaddr(self, cpu: int, slot: int | str) -> int:
        """``__fix_to_virt(FIX_KMAP_BEGIN + idx)``: where kmap_atomic maps the page."""
        return fix_to_virt(self.kmap_idx(cpu, slot), self.fixaddr_top)


def build_fixmap_32(kernel: KernelVersion, nr_cpus: int, pae: bool,
                    config: Mapping[str, object] | None = None) -> Fixmap32:
    """Decide the i386 ``enum fixed_addresses`` for a kernel, CPU count and paging mode,
    with the #ifdefs of *config* (default :func:`fixmap_config`)."""
    if nr_cpus < 1:
        raise ConfigError(f"NR_CPUS must be at least 1, not {nr_cpus}")
    cfg = dict(fixmap_config(kernel))
    if config:
        cfg.update(config)
    p = FixmapParams(kernel=kernel, nr_cpus=nr_cpus, pae=pae, config=cfg)
    slots: list[FixSlot] = []
    idx = 0
    end_perm = None
    for fix in FIXMAP_32:
        if not fix.present(p):
            continue
        if fix.kind == "marker":
            slots.append(FixSlot(fix.name, idx, 0, source=fix.source))
            if fix.name == "__end_of_permanent_fixed_addresses":
                end_perm = idx
            continue
        if fix.kind == "btmap":
            assert end_perm is not None
            end, begin = _btmap_end(end_perm, p)
            slots.append(FixSlot("FIX_BTMAP_END", end, begin - end + 1, "FIX_BTMAP_BEGIN", fix.source))
            idx = begin + 1
            continue
        n = fix.size(p)
        if n <= 0:
            continue
        slots.append(FixSlot(fix.name, idx, n, fix.end_name if fix.end_name else None, fix.source))
        idx += n
    assert end_perm is not None
    return Fixmap32(params=p, slots=tuple(slots), end_of_permanent=end_perm, end_of_fixed=idx)
