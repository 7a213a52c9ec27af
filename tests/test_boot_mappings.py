"""The boot mappings a real x86_64 kernel has besides the direct map and the image, as
mmemu_x86_64.boot_areas makes them (each rule's source is named on the test that pins it):
the struct page array in the vmemmap, the ESPfix ministacks, the fixmap slots of the PC's
local APIC and IO-APIC, and the vsyscall page."""

from __future__ import annotations

import time

import pytest
from mmemu_x86.pgtable_types import _PAGE_NX, _PAGE_RW, _PAGE_USER
from mmemu_x86_64.boot_areas import VMEMMAP_OWNER

from mmemu.cpu import Cpu
from mmemu.module.exports import struct_page
from mmemu.render.ptdump import ptdump
from mmemu.render.vtop import vtop

GiB, MiB = 1 << 30, 1 << 20


def test_vmemmap_maps_the_struct_pages_of_the_present_sections(boot):
    """arch/x86/include/asm/sparsemem.h SECTION_SIZE_BITS 27; mm/sparse.c sparse_init_nid:
    one sparse buffer of map_count * section_map_size() (2 MiB a section), top-down above
    __pa(MAX_DMA_ADDRESS); arch/x86/mm/init_64.c vmemmap_set_pmd: PAGE_KERNEL_LARGE pmds.
    A 4 GiB PC has RAM in [0, 3G) and [4G, 5G) (mmemu_x86.e820): sections 0-23 and 32-39."""
    k = boot(arch="x86_64", kernel="6.6", ram="4G")
    s = k.layout.symbols
    base = k.memblock_allocs[VMEMMAP_OWNER]
    assert base % (2 * MiB) == 0
    info = k.frames.page(base >> 12)
    assert info.state == "reserved" and info.owner == VMEMMAP_OWNER
    assert k.frames.page((base + 64 * MiB - 4096) >> 12).owner == VMEMMAP_OWNER  # 32 sections x 2 MiB
    assert base + 64 * MiB == 5 * GiB  # top-down: the end of RAM
    for pfn in (0, 0x1000, 0xBFFFF, 0x100000, 0x13FFFF):
        va = struct_page(k, pfn)
        assert va == s["VMEMMAP_START"] + pfn * 64
        w = k.walk(va)
        assert w.mapped and w.page_size == 2 * MiB and w.writable and w.nx
        assert w.leaf.raw & (1 << 7)  # PSE
        assert k.pgtable.writer_of(w.leaf.entry_addr) == "vmemmap_populate"
        sec = pfn >> 15
        assert w.phys == base + (sec if sec < 24 else sec - 8) * 2 * MiB + (pfn & 0x7FFF) * 64
    # the hole's sections [3G, 4G) have no struct pages
    assert not k.walk(struct_page(k, 0xC0000)).mapped
    assert not k.walk(struct_page(k, 0x140000)).mapped
    # crash's vtop walks a struct page address, and the CPU reads it where the walk says
    assert "(2MB)" in vtop(k, struct_page(k, 0x100))
    probe = Cpu(k).probe(struct_page(k, 0x100000))
    assert not probe.faulted and probe.phys == k.walk(struct_page(k, 0x100000)).phys
    k.check_invariants()
    out = ptdump(k)
    # PAGE_KERNEL_LARGE: not global under PTI (on by default here, 4.17+ __default_kernel_pte_mask)
    assert "0xffffea0000000000-0xffffea0003000000          48M     RW         PSE         NX pmd" in out


def test_vmemmap_without_pse_and_before_sparsemem_vmemmap(boot):
    """init_64.c vmemmap_populate: without X86_FEATURE_PSE (nopse) vmemmap_populate_basepages,
    4 KiB ptes over the same buffer; CONFIG_SPARSEMEM_VMEMMAP is 2.6.24+ (mem_map before)."""
    k = boot(arch="x86_64", kernel="4.14", ram="1G", cmdline="nopse")
    w = k.walk(struct_page(k, 0x20000))
    assert w.mapped and w.page_size == 4096
    k.check_invariants()
    old = boot(arch="x86_64", kernel="2.6.22", ram="1G")
    assert old.memblock_allocs == {}


