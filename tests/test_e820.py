"""The emulated PC's memory map (mmemu_x86.e820) and what each era of the kernel makes of it.

The machine is QEMU's i440fx ``pc`` machine with SeaBIOS:

- hw/i386/pc_piix.c ``pc_init1()`` (qemu/qemu): ``max_ram_below_4g`` defaults to 0xe0000000;
  "if (machine->ram_size >= pcms->max_ram_below_4g)" with ``gigabyte_align`` lowmem becomes
  0xc0000000; "if (machine->ram_size >= lowmem)" the RAM splits into ``below_4g_mem_size =
  lowmem`` and ``above_4g_mem_size = ram_size - lowmem`` (at 4 GiB: hw/i386/pc.c
  ``pc_memory_init()``, ``e820_add_entry(0x100000000ULL, above_4g_mem_size, E820_RAM)``),
  else all of it is below 4 GiB. Its own example: "qemu -M pc -m 4G (new default) -> 3072M
  low, 1024M high".
- SeaBIOS src/fw/paravirt.c ``qemu_preinit()``: "reserve 256KB BIOS area at the end of 4 GB",
  ``e820_add(0xfffc0000, 256*1024, E820_RESERVED)``.

So the local APIC (0xfee00000) is never RAM, and ``set_fixmap(FIX_APIC_BASE, 0xfee00000)``
maps MMIO, as ``apic_map``/``register_lapic_address`` do.
"""

from __future__ import annotations

import pytest
from mmemu_x86.e820 import (
    APIC_DEFAULT_PHYS_BASE,
    clip_ram,
    end_pfn,
    end_pfn_map,
    limit_regions,
    pc_e820,
    pc_ram_split,
    range_remove_ram,
)
from mmemu_x86.layout_32 import compute_layout_32
from mmemu_x86_64.layout import compute_layout_64

import mmemu
from mmemu.errors import ConfigError
from mmemu.layout import MachineSpec, MemoryRange
from mmemu.render.vtop import vtop

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30
PAGE = 4096
G4 = 4 * GiB
ROM = MemoryRange(0xFFFC0000, G4, "reserved")  # SeaBIOS qemu_preinit()
LOW = [MemoryRange(0, 0x9FC00, "usable"), MemoryRange(0x9FC00, 0x100000, "reserved")]  # EBDA, VGA/ROM to 1M


def x86_64(ram, kernel="6.6", cmdline=""):
    return compute_layout_64(MachineSpec.make("x86_64", kernel, ram, cmdline=cmdline), 4)


def i386(ram, kernel="6.6", pae=False, cmdline=""):
    return compute_layout_32(MachineSpec.make("i386_pae" if pae else "i386", kernel, ram, cmdline=cmdline), pae)


def zones(lay):
    return [(z.name, z.start_pfn, z.end_pfn) for z in lay.zones]


def usable(lay):
    return [(r.start, r.end) for r in lay.memory_map if r.type == "usable"]


# ---- the firmware's map ------------------------------------------------------------------

# (RAM size, below_4g_mem_size, above_4g_mem_size): pc_init1()
SPLITS = [
    (0xE0000000 - PAGE, 0xE0000000 - PAGE, 0),   # 3.5 GiB - 4 KiB: below max_ram_below_4g, all below
    (0xE0000000, 0xC0000000, 0x20000000),        # 3.5 GiB: ram_size >= max_ram_below_4g -> lowmem 3 GiB
    (4 * GiB, 3 * GiB, 1 * GiB),                 # "-m 4G (new default) -> 3072M low, 1024M high"
    (64 * GiB, 3 * GiB, 61 * GiB),
    (3 * GiB, 3 * GiB, 0),                       # 3 GiB < 3.5 GiB: all below
]


@pytest.mark.parametrize("ram,below,above", SPLITS)
def test_pc_ram_split(ram, below, above):
    assert pc_ram_split(ram) == (below, above)


