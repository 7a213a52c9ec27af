"""i386 / i386 PAE kernel layout: the values a user would check, per era.

Expected numbers are written out as the kernel would print them (boot logs, or worked by
hand from the era's headers in the comment next to them), never recomputed with the code
under test.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mmemu_x86.fixmap_32 import build_fixmap_32, km_type_nr, km_types, kmap_scheme
from mmemu_x86.layout_32 import compute_layout_32

from mmemu.errors import ConfigError
from mmemu.layout import MachineSpec
from mmemu.units import GiB, KernelVersion, MiB

PAGE = 4096
TOP = 0x1_0000_0000


def layout(kernel="6.6", ram="1G", pae=False, cpus=1, cmdline="", **options):
    arch = "i386_pae" if pae else "i386"
    spec = MachineSpec.make(arch, kernel, ram, cpus=cpus, cmdline=cmdline, options=options)
    return compute_layout_32(spec, pae=pae)


# --------------------------------------------------------------------------------------
# The real 3.x boot log (1 GiB RAM, 2-level paging):
#     pkmap   : 0xff800000 - 0xffc00000   (4096 kB)
#     vmalloc : 0xf7ffe000 - 0xff7fe000   ( 120 MB)
#     lowmem  : 0xc0000000 - 0xf77fe000   ( 887 MB)
#       .text : 0xc1000000 - ...
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("kernel", ["3.2", "3.10", "3.14", "3.18"])
@pytest.mark.parametrize("cpus", [1, 2, 4, 8])
def test_3x_boot_log_1g(kernel, cpus):
    lay = layout(kernel, "1G", cpus=cpus)
    assert lay["high_memory"] == 0xF77FE000
    assert lay["VMALLOC_START"] == 0xF7FFE000
    assert lay["VMALLOC_END"] == 0xFF7FE000
    assert lay["PKMAP_BASE"] == 0xFF800000
    assert lay["_text"] == 0xC1000000
    assert lay.region_kind("direct").start == 0xC0000000 and lay.region_kind("direct").end == 0xF77FE000
    assert (lay.region_kind("vmalloc").start, lay.region_kind("vmalloc").end) == (0xF7FFE000, 0xFF7FE000)
    assert (lay.region_kind("pkmap").start, lay.region_kind("pkmap").end) == (0xFF800000, 0xFFC00000)
    assert lay.region_kind("direct").kind == "direct"
    assert lay.paging == "2-level"
    # 887 MB of lowmem, 120 MB of vmalloc, as the log says
    assert (0xF77FE000 - 0xC0000000) >> 20 == 887
    assert lay["max_low_pfn"] == 0x377FE
    assert [z.name for z in lay.zones] == ["DMA", "Normal", "HighMem"]
    assert lay.zones[-1].end_pfn == 0x40000


def test_3x_pae_1g():
    # PAE: PMD 2 MiB, LAST_PKMAP 512. 3.10, 1 CPU: 95 permanent fixmap entries,
    # FIXADDR_START = 0xfffff000 - 95*4096 = 0xfffa0000; BTMAP 256 slots, no page-table
    # crossing -> __end_of_fixed_addresses = 95 + 256 + 1 = 352, FIXADDR_BOOT_START =
    # 0xffe9f000; PKMAP_BASE = (0xffe9f000 - 513*4096) & ~0x1fffff = 0xffc00000
    lay = layout("3.10", "1G", pae=True)
    assert lay.paging == "PAE"
    assert lay["FIXADDR_START"] == 0xFFFA0000
    assert lay["FIXADDR_BOOT_START"] == 0xFFE9F000
    assert lay["PKMAP_BASE"] == 0xFFC00000
    assert lay.region_kind("pkmap").end == 0xFFE00000
    assert lay["VMALLOC_END"] == 0xFFBFE000
    assert lay["high_memory"] == 0xF7BFE000          # 0xffbfe000 - 0xc0000000 - 128M
    assert lay["VMALLOC_START"] == 0xF83FE000


# --------------------------------------------------------------------------------------
# 2.6.12: include/asm-i386/page.h MAXMEM = -PAGE_OFFSET - 128M = 896 MiB,
# VMALLOC_START rounded up to 8 MiB: the classic "vmalloc : 0xf8800000 - 0xff7fe000".
# --------------------------------------------------------------------------------------

def test_2_6_12_classic_values():
    lay = layout("2.6.12", "1G")
    assert lay["PAGE_OFFSET"] == lay["TASK_SIZE"] == 0xC0000000
    assert lay["MAXMEM"] == 0x38000000
    assert lay["max_low_pfn"] == 0x38000
    assert lay["high_memory"] == 0xF8000000
    assert lay["VMALLOC_START"] == 0xF8800000
    assert lay["VMALLOC_END"] == 0xFF7FE000
    assert lay["PKMAP_BASE"] == 0xFF800000
    # 29 permanent entries: HOLE, VSYSCALL, APIC, 8 IO-APICs, 13 KM_* slots, 4 ACPI, MCFG
    assert lay["FIXADDR_START"] == 0xFFFE2000
    # + 16 BTMAP + WP_TEST = 46
    assert lay["FIXADDR_BOOT_START"] == 0xFFFD1000
    assert lay["FIXADDR_TOP"] == 0xFFFFF000
    assert lay["_text"] == 0xC0100000 and lay["LOAD_PHYSICAL_ADDR"] == 0x100000
    assert "CPU_ENTRY_AREA_BASE" not in lay.symbols and "LDT_BASE_ADDR" not in lay.symbols
    assert lay.config["KM_TYPE_NR"] == 13 and lay.config["MAX_IO_APICS"] == 8


def test_2_6_12_fixmap_enum():
    lay = layout("2.6.12", "1G")
    assert lay.fixmap == [
        ("FIX_HOLE", 0), ("FIX_VSYSCALL", 1), ("FIX_APIC_BASE", 2),
        ("FIX_IO_APIC_BASE_0", 3), ("FIX_IO_APIC_BASE_END", 10),
        ("FIX_KMAP_BEGIN", 11), ("FIX_KMAP_END", 23),
        ("FIX_ACPI_BEGIN", 24), ("FIX_ACPI_END", 27), ("FIX_PCIE_MCFG", 28),
        ("__end_of_permanent_fixed_addresses", 29),
        ("FIX_BTMAP_END", 29), ("FIX_BTMAP_BEGIN", 44), ("FIX_WP_TEST", 45),
        ("__end_of_fixed_addresses", 46),
    ]


def test_2_6_12_pae():
    lay = layout("2.6.12", "1G", pae=True)
    # (0xfffd1000 - 513*4096) & ~(2M-1)
    assert lay["PKMAP_BASE"] == 0xFFC00000
    assert lay["VMALLOC_END"] == 0xFFBFE000
    assert lay["VMALLOC_START"] == 0xF8800000   # MAXMEM does not depend on the fixmap yet


def test_vmalloc_start_alignment_changes_in_2_6_27():
    # 300M RAM: high_memory = 0xd2c00000.
    old = layout("2.6.26", "300M")
    new = layout("2.6.27", "300M")
    assert old["high_memory"] == new["high_memory"] == 0xD2C00000
    assert old["VMALLOC_START"] == 0xD3800000   # (0xd2c00000 + 16M - 1) & ~(8M - 1)
    assert new["VMALLOC_START"] == 0xD3400000   # 0xd2c00000 + 8M


# --------------------------------------------------------------------------------------
# 4.14 .. 6.6
# --------------------------------------------------------------------------------------

def test_4_14_no_cpu_entry_area():
    # 4.14, 1 CPU: 96 permanent entries (incl. FIX_RO_IDT, FIX_GDT_REMAP, GHES), so
    # FIXADDR_START = 0xfff9f000 and PKMAP_BASE = (0xfff9f000 - 1025*4096) & ~(4M-1)
    lay = layout("4.14", "1G")
    assert lay["FIXADDR_START"] == 0xFFF9F000
    assert lay["PKMAP_BASE"] == 0xFF800000
    assert lay["VMALLOC_END"] == 0xFF7FE000
    assert lay["high_memory"] == 0xF77FE000
    assert "CPU_ENTRY_AREA_BASE" not in lay.symbols
    pae = layout("4.14", "1G", pae=True)
    assert pae["PKMAP_BASE"] == 0xFFC00000 and pae["VMALLOC_END"] == 0xFFBFE000
    assert pae["high_memory"] == 0xF7BFE000


def test_4_15_cpu_entry_area():
    lay = layout("4.15", "1G")
    names = {r.kind for r in lay.regions}
    assert "cpu-entry-area" in names and "ldt" not in names
    assert lay["CPU_ENTRY_AREA_PAGES"] == 40
    # PKMAP_BASE = (CPU_ENTRY_AREA_BASE - PAGE_SIZE) & PMD_MASK: the PMD just below
    assert lay["PKMAP_BASE"] == lay["CPU_ENTRY_AREA_BASE"] - 4 * MiB
    # 4.15, 1 CPU: 94 permanent entries (RO_IDT and GDT_REMAP gone: HOLE, DBGP, EARLYCON,
    # APIC, 64 IO-APICs, 20 kmap, MCFG, PARAVIRT_BOOTMAP, 2 TEXT_POKE, 2 GHES),
    # FIXADDR_START 0xfffa1000; CPU_ENTRY_AREA_BASE = (0xfffa1000 - 41*4096) & ~(4M-1)
    assert lay["FIXADDR_START"] == 0xFFFA1000
    assert lay["CPU_ENTRY_AREA_BASE"] == 0xFFC00000
    assert lay["PKMAP_BASE"] == 0xFF800000
    assert lay.region_kind("cpu-entry-area").size == (1 + 38) * PAGE  # RO IDT + 38-page struct


@pytest.mark.parametrize("kernel", ["4.19", "5.1"])
def test_4_19_ldt_remap(kernel):
    # 4.19/5.1, 1 CPU: 94 permanent entries, __end_of_fixed_addresses 607 ->
    # FIXADDR_TOT_START 0xffda0000; CPU_ENTRY_AREA_BASE = (0xffda0000 - 41*4096) & ~(4M-1)
    # = 0xffc00000; LDT one PMD below, pkmap one PMD below that.
    lay = layout(kernel, "1G")
    assert lay["FIXADDR_START"] == 0xFFFA1000
    assert lay["FIXADDR_TOT_START"] == 0xFFDA0000
    assert lay["CPU_ENTRY_AREA_BASE"] == 0xFFC00000
    assert lay["LDT_BASE_ADDR"] == 0xFF800000
    assert lay["LDT_END_ADDR"] == 0xFFC00000
    assert lay["PKMAP_BASE"] == 0xFF400000
    assert lay["VMALLOC_END"] == 0xFF3FE000
    assert lay["high_memory"] == 0xF73FE000
    assert lay["VMALLOC_START"] == 0xF7BFE000
    assert lay.region_kind("ldt").kind == "ldt"
    assert lay.region_kind("cpu-entry-area").kind == "cpu-entry-area"


def test_6_6_non_pae():
    # 6.6, 1 CPU: HOLE, DBGP, EARLYCON, APIC, 64 IO-APICs, 16 kmap_local slots, MCFG,
    # 2 GHES = 87 permanent; BTMAP 512 -> 600 in all.
    lay = layout("6.6", "1G")
    assert lay["FIXADDR_START"] == 0xFFFA8000
    assert lay["FIXADDR_TOT_START"] == 0xFFDA7000
    assert lay["CPU_ENTRY_AREA_PAGES"] == 43
    assert lay["CPU_ENTRY_AREA_BASE"] == 0xFFC00000
    assert lay["LDT_BASE_ADDR"] == 0xFF800000
    assert lay["PKMAP_BASE"] == 0xFF400000
    assert lay["VMALLOC_END"] == 0xFF3FE000
    assert lay["high_memory"] == 0xF73FE000
    assert lay["VMALLOC_START"] == 0xF7BFE000
    assert lay["MODULES_VADDR"] == 0xF7BFE000 and lay["MODULES_END"] == 0xFF3FE000
    assert lay.config["KM_MAX_IDX"] == 16 and "KM_TYPE_NR" not in lay.config
    assert dict(lay.fixmap)["FIX_KMAP_END"] - dict(lay.fixmap)["FIX_KMAP_BEGIN"] == 15


def test_6_6_pae():
    # Same 87 permanent entries; with 512 PTEs a table the BTMAP slots 87..598 would cross
    # a page-table boundary, so FIX_BTMAP_END rounds up to 512: __end_of_fixed_addresses
    # = 1025, FIXADDR_TOT_START = 0xffbfe000; CPU_ENTRY_AREA_BASE = (0xffbfe000 -
    # 44*4096) & ~(2M-1) = 0xffa00000; LDT 0xff800000; pkmap 0xff600000.
    lay = layout("6.6", "1G", pae=True)
    assert dict(lay.fixmap)["FIX_BTMAP_END"] == 512
    assert lay["FIXADDR_TOT_START"] == 0xFFBFE000
    assert lay["CPU_ENTRY_AREA_BASE"] == 0xFFA00000
    assert lay["LDT_BASE_ADDR"] == 0xFF800000
    assert lay["PKMAP_BASE"] == 0xFF600000
    assert lay.region_kind("pkmap").end == 0xFF800000
    assert lay["VMALLOC_END"] == 0xFF5FE000
    assert lay["high_memory"] == 0xF75FE000
    assert lay.config["CONFIG_X86_PAE"] and lay.config["CONFIG_HIGHMEM64G"]


def test_cpu_entry_area_pages_change_in_5_5():
    assert layout("5.4", "1G", cpus=2)["CPU_ENTRY_AREA_PAGES"] == 80
    assert layout("5.5", "1G", cpus=2)["CPU_ENTRY_AREA_PAGES"] == 86


def test_many_cpus_move_the_areas_down():
    # 6.6 with NR_CPUS=32: 32*16 kmap slots + 71 others = 583 permanent; BTMAP end
    # slots 583..1094 cross a 1024-entry page table: (583 ^ 1094) & -1024 != 0, so
    # FIX_BTMAP_END = 583 + 512 - (583 & 511) = 1024, __end_of_fixed = 1024 + 512 + 1 = 1537
    lay = layout("6.6", "2G", cpus=4, NR_CPUS="32")
    assert lay.config["NR_CPUS"] == 32
    assert lay["FIXADDR_START"] == 0xFFFFF000 - 583 * PAGE
    assert lay["FIXADDR_TOT_START"] == 0xFFFFF000 - 1537 * PAGE == 0xFF9FE000
    # CPU_ENTRY_AREA_BASE = (0xff9fe000 - (32*43+1)*4096) & ~(4M-1) = 0xff400000
    assert lay["CPU_ENTRY_AREA_BASE"] == 0xFF400000
    assert lay["LDT_BASE_ADDR"] == 0xFF000000
    assert lay["PKMAP_BASE"] == 0xFEC00000


# --------------------------------------------------------------------------------------
# Small RAM, mem=, vmalloc=, highmem=
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("kernel", ["2.6.12", "3.10", "4.19", "6.6"])
@pytest.mark.parametrize("pae", [False, True])
def test_256m_is_all_lowmem(kernel, pae):
    lay = layout(kernel, "256M", pae=pae)
    assert lay["max_pfn"] == lay["max_low_pfn"] == 0x10000
    assert lay["high_memory"] == 0xC0000000 + 256 * MiB == 0xD0000000
    assert lay["VMALLOC_START"] == 0xD0800000  # both VMALLOC_START formulas agree here
    assert [(z.name, z.start_pfn, z.end_pfn) for z in lay.zones] == [("DMA", 0, 0x1000), ("Normal", 0x1000, 0x10000)]
    # the RAM ends at 256 MiB; the map's last entry is now SeaBIOS's BIOS ROM, reserved at the end
    # of 4 GiB (coreboot/seabios src/fw/paravirt.c qemu_preinit(): e820_add(0xfffc0000, 256*1024,
    # E820_RESERVED))
    assert usable_end(lay) == 256 * MiB
    assert (lay.memory_map[-1].start, lay.memory_map[-1].end, lay.memory_map[-1].type) == (0xFFFC0000, 4 * GiB,
                                                                                           "reserved")


def usable_end(lay):
    return max(r.end for r in lay.memory_map if r.type == "usable")


def test_mem_truncates_ram():
    lay = layout("6.6", "2G", cmdline="mem=512M")
    assert usable_end(lay) == 512 * MiB  # the reserved BIOS ROM entry stays (e820_remove_range: E820_RAM only)
    assert lay["max_pfn"] == 0x20000
    assert lay["high_memory"] == 0xE0000000
    assert [z.name for z in lay.zones] == ["DMA", "Normal"]
    big = layout("3.10", "4G", cmdline="mem=2G")
    assert big["max_pfn"] == 0x80000 and big["max_low_pfn"] == 0x377FE
    assert big.zones[-1].name == "HighMem" and big.zones[-1].end_pfn == 0x80000
    same = layout("6.6", "1G", cmdline="mem=2G")       # above RAM: no effect
    assert same["max_pfn"] == 0x40000


def test_vmalloc_sets_the_vmalloc_size_exactly_since_2_6_27():
    # parse_vmalloc(): __VMALLOC_RESERVE = 256M + VMALLOC_OFFSET; MAXMEM = 0xff7fe000 -
    # 0xc0000000 - 0x10800000 = 0x2effe000
    lay = layout("3.10", "1G", cmdline="vmalloc=256M")
    assert lay["__VMALLOC_RESERVE"] == 0x10800000
    assert lay["high_memory"] == 0xEEFFE000
    assert lay["VMALLOC_START"] == 0xEF7FE000
    assert lay["VMALLOC_END"] - lay["VMALLOC_START"] == 256 * MiB


def test_vmalloc_2_6_12():
    # setup.c: __VMALLOC_RESERVE = 256M; MAXMEM = 1G - 256M = 0x30000000
    lay = layout("2.6.12", "1G", cmdline="vmalloc=256M")
    assert lay["__VMALLOC_RESERVE"] == 0x10000000
    assert lay["high_memory"] == 0xF0000000
    assert lay["VMALLOC_START"] == 0xF0800000


def test_small_vmalloc_is_fine_with_small_ram():
    lay = layout("6.6", "256M", cmdline="vmalloc=16M")
    assert lay["high_memory"] == 0xD0000000


@pytest.mark.parametrize("kernel,cmdline", [
    ("3.10", "vmalloc=1G"),        # reserve 1G+8M > the 0x3f7fe000 above PAGE_OFFSET
    ("2.6.12", "vmalloc=1G"),      # MAXMEM = -PAGE_OFFSET - 1G = 0
    ("3.10", "vmalloc=1000M"),     # 8 MiB of lowmem left: the kernel image cannot fit
    ("3.10", "vmalloc=0"),         # VMALLOC_START == VMALLOC_END: mem_init() BUG_ON
    ("6.6", "vmalloc=5G"),
])
def test_vmalloc_rejected(kernel, cmdline):
    with pytest.raises(ConfigError):
        layout(kernel, "1G", cmdline=cmdline)


def test_highmem_parameter():
    lay = layout("3.10", "512M", cmdline="highmem=128M")
    assert lay["max_low_pfn"] == 0x18000
    assert lay["high_memory"] == 0xD8000000
    assert lay.zones[-1].name == "HighMem" and (lay.zones[-1].start_pfn, lay.zones[-1].end_pfn) == (0x18000, 0x20000)
    trimmed = layout("3.10", "2G", cmdline="highmem=512M")   # only 512M of highmem used
    assert trimmed["max_pfn"] == 0x377FE + 0x20000
    with pytest.raises(ConfigError, match="64MB lowmem"):
        layout("3.10", "512M", cmdline="highmem=480M")
    with pytest.raises(ConfigError, match="highmem"):
        layout("3.10", "2G", cmdline="highmem=3G")


# --------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------

def test_ram_limits():
    # exactly 4 GiB: fine on 2-level, although the kernel gets 3 GiB of it: QEMU's pc machine puts the
    # RAM above 3 GiB at 4 GiB (hw/i386/pc_piix.c pc_init1(): ram_size >= 0xe0000000, gigabyte_align ->
    # lowmem 0xc0000000), where e820_end_of_ram_pfn() (MAX_ARCH_PFN 1<<20 without PAE) does not look
    assert layout("6.6", "4G")["max_pfn"] == 0xC0000
    with pytest.raises(ConfigError, match="4G"):
        layout("6.6", "5G")
    layout("6.6", "64G", pae=True)
    with pytest.raises(ConfigError, match="64G"):
        layout("6.6", "65G", pae=True)


@pytest.mark.parametrize("kernel", ["2.6.11", "2.4.37", "2.6", "3.25", "4.21", "7.0", "1.0"])
def test_unsupported_kernels(kernel):
    with pytest.raises(ConfigError, match="supported"):
        layout(kernel)


def test_nr_cpus_option():
    assert layout("6.6", cpus=2).config["NR_CPUS"] == 2
    assert layout("6.6", cpus=2, NR_CPUS="8").config["NR_CPUS"] == 8
    with pytest.raises(ConfigError, match="NR_CPUS"):
        layout("6.6", cpus=4, NR_CPUS="2")
    with pytest.raises(ConfigError, match="NR_CPUS"):
        layout("6.6", NR_CPUS="lots")
    with pytest.raises(ConfigError, match="NR_CPUS"):
        layout("6.6", NR_CPUS="1000")


def test_arch_must_match_paging():
    spec = MachineSpec.make("i386", "6.6", "1G")
    with pytest.raises(ConfigError):
        compute_layout_32(spec, pae=True)
    with pytest.raises(ConfigError):
        compute_layout_32(MachineSpec.make("x86_64", "6.6", "1G"), pae=False)


def test_ram_too_small_for_the_kernel_image():
    # 2.6.31+ load the kernel at 16 MiB: 16 MiB of RAM cannot hold it
    with pytest.raises(ConfigError, match="kernel image"):
        layout("6.6", "16M")
    with pytest.raises(ConfigError, match="kernel image"):
        layout("6.6", "1G", cmdline="mem=20M")
    layout("2.6.12", "16M")                 # loaded at 1 MiB: fits


def test_mem_zero_rejected():
    with pytest.raises(ConfigError):
        layout("6.6", cmdline="mem=0")


def test_vmsplit_option():
    lay = layout("6.6", "3G", VMSPLIT="2G")
    assert lay["PAGE_OFFSET"] == lay["TASK_SIZE"] == 0x80000000
    # MAXMEM = 0xff3fe000 - 0x80000000 - 128M = 0x773fe000: lowmem ends where it does with 3G
    assert lay["max_low_pfn"] == 0x773FE and lay["high_memory"] == 0xF73FE000
    assert lay.config["CONFIG_VMSPLIT_2G"] and lay.config["CONFIG_PAGE_OFFSET"] == 0x80000000
    with pytest.raises(ConfigError):
        layout("2.6.12", VMSPLIT="2G")
    with pytest.raises(ConfigError):
        layout("6.6", pae=True, VMSPLIT="3G_OPT")


# --------------------------------------------------------------------------------------
# Image
# --------------------------------------------------------------------------------------

def test_image_sections():
    lay = layout("6.6", "1G", pae=True)
    secs = {s.name: s for s in lay.image}
    assert list(secs) == ["text", "rodata", "data", "bss"]
    t, r, d, b = secs["text"], secs["rodata"], secs["data"], secs["bss"]
    assert (t.writable, t.executable) == (False, True)
    assert (r.writable, r.executable) == (False, False)
    assert (d.writable, d.executable) == (True, False)
    assert (b.writable, b.executable) == (True, False)
    assert t.virt == lay["_text"] == 0xC1000000 and t.phys == 0x1000000
    for s in lay.image:
        assert s.virt == 0xC0000000 + s.phys and s.size > 0 and s.size % PAGE == 0
    assert t.virt + t.size == lay["_etext"] <= r.virt
    assert lay["__bss_stop"] <= lay["_end"] <= lay["high_memory"]
    # 2-level paging has no NX bit
    assert all(s.executable for s in layout("6.6", "1G").image)


# --------------------------------------------------------------------------------------
# Fixmap / kmap tables
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("kernel,nr", [("2.6.12", 13), ("2.6.27", 13), ("2.6.28", 16), ("2.6.32", 19),
                                       ("2.6.35", 20), ("3.10", 20), ("5.10", 20), ("5.11", None)])
def test_km_type_nr(kernel, nr):
    assert km_type_nr(KernelVersion.parse(kernel)) == nr


def test_km_types_and_kmap_slots():
    k = KernelVersion.parse("2.6.12")
    names = km_types(k)
    assert names[7] == "KM_PTE0" and len(names) == 13
    fm = build_fixmap_32(k, 2, False)
    # FIX_KMAP_BEGIN = 11 (HOLE, VSYSCALL, APIC, 8 IO-APICs); KM_PTE0 = 7; CPU 1 adds 13
    assert fm.kmap_idx(0, "KM_PTE0") == 18
    assert fm.kmap_vaddr(0, "KM_PTE0") == 0xFFFFF000 - 18 * PAGE == 0xFFFED000
    assert fm.kmap_vaddr(1, "KM_PTE0") == 0xFFFFF000 - 31 * PAGE
    assert km_types(KernelVersion.parse("3.10")) is None
    assert kmap_scheme(KernelVersion.parse("2.6.36")) == "km_type"
    assert kmap_scheme(KernelVersion.parse("2.6.37")) == "stack"
    assert kmap_scheme(KernelVersion.parse("6.6")) == "kmap_local"
    modern = build_fixmap_32(KernelVersion.parse("6.6"), 4, False)
    assert modern.index("FIX_KMAP_END") - modern.index("FIX_KMAP_BEGIN") + 1 == 64
    with pytest.raises(ConfigError):
        modern.kmap_idx(0, 16)
    with pytest.raises(ConfigError):
        modern.kmap_idx(4, 0)
    assert modern.fix_to_virt("FIX_APIC_BASE") == 0xFFFFF000 - 3 * PAGE
    assert modern.virt_to_fix(0xFFFFC123) == 3


def test_fixmap_eras():
    def names(v):
        return {n for n, _ in build_fixmap_32(KernelVersion.parse(v), 1, False).pairs()}
    assert "FIX_VSYSCALL" in names("2.6.12") and "FIX_VDSO" in names("3.10")
    assert "FIX_RO_IDT" in names("3.10") and "FIX_RO_IDT" not in names("4.15")
    assert "FIX_GDT_REMAP_BEGIN" in names("4.14") and "FIX_GDT_REMAP_BEGIN" not in names("4.15")
    assert "FIX_TEXT_POKE0" in names("5.0") and "FIX_TEXT_POKE0" not in names("5.10")
    assert "FIX_ACPI_BEGIN" in names("2.6.12") and "FIX_ACPI_BEGIN" not in names("2.6.32")
    assert "FIX_PARAVIRT_BOOTMAP" in names("5.0") and "FIX_PARAVIRT_BOOTMAP" not in names("6.6")


def test_pkmap_formula_switch_assumed_at_4_0():
    # PAE, 1 CPU, 93 permanent entries in both. 3.19: PKMAP_BASE from FIXADDR_BOOT_START
    # (0xffbfe000): (0xffbfe000 - 513*4096) & ~(2M-1) = 0xff800000. 4.0: from
    # FIXADDR_START (0xfffa2000): 0xffc00000.
    assert layout("3.19", pae=True)["PKMAP_BASE"] == 0xFF800000
    assert layout("4.0", pae=True)["PKMAP_BASE"] == 0xFFC00000


# --------------------------------------------------------------------------------------
# Invariants over many machines
# --------------------------------------------------------------------------------------

VERSIONS = ([f"2.6.{p}" for p in range(12, 40)] + [f"3.{m}" for m in range(20)] + [f"4.{m}" for m in range(21)]
            + [f"5.{m}" for m in range(20)] + [f"6.{m}" for m in range(13)])


@st.composite
def machines(draw):
    pae = draw(st.booleans())
    limit = 64 * GiB if pae else 4 * GiB
    ram = draw(st.integers(64 * MiB // PAGE, limit // PAGE)) * PAGE
    version = draw(st.sampled_from(VERSIONS))
    cpus = draw(st.integers(1, 16))
    extra = draw(st.integers(0, 64 - cpus))
    return version, ram, pae, cpus, cpus + extra


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(machines())
def test_invariants(machine):
    version, ram, pae, cpus, nr_cpus = machine
    lay = layout(version, ram, pae=pae, cpus=cpus, NR_CPUS=str(nr_cpus))
    k = KernelVersion.parse(version)
    pmd = 2 * MiB if pae else 4 * MiB
    # regions: sorted, not overlapping, covering the 4 GiB space
    lay.check()
    assert lay.regions[0].start == 0 and lay.regions[-1].end == TOP
    for a, b in zip(lay.regions, lay.regions[1:]):
        assert a.end == b.start
    s = lay.symbols
    assert lay.region_of(s["PAGE_OFFSET"]).kind == "direct"
    assert lay.region_of(s["VMALLOC_START"]).kind == "vmalloc"
    assert lay.region_of(s["VMALLOC_END"] - 1).kind == "vmalloc"
    assert lay.region_of(s["PKMAP_BASE"]).kind == "pkmap"
    assert lay.region_of(s["FIXADDR_START"]).kind == "fixmap"
    # the kernel's relations
    assert s["VMALLOC_END"] == s["PKMAP_BASE"] - 2 * PAGE
    assert s["PKMAP_BASE"] % pmd == 0
    assert lay.region_kind("pkmap").size == (512 if pae else 1024) * PAGE
    assert s["high_memory"] == s["PAGE_OFFSET"] + s["max_low_pfn"] * PAGE
    assert s["max_low_pfn"] <= s["MAXMEM"] // PAGE and s["max_low_pfn"] <= s["max_pfn"]
    if k >= "2.6.27":
        assert s["VMALLOC_START"] == s["high_memory"] + 8 * MiB
    else:
        assert s["VMALLOC_START"] % (8 * MiB) == 0
        assert 8 * MiB <= s["VMALLOC_START"] - s["high_memory"] < 16 * MiB
    fix = dict(lay.fixmap)
    assert s["FIXADDR_START"] == 0xFFFFF000 - fix["__end_of_permanent_fixed_addresses"] * PAGE
    assert fix["FIX_BTMAP_END"] >= fix["__end_of_permanent_fixed_addresses"]
    assert fix["__end_of_fixed_addresses"] > fix["FIX_BTMAP_BEGIN"] >= fix["FIX_BTMAP_END"]
    kmap = fix["FIX_KMAP_END"] - fix["FIX_KMAP_BEGIN"] + 1
    assert kmap == (16 if k >= "5.11" else lay.config["KM_TYPE_NR"]) * nr_cpus
    indices = [i for _, i in lay.fixmap]
    assert indices == sorted(indices)
    # eras
    assert ("CPU_ENTRY_AREA_BASE" in s) == (k >= "4.15")
    assert ("LDT_BASE_ADDR" in s) == (k >= "4.19")
    if k >= "4.15":
        assert s["CPU_ENTRY_AREA_BASE"] % pmd == 0
        assert lay.region_kind("cpu-entry-area").end <= s["FIXADDR_START"]
    if k >= "4.19":
        assert s["LDT_END_ADDR"] == s["CPU_ENTRY_AREA_BASE"] and s["PKMAP_BASE"] == s["LDT_BASE_ADDR"] - pmd
    # zones: contiguous from pfn 0 to max_pfn, HighMem exactly above max_low_pfn
    assert lay.zones[0].start_pfn == 0 and lay.zones[-1].end_pfn == s["max_pfn"]
    # the RAM the map keeps is the RAM the zones hold: none above max_pfn (MAX_NONPAE_PFN trim,
    # MAX_ARCH_PFN), none in the PC's hole [3 GiB, 4 GiB) (mmemu_x86.e820)
    assert usable_end(lay) <= s["max_pfn"] * PAGE
    assert not any(r.type == "usable" and r.start < 4 * GiB and r.end > 3 * GiB for r in lay.memory_map
                   if ram >= 0xE0000000)
    for a, b in zip(lay.zones, lay.zones[1:]):
        assert a.end_pfn == b.start_pfn
    assert ("HighMem" in [z.name for z in lay.zones]) == (s["max_pfn"] > s["max_low_pfn"])
    # the image is in lowmem, at PAGE_OFFSET + phys
    for sec in lay.image:
        assert lay.region_of(sec.virt).kind == "direct"
        assert sec.virt + sec.size <= s["high_memory"]


@settings(max_examples=150, deadline=None)
@given(st.sampled_from([v for v in VERSIONS if KernelVersion.parse(v) >= "2.6.27"]),
       st.booleans(), st.integers(1, 800))
def test_vmalloc_size_is_exact_with_plenty_of_ram(version, pae, mib):
    lay = layout(version, "4G", pae=pae, cmdline=f"vmalloc={mib}M")
    assert lay["VMALLOC_END"] - lay["VMALLOC_START"] == mib * MiB
