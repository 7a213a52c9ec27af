"""crash's ``vtop`` and ``kmem -v`` as crash prints them, pinned against crash's own source
(crash-utility/crash, read at memory.c commit 004218c5, x86_64.c and x86.c as stored in the
code index, riscv64.c) and the kernel's (include/linux/mm.h, include/linux/page-flags.h).

- memory.c do_vtop: ``VIRTUAL``/``PHYSICAL`` and the address pair left-justified in
  VADDR_PRLEN (UVADDR_PRLEN for a user address; 8 on i386, 16 on the 64-bit arches, defs.h),
  a blank line after the pair, one after the walk, then dump_mem_map's struct page;
  ``(not accessible)`` for a user address outside the context's VMAs, ``(not mapped)``.
- x86_64.c x86_64_kvtop / x86.c x86_kvtop: a kernel address that is not a vmalloc one is
  ``VTOP()``'d before the walk, so its physical address (and struct page) print even where
  the walk finds nothing (crash issue #107 shows it: ``ffffffff80000000  e4e00000`` over
  ``PMD: ... => 0``).
- x86_64_uvtop_level4 / x86_uvtop: a pte with _PAGE_PROTNONE is present (PROT_NONE);
  x86_64_translate_pte prints PROTNONE then GLOBAL (the same bit from 2.6.28); x86.c
  x86_translate_pte tests ``(pte && _PAGE_PRESENT)`` and so never prints PROTNONE.
- memory.c vm_area_dump: the VMA header and PRINT_VMA_DATA (``%6llx`` flags, two blanks and
  the file name: empty for anonymous memory).
- memory.c dump_mem_map: ``PAGE PHYSICAL MAPPING INDEX CNT FLAGS``, style4 rows and
  translate_page_flags (``%lx`` and the names).
- memory.c dump_vmlist (before 2.6.28, no vmap_area_list) and dump_vmap_area: the columns,
  ``%6ld``/``%7ld`` sizes that widen only their own row.
"""

from __future__ import annotations

import pathlib

import pytest

from mmemu.cli import main
from mmemu.kernel.process import PROT_NONE, PROT_READ, PROT_WRITE, MAP_ANONYMOUS, MAP_SHARED
from mmemu.render.vtop import vtop

PAGE = 4096


def _user_page(k, prot_after=None):
    """A process with one written anonymous page (and the page after it never touched)."""
    p = k.create_process("a")
    a = k.mmap(p, None, 2 * PAGE)
    k.access(a, "write", user=True, process=p)
    if prot_after is not None:
        k.mprotect(p, a, PAGE, prot_after)
    return p, a


# -- do_vtop: the header, its padding and the blank lines ------------------------------------------------------

@pytest.mark.parametrize("arch,prlen", [("x86_64", 16), ("i386", 8), ("i386_pae", 8)])
def test_header_and_address_pair_are_padded_to_vaddr_prlen(boot, arch, prlen):
    k = boot(arch=arch, kernel="6.6", ram="512M")
    va = k.phys_to_virt(0x100000) + 0x234
    lines = vtop(k, va).split("\n")
    # fprintf(fp, "%s  %s\n", mkstring(VADDR_PRLEN, LJUST, "VIRTUAL"), mkstring(VADDR_PRLEN, LJUST, "PHYSICAL"))
    assert lines[0] == "VIRTUAL".ljust(prlen) + "  " + "PHYSICAL".ljust(prlen)
    # fprintf(fp, "%s  %s\n\n", mkstring(VADDR_PRLEN, LJUST|LONG_HEX, vaddr), mkstring(..., LONGLONG_HEX, paddr))
    assert lines[1] == f"{va:x}".ljust(prlen) + "  " + "100234".ljust(prlen)
    assert lines[2] == ""
    # the walk, a blank line, then the struct page's two lines and nothing after them
    head = next(i for i, line in enumerate(lines) if "MAPPING" in line)
    assert lines[head - 1] == "" and lines[head + 2:] == [""]


