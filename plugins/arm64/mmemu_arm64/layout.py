"""The arm64 kernel virtual memory layout, 4 KiB pages, VA_BITS 39 or 48, per kernel era.

No KASLR (CONFIG_RANDOMIZE_BASE off: kimage_vaddr == KIMAGE_VADDR, memstart_addr not
randomised), no KASAN (the shadow area is an unused hole), sizeof(struct page) == 64
(STRUCT_PAGE_MAX_SHIFT 6). The machine is a QEMU 'virt' board: RAM at 0x40000000
(hw/arm/virt.c memmap[VIRT_MEM]), contiguous, at most 255 GiB (virt.c RAMLIMIT_GB 255 of
the QEMU releases Unicorn 2 derives from).

The eras (each boundary's source is in eras.py; "verified" values were read in a copy of the
kernel file or Documentation/arm64/memory.txt of that era, quoted in the tests):

=========  ================================================================================
3.7        39-bit only. PAGE_OFFSET 0xffffffc000000000 (memory.h: UL(0xffffffffffffffff) <<
           (VA_BITS - 1)), the kernel image in the linear map at PAGE_OFFSET + TEXT_OFFSET;
           vmalloc from 0xffffff8000000000 to PAGE_OFFSET - 0x400000000 - SZ_64K, vmemmap
           right after (pgtable.h), 8 GB; modules the 64 MB below PAGE_OFFSET.
3.10       earlyprintk device window (EARLYCON_IOBASE = MODULES_VADDR - SZ_4M, 2 MB) and a
           64 KB PCI I/O space at MODULES_VADDR - SZ_2M (memory.txt of the era).
3.15       fixmap (early_ioremap): 2 MB window under MODULES_VADDR - SZ_2M
           (FIXADDR_TOP = MODULES_VADDR - SZ_2M - PAGE_SIZE); PCI I/O 16 MB at
           MODULES_VADDR - SZ_32M (memory.txt of the era).
3.17       VA_BITS 39 or 48 (4 levels); VMEMMAP_SIZE = ALIGN((1 << (VA_BITS - PAGE_SHIFT)) *
           sizeof(struct page), PUD_SIZE), VMALLOC_END = PAGE_OFFSET - PUD_SIZE -
           VMEMMAP_SIZE - SZ_64K (pgtable.h, verified 3.17-3.19 copy).
4.0        PCI_IO_END = MODULES_VADDR - SZ_2M, PCI_IO_START = PCI_IO_END - PCI_IO_SIZE,
           FIXADDR_TOP = PCI_IO_START - SZ_2M (memory.h; verified by a boot log).
4.6        KIMAGE_VADDR = MODULES_END, modules at VA_START (128 MB), the image at the bottom
           of the vmalloc area; the linear map is the upper half (PAGE_OFFSET = -(1 <<
           (VA_BITS - 1))); vmemmap right below it (VMEMMAP_SIZE = 1 << (VA_BITS - PAGE_SHIFT -
           1 + STRUCT_PAGE_MAX_SHIFT)), PCI I/O and fixmap below the vmemmap.
5.0        a 128 MB BPF JIT region at VA_START, before the modules.
5.4        flipped: PAGE_OFFSET = -(1 << VA_BITS) at the bottom of the kernel half, PAGE_END
           = -(1 << (VA_BITS - 1)); BPF, modules, image, vmalloc above it; VMEMMAP_START =
           -VMEMMAP_SIZE - SZ_2M, VMALLOC_END = -PUD_SIZE - VMEMMAP_SIZE - SZ_64K.
5.8        TEXT_OFFSET 0: the image at KIMAGE_VADDR, loaded 2 MB into RAM.
5.11       VMEMMAP_START = -(1 << (VA_BITS - VMEMMAP_SHIFT)), PCI_IO_END = VMEMMAP_START -
           SZ_8M, FIXADDR_TOP = VMEMMAP_START - SZ_32M, VMALLOC_END = VMEMMAP_START - SZ_256M.
5.17       the BPF region is gone: MODULES_VADDR = _PAGE_END(VA_BITS_MIN).
6.5        MODULES_VSIZE SZ_2G.
6.9        VMEMMAP_END = -SZ_1G, VMEMMAP_START = VMEMMAP_END - VMEMMAP_SIZE, PCI_IO_START =
           VMEMMAP_END + SZ_8M, FIXADDR_TOP = -SZ_8M, VMALLOC_END = VMEMMAP_START - SZ_8M
           (memory.h/pgtable.h, verified; Documentation/arch/arm64/memory.rst was not
           updated and still shows the 6.5-6.8 table).
=========  ================================================================================

Regions cover the whole 64-bit space, sorted and half-open; gaps are "... unused hole",
the space between the two halves "non-canonical". From 4.6 the kernel image lies inside
[VMALLOC_START, VMALLOC_END) (the kernel registers it with vm_area_add_early()): the
regions show it on its own and the vmalloc region starts after it, while the symbol
VMALLOC_START keeps the kernel's value (MODULES_END).
"""

