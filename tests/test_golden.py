"""Golden files: mmemu's renderers against real output of the real tools and kernels.

Each file in tests/golden/ is a quotation (tests/golden/SOURCES.md says where from and which
kernel). Where mmemu can reproduce the state -- the same VMAs at the same addresses, the same
free-block counts, the same vmalloc areas, the same faulting access -- the test builds it
through mmemu's API and compares the text byte for byte (padding included). What mmemu does
not model (file-backed mappings, the register dump of an oops, a distribution's release
string) is left out of the comparison by name, never by loosening the match; the lines mmemu
prints in such places are checked against the kernel's printf format as a regex with its
widths.
"""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from mmemu.buddy import FrameAllocator
from mmemu.cpu import Cpu
from mmemu.errors import Oops
from mmemu.kernel import Kernel
from mmemu.kernel.process import MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE, PROT_EXEC, PROT_READ, PROT_WRITE
from mmemu.testing.modules import synthetic_module

GOLDEN = Path(__file__).resolve().parent / "golden"
PAGE = 4096
#: dmesg's "[    6.329289] " and a syslog level "<4>" (what printk.time=0 / dmesg -t leave out)
TIMESTAMP = re.compile(r"^(?:<(?P<level>\d)>)?\[[ \d.]+\] ")


def golden(name: str) -> str:
    return (GOLDEN / name).read_text()


def untimed(line: str) -> str:
    return TIMESTAMP.sub("", line, count=1)


def test_every_golden_file_has_its_source():
    sources = golden("SOURCES.md")
    for f in GOLDEN.glob("*.txt"):
        assert f"`{f.name}`" in sources, f"{f.name} is not described in tests/golden/SOURCES.md"


# -- /proc/PID/maps (fs/proc/task_mmu.c show_map_vma) --------------------------------------------------------------

#: show_vma_header_prefix: "%08lx-%08lx %c%c%c%c %08llx %02x:%02x %lu " then, for a name, seq_pad to
#: column 25 + 6 * sizeof(void *) (pad_len_spaces in 2.6)
MAPS_LINE = re.compile(r"^(?P<start>[0-9a-f]{8,16})-(?P<end>[0-9a-f]{8,16}) (?P<perms>[r-][w-][x-][ps]) "
                       r"(?P<offset>[0-9a-f]{8,}) (?P<dev>[0-9a-f]{2,}:[0-9a-f]{2,}) (?P<inode>\d+) (?P<name>.*)$")


def maps_lines(text: str) -> list[re.Match]:
    out = []
    for line in text.splitlines():
        m = MAPS_LINE.match(line)
        assert m, f"not a /proc/PID/maps line: {line!r}"
        out.append(m)
    return out


def anonymous(m: re.Match) -> bool:
    return m["dev"] == "00:00" and m["inode"] == "0"


def _prot(perms: str) -> int:
    return ((PROT_READ if perms[0] == "r" else 0) | (PROT_WRITE if perms[1] == "w" else 0)
            | (PROT_EXEC if perms[2] == "x" else 0))


def process_like(k, lines: list[re.Match], comm: str = "golden"):
    """A process whose VMAs are the anonymous ones of a real maps file: the heap by brk from
    the break the ELF loader chose, the rest (stack, vdso, vvar included) by mmap MAP_FIXED
    with their names; the stack exec set up is unmapped first. The gate area is the arch's."""
    p = k.create_process(comm)
    stack = p.vmas[-1]
    k.munmap(p, stack.vm_start, stack.vm_end - stack.vm_start)
    for m in lines:
        start, end = int(m["start"], 16), int(m["end"], 16)
        name = m["name"].strip()
        if not anonymous(m) or name == "[vsyscall]":
            continue
        if name == "[heap]":
            p.start_brk = p.brk = start  # binfmt_elf's set_brk (randomized: the real one's)
            assert k.brk(p, end) == end
        else:
            k.mmap(p, start, end - start, _prot(m["perms"]), MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, name=name)
    return p


