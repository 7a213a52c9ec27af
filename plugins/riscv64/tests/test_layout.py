"""The riscv64 layouts against the kernel's own documentation of each era and the formulas of
its headers.

vm-layout.rst exists from 5.13 (':Date: 12 February 2021'). The tables quoted below, with the
version they describe:

- Documentation/arch/riscv/vm-layout.rst of 6.11+ (torvalds/linux, read);
- Documentation/riscv/vm-layout.rst of 6.4 (torvalds/linux 0cfa80d3, read: 6 MB fixmap, Sv39
  direct map at ffffffd800000000);
- 5.17-6.3: the '-' lines of 'riscv: Move early dtb mapping into the fixmap region' (2 MB
  fixmap) and the '+' lines of 'riscv: Move KASAN mapping next to the kernel mapping';
- 5.13-5.16: the '-' lines of 'riscv: Move KASAN mapping next to the kernel mapping'.

Before 5.13 the quotes are pgtable.h's and page.h's own lines.
"""

from __future__ import annotations

import pytest

from mmemu.errors import ConfigError
from mmemu.layout import MachineSpec
from mmemu_riscv64.layout import compute_layout

GiB = 1 << 30
MiB = 1 << 20
TiB = 1 << 40
PiB = 1 << 50


def lay(version: str, mmu: str = "sv39", ram: str = "1G"):
    return compute_layout(MachineSpec.make("riscv64", version, ram, options={"mmu": mmu}), mmu)


def region_at(layout, start: int):
    for r in layout.regions:
        if r.start == start:
            return r
    raise AssertionError(f"no region starts at {start:#x}: {[(hex(r.start), r.name) for r in layout.regions]}")


def row(layout, start: int, end_inclusive: int, kind: str):
    """A vm-layout.rst row: a region [start, end] of that kind, exactly."""
    r = region_at(layout, start)
    assert (r.end - 1, r.kind) == (end_inclusive, kind), (hex(r.start), hex(r.end - 1), r.kind, r.name)
    return r


def test_regions_cover_the_whole_space():
    for v, mmu in (("4.15", "sv39"), ("5.2", "sv39"), ("5.4", "sv39"), ("5.13", "sv39"), ("5.17", "sv48"),
                   ("5.18", "sv57"), ("6.4", "sv39"), ("6.11", "sv48")):
        L = lay(v, mmu)
        assert L.regions[0].start == 0 and L.regions[-1].end == 1 << 64
        for a, b in zip(L.regions, L.regions[1:]):
            assert a.end == b.start
        assert all(r.kind == "hole" for r in L.regions if r.name == "... unused hole")
        assert sum(r.kind == "non-canonical" for r in L.regions) == 1


# ---- 6.11+: Documentation/arch/riscv/vm-layout.rst -------------------------------------------

def test_6_11_sv39():
    # 0000000000000000 |    0       | 0000003fffffffff |  256 GB | user-space virtual memory, different per mm
    # 0000004000000000 | +256    GB | ffffffbfffffffff | ~16M TB | ... huge, almost 64 bits wide hole of non-canonical
    # ffffffc4fea00000 | -236    GB | ffffffc4feffffff |    6 MB | fixmap
    # ffffffc4ff000000 | -236    GB | ffffffc4ffffffff |   16 MB | PCI io
    # ffffffc500000000 | -236    GB | ffffffc5ffffffff |    4 GB | vmemmap
    # ffffffc600000000 | -232    GB | ffffffd5ffffffff |   64 GB | vmalloc/ioremap space
    # ffffffd600000000 | -168    GB | fffffff5ffffffff |  128 GB | direct mapping of all physical memory
    # fffffff700000000 |  -36    GB | fffffffeffffffff |   32 GB | kasan
    # ffffffff00000000 |   -4    GB | ffffffff7fffffff |    2 GB | modules, BPF
    # ffffffff80000000 |   -2    GB | ffffffffffffffff |    2 GB | kernel
    L = lay("6.11")
    row(L, 0, 0x0000003FFFFFFFFF, "user")
    row(L, 0x0000004000000000, 0xFFFFFFBFFFFFFFFF, "non-canonical")
    row(L, 0xFFFFFFC4FEA00000, 0xFFFFFFC4FEFFFFFF, "fixmap")
    row(L, 0xFFFFFFC4FF000000, 0xFFFFFFC4FFFFFFFF, "pci-io")
    row(L, 0xFFFFFFC500000000, 0xFFFFFFC5FFFFFFFF, "vmemmap")
    row(L, 0xFFFFFFC600000000, 0xFFFFFFD5FFFFFFFF, "vmalloc")
    row(L, 0xFFFFFFD600000000, 0xFFFFFFF5FFFFFFFF, "direct")
    row(L, 0xFFFFFFFF80000000, 0xFFFFFFFFFFFFFFFF, "kernel-text")
    mods = L.region_kind("modules")  # MODULES_VADDR = PFN_ALIGN(_end) - 2G: inside the documented 2 GB
    assert 0xFFFFFFFF00000000 <= mods.start and mods.end == 0xFFFFFFFF80000000
    s = L.symbols
    assert s["PAGE_OFFSET"] == 0xFFFFFFD600000000 and s["KERN_VIRT_SIZE"] == 128 * GiB
    assert s["FIXADDR_TOP"] == s["PCI_IO_START"] == 0xFFFFFFC4FF000000
    assert s["TASK_SIZE"] == 256 * GiB and s["KERNEL_PGD_BOUNDARY"] == 256
    assert s["KERNEL_LINK_ADDR"] == 0xFFFFFFFF80000000 and s["MODULES_END"] == s["KERNEL_LINK_ADDR"]
    assert s["PHYS_OFFSET"] == s["phys_ram_base"] == 0x80000000  # 6.4+: PAGE_OFFSET maps the start of DRAM
    assert s["high_memory"] == s["PAGE_OFFSET"] + 1 * GiB


