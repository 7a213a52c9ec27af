"""The arm64 kernel's era rules, each with its source.

"verified" means the value was read in a copy of the kernel file of that era (or in a patch
that changed it, quoted in the comment of the module that uses it); "recollection" means the
release number is from memory of the commit and was *not* checked against a stored copy of
that exact release: those boundaries are the ones to check first when a real kernel
disagrees.
"""

from __future__ import annotations

from mmemu.eras import EraTable, Feature, Variant
from mmemu.units import KernelVersion

ARM64 = EraTable(
    # -- the address space ---------------------------------------------------------------
    Feature("va48", since="3.17",
            source="arch/arm64/Kconfig ARM64_VA_BITS_48 with 4 levels of tables (Documentation/arm64/memory.txt "
                   "of 3.7-3.16: '3 levels ... 39-bit (512GB)' only, verified; the 3.17 release of the Kconfig "
                   "choice is recollection)"),
    Variant("layout", [("3.7", "linear"), ("4.6", "kimage"), ("5.4", "flipped")],
            source="memory.h: kernel image in the linear map until 4.5; KIMAGE_VADDR (MODULES_END) and the "
                   "linear map in the upper half of the kernel VA range from 4.6 ('arm64: move kernel image "
                   "to base of vmalloc area', 'arm64: mm: move vmemmap region right below the linear region', "
                   "Ard Biesheuvel, Feb 2016, verified patch text); PAGE_OFFSET at the bottom of the kernel half "
                   "(_PAGE_OFFSET(va) = -(1 << va)) from 5.4 ('arm64: mm: Flip kernel VA space', Steve Capper, "
                   "verified patch text)"),
    Variant("vmemmap", [("3.7", "fixed-8G"), ("3.17", "va-sized"), ("4.6", "below-linear"), ("5.4", "top"),
                        ("5.11", "top-shift"), ("6.9", "top-1G")],
            source="pgtable.h/memory.h VMEMMAP_START of each era (see layout.py)"),
    Variant("io_area", [("3.7", "none"), ("3.10", "earlycon"), ("3.15", "fixmap"), ("4.0", "pci-below-modules")],
            source="3.7 io.h: PCI_IOBASE 0 (verified); memory.txt with 'earlyprintk device' and a 64KB PCI I/O "
                   "space (verified, a 3.10-era copy); memory.txt with 16MB PCI I/O and 'fixed mappings' "
                   "(verified, 3.15-era merge); PCI_IO_END (MODULES_VADDR - SZ_2M) in memory.h (verified in "
                   "a pre-4.6 copy; 4.0 from a crash extension's '#if LINUX_VERSION_CODE < KERNEL_VERSION(4,0,0)' "
                   "guard, not from the kernel)"),
    Variant("text_offset", [("3.7", 0x80000), ("5.8", 0)],
            source="arch/arm64/Makefile TEXT_OFFSET := 0x00080000; 0x0 from 5.8 ('arm64: set TEXT_OFFSET to "
                   "0x0 in preparation for removing it entirely', recollection); QEMU loads a text_offset 0 "
                   "Image 2 MiB above the start of RAM (hw/arm/boot.c, kernel_load_offset)"),
    Feature("bpf_region", since="5.0", until="5.17",
            source="memory.h BPF_JIT_REGION_START/SIZE (128 MiB) before the modules ('arm64/bpf: don't allocate "
                   "BPF JIT programs in module memory', 5.0, recollection); removed by 'arm64/bpf: Remove 128MB "
                   "limit for BPF JIT programs' (verified patch text; 5.17 from a crash-utility thread quoting "
                   "the v5.17-rc4 macros without it)"),
    Variant("modules_vsize", [("3.7", 64 << 20), ("4.6", 128 << 20), ("6.5", 2 << 30)],
            source="memory.h MODULES_VSIZE: SZ_64M (verified 3.x-4.5), SZ_128M (verified 4.6 patch), SZ_2G "
                   "('arm64: module: rework module VA range selection', verified patch text; 6.5 recollection; "
                   "Documentation/arch/arm64/memory.rst of 6.12 shows the 2GB modules row)"),
    # -- protections and pte accessors ---------------------------------------------------------
    Variant("prot_none", [("3.7", 1 << 1), ("3.11", 1 << 2), ("3.13", 1 << 58), ("6.10", 0)],
            source="PTE_PROT_NONE: crash arm64.c arm64_init(POST_GDB) (bit 1 before 3.11, bit 2 for 3.11/3.12, "
                   "bit 58 from 3.13, verified); a 3.11/3.12 pgtable.h (bit 2, verified); 6.10 'arm64/mm: "
                   "Remove PTE_PROT_NONE bit' -> PTE_PRESENT_INVALID (PTE_NG) (verified patch text)"),
    Variant("pte_write", [("3.7", 0), ("3.14", 1 << 57), ("4.3", 1 << 51)],
            source="pgtable.h: no PTE_WRITE (pte_write = !PTE_RDONLY) in 3.7-3.12 (verified); PTE_WRITE bit 57 "
                   "(verified in a 3.17-3.19 copy; 3.14 recollection); PTE_WRITE = PTE_DBM (51) from 4.3 "
                   "('arm64: Add support for hardware updates of the access and dirty pte bits', recollection)"),
    Variant("set_pte_at", [("3.7", "dirty"), ("3.14", "dirty_write"), ("4.14", "")],
            source="pgtable.h set_pte_at(): 'if (!pte_dirty(pte)) pte = pte_wrprotect(pte)' (verified 3.11); "
                   "'if (pte_dirty(pte) && pte_write(pte)) clear RDONLY else set RDONLY' (verified 3.17); from "
                   "4.14 the accessors move PTE_RDONLY themselves and PAGE_* carry it ('shared+writable pages "
                   "are clean by default, hence PTE_RDONLY|PTE_WRITE', verified 5.x; 4.14 recollection)"),
    Variant("pte_file", [("3.7", 1 << 2), ("3.11", 1 << 3), ("3.13", 1 << 2), ("4.0", 0)],
            source="crash arm64.c PTE_FILE by version (verified); removed with remap_file_pages emulation"),
    Variant("mt_normal", [("3.7", 4), ("5.10", 0)],
            source="memory.h MT_NORMAL: 4 (verified 4.x), 0 (verified 5.10+ copy with MT_NORMAL_TAGGED; 5.10 "
                   "recollection)"),
    Feature("xn_tables", since="5.13",
            source="pgalloc.h __pmd_populate(..., PMD_TYPE_TABLE | PMD_TABLE_PXN/UXN) ('arm64: mm: use XN table "
                   "mapping attributes for user/kernel mappings', recollection)"),
    Feature("kernel_ro", since="4.0",
            source="'arm64: add better page protections to arm64' (CONFIG_DEBUG_RODATA, later "
                   "STRICT_KERNEL_RWX): before it the linear map and the image are RWX (3.x create_mapping "
                   "with prot_sect_kernel, no PXN); 4.0 recollection"),
    # -- zones (arch/arm64/mm/init.c zone_sizes_init) ------------------------------------------
    Variant("zones", [("3.7", "dma32"), ("3.15", "dma-4g"), ("5.5", "dma-1g+dma32"), ("5.11", "dma-dt")],
            source="3.7 ZONE_DMA32 below 4 GiB; 'arm64: Replace ZONE_DMA32 with ZONE_DMA' (3.15, recollection); "
                   "'arm64: use both ZONE_DMA and ZONE_DMA32' (5.5, ZONE_DMA = 30 bits, recollection); "
                   "'arm64: mm: Set ZONE_DMA size based on devicetree's dma-ranges' (5.11, recollection)"),
    # -- where swapper_pg_dir lives (arch/arm64/kernel/head.S, vmlinux.lds.S) --------------------
    Variant("root_section", [("3.7", "pgdir"), ("3.16", "bss"), ("4.19", "rodata")],
            source="head.S 3.7: swapper_pg_dir = KERNEL_RAM_VADDR - SWAPPER_DIR_SIZE (below _text); "
                   "vmlinux.lds.S after BSS_SECTION ('arm64: place initial page tables above the kernel', "
                   "3.16 recollection; verified text of that layout); in the RO area before __init_begin "
                   "('arm64/mm: Move {idmap_pg_dir,swapper_pg_dir} to .rodata section', 4.19 recollection; "
                   "verified 5.x layout)"),
)

