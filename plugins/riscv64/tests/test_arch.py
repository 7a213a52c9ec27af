"""The arch object: protections, boot plans, era rules, output formats, registration."""

from __future__ import annotations

import ast
import pathlib
from array import array
from types import SimpleNamespace

import pytest

from mmemu.arch import REQUIRED_PGPROTS, REQUIRED_SYMBOLS
from mmemu.errors import ConfigError
from mmemu.faults import Fault
from mmemu.layout import MachineSpec
import mmemu
import mmemu_riscv64
from mmemu_riscv64 import ARCH
from mmemu_riscv64.pgtable_bits import pgprots

GiB, MiB, KiB = 1 << 30, 1 << 20, 1 << 10
V, R, W, X, U, G, A, D = 1, 2, 4, 8, 16, 32, 64, 128


def spec(version="6.6", ram="1G", mmu="sv39", cmdline=""):
    return MachineSpec.make("riscv64", version, ram, cmdline=cmdline, options={"mmu": mmu})


# ---- protections: arch/riscv/include/asm/pgtable.h, pgtable-bits.h ---------------------------------

def test_pgprots_have_the_bits_the_kernel_source_says():
    # #define _PAGE_BASE (_PAGE_PRESENT | _PAGE_ACCESSED | _PAGE_USER)
    # #define PAGE_READ __pgprot(_PAGE_BASE | _PAGE_READ)
    # #define PAGE_WRITE __pgprot(_PAGE_BASE | _PAGE_READ | _PAGE_WRITE)
    # #define PAGE_EXEC __pgprot(_PAGE_BASE | _PAGE_EXEC)
    # #define PAGE_READ_EXEC __pgprot(_PAGE_BASE | _PAGE_READ | _PAGE_EXEC)
    # #define PAGE_WRITE_EXEC __pgprot(_PAGE_BASE | _PAGE_READ | _PAGE_EXEC | _PAGE_WRITE)
    # #define PAGE_COPY PAGE_READ ... PAGE_SHARED PAGE_WRITE, PAGE_SHARED_EXEC PAGE_WRITE_EXEC
    for v in ("4.15", "5.4", "5.10", "6.6"):
        p = pgprots(v)
        base = V | A | U
        assert p["PAGE_READ"] == p["PAGE_COPY"] == base | R
        assert p["PAGE_SHARED"] == base | R | W
        assert p["PAGE_SHARED_EXEC"] == base | R | X | W
        assert p["PAGE_READ_EXEC"] == base | R | X
        assert all(name in p for name in REQUIRED_PGPROTS)
    # 5.4 (read): #define _PAGE_KERNEL (_PAGE_READ | _PAGE_WRITE | _PAGE_PRESENT | _PAGE_ACCESSED | _PAGE_DIRTY)
    #             #define PAGE_NONE __pgprot(_PAGE_PROT_NONE), #define _PAGE_PROT_NONE _PAGE_READ
    #             #define PAGE_COPY_EXEC PAGE_EXEC
    p = pgprots("5.4")
    assert p["PAGE_KERNEL"] == R | W | V | A | D == 0xC7
    assert p["PAGE_KERNEL_EXEC"] == 0xCF
    assert p["PAGE_NONE"] == R
    assert p["__P110"] == V | A | U | X  # the kernel's PAGE_COPY_EXEC (PAGE_EXEC)
    # mmemu's PAGE_COPY_EXEC is protection_map[VM_EXEC | VM_WRITE | VM_READ]: __P111, PAGE_COPY_READ_EXEC
    assert p["PAGE_COPY_EXEC"] == p["__P111"] == p["PAGE_COPY_READ_EXEC"] == V | A | U | R | X
    assert "PAGE_KERNEL_READ" not in p
    # 5.14 ('riscv: Use global mappings for kernel pages'): _PAGE_KERNEL gains _PAGE_GLOBAL
    assert pgprots("5.13")["PAGE_KERNEL"] == 0xC7 and pgprots("5.14")["PAGE_KERNEL"] == 0xE7
    # 5.17 ('Adjust PAGE_PROT_NONE'): #define _PAGE_PROT_NONE _PAGE_GLOBAL,
    #   #define PAGE_NONE __pgprot(_PAGE_PROT_NONE | _PAGE_READ)
    assert pgprots("5.17")["PAGE_NONE"] == G | R
    # 6.x: #define PAGE_KERNEL_READ __pgprot(_PAGE_KERNEL & ~_PAGE_WRITE),
    #      #define PAGE_KERNEL_READ_EXEC __pgprot((_PAGE_KERNEL & ~_PAGE_WRITE) | _PAGE_EXEC),
    #      #define PAGE_COPY_EXEC PAGE_READ_EXEC (6.4)
    p = pgprots("6.6")
    assert p["PAGE_KERNEL_RO"] == p["PAGE_KERNEL_READ"] == 0xE3
    assert p["PAGE_KERNEL_RX"] == p["PAGE_KERNEL_READ_EXEC"] == 0xEB
    assert p["PAGE_COPY_EXEC"] == p["PAGE_READ_EXEC"] == p["__P110"] == p["__P111"]
    assert pgprots("6.3")["__P110"] == V | A | U | X
    assert p["PAGE_TABLE"] == V  # #define _PAGE_TABLE _PAGE_PRESENT
    assert dict(ARCH.pgprot)["PAGE_KERNEL"] == 0xE7


