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


def test_die_header_of_i386_by_era(boot):
    """die(): arch/i386/kernel/traps.c (2.6.21) 'Oops: %04lx [#%d]\\n' and 'SMP ' on a line
    of its own; arch/x86/kernel/traps_32.c (2.6.24) on the same line after a blank."""
    k = boot(arch="i386", kernel="2.6.21", ram="256M", options={"NR_CPUS": "2"})
    lines = oops_of(k, 0x10, "read")
    assert lines[lines.index("Oops: 0000 [#1]") + 1] == "SMP "
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
    with pytest.raises(SegmentationFault) as exc:
        k.read(0x1000, 1, user=True, process=p)
    assert "segfault at" not in exc.value.report
