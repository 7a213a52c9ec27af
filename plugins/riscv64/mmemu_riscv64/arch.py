"""The riscv64 arch: a QEMU ``virt`` machine running riscv64 Linux 4.15 .. 6.x, Sv39 paging,
or Sv48 / Sv57 with ``--option mmu=sv48`` / ``mmu=sv57`` (5.17+ / 5.18+).

The kernel picks its paging mode at boot (arch/riscv/mm/init.c set_satp_mode(), 5.17+: the
largest the hart accepts in satp); the option says which one the emulated hart offers."""

from __future__ import annotations

from types import MappingProxyType

from mmemu.arch import Arch, ArchOption, BootPlan, PagingMode
from mmemu.layout import Layout, MachineSpec
from mmemu.units import GiB, KiB, MiB, TiB

PMD_SIZE = 2 * MiB

from . import render
from .eras import RISCV
from .formats import paging_mode
from .layout import DRAM_BASE, check_kernel, check_mmu, compute_layout
from .pgtable_bits import LATEST, prot_none_bit
from .pgtable_bits import pgprots as era_pgprots

MMU_OPTION = ArchOption("mmu", "paging mode the hart offers: sv39, sv48 (kernels 5.17+) or sv57 (5.18+)",
                        choices=("sv39", "sv48", "sv57"), default="sv39")