def test_6_11_sv48():
    # 0000000000000000 |    0       | 00007fffffffffff |  128 TB | user-space virtual memory, different per mm
    # 0000800000000000 | +128    TB | ffff7fffffffffff | ~16M TB | ... huge, almost 64 bits wide hole of non-canonical
    # ffff8d7ffea00000 |  -114.5 TB | ffff8d7ffeffffff |    6 MB | fixmap
    # ffff8d7fff000000 |  -114.5 TB | ffff8d7fffffffff |   16 MB | PCI io
    # ffff8d8000000000 |  -114.5 TB | ffff8f7fffffffff |    2 TB | vmemmap
    # ffff8f8000000000 |  -112.5 TB | ffffaf7fffffffff |   32 TB | vmalloc/ioremap space
    # ffffaf8000000000 |  -80.5  TB | ffffef7fffffffff |   64 TB | direct mapping of all physical memory
    # ffffffff00000000 |   -4    GB | ffffffff7fffffff |    2 GB | modules, BPF
    # ffffffff80000000 |   -2    GB | ffffffffffffffff |    2 GB | kernel
    L = lay("6.11", "sv48")
    assert L.paging == "Sv48"
    row(L, 0, 0x00007FFFFFFFFFFF, "user")
    row(L, 0x0000800000000000, 0xFFFF7FFFFFFFFFFF, "non-canonical")
    row(L, 0xFFFF8D7FFEA00000, 0xFFFF8D7FFEFFFFFF, "fixmap")
    row(L, 0xFFFF8D7FFF000000, 0xFFFF8D7FFFFFFFFF, "pci-io")
    row(L, 0xFFFF8D8000000000, 0xFFFF8F7FFFFFFFFF, "vmemmap")
    row(L, 0xFFFF8F8000000000, 0xFFFFAF7FFFFFFFFF, "vmalloc")
    row(L, 0xFFFFAF8000000000, 0xFFFFEF7FFFFFFFFF, "direct")
    row(L, 0xFFFFFFFF80000000, 0xFFFFFFFFFFFFFFFF, "kernel-text")
    assert L.symbols["TASK_SIZE"] == 128 * TiB and L.symbols["KERNEL_PGD_BOUNDARY"] == 256