def test_a_64g_machine_boots_quickly_with_its_memmap(boot):
    """64 GiB: 512 sections, 1 GiB of struct pages, 512 pmds."""
    t = time.perf_counter()
    k = boot(arch="x86_64", kernel="6.6", ram="64G")
    assert time.perf_counter() - t < 2.0
    base = k.memblock_allocs[VMEMMAP_OWNER]
    assert base + GiB == k.layout.symbols["max_pfn"] << 12
    last = (k.layout.symbols["max_pfn"] - 1)
    assert k.walk(struct_page(k, last)).phys == base + GiB - 64
    k.check_invariants()


def test_espfix_ministacks(boot):
    """arch/x86/kernel/espfix_64.c (3.16+): espfix_pud_page in the bss, ESPFIX_PUD_CLONES (4)
    pud entries and ESPFIX_PMD_CLONES (512) pmd entries with PGTABLE_PROT ((_KERNPG_TABLE &
    ~_PAGE_RW) | _PAGE_NX), the stack page in ESPFIX_PTE_CLONES (32) ptes PTE_STRIDE (16)
    apart with __PAGE_KERNEL_RO: 65,536 views of one page, 64 KiB apart; a page serves
    ESPFIX_STACKS_PER_PAGE (64) CPUs."""
    k = boot(arch="x86_64", kernel="6.6", ram="1G", cpus=65)
    base = k.layout.symbols["ESPFIX_BASE_ADDR"]
    w0 = k.walk(base)
    assert w0.mapped and not w0.writable and w0.nx and w0.page_size == 4096
    assert k.frames.page(w0.phys >> 12).owner == "espfix ministacks"
    pud, pmd = w0.steps[1], w0.steps[2]
    assert k.pgtable.writer_of(pud.entry_addr) == "init_espfix_ap"
    for step in (pud, pmd):
        assert step.raw & _PAGE_NX and not step.raw & _PAGE_RW
    for n in (1, 2, 1000, 65535):
        assert k.walk(base + n * 65536).phys == w0.phys
    assert not k.walk(base + 65536 * 65536).mapped  # past the 4 pud clones
    # cpu 64: the next page's ministacks, at pte index 1 of the same pte page
    w1 = k.walk(base + 4096)
    assert w1.mapped and w1.phys != w0.phys and w1.steps[-2].raw == w0.steps[-2].raw
    assert not k.walk(base + 2 * 4096).mapped
    k.check_invariants()
    out = ptdump(k)
    esp = out[out.index("---[ ESPfix Area ]---"):].splitlines()
    assert esp[1] == "0xffffff0000000000-0xffffff0000002000           8K     ro                 GLB NX pte"
    assert esp[17].startswith("... ") and esp[17].endswith(" entries skipped ... ")
    assert "ESPFIX_BASE_ADDR" not in boot(arch="x86_64", kernel="3.15", ram="1G").layout.symbols


def test_espfix_on_5_level_paging(boot):
    """init_espfix_bsp: p4d_alloc under the pgd entry that already holds the kernel's top p4d."""
    k = boot(arch="x86_64", kernel="6.6", ram="1G", options={"levels": "5"})
    base = k.layout.symbols["ESPFIX_BASE_ADDR"]
    assert k.walk(base).mapped and k.walk(base + 65536).phys == k.walk(base).phys
    assert k.walk(k.layout.symbols["_text"]).mapped  # the image's p4d kept
    k.check_invariants()


@pytest.mark.parametrize("kernel", ["2.6.32", "4.19", "6.6"])
def test_apic_and_io_apic_fixmap_slots(boot, kernel):
    """arch/x86/kernel/apic/apic.c register_lapic_address / init_apic_mappings and
    io_apic.c io_apic_init_mappings: set_fixmap_nocache(FIX_APIC_BASE, 0xfee00000) and
    (FIX_IO_APIC_BASE_0, 0xfec00000), cache mode UC (PCD|PWT): the two adjacent pages a real
    dump shows as 'RW PWT PCD GLB NX pte'."""
    k = boot(arch="x86_64", kernel=kernel, ram="1G")
    apic, ioapic = k.walk(k.fix_to_virt("FIX_APIC_BASE")), k.walk(k.fix_to_virt("FIX_IO_APIC_BASE_0"))
    assert apic.phys == 0xFEE00000 and ioapic.phys == 0xFEC00000
    assert k.pgtable.writer_of(apic.leaf.entry_addr) == "init_apic_mappings"
    assert apic.leaf.raw & 0x18 == 0x18 and apic.writable and apic.nx
    lo = k.fix_to_virt("FIX_IO_APIC_BASE_0")
    line = next(x for x in ptdump(k).splitlines() if x.startswith(f"0x{lo:016x}-0x{lo + 8192:016x} "))
    # global before PTI (2.6.32) and without it; PTI (4.15+, on by default) clears the bit
    pti = k.user_pgd(k.pgd) != k.pgd
    assert line.split()[1:] == ["8K", "RW", "PWT", "PCD"] + ([] if pti else ["GLB"]) + ["NX", "pte"]
    assert (kernel != "2.6.32") == pti
    k.check_invariants()


