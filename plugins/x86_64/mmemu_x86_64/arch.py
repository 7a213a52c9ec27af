"""The x86_64 arch: 4-level paging, or 5-level (LA57) with ``--option levels=5``."""

from __future__ import annotations

from mmemu_x86 import boot_maps, pti
from mmemu_x86.cpu import (
    CR0_KERNEL,
    EFER_LMA,
    EFER_LME,
    EFER_NXE,
    SEGMENTS_64,
    X86_CR4_LA57,
    X86_CR4_PAE,
    X86_CR4_PGE,
    X86_CR4_PSE,
    CpuSetup,
)
from mmemu_x86.mm import X86_MM, X86Arch
from mmemu_x86.pgtable_types import pgprots
from mmemu_x86.ptdump import X86PtdumpFormat, x86_ptdump_format
from mmemu_x86.ptdump_eras import X86_PTDUMP
from mmemu_x86.pti_init import pti_init
from mmemu_x86.x86_32 import NR_CPUS_OPTION, no_large_pages

from mmemu.arch import ArchOption, BootPlan, PagingMode
from mmemu.errors import ConfigError
from mmemu.layout import Layout, MachineSpec
from mmemu.units import GiB, KiB, MiB, format_size

from . import boot_areas
from .boot_areas import vmemmap_alloc
from .formats import PA_BITS, PAGING_4LEVEL, PAGING_5LEVEL
from .layout import compute_layout_64


def direct_map_ranges(rule: str, layout: Layout) -> tuple[tuple[int, int], ...] | None:
    """What x86_64's init_mem_mapping() maps of the PC's memory (X86_MM ``direct_map_64``):
    ``end_pfn_map``: every range the machine has memory in (None: the core's default; the
    MMIO hole, which no memory backs here, is left out); ``low_ram_and_above_4g``:
    [0, e820_end_of_low_ram_pfn) and [4G, max_pfn); ``e820_ram``: the usable ranges (the
    BIOS ROM below 4 GiB stays unmapped)."""
    usable = sorted((r.start, r.end) for r in layout.memory_map if r.type == "usable")
    if rule == "end_pfn_map":
        return None
    if rule == "low_ram_and_above_4g":
        four_g = 1 << 32
        low_end = max((min(e, four_g) for s, e in usable if s < four_g), default=0)
        end = layout.symbols["max_pfn"] << 12
        return ((0, low_end),) + (((four_g, end),) if end > four_g else ())
    return tuple(usable)


