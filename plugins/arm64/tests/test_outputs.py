"""pgprots against the kernel source, the plugin's registration and contract, and the text
formats (ptdump lines, crash vtop, oops, segfault) on hand-made walks -- these tests need no
booted kernel, only the public modules of mmemu."""

from __future__ import annotations

import ast
import pathlib
from types import SimpleNamespace

import pytest

import mmemu
from mmemu.arch import REQUIRED_PGPROTS, Arch
from mmemu.faults import NOT_PRESENT, PROTECTION, Fault
from mmemu.layout import MachineSpec
from mmemu.units import KernelVersion
from mmemu_arm64 import ARCH, mmemu_register_arch
from mmemu_arm64.formats import (PTE_AF, PTE_DIRTY, PTE_NG, PTE_PXN, PTE_RDONLY, PTE_SHARED, PTE_TYPE_PAGE,
                                 PTE_USER, PTE_UXN)
from mmemu_arm64.prot import pgprots
from mmemu_arm64.ptdump import ptdump_format
from mmemu_arm64.report import oops_report, segfault_report, translate_pte, vtop_lines

PKG = pathlib.Path(__file__).resolve().parents[1] / "mmemu_arm64"
ALLOWED = set(mmemu.PUBLIC_MODULES)


def test_registration_and_contract():
    assert mmemu_register_arch() == [ARCH]
    assert isinstance(ARCH, Arch) and ARCH.name == "arm64" and ARCH.elf_machine == "EM_AARCH64"
    ARCH.check_contract()
    for k in ("3.7", "3.14", "4.14", "6.6", "6.10"):
        p = pgprots(k)
        for name in REQUIRED_PGPROTS:
            assert name in p


def test_imports_only_the_public_modules():
    for path in PKG.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module.startswith("mmemu"):
                assert node.module in ALLOWED, (path.name, node.module)
                assert all(not a.name.startswith("_") for a in node.names), (path.name, node.module)
            if isinstance(node, ast.Import):
                for a in node.names:
                    assert not a.name.startswith("mmemu_x86") and (not a.name.startswith("mmemu")
                                                                   or a.name in ALLOWED), a.name


def test_pgprots_have_the_bits_the_kernel_says():
    # 6.x pgtable-prot.h: PROT_NORMAL = PROT_DEFAULT | PTE_PXN | PTE_UXN | PTE_WRITE | PTE_ATTRINDX(MT_NORMAL),
    # _PROT_DEFAULT = PTE_TYPE_PAGE | PTE_AF | PTE_SHARED, PTE_WRITE = PTE_DBM (51), MT_NORMAL = 0
    p = pgprots("6.6")
    assert p["PAGE_KERNEL"] == PTE_TYPE_PAGE | PTE_AF | PTE_SHARED | PTE_PXN | PTE_UXN | (1 << 51)
    assert p["PAGE_KERNEL_RO"] == PTE_TYPE_PAGE | PTE_AF | PTE_SHARED | PTE_PXN | PTE_UXN | PTE_RDONLY
    assert p["PAGE_KERNEL_RX"] == p["PAGE_KERNEL_ROX"] == PTE_TYPE_PAGE | PTE_AF | PTE_SHARED | PTE_UXN | PTE_RDONLY
    assert p["PAGE_KERNEL_EXEC"] == PTE_TYPE_PAGE | PTE_AF | PTE_SHARED | PTE_UXN | (1 << 51)
    # PAGE_NONE = ((_PAGE_DEFAULT) & ~PTE_VALID) | PTE_PROT_NONE | PTE_RDONLY | PTE_NG | PTE_PXN | PTE_UXN
    assert p["PAGE_NONE"] == 2 | PTE_AF | PTE_SHARED | (1 << 58) | PTE_RDONLY | PTE_NG | PTE_PXN | PTE_UXN
    # PAGE_SHARED = _PAGE_DEFAULT | PTE_USER | PTE_RDONLY | PTE_NG | PTE_PXN | PTE_UXN | PTE_WRITE
    assert p["PAGE_SHARED"] == (PTE_TYPE_PAGE | PTE_AF | PTE_SHARED | PTE_USER | PTE_RDONLY | PTE_NG | PTE_PXN
                                | PTE_UXN | (1 << 51))
    assert p["PAGE_READONLY_EXEC"] == PTE_TYPE_PAGE | PTE_AF | PTE_SHARED | PTE_USER | PTE_RDONLY | PTE_NG | PTE_PXN
    assert p["PAGE_COPY"] == p["PAGE_READONLY"]  # __P010 PAGE_READONLY
    # 3.17 pgtable.h: PAGE_KERNEL = _PAGE_DEFAULT | PTE_PXN | PTE_UXN | PTE_DIRTY | PTE_WRITE (bit 57),
    # _PAGE_DEFAULT = PROT_DEFAULT | PTE_ATTRINDX(MT_NORMAL) with MT_NORMAL 4
    q = pgprots("3.17")
    assert q["PAGE_KERNEL"] == PTE_TYPE_PAGE | PTE_AF | PTE_SHARED | (4 << 2) | PTE_PXN | PTE_UXN | PTE_DIRTY | (1 << 57)
    assert q["PAGE_NONE"] == PTE_AF | PTE_SHARED | (4 << 2) | (1 << 58) | PTE_PXN | PTE_UXN
    assert q["PAGE_COPY"] == PTE_TYPE_PAGE | PTE_AF | PTE_SHARED | (4 << 2) | PTE_USER | PTE_NG | PTE_PXN | PTE_UXN
    # 3.11 pgtable.h: PAGE_NONE = __pgprot_modify(pgprot_default, PTE_TYPE_MASK, PTE_PROT_NONE (bit 2) | PTE_RDONLY
    # | PTE_PXN | PTE_UXN); PAGE_KERNEL = _MOD_PROT(pgprot_default, PTE_PXN | PTE_UXN | PTE_DIRTY)
    r = pgprots("3.11")
    assert r["PAGE_NONE"] == PTE_AF | PTE_SHARED | (4 << 2) | (1 << 2) | PTE_RDONLY | PTE_PXN | PTE_UXN
    assert r["PAGE_KERNEL"] == PTE_TYPE_PAGE | PTE_AF | PTE_SHARED | (4 << 2) | PTE_PXN | PTE_UXN | PTE_DIRTY
    assert r["PAGE_KERNEL_RX"] == r["PAGE_KERNEL_EXEC"]  # no read-only kernel text before 4.0