from __future__ import annotations

from mmemu.errors import ConfigError
from mmemu.layout import ImageSection, Layout, MachineSpec, MemoryRange, Region, ZoneSpan, fill_holes, zone_spans
from mmemu.units import GiB, KernelVersion, MiB, format_size

from .eras import ARM64, CPU
from .fixmap import PAGE_SHIFT, PAGE_SIZE, fixed_addresses

MASK64 = (1 << 64) - 1
ADDRESS_SPACE_END = 1 << 64
SZ_64K = 64 << 10
SZ_2M = 2 * MiB
SZ_4M = 4 * MiB
SZ_8M = 8 * MiB
SZ_16M = 16 * MiB
SZ_32M = 32 * MiB
SZ_64M = 64 * MiB
SZ_128M = 128 * MiB
SZ_256M = 256 * MiB
SZ_1G = GiB
PUD_SIZE = 1 << 30  # 4 KiB granule, 3 or 4 levels: PUD_SHIFT 30
#: memory.h STRUCT_PAGE_MAX_SHIFT (6): sizeof(struct page) <= 64
STRUCT_PAGE_MAX_SHIFT = 6
STRUCT_PAGE_SIZE = 1 << STRUCT_PAGE_MAX_SHIFT
#: memory.h: #define PCI_IO_SIZE SZ_16M (3.15+; io.h IO_SPACE_LIMIT 0xffff before: 64 KB)
PCI_IO_SIZE = SZ_16M
#: QEMU hw/arm/virt.c: memmap[VIRT_MEM] = { 0x40000000, RAMLIMIT_BYTES }, RAMLIMIT_GB 255
VIRT_RAM_BASE = 0x40000000
VIRT_RAM_LIMIT = 255 * GiB

SUPPORTED = "3.7-3.19, 4.0-4.20, 5.0-5.19 and 6.x"
_LAST_MINOR = {3: 19, 4: 20, 5: 19}


def neg(n: int) -> int:
    """A negative C unsigned long as the 64-bit address it is."""
    return n & MASK64


def align_up(x: int, a: int) -> int:
    return (x + a - 1) // a * a


def check_kernel(k: KernelVersion) -> None:
    ok = (k.major == 3 and 7 <= k.minor <= 19) or (k.major in (4, 5) and k.minor <= _LAST_MINOR[k.major]) \
        or k.major == 6
    if not ok:
        raise ConfigError(f"arm64: no layout for kernel {k}; supported: {SUPPORTED} (arm64 first appeared in 3.7)")


def check_va_bits(k: KernelVersion, va_bits: int) -> None:
    if va_bits not in (39, 48):
        raise ConfigError(f"arm64 with 4 KiB pages has VA_BITS 39 or 48, not {va_bits}")
    if va_bits == 48 and not ARM64(k).va48:
        raise ConfigError(f"arm64 kernel {k} has only 39-bit virtual addresses with 4 KiB pages: "
                          f"VA_BITS=48 (4 levels of tables, CONFIG_ARM64_VA_BITS_48) came in 3.17")


def config_for(k: KernelVersion, va_bits: int) -> dict[str, object]:
    """The compile-time configuration the formulas assume (a defconfig-like kernel)."""
    c: dict[str, object] = {"CONFIG_ARM64": True, "CONFIG_ARM64_4K_PAGES": True, "CONFIG_ARM64_VA_BITS": va_bits,
                            "CONFIG_PGTABLE_LEVELS": 3 if va_bits == 39 else 4, "CONFIG_SMP": True,
                            "CONFIG_PREEMPT": True, "CONFIG_SPARSEMEM_VMEMMAP": True}
    if k >= "4.0":
        c["CONFIG_KASAN"] = False
    if k >= "4.6":
        c["CONFIG_RANDOMIZE_BASE"] = False  # KASLR (4.6+) off
        c["CONFIG_RELOCATABLE"] = True
    if k >= "4.16":
        c["CONFIG_UNMAP_KERNEL_AT_EL0"] = True  # arch/arm64/Kconfig: default y (KPTI)
    if k >= "4.16":
        # defconfig: CONFIG_ACPI_APEI_GHES=y (FIX_APEI_GHES_IRQ/SEA fixmap slots; release recollection),
        # CONFIG_ARM_SDE_INTERFACE off: with these the 5.4 memory.rst "fixed mappings" row (4124KB, 1031
        # slots) comes out exactly
        c["CONFIG_ACPI_APEI_GHES"] = True
        c["CONFIG_ARM_SDE_INTERFACE"] = False
    c["CONFIG_ZONE_DMA32" if k < "3.15" or k >= "5.5" else "CONFIG_ZONE_DMA"] = True
    if k >= "5.5":
        c["CONFIG_ZONE_DMA"] = True
    if ARM64(k).kernel_ro:
        c["CONFIG_STRICT_KERNEL_RWX" if k >= "4.11" else "CONFIG_DEBUG_RODATA"] = True
    return c


