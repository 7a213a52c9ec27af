"""The riscv64 kernel virtual memory layout, Sv39/Sv48/Sv57, per kernel era, on a QEMU
``virt`` machine.

Every value comes from the kernel's own formulas of the era (the comment next to it names the
file; eras.py dates each change and says how it was verified), shown without KASLR
(CONFIG_RANDOMIZE_BASE, 6.6+, off) and without KASAN (its shadow area is left as an unused
hole). The configuration is a defconfig-like medany kernel: CONFIG_CMODEL_MEDANY, hence
CONFIG_MAXPHYSMEM_128GB and PAGE_OFFSET 0xffffffe000000000 before 5.17 (a medlow kernel,
MAXPHYSMEM_2GB, would have PAGE_OFFSET 0xffffffff80000000; not modelled).

The eras, and where each boundary comes from (eras.py has the details):

======  =======================================================================================
4.15    arch/riscv merged. Sv39 only. PAGE_OFFSET 0xffffffe000000000 (Kconfig), KERN_VIRT_SIZE
        -PAGE_OFFSET (page.h), vmalloc 64 GiB below PAGE_OFFSET ending at PAGE_OFFSET - 1, TASK_SIZE
        PGDIR_SIZE * PTRS_PER_PGD / 2 (pgtable.h). The kernel image lies in the linear map, which
        starts at the image's physical address (setup_vm: va_pa_offset = PAGE_OFFSET - pa).
        setup_vm maps the whole -PAGE_OFFSET window with 2 MiB pages (swapper_pmd). No fixmap,
        no vmemmap (FLATMEM), ZONE_DMA32 computed empty (zone_sizes_init mixes pfns and bytes).
5.2     fixmap (FIXADDR_TOP VMALLOC_START, FIXADDR_SIZE the enum's size), two-stage setup_vm /
        setup_vm_final mapping each memory bank with best_map_size().
5.3     FIXADDR_SIZE PMD_SIZE.
5.4     SPARSEMEM_VMEMMAP (vmemmap below vmalloc) and PCI I/O (16 MiB below vmemmap),
        FIXADDR_TOP PCI_IO_START; ZONE_DMA32 below 4 GiB physical.
5.13    the kernel mapping leaves the linear map: KERNEL_LINK_ADDR 0xffffffff80000000, modules in
        the 2 GiB below the image, memory limited to KERN_VIRT_SIZE - 4 GiB.
5.17    Sv48 (--option mmu=sv48); Sv39 PAGE_OFFSET 0xffffffd800000000, KERN_VIRT_SIZE half of the
        kernel half; VMALLOC_END and VMEMMAP_END exclusive; _PAGE_PROT_NONE _PAGE_GLOBAL.
5.18    Sv57 (--option mmu=sv57).
6.4     the linear map starts at phys_ram_base (the start of DRAM), with PUD/P4D/PGD pages;
        fixmap 6 MiB (the FDT in it).
6.5     vmalloc and module PGD entries preallocated at boot; no more vmalloc_fault on 64-bit.
6.7     no PGD leaves in the linear map.
6.11    Sv39 PAGE_OFFSET 0xffffffd600000000 (a 128 GiB linear map).
======  =======================================================================================

The machine: QEMU ``virt`` (hw/riscv/virt.c: VIRT_DRAM at 0x80000000, the --ram size), OpenSBI
(fw_dynamic) in the first 2 MiB of DRAM, the kernel loaded 2 MiB above, at 0x80200000 (QEMU's
riscv_calc_kernel_start_addr for RV64: the end of the firmware aligned up to 2 MiB; the RV64
Image's text_offset is 0x200000 too, Documentation/riscv/boot-image-header.rst - these three
from recollection, not re-read), the device tree 2 MiB-aligned near the end of DRAM
(hw/riscv/boot.c, read in its QEMU 5.1, 6.0, 7.1 and 8.x versions: riscv_compute_fdt_addr,
QEMU 8.x, ``QEMU_ALIGN_DOWN(dram_end - fdtsize, 2 * MiB)`` for RV64; earlier versions used
the lesser of the end of DRAM and 3 or 4 GiB, 2 or 16 MiB aligned, the same for machines up
to 2 GiB but for the 16 MiB alignment of QEMU 6.0).
"""

