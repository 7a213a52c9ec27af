"""The i386 kernel virtual memory layout (2-level and PAE), from the kernel's own formulas.

One pure function, :func:`compute_layout_32`, turns a :class:`~mmemu.layout.MachineSpec`
into a :class:`~mmemu.layout.Layout`. Every number comes from a macro or a boot-time
computation of the kernel release asked for; each formula below names the file (and the
releases) it is taken from. The top of the address space, from high to low::

    FIXADDR_TOP (0xfffff000)          fixmap, permanent entries       (fixmap_32.py)
    FIXADDR_START
                                      fixmap, boot-time early_ioremap slots
    FIXADDR_BOOT_START / FIXADDR_TOT_START
    CPU_ENTRY_AREA_BASE   (4.15+)     read-only IDT page + per-CPU cpu_entry_area
    LDT_BASE_ADDR         (4.19+)     one PMD for the PTI LDT remap
    PKMAP_BASE                        LAST_PKMAP persistent kmap slots (one page table)
    VMALLOC_END = PKMAP_BASE - 2 pages
                                      vmalloc (modules are vmalloc'ed on i386)
    VMALLOC_START
                                      the VMALLOC_OFFSET hole (8 MiB)
    high_memory                       direct map of lowmem
    PAGE_OFFSET = TASK_SIZE           user space below

Eras (first release of each formula; ``ERAS`` below; "bounded" = the sources read pin the
change between two releases only, the chosen one is stated):

- 2.6.12: include/asm-i386/page.h ``MAXMEM (-__PAGE_OFFSET-__VMALLOC_RESERVE)``;
  include/asm-i386/pgtable.h ``VMALLOC_START`` rounded up to 8 MiB (plus
  ``vmalloc_earlyreserve``, 0 without EFI); include/asm-i386/highmem.h ``PKMAP_BASE`` below
  ``FIXADDR_BOOT_START``; ``vmalloc=`` sets ``__VMALLOC_RESERVE`` as given
  (arch/i386/kernel/setup.c ``parse_cmdline_early``).
- 2.6.27: "kernel parameter vmalloc size fix" (tip, June 2008): ``VMALLOC_START =
  high_memory + VMALLOC_OFFSET``, ``MAXMEM = VMALLOC_END - PAGE_OFFSET - __VMALLOC_RESERVE``
  and ``parse_vmalloc()`` adds ``VMALLOC_OFFSET`` (include/asm-x86/pgtable_32.h, page_32.h,
  arch/x86/mm/pgtable_32.c; later arch/x86/include/asm/pgtable_32_types.h, 2.6.29+).
- 2.6.27 (bounded, see ``E820_UNIFIED_SINCE``): ``max_pfn = e820_end_of_ram_pfn()``, which
  stops at ``MAX_ARCH_PFN`` (4 GiB without PAE: the RAM a PC of 3.5 GiB or more has above
  4 GiB does not count), and ``mem=`` through ``e820_remove_range()``; before,
  ``find_max_pfn()`` with no limit, the 4 GiB trim in ``find_max_low_pfn()`` and
  ``limit_regions()`` (arch/i386/kernel/setup.c). The PC's memory map: mmemu_x86.e820.
- 4.0: ``PKMAP_BASE`` computed from ``FIXADDR_START`` instead of ``FIXADDR_BOOT_START``
  (pgtable_32_types.h). Bounded: FIXADDR_BOOT_START in 3.18, FIXADDR_START in 4.9; 4.0
  assumed.
- 4.15: cpu_entry_area below the fixmap, ``CPU_ENTRY_AREA_BASE = (FIXADDR_START -
  PAGE_SIZE*(CPU_ENTRY_AREA_PAGES+1)) & PMD_MASK``, ``CPU_ENTRY_AREA_PAGES = NR_CPUS*40``,
  ``PKMAP_BASE = (CPU_ENTRY_AREA_BASE - PAGE_SIZE) & PMD_MASK`` ("x86/cpu_entry_area: Move
  it out of the fixmap", pgtable_32_types.h; the 4.14.y/4.9.y stable backports are not
  modelled: a version's formulas are its mainline release's).
- 4.19: x86-32 PTI: ``LDT_BASE_ADDR = (CPU_ENTRY_AREA_BASE - PAGE_SIZE) & PMD_MASK`` one PMD
  below the cpu_entry_area, ``PKMAP_BASE`` below that, and ``CPU_ENTRY_AREA_BASE`` from
  ``FIXADDR_TOT_START`` (so that it no longer overlaps the boot-time FIX_BTMAP slots). The
  LDT lines are verified in the PTI-32 series and in 5.0; FIXADDR_TOT_START is verified in
  5.0 and bounded (4.15, 5.0], assumed to come with PTI-32 in 4.19.
- 5.5: ``CPU_ENTRY_AREA_PAGES = NR_CPUS * 43`` (entry-stack guard page, #DF stack, I/O
  bitmap rework; "x86/pti/32: Calculate the various PTI cpu_entry_area sizes correctly"
  and "x86/doublefault/32: Move #DF stack and TSS to cpu_entry_area"); 5.6 moves the layout
  to arch/x86/include/asm/pgtable_32_areas.h with ``NR_CPUS * DIV_ROUND_UP(sizeof(struct
  cpu_entry_area), PAGE_SIZE)``, still 43 pages on i386 (6.6 too).
- 6.15: "x86/mm: Remove CONFIG_HIGHMEM64G support" (bbeb69ce3013): PAE kernels are HIGHMEM4G
  and ``highmem_pfn_init()`` trims ``max_pfn`` to 4 GiB for them too.

The ``enum fixed_addresses`` that sizes the fixmap changes far more often; it is the table
in :mod:`mmemu_x86.fixmap_32`.
"""

