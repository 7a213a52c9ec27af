"""The x86_64 kernel virtual memory layout, 4-level and 5-level (LA57), per kernel era.

Every value comes from the kernel's own headers of the era (the comment next to it names the
file and the releases), shown without KASLR: ``CONFIG_RANDOMIZE_BASE`` and
``CONFIG_RANDOMIZE_MEMORY`` off, so ``page_offset_base``, ``vmalloc_base`` and
``vmemmap_base`` keep their compile-time defaults.

The eras, and where each boundary comes from:

=============  ===================================================================================
2.6.12         4-level layout of 2.6.11 (include/asm-x86_64/page.h, pgtable.h):
               PAGE_OFFSET 0xffff810000000000, vmalloc 0xffffc20000000000, modules at
               0xffffffff88000000 after a 40 MB kernel text mapping, MAXMEM 0x3fffffffffff.
2.6.15         ZONE_DMA32 ([16 MiB, 4 GiB)).
2.6.22         relocatable x86_64 kernel: CONFIG_PHYSICAL_START 0x200000 (from recollection;
               2.6.24's page_64.h requires it 2 MiB aligned), was 0x100000.
2.6.24         SPARSEMEM_VMEMMAP: VMEMMAP_START 0xffffe20000000000 (Documentation/x86_64/mm.txt).
2.6.25         KERNEL_IMAGE_SIZE 512 MiB, MODULES_VADDR 0xffffffffa0000000 (include/asm-x86/
               pgtable_64.h of 2.6.25, the release of cleanup_highmap()).
2.6.27         hypervisor hole: PAGE_OFFSET 0xffff880000000000; MODULES_END 0xffffffffff000000
               ("x86-64: fix overlap of modules and fixmap areas", a 2.6.27-rc fix also taken
               into Fedora's 2.6.26.3); MAXMEM 1 << MAX_PHYSMEM_BITS (44); max_low_pfn from the
               e820 map below 4 GiB while the direct map is built (the merged
               arch/x86/kernel/setup.c), max_pfn = e820_end_of_ram_pfn(), mem= removing the RAM
               above its address from the e820 map (e820.c e820_remove_range; before, mem= only
               capped end_pfn through end_user_pfn). libkdumpfile's x86_64 layout table dates the
               PAGE_OFFSET move to 2.6.27 as well.
2.6.31         "x86: 46 bit PAE support" (Rik van Riel, May 2009): MAX_PHYSMEM_BITS 46, vmalloc
               0xffffc90000000000-0xffffe8ffffffffff, VMEMMAP_START 0xffffea0000000000;
               CONFIG_PHYSICAL_START 0x1000000 (from recollection).
2.6.33         .rodata and .data 2 MiB aligned (vmlinux.lds.S X64_ALIGN_RODATA_BEGIN/END; the
               release is from recollection, 3.10 certainly has it).
3.14           EFI runtime services region EFI_VA_END..EFI_VA_START (libkdumpfile: "3.14+").
3.16           %esp fixup stacks (ESPFIX_BASE_ADDR); FIXADDR_TOP moves to 0xffffffffff7ff000 and
               the vsyscall area shrinks to the one page VSYSCALL_PAGE (see fixmap.py).
4.12           MODULES_END = __fix_to_virt(__end_of_fixed_addresses + 1) ("x86/mm: Adapt
               MODULES_END based on fixmap section size", in tip/x86/mm in March 2017).
4.14           5-level paging, compile-time only (CONFIG_X86_5LEVEL): PAGE_OFFSET
               0xff10000000000000, vmalloc 0xff92000000000000 (16384 TB), vmemmap
               0xffd4000000000000, MAX_PHYSMEM_BITS 52.
4.15           PTI: cpu_entry_area at PGD -4, LDT remap at PGD -3 (4-level) / -112 (5-level);
               5-level vmalloc 0xffa0000000000000 (12800 TB); MODULES_END back to
               0xffffffffff000000 with BUILD_BUG_ON(__fix_to_virt(__end_of_fixed_addresses) <=
               MODULES_END) ("x86/mm: Set MODULES_END to 0xffffffffff000000", 4.15-rc6).
4.17           boot-time 4/5-level switching: __PAGE_OFFSET_BASE_L4/_L5, the ``no5lvl``
               parameter (arch/x86/boot/compressed/pgtable_64.c: paging_prepare()).
4.20           LDT remap at PGD -240, before the direct map: PAGE_OFFSET 0xffff888000000000
               (4-level) / 0xff11000000000000 (5-level) (Documentation/x86/x86_64/mm.txt of 4.20,
               then mm.rst).
5.1, 6.6       the 4.20 layout; only fixmap entries change (FIX_TEXT_POKE0/1 leave in 5.2, see
               fixmap.py).
=============  ===================================================================================

Regions cover the whole 64-bit space, sorted and half-open. The non-canonical hole is a
region of its own (kind ``non-canonical``), between user space and the first kernel address,
as in mm.rst. Every gap between the kernel's named areas is an ``... unused hole`` region.
KASAN/KMSAN shadows are not modelled (``CONFIG_KASAN`` off): their area is unused hole.
"""

from __future__ import annotations

from typing import Mapping

from mmemu_x86.e820 import clip_ram, pc_e820, range_remove_ram
from mmemu_x86.e820 import end_pfn as e820_end_pfn
from mmemu_x86.e820 import max_pfn as e820_max_pfn

from mmemu.errors import ConfigError
from mmemu.layout import ImageSection, Layout, MachineSpec, Region, ZoneSpan, fill_holes, zone_spans
from mmemu.units import GiB, KernelVersion, MiB, TiB, format_size, parse_count