from __future__ import annotations

from mmemu.errors import ConfigError
from mmemu.layout import ImageSection, Layout, MachineSpec, MemoryRange, Region, ZoneSpan, fill_holes
from mmemu.units import GiB, KernelVersion, MiB, format_size

from .eras import RISCV, SUPPORTED
from .fixmap import fixmap_enum
from .formats import MODE_NAMES, PA_BITS, SATP_MODE, VA_BITS

ADDRESS_SPACE_END = 1 << 64
MASK64 = ADDRESS_SPACE_END - 1
PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
PMD_SIZE = 2 * MiB
PTRS_PER_PGD = 512
#: include/linux/mm_types.h STRUCT_PAGE_MAX_SHIFT: order_base_2(sizeof(struct page)) = 6 (64 bytes)
STRUCT_PAGE_MAX_SHIFT = 6

#: hw/riscv/virt.c virt_memmap[VIRT_DRAM] = { 0x80000000, 0x0 } (size: -m)
DRAM_BASE = 0x80000000
#: the kernel's physical load address (see the module docstring)
LOAD_PA = 0x80200000
#: OpenSBI's region at the start of DRAM, reserved from Linux (what QEMU skips to place the kernel)
OPENSBI_SIZE = 2 * MiB
#: the flattened device tree QEMU builds for 'virt' after fdt_pack(): a few KiB; the size here is
#: representative, NOT MEASURED
FDT_SIZE = 0x2000

#: PGDIR_SHIFT of each mode (pgtable-64.h: PGDIR_SHIFT_L3 30, PGDIR_SHIFT_L4 39, PGDIR_SHIFT_L5 48)
PGDIR_SHIFT = {"sv39": 30, "sv48": 39, "sv57": 48}
#: page.h (5.18+): PAGE_OFFSET_L4 _AC(0xffffaf8000000000, UL) (5.17: CONFIG_PAGE_OFFSET for sv48);
#: Kconfig (5.18+): config PAGE_OFFSET default 0xff60000000000000 if 64BIT (sv57)
PAGE_OFFSET_L4 = 0xFFFFAF8000000000
PAGE_OFFSET_L5 = 0xFF60000000000000
#: pgtable.h (5.13+): #define KERNEL_LINK_ADDR (ADDRESS_SPACE_END - SZ_2G + 1), ADDRESS_SPACE_END (UL(-1))
KERNEL_LINK_ADDR = ADDRESS_SPACE_END - 2 * GiB
#: pgtable.h (5.4+): #define PCI_IO_SIZE SZ_16M
PCI_IO_SIZE = 16 * MiB

_LAST_MINOR = {4: 20, 5: 19}


def check_kernel(kernel: KernelVersion) -> None:
    k = kernel
    ok = (k.major == 4 and 15 <= k.minor <= 20) or (k.major == 5 and k.minor <= 19) or k.major == 6
    if not ok:
        raise ConfigError(f"riscv64: no layout for kernel {k}; supported: {SUPPORTED} (arch/riscv was merged in 4.15)")


def check_mmu(kernel: KernelVersion, mmu: str) -> None:
    era = RISCV(kernel)
    if mmu == "sv48" and not era.sv48:
        raise ConfigError(f"option mmu=sv48: kernel {kernel} has no Sv48 support (4-level paging came in 5.17); "
                          "use mmu=sv39")
    if mmu == "sv57" and not era.sv57:
        raise ConfigError(f"option mmu=sv57: kernel {kernel} has no Sv57 support (5-level paging came in 5.18)"
                          + ("; use mmu=sv48 or sv39" if era.sv48 else "; use mmu=sv39"))
    if mmu not in VA_BITS:
        raise ConfigError(f"option mmu={mmu!r} is not one of sv39, sv48, sv57")


def _align_up(x: int, a: int) -> int:
    return (x + a - 1) // a * a


