"""The x86_64 kernel memory layout against the kernel's own documentation of each era.

Expected addresses are literals copied from the tables of Documentation/x86_64/mm.txt
(2.6.11 .. 2.6.28), Documentation/x86/x86_64/mm.txt (2.6.29 .. 5.1) and
Documentation/x86/x86_64/mm.rst / Documentation/arch/x86/x86_64/mm.rst (5.2+), or from the
headers where the table is silent or stale (the header and release are named next to them).
Table rows give inclusive ends; ``span()`` returns (start, last byte) to compare them as written.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mmemu_x86_64.fixmap import ERAS, compute_fixmap, fixmap_era
from mmemu_x86_64.layout import compute_layout_64

from mmemu.errors import ConfigError
from mmemu.layout import Layout, MachineSpec

MiB, GiB, TiB, PiB = 1 << 20, 1 << 30, 1 << 40, 1 << 50


def lay(kernel: str = "6.6", ram: "str | int" = "8G", levels: int = 4, cpus: int = 1, cmdline: str = "",
        options: dict | None = None, **kw) -> Layout:
    return compute_layout_64(MachineSpec.make("x86_64", kernel, ram, cpus=cpus, cmdline=cmdline, options=options),
                             levels, **kw)


def span(layout: Layout, kind: str, index: int = 0) -> tuple[int, int]:
    """(start, last byte) of the *index*-th region of *kind*."""
    found = [r for r in layout.regions if r.kind == kind]
    r = found[index]
    return r.start, r.end - 1


def hole_at(layout: Layout, start: int) -> tuple[int, int]:
    r = layout.region_of(start)
    assert r is not None and r.kind == "hole" and r.start == start, r
    return r.start, r.end - 1


# ---- 2.6.12: Documentation/x86_64/mm.txt (2.6.11/2.6.12) ---------------------------------

def test_2_6_12_matches_mm_txt():
    L = lay("2.6.12")
    assert L.paging == "4-level"
    # 0000000000000000 - 00007fffffffffff (=47bits) user space, different per mm
    assert L.regions[0].start == 0x0000000000000000
    assert span(L, "non-canonical")[0] == 0x0000800000000000
    # ffff800000000000 - ffff80ffffffffff (=40bits) guard hole
    assert span(L, "guard", 1) == (0xFFFF800000000000, 0xFFFF80FFFFFFFFFF)
    # ffff810000000000 - ffffc0ffffffffff (=46bits) direct mapping of phys. memory
    assert span(L, "direct") == (0xFFFF810000000000, 0xFFFFC0FFFFFFFFFF)
    # ffffc10000000000 - ffffc1ffffffffff (=40bits) hole
    assert hole_at(L, 0xFFFFC10000000000) == (0xFFFFC10000000000, 0xFFFFC1FFFFFFFFFF)
    # ffffc20000000000 - ffffe1ffffffffff (=45bits) vmalloc/ioremap space
    assert span(L, "vmalloc") == (0xFFFFC20000000000, 0xFFFFE1FFFFFFFFFF)
    # ffffffff80000000 - ffffffff82800000 (=40MB) kernel text mapping, from phys 0
    # (this row writes the end exclusive)
    assert L.region_of(0xFFFFFFFF80000000).kind == "kernel-text"
    assert L.region_of(0xFFFFFFFF80000000).end == 0xFFFFFFFF82800000
    # ffffffff88000000 - fffffffffff00000 (=1919MB) module mapping space
    assert L["MODULES_VADDR"] == 0xFFFFFFFF88000000
    assert L["MODULES_END"] == 0xFFFFFFFFFFF00000
    # include/asm-x86_64/page.h (2.6.11): __PAGE_OFFSET 0xffff810000000000, __START_KERNEL 0xffffffff80100000,
    # KERNEL_TEXT_SIZE (40UL*1024*1024)
    assert L["PAGE_OFFSET"] == 0xFFFF810000000000
    assert L["_text"] == L["__START_KERNEL"] == 0xFFFFFFFF80100000
    assert L["KERNEL_TEXT_SIZE"] == 40 * MiB
    # include/asm-x86_64/pgtable.h (2.6.12): #define MAXMEM 0x3fffffffffffUL, no vmemmap yet
    assert L["MAXMEM"] == 0x3FFFFFFFFFFF
    assert "VMEMMAP_START" not in L.symbols
    # processor.h (2.6.12-rc4): TASK_SIZE (0x800000000000UL - 4096), "47bits minus one guard page"
    assert L["TASK_SIZE"] == 0x800000000000 - 4096
    # no ZONE_DMA32 before 2.6.15
    assert [z.name for z in L.zones] == ["DMA", "Normal"]


def test_2_6_12_fixmap_holds_the_vsyscall_pages():
    L = lay("2.6.12")
    fix = dict(L.fixmap)
    # include/asm-x86_64/fixmap.h (2.6.12): FIXADDR_TOP (VSYSCALL_END-PAGE_SIZE),
    # VSYSCALL_FIRST_PAGE = VSYSCALL_LAST_PAGE + ((VSYSCALL_END-VSYSCALL_START) >> PAGE_SHIFT) - 1
    assert L["FIXADDR_TOP"] == 0xFFFFFFFFFFE00000 - 0x1000
    assert fix["VSYSCALL_LAST_PAGE"] == 0 and fix["VSYSCALL_FIRST_PAGE"] == 2047
    assert L["FIXADDR_TOP"] - (fix["VSYSCALL_FIRST_PAGE"] << 12) == 0xFFFFFFFFFF600000  # VSYSCALL_START
    assert "__end_of_permanent_fixed_addresses" not in fix  # the 2.6.12 enum has none
    # FIXADDR_SIZE (__end_of_fixed_addresses << PAGE_SHIFT)
    assert L["FIXADDR_START"] == L["FIXADDR_TOP"] - (fix["__end_of_fixed_addresses"] << 12)
    # the vsyscall area of mm.txt (3.x): ffffffffff600000 - ffffffffffdfffff (=8 MB) vsyscalls
    assert span(L, "vsyscall") == (0xFFFFFFFFFF600000, 0xFFFFFFFFFFDFFFFF)
    # the module area's MODULES_END ran over the fixmap in 2.6.12: the region stops at it
    assert L.region("module mapping space").end == L["FIXADDR_START"]


# ---- 2.6.24 .. 2.6.31 ------------------------------------------------------------------

def test_2_6_24_vmemmap():
    L = lay("2.6.24")
    # Documentation/x86_64/mm.txt (2.6.24): ffffe20000000000 - ffffe2ffffffffff (=40 bits) virtual memory map (1TB)
    assert span(L, "vmemmap") == (0xFFFFE20000000000, 0xFFFFE2FFFFFFFFFF)
    assert L["MODULES_VADDR"] == 0xFFFFFFFF88000000
    assert "VMEMMAP_START" not in lay("2.6.23").symbols


def test_2_6_27_hypervisor_hole():
    L = lay("2.6.30")
    # Documentation/x86/x86_64/mm.txt before "x86: 46 bit PAE support" (2.6.27 .. 2.6.30):
    # ffff880000000000 - ffffc0ffffffffff (=57 TB) direct mapping of all phys. memory
    # ffffc20000000000 - ffffe1ffffffffff (=45 bits) vmalloc/ioremap space
    # ffffe20000000000 - ffffe2ffffffffff (=40 bits) virtual memory map (1TB)
    assert span(L, "direct") == (0xFFFF880000000000, 0xFFFFC0FFFFFFFFFF)
    assert span(L, "vmalloc") == (0xFFFFC20000000000, 0xFFFFE1FFFFFFFFFF)
    assert span(L, "vmemmap") == (0xFFFFE20000000000, 0xFFFFE2FFFFFFFFFF)
    # pgtable_64_types.h (2.6.30): MODULES_VADDR 0xffffffffa0000000, MODULES_END 0xffffffffff000000;
    # sparsemem.h MAX_PHYSMEM_BITS 44
    assert (L["MODULES_VADDR"], L["MODULES_END"]) == (0xFFFFFFFFA0000000, 0xFFFFFFFFFF000000)
    assert L["MAXMEM"] == 1 << 44


def test_2_6_31_64tb_direct_mapping():
    L = lay("2.6.31")
    # mm.txt after "x86: 46 bit PAE support":
    # ffff880000000000 - ffffc7ffffffffff (=64 TB) direct mapping of all phys. memory
    # ffffc80000000000 - ffffc8ffffffffff (=40 bits) hole
    # ffffc90000000000 - ffffe8ffffffffff (=45 bits) vmalloc/ioremap space
    # ffffe90000000000 - ffffe9ffffffffff (=40 bits) hole
    # ffffea0000000000 - ffffeaffffffffff (=40 bits) virtual memory map (1TB)
    assert span(L, "direct") == (0xFFFF880000000000, 0xFFFFC7FFFFFFFFFF)
    assert hole_at(L, 0xFFFFC80000000000) == (0xFFFFC80000000000, 0xFFFFC8FFFFFFFFFF)
    assert span(L, "vmalloc") == (0xFFFFC90000000000, 0xFFFFE8FFFFFFFFFF)
    assert hole_at(L, 0xFFFFE90000000000) == (0xFFFFE90000000000, 0xFFFFE9FFFFFFFFFF)
    assert span(L, "vmemmap") == (0xFFFFEA0000000000, 0xFFFFEAFFFFFFFFFF)
    assert L["MAXMEM"] == 1 << 46


# ---- 3.10, 3.16: Documentation/x86/x86_64/mm.txt (3.x) -------------------------------------

def test_3_10_matches_mm_txt():
    L = lay("3.10")
    assert span(L, "guard", 1)[0] == 0xFFFF800000000000
    # ffff880000000000 - ffffc7ffffffffff (=64 TB) direct mapping of all phys. memory
    assert span(L, "direct") == (0xFFFF880000000000, 0xFFFFC7FFFFFFFFFF)
    # ffffc90000000000 - ffffe8ffffffffff (=45 bits) vmalloc/ioremap space
    assert span(L, "vmalloc") == (0xFFFFC90000000000, 0xFFFFE8FFFFFFFFFF)
    # ffffea0000000000 - ffffeaffffffffff (=40 bits) virtual memory map (1TB)
    assert span(L, "vmemmap") == (0xFFFFEA0000000000, 0xFFFFEAFFFFFFFFFF)
    # ffffffff80000000 - ffffffffa0000000 (=512 MB) kernel text mapping, from phys 0
    assert span(L, "kernel-text") == (0xFFFFFFFF80000000, 0xFFFFFFFF9FFFFFFF)
    # ffffffffa0000000 - ... module mapping space; pgtable_64_types.h: MODULES_END _AC(0xffffffffff000000, UL)
    assert span(L, "modules") == (0xFFFFFFFFA0000000, 0xFFFFFFFFFEFFFFFF)
    # ffffffffff600000 - ffffffffffdfffff (=8 MB) vsyscalls
    assert span(L, "vsyscall") == (0xFFFFFFFFFF600000, 0xFFFFFFFFFFDFFFFF)
    # ffffffffffe00000 - ffffffffffffffff (=2 MB) unused hole
    assert hole_at(L, 0xFFFFFFFFFFE00000) == (0xFFFFFFFFFFE00000, 0xFFFFFFFFFFFFFFFF)
    # no espfix before 3.16, no PTI before 4.15
    assert {r.kind for r in L.regions}.isdisjoint({"espfix", "cpu-entry-area", "ldt"})
    # arch/x86/Kconfig (2.6.31+): PHYSICAL_START 0x1000000
    assert L["_text"] == 0xFFFFFFFF81000000
    # DMA32 zone. 8 GiB on QEMU's pc machine: 3 GiB below the hole, 5 GiB from 4 GiB (hw/i386/pc_piix.c
    # pc_init1(): ram_size >= 0xe0000000 -> lowmem 0xc0000000), so the RAM ends at 9 GiB (pfn 0x240000);
    # zone_sizes_init(): DMA32 = min(MAX_DMA32_PFN, max_low_pfn) spans the hole up to 4 GiB
    assert [(z.name, z.start_pfn, z.end_pfn) for z in L.zones] == [
        ("DMA", 0, 0x1000), ("DMA32", 0x1000, 0x100000), ("Normal", 0x100000, 0x240000)]


def test_3_16_espfix_and_efi():
    L = lay("3.16")
    # ffffff0000000000 - ffffff7fffffffff (=39 bits) %esp fixup stacks
    assert span(L, "espfix") == (0xFFFFFF0000000000, 0xFFFFFF7FFFFFFFFF)
    # "We map EFI runtime services in the aforementioned PGD in the virtual range of 64Gb":
    # 0xffffffef00000000 - 0xffffffff00000000
    assert L.region_of(0xFFFFFFEF00000000).kind == "efi"
    assert L.region_of(0xFFFFFFEF00000000).end == 0xFFFFFFFF00000000
    # the vsyscall area shrinks to one page at VSYSCALL_ADDR (uapi/asm/vsyscall.h: -10UL << 20)
    assert span(L, "vsyscall") == (0xFFFFFFFFFF600000, 0xFFFFFFFFFF600FFF)
    assert L["FIXADDR_TOP"] == 0xFFFFFFFFFF7FF000
    assert "ESPFIX_BASE_ADDR" not in lay("3.15").symbols
    assert "EFI_VA_START" not in lay("3.13").symbols and lay("3.14")["EFI_VA_START"] == 0xFFFFFFFF00000000


# ---- 4.14: 5-level as a compile-time option ----------------------------------------------

def test_4_14_five_level_matches_mm_txt():
    L = lay("4.14", levels=5)
    assert L.paging == "5-level"
    # Documentation/x86/x86_64/mm.txt (4.14), "Virtual memory map with 5 level page tables":
    # 0000000000000000 - 00ffffffffffffff (=56 bits) user space, different per mm
    assert span(L, "non-canonical")[0] == 0x0100000000000000
    # ff00000000000000 - ff0fffffffffffff (=52 bits) guard hole, reserved for hypervisor
    assert span(L, "guard", 1) == (0xFF00000000000000, 0xFF0FFFFFFFFFFFFF)
    # ff10000000000000 - ff8fffffffffffff (=55 bits) direct mapping of all phys. memory
    assert span(L, "direct") == (0xFF10000000000000, 0xFF8FFFFFFFFFFFFF)
    # ff90000000000000 - ff91ffffffffffff (=49 bits) hole
    assert hole_at(L, 0xFF90000000000000) == (0xFF90000000000000, 0xFF91FFFFFFFFFFFF)
    # ff92000000000000 - ffd1ffffffffffff (=54 bits) vmalloc/ioremap space
    assert span(L, "vmalloc") == (0xFF92000000000000, 0xFFD1FFFFFFFFFFFF)
    # ffd2000000000000 - ffd3ffffffffffff (=49 bits) hole
    assert hole_at(L, 0xFFD2000000000000) == (0xFFD2000000000000, 0xFFD3FFFFFFFFFFFF)
    # ffd4000000000000 - ffd5ffffffffffff (=49 bits) virtual memory map (512TB)
    assert span(L, "vmemmap") == (0xFFD4000000000000, 0xFFD5FFFFFFFFFFFF)
    # page_64_types.h (4.14): __VIRTUAL_MASK_SHIFT 56; TASK_SIZE_MAX ((1UL << 56) - PAGE_SIZE)
    assert L["TASK_SIZE_MAX"] == 0x00FFFFFFFFFFF000
    assert L["MAXMEM"] == 1 << 52
    assert L.config["CONFIG_X86_5LEVEL"] is True


def test_4_12_to_4_14_modules_end_follows_fixmap():
    # pgtable_64_types.h (4.12 .. 4.14): #define MODULES_END __fix_to_virt(__end_of_fixed_addresses + 1)
    for v in ("4.12", "4.14"):
        L = lay(v, cpus=4)
        end = dict(L.fixmap)["__end_of_fixed_addresses"]
        assert L["MODULES_END"] == L["FIXADDR_TOP"] - ((end + 1) << 12)
    # one GDT remap page per CPU
    fix = dict(lay("4.12", options={"NR_CPUS": "64"}).fixmap)
    assert fix["FIX_GDT_REMAP_END"] - fix["FIX_GDT_REMAP_BEGIN"] == 63
    big = lay("4.13", options={"NR_CPUS": "8192"})
    assert big["MODULES_END"] < big["FIXADDR_START"]
    assert lay("4.11")["MODULES_END"] == lay("4.15")["MODULES_END"] == 0xFFFFFFFFFF000000


# ---- 4.15 .. 4.19: PTI -----------------------------------------------------------------

def test_4_15_pti_layout_matches_mm_txt():
    L = lay("4.15")
    # Documentation/x86/x86_64/mm.txt (4.15):
    # fffffe0000000000 - fffffe7fffffffff (=39 bits) cpu_entry_area mapping
    # fffffe8000000000 - fffffeffffffffff (=39 bits) LDT remap for PTI
    # ffffff0000000000 - ffffff7fffffffff (=39 bits) %esp fixup stacks
    # ffffffff80000000 - ffffffff9fffffff (=512 MB)  kernel text mapping, from phys 0
    assert span(L, "cpu-entry-area") == (0xFFFFFE0000000000, 0xFFFFFE7FFFFFFFFF)
    assert span(L, "ldt") == (0xFFFFFE8000000000, 0xFFFFFEFFFFFFFFFF)
    assert span(L, "espfix") == (0xFFFFFF0000000000, 0xFFFFFF7FFFFFFFFF)
    assert span(L, "kernel-text") == (0xFFFFFFFF80000000, 0xFFFFFFFF9FFFFFFF)
    assert span(L, "direct") == (0xFFFF880000000000, 0xFFFFC7FFFFFFFFFF)
    assert L["CPU_ENTRY_AREA_BASE"] == 0xFFFFFE0000000000
    assert L["LDT_BASE_ADDR"] == 0xFFFFFE8000000000
    assert "CPU_ENTRY_AREA_BASE" not in lay("4.14").symbols


def test_4_15_five_level():
    L = lay("4.19", levels=5)
    # mm.txt (4.15 .. 4.19), 5 level page tables:
    # ff90000000000000 - ff9fffffffffffff (=52 bits) LDT remap for PTI  (LDT_PGD_ENTRY_L5 -112UL)
    # ffa0000000000000 - ffd1ffffffffffff (=54 bits) vmalloc/ioremap space (12800 TB)
    assert L["LDT_BASE_ADDR"] == 0xFF90000000000000
    assert span(L, "vmalloc") == (0xFFA0000000000000, 0xFFD1FFFFFFFFFFFF)
    assert span(L, "direct") == (0xFF10000000000000, 0xFF8FFFFFFFFFFFFF)
    # page_64_types.h (4.17+) has both bases
    assert L["__PAGE_OFFSET_BASE_L4"] == 0xFFFF880000000000
    assert L["__PAGE_OFFSET_BASE_L5"] == 0xFF10000000000000


# ---- 4.20+, 5.1, 6.6: Documentation/x86/x86_64/mm.rst -------------------------------------

MM_RST_4LEVEL = [  # (kind, start, end) rows of "Complete virtual memory map with 4-level page tables"
    ("guard", 0xFFFF800000000000, 0xFFFF87FFFFFFFFFF),  # ... guard hole, also reserved for hypervisor
    ("ldt", 0xFFFF880000000000, 0xFFFF887FFFFFFFFF),  # LDT remap for PTI
    ("direct", 0xFFFF888000000000, 0xFFFFC87FFFFFFFFF),  # direct mapping of all physical memory
    ("hole", 0xFFFFC88000000000, 0xFFFFC8FFFFFFFFFF),  # ... unused hole
    ("vmalloc", 0xFFFFC90000000000, 0xFFFFE8FFFFFFFFFF),  # vmalloc/ioremap space (vmalloc_base)
    ("hole", 0xFFFFE90000000000, 0xFFFFE9FFFFFFFFFF),  # ... unused hole
    ("vmemmap", 0xFFFFEA0000000000, 0xFFFFEAFFFFFFFFFF),  # virtual memory map (vmemmap_base)
    ("cpu-entry-area", 0xFFFFFE0000000000, 0xFFFFFE7FFFFFFFFF),  # cpu_entry_area mapping
    ("hole", 0xFFFFFE8000000000, 0xFFFFFEFFFFFFFFFF),  # ... unused hole
    ("espfix", 0xFFFFFF0000000000, 0xFFFFFF7FFFFFFFFF),  # %esp fixup stacks
    ("hole", 0xFFFFFF8000000000, 0xFFFFFFEEFFFFFFFF),  # ... unused hole (444 GB)
    ("efi", 0xFFFFFFEF00000000, 0xFFFFFFFEFFFFFFFF),  # EFI region mapping space
    ("hole", 0xFFFFFFFF00000000, 0xFFFFFFFF7FFFFFFF),  # ... unused hole
    ("kernel-text", 0xFFFFFFFF80000000, 0xFFFFFFFF9FFFFFFF),  # kernel text mapping, mapped to physical address 0
    ("modules", 0xFFFFFFFFA0000000, 0xFFFFFFFFFEFFFFFF),  # module mapping space (1520 MB)
    ("vsyscall", 0xFFFFFFFFFF600000, 0xFFFFFFFFFF600FFF),  # legacy vsyscall ABI
    ("hole", 0xFFFFFFFFFFE00000, 0xFFFFFFFFFFFFFFFF),  # ... unused hole
]

MM_RST_5LEVEL = [  # "Complete virtual memory map with 5-level page tables"
    ("guard", 0xFF00000000000000, 0xFF0FFFFFFFFFFFFF),  # ... guard hole, also reserved for hypervisor
    ("ldt", 0xFF10000000000000, 0xFF10FFFFFFFFFFFF),  # LDT remap for PTI
    ("direct", 0xFF11000000000000, 0xFF90FFFFFFFFFFFF),  # direct mapping of all physical memory
    ("hole", 0xFF91000000000000, 0xFF9FFFFFFFFFFFFF),  # ... unused hole
    ("vmalloc", 0xFFA0000000000000, 0xFFD1FFFFFFFFFFFF),  # vmalloc/ioremap space (vmalloc_base)
    ("hole", 0xFFD2000000000000, 0xFFD3FFFFFFFFFFFF),  # ... unused hole
    ("vmemmap", 0xFFD4000000000000, 0xFFD5FFFFFFFFFFFF),  # virtual memory map (vmemmap_base)
    ("cpu-entry-area", 0xFFFFFE0000000000, 0xFFFFFE7FFFFFFFFF),
    ("hole", 0xFFFFFE8000000000, 0xFFFFFEFFFFFFFFFF),
    ("espfix", 0xFFFFFF0000000000, 0xFFFFFF7FFFFFFFFF),
    ("hole", 0xFFFFFF8000000000, 0xFFFFFFEEFFFFFFFF),
    ("efi", 0xFFFFFFEF00000000, 0xFFFFFFFEFFFFFFFF),
    ("hole", 0xFFFFFFFF00000000, 0xFFFFFFFF7FFFFFFF),
    ("kernel-text", 0xFFFFFFFF80000000, 0xFFFFFFFF9FFFFFFF),
    ("modules", 0xFFFFFFFFA0000000, 0xFFFFFFFFFEFFFFFF),
    ("vsyscall", 0xFFFFFFFFFF600000, 0xFFFFFFFFFF600FFF),
    ("hole", 0xFFFFFFFFFFE00000, 0xFFFFFFFFFFFFFFFF),
]


@pytest.mark.parametrize("kernel", ["4.20", "5.1", "5.10", "6.6"])
@pytest.mark.parametrize("levels, rows", [(4, MM_RST_4LEVEL), (5, MM_RST_5LEVEL)])
def test_mm_rst_table(kernel, levels, rows):
    L = lay(kernel, levels=levels)
    assert L.paging == f"{levels}-level"
    for kind, start, last in rows:
        r = L.region_of(start)
        assert r is not None and (r.kind, r.start, r.end - 1) == (kind, start, last), (kind, hex(start), r)


@pytest.mark.parametrize("levels, user_last, hole_start, hole_last", [
    # 0000000000000000 | 0 | 00007fffffffffff | 128 TB | user-space virtual memory
    # 0000800000000000 | +128 TB | ffff7fffffffffff | ~16M TB | ... huge, almost 64 bits wide hole of non-canonical
    (4, 0x00007FFFFFFFFFFF, 0x0000800000000000, 0xFFFF7FFFFFFFFFFF),
    # 0000000000000000 | 0 | 00ffffffffffffff | 64 PB | user-space virtual memory
    # 0100000000000000 | +64 PB | feffffffffffffff | ~16K PB | ... huge, still almost 64 bits wide hole
    (5, 0x00FFFFFFFFFFFFFF, 0x0100000000000000, 0xFEFFFFFFFFFFFFFF),
])
def test_mm_rst_user_space_and_non_canonical_hole(levels, user_last, hole_start, hole_last):
    L = lay("6.6", levels=levels)
    assert span(L, "non-canonical") == (hole_start, hole_last)
    user = [r for r in L.regions if r.end <= hole_start]
    assert user[0].start == 0 and user[-1].end - 1 == user_last
    # page_64_types.h: TASK_SIZE_MAX ((_AC(1,UL) << __VIRTUAL_MASK_SHIFT) - PAGE_SIZE): the last page stays out
    assert L["TASK_SIZE_MAX"] == user_last + 1 - 4096
    assert L.region_of(L["TASK_SIZE_MAX"] - 1).kind == "user"
    assert L.region_of(L["TASK_SIZE_MAX"]).kind == "guard"


def test_6_6_symbols():
    L = lay("6.6", ram="8G")
    # page_64_types.h (4.20+): __PAGE_OFFSET_BASE_L4 0xffff888000000000, __PAGE_OFFSET_BASE_L5 0xff11000000000000
    assert L["PAGE_OFFSET"] == L["__PAGE_OFFSET_BASE_L4"] == 0xFFFF888000000000
    assert L["__PAGE_OFFSET_BASE_L5"] == 0xFF11000000000000
    # 8 GiB: 3 GiB below the PC's hole, 5 GiB from 4 GiB (pc_piix.c pc_init1()): the RAM ends at 9 GiB;
    # setup.c: high_memory = __va(max_pfn * PAGE_SIZE - 1) + 1, max_pfn = e820__end_of_ram_pfn()
    assert L["high_memory"] == 0xFFFF888000000000 + 9 * GiB
    assert L["max_pfn"] == L["max_low_pfn"] == 0x240000
    assert L["__START_KERNEL_map"] == 0xFFFFFFFF80000000
    assert L["_text"] == L["__START_KERNEL"] == 0xFFFFFFFF81000000
    assert L["LOAD_PHYSICAL_ADDR"] == 0x1000000
    assert L["KERNEL_IMAGE_SIZE"] == 512 * MiB
    assert L["MODULES_LEN"] == 1520 * MiB  # mm.rst: 1520 MB module mapping space
    assert L["VMALLOC_END"] - L["VMALLOC_START"] + 1 == 32 * TiB  # mm.rst: 32 TB
    assert L["EFI_VA_END"] == 0xFFFFFFEF00000000 and L["EFI_VA_START"] == 0xFFFFFFFF00000000
    assert L["ESPFIX_BASE_ADDR"] == 0xFFFFFF0000000000
    assert L["VSYSCALL_ADDR"] == 0xFFFFFFFFFF600000
    # mm.rst: "FIXADDR_START | ~-11 MB | ffffffffff5fffff | ~0.5 MB | kernel-internal fixmap range"
    assert -12 * MiB <= L["FIXADDR_START"] - (1 << 64) < -10 * MiB
    assert L.region_of(L["FIXADDR_START"]).kind == "fixmap"
    assert L.region_of(0xFFFFFFFFFF5FFFFF).kind == "fixmap"
    # image sections: text r-x, rodata r--, data rw-, bss rw-, 2 MiB aligned rodata and data
    kinds = [(s.name, s.writable, s.executable) for s in L.image]
    assert kinds == [("text", False, True), ("rodata", False, False), ("data", True, False), ("bss", True, False)]
    assert L["__start_rodata"] % (2 * MiB) == 0 and L["_sdata"] % (2 * MiB) == 0
    for s in L.image:
        assert s.virt == 0xFFFFFFFF80000000 + s.phys
    assert L["_end"] <= 0xFFFFFFFF80000000 + 512 * MiB
    assert L.config["CONFIG_RANDOMIZE_BASE"] is False and L.config["CONFIG_RANDOMIZE_MEMORY"] is False
    assert L.config["NR_CPUS"] == 1


def test_6_6_fixmap():
    L = lay("6.6")
    fix = dict(L.fixmap)
    # fixmap.h (3.16+): FIXADDR_TOP (round_up(VSYSCALL_ADDR + PAGE_SIZE, 1<<PMD_SHIFT) - PAGE_SIZE)
    #   = round_up(0xffffffffff601000, 2M) - 4K
    assert L["FIXADDR_TOP"] == 0xFFFFFFFFFF7FF000
    # VSYSCALL_PAGE = (FIXADDR_TOP - VSYSCALL_ADDR) >> PAGE_SHIFT ("该变量值为 511", linux-insides)
    assert fix["VSYSCALL_PAGE"] == 511
    assert L["FIXADDR_TOP"] - (fix["VSYSCALL_PAGE"] << 12) == 0xFFFFFFFFFF600000
    # FIX_DBGP_BASE, FIX_EARLYCON_MEM_BASE, FIX_APIC_BASE, FIX_IO_APIC_BASE_0 .. +MAX_IO_APICS(128)-1
    assert (fix["FIX_DBGP_BASE"], fix["FIX_EARLYCON_MEM_BASE"], fix["FIX_APIC_BASE"]) == (512, 513, 514)
    assert (fix["FIX_IO_APIC_BASE_0"], fix["FIX_IO_APIC_BASE_END"]) == (515, 642)
    # __end_of_permanent_fixed_addresses = 643; 643 and 643+511 differ above bit 8, so
    # FIX_BTMAP_END = 643 + 512 - (643 & 511) = 1024, FIX_BTMAP_BEGIN = 1024 + 512 - 1
    assert fix["__end_of_permanent_fixed_addresses"] == 643
    assert (fix["FIX_BTMAP_END"], fix["FIX_BTMAP_BEGIN"], fix["__end_of_fixed_addresses"]) == (1024, 1535, 1536)
    assert L["FIXADDR_START"] == 0xFFFFFFFFFF7FF000 - 643 * 4096
    names = [n for n, _ in L.fixmap]
    assert names.index("__end_of_permanent_fixed_addresses") < names.index("FIX_BTMAP_END")
    assert names[-1] == "__end_of_fixed_addresses"
    assert not any(n.startswith("FIX_KMAP") or n.startswith("FIX_TEXT_POKE") for n in names)
    # every slot lies in a fixmap region, the vsyscall page in the vsyscall region
    for name, idx in L.fixmap:
        if name.startswith("__"):
            continue
        r = L.region_of(L["FIXADDR_TOP"] - (idx << 12))
        assert r.kind == ("vsyscall" if name == "VSYSCALL_PAGE" else "fixmap"), name


def test_fixmap_eras():
    assert "FIX_TEXT_POKE0" in dict(lay("5.1").fixmap)  # removed by the temporary-mm text poking of 5.2
    assert "FIX_TEXT_POKE0" not in dict(lay("5.2").fixmap)
    assert "FIX_RO_IDT" in dict(lay("4.14").fixmap) and "FIX_RO_IDT" not in dict(lay("4.15").fixmap)
    assert "VVAR_PAGE" in dict(lay("3.15").fixmap) and "VVAR_PAGE" not in dict(lay("3.16").fixmap)
    assert fixmap_era("2.6.12").source.startswith("include/asm-x86_64/fixmap.h")
    assert fixmap_era("6.6") is ERAS[-1]
    # 2.6.32's early_ioremap slots: FIX_BTMAP_END = end + 256 - (end & 255)
    fix = dict(lay("2.6.32").fixmap)
    end = fix["__end_of_permanent_fixed_addresses"]
    assert fix["FIX_BTMAP_END"] == end + 256 - (end & 255)


def test_config_overrides_switch_fixmap_entries():
    L = lay("4.19", config_overrides={"CONFIG_PARAVIRT": "y", "CONFIG_ACPI_APEI_GHES": "y"})
    fix = dict(L.fixmap)
    assert fix["FIX_APEI_GHES_NMI"] == fix["FIX_APEI_GHES_IRQ"] + 1
    assert "FIX_PARAVIRT_BOOTMAP" in fix
    # without vsyscall emulation, VSYSCALL_PAGE is not in the enum: FIX_DBGP_BASE is index 0
    L = lay("6.6", config_overrides={"CONFIG_X86_VSYSCALL_EMULATION": "n"})
    assert dict(L.fixmap)["FIX_DBGP_BASE"] == 0
    assert "vsyscall" not in {r.kind for r in L.regions}
    assert L.region_of(0xFFFFFFFFFF7FF000).kind == "fixmap"
    with pytest.raises(ConfigError, match="CONFIG_X86_VSYSCALL_EMULATION"):
        lay("3.18", config_overrides={"CONFIG_X86_VSYSCALL_EMULATION": "n"})  # no such option before 4.2
    with pytest.raises(ConfigError, match="cannot be changed"):
        lay("6.6", config_overrides={"CONFIG_KASAN": "y"})
    with pytest.raises(ConfigError, match="expected y or n"):
        lay("6.6", config_overrides={"CONFIG_PARAVIRT_XXL": "maybe"})


# ---- era boundaries ----------------------------------------------------------------------

@pytest.mark.parametrize("kernel, symbol, value", [
    ("2.6.26", "PAGE_OFFSET", 0xFFFF810000000000), ("2.6.27", "PAGE_OFFSET", 0xFFFF880000000000),
    ("4.19", "PAGE_OFFSET", 0xFFFF880000000000), ("4.20", "PAGE_OFFSET", 0xFFFF888000000000),
    ("2.6.30", "VMALLOC_START", 0xFFFFC20000000000), ("2.6.31", "VMALLOC_START", 0xFFFFC90000000000),
    ("2.6.30", "VMEMMAP_START", 0xFFFFE20000000000), ("2.6.31", "VMEMMAP_START", 0xFFFFEA0000000000),
    ("2.6.24", "MODULES_VADDR", 0xFFFFFFFF88000000), ("2.6.25", "MODULES_VADDR", 0xFFFFFFFFA0000000),
    ("2.6.26", "MODULES_END", 0xFFFFFFFFFFF00000), ("2.6.27", "MODULES_END", 0xFFFFFFFFFF000000),
    ("2.6.21", "_text", 0xFFFFFFFF80100000), ("2.6.22", "_text", 0xFFFFFFFF80200000),
    ("2.6.30", "_text", 0xFFFFFFFF80200000), ("2.6.31", "_text", 0xFFFFFFFF81000000),
    ("3.15", "FIXADDR_TOP", 0xFFFFFFFFFFDFF000), ("3.16", "FIXADDR_TOP", 0xFFFFFFFFFF7FF000),
    ("4.19", "LDT_BASE_ADDR", 0xFFFFFE8000000000), ("4.20", "LDT_BASE_ADDR", 0xFFFF880000000000),
    ("2.6.26", "MAXMEM", 0x3FFFFFFFFFFF), ("2.6.27", "MAXMEM", 1 << 44), ("2.6.31", "MAXMEM", 1 << 46),
])
def test_era_boundaries(kernel, symbol, value):
    assert lay(kernel)[symbol] == value


def test_dma32_zone_came_in_2_6_15():
    assert [z.name for z in lay("2.6.14").zones] == ["DMA", "Normal"]
    assert [z.name for z in lay("2.6.15").zones] == ["DMA", "DMA32", "Normal"]
    # empty zones are left out
    assert [z.name for z in lay("6.6", ram="1G").zones] == ["DMA", "DMA32"]


# ---- 5-level selection -----------------------------------------------------------------

def test_five_level_needs_4_14():
    with pytest.raises(ConfigError, match="4.14"):
        lay("4.13", levels=5)
    with pytest.raises(ConfigError, match="4- or 5-level"):
        lay("6.6", levels=3)


def test_no5lvl():
    # arch/x86/boot/compressed/pgtable_64.c (4.17+): no5lvl keeps a 5-level kernel on 4-level tables
    L = lay("6.6", levels=5, cmdline="no5lvl")
    assert L.paging == "4-level" and L["PAGE_OFFSET"] == 0xFFFF888000000000
    assert L.config["CONFIG_X86_5LEVEL"] is True
    assert lay("4.17", levels=5, cmdline="no5lvl")["PAGE_OFFSET"] == 0xFFFF880000000000
    # before 4.17 (compile-time 5-level) the word means nothing to the kernel
    L = lay("4.16", levels=5, cmdline="no5lvl")
    assert L.paging == "5-level" and L["PAGE_OFFSET"] == 0xFF10000000000000
    assert lay("6.6", levels=4, cmdline="no5lvl").paging == "4-level"


# ---- mem= and RAM limits ---------------------------------------------------------------

def test_mem_truncates_ram():
    # mem= is the highest address (e820.c parse_memopt(): e820__range_remove(mem_size, ULLONG_MAX -
    # mem_size, E820_TYPE_RAM, 1)), not an amount: of 8 GiB (3 GiB below the hole, 5 from 4 GiB), mem=6G
    # keeps [1M, 3G) and [4G, 6G)
    L = lay("6.6", ram="8G", cmdline="mem=6G")
    assert L["max_pfn"] == L["max_low_pfn"] == 6 * GiB >> 12
    assert L["high_memory"] == 0xFFFF888000000000 + 6 * GiB
    assert max(r.end for r in L.memory_map if r.type == "usable") == 6 * GiB
    assert L.zones[-1] .end_pfn == 6 * GiB >> 12
    L = lay("6.6", ram="8G", cmdline="mem=512M")
    assert [(z.name, z.end_pfn) for z in L.zones] == [("DMA", 0x1000), ("DMA32", 0x20000)]
    # above the end of RAM (9 GiB with the hole): no effect
    assert lay("6.6", ram="8G", cmdline="mem=16G")["max_pfn"] == 9 * GiB >> 12
    assert lay("2.6.12", ram="1G", cmdline="mem=256M")["max_pfn"] == 256 * MiB >> 12


def test_mem_bad_values():
    with pytest.raises(ConfigError, match="mem="):
        lay("6.6", cmdline="mem=banana")
    with pytest.raises(ConfigError, match="mem=0"):
        lay("6.6", cmdline="mem=0")
    with pytest.raises(ConfigError, match="kernel image"):
        lay("6.6", cmdline="mem=20M")  # the image starts at 16 MiB and is bigger than 4 MiB
    with pytest.raises(ConfigError, match="kernel image"):
        lay("6.6", ram="32M")


def test_ram_limits():
    assert lay("6.6", ram="64T")["max_pfn"] == 1 << 34
    with pytest.raises(ConfigError, match="64T"):
        lay("6.6", ram=64 * TiB + GiB)
    # the RAM of a 64T machine ends at 64T + 1G (the PC's hole moves 1 GiB above 4 GiB): e820_end_pfn()
    # clamps last_pfn to max_arch_pfn (MAXMEM >> PAGE_SHIFT), the top GiB is not used
    assert lay("6.6", ram="64T").memory_map[-1].end == 64 * TiB
    assert lay("6.6", ram=64 * TiB + GiB, levels=5)["max_pfn"] == (64 * TiB + 2 * GiB) >> 12
    with pytest.raises(ConfigError, match="4P"):
        lay("6.6", ram=4 * PiB + GiB, levels=5)
    with pytest.raises(ConfigError, match="64T"):  # no5lvl: 4-level, 46 bits again
        lay("6.6", ram=65 * TiB, levels=5, cmdline="no5lvl")
    with pytest.raises(ConfigError, match="16T"):  # 2.6.27 .. 2.6.30: MAX_PHYSMEM_BITS 44
        lay("2.6.30", ram=17 * TiB)
    # 2.6.12: e820_end_of_ram clamps end_pfn to MAXMEM>>PAGE_SHIFT (0x3fffffffffff >> 12)
    assert lay("2.6.12", ram="64T")["max_pfn"] == (1 << 34) - 1


# ---- bad inputs --------------------------------------------------------------------------

@pytest.mark.parametrize("kernel", ["2.6.11", "2.4.20", "2.6", "3.20", "4.21", "5.20", "7.0", "1.0"])
def test_unsupported_kernels(kernel):
    with pytest.raises(ConfigError, match="supported"):
        lay(kernel)


def test_nr_cpus():
    assert lay("6.6", cpus=4).config["NR_CPUS"] == 4
    assert lay("6.6", cpus=4, options={"NR_CPUS": "64"}).config["NR_CPUS"] == 64
    with pytest.raises(ConfigError, match="smaller"):
        lay("6.6", cpus=4, options={"NR_CPUS": "2"})
    with pytest.raises(ConfigError, match="whole number"):
        lay("6.6", options={"NR_CPUS": "many"})
    with pytest.raises(ConfigError, match="8192"):
        lay("6.6", options={"NR_CPUS": "9000"})


# ---- properties over many machines -------------------------------------------------------

VERSIONS = ["2.6.12", "2.6.14", "2.6.15", "2.6.23", "2.6.24", "2.6.25", "2.6.26", "2.6.27", "2.6.29", "2.6.30",
            "2.6.31", "2.6.32", "2.6.33", "2.6.39", "3.0", "3.1", "3.9", "3.10", "3.13", "3.14", "3.15", "3.16",
            "4.1", "4.2", "4.5", "4.6", "4.11", "4.12", "4.13", "4.14", "4.15", "4.16", "4.17", "4.19", "4.20",
            "5.0", "5.1", "5.2", "5.9", "5.10", "5.11", "5.15", "6.1", "6.6", "6.12"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kernel=st.sampled_from(VERSIONS), pages=st.integers(min_value=(64 * MiB) >> 12, max_value=(1 * TiB) >> 12),
       cpus=st.integers(min_value=1, max_value=64), extra_cpus=st.integers(min_value=0, max_value=512),
       levels=st.sampled_from([4, 5]), no5lvl=st.booleans())
def test_layout_properties(kernel, pages, cpus, extra_cpus, levels, no5lvl):
    ram = pages << 12
    spec = MachineSpec.make("x86_64", kernel, ram, cpus=cpus, cmdline="no5lvl" if no5lvl else "",
                            options={"NR_CPUS": str(cpus + extra_cpus)})
    if levels == 5 and spec.kernel < "4.14":
        with pytest.raises(ConfigError):
            compute_layout_64(spec, levels)
        return
    L = compute_layout_64(spec, levels)
    L.check()
    # the regions tile the whole 64-bit space, sorted, non-empty, not overlapping
    assert L.regions[0].start == 0 and L.regions[-1].end == 1 << 64
    for a, b in zip(L.regions, L.regions[1:]):
        assert a.end == b.start and a.start < a.end
    kinds = {r.kind for r in L.regions}
    assert {"user", "non-canonical", "direct", "vmalloc", "kernel-text", "modules", "fixmap", "vsyscall"} <= kinds
    # RAM lies in the direct map, the image in the kernel text mapping. QEMU's pc machine (hw/i386/pc_piix.c
    # pc_init1()): from 0xe0000000 bytes of RAM on, the RAM above 3 GiB is at 4 GiB and up, so it ends 1 GiB
    # above its size
    end = ram + GiB if ram >= 0xE0000000 else ram
    assert L["max_pfn"] == end >> 12 and L["max_low_pfn"] == end >> 12
    direct = L.region_of(L["PAGE_OFFSET"])
    assert direct.kind == "direct" and direct.start == L["PAGE_OFFSET"]
    assert L["high_memory"] == L["PAGE_OFFSET"] + end <= direct.end
    text = L.region_of(L["_text"])
    assert text.kind == "kernel-text" and L["_end"] <= text.end
    assert L.image[0].virt == L["_text"] and all(s.size > 0 for s in L.image)
    assert all(a.virt + a.size <= b.virt for a, b in zip(L.image, L.image[1:]))
    # modules between MODULES_VADDR and MODULES_END, the fixmap above them
    mods = L.region("module mapping space")
    assert mods.start == L["MODULES_VADDR"] and mods.end <= L["MODULES_END"]
    assert mods.end <= L["FIXADDR_START"]
    # every fixmap slot in a fixmap or vsyscall region
    for name, idx in L.fixmap:
        if not name.startswith("__"):
            assert L.region_of(L["FIXADDR_TOP"] - (idx << 12)).kind in ("fixmap", "vsyscall"), name
    # zones tile [0, max_pfn)
    assert L.zones[0].start_pfn == 0 and L.zones[-1].end_pfn == end >> 12
    # the usable RAM of the map: in the zones, none in the hole [3 GiB, 4 GiB) once the RAM is split
    assert max(r.end for r in L.memory_map if r.type == "usable") == end
    if ram >= 0xE0000000:
        assert not any(r.type == "usable" and r.start < 4 * GiB and r.end > 3 * GiB for r in L.memory_map)
    assert all(a.end_pfn == b.start_pfn for a, b in zip(L.zones, L.zones[1:]))
    # paging: 5-level unless asked for 4, or no5lvl on a kernel that knows it
    want5 = levels == 5 and not (no5lvl and spec.kernel >= "4.17")
    assert L.paging == ("5-level" if want5 else "4-level")
    assert (L["PAGE_OFFSET"] >> 56 == 0xFF) and ((L["PAGE_OFFSET"] >> 48 == 0xFFFF) != want5)


@settings(max_examples=200, deadline=None)
@given(kernel=st.sampled_from(VERSIONS), nr_cpus=st.integers(min_value=1, max_value=8192),
       flags=st.dictionaries(st.sampled_from(["CONFIG_PARAVIRT", "CONFIG_ACPI_APEI_GHES", "CONFIG_INTEL_TXT",
                                              "CONFIG_PROVIDE_OHCI1394_DMA_INIT", "CONFIG_PARAVIRT_XXL",
                                              "CONFIG_PARAVIRT_CLOCK", "CONFIG_X86_VSYSCALL_EMULATION"]),
                             st.booleans()))
def test_fixmap_enum_properties(kernel, nr_cpus, flags):
    config = {"CONFIG_X86_LOCAL_APIC": True, "CONFIG_X86_IO_APIC": True, "CONFIG_ACPI": True, **flags}
    fm = compute_fixmap(kernel, config, nr_cpus)
    values = [i for _, i in fm.enum]
    assert values == sorted(values)  # enum order is index order
    names = [n for n, _ in fm.enum]
    assert len(names) == len(set(names))
    boot = fm.boot_slots()
    if boot:
        end, begin = boot
        assert end >= fm.end_permanent
        assert begin - end + 1 in (256, 512)
        # the boot-time slots fit in one page table (the point of the FIX_BTMAP_END rounding)
        assert end >> 9 == begin >> 9
    assert fm.start == fm.top - fm.size
