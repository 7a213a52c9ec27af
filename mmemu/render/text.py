"""Pieces of text every arch's renderers share (public: arch plugins use them)."""

from __future__ import annotations


def center(text: str, width: int, rjust: bool = False) -> str:
    """crash's ``mkstring(CENTER|LJUST/RJUST)``: centred, the odd space right (LJUST) or
    left (RJUST)."""
    pad = width - len(text)
    if pad <= 0:
        return text
    left = (pad + 1) // 2 if rjust else pad // 2
    return " " * left + text + " " * (pad - left)


def table_va(kernel, table: int) -> int:
    """The kernel virtual address of a page table, as crash prints it: the master table
    where the kernel sees it, another by its direct-map address (its physical address if it
    has none: a table in HighMem)."""
    if table == kernel.pgd:
        return kernel.pgd_va
    try:
        return kernel.phys_to_virt(table)
    except Exception:
        return table


def page_size_suffix(size: int) -> str:
    """crash's ``  (2MB)`` after the PAGE line of a large page."""
    if size >= 1 << 30:
        return f"  ({size >> 30}GB)"
    if size >= 1 << 20:
        return f"  ({size >> 20}MB)"
    if size > 4096:
        return f"  ({size >> 10}KB)"
    return ""


def paddr_prlen(kernel) -> int:
    """crash's PADDR_PRLEN (memory.c vm_init): the length of ``%llx`` of
    MAX(max_mapnr * PAGESIZE(), memory_size()), the end of RAM."""
    end = max((z.end_pfn for z in kernel.frames.zones.values()), default=0) << 12
    return len(f"{end:x}")


def struct_page_address(kernel, pfn: int) -> int | None:
    """``pfn_to_page(pfn)``: ``vmemmap + pfn`` with SPARSEMEM_VMEMMAP (the layout's
    ``vmemmap``, or VMEMMAP_START where vmemmap is that: x86_64's vmemmap_base), else FLATMEM's
    ``mem_map + (pfn - ARCH_PFN_OFFSET)`` (include/asm-generic/memory_model.h), in units of
    sizeof(struct page): 64 bytes on a 64-bit kernel (include/linux/mm_types.h,
    STRUCT_PAGE_MAX_SHIFT 6), 32 on i386 (the layout's mem_map is sized so). None where the
    arch's layout has neither."""
    syms = kernel.layout.symbols
    size = 8 * kernel.ptr_size
    for name in ("vmemmap", "VMEMMAP_START"):
        if name in syms:
            return (syms[name] + pfn * size) & ((1 << (8 * kernel.ptr_size)) - 1)
    if "mem_map" in syms:
        return syms["mem_map"] + (pfn - (kernel.PHYS_OFFSET >> 12)) * size
    return None


def page_flags(kernel, pfn: int) -> tuple[int, list[str]]:
    """``page->flags`` of the bits mmemu's frame records carry (PG_reserved for memblock's
    reserved ranges, PG_slab for a slab's pages; bit numbers of the era, eras.py
    ``pageflags``), and their names in the enum's order. The fields area (zone, node,
    section) is not encoded."""
    info = kernel.frames.page(pfn)
    # a hole below the end of RAM has a struct page too, reserved (mm_init.c init_unavailable_range,
    # memblock's reserve_bootmem_region in older kernels: __init_single_page, then SetPageReserved)
    have = {"reserved": info.state in ("reserved", "hole"),
            "slab": info.state == "allocated" and info.owner.startswith("slab (")}
    flags, names = 0, []
    for name, bit in kernel.era.pageflags:
        if have.get(name):
            flags |= 1 << bit
            names.append(name)
    return flags, names


#: include/asm/sparsemem.h SECTION_SIZE_BITS (x86_64, riscv64, arm64 from 5.12): 128 MiB sections
SECTION_SIZE_BITS = 27


def _has_struct_page(kernel, pfn: int) -> bool:
    """phys_to_page() of a frame that is not RAM: FLATMEM's mem_map has every pfn below
    the end of RAM; SPARSEMEM (vmemmap) only those of a memory section with RAM in it
    (crash memory.c phys_to_page, pfn_to_map and valid_section)."""
    end = max(z.end_pfn for z in kernel.frames.zones.values())
    if pfn >= end:
        return False
    if "mem_map" in kernel.layout.symbols:
        return True
    first = pfn & ~((1 << (SECTION_SIZE_BITS - 12)) - 1)
    return any(kernel.frames.is_ram(p) for p in range(first, min(end, first + (1 << (SECTION_SIZE_BITS - 12)))))


def page_line(kernel, phys: int) -> list[str]:
    """crash's ``dump_mem_map`` for one physical address (memory.c, read at commit
    004218c5): the header ``PAGE  PHYSICAL  MAPPING  INDEX CNT FLAGS`` (mkstring: PAGE
    centred in VADDR_PRLEN, PHYSICAL right-justified in MAX(PADDR_PRLEN, 8), MAPPING centred
    right in VADDR_PRLEN, INDEX centred right in 8, MINSPACE (2) between) and the row of
    ``style4`` ``%-{VADDR_PRLEN}lx  %{w}llx  %{VADDR_PRLEN}lx  %8lx %2d `` followed by
    translate_page_flags (``%lx`` and the set flags' names after a blank, comma-separated).
    mmemu keeps no page->mapping nor page->index: both are 0. Nothing beyond the end of
    RAM (no struct page there)."""
    pfn = phys >> 12
    info = kernel.frames.page(pfn)
    page = struct_page_address(kernel, pfn)
    if page is None or (info.state == "hole" and not _has_struct_page(kernel, pfn)):
        return []
    vp = 2 * kernel.ptr_size
    pw = max(paddr_prlen(kernel), len("PHYSICAL"))
    head = (f"{center('PAGE', vp)}  {'PHYSICAL':>{pw}}  {center('MAPPING', vp, True)}  "
            f"{center('INDEX', 8, True)}CNT FLAGS")
    flags, names = page_flags(kernel, pfn)
    text = f"{flags:x}" + (" " + ",".join(names) if flags and names else "")
    count = 1 if info.state == "hole" else info.refcount  # __init_single_page: init_page_count
    row = f"{page:<{vp}x}  {pfn << 12:>{pw}x}  {0:>{vp}x}  {0:>8x} {count:2d} {text}"
    return [head, row]