def _image_sizes(k: KernelVersion) -> tuple[int, int, int, int]:
    """Representative sizes (text incl. head and init, rodata, data, bss) of a riscv64
    defconfig vmlinux of the era, page multiples. NOT MEASURED from a real vmlinux: only
    their order of magnitude matters (where the image ends, what 2 MiB pages it spans). The
    4.x bss holds swapper_pmd, 512 KiB of pmd tables (kernel/setup.c)."""
    if k < "5.0":
        return 0x500000, 0x100000, 0x80000, 0x100000
    if k < "5.13":
        return 0x800000, 0x280000, 0x100000, 0x80000
    if k < "6.0":
        return 0xA00000, 0x400000, 0x140000, 0x90000
    return 0xC00000, 0x500000, 0x180000, 0xA0000


def compute_layout(spec: MachineSpec, mmu: str) -> Layout:
    """The riscv64 memory map of *spec* with the paging mode *mmu* (sv39, sv48, sv57)."""
    k = spec.kernel
    check_kernel(k)
    check_mmu(k, mmu)
    era = RISCV(k)
    va_bits = VA_BITS[mmu]
    pgdir_shift = PGDIR_SHIFT[mmu]
    pgdir_size = 1 << pgdir_shift
    config: dict[str, object] = {
        "CONFIG_64BIT": True, "CONFIG_MMU": True, "CONFIG_CMODEL_MEDANY": True, "CONFIG_SMP": True,
        "CONFIG_MODULES": True, "CONFIG_ZONE_DMA32": True, "CONFIG_KASAN": False,
        "CONFIG_PGTABLE_LEVELS": era.pgtable_levels, "CONFIG_SPARSEMEM_VMEMMAP": bool(era.vmemmap),
        "CONFIG_FLATMEM": not era.vmemmap, "CONFIG_STRICT_KERNEL_RWX": bool(era.strict_kernel_rwx),
        "satp_mode": SATP_MODE[mmu],
    }
    if k < "5.17":
        config["CONFIG_MAXPHYSMEM_128GB"] = True  # Kconfig (4.15-5.16): the medany default
        config["CONFIG_VA_BITS"] = 39  # Kconfig (5.4-5.16, sparsemem patch): 'default 39 if 64BIT'
    if k >= "6.6":
        config["CONFIG_RANDOMIZE_BASE"] = False  # riscv KASLR (6.6+): the layout shown is the linked one
    if k >= "6.11":
        config["CONFIG_MEMORY_HOTPLUG"] = False  # no vmemmap/direct-map PGD preallocation (init.c 6.11)

    symbols: dict[str, int] = {}
    regions: list[Region] = []

    def region(name: str, start: int, end: int, kind: str) -> None:
        if end > start:
            regions.append(Region(name, start, end, kind))

    # ---- user space, TASK_SIZE -----------------------------------------------------------
    # pgtable.h (4.15 .. 5.16; processor.h/pgtable.h later): TASK_SIZE (PGDIR_SIZE * PTRS_PER_PGD / 2),
    # TASK_SIZE_64 from 5.9 (COMPAT): 'Task size is 0x4000000000 for RV64' (Sv39); with pgtable_l4/l5
    # enabled PGDIR_SIZE is 512 GiB / 256 TiB: 128 TiB / 64 PiB (vm-layout.rst)
    task_size = pgdir_size * PTRS_PER_PGD // 2
    half = 1 << (va_bits - 1)
    region("user-space virtual memory, different per mm", 0, task_size, "user")
    region("... huge, almost 64 bits wide hole of non-canonical virtual memory addresses", half,
           ADDRESS_SPACE_END - half, "non-canonical")

    # ---- the linear map ------------------------------------------------------------------
    if mmu == "sv39":
        page_offset = era.page_offset_l3
    elif mmu == "sv48":
        page_offset = PAGE_OFFSET_L4
    else:
        page_offset = PAGE_OFFSET_L5
    if era.kern_virt_size == "minus_page_offset":
        kern_virt_size = (-page_offset) & MASK64  # page.h (4.15-5.16): KERN_VIRT_SIZE (-PAGE_OFFSET)
    else:
        kern_virt_size = (PTRS_PER_PGD // 2 * pgdir_size) // 2  # ((PTRS_PER_PGD / 2 * PGDIR_SIZE) / 2)
    # Kconfig config PAGE_OFFSET: the Sv39 value until 5.16, the Sv48 one in 5.17 (PAGE_OFFSET_L3 in page.h
    # for Sv39), the Sv57 one from 5.18 (PAGE_OFFSET_L4 and _L3 in page.h): kernel_map.page_offset is chosen
    # at boot from it
    config["CONFIG_PAGE_OFFSET"] = (era.page_offset_l3 if k < "5.17" else PAGE_OFFSET_L4 if k < "5.18"
                                    else PAGE_OFFSET_L5)

    # ---- vmalloc, vmemmap, PCI I/O, fixmap (pgtable.h) ---------------------------------------
    vmalloc_size = kern_virt_size >> 1  # VMALLOC_SIZE (KERN_VIRT_SIZE >> 1)
    vmalloc_start = page_offset - vmalloc_size  # VMALLOC_START (PAGE_OFFSET - VMALLOC_SIZE)
    # VMALLOC_END (PAGE_OFFSET - 1) until 5.16, PAGE_OFFSET from 5.17
    vmalloc_end = page_offset if era.vmalloc_end_exclusive else page_offset - 1
    region("vmalloc/ioremap space", vmalloc_start, page_offset, "vmalloc")

    vmemmap_start = vmemmap_end = pci_io_start = pci_io_end = None
    if era.vmemmap:
        # VMEMMAP_SHIFT (VA_BITS - PAGE_SHIFT - 1 + STRUCT_PAGE_MAX_SHIFT) (CONFIG_VA_BITS until 5.16),
        # VMEMMAP_END (VMALLOC_START - 1) until 5.16 then VMALLOC_START, VMEMMAP_START (VMALLOC_START - VMEMMAP_SIZE)
        vmemmap_shift = va_bits - PAGE_SHIFT - 1 + STRUCT_PAGE_MAX_SHIFT
        vmemmap_start = vmalloc_start - (1 << vmemmap_shift)
        vmemmap_end = vmalloc_start if era.vmalloc_end_exclusive else vmalloc_start - 1
        region("vmemmap", vmemmap_start, vmalloc_start, "vmemmap")
    if era.pci_io:
        pci_io_end = vmemmap_start  # PCI_IO_END VMEMMAP_START
        pci_io_start = pci_io_end - PCI_IO_SIZE  # PCI_IO_START (PCI_IO_END - PCI_IO_SIZE)
        region("PCI io", pci_io_start, pci_io_end, "pci-io")

    fixmap = fixmap_enum(k)
    fix = dict(fixmap)
    fixaddr_top = fixaddr_start = fixaddr_size = None
    if era.fixmap:
        # fixmap.h (5.2): FIXADDR_TOP (VMALLOC_START); pgtable.h (5.4+): FIXADDR_TOP PCI_IO_START
        fixaddr_top = pci_io_start if era.pci_io else vmalloc_start
        if era.fixaddr_size == "enum":
            fixaddr_size = fix["__end_of_fixed_addresses"] * PAGE_SIZE  # (__end_of_fixed_addresses * PAGE_SIZE)
        elif era.fixaddr_size == "pmd":
            fixaddr_size = PMD_SIZE  # FIXADDR_SIZE PMD_SIZE (64-bit)
        else:
            fixaddr_size = PMD_SIZE + (PMD_SIZE + 2 * MiB)  # PMD_SIZE + FIX_FDT_SIZE (MAX_FDT_SIZE + SZ_2M)
        fixaddr_start = fixaddr_top - fixaddr_size  # FIXADDR_START (FIXADDR_TOP - FIXADDR_SIZE)
        region("fixmap", fixaddr_start, fixaddr_top, "fixmap")
    # before 5.2 there is no fixmap at all: no FIXADDR_TOP/FIXADDR_START and an empty enum

    # ---- physical memory --------------------------------------------------------------------
    ram = spec.ram
    dram_end = DRAM_BASE + ram
    if dram_end > 1 << PA_BITS:
        raise ConfigError(f"RAM size {format_size(ram)} from 0x80000000 ends above the emulated CPU's "
                          f"{PA_BITS}-bit physical address space")
    # the most RAM the linear map takes (eras.py memory_limit)
    if era.memory_limit == "kern_virt_size":
        limit = kern_virt_size  # setup_bootmem: mem_size = min(reg->size, -PAGE_OFFSET)
        limit_text = "-PAGE_OFFSET (setup_bootmem)"
    else:
        limit = kern_virt_size - 4 * GiB  # memory_limit = KERN_VIRT_SIZE - SZ_4G
        limit_text = "KERN_VIRT_SIZE - 4 GiB (memory_limit, setup_vm)"
    if ram > limit:
        raise ConfigError(f"RAM size {format_size(ram)} is more than riscv64 kernel {k} with {MODE_NAMES[mmu]} "
                          f"can map: its linear map takes at most {format_size(limit)} ({limit_text}); the "
                          f"kernel would drop the rest")

    # where PAGE_OFFSET points: the kernel's load address before 6.4, the start of DRAM from 6.4
    linear_base = LOAD_PA if era.linear_map_base == "load_pa" else DRAM_BASE
    va_pa_offset = (page_offset - linear_base) & MASK64
    max_pfn = dram_end >> PAGE_SHIFT
    # setup_bootmem (5.4, 6.6): max_low_pfn = max_pfn = PFN_DOWN(memblock_end_of_DRAM());
    # mem_init / setup_bootmem: high_memory = __va(PFN_PHYS(max_low_pfn))
    max_low_pfn = max_pfn
    high_memory = page_offset + (max_low_pfn << PAGE_SHIFT) - linear_base

    # ---- the kernel image ----------------------------------------------------------------------
    text, rodata, data, bss = _image_sizes(k)
    # vmlinux.lds.S: '. = LOAD_OFFSET' (PAGE_OFFSET until 5.12, KERNEL_LINK_ADDR from 5.13); with
    # STRICT_KERNEL_RWX (5.7+) rodata and data start on SECTION_ALIGN, 2 MiB on 64-bit (asm/set_memory.h,
    # from recollection); before, page alignment is assumed
    image_va = KERNEL_LINK_ADDR if era.kernel_mapping else page_offset + (LOAD_PA - linear_base)
    align = PMD_SIZE if era.strict_kernel_rwx else PAGE_SIZE
    _start = image_va
    _etext = _start + text
    start_rodata = _align_up(_etext, align)
    end_rodata = start_rodata + rodata
    _sdata = _align_up(end_rodata, align)
    _edata = _sdata + data
    bss_start = _align_up(_edata, PAGE_SIZE)
    bss_stop = bss_start + bss
    _end = _align_up(bss_stop, PAGE_SIZE)

    # Before STRICT_KERNEL_RWX (5.7) nothing changes the protection the linear map gives the image:
    # setup_vm()'s swapper_pmd (4.15) and setup_vm_final() (5.2-5.6) map it PAGE_KERNEL_EXEC, read-write-execute
    # (init.c, read in 5.4: 'create_pgd_mapping(swapper_pg_dir, va, pa, map_size, PAGE_KERNEL_EXEC)')
    image_prot = None if era.strict_kernel_rwx else "PAGE_KERNEL_EXEC"

    def section(name: str, start: int, end: int, writable: bool, executable: bool) -> ImageSection:
        return ImageSection(name, start, LOAD_PA + (start - image_va), end - start, writable, executable,
                            prot=image_prot)

    image = [section("text", _start, _etext, False, True), section("rodata", start_rodata, end_rodata, False, False),
             section("data", _sdata, _edata, True, False), section("bss", bss_start, bss_stop, True, False)]
    image_end_pa = LOAD_PA + (_end - image_va)

    # QEMU places the device tree 2 MiB-aligned below the end of DRAM (module docstring)
    fdt_pa = (dram_end - FDT_SIZE) & ~(PMD_SIZE - 1)
    if fdt_pa < image_end_pa:
        raise ConfigError(f"RAM size {format_size(ram)} is too small for riscv64 kernel {k}: OpenSBI takes the first "
                          f"2 MiB, the kernel image 0x{LOAD_PA:x}-0x{image_end_pa:x}, and QEMU puts the device tree "
                          f"2 MiB-aligned below the end of RAM (0x{dram_end:x}); at least "
                          f"{format_size(_align_up(image_end_pa - DRAM_BASE, PMD_SIZE) + PMD_SIZE)} is needed")

    memory_map = [MemoryRange(DRAM_BASE, dram_end, "usable")]  # the DT memory node: all of DRAM
    reserved = [MemoryRange(DRAM_BASE, DRAM_BASE + OPENSBI_SIZE, "OpenSBI firmware"),
                MemoryRange(fdt_pa, fdt_pa + FDT_SIZE, "device tree (dtb)")]

    # ---- zones ----------------------------------------------------------------------------------
    dram_pfn = DRAM_BASE >> PAGE_SHIFT
    if era.dma32 == "pfn_bytes_mixup":
        # zone_sizes_init (4.x): max_zone_pfns[ZONE_DMA32] = PFN_DOWN(min(4UL * SZ_1G, max_low_pfn)): a pfn
        # taken for bytes, shifted again: far below the first pfn of RAM, so ZONE_DMA32 is empty
        zones = [ZoneSpan("Normal", dram_pfn, max_pfn)]
    else:
        # dma32_phys_limit = min(4UL * SZ_1G, PFN_PHYS(max_low_pfn)); [ZONE_NORMAL] = max_low_pfn
        dma32_end = min((4 * GiB) >> PAGE_SHIFT, max_low_pfn)
        zones = [ZoneSpan("DMA32", dram_pfn, dma32_end)]
        if max_low_pfn > dma32_end:
            zones.append(ZoneSpan("Normal", dma32_end, max_low_pfn))

    # ---- the kernel half --------------------------------------------------------------------------
    modules_vaddr = modules_end = None
    if era.kernel_mapping:
        # pgtable.h: MODULES_VADDR (PFN_ALIGN((unsigned long)&_end) - SZ_2G), MODULES_END (PFN_ALIGN(&_start))
        modules_vaddr = _align_up(_end, PAGE_SIZE) - 2 * GiB
        modules_end = _align_up(_start, PAGE_SIZE)
        if era.kern_virt_size == "minus_page_offset":
            # 5.13-5.16: the -PAGE_OFFSET window runs into the modules; what it can map is memory_limit
            # (vm-layout.rst: 'ffffffe000000000 | -128 GB | ... | 124 GB | direct mapping')
            direct_end = page_offset + limit
        else:
            direct_end = page_offset + kern_virt_size  # page.h is_linear_mapping(): < PAGE_OFFSET + KERN_VIRT_SIZE
        region("direct mapping of all physical memory", page_offset, direct_end, "direct")
        region("modules, BPF", modules_vaddr, modules_end, "modules")
        region("kernel", KERNEL_LINK_ADDR, ADDRESS_SPACE_END, "kernel-text")
    else:
        # the kernel image inside: the window runs to the end of the address space
        region("direct mapping of all physical memory, kernel image inside", page_offset, ADDRESS_SPACE_END,
               "direct")

    regions = fill_holes(regions, ADDRESS_SPACE_END, "riscv64")

    # ---- symbols ----------------------------------------------------------------------------------
    s = symbols
    s["PAGE_OFFSET"] = page_offset
    s["KERN_VIRT_SIZE"] = kern_virt_size
    s["VA_BITS"] = va_bits
    s["PGDIR_SHIFT"] = pgdir_shift
    # mmemu's PHYS_OFFSET: the physical address PAGE_OFFSET maps (kernel_map.va_pa_offset)
    s["PHYS_OFFSET"] = linear_base
    if era.phys_ram_base:
        s["phys_ram_base"] = DRAM_BASE  # setup_bootmem: memblock_start_of_DRAM() (& PMD_MASK from 6.4)
    if era.phys_ram_base:
        s["kernel_map.va_pa_offset"] = va_pa_offset
        s["kernel_map.phys_addr"] = LOAD_PA
        s["kernel_map.virt_addr"] = image_va
    else:
        s["va_pa_offset"] = va_pa_offset  # setup_vm: va_pa_offset = PAGE_OFFSET - load_pa
        s["pfn_base"] = LOAD_PA >> PAGE_SHIFT  # setup_vm: pfn_base = PFN_DOWN(load_pa) (ARCH_PFN_OFFSET)
    s["high_memory"] = high_memory
    s["min_low_pfn"] = DRAM_BASE >> PAGE_SHIFT  # setup_bootmem (6.x): PFN_UP(phys_ram_base); the first pfn of DRAM
    s["max_low_pfn"] = max_low_pfn
    s["max_pfn"] = max_pfn
    s["TASK_SIZE"] = task_size
    s["USER_PTRS_PER_PGD"] = task_size // pgdir_size  # pgtable.h: (TASK_SIZE / PGDIR_SIZE)
    # pgd_alloc (asm/pgalloc.h, from recollection): the kernel half copied from init_mm.pgd + USER_PTRS_PER_PGD
    s["KERNEL_PGD_BOUNDARY"] = task_size // pgdir_size
    if era.default_map_window:
        # NOT VERIFIED (eras.py default_map_window): MMAP_VA_BITS 48 when VA_BITS >= 48, else VA_BITS
        window = 1 << (min(va_bits, 48) - 1)
        s["DEFAULT_MAP_WINDOW"] = window
        s["STACK_TOP"] = window
        s["ELF_ET_DYN_BASE"] = (window // 3) * 2
    else:
        s["STACK_TOP"] = task_size  # processor.h: #define STACK_TOP TASK_SIZE
        s["ELF_ET_DYN_BASE"] = (task_size // 3) * 2  # elf.h: ((TASK_SIZE / 3) * 2) (from recollection)
    s["TASK_UNMAPPED_BASE"] = _align_up(task_size // 3, PAGE_SIZE)  # processor.h: PAGE_ALIGN(TASK_SIZE / 3)
    if era.kern_virt_start:
        s["KERN_VIRT_START"] = (-(1 << va_bits) + task_size) & MASK64  # (-(BIT(VA_BITS)) + TASK_SIZE)
    s["VMALLOC_START"] = vmalloc_start
    s["VMALLOC_END"] = vmalloc_end
    if vmemmap_start is not None:
        s["VMEMMAP_START"] = vmemmap_start
        s["VMEMMAP_END"] = vmemmap_end
        # pgtable.h: '#define vmemmap ((struct page *)VMEMMAP_START)' (5.4, read); '((struct page *)VMEMMAP_START
        # - (phys_ram_base >> PAGE_SHIFT))' from 6.8 (eras.py vmemmap_phys_ram_base): the struct page of pfn is
        # at vmemmap + pfn * sizeof(struct page) (64). Before 6.8 the first page of DRAM (pfn 0x80000) has its
        # struct page 32 MiB into the vmemmap area.
        first = (DRAM_BASE >> PAGE_SHIFT) if era.vmemmap_phys_ram_base else 0
        s["vmemmap"] = (vmemmap_start - first * (1 << STRUCT_PAGE_MAX_SHIFT)) & MASK64
    if pci_io_start is not None:
        s["PCI_IO_START"] = pci_io_start
        s["PCI_IO_END"] = pci_io_end
    if fixaddr_top is not None:
        s["FIXADDR_TOP"] = fixaddr_top
        s["FIXADDR_START"] = fixaddr_start
        s["FIXADDR_SIZE"] = fixaddr_size
    if era.kernel_mapping:
        s["KERNEL_LINK_ADDR"] = KERNEL_LINK_ADDR
        if era.modules_lowest_vaddr:
            s["MODULES_LOWEST_VADDR"] = KERNEL_LINK_ADDR - 2 * GiB
        s["MODULES_VADDR"] = modules_vaddr
        s["MODULES_END"] = modules_end
    s["_start"] = _start
    s["_etext"] = _etext
    s["__start_rodata"] = start_rodata
    s["__end_rodata"] = end_rodata
    s["_sdata"] = _sdata
    s["_edata"] = _edata
    s["__bss_start"] = bss_start
    s["__bss_stop"] = bss_stop
    s["_end"] = _end
    s["dtb_early_pa"] = fdt_pa

    layout = Layout(arch="riscv64", kernel=k, paging=MODE_NAMES[mmu], symbols=symbols, regions=regions, zones=zones,
                    memory_map=memory_map, image=image, config=config, fixmap=fixmap, reserved=reserved)
    layout.check()
    return layout
