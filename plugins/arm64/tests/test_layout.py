"""The arm64 layouts against the kernel's own documentation and boot logs, era by era. Each
test quotes the rows it checks (Documentation/arm64/memory.txt, memory.rst,
Documentation/arch/arm64/memory.rst, or the "Virtual kernel memory layout" that
arch/arm64/mm/init.c mem_init() printed until 4.x)."""

from __future__ import annotations

import pytest

from mmemu.arch import REQUIRED_SYMBOLS
from mmemu.errors import ConfigError
from mmemu.layout import MachineSpec
from mmemu.units import KernelVersion
from mmemu_arm64 import ARCH
from mmemu_arm64.layout import compute_layout


def layout(kernel, va="39", ram="2G", cmdline=""):
    return ARCH.layout(MachineSpec.make("arm64", kernel=kernel, ram=ram, cmdline=cmdline,
                                        options={"va_bits": va}))


def row(L, start: int, end_inclusive: int, kind: str):
    """The region [start, end] exists with that kind."""
    r = L.region_of(start)
    assert r is not None and r.start == start and r.end == end_inclusive + 1 and r.kind == kind, (hex(start), r)


def test_3_7_memory_txt():
    """Documentation/arm64/memory.txt of 3.7 ("AArch64 Linux memory layout", 4KB pages):

        0000000000000000	0000007fffffffff	 512GB		user
        ffffff8000000000	ffffffbbfffeffff	~240GB		vmalloc
        ffffffbbffff0000	ffffffbcffffffff	  64KB		[guard page]
        ffffffbc00000000	ffffffbdffffffff	   8GB		vmemmap
        ffffffbe00000000	ffffffbffbffffff	  ~8GB		[guard, future vmmemap]
        ffffffbffc000000	ffffffbfffffffff	  64MB		modules
        ffffffc000000000	ffffffffffffffff	 256GB		memory
    """
    L = layout("3.7")
    row(L, 0x0000000000000000, 0x0000007FFFFFFFFF, "user")
    row(L, 0xFFFFFF8000000000, 0xFFFFFFBBFFFEFFFF, "vmalloc")
    row(L, 0xFFFFFFBBFFFF0000, 0xFFFFFFBBFFFFFFFF, "hole")  # the 64KB guard page
    row(L, 0xFFFFFFBC00000000, 0xFFFFFFBDFFFFFFFF, "vmemmap")
    row(L, 0xFFFFFFBE00000000, 0xFFFFFFBFFBFFFFFF, "hole")
    row(L, 0xFFFFFFBFFC000000, 0xFFFFFFBFFFFFFFFF, "modules")
    row(L, 0xFFFFFFC000000000, 0xFFFFFFFFFFFFFFFF, "direct")
    s = L.symbols
    assert s["PAGE_OFFSET"] == 0xFFFFFFC000000000 and s["TASK_SIZE"] == 1 << 39
    # TEXT_OFFSET 0x80000 in the linear map; head.S: swapper_pg_dir = KERNEL_RAM_VADDR - SWAPPER_DIR_SIZE
    assert s["_text"] == 0xFFFFFFC000080000 and s["swapper_pg_dir"] == s["_text"] - 3 * 4096
    assert ARCH.boot_plan(MachineSpec.make("arm64", kernel="3.7", ram="2G"), L).root_section == "pgdir"


def test_3_10_memory_txt():
    """memory.txt of the 3.10 era:

        ffffffbffbc00000	ffffffbffbdfffff	   2MB		earlyprintk device
        ffffffbffbe00000	ffffffbffbe0ffff	  64KB		PCI I/O space
        ffffffbffc000000	ffffffbfffffffff	  64MB		modules
    """
    L = layout("3.10")
    row(L, 0xFFFFFFBFFBC00000, 0xFFFFFFBFFBDFFFFF, "earlycon")
    row(L, 0xFFFFFFBFFBE00000, 0xFFFFFFBFFBE0FFFF, "pci-io")
    row(L, 0xFFFFFFBFFC000000, 0xFFFFFFBFFFFFFFFF, "modules")