@pytest.mark.parametrize("name,arch,kernel", [
    ("proc_maps_x86_64_5.4.txt", "x86_64", "5.4"),  # vsyscall=xonly (--xp), offsets 0
    ("proc_maps_i386_3.0.txt", "i386", "3.0"),  # 32-bit padding (column 49)
    ("proc_maps_i386_2.6.24.txt", "i386", "2.6.24"),  # offsets are vm_pgoff << PAGE_SHIFT, the stack's too
])
def test_proc_maps_anonymous_lines_are_the_kernels(name, arch, kernel, boot):
    """Every anonymous line of a real /proc/PID/maps (heap, stack, vdso, anonymous memory,
    the vsyscall gate), byte for byte, trailing blank of an unnamed mapping included, from a
    process given the same VMAs; the file-backed lines (mmemu has no files) are the only
    ones left out, and they have the same shape."""
    text = golden(name)
    lines = maps_lines(text)
    k = boot(arch=arch, kernel=kernel, ram="256M")
    p = process_like(k, lines)
    want = [m.string for m in lines if anonymous(m)]
    assert k.proc_maps(p) == "\n".join(want) + "\n"
    # the named lines, file-backed ones included, put the name at column 25 + 6 * sizeof(void *)
    col = 25 + 6 * k.ptr_size
    for m in lines:
        if m["name"].strip():
            at = len(m.string) - len(m["name"].lstrip())
            assert at == max(col, m.start("name")), m.string


def test_proc_maps_vsyscall_gate_line_by_era(boot):
    """The [vsyscall] line the kernel's own selftest expects (tools/testing/selftests/proc/
    proc-pid-vm.c): r-xp while vsyscall=emulate was the default, --xp (vsyscall=xonly) from 5.3;
    none on i386."""
    emulate, xonly = golden("proc_maps_vsyscall.txt").splitlines()
    for kernel, want in (("4.19", emulate), ("5.2", emulate), ("5.4", xonly), ("6.6", xonly)):
        k = boot(arch="x86_64", kernel=kernel, ram="256M")
        assert k.proc_maps(k.create_process("t")).splitlines()[-1] == want, kernel
    k = boot(arch="i386", kernel="6.6", ram="256M")
    assert "[vsyscall]" not in k.proc_maps(k.create_process("t"))


# -- /proc/buddyinfo (mm/vmstat.c frag_show_print) -----------------------------------------------------------------

#: frag_show_print: "Node %d, zone %8s " then "%6lu " per order (MAX_ORDER 11 columns on x86)
BUDDYINFO_LINE = re.compile(r"^Node (?P<node>\d+), zone (?P<zone>[ \w]{8}) (?P<counts>(?: *\d+ ){11})$")


def _buddyinfo_of(counts: dict[str, list[int]]) -> str:
    """mmemu's renderer fed the real counts (each free list holding that many blocks)."""
    zones = [SimpleNamespace(name=z, free_area=[range(n) for n in c]) for z, c in counts.items()]
    return FrameAllocator.buddyinfo(SimpleNamespace(_zone_list=zones))


def _counts(text: str) -> dict[str, list[int]]:
    out = {}
    for line in text.splitlines():
        fields = line.split()
        out[fields[3]] = [int(n) for n in fields[4:]]
    return out


def test_buddyinfo_i386_byte_for_byte():
    """A real 32-bit /proc/buddyinfo (DMA, Normal, HighMem), the trailing blank of "%6lu "
    included."""
    text = golden("buddyinfo_i386.txt")
    assert _buddyinfo_of(_counts(text)) == text
    assert all(BUDDYINFO_LINE.match(line) for line in text.splitlines())


def test_buddyinfo_x86_64_a_count_filling_the_column():
    """A real x86_64 one (DMA, DMA32, Normal) with a count of six digits that fills its %6lu
    column (235635 106198): the blank between columns is the format's. The quoted copy lost
    the trailing blank of each line (kept by the kernel: the renderer prints it)."""
    text = golden("buddyinfo_x86_64.txt")
    mine = _buddyinfo_of(_counts(text))
    assert [line.rstrip() for line in mine.splitlines()] == text.splitlines()
    assert all(line.endswith(" ") and BUDDYINFO_LINE.match(line) for line in mine.splitlines())


