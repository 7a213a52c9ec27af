"""Kernel page-table isolation (PTI), as arch/x86/mm/pti.c builds it: every page directory
has a user copy in the page after it (pgd_alloc's PGD_ALLOCATION_ORDER 1,
``kernel_to_user_pgdp``), which user mode runs on. The copy's user half is the pgd's
(``pti_set_user_pgtbl``, the pgd keeping its user entries NX on x86_64); its kernel half
maps only what the entry code needs (``pti_init``): on x86_64 the cpu_entry_area and the
ESPfix stacks (their top-level entries), the entry text (its pmds), the vsyscall page (its
pte) and from 4.19 each CPU's TSS (its pte, for the SYSCALL64 scratch word); on 32-bit PAE
(4.19+) the cpu_entry_area's pmds and the entry text's pmds (its ptes from 6.11); plus the
kernel text and rodata under ``pti=auto`` on a CPU without PCID (``pti_clone_kernel_text``,
4.17+; PTI_LEVEL_KERNEL_IMAGE: pmds on x86_64, ptes on 32-bit).

32-bit PTI unshares the kernel pmd: SHARED_KERNEL_PMD is ``!static_cpu_has(X86_FEATURE_PTI)``
(pgtable-3level_types.h), so pgd_alloc (arch/x86/mm/pgtable.c) gives every pgd its own
kernel pmd, a copy of swapper_pg_dir's (PREALLOCATED_PMDS = PTRS_PER_PGD,
pgd_prepopulate_pmd), and its user copy one more (PREALLOCATED_USER_PMDS = KERNEL_PGD_PTRS,
pgd_prepopulate_user_pmd: a copy of the pmd of swapper_pg_dir's user copy); the pgd and the
copy are a page each (_pgd_alloc: no 32-byte pgd_cache without SHARED_KERNEL_PMD). Kernel
pmd entries made later reach the other pgds at the pmd level (vmalloc_fault's
vmalloc_sync_one; from 5.8 arch_sync_kernel_mappings, ARCH_PAGE_TABLE_SYNC_MASK
PGTBL_PMD_MODIFIED when !SHARED_KERNEL_PMD): the core's BootPlan ``kernel_copy_level`` 1
(mmemu_x86.x86_32.X86_32Arch.shared_kernel_pmd).
The user copy is kept at the PDPT (pgd) level (pgtable-3level.h native_set_pud:
pti_set_user_pgtbl), without NX ('PAE paging does not support it on the PGD level' and the
PDPT entry has no NX bit). entry_32.S switches CR3 (SWITCH_TO_USER_CR3 /
SWITCH_TO_KERNEL_CR3) around the user-mode entry and exit, as entry_64.S does.

mmemu's CPU is Unicorn's default x86 model, which reports (CPUID) GenuineIntel family 6
model 60 (a Haswell) without PCID and without IA32_ARCH_CAPABILITIES: the kernel marks it
X86_BUG_CPU_MELTDOWN (4.15 common.c: every CPU that is not AMD; later cpu_set_bug_bits():
it is on no NO_MELTDOWN whitelist and has no RDCL_NO), so PTI is on by default (``pti=auto``)
in every release that has it, 64- and 32-bit alike, and CR3 carries no PCID. ``nopti``,
``pti=off`` and (5.2+) ``mitigations=off`` turn it off, ``pti=on`` forces it
(pti_check_boottime_disable: ``pti=`` is looked at first, then ``nopti``). The per-process
LDT that the 32-bit user copy's own kernel pmd exists for (map_ldt_struct) is not
modelled: mmemu has no modify_ldt.

What differs by release is in :data:`X86_PTI`, each with its source.
"""

from __future__ import annotations

from mmemu.eras import EraTable, Feature
from mmemu.errors import ConfigError

from .pgtable_types import _PAGE_GLOBAL, _PAGE_NX, _PAGE_PRESENT, _PAGE_USER

PAGE_SIZE = 4096