def test_contract():
    ARCH.check_contract()
    assert ARCH.name == "riscv64" and ARCH.elf_machine == "EM_RISCV"
    assert ARCH.check_options(MachineSpec.make("riscv64", "6.6", "1G")) == {"mmu": "sv39"}
    with pytest.raises(ConfigError, match="not one of"):
        ARCH.check_options(MachineSpec.make("riscv64", "6.6", "1G", options={"mmu": "sv32"}))
    with pytest.raises(ConfigError, match="no option"):
        ARCH.check_options(MachineSpec.make("riscv64", "6.6", "1G", options={"levels": "5"}))
    for v, mmu in (("4.15", "sv39"), ("5.17", "sv48"), ("6.6", "sv57")):
        L = ARCH.layout(spec(v, mmu=mmu))
        assert all(name in L.symbols for name in REQUIRED_SYMBOLS)
        for name in ("PHYS_OFFSET", "KERNEL_PGD_BOUNDARY", "TASK_SIZE", "STACK_TOP", "ELF_ET_DYN_BASE"):
            assert name in L.symbols
        # an era without a fixmap (before 5.2) has no FIXADDR_TOP/FIXADDR_START and an empty enum
        assert ("FIXADDR_START" in L.symbols) == ("FIXADDR_TOP" in L.symbols) == (L.kernel >= "5.2") == bool(L.fixmap)
        assert ARCH.paging(spec(v, mmu=mmu)).name == L.paging
    with pytest.raises(ConfigError):
        ARCH.paging(spec("5.10", mmu="sv57"))


def test_paging_codec_follows_the_era():
    assert ARCH.paging(spec("5.10")).codec.prot_none == R
    assert ARCH.paging(spec("6.6")).codec.prot_none == G
    assert ARCH.paging(spec("6.6")) is ARCH.paging(spec("6.1"))