from .fixmap import MASK64, PAGE_SHIFT, PAGE_SIZE, VSYSCALL_ADDR, VSYSCALL_END, VSYSCALL_START, compute_fixmap

ADDRESS_SPACE_END = 1 << 64


def _neg(n: int) -> int:
    """A negative C ``unsigned long`` constant as the 64-bit address it is."""
    return n & MASK64


# arch/x86/include/asm/page_64_types.h (all eras; include/asm-x86_64/page.h in 2.6.12):
#   #define __START_KERNEL_map _AC(0xffffffff80000000, UL)
START_KERNEL_MAP = 0xFFFFFFFF80000000

# arch/x86/include/asm/pgtable_64_types.h: PGDIR_SHIFT 39 (4-level) / 48 (5-level); P4D_SHIFT 39
PGDIR_SHIFT_L4 = 39
PGDIR_SHIFT_L5 = 48
P4D_SHIFT = 39

# arch/x86/include/asm/dma.h: MAX_DMA_PFN ((16UL * 1024 * 1024) >> PAGE_SHIFT),
#                             MAX_DMA32_PFN (1UL << (32 - PAGE_SHIFT))
MAX_DMA_PFN = (16 * MiB) >> PAGE_SHIFT
MAX_DMA32_PFN = 1 << (32 - PAGE_SHIFT)

# arch/x86/Kconfig (4.18+): NR_CPUS_RANGE_END is 8192 with CONFIG_MAXSMP; no era allows more.
NR_CPUS_MAX = 8192

#: Last minor release of each major that has one (4.20, 5.19...); 6.x is open.
_LAST_MINOR = {3: 19, 4: 20, 5: 19}
SUPPORTED = "2.6.12-2.6.39, 3.0-3.19, 4.0-4.20, 5.0-5.19 and 6.x"

#: Kernel configuration options whose value a caller may change (``config_overrides``): each
#: one only switches fixmap entries or regions this module models.
OVERRIDABLE = ("CONFIG_PARAVIRT", "CONFIG_PARAVIRT_XXL", "CONFIG_PARAVIRT_CLOCK", "CONFIG_ACPI",
               "CONFIG_ACPI_APEI_GHES", "CONFIG_PROVIDE_OHCI1394_DMA_INIT", "CONFIG_INTEL_TXT",
               "CONFIG_X86_VSYSCALL_EMULATION")


def check_kernel(kernel: KernelVersion) -> None:
    """ConfigError unless *kernel* is a release this module has a layout for."""
    k = kernel
    ok = ((k.major == 2 and k.minor == 6 and 12 <= k.patch <= 39)
          or (k.major in _LAST_MINOR and k.minor <= _LAST_MINOR[k.major])
          or k.major == 6)
    if not ok:
        raise ConfigError(f"x86_64: no layout for kernel {k}; supported: {SUPPORTED}")


def _nr_cpus(spec: MachineSpec) -> int:
    """CONFIG_NR_CPUS: ``--option NR_CPUS=N`` (a Kconfig int: decimal, ASCII), else the CPU
    count; either way at least the CPUs asked for and at most :data:`NR_CPUS_MAX`."""
    if spec.cpus > NR_CPUS_MAX:
        raise ConfigError(f"CPU count {spec.cpus} is more than x86_64 allows: NR_CPUS is at most {NR_CPUS_MAX} "
                          f"(CONFIG_MAXSMP, arch/x86/Kconfig)")
    raw = spec.options.get("NR_CPUS")
    if raw is None:
        return spec.cpus
    n = parse_count(raw, what="option NR_CPUS")
    if n < spec.cpus:
        raise ConfigError(f"NR_CPUS={n} is smaller than the {spec.cpus} CPUs asked for")
    if n > NR_CPUS_MAX:
        raise ConfigError(f"NR_CPUS={n} is more than x86_64 allows ({NR_CPUS_MAX}, CONFIG_MAXSMP)")
    return n


