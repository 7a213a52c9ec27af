"""What the x86 arches share beyond their paging modes: their era rules of memory
management, ``vmalloc_fault``, and the methods of :class:`mmemu.Arch` that are the same
for i386, PAE and x86_64 (faults, oops, segfault line, crash vtop)."""

from __future__ import annotations

from mmemu.arch import Arch
from mmemu.eras import EraTable, Feature, Variant
from mmemu.layout import MemoryRange

from . import oops as _oops
from . import pti
from .layout_docs import layout_text_x86
from .render import vtop_lines_x86, vtop_lines_x86_64, vtop_paddr

#: x86's own era rules (arch/x86/mm/*.c)
X86_MM = EraTable(
    Variant("vmalloc_fault_32", [("5.8", False), ("5.9", True)], before=True,
            source="arch/x86/mm/fault.c: vmalloc_fault() removed in 5.8 ('x86/mm: remove vmalloc faulting'), "
                   "brought back for 32-bit in 5.9 ('x86/mm/32: Bring back vmalloc faulting on x86_32')"),
    Feature("vmalloc_fault_64", until="5.8",
            source="arch/x86/mm/fault.c: 64-bit vmalloc_fault() removed in 5.8: the vmalloc p4d/pud are "
                   "preallocated (arch/x86/mm/init_64.c preallocate_vmalloc_pages)"),
    Feature("vmalloc_fault_range_check", since="2.6.26",
            source="arch/x86/mm/fault.c vmalloc_fault (2.6.26): only VMALLOC_START..VMALLOC_END is synced "
                   "(2.6.12 checked only address >= TASK_SIZE)"),
    Feature("sync_kernel_mappings", since="5.8",
            source="arch/x86/mm/fault.c arch_sync_kernel_mappings (5.8): a new kernel pmd (32-bit) or p4d/pud "
                   "(64-bit, sync_global_pgds) is copied into every pgd on the pgd_list at once"),
    Feature("preallocate_vmalloc_pages", since="5.8",
            source="arch/x86/mm/init_64.c preallocate_vmalloc_pages (5.8): the level below the pgd is allocated "
                   "for the whole vmalloc space at boot"),
    Variant("direct_map_64", [("2.6.27", "low_ram_and_above_4g"), ("3.9", "e820_ram")], before="end_pfn_map",
            source="arch/x86/kernel/setup.c / arch/x86/mm/init.c, x86_64's direct map: up to 2.6.26 "
                   "init_memory_mapping(0, end_pfn_map << PAGE_SHIFT), every e820 entry's range; 2.6.27-3.8 "
                   "[0, e820_end_of_low_ram_pfn()) and [4G, max_pfn); 3.9+ (66520ebc2df3 'x86, mm: Only direct map "
                   "addresses that are marked as E820_RAM') the memblock (E820_RAM) ranges, [0, 1M) always"),
    Variant("root_symbol_64", [("4.14", "init_top_pgt")], before="init_level4_pgt",
            source="arch/x86/kernel/head_64.S: init_level4_pgt renamed init_top_pgt for 5-level paging (4.14)"),
    Feature("fentry", since="4.19",
            source="arch/x86/kernel/ftrace_64.S, ftrace_32.S: __fentry__ exported; -mfentry is x86_64's from "
                   "3.4 ('ftrace/x86: Add support for -mfentry to x86_64'), i386's from 4.19 (mcount before)"),
    Feature("return_thunk", since="5.19",
            source="arch/x86/lib/retpoline.S (5.19, retbleed: 'x86: Use return-thunk in asm code'): "
                   "__x86_return_thunk exported"),
    Feature("debug_wx", since="4.4",
            source="arch/x86/mm/dump_pagetables.c (4.4, 'x86/mm: Warn on W^X mappings', CONFIG_DEBUG_WX): "
                   "'x86/mm: Checked W+X mappings: passed, no W+X pages found.' or 'FAILED, %lu W+X pages found.', "
                   "the first range as 'x86/mm: Found insecure W+X mapping at address ...' (its wording: wx_found)"),
    Feature("module_ronx", since="2.6.38",
            source="arch/x86/Kconfig.debug CONFIG_DEBUG_SET_MODULE_RONX (2.6.38, 'x86: Add RO/NX protection for "
                   "loadable kernel modules'; default n, set by the distributions' configs), CONFIG_STRICT_MODULE_RWX "
                   "from 4.11 (forced on x86): text read-only, data not executable, each part page-aligned "
                   "(debug_align); before 2.6.38 module memory stays RWX"),
    Feature("module_alloc_nx", since="5.2",
            source="arch/x86/kernel/module.c module_alloc (5.2, 'x86/modules: Avoid breaking W^X while loading "
                   "modules', Nadav Amit): PAGE_KERNEL, then module_enable_x; PAGE_KERNEL_EXEC before"),
    Feature("module_plt32_64", since="4.16",
            source="arch/x86/kernel/module.c (4.16, 'x86: Treat R_X86_64_PLT32 as R_X86_64_PC32', H.J. Lu, for "
                   "binutils 2.31's PLT32 calls; present in 4.19, read)"),
    Feature("module_plt32_32", since="5.12",
            source="arch/x86/kernel/module.c apply_relocate: R_386_PLT32 as R_386_PC32 ('x86/build: Treat "
                   "R_386_PLT32 relocation as R_386_PC32', Fangrui Song, January 2021); absent from 5.10.13 (read), "
                   "present in 6.10 (read); the merge release 5.12 is not verified here"),
    Feature("module_pc64", since="5.0",
            source="arch/x86/kernel/module.c apply_relocate_add: case R_X86_64_PC64 (64-bit place-relative "
                   "references of the relative jump labels, Ard Biesheuvel); absent from 4.19 (read), present in 5.2 "
                   "and 5.10 (read); the merge release 5.0 is not verified here"),
    Feature("module_reloc_zero_check", since="4.15",
            source="arch/x86/kernel/module.c (4.15, 'x86/module: Detect and skip invalid relocations', Josh "
                   "Poimboeuf): a place that is not zero is refused; present in 4.19 and 5.10 (read)"),
    Variant("module_reloc_nonzero", [
        ("4.15", "x86/modules: Skipping invalid relocation target, existing value is nonzero for type {type}, "
                 "loc {place:016x}, val {value:x}"),
        ("6.3", "x86/modules: Invalid relocation target, existing value is nonzero for type {type}, "
                "loc {place:016x}, val {value:x}")],
        source="arch/x86/kernel/module.c: 'Skipping invalid relocation target' in 4.19 and 5.10 (read), 'Invalid "
               "relocation target' in 6.10 (read), from 'livepatch,x86: Clear relocation targets on a module "
               "removal' (Song Liu; 6.3 not verified here). loc is a %p: mmemu prints it unhashed, as with "
               "no_hash_pointers"),
    Variant("module_msg_prefix", [("3.7", "module: ")], before="module ",
            source="arch/x86/kernel/module.c: printk(KERN_ERR \"module %s: ...\") in 2.6.12-2.6.3x (read); "
                   "pr_err with pr_fmt KBUILD_MODNAME \": \" (\"module: \") in 4.19 (read), from Joe Perches' "
                   "conversion of arch/x86 printks to pr_<level> (3.7 not verified here)"),
    Feature("percpu_zero_based_64", since="2.6.30",
            source="arch/x86/kernel/vmlinux.lds.S: x86_64 SMP links .data..percpu at 0 (PERCPU_VADDR(0)); "
                   "%gs holds __per_cpu_offset (the PDA went away in the 2.6.30 percpu rework); "
                   "the embed first chunk (setup_percpu.c pcpu_embed_first_chunk) is of the same release"),
    Variant("vsyscall_gate_perms", [("5.3", "--xp")], before="r-xp",
            source="arch/x86/entry/vsyscall/vsyscall_64.c gate_vma: VM_READ | VM_EXEC in vsyscall=emulate mode, "
                   "VM_EXEC alone with vsyscall=xonly, the default from 5.3 (CONFIG_LEGACY_VSYSCALL_XONLY); "
                   "tools/testing/selftests/proc/proc-pid-vm.c expects 'ffffffffff600000-ffffffffff601000 r-xp "
                   "00000000 00:00 0                  [vsyscall]' or the same line with --xp; 2.6-era kernels "
                   "(an 8 MiB ---p gate area) are not modelled"),
    Variant("vsyscall_mode", [("3.1", "emulate"), ("5.3", "xonly")], before="native",
            source="arch/x86_64/kernel/vsyscall.c (2.6.12, read) map_vsyscall: VSYSCALL_FIRST_PAGE with "
                   "PAGE_KERNEL_VSYSCALL (user, executable); arch/x86/kernel/vsyscall_64.c (3.x, read): "
                   "'vsyscall_mode = EMULATE', VSYSCALL_FIRST_PAGE with PAGE_KERNEL_VVAR (user, read-only, NX) and "
                   "VVAR_PAGE with PAGE_KERNEL_VVAR (the emulation and the vvar page came in 3.1, 'x86-64: Emulate "
                   "legacy vsyscalls'; the release is not verified here); arch/x86/entry/vsyscall/vsyscall_64.c: "
                   "VSYSCALL_PAGE (3.16+), EMULATE until 5.2, XONLY from 5.3 (CONFIG_LEGACY_VSYSCALL_XONLY: 'there "
                   "is no PTE at all backing the vsyscall page')"),
    Variant("wx_found", [("4.15", "ptrval_pS"), ("5.1", "pS")], before="p_pS",
            source="arch/x86/mm/dump_pagetables.c note_page: WARN_ONCE 'x86/mm: Found insecure W+X mapping at "
                   "address %p/%pS' (4.4, linuxkit issue 685's 4.4.30 log: 'ffff880000080000/0xffff880000080000'; "
                   "still in the 5.0 source, read); %p hashed from 4.15, '(ptrval)' before the hash key is "
                   "ready, as at mark_rodata_ro (the 4.19-rc report 'x86/mm: Found insecure W+X mapping at address "
                   "(ptrval)/0xc00a0000'); note_wx() prints '%pS' alone (the April 2019 fixes, 5.1 not verified)"),
    Feature("pae_pmd_free", since="2.6.25",
            source="include/asm-x86/pgalloc_32.h of 2.6.24 (read): 'In the PAE case we free the pmds as part of "
                   "the pgd' (__pmd_free_tlb and pmd_free empty, pud_populate a BUG); the unified "
                   "include/asm-x86/pgalloc.h after it (read, torvalds/linux 0e2f65ee) has a real __pmd_free_tlb "
                   "and PAE's pud_populate, and arch/x86/mm/pgtable.c pgd_mop_up_pmds says the preallocated pmds "
                   "'will be freed by munmap/exit_mmap' (6.x, read): free_pgtables frees a user pmd whose GiB no "
                   "VMA reaches; the release, 2.6.25 (the x86 pgalloc unification), is not verified here"),
    Feature("pae_pmd_unshared", since="6.16",
            source="arch/x86/mm/pgtable.c, asm/pgtable-3level_types.h: SHARED_KERNEL_PMD removed, PAE kernels "
                   "'move away from having PAE kernels share any PMDs across processes. This was already the "
                   "default on PTI kernels' ('x86/mm: Preallocate all PAE page tables', Dave Hansen, April 2025; "
                   "with 'x86/mm: Always tell core mm to sync kernel mappings': ARCH_PAGE_TABLE_SYNC_MASK "
                   "PGTBL_PMD_MODIFIED), merged with the x86 core updates for v6.16 ('Simplify 32-bit PAE page "
                   "table handling')"),
    Feature("l1tf_protnone_invert", since="4.18",
            source="arch/x86/include/asm/pgtable-invert.h (4.18, 'x86/speculation/l1tf: Protect PROT_NONE PTEs "
                   "against speculation'): pfn_pte, pte_pfn and pte_modify invert the frame of a not-present "
                   "non-zero pte (protnone_mask, flip_protnone_guard), included by pgtable_64.h and "
                   "pgtable-3level.h; pgtable-2level.h: 'No inverted PFNs on 2 level page tables'. PAE's "
                   "__PHYSICAL_MASK_SHIFT is 52 for it ('we need the full mask to make sure inverted PROT_NONE "
                   "entries have all the host bits set', page_32_types.h)"),
    Feature("ptdump_current", since="4.15",
            source="arch/x86/mm/debug_pagetables.c (4.15, 'x86/mm/dump_pagetables: Allow dumping current "
                   "pagetables'): page_tables/current_kernel, and current_user #ifdef CONFIG_PAGE_TABLE_ISOLATION"),
    Variant("ptdump_file", [("4.15", "/sys/kernel/debug/page_tables/kernel")],
            before="/sys/kernel/debug/kernel_page_tables",
            source="arch/x86/mm/debug_pagetables.c (4.15): the page_tables directory replaces kernel_page_tables"),
)

