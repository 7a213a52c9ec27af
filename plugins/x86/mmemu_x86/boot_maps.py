"""Boot mappings every x86 kernel of the era makes, 32- and 64-bit alike: the fixmap slots
of the PC's interrupt controllers and the cpu_entry_area (4.15+). Each function is what the
named kernel function does, with the numbers of its source; they run at the end of the
core's boot (``Arch.boot_mappings``)."""

from __future__ import annotations

import weakref

from mmemu.units import KernelVersion

from .pti import cea_global

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT

#: arch/x86/include/asm/apicdef.h: APIC_DEFAULT_PHYS_BASE 0xfee00000, IO_APIC_DEFAULT_PHYS_BASE
#: 0xfec00000 (where QEMU's pc machine puts them too: hw/i386/pc.c, hw/intc/ioapic.c)
APIC_DEFAULT_PHYS_BASE = 0xFEE00000
IO_APIC_DEFAULT_PHYS_BASE = 0xFEC00000


#: the owner of the frames of i386's struct page array (FLATMEM)
MEM_MAP_OWNER = "struct pages (mem_map)"


def mem_map_alloc(layout) -> tuple[tuple[int, int, int, str], ...]:
    """i386's FLATMEM struct page array as a memblock allocation (BootPlan.memblock_allocs):
    mm/page_alloc.c alloc_node_mem_map, ``max_pfn`` struct pages of 32 bytes, top-down below
    the lowmem limit (the layout's ``mem_map`` symbol: mmemu_x86.layout_32). Made in
    paging_init, before setup_per_cpu_areas: the per-cpu chunk goes below it. Lowmem frames
    only: the array is in the direct map, nothing is mapped for it."""
    s = layout.symbols
    if "mem_map" not in s:
        return ()
    start = s["mem_map"] - s["PAGE_OFFSET"] + layout.phys_offset
    return ((layout.phys_offset + layout.lowmem_bytes - start, PAGE_SIZE, 0, MEM_MAP_OWNER),)


def fix_va(k, name: str) -> int | None:
    """``__fix_to_virt`` of the era's enum entry *name*, None if the enum has no such entry."""
    idx = dict(k.layout.fixmap).get(name)
    return None if idx is None else k.layout.symbols["FIXADDR_TOP"] - (idx << PAGE_SHIFT)


def map_device_fixmaps(k) -> None:
    """The fixmap slots a booted PC has filled: the local APIC (arch/x86/kernel/apic/apic.c
    init_apic_mappings / register_lapic_address: ``set_fixmap_nocache(FIX_APIC_BASE,
    address)``, xAPIC mode: QEMU's qemu64 CPU has no x2APIC) and the IO-APIC
    (arch/x86/kernel/apic/io_apic.c io_apic_init_mappings: ``set_fixmap_nocache(idx,
    ioapic_phys)`` from FIX_IO_APIC_BASE_0, one per IO-APIC: the PC has one).
    set_fixmap_nocache maps with FIXMAP_PAGE_NOCACHE (PAGE_KERNEL_IO_NOCACHE, cache mode UC:
    PCD|PWT with the kernel's PAT table; PAGE_KERNEL_NOCACHE in the 2.6 eras)."""
    prot = k.pgprot["PAGE_KERNEL_NOCACHE"]
    for name, phys, writer in (("FIX_APIC_BASE", APIC_DEFAULT_PHYS_BASE, "init_apic_mappings"),
                               ("FIX_IO_APIC_BASE_0", IO_APIC_DEFAULT_PHYS_BASE, "io_apic_init_mappings")):
        va = fix_va(k, name)
        if va is not None:
            k.pgtable.set_pte(k.pgd, va, k.codec.pfn_pte(phys >> PAGE_SHIFT, prot), writer=writer)


# ---- cpu_entry_area: arch/x86/mm/cpu_entry_area.c, arch/x86/include/asm/cpu_entry_area.h ---