@pytest.mark.parametrize("arch", ["i386", "x86_64"])
def test_buddyinfo_of_a_booted_machine_has_the_kernels_format(arch, boot):
    k = boot(arch=arch, kernel="6.6", ram="1G")
    k.free_pages(k.get_free_pages(3), 3)
    text = k.frames.buddyinfo()
    zones = [BUDDYINFO_LINE.match(line)["zone"].strip() for line in text.splitlines()]
    assert zones == (["DMA", "Normal", "HighMem"] if arch == "i386" else ["DMA", "DMA32"])


# -- crash kmem -v (crash-utility memory.c, help.c help_kmem[]) ----------------------------------------------------

def _kmem_v_of(rows: list[list[str]], ptr_size: int) -> str:
    """mmemu's renderer fed the real areas (VMAP_AREA, VM_STRUCT, start, end)."""
    areas = [SimpleNamespace(lazy=False, kaddr=int(a, 16), vm=SimpleNamespace(kaddr=int(v, 16)), va_start=int(s, 16),
                             va_end=int(e, 16)) for a, v, s, _dash, e, _size in rows]
    # both quotations are of kernels with vmap_area_list (2.6.28+: crash's dump_vmap_area layout)
    return Kernel.kmem_v(SimpleNamespace(ptr_size=ptr_size, vmap_areas=areas, era=SimpleNamespace(vmap_area_list=True)))


@pytest.mark.parametrize("name,ptr_size", [("kmem_v_i386.txt", 4), ("kmem_v_x86_64.txt", 8)])
def test_kmem_v_byte_for_byte(name, ptr_size):
    """crash's own help text (a 32-bit kernel) and a real x86_64 session: the columns centred
    as crash's mkstring(CENTER) does, the SIZE right-aligned, from the same areas."""
    lines = [line for line in golden(name).splitlines() if not line.startswith("crash>") and line != "..."]
    rows = [line.split() for line in lines[1:]]
    assert _kmem_v_of(rows, ptr_size) == "\n".join(lines) + "\n"


def test_kmem_v_of_a_booted_machine_has_cashs_columns(boot):
    header = golden("kmem_v_i386.txt").splitlines()[1]
    row = re.compile(r"^[0-9a-f]{8}   [0-9a-f]{8}   [0-9a-f]{8} - [0-9a-f]{8}  [ \d]{7}$")
    k = boot(arch="i386", kernel="6.6", ram="1G")
    k.vmalloc(3 * PAGE)
    k.vmalloc(PAGE)
    lines = k.kmem_v().splitlines()
    assert lines[0] == header and len(lines) > 2 and all(row.match(line) for line in lines[1:])


# -- the oops (arch/x86/mm/fault.c show_fault_oops, dumpstack.c __die, lib/dump_stack.c) -------------------------

#: lib/dump_stack.c dump_stack_print_info: "CPU: %d PID: %d Comm: %.20s %s%s %s %.*s"
TASK_LINE = re.compile(r"^CPU: (?P<cpu>\d+) PID: (?P<pid>\d+) Comm: (?P<comm>.{1,20}) (?P<tainted>Not tainted|"
                       r"Tainted: [A-Z ]+) (?P<release>\S+) (?P<version>\S+)$")


#: arch/x86/kernel/process_64.c __show_regs (4.9+): "RIP: %04lx:%pS"; %pS is symbol+off/size [module], or the
#: raw address where no symbol covers it
RIP_LINE = re.compile(r"^RIP: 0010:(?:[\w.]+\+0x[0-9a-f]+/0x[0-9a-f]+(?: \[\w+\])?|0x[0-9a-f]+)$")