def test_6_11_sv57():
    # 0000000000000000 |   0        | 00ffffffffffffff |   64 PB | user-space virtual memory, different per mm
    # 0100000000000000 | +64     PB | feffffffffffffff | ~16K PB | ... huge, almost 64 bits wide hole of non-canonical
    # ff1bfffffea00000 | -57     PB | ff1bfffffeffffff |    6 MB | fixmap
    # ff1bffffff000000 | -57     PB | ff1bffffffffffff |   16 MB | PCI io
    # ff1c000000000000 | -57     PB | ff1fffffffffffff |    1 PB | vmemmap
    # ff20000000000000 | -56     PB | ff5fffffffffffff |   16 PB | vmalloc/ioremap space
    # ff60000000000000 | -40     PB | ffdeffffffffffff |   32 PB | direct mapping of all physical memory
    # ffdf000000000000 |  -8     PB | fffffffeffffffff |    8 PB | kasan
    L = lay("6.11", "sv57")
    row(L, 0, 0x00FFFFFFFFFFFFFF, "user")
    row(L, 0x0100000000000000, 0xFEFFFFFFFFFFFFFF, "non-canonical")
    row(L, 0xFF1BFFFFFEA00000, 0xFF1BFFFFFEFFFFFF, "fixmap")
    row(L, 0xFF1BFFFFFF000000, 0xFF1BFFFFFFFFFFFF, "pci-io")
    row(L, 0xFF1C000000000000, 0xFF1FFFFFFFFFFFFF, "vmemmap")
    row(L, 0xFF20000000000000, 0xFF5FFFFFFFFFFFFF, "vmalloc")
    # the doc's direct map stops where its KASAN shadow starts; mmemu has no KASAN: the window is
    # PAGE_OFFSET + KERN_VIRT_SIZE (page.h is_linear_mapping), 32 PB as the doc says
    direct = region_at(L, 0xFF60000000000000)
    assert direct.kind == "direct" and direct.size == 32 * PiB
    assert L.symbols["TASK_SIZE"] == 64 * PiB


# ---- 6.4 (-6.10): Documentation/riscv/vm-layout.rst --------------------------------------------

def test_6_4_sv39():
    # ffffffc6fea00000 | -228    GB | ffffffc6feffffff |    6 MB | fixmap
    # ffffffc6ff000000 | -228    GB | ffffffc6ffffffff |   16 MB | PCI io
    # ffffffc700000000 | -228    GB | ffffffc7ffffffff |    4 GB | vmemmap
    # ffffffc800000000 | -224    GB | ffffffd7ffffffff |   64 GB | vmalloc/ioremap space
    # ffffffd800000000 | -160    GB | fffffff6ffffffff |  124 GB | direct mapping of all physical memory
    # fffffff700000000 |  -36    GB | fffffffeffffffff |   32 GB | kasan
    for v in ("6.4", "6.10"):
        L = lay(v)
        row(L, 0xFFFFFFC6FEA00000, 0xFFFFFFC6FEFFFFFF, "fixmap")
        row(L, 0xFFFFFFC6FF000000, 0xFFFFFFC6FFFFFFFF, "pci-io")
        row(L, 0xFFFFFFC700000000, 0xFFFFFFC7FFFFFFFF, "vmemmap")
        row(L, 0xFFFFFFC800000000, 0xFFFFFFD7FFFFFFFF, "vmalloc")
        direct = region_at(L, 0xFFFFFFD800000000)
        assert direct.kind == "direct" and direct.end >= 0xFFFFFFF700000000
        # the memory that can be mapped: 124 GB (memory_limit = KERN_VIRT_SIZE - SZ_4G)
        lay(v, ram="124G")
        with pytest.raises(ConfigError, match="at most 124G"):
            lay(v, ram="125G")


def test_6_4_sv48():
    # ffff8d7ffea00000 |  -114.5 TB | ffff8d7ffeffffff |    6 MB | fixmap
    L = lay("6.4", "sv48")
    row(L, 0xFFFF8D7FFEA00000, 0xFFFF8D7FFEFFFFFF, "fixmap")


# ---- 5.17 .. 6.3 --------------------------------------------------------------------------------

def test_5_17_sv39_and_sv48():
    # - ffffffc6fee00000 | -228    GB | ffffffc6feffffff |    2 MB | fixmap
    # + ffffffc6fea00000 | -228    GB | ffffffc6feffffff |    6 MB | fixmap   ('Move early dtb mapping...', 6.4)
    # + ffffffc800000000 | -224    GB | ffffffd7ffffffff |   64 GB | vmalloc/ioremap space   (sv48 series, 5.17)
    # + ffffffd800000000 | -160    GB | fffffff6ffffffff |  124 GB | direct mapping of all physical memory
    # - ffff8d7ffee00000 |  -114.5 TB | ffff8d7ffeffffff |    2 MB | fixmap
    for v in ("5.17", "6.3"):
        L = lay(v)
        row(L, 0xFFFFFFC6FEE00000, 0xFFFFFFC6FEFFFFFF, "fixmap")
        row(L, 0xFFFFFFC800000000, 0xFFFFFFD7FFFFFFFF, "vmalloc")
        assert region_at(L, 0xFFFFFFD800000000).kind == "direct"
        assert L.symbols["VMALLOC_END"] == L.symbols["PAGE_OFFSET"]  # exclusive from 5.17
        assert L.symbols["VMEMMAP_END"] == L.symbols["VMALLOC_START"]
        assert L.symbols["PHYS_OFFSET"] == 0x80200000  # PAGE_OFFSET maps the kernel's load address before 6.4
        row(lay(v, "sv48"), 0xFFFF8D7FFEE00000, 0xFFFF8D7FFEFFFFFF, "fixmap")