# -- the module loader (arch/arm64/kernel/module.c, module-plts.c) ------------------------------
MODULES = EraTable(
    Variant("module_region", [("3.7", "modules"), ("4.6", "etext"), ("6.5", "end_128m")],
            source="module_alloc(): [MODULES_VADDR, MODULES_END) (3.x: __vmalloc_node_range(size, 1, MODULES_VADDR, "
                   "MODULES_END, ...), recollection); [module_alloc_base, + MODULES_VSIZE) with module_alloc_base "
                   "= (u64)_etext - MODULES_VSIZE without RANDOMIZE_BASE (asm/module.h, verified 4.x/5.x copies; "
                   "4.6 with the KASLR series); 6.5 ('arm64: module: rework module VA range selection', verified "
                   "module.c): module_direct_base = _end - SZ_128M without KASLR, its 2G PLT range as fallback"),
    Variant("module_prot", [("3.7", "PAGE_KERNEL_EXEC"), ("5.3", "PAGE_KERNEL")],
            source="module_alloc(): PAGE_KERNEL_EXEC, then PAGE_KERNEL ('arm64/module: create module allocations "
                   "without exec permissions', Ard Biesheuvel, verified patch text; the core's module_enable_x "
                   "makes the text executable; release 5.3 recollection)"),
    Feature("module_ronx", since="3.18",
            source="arch/arm64/Kconfig.debug CONFIG_DEBUG_SET_MODULE_RONX ('arm64: Add CONFIG_DEBUG_SET_MODULE_RONX "
                   "support', Laura Abbott, commit 11d91a770f1f, listed as 3.18-rc1 in a kernel patch index; set by "
                   "the distributions' configs), "
                   "CONFIG_STRICT_MODULE_RWX from 4.11 (default y): text RX, rodata RO, data NX, page-aligned"),
    Variant("module_reloc_data", [("3.7", "psabi"), ("5.2", "split")],
            source="reloc_data(): [-2^15, 2^16) / [-2^31, 2^32) for ABS and PREL ('(u64)(sval + 1) > 2' on the "
                   "bits above n-1 in 3.x copies, 'sval < S16_MIN || sval > U16_MAX' in 4.x copies, the same "
                   "range); 5.2-rc2/rc3 (verified pull and patch): PREL signed [Sxx_MIN, Sxx_MAX], ABS unsigned "
                   "[0, Uxx_MAX]"),
    Variant("module_reloc_movw", [("3.7", "movk"), ("3.13", "movk16"), ("4.6", "movkz")],
            source="reloc_insn_movw(): module.c's own INSN_IMM_MOVK in 3.7-3.12; '#define AARCH64_INSN_IMM_MOVK "
                   "AARCH64_INSN_IMM_16' once the encoder moved to insn.c (verified in a 3.13-4.5 copy, 3.13 "
                   "recollection); the MOVKZ/MOVNZ rewrite ('fix relocation of movz instruction with negative "
                   "immediate') verified in a 4.6+ copy (module_alloc_base) and absent from a <= 4.5 copy"),
    Variant("module_adrp", [("3.7", "plain"), ("4.3", "refused"), ("4.17", "843419")],
            source="ADR_PREL_PG_HI21(_NC): reloc_insn_imm(RELOC_OP_PAGE, ...); under '#ifndef "
                   "CONFIG_ARM64_ERRATUM_843419' (default y) in 4.3-4.16 (verified copies; modules built "
                   "-mcmodel=large instead), so refused as unsupported; 4.17 ('arm64/kernel: don't ban ADRP to work "
                   "around Cortex-A53 erratum #843419', recollection of the release): reloc_insn_adrp(), which "
                   "rewrites only on a CPU with the erratum (is_forbidden_offset_for_adrp, verified module.h)"),
    Variant("module_plts", [("3.7", "none"), ("4.6", "config"), ("6.5", "always")],
            source="module PLTs: none before 4.6; CONFIG_ARM64_MODULE_PLTS (4.6, 'arm64: module: add support for "
                   "PLTs', selected by RANDOMIZE_BASE) until 6.5, which builds module-plts.c always (the "
                   "Kconfig option removed by the VA range rework, verified module.c with no IS_ENABLED check)"),
    Variant("module_msg_prefix", [("3.7", ""), ("6.5", "Modules: ")],
            source="module.c: pr_err without pr_fmt; '#define pr_fmt(fmt) \"Modules: \" fmt' (verified newest "
                   "module.c; 'Modules: 22496 pages in range for non-PLT usage' in a 6.8 boot log; 6.5 recollection)"),
    Feature("debug_wx", since="4.10",
            source="arch/arm64/mm/dump.c ptdump_check_wx() (CONFIG_DEBUG_WX, commit 1404d6f13e47 'arm64: dump: Add "
                   "checking for writable and exectuable pages', 4.10 recollection; a 4.14 log quoted in a stable "
                   "review: 'arm64/mm: Found insecure W+X mapping at address (____ptrval____)/0xffff000000d90000'): "
                   "'Checked W+X mappings: passed, no W+X pages "
                   "found' or 'Checked W+X mappings: FAILED, %lu W+X pages found, %lu non-UXN pages found' "
                   "(verified ptdump.c/dump.c texts), the first with 'arm64/mm: Found insecure W+X mapping at "
                   "address %p/%pS' (note_prot_wx, WARN_ONCE)"),
)