def test_oops_of_a_kernel_read_of_an_unmapped_address(boot):
    """A real 5.19 oops (a module's init reading 0xdeadbeef, insmod as the task, the out-of-
    tree module tainting the kernel), against mmemu's for the same read in the same state:
    every line mmemu prints is the real one, except what is the machine's and not the
    kernel's -- the CPU number, the release string of the distribution's build (5.19.0-43-generic
    #44~22.04.1-Ubuntu), CONFIG_PREEMPT (mmemu's kernel is not preemptible), the module's '+'
    (the real module was still in its init) -- and the RIP line, which has the format of
    %pS (an access made through the API has no instruction). What mmemu does not print: the
    Hardware name (the machine has no DMI tables), and, for an access made through the API
    (no registers), the Code and register lines and the call trace -- a fault of code on the
    CPU has them, in the shape of this file's lines (tests/test_oops_eras.py)."""
    real = [untimed(line) for line in golden("oops_x86_64_5.19.txt").splitlines()]
    k = boot(arch="x86_64", kernel="5.19", ram="256M", cmdline="nopti")  # the real machine ran without PTI
    k.load_module(synthetic_module(k, name="oops"), "oops.ko")
    k._next_pid = 1666
    p = k.create_process("insmod")
    with pytest.raises(Oops) as err:
        k.access(0xdeadbeef, "read", process=p)
    mine = err.value.report.splitlines()
    assert k.dmesg().endswith(err.value.report + "\n")

    def normal(line: str) -> str:
        line = line.replace(" PREEMPT SMP", " SMP").replace("oops(O+)", "oops(O)")
        m = TASK_LINE.match(line)
        if m:  # the machine's: the CPU, and the release of the build
            line = f"CPU: 0 PID: {m['pid']} Comm: {m['comm']} {m['tainted']} 5.19.0 #1"
        if line.startswith("Modules linked in:"):
            line = line[:len("Modules linked in: oops(O)")]
        return line

    # the real oops's lines mmemu models: show_fault_oops and dump_pagetable, __die's header,
    # the task line, the kernel RIP, the modules, the CR2 summary and the end marker
    modelled = real[:real.index(next(line for line in real if line.startswith("Hardware name:")))]
    modelled += [next(line for line in real if line.startswith("RIP: 0010:"))]
    modelled += [line for line in real if line.startswith("Modules linked in:")]
    modelled += [line for line in real if re.match(r"^CR2: [0-9a-f]{16}$", line)]
    modelled += [line for line in real if line.startswith("---[ end trace")]
    assert len(mine) == len(modelled) == 10
    for got, want in zip(mine, modelled):
        if want.startswith("RIP: 0010:"):  # "RIP: %04lx:%pS" (__show_regs); mmemu adds why there is no symbol
            assert RIP_LINE.match(want) and RIP_LINE.match(got.split("  (no instruction")[0]), (got, want)
        else:
            assert got == normal(want)
    # the Tainted field itself, byte for byte (print_tainted: 18 columns in 5.19)
    assert TASK_LINE.match(real[5])["tainted"] == k.print_tainted() == "Tainted: G" + " " * 11 + "O" + " " * 5


@pytest.mark.parametrize("kernel,columns", [("4.19", 18), ("5.10", 18), ("6.1", 19), ("6.6", 19)])
def test_print_tainted_has_the_eras_columns(kernel, columns, boot):
    """5.4, 5.6, 5.10 and 5.19 logs show 18 columns ('G           O      '), 6.1 and later 19
    (TAINT_TEST, N): the columns after O are blanks."""
    k = boot(arch="x86_64", kernel=kernel, ram="256M")
    assert k.print_tainted() == "Not tainted"
    k.load_module(synthetic_module(k, name="t"), "t.ko")
    assert k.print_tainted() == "Tainted: G" + " " * 11 + "O" + " " * (columns - 13)


# -- the segfault line (arch/x86/mm/fault.c show_signal_msg) -------------------------------------------------------

def test_segfault_line_of_a_write_to_null(boot):
    """A real 5.4 line for `movb $1,(%rax)` with rax = 0, and the Code: line show_opcodes
    prints after it (4.18+), made again: the same process (comm, pid), the 64 code bytes of
    the real Code: line at the same ip (the process starts there, rax 0 as exec leaves it),
    the stack pointer where it was. Byte for byte up to print_vma_addr's " in
    hy_dir_demo[55eb5823b000+2000]", which names the file the ip is in (mmemu's mappings
    are anonymous: the kernel prints nothing there for them); the Code: line byte for byte,
    read back from the process's pages with the faulting byte in <>."""
    line, code = (untimed(x) for x in golden("segfault_x86_64_5.4.txt").splitlines())
    k = boot(arch="x86_64", kernel="5.4", ram="256M")
    k._next_pid = 47133
    p = k.create_process("hy_dir_demo")
    ip, sp = 0x55eb5823c4df, 0x7ffc98b714f0
    k.mmap(p, 0x55eb5823b000, 2 * PAGE, PROT_READ | PROT_EXEC, MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS)
    k.install_user_pages(p, ip - 42, bytes.fromhex(code[len("Code: "):].replace("<", "").replace(">", "")))
    stack = p.vmas[-1]
    k.munmap(p, stack.vm_start, stack.vm_end - stack.vm_start)
    k.mmap(p, 0x7ffc98b52000, 0x21000, PROT_READ | PROT_WRITE, MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, name="[stack]")
    cpu = Cpu(k)
    try:
        result = cpu.run_user(p, ip, sp=sp)  # c6 00 01: movb $0x1,(%rax)
    finally:
        cpu.close()
    assert result.reason == "sigsegv"
    first, second = result.report.splitlines()
    assert line == first + " in hy_dir_demo[55eb5823b000+2000]"
    assert second == code
    assert k.dmesg() == result.report + "\n"