class Riscv64Arch(Arch):
    name = "riscv64"
    summary = ("riscv64 (QEMU virt), Sv39 paging, or Sv48/Sv57 with --option mmu=sv48|sv57; "
               "4 KiB pages and leaves at every level (2 MiB, 1 GiB, 512 GiB, 256 TiB)")
    options = (MMU_OPTION,)
    #: the newest era's protections (pgtable.h of 6.x); :meth:`pgprots` gives any era's
    pgprot = LATEST
    elf_machine = "EM_RISCV"

    # -- options, the era's protections ------------------------------------------------

    def _mmu(self, spec: MachineSpec) -> str:
        return self.check_options(spec)["mmu"]

    def pgprots(self, spec: MachineSpec):
        """The named protections of *spec*'s kernel (they differ by era: _PAGE_PROT_NONE
        _PAGE_READ until 5.16 and _PAGE_GLOBAL from 5.17; _PAGE_GLOBAL in PAGE_KERNEL from
        5.14; PAGE_COPY_EXEC readable from 6.4)."""
        return MappingProxyType(era_pgprots(spec.kernel))

    def cpu_adapter(self, kernel, mmu: str):
        """The Unicorn RISC-V hart running this kernel's tables (:mod:`.cpu_adapter`)."""
        from .cpu_adapter import Riscv64Adapter

        return Riscv64Adapter(kernel, mmu)

    # -- machine description ----------------------------------------------------------

    def paging(self, spec: MachineSpec) -> PagingMode:
        mmu = self._mmu(spec)
        check_kernel(spec.kernel)
        check_mmu(spec.kernel, mmu)
        return paging_mode(mmu, prot_none_bit(spec.kernel))

    def layout(self, spec: MachineSpec) -> Layout:
        return compute_layout(spec, self._mmu(spec))

    def boot_page_sizes(self, spec: MachineSpec) -> tuple[int, ...]:
        """The page sizes of the linear map (arch/riscv/mm/init.c of the era, eras.py
        best_map_size):

        - 4.15-5.1: setup_vm() maps the whole -PAGE_OFFSET window with 2 MiB pages;
        - 5.2-6.3: best_map_size(base, size): 2 MiB pages if the memory bank (from the
          kernel's load address up) is 2 MiB aligned in start and size, else 4 KiB pages for
          all of it;
        - 6.4-6.6: the largest of PGDIR, P4D, PUD, PMD that pa and va are aligned to (Sv39:
          1 GiB PGD leaves; Sv48: 512 GiB, 1 GiB; Sv57: 256 TiB, 512 GiB, 1 GiB);
        - 6.7+: no PGD leaves: P4D only under Sv57, PUD under Sv48/Sv57, PMD (Sv39: 2 MiB);
        - ``debug_pagealloc=on`` forces 4 KiB pages from 6.10 ('riscv: force PAGE_SIZE linear
          mapping if debug_pagealloc is enabled', Nam Cao, lore May 2024; release from the
          patch date, not verified).

        4 KiB stays in the list where the kernel could use it: the image's own mapping (5.13+)
        is not always 2 MiB-sized."""
        k = spec.kernel
        era = RISCV(k)
        mmu = self._mmu(spec)
        if k >= "6.10" and spec.cmdline.get("debug_pagealloc") == "on":
            return (4 * KiB,)
        rule = era.best_map_size
        if rule == "swapper_pmd":
            return (2 * MiB, 4 * KiB)
        if rule == "whole_region":
            layout = self.layout(spec)
            start = layout.phys_offset
            end = DRAM_BASE + spec.ram
            if start % (2 * MiB) == 0 and (end - start) % (2 * MiB) == 0:
                return (2 * MiB, 4 * KiB)
            return (4 * KiB,)
        if rule == "pgdir":
            big = {"sv39": (1 * GiB,), "sv48": (512 * GiB, 1 * GiB), "sv57": (256 * TiB, 512 * GiB, 1 * GiB)}[mmu]
        else:
            big = {"sv39": (), "sv48": (1 * GiB,), "sv57": (512 * GiB, 1 * GiB)}[mmu]
        return big + (2 * MiB, 4 * KiB)

    def boot_plan(self, spec: MachineSpec, layout: Layout) -> BootPlan:
        """swapper_pg_dir (``pgd_t swapper_pg_dir[PTRS_PER_PGD] __page_aligned_bss``: the bss
        in every era), written by:

        - the linear map: setup_vm() (4.15-5.1), setup_vm_final() (5.2-6.2),
          create_linear_mapping_range() (6.3+);
        - the image: inside the linear map until 5.12, its final protections from
          mark_rodata_ro() (STRICT_KERNEL_RWX, 5.7+; before, the image stays as the linear map
          maps it); its own mapping from 5.13, create_kernel_page_table();
        - the fixmap's tables (5.2+): setup_vm() links fixmap_pte under fixmap_pmd for the
          2 MiB holding FIXADDR_START (create_pmd_mapping(fixmap_pmd, FIXADDR_START,
          fixmap_pte, PMD_SIZE, PAGE_TABLE)) and setup_vm_final() puts fixmap_pgd_next under
          swapper_pg_dir (create_pgd_mapping(swapper_pg_dir, FIXADDR_START, fixmap_pgd_next,
          PGDIR_SIZE, PAGE_TABLE)): one page table, for that 2 MiB (read in 5.4 and 6.6; the
          kernel's tables are static bss arrays, mmemu allocates them). No fixmap before 5.2;
        - the protection of the linear map: PAGE_KERNEL_EXEC until 5.6 (setup_vm's
          swapper_pmd, setup_vm_final; read in 5.4); with STRICT_KERNEL_RWX (5.7-5.12)
          mark_rodata_ro() makes everything from _data to high_memory non-executable
          (set_memory_nx(data_start, (max_low - data_start) >> PAGE_SHIFT)) and the linear
          map starts at the image: PAGE_KERNEL is its final protection; from 5.13
          setup_vm_final() maps it PAGE_KERNEL on 64-bit ('riscv: Move kernel mapping outside
          of linear mapping', diff read);
        - 6.5+: pgtable_cache_init() -> preallocate_pgd_pages_range() allocates the next-level
          table under every PGD entry of the vmalloc and the module areas.

        pgd_alloc() copies the kernel half of swapper_pg_dir into every new page directory
        (asm/pgalloc.h, from USER_PTRS_PER_PGD)."""
        era = RISCV(spec.kernel)
        s = layout.symbols
        direct = era.direct_map_writer
        if era.kernel_mapping:
            image = "create_kernel_page_table"
        elif era.strict_kernel_rwx:
            image = "mark_rodata_ro"
        else:
            image = direct
        fixmap = "setup_vm_final" if era.fixmap else "setup_vm"
        fixmap_range = None
        if era.fixmap:
            pmd_start = s["FIXADDR_START"] & ~(PMD_SIZE - 1)
            fixmap_range = (pmd_start, pmd_start + PMD_SIZE)
        populate: tuple = ()
        if era.preallocate_pgd:
            writer = "preallocate_pgd_pages_range"
            populate = ((s["VMALLOC_START"], s["VMALLOC_END"], 1, writer),
                        (s["MODULES_VADDR"], s["MODULES_END"], 1, writer))
        return BootPlan(root_symbol="swapper_pg_dir", root_section="bss", direct_map_writer=direct, image_writer=image,
                        fixmap_writer=fixmap, populate=populate, copies_kernel_pgd=True,
                        direct_map_prot="PAGE_KERNEL" if era.strict_kernel_rwx else "PAGE_KERNEL_EXEC",
                        fixmap_range=fixmap_range)

    def conformance_machines(self) -> list[dict]:
        """Sv39, Sv48 and Sv57; a linear map of 1 GiB (6.6), 2 MiB (6.8) and 4 KiB pages
        (5.10 with a bank that is not 2 MiB-aligned, an era with vmalloc_fault). Every one has
        the kernel page-table dump (5.7+) the suite's CLI check prints; the eras before it
        (no fixmap, an executable linear map: 4.15) run the other checks in the plugin's
        tests."""
        return [dict(kernel="6.6", ram="2G"), dict(kernel="6.8", ram="1G"), dict(kernel="5.10", ram="1025M"),
                dict(kernel="6.6", ram="1G", options={"mmu": "sv48"}),
                dict(kernel="6.11", ram="1G", options={"mmu": "sv57"})]

    # -- era rules ------------------------------------------------------------------------

    def syncs_kernel_mappings(self, spec: MachineSpec) -> bool:
        """No era: riscv defines no ARCH_PAGE_TABLE_SYNC_MASK / arch_sync_kernel_mappings();
        new top-level kernel entries reach other page directories through vmalloc_fault()
        (until 6.4) or never need to (6.5+: preallocated at boot)."""
        return False

    def kernel_access_to_user(self, kernel, fault) -> str | None:
        """arch/riscv/mm/fault.c do_page_fault() (5.12+): ``if (!user_mode(regs) && addr <
        TASK_SIZE && unlikely(!(regs->status & SR_SUM)))`` die_kernel_fault("access to user
        memory without uaccess routines"). Before 5.12 the fault went on to handle_mm_fault
        (and a present page faulted again, for ever)."""
        if RISCV(kernel.layout.kernel).uaccess_check and not fault.uaccess \
                and fault.address < kernel.layout["TASK_SIZE"]:
            return "access to user memory without uaccess routines"
        return None

    def kernel_fault_fixup(self, kernel, fault) -> str | None:
        """arch/riscv/mm/fault.c vmalloc_fault(), for a kernel-mode fault in [VMALLOC_START,
        VMALLOC_END] (``<=`` until 5.16, ``<`` from 5.17) and, 5.13-6.4, in [MODULES_VADDR,
        MODULES_END); on 64-bit until 6.4 (6.5 preallocates the PGD entries instead):

        - the faulting page directory is the one satp points to (the process's);
        - ``if (!pgd_present(*pgd_k)) no_context``, else ``set_pgd(pgd, *pgd_k)``: the
          master's top-level entry is copied whatever lies below;
        - then the lower levels of the *master* are checked (p4d, pud, pmd, pte present);
          if one is missing, no_context: the copy stays and the fault is an oops.

        Returns "vmalloc_fault" when the access can be retried."""
        layout = kernel.layout
        era = RISCV(layout.kernel)
        if not era.vmalloc_fault or fault.user:
            return None
        s = layout.symbols
        a = fault.address
        if era.vmalloc_end_exclusive:
            hit = s["VMALLOC_START"] <= a < s["VMALLOC_END"]
        else:
            hit = s["VMALLOC_START"] <= a <= s["VMALLOC_END"]
        if not hit and era.modules_vmalloc_fault and "MODULES_VADDR" in s:
            hit = s["MODULES_VADDR"] <= a < s["MODULES_END"]
        if not hit:
            return None
        proc = fault.process
        root = getattr(proc, "pgd", None) if proc is not None else None
        if root is None or root == kernel.pgd:
            return None  # satp holds swapper_pg_dir: there is nothing to copy from itself
        top = kernel.paging.levels[0]
        index = (a >> top.shift) & (top.entries - 1)
        master = kernel.pgtable.entries(kernel.pgd, 0)[index]
        if not master & 1:  # pgd_present(): pgd_val & _PAGE_PRESENT
            return None
        kernel.pgtable.set_entry(root, 0, index, master, writer="vmalloc_fault", va=a & ~(top.span - 1),
                                 kind="set_pgd")
        walk = kernel.pgtable.walk(kernel.pgd, a)
        if not walk.mapped:
            return None  # a lower level of init_mm's tables lacks it: no_context (the oops)
        return "vmalloc_fault"

    # -- kernel modules ---------------------------------------------------------------------

    #: ``ecall`` at every exported kernel function's address: a call from module code traps
    #: there (Unicorn reports an S-mode ecall to the interrupt hook as 8, the pc past it;
    #: ``ebreak`` would stop the run instead: README A5, A7)
    kcall_stub = bytes.fromhex("73000000")

    def module_relocations(self, spec: MachineSpec):
        """apply_relocate_add of the era (:mod:`.relocs`)."""
        from .relocs import riscv64_relocations

        return riscv64_relocations(spec)

    def module_linker_sections(self, spec: MachineSpec) -> tuple[str, ...]:
        """arch/riscv/kernel/module.lds (asm/module.lds.h from 5.10): the PLT and GOT
        sections module_frob_arch_sections sizes (4.18+)."""
        return (".plt", ".got", ".got.plt")

    def module_frob_arch_sections(self, kernel, mf, mod):
        """module-sections.c (4.18+): the PLT and GOT sections sized for the module (*mf*
        is ``mod.file``)."""
        from .relocs import module_frob_arch_sections

        return module_frob_arch_sections(kernel, mod)

    def module_alloc(self, spec: MachineSpec, layout: Layout) -> tuple[int, int, str]:
        """module_alloc of the era (eras.py ``module_alloc_range``): the vmalloc space
        (4.15: kernel/module.c's vmalloc_exec), its part within 2 GiB below ``_end``
        (``VMALLOC_MODULE_START``: max(PFN_ALIGN(&_end - SZ_2G), VMALLOC_START), 5.7), or
        [MODULES_VADDR, MODULES_END) (5.13); PAGE_KERNEL_EXEC, PAGE_KERNEL with
        STRICT_MODULE_RWX (5.14)."""
        era = RISCV(spec.kernel)
        s = layout.symbols
        prot = "PAGE_KERNEL" if era.strict_module_rwx else "PAGE_KERNEL_EXEC"
        if era.module_alloc_range == "modules":
            return s["MODULES_VADDR"], s["MODULES_END"], prot
        start = s["VMALLOC_START"]
        if era.module_alloc_range == "vmalloc_2g":
            start = max((s["_end"] - 2 * GiB + 4095) & ~4095, start)
        return start, s["VMALLOC_END"], prot

    def module_strict_rwx(self, spec: MachineSpec) -> bool:
        """CONFIG_STRICT_MODULE_RWX (ARCH_HAS_STRICT_MODULE_RWX from 5.14): before it module
        memory stays as module_alloc mapped it, read-write-execute."""
        return RISCV(spec.kernel).strict_module_rwx

    def vermagic(self, spec: MachineSpec) -> str:
        """VERMAGIC_STRING with MODULE_ARCH_VERMAGIC "riscv" (asm/module.h, later
        asm/vermagic.h): ``6.6.0 SMP mod_unload riscv``."""
        return super().vermagic(spec) + "riscv"

    def check_wx(self, kernel, wx):
        """arch/riscv/mm/ptdump.c ptdump_check_wx (CONFIG_DEBUG_WX, 5.8+): the WARN_ONCE of
        the first W+X range (%p/%pS), then the count, without a prefix (no pr_fmt)."""
        from mmemu.errors import MmemuError

        if not RISCV(kernel.spec.kernel).debug_wx:
            raise MmemuError(f"kernel {kernel.spec.kernel} has no W+X audit on riscv64 (CONFIG_DEBUG_WX is 5.8+)")
        if not wx:
            return ["Checked W+X mappings: passed, no W+X pages found"]
        va = wx[0][0]
        pages = sum(n for _a, n in wx) // 4096
        sym = kernel.symbol_at(va) or f"0x{va:x}"
        return [f"riscv/mm: Found insecure W+X mapping at address {va:016x}/{sym}",
                f"Checked W+X mappings: failed, {pages} W+X pages found"]

    # -- output formats -------------------------------------------------------------------

    def ptdump_format(self, layout: Layout):
        return render.ptdump_format(layout)

    def vtop_lines(self, kernel, walk, root: int, process=None) -> list[str]:
        return render.vtop_lines(kernel, walk, root, process)

    def oops_report(self, kernel, fault, die_counter: int, why: str = "") -> str:
        return render.oops_report(kernel, fault, die_counter, why)

    def segfault_report(self, kernel, fault) -> str:
        return render.segfault_report(kernel, fault)
