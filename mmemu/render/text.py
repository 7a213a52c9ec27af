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


def page_line(kernel, phys: int) -> list[str]:
    """Where crash prints the frame's ``struct page`` (dump_mem_map), mmemu prints its own
    frame record: the struct page address (``vmemmap + pfn * 64`` where the arch has a
    vmemmap: the layout's ``vmemmap`` symbol, else VMEMMAP_START; else the pfn), the physical address, the reference count and what the frame is."""
    pfn = phys >> 12
    info = kernel.frames.page(pfn)
    syms = kernel.layout.symbols
    vmemmap = syms.get("vmemmap", syms.get("VMEMMAP_START"))
    page = f"{vmemmap + pfn * 64:x}" if vmemmap is not None else f"pfn:{pfn:x}"
    if info.state == "free":
        what = f"buddy (free block of order {info.order} at pfn {info.head:#x}, zone {info.zone})"
    elif info.state == "allocated":
        what = f"{info.owner or 'allocated'} (order {info.order} block at pfn {info.head:#x}, zone {info.zone})"
    elif info.state == "reserved":
        what = f"reserved: {info.owner}"
    else:
        what = "not RAM"
    w = max(len(page), 4)
    return [f"{'PAGE':>{w}}  {'PHYSICAL':>10}  CNT  FLAGS", f"{page:>{w}}  {phys & ~0xFFF:>10x}  {info.refcount:3d}  {what}"]
