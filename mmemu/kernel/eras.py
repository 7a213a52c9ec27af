"""Every version-dependent rule of generic mm that the kernel model follows, in one table.

Each rule names the source it comes from (the file, and the change that introduced it
where that is known). Arch-specific era rules (x86's vmalloc_fault, the fixmap enums, the
oops wording) live in the arch plugins' own tables. Nothing else in the core compares
kernel versions: ``kernel.era.<rule>`` is how the kernel model asks.
"""

from __future__ import annotations

from ..eras import EraTable, Feature, Variant

MM = EraTable(
    Feature("lazy_vunmap", since="2.6.28",
            source="mm/vmalloc.c: Nick Piggin's 'mm: rewrite vmap layer', merged for 2.6.28: freed areas wait "
                   "for __purge_vmap_area_lazy (one TLB flush for many)"),
    Variant("anon_zero_page", [("2.6.24", False), ("2.6.32", True)], before=True,
            source="mm/memory.c do_anonymous_page: 'mm: remove ZERO_PAGE' (2.6.24) and 'mm: reinstate ZERO_PAGE' "
                   "(2.6.32): read faults of anonymous memory map the shared zero page"),
    Feature("zero_page_special", since="2.6.32",
            source="mm/memory.c do_anonymous_page: the reinstated zero page is mapped with "
                   "pte_mkspecial(pfn_pte(my_zero_pfn(address), vma->vm_page_prot)) (2.6.32; read in a 2.6.3x "
                   "copy, the pte_lockptr form, and in 3.x); up to 2.6.23 it was mk_pte(ZERO_PAGE(address)) with a reference taken "
                   "(page_cache_get), before pte_special existed (x86's: 2.6.26)"),
    Variant("mprotect_write_upgrade", [("6.0", "dirty"), ("6.2", "exclusive")], before=None,
            source="mm/mprotect.c change_pte_range: before 6.0 pte_modify() with the private mapping's "
                   "read-only vm_page_prot (PAGE_COPY) drops write access and the next write takes a wp fault "
                   "(dirty_accountable is for shared file mappings only); 6.0, 64fe24a3e05e 'mm/mprotect: try "
                   "avoiding write faults for exclusive anonymous pages when changing protection' (v2 on "
                   "5.19-rc1): can_change_pte_writable() makes a dirty PageAnonExclusive pte writable at once; "
                   "6.2, d84887739d5c 'mm/mprotect: allow clean exclusive anon pages to be writable': dirty or "
                   "not (torvalds/linux mm/mprotect.c read: 'return page && PageAnon(page) && "
                   "PageAnonExclusive(page)'). The releases are the commits' merge windows (v2 of the first "
                   "posted on 5.19-rc1, the second in November 2022), not read in tagged trees"),
    Variant("kmap_atomic", [("2.6.37", "stack"), ("5.11", "kmap_local")], before="km_type",
            source="include/linux/highmem.h: named KM_* slots until 2.6.36; 'mm: highmem: stack based "
                   "kmap_atomic()' (2.6.37); kmap_local_page() with a per-task stack (5.11, mm/highmem.c)"),
    Feature("kmap_atomic_clears_pte", since="2.6.22",
            source="arch/i386/mm/highmem.c (2.6.22): kunmap_atomic clears the pte and flushes it without "
                   "CONFIG_DEBUG_HIGHMEM; kmap_atomic BUGs on a slot still mapped"),
    Feature("map_shared_validate", since="4.15",
            source="mm/mmap.c do_mmap (4.15): MAP_SHARED_VALIDATE (MAP_SHARED | MAP_PRIVATE) is a shared mapping "
                   "whose flags are checked; before, that combination is -EINVAL"),
    Variant("printk_symbol", [("5.15", "_printk")], before="printk",
            source="include/linux/printk.h (5.15, 'printk: Userspace format indexing support'): printk() is a "
                   "macro around the exported _printk()"),
    Variant("module_unknown_symbol", [("2.6.36", "{module}: Unknown symbol {name} (err 0)"),
                                      ("4.19", "{module}: Unknown symbol {name} (err -2)")],
            before="{module}: Unknown symbol {name}",
            source="kernel/module.c simplify_symbols: no error code in 2.6.32 (read); '(err %li)' of "
                   "PTR_ERR(ksym), 0 for a symbol that does not exist, in 4.0 (read; from resolve_symbol_wait, "
                   "2.6.36 not verified here); '(err %d)' of PTR_ERR(ksym) ?: -ENOENT in 4.19 (read; the change "
                   "between 4.0 and 4.19 is not dated here)"),
    Variant("module_oot_taint", [("3.2", "silent"), ("4.19", "warn")], before="",
            source="kernel/module.c: TAINT_OOT_MODULE (O) for a module without MODULE_INFO(intree, \"Y\") from 3.2 "
                   "(not in 2.6.32, read; set silently in 4.0, read); '%s: loading out-of-tree module taints "
                   "kernel.' once per boot in 4.19 (read; the release that added the message is not dated here)"),
    Variant("gfp_zero", [("5.0", 0x100)], before=0x8000,
            source="include/linux/gfp.h: ___GFP_ZERO 0x8000 in 2.6.32, 3.x and 4.19 (read), 0x100 in 5.10 (read; the "
                   "renumbering release between is not dated here), gfp_types.h in 6.x; __GFP_DMA 0x01, __GFP_HIGHMEM "
                   "0x02, __GFP_DMA32 0x04 in every era"),
    Variant("module_percpu_section", [("2.6.35", ".data..percpu")], before=".data.percpu",
            source="include/asm-generic/percpu.h PER_CPU_BASE_SECTION, kernel/module.c find_pcpusec: "
                   "'.data.percpu' in 2.6.32 (read), '.data..percpu' in 4.0 and later (read; renamed in 2.6.35, "
                   "'percpu: use \"..\" in section names', not read here)"),
    Variant("module_percpu_nomem", [("2.6.37", "{module}: Could not allocate {size} bytes percpu data")],
            before="Could not allocate {size} bytes percpu data",
            source="kernel/module.c percpu_modalloc: KERN_WARNING without the module's name in 2.6.32 (read), "
                   "pr_warn with it in 4.0 and later (read; the release between is not dated here)"),
    Feature("module_mem_types", since="6.4",
            source="kernel/module/main.c (6.4, 'module: replace module_layout with module_memory'): one "
                   "allocation per mod_mem_type (MOD_TEXT, MOD_DATA, MOD_RODATA, MOD_RO_AFTER_INIT, MOD_INIT_*); "
                   "before, one core_layout and one init_layout"),
    Variant("module_ro_after_init_sections", [("4.8", (".data..ro_after_init",)),
                                              ("5.0", (".data..ro_after_init", "__jump_table"))], before=(),
            source="kernel/module.c layout_and_allocate: SHF_RO_AFTER_INIT on .data..ro_after_init (4.8, 'module: "
                   "Add support for __ro_after_init data'; the only one in 4.19, read) and on __jump_table too (5.10, "
                   "read; the release between 4.19 and 5.10 is not dated here): their own group, read-only once init "
                   "ran"),
    Feature("arch_sync_kernel_mappings", since="5.8",
            source="mm/vmalloc.c, include/linux/pgtable.h (5.8): arch_sync_kernel_mappings() after a vmap "
                   "modified top-level entries the arch asks to sync (ARCH_PAGE_TABLE_SYNC_MASK)"),
    Variant("vmap_area_fail", [
        ("2.6.12", "allocation failed: out of vmalloc space - use vmalloc=<size> to increase size."),
        ("2.6.28", "vmap allocation for size {size} failed: use vmalloc=<size> to increase size."),
        ("4.12", "vmap allocation for size {size} failed: use vmalloc=<size> to increase size"),
    ], source="mm/vmalloc.c: __get_vm_area (2.6.12), alloc_vmap_area (2.6.28: the vmap rewrite; the full "
              "stop went with the __GFP_NOWARN rework in 4.12)"),
    Variant("vmalloc_page_fail", [
        ("2.6.12", "vmalloc: out of memory after {got} of {want} pages (this kernel prints no warning)"),
        ("3.0", "vmalloc: allocation failure, allocated {got_bytes} of {want_bytes} bytes"),
        ("5.13", "vmalloc error: size {got_bytes}, page order 0, failed to allocate pages"),
        ("6.4", "vmalloc error: size {got_bytes}, failed to allocate pages"),
    ], source="mm/vmalloc.c __vmalloc_area_node: no warning in 2.6.12 (vmalloc returned NULL); warn_alloc "
              "wording of 3.0; 5.13 prints area->nr_pages * PAGE_SIZE as size; 6.4 drops the order"),
    Variant("vmalloc_exceeds_ram", [
        ("3.0", "vmalloc: allocation failure: {size} bytes"),
        ("5.13", "vmalloc error: size {size}, exceeds total pages"),
    ], before="vmalloc: {size} bytes exceed the machine's RAM (this kernel prints no warning)",
        source="mm/vmalloc.c __vmalloc_node_range: '(size >> PAGE_SHIFT) > totalram_pages' fails at once "
               "(2.6: num_physpages, silently); warn_alloc_failed's wording of 3.0; 'exceeds total pages' "
               "with the 5.13 warnings rework"),
    Variant("vmalloc_array_fail", [("5.13", "vmalloc error: size {size}, failed to allocate page array size "
                                            "{array_size}")],
            source="mm/vmalloc.c __vmalloc_area_node (5.13): the page array (kmalloc'd, or vmalloc'd when larger "
                   "than a page) could not be allocated; before, the generic allocation-failure warning"),
    Feature("vmalloc_map_fail_message", since="5.13",
            source="mm/vmalloc.c __vmalloc_area_node (5.13): 'vmalloc error: size %lu, failed to map pages' "
                   "when vmap_pages_range() fails"),
    Variant("taint_flags", [("2.6.21", "PFSRMBU"), ("2.6.22", "PFSRMBUD"), ("2.6.25", "PFSRMBUDA"),
                            ("2.6.26", "PFSRMBUDAW"), ("2.6.28", "PFSRMBUDAWC"), ("2.6.39", "PFSRMBUDAWCI"),
                            ("3.2", "PFSRMBUDAWCIO"), ("3.15", "PFSRMBUDAWCIOE"), ("3.17", "PFSRMBUDAWCIOEL"),
                            ("4.0", "PFSRMBUDAWCIOELK"), ("4.15", "PFSRMBUDAWCIOELKX"),
                            ("4.19", "PFSRMBUDAWCIOELKXT"), ("6.0", "PFSRMBUDAWCIOELKXTN")],
            before="PFSRMB",
            source="kernel/panic.c taint_flags[] / print_tainted(): one column per flag, in TAINT_* order. Real "
                   "'Tainted: G           O      ' lines with 18 columns in 5.4, 5.6, 5.10 and 5.19 and 19 (N, "
                   "TAINT_TEST) in 6.1, 6.2 and 6.8 (kernel logs quoted in tests/golden/SOURCES.md); O is 3.2 "
                   "(TAINT_OOT_MODULE), E 3.15, L 3.17, K 4.0 (livepatch), X 4.15 (TAINT_AUX); the releases of U, D, "
                   "A, W, C, I and T (TAINT_RANDSTRUCT) are not verified here"),
    Variant("maps_anon_offset", [("2.6.32", "zero")], before="vm_pgoff",
            source="fs/proc/task_mmu.c show_map: the offset column is vma->vm_pgoff << PAGE_SHIFT for every "
                   "mapping in 2.6.2x (read: the maps_protect-era source; real 2.6.24 and 2.6.28 logs show an "
                   "anonymous mapping's own start there), 0 unless the mapping has a file later (2.6.32 logs and "
                   "every later source); the release between 2.6.28 and 2.6.32 is not dated here"),
    Variant("vunmap_nonexistent", [("2.6.12", "vfree"), ("6.3", "vunmap")],
            source="mm/vmalloc.c: vunmap() warns 'Trying to vunmap() nonexistent vm area' since 6.3 "
                   "(remove_vm_area rework); before, both warn as vfree()"),
    Feature("vmap_area_list", since="2.6.28",
            source="mm/vmalloc.c: 'mm: rewrite vmap layer' (2.6.28) adds vmap_area_list; crash memory.c vm_init "
                   "sets USE_VMAP_AREA only when that symbol exists, and dump_vmlist walks the old vmlist of "
                   "vm_structs otherwise (crash-utility/crash memory.c, read at commit 004218c5)"),
    Variant("pageflags", [("4.20", (("slab", 9), ("reserved", 12))), ("6.6", (("slab", 11), ("reserved", 14)))],
            before=(("slab", 7), ("reserved", 10)),
            source="include/linux/page-flags.h enum pageflags, the bits mmemu's frames have (PG_slab, PG_reserved): "
                   "PG_locked, PG_error, PG_referenced, PG_uptodate, PG_dirty, PG_lru, PG_active, PG_slab (7), "
                   "PG_owner_priv_1, PG_arch_1, PG_reserved (10) in 3.x (read, torvalds/linux at 00170fdd; the same "
                   "first eleven as 2.6); PG_workingset (4.20) and PG_waiters (bit 7) before PG_error: PG_slab 9, "
                   "PG_reserved 12 (read, 4.20-5.x copies); PG_writeback moved to bit 1 and PG_head to bit 6: PG_slab "
                   "11, PG_reserved 14 (read, a 6.x copy that still has PG_error and PG_slab). Not dated here: the "
                   "4.10 placing of PG_waiters (4.10-4.19 use the 3.x bits) and the 6.x reordering (before 6.6 the "
                   "4.20 bits); names as crash prints them (mm/debug.c pageflag_names, or the enum without PG_)"),
)