def test_boot_page_sizes_per_era():
    assert ARCH.boot_page_sizes(spec("4.15")) == (2 * MiB, 4 * KiB)  # setup_vm: swapper_pmd, 2 MiB
    assert ARCH.boot_page_sizes(spec("5.10")) == (2 * MiB, 4 * KiB)  # best_map_size(base, size), aligned bank
    assert ARCH.boot_page_sizes(spec("5.10", ram="1025M")) == (4 * KiB,)  # unaligned bank: 4 KiB for all of it
    assert ARCH.boot_page_sizes(spec("6.4")) == (1 * GiB, 2 * MiB, 4 * KiB)  # PGDIR leaves in Sv39
    assert ARCH.boot_page_sizes(spec("6.7")) == (2 * MiB, 4 * KiB)  # no PGD leaves
    assert ARCH.boot_page_sizes(spec("6.7", mmu="sv48")) == (1 * GiB, 2 * MiB, 4 * KiB)
    assert ARCH.boot_page_sizes(spec("6.7", mmu="sv57")) == (512 * GiB, 1 * GiB, 2 * MiB, 4 * KiB)
    assert ARCH.boot_page_sizes(spec("6.10", cmdline="debug_pagealloc=on")) == (4 * KiB,)


def test_boot_plans_per_era():
    def plan(v, mmu="sv39"):
        s = spec(v, mmu=mmu)
        return ARCH.boot_plan(s, ARCH.layout(s))

    p = plan("4.15")
    assert (p.root_symbol, p.root_section) == ("swapper_pg_dir", "bss")
    assert (p.direct_map_writer, p.image_writer) == ("setup_vm", "setup_vm")
    assert plan("5.4").direct_map_writer == "setup_vm_final"
    assert plan("5.10").image_writer == "mark_rodata_ro"
    assert plan("5.13").image_writer == "create_kernel_page_table"
    assert plan("6.4").direct_map_writer == "create_linear_mapping_range"
    assert plan("6.4").populate == () and plan("6.4").copies_kernel_pgd
    # the linear map: PAGE_KERNEL_EXEC until STRICT_KERNEL_RWX (5.7), then PAGE_KERNEL
    assert [plan(v).direct_map_prot for v in ("4.15", "5.6", "5.7", "5.13", "6.6")] == \
        ["PAGE_KERNEL_EXEC", "PAGE_KERNEL_EXEC", "PAGE_KERNEL", "PAGE_KERNEL", "PAGE_KERNEL"]
    # the fixmap: one pte table (fixmap_pte) for the 2 MiB holding FIXADDR_START; none before 5.2
    assert plan("4.15").fixmap_range is None and plan("5.1").fixmap_range is None
    for v, mmu in (("5.2", "sv39"), ("5.4", "sv39"), ("6.6", "sv48"), ("6.6", "sv57")):
        L = ARCH.layout(spec(v, mmu=mmu))
        lo, hi = plan(v, mmu).fixmap_range
        assert hi - lo == 2 * MiB and lo % (2 * MiB) == 0 and lo <= L["FIXADDR_START"] < hi
    p = plan("6.5")
    L = ARCH.layout(spec("6.5"))
    assert p.populate == ((L["VMALLOC_START"], L["VMALLOC_END"], 1, "preallocate_pgd_pages_range"),
                          (L["MODULES_VADDR"], L["MODULES_END"], 1, "preallocate_pgd_pages_range"))
    assert not ARCH.syncs_kernel_mappings(spec("6.6"))


# ---- vmalloc_fault, with a stand-in kernel ------------------------------------------------------------

class FakeTables:
    """Two page directories of one entry each, enough for vmalloc_fault."""

    def __init__(self, master_entry: int, mapped: bool):
        self.tables = {0x1000: array("Q", [0] * 512), 0x2000: array("Q", [0] * 512)}
        self.master_entry = master_entry
        self.mapped = mapped
        self.writes = []

    def entries(self, table, li):
        return self.tables[table]

    def set_entry(self, table, li, index, value, *, writer, va=0, kind="set_entry"):
        old = self.tables[table][index]
        self.tables[table][index] = value
        self.writes.append((table, index, value, writer, kind))
        return old

    def walk(self, root, va):
        return SimpleNamespace(mapped=self.mapped)