def test_boot_page_sizes_and_plan():
    def sizes(k, cmdline=""):
        return ARCH.boot_page_sizes(MachineSpec.make("arm64", kernel=k, ram="1G", cmdline=cmdline))
    assert sizes("3.10") == (2 << 20, 4096)
    assert sizes("4.14") == (1 << 30, 2 << 20, 4096)
    assert sizes("4.14", "debug_pagealloc=on") == (4096,)
    assert sizes("6.6") == (4096,)  # rodata=full by default
    assert sizes("6.6", "rodata=on") == (1 << 30, 2 << 20, 4096)
    spec = MachineSpec.make("arm64", kernel="6.6", ram="1G")
    plan = ARCH.boot_plan(spec, ARCH.layout(spec))
    assert (plan.root_symbol, plan.root_section, plan.copies_kernel_pgd) == ("swapper_pg_dir", "rodata", False)
    assert (plan.direct_map_writer, plan.image_writer, plan.fixmap_writer) == ("map_mem", "map_kernel",
                                                                               "early_fixmap_init")


# ---- hand-made kernels and walks ---------------------------------------------------------------

def fake_kernel(kernel="6.6", va="48"):
    spec = MachineSpec.make("arm64", kernel=kernel, ram="1G", options={"va_bits": va})
    layout = ARCH.layout(spec)
    paging = ARCH.paging(spec)
    # what the oops asks of the kernel beyond its tables: no module, no taint, no symbol
    return SimpleNamespace(spec=spec, layout=layout, paging=paging, pgd=0x41000000, pgd_va=None,
                           pgtable=None, modules_linked_in=lambda: "Modules linked in:",
                           print_tainted=lambda: "Not tainted", symbol_at=lambda address: None)


def fake_walk(paging, raws, table0=0x41000000, va=0xFFFF000000123456, phys=None, page_size=4096, mapped=True):
    steps = []
    table = table0
    for li, raw in enumerate(raws):
        lv = paging.levels[li]
        idx = (va >> lv.shift) & (lv.entries - 1)
        steps.append(SimpleNamespace(level=lv, table=table, index=idx, entry_addr=table + 8 * idx, raw=raw))
        table = raw & 0x0000FFFFFFFFF000
    return SimpleNamespace(steps=steps, phys=phys, page_size=page_size, mapped=mapped)