def image_sizes(k: KernelVersion) -> tuple[int, int, int, int, int]:
    """Representative sizes (text, rodata, init, data, bss) of a defconfig arm64 vmlinux of
    the era -- not measured from a real build; the 4.x row is the boot log quoted in
    layout.py's tests (.text 8192 KB, .rodata 3648 KB, .init 1216 KB, .data 1389 KB, .bss
    380 KB), rounded to pages."""
    if k < "4.0":
        return 0x500000, 0x180000, 0x80000, 0x80000, 0x60000
    if k < "5.0":
        return 0x800000, 0x390000, 0x130000, 0x15B000, 0x5F000
    return 0xE00000, 0x600000, 0x1C0000, 0x1B0000, 0x80000


def compute_layout(spec: MachineSpec, va_bits: int) -> Layout:
    k = spec.kernel
    check_kernel(k)
    check_va_bits(k, va_bits)
    era = ARM64(k)
    config = config_for(k, va_bits)
    VA = va_bits
    symbols: dict[str, int] = {}
    regions: list[Region] = []

    def region(name: str, start: int, end: int, kind: str) -> None:
        if end > start:
            regions.append(Region(name, start, end, kind))

    # ---- RAM: QEMU virt, mem= -------------------------------------------------------------------
    if spec.ram > VIRT_RAM_LIMIT:
        raise ConfigError(f"RAM size {format_size(spec.ram)} is more than a QEMU 'virt' machine holds at "
                          f"{VIRT_RAM_BASE:#x} (255G, hw/arm/virt.c RAMLIMIT_GB)")
    ram_start = VIRT_RAM_BASE
    ram_end = ram_start + spec.ram
    mem_limit = spec.cmdline.size("mem")
    if mem_limit is not None:
        if mem_limit < 16 * MiB:
            raise ConfigError(f"mem={spec.cmdline['mem']} leaves too little memory to boot (the image alone "
                              f"needs more)")
        # arch/arm64/mm/init.c: early_mem() sets memory_limit; memblock_enforce_memory_limit()
        ram_end = min(ram_end, ram_start + mem_limit)
    # arch/arm64/mm/init.c arm64_memblock_init(): memstart_addr = round_down(memblock_start_of_DRAM(),
    # ARM64_MEMSTART_ALIGN) (4.6+, 1 GiB with 4 KiB pages: kernel-pgtable.h ARM64_MEMSTART_SHIFT PUD_SHIFT);
    # before, PHYS_OFFSET is the 2 MiB aligned base the image was loaded at (head.S __calc_phys_offset):
    # 0x40000000 either way on QEMU virt.
    phys_offset = ram_start

    # ---- user space (processor.h / memory.h) ------------------------------------------------------
    # #define TASK_SIZE_64 (UL(1) << VA_BITS); STACK_TOP_MAX TASK_SIZE_64 (DEFAULT_MAP_WINDOW_64 from 5.0,
    # equal for VA_BITS <= 48); elf.h: ELF_ET_DYN_BASE (2 * TASK_SIZE_64 / 3), (2 * DEFAULT_MAP_WINDOW_64 / 3)
    # from 5.0 (verified patch text)
    task_size = 1 << VA
    region("user-space virtual memory, different per mm", 0, task_size, "user")
    kernel_half = ADDRESS_SPACE_END - (1 << VA)
    region("... non-canonical hole (between the TTBR0 and TTBR1 halves)", task_size, kernel_half, "non-canonical")

    text_offset = era.text_offset
    sizes = image_sizes(k)
    modules_vsize = era.modules_vsize
    extra: dict[str, int] = {}

    if era.layout == "linear":
        # memory.h (3.7-4.5): #define PAGE_OFFSET (UL(0xffffffffffffffff) << (VA_BITS - 1))
        page_offset = neg(-1 << (VA - 1))
        va_start = neg(-1 << VA)
        linear_end = ADDRESS_SPACE_END
        # #define MODULES_END (PAGE_OFFSET); #define MODULES_VADDR (MODULES_END - SZ_64M)
        modules_end = page_offset
        modules_vaddr = modules_end - SZ_64M
        # pgtable.h: VMALLOC_START UL(0xffffff8000000000) (3.7) = (UL(0xffffffffffffffff) << VA_BITS) (3.17)
        vmalloc_start = va_start
        if era.vmemmap == "fixed-8G":
            # pgtable.h 3.7-3.16: #define VMALLOC_END (PAGE_OFFSET - UL(0x400000000) - SZ_64K)
            #                     #define vmemmap ((struct page *)(VMALLOC_END + SZ_64K))
            vmalloc_end = page_offset - 0x400000000 - SZ_64K
            vmemmap_start = vmalloc_end + SZ_64K
            # memory.txt: "ffffffbc00000000 ffffffbdffffffff 8GB vmemmap", then "[guard, future vmmemap]"
            vmemmap_size = 8 * GiB
        else:
            # pgtable.h 3.17-4.5: VMEMMAP_SIZE ALIGN((1UL << (VA_BITS - PAGE_SHIFT)) * sizeof(struct page), PUD_SIZE)
            #   #define VMALLOC_END (PAGE_OFFSET - PUD_SIZE - VMEMMAP_SIZE - SZ_64K)
            #   #define vmemmap ((struct page *)(VMALLOC_END + SZ_64K))
            vmemmap_size = align_up((1 << (VA - PAGE_SHIFT)) * STRUCT_PAGE_SIZE, PUD_SIZE)
            vmalloc_end = page_offset - PUD_SIZE - vmemmap_size - SZ_64K
            vmemmap_start = vmalloc_end + SZ_64K
        vmemmap_end = vmemmap_start + vmemmap_size
        pci_start = pci_end = None
        if era.io_area == "earlycon":
            # memory.h: #define EARLYCON_IOBASE (MODULES_VADDR - SZ_4M); io.h: PCI_IOBASE (MODULES_VADDR - SZ_2M),
            # IO_SPACE_LIMIT 0xffff (memory.txt: earlyprintk device 2MB, PCI I/O space 64KB)
            extra["EARLYCON_IOBASE"] = modules_vaddr - SZ_4M
            region("earlyprintk device", modules_vaddr - SZ_4M, modules_vaddr - SZ_2M, "earlycon")
            pci_start, pci_end = modules_vaddr - SZ_2M, modules_vaddr - SZ_2M + SZ_64K
            fixaddr_top = None
        elif era.io_area == "fixmap":
            # io.h: #define PCI_IOBASE ((void __iomem *)(MODULES_VADDR - SZ_32M)), IO_SPACE_LIMIT 0xffffff;
            # fixmap.h: #define FIXADDR_TOP ((unsigned long)(MODULES_VADDR - SZ_2M - PAGE_SIZE))
            # (memory.txt: PCI I/O space 16MB at ffffffbffa000000, fixed mappings ffffffbffbc00000-ffffffbffbdfffff)
            pci_start, pci_end = modules_vaddr - SZ_32M, modules_vaddr - SZ_32M + PCI_IO_SIZE
            fixaddr_top = modules_vaddr - SZ_2M - PAGE_SIZE
        elif era.io_area == "pci-below-modules":
            # memory.h (4.0-4.5): PCI_IO_END (MODULES_VADDR - SZ_2M), PCI_IO_START (PCI_IO_END - PCI_IO_SIZE),
            # FIXADDR_TOP (PCI_IO_START - SZ_2M)
            pci_end = modules_vaddr - SZ_2M
            pci_start = pci_end - PCI_IO_SIZE
            fixaddr_top = pci_start - SZ_2M
        else:  # 3.7-3.9: io.h PCI_IOBASE ((void __iomem *)0), no fixmap
            fixaddr_top = None
        region("vmalloc", vmalloc_start, vmalloc_end, "vmalloc")
        region("vmemmap", vmemmap_start, vmemmap_end, "vmemmap")
        region("modules", modules_vaddr, modules_end, "modules")
        region("kernel logical memory map", page_offset, linear_end, "direct")
        image_virt_base = page_offset  # _text = PAGE_OFFSET + TEXT_OFFSET (vmlinux.lds.S: . = PAGE_OFFSET + TEXT_OFFSET)
        image_phys_base = phys_offset
        kimage_vaddr = None
    else:
        if era.layout == "kimage":
            # memory.h (4.6-5.3): VA_START (UL(0xffffffffffffffff) - (UL(1) << VA_BITS) + 1)
            #                     PAGE_OFFSET (UL(0xffffffffffffffff) - (UL(1) << (VA_BITS - 1)) + 1)
            va_start = neg(-(1 << VA))
            page_offset = neg(-(1 << (VA - 1)))
            page_end = ADDRESS_SPACE_END
            kasan_end = va_start  # KASAN_SHADOW_SIZE 0
        else:
            # memory.h (5.4+): _PAGE_OFFSET(va) (-(UL(1) << (va))), PAGE_OFFSET _PAGE_OFFSET(VA_BITS),
            # _PAGE_END(va) (-(UL(1) << ((va) - 1))), PAGE_END _PAGE_END(VA_BITS_MIN) (VA_BITS_MIN == VA_BITS)
            va_start = neg(-(1 << VA))
            page_offset = va_start
            page_end = neg(-(1 << (VA - 1)))
            kasan_end = page_end  # KASAN_SHADOW_END _PAGE_END(VA_BITS_MIN) without KASAN
            extra["PAGE_END"] = page_end
        if era.bpf_region:
            # memory.h: BPF_JIT_REGION_START (VA_START + KASAN_SHADOW_SIZE) (5.0-5.3), (KASAN_SHADOW_END) (5.4),
            # (_PAGE_END(VA_BITS_MIN)) (5.11); BPF_JIT_REGION_SIZE (SZ_128M); MODULES_VADDR (BPF_JIT_REGION_END)
            bpf_start = kasan_end
            bpf_end = bpf_start + SZ_128M
            extra["BPF_JIT_REGION_START"] = bpf_start
            extra["BPF_JIT_REGION_END"] = bpf_end
            region("bpf jit region", bpf_start, bpf_end, "bpf")
            modules_vaddr = bpf_end
        else:
            # 4.6: MODULES_VADDR (VA_START + KASAN_SHADOW_SIZE); 5.17+: MODULES_VADDR (_PAGE_END(VA_BITS_MIN))
            modules_vaddr = kasan_end
        # MODULES_END (MODULES_VADDR + MODULES_VSIZE); KIMAGE_VADDR (MODULES_END)
        modules_end = modules_vaddr + modules_vsize
        kimage_vaddr = modules_end
        # pgtable.h: #define VMALLOC_START (MODULES_END)
        vmalloc_start = modules_end
        if era.vmemmap == "below-linear":
            # memory.h 4.6: VMEMMAP_SIZE (UL(1) << (VA_BITS - PAGE_SHIFT - 1 + STRUCT_PAGE_MAX_SHIFT))
            #   VMEMMAP_START (PAGE_OFFSET - VMEMMAP_SIZE); PCI_IO_END (VMEMMAP_START - SZ_2M)
            #   PCI_IO_START (PCI_IO_END - PCI_IO_SIZE); FIXADDR_TOP (PCI_IO_START - SZ_2M)
            # pgtable.h: VMALLOC_END (PAGE_OFFSET - PUD_SIZE - VMEMMAP_SIZE - SZ_64K)
            vmemmap_size = 1 << (VA - PAGE_SHIFT - 1 + STRUCT_PAGE_MAX_SHIFT)
            vmemmap_start = page_offset - vmemmap_size
            pci_end = vmemmap_start - SZ_2M
            pci_start = pci_end - PCI_IO_SIZE
            fixaddr_top = pci_start - SZ_2M
            vmalloc_end = page_offset - PUD_SIZE - vmemmap_size - SZ_64K
        else:
            # memory.h 5.4+: VMEMMAP_SIZE ((_PAGE_END(VA_BITS_MIN) - PAGE_OFFSET) >> (PAGE_SHIFT - STRUCT_PAGE_MAX_SHIFT))
            # (6.9: (VMEMMAP_RANGE >> PAGE_SHIFT) * sizeof(struct page), the same number)
            vmemmap_size = (page_end - page_offset) >> (PAGE_SHIFT - STRUCT_PAGE_MAX_SHIFT)
            if era.vmemmap == "top":
                # 5.4: VMEMMAP_START (-VMEMMAP_SIZE - SZ_2M); PCI_IO_END (VMEMMAP_START - SZ_2M);
                # FIXADDR_TOP (PCI_IO_START - SZ_2M); pgtable.h VMALLOC_END (- PUD_SIZE - VMEMMAP_SIZE - SZ_64K)
                vmemmap_start = neg(-vmemmap_size - SZ_2M)
                pci_end = vmemmap_start - SZ_2M
                pci_start = pci_end - PCI_IO_SIZE
                fixaddr_top = pci_start - SZ_2M
                vmalloc_end = neg(-PUD_SIZE - vmemmap_size - SZ_64K)
            elif era.vmemmap == "top-shift":
                # 5.11: VMEMMAP_SHIFT (PAGE_SHIFT - STRUCT_PAGE_MAX_SHIFT);
                # VMEMMAP_START (-(UL(1) << (VA_BITS - VMEMMAP_SHIFT))); PCI_IO_END (VMEMMAP_START - SZ_8M);
                # FIXADDR_TOP (VMEMMAP_START - SZ_32M); pgtable.h VMALLOC_END (VMEMMAP_START - SZ_256M)
                vmemmap_start = neg(-(1 << (VA - (PAGE_SHIFT - STRUCT_PAGE_MAX_SHIFT))))
                pci_end = vmemmap_start - SZ_8M
                pci_start = pci_end - PCI_IO_SIZE
                fixaddr_top = vmemmap_start - SZ_32M
                vmalloc_end = vmemmap_start - SZ_256M
            else:
                # 6.9: VMEMMAP_END (-UL(SZ_1G)); VMEMMAP_START (VMEMMAP_END - VMEMMAP_SIZE);
                # PCI_IO_START (VMEMMAP_END + SZ_8M); PCI_IO_END (PCI_IO_START + PCI_IO_SIZE);
                # FIXADDR_TOP (-UL(SZ_8M)); pgtable.h (VA_BITS == VA_BITS_MIN) VMALLOC_END (VMEMMAP_START - SZ_8M)
                vmemmap_end_top = neg(-SZ_1G)
                vmemmap_start = vmemmap_end_top - vmemmap_size
                pci_start = vmemmap_end_top + SZ_8M
                pci_end = pci_start + PCI_IO_SIZE
                fixaddr_top = neg(-SZ_8M)
                vmalloc_end = vmemmap_start - SZ_8M
        vmemmap_end = vmemmap_start + vmemmap_size
        region("modules", modules_vaddr, modules_end, "modules")
        region("vmemmap", vmemmap_start, vmemmap_end, "vmemmap")
        linear_end = page_end
        region("kernel logical memory map", page_offset, linear_end, "direct")
        # the image: vmlinux.lds.S . = KIMAGE_VADDR + TEXT_OFFSET; QEMU loads the Image at the start of RAM +
        # text_offset, or 2 MiB in when text_offset is 0 (hw/arm/boot.c load_aarch64_image)
        image_virt_base = kimage_vaddr
        image_phys_base = phys_offset if text_offset else phys_offset + SZ_2M

    # ---- the kernel image (vmlinux.lds.S) -----------------------------------------------------------------
    text, rodata, init, data, bss = sizes
    if era.layout == "linear" and text_offset:
        _text = image_virt_base + text_offset
        phys_text = image_phys_base + text_offset
    else:
        _text = image_virt_base + text_offset
        phys_text = image_phys_base + text_offset
    # section alignment: SEGMENT_ALIGN (SZ_64K, memory.h) from 4.6; pages before
    seg = SZ_64K if k >= "4.6" else PAGE_SIZE
    _etext = align_up(_text + text, seg)
    start_rodata = _etext
    end_rodata = start_rodata + rodata
    pgdir_pages = {39: 2, 48: 3}[VA]  # SWAPPER_DIR_SIZE: SWAPPER_PGTABLE_LEVELS pages (section maps)
    swapper_pg_dir = None
    reserved_ttbr0 = None
    root_section = era.root_section
    if root_section == "rodata":
        # vmlinux.lds.S (4.19+): after RO_DATA: idmap_pg_dir (IDMAP_DIR_SIZE), tramp_pg_dir (KPTI),
        # reserved_pg_dir/reserved_ttbr0 (1 page), swapper_pg_dir (1 page), . = ALIGN(SEGMENT_ALIGN); __init_begin
        tables = align_up(end_rodata, PAGE_SIZE)
        tables += pgdir_pages * PAGE_SIZE  # idmap_pg_dir
        if config.get("CONFIG_UNMAP_KERNEL_AT_EL0"):
            tables += PAGE_SIZE  # tramp_pg_dir
        reserved_ttbr0 = tables
        tables += PAGE_SIZE  # reserved_pg_dir
        swapper_pg_dir = tables
        end_rodata = swapper_pg_dir + PAGE_SIZE
    init_begin = align_up(end_rodata, seg)
    _sdata = align_up(init_begin + init, seg)
    _edata = _sdata + data
    bss_start = align_up(_edata, PAGE_SIZE)
    bss_stop = bss_start + bss
    _end = align_up(bss_stop, PAGE_SIZE)
    if root_section == "bss":
        # vmlinux.lds.S (3.16-4.18): BSS_SECTION; . = ALIGN(PAGE_SIZE); idmap_pg_dir = .; . += IDMAP_DIR_SIZE;
        # (4.16+ tramp_pg_dir, 4.10+ reserved_ttbr0: one page each) swapper_pg_dir = .; . += SWAPPER_DIR_SIZE; _end
        tables = _end + pgdir_pages * PAGE_SIZE
        if config.get("CONFIG_UNMAP_KERNEL_AT_EL0"):
            tables += PAGE_SIZE
        if k >= "4.10":
            reserved_ttbr0 = tables
            tables += PAGE_SIZE  # reserved_ttbr0 (CONFIG_ARM64_SW_TTBR0_PAN, default y)
        swapper_pg_dir = tables
        _end = swapper_pg_dir + pgdir_pages * PAGE_SIZE
        bss_stop_sym = bss_stop
    else:
        bss_stop_sym = bss_stop
    # Before 4.0 nothing of the image is read-only or non-executable: it is part of the linear map, which
    # 3.x create_mapping() writes with prot_sect_kernel / PAGE_KERNEL_EXEC (no PXN, writable): the
    # sections say what they are, their protection what the kernel gave them.
    rwx = None if era.kernel_ro else "PAGE_KERNEL_EXEC"
    image_off = _text - phys_text

    def section(name: str, start: int, end: int, writable: bool, executable: bool) -> ImageSection:
        return ImageSection(name, start, start - image_off, end - start, writable, executable, prot=rwx)

    image = [section("text", _text, _etext, False, True),
             section("rodata", start_rodata, end_rodata, False, False),
             section("data", _sdata, _edata, True, False),
             section("bss", bss_start, _end, True, False)]
    if root_section == "pgdir":
        # head.S (3.7-3.15): .equ swapper_pg_dir, KERNEL_RAM_VADDR - SWAPPER_DIR_SIZE (3 pages with 4K
        # pages), .equ idmap_pg_dir, swapper_pg_dir - IDMAP_DIR_SIZE (2 pages), in the TEXT_OFFSET gap under
        # _text. arm64_memblock_init() reserves both ("Reserve the page tables. These are already in use"):
        # a section of their own, since the core wants the root table inside the image.
        swapper_pg_dir = _text - 3 * PAGE_SIZE
        idmap_pg_dir = swapper_pg_dir - 2 * PAGE_SIZE
        image.append(section("pgdir", idmap_pg_dir, _text, True, False))
        extra["idmap_pg_dir"] = idmap_pg_dir
    image_end_phys = max(s.phys + s.size for s in image)
    if image_end_phys > ram_end:
        raise ConfigError(f"RAM ends at {ram_end:#x}, below the end of the kernel image ({image_end_phys:#x})")
    if kimage_vaddr is not None:
        # map_kernel() registers each segment with vm_area_add_early(): [_text, _end) is taken, the
        # TEXT_OFFSET gap below _text (before 5.8) is free vmalloc space
        region("vmalloc", vmalloc_start, _text, "vmalloc")
        region("kernel image (vm_area_add_early)", _text, _end, "kernel-text")
        region("vmalloc", _end, vmalloc_end, "vmalloc")
    elif era.layout != "linear":
        region("vmalloc", vmalloc_start, vmalloc_end, "vmalloc")

    # ---- fixmap, PCI I/O --------------------------------------------------------------------------------
    fixmap = fixed_addresses(k, config)
    fix = dict(fixmap)
    if fixaddr_top is None:
        # no fixmap before 3.15 (no asm/fixmap.h): no FIXADDR_* symbols, an empty enum
        fixaddr_start = None
    else:
        # fixmap.h: FIXADDR_SIZE (__end_of_permanent_fixed_addresses << PAGE_SHIFT),
        # FIXADDR_START (FIXADDR_TOP - FIXADDR_SIZE); the boot-time slots lie below FIXADDR_START
        fixaddr_start = fixaddr_top - (fix["__end_of_permanent_fixed_addresses"] << PAGE_SHIFT)
        fixaddr_lowest = fixaddr_top - ((fix["__end_of_fixed_addresses"] - 1) << PAGE_SHIFT)
        region("fixed mappings", fixaddr_start, fixaddr_top, "fixmap")
        region("fixed mappings, boot-time slots (early_ioremap, FIX_PTE..FIX_PGD)", fixaddr_lowest, fixaddr_start,
               "fixmap")
    if pci_start is not None:
        region("PCI I/O space", pci_start, pci_end, "pci-io")

    # ---- memory map, zones, reserved ---------------------------------------------------------------------
    lowmem = ram_end - phys_offset
    if phys_offset + (linear_end - page_offset) < ram_end:
        raise ConfigError(f"RAM size {format_size(spec.ram)} does not fit the {VA}-bit linear map "
                          f"({format_size(linear_end - page_offset)} from PAGE_OFFSET)")
    high_memory = page_offset + lowmem  # __va(memblock_end_of_DRAM() - 1) + 1
    # memblock_enforce_memory_limit(): what lies above mem= is gone from memblock.memory
    memory_map = [MemoryRange(ram_start, ram_end, "usable")]
    zones = zones_for(k, ram_start >> PAGE_SHIFT, ram_end >> PAGE_SHIFT)
    # QEMU hw/arm/boot.c arm_setup_direct_kernel_boot(): initrd_start = loader_start + MIN(ram_size / 2,
    # 128 MiB), at least the end of the image; the DTB at QEMU_ALIGN_UP(initrd_start + initrd_size, 2 MiB)
    # for an AArch64 kernel ("prealign it to 2MB"). Its size: QEMU's device tree buffer, FDT_MAX_SIZE 1 MiB
    # (representative: the kernel reserves fdt_totalsize(), early_init_fdt_reserve_self()).
    initrd_start = max(ram_start + min(spec.ram // 2, 128 * MiB), align_up(image_end_phys, PAGE_SIZE))
    dtb_start = align_up(initrd_start, SZ_2M)
    dtb_end = dtb_start + 1 * MiB
    reserved = []
    if dtb_end <= ram_end:
        reserved.append(MemoryRange(dtb_start, dtb_end, "device tree (QEMU virt DTB)"))

    # ---- symbols --------------------------------------------------------------------------------------------
    s = symbols
    s["VA_BITS"] = VA
    s["PAGE_OFFSET"] = page_offset
    s.update({n: v for n, v in extra.items() if n == "PAGE_END"})
    s["high_memory"] = high_memory
    s["PHYS_OFFSET"] = phys_offset
    s["memstart_addr"] = phys_offset
    s["TASK_SIZE"] = task_size
    s["TASK_SIZE_64"] = task_size
    s["STACK_TOP"] = task_size
    s["ELF_ET_DYN_BASE"] = 2 * task_size // 3
    if era.layout != "flipped":
        s["VA_START"] = va_start
    s["VMALLOC_START"] = vmalloc_start
    s["VMALLOC_END"] = vmalloc_end
    s["VMEMMAP_START"] = vmemmap_start
    s["VMEMMAP_END"] = vmemmap_end
    s["vmemmap"] = (vmemmap_start - (phys_offset >> PAGE_SHIFT) * STRUCT_PAGE_SIZE) & MASK64 \
        if era.layout != "linear" else vmemmap_start
    for name in ("BPF_JIT_REGION_START", "BPF_JIT_REGION_END", "EARLYCON_IOBASE", "idmap_pg_dir"):
        if name in extra:
            s[name] = extra[name]
    s["MODULES_VADDR"] = modules_vaddr
    s["MODULES_END"] = modules_end
    if kimage_vaddr is not None:
        s["KIMAGE_VADDR"] = kimage_vaddr
        s["kimage_voffset"] = image_off
    if pci_start is not None:
        s["PCI_IO_START"] = pci_start
        s["PCI_IO_END"] = pci_end
    if fixaddr_top is not None:
        s["FIXADDR_TOP"] = fixaddr_top
        s["FIXADDR_START"] = fixaddr_start
        s["FIXADDR_SIZE"] = fixaddr_top - fixaddr_start
    if k >= "6.9" and fixmap:
        s["FIXADDR_TOT_START"] = fixaddr_top - (fix["__end_of_fixed_addresses"] << PAGE_SHIFT)
    if text_offset or k < "5.8":
        s["TEXT_OFFSET"] = text_offset
    s["_text"] = _text
    s["_etext"] = _etext
    s["__start_rodata"] = start_rodata
    s["__init_begin"] = init_begin
    s["_sdata"] = _sdata
    s["_edata"] = _edata
    s["__bss_start"] = bss_start
    s["__bss_stop"] = bss_stop_sym
    s["_end"] = _end
    s["swapper_pg_dir"] = swapper_pg_dir
    if reserved_ttbr0 is not None:
        # vmlinux.lds.S: reserved_ttbr0 (4.10+, CONFIG_ARM64_SW_TTBR0_PAN), renamed reserved_pg_dir when
        # cpu_set_reserved_ttbr0() moved to it (eras.CPU.reserved_ttbr0)
        s["reserved_pg_dir" if CPU(k).reserved_ttbr0 == "reserved_pg_dir" else "reserved_ttbr0"] = reserved_ttbr0
    s["max_pfn"] = ram_end >> PAGE_SHIFT
    s["min_low_pfn"] = ram_start >> PAGE_SHIFT
    s["max_low_pfn"] = ram_end >> PAGE_SHIFT  # arm64 bootmem_init(): max_low_pfn = max_pfn (no HighMem)

    regions = fill_holes(regions, ADDRESS_SPACE_END, "arm64")
    paging = "39-bit" if VA == 39 else "48-bit"
    layout = Layout(arch="arm64", kernel=k, paging=paging, symbols=symbols, regions=regions, zones=zones,
                    memory_map=memory_map, image=image, config=config, fixmap=fixmap, reserved=reserved)
    layout.check()
    return layout


def zones_for(k: KernelVersion, start_pfn: int, end_pfn: int) -> list[ZoneSpan]:
    """arch/arm64/mm/init.c zone_sizes_init() of the era, for RAM [start_pfn, end_pfn):

    - 3.7-3.14: ``max_dma32 = max(min, min(max, MAX_DMA32_PFN))`` -- ZONE_DMA32 below 4 GiB;
    - 3.15-5.4: ``max_zone_dma_phys()`` = min(offset + 4 GiB, end of DRAM), offset = start &
      GENMASK(63, 32) -- ZONE_DMA below 4 GiB;
    - 5.5-5.10: ZONE_DMA = max_zone_phys(30) (offset = start & GENMASK(63, 30): with RAM at
      1 GiB, [1 GiB, 2 GiB)), ZONE_DMA32 = max_zone_phys(32);
    - 5.11+: zone_dma_bits = min(32, the device tree's dma-ranges limit): QEMU virt has no
      dma-ranges, so 32: ZONE_DMA below 4 GiB, ZONE_DMA32 empty.
    Empty zones are left out."""
    era = ARM64(k)
    four_g = (1 << 32) >> PAGE_SHIFT

    def max_zone(bits: int) -> int:
        offset = (start_pfn << PAGE_SHIFT) & ~((1 << bits) - 1)
        return min((offset + (1 << bits)) >> PAGE_SHIFT, end_pfn)

    if era.zones == "dma32":
        bounds = [("DMA32", max(start_pfn, min(end_pfn, four_g)))]
    elif era.zones in ("dma-4g", "dma-dt"):
        bounds = [("DMA", max_zone(32))]
    else:
        bounds = [("DMA", max_zone(30)), ("DMA32", max_zone(32))]
    bounds.append(("Normal", end_pfn))
    return zone_spans(bounds, start_pfn, end_pfn)