X86_PTI = EraTable(
    Feature("pti_64", since="4.15",
            source="arch/x86/mm/pti.c (4.15, 'x86/mm/pti: Add infrastructure for page table isolation'); "
                   "security/Kconfig PAGE_TABLE_ISOLATION 'depends on X86_64'"),
    Feature("pti_32", since="4.19",
            source="arch/x86/mm/pti.c pti_clone_user_shared #else /* CONFIG_X86_64 */ 'On 32 bit PAE systems "
                   "with 1GB of Kernel address space...' (Joerg Roedel's 32-bit PTI, 4.19); security/Kconfig "
                   "'depends on (X86_64 || X86_PAE)'; mmemu_x86.layout_32 sets CONFIG_PAGE_TABLE_ISOLATION for "
                   "PAE from LDT_REMAP_SINCE (4.19)"),
    Feature("default_kernel_pte_mask", since="4.17",
            source="arch/x86/mm/init.c probe_page_size_mask (Dave Hansen, 'x86/mm: Introduce \"default\" kernel "
                   "PTE mask', 4.17): '__default_kernel_pte_mask = __supported_pte_mask; /* Except when with PTI "
                   "where the kernel is mostly non-Global */ if (cpu_feature_enabled(X86_FEATURE_PTI)) "
                   "__default_kernel_pte_mask &= ~_PAGE_GLOBAL'; cpu_entry_area.c cea_set_pte 'All of its ptes "
                   "can safely be global'; pti_clone_pmds sets _PAGE_GLOBAL on the cloned pmds. Before (4.15, "
                   "'x86/mm/pti: Disable global pages if PAGE_TABLE_ISOLATION=y': enable_global_pages() only "
                   "without X86_FEATURE_PTI) __supported_pte_mask keeps no _PAGE_GLOBAL under PTI: no kernel "
                   "mapping is global (the 4.15 source is not stored here: as the 4.17 series describes it), and "
                   "pti_clone_entry_text clears _PAGE_RW | _PAGE_GLOBAL (read in the linux-mm patch of that "
                   "series)"),
    Feature("clone_kernel_text", since="4.17",
            source="arch/x86/mm/pti.c pti_clone_kernel_text / pti_kernel_image_global_ok (a7e2701bf2b2 'x86/pti: "
                   "leave kernel text global for !PCID', 4.17): no PCID, pti=auto, not K8"),
    Feature("clone_to_rodata", since="4.19",
            source="arch/x86/mm/pti.c (Joerg Roedel, 4.19, read in 6.x): pti_clone_kernel_text clones "
                   "[_text, __end_rodata_aligned) and set_memory_global()s [_text, _etext), pti_clone_pgtable "
                   "keeps the permissions; before, pti_clone_pmds(start, ALIGN(_end, PMD_PAGE_SIZE), _PAGE_RW) "
                   "(read in the 4.17 source): the whole image, read-only in the user copy"),
    Feature("clone_tss_sp2", since="4.19",
            source="arch/x86/mm/pti.c pti_clone_user_shared: 'The SYSCALL64 entry code needs one word of "
                   "scratch space ... the sp2 slot of the CPU's TSS' ('x86/entry/64: Remove the SYSCALL64 entry "
                   "trampoline', the release mmemu_x86.boot_maps takes for the trampoline's removal, 4.19, not "
                   "verified)"),
    Feature("entry_text_pte_32", since="6.11",
            source="arch/x86/mm/pti.c pti_clone_entry_text: PTI_CLONE_PMD, then PTI_LEVEL_KERNEL_IMAGE (3db03fb4995e "
                   "'x86/mm: Fix pti_clone_entry_text() for i386', Peter Zijlstra, tip x86/urgent 1 August 2024, "
                   "for 6.11: 'text on i386 can be page granular at the tail end'; stable backports not modelled)"),
    Feature("mitigations_off", since="5.2",
            source="arch/x86/mm/pti.c pti_check_boottime_disable (5.2, 'x86/speculation: Support "
                   "'mitigations=' cmdline option'): nopti || cpu_mitigations_off()"),
)


def pti_exists(spec) -> bool:
    """Whether this kernel has PTI at all (CONFIG_PAGE_TABLE_ISOLATION): x86_64 4.15+,
    PAE 4.19+; never 2-level i386."""
    era = X86_PTI(spec.kernel)
    if spec.arch == "x86_64":
        return era.pti_64
    return spec.arch == "i386_pae" and era.pti_32


