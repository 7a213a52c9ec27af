"""The mappings an x86_64 kernel makes at boot besides the direct map and the image: the
struct page array (vmemmap), the ESPfix ministacks and the vsyscall page (the cpu_entry_area
and the device fixmap slots, which i386 has too, are in mmemu_x86.boot_maps).

Each function below is what the named kernel function does, with the numbers of its source;
they run at the end of the core's boot (``X86_64Arch.boot_mappings``), before any service,
so that a freshly booted machine's ``ptdump`` shows these regions as a real one does.
What is left to chance in a real kernel is fixed here, as with KASLR off: ESPfix's
``page_random``/``slot_random`` are 0.
"""

from __future__ import annotations

from mmemu_x86.boot_maps import fix_va
from mmemu_x86.mm import X86_MM
from mmemu_x86.pti import supported_global
from mmemu_x86.pgtable_types import _KERNPG_TABLE, _PAGE_NX, _PAGE_RW, _PAGE_USER

from mmemu.layout import Layout
from mmemu.units import MiB

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
PMD_SIZE = 2 * MiB

# ---- vmemmap ------------------------------------------------------------------------------
#: arch/x86/include/asm/sparsemem.h (x86_64, every era with SPARSEMEM):
#: "# define SECTION_SIZE_BITS 27 /* matt - 128 is convenient right now */"
SECTION_SIZE_BITS = 27
PAGES_PER_SECTION = 1 << (SECTION_SIZE_BITS - PAGE_SHIFT)
#: sizeof(struct page) on x86_64 (include/linux/mm_types.h; the 64 bytes mmemu's struct page
#: addresses assume, mmemu.module.exports)
STRUCT_PAGE_SIZE = 64
#: mm/sparse.c section_map_size() (CONFIG_SPARSEMEM_VMEMMAP):
#: ALIGN(sizeof(struct page) * PAGES_PER_SECTION, PMD_SIZE)
SECTION_MAP_SIZE = -(-STRUCT_PAGE_SIZE * PAGES_PER_SECTION // PMD_SIZE) * PMD_SIZE
#: arch/x86/include/asm/dma.h: MAX_DMA_ADDRESS is PAGE_OFFSET + 16 MiB, the floor of
#: sparse_buffer_init's memblock_alloc_exact_nid_raw(..., __pa(MAX_DMA_ADDRESS), ...)
MAX_DMA_PHYS = 16 * MiB
VMEMMAP_OWNER = "struct pages (vmemmap)"

# ---- ESPfix: arch/x86/kernel/espfix_64.c (3.16+) -------------------------------------------
ESPFIX_STACK_SIZE = 8 * 8  # "#define ESPFIX_STACK_SIZE (8*8UL)"
ESPFIX_STACKS_PER_PAGE = PAGE_SIZE // ESPFIX_STACK_SIZE  # (PAGE_SIZE/ESPFIX_STACK_SIZE)
PTE_STRIDE = 65536 // PAGE_SIZE  # "#define PTE_STRIDE (65536/PAGE_SIZE)"
ESPFIX_PTE_CLONES = 512 // PTE_STRIDE  # (PTRS_PER_PTE/PTE_STRIDE)
ESPFIX_PMD_CLONES = 512  # PTRS_PER_PMD
ESPFIX_PUD_CLONES = 65536 // (ESPFIX_PTE_CLONES * ESPFIX_PMD_CLONES)
#: "#define PGTABLE_PROT ((_KERNPG_TABLE & ~_PAGE_RW) | _PAGE_NX)": read-only, no-exec tables
ESPFIX_PGTABLE_PROT = (_KERNPG_TABLE & ~_PAGE_RW) | _PAGE_NX


def present_sections(layout: Layout) -> list[int]:
    """The memory sections with RAM in them (mm/sparse.c memblocks_present() ->
    memory_present() for every memblock.memory range, which x86 fills with the e820 RAM)."""
    secs: set[int] = set()
    for r in layout.memory_map:
        if r.type == "usable" and r.end > r.start:
            secs.update(range(r.start >> SECTION_SIZE_BITS, ((r.end - 1) >> SECTION_SIZE_BITS) + 1))
    return sorted(secs)


def vmemmap_alloc(layout: Layout) -> tuple[tuple[int, int, int, str], ...]:
    """The memblock allocation of the struct page array (BootPlan.memblock_allocs): mm/sparse.c
    sparse_init_nid() (4.19+, 'mm/sparse: abstract sparse buffer allocations'):
    sparse_buffer_init(map_count * section_map_size(), nid), one top-down block for the
    node's present sections, aligned to section_map_size(), above __pa(MAX_DMA_ADDRESS).
    (Before 4.19 the node's maps were allocated one block per node too, through
    sparse_mem_maps_populate_node's vmemmap_buf; 2.6.24-2.6.3x bootmem allocated bottom-up:
    the amount is the same, the place is modelled as 4.19+.) Nothing without
    CONFIG_SPARSEMEM_VMEMMAP (before 2.6.24: mem_map in the direct map)."""
    if not layout.config.get("CONFIG_SPARSEMEM_VMEMMAP"):
        return ()
    n = len(present_sections(layout))
    return ((n * SECTION_MAP_SIZE, SECTION_MAP_SIZE, MAX_DMA_PHYS, VMEMMAP_OWNER),) if n else ()


def map_vmemmap(k) -> None:
    """mm/sparse-vmemmap.c __populate_section_memmap() -> arch/x86/mm/init_64.c
    vmemmap_populate() for each present section, in order, taking its map from the sparse
    buffer: vmemmap_populate_hugepages() with X86_FEATURE_PSE (vmemmap_set_pmd():
    ``pfn_pte(__pa(p) >> PAGE_SHIFT, PAGE_KERNEL_LARGE)`` in a pmd), else (``nopse``)
    vmemmap_populate_basepages(), 4 KiB ptes over the same buffer."""
    base = k.memblock_allocs.get(VMEMMAP_OWNER)
    if base is None:
        return
    vmemmap = k.layout.symbols["VMEMMAP_START"]
    large = PMD_SIZE in k.direct_map_page_sizes
    sizes = (PMD_SIZE,) if large else (PAGE_SIZE,)
    prot = k.pgprot["PAGE_KERNEL"]  # PAGE_KERNEL_LARGE: PAGE_KERNEL with PSE, which a pmd leaf gets
    runs: list[list[int]] = []
    for sec in present_sections(k.layout):
        if runs and runs[-1][1] == sec:
            runs[-1][1] = sec + 1
        else:
            runs.append([sec, sec + 1])
    phys = base
    for first, end in runs:
        size = (end - first) * SECTION_MAP_SIZE
        va = vmemmap + first * PAGES_PER_SECTION * STRUCT_PAGE_SIZE
        k.pgtable.map(k.pgd, va, phys, size, prot, writer="vmemmap_populate", page_sizes=sizes, record=False)
        phys += size


def _espfix_base_addr(k, cpu: int) -> int:
    """espfix_base_addr(cpu) with page_random = slot_random = 0 (init_espfix_random's
    get_random_long(), fixed here)."""
    page, slot = cpu // ESPFIX_STACKS_PER_PAGE, cpu % ESPFIX_STACKS_PER_PAGE
    addr = (page << PAGE_SHIFT) + slot * ESPFIX_STACK_SIZE
    addr = (addr & 0xFFFF) | ((addr & ~0xFFFF) << 16)
    return addr + k.layout.symbols["ESPFIX_BASE_ADDR"]


def _new_table(k, li: int) -> int:
    """alloc_pages_node(node, PGALLOC_GFP, 0) for a page table: zeroed, known to the engine."""
    name = k.paging.levels[li].name
    page = k.frames.alloc_pages(0, "Normal", owner=f"page table ({name})")
    k.mem.zero(page.phys, PAGE_SIZE)
    k.pgtable.adopt_table(page.phys, li, f"page table ({name})")
    return page.phys


def map_espfix(k) -> None:
    """init_espfix_bsp() then init_espfix_ap(cpu) for each CPU (arch/x86/kernel/espfix_64.c,
    3.16+, CONFIG_X86_ESPFIX64): the pud page ``espfix_pud_page`` (page-aligned bss) is
    installed in the top-level table (p4d_populate / pgd_populate: _PAGE_TABLE); each page
    of ESPFIX_STACKS_PER_PAGE CPUs' ministacks gets, where missing, a pmd page set in
    ESPFIX_PUD_CLONES pud entries and a pte page set in all ESPFIX_PMD_CLONES pmd entries
    (both PGTABLE_PROT: read-only, NX), and its stack page in ESPFIX_PTE_CLONES ptes
    PTE_STRIDE apart (__PAGE_KERNEL_RO, global): each ministack is mapped 2^16 times, 64K
    apart."""
    s = k.layout.symbols
    if "ESPFIX_BASE_ADDR" not in s:
        return
    pt, codec = k.pgtable, k.codec
    levels = k.paging.levels
    pud_li = next(i for i, lv in enumerate(levels) if lv.name == "pud")
    pmd_li, pte_li = pud_li + 1, pud_li + 2
    base = s["ESPFIX_BASE_ADDR"]
    pud_page, _ = k.image_page("bss")  # static __page_aligned_bss pud_t espfix_pud_page[PTRS_PER_PUD]
    k.mem.zero(pud_page, PAGE_SIZE)
    pt.adopt_table(pud_page, pud_li, "espfix_pud_page")
    # the entries above it: the pgd's (4-level, p4d folded), or (5-level) the p4d table
    # p4d_alloc finds under the pgd entry or allocates
    table = k.pgd
    for li in range(pud_li - 1):
        idx = (base >> levels[li].shift) & (levels[li].entries - 1)
        raw = pt.read_entry(table, idx, li)
        if raw:
            table = raw & codec.bits[li].addr_mask
            continue
        child = _new_table(k, li + 1)
        pt.set_entry(table, li, idx, codec.mk_table(li, child, True), writer="init_espfix_bsp")
        table = child
    li = pud_li - 1
    pt.set_entry(table, li, (base >> levels[li].shift) & 511, codec.mk_table(li, pud_page, True),
                 writer="init_espfix_bsp")
    # what lies beyond the first pmd entry's 2 MiB repeats it (the pmd and pud clones)
    k.alias_ranges.append((base + (1 << levels[pmd_li].shift), base + ESPFIX_PUD_CLONES * (1 << levels[pud_li].shift)))
    # __PAGE_KERNEL_RO & __supported_pte_mask: global even where PTI makes PAGE_KERNEL_RO not
    stack_prot = k.pgprot["PAGE_KERNEL_RO"] | supported_global(k)
    for page in range(-(-k.spec.cpus // ESPFIX_STACKS_PER_PAGE)):
        addr = _espfix_base_addr(k, page * ESPFIX_STACKS_PER_PAGE)
        pmd_page = _espfix_table(k, pud_page, pud_li, addr, ESPFIX_PUD_CLONES)
        pte_page = _espfix_table(k, pmd_page, pmd_li, addr, ESPFIX_PMD_CLONES)
        stack = k.frames.alloc_pages(0, "Normal", owner="espfix ministacks")
        k.mem.zero(stack.phys, PAGE_SIZE)
        pte = codec.pfn_pte(stack.pfn, stack_prot)
        pte_idx = (addr >> PAGE_SHIFT) & 511
        run = list(pt.entries(pte_page, pte_li)[pte_idx:])  # set_pte(&pte_p[n*PTE_STRIDE], pte)
        run[::PTE_STRIDE] = [pte] * len(run[::PTE_STRIDE])
        pt.set_entries(pte_page, pte_li, pte_idx, run, writer="init_espfix_ap")


def _espfix_table(k, table: int, li: int, addr: int, clones: int) -> int:
    """init_espfix_ap(): the table below *table*'s entry for *addr*; where that entry is not
    present, a new page (PGALLOC_GFP) goes in it and the *clones* - 1 entries after it
    (``set_pud(&pud_p[n], pud)`` / ``set_pmd(&pmd_p[n], pmd)``), with PGTABLE_PROT."""
    pt = k.pgtable
    idx = (addr >> k.paging.levels[li].shift) & 511
    raw = pt.read_entry(table, idx, li)
    if not raw:
        child = _new_table(k, li + 1)
        k.shared_tables.add(child)
        raw = child | ESPFIX_PGTABLE_PROT
        pt.set_entries(table, li, idx, [raw] * min(clones, 512 - idx), writer="init_espfix_ap")
    return raw & k.codec.bits[li].addr_mask


def map_vsyscall(k) -> None:
    """map_vsyscall() of the era (X86_MM ``vsyscall_mode``): the vsyscall page at
    0xffffffffff600000 (VSYSCALL_FIRST_PAGE of the 8 MiB area until 3.15, VSYSCALL_PAGE
    from 3.16). Native mode (2.6.12 .. 3.0): PAGE_KERNEL_VSYSCALL (__PAGE_KERNEL_RX |
    _PAGE_USER: user-executable). Emulate mode (3.1 .. 5.2): PAGE_KERNEL_VVAR
    (__PAGE_KERNEL_RO | _PAGE_USER: user-readable, NX), and until 3.15 the vvar page
    (VVAR_PAGE, ``__vvar_page`` in the image's data) the same way. Either way _PAGE_USER is
    in every entry above it (head_64.S's level3_kernel_pgt and level2_fixmap_pgt entries are
    _PAGE_TABLE until 4.14; 4.15+ set_vsyscall_pgtable_user_bits(swapper_pg_dir)). XONLY
    (5.3+): "there is no PTE at all backing the vsyscall page". ``__vsyscall_page``
    (``__vsyscall_0`` in 2.6) is a page of the kernel's text; mmemu's image sizes being
    representative, it is taken as text's last page."""
    mode = X86_MM(k.spec.kernel).vsyscall_mode
    if mode == "xonly" or not k.layout.config.get("CONFIG_X86_VSYSCALL_EMULATION", True):
        return
    va = fix_va(k, "VSYSCALL_PAGE")
    if va is None:
        va = fix_va(k, "VSYSCALL_FIRST_PAGE")
    if va is None:
        return
    text = next(sec for sec in k.layout.image if sec.name == "text")
    pages = [(va, (text.phys + text.size - PAGE_SIZE) & ~(PAGE_SIZE - 1))]
    vvar = fix_va(k, "VVAR_PAGE")
    if vvar is not None:
        pages.append((vvar, k.image_page("data")[0]))  # __vvar_page: page-aligned kernel data
    prot = k.pgprot["PAGE_KERNEL_RX" if mode == "native" else "PAGE_KERNEL_RO"] | _PAGE_USER
    for at, phys in pages:
        k.pgtable.set_pte(k.pgd, at, k.codec.pfn_pte(phys >> PAGE_SHIFT, prot), writer="map_vsyscall")
        for step in k.pgtable.walk(k.pgd, at).steps[:-1]:
            if not step.raw & _PAGE_USER:
                k.pgtable.set_entry(step.table, step.li, step.index, step.raw | _PAGE_USER, writer="map_vsyscall")