from __future__ import annotations

from dataclasses import dataclass

from mmemu.errors import ConfigError
from mmemu.layout import ImageSection, Layout, MachineSpec, MemoryRange, Region, ZoneSpan, fill_holes
from mmemu.units import GiB, KernelVersion, MiB, format_size, parse_count

from .e820 import clip_ram, limit_regions, pc_e820, range_remove_ram
from .e820 import end_pfn as e820_end_pfn
from .e820 import max_pfn as e820_max_pfn
from .fixmap_32 import (
    KM_MAX_IDX,
    PAGE_SHIFT,
    PAGE_SIZE,
    build_fixmap_32,
    fixmap_config,
    km_type_nr,
    km_types,
    kmap_scheme,
)

# --------------------------------------------------------------------------------------
# Eras
# --------------------------------------------------------------------------------------

#: first releases of each layout formula (see the module docstring for the sources)
VMALLOC_FIX_SINCE = "2.6.27"
PKMAP_FROM_FIXADDR_START_SINCE = "4.0"   # bounded (3.18, 4.9]
CPU_ENTRY_AREA_SINCE = "4.15"
LDT_REMAP_SINCE = "4.19"                 # and FIXADDR_TOT_START for CPU_ENTRY_AREA_BASE
CEA_43_PAGES_SINCE = "5.5"
#: CONFIG_VMSPLIT_* / CONFIG_PAGE_OFFSET (arch/i386/Kconfig; from memory, not verified)
VMSPLIT_SINCE = "2.6.16"
#: arch/x86/Kconfig: PHYSICAL_START and PHYSICAL_ALIGN default to 16 MiB ("x86: default
#: CONFIG_PHYSICAL_START and CONFIG_PHYSICAL_ALIGN to 16 MB"; release from memory)
PHYSICAL_START_16M_SINCE = "2.6.31"
#: CONFIG_DEBUG_RODATA for i386 (mark_rodata_ro()); from memory
RODATA_RO_SINCE = "2.6.16"
#: "x86: NX protection for kernel data" (data/bss NX on PAE); from memory
DATA_NX_SINCE = "2.6.30"
#: the unified arch/x86/kernel/e820.c: e820_end_pfn() with MAX_ARCH_PFN and mem= through
#: e820_remove_range(); before, arch/i386/kernel/setup.c (e820.c, e820_32.c) find_max_pfn() and
#: limit_regions(). Bounded: the old functions are verified in 2.6.12 .. 2.6.2x, the new ones in the
#: merged e820.c; 2.6.27 (the release of that merge) assumed.
E820_UNIFIED_SINCE = "2.6.27"
#: limit_regions() skips a RAM entry that starts above mem= ("Provisions for empty e820 memory
#: regions", Dave Hansen, September 2005; 2.6.14 assumed)
LIMIT_REGIONS_FIX_SINCE = "2.6.14"
#: bbeb69ce3013 "x86/mm: Remove CONFIG_HIGHMEM64G support" (6.15-rc1): a PAE kernel uses no RAM above
#: 4 GiB (highmem_pfn_init's MAX_NONPAE_PFN trim loses its #ifndef CONFIG_HIGHMEM64G)
HIGHMEM64G_REMOVED_SINCE = "6.15"

#: the series mmemu knows, (major, minor, last patch level for 2.6) -> supported range
SUPPORTED = "2.6.12 .. 2.6.39, 3.0 .. 3.19, 4.0 .. 4.20, 5.0 .. 5.19, 6.x"

# Constants that never changed on i386
VMALLOC_OFFSET = 8 * MiB           # pgtable.h / pgtable_32_types.h / pgtable_32_areas.h
VMALLOC_RESERVE_DEFAULT = 128 << 20  # arch/i386/kernel/setup.c, arch/x86/mm/pgtable_32.c
MAX_DMA_PFN = (16 * MiB) >> PAGE_SHIFT  # asm/dma.h MAX_DMA_ADDRESS = PAGE_OFFSET + 16 MiB
MAX_NONPAE_PFN = 1 << 20           # 4 GiB: setup.c / init_32.c
MAX_PAE_RAM = 64 * GiB             # MAX_PHYSMEM_BITS 36 (HIGHMEM64G)
#: arch/x86/kernel/e820.c (2.6.27+): "# ifdef CONFIG_X86_PAE / # define MAX_ARCH_PFN (1ULL<<(36-PAGE_SHIFT))
#: / # else / # define MAX_ARCH_PFN (1ULL<<(32-PAGE_SHIFT))"
MAX_ARCH_PFN_PAE = 1 << (36 - PAGE_SHIFT)
MAX_ARCH_PFN_NONPAE = 1 << (32 - PAGE_SHIFT)
NR_CPUS_MAX = 64                   # arch/x86/Kconfig NR_CPUS_RANGE_END for X86_32 (BIGSMP)
U32 = 1 << 32

#: arch/x86/Kconfig choice "Memory split" (CONFIG_PAGE_OFFSET); the _OPT ones exist only
#: without PAE.
VMSPLITS = {
    "3G": 0xC0000000,
    "3G_OPT": 0xB0000000,
    "2G": 0x80000000,
    "2G_OPT": 0x78000000,
    "1G": 0x40000000,
}