# -- the W+X audit (arch/x86/mm/dump_pagetables.c) -----------------------------------------------------------------

def test_wx_audit_4_4_names_the_first_range_as_p_and_pS(boot):
    """linuxkit's 4.4.30 boot log: the first W+X range, a vmalloc area at VMALLOC_START +
    0x14000, as '%p/%pS'. The same state: a 76 KiB area (its guard page ends at + 0x14000),
    then a page mapped PAGE_KERNEL_EXEC."""
    real = golden("wx_x86_64_4.4.txt").splitlines()[1]
    k = boot(arch="x86_64", kernel="4.4", ram="256M")
    start, end = k.layout["VMALLOC_START"], k.layout["VMALLOC_END"]
    k.vmalloc(0x13000)
    assert k.vmalloc_range(PAGE, start, end, "PAGE_KERNEL_EXEC") == 0xffffc90000014000
    found, checked = k.check_wx()
    assert found == real
    assert checked == "x86/mm: Checked W+X mappings: FAILED, 1 W+X pages found."


def test_wx_audit_wording_by_era(boot):
    """%p/%pS (4.4), a hashed %p -- '(ptrval)' this early in boot -- from 4.15, %pS alone from
    5.1 (note_wx); the 'passed' line of a real 6.x log."""
    passed = untimed(golden("wx_x86_passed.txt").splitlines()[1])
    for kernel, want in (("4.14", "ffffc90000000000/0xffffc90000000000"), ("4.19", "(ptrval)/0xffffc90000000000"),
                         ("5.10", "0xffffc90000000000"), ("6.6", "0xffffc90000000000")):
        k = boot(arch="x86_64", kernel=kernel, ram="256M")
        # with PTI (4.15+, on by default) the user copy is audited after the kernel's
        # (ptdump_walk_user_pgd_level_checkwx), as real 6.x logs show
        assert k.check_wx() == [passed] + (["x86/mm: Checking user space page tables", passed]
                                           if kernel != "4.14" else [])
        k.vmalloc_range(PAGE, k.layout["VMALLOC_START"], k.layout["VMALLOC_END"], "PAGE_KERNEL_EXEC")
        assert k.check_wx()[0] == f"x86/mm: Found insecure W+X mapping at address {want}", kernel


# -- dmesg: what loading a module logs (kernel/module.c check_modinfo, set_license; kernel/panic.c add_taint) ------

def test_dmesg_of_an_out_of_tree_proprietary_module(boot):
    """A real log: the out-of-tree message, then the licence's, then add_taint's lockdep
    notice (P makes lockdep unreliable), at KERN_WARNING (<4>), in that order; `mmemu dmesg`
    prints them as dmesg does with timestamps off. (The module's own 'mhal driver init' is
    its init's printk: the synthetic module runs no init.)"""
    real = golden("dmesg_module_taints.txt").splitlines()[:3]
    k = boot(arch="x86_64", kernel="6.6", ram="256M")
    k.load_module(synthetic_module(k, name="mhal", license="PROPRIETARY"), "mhal.ko")
    assert k.dmesg() == "".join(untimed(line) + "\n" for line in real)
    assert [r.level for r in k.log] == [int(TIMESTAMP.match(line)["level"]) for line in real]
    # a second such module: each message only while its flag is clear
    k.load_module(synthetic_module(k, name="mhal2", license="PROPRIETARY"), "mhal2.ko")
    assert k.dmesg().count("\n") == 3
