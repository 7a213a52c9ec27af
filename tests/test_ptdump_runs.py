"""The dump's walker notes a run of alike entries once (mmemu.render.ptdump ``runs``): what it
prints must be exactly what noting every entry prints, as mm/ptdump.c's note_page() sees each
one. The reference here is the same walker with the format's ``run_mask`` taken away, which
compares every entry whole, entry by entry."""

from __future__ import annotations

import pytest

from mmemu.kernel.process import PROT_READ, PROT_WRITE
from mmemu.render.ptdump import PtdumpFormat, ptdump

MACHINES = [
    dict(arch="x86_64", kernel="6.6", ram="2G", cmdline="nopse nogbpages"),
    dict(arch="x86_64", kernel="4.14", ram="1G"),
    dict(arch="i386_pae", kernel="6.6", ram="4G", cmdline="nopse"),
    dict(arch="i386", kernel="2.6.32", ram="1G", cmdline="nopse"),
    dict(arch="riscv64", kernel="6.6", ram="1G"),
    dict(arch="arm64", kernel="6.6", ram="1G"),
]


def entry_by_entry(k, root=None) -> str:
    fmt_class = type(k.arch.ptdump_format(k.layout))
    saved = fmt_class.run_mask
    fmt_class.run_mask = PtdumpFormat.run_mask
    try:
        return ptdump(k, root)
    finally:
        fmt_class.run_mask = saved


@pytest.mark.parametrize("machine", MACHINES, ids=lambda m: f"{m['arch']}-{m['kernel']}")
def test_runs_print_what_every_entry_prints(boot, machine):
    k = boot(**machine)
    # ranges that break the runs: a vmalloc area beside a read-only mapping, a freed hole,
    # user pages of different rights in a process's table
    a = k.vmalloc(5 * 4096)
    b = k.vmalloc(3 * 4096)
    k.vfree(a)
    p = k.create_process("runs")
    heap = k.mmap(p, None, 0x6000, PROT_READ | PROT_WRITE, name="heap")
    for off in (0, 0x2000, 0x5000):
        k.access(heap + off, "write", user=True, process=p)
    k.mprotect(p, heap + 0x2000, 0x1000, PROT_READ)
    assert k.walk_mm(heap + 0x2000, p).mapped and not k.walk_mm(heap + 0x1000, p).mapped
    assert ptdump(k) == entry_by_entry(k)
    user = ptdump(k, p.pgd)
    assert user == entry_by_entry(k, p.pgd)
    # arm64's dump covers the kernel half (TTBR1) only: a TTBR0 root prints its first marker
    assert b and (len(user.splitlines()) > 3) == (machine["arch"] != "arm64")
