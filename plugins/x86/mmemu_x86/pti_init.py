"""What ``pti_init`` and ``pti_finalize`` (arch/x86/mm/pti.c) put into the user copy of
swapper_pg_dir at boot: every process's copy gets its kernel half from there
(``clone_pgd_range``). Each function is the kernel function it is named after; the
release differences are :data:`mmemu_x86.pti.X86_PTI`'s."""

from __future__ import annotations

from mmemu.arch import TABLE

from .boot_maps import percpu_pfn
from .pgtable_types import _PAGE_GLOBAL, _PAGE_RW, _PAGE_USER
from .pti import PAGE_SIZE, X86_PTI, entry_text, pti_mode

PAGE_SHIFT = 12


def _level(k, name: str) -> int:
    """The index of the paging mode's level that is (or folds) the kernel level *name*."""
    return next(i for i, lv in enumerate(k.paging.levels) if name == lv.name or name in lv.folds)


def pti_user_pagetable_walk(k, va: int, li: int) -> tuple[int, int]:
    """pti_user_pagetable_walk_p4d/_pmd/_pte: the (table, index) of *va*'s entry at level
    *li* in the user copy of swapper_pg_dir, the tables above allocated (_KERNPG_TABLE) where
    missing."""
    root = k.user_pgd(k.pgd)
    if li:
        k.pgtable.populate(root, va & ~(PAGE_SIZE - 1), PAGE_SIZE, writer="pti_user_pagetable_walk", down_to=li)
    step = k.pgtable.walk(root, va).steps[li]
    return step.table, step.index


def pti_clone_p4d(k, va: int) -> None:
    """The user copy's p4d entry for *va* is the kernel's: the whole area (a top-level
    entry of 4-level paging, a p4d entry under a 5-level pgd) is shared."""
    li = _level(k, "p4d")
    kernel = k.pgtable.walk(k.pgd, va).steps[li]
    table, idx = pti_user_pagetable_walk(k, va, li)
    k.pgtable.set_entry(table, li, idx, kernel.raw, writer="pti_clone_p4d", va=va)
    k.shared_tables.add(k.pgtable.decode(li, kernel.raw)[1])  # its tables are both copies'


#: enum pti_clone_level: what pti_clone_pgtable copies into the user copy
PTI_CLONE_PMD, PTI_CLONE_PTE = "pmd", "pte"


def pti_level_kernel_image(k) -> str:
    """PTI_LEVEL_KERNEL_IMAGE: PTI_CLONE_PMD on x86_64, PTI_CLONE_PTE on 32-bit (whose
    image is not PMD-aligned: 16a3fe634f6a 'x86/mm/pti: Clone kernel-image on PTE level for
    32 bit', 4.19)."""
    return PTI_CLONE_PMD if k.paging.bits64 else PTI_CLONE_PTE


def pti_clone_pgtable(k, start: int, end: int, clear: int, writer: str, level: str = PTI_CLONE_PMD) -> None:
    """pti_clone_pgtable (pti_clone_pmds before 4.19): every present pmd of [start, end)
    copied into the user copy (less the *clear* flags of the era), and made global in
    both (4.17+); a pmd pointing to a page table shares that table. With PTI_CLONE_PTE a
    pmd that points to a page table is walked instead, each present pte copied (global in
    both) into a page table of the user copy's own; a large pmd is still copied whole."""
    pt = k.pgtable
    li = _level(k, "pmd")
    span = k.paging.levels[li].span
    glb = _PAGE_GLOBAL if X86_PTI(k.spec.kernel).default_kernel_pte_mask else 0
    addr = start
    while addr < end:
        steps = pt.walk(k.pgd, addr).steps
        if len(steps) <= li or not steps[li].raw:
            addr = (addr & ~(span - 1)) + span
            continue
        kernel = steps[li]
        kind = pt.decode(li, kernel.raw)[0]
        if kind == TABLE and level == PTI_CLONE_PTE:
            addr = _clone_ptes(k, addr, min(end, (addr & ~(span - 1)) + span), glb, writer)
            continue
        raw = kernel.raw | glb
        if raw != kernel.raw:
            pt.set_entry(kernel.table, li, kernel.index, raw, writer=writer, va=addr)
        table, idx = pti_user_pagetable_walk(k, addr, li)
        pt.set_entry(table, li, idx, raw & ~clear, writer=writer, va=addr)
        if kind == TABLE:  # a table: both copies share it
            k.shared_tables.add(pt.decode(li, raw)[1])
        addr = (addr & ~(span - 1)) + span


def _clone_ptes(k, start: int, end: int, glb: int, writer: str) -> int:
    """PTI_CLONE_PTE under one pmd of swapper_pg_dir that points to a page table: each
    present pte of [start, end) made global (*glb*) and copied into the user copy's page
    table there (allocated if missing; its other entries kept). One write of each table for
    the run. Returns the address after the last page."""
    pt = k.pgtable
    last = len(k.paging.levels) - 1
    first = start & ~(PAGE_SIZE - 1)
    n = (end - first + PAGE_SIZE - 1) // PAGE_SIZE
    kernel = pt.walk(k.pgd, first).steps[last]
    theirs = pt.entries(kernel.table, last)[kernel.index:kernel.index + n]
    if not any(theirs):
        return first + n * PAGE_SIZE
    made = [raw | glb if raw else 0 for raw in theirs]
    if made != list(theirs):
        pt.set_entries(kernel.table, last, kernel.index, made, writer=writer, va=first)
    table, idx = pti_user_pagetable_walk(k, first, last)
    mine = pt.entries(table, last)[idx:idx + n]
    pt.set_entries(table, last, idx, [raw or old for raw, old in zip(made, mine)], writer=writer, va=first)
    return first + n * PAGE_SIZE


