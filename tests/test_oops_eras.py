"""The oops and the segfault line in each era's words, at the era boundaries the kernel's
sources draw.

Each expected text is written out from the printk format of that era's source, named in the
test (the same sources the era table in plugins/x86/mmemu_x86/oops.py cites):

- arch/i386/mm/fault.c 2.6.12 .. 2.6.23 (2.6.18, 2.6.20, 2.6.21 and 2.6.22 read), and real
  LKML oopses of a vanilla 2.6.16 ('Unable to handle kernel') and of 2.6.17-rc1 ('BUG:');
- arch/x86/mm/fault_32.c and fault_64.c of 2.6.24, and as of the 2.6.25 merge window
  (torvalds/linux 03252919b79891063cf99145612360efbdf9500b);
- arch/x86/kernel/traps_32.c die() of 2.6.24; arch/i386/kernel/traps.c die() of 2.6.21;
- arch/x86/mm/fault.c 2.6.27 (show_fault_oops, the '%p' segfault line).

The page-table words the old i386 kernels print are read here straight from emulated
physical memory (the kernel reads them through __va(read_cr3()) itself), and checked
against mmemu's walker where both name the same entry.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mmemu.cpu import Cpu
from mmemu.errors import Oops, SegmentationFault
from mmemu.kernel.process import MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE, PROT_EXEC, PROT_READ

PAGE = 4096


def word(k, pa: int, size: int) -> int:
    return int.from_bytes(k.mem.read(pa, size), "little")


def guard_page(k) -> int:
    """A vmalloc guard page: its page table exists (the area before it is mapped), its
    pte is 0."""
    a = k.vmalloc(PAGE)
    assert not k.walk(a + PAGE).mapped
    return a + PAGE


def oops_of(k, va: int, access: str = "write") -> list[str]:
    with pytest.raises(Oops) as exc:
        k.access(va, access)
    return exc.value.report.splitlines()


# -- the first lines of the oops, i386 ----------------------------------------------------------------------------

def test_2_6_24_i386_null_pointer_oops(boot):
    """arch/x86/mm/fault_32.c (2.6.24): 'BUG: unable to handle kernel NULL pointer
    dereference' ' at virtual address %08lx\\n', then 'printing eip: %08lx ' and '*pde =
    %08lx ' on one line (printk without a newline continues it) ended by printk('\\n');
    traps_32.c die(): '%s: %04lx [#%d] ' then 'SMP ' and '\\n'."""
    k = boot(arch="i386", kernel="2.6.24", ram="256M", options={"NR_CPUS": "4"})
    lines = oops_of(k, 0x10, "read")
    pde = word(k, k.pgd, 0)
    assert lines[:3] == ["BUG: unable to handle kernel NULL pointer dereference at virtual address 00000010",
                         f"printing eip: 00000000 *pde = {pde:08x} ",
                         "Oops: 0000 [#1] SMP "]


def test_2_6_24_i386_pte_when_the_page_table_is_in_lowmem(boot):
    """fault_32.c (2.6.24): '*pte = %0*Lx ' (8 digits) when the pde is present, not PSE and
    its page table is below max_low_pfn -- here a kernel page table (always lowmem), with
    CONFIG_HIGHPTE set or not: the rule of 2.6.22 on no longer asks the config."""
    for options in ({"HIGHPTE": "n"}, {}):
        k = boot(arch="i386", kernel="2.6.24", ram="1G", options=options)
        g = guard_page(k)
        steps = k.walk(g).steps
        pde, pte = steps[0].raw, steps[-1].raw
        assert word(k, k.pgd + 4 * (g >> 22), 4) == pde and pte == 0
        lines = oops_of(k, g)
        assert lines[:3] == [f"BUG: unable to handle kernel paging request at virtual address {g:08x}",
                             f"printing eip: 00000000 *pde = {pde:08x} *pte = 00000000 ",
                             "Oops: 0002 [#1] "]


@pytest.mark.parametrize("kernel,first,pae", [
    ("2.6.16", "Unable to handle kernel paging request", False),   # vanilla 2.6.16 oops on LKML
    ("2.6.17", "BUG: unable to handle kernel paging request", False),  # 2.6.17-rc1 (git) oops on LKML
    ("2.6.20", "BUG: unable to handle kernel paging request", False),  # arch/i386/mm/fault.c 2.6.20
    ("2.6.21", "BUG: unable to handle kernel paging request", True),   # 2.6.21: no *pdpt yet
    ("2.6.23", "BUG: unable to handle kernel paging request", False),
])
def test_i386_before_2_6_24_prints_eip_and_entries_on_lines_of_their_own(kernel, first, pae, boot):
    """arch/i386/mm/fault.c (2.6.12 .. 2.6.21): ' at virtual address %08lx\\n', KERN_ALERT
    ' printing eip:\\n', '%08lx\\n', then KERN_ALERT '*pde = %08lx\\n' of the word
    ((unsigned long *)__va(cr3))[address >> 22] -- on PAE too, where that word is not a
    pdpt entry (2.6.21 read) -- and '*pte = %08lx\\n' only without CONFIG_HIGHPTE."""
    k = boot(arch="i386_pae" if pae else "i386", kernel=kernel, ram="1G", options={"HIGHPTE": "n"})
    g = guard_page(k)
    lines = oops_of(k, g)
    pde = word(k, k.pgd + 4 * (g >> 22), 4)
    assert lines[:4] == [f"{first} at virtual address {g:08x}", " printing eip:", "00000000", f"*pde = {pde:08x}"]
    if not pae:
        assert pde == k.walk(g).steps[0].raw
        assert lines[4] == f"*pte = {word(k, (pde & 0xFFFFF000) + 4 * ((g >> 12) & 1023), 4):08x}" == "*pte = 00000000"
        assert lines[5] == "Oops: 0002 [#1]"
    elif pde & 1:  # the word read as a pde (bit 0 set): the kernel follows it, as a 2-level table
        assert lines[4] == f"*pte = {word(k, (pde & 0xFFFFF000) + 4 * ((g & 0x3FF000) >> 12), 4):08x}"


def test_i386_before_2_6_17_and_highpte_prints_no_pte(boot):
    """arch/i386/mm/fault.c (2.6.12): the '*pte' printk sits under #ifndef CONFIG_HIGHPTE."""
    k = boot(arch="i386", kernel="2.6.12", ram="1G")
    g = guard_page(k)
    lines = oops_of(k, g)
    assert lines[0] == f"Unable to handle kernel paging request at virtual address {g:08x}"
    assert lines[3].startswith("*pde = ") and lines[4] == "Oops: 0002 [#1]"


def test_2_6_22_pae_prints_pdpt_and_pde_on_lines_of_their_own(boot):
    """arch/i386/mm/fault.c (2.6.22): KERN_ALERT '*pdpt = %016Lx\\n', then from a present
    lowmem pdpt entry KERN_ALERT '*pde = %016Lx\\n', then '*pte = %0*Lx\\n' (16 digits)
    from a present lowmem page table."""
    k = boot(arch="i386_pae", kernel="2.6.22", ram="1G")
    g = guard_page(k)
    pdpt, pde, pte = (s.raw for s in k.walk(g).steps)
    assert word(k, k.pgd + 8 * (g >> 30), 8) == pdpt
    lines = oops_of(k, g)
    assert lines[1:6] == [" printing eip:", "00000000", f"*pdpt = {pdpt:016x}", f"*pde = {pde:016x}",
                          f"*pte = {pte:016x}"]


def test_2_6_25_pae_prints_printing_ip_and_the_entries_on_one_line(boot):
    """arch/x86/mm/fault_32.c of the 2.6.25 merge window (regs->eip renamed regs->ip):
    'printing ip: %08lx ' then '*pdpt = %016Lx ' '*pde = %016Lx ' '*pte = %0*Lx '."""
    k = boot(arch="i386_pae", kernel="2.6.25", ram="1G")
    g = guard_page(k)
    pdpt, pde, pte = (s.raw for s in k.walk(g).steps)
    lines = oops_of(k, g)
    assert lines[1] == f"printing ip: 00000000 *pdpt = {pdpt:016x} *pde = {pde:016x} *pte = {pte:016x} "


@pytest.mark.parametrize("kernel", ["2.6.21", "2.6.22", "2.6.23"])
def test_die_header_of_i386_before_2_6_24(kernel, boot):
    """die(): arch/i386/kernel/traps.c (2.6.21; 2.6.22, ut-osa/txos; 2.6.23,
    linux-scraping/linux-grsecurity db0edb92) 'Oops: %04lx [#%d]\\n' and KERN_EMERG 'SMP '
    on a line of its own."""
    k = boot(arch="i386", kernel=kernel, ram="256M", options={"NR_CPUS": "2"})
    lines = oops_of(k, 0x10, "read")
    assert lines[lines.index("Oops: 0000 [#1]") + 1] == "SMP "