def cea_members(kv: KernelVersion, bits: int) -> list[tuple[str, int, str | None]]:
    """``struct cpu_entry_area`` of the era, as (member, pages, what maps it) in order. What
    maps a member: a pgprot name for the per-cpu pages cea_map_percpu_pages() maps, "RX" for
    the entry trampoline, None for what stays unmapped on this machine (guard pages; #VC
    stacks without SEV-ES), "PAGE_NONE" for ptes set not present (the debug store buffers).
    The Intel debug store is mapped: percpu_setup_debug_store() (arch/x86/mm/cpu_entry_area.c)
    returns early only when ``boot_cpu_data.x86_vendor != X86_VENDOR_INTEL``, and Unicorn's
    x86 CPU reports GenuineIntel (tests/test_pti.py asks its CPUID); it maps
    cpu_debug_store (PAGE_KERNEL) and, "to force the population of PMDs for not yet
    allocated per cpu memory like debug store buffers", sets cpu_debug_buffers' ptes to
    PAGE_NONE with frame 0. 64-bit maps the GDT and TSS read-only, 32-bit
    writable ("the GDT cannot be read-only because our double fault handler uses a task gate";
    "the CPU writes to [the TSS] on task switches").

    - 4.15 (read): gdt, entry_stack_page, tss, (64-bit) entry_trampoline (PAGE_KERNEL_RX,
      until 'x86/entry/64: Remove the SYSCALL64 entry trampoline', taken as 4.19, not
      verified), (64-bit) exception_stacks[(N_EXCEPTION_STACKS - 1) * EXCEPTION_STKSZ +
      DEBUG_STKSZ] (3 x 4 KiB + 8 KiB, page_64_types.h EXCEPTION_STACK_ORDER 0,
      DEBUG_STACK_ORDER 1), cpu_debug_store (one page), cpu_debug_buffers (BTS_BUFFER_SIZE +
      PEBS_BUFFER_SIZE, PAGE_SIZE << 4 each, asm/intel_ds.h).
    - 64-bit 5.2: struct cea_exception_stacks ESTACKS_MEMBERS(PAGE_SIZE, EXCEPTION_STKSZ): a
      guard page before DF, NMI, DB2 (a hole, "not mapped"), DB1, DB, MCE and one on top; 5.9
      drops DB2/DB1 ('x86/entry: Remove DBn stacks'); 5.10 adds VC and VC2 (read from 5.10.13).
    - 32-bit 5.5 ('x86/doublefault/32: Move #DF stack and TSS to cpu_entry_area'): a guard page
      before the entry stack, then a guard page and the #DF stack (PAGE_KERNEL) before the TSS.
    - tss_struct: x86_hw_tss + io_bitmap[IO_BITMAP_LONGS + 1], page aligned: 3 pages; from 5.5
      (the io bitmap rework) x86_hw_tss + struct x86_io_bitmap (bitmap and mapall): 5 pages
      (processor.h of 5.10.13, read). The 32-bit sizes agree with CPU_ENTRY_AREA_PAGES
      (mmemu_x86.layout_32: 38 pages, 43 from 5.5)."""
    new_tss = kv >= "5.5"
    ro = "PAGE_KERNEL_RO" if bits == 64 else "PAGE_KERNEL"
    members: list[tuple[str, int, str | None]] = [("gdt", 1, ro)]
    if bits == 32 and new_tss:
        members.append(("guard_entry_stack", 1, None))
    members.append(("entry_stack_page", 1, "PAGE_KERNEL"))
    if bits == 32 and new_tss:
        members += [("guard_doublefault_stack", 1, None), ("doublefault_stack", 1, "PAGE_KERNEL")]
    members.append(("tss", 5 if new_tss else 3, ro))
    if bits == 64:
        if kv < "4.19":
            members.append(("entry_trampoline", 1, "RX"))
        if kv < "5.2":
            members.append(("exception_stacks", 5, "PAGE_KERNEL"))
        else:
            stacks = ["DF", "NMI", "DB2", "DB1", "DB", "MCE"] if kv < "5.9" else ["DF", "NMI", "DB", "MCE"]
            if kv >= "5.10":
                stacks += ["VC", "VC2"]
            for name in stacks:
                members.append((f"{name}_stack_guard", 1, None))
                members.append((f"{name}_stack", 1, None if name in ("DB2", "VC", "VC2") else "PAGE_KERNEL"))
            members.append(("IST_top_guard", 1, None))
    members += [("cpu_debug_store", 1, "PAGE_KERNEL"), ("cpu_debug_buffers", 32, "PAGE_NONE")]
    return members