def test_vsyscall_page_emulate_until_5_2_xonly_after(boot):
    """arch/x86/entry/vsyscall/vsyscall_64.c map_vsyscall: EMULATE (the default until 5.3)
    maps VSYSCALL_PAGE with PAGE_KERNEL_VVAR (user, read-only, NX) and sets _PAGE_USER up
    the hierarchy (set_vsyscall_pgtable_user_bits, 4.15+); XONLY (5.3+) maps nothing."""
    k = boot(arch="x86_64", kernel="4.19", ram="1G")
    w = k.walk(0xFFFFFFFFFF600000)
    assert w.mapped and w.user and not w.writable and w.nx
    assert all(step.raw & _PAGE_USER for step in w.steps)
    text = next(sec for sec in k.layout.image if sec.name == "text")
    assert text.phys <= w.phys < text.phys + text.size
    # PAGE_KERNEL_VVAR is not global under PTI (on by default); the user copy has the page too
    assert "0xffffffffff600000-0xffffffffff601000           4K USR ro                     NX pte" in ptdump(k)
    assert k.walk(0xFFFFFFFFFF600000, k.user_pgd(k.pgd)).phys == w.phys
    k.check_invariants()
    assert not boot(arch="x86_64", kernel="6.6", ram="1G").walk(0xFFFFFFFFFF600000).mapped


def test_vsyscall_page_of_the_8_mib_area(boot):
    """Before 3.16 the page is VSYSCALL_FIRST_PAGE of the 8 MiB vsyscall area: 2.6's native
    vsyscalls (arch/x86_64/kernel/vsyscall.c map_vsyscall: PAGE_KERNEL_VSYSCALL, user and
    executable); 3.x emulates them (vsyscall_64.c: PAGE_KERNEL_VVAR) and maps the vvar page,
    VVAR_PAGE, just below, the same way."""
    old = boot(arch="x86_64", kernel="2.6.32", ram="1G")
    w = old.walk(0xFFFFFFFFFF600000)
    assert w.mapped and w.user and not w.writable and not w.nx
    old.check_invariants()
    k = boot(arch="x86_64", kernel="3.10", ram="1G")
    vsys, vvar = k.walk(0xFFFFFFFFFF600000), k.walk(k.fix_to_virt("VVAR_PAGE"))
    assert k.fix_to_virt("VVAR_PAGE") == 0xFFFFFFFFFF5FF000
    for w in (vsys, vvar):
        assert w.mapped and w.user and not w.writable and w.nx
    data = next(sec for sec in k.layout.image if sec.name == "data")
    assert data.phys <= vvar.phys < data.phys + data.size
    k.check_invariants()


@pytest.mark.parametrize("arch", ["i386", "i386_pae"])
def test_i386_cpu_entry_area_and_device_fixmaps(boot, arch):
    """cpu_entry_area.c on 32-bit: setup_cpu_entry_area_ptes() populates the area's tables;
    the GDT and the TSS are writable ("our double fault handler uses a task gate"); 5.5+
    ('x86/doublefault/32: Move #DF stack and TSS to cpu_entry_area'): gdt, guard, entry stack,
    guard, #DF stack, the 5-page TSS, the debug store (mapped: the CPU is Intel) and its
    buffers (PAGE_NONE): 43 pages, CPU_ENTRY_AREA_PAGES of pgtable_32_areas.h. The APIC and
    IO-APIC slots as on 64-bit."""
    k = boot(arch=arch, kernel="6.6", ram="1G", cpus=2)
    base = k.layout.symbols["CPU_ENTRY_AREA_BASE"]
    assert not k.walk(base).writable and k.walk(base).mapped
    for cpu in (0, 1):
        area = base + 4096 + cpu * 43 * 4096
        assert [k.walk(area + i * 4096).mapped for i in range(12)] == [True, False, True, False] + [True] * 7 + [False]
        assert all(k.walk(area + i * 4096).writable for i in (0, 2, 4, 5, 9, 10))
        unit = k.pcpu.base_phys + k.pcpu.unit_offset(cpu)
        assert unit <= k.walk(area).phys < unit + k.pcpu.info.unit_size
    assert k.walk(k.fix_to_virt("FIX_APIC_BASE")).phys == 0xFEE00000
    assert k.walk(k.fix_to_virt("FIX_IO_APIC_BASE_0")).phys == 0xFEC00000
    k.check_invariants()