def _bool(name: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("y", "yes", "1", "true", "on"):
        return True
    if text in ("n", "no", "0", "false", "off"):
        return False
    raise ConfigError(f"{name}={value!r}: expected y or n")


def _config(k: KernelVersion, levels: int, nr_cpus: int,
            overrides: Mapping[str, object] | None) -> dict[str, object]:
    """The compile-time configuration the layout assumes: an x86_64_defconfig-like kernel,
    without KASLR (the emulator shows the non-randomised layout), with the options that add
    fixmap slots for hardware the emulated PC does not have left off."""
    c: dict[str, object] = {"CONFIG_X86_64": True}
    if k >= "4.14":
        # arch/x86/Kconfig (4.14+): config X86_5LEVEL. --option levels=5 means a kernel built
        # with it, on a CPU with LA57.
        c["CONFIG_X86_5LEVEL"] = levels == 5
    c["NR_CPUS"] = nr_cpus
    c["CONFIG_SMP"] = True
    if k >= "3.14":
        c["CONFIG_RANDOMIZE_BASE"] = False  # KASLR of the kernel image (3.14+)
    if k >= "4.8":
        c["CONFIG_RANDOMIZE_MEMORY"] = False  # KASLR of page_offset_base etc. (4.8+)
    if k >= "4.0":
        c["CONFIG_KASAN"] = False
    if k >= "6.1":
        c["CONFIG_KMSAN"] = False
    if k >= "4.15":
        c["CONFIG_PAGE_TABLE_ISOLATION"] = True  # default y: the LDT remap exists
    c["CONFIG_ZONE_DMA"] = True
    if k >= "2.6.15":
        c["CONFIG_ZONE_DMA32"] = True
    if k >= "2.6.24":
        c["CONFIG_SPARSEMEM_VMEMMAP"] = True
    if k >= "2.6.27":
        # arch/x86/Kconfig: config DIRECT_GBPAGES, default y: 1 GiB pages for the direct map
        c["CONFIG_DIRECT_GBPAGES"] = True
    if k >= "3.14":
        c["CONFIG_EFI"] = True  # the EFI runtime region exists
    if k >= "3.16":
        c["CONFIG_X86_ESPFIX64"] = True
    if k >= "4.2":
        c["CONFIG_X86_VSYSCALL_EMULATION"] = True  # arch/x86/Kconfig (4.2+): default y
    # W^X kernel image: CONFIG_DEBUG_RODATA (renamed CONFIG_STRICT_KERNEL_RWX in 4.11)
    c["CONFIG_STRICT_KERNEL_RWX" if k >= "4.11" else "CONFIG_DEBUG_RODATA"] = True
    if k >= "2.6.20":
        c["CONFIG_PHYSICAL_START"] = _physical_start(k)  # the option exists by 2.6.20 (page.h)
    # fixmap conditions (fixmap.py)
    c.update({
        "CONFIG_X86_LOCAL_APIC": True, "CONFIG_X86_IO_APIC": True, "CONFIG_ACPI": True, "CONFIG_PCI_MMCONFIG": True,
        "CONFIG_PARAVIRT": False, "CONFIG_PARAVIRT_CLOCK": False, "CONFIG_ACPI_APEI_GHES": False,
        "CONFIG_PROVIDE_OHCI1394_DMA_INIT": False, "CONFIG_INTEL_TXT": False, "CONFIG_X86_INTEL_MID": False,
    })
    if k >= "4.20":
        c["CONFIG_PARAVIRT_XXL"] = False  # selected by XEN_PV only
    if k >= "5.11":
        c["CONFIG_KMAP_LOCAL"] = False  # on x86_64 only with CONFIG_DEBUG_KMAP_LOCAL_FORCE_MAP
        c["CONFIG_DEBUG_KMAP_LOCAL_FORCE_MAP"] = False
    for name, value in (overrides or {}).items():
        if name not in OVERRIDABLE:
            raise ConfigError(f"x86_64: {name} cannot be changed; these can: {', '.join(OVERRIDABLE)}")
        if name not in c:
            raise ConfigError(f"x86_64: kernel {k} has no {name}")
        c[name] = _bool(name, value)
    return c


def _physical_start(k: KernelVersion) -> int:
    """LOAD_PHYSICAL_ADDR: where the kernel image starts in physical memory."""
    if k < "2.6.22":
        # include/asm-x86_64/page.h (2.6.11): #define __START_KERNEL 0xffffffff80100000 (phys 1 MiB);
        # by 2.6.20 the same file has __START_KERNEL (__START_KERNEL_map + CONFIG_PHYSICAL_START),
        # whose default stayed 0x100000 until the relocatable kernel (default assumed, not re-checked)
        return 0x100000
    if k < "2.6.31":
        # arch/x86/Kconfig (2.6.24 .. 2.6.30): config PHYSICAL_START default "0x200000" if X86_64;
        # include/asm-x86/page_64.h (2.6.24): "#error CONFIG_PHYSICAL_START must be a multiple of 2MB".
        # From 2.6.22 (x86_64 relocatable kernel; release from recollection).
        return 0x200000
    # arch/x86/Kconfig (2.6.31+): config PHYSICAL_START default "0x1000000";
    # arch/x86/include/asm/boot.h: LOAD_PHYSICAL_ADDR = ALIGN(CONFIG_PHYSICAL_START, CONFIG_PHYSICAL_ALIGN)
    return 0x1000000


def _image_sizes(k: KernelVersion) -> tuple[int, int, int, int]:
    """Representative sizes (text, rodata, data, bss) of a defconfig vmlinux of the era,
    page multiples. Real sizes depend on the configuration; only their order of magnitude
    matters to the layout (where the image ends, how many 2 MiB pages it spans)."""
    if k < "2.6.25":
        return 0x260000, 0xA0000, 0x80000, 0x90000
    if k < "4.0":
        return 0x600000, 0x200000, 0x140000, 0x160000
    if k < "5.0":
        return 0xA00000, 0x400000, 0x200000, 0x300000
    return 0xE00000, 0x600000, 0x280000, 0x400000


def _align(x: int, a: int) -> int:
    return (x + a - 1) // a * a


def compute_layout_64(spec: MachineSpec, levels: int,
                      config_overrides: Mapping[str, object] | None = None) -> Layout:
    """The x86_64 memory map of *spec* with *levels* (4, or 5 for LA57) of page tables.

    ``levels=5`` stands for a kernel built with ``CONFIG_X86_5LEVEL`` on a CPU with LA57;
    from 4.17 the ``no5lvl`` command-line word makes such a kernel boot 4-level (before 4.17
    the kernel does not know the word and ignores it). ``spec.options["NR_CPUS"]`` is
    CONFIG_NR_CPUS (default: ``spec.cpus``). *config_overrides* changes one of
    :data:`OVERRIDABLE` (``{"CONFIG_PARAVIRT": "y"}``)."""
    k = spec.kernel
    check_kernel(k)
    if levels not in (4, 5):
        raise ConfigError(f"x86_64 has 4- or 5-level page tables, not {levels}")
    if levels == 5 and k < "4.14":
        raise ConfigError(f"kernel {k} has no 5-level paging: LA57 support (CONFIG_X86_5LEVEL) came in 4.14")
    # arch/x86/boot/compressed/pgtable_64.c (4.17+): l5_required unless cmdline_find_option_bool("no5lvl")
    l5 = levels == 5 and not (k >= "4.17" and "no5lvl" in spec.cmdline)
    nr_cpus = _nr_cpus(spec)
    config = _config(k, levels, nr_cpus, config_overrides)

    symbols: dict[str, int] = {}
    regions: list[Region] = []

    def region(name: str, start: int, end: int, kind: str) -> None:
        regions.append(Region(name, start, end, kind))

    # ---- user space and the non-canonical hole --------------------------------------------
    # arch/x86/include/asm/page_64_types.h (4.14+): __VIRTUAL_MASK_SHIFT (pgtable_l5_enabled() ? 56 : 47),
    #   #define TASK_SIZE_MAX ((_AC(1,UL) << __VIRTUAL_MASK_SHIFT) - PAGE_SIZE)
    # include/asm-x86_64/processor.h (2.6.12): #define TASK_SIZE (0x800000000000UL - 4096)
    #   ("47bits minus one guard page"; TASK_SIZE64 from 2.6.2x)
    user_top = 1 << (56 if l5 else 47)
    task_size_max = user_top - PAGE_SIZE
    kernel_base = ADDRESS_SPACE_END - user_top  # 0xffff800000000000 / 0xff00000000000000
    region("user-space virtual memory, different per mm", 0, task_size_max, "user")
    region("top page of user space, never mapped (TASK_SIZE_MAX stops one page short)", task_size_max, user_top,
           "guard")
    region("... non-canonical hole (sign extension of bit %d)" % (56 if l5 else 47), user_top, kernel_base,
           "non-canonical")

    # ---- direct mapping, guard hole, LDT remap ---------------------------------------------
    ldt_base: int | None = None
    if l5:
        # Documentation/x86/x86_64/mm.txt (4.14 .. 4.19), mm.rst (4.20+):
        #   ff00000000000000 - ff0fffffffffffff (=52 bits) guard hole, reserved for hypervisor
        guard = (0xFF00000000000000, 0xFF10000000000000)
        if k >= "4.20":
            # arch/x86/include/asm/page_64_types.h (4.20+): __PAGE_OFFSET_BASE_L5 _AC(0xff11000000000000, UL)
            page_offset = 0xFF11000000000000
            # arch/x86/include/asm/pgtable_64_types.h (4.20+): #define LDT_PGD_ENTRY -240UL
            ldt_base = _neg(-240 << PGDIR_SHIFT_L5)
        else:
            # page_64_types.h (4.14 .. 4.19): __PAGE_OFFSET_BASE(_L5) _AC(0xff10000000000000, UL)
            page_offset = 0xFF10000000000000
            if k >= "4.15":
                # pgtable_64_types.h (4.15 .. 4.19): LDT_PGD_ENTRY(_L5) -112UL
                ldt_base = _neg(-112 << PGDIR_SHIFT_L5)
        # mm.txt (4.14+): ff10000000000000 - ff8fffffffffffff (=55 bits) direct mapping of all phys. memory
        direct_end = page_offset + (1 << 55)
        guard_name = "... guard hole, also reserved for hypervisor"
    else:
        if k < "2.6.27":
            # include/asm-x86_64/page.h (2.6.11 .. 2.6.26): #define __PAGE_OFFSET 0xffff810000000000
            # Documentation/x86_64/mm.txt (2.6.11): ffff800000000000 - ffff80ffffffffff (=40bits) guard hole
            #   ffff810000000000 - ffffc0ffffffffff (=46bits) direct mapping of phys. memory
            guard = (0xFFFF800000000000, 0xFFFF810000000000)
            page_offset = 0xFFFF810000000000
            direct_end = 0xFFFFC10000000000
            guard_name = "... guard hole"
        else:
            # arch/x86/include/asm/page_64_types.h (2.6.27 .. 4.19): "Set __PAGE_OFFSET to the most
            # negative possible address + PGDIR_SIZE*16 (pgd slot 272). The gap is to allow a space
            # for a hypervisor to fit." #define __PAGE_OFFSET _AC(0xffff880000000000, UL)
            guard = (0xFFFF800000000000, 0xFFFF880000000000)
            guard_name = "... guard hole, also reserved for hypervisor"
            if k < "2.6.31":
                # Documentation/x86/x86_64/mm.txt (2.6.27 .. 2.6.30):
                #   ffff880000000000 - ffffc0ffffffffff (=57 TB) direct mapping of all phys. memory
                page_offset = 0xFFFF880000000000
                direct_end = 0xFFFFC10000000000
            elif k < "4.20":
                # mm.txt (2.6.31 .. 4.19): ffff880000000000 - ffffc7ffffffffff (=64 TB) direct mapping
                page_offset = 0xFFFF880000000000
                direct_end = page_offset + 64 * TiB
                if k >= "4.15":
                    # pgtable_64_types.h (4.15 .. 4.19): LDT_PGD_ENTRY(_L4) -3UL
                    ldt_base = _neg(-3 << PGDIR_SHIFT_L4)
            else:
                # page_64_types.h (4.20+): "Set __PAGE_OFFSET to the most negative possible address +
                # PGDIR_SIZE*17 (pgd slot 273). The gap is to allow a space for LDT remap for PTI
                # (1 pgd slot) and space for a hypervisor (16 slots)."
                # #define __PAGE_OFFSET_BASE_L4 _AC(0xffff888000000000, UL)
                page_offset = 0xFFFF888000000000
                direct_end = page_offset + 64 * TiB
                ldt_base = _neg(-240 << PGDIR_SHIFT_L4)  # pgtable_64_types.h (4.20+): LDT_PGD_ENTRY -240UL
    region(guard_name, *guard, "guard")
    region("direct mapping of all physical memory (page_offset_base)", page_offset, direct_end, "direct")
    if ldt_base is not None:
        # pgtable_64_types.h (4.15+): #define LDT_END_ADDR (LDT_BASE_ADDR + PGDIR_SIZE)
        region("LDT remap for PTI", ldt_base, ldt_base + (1 << (PGDIR_SHIFT_L5 if l5 else PGDIR_SHIFT_L4)), "ldt")

    # ---- vmalloc, vmemmap ------------------------------------------------------------------
    if l5:
        if k < "4.15":
            # pgtable_64_types.h (4.14): VMALLOC_SIZE_TB _AC(16384, UL), __VMALLOC_BASE _AC(0xff92000000000000, UL)
            vmalloc_start, vmalloc_size = 0xFF92000000000000, 16384 * TiB
        else:
            # pgtable_64_types.h (4.15+): __VMALLOC_BASE(_L5) 0xffa0000000000000, VMALLOC_SIZE_TB(_L5) 12800
            vmalloc_start, vmalloc_size = 0xFFA0000000000000, 12800 * TiB
        # #define VMALLOC_END (VMALLOC_START + (VMALLOC_SIZE_TB << 40) - 1)
        vmalloc_end = vmalloc_start + vmalloc_size - 1
    elif k < "2.6.31":
        # include/asm-x86_64/pgtable.h (2.6.12 .. 2.6.23), pgtable_64(_types).h (.. 2.6.30):
        #   #define VMALLOC_START 0xffffc20000000000UL   #define VMALLOC_END 0xffffe1ffffffffffUL
        vmalloc_start, vmalloc_end = 0xFFFFC20000000000, 0xFFFFE1FFFFFFFFFF
    else:
        # pgtable_64_types.h (2.6.31+): VMALLOC_START 0xffffc90000000000, VMALLOC_END 0xffffe8ffffffffff
        # (4.8+: __VMALLOC_BASE(_L4) 0xffffc90000000000, VMALLOC_SIZE_TB(_L4) 32)
        vmalloc_start = 0xFFFFC90000000000
        vmalloc_end = vmalloc_start + 32 * TiB - 1
    region("vmalloc/ioremap space (vmalloc_base)", vmalloc_start, vmalloc_end + 1, "vmalloc")

    vmemmap_start: int | None = None
    if k >= "2.6.24":
        if l5:
            # pgtable_64_types.h (4.14+): __VMEMMAP_BASE(_L5) 0xffd4000000000000;
            # mm.txt/mm.rst: ffd4000000000000 - ffd5ffffffffffff (=49 bits) virtual memory map (512TB)
            vmemmap_start, vmemmap_size = 0xFFD4000000000000, 512 * TiB
        else:
            # pgtable_64.h (2.6.24 .. 2.6.30): #define VMEMMAP_START _AC(0xffffe20000000000, UL)
            # pgtable_64_types.h (2.6.31+): VMEMMAP_START / __VMEMMAP_BASE(_L4) 0xffffea0000000000
            # mm.txt: ... (=40 bits) virtual memory map (1TB)
            vmemmap_start = 0xFFFFE20000000000 if k < "2.6.31" else 0xFFFFEA0000000000
            vmemmap_size = 1 * TiB
        region("virtual memory map (vmemmap_base)", vmemmap_start, vmemmap_start + vmemmap_size, "vmemmap")

    # ---- the top 512 GB slots: cpu_entry_area, %esp fixup stacks, EFI ---------------------
    cea_base = espfix_base = None
    if k >= "4.15":
        # pgtable_64_types.h (4.15+): CPU_ENTRY_AREA_PGD _AC(-4, UL),
        #   #define CPU_ENTRY_AREA_BASE (CPU_ENTRY_AREA_PGD << P4D_SHIFT); one P4D slot, 0.5 TB
        cea_base = _neg(-4 << P4D_SHIFT)
        region("cpu_entry_area mapping", cea_base, cea_base + (1 << P4D_SHIFT), "cpu-entry-area")
    if k >= "3.16":
        # pgtable_64_types.h (3.16+): ESPFIX_PGD_ENTRY _AC(-2, UL),
        #   #define ESPFIX_BASE_ADDR (ESPFIX_PGD_ENTRY << PGDIR_SHIFT) (<< P4D_SHIFT from 4.12)
        espfix_base = _neg(-2 << P4D_SHIFT)
        region("%esp fixup stacks", espfix_base, espfix_base + (1 << P4D_SHIFT), "espfix")
    efi_va_start = efi_va_end = None
    if k >= "3.14":
        # arch/x86/include/asm/efi.h (3.14), pgtable_64_types.h (4.x+):
        #   #define EFI_VA_START ( -4 * (_AC(1, UL) << 30))   #define EFI_VA_END (-68 * (_AC(1, UL) << 30))
        efi_va_start, efi_va_end = _neg(-4 * GiB), _neg(-68 * GiB)
        region("EFI region mapping space", efi_va_end, efi_va_start, "efi")

    # ---- kernel text mapping, modules, fixmap, vsyscall ------------------------------------
    if k < "2.6.25":
        # include/asm-x86_64/page.h (2.6.11 .. 2.6.24): #define KERNEL_TEXT_SIZE (40*1024*1024)
        image_size_name, kernel_image_size = "KERNEL_TEXT_SIZE", 40 * MiB
        # include/asm-x86_64/pgtable.h (2.6.12 .. 2.6.24): #define MODULES_VADDR 0xffffffff88000000
        modules_vaddr = 0xFFFFFFFF88000000
    else:
        # page_64_types.h (2.6.25+): #define KERNEL_IMAGE_SIZE (512 * 1024 * 1024)
        # (1 GiB with CONFIG_RANDOMIZE_BASE, off here)
        image_size_name, kernel_image_size = "KERNEL_IMAGE_SIZE", 512 * MiB
        # pgtable_64.h (2.6.25): MODULES_VADDR _AC(0xffffffffa0000000, UL);
        # later #define MODULES_VADDR (__START_KERNEL_map + KERNEL_IMAGE_SIZE): the same value
        modules_vaddr = START_KERNEL_MAP + kernel_image_size
    region("kernel text mapping, mapped to physical address 0", START_KERNEL_MAP,
           START_KERNEL_MAP + kernel_image_size, "kernel-text")

    fix_config = dict(config)
    if k < "4.2":
        fix_config["CONFIG_X86_VSYSCALL_EMULATION"] = True  # no #ifdef before 4.2: always there
    fm = compute_fixmap(k, fix_config, nr_cpus)
    fixaddr_start = fm.start
    # the lowest fixmap page: the last enum slot (boot-time slots, FIX_TBOOT_BASE) or FIXADDR_START
    fixmap_low = min(fixaddr_start, fm.virt(fm.end - 1))
    # where the boot-time slots end (FIX_BTMAP_END, rounded up to a page table: the indices between
    # __end_of_permanent_fixed_addresses and FIX_BTMAP_END are never used)
    boot = fm.boot_slots()
    boot_top = min(fm.virt(boot[0]) + PAGE_SIZE, fixaddr_start) if boot else fixaddr_start

    if k < "2.6.27":
        # include/asm-x86_64/pgtable.h (2.6.12 .. 2.6.26): #define MODULES_END 0xfffffffffff00000UL,
        # past the fixmap and the vsyscall area: the module area really overlapped them until
        # "x86-64: fix overlap of modules and fixmap areas" (2.6.27). The region stops at the fixmap.
        modules_end = 0xFFFFFFFFFFF00000
        modules_region_end = fixmap_low
    elif k >= "4.12" and k < "4.15":
        # pgtable_64_types.h (4.12 .. 4.14): "The module sections ends with the start of the fixmap"
        #   #define MODULES_END __fix_to_virt(__end_of_fixed_addresses + 1)
        modules_end = fm.virt(fm.end + 1)
        modules_region_end = modules_end
    else:
        # pgtable_64_types.h (2.6.27 .. 4.11, 4.15+): #define MODULES_END _AC(0xffffffffff000000, UL)
        modules_end = 0xFFFFFFFFFF000000
        modules_region_end = modules_end
        if fixmap_low < modules_end:
            # arch/x86/kernel/head64.c (4.15+):
            #   BUILD_BUG_ON(__fix_to_virt(__end_of_fixed_addresses) <= MODULES_END);
            raise ConfigError(f"x86_64 kernel {k}: with NR_CPUS={nr_cpus} the fixmap starts at {fixmap_low:#x}, "
                              f"inside the module area (MODULES_END {modules_end:#x}); the kernel would not build")
    region("module mapping space", modules_vaddr, modules_region_end, "modules")

    vsyscall = fm.vsyscall_indices()
    if fm.era.top == "vsyscall_end":
        # Documentation/x86/x86_64/mm.txt (.. 3.15): ffffffffff600000 - ffffffffffdfffff (=8 MB) vsyscalls
        fixmap_top = VSYSCALL_START
        region("vsyscalls", VSYSCALL_START, VSYSCALL_END, "vsyscall")
    elif vsyscall:
        # mm.rst: ffffffffff600000 - ffffffffff600fff (=4 kB) legacy vsyscall ABI
        fixmap_top = fm.virt(vsyscall[0])
        region("legacy vsyscall ABI", fixmap_top, fixmap_top + PAGE_SIZE, "vsyscall")
    else:
        fixmap_top = fm.top + PAGE_SIZE  # no VSYSCALL_PAGE: index 0 (at FIXADDR_TOP) is used
    region("kernel-internal fixmap range", fixaddr_start, fixmap_top, "fixmap")
    if fixmap_low < boot_top:
        region("fixmap boot-time slots (early_ioremap)", fixmap_low, boot_top, "fixmap")
    if fm.era.top == "round_up":
        # mm.rst: ffffffffffe00000 - ffffffffffffffff (2 MB) ... unused hole: split the space above
        # the fixmap as the table does (FIXADDR_TOP + PAGE_SIZE is 0xffffffffff800000, below it)
        region("... unused hole", 0xFFFFFFFFFFE00000, ADDRESS_SPACE_END, "hole")

    regions = fill_holes(regions, ADDRESS_SPACE_END, "x86_64")

    # ---- physical memory: e820, mem=, max_pfn, zones ---------------------------------------
    if k < "2.6.27":
        # include/asm-x86_64/pgtable.h (2.6.12 .. 2.6.26): #define MAXMEM 0x3fffffffffffUL
        maxmem, physmem_bits = 0x3FFFFFFFFFFF, None
        ram_limit = maxmem + 1
    else:
        # pgtable_64_types.h: #define MAXMEM (1UL << MAX_PHYSMEM_BITS); arch/x86/include/asm/sparsemem.h:
        #   MAX_PHYSMEM_BITS 44 (2.6.27 .. 2.6.30), 46 (2.6.31+), (pgtable_l5_enabled() ? 52 : 46) (4.14+)
        physmem_bits = 52 if l5 else (44 if k < "2.6.31" else 46)
        maxmem = 1 << physmem_bits
        ram_limit = maxmem
    paging = "5-level" if l5 else "4-level"
    if spec.ram > ram_limit:
        raise ConfigError(f"RAM size {format_size(spec.ram)} is more than x86_64 kernel {k} with {paging} paging "
                          f"can use: MAXMEM is {format_size(ram_limit)}")

    mem_limit = spec.cmdline.size("mem")
    if mem_limit is not None and mem_limit < PAGE_SIZE:
        raise ConfigError(f"mem={spec.cmdline['mem']} leaves no memory")
    # The firmware's map (mmemu_x86.e820: QEMU's pc machine, RAM from 3 GiB on relocated above 4 GiB
    # once it reaches 3.5 GiB), then mem= and max_pfn as the era computes them.
    memory_map = pc_e820(spec.ram)
    if k < "2.6.27":
        # arch/x86_64/kernel/e820.c (2.6.12 .. 2.6.26): parse_memopt() only sets end_user_pfn = memparse(p)
        # >> PAGE_SHIFT, the map stays whole; e820_end_of_ram(): end_pfn = the end of the last RAM entry,
        # end_pfn_map = the end of the last entry of any type, "if (end_pfn_map > MAXMEM>>PAGE_SHIFT)
        # end_pfn_map = MAXMEM>>PAGE_SHIFT; if (end_pfn > end_user_pfn) end_pfn = end_user_pfn;
        # if (end_pfn > end_pfn_map) end_pfn = end_pfn_map;" -- mem= caps the highest address, even in a hole
        max_pfn = min(e820_max_pfn(memory_map), maxmem >> PAGE_SHIFT)
        if mem_limit is not None:
            max_pfn = min(max_pfn, mem_limit >> PAGE_SHIFT)
    else:
        # arch/x86/kernel/e820.c (2.6.27+): parse_memopt(): e820_remove_range(mem_size, ULLONG_MAX - mem_size,
        # E820_RAM, 1) (e820__range_remove since 4.12): the RAM from the address mem= up leaves the map
        if mem_limit is not None:
            memory_map = range_remove_ram(memory_map, mem_limit)
        # e820__end_of_ram_pfn() = e820_end_pfn(MAX_ARCH_PFN, E820_RAM), MAX_ARCH_PFN = MAXMEM>>PAGE_SHIFT
        max_pfn = e820_end_pfn(memory_map, maxmem >> PAGE_SHIFT, maxmem >> PAGE_SHIFT)
    # RAM above max_pfn (beyond MAXMEM, or above mem= before 2.6.27) is in no zone: the page allocator never
    # gets it, so the map mmemu boots from leaves it out
    memory_map = clip_ram(memory_map, max_pfn << PAGE_SHIFT)
    # max_low_pfn ends equal to max_pfn on x86_64 in every era:
    # - mm/bootmem.c (2.6.12): init_bootmem(start, end_pfn) sets max_low_pfn = end_pfn;
    #   arch/x86/kernel/setup_64.c (.. 2.6.26): max_low_pfn = end_pfn; max_pfn = end_pfn;
    # - arch/x86/kernel/setup.c (2.6.27+) first sets "if (max_pfn > (1UL<<(32 - PAGE_SHIFT))) max_low_pfn =
    #   e820_end_of_low_ram_pfn(); else max_low_pfn = max_pfn;" (the RAM below 4 GiB: 0xc0000 on a PC of
    #   3.5 GiB or more, whose RAM from 3 GiB on is above 4 GiB), maps [0, max_low_pfn) and [4G, max_pfn),
    #   then "if (max_pfn > max_low_pfn) { /* can we preseve max_low_pfn ?*/ max_low_pfn = max_pfn; }"
    #   (setup.c until 3.8, arch/x86/mm/init.c init_mem_mapping() 3.9+), before zone_sizes_init().
    #   e820_end_of_low_ram_pfn() lives on as max_low_pfn_mapped (add_pfn_range_mapped()), not modelled.
    max_low_pfn = max_pfn
    # setup.c / setup_64.c: high_memory = (void *)__va(max_pfn * PAGE_SIZE - 1) + 1;
    high_memory = page_offset + max_pfn * PAGE_SIZE

    zones = _zones(k, max_pfn)

    # ---- the kernel image -------------------------------------------------------------------
    load_phys = _physical_start(k)
    text, rodata, data, bss = _image_sizes(k)
    # arch/x86/kernel/vmlinux.lds.S (2.6.33+, CONFIG_DEBUG_RODATA / STRICT_KERNEL_RWX): on 64-bit
    # "align RODATA to 2MB so we retain large pages without breaking the kernel's W^X boundaries":
    #   #define X86_ALIGN_RODATA_BEGIN . = ALIGN(HPAGE_SIZE);  X86_ALIGN_RODATA_END . = ALIGN(HPAGE_SIZE);
    # Before, the sections are taken as page aligned (what page-granular permissions need).
    big = 2 * MiB if k >= "2.6.33" else PAGE_SIZE
    _text = START_KERNEL_MAP + load_phys
    _etext = _text + text
    start_rodata = _align(_etext, big)
    end_rodata = start_rodata + rodata
    _sdata = _align(end_rodata, big)
    _edata = _sdata + data
    bss_start = _align(_edata, PAGE_SIZE)
    bss_stop = bss_start + bss
    _end = _align(bss_stop, PAGE_SIZE)

    def section(name: str, start: int, end: int, writable: bool, executable: bool) -> ImageSection:
        return ImageSection(name, start, start - START_KERNEL_MAP, end - start, writable, executable)

    image = [section("text", _text, _etext, False, True), section("rodata", start_rodata, end_rodata, False, False),
             section("data", _sdata, _edata, True, False), section("bss", bss_start, bss_stop, True, False)]
    image_end_phys = _end - START_KERNEL_MAP
    if image_end_phys > max_pfn << PAGE_SHIFT:
        what = f"mem={spec.cmdline['mem']}" if mem_limit is not None and mem_limit < spec.ram else \
            f"RAM size {format_size(spec.ram)}"
        raise ConfigError(f"{what} leaves no room for the kernel image, which ends at physical "
                          f"{image_end_phys:#x} (kernel {k})")

    # ---- symbols, in the order a reader expects them -----------------------------------------
    s = symbols
    s["PAGE_OFFSET"] = page_offset
    if k >= "4.8" and k < "4.17":
        s["__PAGE_OFFSET_BASE"] = page_offset  # page_64_types.h (4.8 .. 4.16)
    elif k >= "4.17":
        # page_64_types.h (4.17 .. 4.19 / 4.20+)
        s["__PAGE_OFFSET_BASE_L4"] = 0xFFFF888000000000 if k >= "4.20" else 0xFFFF880000000000
        s["__PAGE_OFFSET_BASE_L5"] = 0xFF11000000000000 if k >= "4.20" else 0xFF10000000000000
    s["TASK_SIZE"] = task_size_max  # of a 64-bit task
    s["TASK_SIZE_MAX"] = task_size_max  # TASK_SIZE64 in 2.6.x processor.h
    if k >= "4.14":
        # page_64_types.h (4.14+): #define DEFAULT_MAP_WINDOW ((1UL << 47) - PAGE_SIZE)
        s["DEFAULT_MAP_WINDOW"] = (1 << 47) - PAGE_SIZE
    s["high_memory"] = high_memory
    s["max_pfn"] = max_pfn
    s["max_low_pfn"] = max_low_pfn
    s["MAXMEM"] = maxmem
    if physmem_bits is not None:
        s["MAX_PHYSMEM_BITS"] = physmem_bits
    s["VMALLOC_START"] = vmalloc_start
    s["VMALLOC_END"] = vmalloc_end
    if vmemmap_start is not None:
        s["VMEMMAP_START"] = vmemmap_start
    if ldt_base is not None:
        s["LDT_BASE_ADDR"] = ldt_base
    if cea_base is not None:
        s["CPU_ENTRY_AREA_BASE"] = cea_base
    if espfix_base is not None:
        s["ESPFIX_BASE_ADDR"] = espfix_base
    if efi_va_start is not None and efi_va_end is not None:
        s["EFI_VA_START"] = efi_va_start
        s["EFI_VA_END"] = efi_va_end
    s["__START_KERNEL_map"] = START_KERNEL_MAP
    if k >= "2.6.22":
        s["LOAD_PHYSICAL_ADDR"] = load_phys
    s["__START_KERNEL"] = START_KERNEL_MAP + load_phys
    s[image_size_name] = kernel_image_size
    s["_text"] = _text
    s["_etext"] = _etext
    s["__start_rodata"] = start_rodata
    s["__end_rodata"] = end_rodata
    s["_sdata"] = _sdata
    s["_edata"] = _edata
    s["__bss_start"] = bss_start
    s["__bss_stop"] = bss_stop
    s["_end"] = _end
    s["MODULES_VADDR"] = modules_vaddr
    s["MODULES_END"] = modules_end
    s["MODULES_LEN"] = modules_end - modules_vaddr
    s["FIXADDR_TOP"] = fm.top
    s["FIXADDR_START"] = fixaddr_start
    s["FIXADDR_SIZE"] = fm.size
    if fm.era.top == "vsyscall_end":
        s["VSYSCALL_START"] = VSYSCALL_START
        s["VSYSCALL_END"] = VSYSCALL_END
    # uapi/asm/vsyscall.h (3.16+): VSYSCALL_ADDR; before, the macro VSYSCALL_ADDR(0) (the same address)
    s["VSYSCALL_ADDR"] = VSYSCALL_ADDR

    layout = Layout(arch="x86_64", kernel=k, paging=paging, symbols=symbols, regions=regions, zones=zones,
                    memory_map=memory_map, image=image, config=config, fixmap=list(fm.enum))
    layout.check()
    return layout


def _zones(k: KernelVersion, max_pfn: int) -> list[ZoneSpan]:
    """ZONE_DMA below 16 MiB, ZONE_DMA32 below 4 GiB (2.6.15+: "x86_64: Add 4GB DMA32 zone"),
    ZONE_NORMAL above: arch/x86/mm/init.c zone_sizes_init(): max_zone_pfns[ZONE_DMA] =
    min(MAX_DMA_PFN, max_low_pfn); [ZONE_DMA32] = min(MAX_DMA32_PFN, max_low_pfn);
    [ZONE_NORMAL] = max_low_pfn (= max_pfn on x86_64). 2.6.12 (arch/x86_64/mm/init.c
    size_zones()): DMA below MAX_DMA_ADDRESS, the rest Normal. Empty zones are left out.

    Zones are spans of pfns, holes included: on a PC of 3.5 GiB or more DMA32 is [16 MiB, 4 GiB)
    although its RAM stops at 3 GiB, and Normal starts at 4 GiB (mm/page_alloc.c counts the
    span as ``spanned_pages`` and the RAM in it as ``present_pages``)."""
    bounds = [("DMA", MAX_DMA_PFN)]
    if k >= "2.6.15":
        bounds.append(("DMA32", MAX_DMA32_PFN))
    bounds.append(("Normal", max_pfn))
    return zone_spans(bounds, 0, max_pfn)
