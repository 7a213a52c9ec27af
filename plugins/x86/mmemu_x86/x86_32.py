"""What the two i386 arches share: the layout formulas (pgtable_32_areas.h & co, which
cover both paging modes), the CPU set-up and the kernel's protections. Each plugin adds
only its paging mode, as the kernel's pgtable-2level.h / pgtable-3level.h do."""

from __future__ import annotations

from mmemu.arch import ArchOption, BootPlan, PagingMode
from mmemu.layout import Layout, MachineSpec
from mmemu.units import GiB, KiB, MiB

from . import boot_maps, pti
from .cpu import CR0_KERNEL, EFER_NXE, SEGMENTS_32, X86_CR4_PAE, X86_CR4_PGE, X86_CR4_PSE, CpuSetup
from .layout_32 import compute_layout_32
from .mm import X86_MM, X86Arch
from .pgtable_types import pgprots
from .ptdump import X86PtdumpFormat, x86_ptdump_format
from .ptdump_eras import X86_PTDUMP
from .pti_init import pti_init

NR_CPUS_OPTION = ArchOption("NR_CPUS", "CONFIG_NR_CPUS the kernel was built with (default: --cpus); sizes the "
                                       "per-CPU fixmap slots")


def no_large_pages(spec: MachineSpec) -> bool:
    """Command-line words that keep the kernel off large pages for its direct mapping:
    ``nopse`` (clears X86_FEATURE_PSE) and ``debug_pagealloc=on``
    (arch/x86/mm/init.c: ``probe_page_size_mask`` uses large pages only if
    ``!debug_pagealloc_enabled()``)."""
    return "nopse" in spec.cmdline or spec.cmdline.get("debug_pagealloc") in ("on", "1")


VMSPLIT_OPTION = ArchOption("VMSPLIT", "CONFIG_VMSPLIT_*: the user/kernel split (PAGE_OFFSET), kernels 2.6.16 and later",
                            choices=("3G", "3G_OPT", "2G", "2G_OPT", "1G"), default="3G")


HIGHPTE_OPTION = ArchOption("HIGHPTE", "CONFIG_HIGHPTE: user page tables in HighMem, reached through kmap_atomic",
                            choices=("y", "n"), default="y")