def test_die_header_of_i386_by_era(boot):
    """arch/x86/kernel/traps_32.c (2.6.24): the flags on the header's line after a blank."""
    k = boot(arch="i386", kernel="2.6.24", ram="256M", options={"NR_CPUS": "2"})
    assert "Oops: 0000 [#1] SMP " in oops_of(k, 0x10, "read")


# -- the segfault line --------------------------------------------------------------------------------------------

def run_null_write(k, comm: str, code: bytes):
    """A user process whose code writes to address 0; the stack where the kernel put it."""
    k.create_process("init")
    p = k.create_process(comm)
    base = 0x08048000
    k.mmap(p, base, PAGE, PROT_READ | PROT_EXEC, MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS)
    k.install_user_pages(p, base, code)
    stack = next(v for v in p.vmas if v.name == "[stack]")
    sp = stack.vm_end - 64
    cpu = Cpu(k)
    try:
        result = cpu.run_user(p, base, sp=sp)
    finally:
        cpu.close()
    assert result.reason == "sigsegv"
    return p, base, sp, result.report


#: xor %eax,%eax; movb $1,(%eax) -- the fault is at base + 2 (the same bytes in 64-bit mode)
NULL_WRITE = bytes.fromhex("31c0" "c60001")


@pytest.mark.parametrize("arch,kernel,fmt", [
    # arch/x86/mm/fault_32.c (2.6.24): "%s[%d]: segfault at %08lx eip %08lx esp %08lx error %lx"
    ("i386", "2.6.24", "{comm}[{pid}]: segfault at 00000000 eip {ip:08x} esp {sp:08x} error 6"),
    ("i386", "2.6.23", "{comm}[{pid}]: segfault at 00000000 eip {ip:08x} esp {sp:08x} error 6"),
    # 2.6.25 merge window: "segfault at %lx ip %08lx sp %08lx error %lx"
    ("i386", "2.6.25", "{comm}[{pid}]: segfault at 0 ip {ip:08x} sp {sp:08x} error 6"),
    # arch/x86/mm/fault.c (2.6.27): "segfault at %lx ip %p sp %p error %lx"
    ("i386", "2.6.27", "{comm}[{pid}]: segfault at 0 ip {ip:08x} sp {sp:08x} error 6"),
    # arch/x86_64/mm/fault.c (2.6.22-rc2): "segfault at %016lx rip %016lx rsp %016lx error %lx"
    ("x86_64", "2.6.22", "{comm}[{pid}]: segfault at 0000000000000000 rip {ip:016x} rsp {sp:016x} error 6"),
    # arch/x86/mm/fault_64.c (2.6.24): "segfault at %lx rip %lx rsp %lx error %lx"
    ("x86_64", "2.6.24", "{comm}[{pid}]: segfault at 0 rip {ip:x} rsp {sp:x} error 6"),
    # 2.6.25 merge window: "segfault at %lx ip %lx sp %lx error %lx"
    ("x86_64", "2.6.25", "{comm}[{pid}]: segfault at 0 ip {ip:x} sp {sp:x} error 6"),
    ("x86_64", "2.6.27", "{comm}[{pid}]: segfault at 0 ip {ip:016x} sp {sp:016x} error 6"),
])
def test_segfault_line_by_era(arch, kernel, fmt, boot):
    """A user write to NULL made by the CPU: the line carries the faulting instruction's
    address and the stack pointer at the fault, in the era's printk format."""
    k = boot(arch=arch, kernel=kernel, ram="256M")
    p, base, sp, report = run_null_write(k, "segv", NULL_WRITE)
    assert report == fmt.format(comm="segv", pid=p.pid, ip=base + 2, sp=sp)
    assert k.dmesg().splitlines()[-1] == report


@pytest.mark.parametrize("kernel", ["2.6.12", "2.6.20", "2.6.22"])
def test_i386_before_2_6_23_logs_no_segfault_line(kernel, boot):
    """arch/i386/mm/fault.c (2.6.20, 2.6.21, 2.6.22 read): bad_area_nosemaphore sends the
    signal and prints nothing (show_unhandled_signals came in 2.6.23)."""
    k = boot(arch="i386", kernel=kernel, ram="256M")
    p = k.create_process("a.out")
    logged = k.dmesg()
    with pytest.raises(SegmentationFault) as exc:
        k.read(0x1000, 1, user=True, process=p)
    assert "segfault at" not in exc.value.report
    assert k.dmesg() == logged  # nothing reaches the kernel log


# -- the rest of the oops: the register dump, Code:, Call Trace, the end marker ------------------------------------

BUILD = Path(__file__).resolve().parent.parent / "examples" / "modules" / "build"


def module_oops(k, arch: str, era: str) -> list[str]:
    """The oops of examples/modules/rodata_oops.c: its init stores a byte into its own
    read-only .rodata (movb $0x54,(%rax) on x86_64, (%eax) on i386), on the CPU."""
    data = (BUILD / f"{'x86_64' if arch == 'x86_64' else 'i386'}-{era}" / "rodata_oops.o").read_bytes()
    with pytest.raises(Oops) as exc:
        k.load_module(data, "rodata_oops.o")
    return exc.value.report.splitlines()


def field(lines: list[str], prefix: str) -> str:
    return next(line for line in lines if line.startswith(prefix))


def test_x86_64_6_6_oops_of_module_code_dumps_the_cpus_registers(boot):
    """arch/x86/kernel/dumpstack.c and process_64.c (5.10 read; 6.6 the same): after 'CPU:'
    (no 'Hardware name:': the machine has no DMI tables), show_ip's 'RIP: %04x:%pS', then
    show_opcodes' 'Code:' -- 42 bytes, the faulting one in <>, 21 more, as decodecode reads
    them -- 'RSP: %04x:%016lx EFLAGS: %08lx', the general registers three a line, FS/GS,
    CS/DS/ES/CR0, CR2/CR3/CR4; then 'Call Trace:' inside <TASK> </TASK> (5.16+),
    print_modules, 'CR2: %016lx', the end marker (0 since 5.17) and oops_end's executive
    summary: the same registers again. The values are the emulated CPU's: the store is
    movb $0x54,(%rax), so RAX holds the address that faulted."""
    k = boot(arch="x86_64", kernel="6.6", ram="256M")
    lines = module_oops(k, "x86_64", "6.6")
    cr2 = int(field(lines, "CR2: ").split()[1], 16)
    assert lines[5] == "CPU: 0 PID: 0 Comm: swapper/0 Tainted: G           O       6.6.0 #1"
    rip = lines[6]
    assert rip.startswith("RIP: 0010:rodata_oops_init+0x") and rip.endswith(" [rodata_oops]")
    name, off_size = rip.split(":", 2)[2].split(" ")[0].split("+")
    code = lines[7]
    assert code.startswith("Code: ") and "<c6> 00 54" in code  # movb $0x54,(%rax)
    before, after = code[len("Code: "):].split(" <c6> ")
    assert len(before.split()) == 42 and len(after.split()) == 21
    # the bytes are the module's text, read back through the page tables
    off = int(off_size.split("/")[0], 16)
    start = next(s for s, size, n, init in k.find_module("rodata_oops").kallsyms if n == name)
    ip = start + off
    assert bytes.fromhex(before + " c6 " + after) == k.read(ip - 42, 64)
    assert lines[8].startswith("RSP: 0018:") and " EFLAGS: " in lines[8]
    assert lines[9].startswith(f"RAX: {cr2:016x} RBX: ")
    assert [line[:4] for line in lines[9:14]] == ["RAX:", "RDX:", "RBP:", "R10:", "R13:"]
    assert lines[14].startswith("FS:  ") and " knlGS:" in lines[14]
    assert lines[15].startswith("CS:  0010 DS: 0000 ES: 0000 CR0: ")
    assert lines[16].startswith(f"CR2: {cr2:016x} CR3: ")
    assert lines[17:20] == ["Call Trace:", " <TASK>", " </TASK>"]
    assert lines[20] == "Modules linked in: rodata_oops(O+)"
    assert lines[21] == f"CR2: {cr2:016x}"
    assert lines[22] == "---[ end trace 0000000000000000 ]---"
    assert lines[23:] == lines[6:17]  # oops_end: __show_regs(&exec_summary_regs, SHOW_REGS_ALL)