class X86_64Arch(X86Arch):
    name = "x86_64"
    summary = "x86_64, 4-level paging (or 5-level with --option levels=5); 4 KiB, 2 MiB and 1 GiB pages, NX"
    options = (
        ArchOption("levels", "paging levels: 4, or 5 for LA57 (kernels 4.14 and later)", choices=("4", "5"),
                   default="4"),
        NR_CPUS_OPTION,
    )
    pgprot = pgprots(PAGING_4LEVEL.codec.nx)
    elf_machine = "EM_X86_64"

    def _levels(self, spec: MachineSpec) -> int:
        return int(self.check_options(spec)["levels"])

    def paging(self, spec: MachineSpec) -> PagingMode:
        # the layout decides (an era without LA57, or no5lvl on the command line, is 4-level)
        return PAGING_5LEVEL if self.layout(spec).paging == "5-level" else PAGING_4LEVEL

    def layout(self, spec: MachineSpec) -> Layout:
        layout = compute_layout_64(spec, levels=self._levels(spec))
        # The machine's memory must lie within the emulated CPU's physical address space. On the PC the
        # RAM from 3 GiB on is above 4 GiB once the machine has 3.5 GiB (mmemu_x86.e820), so it ends
        # 1 GiB above the RAM size; the RAM the kernel does not use (mem=, MAXMEM) is not part of the map.
        top = max(end for _start, end in layout.ram_ranges())
        if top > 1 << PA_BITS:
            raise ConfigError(f"x86_64: --ram {format_size(spec.ram)} is more than the emulated CPU can address "
                              f"({PA_BITS}-bit physical addresses: {1 << (PA_BITS - 40)} TiB): the PC's RAM "
                              f"ends at {top:#x}, above 4 GiB from 3 GiB on; at most "
                              f"{format_size((1 << PA_BITS) - (top - spec.ram))} fits")
        return self._add_reserved(layout)

    def boot_plan(self, spec: MachineSpec, layout: Layout) -> BootPlan:
        """arch/x86/kernel/head_64.S: init_top_pgt (init_level4_pgt before 4.14) in the image's
        data; __startup_64 maps the image and the fixmap's level2_fixmap_pgt; arch/x86/mm/
        init.c maps [0, 1M) first; 5.8+ preallocate_vmalloc_pages (down to the level below
        the pgd: x86_64's VMALLOC_END is the last byte, pgtable_64_types.h "... - 1")."""
        era = X86_MM(spec.kernel)
        s = layout.symbols
        populate = ()
        if era.preallocate_vmalloc_pages:
            populate = ((s["VMALLOC_START"], (s["VMALLOC_END"] | 0xFFF) + 1, 1, "preallocate_vmalloc_pages"),)
        return BootPlan(root_symbol=era.root_symbol_64, root_section="data",
                        direct_map_writer="kernel_physical_mapping_init", image_writer="__startup_64",
                        fixmap_writer="__startup_64", direct_map_first=((0, 1 * MiB),), populate=populate,
                        direct_map_ranges=direct_map_ranges(era.direct_map_64, layout),
                        percpu=self.percpu_plan(spec, layout, 64), memblock_allocs=vmemmap_alloc(layout),
                        user_pgd_entries=pti.user_pgd_entries(spec, self.paging(spec)))

    def boot_mappings(self, kernel) -> None:
        """What setup_arch and the boot after it map besides the direct map and the image
        (mmemu_x86_64.boot_areas, mmemu_x86.boot_maps): the struct page array (sparse_init), the device fixmap
        slots (init_apic_mappings, io_apic_init_mappings), the vsyscall page (map_vsyscall),
        the ESPfix ministacks (init_espfix_bsp/ap), the cpu_entry_area (setup_cpu_entry_areas), and
        with PTI the kernel part of swapper_pg_dir's user copy (pti_init, after init_espfix_bsp)."""
        boot_areas.map_vmemmap(kernel)
        boot_maps.map_cpu_entry_area(kernel)
        boot_maps.map_device_fixmaps(kernel)
        boot_areas.map_vsyscall(kernel)
        boot_areas.map_espfix(kernel)
        pti_init(kernel)

    def kernel_space_test(self, layout: Layout):
        """arch/x86/mm/fault.c fault_in_kernel_space(): at or above TASK_SIZE_MAX, except the
        vsyscall page, which counts as user (it is emulated for user mode)."""
        above = super().kernel_space_test(layout)
        vsyscall = layout.symbols.get("VSYSCALL_ADDR")
        if vsyscall is None:
            return above
        return lambda address: above(address) and address & ~0xFFF != vsyscall

    def gate_vma(self, kernel) -> tuple[int, int, str, str] | None:
        """The vsyscall page, listed last in every /proc/PID/maps (X86_MM ``vsyscall_gate_perms``)."""
        va = kernel.layout.symbols["VSYSCALL_ADDR"]
        return va, va + 4096, X86_MM(kernel.spec.kernel).vsyscall_gate_perms, "[vsyscall]"

    def cpu_setup(self, spec: MachineSpec) -> CpuSetup:
        cr4 = X86_CR4_PSE | X86_CR4_PAE | X86_CR4_PGE
        if self.paging(spec) is PAGING_5LEVEL:
            cr4 |= X86_CR4_LA57
        return CpuSetup(bits=64, cr0=CR0_KERNEL, cr4=cr4, efer=EFER_LME | EFER_LMA | EFER_NXE, **SEGMENTS_64)

    def conformance_machines(self) -> list[dict]:
        """1 GiB, 2 MiB and 4 KiB direct maps, 4- and 5-level paging, a classic era."""
        return [dict(kernel="6.6", ram="4G"), dict(kernel="4.14", ram="2G", cmdline="nogbpages"),
                dict(kernel="6.6", ram="1G", options={"levels": "5"}), dict(kernel="2.6.32", ram="1G", cmdline="nopse")]

    def vmcoreinfo(self, kernel) -> list[str]:
        """arch/x86/kernel/crash_core_64.c arch_crash_save_vmcoreinfo(), as 6.x writes it
        (whatever the era: before 4.10, commit 401721ecd1dc, phys_base was a SYMBOL), without
        CONFIG_NUMA's node_data. drgn reads the root table at its physical address
        ``SYMBOL(swapper_pg_dir) - __START_KERNEL_map + phys_base`` and walks 5 levels when
        pgtable_l5_enabled is 1 (libdrgn/arch_x86_64.c). The root is named as the era names
        it (init_top_pgt, init_level4_pgt before 4.14); KASLR and SME are not modelled."""
        s = kernel.layout.symbols
        text = s["_text"]
        phys_base = kernel.image_phys(text) - (text - s["__START_KERNEL_map"])  # __pa_symbol(x) - (x - map)
        return [f"NUMBER(phys_base)={phys_base}",
                f"SYMBOL({kernel.pgd_symbol})={kernel.pgd_va:x}",
                f"NUMBER(pgtable_l5_enabled)={int(kernel.paging is PAGING_5LEVEL)}",
                "KERNELOFFSET=0",
                f"NUMBER(KERNEL_IMAGE_SIZE)={s['KERNEL_IMAGE_SIZE']}",
                "NUMBER(sme_mask)=0"]

    def ptdump_format(self, layout: Layout) -> X86PtdumpFormat:
        return x86_ptdump_format(layout, self.ptdump_markers(layout), self.ptdump_ranges(layout), width=16)

    def ptdump_markers(self, layout: Layout) -> list[tuple[int, str, int]]:
        """arch/x86/mm/dump_pagetables.c, CONFIG_X86_64: address_markers[] as pt_dump_init()
        fills them in, for the areas this era has (no KASAN): "Kernel Space" at 1UL << 63 while
        the file walks every pgd entry (until 5.5), the "EFI Runtime Services" marker from 4.4
        and "Fixmap Area" from 4.15 (mmemu_x86.ptdump_eras)."""
        era = X86_PTDUMP(layout.kernel)
        s = layout.symbols
        if era.walker == "arch":
            kernel_space = 1 << 63
        else:
            kernel_space = 0xFF00000000000000 if layout.paging == "5-level" else 0xFFFF800000000000
        markers = [(0, "User Space", 0), (kernel_space, "Kernel Space", 0)]
        if "LDT_BASE_ADDR" in s:
            markers.append((s["LDT_BASE_ADDR"], "LDT remap", 0))
        markers += [(s["PAGE_OFFSET"], "Low Kernel Mapping", 0), (s["VMALLOC_START"], "vmalloc() Area", 0)]
        if "VMEMMAP_START" in s:
            markers.append((s["VMEMMAP_START"], "Vmemmap", 0))
        if "CPU_ENTRY_AREA_BASE" in s:
            markers.append((s["CPU_ENTRY_AREA_BASE"], "CPU entry Area", 0))
        if "ESPFIX_BASE_ADDR" in s:
            markers.append((s["ESPFIX_BASE_ADDR"], "ESPfix Area", 16))
        if "EFI_VA_END" in s and era.efi_marker:
            markers.append((s["EFI_VA_END"], "EFI Runtime Services", 0))
        markers += [(s["__START_KERNEL_map"], "High Kernel Mapping", 0), (s["MODULES_VADDR"], "Modules", 0),
                    (s["MODULES_END"], "End Modules", 0)]
        if era.fixmap_marker_64:
            markers.append((s["FIXADDR_START"], "Fixmap Area", 0))
        return sorted(markers)

    def ptdump_ranges(self, layout: Layout) -> list[tuple[int, int | None]]:
        """Until 5.5 ptdump_walk_pgd_level_core() walks every pgd entry (the hypervisor's guard
        hole noted empty); from 5.6 ptdump_ranges[]: the user half, then the kernel half from
        the end of the guard hole (GUARD_HOLE_END_ADDR: 16 PGD entries from the start of the
        kernel half, arch/x86/include/asm/pgtable_64_types.h)."""
        if X86_PTDUMP(layout.kernel).walker == "arch":
            return [(0, None)]
        five = layout.paging == "5-level"
        pgdir_shift = 48 if five else 39
        kernel_space = 0xFF00000000000000 if five else 0xFFFF800000000000
        return [(0, 1 << (56 if five else 47)), (kernel_space + (16 << pgdir_shift), None)]

    def boot_page_sizes(self, spec: MachineSpec) -> tuple[int, ...]:
        """1 GiB pages where the era uses them (CONFIG_DIRECT_GBPAGES, ``gbpages`` by default
        since 2.6.27) unless ``nogbpages``; 2 MiB pages unless ``nopse``/debug_pagealloc."""
        if no_large_pages(spec):
            return (4 * KiB,)
        layout = self.layout(spec)
        gb = bool(layout.config.get("CONFIG_DIRECT_GBPAGES")) and "nogbpages" not in spec.cmdline
        return ((1 * GiB,) if gb else ()) + (2 * MiB, 4 * KiB)