def test_a_vmalloc_address_with_nothing_mapped_ends_with_the_blank_line(boot):
    k = boot(arch="x86_64", kernel="6.6", ram="512M")
    va = k.layout["VMALLOC_START"]
    text = vtop(k, va)
    assert text.split("\n")[1] == f"{va:x}  (not mapped)"
    assert text.endswith(" => 0\n\n") and "MAPPING" not in text


# -- the unity map: VTOP() before the walk -----------------------------------------------------------------------

def test_a_direct_map_address_prints_its_physical_address_when_the_walk_finds_nothing(boot):
    # 4 GiB on the pc machine: RAM below 3 GiB and from 4 GiB; the direct map has no entry for
    # the PCI hole, but crash takes the address for unity-mapped (not IS_VMALLOC_ADDR)
    k = boot(arch="x86_64", kernel="6.6", ram="4G")
    va = k.PAGE_OFFSET + 0xD0000000
    assert not k.walk(va).mapped
    lines = vtop(k, va).split("\n")
    assert lines[1] == "ffff8880d0000000  d0000000        "
    assert lines[-3].endswith(" => 0") and lines[-2:] == ["", ""]
    # no memory section holds the hole: no struct page (memory.c phys_to_page, pfn_to_map)
    assert not any("MAPPING" in line for line in lines)


def test_kernel_text_mapping_is_vtopd_from_phys_base_as_in_crash_issue_107(boot):
    # crash issue #107: 'vtop ffffffff80000000' prints 'ffffffff80000000  e4e00000' (phys_base)
    # over a walk that ends at 'PMD: ... => 0'; x86_64_VTOP: vaddr - __START_KERNEL_map + phys_base
    k = boot(arch="x86_64", kernel="6.6", ram="512M")
    s = k.layout.symbols
    phys_base = k.image_phys(s["__START_KERNEL"]) - (s["__START_KERNEL"] - s["__START_KERNEL_map"])
    lines = vtop(k, s["__START_KERNEL_map"]).split("\n")
    assert lines[1] == "ffffffff80000000  " + f"{phys_base:x}".ljust(16)
    assert "   PMD: " in "\n".join(lines) and any(line.endswith(" => 0") for line in lines)
    # the page exists (pfn phys_base >> 12 is RAM): its struct page follows
    assert lines[-2].startswith(f"{s['VMEMMAP_START'] + (phys_base >> 12) * 64:x}  ")


def test_only_x86_64_is_vmalloc_addrs_ranges_are_walked_for_their_physical_address(boot):
    # x86_64_IS_VMALLOC_ADDR: vmalloc, vmemmap, modules, vsyscall, cpu_entry_area; anything
    # else of the kernel half goes through x86_64_VTOP, the fixmap too (a number, no page)
    k = boot(arch="x86_64", kernel="6.6", ram="512M")
    s = k.layout.symbols
    phys_base = k.image_phys(s["__START_KERNEL"]) - (s["__START_KERNEL"] - s["__START_KERNEL_map"])
    fix = s["FIXADDR_START"] + PAGE
    assert vtop(k, fix).split("\n")[1] == f"{fix:x}  " + f"{fix - s['__START_KERNEL_map'] + phys_base:x}".ljust(16)
    assert not vtop(k, fix).rstrip("\n").endswith("reserved")
    for va in (s["MODULES_VADDR"], 0xFFFFFFFFFF600000, s["CPU_ENTRY_AREA_BASE"] + (1 << 38)):
        assert vtop(k, va).split("\n")[1] == f"{va:x}  (not mapped)", hex(va)


# -- user addresses ------------------------------------------------------------------------------------------

