"""The mmemu command as a user runs it: formats, and one-line errors for bad input."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import pytest

from mmemu.cli import main
from mmemu.plugins import default


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_console_script_help_for_every_command():
    exe = shutil.which("mmemu") or str(__import__("pathlib").Path(sys.executable).with_name("mmemu"))
    for cmd in ([], ["arches"], ["layout"], ["ptdump"], ["vtop"], ["demo"]):
        r = subprocess.run([exe, *cmd, "--help"], capture_output=True, text=True)
        assert r.returncode == 0, (cmd, r.stderr)
        assert "usage: mmemu" in r.stdout


def test_arches(capsys):
    code, out, _ = run(capsys, "arches")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["ARCH", "PLUGIN", "VERSION"]
    rows = {line.split()[0]: line.split()[1:3] for line in lines[1:]}
    assert rows["i386"] == ["mmemu_i386", "0.1.0"]
    assert rows["i386_pae"][0] == "mmemu_i386_pae"
    assert rows["x86_64"][0] == "mmemu_x86_64"


def test_layout_json_shape(capsys):
    code, out, _ = run(capsys, "layout", "--arch", "i386", "--kernel", "3.10", "--ram", "1G", "--json")
    assert code == 0
    doc = json.loads(out)
    assert doc["arch"] == "i386" and doc["kernel"] == "3.10"
    assert doc["symbols"]["PAGE_OFFSET"] == "0xc0000000"
    assert doc["symbols"]["high_memory"] == "0xf77fe000"
    assert doc["symbols"]["VMALLOC_START"] == "0xf7ffe000"
    assert all(set(r) >= {"name", "start", "end"} for r in doc["regions"])
    assert all(re.fullmatch(r"0x[0-9a-f]+", v) for v in doc["symbols"].values())


def test_layout_table(capsys):
    code, out, _ = run(capsys, "layout", "--arch", "x86_64", "--kernel", "6.6", "--ram", "4G")
    assert code == 0
    assert re.search(r"^ ffff888000000000 \| ffffc87fffffffff \|\s+64 TB \| ", out, re.M), out


# note_page() of arch/x86/mm/dump_pagetables.c: a range, a marker, or past a marker's max_lines
# (the ESPfix area's 16) "... %lu entr%s skipped ... "
PTDUMP_LINE = re.compile(r"^(---\[ .+ \]---|\.\.\. \d+ entr(y|ies) skipped \.\.\. |"
                         r"0x[0-9a-f]+-0x[0-9a-f]+   [ \d]{8}\d[BKMGTPE] "
                         r"((USR |    )(RW |ro )(PWT |    )(PCD |    )(PSE |    )(PAT |    )(GLB |    )(NX |x  )| {30})"
                         r"(pgd|p4d|pud|pmd|pte))$")


@pytest.mark.parametrize("arch,ram,extra", [("i386", "1G", []), ("i386_pae", "4G", []), ("x86_64", "4G", []),
                                            ("x86_64", "2G", ["--option", "levels=5"])])
def test_ptdump_lines_have_the_kernel_format(capsys, arch, ram, extra):
    code, out, _ = run(capsys, "ptdump", "--arch", arch, "--ram", ram, *extra)
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "---[ User Space ]---"
    for line in lines:
        assert PTDUMP_LINE.match(line), repr(line)
    # contiguous ranges from 0 to the end of the space (the last one ends at 0, as the kernel prints)
    ranges = [tuple(int(x, 16) for x in l.split()[0].split("-")) for l in lines if l.startswith("0x")]
    assert ranges[0][0] == 0 and ranges[-1][1] == 0
    for (s1, e1), (s2, e2) in zip(ranges, ranges[1:]):
        assert e1 == s2 or (arch == "x86_64" and s2 > e1)  # x86_64 skips the guard hole


def test_vtop_x86_64_direct_map(capsys):
    code, out, _ = run(capsys, "vtop", "0xffff888000123456", "--arch", "x86_64", "--ram", "4G")
    assert code == 0
    lines = out.splitlines()
    # crash memory.c do_vtop pads both with mkstring(VADDR_PRLEN, LJUST): trailing blanks included
    assert lines[0] == "VIRTUAL           PHYSICAL        "
    assert lines[1] == "ffff888000123456  123456          "
    assert lines[3].startswith("PGD DIRECTORY: ")
    assert lines[4].startswith("PAGE DIRECTORY: ")
    assert [l.split(":")[0].strip() for l in lines[5:8]] == ["PUD", "PMD", "PTE"]
    assert "  PAGE: 123000" in lines
    # not GLOBAL: PTI (on by default on 4.15+ x86_64) keeps the kernel's own mappings non-global
    assert any(l.endswith("(PRESENT|RW|ACCESSED|DIRTY|NX)") for l in lines)


def test_vtop_i386_large_page(capsys):
    code, out, _ = run(capsys, "vtop", "c8000000", "--arch", "i386", "--ram", "1G", "--kernel", "3.10")
    assert code == 0
    assert "\n  PGD: " in out and " PAGE:  8000000  (4MB)" in out
    assert "PMD:" not in out  # a 4 MiB page: crash prints no PMD line


def test_vtop_json(capsys):
    code, out, _ = run(capsys, "vtop", "0xc0001000", "--arch", "i386_pae", "--ram", "2G", "--json")
    assert code == 0
    doc = json.loads(out)
    assert doc["physical"] == "0x1000"
    assert [s["level"] for s in doc["steps"]] == ["pgd", "pmd", "pte"]
    assert doc["permissions"] == {"write": True, "user": False, "exec": False, "kernel": "rw-", "user_mode": "---"}
    assert [s["kind"] for s in doc["steps"]] == ["table", "table", "leaf"]
    # not global: PTI (on by default on i386_pae 4.19+) keeps the kernel's own mappings non-global
    assert doc["steps"][-1]["attributes"]["exec"] is False and doc["steps"][-1]["attributes"]["global"] is False


@pytest.mark.parametrize("argv,message", [
    (["layout", "--arch", "sparc"], "unknown arch 'sparc'; known arches: " + ", ".join(default()[1].names())),
    (["layout", "--arch", "i386", "--ram", "8G"], "RAM size 8G exceeds the 4G that non-PAE i386"),
    (["layout", "--arch", "i386_pae", "--ram", "128G"], "RAM size 128G exceeds the 64G that PAE"),
    (["layout", "--arch", "x86_64", "--ram", "2T"], "more than the emulated CPU can address"),
    (["layout", "--kernel", "2.4"], "no layout for kernel 2.4; supported: "),
    (["layout", "--arch", "i386", "--cmdline", "vmalloc=2G"], "vmalloc=2G leaves no lowmem"),
    (["layout", "--ram", "12Q"], "malformed RAM size '12Q'"),
    (["layout", "--ram=-1G"], "malformed RAM size"),
    (["layout", "--kernel", "banana"], "malformed kernel version 'banana'"),
    (["layout", "--cpus", "zero"], "malformed CPU count 'zero'"),
    (["layout", "--option", "levels"], "malformed --option 'levels'"),
    (["layout", "--option", "levels=7"], "levels='7' is not one of 4, 5"),
    (["layout", "--option", "colour=blue"], "has no option 'colour'"),
    (["layout", "--arch", "i386", "--cmdline", "vmalloc=lots"], "vmalloc"),
    (["vtop", "xyz"], "malformed virtual address 'xyz'"),
    (["vtop", "0x100000000", "--arch", "i386"], "outside the 32-bit virtual address space"),
    (["vtop", "0x0000900000000000"], "not a canonical 48-bit address"),
    (["ptdump", "--arch", "i386", "--ram", "0"], "RAM size must be positive"),
])
def test_bad_input_is_one_clear_line(capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert err.startswith("mmemu: error: ") and err.count("\n") == 1, err
    assert message in err, err
    assert "Traceback" not in err


def test_usage_errors_exit_nonzero_without_traceback():
    r = subprocess.run([sys.executable, "-m", "mmemu.cli", "vtop"], capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "address" in r.stderr