@pytest.mark.parametrize("ram,below,above", SPLITS)
def test_pc_e820(ram, below, above):
    want = LOW + [MemoryRange(0x100000, below, "usable"), ROM]
    if above:
        want.append(MemoryRange(G4, G4 + above, "usable"))
    assert pc_e820(ram) == want
    # the local APIC page is in no entry: neither RAM nor reserved
    assert not any(r.start <= APIC_DEFAULT_PHYS_BASE < r.end for r in pc_e820(ram))


# ---- the kernel's view: max_pfn, zones, the map it keeps ---------------------------------

# x86_64: e820__end_of_ram_pfn() = e820_end_pfn(MAXMEM >> PAGE_SHIFT); zone_sizes_init(): DMA below
# 16 MiB, DMA32 up to min(MAX_DMA32_PFN, max_low_pfn) (the span includes the hole), Normal above 4 GiB;
# max_low_pfn = max_pfn after the direct map (init_mem_mapping(): "max_low_pfn = max_pfn")
X86_64 = [
    (0xE0000000 - PAGE, 0xDFFFF, [("DMA", 0, 0x1000), ("DMA32", 0x1000, 0xDFFFF)]),
    (0xE0000000, 0x120000, [("DMA", 0, 0x1000), ("DMA32", 0x1000, 0x100000), ("Normal", 0x100000, 0x120000)]),
    (4 * GiB, 0x140000, [("DMA", 0, 0x1000), ("DMA32", 0x1000, 0x100000), ("Normal", 0x100000, 0x140000)]),
    (64 * GiB, 0x1040000, [("DMA", 0, 0x1000), ("DMA32", 0x1000, 0x100000), ("Normal", 0x100000, 0x1040000)]),
]


@pytest.mark.parametrize("ram,max_pfn,want_zones", X86_64)
def test_x86_64_max_pfn_and_zones(ram, max_pfn, want_zones):
    lay = x86_64(ram)
    assert lay["max_pfn"] == lay["max_low_pfn"] == max_pfn
    assert lay["high_memory"] == lay["PAGE_OFFSET"] + max_pfn * PAGE
    assert zones(lay) == want_zones
    assert lay.memory_map == pc_e820(ram)  # nothing to cut: all of it below MAXMEM
    # the same in the 2.6.27 .. 3.8 era; 2.6.12 has no DMA32 (Normal from 16 MiB, across the hole)
    assert x86_64(ram, "3.10")["max_pfn"] == max_pfn
    old = x86_64(ram, "2.6.12")
    assert old["max_pfn"] == max_pfn and zones(old) == [("DMA", 0, 0x1000), ("Normal", 0x1000, max_pfn)]


# i386 PAE: e820_end_pfn(MAX_ARCH_PFN = 1 << (36 - PAGE_SHIFT)) (2.6.27+); 2.6.12's find_max_pfn() has no
# limit; from 6.15 (bbeb69ce3013 "x86/mm: Remove CONFIG_HIGHMEM64G support") highmem_pfn_init() trims
# max_pfn to MAX_NONPAE_PFN ("Warning: only 4GB will be used. ..."). HighMem runs from max_low_pfn to
# max_pfn, across the hole.
PAE = [
    (0xE0000000 - PAGE, {"2.6.12": 0xDFFFF, "6.6": 0xDFFFF, "6.15": 0xDFFFF}),
    (0xE0000000, {"2.6.12": 0x120000, "6.6": 0x120000, "6.15": 0x100000}),
    (4 * GiB, {"2.6.12": 0x140000, "6.6": 0x140000, "6.15": 0x100000}),
    # 64 GiB end at 65 GiB: MAX_ARCH_PFN (36 bits) cuts the last GiB since 2.6.27
    (64 * GiB, {"2.6.12": 0x1040000, "6.6": 0x1000000, "6.15": 0x100000}),
]