def test_i386_6_6_oops_of_module_code(boot):
    """process_32.c (5.10 read): 'EIP: %pS', Code:, 'EAX: %08lx EBX: ...', 'ESI: ...',
    'DS: %04x ES: ... SS: %04x EFLAGS: %08lx', 'CR0: ...'; no <TASK> markers on 32-bit. The
    init function starts a page, so 42 bytes before the ip are not mapped: show_opcodes
    says so with the prologue's address. init_idle names the idle task 'swapper/0' only
    on SMP (NR_CPUS=1 here: 'swapper')."""
    k = boot(arch="i386", kernel="6.6", ram="256M")
    lines = module_oops(k, "i386", "6.6")
    cr2 = int(field(lines, "CR2: ").split()[1], 16)
    assert "Comm: swapper Tainted:" in lines[5]
    assert lines[6].startswith("EIP: rodata_oops_init+0x")
    mod = k.find_module("rodata_oops")
    name, rest = lines[6][len("EIP: "):].split("+")
    ip = next(s for s, size, n, init in mod.kallsyms if n == name) + int(rest.split("/")[0], 16)
    if k.walk(ip - 42).mapped:
        assert lines[7].startswith("Code: ") and "<" in lines[7]
    else:
        assert lines[7] == f"Code: Unable to access opcode bytes at RIP 0x{ip - 42:x}."
    assert lines[8].startswith(f"EAX: {cr2 & 0xFFFFFFFF:08x} EBX: ")
    assert lines[9].startswith("ESI: ") and " ESP: " in lines[9]
    assert lines[10].startswith("DS: 007b ES: 007b FS: ") and " SS: 0068 EFLAGS: " in lines[10]
    assert lines[11].startswith("CR0: ") and f" CR2: {cr2 & 0xFFFFFFFF:08x} " in lines[11]
    assert lines[12] == "Call Trace:" and lines[13] == "Modules linked in: rodata_oops(O+)"
    k = boot(arch="i386", kernel="6.6", ram="256M", options={"NR_CPUS": "2"})
    assert "Comm: swapper/0 Tainted:" in module_oops(k, "i386", "6.6")[5]


def test_an_exported_function_that_faults_is_the_rip_and_the_summary_is_the_first_oopses(boot):
    """A kernel function mmemu implements (memset) called from code faults on its
    argument: the RIP line names it (its entry: mmemu runs no instruction inside it), the
    registers are those the caller passed (RDI the address, RDX the length) and CR2 the
    address. oops_end prints exec_summary_regs, saved by the first oops of the boot only
    (__die_header: 'if (!die_counter)'), so a second oops ends with the first one's."""
    from mmemu.cpu import Cpu

    k = boot(arch="x86_64", kernel="6.6", ram="256M")
    cpu = Cpu(k)
    try:
        first = cpu.call(k.ksymtab["memset"], 0x10, 0, 16).report.splitlines()
        second = cpu.call(k.ksymtab["memset"], 0x30, 0, 8).report.splitlines()
    finally:
        cpu.close()
    assert first[6] == "RIP: 0010:memset+0x0/0x10"
    assert field(first, "RDX: ") == "RDX: 0000000000000010 RSI: 0000000000000000 RDI: 0000000000000010"
    assert field(first, "CR2: 0000000000000010 CR3: ")
    assert second[0] == "BUG: kernel NULL pointer dereference, address: 0000000000000030"
    assert second[4] == "Oops: 0002 [#2] SMP PTI"  # mmemu's CPU is Meltdown-affected: PTI on (mmemu_x86.pti)
    assert field(second, "RDX: ").endswith("RDI: 0000000000000030")
    end = second.index("---[ end trace 0000000000000000 ]---")
    assert second[end + 1:] == first[first.index("---[ end trace 0000000000000000 ]---") + 1:]


def test_end_trace_id_by_era(boot):
    """kernel/panic.c: a random u64 per boot in 2.6.24 .. 5.16 (get_random_bytes; mmemu
    draws it from the machine's description, so the same machine gets the same id), 0ULL
    from 5.17 ('panic: Remove oops_id.'); the same for every oops of the boot here."""
    ids = {}
    for kernel in ("2.6.24", "4.19", "5.16", "5.17", "6.6"):
        for _ in range(2):
            k = boot(arch="x86_64", kernel=kernel, ram="256M")
            marks = [line for n in (1, 2) for line in oops_of(k, 0x10 * n, "read") if line.startswith("---[ end")]
            assert len(marks) == 2 and marks[0] == marks[1]
            ids.setdefault(kernel, set()).add(marks[0])
    assert all(len(v) == 1 for v in ids.values())  # the same machine, the same id
    assert ids["5.17"] == ids["6.6"] == {"---[ end trace 0000000000000000 ]---"}
    for kernel in ("2.6.24", "4.19", "5.16"):
        (mark,) = ids[kernel]
        assert mark != "---[ end trace 0000000000000000 ]---" and len(mark) == len("---[ end trace  ]---") + 16


@pytest.mark.parametrize("kernel,comm", [("3.1", "swapper"), ("3.2", "swapper/0"), ("6.6", "swapper/0")])
def test_the_idle_tasks_comm(kernel, comm, boot):
    """init_idle: 'swapper/%d' on SMP kernels from 3.2 (kernel/sched/core.c), INIT_TASK_COMM
    'swapper' before; an access made with no process is the idle task's (pid 0)."""
    k = boot(arch="x86_64", kernel=kernel, ram="256M")
    line = next(line for line in oops_of(k, 0x10, "read") if "comm: " in line.lower())
    assert f"{comm} " in line and ("PID: 0 " in line or "Pid: 0," in line)


def test_modules_linked_in_is_printed_with_no_module_loaded(boot):
    """kernel/module.c print_modules: 'Modules linked in:' is printed whatever is loaded."""
    k = boot(arch="x86_64", kernel="6.6", ram="256M")
    assert "Modules linked in:" in oops_of(k, 0x10, "read")


def shape(line: str) -> str:
    """The line with every hex digit run made 'h' (what the printf formats fix)."""
    import re

    return re.sub(r"[0-9a-f]+", "h", line)


def test_register_lines_have_the_shape_of_a_real_5_19_oops(boot):
    """tests/golden/oops_x86_64_5.19.txt (a real 5.19 oops, Ubuntu 22.04 under QEMU): each
    register line mmemu prints for a fault of code on its CPU has the real line's shape --
    the same words, widths and separators, only the values differ (the machine's)."""
    import re

    real = [re.sub(r"^\[[ \d.]+\] ", "", line)
            for line in (Path(__file__).parent / "golden" / "oops_x86_64_5.19.txt").read_text().splitlines()]
    k = boot(arch="x86_64", kernel="6.6", ram="256M")
    mine = module_oops(k, "x86_64", "6.6")
    for prefix in ("RSP: ", "RAX: ", "RDX: ", "RBP: ", "R10: ", "R13: ", "FS:  ", "CS:  ", "CR2: ffff"):
        assert shape(field(mine, prefix)) == shape(field(real, prefix)), prefix
    # the Code: line of the real oops's user-mode block (its kernel one could not be read)
    real_code = next(line for line in real if line.startswith("Code: ") and "<" in line)
    assert shape(field(mine, "Code: ")) == shape(real_code)
    assert field(real, "Code: Unable") == "Code: Unable to access opcode bytes at RIP 0xffffffffc06e6fe1."
    for marker in ("Call Trace:", " <TASK>", " </TASK>"):
        assert marker in real and marker in mine
    # the order: registers, trace, modules, CR2, end marker
    order = [next(i for i, line in enumerate(lines) if line.startswith(p))
             for lines in (real, mine) for p in ("RIP: 0010:", "Call Trace:", "Modules linked in:", "---[ end")]
    assert order[:4] == sorted(order[:4]) and order[4:] == sorted(order[4:])


def kernel_null_write(k) -> tuple[list[str], int]:
    """Kernel code (xor %eax,%eax; movb $1,(%eax); ret) in a PAGE_KERNEL_EXEC vmalloc area,
    run on the CPU: its oops, and the ip of the faulting store."""
    from mmemu.cpu import Cpu

    area = k.vmalloc_range(PAGE, k.layout["VMALLOC_START"], k.layout["VMALLOC_END"], "PAGE_KERNEL_EXEC")
    fn = area + 0x100
    k.write(fn, bytes.fromhex("31c0" "c60001" "c3"))
    cpu = Cpu(k)
    try:
        res = cpu.call(fn)
    finally:
        cpu.close()
    return res.report.splitlines(), fn + 2


@pytest.mark.parametrize("kernel", ["2.6.22", "2.6.23"])
def test_2_6_22_i386_die_body_from_the_cpu(kernel, boot):
    """arch/i386/kernel/traps.c show_registers (2.6.22; 2.6.23 the same, read in
    linux-scraping/linux-grsecurity db0edb92): 'CPU:    %d', 'EIP:    %04x:[<%08lx>]
    %s VLI', 'EFLAGS: %08lx   (%s %.*s)', 'EIP is at %s', the registers in lower case three
    blanks apart, 'ds: %04x   es: %04x   fs: %04x  gs: %04x  ss: %04x', then the Process,
    Stack, Call Trace, Code and summary lines 2.6.24 kept; no end marker yet."""
    k = boot(arch="i386", kernel=kernel, ram="256M")
    lines, ip = kernel_null_write(k)
    start = lines.index("Oops: 0002 [#1]")
    assert lines[start + 1:start + 6] == ["Modules linked in:", "CPU:    0",
                                          f"EIP:    0060:[<{ip:08x}>]    Not tainted VLI",
                                          lines[start + 4], f"EIP is at 0x{ip:x}"]
    assert lines[start + 4].startswith("EFLAGS: ") and lines[start + 4].endswith(f"   ({kernel} #1)")
    assert lines[start + 6].startswith("eax: 00000000   ebx: ")
    sp = int(lines[start + 7].split("esp: ")[1], 16)
    assert lines[start + 8].startswith("ds: 007b   es: 007b   fs: ") and lines[start + 8].endswith("  ss: 0068")
    assert lines[start + 9].startswith("Process swapper (pid: 0, ti=")
    assert lines[-1] == f"EIP: [<{ip:08x}>] 0x{ip:x} SS:ESP 0068:{sp:08x}"