def test_3_15_memory_txt():
    """memory.txt once fixmap and the 16MB PCI I/O space came (3.15 era):

        ffffffbffa000000	ffffffbffaffffff	  16MB		PCI I/O space
        ffffffbffbc00000	ffffffbffbdfffff	   2MB		fixed mappings
    """
    L = layout("3.15")
    row(L, 0xFFFFFFBFFA000000, 0xFFFFFFBFFAFFFFFF, "pci-io")
    s = L.symbols
    # the slots hang from FIXADDR_TOP = MODULES_VADDR - SZ_2M - PAGE_SIZE: the window's top page
    assert s["FIXADDR_TOP"] + 4096 == 0xFFFFFFBFFBE00000
    assert s["FIXADDR_TOP"] - (dict(L.fixmap)["__end_of_fixed_addresses"] - 1) * 4096 >= 0xFFFFFFBFFBC00000
    assert dict(L.fixmap)["__end_of_permanent_fixed_addresses"] == 2


def test_4_x_48bit_boot_log_before_kimage():
    """A 48-bit arm64 boot log of the 4.0-4.5 era (mem_init(), "Virtual kernel memory layout"):

        vmalloc : 0xffff000000000000 - 0xffff7bffbfff0000   (126974 GB)
        vmemmap : 0xffff7bffc0000000 - 0xffff7fffc0000000   (  4096 GB maximum)
        fixed   : 0xffff7ffffabfe000 - 0xffff7ffffac00000   (     8 KB)
        PCI I/O : 0xffff7ffffae00000 - 0xffff7ffffbe00000   (    16 MB)
        modules : 0xffff7ffffc000000 - 0xffff800000000000   (    64 MB)
        memory  : 0xffff800000000000 - 0xffff800040000000   (  1024 MB)
          .text : 0xffff800000080000 - ...
    """
    L = layout("4.1", "48", ram="1G")
    s = L.symbols
    assert (s["VMALLOC_START"], s["VMALLOC_END"]) == (0xFFFF000000000000, 0xFFFF7BFFBFFF0000)
    assert (s["VMEMMAP_START"], s["VMEMMAP_END"]) == (0xFFFF7BFFC0000000, 0xFFFF7FFFC0000000)
    assert (s["FIXADDR_START"], s["FIXADDR_TOP"]) == (0xFFFF7FFFFABFE000, 0xFFFF7FFFFAC00000)
    assert (s["PCI_IO_START"], s["PCI_IO_END"]) == (0xFFFF7FFFFAE00000, 0xFFFF7FFFFBE00000)
    assert (s["MODULES_VADDR"], s["MODULES_END"]) == (0xFFFF7FFFFC000000, 0xFFFF800000000000)
    assert (s["PAGE_OFFSET"], s["high_memory"]) == (0xFFFF800000000000, 0xFFFF800040000000)
    assert s["_text"] == 0xFFFF800000080000


def test_4_6_kimage_layout():
    """4.6+ ("arm64: move kernel image to base of vmalloc area", "move vmemmap region right
    below the linear region"): modules at VA_START (128 MB), KIMAGE_VADDR = MODULES_END, _text
    at KIMAGE_VADDR + TEXT_OFFSET -- 0xffff000008080000 / 0xffffff8008080000 in every 4.6-4.20
    System.map; 39-bit boot log of the era:

        vmalloc : 0xffffff8008000000 - 0xffffffbebfff0000   (   250 GB)
        fixed   : 0xffffffbefe7fd000 - 0xffffffbefec00000   (  4108 KB)
        PCI I/O : 0xffffffbefee00000 - 0xffffffbeffe00000   (    16 MB)
        vmemmap : 0xffffffbf00000000 - 0xffffffc000000000   (     4 GB maximum)
    """
    L39, L48 = layout("4.9"), layout("4.9", "48")
    s = L39.symbols
    assert s["_text"] == 0xFFFFFF8008080000 and L48.symbols["_text"] == 0xFFFF000008080000
    assert (s["VMALLOC_START"], s["VMALLOC_END"]) == (0xFFFFFF8008000000, 0xFFFFFFBEBFFF0000)
    assert (s["FIXADDR_START"], s["FIXADDR_TOP"]) == (0xFFFFFFBEFE7FD000, 0xFFFFFFBEFEC00000)
    assert (s["PCI_IO_START"], s["PCI_IO_END"]) == (0xFFFFFFBEFEE00000, 0xFFFFFFBEFFE00000)
    assert (s["VMEMMAP_START"], s["VMEMMAP_END"]) == (0xFFFFFFBF00000000, 0xFFFFFFC000000000)
    assert s["KIMAGE_VADDR"] == s["MODULES_END"] == 0xFFFFFF8008000000
    assert s["kimage_voffset"] == 0xFFFFFF8008000000 - 0x40000000
    assert L39.region_of(0xFFFFFF8008080000).kind == "kernel-text"