def _clone_pte(k, va: int, raw: int, writer: str) -> None:
    table, idx = pti_user_pagetable_walk(k, va, len(k.paging.levels) - 1)
    k.pgtable.set_entry(table, len(k.paging.levels) - 1, idx, raw, writer=writer, va=va)


def pti_clone_user_shared(k) -> None:
    """The cpu_entry_area's p4d (64-bit), and from 4.19 each CPU's cpu_tss_rw page at its
    per-cpu address, PAGE_KERNEL. 32-bit: the area's pmds ('On 32 bit PAE systems with 1GB
    of Kernel address space there is only one pgd/p4d for the whole kernel. Cloning that
    would map the whole address space into the user page-tables, making PTI useless. So
    clone the page-table on the PMD level to prevent that.')."""
    s = k.layout.symbols
    if "CPU_ENTRY_AREA_BASE" not in s:
        return
    if not k.paging.bits64:
        start = s["CPU_ENTRY_AREA_BASE"]
        pti_clone_pgtable(k, start, start + PAGE_SIZE * s["CPU_ENTRY_AREA_PAGES"], 0, "pti_clone_user_shared")
        return
    pti_clone_p4d(k, s["CPU_ENTRY_AREA_BASE"])
    if X86_PTI(k.spec.kernel).clone_tss_sp2:
        for cpu in range(k.spec.cpus):
            pfn = percpu_pfn(k, cpu, "tss")
            _clone_pte(k, k.phys_to_virt(pfn << PAGE_SHIFT), k.codec.pfn_pte(pfn, k.pgprot["PAGE_KERNEL"]),
                       "pti_clone_user_shared")


def pti_setup_vsyscall(k) -> None:
    """The vsyscall page's pte, where the era has one (not with vsyscall=xonly, 5.3+), and
    _PAGE_USER in the user copy's entries above it (set_vsyscall_pgtable_user_bits)."""
    va = k.layout.symbols.get("VSYSCALL_ADDR")
    if va is None:
        return
    pt = k.pgtable
    walk = pt.walk(k.pgd, va)
    if not walk.mapped or walk.page_size != PAGE_SIZE:
        return
    _clone_pte(k, va, walk.steps[-1].raw, "pti_setup_vsyscall")
    for step in pt.walk(k.user_pgd(k.pgd), va).steps[:-1]:
        if not step.raw & _PAGE_USER:
            pt.set_entry(step.table, step.li, step.index, step.raw | _PAGE_USER, writer="set_vsyscall_pgtable_user_bits")


def pti_clone_kernel_text(k) -> None:
    """pti=auto on a CPU without PCID (mmemu's): the kernel image in the user copy
    (pti_kernel_image_global_ok), its text global (4.19+: set_memory_global)."""
    era = X86_PTI(k.spec.kernel)
    if not era.clone_kernel_text or pti_mode(k.spec) != "auto":
        return
    s = k.layout.symbols
    pmd = k.paging.levels[_level(k, "pmd")].span
    if era.clone_to_rodata:
        # __end_rodata_aligned: vmlinux.lds.S X86_ALIGN_RODATA_END, ALIGN(HPAGE_SIZE) on
        # x86_64, ALIGN(PAGE_SIZE) on 32-bit
        align = pmd if k.paging.bits64 else PAGE_SIZE
        end = -(-s["__end_rodata"] // align) * align
        pti_clone_pgtable(k, s["_text"], end, 0, "pti_clone_kernel_text", pti_level_kernel_image(k))
        set_memory_global(k, s["_text"], s["_etext"])
    else:
        pti_clone_pgtable(k, s["_text"], -(-s["_end"] // pmd) * pmd, _PAGE_RW, "pti_clone_kernel_text")


def set_memory_global(k, start: int, end: int) -> None:
    """_PAGE_GLOBAL on every leaf of [start, end) of swapper_pg_dir."""
    pt = k.pgtable
    for va, _size, _phys, raw, li in list(pt.iter_leaves(k.pgd, start, end)):
        if not raw & _PAGE_GLOBAL:
            step = pt.walk(k.pgd, va).steps[li]
            pt.set_entry(step.table, li, step.index, raw | _PAGE_GLOBAL, writer="set_memory_global", va=va)


def pti_init(k) -> None:
    """pti_init's clones into the user copy of swapper_pg_dir (head_64.S / head_32.S: the
    page after init_top_pgt / swapper_pg_dir, PTI_USER_PGD_FILL; the core's boot made it):
    the shared area, the entry text, ESPfix and vsyscall (x86_64 only: their symbols); then
    pti_finalize's (the kernel text under pti=auto)."""
    if not k.plan.user_pgd_entries:
        return
    era = X86_PTI(k.spec.kernel)
    pti_clone_user_shared(k)
    start, end = entry_text(k.layout)
    # 4.15-4.18 cloned the entry text read-only (and not global before 4.17)
    clear = 0 if era.clone_to_rodata else _PAGE_RW | (0 if era.default_kernel_pte_mask else _PAGE_GLOBAL)
    # 32-bit: the entry text's ptes from 6.11 (PTI_LEVEL_KERNEL_IMAGE), its pmds before
    level = pti_level_kernel_image(k) if era.entry_text_pte_32 else PTI_CLONE_PMD
    pti_clone_pgtable(k, start, end, clear, "pti_clone_entry_text", level)
    if "ESPFIX_BASE_ADDR" in k.layout.symbols:
        pti_clone_p4d(k, k.layout.symbols["ESPFIX_BASE_ADDR"])
    pti_setup_vsyscall(k)
    pti_clone_kernel_text(k)