def test_2_6_24_i386_die_body_from_the_cpu(boot):
    """arch/x86/kernel/traps_32.c die()/show_registers and process_32.c __show_registers
    (2.6.24): kernel code (xor %eax,%eax; movb $1,(%eax); ret, in a PAGE_KERNEL_EXEC
    vmalloc area, no symbol: print_symbol prints the address) faults on the CPU. The
    registers are the CPU's (EAX 0 from the xor); 'Stack:' shows the words from the
    stack pointer, 8 a line; 'Code:' the 64 bytes from eip - 43 with the faulting one in
    <>, each followed by a blank; the summary line, then oops_exit's marker with the
    boot's random oops_id."""
    k = boot(arch="i386", kernel="2.6.24", ram="256M")
    lines, ip = kernel_null_write(k)
    sp = int(field(lines, "ESI: ").split("ESP: ")[1], 16)
    assert lines[1] == f"printing eip: {ip:08x} *pde = {word(k, k.pgd + 4 * 0, 4):08x} "
    assert lines[2:6] == ["Oops: 0002 [#1] ", "Modules linked in:", "", "Pid: 0, comm: swapper Not tainted (2.6.24 #1)"]
    assert lines[6].startswith(f"EIP: 0060:[<{ip:08x}>] EFLAGS: ") and lines[6].endswith(" CPU: 0")
    assert lines[7] == f"EIP is at 0x{ip:x}"
    assert lines[8].startswith("EAX: 00000000 EBX: ")
    assert lines[10].startswith(" DS: 007b ES: 007b FS: ") and lines[10].endswith(" SS: 0068")
    ti = sp & ~0x1FFF
    assert lines[11] == f"Process swapper (pid: 0, ti={ti:08x} task=(no task_struct in mmemu) task.ti={ti:08x})"
    stack = lines[12:lines.index("Call Trace:")]
    words = " ".join(row.strip().removeprefix("Stack:") for row in stack).split()
    assert stack[0].startswith("Stack: ") and all(row.startswith("       ") for row in stack[1:])
    assert all(len(row.split()) <= 8 + (row is stack[0]) for row in stack)
    assert [int(w, 16) for w in words] == [word(k, k.virt_to_phys(sp + 4 * i), 4) for i in range(len(words))]
    trace_end = lines.index(" =======================")
    code = lines[trace_end + 1]
    assert code == "Code: " + "".join(f"<{b:02x}> " if a == ip else f"{b:02x} "
                                      for a, b in zip(range(ip - 43, ip + 21), k.read(ip - 43, 64)))
    assert "31 c0 <c6> 00 01 c3 " in code
    assert lines[trace_end + 2] == f"EIP: [<{ip:08x}>] 0x{ip:x} SS:ESP 0068:{sp:08x}"
    assert lines[trace_end + 3].startswith("---[ end trace ") and lines[trace_end + 3] != \
        "---[ end trace 0000000000000000 ]---"


@pytest.mark.parametrize("kernel,header", [
    ("2.6.26", "Oops: 0000 [1] SMP "),      # traps_64.c __die (2.6.26, 2.6.27 read): '%s: %04lx [%u] ' then 'SMP '
    ("2.6.32", "Oops: 0000 [#1] SMP "),     # dumpstack.c __die (2.6.32 read): '%s: %04lx [#%d] '
    ("3.10", "Oops: 0000 [#1] SMP "),       # dumpstack.c __die (3.x): '%s: %04lx [#%d] ' then 'SMP '
    ("4.8", "Oops: 0000 [#1] SMP"),         # 4.8 (read): '%s: %04lx [#%d]%s%s%s%s\n', ' SMP'
    ("5.10", "Oops: 0000 [#1] SMP PTI"),  # 5.10 (read): PAGE_TABLE_ISOLATION set, PTI on (mmemu_x86.pti)
])
def test_die_header_of_x86_64_by_era(kernel, header, boot):
    k = boot(arch="x86_64", kernel=kernel, ram="256M")
    assert header in oops_of(k, 0x10, "read")


@pytest.mark.parametrize("kernel,oops,cpu", [
    ("6.9", "Oops: 0000 [#1] SMP PTI", "CPU: 0 PID: 0 Comm: swapper/0 Not tainted 6.9.0 #1"),
    # 'x86/dumpstack: Use uniform "Oops: " prefix for die() messages' (6.10): __die("Oops") -> 'Oops: Oops:'
    ("6.10", "Oops: Oops: 0000 [#1] SMP PTI", "CPU: 0 PID: 0 Comm: swapper/0 Not tainted 6.10.0 #1"),
    # lib/dump_stack.c (6.11): 'CPU: %d UID: %u PID: %d Comm: %.20s ...'
    ("6.11", "Oops: Oops: 0000 [#1] SMP PTI", "CPU: 0 UID: 0 PID: 0 Comm: swapper/0 Not tainted 6.11.0 #1"),
])
def test_late_6_x_header_and_task_line(kernel, oops, cpu, boot):
    k = boot(arch="x86_64", kernel=kernel, ram="256M")
    lines = oops_of(k, 0x10, "read")
    assert lines[4:6] == [oops, cpu]


def hello_exit_calling_memset(k, era: str) -> tuple[list[str], str]:
    """hello.o of *era* with its exit function patched in RAM (as a debugger would) to call
    memset(0x10, 0, 16), run on the CPU: the oops, and how %pB names the return address the
    call pushed (hello_exit+off/size [hello])."""
    from mmemu.cpu import Cpu

    k.load_module((BUILD / f"x86_64-{era}" / "hello.o").read_bytes(), "hello.o", run_init=False)
    start, size = next((s, n) for s, n, name, init in k.find_module("hello").kallsyms if name == "hello_exit")
    call_at = start + 7 + 2 + 5
    rel = (k.ksymtab["memset"] - (call_at + 5)) & 0xFFFFFFFF
    # mov $0x10,%rdi; xor %esi,%esi; mov $16,%edx; call memset; ret
    code = bytes.fromhex("48c7c710000000" "31f6" "ba10000000" "e8") + rel.to_bytes(4, "little") + b"\xc3"
    k.mem.write(k.walk(start).phys, code)
    k.code_generation += 1
    cpu = Cpu(k)
    try:
        lines = cpu.call(start).report.splitlines()
    finally:
        cpu.close()
    return lines, call_at + 5, f"hello_exit+{call_at + 5 - start:#x}/{size:#x} [hello]"


def test_call_trace_names_the_module_function_that_called_the_faulting_kernel_function(boot):
    """show_trace_log_lvl (5.10 read) prints every kernel-text address it finds on the
    stack as ' %s%pB' ('? ' where no unwinder vouches for it; %pB looks the return address
    up at address - 1 and prints its own offset): the oops names memset as the RIP and
    hello_exit, whose call pushed the return address, in the trace."""
    k = boot(arch="x86_64", kernel="6.6", ram="256M")
    lines, ret, sym = hello_exit_calling_memset(k, "6.6")
    assert field(lines, "RIP: ") == "RIP: 0010:memset+0x0/0x10"
    trace = lines[lines.index("Call Trace:") + 1:lines.index(" </TASK>")]
    assert trace == [" <TASK>", f" ? {sym}"]


def test_segfault_code_line_from_4_18(boot):
    """show_signal_msg: show_opcodes after the line from 4.18 (x86/fault: Dump user opcode
    bytes on fatal faults): the user code around the ip, read from the process's pages;
    42 bytes before the ip are not mapped here (the code starts its page), so the kernel's
    copy fails and says so: 'Code: Bad RIP value.' (4.18 read) until 5.10's 'Unable to access
    opcode bytes at RIP' with the prologue's address (Mark Mossberg's patch, read). 4.17 prints
    the line alone."""
    for kernel, lines, code in (("4.17", 1, None), ("4.18", 2, "Code: Bad RIP value."), ("5.9", 2, "Code: Bad RIP value."),
                                ("5.10", 2, "Code: Unable to access opcode bytes at RIP 0x{:x}.")):
        k = boot(arch="x86_64", kernel=kernel, ram="256M")
        p, base, sp, report = run_null_write(k, "segv", NULL_WRITE)
        assert len(report.splitlines()) == lines
        assert report.splitlines()[0] == f"segv[{p.pid}]: segfault at 0 ip {base + 2:016x} sp {sp:016x} error 6"
        if code is not None:
            assert report.splitlines()[1] == code.format(base + 2 - 42)
            assert k.dmesg().splitlines()[-2:] == report.splitlines()