def fake_kernel(version, master_entry=0x23F83401, mapped=True):
    s = spec(version)
    pt = FakeTables(master_entry, mapped)
    k = SimpleNamespace(pgd=0x1000, pgtable=pt, layout=ARCH.layout(s), paging=ARCH.paging(s), spec=s)
    top = k.paging.levels[0]
    for name in ("VMALLOC_START", "VMALLOC_END", "MODULES_VADDR"):
        if name in k.layout.symbols:
            pt.tables[0x1000][(k.layout[name] >> top.shift) & 511] = master_entry
    return k, (k.layout["VMALLOC_START"] >> top.shift) & 511


def test_vmalloc_fault_copies_the_pgd_entry():
    k, index = fake_kernel("5.10")
    proc = SimpleNamespace(pgd=0x2000)
    f = Fault(k.layout["VMALLOC_START"] + 0x1234, "read", False, process=proc)
    assert ARCH.kernel_fault_fixup(k, f) == "vmalloc_fault"
    assert k.pgtable.tables[0x2000][index] == 0x23F83401
    assert k.pgtable.writes[0][3:] == ("vmalloc_fault", "set_pgd")
    # 5.10: 'addr <= VMALLOC_END' with VMALLOC_END PAGE_OFFSET - 1; 5.17+: 'addr < VMALLOC_END' (PAGE_OFFSET)
    assert ARCH.kernel_fault_fixup(k, Fault(k.layout["VMALLOC_END"], "read", False, process=proc)) == "vmalloc_fault"
    k17, _ = fake_kernel("5.17")
    assert ARCH.kernel_fault_fixup(k17, Fault(k17.layout["VMALLOC_END"], "read", False, process=proc)) is None
    # 5.13-6.4: the module area too
    assert ARCH.kernel_fault_fixup(k17, Fault(k17.layout["MODULES_VADDR"], "read", False, process=proc)) == \
        "vmalloc_fault"
    # user mode, or outside vmalloc: not vmalloc_fault's
    assert ARCH.kernel_fault_fixup(k, Fault(k.layout["VMALLOC_START"], "read", True, process=proc)) is None
    assert ARCH.kernel_fault_fixup(k, Fault(k.layout["PAGE_OFFSET"] + 0x1000, "read", False, process=proc)) is None


def test_vmalloc_fault_copies_then_oopses_when_init_mm_lacks_the_page():
    k, index = fake_kernel("5.13", mapped=False)
    proc = SimpleNamespace(pgd=0x2000)
    assert ARCH.kernel_fault_fixup(k, Fault(k.layout["VMALLOC_START"], "write", False, process=proc)) is None
    assert k.pgtable.tables[0x2000][index] == 0x23F83401  # set_pgd happened before the checks


def test_no_vmalloc_fault_without_a_master_entry_or_from_6_5():
    k, _ = fake_kernel("5.10", master_entry=0)
    proc = SimpleNamespace(pgd=0x2000)
    assert ARCH.kernel_fault_fixup(k, Fault(k.layout["VMALLOC_START"], "read", False, process=proc)) is None
    k, _ = fake_kernel("6.5")
    assert ARCH.kernel_fault_fixup(k, Fault(k.layout["VMALLOC_START"], "read", False, process=proc)) is None


# ---- ptdump ------------------------------------------------------------------------------------------