def test_5_0_bpf_region_before_the_flip():
    L = layout("5.0", "48")
    s = L.symbols
    assert s["BPF_JIT_REGION_START"] == s["VA_START"] == 0xFFFF000000000000
    assert s["_text"] == 0xFFFF000010080000


def test_5_4_memory_rst():
    """Documentation/arm64/memory.rst of 5.4 (4KB pages + 4 levels (48-bit)); the kasan, bpf
    and modules rows assume KASAN, which this layout has not (BPF_JIT_REGION_START =
    KASAN_SHADOW_END = PAGE_END without it):

        0000000000000000	0000ffffffffffff	 256TB		user
        ffff000000000000	ffff7fffffffffff	 128TB		kernel logical memory map
        fffffdffbfff0000	fffffdfffe5f8fff	~998MB		[guard region]
        fffffdfffe5f9000	fffffdfffe9fffff	4124KB		fixed mappings
        fffffdfffea00000	fffffdfffebfffff	   2MB		[guard region]
        fffffdfffec00000	fffffdffffbfffff	  16MB		PCI I/O space
        fffffdffffc00000	fffffdffffdfffff	   2MB		[guard region]
        fffffdffffe00000	ffffffffffdfffff	   2TB		vmemmap
        ffffffffffe00000	ffffffffffffffff	   2MB		[guard region]
    """
    L = layout("5.4", "48")
    s = L.symbols
    row(L, 0x0000000000000000, 0x0000FFFFFFFFFFFF, "user")
    row(L, 0xFFFF000000000000, 0xFFFF7FFFFFFFFFFF, "direct")
    assert s["VMALLOC_END"] == 0xFFFFFDFFBFFF0000
    assert (s["FIXADDR_START"], s["FIXADDR_TOP"]) == (0xFFFFFDFFFE5F9000, 0xFFFFFDFFFEA00000)
    row(L, 0xFFFFFDFFFE5F9000, 0xFFFFFDFFFE9FFFFF, "fixmap")
    row(L, 0xFFFFFDFFFEA00000, 0xFFFFFDFFFEBFFFFF, "hole")
    row(L, 0xFFFFFDFFFEC00000, 0xFFFFFDFFFFBFFFFF, "pci-io")
    row(L, 0xFFFFFDFFFFC00000, 0xFFFFFDFFFFDFFFFF, "hole")
    row(L, 0xFFFFFDFFFFE00000, 0xFFFFFFFFFFDFFFFF, "vmemmap")
    row(L, 0xFFFFFFFFFFE00000, 0xFFFFFFFFFFFFFFFF, "hole")
    # without KASAN: bpf at PAGE_END, modules 128 MB later, the image after them (TEXT_OFFSET still 0x80000)
    assert s["BPF_JIT_REGION_START"] == s["PAGE_END"] == 0xFFFF800000000000
    assert s["MODULES_VADDR"] == 0xFFFF800008000000 and s["_text"] == 0xFFFF800010080000
    # the 39-bit Android GKI 5.4 image base, 0xffffffc010080000
    assert layout("5.4").symbols["_text"] == 0xFFFFFFC010080000


def test_5_8_text_offset_zero():
    L = layout("5.10", "48")
    s = L.symbols
    assert s["_text"] == s["KIMAGE_VADDR"] == 0xFFFF800010000000
    # QEMU loads a text_offset 0 Image 2 MiB into RAM
    text = next(x for x in L.image if x.name == "text")
    assert text.phys == 0x40200000