class X86_32Arch(X86Arch):
    """An i386 arch: 2-level (``pae=False``) or PAE."""

    options = (NR_CPUS_OPTION, VMSPLIT_OPTION, HIGHPTE_OPTION)

    def __init__(self, name: str, summary: str, paging: PagingMode, pae: bool):
        self.name = name
        self.summary = summary
        self._paging = paging
        self.pae = pae
        self.pgprot = pgprots(paging.codec.nx)

    def paging(self, spec: MachineSpec) -> PagingMode:
        return self._paging

    def layout(self, spec: MachineSpec) -> Layout:
        self.check_options(spec)
        return self._add_reserved(compute_layout_32(spec, pae=self.pae))

    def boot_plan(self, spec: MachineSpec, layout: Layout) -> BootPlan:
        """arch/x86/kernel/head_32.S: swapper_pg_dir in the bss; arch/x86/mm/init.c
        init_mem_mapping maps [0, 1M) first; init_32.c mark_rodata_ro; PAE's pgd_alloc
        preallocates the user pmds (arch/x86/mm/pgtable.c pgd_prepopulate_pmd); the struct
        page array (FLATMEM mem_map) is memblock memory at the top of lowmem. With PTI
        (PAE, 4.19+: mmemu_x86.pti) the pgd has a user copy and its kernel pmds are its own."""
        return BootPlan(root_symbol="swapper_pg_dir", root_section="bss",
                        direct_map_writer="kernel_physical_mapping_init", image_writer="mark_rodata_ro",
                        fixmap_writer="early_ioremap_page_table_range_init", direct_map_first=((0, 1 * MiB),),
                        prepopulate_user_pgd=self.pae, percpu=self.percpu_plan(spec, layout, 32),
                        memblock_allocs=boot_maps.mem_map_alloc(layout),
                        user_pgd_entries=pti.user_pgd_entries(spec, self._paging, layout.symbols["PAGE_OFFSET"]),
                        kernel_copy_level=0 if self.shared_kernel_pmd(spec) else 1)

    def shared_kernel_pmd(self, spec: MachineSpec) -> bool:
        """PAE's SHARED_KERNEL_PMD (asm/pgtable-3level_types.h): every pgd points at
        swapper_pg_dir's kernel pmd, unless X86_FEATURE_PTI (4.19+: ``!static_cpu_has``) or
        the kernel is 6.16+ (never shared: X86_MM ``pae_pmd_unshared``); pgd_alloc then gives
        each pgd kernel pmds of its own (BootPlan ``kernel_copy_level`` 1). 2-level i386 has
        no pmd of its own (folded into the pgd): True here, its pgd entries are the copies."""
        if not self.pae:
            return True
        return not (pti.pti_enabled(spec) or X86_MM(spec.kernel).pae_pmd_unshared)

    def boot_mappings(self, kernel) -> None:
        """What the boot maps besides the direct map and the image (mmemu_x86.boot_maps): the
        cpu_entry_area (setup_cpu_entry_areas, 4.15+) and the device fixmap slots
        (init_apic_mappings, io_apic_init_mappings). FLATMEM's mem_map lies in the direct
        map: nothing to map for it. With PTI, pti_init's clones into swapper_pg_dir's user
        copy (mmemu_x86.pti_init)."""
        boot_maps.map_cpu_entry_area(kernel)
        boot_maps.map_device_fixmaps(kernel)
        pti_init(kernel)

    def cpu_setup(self, spec: MachineSpec) -> CpuSetup:
        cr4 = X86_CR4_PSE | X86_CR4_PGE | (X86_CR4_PAE if self.pae else 0)
        return CpuSetup(bits=32, cr0=CR0_KERNEL, cr4=cr4, efer=EFER_NXE if self.pae else 0, **SEGMENTS_32)

    def vermagic(self, spec: MachineSpec) -> str:
        """VERMAGIC_STRING with MODULE_ARCH_VERMAGIC = MODULE_PROC_FAMILY "686 " (a kernel
        built for CONFIG_M686, arch/x86/include/asm/module.h)."""
        return super().vermagic(spec) + "686 "

    def boot_page_sizes(self, spec: MachineSpec) -> tuple[int, ...]:
        small = 4 * KiB
        if no_large_pages(spec):
            return (small,)
        return (2 * MiB if self.pae else 4 * MiB, small)

    def conformance_machines(self) -> list[dict]:
        """Large pages and 4 KiB only, a classic and a modern era, HighMem."""
        if self.pae:
            return [dict(kernel="6.6", ram="4G"), dict(kernel="3.10", ram="2G", cmdline="nopse")]
        return [dict(kernel="6.6", ram="768M"), dict(kernel="2.6.32", ram="1G", cmdline="nopse")]

    def ptdump_format(self, layout: Layout) -> X86PtdumpFormat:
        return x86_ptdump_format(layout, self.ptdump_markers(layout), [(0, None)], width=8, pae=self.pae)

    def ptdump_markers(self, layout: Layout) -> list[tuple[int, str, int]]:
        """arch/x86/mm/dump_pagetables.c, CONFIG_X86_32: address_markers[] as pt_dump_init()
        fills them in, with the era's names (mmemu_x86.ptdump_eras: the kernel's own
        "Persisent kmap() Area" until 4.4, "Fixmap Area" until 4.15, then "Fixmap area"), and
        the LDT and cpu_entry_area markers where the era has those areas."""
        era = X86_PTDUMP(layout.kernel)
        s = layout.symbols
        markers = [(0, "User Space", 0), (s["PAGE_OFFSET"], "Kernel Mapping", 0),
                   (s["VMALLOC_START"], "vmalloc() Area", 0), (s["VMALLOC_END"], "vmalloc() End", 0)]
        if "PKMAP_BASE" in s:
            markers.append((s["PKMAP_BASE"], era.pkmap_marker, 0))
        if "LDT_BASE_ADDR" in s:
            markers.append((s["LDT_BASE_ADDR"], "LDT remap", 0))
        if "CPU_ENTRY_AREA_BASE" in s:
            markers.append((s["CPU_ENTRY_AREA_BASE"], "CPU entry area", 0))
        markers.append((s["FIXADDR_START"], era.fixmap_marker_32, 0))
        return markers

    @property
    def max_ram(self) -> int:
        return 64 * GiB if self.pae else 4 * GiB