def test_ptdump_format_markers_and_lines():
    L = ARCH.layout(spec("6.6"))
    fmt = ARCH.ptdump_format(L)
    names = [m[1] for m in fmt.markers]
    assert names == ["Fixmap start", "Fixmap end", "PCI I/O start", "PCI I/O end", "vmemmap start", "vmemmap end",
                     "vmalloc() area", "vmalloc() end", "Linear mapping", "Modules/BPF mapping", "Kernel mapping"]
    assert fmt.ranges == [(0xFFFFFFC000000000, None)]  # KERN_VIRT_START: (-(BIT(VA_BITS)) + TASK_SIZE)
    assert fmt.level_names == ("PGD", "P4D", "PUD", "PMD", "PTE")  # CONFIG_PGTABLE_LEVELS 5
    assert fmt.debugfs == "/sys/kernel/debug/kernel_page_tables"
    # dump_addr(): ADDR_FORMAT "-" ADDR_FORMAT "   ", " " ADDR_FORMAT " ", "%9lu%c %s"; dump_prot(): " %s" each
    line = fmt.line(0xFFFFFFD800000000, 0xFFFFFFD800200000, 2 * MiB, 0x80000000, 0xE7, 3)
    assert line == ("0xffffffd800000000-0xffffffd800200000    0x0000000080000000         2M PMD"
                    "     D A G . . W R V")
    assert fmt.line(0, 0x1000, 0x1000, 0, 0, 4) is None  # note_page prints nothing when current_prot is 0
    assert fmt.marker_loop  # 'while (addr >= st->marker[1].start_address)': every marker crossed
    # pre-5.17: CONFIG_PGTABLE_LEVELS 3: the folded levels are named PGD
    assert ARCH.ptdump_format(ARCH.layout(spec("5.10"))).level_names == ("PGD", "PGD", "PGD", "PMD", "PTE")
    with pytest.raises(ConfigError, match="5.7"):
        ARCH.ptdump_format(ARCH.layout(spec("5.4")))


def test_ptdump_svpbmt_columns():
    fmt = ARCH.ptdump_format(ARCH.layout(spec("6.11")))
    line = fmt.line(0xFFFFFFFF80000000, 0xFFFFFFFF80200000, 2 * MiB, 0x80200000, 0xEB | (1 << 8), 3)
    assert line.endswith(" .   ..   RSW(1) D A G . X . R V")


# ---- crash vtop ---------------------------------------------------------------------------------------

def _step(level, li, table, index, raw):
    return SimpleNamespace(level=level, li=li, table=table, index=index, entry_addr=table + 8 * index, raw=raw)


def test_vtop_lines_sv39():
    s = spec("6.6")
    mode = ARCH.paging(s)
    lv = mode.levels
    k = SimpleNamespace(pgd=0x81380000, pgd_va=0xFFFFFFFF81380000, paging=mode, layout=ARCH.layout(s))
    va = 0xFFFFFFC800001000
    walk = SimpleNamespace(steps=[_step(lv[0], 0, 0x81380000, 288, 0x23F83001),
                                  _step(lv[1], 1, 0x8FE0C000, 0, 0x2058D001),
                                  _step(lv[2], 2, 0x81634000, 1, 0x2058C4E7)],
                           phys=0x81631000, page_size=4096, mapped=True, va=va)
    assert ARCH.vtop_lines(k, walk, k.pgd) == [
        "  PGD: ffffffff81380900 => 23f83001",
        "  PMD: 000000008fe0c000 => 000000002058d001",
        "  PTE: 81634000 => 2058c4e7",
        " PAGE: 0000000081631000",
        "",
        "  PTE     PHYSICAL  FLAGS",
        "2058c4e7  81631000  (PRESENT|READ|WRITE|GLOBAL|ACCESSED|DIRTY)",
    ]
    # an empty entry: 'invalid'
    walk.steps = walk.steps[:1]
    walk.steps[0].raw = 0
    walk.mapped = False
    assert ARCH.vtop_lines(k, walk, k.pgd) == ["  PGD: ffffffff81380900 => 0", "invalid"]


# ---- oops, segfault ------------------------------------------------------------------------------------

