"""Booting a kernel: memory, zones, the master page table and the boot-time mappings.

The steps follow the order every arch's ``setup_arch``/``paging_init`` shares: memblock
reserves the kernel image and what the arch's layout reserves (the PC's first page,
RISC-V's firmware); the direct mapping of low memory is built with the largest pages the
arch allows (x86 ``kernel_physical_mapping_init``, RISC-V ``create_linear_mapping_range``,
arm64 ``map_mem``); the kernel image gets its final protections, in place where it lies in
the direct map (i386 ``mark_rodata_ro``) or in its own mapping (x86_64, RISC-V, arm64); the
page tables of the fixmap and, with HighMem, of the pkmap area are allocated, and the ones
the arch preallocates; finally the remaining memory goes to the buddy allocator. Which
kernel function writes each entry comes from the arch's :class:`~mmemu.arch.BootPlan`.
"""

from __future__ import annotations

from ..arch import REQUIRED_PGPROTS, REQUIRED_SYMBOLS, Level
from ..buddy import FrameAllocator
from ..errors import ConfigError, PluginError
from ..pagetable import PageTables
from ..physmem import PhysMem
from ..units import PAGE_SHIFT, PAGE_SIZE
from .eras import MM
from .percpu import PercpuFirstChunk, memblock_find_top_down, place_first_chunk


def boot_kernel(arch, spec, pm):
    """Boot a machine of *spec* on *arch* and return its :class:`mmemu.kernel.Kernel`."""
    from . import Kernel

    return Kernel(arch, spec, pm)


def _usable_pfn_ranges(layout) -> list[tuple[int, int]]:
    out = []
    for r in layout.memory_map:
        if r.type == "usable":
            s, e = (r.start + PAGE_SIZE - 1) >> PAGE_SHIFT, r.end >> PAGE_SHIFT
            if e > s:
                out.append((s, e))
    return out


def check_layout(arch, layout) -> None:
    """The symbols the core reads must be there (a plugin bug otherwise)."""
    missing = [name for name in REQUIRED_SYMBOLS if name not in layout.symbols]
    if missing:
        raise PluginError(f"arch {arch.name}: its layout lacks the symbols {', '.join(missing)} "
                          "(mmemu.arch.REQUIRED_SYMBOLS)")
    layout.check()


def setup_memory(k) -> None:
    """The state of :class:`~mmemu.kernel.base.KernelBase` that does not need a table yet:
    RAM, memblock and the buddy allocator, the era, the shared numbers."""
    layout, spec = k.layout, k.spec
    syms = layout.symbols
    k.pgprot = dict(k.arch.pgprots(spec))
    missing = [n for n in REQUIRED_PGPROTS if n not in k.pgprot]
    if missing:
        raise PluginError(f"arch {k.arch.name}: kernel {spec.kernel} has no protections {', '.join(missing)}")
    k.era = MM(spec.kernel)
    k.codec = k.paging.codec
    k.task_size = syms["TASK_SIZE"]
    top = k.paging.levels[0]
    if not k.plan.copies_kernel_pgd:  # a separate kernel root: a user directory is all user
        k.KERNEL_PGD_BOUNDARY = top.entries
    else:  # arch/x86/include/asm/pgtable.h: KERNEL_PGD_BOUNDARY pgd_index(PAGE_OFFSET) by default
        k.KERNEL_PGD_BOUNDARY = syms.get("KERNEL_PGD_BOUNDARY",
                                         (syms["PAGE_OFFSET"] >> top.shift) & (top.entries - 1))
    if k.plan.kernel_copy_level not in (0, 1) or (k.plan.kernel_copy_level and len(k.paging.levels) < 3):
        raise PluginError(f"arch {k.arch.name}: BootPlan kernel_copy_level {k.plan.kernel_copy_level!r} (0 or 1, "
                          f"and 1 only above a last level of its own)")
    k.ptr_size = 8 if k.paging.bits64 else 4
    if layout.lowmem_bytes <= 0 or layout.lowmem_bytes % PAGE_SIZE:
        raise ConfigError(f"layout gives high_memory {syms['high_memory']:#x} below PAGE_OFFSET or unaligned")
    image = layout.image
    lo = min(s.virt for s in image)
    k._image_span = (lo, max(s.virt + s.size for s in image), image[0].virt - image[0].phys)
    # __pa/__va of the direct map, the hottest conversions: fixed for the machine's life
    k._direct_span = (syms["PAGE_OFFSET"], syms["high_memory"], layout.phys_offset)

    # memblock: the kernel image (memblock_reserve(_text, _end - _text), every arch) and what
    # the arch's layout reserves, before anything is allocated
    image_start = min(s.phys for s in image)
    image_end = max(s.phys + s.size for s in image)
    reserved = [(r.start >> PAGE_SHIFT, (r.end + PAGE_SIZE - 1) >> PAGE_SHIFT, r.type) for r in layout.reserved]
    reserved.append((image_start >> PAGE_SHIFT, (image_end + PAGE_SIZE - 1) >> PAGE_SHIFT, "kernel image"))
    usable = _usable_pfn_ranges(layout)
    lowmem_end = layout.phys_offset + layout.lowmem_bytes
    # what the arch's setup takes from memblock before the per-cpu areas (setup_arch runs
    # before setup_per_cpu_areas): x86_64's struct page array
    k.memblock_allocs = {}
    for size, align, floor, owner in k.plan.memblock_allocs:
        phys = memblock_find_top_down(size, align, reserved, usable, floor, lowmem_end)
        if phys is None:
            raise ConfigError(f"no room in memory for the {owner} ({size:#x} bytes aligned to {align:#x})")
        k.memblock_allocs[owner] = phys
        reserved.append((phys >> PAGE_SHIFT, (phys + size) >> PAGE_SHIFT, owner))
    # the per-cpu first chunk of an SMP kernel, memblock-allocated (setup_per_cpu_areas)
    k.pcpu = None
    if k.plan.percpu is not None:
        info, base_phys = place_first_chunk(k.plan.percpu, spec.cpus, 8 * k.ptr_size, reserved, usable,
                                            lowmem_end)
        k.pcpu = PercpuFirstChunk(info, base_phys, syms["PAGE_OFFSET"] + base_phys - layout.phys_offset,
                                  k.plan.percpu.static_start, spec.cpus, (1 << (8 * k.ptr_size)) - 1)
        for cpu in range(spec.cpus):  # each unit's unused tail goes back (pcpu_fc_free)
            start = base_phys + k.pcpu.unit_offset(cpu)
            reserved.append((start >> PAGE_SHIFT, (start + info.size_sum) >> PAGE_SHIFT, f"per-cpu area (cpu {cpu})"))
    frames = FrameAllocator(layout.zones)
    frames.memblock_init(usable, reserved)
    k.frames = frames
    # CONFIG_HIGHPTE: user ptes in HighMem (decided now: the table allocator needs it)
    k.highpte = bool(layout.config.get("CONFIG_HIGHPTE")) and "HighMem" in frames.zones