def test_a_user_address_without_a_process_is_not_accessible(boot, capsys):
    # cmd_vtop without -c: vaddr_type() says UVADDR; the context (a kernel thread) has no VMA:
    # fprintf(fp, "%s  (not accessible)\n\n", ...) and return
    k = boot(arch="x86_64", kernel="6.6", ram="512M")
    p, a = _user_page(k)
    assert vtop(k, a) == f"{'VIRTUAL':<16}  {'PHYSICAL':<16}\n{a:<16x}  (not accessible)\n\n"
    assert main(["vtop", "0x400000"]) == 0
    assert capsys.readouterr().out.split("\n")[1] == "400000            (not accessible)"
    # an address outside every VMA of the process: the same
    assert "(not accessible)" in vtop(k, a + 16 * PAGE, process=p)


def test_cli_pid_walks_a_scenarios_process_as_vtop_c(capsys):
    # after fork (cow.toml step 5) the child maps the parent's page read-only: crash shows the
    # child's pte without RW, its VMA, and the page's count of 2
    scenario = str(pathlib.Path(__file__).resolve().parent.parent / "examples" / "scenarios" / "cow.toml")
    assert main(["vtop", "heap", "--scenario", scenario, "--step", "5", "--pid", "2", "--arch", "x86_64"]) == 0
    lines = capsys.readouterr().out.split("\n")
    assert lines[3].startswith("   PGD: ") and lines[-2].split()[-2:] == ["2", "0"]
    assert any(line.endswith("(PRESENT|USER|DIRTY|NX)") for line in lines)
    assert any(line.endswith(" 100073  ") for line in lines)


def test_cli_pid_needs_a_live_process(capsys):
    assert main(["vtop", "0x400000", "--pid", "7"]) == 2
    assert "--pid 7: no such live process" in capsys.readouterr().err


def test_user_page_walk_vma_and_struct_page(boot):
    k = boot(arch="x86_64", kernel="6.6", ram="512M")
    p, a = _user_page(k)
    w = k.walk_mm(a, p)
    lines = vtop(k, a, process=p).split("\n")
    assert lines[1] == f"{a:<16x}  {w.phys:<16x}"
    assert lines[3].startswith("   PGD: ")  # x86_64_upgd_offset: the user pgd entry, by physical address
    vma = lines.index("      VMA               START              END        FLAGS  FILE")
    # PRINT_VMA_DATA: "%s%s%s%s%s %6llx%s%s\n" with an empty file name: two trailing blanks
    assert lines[vma + 1] == f"{'-':^16}  {a:>16x}  {a + 2 * PAGE:>16x} {0x100073:6x}  "
    assert lines[vma - 1] == "" and lines[vma + 2] == ""
    assert lines[vma + 3].split() == ["PAGE", "PHYSICAL", "MAPPING", "INDEX", "CNT", "FLAGS"]
    assert lines[vma + 4].split()[:2] == [f"{k.layout['VMEMMAP_START'] + (w.phys >> 12) * 64:x}", f"{w.phys:x}"]
    # the page after it was never touched: (not mapped), the zero pte, its VMA, no struct page
    text = vtop(k, a + PAGE, process=p)
    assert text.split("\n")[1] == f"{a + PAGE:<16x}  (not mapped)"
    assert "=> 0\n\n      VMA" in text and text.endswith("  \n\n")


# 4.14: before the L1TF mitigation (4.19) inverts the frame of a PROT_NONE pte, which crash's
# vtop prints as it finds it (x86_64_translate_pte takes PAGEBASE(pte) & PHYSICAL_PAGE_MASK)
def test_prot_none_page_is_present_for_crash_on_x86_64(boot):
    k = boot(arch="x86_64", kernel="4.14", ram="512M")
    p, a = _user_page(k, PROT_NONE)
    assert not k.walk_mm(a, p).mapped  # not present for the CPU...
    raw = k.read_user_pte(p, a)
    pa = raw & ~0xFFF & ((1 << 52) - 1)
    lines = vtop(k, a + 0x10, process=p).split("\n")
    assert lines[1] == f"{a + 0x10:<16x}  {pa + 0x10:<16x}"  # ...but x86_64_uvtop_level4 finds it
    assert f"  PAGE: {pa:x}" in lines
    assert lines[lines.index(f"  PAGE: {pa:x}") + 3].endswith("(ACCESSED|DIRTY|PROTNONE|GLOBAL)")
    vma = next(line for line in lines if line.startswith(f"{'-':^16}  "))
    assert vma.split()[3] == "100070"  # VM_MAY* and VM_ACCOUNT stay when mprotect drops R and W
    assert lines[-2].startswith(f"{k.layout['VMEMMAP_START'] + (pa >> 12) * 64:x}  {pa:>8x}  ")