def test_6_5_memory_rst():
    """Documentation/arch/arm64/memory.rst (6.5-6.8 layout; the file was not updated for 6.9):

        ffff800000000000	ffff80007fffffff	   2GB		modules
        ffff800080000000	fffffbffefffffff	 124TB		vmalloc
        fffffbfff0000000	fffffbfffdffffff	 224MB		fixed mappings (top down)
        fffffbfffe000000	fffffbfffe7fffff	   8MB		[guard region]
        fffffbfffe800000	fffffbffff7fffff	  16MB		PCI I/O space
        fffffbffff800000	fffffbffffffffff	   8MB		[guard region]
        fffffc0000000000	fffffdffffffffff	   2TB		vmemmap
        fffffe0000000000	ffffffffffffffff	   2TB		[guard region]
    """
    L = layout("6.6", "48")
    s = L.symbols
    row(L, 0xFFFF800000000000, 0xFFFF80007FFFFFFF, "modules")
    assert (s["VMALLOC_START"], s["VMALLOC_END"]) == (0xFFFF800080000000, 0xFFFFFBFFF0000000)
    assert s["FIXADDR_TOP"] == 0xFFFFFBFFFE000000 and s["FIXADDR_START"] >= 0xFFFFFBFFF0000000
    row(L, 0xFFFFFBFFFE000000, 0xFFFFFBFFFE7FFFFF, "hole")
    row(L, 0xFFFFFBFFFE800000, 0xFFFFFBFFFF7FFFFF, "pci-io")
    row(L, 0xFFFFFBFFFF800000, 0xFFFFFBFFFFFFFFFF, "hole")
    row(L, 0xFFFFFC0000000000, 0xFFFFFDFFFFFFFFFF, "vmemmap")
    row(L, 0xFFFFFE0000000000, 0xFFFFFFFFFFFFFFFF, "hole")


def test_6_9_vmemmap_pci_fixmap_at_the_top():
    """memory.h 6.9: VMEMMAP_END (-UL(SZ_1G)), PCI_IO_START (VMEMMAP_END + SZ_8M),
    FIXADDR_TOP (-UL(SZ_8M)); the layout sketch of the same era:

        ffff ffff c080 0000   |       PCI I/O space      | 16MB |
        ffff ffff ff40 0000   | fixed mappings (top down)| 4MB  |
        ffff ffff ff80 0000   |      [guard region]      | 8MB  |
    """
    s = layout("6.9", "48").symbols
    assert s["VMEMMAP_END"] == 0xFFFFFFFFC0000000
    assert s["VMEMMAP_START"] == 0xFFFFFFFFC0000000 - (2 << 40)
    assert (s["PCI_IO_START"], s["PCI_IO_END"]) == (0xFFFFFFFFC0800000, 0xFFFFFFFFC1800000)
    assert s["FIXADDR_TOP"] == 0xFFFFFFFFFF800000
    assert s["FIXADDR_TOP"] - s["FIXADDR_TOT_START"] <= 4 << 20  # the fixmap fits the 4MB of the sketch
    assert s["VMALLOC_END"] == s["VMEMMAP_START"] - (8 << 20)


@pytest.mark.parametrize("kernel", ["3.7", "3.10", "3.15", "3.17", "4.0", "4.6", "4.14", "4.19", "5.0", "5.4",
                                    "5.8", "5.11", "5.15", "5.17", "6.1", "6.6", "6.9", "6.12"])
@pytest.mark.parametrize("va", ["39", "48"])
def test_every_era_is_complete(kernel, va):
    if va == "48" and kernel in ("3.7", "3.10", "3.15"):
        with pytest.raises(ConfigError, match="3.17"):
            layout(kernel, va)
        return
    L = layout(kernel, va)
    L.check()
    s = L.symbols
    for name in REQUIRED_SYMBOLS + ("PHYS_OFFSET", "TASK_SIZE", "STACK_TOP", "ELF_ET_DYN_BASE", "MODULES_VADDR",
                                    "MODULES_END", "VMEMMAP_START", "vmemmap", "swapper_pg_dir"):
        assert name in s, name
    kv = KernelVersion.parse(kernel)
    # asm/fixmap.h came with early_ioremap (3.15): before it no FIXADDR_* and an empty enum
    assert ("FIXADDR_START" in s and "FIXADDR_TOP" in s) == (kv >= "3.15") == bool(L.fixmap)
    if kv >= "4.6":
        assert "KIMAGE_VADDR" in s
    if kv >= "3.10":
        assert "PCI_IO_START" in s
    assert L.regions[0].start == 0 and L.regions[-1].end == 1 << 64
    assert any(r.kind == "non-canonical" for r in L.regions)
    assert s["PHYS_OFFSET"] == 0x40000000
    assert s["high_memory"] == s["PAGE_OFFSET"] + (2 << 30)
    assert s["ELF_ET_DYN_BASE"] == 2 * (1 << int(va)) // 3
    # the root table is in the section the BootPlan names
    plan = ARCH.boot_plan(MachineSpec.make("arm64", kernel=kernel, ram="2G", options={"va_bits": va}), L)
    sec = next(x for x in L.image if x.name == plan.root_section)
    assert sec.virt <= s["swapper_pg_dir"] < sec.virt + sec.size
    assert plan.root_phys == sec.phys + s["swapper_pg_dir"] - sec.virt
    assert plan.copies_kernel_pgd is False
    # the image inside RAM, below the DTB
    for x in L.image:
        assert 0x40000000 <= x.phys and x.phys + x.size <= L.reserved[0].start


