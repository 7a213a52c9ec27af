"""The firmware memory map of the emulated PC (e820), and what the kernel makes of it.

The machine is QEMU's i440fx ``pc`` machine with SeaBIOS, as recent QEMU builds it:

- hw/i386/pc_piix.c ``pc_init1()`` (qemu/qemu, commit 001cb25f3fb8) splits the RAM around the
  PCI/MMIO hole below 4 GiB: ``max_ram_below_4g`` defaults to 0xe0000000 (3.5 GiB); "if
  (machine->ram_size >= pcms->max_ram_below_4g)" and ``gigabyte_align`` (every current
  machine type), lowmem drops to 0xc0000000; then "if (machine->ram_size >= lowmem)"
  ``below_4g_mem_size = lowmem`` and ``above_4g_mem_size = ram_size - lowmem``, else all
  RAM is below 4 GiB. (Its own examples: "qemu -M pc -m 4G (new default) -> 3072M low,
  1024M high".) So a machine of 3.5 GiB - 4 KiB has all its RAM below 4 GiB, one of
  exactly 3.5 GiB or more has 3 GiB below and the rest from 4 GiB up.
- hw/i386/pc.c ``pc_memory_init()`` adds the e820 entries ``e820_add_entry(0,
  below_4g_mem_size, E820_RAM)`` and ``e820_add_entry(0x100000000ULL /
  above_4g_mem_start, above_4g_mem_size, E820_RAM)``.
- SeaBIOS (coreboot/seabios src/fw/paravirt.c ``qemu_preinit()``) reserves the BIOS:
  ``/* reserve 256KB BIOS area at the end of 4 GB */ e820_add(0xfffc0000, 256*1024,
  E820_RESERVED)``, and (as mmemu always modelled it) the EBDA below 640 KiB and the legacy
  VGA/option-ROM/BIOS area up to 1 MiB.

Not modelled: SeaBIOS's reservation of its high tables at the top of the RAM below 4 GiB
(0xbffe0000-0xbfffffff on a 3 GiB split, where the ACPI tables live), KVM's identity-map/TSS
pages (0xfeffc000, KVM only), the AMD 1 TiB HyperTransport hole (pc_memory_init, AMD CPUs
with more than 1 TiB), ``max-ram-below-4g`` and memory hotplug.

The map is then what the kernel keeps of it: ``mem=`` (:func:`apply_mem`, per era) and the
RAM the kernel cannot use (:func:`clip_ram`) are removed, because the core hands every
usable range of ``Layout.memory_map`` to the page allocator.
"""

from __future__ import annotations

from mmemu.errors import ConfigError
from mmemu.layout import MemoryRange

PAGE_SHIFT = 12

#: End of usable conventional memory: the EBDA starts at 0x9fc00 on a typical BIOS;
#: the kernel only uses whole pages, so the last usable pfn is 0x9e.
EBDA_START = 0x9FC00
ISA_END = 0x100000  # 1 MiB: the legacy VGA/ROM hole ends here
FOUR_GIB = 1 << 32
#: hw/i386/pc_piix.c pc_init1(): "pcms->max_ram_below_4g = 0xe0000000; /* default: 3.5G */"
MAX_RAM_BELOW_4G = 0xE0000000
#: pc_init1(): with gigabyte_align, "if (lowmem > 0xc0000000) lowmem = 0xc0000000;"
GIGABYTE_ALIGNED_LOWMEM = 0xC0000000
#: SeaBIOS qemu_preinit(): e820_add(0xfffc0000, 256*1024, E820_RESERVED)
BIOS_ROM_START = 0xFFFC0000
#: the physical address of the local APIC (APIC_DEFAULT_PHYS_BASE, asm/apicdef.h), in the hole
APIC_DEFAULT_PHYS_BASE = 0xFEE00000


def pc_ram_split(ram: int) -> tuple[int, int]:
    """(below_4g_mem_size, above_4g_mem_size) of a ``pc`` machine with *ram* bytes
    (hw/i386/pc_piix.c pc_init1(), default max_ram_below_4g, gigabyte_align)."""
    lowmem = MAX_RAM_BELOW_4G
    if ram >= MAX_RAM_BELOW_4G:
        lowmem = min(lowmem, GIGABYTE_ALIGNED_LOWMEM)
    if ram >= lowmem:
        return lowmem, ram - lowmem
    return ram, 0


def pc_e820(ram: int) -> list[MemoryRange]:
    """The BIOS-e820 map of a ``pc`` machine with *ram* bytes, sorted by address."""
    below, above = pc_ram_split(ram)
    ranges = [MemoryRange(0, min(below, EBDA_START), "usable"),
              MemoryRange(EBDA_START, ISA_END, "reserved")]
    if below > ISA_END:
        ranges.append(MemoryRange(ISA_END, below, "usable"))
    ranges.append(MemoryRange(BIOS_ROM_START, FOUR_GIB, "reserved"))
    if above:
        ranges.append(MemoryRange(FOUR_GIB, FOUR_GIB + above, "usable"))
    return ranges


# --------------------------------------------------------------------------------------
# mem=
# --------------------------------------------------------------------------------------