#: kernel -> what _percpu_pages found for it: a UP kernel's per-cpu pages are image pages
#: taken once (the CPU adapter and pti_init look them up after the boot)
_PERCPU_PAGES: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _percpu_pages(k, members, bits: int) -> list[dict[str, list[int]]]:
    if k not in _PERCPU_PAGES:
        _PERCPU_PAGES[k] = _find_percpu_pages(k, members, bits)
    return _PERCPU_PAGES[k]


def _find_percpu_pages(k, members, bits: int) -> list[dict[str, list[int]]]:
    """The physical pages of each CPU's per-cpu variables the area maps, by member: with SMP,
    pages of the CPU's unit of the first chunk at their offset from ``__per_cpu_start``; the
    page-aligned variables (DEFINE_PER_CPU_PAGE_ALIGNED, .data..percpu..page_aligned) follow
    .data..percpu..first (include/asm-generic/vmlinux.lds.h PERCPU_INPUT), which on 64-bit
    holds fixed_percpu_data (48 bytes) from 5.2 and irq_stack_union (IRQ_STACK_SIZE, 16 KiB)
    before, and nothing on 32-bit; taken in the order gdt_page, cpu_tss_rw,
    entry_stack_storage, doublefault_stack / exception_stacks (the link order's,
    approximately: a real vmlinux's System.map has the exact offsets); the exception stacks'
    storage has no guard pages (ESTACKS_MEMBERS(0, 0)). A UP kernel (i386 with one CPU) has
    no per-cpu areas: its per-cpu variables are plain .data (percpu-defs.h
    PER_CPU_BASE_SECTION), here pages of the image's data. Returns {member: [pfn per CPU
    page...]} per CPU, as a list indexed by CPU."""
    mapped = [(name, pages) for name, pages, prot in members if prot not in (None, "RX", "PAGE_NONE")]
    order = sorted(mapped, key=lambda m: ["gdt", "tss"].index(m[0]) if m[0] in ("gdt", "tss") else 2)
    pc = k.pcpu
    out = []
    for cpu in range(pc.nr_cpus if pc is not None else 1):
        pfns: dict[str, list[int]] = {}
        off = (PAGE_SIZE if k.spec.kernel >= "5.2" else 4 * PAGE_SIZE) if bits == 64 else 0
        for name, pages in order:
            if pc is not None:
                base = pc.base_phys + pc.unit_offset(cpu) + off
                pfns[name] = [(base >> PAGE_SHIFT) + i for i in range(pages)]
            else:
                pfns[name] = [k.image_page("data")[0] >> PAGE_SHIFT for _ in range(pages)]
            off += pages * PAGE_SIZE
        out.append(pfns)
    return out


def cea_va(k, cpu: int, member: str) -> int:
    """``&get_cpu_entry_area(cpu)->member``: CPU_ENTRY_AREA_PER_CPU (the page after the
    read-only IDT) + cpu * CPU_ENTRY_AREA_SIZE + the member's offset."""
    members = cea_members(k.spec.kernel, 64 if k.paging.bits64 else 32)
    size = sum(n for _m, n, _p in members)
    off = 0
    for name, n, _prot in members:
        if name == member:
            return k.layout.symbols["CPU_ENTRY_AREA_BASE"] + PAGE_SIZE + (cpu * size + off) * PAGE_SIZE
        off += n
    raise KeyError(member)