def pti_mode(spec) -> str:
    """pti_check_boottime_disable's pti_mode from the command line: ``on``, ``off`` or
    ``auto`` (``off`` for a kernel without PTI). A ``pti=`` other than on/off/auto is
    refused (the kernel ignores it)."""
    cmd = spec.cmdline
    value = cmd.get("pti")
    if "pti" in cmd and value not in ("on", "off", "auto"):
        raise ConfigError(f"kernel parameter pti={value or ''}: the kernel knows pti=on, pti=off and pti=auto "
                          f"(arch/x86/mm/pti.c pti_check_boottime_disable)")
    if not pti_exists(spec):
        if value == "on":
            raise ConfigError(f"pti=on: kernel {spec.kernel} on {spec.arch} has no page-table isolation (x86_64 "
                              f"from 4.15, i386_pae from 4.19)")
        return "off"
    if value is not None:
        return value
    if "nopti" in cmd or (X86_PTI(spec.kernel).mitigations_off and cmd.get("mitigations") == "off"):
        return "off"
    return "auto"


def pti_enabled(spec) -> bool:
    """X86_FEATURE_PTI: forced on, or auto on mmemu's Meltdown-affected CPU."""
    return pti_mode(spec) != "off"


def supported_global(k) -> int:
    """_PAGE_GLOBAL if ``__supported_pte_mask`` keeps it (what cea_set_pte, ESPfix and the
    PTI clones use even where PTI clears it from PAGE_KERNEL), else 0 (4.15-4.16 with PTI)."""
    if pti_enabled(k.spec) and not X86_PTI(k.spec.kernel).default_kernel_pte_mask:
        return 0
    return _PAGE_GLOBAL


def cea_global(k) -> int:
    """The _PAGE_GLOBAL cea_set_pte adds (arch/x86/mm/cpu_entry_area.c: 'The cpu_entry_area
    is shared between the user and kernel page tables. All of its ptes can safely be
    global'; Dave Hansen's April 2018 series for 4.17, read as posted to linux-mm, with
    pti_clone_pmds setting _PAGE_GLOBAL on the cloned pmds)."""
    return supported_global(k) if X86_PTI(k.spec.kernel).default_kernel_pte_mask else 0


def kernel_pgprots(prots: dict[str, int]) -> dict[str, int]:
    """The named protections with PTI on: _PAGE_GLOBAL gone from the kernel's ones
    (__default_kernel_pte_mask 4.17+, __supported_pte_mask before); the user ones never
    had it (and PAGE_NONE's _PAGE_PROTNONE is the same bit, kept)."""
    return {name: (v & ~_PAGE_GLOBAL if name.startswith("PAGE_KERNEL") else v) for name, v in prots.items()}


def user_pgd_entries(spec, paging, page_offset: int | None = None) -> int:
    """BootPlan ``user_pgd_entries``: the user half pgdp_maps_userspace() says (x86_64: the
    lower half of the page, PGD_KERNEL_START; 32-bit: pgtable_32_types.h PGD_KERNEL_START,
    CONFIG_PAGE_OFFSET >> PGDIR_SHIFT, *page_offset* the layout's), 0 with PTI off."""
    if not pti_enabled(spec):
        return 0
    top = paging.levels[0]
    return top.entries // 2 if paging.bits64 else (page_offset >> top.shift)



def set_user_pgtbl(k, raw: int) -> int:
    """__pti_set_user_pgtbl: the pgd keeps a present user entry NX (x86_64 with NX only:
    'PAE paging does not support it on the PGD level'), so that user code run by mistake
    with the kernel CR3 faults."""
    if k.paging.bits64 and k.codec.nx and raw & (_PAGE_USER | _PAGE_PRESENT) == _PAGE_USER | _PAGE_PRESENT:
        return raw | _PAGE_NX
    return raw


def entry_text(layout) -> tuple[int, int]:
    """[__entry_text_start, __entry_text_end): mmemu's entry code (the CPU adapter's iret,
    probe and return stubs) is the last page of the kernel's text."""
    text = next(sec for sec in layout.image if sec.name == "text")
    start = text.virt + ((text.size - 1) & ~(PAGE_SIZE - 1))
    return start, start + PAGE_SIZE