def test_crash_vtop_lines_4_levels():
    k = fake_kernel()
    k.pgd_va = k.layout.symbols["swapper_pg_dir"]
    pte = 0x0068000040123703
    walk = fake_walk(k.paging, [0x41001003, 0x41002003, 0x41003003, pte], phys=0x40123456)
    lines = vtop_lines(k, walk, 0x41000000)
    sw = k.layout.symbols["swapper_pg_dir"]
    assert lines[0] == f"PAGE DIRECTORY: {sw:x}"
    assert lines[1] == f"   PGD: {sw:x} => 41001003"  # PAGE_OFFSET is index 0 of the TTBR1 root
    # lower tables through PTOV(): (pa - PHYS_OFFSET) | PAGE_OFFSET
    assert lines[2] == f"   PUD: {0xFFFF000001001000:x} => 41002003"
    assert lines[4].startswith("   PTE: ffff000001003") and lines[4].endswith("=> 68000040123703")
    assert lines[5] == "  PAGE: 40123000"
    assert lines[6] == ""
    assert lines[7] == "     PTE        PHYSICAL  FLAGS"
    assert lines[8] == "68000040123703  40123000  (VALID|SHARED|AF|PXN|UXN)"


def test_crash_vtop_block_and_3_levels():
    k = fake_kernel("4.9", "39")
    block = 0x00E8000040000711  # a 2 MiB section
    walk = fake_walk(k.paging, [0x40FFF003, block], va=0xFFFFFFC000123456, phys=0x40123456, page_size=2 << 20)
    lines = vtop_lines(k, walk, 0x40FFF000)
    assert [ln.split(":")[0].strip() for ln in lines[1:3]] == ["PGD", "PMD"]
    assert lines[3] == "  PAGE: 40000000  (2MB)"
    # an empty pmd: the walk stops, nothing after the line
    empty = fake_walk(k.paging, [0x40FFF003, 0], va=0xFFFFFFC000123456, mapped=False)
    assert vtop_lines(k, empty, 0x40FFF000)[-1].endswith("=> 0")


def test_translate_pte_prot_none_and_no_mapping():
    codec = fake_kernel("5.4").paging.codec
    none = 0x40123000 | pgprots("5.4")["PAGE_NONE"]
    head, row = translate_pte(codec, 3, none)
    assert head.endswith("FLAGS") and "(PROT_NONE|RDONLY|SHARED|AF|NG|PXN|UXN)" in row
    assert translate_pte(codec, 3, 0)[1].endswith("(no mapping)")


def test_ptdump_line_and_markers():
    k = fake_kernel("6.6")
    fmt = ptdump_format(k.layout)
    s = k.layout.symbols
    names = [n for _a, n, _m in fmt.markers]
    assert names[:4] == ["Linear Mapping start", "Linear Mapping end", "Modules start", "Modules end"]
    assert fmt.ranges == [(s["PAGE_OFFSET"], None)] and fmt.debugfs == "/sys/kernel/debug/kernel_page_tables"
    prot = fmt.prot(4, 0x40000000 | pgprots("6.6")["PAGE_KERNEL"])
    line = fmt.line(0xFFFF000000000000, 0xFFFF000000200000, 2 << 20, 0x40000000, prot, 4)
    # "0x%016lx-0x%016lx   " "%9lu%c %s" then the words, each after a blank
    # words: " " (valid) "   " (USR clear) RW NX SHD AF "  " (nG) "   " (CON) "   " (table bit set: a page)
    # UXN "  " (GP), MEM/NORMAL
    assert line == ("0xffff000000000000-0xffff000000200000           2M PTE       RW NX SHD AF            UXN   "
                    " MEM/NORMAL")
    assert fmt.line(0xFFFF000000000000, 0xFFFF000040000000, 1 << 30, 0, 0, 2) == \
        "0xffff000000000000-0xffff000040000000           1G PUD"
    old = ptdump_format(fake_kernel("4.9", "39").layout)
    assert [n for _a, n, _m in old.markers][0] == "Modules start" and old.level_names[2] == "PGD"
    m69 = [n for _a, n, _m in ptdump_format(fake_kernel("6.9").layout).markers]
    assert m69.index("vmemmap start") < m69.index("PCI I/O start")