def test_i386_up_kernel_maps_its_per_cpu_data_from_the_image(boot):
    """A UP kernel's per-cpu variables are plain .data (percpu-defs.h): 4.19's area is gdt,
    entry stack, the 3-page TSS and the debug store (38 pages with the debug buffers)."""
    k = boot(arch="i386_pae", kernel="4.19", ram="1G")
    area = k.layout.symbols["CPU_ENTRY_AREA_BASE"] + 4096
    data = next(sec for sec in k.layout.image if sec.name == "data")
    for i in range(6):
        w = k.walk(area + i * 4096)
        assert w.writable and data.phys <= w.phys < data.phys + data.size
    assert not k.walk(area + 6 * 4096).mapped
    k.check_invariants()


@pytest.mark.parametrize("arch, cpus", [("i386", 1), ("i386_pae", 2)])
def test_i386_struct_pages_are_memblock_memory_in_lowmem(boot, arch, cpus):
    """i386 is FLATMEM: mm/page_alloc.c alloc_node_mem_map takes max_pfn struct pages of 32
    bytes from memblock at the top of lowmem (the layout's mem_map), in the direct map:
    nothing to map, but the frames are reserved, and setup_per_cpu_areas (after paging_init)
    puts the per-cpu chunk below them."""
    k = boot(arch=arch, kernel="6.6", ram="1G", cpus=cpus)
    s = k.layout.symbols
    assert "VMEMMAP_START" not in s
    base = k.memblock_allocs["struct pages (mem_map)"]
    assert base == s["mem_map"] - k.PAGE_OFFSET
    assert k.high_memory - s["mem_map"] >= s["max_pfn"] * 32
    last = struct_page(k, s["max_pfn"] - 1)
    assert s["mem_map"] <= last < k.high_memory and k.walk(last).mapped
    info = k.frames.page(k.walk(last).phys >> 12)
    assert info.state == "reserved" and info.owner == "struct pages (mem_map)"
    if k.pcpu is not None:
        assert k.pcpu.base_phys + k.pcpu.nr_cpus * k.pcpu.info.unit_size <= base
    k.check_invariants()