def percpu_pfn(k, cpu: int, member: str) -> int:
    """The first frame of *cpu*'s per-cpu variable behind the area's *member* (``tss``:
    cpu_tss_rw, ``gdt``: gdt_page...)."""
    bits = 64 if k.paging.bits64 else 32
    return _percpu_pages(k, cea_members(k.spec.kernel, bits), bits)[cpu][member][0]


def map_cpu_entry_area(k) -> None:
    """setup_cpu_entry_areas() (4.15+, from trap_init): on 32-bit first
    setup_cpu_entry_area_ptes() (populate_extra_pte for every pmd of the area); for each
    possible CPU, setup_cpu_entry_area() maps its GDT, entry stack, TSS and exception (64-bit)
    or #DF (32-bit, 5.5+) stacks at get_cpu_entry_area(cpu) = CPU_ENTRY_AREA_PER_CPU +
    cea_offset(cpu) * CPU_ENTRY_AREA_SIZE (cea_offset(cpu) = cpu without KASLR, 6.2+
    init_cea_offsets), through cea_set_pte() -> set_pte_vaddr(), which allocates the tables
    above; the pages are the CPU's per-cpu copies (per_cpu_ptr_to_phys). Then trap_init
    maps the IDT (idt_table, page-aligned bss) read-only at CPU_ENTRY_AREA_RO_IDT, the area's
    first page."""
    s = k.layout.symbols
    if "CPU_ENTRY_AREA_BASE" not in s:
        return
    bits = 64 if k.paging.bits64 else 32
    base = s["CPU_ENTRY_AREA_BASE"]
    pt, codec = k.pgtable, k.codec
    members = cea_members(k.spec.kernel, bits)
    size = sum(n for _m, n, _p in members)  # CPU_ENTRY_AREA_SIZE, in pages
    pages = _percpu_pages(k, members, bits)
    if bits == 32:
        end = base + PAGE_SIZE + len(pages) * size * PAGE_SIZE
        pt.populate(k.pgd, base, end - base, writer="setup_cpu_entry_area_ptes")
    text = next(sec for sec in k.layout.image if sec.name == "text")
    glb = cea_global(k)  # cea_set_pte
    for cpu, pfns in enumerate(pages):
        va = base + PAGE_SIZE + cpu * size * PAGE_SIZE  # CPU_ENTRY_AREA_PER_CPU + cpu * CPU_ENTRY_AREA_SIZE
        for name, n, prot in members:
            if prot == "RX":  # __pa_symbol(_entry_trampoline): a page of the kernel's text
                pte = codec.pfn_pte((text.phys + text.size - 2 * PAGE_SIZE) >> PAGE_SHIFT,
                                    k.pgprot["PAGE_KERNEL_RX"] | glb)
                pt.set_pte(k.pgd, va, pte, writer="setup_cpu_entry_areas")
            elif prot == "PAGE_NONE":  # cea_set_pte(cea, 0, PAGE_NONE): pfn_pte, L1TF's inversion included
                for i in range(n):
                    pt.set_pte(k.pgd, va + i * PAGE_SIZE, k.mk_pte(0, k.pgprot[prot]),
                               writer="percpu_setup_debug_store")
            elif prot is not None:
                for i, pfn in enumerate(pfns[name]):
                    pt.set_pte(k.pgd, va + i * PAGE_SIZE, codec.pfn_pte(pfn, k.pgprot[prot] | glb),
                               writer="setup_cpu_entry_areas")
            va += n * PAGE_SIZE
    idt, _ = k.image_page("bss")  # gate_desc idt_table[IDT_ENTRIES] __page_aligned_bss
    pt.set_pte(k.pgd, base, codec.pfn_pte(idt >> PAGE_SHIFT, k.pgprot["PAGE_KERNEL_RO"] | glb), writer="trap_init")
