"""Every kernel-version rule of the riscv64 plugin, in one table, each with its source.

How the sources were read (the stored copies the research could reach):

- whole files: arch/riscv/mm/init.c of 5.4.286 (KINGFIOX/linux-5.4.286) and of 6.6.117
  (Jvlegod/linux-6.6-exp); arch/riscv/include/asm/pgtable.h of 5.4.286, of 5.10
  (sophgo/linux_5.10, a vendor tree: its T-Head cache bits are left out) and of a
  5.17-6.x torvalds/linux version; page.h of 6.10 (qiaozhe1/linux6.10); pgtable-bits.h
  of 5.4.286 and of 5.17+; fixmap.h of 5.2 and of 5.10-5.16 (torvalds/linux);
  arch/riscv/mm/fault.c of 5.10 (dsheffie/linux-v5.10) and of 5.17-6.4 (torvalds);
  arch/riscv/mm/ptdump.c of 6.x; arch/riscv/kernel/traps.c and process.c of 6.x;
  Documentation/riscv/vm-layout.rst of 6.4 and Documentation/arch/riscv/vm-layout.rst
  of 6.11+; crash's riscv64.c (crash-utility, 2023); a 4.15-4.19 arch/riscv/kernel/setup.c
  (setup_vm with swapper_pmd) and arch/riscv/mm/init.c (zone_sizes_init).
- the change points in between: the patches themselves on the linux-riscv and stable
  lists (dated, with their diffs), and Palmer Dabbelt's pull requests, which date a patch
  to a merge window. Where only the patch date is known, the ``source`` says so and names
  the release mmemu assumes.
"""

from __future__ import annotations

from mmemu.eras import EraTable, Feature, Variant

#: The releases mmemu has riscv64 layouts for: 4.15 (the first with arch/riscv) .. 4.20,
#: 5.0 .. 5.19, 6.x.
FIRST = "4.15"
SUPPORTED = "4.15-4.20, 5.0-5.19 and 6.x"