class StubPgtable:
    def __init__(self, walk):
        self._walk = walk

    def walk(self, root, va):
        return self._walk


def test_oops_6_x():
    k = fake_kernel("6.6")
    k.pgtable = StubPgtable(fake_walk(k.paging, [0]))
    f = Fault(address=0, access="read", user=False, kind=NOT_PRESENT, level=0)
    f.code = k.paging.codec.fault_code(f)
    text = oops_report(k, f, 1).splitlines()
    assert text[0] == "Unable to handle kernel NULL pointer dereference at virtual address 0000000000000000"
    assert text[1:7] == ["Mem abort info:", "  ESR = 0x0000000096000004", "  EC = 0x25: DABT (current EL), IL = 32 bits",
                         "  SET = 0, FnV = 0", "  EA = 0, S1PTW = 0", "  FSC = 0x04: level 0 translation fault"]
    # show_pte() of a TTBR0 address with no user mm (a kernel thread)
    assert "[0000000000000000] user address but active_mm is swapper" in text
    assert "Internal error: Oops: 0000000096000004 [#1] PREEMPT SMP" in text
    g = Fault(address=0xFFFF800090000000, access="read", user=False, kind=NOT_PRESENT, level=1)
    g.code = k.paging.codec.fault_code(g)
    k.pgtable = StubPgtable(fake_walk(k.paging, [0x41001003, 0], va=g.address))
    text = oops_report(k, g, 2).splitlines()
    assert text[0] == "Unable to handle kernel paging request at virtual address ffff800090000000"
    assert "swapper pgtable: 4k pages, 48-bit VAs, pgdp=0000000041000000" in text
    assert ("[ffff800090000000] pgd=0000000041001003, p4d=0000000041001003, pud=0000000000000000") in text
    assert "Internal error: Oops: 0000000096000005 [#2] PREEMPT SMP" in text


def test_oops_4_x_and_3_x_wording():
    k = fake_kernel("4.9", "39")
    k.pgtable = StubPgtable(fake_walk(k.paging, [0x40FFF003, 0x40FFE003, 0x0040000040080783], va=0xFFFFFFC000080000))
    f = Fault(address=0xFFFFFFC000080000, access="write", user=False, kind=PROTECTION, level=2)
    f.code = k.paging.codec.fault_code(f)
    text = oops_report(k, f, 2).splitlines()
    assert text[0] == "Unable to handle kernel paging request at virtual address ffffffc000080000"
    assert text[1].startswith("pgd = ")
    assert text[2] == ("[ffffffc000080000] *pgd=0000000040fff003, *pud=0000000040fff003, *pmd=0000000040ffe003, "
                       "*pte=0040000040080783")
    assert text[3] == "Internal error: Oops: 9600004f [#2] PREEMPT SMP"


def test_segfault_lines():
    proc = SimpleNamespace(comm="sh", pid=42, pgd=0x42000000)
    k = fake_kernel("6.6")
    f = Fault(address=0x1000, access="write", user=True, kind=NOT_PRESENT, level=3, process=proc)
    f.code = k.paging.codec.fault_code(f)
    assert segfault_report(k, f) == ("sh[42]: unhandled exception: DABT (lower EL), ESR 0x0000000092000047, "
                                     "level 3 translation fault")
    # a kernel address is reported to user space as a level 0 translation fault (set_thread_esr)
    g = Fault(address=0xFFFF000000000000, access="read", user=True, kind=PROTECTION, level=3, process=proc)
    g.code = k.paging.codec.fault_code(g)
    assert "ESR 0x0000000092000004, level 0 translation fault" in segfault_report(k, g)
    old = fake_kernel("4.9", "39")
    h = Fault(address=0x1000, access="read", user=True, kind=NOT_PRESENT, level=0, process=proc)
    h.code = old.paging.codec.fault_code(h)
    assert segfault_report(old, h) == "sh[42]: unhandled level 1 translation fault (11) at 0x00001000, esr 0x92000005"


@pytest.mark.parametrize("kernel", ["3.7", "4.9", "5.4", "6.6", "6.10"])
def test_fault_in_kernel_space(kernel):
    L = fake_kernel(kernel, "39").layout
    assert ARCH.fault_in_kernel_space(L, 0xFFFFFF8000000000)
    assert not ARCH.fault_in_kernel_space(L, 0x0000007FFFFFFFFF)
    assert KernelVersion.parse(kernel) >= "3.7"