@pytest.mark.parametrize("arch", ["i386", "i386_pae"])
def test_prot_none_page_on_i386_never_says_protnone(boot, arch):
    # x86_translate_pte: 'if (pte & _PAGE_PROTNONE && !(pte && _PAGE_PRESENT))' is never true
    k = boot(arch=arch, kernel="4.14", ram="512M")
    p, a = _user_page(k, PROT_NONE)
    raw = k.read_user_pte(p, a)
    pa = raw & (0xFFFFF000 if arch == "i386" else ((1 << 52) - 1) & ~0xFFF)  # NONPAE_/PAE_PAGEBASE
    text = vtop(k, a, process=p)
    assert text.split("\n")[1] == f"{a:x}  {pa:<8x}"
    assert f" PAGE: {pa:>8x}\n" in text
    assert "(ACCESSED|DIRTY|GLOBAL)\n" in text and "PROTNONE" not in text


# -- VMA flags: include/linux/mm.h bits, as mm/mmap.c, mm/mprotect.c and fs/exec.c set them --------------------

def test_vma_flags_carry_the_kernels_bits(boot):
    k = boot(arch="x86_64", kernel="6.6", ram="512M")
    p = k.create_process("a")
    flags = {v.name: v.vm_flags for v in p.vmas}
    # VM_STACK_FLAGS: VM_GROWSDOWN | VM_READ | VM_WRITE | VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC | VM_ACCOUNT
    assert flags["[stack]"] == 0x100173
    rw = k.mmap(p, None, PAGE)
    ro = k.mmap(p, None, PAGE, PROT_READ)
    shared = k.mmap(p, None, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS)
    k.brk(p, p.brk + PAGE)
    by_start = {v.vm_start: v.vm_flags for v in p.vmas}
    assert by_start[rw] == 0x100073      # private writable: accountable_mapping, VM_ACCOUNT
    assert by_start[ro] == 0x71          # VM_READ | VM_MAY{READ,WRITE,EXEC}
    assert by_start[shared] == 0xFB      # VM_SHARED | VM_MAYSHARE, never accounted here
    assert {v.name: v.vm_flags for v in p.vmas}["[heap]"] == 0x100073  # do_brk: VM_DATA_DEFAULT_FLAGS | VM_ACCOUNT
    k.mprotect(p, ro, PAGE, PROT_READ | PROT_WRITE)  # mprotect_fixup charges it: VM_ACCOUNT
    assert {v.vm_start: v.vm_flags for v in p.vmas}[ro] == 0x100073


# -- dump_mem_map: the struct page on every arch ------------------------------------------------------------

def test_struct_page_header_and_row_in_crashs_columns(boot):
    k = boot(arch="x86_64", kernel="6.6", ram="512M")
    head, row = vtop(k, k.phys_to_virt(0x123000)).split("\n")[-3:-1]
    # mkstring(VADDR_PRLEN, CENTER, "PAGE"), MINSPACE, PHYSICAL right in MAX(PADDR_PRLEN, 8),
    # MAPPING centred right in VADDR_PRLEN, INDEX centred right in 8, then "CNT FLAGS"
    assert head == "      PAGE        PHYSICAL       MAPPING        INDEX CNT FLAGS"
    # style4: "%-16lx  %8llx  %16lx  %8lx %2d " then translate_page_flags: "%lx" (no names for 0)
    assert row == f"{k.layout['VMEMMAP_START'] + 0x123 * 64:<16x}  {0x123000:>8x}  {0:>16x}  {0:>8x} {0:2d} 0"


