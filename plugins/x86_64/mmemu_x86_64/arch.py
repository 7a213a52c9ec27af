"""The x86_64 arch: 4-level paging, or 5-level (LA57) with ``--option levels=5``."""

from __future__ import annotations

from mmemu.arch import Arch, ArchOption, CpuSetup, PagingMode
from mmemu.errors import ConfigError
from mmemu.layout import Layout, MachineSpec
from mmemu.units import GiB, KiB, MiB
from mmemu_x86.cpu import (CR0_KERNEL, EFER_LMA, EFER_LME, EFER_NXE, SEGMENTS_64, X86_CR4_LA57, X86_CR4_PAE,
                           X86_CR4_PGE, X86_CR4_PSE)
from mmemu_x86.pgtable_types import pgprots
from mmemu_x86.x86_32 import NR_CPUS_OPTION, no_large_pages

from .formats import PA_BITS, PAGING_4LEVEL, PAGING_5LEVEL
from .layout import compute_layout_64


class X86_64Arch(Arch):
    name = "x86_64"
    summary = "x86_64, 4-level paging (or 5-level with --option levels=5); 4 KiB, 2 MiB and 1 GiB pages, NX"
    options = (
        ArchOption("levels", "paging levels: 4, or 5 for LA57 (kernels 4.14 and later)", choices=("4", "5"),
                   default="4"),
        NR_CPUS_OPTION,
    )
    pgprot = pgprots(PAGING_4LEVEL.nx)

    def _levels(self, spec: MachineSpec) -> int:
        return int(self.check_options(spec)["levels"])

    def paging(self, spec: MachineSpec) -> PagingMode:
        # the layout decides (an era without LA57, or no5lvl on the command line, is 4-level)
        return PAGING_5LEVEL if self.layout(spec).paging == "5-level" else PAGING_4LEVEL

    def layout(self, spec: MachineSpec) -> Layout:
        layout = compute_layout_64(spec, levels=self._levels(spec))
        if spec.ram > 1 << PA_BITS:
            raise ConfigError(f"x86_64: --ram {spec.ram >> 30} GiB is more than the emulated CPU can address "
                              f"({PA_BITS}-bit physical addresses: {1 << (PA_BITS - 40)} TiB)")
        return layout

    def cpu_setup(self, spec: MachineSpec) -> CpuSetup:
        cr4 = X86_CR4_PSE | X86_CR4_PAE | X86_CR4_PGE
        if self.paging(spec) is PAGING_5LEVEL:
            cr4 |= X86_CR4_LA57
        return CpuSetup(unicorn_arch="x86", bits=64, cr0=CR0_KERNEL, cr4=cr4, efer=EFER_LME | EFER_LMA | EFER_NXE,
                        **SEGMENTS_64)

    crash_machine = "x86_64"

    def ptdump_markers(self, layout: Layout) -> list[tuple[int, str, int]]:
        """arch/x86/mm/dump_pagetables.c, CONFIG_X86_64 (6.x): address_markers[] as
        pt_dump_init() fills them in, for the areas this era has (no KASAN)."""
        s = layout.symbols
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
        if "EFI_VA_END" in s:
            markers.append((s["EFI_VA_END"], "EFI Runtime Services", 0))
        markers += [(s["__START_KERNEL_map"], "High Kernel Mapping", 0), (s["MODULES_VADDR"], "Modules", 0),
                    (s["MODULES_END"], "End Modules", 0), (s["FIXADDR_START"], "Fixmap Area", 0)]
        return sorted(markers)

    def ptdump_ranges(self, layout: Layout) -> list[tuple[int, int | None]]:
        """ptdump_walk_pgd_level_core(): the user half, then the kernel half from the end of
        the hypervisor guard hole (GUARD_HOLE_END_ADDR: 16 PGD entries from the start of the
        kernel half, arch/x86/include/asm/pgtable_64_types.h)."""
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