def new_memory(layout) -> PhysMem:
    return PhysMem(ranges=layout.ram_ranges())


def build_tables(k) -> None:
    """The engine, the master page table and every boot-time mapping."""
    layout, arch, spec, plan = k.layout, k.arch, k.spec, k.plan
    syms = layout.symbols
    frames = k.frames

    def alloc_table(level: Level, user: bool) -> int:
        zone = "HighMem" if user and k.highpte and level is k.paging.levels[-1] else "Normal"
        page = frames.alloc_pages(0, zone, owner=f"page table ({level.name})")
        k.mem.zero(page.phys, PAGE_SIZE)
        return page.phys

    def free_table(phys: int) -> None:
        frames.free_pages(phys >> PAGE_SHIFT)

    pt = PageTables(k.paging, k.mem, alloc_table, free_table)
    k.pgtable = pt

    # The master page table lives in the kernel image (swapper_pg_dir in the i386 and
    # RISC-V bss, init_top_pgt in x86_64 data...), the zero page in the bss
    # (empty_zero_page): the first free pages of their sections.
    used: dict[str, int] = {}

    def image_page(name: str) -> tuple[int, int]:
        try:
            sec = next(s for s in layout.image if s.name == name)
        except StopIteration:
            raise PluginError(f"arch {arch.name}: the kernel image has no section {name!r}") from None
        first = (sec.phys + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)
        pa = first + used.get(name, 0)
        if pa + PAGE_SIZE > sec.phys + sec.size:
            raise PluginError(f"arch {arch.name}: image section {name} is too small for its pages")
        used[name] = used.get(name, 0) + PAGE_SIZE
        return pa, sec.virt + (pa - sec.phys)

    if plan.root_phys is not None:  # the arch says where in the image it is
        sec = next((s for s in layout.image if s.phys <= plan.root_phys < s.phys + s.size), None)
        if sec is None or plan.root_phys % PAGE_SIZE:
            raise PluginError(f"arch {arch.name}: the root table at {plan.root_phys:#x} is not a page of the image")
        k.pgd, k._pgd_va = plan.root_phys, sec.virt + plan.root_phys - sec.phys
    else:
        k.pgd, k._pgd_va = image_page(plan.root_section)
    k.pgd_symbol = plan.root_symbol
    k.mem.zero(k.pgd, PAGE_SIZE)
    pt.adopt_table(k.pgd, 0, plan.root_symbol, kernel_root=True)
    if plan.user_pgd_entries:  # its user copy (x86 PTI): the image page after it
        user_pa, _ = image_page(plan.root_section)
        if user_pa != k.pgd + PAGE_SIZE:
            raise PluginError(f"arch {arch.name}: the page after {plan.root_symbol} ({k.pgd + PAGE_SIZE:#x}) is not "
                              f"free for its user copy (the image gave {user_pa:#x})")
        k.mem.zero(user_pa, PAGE_SIZE)
        pt.adopt_table(user_pa, 0, f"{plan.root_symbol} user copy")
        pt.user_copies[k.pgd] = (user_pa, plan.user_pgd_entries, k.keep_user_pgtbl)
    zero_pa, _ = image_page("bss")
    k.zero_pfn = zero_pa >> PAGE_SHIFT
    k.mem.zero(zero_pa, PAGE_SIZE)

    # The direct mapping of low memory: the arch's first ranges on their own (x86 maps
    # [0, 1M) first: init_mem_mapping; split_mem_range keeps unaligned heads and tails in
    # small pages), then the rest of RAM below high_memory.
    sizes = arch.boot_page_sizes(spec)
    k.direct_map_page_sizes = sizes
    page_offset, base = syms["PAGE_OFFSET"], layout.phys_offset
    lowmem_end = base + layout.lowmem_bytes
    kernel_prot = k.pgprot[plan.direct_map_prot]
    pieces = [(base + s, min(base + e, lowmem_end)) for s, e in plan.direct_map_first if base + s < lowmem_end]
    ranges = layout.ram_ranges() if plan.direct_map_ranges is None else plan.direct_map_ranges
    for s, e in ranges:
        s, e = max(s, base), min(e, lowmem_end)
        for fs, fe in pieces:
            if fs <= s < fe:
                s = fe
        if s < e:
            pieces.append((s, e))
    for s, e in pieces:
        pt.map(k.pgd, page_offset + s - base, s, e - s, kernel_prot, writer=plan.direct_map_writer, page_sizes=sizes,
               record=False)

    # The kernel image with its final protections: text read-only and executable, rodata
    # read-only, data and bss writable, both non-executable where the arch can say so.
    # A section inside the direct map gets its protection in place (splitting large pages
    # at the edges, as set_memory_ro/nx do); one elsewhere has its own mapping.
    pgprot = k.pgprot
    for sec in layout.image:
        size = (sec.size + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)
        if sec.prot is not None:
            prot = pgprot[sec.prot]
        elif sec.writable:
            prot = pgprot["PAGE_KERNEL_EXEC" if sec.executable else "PAGE_KERNEL"]
        else:
            prot = pgprot["PAGE_KERNEL_RX" if sec.executable else "PAGE_KERNEL_RO"]
        if page_offset <= sec.virt < syms["high_memory"] and sec.virt == page_offset + sec.phys - base:
            pt.protect(k.pgd, sec.virt, size, prot, writer=plan.image_writer)
        else:
            pt.map(k.pgd, sec.virt, sec.phys, size, prot, writer=plan.image_writer, page_sizes=sizes)

    # The fixmap's page tables, for every slot including the boot-time ones (the arch may
    # say which range its kernel populates).
    if plan.fixmap_range is not None:
        fix_start, fix_end = plan.fixmap_range
        pt.populate(k.pgd, fix_start, fix_end - fix_start, writer=plan.fixmap_writer)
    elif "FIXADDR_TOP" in syms:
        fix_top = syms["FIXADDR_TOP"]
        end_idx = dict(layout.fixmap).get("__end_of_fixed_addresses")
        fix_bottom = fix_top - ((end_idx - 1) << PAGE_SHIFT) if end_idx else syms.get("FIXADDR_START", fix_top)
        fix_bottom = min(fix_bottom, syms.get("FIXADDR_START", fix_bottom))
        pt.populate(k.pgd, fix_bottom, fix_top + PAGE_SIZE - fix_bottom, writer=plan.fixmap_writer)

    # HighMem: one page table for all LAST_PKMAP slots (mm/highmem.c pkmap_page_table;
    # arch/x86/mm/init_32.c permanent_kmaps_init)
    if "PKMAP_BASE" in syms and syms.get("LAST_PKMAP"):
        pt.populate(k.pgd, syms["PKMAP_BASE"], syms["LAST_PKMAP"] << PAGE_SHIFT, writer=plan.pkmap_writer)

    # what the arch preallocates (x86_64 5.8+ preallocate_vmalloc_pages...)
    for start, end, down_to, writer in plan.populate:
        pt.populate(k.pgd, start, end - start, writer=writer, down_to=down_to)

    # the arch's own boot mappings (x86_64: vmemmap, ESPfix, cpu_entry_area, device fixmaps)
    k.shared_tables = set()  # tables several entries point at by design
    k.alias_ranges = []  # virtual ranges that repeat mappings made elsewhere (their clones)
    k.image_page = image_page  # (phys, virt) of the next free page of an image section
    arch.boot_mappings(k)
