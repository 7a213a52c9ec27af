"""Booting a kernel: memory, zones, the master page table and the boot-time mappings.

The steps follow the kernel's own order (arch/x86/kernel/setup.c ``setup_arch``):
memblock reserves the first page and the kernel image, the direct mapping of low memory is
built (``init_memory_mapping``: ``kernel_physical_mapping_init`` on both arches), the
kernel image gets its final protections (``mark_rodata_ro``), the page tables of the
fixmap (``early_ioremap_page_table_range_init`` / the x86_64 ``level2_fixmap_pgt``) and,
on i386 with HighMem, the single page table of the pkmap area (``permanent_kmaps_init``)
are allocated, and finally the remaining memory goes to the buddy allocator. Each writer
of a page-table entry is named after the kernel function that writes it.
"""

from __future__ import annotations

import pluggy

from ..arch import Arch, Level
from ..buddy import FrameAllocator
from ..errors import ConfigError
from ..layout import MachineSpec
from ..pagetable import PageTables
from ..physmem import PhysMem
from . import Kernel

PAGE_SHIFT = 12
ISA_END_ADDRESS = 0x100000


def _usable_pfn_ranges(layout) -> list[tuple[int, int]]:
    out = []
    for r in layout.memory_map:
        if r.type == "usable":
            s, e = (r.start + 0xFFF) >> PAGE_SHIFT, r.end >> PAGE_SHIFT
            if e > s:
                out.append((s, e))
    return out


def boot_kernel(arch: Arch, spec: MachineSpec, pm: pluggy.PluginManager) -> Kernel:
    layout = arch.layout(spec)
    layout.check()
    paging = arch.paging(spec)
    k = Kernel()
    k.spec, k.arch, k.layout, k.paging, k.pm = spec, arch, layout, paging, pm
    k.cpus = []
    k.mem = PhysMem(spec.ram)
    try:
        _boot(k)
    except BaseException:
        k.mem.close()
        raise
    return k