#: Representative image sizes per era, NOT taken from a particular build: what a
#: distro-style i386 vmlinux of the time roughly measured (the 3.x text size is the one
#: of a 3.x boot log's ".text : 0xc1000000 - 0xc15c0e3d"). Page multiples, laid out as
#: arch/x86/kernel/vmlinux.lds.S (arch/i386/kernel/vmlinux.lds.S) does on 32-bit:
#: text, rodata, data, init (freed after boot), bss.
IMAGE_SIZES: tuple[tuple[str, dict[str, int]], ...] = (
    ("2.6.12", dict(text=0x1C0000, rodata=0x80000, data=0x60000, init=0x40000, bss=0x50000)),
    ("2.6.24", dict(text=0x2A0000, rodata=0xC0000, data=0xA0000, init=0x60000, bss=0x90000)),
    ("3.0", dict(text=0x5C1000, rodata=0x2C0000, data=0x1C0000, init=0x74000, bss=0x120000)),
    ("4.0", dict(text=0x720000, rodata=0x300000, data=0x200000, init=0xA0000, bss=0x180000)),
    ("5.0", dict(text=0x960000, rodata=0x3A0000, data=0x240000, init=0xC0000, bss=0x200000)),
)


def check_kernel_version(k: KernelVersion) -> None:
    """ConfigError unless mmemu has the i386 formulas of release *k*."""
    ok = ((k.major == 2 and k.minor == 6 and 12 <= k.patch <= 39)
          or (k.major == 3 and 0 <= k.minor <= 19)
          or (k.major == 4 and 0 <= k.minor <= 20)
          or (k.major == 5 and 0 <= k.minor <= 19)
          or k.major == 6)
    if not ok:
        raise ConfigError(f"i386 layout of Linux {k} is not known: supported kernels are {SUPPORTED}")


def _u32(x: int) -> int:
    return x & (U32 - 1)


# --------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------

def _nr_cpus(spec: MachineSpec) -> int:
    raw = spec.options.get("NR_CPUS")
    if raw is None:
        n = spec.cpus
    else:
        n = parse_count(raw, what="option NR_CPUS")  # a Kconfig int: decimal, ASCII digits
        if n < spec.cpus:
            raise ConfigError(f"NR_CPUS={n} is smaller than the {spec.cpus} CPUs asked for (--cpus)")
    if not 1 <= n <= NR_CPUS_MAX:
        raise ConfigError(f"NR_CPUS={n} is out of range for i386: 1 .. {NR_CPUS_MAX} (CONFIG_X86_BIGSMP)")
    return n


def _page_offset(spec: MachineSpec, pae: bool) -> tuple[int, str]:
    split = str(spec.options.get("VMSPLIT", "3G")).upper()
    if split not in VMSPLITS:
        raise ConfigError(f"option VMSPLIT={split!r} is not one of {', '.join(VMSPLITS)}")
    if split != "3G" and spec.kernel < VMSPLIT_SINCE:
        raise ConfigError(f"Linux {spec.kernel} has a fixed 3G/1G split (__PAGE_OFFSET 0xC0000000); "
                          f"VMSPLIT exists from {VMSPLIT_SINCE}")
    if split.endswith("_OPT") and pae:
        raise ConfigError(f"VMSPLIT={split} depends on !X86_PAE (arch/x86/Kconfig)")
    return VMSPLITS[split], split


def _mem_limit(spec: MachineSpec) -> int | None:
    """``mem=``: arch/i386/kernel/setup.c ``limit_regions()`` (2.6.12 .. 2.6.26),
    arch/x86/kernel/e820.c ``parse_memopt()`` (later): the RAM above the *address* mem= goes
    (mmemu_x86.e820 :func:`limit_regions`, :func:`range_remove_ram`); on a PC of 3.5 GiB or
    more, mem=3G and mem=3584M both leave the 3 GiB below the hole.
    ``mem=nopentium`` only disables PSE and leaves the map alone."""
    if "mem" not in spec.cmdline or spec.cmdline["mem"] == "nopentium":
        return None
    size = spec.cmdline.size("mem")
    if not size:
        raise ConfigError("mem=0 leaves the kernel no memory (parse_memopt rejects it)")
    return size


def _highmem_pages(spec: MachineSpec) -> int:
    """``highmem=size`` (setup.c 2.6.12, arch/x86/mm/init_32.c ``parse_highmem()``):
    ``highmem_pages = memparse(arg, &arg) >> PAGE_SHIFT``; -1 when absent."""
    size = spec.cmdline.size("highmem")
    return -1 if size is None else size >> PAGE_SHIFT


def _vmalloc_reserve(spec: MachineSpec) -> int:
    """``__VMALLOC_RESERVE`` (``unsigned int``, default 128 MiB)."""
    size = spec.cmdline.size("vmalloc")
    if size is None:
        return VMALLOC_RESERVE_DEFAULT
    if spec.kernel >= VMALLOC_FIX_SINCE:
        # arch/x86/mm/pgtable_32.c parse_vmalloc() (2.6.27+):
        #   __VMALLOC_RESERVE = memparse(arg, &arg) + VMALLOC_OFFSET;
        reserve = size + VMALLOC_OFFSET
    else:
        # arch/i386/kernel/setup.c parse_cmdline_early() (2.6.12):
        #   __VMALLOC_RESERVE = memparse(from+8, &from);
        reserve = size
    if reserve >= U32:
        raise ConfigError(f"vmalloc={format_size(size)} does not fit the 4 GiB address space")
    return reserve


# --------------------------------------------------------------------------------------
# Boot-time memory sizing
# --------------------------------------------------------------------------------------