def kernel_store_with_known_registers(k, push: int | None = None) -> tuple[list[str], int, int]:
    """Kernel code in a PAGE_KERNEL_EXEC vmalloc area that loads known values and faults:
    mov $0x1234567,%ebx; mov $0x9abcdef,%ecx; mov $0x11223344,%edx (the same bytes in both
    modes); xor %eax,%eax; movb $1,(%eax) -- after push $*push* (imm32, sign-extended on
    x86_64) when given. Its oops, the ip of the store and the CPU's stack top (the stack the
    call ran on)."""
    from mmemu.cpu import Cpu

    area = k.vmalloc_range(PAGE, k.layout["VMALLOC_START"], k.layout["VMALLOC_END"], "PAGE_KERNEL_EXEC")
    fn = area + 0x100
    code = b"" if push is None else b"\x68" + (push & 0xFFFFFFFF).to_bytes(4, "little")
    code += bytes.fromhex("bb67452301" "b9efcdab09" "ba44332211" "31c0" "c60001" "c3")
    k.write(fn, code)
    cpu = Cpu(k)
    try:
        res = cpu.call(fn)
        top = cpu.adapter.stack_top
    finally:
        cpu.close()
    return res.report.splitlines(), fn + len(code) - 4, top


def old_code_line(k, ip: int, leading: bool) -> str:
    """show_regs' Code: line of 3.1 .. 4.17 written out from the bytes in memory: 64 bytes
    from ip - 43, '%02x ' ('<%02x> ' at ip) on x86_64, ' %02x' (' <%02x>') on i386."""
    cells = [f"<{b:02x}>" if a == ip else f"{b:02x}" for a, b in zip(range(ip - 43, ip + 21), k.read(ip - 43, 64))]
    return "Code:" + "".join(f" {c}" for c in cells) if leading else "Code: " + "".join(f"{c} " for c in cells)


