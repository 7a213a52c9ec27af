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


def pti_clone_pgtable(k, start: int, end: int, clear: int, writer: str) -> None:
    """pti_clone_pgtable (pti_clone_pmds before 4.19), PTI_CLONE_PMD: every present pmd of
    [start, end) copied into the user copy (less the *clear* flags of the era), and made
    global in both (4.17+). A pmd pointing to a page table shares that table."""
    pt = k.pgtable
    li = _level(k, "pmd")
    span = k.paging.levels[li].span
    glb = _PAGE_GLOBAL if X86_PTI(k.spec.kernel).default_kernel_pte_mask else 0
    addr = start & ~(span - 1)
    while addr < end:
        steps = pt.walk(k.pgd, addr).steps
        if len(steps) > li and steps[li].raw:
            kernel = steps[li]
            raw = kernel.raw | glb
            if raw != kernel.raw:
                pt.set_entry(kernel.table, li, kernel.index, raw, writer=writer, va=addr)
            table, idx = pti_user_pagetable_walk(k, addr, li)
            pt.set_entry(table, li, idx, raw & ~clear, writer=writer, va=addr)
            if pt.decode(li, raw)[0] == TABLE:  # a table: both copies share it
                k.shared_tables.add(pt.decode(li, raw)[1])
        addr += span


def _clone_pte(k, va: int, raw: int, writer: str) -> None:
    table, idx = pti_user_pagetable_walk(k, va, len(k.paging.levels) - 1)
    k.pgtable.set_entry(table, len(k.paging.levels) - 1, idx, raw, writer=writer, va=va)


def pti_clone_user_shared(k) -> None:
    """The cpu_entry_area's p4d (64-bit), and from 4.19 each CPU's cpu_tss_rw page at its
    per-cpu address, PAGE_KERNEL."""
    s = k.layout.symbols
    if "CPU_ENTRY_AREA_BASE" not in s:
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
        end = -(-s["__end_rodata"] // pmd) * pmd  # __end_rodata_aligned (HPAGE_SIZE aligned)
        pti_clone_pgtable(k, s["_text"], end, 0, "pti_clone_kernel_text")
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
    """pti_init's clones into the user copy of swapper_pg_dir (head_64.S: the page after
    init_top_pgt, PTI_USER_PGD_FILL; the core's boot made it): the shared area, the entry
    text, ESPfix, vsyscall; then pti_finalize's (the kernel text under pti=auto)."""
    if not k.plan.user_pgd_entries:
        return
    era = X86_PTI(k.spec.kernel)
    pti_clone_user_shared(k)
    start, end = entry_text(k.layout)
    # 4.15-4.18 cloned the entry text read-only (and not global before 4.17)
    clear = 0 if era.clone_to_rodata else _PAGE_RW | (0 if era.default_kernel_pte_mask else _PAGE_GLOBAL)
    pti_clone_pgtable(k, start, end, clear, "pti_clone_entry_text")
    if "ESPFIX_BASE_ADDR" in k.layout.symbols:
        pti_clone_p4d(k, k.layout.symbols["ESPFIX_BASE_ADDR"])
    pti_setup_vsyscall(k)
    pti_clone_kernel_text(k)