def limit_regions(ranges: list[MemoryRange], size: int, underflows: bool = False) -> list[MemoryRange]:
    """``mem=size`` on i386 before the unified e820.c: arch/i386/kernel/setup.c
    ``limit_regions()``. The first RAM entry that ends at or above *size* is cut at the
    address *size* and every later entry (reserved ones too) is dropped (``e820.nr_map =
    i + 1``); from 2.6.14 ("Provisions for empty e820 memory regions", Dave Hansen) an
    entry that starts at or above *size* is dropped with everything after it (``e820.nr_map
    = i``). Before (*underflows*), such an entry's size underflowed: ``e820.map[i].size -=
    current_addr-size`` with *size* below its start; mmemu refuses that machine."""
    out: list[MemoryRange] = []
    for i, r in enumerate(ranges):
        if r.type != "usable" or r.end < size:
            out.append(r)
            continue
        if r.start >= size:
            if underflows:
                raise ConfigError(f"mem={size:#x} falls below the RAM entry {r.start:#x}-{r.end:#x}: this "
                                  "kernel's limit_regions() would shrink that entry to a negative size "
                                  "(fixed in 2.6.14); choose a mem= inside RAM")
            return out
        out.append(MemoryRange(r.start, size, "usable"))
        return out
    return out


def range_remove_ram(ranges: list[MemoryRange], start: int) -> list[MemoryRange]:
    """``mem=size`` since the unified arch/x86/kernel/e820.c: ``parse_memopt()`` calls
    ``e820_remove_range(mem_size, ULLONG_MAX - mem_size, E820_RAM, 1)`` (later
    ``e820__range_remove(mem_size, ULLONG_MAX - mem_size, E820_TYPE_RAM, 1)``): the RAM from
    the address *start* up goes, reserved entries stay."""
    out = []
    for r in ranges:
        if r.type != "usable" or r.end <= start:
            out.append(r)
        elif r.start < start:
            out.append(MemoryRange(r.start, start, "usable"))
    return out


def clip_ram(ranges: list[MemoryRange], end: int) -> list[MemoryRange]:
    """The map without the RAM at and above the physical address *end*: RAM the kernel
    never gives to the page allocator, being beyond ``max_pfn`` (MAXMEM, the 4 GiB a 32-bit
    kernel without HIGHMEM64G addresses, ``highmem=``). 6.15 says it in
    arch/x86/kernel/e820.c e820__memblock_setup(): ``memblock_remove(PFN_PHYS(MAX_NONPAE_PFN),
    -1)`` on 32-bit; before, no zone reached that RAM. Reserved entries stay."""
    return range_remove_ram(ranges, end)


# --------------------------------------------------------------------------------------
# The kernel's end-of-RAM pfns
# --------------------------------------------------------------------------------------

def end_pfn(ranges: list[MemoryRange], limit_pfn: int, max_arch_pfn: int) -> int:
    """arch/x86/kernel/e820.c ``e820_end_pfn(limit_pfn, E820_RAM)`` (2.6.27+): the end of the
    last RAM entry that starts below *limit_pfn* (an entry crossing it counts up to it),
    then at most *max_arch_pfn*. ``e820__end_of_ram_pfn()`` passes MAX_ARCH_PFN,
    ``e820__end_of_low_ram_pfn()`` ``1UL << (32 - PAGE_SHIFT)``."""
    last = 0
    for r in ranges:
        if r.type != "usable":
            continue
        start, end = r.start >> PAGE_SHIFT, r.end >> PAGE_SHIFT
        if start >= limit_pfn:
            continue
        if end > limit_pfn:
            last = limit_pfn
            break
        last = max(last, end)
    return min(last, max_arch_pfn)


def max_pfn(ranges: list[MemoryRange]) -> int:
    """One past the last usable page frame, with no limit: arch/i386/kernel/setup.c
    ``find_max_pfn()`` and arch/x86_64/kernel/e820.c ``e820_end_of_ram()`` before their
    limits (2.6.12 .. 2.6.26)."""
    return max((r.end >> PAGE_SHIFT for r in ranges if r.type == "usable" and r.end > r.start), default=0)


def end_pfn_map(ranges: list[MemoryRange]) -> int:
    """arch/x86_64/kernel/e820.c ``e820_end_of_ram()`` (2.6.12 .. 2.6.2x): ``end_pfn_map``,
    the end of the last entry of any type (RAM or not), before its MAXMEM clamp: how far the
    x86_64 direct map of those eras reached (``init_memory_mapping(0, (end_pfn_map <<
    PAGE_SHIFT))``, holes included)."""
    return max((r.end >> PAGE_SHIFT for r in ranges if r.end > r.start), default=0)


def usable_pfn_ranges(ranges: list[MemoryRange]) -> list[tuple[int, int]]:
    """Whole usable pages, ``[start_pfn, end_pfn)``: a partial page at either end is not RAM
    to the kernel (``PFN_UP(start)``, ``PFN_DOWN(end)``)."""
    out = []
    for r in ranges:
        if r.type == "usable":
            s, e = (r.start + 0xFFF) >> 12, r.end >> 12
            if e > s:
                out.append((s, e))
    return out