@pytest.mark.parametrize("ram,max_pfns", PAE)
def test_pae_max_pfn_and_zones(ram, max_pfns):
    for kernel, max_pfn in max_pfns.items():
        lay = i386(ram, kernel, pae=True)
        assert lay["max_pfn"] == lay["highend_pfn"] == max_pfn, kernel
        assert zones(lay)[-1] == ("HighMem", lay["max_low_pfn"], max_pfn), kernel
        # the map keeps the RAM the zones hold (6.15: e820__memblock_setup() memblock_remove()s the RAM
        # above MAX_NONPAE_PFN on 32-bit)
        assert usable(lay) == [(r.start, min(r.end, max_pfn * PAGE)) for r in pc_e820(ram)
                               if r.type == "usable" and r.start < max_pfn * PAGE], kernel
    assert i386(ram, "6.15", pae=True).config["CONFIG_HIGHMEM64G"] is False
    assert i386(ram, "6.14", pae=True).config["CONFIG_HIGHMEM64G"] is True


def test_non_pae_uses_no_ram_above_4g():
    # 2.6.27+: e820_end_pfn(MAX_ARCH_PFN = 1 << 20) skips the RAM entry at 4 GiB: max_pfn is the 3 GiB
    # below the hole, the GiB above 4 GiB is lost (as on a real 4 GiB PC with a non-PAE kernel)
    for kernel in ("3.10", "6.6"):
        lay = i386(4 * GiB, kernel)
        assert lay["max_pfn"] == 0xC0000 and usable(lay)[-1] == (0x100000, 3 * GiB)
        assert zones(lay)[-1] == ("HighMem", lay["max_low_pfn"], 0xC0000)
    # 2.6.12: find_max_pfn() sees the RAM up to 5 GiB, find_max_low_pfn() trims max_pfn to MAX_NONPAE_PFN
    # ("Warning only 4GB will be used. Use a PAE enabled kernel."): HighMem spans the hole up to 4 GiB
    lay = i386(4 * GiB, "2.6.12")
    assert lay["max_pfn"] == 0x100000 and usable(lay)[-1] == (0x100000, 3 * GiB)
    # 3.5 GiB - 4 KiB: all of it below the hole, none lost
    assert i386(0xE0000000 - PAGE)["max_pfn"] == 0xDFFFF
    # the --ram limit stays the CPU's: 4 GiB of RAM on a 32-bit physical bus
    with pytest.raises(ConfigError, match="exceeds the 4G that non-PAE i386"):
        i386(5 * GiB)


# ---- mem= ---------------------------------------------------------------------------------

def test_mem_is_an_address_in_every_era():
    ram = 4 * GiB  # [1M, 3G) and [4G, 5G)
    fw = pc_e820(ram)
    # 2.6.27+ (e820_remove_range(mem_size, ULLONG_MAX - mem_size, E820_RAM, 1)): RAM above the address goes,
    # the reserved BIOS ROM stays
    assert range_remove_ram(fw, 4 * GiB + 512 * MiB)[-1] == MemoryRange(G4, G4 + 512 * MiB, "usable")
    assert range_remove_ram(fw, 0xE0000000) == LOW + [MemoryRange(0x100000, 3 * GiB, "usable"), ROM]
    # i386 before 2.6.27 (limit_regions): the entry is cut and every later entry dropped, the ROM too
    assert limit_regions(fw, 2 * GiB) == LOW + [MemoryRange(0x100000, 2 * GiB, "usable")]
    # 2.6.14+: a RAM entry starting above mem= is dropped with what follows ...
    assert limit_regions(fw, 0xE0000000) == LOW + [MemoryRange(0x100000, 3 * GiB, "usable"), ROM]
    # ... 2.6.12/2.6.13 shrank it to a negative size ("e820.map[i].size -= current_addr-size")
    with pytest.raises(ConfigError, match="negative size"):
        limit_regions(fw, 0xE0000000, underflows=True)
    # through the layouts
    assert i386(ram, "6.6", pae=True, cmdline="mem=4608M")["max_pfn"] == 0x120000
    assert i386(ram, "2.6.20", pae=True, cmdline="mem=3584M")["max_pfn"] == 0xC0000
    with pytest.raises(ConfigError, match="limit_regions"):
        i386(ram, "2.6.12", pae=True, cmdline="mem=3584M")
    assert x86_64(ram, cmdline="mem=3584M")["max_pfn"] == 0xC0000
    # x86_64 before 2.6.27 (end_user_pfn): the map stays, end_pfn is capped at the address, in the hole
    old = x86_64(ram, "2.6.20", cmdline="mem=3584M")
    assert old["max_pfn"] == 0xE0000 and usable(old)[-1] == (0x100000, 3 * GiB)