RISCV = EraTable(
    # ---- paging modes -----------------------------------------------------------------
    Feature("sv48", since="5.17",
            source="'riscv: Implement sv48 support' (Alexandre Ghiti): PAGE_OFFSET becomes kernel_map.page_offset, "
                   "chosen at boot by set_satp_mode() (arch/riscv/mm/init.c); Documentation/riscv/vm-layout.rst "
                   "gains the SV48 table; crash riscv64.c: 'VA_BITS is defined in Linux kernel since 5.17'"),
    Feature("sv57", since="5.18",
            source="'riscv: mm: Support Sv57' (Qinglin Pan): CONFIG_PAGE_OFFSET 0xff60000000000000, PAGE_OFFSET_L4 "
                   "and PAGE_OFFSET_L3 in page.h, pgtable_l5_enabled. Release from recollection (the 6.x page.h "
                   "read has it; 5.17's vm-layout patches do not)"),
    Variant("pgtable_levels", [("4.15", 3), ("5.17", 4), ("5.18", 5)],
            source="arch/riscv/Kconfig PGTABLE_LEVELS: 3 (asm-generic pgtable-nopud.h in pgtable.h of 4.15-5.16, "
                   "read in 5.4 and 5.10), 4 with sv48 (5.17), 5 with sv57 (5.18); arch/riscv/mm/ptdump.c names "
                   "the levels after it"),
    # ---- the linear map -------------------------------------------------------------------
    Variant("page_offset_l3", [("4.15", 0xFFFFFFE000000000), ("5.17", 0xFFFFFFD800000000),
                               ("6.11", 0xFFFFFFD600000000)],
            source="Sv39 PAGE_OFFSET. arch/riscv/Kconfig (4.15-5.16): config PAGE_OFFSET 'default "
                   "0xffffffe000000000 if 64BIT && MAXPHYSMEM_128GB' (CMODEL_MEDANY); 'riscv: Move KASAN mapping "
                   "next to the kernel mapping' (sv48 series, 5.17): 'default 0xffffffd800000000', then page.h "
                   "PAGE_OFFSET_L3 _AC(0xffffffd800000000, UL) (read in 6.10); 'riscv: Extend sv39 linear mapping "
                   "max size to 128G' (Stuart Menefy, v2 30 Jun 2024, in the 6.11 merge-window pull): "
                   "PAGE_OFFSET_L3 _AC(0xffffffd600000000, UL)"),
    Variant("kern_virt_size", [("4.15", "minus_page_offset"), ("5.17", "half_of_kernel_half")],
            source="arch/riscv/include/asm/page.h: '#define KERN_VIRT_SIZE (-PAGE_OFFSET)' (4.15-5.16); "
                   "'#define KERN_VIRT_SIZE ((PTRS_PER_PGD / 2 * PGDIR_SIZE) / 2)' (sv48 series, 5.17; in pgtable.h "
                   "in 6.x)"),
    Variant("linear_map_base", [("4.15", "load_pa"), ("6.4", "phys_ram_base")],
            source="which physical address PAGE_OFFSET maps. 4.15 kernel/setup.c setup_vm(): 'va_pa_offset = "
                   "PAGE_OFFSET - pa' with pa = &_start; 5.4 mm/init.c setup_vm(): 'va_pa_offset = PAGE_OFFSET - "
                   "load_pa' (read); 'riscv: Use PUD/P4D/PGD pages for the linear mapping' (6.4): setup_bootmem() "
                   "sets 'kernel_map.va_pa_offset = PAGE_OFFSET - phys_ram_base' with phys_ram_base = "
                   "memblock_start_of_DRAM() & PMD_MASK (read in 6.6); crash riscv64.c: 'Since Linux v6.4 "
                   "phys_base is not the physical start of the kernel'"),
    Feature("phys_ram_base", since="5.14",
            source="crash riscv64.c riscv64_get_phys_ram_base(): 'phys_ram_base is defined in Linux kernel since "
                   "5.14'"),
    Variant("memory_limit", [("4.15", "kern_virt_size"), ("5.13", "kern_virt_size_minus_4g")],
            source="the most RAM the linear map takes. 5.4 setup_bootmem(): 'mem_size = min(reg->size, "
                   "(phys_addr_t)-PAGE_OFFSET)' and memblock_remove() of the rest (read); 6.6 setup_vm(): "
                   "'memory_limit = KERN_VIRT_SIZE - (IS_ENABLED(CONFIG_64BIT) ? SZ_4G : 0)' ('the end of the "
                   "virtual address space is occupied by the modules/BPF/kernel mappings'), enforced by "
                   "memblock_enforce_memory_limit() (read). Dated to 5.13, the release that moved the kernel "
                   "mapping to the end of the address space: the 5.13-5.16 vm-layout.rst gives the direct map "
                   "ffffffe000000000.. as '124 GB'"),
    Variant("best_map_size", [("4.15", "swapper_pmd"), ("5.2", "whole_region"), ("6.4", "pgdir"),
                              ("6.7", "no_pgd")],
            source="page sizes of the linear map. 4.15 setup_vm(): every swapper_pg_dir entry of the -PAGE_OFFSET "
                   "window points into swapper_pmd[], filled with 2 MiB pages (read); 5.2-6.3 best_map_size(base, "
                   "size): PMD_SIZE only if the whole memblock region is 2 MiB aligned in start and size, else "
                   "PAGE_SIZE for all of it (read in 5.4); 6.4 'riscv: Use PUD/P4D/PGD pages for the linear "
                   "mapping': PGDIR, P4D, PUD, PMD by alignment of pa and va (patch text); 'Don't use PGD entries "
                   "for the linear mapping' (Alexandre Ghiti, lore 20231108075930, mainline 6.7, backported to "
                   "6.6.y): P4D only with pgtable_l5_enabled, PUD only with pgtable_l4_enabled (read in 6.6.117)"),
    Variant("direct_map_writer", [("4.15", "setup_vm"), ("5.2", "setup_vm_final"),
                                  ("6.3", "create_linear_mapping_range")],
            source="the function whose create_pgd_mapping() loop writes the linear map: setup_vm() in "
                   "arch/riscv/kernel/setup.c (4.15); setup_vm_final() in arch/riscv/mm/init.c after 'RISC-V: "
                   "Setup initial page tables in two stages' (Anup Patel, 2019, with the fixmap: 5.2); "
                   "create_linear_mapping_range() (read in 6.6; split out of setup_vm_final in 6.3 - release from "
                   "recollection)"),
    # ---- the areas below PAGE_OFFSET ----------------------------------------------------------
    Feature("vmalloc_end_exclusive", since="5.17",
            source="'riscv: Make vmalloc/vmemmap end equal to the start of the next region' (Alexandre Ghiti; "
                   "'on for-next' 5 Jan 2022): VMALLOC_END PAGE_OFFSET (was PAGE_OFFSET - 1), VMEMMAP_END "
                   "VMALLOC_START (was VMALLOC_START - 1), and fault.c tests addr < VMALLOC_END (was <=)"),
    Feature("fixmap", since="5.2",
            source="'RISC-V: Implement compile-time fixed mappings' (Anup Patel, 2019): arch/riscv/include/asm/"
                   "fixmap.h 'Copyright (C) 2019 Western Digital' (read at its first version); the 5.2-stable "
                   "backport of 'RISC-V: Fix FIXMAP area corruption on RV32 systems' shows 5.2 has it. Before, no "
                   "fixmap at all (4.15 setup.c maps with swapper_pmd only)"),
    Variant("fixaddr_size", [("5.2", "enum"), ("5.3", "pmd"), ("6.4", "pmd_plus_fdt")],
            source="fixmap.h (5.2): 'FIXADDR_SIZE (__end_of_fixed_addresses * PAGE_SIZE)', FIXADDR_TOP "
                   "(VMALLOC_START); upstream a256f2e329df 'RISC-V: Fix FIXMAP area corruption on RV32 systems' "
                   "(5.3, backported to 5.2.y): pgtable.h 'FIXADDR_SIZE PMD_SIZE' (64-bit); 'riscv: Move early dtb "
                   "mapping into the fixmap region' (6.4, part of the PUD/P4D/PGD linear-map series): "
                   "'FIXADDR_SIZE (PMD_SIZE + FIX_FDT_SIZE)', FIX_FDT_SIZE (MAX_FDT_SIZE + SZ_2M), MAX_FDT_SIZE "
                   "PMD_SIZE (pgtable.h read; vm-layout.rst: fixmap '2 MB' -> '6 MB')"),
    Feature("vmemmap", since="5.4",
            source="'RISC-V: Implement sparsemem' (Logan Gunthorpe, v6 rebased on v5.3-rc6): VMEMMAP_SHIFT "
                   "(CONFIG_VA_BITS - PAGE_SHIFT - 1 + STRUCT_PAGE_MAX_SHIFT) below VMALLOC_START, FIXADDR_TOP "
                   "(VMEMMAP_START); present in 5.4.286 (read)"),
    Feature("vmemmap_phys_ram_base", since="6.8",
            source="pgtable.h: '#define vmemmap ((struct page *)VMEMMAP_START)' (5.4, read) -> '((struct page "
                   "*)VMEMMAP_START - (phys_ram_base >> PAGE_SHIFT))': 'riscv: Sparse-Memory/vmemmap out-of-bounds "
                   "fix' (Dimitris Vlachos, [PATCH -fixes] 29 Feb 2024, Fixes: d95f1a542c3d 'RISC-V: Implement "
                   "sparsemem', reviewed by Alexandre Ghiti; the thread and the stable backport read). Release 6.8 "
                   "from the patch date (a 6.8-rc fix; backported to the stable trees, which mmemu's x.y.0 kernels "
                   "are not). 'riscv: mm: Fix the out of bound issue of vmemmap address' (Xu Lu, Dec 2024, 6.13) "
                   "rounds phys_ram_base down to a section: the same value for DRAM at 0x80000000"),
    Feature("pci_io", since="5.4",
            source="'RISC-V: Add PCIe I/O BAR memory mapping' (Yash Shah, 24 Oct 2019): PCI_IO_SIZE SZ_16M, "
                   "PCI_IO_END VMEMMAP_START, FIXADDR_TOP PCI_IO_START. Present in the 5.4.286 tree read; whether "
                   "5.4.0 already had it (the patch was posted during 5.4-rc) is not verified"),
    Feature("kernel_mapping", since="5.13",
            source="'riscv: Move kernel mapping outside of linear mapping': KERNEL_LINK_ADDR (ADDRESS_SPACE_END - "
                   "SZ_2G + 1), MODULES_VADDR (PFN_ALIGN(&_end) - SZ_2G), MODULES_END (PFN_ALIGN(&_start)) "
                   "(pgtable.h read); crash riscv64.c: 'From Linux 5.13, the kernel mapping is moved to the last "
                   "2GB of the address space, modules use the 2GB memory range right before the kernel'"),
    Feature("modules_lowest_vaddr", since="5.17",
            source="'riscv: Move KASAN mapping next to the kernel mapping' (sv48 series, 5.17): "
                   "MODULES_LOWEST_VADDR (KERNEL_LINK_ADDR - SZ_2G)"),
    Feature("kern_virt_start", since="5.7",
            source="pgtable.h KERN_VIRT_START (-(BIT(VA_BITS)) + TASK_SIZE) (read in 5.10 with CONFIG_VA_BITS; the "
                   "base of the ptdump walk, arch/riscv/mm/ptdump.c). Added with ptdump (5.7, recollection)"),
    Feature("default_map_window", since="6.6",
            source="'riscv: mm: Use hint address in mmap if available' (Charlie Jenkins): DEFAULT_MAP_WINDOW "
                   "(1 << (MMAP_VA_BITS - 1)), STACK_TOP DEFAULT_MAP_WINDOW, ELF_ET_DYN_BASE ((DEFAULT_MAP_WINDOW "
                   "/ 3) * 2). NOT VERIFIED: release and formulas from recollection; they only differ from "
                   "TASK_SIZE under Sv48/Sv57"),
    # ---- memory model, zones ----------------------------------------------------------------
    Variant("dma32", [("4.15", "pfn_bytes_mixup"), ("5.4", "phys_4g")],
            source="zone_sizes_init(): 'max_zone_pfns[ZONE_DMA32] = PFN_DOWN(min(4UL * SZ_1G, max_low_pfn))' in "
                   "the 4.x arch/riscv/mm/init.c read (a pfn compared with a byte count: ZONE_DMA32 ends up empty "
                   "and all RAM is ZONE_NORMAL); 5.4 (read): PFN_DOWN(min(4UL * SZ_1G, (unsigned long) "
                   "PFN_PHYS(max_low_pfn))), then dma32_phys_limit (6.6 read). The release that fixed it, between "
                   "4.20 and 5.4, is not verified: mmemu keeps the 4.x formula until 5.3"),
    # ---- protections ---------------------------------------------------------------------------
    Variant("prot_none", [("4.15", "read"), ("5.17", "global")],
            source="pgtable-bits.h '#define _PAGE_PROT_NONE _PAGE_READ' (read in 5.4) -> '_PAGE_PROT_NONE "
                   "_PAGE_GLOBAL' with PAGE_NONE __pgprot(_PAGE_PROT_NONE | _PAGE_READ) in pgtable.h: "
                   "'riscv/mm: Adjust PAGE_PROT_NONE to comply with THP semantics' (Nanyong Sun, posted for -next "
                   "23 Nov 2021; release 5.17 from recollection)"),
    Feature("global_kernel", since="5.14",
            source="'riscv: Use global mappings for kernel pages' (Guo Ren, v5 30 May 2021 on 5.13-rc2, in the "
                   "5.14 merge-window pull): _PAGE_KERNEL gains _PAGE_GLOBAL (5.4 and 5.10 lack it, read)"),
    Feature("copy_exec_readable", since="6.4",
            source="'riscv: Fix PAGE_COPY_EXEC / drop PAGE_COPY_READ_EXEC' (Hsieh-Tseng Shen, lore 20230425, "
                   "upstream 6569fc12e442, a 6.4 fix backported to stable): PAGE_COPY_EXEC PAGE_READ_EXEC (was "
                   "PAGE_EXEC)"),
    Feature("strict_kernel_rwx", since="5.7",
            source="'riscv: add ARCH_HAS_STRICT_KERNEL_RWX' (Zong Li): PAGE_KERNEL_READ, mark_rodata_ro(), 2 MiB "
                   "SECTION_ALIGN of rodata/data on 64-bit. Release from recollection; 5.10 pgtable.h (read) has "
                   "PAGE_KERNEL_READ and PAGE_KERNEL_READ_EXEC, 5.4 (read) has neither"),
    # ---- faults and boot-time tables -----------------------------------------------------------
    Feature("vmalloc_fault", until="6.5",
            source="arch/riscv/mm/fault.c vmalloc_fault() for VMALLOC_START..VMALLOC_END (read in 5.10 and 5.17+); "
                   "7d3332be011e 'riscv: mm: Pre-allocate PGD entries for vmalloc/modules area' (Bjorn Topel, in "
                   "the 6.5 window; its fixes of July 2023 say 'we lost the vmalloc_fault') keeps it for 32-bit only"),
    Feature("uaccess_check", since="5.12",
            source="21855cac82d3 'riscv/mm: Prevent kernel module to access user memory without uaccess "
                   "routines' (Eric Lin, Dec 2020, for-next after the 5.11 window): do_page_fault() dies with "
                   "'access to user memory without uaccess routines' for a kernel-mode fault below TASK_SIZE "
                   "with SR_SUM clear (a 2023 fix by Bjorn Topel, Fixes: 21855cac82d3, runs fixup_exception() first)"),
    Feature("modules_vmalloc_fault", since="5.13", until="6.5",
            source="fault.c (read, 5.17+): 'Modules in 64bit kernels lie in their own virtual region which is not in "
                   "the vmalloc region ... just use vmalloc_fault'; the region exists since 5.13"),
    Feature("preallocate_pgd", since="6.5",
            source="7d3332be011e: pgtable_cache_init() calls preallocate_pgd_pages_range(VMALLOC_START, "
                   "VMALLOC_END, \"vmalloc\") and (MODULES_VADDR, MODULES_END, \"bpf/modules\") (read in 6.6). "
                   "6.11 adds vmemmap/direct map/kasan only under CONFIG_MEMORY_HOTPLUG (off here)"),
    # ---- kernel modules (arch/riscv/kernel/module.c, module-sections.c; relocs.py) -----------
    Feature("module_sections", since="4.18",
            source="'RISC-V: Support kernel module' (Zong Li): module-sections.c (PLT, GOT: "
                   "module_frob_arch_sections refuses a module without .plt/.got/.got.plt), and 32, RVC_BRANCH, "
                   "RVC_JUMP, HI20, LO12_I/S, GOT_HI20, CALL, ALIGN, ADD32, SUB32 in apply_relocate_add (read in the "
                   "4.19 side of an Android 4.19 tree; absent in riscvarchive/riscv-linux's 4.15 loader). Release "
                   "4.18 from the series' date, not verified"),
    Feature("module_auipc_range", since="5.10",
            source="module.c riscv_insn_valid_32bit_offset ([-2^31 - 2^11, 2^31 - 2^11) instead of the s32 check) "
                   "and ADD64/SUB64: read in openharmony/kernel_linux_5.10, absent in the 4.19 side of the Android "
                   "4.19 tree; the release in between is not dated here"),
    Feature("module_add16", since="6.0",
            source="module.c ADD16/SUB16: read in a 6.1-6.3 torvalds/linux version, absent in 5.10; release "
                   "not verified"),
    Feature("module_relocs_67", since="6.7",
            source="'riscv: Add remaining module relocations' (Charlie Jenkins, v9 Nov 2023, the 6.7 merge window; "
                   "release from the series' date, NOT VERIFIED): ADD8/SUB8/SUB6/SET6/SET8/SET16/SET32/32_PCREL/PLT32/"
                   "SET_ULEB128/SUB_ULEB128, the dynamic and TLS types refused with their own messages, ADD/SUB/SET "
                   "summed per place (process_accumulated_relocations); read in ruyisdk/linux-xuantie-kernel, a "
                   "6.6-based tree carrying it"),
    Variant("module_alloc_range", [("4.15", "vmalloc"), ("5.7", "vmalloc_2g"), ("5.13", "modules")],
            source="4.15 (riscvarchive, read): no module_alloc of its own, kernel/module.c's __weak one: "
                   "vmalloc_exec, [VMALLOC_START, VMALLOC_END) PAGE_KERNEL_EXEC; 5.10 module.c (sophgo/linux_5.10, "
                   "read): VMALLOC_MODULE_START max(PFN_ALIGN(&_end - SZ_2G), VMALLOC_START) to VMALLOC_END "
                   "('riscv: avoid the PIC offset of static percpu data in module beyond 2G limits', Vincent Chen; "
                   "5.7 not verified); 5.13 ('riscv: Move kernel mapping outside of linear mapping'): "
                   "[MODULES_VADDR, MODULES_END) (openharmony 5.10 backport and torvalds 6.x, read)"),
    Feature("strict_module_rwx", since="5.14",
            source="arch/riscv/Kconfig 'select ARCH_HAS_STRICT_MODULE_RWX if MMU && !XIP_KERNEL' and module_alloc "
                   "with PAGE_KERNEL (torvalds 6.x module.c, read; PAGE_KERNEL_EXEC in 5.10). Release 5.14 from "
                   "recollection, NOT VERIFIED"),
    Feature("debug_wx", since="5.8",
            source="arch/riscv/mm/ptdump.c ptdump_check_wx (read, 6.x): 'riscv/mm: Found insecure W+X mapping at "
                   "address %p/%pS' (WARN_ONCE) and 'Checked W+X mappings: failed, %lu W+X pages found' / 'Checked "
                   "W+X mappings: passed, no W+X pages found' (no pr_fmt); 'riscv: support DEBUG_WX' (Zong Li, with "
                   "the generic 'mm: add DEBUG_WX support'), release 5.8 not verified"),
    # ---- output formats -----------------------------------------------------------------------
    Feature("ptdump", since="5.7",
            source="arch/riscv/mm/ptdump.c ('Copyright (C) 2019 SiFive'), debugfs kernel_page_tables. Release from "
                   "recollection (Zong Li's STRICT_KERNEL_RWX/ptdump series)"),
    Feature("ptdump_modules_marker", since="5.13",
            source="ptdump.c (read, 6.x): 'Modules/BPF mapping' and 'Kernel mapping' markers under CONFIG_64BIT; "
                   "'riscv: Fix PTDUMP output now BPF region moved back to module region' is in the 5.14 pull, so "
                   "5.13's own marker names may differ (not verified)"),
    Variant("ptdump_bits", [("5.7", "classic"), ("6.7", "svpbmt_napot")],
            source="ptdump.c pte_bits[] (read, 6.x): N, MT(%s), RSW(%d), D A G U X W R V. The earlier table "
                   "(RSW/'   ', then D..V) and the 6.7 boundary are from recollection, NOT VERIFIED"),
    Variant("show_regs_csr_names", [("4.15", "s"), ("5.5", "plain")],
            source="arch/riscv/kernel/process.c show_regs(): 'sstatus: ... sbadaddr: ... scause: ' (4.15, read) -> "
                   "'status: ... badaddr: ... cause: ' by 'riscv: abstract out CSR names for supervisor vs machine "
                   "mode' (Christoph Hellwig, Sept 2019, for 5.5)"),
    Feature("show_regs_symbols", since="5.11",
            source="'riscv: Improve __show_regs' and 'riscv: Add dump stack in show_regs' (Kefeng Wang, in the 5.11 "
                   "pull with 'riscv: Add machine name to kernel boot log and stack dump output'): 'epc : %pS', "
                   "' ra : %pS', the 'epc : ' label (was 'sepc: '), the Hardware name line. That the label changed "
                   "in the same commit is NOT VERIFIED"),
)


def era(version):
    return RISCV(version)