# ---- 5.13 .. 5.16 ---------------------------------------------------------------------------------

def test_5_13_sv39():
    # - ffffffcefee00000 | -196    GB | ffffffcefeffffff |    2 MB | fixmap
    # - ffffffceff000000 | -196    GB | ffffffceffffffff |   16 MB | PCI io
    # - ffffffcf00000000 | -196    GB | ffffffcfffffffff |    4 GB | vmemmap
    # - ffffffd000000000 | -192    GB | ffffffdfffffffff |   64 GB | vmalloc/ioremap space
    # - ffffffe000000000 | -128    GB | ffffffff7fffffff |  124 GB | direct mapping of all physical memory
    for v in ("5.13", "5.16"):
        L = lay(v)
        row(L, 0xFFFFFFCEFEE00000, 0xFFFFFFCEFEFFFFFF, "fixmap")
        row(L, 0xFFFFFFCEFF000000, 0xFFFFFFCEFFFFFFFF, "pci-io")
        row(L, 0xFFFFFFCF00000000, 0xFFFFFFCFFFFFFFFF, "vmemmap")
        row(L, 0xFFFFFFD000000000, 0xFFFFFFDFFFFFFFFF, "vmalloc")
        direct = region_at(L, 0xFFFFFFE000000000)
        assert direct.kind == "direct" and direct.size == 124 * GiB
        assert L.symbols["VMALLOC_END"] == 0xFFFFFFDFFFFFFFFF  # PAGE_OFFSET - 1 until 5.16
        assert L.symbols["KERNEL_LINK_ADDR"] == 0xFFFFFFFF80000000
        assert L.image[0].virt == 0xFFFFFFFF80000000 and L.image[0].phys == 0x80200000
        with pytest.raises(ConfigError):
            lay(v, ram="125G")


# ---- before vm-layout.rst: the headers ---------------------------------------------------------------

def test_4_15_from_the_headers():
    # Kconfig:  default 0xffffffe000000000 if 64BIT && MAXPHYSMEM_128GB
    # page.h:   #define KERN_VIRT_SIZE (-PAGE_OFFSET)
    # pgtable.h: #define VMALLOC_SIZE (KERN_VIRT_SIZE >> 1)
    #            #define VMALLOC_END (PAGE_OFFSET - 1)
    #            #define VMALLOC_START (PAGE_OFFSET - VMALLOC_SIZE)
    #            #define TASK_SIZE (PGDIR_SIZE * PTRS_PER_PGD / 2)  ('Task size is 0x4000000000 for RV64')
    L = lay("4.15")
    s = L.symbols
    assert s["PAGE_OFFSET"] == 0xFFFFFFE000000000 and s["KERN_VIRT_SIZE"] == 128 * GiB
    assert (s["VMALLOC_START"], s["VMALLOC_END"]) == (0xFFFFFFD000000000, 0xFFFFFFDFFFFFFFFF)
    assert s["TASK_SIZE"] == 0x4000000000
    # setup_vm: va_pa_offset = PAGE_OFFSET - pa (pa = &_start, 0x80200000): the image in the linear map
    assert s["va_pa_offset"] == (0xFFFFFFE000000000 - 0x80200000) & ((1 << 64) - 1)
    assert L.image[0].virt == 0xFFFFFFE000000000 and L.image[0].phys == 0x80200000
    assert s["high_memory"] == 0xFFFFFFE000000000 + 1 * GiB - 2 * MiB
    # no fixmap before 5.2: an empty enum, no FIXADDR_TOP/FIXADDR_START, no fixmap region
    assert L.fixmap == [] and "FIXADDR_TOP" not in s and "FIXADDR_START" not in s
    assert not [r for r in L.regions if r.kind == "fixmap"]
    # no STRICT_KERNEL_RWX before 5.7: the image stays PAGE_KERNEL_EXEC, as the linear map maps it
    assert {sec.prot for sec in L.image} == {"PAGE_KERNEL_EXEC"}
    assert {sec.prot for sec in lay("5.7").image} == {None}
    assert "VMEMMAP_START" not in s and "MODULES_VADDR" not in s
    direct = L.region_kind("direct")
    assert (direct.start, direct.end) == (0xFFFFFFE000000000, 1 << 64)
    # zone_sizes_init (4.x): PFN_DOWN(min(4UL * SZ_1G, max_low_pfn)): ZONE_DMA32 empty, all Normal
    assert [z.name for z in L.zones] == ["Normal"]