# -- the CPU ---------------------------------------------------------------------------------
CPU = EraTable(
    Variant("reserved_ttbr0", [("3.7", "empty_zero_page"), ("5.13", "reserved_pg_dir")],
            source="mmu_context.h cpu_set_reserved_ttbr0(): TTBR0_EL1 = __pa(empty_zero_page) for init_mm "
                   "(verified 4.x text); __pa_symbol(reserved_pg_dir) in later kernels (verified 6.x text; "
                   "the 5.13 release of 'arm64: mm: use reserved_pg_dir' is recollection)"),
)

# -- output formats ----------------------------------------------------------------------------
REPORTS = EraTable(
    Variant("oops_header", [("3.7", "08lx"), ("4.13", "016lx")],
            source="fault.c __do_kernel_fault: 'Unable to handle kernel %s at virtual address %08lx' then "
                   "%016lx (with the 'Mem abort info' decode; release recollection)"),
    Feature("mem_abort_decode", since="4.13",
            source="fault.c mem_abort_decode()/data_abort_decode() (verified 4.19 text; 4.13 recollection)"),
    Variant("show_pte", [("3.7", "star"), ("4.17", "pgtable"), ("5.0", "pgdp-phys")],
            source="fault.c show_pte(): 'pgd = %p' and '[%08lx] *pgd=%016llx' (3.x); '%s pgtable: %luk pages, "
                   "%u-bit VAs, pgd = %p' and '[%016lx] pgd=%016llx' (verified 4.19 text); 'pgdp=%016lx' "
                   "physical (verified patch text) -- releases recollection"),
    Feature("show_p4d", since="5.8", source="show_pte() prints p4d= (verified 6.x text; 5.8 recollection)"),
    Variant("ec_line", [("3.7", "class"), ("5.11", "ec")],
            source="'  Exception class = %s, IL = %u bits' (verified 4.19) then '  EC = 0x%02lx: %s, IL = %u "
                   "bits' (verified 6.x); 5.11 recollection"),
    Variant("esr_width", [("3.7", 32), ("5.19", 64)],
            source="'arm64: Treat ESR_ELx as a 64-bit register' (5.19 recollection): 'ESR = 0x%016lx', "
                   "'Internal error: %s: %016lx' (verified 6.x fault.c text)"),
    Feature("fsc_line", since="5.19", source="'  FSC = 0x%02lx: %s' in mem_abort_decode (verified 6.x; release "
                                              "recollection)"),
    Feature("iss2", since="6.13", source="data_abort_decode ISS2/TnD/TagAccess/GCS lines (verified patch text; "
                                         "release recollection)"),
    Variant("fault_msg", [("3.7", "basic"), ("4.10", "perm"), ("5.8", "perm-exec")],
            source="__do_kernel_fault: 'write to read-only memory'/'read from unreadable memory' for EL1 "
                   "permission faults (verified 4.19), 'execute from non-executable memory' (verified 6.x); "
                   "releases recollection"),
    Variant("fault_name_4", [("3.7", "input address range fault"), ("3.17", "level 0 translation fault")],
            source="fault.c fault_info[4] (verified 'level 0 translation fault' in 4.19; the 3.x name and the "
                   "3.17 boundary are recollection)"),
    Variant("segfault", [("3.7", "unhandled"), ("4.17", "exception")],
            source="3.x-4.x __do_user_fault: '%s[%d]: unhandled %s (%d) at 0x%08lx, esr 0x%03x' "
                   "(recollection); arm64_show_signal(): '%s[%d]: unhandled exception: %s, ESR 0x%08x, %s' "
                   "(recollection of traps.c; 4.17 recollection)"),
    Feature("sanitize_esr", since="4.15",
            source="fault.c set_thread_esr()/__do_user_fault(): a kernel address is reported to user space as a "
                   "level 0 translation fault (verified 4.19 and 6.x text; 4.15 recollection)"),
    Feature("ptdump_level_name", since="4.8",
            source="dump.c note_page(): '%9lu%c' (verified 3.18 and 4.4 copies) then '%9lu%c %s' with "
                   "pg_level[].name ('arm64: mm: dump: log span level', verified in 4.14 and 4.19 copies; the 4.8 "
                   "release is recollection)"),
    Feature("ptdump_holes", since="5.6",
            source="dump.c note_page() printed a range only 'if (st->current_prot)' (verified 3.18, 4.4, 4.14, "
                   "4.19, 5.4 copies); the conversion to the generic ptdump walker ('arm64: mm: convert "
                   "mm/dump.c to use walk_page_range()', 5.6 recollection) prints every range and only the "
                   "attributes under 'if (st->current_prot && ...)' (verified ptdump.c)"),
    Variant("ptdump", [("3.18", "dump-3.18"), ("4.6", "dump-4.6"), ("5.4", "dump-5.4"), ("5.7", "ptdump-5.7"),
                       ("5.17", "ptdump-5.17"), ("6.9", "ptdump-6.9")],
            source="arch/arm64/mm/dump.c (3.18, 'arm64: add support to dump the kernel page tables'), markers "
                   "of 4.6 (verified patch), generic ptdump as ptdump.c with BPF markers (verified rename patch, "
                   "5.7 recollection), BPF markers gone (verified patch), 6.9 markers (verified ptdump.c)"),
)


def version(text) -> KernelVersion:
    return KernelVersion.parse(text)