#: arch/x86/kernel/setup.c: the first page (the real-mode IVT and the BIOS data area) is
#: never given to the page allocator (trim_bios_range / reserve_bios_regions)
BIOS_PAGE = MemoryRange(0, 4096, "BIOS data area")


class X86Arch(Arch):
    """The methods every x86 arch shares."""

    elf_machine = "EM_386"
    #: int3 at every kernel function's address: a call from a module traps there
    kcall_stub = b"\xcc"

    def _add_reserved(self, layout):
        if BIOS_PAGE not in layout.reserved:
            layout.reserved.append(BIOS_PAGE)
        return layout

    def percpu_plan(self, spec, layout, bits: int):
        """arch/x86/kernel/setup_percpu.c setup_per_cpu_areas: the first chunk embedded in
        the direct map with ``atom_size`` PMD_SIZE on 64-bit, PAGE_SIZE on 32-bit ("vmalloc
        space is highly contended"), for an SMP kernel only. The static size is the size of
        ``.data..percpu`` in Debian 6.1's vmlinux (cloud-amd64 0x34000, 686 0x19394, 686-pae
        0x19754, read from the images' section headers); it only moves where module per-cpu
        data starts. x86_64 links the section at 0 (zero-based per-cpu, 2.6.30+); i386 (and
        x86_64 before) at its place in the image, here the end of the image's data."""
        from mmemu import PercpuPlan

        if not layout.config.get("CONFIG_SMP"):
            return None
        if bits == 64:
            static_size, atom = 0x34000, 2 << 20
        else:
            static_size, atom = (0x19754 if spec.arch == "i386_pae" else 0x19394), 4096
        if bits == 64 and X86_MM(spec.kernel).percpu_zero_based_64:
            start = 0
        else:
            data = next(sec for sec in layout.image if sec.name == "data")
            start = (data.virt + data.size - static_size) & ~0xFFF
        # arch/x86/include/asm/dma.h: MAX_DMA_ADDRESS is PAGE_OFFSET + 16 MiB
        return PercpuPlan(static_start=start, static_size=static_size, atom_size=atom, alloc_floor=16 << 20)

    def pgprots(self, spec):
        """The named protections; with PTI on, the kernel's are not global
        (:func:`mmemu_x86.pti.kernel_pgprots`)."""
        prots = super().pgprots(spec)
        return pti.kernel_pgprots(prots) if pti.pti_enabled(spec) else prots

    def set_user_pgtbl(self, kernel, raw: int) -> int:
        return pti.set_user_pgtbl(kernel, raw)

    def ptdump_root(self, kernel, view: str, process=None) -> int:
        """arch/x86/mm/debug_pagetables.c (4.15+): page_tables/kernel, current_kernel
        (current->mm->pgd) and, with CONFIG_PAGE_TABLE_ISOLATION, current_user
        (ptdump_walk_pgd_level_debugfs(m, current->mm, true): kernel_to_user_pgdp(pgd) when
        X86_FEATURE_PTI, the pgd itself otherwise)."""
        from mmemu.errors import ConfigError

        if view == "kernel":
            return kernel.pgd
        spec = kernel.spec
        if not X86_MM(spec.kernel).ptdump_current:
            raise ConfigError(f"ptdump --view {view}: kernel {spec.kernel} has only "
                              f"{X86_MM(spec.kernel).ptdump_file} (page_tables/current_kernel and current_user "
                              f"are 4.15+)")
        if view == "current_user" and not kernel.layout.config.get("CONFIG_PAGE_TABLE_ISOLATION"):
            raise ConfigError(f"ptdump --view current_user: kernel {spec.kernel} on {spec.arch} is built without "
                              f"CONFIG_PAGE_TABLE_ISOLATION (x86_64 4.15+, i386_pae 4.19+)")
        if process is None:
            raise ConfigError(f"ptdump --view {view}: the view of the process reading it; give --pid PID (a process "
                              f"of the --scenario)")
        return kernel.user_pgd(process.pgd) if view == "current_user" else process.pgd

    def exported_symbols(self, kernel) -> list[str]:
        """What an x86 kernel of this era exports for the code the compiler plants in a
        module (the mmemu_kernel_symbols hook of the x86 plugins; their implementations are
        mmemu.module.exports.ARCH_FUNCTIONS): ``mcount``, ``__fentry__`` (ftrace), and
        ``__x86_return_thunk`` (return thunks). The retpoline thunks
        (``__x86_indirect_thunk_<reg>``, 4.15+) are not exported: mmemu does not run
        indirect branches through them."""
        era = X86_MM(kernel.spec.kernel)
        names = ["mcount"]
        if era.fentry:
            names.append("__fentry__")
        if era.return_thunk:
            names.append("__x86_return_thunk")
        return names

    def check_wx(self, kernel, wx):
        """arch/x86/mm/dump_pagetables.c ptdump_walk_pgd_level_checkwx (4.4+, CONFIG_DEBUG_WX):
        nothing without NX (no page can be made non-executable); else the first insecure
        range (a WARN_ONCE) and the count of W+X pages."""
        from mmemu.errors import MmemuError

        if not X86_MM(kernel.spec.kernel).debug_wx:
            raise MmemuError(f"kernel {kernel.spec.kernel} has no W+X audit (CONFIG_DEBUG_WX is 4.4+)")
        if not kernel.codec.nx:
            return []
        lines = self._wx_lines(kernel, wx)
        user = kernel.user_pgd(kernel.pgd)
        if user != kernel.pgd:
            # ptdump_walk_user_pgd_level_checkwx (4.15+, pti_finalize's debug_checkwx_user from
            # 4.19; 32-bit PAE too: kernel_to_user_pgdp(INIT_PGD), an i386 lkp boot log prints
            # the 'Checking user space page tables' line): the user copy of swapper_pg_dir
            # audited the same way; its WARN_ONCE has warned already if the kernel's audit
            # found something
            user_lines = self._wx_lines(kernel, kernel.wx_ranges(user))
            lines += ["x86/mm: Checking user space page tables"] + (user_lines[-1:] if wx else user_lines)
        return lines

    def _wx_lines(self, kernel, wx) -> list[str]:
        if not wx:
            return ["x86/mm: Checked W+X mappings: passed, no W+X pages found."]
        va = wx[0][0]
        pages = sum(n for _a, n in wx) // 4096
        sym = kernel.symbol_at(va) or f"0x{va:x}"  # %pS: the raw address when no symbol covers it
        where = {"p_pS": f"{va:0{2 * kernel.ptr_size}x}/{sym}", "ptrval_pS": f"(ptrval)/{sym}",
                 "pS": sym}[X86_MM(kernel.spec.kernel).wx_found]
        return [f"x86/mm: Found insecure W+X mapping at address {where}",
                f"x86/mm: Checked W+X mappings: FAILED, {pages} W+X pages found."]

    def module_strict_rwx(self, spec) -> bool:
        return X86_MM(spec.kernel).module_ronx

    def module_alloc(self, spec, layout):
        """[MODULES_VADDR, MODULES_END) (i386: the vmalloc space), PAGE_KERNEL_EXEC, or
        PAGE_KERNEL from 5.2 (module_enable_x makes the text executable)."""
        s = layout.symbols
        return s["MODULES_VADDR"], s["MODULES_END"], ("PAGE_KERNEL" if X86_MM(spec.kernel).module_alloc_nx
                                                     else "PAGE_KERNEL_EXEC")

    def module_relocations(self, spec):
        from .relocs import i386_relocations, x86_64_relocations

        era = X86_MM(spec.kernel)
        return x86_64_relocations(era) if self.elf_machine == "EM_X86_64" else i386_relocations(era)

    def syncs_kernel_mappings(self, spec) -> bool:
        return X86_MM(spec.kernel).sync_kernel_mappings

    def user_pmds_freed(self, spec) -> bool:
        """PAE: the pmds pgd_alloc preallocates are freed by free_pgtables (2.6.25+), or only
        with the pgd (2.6.24 and before)."""
        return X86_MM(spec.kernel).pae_pmd_free

    def protnone_inverted(self, spec) -> bool:
        """L1TF (4.18+): x86_64 and PAE invert a PROT_NONE pte's frame; 2-level i386 does not."""
        return X86_MM(spec.kernel).l1tf_protnone_invert and len(self.paging(spec).levels) > 2

    def kernel_fault_fixup(self, kernel, fault):
        """``vmalloc_fault``: copy the master's top-level entry (the pde on i386, the pgd
        entry on x86_64) into the faulting page directory when it is missing there, in the
        eras that have it; retry if the master maps the address. A fault on an unmapped
        page under a master entry leaves the copy behind and still ends in an oops."""
        if fault.kind != "not-present":  # only !(X86_PF_RSVD | X86_PF_USER | X86_PF_PROT)
            return None
        era = X86_MM(kernel.spec.kernel)
        if not (era.vmalloc_fault_64 if kernel.paging.bits64 else era.vmalloc_fault_32):
            return None
        syms = kernel.layout.symbols
        if era.vmalloc_fault_range_check and not syms["VMALLOC_START"] <= fault.address < syms["VMALLOC_END"]:
            return None
        if not kernel.copy_kernel_pgd_entry(kernel.fault_pgd(fault), fault.address):
            return None
        return "vmalloc_fault" if kernel.walk(fault.address).mapped else None

    def cpu_adapter(self, kernel, mmu: str):
        from .cpu_adapter import X86Adapter  # Unicorn is loaded only when code runs

        return X86Adapter(kernel, mmu, self.cpu_setup(kernel.spec))

    def vtop_paddr(self, kernel, walk, user: bool) -> int | None:
        return vtop_paddr(kernel, walk, user)

    def layout_text(self, layout, fmt: str) -> str:
        return layout_text_x86(self.name, layout, fmt)

    def vtop_lines(self, kernel, walk, root: int, process=None) -> list[str]:
        if kernel.paging.bits64:
            return vtop_lines_x86_64(kernel, walk, root, process)
        return vtop_lines_x86(kernel, walk, root, process)

    def oops_report(self, kernel, fault, die_counter: int, why: str = "") -> str:
        return _oops.oops_report(kernel, fault, die_counter, why)

    def qemu_monitor(self, kernel, command: str, root: int) -> str:
        """qemu/qemu target/i386/monitor.c hmp_info_tlb / hmp_info_mem (mmemu_x86.qemu)."""
        from . import qemu

        return (qemu.info_tlb if command == "tlb" else qemu.info_mem)(kernel, root)

    def segfault_report(self, kernel, fault) -> str:
        return _oops.segfault_line(kernel, fault)