def check_stack_rows(k, rows: list[str], sp: int, top: int, size: int, depth: int | None = None) -> None:
    """show_stack_log_lvl (4.8 read): kstack_depth_to_print (*depth*; 3 * STACKSLOTS_PER_LINE
    by default) words from sp, ' %016lx' four a line (' %08lx' eight a line on i386), up to
    the stack's top; the words are the stack's memory."""
    slots = 4 if size == 8 else 8
    assert all(row.startswith(" ") and len(row.split()) <= slots for row in rows)
    words = [int(w, 16) for row in rows for w in row.split()]
    n = min(depth or 3 * slots, (top - sp) // size)
    assert words == [word(k, k.virt_to_phys(sp + size * i), size) for i in range(n)]


@pytest.mark.parametrize("kernel,task,long_rip,drs,stack", [
    # lib/dump_stack.c show_regs_print_info (3.10): 'task: %p ti: %p task.ti: %p'; process_64.c (3.4 read)
    # prints DR0..DR7 always; dumpstack_64.c show_regs: 'Stack:' and 12 words, four a line
    ("3.10", "ti", True, True, True),
    # 4.8 (read): the DR lines only when not at their reset values
    ("4.8", "ti", True, False, True),
    # 4.9 (THREAD_INFO_IN_TASK): 'task: %p task.stack: %p'; v4.9.227 dumpstack.c keeps printk_address
    ("4.9", "stack", True, False, True),
    # the dumpstack rework of 4.10: 'RIP: %04lx:%pS', one blank before EFLAGS, no raw stack dump
    ("4.14", "stack", False, False, False),
    # 4.15..4.17: a dumpstack.c read (PTI), show_regs moved into it; no task line in 4.18's lib/dump_stack.c
    # (read), placed at 4.15
    ("4.17", None, False, False, False),
])
def test_x86_64_register_dump_3_10_to_4_17(kernel, task, long_rip, drs, stack, boot):
    """__die of 3.10 .. 4.17 (arch/x86/kernel/dumpstack.c, dumpstack_64.c, process_64.c,
    lib/dump_stack.c; the releases read are named in the era table): print_modules, the
    CPU: line, the task line of the era, __show_regs with the emulated CPU's registers (RBX,
    RCX, RDX hold what the code loaded, RAX the 0 it stores through), the raw stack dump
    until 4.9, 'Call Trace:', the 64 code bytes from ip - 43 and the executive summary
    (RIP  [<%016lx>] %pS / RSP <%016lx> until 4.9, 'RIP: %pS RSP: %016lx' from 4.10)."""
    k = boot(arch="x86_64", kernel=kernel, ram="256M")
    lines, ip, top = kernel_store_with_known_registers(k)
    at = lines.index(next(line for line in lines if line.startswith("Oops: 0002 [#1]"))) + 1
    assert lines[at] == "Modules linked in:"
    assert lines[at + 1] == f"CPU: 0 PID: 0 Comm: swapper/0 Not tainted {kernel}.0 #1"
    base = top - 4 * PAGE
    want_task = {"ti": [f"task:           (null) ti: {base:016x} task.ti: {base:016x}"],
                 "stack": [f"task:           (null) task.stack: {base:016x}"], None: []}[task]
    at += 2
    assert lines[at:at + len(want_task)] == want_task
    at += len(want_task)
    rsp = lines[at + 1]
    sp = int(rsp.split(":")[2].split()[0], 16)
    if long_rip:
        assert lines[at] == f"RIP: 0010:[<{ip:016x}>]  [<{ip:016x}>] 0x{ip:x}"
        assert rsp.startswith(f"RSP: 0018:{sp:016x}  EFLAGS: ")
    else:
        assert lines[at] == f"RIP: 0010:0x{ip:x}"
        assert rsp.startswith(f"RSP: 0018:{sp:016x} EFLAGS: ")
    assert lines[at + 2:at + 4] == ["RAX: 0000000000000000 RBX: 0000000001234567 RCX: 0000000009abcdef",
                                    "RDX: 0000000011223344 RSI: 0000000000000000 RDI: 0000000000000000"]
    assert lines[at + 7].startswith("FS:  ") and lines[at + 8].startswith("CS:  0010 DS: 0000 ES: 0000 CR0: ")
    assert lines[at + 9].startswith("CR2: 0000000000000000 CR3: ")
    at += 10
    if drs:
        assert lines[at:at + 2] == ["DR0: 0000000000000000 DR1: 0000000000000000 DR2: 0000000000000000",
                                    "DR3: 0000000000000000 DR6: 00000000ffff0ff0 DR7: 0000000000000400"]
        at += 2
    assert not lines[at].startswith("DR")
    if stack:
        assert lines[at] == "Stack:"
        check_stack_rows(k, lines[at + 1:lines.index("Call Trace:")], sp, top, 8)
    else:
        assert lines[at] == "Call Trace:"
    code = lines[lines.index("Call Trace:") + 1]
    assert code == old_code_line(k, ip, leading=False) and "31 c0 <c6> 00 01 c3 " in code
    summary = lines[lines.index(code) + 1:lines.index("CR2: 0000000000000000")]
    if long_rip:
        assert summary == [f"RIP  [<{ip:016x}>] 0x{ip:x}", f" RSP <{sp:016x}>"]
    else:
        assert summary == [f"RIP: 0x{ip:x} RSP: {sp:016x}"]


@pytest.mark.parametrize("kernel,task,stack", [("3.10", "ti", True), ("4.9", "stack", True), ("4.14", "stack", False)])
def test_i386_register_dump_3_10_to_4_14(kernel, task, stack, boot):
    """dumpstack_32.c show_regs and process_32.c __show_regs (4.8 read): 'EIP: %04x:[<%08lx>]
    EFLAGS: %08lx CPU: %d', 'EIP is at %s', the registers, ' DS: ... SS: %04x', 'CR0: ...',
    'Stack:' with up to 24 words eight a line (until 4.9), 'Code:' with ' %02x' each, and
    __die's 'EIP: [<%08lx>] %s SS:ESP %04x:%08lx' (until 4.9) or 'EIP: %pS SS:ESP: %04x:%08lx'
    (a 4.10..4.14 dumpstack.c read)."""
    k = boot(arch="i386", kernel=kernel, ram="256M")
    lines, ip, top = kernel_store_with_known_registers(k)
    at = lines.index("Oops: 0002 [#1] " if kernel == "3.10" else "Oops: 0002 [#1]") + 1  # die_header_32
    base = top - 4 * PAGE
    assert lines[at:at + 3] == ["Modules linked in:", f"CPU: 0 PID: 0 Comm: swapper Not tainted {kernel}.0 #1",
                                f"task:   (null) ti: {base:08x} task.ti: {base:08x}" if task == "ti" else
                                f"task:   (null) task.stack: {base:08x}"]
    assert lines[at + 3].startswith(f"EIP: 0060:[<{ip:08x}>] EFLAGS: ") and lines[at + 3].endswith(" CPU: 0")
    assert lines[at + 4] == f"EIP is at 0x{ip:x}"
    assert lines[at + 5] == "EAX: 00000000 EBX: 01234567 ECX: 09abcdef EDX: 11223344"
    sp = int(lines[at + 6].split("ESP: ")[1], 16)
    assert lines[at + 7].startswith(" DS: 007b ES: 007b FS: ") and lines[at + 7].endswith(" SS: 0068")
    assert lines[at + 8].startswith("CR0: ") and " CR2: 00000000 " in lines[at + 8]
    at += 9
    if kernel == "3.10":  # process_32.c: DR0..DR7 always before 3.16
        assert lines[at:at + 2] == ["DR0: 00000000 DR1: 00000000 DR2: 00000000 DR3: 00000000",
                                    "DR6: ffff0ff0 DR7: 00000400"]
        at += 2
    if stack:
        assert lines[at] == "Stack:"
        check_stack_rows(k, lines[at + 1:lines.index("Call Trace:")], sp, top, 4)
    else:
        assert lines[at] == "Call Trace:"
    code = lines[lines.index("Call Trace:") + 1]
    assert code == old_code_line(k, ip, leading=True) and code.endswith(" 31 c0 <c6> 00 01 c3" + " 00" * 17)
    want = f"EIP: [<{ip:08x}>] 0x{ip:x} SS:ESP 0068:{sp:08x}" if stack else f"EIP: 0x{ip:x} SS:ESP: 0068:{sp:08x}"
    assert lines[lines.index(code) + 1] == want


@pytest.mark.parametrize("kernel", ["4.15", "4.17"])
def test_i386_register_dump_4_15_to_4_17(kernel, boot):
    """i386 4.15 .. 4.17: __die (the 4.15..4.17 dumpstack.c read: print_modules, show_regs) with process_32.c's 'EIP: %pS' (4.15) and, placed as 5.10's
    (that era's process_32.c was not found), EAX, ESI, 'DS: ... SS: %04x EFLAGS: %08lx' and
    CR0 from the CPU's registers; then the trace, the dumpstack 'Code:' bytes (' %02x' each,
    before 4.18's show_opcodes) and the summary 'EIP: %pS SS:ESP: %04x:%08lx'."""
    k = boot(arch="i386", kernel=kernel, ram="256M")
    lines, ip, top = kernel_store_with_known_registers(k)
    at = lines.index("Oops: 0002 [#1]") + 1
    assert lines[at:at + 3] == ["Modules linked in:", f"CPU: 0 PID: 0 Comm: swapper Not tainted {kernel}.0 #1",
                                f"EIP: 0x{ip:x}"]
    assert lines[at + 3] == "EAX: 00000000 EBX: 01234567 ECX: 09abcdef EDX: 11223344"
    sp = int(lines[at + 4].split("ESP: ")[1], 16)
    assert lines[at + 5].startswith("DS: 007b ES: 007b FS: ") and " SS: 0068 EFLAGS: " in lines[at + 5]
    assert lines[at + 6].startswith("CR0: ") and " CR2: 00000000 " in lines[at + 6]
    assert lines[at + 7] == "Call Trace:"
    code = lines[lines.index("Call Trace:") + 1]
    assert code == old_code_line(k, ip, leading=True)
    assert lines[lines.index(code) + 1] == f"EIP: 0x{ip:x} SS:ESP: 0068:{sp:08x}"


@pytest.mark.parametrize("arch", ["x86_64", "i386"])
def test_3_1_show_registers(arch, boot):
    """3.1 (dumpstack_64.c, dumpstack_32.c, process.c, process_32.c read): __die's
    show_registers prints 'CPU %d ' (x86_64) and the modules, then show_regs_common's
    KERN_CONT newline -- an empty line after print_modules' own -- and 'Pid: ...' ending in
    the two blanks of the empty DMI vendor and product; x86_64's __show_regs(regs, 1) has the
    CR and DR lines, i386's __show_regs(regs, 0) stops after ' DS:'; 'Process ...', Stack:,
    Call Trace:, then 'Code:' with ' %02x' each on x86_64 too, and the summary."""
    k = boot(arch=arch, kernel="3.1", ram="256M")
    lines, ip, top = kernel_store_with_known_registers(k)
    base = top - 4 * PAGE
    at = next(i for i, line in enumerate(lines) if line.startswith("Oops: 0002 [#1]")) + 1
    if arch == "x86_64":
        assert lines[at:at + 5] == ["CPU 0 ", "Modules linked in:", "", "Pid: 0, comm: swapper Not tainted 3.1.0 #1  ",
                                    f"RIP: 0010:[<{ip:016x}>]  [<{ip:016x}>] 0x{ip:x}"]
        assert lines[at + 6] == "RAX: 0000000000000000 RBX: 0000000001234567 RCX: 0000000009abcdef"
        assert lines[at + 15:at + 18] == [
            "DR3: 0000000000000000 DR6: 00000000ffff0ff0 DR7: 0000000000000400",
            f"Process swapper (pid: 0, threadinfo {base:016x}, task           (null))", "Stack:"]
    else:
        assert lines[at:at + 4] == ["Modules linked in:", "", "Pid: 0, comm: swapper Not tainted 3.1.0 #1  ",
                                    lines[at + 3]]
        assert lines[at + 3].startswith(f"EIP: 0060:[<{ip:08x}>] EFLAGS: ")
        assert lines[at + 5] == "EAX: 00000000 EBX: 01234567 ECX: 09abcdef EDX: 11223344"
        assert lines[at + 7].startswith(" DS: 007b ES: 007b FS: ")
        assert lines[at + 8:at + 10] == [f"Process swapper (pid: 0, ti={base:08x} task=  (null) task.ti={base:08x})",
                                         "Stack:"]
    assert lines[lines.index("Call Trace:") + 1] == old_code_line(k, ip, leading=True)


@pytest.mark.parametrize("arch", ["x86_64", "i386"])
def test_3_6_show_regs_common_and_process_line(arch, boot):
    """3.6 (dumpstack_64.c, dumpstack_32.c, dumpstack.c read): __die prints the modules, then
    x86_64's show_regs 'CPU %d ' and __show_regs, whose show_regs_common prints 'Pid: %d,
    comm: %.20s %s %s %.*s' and ' %s %s' of the DMI vendor and product (empty: the line ends
    in two blanks); the registers; DR0..DR7 always; then 'Process %s (pid: %d, threadinfo
    %p, task %p)' (i386: 'Process %.*s (pid: %d, ti=%p task=%p task.ti=%p)') -- the stack's
    base, and the NULL task_struct pointer as %p prints it -- then Stack:, Call Trace:,
    Code: and the summary as 3.10 has them."""
    k = boot(arch=arch, kernel="3.6", ram="256M")
    lines, ip, top = kernel_store_with_known_registers(k)
    base = top - 4 * PAGE
    at = next(i for i, line in enumerate(lines) if line.startswith("Oops: 0002 [#1]")) + 1
    if arch == "x86_64":
        assert lines[at:at + 4] == ["Modules linked in:", "CPU 0 ", "Pid: 0, comm: swapper/0 Not tainted 3.6.0 #1  ",
                                    f"RIP: 0010:[<{ip:016x}>]  [<{ip:016x}>] 0x{ip:x}"]
        assert lines[at + 5] == "RAX: 0000000000000000 RBX: 0000000001234567 RCX: 0000000009abcdef"
        assert lines[at + 14:at + 17] == [
            "DR3: 0000000000000000 DR6: 00000000ffff0ff0 DR7: 0000000000000400",
            f"Process swapper/0 (pid: 0, threadinfo {base:016x}, task           (null))", "Stack:"]
        sp = int(lines[at + 4].split(":")[2].split()[0], 16)
        check_stack_rows(k, lines[at + 17:lines.index("Call Trace:")], sp, top, 8)
        assert lines[-4:-2] == [f"RIP  [<{ip:016x}>] 0x{ip:x}", f" RSP <{sp:016x}>"]
    else:
        assert lines[at:at + 4] == ["Modules linked in:", "Pid: 0, comm: swapper Not tainted 3.6.0 #1  ",
                                    lines[at + 2], f"EIP is at 0x{ip:x}"]
        assert lines[at + 2].startswith(f"EIP: 0060:[<{ip:08x}>] EFLAGS: ")
        assert lines[at + 4] == "EAX: 00000000 EBX: 01234567 ECX: 09abcdef EDX: 11223344"
        sp = int(lines[at + 5].split("ESP: ")[1], 16)
        assert lines[at + 9:at + 11] == ["DR6: ffff0ff0 DR7: 00000400",
                                         f"Process swapper (pid: 0, ti={base:08x} task=  (null) task.ti={base:08x})"]
        check_stack_rows(k, lines[at + 12:lines.index("Call Trace:")], sp, top, 4)
        assert lines[-3] == f"EIP: [<{ip:08x}>] 0x{ip:x} SS:ESP 0068:{sp:08x}"
    assert lines[lines.index("Call Trace:") + 1] == old_code_line(k, ip, leading=arch == "i386")


@pytest.mark.parametrize("arch", ["x86_64", "i386"])
def test_3_10_module_oops_registers_and_call_trace(arch, boot):
    """examples/modules/rodata_oops.c built for 3.10: its init stores through the address of
    its own .rodata string (movb $0x54,(%rax) / (%eax)), so the register dump's RAX/EAX is
    CR2, and %pS names the module function; the summary repeats it."""
    k = boot(arch=arch, kernel="3.10", ram="256M")
    lines = module_oops(k, arch, "3.10")
    cr2 = int(field(lines, "CR2: ").split()[1], 16)
    if arch == "x86_64":
        rip = field(lines, "RIP: 0010:[<")
        ip = int(rip[len("RIP: 0010:[<"):][:16], 16)
        assert rip.endswith(" [rodata_oops]") and f"]  [<{ip:016x}>] rodata_oops_init+0x" in rip
        assert field(lines, "RAX: ").startswith(f"RAX: {cr2:016x} ")
        assert field(lines, "RIP  [<") == f"RIP  [<{ip:016x}>] {rip.split('] ', 2)[2]}"
        assert "<c6> 00 54 " in field(lines, "Code: ")
    else:
        eip = field(lines, "EIP is at ")
        assert eip.startswith("EIP is at rodata_oops_init+0x") and eip.endswith(" [rodata_oops]")
        assert field(lines, "EAX: ").startswith(f"EAX: {cr2 & 0xFFFFFFFF:08x} ")
        assert " <c6> 00 54" in field(lines, "Code:")
        assert field(lines, "EIP: [<").endswith(f"] {eip[len('EIP is at '):]} SS:ESP 0068:{lines[lines.index(eip) + 2][-8:]}")
    assert lines.index("Modules linked in: rodata_oops(O+)") < lines.index(field(lines, "CPU: "))


def test_3_10_call_trace_prints_the_address_before_the_symbol(boot):
    """printk_stack_address of 3.10 .. 4.9 (4.8 read): ' [<%p>] %s%pB' -- the return address
    that hello_exit's call pushed, then '? ' (no unwinder vouches for it) and %pB."""
    k = boot(arch="x86_64", kernel="3.10", ram="256M")
    lines, ret, sym = hello_exit_calling_memset(k, "3.10")
    trace = lines[lines.index("Call Trace:") + 1:lines.index(field(lines, "Code: "))]
    assert trace == [f" [<{ret:016x}>] ? {sym}"]


def memset_oops(k) -> list[str]:
    """The oops of memset(0x10, 0, 16) called on the CPU: the exported function's own store
    faults, so its entry is the RIP."""
    from mmemu.cpu import Cpu

    cpu = Cpu(k)
    try:
        return cpu.call(k.ksymtab["memset"], 0x10, 0, 16).report.splitlines()
    finally:
        cpu.close()


@pytest.mark.parametrize("kernel,direct", [("3.12", False), ("3.13", True)])
def test_printk_address_of_a_rip_at_a_functions_first_byte(kernel, direct, boot):
    """printk_address (rule printk_address): '%pB' in 3.6 (read) looks the RIP up at RIP - 1,
    so a fault at a function's first byte (here memset, called with a NULL destination)
    names the end of the symbol before it; Jiri Slaby's 'Fix printk_address for direct
    addresses' prints '%pS' (4.8 read): memset+0x0. The RIP line and __die's summary agree."""
    k = boot(arch="x86_64", kernel=kernel, ram="256M")
    lines = memset_oops(k)
    memset = k.ksymtab["memset"]
    before = k.symbol_at(memset - 1)  # the symbol %pB finds, printed with memset's own offset
    name, rest = before.split("+", 1)
    off, size = rest.split("/", 1)
    want = "memset+0x0/0x10" if direct else f"{name}+{int(off, 16) + 1:#x}/{size}"
    assert field(lines, "RIP: ") == f"RIP: 0010:[<{memset:016x}>]  [<{memset:016x}>] {want}"
    assert field(lines, "RIP  [<") == f"RIP  [<{memset:016x}>] {want}"


@pytest.mark.parametrize("kernel", ["4.17", "4.18", "4.19"])
def test_code_after_rip_from_4_18(kernel, boot):
    """4.18 (dumpstack.c read): show_ip prints show_opcodes' Code: right after the RIP line --
    64 bytes from ip - 42, '%02x ' each, '<%02x> ' at ip -- __die prints the modules after
    the registers and oops_end the first oops's registers again; '%42ph <%02x> %21ph' in the
    real 4.19.0-rc3 oops's layout and 5.10 (read). 4.10 .. 4.17 print RSP after RIP and the
    Code: bytes after the call trace (rule show_regs_dumpstack)."""
    k = boot(arch="x86_64", kernel=kernel, ram="256M")
    lines = memset_oops(k)
    memset = k.ksymtab["memset"]
    rip = lines.index("RIP: 0010:memset+0x0/0x10")
    code = k.read(memset - 42, 64)
    if kernel == "4.17":
        assert lines[rip + 1].startswith("RSP: 0018:") and lines[rip - 2] == "Modules linked in:"
        return
    want = ("Code: " + "".join(f"<{b:02x}> " if i == 42 else f"{b:02x} " for i, b in enumerate(code))
            if kernel == "4.18" else f"Code: {code[:42].hex(' ')} <{code[42]:02x}> {code[43:].hex(' ')}")
    assert lines[rip + 1] == want and lines[rip + 2].startswith("RSP: 0018:")
    assert lines[lines.index("Call Trace:") + 1] == "Modules linked in:"
    end = next(i for i, line in enumerate(lines) if line.startswith("---[ end trace "))
    assert lines[end + 1:end + 3] == ["RIP: 0010:memset+0x0/0x10", want]  # exec_summary_regs


@pytest.mark.parametrize("arch,bad", [("x86_64", "<c6> 00 01 c3  Bad RIP value."),
                                      ("i386", " <c6> 00 01 c3  Bad EIP value.")])
def test_code_bytes_stop_at_an_unmapped_byte(arch, bad, boot):
    """show_regs (4.8 read): the Code: loop stops at the first byte probe_kernel_address
    cannot read and says ' Bad RIP value.' (x86_64, after '%02x ') or '  Bad EIP value.'
    (i386, after ' %02x'): here the code ends its vmalloc area, whose guard page follows."""
    from mmemu.cpu import Cpu

    k = boot(arch=arch, kernel="4.9", ram="256M")
    area = k.vmalloc_range(PAGE, k.layout["VMALLOC_START"], k.layout["VMALLOC_END"], "PAGE_KERNEL_EXEC")
    fn = area + PAGE - 6
    k.write(fn, bytes.fromhex("31c0" "c60001" "c3"))  # xor %eax,%eax; movb $1,(%eax); ret
    assert not k.walk(area + PAGE).mapped
    cpu = Cpu(k)
    try:
        lines = cpu.call(fn).report.splitlines()
    finally:
        cpu.close()
    code = next(line for line in lines if line.startswith("Code:"))
    assert code.endswith(bad)
    assert len(code.split()) == 1 + 43 + 4 + 3  # 'Code:', 43 bytes before ip, ip..ret, 'Bad RIP value.'


# -- the register dump of 2.6.25 .. 3.0 ---------------------------------------------------------------------------

def kernel_store_with_memset_on_the_stack(k) -> tuple[list[str], int, int, int]:
    """kernel_store_with_known_registers after pushing the address of the exported memset: a
    kernel-text word on the stack, which the trace names. Also returns memset's address."""
    memset = k.ksymtab["memset"]
    return (*kernel_store_with_known_registers(k, push=memset), memset)


def backtrace_of(k, addr: int) -> str:
    """What %pB prints for *addr*: the symbol of addr - 1 with addr's own offset (a return
    address names the call it returns from), the raw address where no symbol covers it."""
    before = k.symbol_at(addr - 1)
    if before is None:
        return f"0x{addr:x}"
    name, rest = before.split("+", 1)
    off, size = rest.split("/", 1)
    return f"{name}+{int(off, 16) + 1:#x}/{size}"


def after(lines: list[str], prefix: str) -> int:
    """The index of the line after the first one starting with *prefix*."""
    return next(i for i, line in enumerate(lines) if line.startswith(prefix)) + 1


@pytest.mark.parametrize("kernel,header,sysfs,board,stack_inline", [
    # arch/x86/kernel/traps_64.c + process_64.c, 2.6.27 (rmcc/gp_one_kernel 57d93f05): '[%u]', no sysfs line,
    # 'Stack: ' with the first words on its line, two empty lines before 'Code:'
    ("2.6.27", "Oops: 0002 [1] SMP ", False, "", True),
    # dumpstack.c, dumpstack_64.c, process_64.c, 2.6.32 (leemgs/OptimusOneKernel-KandroidCommunity bb7be218):
    # '[#%d]', 'last sysfs file: %s', ' %s' of the DMI product name, 'Stack:' on its own line
    ("2.6.32", "Oops: 0002 [#1] SMP ", True, " ", False),
    # arch/x86/kernel/process.c show_regs_common (2.6.38.7, OESF/linux-linaro-natty): ' ' and '%s %s' of the DMI
    # vendor and product, two blanks
    ("2.6.38", "Oops: 0002 [#1] SMP ", True, "  ", False),
    # dumpstack.c, dumpstack_64.c, process.c, process_64.c, 3.0 (tuxafgmur/Espresso-Kernel 1083be51, Makefile
    # 3.0.31): 2.6.38's lines without 'last sysfs file:', printk_address ' [<%p>] %s%pB'
    ("3.0", "Oops: 0002 [#1] SMP ", False, "  ", False),
])
def test_x86_64_register_dump_2_6(kernel, header, sysfs, board, stack_inline, boot):
    """__die -> show_registers of 2.6.26 .. 3.0: 'CPU %d ' ended by __show_regs' newline, the
    modules, 'Pid: %d, comm: %.20s %s %s %.*s', the long RIP line (printk_address ' [<%016lx>]
    %s%pS'), 'RSP: ...  EFLAGS:' (two blanks), the CPU's registers, DR0..DR7 always, the
    Process line, kstack_depth_to_print (12) words of the stack four a line, 'Call Trace:'
    with ' [<%016lx>] ? %pS' for the text address on the stack (%pB in 3.0: the symbol of the
    address - 1), 'Code: ' '%02x ' from ip - 43 and __die's summary; CR2 and the end marker
    follow."""
    k = boot(arch="x86_64", kernel=kernel, ram="256M")
    lines, ip, top, memset = kernel_store_with_memset_on_the_stack(k)
    at = lines.index(header) + 1
    if sysfs:
        assert lines[at] == "last sysfs file: "
        at += 1
    base = top - 4 * PAGE
    uname = "3.0.0" if kernel == "3.0" else kernel  # 3.0's Makefile: SUBLEVEL = 0, so init_utsname says 3.0.0
    assert lines[at:at + 4] == ["CPU 0 ", "Modules linked in:", f"Pid: 0, comm: swapper Not tainted {uname} #1{board}",
                                f"RIP: 0010:[<{ip:016x}>]  [<{ip:016x}>] 0x{ip:x}"]
    sp = int(lines[at + 4].split(":")[2].split()[0], 16)
    assert lines[at + 4].startswith(f"RSP: 0018:{sp:016x}  EFLAGS: ")
    assert lines[at + 5:at + 7] == ["RAX: 0000000000000000 RBX: 0000000001234567 RCX: 0000000009abcdef",
                                    "RDX: 0000000011223344 RSI: 0000000000000000 RDI: 0000000000000000"]
    assert lines[at + 13:at + 16] == ["DR0: 0000000000000000 DR1: 0000000000000000 DR2: 0000000000000000",
                                      "DR3: 0000000000000000 DR6: 00000000ffff0ff0 DR7: 0000000000000400",
                                      f"Process swapper (pid: 0, threadinfo {base:016x}, task           (null))"]
    trace = lines.index("Call Trace:")
    rows = lines[at + 16:trace]
    if stack_inline:
        assert rows[0].startswith("Stack:  ")
        rows = [rows[0].removeprefix("Stack: ")] + rows[1:]
    else:
        assert rows[0] == "Stack:"
        rows = rows[1:]
    check_stack_rows(k, rows, sp, top, 8, depth=12)
    assert rows[0].split()[0] == f"{memset:016x}"
    empty = ["", ""] if stack_inline else []
    sym = backtrace_of(k, memset) if kernel == "3.0" else "memset+0x0/0x10"
    assert lines[trace + 1:trace + 3 + len(empty)] == [f" [<{memset:016x}>] ? {sym}"] + empty + [
        old_code_line(k, ip, leading=False)]
    assert lines[trace + 3 + len(empty):] == [f"RIP  [<{ip:016x}>] 0x{ip:x}", f" RSP <{sp:016x}>",
                                              "CR2: 0000000000000000", lines[-1]]
    assert lines[-1].startswith("---[ end trace ")


@pytest.mark.parametrize("kernel,sysfs,pid,style", [
    # arch/x86/kernel/traps_32.c + process_32.c, 2.6.27 (rmcc/gp_one_kernel 57d93f05): 2.6.24's lines, the
    # trace's '? '
    ("2.6.27", False, "Pid: 0, comm: swapper Not tainted (2.6.27 #1)", "traps"),
    # dumpstack.c, dumpstack_32.c, process_32.c, 2.6.32 (leemgs/OptimusOneKernel-KandroidCommunity bb7be218)
    ("2.6.32", True, "Pid: 0, comm: swapper Not tainted (2.6.32 #1) ", "dumpstack"),
    # process.c show_regs_common (2.6.38.7, OESF/linux-linaro-natty): the line of x86_64's form, two blanks
    ("2.6.38", True, "Pid: 0, comm: swapper Not tainted 2.6.38 #1  ", "dumpstack"),
    # dumpstack.c, dumpstack_32.c, process.c, process_32.c, 3.0 (tuxafgmur/Espresso-Kernel 1083be51, Makefile
    # 3.0.31): 2.6.38's lines without 'last sysfs file:'; the trace's printk_address is '%pB'
    ("3.0", False, "Pid: 0, comm: swapper Not tainted 3.0.0 #1  ", "dumpstack"),
])
def test_i386_register_dump_2_6(kernel, sysfs, pid, style, boot):
    """die() -> show_registers of 2.6.25 .. 3.0: the modules, __show_registers' newline (an
    empty line), 'Pid: %d, comm: %s %s (%s %.*s)' (2.6.32: and ' %s' of the empty DMI product
    name; 2.6.38: show_regs_common's), the EIP, EAX, ESI and DS lines with the CPU's registers, the Process line, the
    stack (2.6.27: 'Stack: ' and '%08lx ' continued under it; 2.6.32: 'Stack:' then ' %08lx'
    eight a line), 'Call Trace:' with ' [<%08lx>] ? ' and the symbol (%pB in 3.0), 2.6.27's
    '======' line, 'Code: ' and the summary 'EIP: [<%08lx>] %s SS:ESP %04x:%08lx'."""
    k = boot(arch="i386", kernel=kernel, ram="256M")
    lines, ip, top, memset = kernel_store_with_memset_on_the_stack(k)
    at = after(lines, "Oops: 0002 [#1]")
    if sysfs:
        assert lines[at] == "last sysfs file: "
        at += 1
    assert lines[at:at + 3] == ["Modules linked in:", "", pid]
    assert lines[at + 3].startswith(f"EIP: 0060:[<{ip:08x}>] EFLAGS: ") and lines[at + 3].endswith(" CPU: 0")
    assert lines[at + 4:at + 6] == [f"EIP is at 0x{ip:x}", "EAX: 00000000 EBX: 01234567 ECX: 09abcdef EDX: 11223344"]
    sp = int(lines[at + 6].split("ESP: ")[1], 16)
    assert lines[at + 7].startswith(" DS: 007b ES: 007b FS: ") and lines[at + 7].endswith(" SS: 0068")
    ti = sp & ~0x1FFF
    assert lines[at + 8] == f"Process swapper (pid: 0, ti={ti:08x} task=(no task_struct in mmemu) task.ti={ti:08x})"
    trace = lines.index("Call Trace:")
    rows = lines[at + 9:trace]
    if style == "traps":
        assert rows[0].startswith("Stack: ") and all(row.startswith("       ") for row in rows[1:])
        rows = [row[len("Stack: "):] for row in rows]
    else:
        assert rows[0] == "Stack:"
        rows = rows[1:]
    check_stack_rows(k, [" " + row.strip() for row in rows], sp, top, 4, depth=24)
    assert rows[0].split()[0] == f"{memset:08x}"
    ends = [" ======================="] if style == "traps" else []
    sym = backtrace_of(k, memset) if kernel == "3.0" else "memset+0x0/0x10"
    assert lines[trace + 1:] == [f" [<{memset:08x}>] ? {sym}"] + ends + [
        old_code_line(k, ip, leading=False), f"EIP: [<{ip:08x}>] 0x{ip:x} SS:ESP 0068:{sp:08x}",
        "CR2: 0000000000000000", lines[-1]]


def test_the_api_path_of_2_6_32_says_last_sysfs_file_and_has_no_register_dump(boot):
    """An access made through the API has no registers: __die's header and
    sysfs_printk_last_file's line, then the task line and the IP line that say so."""
    k = boot(arch="x86_64", kernel="2.6.32", ram="256M")
    lines = oops_of(k, 0x10, "read")
    at = lines.index("Oops: 0000 [#1] SMP ")
    assert lines[at + 1] == "last sysfs file: "
    assert "Call Trace:" not in lines