def _boot(k: Kernel) -> None:
    layout, arch, spec = k.layout, k.arch, k.spec
    syms = layout.symbols

    # memblock: the first page (real-mode IVT, BIOS data area) and the kernel image are
    # reserved before anything is allocated (setup_arch: memblock_reserve(_text, _end),
    # trim_low_memory_range / reserve_bios_regions).
    image_start = min(s.phys for s in layout.image)
    image_end = max(s.phys + s.size for s in layout.image)
    reserved = [(0, 1, "BIOS data area"), (image_start >> PAGE_SHIFT, (image_end + 0xFFF) >> PAGE_SHIFT, "kernel image")]
    frames = FrameAllocator(layout.zones)
    frames.memblock_init(_usable_pfn_ranges(layout), reserved)
    k.frames = frames

    # CONFIG_HIGHPTE: user ptes in HighMem (decided now: the allocator below needs it)
    k.highpte = bool(layout.config.get("CONFIG_HIGHPTE")) and "HighMem" in frames.zones

    def alloc_table(level: Level, user: bool) -> int:
        zone = "HighMem" if user and k.highpte and level is k.paging.levels[-1] else "Normal"
        page = frames.alloc_pages(0, zone, owner=f"page table ({level.name})")
        k.mem.zero(page.phys, 4096)
        return page.phys

    def free_table(phys: int) -> None:
        frames.free_pages(phys >> PAGE_SHIFT)

    pt = PageTables(k.paging, k.mem, alloc_table, free_table)
    k.pgtable = pt

    # The master page table lives in the kernel image: swapper_pg_dir in the i386 bss
    # (arch/x86/kernel/head_32.S), init_top_pgt (init_level4_pgt before 4.14) in x86_64 data.
    x86_64 = "__START_KERNEL_map" in syms
    section = next(s for s in layout.image if s.name == ("data" if x86_64 else "bss"))
    k.pgd = (section.phys + 0xFFF) & ~0xFFF
    k._pgd_va = section.virt + (k.pgd - section.phys)
    if x86_64:
        k.pgd_symbol = "init_top_pgt" if spec.kernel >= "4.14" else "init_level4_pgt"
    else:
        k.pgd_symbol = "swapper_pg_dir"
    k.mem.zero(k.pgd, 4096)
    pt.adopt_table(k.pgd, 0, k.pgd_symbol)

    # The direct mapping of low memory: [0, 1M) first, then the rest, each with the
    # largest pages alignment allows (arch/x86/mm/init.c: init_mem_mapping maps the ISA
    # range on its own; split_mem_range keeps unaligned heads and tails in small pages).
    sizes = arch.boot_page_sizes(spec)
    k.direct_map_page_sizes = sizes
    page_offset = syms["PAGE_OFFSET"]
    lowmem = syms["high_memory"] - page_offset
    if lowmem <= 0 or lowmem % 4096:
        raise ConfigError(f"layout gives high_memory {syms['high_memory']:#x} below PAGE_OFFSET or unaligned")
    kernel_prot = arch.pgprot["PAGE_KERNEL"]
    writer = "kernel_physical_mapping_init"
    isa = min(ISA_END_ADDRESS, lowmem)
    pt.map(k.pgd, page_offset, 0, isa, kernel_prot, writer=writer, page_sizes=sizes)
    if lowmem > isa:
        pt.map(k.pgd, page_offset + isa, isa, lowmem - isa, kernel_prot, writer=writer, page_sizes=sizes)

    # The kernel image with its final protections (mark_rodata_ro, arch/x86/mm/init_{32,64}.c):
    # text read-only and executable, rodata read-only, data and bss writable, both NX.
    # On i386 the image is part of the direct mapping: change its entries (splitting large
    # pages at the section edges, as set_memory_ro/nx do). On x86_64 it has its own mapping
    # at __START_KERNEL_map (built by head_64.S / __startup_64 with 2 MiB pages).
    p = k.paging
    for sec in layout.image:
        size = (sec.size + 0xFFF) & ~0xFFF
        if x86_64:
            prot = arch.pgprot["PAGE_KERNEL_RX" if sec.executable else
                               ("PAGE_KERNEL" if sec.writable else "PAGE_KERNEL_RO")]
            pt.map(k.pgd, sec.virt, sec.phys, size, prot, writer="__startup_64", page_sizes=sizes)
        else:
            clear = (0 if sec.writable else p.write) | (p.nx if sec.executable else 0)
            setb = 0 if sec.executable else p.nx
            if clear or setb:
                pt.change(k.pgd, sec.virt, size, set_bits=setb, clear_bits=clear, writer="mark_rodata_ro")

    # The fixmap's page tables, for every slot including the boot-time ones.
    fix_top = syms["FIXADDR_TOP"]
    end_idx = dict(layout.fixmap).get("__end_of_fixed_addresses")
    fix_bottom = fix_top - ((end_idx - 1) << PAGE_SHIFT) if end_idx else syms["FIXADDR_START"]
    fix_bottom = min(fix_bottom, syms["FIXADDR_START"])
    pt.populate(k.pgd, fix_bottom, fix_top + 4096 - fix_bottom,
                writer="__startup_64" if x86_64 else "early_ioremap_page_table_range_init")

    # i386 with HighMem: one page table for all LAST_PKMAP slots (mm/highmem.c,
    # arch/x86/mm/init_32.c permanent_kmaps_init -> pkmap_page_table).
    if "PKMAP_BASE" in syms and syms.get("LAST_PKMAP"):
        pt.populate(k.pgd, syms["PKMAP_BASE"], syms["LAST_PKMAP"] << PAGE_SHIFT, writer="permanent_kmaps_init")

    # x86_64 since 5.8 (arch/x86/mm/init_64.c preallocate_vmalloc_pages): the level below
    # the pgd is allocated for the whole vmalloc space at boot, so that its top-level
    # entries exist in every page directory copied from init_top_pgt and never need a sync.
    if x86_64 and spec.kernel >= "5.8":
        # (x86_64's VMALLOC_END is the last byte: pgtable_64_types.h "... - 1")
        end = (syms["VMALLOC_END"] | 0xFFF) + 1
        pt.populate(k.pgd, syms["VMALLOC_START"], end - syms["VMALLOC_START"],
                    writer="preallocate_vmalloc_pages", down_to=1)

    k._init_services()
    k.pm.hook.mmemu_boot(kernel=k)