def test_oops_and_segfault_text():
    for v, first, csr in (("4.15", "sepc: ", "sstatus: "), ("5.10", "sepc: ", "status: "), ("6.6", "epc : ", "status: ")):
        s = spec(v)
        k = SimpleNamespace(spec=s, layout=ARCH.layout(s), paging=ARCH.paging(s), pgd=0x1000, cpus=[],
                            modules_linked_in=lambda: "Modules linked in:", symbol_at=lambda a: None,
                            print_tainted=lambda: "Not tainted")
        proc = SimpleNamespace(comm="sh", pid=42, pgd=0x2000, find_vma=lambda a: None)
        f = Fault(0x10, "write", False, process=proc, ip=0xFFFFFFFF80001234, sp=0xFFFFFFC800010000)
        text = ARCH.oops_report(k, f, 1)
        lines = text.splitlines()
        assert lines[0] == "Unable to handle kernel NULL pointer dereference at virtual address 0000000000000010"
        assert lines[1] == "Oops [#1]" and lines[2] == "Modules linked in:"
        assert lines[3] == f"CPU: 0 PID: 42 Comm: sh Not tainted {v}.0 #1"
        assert any(line.startswith(first + "ffffffff80001234 ra : 0000000000000000 sp : ffffffc800010000")
                   for line in lines)
        assert any(line.startswith(csr) and line.endswith("000000000000000f") for line in lines)
        assert ("Hardware name: riscv-virtio,qemu (DT)" in lines) == (v >= "5.11")
        assert lines[-1] == "---[ end trace 0000000000000000 ]---"
        u = Fault(0xDEAD000, "read", True, process=proc, ip=0x10000, sp=0x3FFFFFF000)
        assert ARCH.segfault_report(k, u) == "sh[42]: unhandled signal 11 code 0x1 at 0x000000000dead000"


# ---- the plugin as a plugin ------------------------------------------------------------------------------

def test_registration_hook():
    assert mmemu_riscv64.mmemu_register_arch() == [ARCH]
    try:
        from mmemu.plugins import ArchRegistry, get_plugin_manager
    except Exception as exc:  # the core may be mid-rewrite
        pytest.skip(f"mmemu.plugins does not import: {exc}")
    pm = get_plugin_manager(autoload=False, plugins=[mmemu_riscv64])
    assert ArchRegistry(pm).get("riscv64") is ARCH


#: the core's contract for plugins (mmemu.PUBLIC_MODULES: its relocation tables included)
ALLOWED = set(mmemu.PUBLIC_MODULES)


def test_imports_only_the_public_core():
    pkg = pathlib.Path(mmemu_riscv64.__file__).parent
    for path in pkg.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            for name in names:
                if name.split(".")[0].startswith("mmemu"):
                    assert name in ALLOWED or name.startswith("mmemu_riscv64"), (path.name, name)
                    assert not name.startswith("mmemu_x86")


def test_boots_through_the_core():
    """A whole boot through mmemu's core, where it imports (it is being rewritten)."""
    try:
        import mmemu
        from mmemu.plugins import get_plugin_manager
    except Exception as exc:
        pytest.skip(f"the core does not import: {exc}")
    pm = get_plugin_manager(autoload=False, plugins=[mmemu_riscv64])
    for v, mmu in (("4.15", "sv39"), ("5.10", "sv39"), ("6.6", "sv48"), ("6.11", "sv57")):
        try:
            k = mmemu.boot(arch="riscv64", kernel=v, ram="128M", options={"mmu": mmu}, plugin_manager=pm)
        except (ImportError, AttributeError, TypeError) as exc:
            pytest.skip(f"the core cannot boot right now: {exc!r}")
        w = k.pgtable.walk(k.pgd, k.layout["PAGE_OFFSET"] + 0x100000)
        assert w.mapped and w.phys == k.layout["PHYS_OFFSET"] + 0x100000
        text = k.layout.image[0]
        wt = k.pgtable.walk(k.pgd, text.virt)
        assert wt.mapped and wt.phys == text.phys
        if v >= "5.7":
            from mmemu.render.ptdump import ptdump
            dump = ptdump(k).splitlines()
            # every marker crossed is printed, ranges without protection are not
            i = dump.index("---[ Linear mapping ]---")
            assert dump[i + 1].startswith(f"0x{k.layout['PAGE_OFFSET']:016x}-")
            assert dump[:2] == ["---[ Fixmap start ]---", "---[ Fixmap end ]---"]
            assert dump[-1].endswith("D A G . . W R V")  # the kernel's data and bss, read-write
