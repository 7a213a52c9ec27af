"""The arm64 arch: AArch64, 4 KiB granule, VA_BITS 39 (3 levels) or 48 (4 levels), two
roots (TTBR0_EL1 for user space, TTBR1_EL1 for the kernel: swapper_pg_dir)."""

from __future__ import annotations

from functools import lru_cache
from types import MappingProxyType

from mmemu.arch import SPLIT, Arch, ArchOption, BootPlan, PagingMode
from mmemu.errors import ConfigError
from mmemu.layout import Layout, MachineSpec
from mmemu.units import GiB, KernelVersion, KiB, MiB

from . import module, report
from .eras import ARM64, MODULES
from .guest import KCALL_BRK
from .formats import PA_BITS, Arm64Codec, levels_for
from .layout import compute_layout
from .prot import pgprots, pte_rules
from .ptdump import ptdump_format as _ptdump_format


@lru_cache(maxsize=None)
def _pgprots(kernel) -> MappingProxyType:
    return MappingProxyType(pgprots(kernel))


@lru_cache(maxsize=None)
def _reloc_table(kernel, plts: bool):
    """The era's relocation table (built once: ~40 small functions)."""
    from . import module_plts
    from .relocs import arm64_relocations

    # the emulated Cortex-A72 has no erratum 843419 (ARM64_WORKAROUND_843419 is a Cortex-A53 one)
    return arm64_relocations(MODULES(kernel), cpu_843419=False, veneer=module_plts.veneer if plts else None)


@lru_cache(maxsize=None)
def _paging(va_bits: int, rules) -> PagingMode:
    levels = levels_for(va_bits)
    return PagingMode(name=f"{va_bits}-bit", levels=levels, va_bits=va_bits, pa_bits=PA_BITS,
                      codec=Arm64Codec(len(levels), rules), form=SPLIT)


