"""`mmemu info tlb` / `mmemu info mem`: QEMU's monitor output (qemu/qemu
target/i386/monitor.c). The lines have the shape of real QEMU output (the reference lines
below, from a real x86_64 guest, quoted on qemu-devel 2021-08-18 and on Stack Overflow for
an i386 guest), and say what the kernel's page tables say: every `info tlb` line is a
present leaf whose frame and flags a walk confirms; `info mem` covers exactly the mapped
addresses, with their user and write rights."""

from __future__ import annotations

import re

import pytest

from mmemu.arch import KW, UR, UW
from mmemu.cli import main
from mmemu.render.qemu import qemu_info

REAL_TLB = ["ffffffffc04f6000: 00000000b2576000 -G-DA----", "ffffffffc04fa000: 00000000b248b000 XG-DA---W"]
REAL_MEM = ["ffffffffc04f6000-ffffffffc04fa000 0000000000004000 -r-", "00000000c0000000-00000000c009b000 000000000009b000 -rw"]
TLB_LINE = re.compile(r"^([0-9a-f]{16}): ([0-9a-f]{16}) ([X-])([G-])([P-])([D-])([A-])([C-])([T-])([U-])([W-])$")
MEM_LINE = re.compile(r"^([0-9a-f]{16})-([0-9a-f]{16}) ([0-9a-f]{16}) ([u-])r([w-])$")
MACHINES = [dict(arch="x86_64", ram="256M"), dict(arch="x86_64", ram="256M", options={"levels": "5"}),
            dict(arch="i386", ram="256M"), dict(arch="i386", ram="256M", cmdline="nopse"),
            dict(arch="i386_pae", ram="256M")]


def test_the_patterns_match_real_qemu_lines():
    assert all(TLB_LINE.match(line) for line in REAL_TLB)
    assert all(MEM_LINE.match(line) for line in REAL_MEM)


def _machine(boot, **kw):
    k = boot(**kw)
    buf = k.vmalloc(5 * 4096)
    k.vfree(k.vmalloc(4096))
    p = k.create_process("q")
    data = k.mmap(p, None, 3 * 4096)
    k.access(data + 4096, "write", user=True, process=p)
    return k, p, buf


@pytest.mark.parametrize("machine", MACHINES, ids=lambda m: f"{m['arch']}-{m.get('options', m.get('cmdline', ''))}")
def test_info_tlb_lines_are_present_leaves(machine, boot):
    k, p, buf = _machine(boot, **machine)
    for root, proc in ((k.pgd, None), (p.pgd, p)):
        lines = qemu_info(k, "tlb", proc).splitlines()
        assert lines
        for line in lines[::max(1, len(lines) // 400)]:
            m = TLB_LINE.match(line)
            assert m, line
            va, frame = int(m.group(1), 16), int(m.group(2), 16)
            w = k.walk(va, root)
            assert w.mapped and va % w.page_size == 0, line
            assert (m.group(11) == "W") == bool(w.rights & (KW | UW)), line
            assert (m.group(10) == "U") == bool(w.rights & UR), line
            assert (m.group(5) == "P") == (w.page_size > 4096), line
            if w.page_size == 4096:
                assert frame & ((1 << 52) - 1) & ~0xFFF == w.phys, line
    assert f"{buf:016x}: " in qemu_info(k, "tlb")


@pytest.mark.parametrize("machine", MACHINES, ids=lambda m: f"{m['arch']}-{m.get('options', m.get('cmdline', ''))}")
def test_info_mem_covers_what_is_mapped_with_its_rights(machine, boot):
    k, p, buf = _machine(boot, **machine)
    bits = 64 if k.paging.bits64 else 32
    mask = (1 << bits) - 1 if bits == 32 else (1 << 64) - 1
    for root, proc in ((k.pgd, None), (p.pgd, p)):
        lines = qemu_info(k, "mem", proc).splitlines()
        prev_end = None
        for line in lines:
            m = MEM_LINE.match(line)
            assert m, line
            start, end = int(m.group(1), 16) & mask, int(m.group(2), 16)
            assert int(m.group(3), 16) & ((1 << 57) - 1) == (end - start) & ((1 << 57) - 1), line
            assert prev_end is None or start >= prev_end
            prev_end = end
            for va in (start, start + (end - start) // 2 & ~0xFFF, end - 4096):
                w = k.walk(va & ((1 << 64) - 1), root)
                assert w.mapped, (line, hex(va))
                assert (m.group(5) == "w") == bool(w.rights & (KW | UW)), (line, hex(va))
    user = [line for line in qemu_info(k, "mem", p).splitlines() if line.endswith("urw")]
    assert len(user) == 1 and int(user[0][34:50], 16) == 4096  # the one page the write faulted in
    assert any(line.startswith(f"{buf:016x}-{buf + 5 * 4096:016x} ") for line in qemu_info(k, "mem").splitlines())


def test_info_on_the_command_line(capsys):
    assert main(["info", "mem", "--arch", "i386", "--ram", "128M"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "00000000c0000000-00000000c1000000 0000000001000000 -rw"
    assert main(["info", "tlb", "--arch", "riscv64"]) == 2
    assert "no QEMU 'info tlb' format" in capsys.readouterr().err