def test_zones_by_era():
    """arch/arm64/mm/init.c zone_sizes_init() with 6 GiB at 0x40000000 (pfn 0x40000..0x1c0000)."""
    def zones(k):
        return [(z.name, z.start_pfn, z.end_pfn) for z in layout(k, ram="6G").zones]
    assert zones("3.10") == [("DMA32", 0x40000, 0x100000), ("Normal", 0x100000, 0x1C0000)]
    assert zones("4.14") == [("DMA", 0x40000, 0x100000), ("Normal", 0x100000, 0x1C0000)]
    assert zones("5.5") == [("DMA", 0x40000, 0x80000), ("DMA32", 0x80000, 0x100000),
                            ("Normal", 0x100000, 0x1C0000)]
    assert zones("6.6") == [("DMA", 0x40000, 0x100000), ("Normal", 0x100000, 0x1C0000)]


def test_dtb_reserved_where_qemu_puts_it():
    """hw/arm/boot.c: initrd_start = loader_start + MIN(ram_size / 2, 128 MiB); DTB 2 MiB aligned after it."""
    assert layout("6.6", ram="2G").reserved[0].start == 0x48000000
    assert layout("6.6", ram="64M").reserved[0].start == 0x42000000


def test_bad_specs():
    with pytest.raises(ConfigError, match="arm64: no layout for kernel 3.6"):
        layout("3.6")
    with pytest.raises(ConfigError, match="VA_BITS=48"):
        layout("3.16", "48")
    with pytest.raises(ConfigError, match="255G"):
        layout("6.6", ram="300G")
    with pytest.raises(ConfigError, match="va_bits"):
        ARCH.check_options(MachineSpec.make("arm64", kernel="6.6", options={"va_bits": "52"}))
    with pytest.raises(ConfigError, match="leaves too little"):
        layout("6.6", cmdline="mem=1M")


def test_mem_limits_memory():
    L = layout("6.6", ram="4G", cmdline="mem=1G")
    assert L.symbols["high_memory"] == L.symbols["PAGE_OFFSET"] + (1 << 30)
    assert L.symbols["max_pfn"] == (0x40000000 + (1 << 30)) >> 12


def test_fixmap_enum_by_era():
    f = dict(layout("4.6").fixmap)
    assert f["FIX_FDT_END"] == 1 and f["FIX_FDT"] == 1024 and f["FIX_TEXT_POKE0"] == 1026
    assert f["__end_of_permanent_fixed_addresses"] == 1027  # "fixed : ... (4108 KB)"
    assert f["FIX_BTMAP_BEGIN"] == 1027 + 7 * 64 - 1 and f["FIX_PGD"] == f["__end_of_fixed_addresses"] - 1
    assert dict(layout("3.7").fixmap) == {}
    f6 = dict(layout("6.6").fixmap)
    assert f6["FIX_FDT"] == 1 + 512 + 1 and "FIX_ENTRY_TRAMP_TEXT4" in f6


def test_va_bits_default_follows_the_era():
    assert ARCH.paging(MachineSpec.make("arm64", kernel="3.10", ram="1G")).va_bits == 39
    assert ARCH.paging(MachineSpec.make("arm64", kernel="6.6", ram="1G")).va_bits == 48
    assert compute_layout(MachineSpec.make("arm64", kernel="6.6", ram="1G"), 39).paging == "39-bit"