class Arm64Arch(Arch):
    name = "arm64"
    summary = ("arm64 (AArch64), 4 KiB granule, 39-bit (3 levels) or 48-bit (4 levels, --option va_bits=48) VAs; "
               "4 KiB pages, 2 MiB and 1 GiB blocks, PXN/UXN, TTBR0/TTBR1")
    options = (
        # no default value here: the core fills defaults in before the arch sees the spec, and the
        # default depends on the era (_va_bits)
        ArchOption("va_bits", "CONFIG_ARM64_VA_BITS: 39 (3 levels) or 48 (4 levels, kernels 3.17 and later); "
                   "default 48, or 39 before 3.17", choices=("39", "48")),
    )
    #: The protections of the newest era, for the registration check; a machine uses its own
    #: era's (:meth:`pgprots`, prot.py)
    pgprot = MappingProxyType(pgprots("6.6"))
    elf_machine = "EM_AARCH64"
    crash_machine = "arm64"

    def _va_bits(self, spec: MachineSpec) -> int:
        va = self.check_options(spec).get("va_bits")
        if va is None:  # the default: 48, or 39 for a kernel that has only 39-bit VAs
            return 48 if ARM64(spec.kernel).va48 else 39
        return int(va)

    def pgprots(self, spec: MachineSpec) -> MappingProxyType:
        """The named protections of *spec*'s kernel (arch/arm64/include/asm/pgtable.h, then
        pgtable-prot.h, of the era)."""
        return _pgprots(spec.kernel)

    # -- machine description -----------------------------------------------------------------

    def paging(self, spec: MachineSpec) -> PagingMode:
        va = self._va_bits(spec)
        # PARange 44 (Unicorn's Cortex-A72): RAM must fit (the QEMU virt limit is lower anyway)
        return _paging(va, pte_rules(spec.kernel))

    def layout(self, spec: MachineSpec) -> Layout:
        layout = compute_layout(spec, self._va_bits(spec))
        end = max(r.end for r in layout.memory_map)
        if end > 1 << PA_BITS:
            raise ConfigError(f"arm64: RAM up to {end:#x} is beyond the emulated CPU's {PA_BITS}-bit physical "
                              f"addresses (ID_AA64MMFR0_EL1.PARange of Unicorn's Cortex-A72)")
        return layout

    def boot_page_sizes(self, spec: MachineSpec) -> tuple[int, ...]:
        """Block sizes of the linear map (arch/arm64/mm/mmu.c map_mem() -> __create_pgd_mapping()
        / create_mapping() of the era): 2 MiB sections from 3.7 (alloc_init_pmd), 1 GiB blocks
        where the pud allows (alloc_init_pud with pud_sect, 3.15, recollection); page-granular
        when debug_pagealloc=on (4.5+, NO_BLOCK_MAPPINGS) or with rodata=full, the default of
        CONFIG_RODATA_FULL_DEFAULT_ENABLED from 5.0 (recollection: 'arm64: mm: apply r/o
        permissions of VM areas to its linear alias as well'); ``rodata=on``/``rodata=off`` or
        ``rodata=noalias`` (6.x) bring the blocks back. Contiguous-bit runs (CONT_PTE 64 KiB,
        CONT_PMD 32 MiB) are an attribute, not a page size: not modelled."""
        k = spec.kernel
        cmd = spec.cmdline
        if k >= "4.5" and cmd.get("debug_pagealloc") in ("on", "1", "y"):
            return (4 * KiB,)
        if k >= "5.0":
            rodata = cmd.get("rodata", "full")
            if rodata in (None, "full"):
                return (4 * KiB,)
        return ((1 * GiB,) if k >= "3.15" else ()) + (2 * MiB, 4 * KiB)

    def boot_plan(self, spec: MachineSpec, layout: Layout) -> BootPlan:
        k = spec.kernel
        era = ARM64(k)
        if era.layout == "linear":
            image_writer = "mark_rodata_ro" if era.kernel_ro else "map_mem"
        else:
            image_writer = "map_kernel"  # map_kernel() -> map_kernel_segment() -> __create_pgd_mapping()
        # map_mem() -> __map_memblock() -> create_mapping() (3.x) / __create_pgd_mapping() (4.6+)
        direct_writer = "map_mem"
        # early_fixmap_init() (fixmap.h since the early_ioremap support of 3.15); before 3.15 there is no
        # fixmap and only paging_init() builds tables
        fixmap_writer = "early_fixmap_init" if k >= "3.15" else "paging_init"
        s = layout.symbols
        # swapper_pg_dir where the era's linker script / head.S puts it (layout.py): below _text (3.7-3.15),
        # after the bss (3.16-4.18), at the end of the read-only data (4.19+)
        root_va = s["swapper_pg_dir"]
        sec = next(x for x in layout.image if x.virt <= root_va < x.virt + x.size)
        root_phys = sec.phys + (root_va - sec.virt)
        # the linear map: 3.x create_mapping() with prot_sect_kernel / PAGE_KERNEL_EXEC (no PXN); 4.0+
        # PAGE_KERNEL (the kernel's own executable alias is the image, ImageSection.prot)
        direct_prot = "PAGE_KERNEL" if era.kernel_ro else "PAGE_KERNEL_EXEC"
        # early_fixmap_init(): one pte table (bm_pte) for the pmd of FIXADDR_START (3.15-6.8, the
        # BUILD_BUG_ON keeps the early_ioremap slots in that pmd); 6.9 populates every pmd of
        # [FIXADDR_TOT_START, FIXADDR_TOP) (bm_pte[NR_BM_PTE_TABLES]); no fixmap before 3.15
        if "FIXADDR_TOT_START" in s:
            fixmap_range = (s["FIXADDR_TOT_START"], s["FIXADDR_TOP"])
        elif "FIXADDR_START" in s:
            fixmap_range = (s["FIXADDR_START"], s["FIXADDR_START"] + 4096)
        else:
            fixmap_range = None
        # map_kernel() -> map_kernel_segment() -> vm_area_add_early() for each segment (4.6+: the image
        # is in the vmalloc area); the caller recorded is map_kernel (__builtin_return_address(0))
        early = ()
        if era.layout != "linear":
            segs = [(s["_text"], s["_etext"]), (s["__start_rodata"], s["__init_begin"]),
                    (s["__init_begin"], s["_sdata"]), (s["_sdata"], s["_end"])]
            early = tuple((a, b, "map_kernel") for a, b in segs if b > a)
        return BootPlan(root_symbol="swapper_pg_dir", root_section=sec.name, root_phys=root_phys,
                        direct_map_writer=direct_writer, image_writer=image_writer, fixmap_writer=fixmap_writer,
                        direct_map_first=(), populate=(), copies_kernel_pgd=False, direct_map_prot=direct_prot,
                        fixmap_range=fixmap_range, early_vm_areas=early)

    # -- kernel modules (module.py, relocs.py, module_plts.py) ---------------------------------

    #: ``brk #0x4d4d`` at every exported kernel function's address: a call from a module
    #: traps there (EXCP_BKPT, the PC at the brk) and the adapter runs the function in Python
    kcall_stub = KCALL_BRK.to_bytes(4, "little")

    def module_relocations(self, spec: MachineSpec):
        return _reloc_table(spec.kernel, module.module_plts(spec, self.layout(spec).config))

    def module_frob_arch_sections(self, kernel, mf, mod):
        if not module.module_plts(kernel.spec, kernel.layout.config):
            return None
        from .module_plts import module_frob_arch_sections

        return module_frob_arch_sections(kernel, mf, mod)

    def module_linker_sections(self, spec: MachineSpec) -> tuple[str, ...]:
        """arch/arm64/include/asm/module.lds.h: ``.plt`` and ``.init.plt`` where the loader
        has PLTs (.text.ftrace_trampoline only with CONFIG_DYNAMIC_FTRACE: not here)."""
        return (".plt", ".init.plt") if module.module_plts(spec, self.layout(spec).config) else ()

    def module_alloc(self, spec: MachineSpec, layout: Layout) -> tuple[int, int, str]:
        return module.module_region(spec, layout)

    def module_strict_rwx(self, spec: MachineSpec) -> bool:
        return MODULES(spec.kernel).module_ronx

    def vermagic(self, spec: MachineSpec) -> str:
        return module.vermagic(spec, self.layout(spec).config)

    def check_wx(self, kernel, wx):
        return module.check_wx(kernel, wx)

    def cpu_adapter(self, kernel, mmu: str):
        from .cpu_adapter import Arm64Adapter  # imports Unicorn

        return Arm64Adapter(kernel, mmu)

    def conformance_machines(self) -> list[dict]:
        """Both paging modes; swapper_pg_dir in .rodata (4.19+) and after the bss (3.16-4.18);
        the executable linear map before 4.0; set_pte_at()'s PTE_RDONLY (3.14-4.13); blocks
        (rodata=on, and before 5.0) and page-granular linear maps (the 5.0+ default). (3.7-3.13
        are left out: their set_pte_at() makes leaf_prot() not invertible, see formats.py;
        tests/test_cpu.py runs code on a 3.10 kernel.)"""
        return [{"kernel": "6.6", "ram": "1G", "options": {"va_bits": "48"}},
                {"kernel": "6.6", "ram": "1G", "options": {"va_bits": "39"}, "cmdline": "rodata=on"},
                {"kernel": "4.9", "ram": "1G", "options": {"va_bits": "48"}},
                {"kernel": "3.17", "ram": "512M", "options": {"va_bits": "39"}}]

    def fault_in_kernel_space(self, layout: Layout, address: int) -> bool:
        """arm64's is_ttbr1_addr(): the address is in the TTBR1 half (>= 2**64 - 2**VA_BITS);
        before 5.4 ``addr >= VA_START``, the same bound."""
        return address >= (1 << 64) - (1 << layout.symbols["VA_BITS"])

    def vmcoreinfo(self, kernel) -> list[str]:
        """arch/arm64/kernel/crash_core.c arch_crash_save_vmcoreinfo(), as 6.x writes it
        (whatever the era). drgn (libdrgn/arch_aarch64.c) reads swapper_pg_dir at its physical
        address ``SYMBOL(swapper_pg_dir) - kimage_voffset`` and sizes its walk from
        ``64 - TCR_EL1_T1SZ`` (VA_BITS before 5.9): the levels, and the kernel half it
        translates. Before 4.6 the image lies in the linear map and has no kimage_voffset: drgn
        then reads swapper_pg_dir through the direct map's segment. KASLR and pointer
        authentication are not modelled."""
        s = kernel.layout.symbols
        va_bits = s["VA_BITS"]
        ranges = ("MODULES_VADDR", "MODULES_END", "VMALLOC_START", "VMALLOC_END", "VMEMMAP_START", "VMEMMAP_END")
        image = [f"NUMBER(kimage_voffset)={s['kimage_voffset']:#x}"] if "kimage_voffset" in s else []
        return ([f"NUMBER(VA_BITS)={va_bits}"] + [f"NUMBER({name})={s[name]:#x}" for name in ranges if name in s]
                + image + [f"NUMBER(PHYS_OFFSET)={kernel.PHYS_OFFSET:#x}", f"NUMBER(TCR_EL1_T1SZ)={64 - va_bits:#x}",
                           "KERNELOFFSET=0", "NUMBER(KERNELPACMASK)=0x0"])

    # -- output formats ------------------------------------------------------------------------

    def ptdump_format(self, layout: Layout):
        return _ptdump_format(layout)

    def vtop_lines(self, kernel, walk, root: int, process=None) -> list[str]:
        return report.vtop_lines(kernel, walk, root, process)

    def oops_report(self, kernel, fault, die_counter: int, why: str = "") -> str:
        return report.oops_report(kernel, fault, die_counter, why)

    def segfault_report(self, kernel, fault) -> str:
        return report.segfault_report(kernel, fault)


def kernel_version(text) -> KernelVersion:
    return KernelVersion.parse(text)