def test_5_2_to_5_4_fixmap_vmemmap_pci_io():
    # fixmap.h (5.2): FIXADDR_SIZE (__end_of_fixed_addresses * PAGE_SIZE), FIXADDR_TOP (VMALLOC_START)
    s = lay("5.2").symbols
    assert s["FIXADDR_TOP"] == s["VMALLOC_START"] == 0xFFFFFFD000000000
    assert s["FIXADDR_SIZE"] == 260 * 4096  # HOLE, FDT_END..FDT (1 MiB), PTE, PMD, EARLYCON
    # pgtable.h (5.3): FIXADDR_SIZE PMD_SIZE
    assert lay("5.3").symbols["FIXADDR_SIZE"] == 2 * MiB
    # pgtable.h (5.4): VMEMMAP_SHIFT (CONFIG_VA_BITS - PAGE_SHIFT - 1 + STRUCT_PAGE_MAX_SHIFT),
    #   VMEMMAP_END (VMALLOC_START - 1), PCI_IO_END VMEMMAP_START, FIXADDR_TOP PCI_IO_START
    s = lay("5.4").symbols
    assert s["VMEMMAP_START"] == 0xFFFFFFD000000000 - (1 << (39 - 12 - 1 + 6))
    assert s["VMEMMAP_END"] == s["VMALLOC_START"] - 1
    assert s["PCI_IO_END"] == s["VMEMMAP_START"] and s["PCI_IO_START"] == s["VMEMMAP_START"] - 16 * MiB
    assert s["FIXADDR_TOP"] == s["PCI_IO_START"] and s["FIXADDR_START"] == 0xFFFFFFCEFEE00000


# ---- memory, zones, errors ------------------------------------------------------------------------------

def test_zones_dma32_below_4g():
    L = lay("6.6", ram="8G")
    # zone_sizes_init: max_zone_pfns[ZONE_DMA32] = PFN_DOWN(dma32_phys_limit), min(4UL * SZ_1G, ...)
    assert [(z.name, z.start_pfn, z.end_pfn) for z in L.zones] == [("DMA32", 0x80000, 0x100000),
                                                                    ("Normal", 0x100000, 0x280000)]
    assert [(z.name, z.start_pfn, z.end_pfn) for z in lay("5.4", ram="1G").zones] == [("DMA32", 0x80000, 0xC0000)]


def test_memory_map_and_reservations():
    L = lay("6.6", ram="512M")
    assert [(r.start, r.end, r.type) for r in L.memory_map] == [(0x80000000, 0xA0000000, "usable")]
    assert (L.reserved[0].start, L.reserved[0].end) == (0x80000000, 0x80200000)  # OpenSBI
    dtb = L.reserved[1]
    assert dtb.start % (2 * MiB) == 0 and dtb.end <= 0xA0000000
    assert min(s.phys for s in L.image) == 0x80200000


def test_bad_specs():
    with pytest.raises(ConfigError, match="mmu=sv48.*5.17"):
        lay("5.10", "sv48")
    with pytest.raises(ConfigError, match="mmu=sv57.*5.18"):
        lay("5.17", "sv57")
    with pytest.raises(ConfigError, match="no layout for kernel 4.14"):
        lay("4.14")
    with pytest.raises(ConfigError, match="too small"):
        lay("6.6", ram="16M")
    with pytest.raises(ConfigError, match="at most 128G"):
        lay("5.4", ram="129G")  # setup_bootmem: mem_size = min(reg->size, -PAGE_OFFSET)
    lay("5.4", ram="128G")


def test_fixmap_fits_its_area():
    for v in ("5.2", "5.7", "5.10", "5.17", "6.4", "6.11"):
        L = lay(v)
        fix = dict(L.fixmap)
        top, start = L.symbols["FIXADDR_TOP"], L.symbols["FIXADDR_START"]
        # the highest slot in use, __end_of_fixed_addresses - 1, lies inside [FIXADDR_START, FIXADDR_TOP)
        assert top - (fix["__end_of_fixed_addresses"] - 1) * 4096 >= start
        if "FIX_BTMAP_BEGIN" in fix:  # setup_vm: BUG_ON(BTMAP_BEGIN and BTMAP_END in different pmds)
            assert (top - fix["FIX_BTMAP_BEGIN"] * 4096) >> 21 == (top - fix["FIX_BTMAP_END"] * 4096) >> 21