def test_cpu_entry_area_of_each_cpu(boot):
    """arch/x86/mm/cpu_entry_area.c setup_cpu_entry_area (5.10.13 read; 6.x the same without
    KASLR): the RO IDT page at CPU_ENTRY_AREA_BASE, then per CPU the GDT (PAGE_KERNEL_RO), the
    entry stack (PAGE_KERNEL), the 5-page TSS (PAGE_KERNEL_RO, processor.h tss_struct with
    struct x86_io_bitmap), the exception stacks DF, NMI, DB, MCE (PAGE_KERNEL) each after a
    guard page, the #VC stacks left unmapped, the Intel debug store (PAGE_KERNEL) and its 32
    buffer pages set to PAGE_NONE (frame 0, L1TF-inverted): 53 pages a CPU. Each page is the
    CPU's own per-cpu copy."""
    k = boot(arch="x86_64", kernel="6.6", ram="2G", cpus=2)
    base = k.layout.symbols["CPU_ENTRY_AREA_BASE"]
    idt = k.walk(base)
    assert idt.mapped and not idt.writable and k.pgtable.writer_of(idt.leaf.entry_addr) == "trap_init"
    bss = next(sec for sec in k.layout.image if sec.name == "bss")
    assert bss.phys <= idt.phys < bss.phys + bss.size
    per_cpu = 53 * 4096
    out = ptdump(k)
    cea = out[out.index("---[ CPU entry Area ]---"):].splitlines()
    assert cea[1:5] == [
        "0xfffffe0000000000-0xfffffe0000002000           8K     ro                 GLB NX pte",
        "0xfffffe0000002000-0xfffffe0000003000           4K     RW                 GLB NX pte",
        "0xfffffe0000003000-0xfffffe0000008000          20K     ro                 GLB NX pte",
        "0xfffffe0000008000-0xfffffe0000009000           4K                               pte"]
    for cpu in (0, 1):
        area = base + 4096 + cpu * per_cpu
        gdt, stack, tss = k.walk(area), k.walk(area + 4096), k.walk(area + 2 * 4096)
        assert not gdt.writable and stack.writable and not tss.writable and tss.nx
        unit = k.pcpu.base_phys + k.pcpu.unit_offset(cpu)
        for w in (gdt, stack, tss):
            assert unit <= w.phys < unit + k.pcpu.info.unit_size
        assert [k.walk(area + (7 + i) * 4096).mapped for i in range(10)] == [False, True] * 4 + [False, False]
        ds = k.walk(area + 20 * 4096)  # the debug store: percpu_setup_debug_store on an Intel CPU
        assert ds.mapped and ds.writable and ds.nx and unit <= ds.phys < unit + k.pcpu.info.unit_size
        assert ds.phys not in (gdt.phys, stack.phys, tss.phys)
        for i in (21, 52):  # cpu_debug_buffers: not present, frame 0 inverted (pfn_pte's L1TF rule)
            w = k.walk(area + i * 4096)
            assert not w.mapped and w.last_level == 3
            assert w.steps[-1].raw == 0x000F_FFFF_FFFF_F000 | k.pgprot["PAGE_NONE"] == 0xF_FFFF_FFFF_F120
    assert k.walk(base + 4096 + per_cpu + 4096).phys - k.walk(base + 4096 + 4096).phys == k.pcpu.info.unit_size
    assert not k.walk(base + 4096 + 2 * per_cpu).mapped
    k.check_invariants()


@pytest.mark.parametrize("kernel, pages, tss", [("4.15", 44, 3), ("4.19", 43, 3), ("5.4", 51, 3), ("5.9", 49, 5)])
def test_cpu_entry_area_eras(boot, kernel, pages, tss):
    """4.15 (cpu_entry_area.c of 4.15, read): the entry trampoline page (PAGE_KERNEL_RX) and
    the flat exception stacks (20 KiB); 5.2: guard pages and the DB1/DB2 stacks; 5.5: the
    5-page TSS; 5.9: DB1/DB2 gone. The area of CPU 1 starts CPU_ENTRY_AREA_SIZE after CPU 0's."""
    k = boot(arch="x86_64", kernel=kernel, ram="1G", cpus=2)
    area0 = k.layout.symbols["CPU_ENTRY_AREA_BASE"] + 4096
    assert k.walk(area0 + pages * 4096).mapped and not k.walk(area0 + pages * 4096 - 4096).mapped
    if kernel == "4.15":
        tramp = k.walk(area0 + (2 + tss) * 4096)
        assert tramp.mapped and not tramp.nx and not tramp.writable
    k.check_invariants()
    assert "CPU_ENTRY_AREA_BASE" not in boot(arch="x86_64", kernel="4.14", ram="1G").layout.symbols


def test_set_entries_writes_a_run_of_one_table_or_refuses(boot):
    """PageTables.set_entries, the engine's write of ESPfix's clones: one operation with the
    writer recorded per entry; a run past the table's end or a table the engine does not know
    is refused, nothing written."""
    from mmemu.errors import MappingError

    k = boot(arch="x86_64", kernel="6.6", ram="1G")
    pt = k.pgtable
    w = k.walk(k.layout.symbols["ESPFIX_BASE_ADDR"])
    pmd = w.steps[2]
    assert pt.writer_of(pmd.table + 511 * 8) == "init_espfix_ap"
    before = pt.entries(pmd.table, pmd.li)
    with pytest.raises(MappingError, match="outside a pmd table"):
        pt.set_entries(pmd.table, pmd.li, 510, [0, 0, 0], writer="test")
    with pytest.raises(MappingError, match="not a known pmd table"):
        pt.set_entries(w.phys, pmd.li, 0, [0], writer="test")
    assert pt.entries(pmd.table, pmd.li) == before
    op = pt.set_entries(pmd.table, pmd.li, 510, [0, 0], writer="test")
    assert [i for i, _old, _new in op.changes[0].entries()] == [510, 511]
    assert pt.writer_of(pmd.table + 511 * 8) == "test" and not k.walk(w.va + (511 << 21)).mapped