def test_helpers():
    fw = pc_e820(4 * GiB)
    # e820_end_pfn(): __end_of_ram_pfn with MAXMEM, __end_of_low_ram_pfn with 4 GiB (the RAM below the hole)
    assert end_pfn(fw, 1 << 34, 1 << 34) == 0x140000
    assert end_pfn(fw, 1 << 20, 1 << 34) == 0xC0000
    assert end_pfn(fw, 1 << 34, 0x130000) == 0x130000  # max_arch_pfn clamps
    assert clip_ram(fw, 3 * GiB) == fw[:4]  # the ROM stays, the RAM above 3 GiB goes
    assert end_pfn(pc_e820(0xE0000000 - PAGE), 1 << 20, 1 << 20) == 0xDFFFF
    # x86_64 e820_end_of_ram() before 2.6.27: end_pfn_map is the end of any entry, the BIOS ROM's 4 GiB on
    # a 2 GiB machine: what init_memory_mapping(0, end_pfn_map << PAGE_SHIFT) mapped, holes included
    assert end_pfn_map(pc_e820(2 * GiB)) == 0x100000 and end_pfn_map(pc_e820(4 * GiB)) == 0x140000


# ---- booted machines ------------------------------------------------------------------------

@pytest.mark.parametrize("arch", ["x86_64", "i386_pae"])
def test_set_fixmap_apic_on_a_4g_machine(boot, arch):
    k = boot(arch=arch, kernel="6.6", ram="4G")
    # 0xfee00000 is no frame of the machine: in the PC's hole (before, it was free RAM and refused)
    assert k.frames.page(APIC_DEFAULT_PHYS_BASE >> 12).state == "hole"
    assert not k.mem.is_ram(APIC_DEFAULT_PHYS_BASE)
    va = k.set_fixmap_offset("FIX_APIC_BASE", APIC_DEFAULT_PHYS_BASE, "PAGE_KERNEL_NOCACHE")
    assert va == k.fix_to_virt("FIX_APIC_BASE")
    w = k.walk(va)
    assert w.mapped and w.phys == APIC_DEFAULT_PHYS_BASE
    k.check_invariants()
    # crash's vtop of the slot: the walk ends at the APIC page. Its PHYSICAL line and struct page
    # row are crash's VTOP() of the address: on x86_64 the fixmap is not IS_VMALLOC_ADDR, so that
    # is the kernel-text arithmetic (va - __START_KERNEL_map + phys_base), on i386 the walk
    text = vtop(k, va)
    lines = text.splitlines()
    shown = lines[1].split()[1]
    assert lines[1].split()[0] == f"{va:x}"
    assert shown == f"{k.arch.vtop_paddr(k, w, False):x}"
    assert (shown == "fee00000") == (arch == "i386_pae")
    assert any(line.strip().startswith("PAGE:") and line.split()[-1] == "fee00000" for line in lines)
    assert lines[-1].split()[1] == shown
    k.clear_fixmap("FIX_APIC_BASE")
    k.check_invariants()