def find_low_pfn_range(max_pfn: int, maxmem_pfn: int, highmem_pages: int,
                       trim_4g: bool = False) -> tuple[int, int]:
    """(max_low_pfn, max_pfn) as the kernel sizes low memory.

    arch/i386/kernel/setup.c ``find_max_low_pfn()`` (2.6.12) and arch/x86/mm/init_32.c
    ``find_low_pfn_range()`` / ``lowmem_pfn_init()`` / ``highmem_pfn_init()`` (2.6.30+) are
    the same logic; every kernel here has CONFIG_HIGHMEM. The kernel ignores a
    ``highmem=`` it cannot honour with a printk; mmemu refuses it with that message.

    *trim_4g*: a kernel without HIGHMEM64G (non-PAE; PAE from 6.15) ends max_pfn at 4 GiB,
    after the highmem= arithmetic: 2.6.12 setup.c ``#ifndef CONFIG_X86_PAE if (max_pfn >
    MAX_NONPAE_PFN) { max_pfn = MAX_NONPAE_PFN; printk(KERN_WARNING "Warning only 4GB will be
    used.\n"); ...`` and init_32.c highmem_pfn_init() ``#ifndef CONFIG_HIGHMEM64G ... printk(
    KERN_WARNING MSG_HIGHMEM_TRIMMED)`` ("Warning: only 4GB will be used. Use a HIGHMEM64G
    enabled kernel!"; 6.15: "... Support for CONFIG_HIGHMEM64G was removed!").
    """
    if max_pfn <= maxmem_pfn:
        # lowmem_pfn_init(): all of RAM fits into lowmem
        max_low_pfn = max_pfn
        if highmem_pages == -1:
            highmem_pages = 0
        if highmem_pages >= max_pfn:
            raise ConfigError(f"highmem size ({highmem_pages >> 8}MB) is bigger than pages available "
                              f"({max_pfn >> 8}MB)! (highmem= ignored by the kernel)")
        if highmem_pages:
            if max_low_pfn - highmem_pages < (64 * MiB) // PAGE_SIZE:
                raise ConfigError(f"highmem size ({highmem_pages >> 8}MB) results in <64MB lowmem, "
                                  f"ignoring it! (highmem= ignored by the kernel)")
            max_low_pfn -= highmem_pages
        return max_low_pfn, max_pfn
    # highmem_pfn_init(): more RAM than fits into lowmem
    max_low_pfn = maxmem_pfn
    if highmem_pages == -1:
        highmem_pages = max_pfn - maxmem_pfn
    if highmem_pages + maxmem_pfn < max_pfn:
        max_pfn = maxmem_pfn + highmem_pages
    if highmem_pages + maxmem_pfn > max_pfn:
        raise ConfigError(f"only {(max_pfn - maxmem_pfn) >> 8}MB highmem pages available, ignoring highmem "
                          f"size of {highmem_pages >> 8}MB! (highmem= ignored by the kernel)")
    if trim_4g and max_pfn > MAX_NONPAE_PFN:
        max_pfn = MAX_NONPAE_PFN
    return max_low_pfn, max_pfn


# --------------------------------------------------------------------------------------
# The kernel image
# --------------------------------------------------------------------------------------

def load_physical_addr(k: KernelVersion) -> tuple[int, dict[str, object]]:
    """Where the kernel image sits in physical memory, and the config that says so.

    - 2.6.12 .. 2.6.15: arch/i386/kernel/vmlinux.lds.S ``. = __PAGE_OFFSET + 0x100000;``
    - 2.6.16 .. 2.6.19: include/asm-i386/page.h ``__PHYSICAL_START = CONFIG_PHYSICAL_START``
      (default 0x100000)
    - 2.6.20+: asm/boot.h ``LOAD_PHYSICAL_ADDR = ((CONFIG_PHYSICAL_START +
      (CONFIG_PHYSICAL_ALIGN - 1)) & ~(CONFIG_PHYSICAL_ALIGN - 1))``; the defaults are 1 MiB
      until 2.6.30 and 16 MiB from 2.6.31 (later kernels default PHYSICAL_ALIGN to 2 MiB,
      which aligns the 16 MiB PHYSICAL_START to the same address).
    """
    cfg: dict[str, object] = {}
    if k >= PHYSICAL_START_16M_SINCE:
        start, align = 0x1000000, 0x1000000
    else:
        start, align = 0x100000, 0x100000
    if k >= "2.6.16":
        cfg["CONFIG_PHYSICAL_START"] = start
    if k >= "2.6.20":
        cfg["CONFIG_RELOCATABLE"] = True
        cfg["CONFIG_PHYSICAL_ALIGN"] = align
        return (start + align - 1) & ~(align - 1), cfg
    return start, cfg


@dataclass(frozen=True)
class _Image:
    symbols: dict[str, int]
    sections: list[ImageSection]
    phys_end: int


def _image(k: KernelVersion, page_offset: int, pae: bool) -> _Image:
    phys, _ = load_physical_addr(k)
    sizes = IMAGE_SIZES[0][1]
    for since, row in IMAGE_SIZES:
        if k >= since:
            sizes = row
    va = page_offset + phys  # i386: the image lives in the direct map, virt = PAGE_OFFSET + phys
    sym: dict[str, int] = {}
    sym["_text"] = va
    sym["_etext"] = va = va + sizes["text"]
    sym["__start_rodata"] = va
    sym["__end_rodata"] = va = va + sizes["rodata"]
    sym["_sdata"] = va
    sym["_edata"] = va = va + sizes["data"]
    sym["__init_begin"] = va
    sym["__init_end"] = va = va + sizes["init"]
    sym["__bss_start"] = va
    sym["__bss_stop"] = va = va + sizes["bss"]
    sym["_end"] = va
    # Protections after mark_rodata_ro() (arch/i386/mm/init.c, arch/x86/mm/init_32.c):
    # text/rodata read-only from CONFIG_DEBUG_RODATA (2.6.16; always on since 4.6 as
    # STRICT_KERNEL_RWX); before that, everything in the direct map is writable.
    # Execute: 2-level entries have no NX bit, everything is executable. With PAE, the
    # direct map is NX outside the kernel text up to __init_end (is_kernel_text() in
    # kernel_physical_mapping_init()), and data/rodata are NX from 2.6.30.
    ro = k >= RODATA_RO_SINCE
    data_nx = pae and k >= DATA_NX_SINCE

    def sec(name: str, start: str, end: str, writable: bool, executable: bool) -> ImageSection:
        return ImageSection(name=name, virt=sym[start], phys=sym[start] - page_offset,
                            size=sym[end] - sym[start], writable=writable, executable=executable)

    sections = [
        sec("text", "_text", "_etext", writable=not ro, executable=True),
        sec("rodata", "__start_rodata", "__end_rodata", writable=not ro, executable=not data_nx),
        sec("data", "_sdata", "_edata", writable=True, executable=not data_nx),
        sec("bss", "__bss_start", "__bss_stop", writable=True, executable=not pae),
    ]
    return _Image(symbols=sym, sections=sections, phys_end=sym["_end"] - page_offset)