@pytest.mark.parametrize("kernel,reserved,slab", [("3.10", 10, 7), ("5.4", 12, 9), ("6.6", 14, 11)])
def test_page_flags_by_era(boot, kernel, reserved, slab):
    # include/linux/page-flags.h enum pageflags: PG_reserved and PG_slab of each era
    k = boot(arch="x86_64", kernel=kernel, ram="512M")
    text = vtop(k, k.layout["__START_KERNEL"])  # the kernel image: memblock-reserved
    assert text.split("\n")[-2].endswith(f" 1 {1 << reserved:x} reserved")
    obj = k.kmalloc(64)
    assert vtop(k, obj).split("\n")[-2].endswith(f" {1 << slab:x} slab")


@pytest.mark.parametrize("arch,size", [("i386", 32), ("i386_pae", 32), ("riscv64", 64), ("arm64", 64)])
def test_struct_page_address_from_the_archs_mem_map_or_vmemmap(boot, arch, size):
    k = boot(arch=arch, kernel="6.6", ram="512M")
    pa = k.PHYS_OFFSET + 0x200000
    row = vtop(k, k.phys_to_virt(pa)).split("\n")[-2]
    s = k.layout.symbols
    if "mem_map" in s:  # FLATMEM: mem_map + (pfn - ARCH_PFN_OFFSET)
        want = s["mem_map"] + ((pa - k.PHYS_OFFSET) >> 12) * size
    else:  # SPARSEMEM_VMEMMAP: vmemmap + pfn
        want = s["vmemmap"] + (pa >> 12) * size
    assert row.split()[:2] == [f"{want:x}", f"{pa:x}"]


# -- kmem -v ----------------------------------------------------------------------------------------------

def test_kmem_v_before_2_6_28_is_crashs_vmlist_layout(boot):
    k = boot(arch="i386", kernel="2.6.24", ram="1G")
    small = k.vmalloc(PAGE)
    big = k.vmalloc(12 << 20)  # 12 MiB + the guard page: 8 digits in a %6ld column
    lines = k.kmem_v().rstrip("\n").split("\n")
    # dump_vmlist: mkstring(MAX(9, VADDR_PRLEN), CENTER|LJUST, "VM_STRUCT"), "  ",
    # mkstring(2 * VADDR_PRLEN + 3, CENTER|LJUST, "ADDRESS RANGE"), "    SIZE"
    assert lines[0] == "VM_STRUCT     ADDRESS RANGE       SIZE"
    rows = {int(line.split()[1], 16): line for line in lines[1:]}
    vm = k.find_vm_area(small)
    # "%s%s  %s - %s  %6ld": vm_struct centred in 8, space(MINSPACE-1), addr, addr + size, size
    assert rows[small] == f"{vm.kaddr:08x}   {small:08x} - {small + 2 * PAGE:08x}    8192"
    assert len(rows[small]) == len(lines[0])
    assert rows[big].endswith(f" - {big + (12 << 20) + PAGE:08x}  {(12 << 20) + PAGE}")
    assert len(rows[big]) == len(lines[0]) + 2  # only the widened row is wider


def test_kmem_v_from_2_6_28_widens_only_the_wide_row(boot):
    k = boot(arch="i386", kernel="2.6.28", ram="1G")
    k.vmalloc(PAGE)
    big = k.vmalloc(12 << 20)
    lines = k.kmem_v().rstrip("\n").split("\n")
    assert lines[0] == "VMAP_AREA  VM_STRUCT     ADDRESS RANGE        SIZE"
    for line in lines[1:]:
        wide = f"{big:08x} - " in line
        assert len(line) == len(lines[0]) + (1 if wide else 0), line  # "%7ld" of 12587008