def test_set_fixmap_still_refuses_free_ram(boot):
    k = boot(arch="x86_64", ram="4G")
    # the RAM relocated above 4 GiB is free RAM like any other (its first page: the top of RAM
    # holds the struct pages, memblock-reserved)
    with pytest.raises(mmemu.MmemuError, match="free RAM"):
        k.set_fixmap("FIX_APIC_BASE", 0x100000000)


def direct_mapped(k, pa):
    return k.walk(k.layout["PAGE_OFFSET"] + pa).mapped


@pytest.mark.parametrize("kernel", ["3.10", "6.6"])
def test_direct_map_leaves_the_hole_unmapped(boot, kernel):
    # 3.9+: only E820_RAM is direct-mapped ("x86, mm: Only direct map addresses that are marked as
    # E820_RAM", 66520ebc2df3); 2.6.27 .. 3.8: init_memory_mapping(0, max_low_pfn << PAGE_SHIFT) with
    # max_low_pfn = e820_end_of_low_ram_pfn() (3 GiB here), then (1UL << 32, max_pfn << PAGE_SHIFT)
    k = boot(arch="x86_64", kernel=kernel, ram="4G")
    assert direct_mapped(k, 3 * GiB - PAGE) and direct_mapped(k, G4) and direct_mapped(k, 5 * GiB - PAGE)
    assert not direct_mapped(k, 3 * GiB)
    assert not direct_mapped(k, APIC_DEFAULT_PHYS_BASE)
    assert not direct_mapped(k, 0xFFFC0000 - PAGE)
    k.check_invariants()


def test_direct_map_leaves_the_bios_rom_unmapped(boot):
    """3.9+ direct-maps the E820_RAM ranges only (66520ebc2df3)."""
    k = boot(arch="x86_64", kernel="6.6", ram="4G")
    assert not direct_mapped(k, 0xFFFC0000)


@pytest.mark.xfail(strict=True, reason="2.6.12 .. 2.6.2x x86_64 maps [0, end_pfn_map) holes included "
                                       "(init_memory_mapping(0, end_pfn_map << PAGE_SHIFT)); the core maps "
                                       "only the memory map's ranges below high_memory")
def test_old_x86_64_direct_map_covers_the_hole(boot):
    k = boot(arch="x86_64", kernel="2.6.12", ram="4G")
    assert direct_mapped(k, APIC_DEFAULT_PHYS_BASE)


@pytest.mark.parametrize("kw", [
    dict(arch="x86_64", kernel="6.6", ram="4G"),
    dict(arch="x86_64", kernel="6.6", ram="64G"),
    dict(arch="x86_64", kernel="2.6.32", ram="4G"),
    dict(arch="i386_pae", kernel="6.6", ram="4G"),
    dict(arch="i386_pae", kernel="6.6", ram="64G"),
    dict(arch="i386_pae", kernel="6.15", ram="4G"),
    dict(arch="i386", kernel="6.6", ram="4G"),
    dict(arch="i386", kernel="2.6.12", ram="4G"),
])
def test_big_machines_boot_and_keep_the_invariants(boot, kw):
    k = boot(**kw)
    k.check_invariants()
    # no frame in the hole: every pfn there is "not RAM", in or out of a zone's span
    for pa in (3 * GiB, APIC_DEFAULT_PHYS_BASE, G4 - PAGE):
        assert k.frames.page(pa >> 12).state == "hole" and not k.frames.is_ram(pa >> 12)
    # the last page of RAM the kernel keeps is RAM to the allocator, and inside a zone
    last = usable(k.layout)[-1][1] // PAGE - 1
    assert k.frames.is_ram(last) and last < k.layout["max_pfn"] and k.frames.zone_of(last) is not None
    # a page from the top zone works end to end
    top = k.layout.zones[-1].name
    page = k.alloc_pages(0, top)
    assert page.pfn < k.layout["max_pfn"] and page.zone == top
    k.free_page_block(page)
    k.check_invariants()