# --------------------------------------------------------------------------------------
# The layout
# --------------------------------------------------------------------------------------

def cpu_entry_area_pages_per_cpu(k: KernelVersion) -> tuple[int, int]:
    """(pages reserved per CPU by CPU_ENTRY_AREA_PAGES, pages of sizeof(struct
    cpu_entry_area)) on i386.

    - 4.15 .. 5.4: ``#define CPU_ENTRY_AREA_PAGES (NR_CPUS * 40)`` (pgtable_32_types.h)
      while the struct is 38 pages (gdt 1, entry_stack_page 1, tss_struct 3 with the I/O
      bitmap, debug_store 1, debug_store_buffers 32), as the 5.5 fix's changelog states;
    - 5.5+: 43 and 43 (+ guard_entry_stack, guard_doublefault_stack, doublefault_stack,
      tss_struct 5 pages with io_bitmap.bitmap and .mapall); 5.6+ computes it as
      ``DIV_ROUND_UP(sizeof(struct cpu_entry_area), PAGE_SIZE)`` (pgtable_32_areas.h).
    """
    return (43, 43) if k >= CEA_43_PAGES_SINCE else (40, 38)


def compute_layout_32(spec: MachineSpec, pae: bool) -> Layout:
    """The i386 (``pae=False``, 2-level paging) or i386 PAE kernel memory map of *spec*."""
    k = spec.kernel
    check_kernel_version(k)
    if spec.arch not in ("i386", "i386_pae"):
        raise ConfigError(f"compute_layout_32 lays out i386 and i386_pae, not {spec.arch!r}")
    if (spec.arch == "i386_pae") != pae:
        raise ConfigError(f"arch {spec.arch} is {'not ' if pae else ''}a PAE arch")

    # ---- configuration ------------------------------------------------------------
    nr_cpus = _nr_cpus(spec)
    page_offset, split = _page_offset(spec, pae)
    phys_load, phys_cfg = load_physical_addr(k)
    config: dict[str, object] = {
        "CONFIG_X86_32": True,
        "CONFIG_M686": True,
        "CONFIG_SMP": nr_cpus > 1,
        "NR_CPUS": nr_cpus,
        # arch/x86/Kconfig: HIGHMEM64G (selecting X86_PAE) until 6.15, HIGHMEM4G with X86_PAE after
        "CONFIG_HIGHMEM4G": not pae or k >= HIGHMEM64G_REMOVED_SINCE,
        "CONFIG_HIGHMEM64G": pae and k < HIGHMEM64G_REMOVED_SINCE,
        "CONFIG_X86_PAE": pae,
        f"CONFIG_VMSPLIT_{split}": True,
    }
    if k >= VMSPLIT_SINCE:
        config["CONFIG_PAGE_OFFSET"] = page_offset
    config.update(fixmap_config(k))
    if km_type_nr(k) is None:
        config["KM_MAX_IDX"] = KM_MAX_IDX
    else:
        config["KM_TYPE_NR"] = km_type_nr(k)
    config["kmap_atomic"] = kmap_scheme(k)
    if km_types(k) is not None:
        config["km_types"] = km_types(k)  # enum km_type: the slot of each named use
    # CONFIG_HIGHPTE (arch/x86/Kconfig, "Allocate 3rd-level pagetables from highmem"):
    # on in the distro i686 kernels; user page tables then live in HighMem and the kernel
    # reaches them through kmap_atomic (pte_offset_map). --option HIGHPTE=n turns it off.
    config["CONFIG_HIGHPTE"] = str(spec.options.get("HIGHPTE", "y")).lower() in ("y", "yes", "1", "on")
    config.update(phys_cfg)
    if k >= "4.11":
        config["CONFIG_STRICT_KERNEL_RWX"] = True
    elif k >= RODATA_RO_SINCE:
        config["CONFIG_DEBUG_RODATA"] = True
    if k >= LDT_REMAP_SINCE:
        # arch/x86/Kconfig: PAGE_TABLE_ISOLATION depends on X86_64 || X86_PAE
        config["CONFIG_PAGE_TABLE_ISOLATION"] = pae

    # ---- RAM ------------------------------------------------------------------------
    # --ram is the machine's RAM (QEMU's -m), at most what the CPU the arch stands for addresses:
    # 4 GiB without PAE (32-bit physical addresses), 64 GiB with (36 bits). The PC moves the RAM above
    # 3 GiB of a machine of 3.5 GiB or more above 4 GiB (mmemu_x86.e820), where a kernel without
    # HIGHMEM64G does not use it: a 4 GiB non-PAE machine gives its kernel 3 GiB, as a real one does.
    highmem64g = pae and k < HIGHMEM64G_REMOVED_SINCE
    max_ram = MAX_PAE_RAM if pae else MAX_NONPAE_PFN << PAGE_SHIFT
    if spec.ram > max_ram:
        if not pae:
            what = "non-PAE i386 (32-bit physical addresses, HIGHMEM4G; use arch i386_pae for more)"
        elif highmem64g:
            what = "PAE (36-bit physical addresses, HIGHMEM64G)"
        else:
            what = "PAE (36-bit physical addresses; from 6.15, without HIGHMEM64G, the kernel uses 4 GiB)"
        raise ConfigError(f"RAM size {format_size(spec.ram)} exceeds the {format_size(max_ram)} that "
                          f"{what} can address")
    # The firmware's map, mem= and the end of RAM as the era computes them.
    mem_limit = _mem_limit(spec)
    memory_map: list[MemoryRange] = pc_e820(spec.ram)
    if k >= E820_UNIFIED_SINCE:
        # arch/x86/kernel/e820.c parse_memopt(): e820_remove_range(mem_size, ULLONG_MAX - mem_size, E820_RAM, 1)
        if mem_limit is not None:
            memory_map = range_remove_ram(memory_map, mem_limit)
        # max_pfn = e820_end_of_ram_pfn() = e820_end_pfn(MAX_ARCH_PFN, E820_RAM): without PAE a RAM entry
        # starting at or above 4 GiB does not count (the RAM of a 4 GiB PC above 4 GiB is lost: max_pfn is
        # the 3 GiB below the hole); with PAE up to 64 GiB (MAX_ARCH_PFN stays 36 bits in 6.15)
        max_arch_pfn = MAX_ARCH_PFN_PAE if pae else MAX_ARCH_PFN_NONPAE
        e820_pfn = e820_end_pfn(memory_map, max_arch_pfn, max_arch_pfn)
    else:
        # arch/i386/kernel/setup.c parse_cmdline_early(): limit_regions(mem_size); find_max_pfn(): the end of
        # the last RAM entry, with no limit (find_max_low_pfn() trims it to 4 GiB without PAE, below)
        if mem_limit is not None:
            memory_map = limit_regions(memory_map, mem_limit, underflows=k < LIMIT_REGIONS_FIX_SINCE)
        e820_pfn = e820_max_pfn(memory_map)

    # ---- paging-mode constants ------------------------------------------------------
    # pgtable-2level_types.h: PMD folded, PMD_SHIFT = PGDIR_SHIFT = 22;
    # pgtable-3level_types.h: PMD_SHIFT 21. highmem.h / pgtable_32_types.h: LAST_PKMAP
    # 1024 (2-level) or 512 (PAE): one page table's worth.
    pmd_size = (2 if pae else 4) * MiB
    pmd_mask = _u32(~(pmd_size - 1))
    last_pkmap = 512 if pae else 1024

    # ---- fixmap ---------------------------------------------------------------------
    fixmap = build_fixmap_32(k, nr_cpus, pae, config)
    FIXADDR_TOP = fixmap.fixaddr_top
    FIXADDR_START = fixmap.FIXADDR_START            # FIXADDR_TOP - __end_of_permanent << 12
    FIXADDR_TOT_START = fixmap.FIXADDR_TOT_START    # FIXADDR_TOP - __end_of_fixed << 12

    # ---- from the fixmap down to VMALLOC_END -----------------------------------------
    cea_base = cea_pages = cea_map_size = ldt_base = None
    if k >= CPU_ENTRY_AREA_SINCE:
        per_cpu_reserved, per_cpu_size = cpu_entry_area_pages_per_cpu(k)
        cea_pages = nr_cpus * per_cpu_reserved
        if k >= LDT_REMAP_SINCE:
            # pgtable_32_types.h (4.19 .. 5.5), pgtable_32_areas.h (5.6+):
            # #define CPU_ENTRY_AREA_BASE \
            #   ((FIXADDR_TOT_START - PAGE_SIZE*(CPU_ENTRY_AREA_PAGES+1)) & PMD_MASK)
            cea_base = (FIXADDR_TOT_START - PAGE_SIZE * (cea_pages + 1)) & pmd_mask
            # #define LDT_BASE_ADDR ((CPU_ENTRY_AREA_BASE - PAGE_SIZE) & PMD_MASK)
            ldt_base = (cea_base - PAGE_SIZE) & pmd_mask
            # #define PKMAP_BASE ((LDT_BASE_ADDR - PAGE_SIZE) & PMD_MASK)
            pkmap_base = (ldt_base - PAGE_SIZE) & pmd_mask
        else:
            # pgtable_32_types.h (4.15 .. 4.18):
            # #define CPU_ENTRY_AREA_BASE \
            #   ((FIXADDR_START - PAGE_SIZE * (CPU_ENTRY_AREA_PAGES + 1)) & PMD_MASK)
            cea_base = (FIXADDR_START - PAGE_SIZE * (cea_pages + 1)) & pmd_mask
            # #define PKMAP_BASE ((CPU_ENTRY_AREA_BASE - PAGE_SIZE) & PMD_MASK)
            pkmap_base = (cea_base - PAGE_SIZE) & pmd_mask
        # cpu_entry_area.h / pgtable_areas.h: CPU_ENTRY_AREA_MAP_SIZE = (CPU_ENTRY_AREA_PER_CPU
        # + CPU_ENTRY_AREA_TOT_SIZE - CPU_ENTRY_AREA_BASE), PER_CPU = BASE + PAGE_SIZE (the
        # read-only IDT page), TOT_SIZE = sizeof(struct cpu_entry_area) * NR_CPUS
        cea_map_size = PAGE_SIZE + per_cpu_size * PAGE_SIZE * nr_cpus
    elif k >= PKMAP_FROM_FIXADDR_START_SINCE:
        # pgtable_32_types.h (4.0 .. 4.14):
        # #define PKMAP_BASE ((FIXADDR_START - PAGE_SIZE * (LAST_PKMAP + 1)) & PMD_MASK)
        pkmap_base = (FIXADDR_START - PAGE_SIZE * (last_pkmap + 1)) & pmd_mask
    else:
        # include/asm-i386/highmem.h (2.6.12):
        # #define PKMAP_BASE ( (FIXADDR_BOOT_START - PAGE_SIZE*(LAST_PKMAP + 1)) & PMD_MASK )
        # (include/asm-x86/pgtable_32.h, pgtable_32_types.h up to 3.18: the same)
        pkmap_base = (FIXADDR_TOT_START - PAGE_SIZE * (last_pkmap + 1)) & pmd_mask
    # CONFIG_HIGHMEM: # define VMALLOC_END (PKMAP_BASE-2*PAGE_SIZE)  (every era)
    vmalloc_end = pkmap_base - 2 * PAGE_SIZE

    # ---- lowmem ----------------------------------------------------------------------
    reserve = _vmalloc_reserve(spec)
    if k >= VMALLOC_FIX_SINCE:
        # pgtable_32_types.h: #define MAXMEM (VMALLOC_END - PAGE_OFFSET - __VMALLOC_RESERVE)
        maxmem = vmalloc_end - page_offset - reserve
        room = vmalloc_end - page_offset
    else:
        # include/asm-i386/page.h: #define MAXMEM (-__PAGE_OFFSET-__VMALLOC_RESERVE)
        # (unsigned 32-bit arithmetic)
        room = U32 - page_offset
        maxmem = room - reserve
    if maxmem <= 0:
        raise ConfigError(f"vmalloc={format_size(spec.cmdline.size('vmalloc') or 0)} leaves no lowmem: "
                          f"MAXMEM = {maxmem:#x} (the kernel has {format_size(room)} above PAGE_OFFSET)")
    maxmem_pfn = maxmem >> PAGE_SHIFT  # MAXMEM_PFN = PFN_DOWN(MAXMEM)
    max_low_pfn, max_pfn = find_low_pfn_range(e820_pfn, maxmem_pfn, _highmem_pages(spec), trim_4g=not highmem64g)
    # The RAM above max_pfn (above 4 GiB without HIGHMEM64G, past 64 GiB, cut by highmem=) is in no zone:
    # the map mmemu boots from leaves it out (6.15: e820__memblock_setup() memblock_remove()s it on 32-bit)
    memory_map = clip_ram(memory_map, max_pfn << PAGE_SHIFT)
    # arch/x86/mm/init_32.c initmem_init(): highstart_pfn = highend_pfn = max_pfn;
    # if (max_pfn > max_low_pfn) highstart_pfn = max_low_pfn;
    # high_memory = (void *) __va(highstart_pfn * PAGE_SIZE - 1) + 1;
    # (2.6.12 setup_memory()/mem_init(): the same values)
    highstart_pfn = max_low_pfn if max_pfn > max_low_pfn else max_pfn
    highend_pfn = max_pfn
    high_memory = page_offset + highstart_pfn * PAGE_SIZE

    # ---- vmalloc -----------------------------------------------------------------------
    if k >= VMALLOC_FIX_SINCE:
        # pgtable_32_types.h: #define VMALLOC_START ((unsigned long)high_memory + VMALLOC_OFFSET)
        vmalloc_start = high_memory + VMALLOC_OFFSET
    else:
        # include/asm-i386/pgtable.h (2.6.12):
        # #define VMALLOC_START (((unsigned long) high_memory + vmalloc_earlyreserve + \
        #                         2*VMALLOC_OFFSET-1) & ~(VMALLOC_OFFSET-1))
        vmalloc_earlyreserve = 0  # only EFI boots reserve here (arch/i386/kernel/efi.c)
        vmalloc_start = (high_memory + vmalloc_earlyreserve + 2 * VMALLOC_OFFSET - 1) & ~(VMALLOC_OFFSET - 1)
    # arch/x86/mm/init_32.c mem_init(): BUG_ON(VMALLOC_START >= VMALLOC_END);
    # BUG_ON((unsigned long)high_memory > VMALLOC_START);
    if vmalloc_start >= vmalloc_end:
        raise ConfigError(f"no vmalloc area: VMALLOC_START {vmalloc_start:#x} >= VMALLOC_END {vmalloc_end:#x} "
                          f"(vmalloc= too small for this much lowmem; mem_init() would BUG)")

    # ---- the image must be in lowmem -----------------------------------------------------
    image = _image(k, page_offset, pae)
    if image.phys_end > max_low_pfn * PAGE_SIZE:
        raise ConfigError(f"the kernel image (physical {phys_load:#x}-{image.phys_end:#x}) does not fit in "
                          f"lowmem, which ends at {max_low_pfn * PAGE_SIZE:#x} (RAM, mem=, vmalloc= or highmem=)")

    # ---- symbols ---------------------------------------------------------------------------
    sym: dict[str, int] = {}
    sym["PAGE_OFFSET"] = page_offset
    # include/asm-i386/processor.h, arch/x86/include/asm/page_32_types.h:
    # #define TASK_SIZE (PAGE_OFFSET) (TASK_SIZE_MAX later)
    sym["TASK_SIZE"] = page_offset
    sym["LOAD_PHYSICAL_ADDR"] = phys_load
    sym.update(image.symbols)
    sym["max_pfn"] = max_pfn
    sym["max_low_pfn"] = max_low_pfn
    # FLATMEM's mem_map (mm/page_alloc.c alloc_node_mem_map): max_pfn struct pages of 32
    # bytes, memblock-allocated top-down below the lowmem limit. Its address is what a
    # module's struct page pointers are relative to; mmemu keeps no struct page contents
    # there; the boot reserves the frames (mmemu_x86.boot_maps.mem_map_alloc).
    sym["mem_map"] = page_offset + ((max_low_pfn * PAGE_SIZE - max_pfn * 32) & ~(PAGE_SIZE - 1))
    sym["highstart_pfn"] = highstart_pfn
    sym["highend_pfn"] = highend_pfn
    sym["MAXMEM"] = maxmem
    sym["high_memory"] = high_memory
    sym["VMALLOC_OFFSET"] = VMALLOC_OFFSET
    sym["__VMALLOC_RESERVE"] = reserve
    if k < VMALLOC_FIX_SINCE:
        sym["vmalloc_earlyreserve"] = 0
    sym["VMALLOC_START"] = vmalloc_start
    sym["VMALLOC_END"] = vmalloc_end
    # pgtable_32_types.h (2.6.29+): #define MODULES_VADDR VMALLOC_START, MODULES_END
    # VMALLOC_END; before, module_alloc() was plain vmalloc() (arch/i386/kernel/module.c)
    sym["MODULES_VADDR"] = vmalloc_start
    sym["MODULES_END"] = vmalloc_end
    sym["PKMAP_BASE"] = pkmap_base
    sym["LAST_PKMAP"] = last_pkmap
    if ldt_base is not None:
        sym["LDT_BASE_ADDR"] = ldt_base
        sym["LDT_END_ADDR"] = ldt_base + pmd_size  # #define LDT_END_ADDR (LDT_BASE_ADDR + PMD_SIZE)
    if cea_base is not None:
        sym["CPU_ENTRY_AREA_BASE"] = cea_base
        sym["CPU_ENTRY_AREA_PAGES"] = cea_pages
        sym["CPU_ENTRY_AREA_MAP_SIZE"] = cea_map_size
    if k < PKMAP_FROM_FIXADDR_START_SINCE:
        sym["FIXADDR_BOOT_START"] = FIXADDR_TOT_START
    elif k >= LDT_REMAP_SINCE:
        sym["FIXADDR_TOT_START"] = FIXADDR_TOT_START
    sym["FIXADDR_START"] = FIXADDR_START
    sym["FIXADDR_TOP"] = FIXADDR_TOP
    sym["PMD_SIZE"] = pmd_size

    # ---- regions ---------------------------------------------------------------------------
    regions = [
        Region("user-space virtual memory, different per mm", 0, page_offset, "user"),
        Region("direct mapping of low memory (lowmem)", page_offset, high_memory, "direct"),
        Region("... VMALLOC_OFFSET gap", high_memory, vmalloc_start, "hole"),
        Region("vmalloc/ioremap space, modules", vmalloc_start, vmalloc_end, "vmalloc"),
        Region("... guard pages below the pkmap area", vmalloc_end, pkmap_base, "guard"),
        Region("persistent kmap area (pkmap)", pkmap_base, pkmap_base + last_pkmap * PAGE_SIZE, "pkmap"),
    ]
    if ldt_base is not None:
        regions.append(Region("LDT remap for PTI", ldt_base, ldt_base + pmd_size, "ldt"))
    if cea_base is not None:
        regions.append(Region("cpu_entry_area mapping", cea_base, cea_base + cea_map_size, "cpu-entry-area"))
    regions.append(Region("kernel-internal fixmap range", FIXADDR_START, FIXADDR_TOP, "fixmap"))
    # index 0 (FIX_HOLE) is the top page, never mapped
    regions.append(Region("... top page, never mapped", FIXADDR_TOP, U32, "guard"))
    # The boot-time early_ioremap slots (FIX_BTMAP_*, FIX_WP_TEST...) below FIXADDR_START:
    # shown only where they do not share addresses with a run-time area. From 4.0 pkmap
    # (and in 4.15 .. 4.18 the cpu_entry_area) may lie on top of them: harmless in the
    # kernel because early_ioremap is finished before those are used.
    boot = Region("fixmap boot-time slots (early_ioremap)", FIXADDR_TOT_START, FIXADDR_START, "fixmap")
    if boot.size and not any(r.start < boot.end and boot.start < r.end for r in regions):
        regions.append(boot)
    regions = fill_holes([r for r in regions if r.size > 0], U32, "i386")

    # ---- zones -----------------------------------------------------------------------------
    # setup.c zone_sizes_init() (2.6.12) / init_32.c zone_sizes_init(): ZONE_DMA up to
    # MAX_DMA_PFN (16 MiB), ZONE_NORMAL up to max_low_pfn, ZONE_HIGHMEM up to highend_pfn.
    zones = []
    dma_end = min(MAX_DMA_PFN, max_low_pfn)
    if dma_end > 0:
        zones.append(ZoneSpan("DMA", 0, dma_end))
    if max_low_pfn > dma_end:
        zones.append(ZoneSpan("Normal", dma_end, max_low_pfn))
    if highend_pfn > max_low_pfn:
        zones.append(ZoneSpan("HighMem", max_low_pfn, highend_pfn))

    layout = Layout(
        arch=spec.arch,
        kernel=k,
        paging="PAE" if pae else "2-level",
        symbols=sym,
        regions=regions,
        zones=zones,
        memory_map=memory_map,
        image=image.sections,
        config=config,
        fixmap=fixmap.pairs(),
    )
    layout.check()
    return layout
