"""The module loader on the example modules (examples/modules/build: gcc's objects, built
for i386 and x86_64 at 3.10, 4.19, 5.10 and 6.6, riscv64 at 4.19, 5.10 and 6.6, arm64 at
3.10, 4.19, 5.10 and 6.6; the riscv64- and arm64-only checks are in test_module_riscv64.py
and test_module_arm64.py, the tests common to every arch are parametrised with them here).

The referees are outside mmemu: binutils' ``readelf -r`` says which relocations each
object has (offset, type, symbol, addend), the psABI formulas are written out here again
(not taken from the plugin), and the bytes are read back through the kernel's page tables
(the walker), not through the loader's own frame arithmetic. kmod's ``modinfo`` decides the
text of ``mmemu modinfo`` where it is installed.
"""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from mmemu.arch import KW, KX
from mmemu.errors import MmemuError, ModuleError
from mmemu.testing import kernel_state

BUILD = Path(__file__).resolve().parent.parent / "examples" / "modules" / "build"
MODULES = ("hello", "vbuf", "highpage", "kmap_nested", "rodata_oops", "percpu")
ERAS = ("3.10", "4.19", "5.10", "6.6")
ARCHES = ("i386", "i386_pae", "x86_64")
#: the riscv64 objects (its modules start at 4.15; no percpu.c: x86 code) and the eras
#: whose kernels give highpage/kmap_nested a struct page (vmemmap, 5.4+)
RV_ERAS = ("4.19", "5.10", "6.6")
RV_RUN_ERAS = ("5.10", "6.6")


def obj(arch: str, era: str, name: str) -> Path:
    return BUILD / f"{arch if arch in ('x86_64', 'arm64', 'riscv64') else 'i386'}-{era}" / f"{name}.o"


def readelf_relocations(path: Path) -> list[tuple[str, int, str, str, int | None]]:
    """(relocation section, offset, type, symbol, addend or None) from binutils' readelf."""
    out = subprocess.run(["readelf", "-rW", str(path)], capture_output=True, text=True, check=True).stdout
    rels, section = [], None
    for line in out.splitlines():
        m = re.match(r"Relocation section '([^']+)'", line)
        if m:
            section = m.group(1)
            continue
        m = re.match(r"\s*([0-9a-f]+)\s+[0-9a-f]+\s+(R_\w+)\s+([0-9a-f]+)?\s*(\S+)?(?:\s*([+-])\s*([0-9a-f]+))?", line)
        if m and section:
            addend = None
            if m.group(5):
                addend = int(m.group(6), 16) * (-1 if m.group(5) == "-" else 1)
            rels.append((section, int(m.group(1), 16), m.group(2), m.group(4) or "", addend))
    return rels


def expected_value(rtype: str, S: int, A: int, P: int) -> tuple[int, int]:
    """The psABI formulas (i386 and x86-64 psABI, relocation tables)."""
    if rtype == "R_386_32":
        return 4, (S + A) & 0xFFFFFFFF
    if rtype in ("R_386_PC32", "R_386_PLT32"):
        return 4, (S + A - P) & 0xFFFFFFFF
    if rtype == "R_X86_64_64":
        return 8, (S + A) & (1 << 64) - 1
    if rtype in ("R_X86_64_32S", "R_X86_64_32"):
        return 4, (S + A) & 0xFFFFFFFF
    if rtype in ("R_X86_64_PC32", "R_X86_64_PLT32"):
        return 4, (S + A - P) & 0xFFFFFFFF
    raise AssertionError(f"no formula for {rtype}")


def symbol_address(k, mod, name: str) -> int:
    """S: a kernel export, or a section of the module (readelf names section symbols by
    their section)."""
    if name in mod.resolved:
        return mod.resolved[name]
    if name == ".data..percpu" and mod.percpu is not None:
        return mod.percpu  # the per-cpu section of an SMP kernel: a per-cpu pointer
    addr = mod.section_address(name)
    if addr is not None:
        return addr
    return mod.symbols[name]


@pytest.mark.parametrize("era", ERAS)
@pytest.mark.parametrize("arch", ARCHES)
def test_examples_load_relocated_as_readelf_and_the_psabi_say(arch, era, boot):
    k = boot(arch=arch, kernel=era, ram="1G")
    for name in MODULES:
        path = obj(arch, era, name)
        mod = k.load_module(path.read_bytes(), path.name, run_init=False)  # init would change the data
        assert mod.state == "MODULE_STATE_LIVE" and k.find_module(name) is mod
        checked = 0
        for section, offset, rtype, sym, addend in readelf_relocations(path):
            target = section.removeprefix(".rela").removeprefix(".rel")
            base = mod.section_address(target)
            placement = next(p for p in mod.layout.placements.values() if p.section.name == target)
            if placement.region.init:
                continue  # freed after init: nothing to read there any more
            P = base + offset
            width = 8 if rtype == "R_X86_64_64" else 4
            if addend is None:  # REL: the addend is what the object held at the place
                data = path.read_bytes()
                from mmemu.module.elf import ModuleFile
                mf = ModuleFile(data, path.name)
                sec = mf.section_by_name(target)
                A = struct.unpack_from("<i", data, sec.offset + offset)[0]
            else:
                A = addend
            S = symbol_address(k, mod, sym)
            width, value = expected_value(rtype, S, A, P)
            assert k.read(P, width) == value.to_bytes(width, "little"), \
                f"{path.name} {section}+{offset:#x} {rtype} {sym}{addend or 0:+#x}: wrong bytes at {P:#x}"
            checked += 1
        assert checked or name == "rodata_oops"
    k.check_invariants()


@pytest.mark.parametrize("arch,era", [("i386", "3.10"), ("i386_pae", "5.10"), ("x86_64", "6.6"), ("x86_64", "4.19")])
def test_sections_land_with_their_bytes_and_permissions(arch, era, boot):
    k = boot(arch=arch, kernel=era, ram="1G")
    path = obj(arch, era, "hello")
    data = path.read_bytes()
    mod = k.load_module(data, path.name, run_init=False)
    nx = arch != "i386"  # 2-level i386 has no NX bit
    relocated = {s.removeprefix(".rela").removeprefix(".rel") for s, *_ in readelf_relocations(path)}
    for p in mod.layout.placements.values():
        sec = p.section
        if not sec.size or p.region.init:
            continue
        w = k.walk(p.address)
        assert w.mapped, f"{sec.name} at {p.address:#x} is not mapped"
        writable, executable = bool(w.rights & KW), bool(w.rights & KX)
        if p.kind == "text":
            assert executable and not writable, f"{sec.name}: text must be read-only and executable"
        elif p.kind == "rodata":
            assert not writable and (executable == (not nx)), f"{sec.name}: rodata must be read-only, NX"
        else:
            assert writable and (executable == (not nx)), f"{sec.name}: data must be writable, NX"
        if sec.name not in relocated:
            want = bytes(sec.size) if sec.nobits else data[sec.offset:sec.offset + sec.size]
            assert k.read(p.address, sec.size) == want, f"{sec.name}: the bytes are not the file's"
    # the init part is freed once the module is live: nothing maps it any more
    for region in mod.layout.regions:
        if region.init:
            assert not k.walk(region.base).mapped


def test_the_area_is_module_memory_in_the_module_range(boot):
    k = boot(arch="x86_64", kernel="6.6", ram="1G")
    mod = k.load_module(obj("x86_64", "6.6", "vbuf").read_bytes(), "vbuf.o")
    lo, hi = k.layout["MODULES_VADDR"], k.layout["MODULES_END"]
    for region in mod.layout.regions:
        if region.init:
            continue
        area = k.find_vmap_area(region.base)
        assert area is not None and area.vm.caller == "module_alloc"
        assert lo <= area.va_start < area.va_end <= hi
    listing = k.kmem_v()  # crash's kmem -v lists the module's areas
    assert all(f"{r.base:x} - {r.base + r.size + 4096:x}" in listing  # the guard page counts
               for r in mod.layout.regions if not r.init)


def test_rmmod_gives_everything_back(boot):
    k = boot(arch="i386_pae", kernel="6.6", ram="1G")
    k.purge_vmap_area_lazy()
    free_before = k.frames.nr_free_pages() if hasattr(k.frames, "nr_free_pages") else None
    for name in MODULES:
        k.load_module(obj("i386_pae", "6.6", name).read_bytes(), f"{name}.o", run_init=False)
    for name in MODULES:
        k.delete_module(name, run_exit=False)
    k.purge_vmap_area_lazy()
    assert k.modules == []
    lo, hi = k.layout["MODULES_VADDR"], k.layout["MODULES_END"]
    assert not [a for a in k.vmap_areas if a.va_start < hi and lo < a.va_end], "a module area is left"
    owners = [rec.owner for rec in k.frames.allocated.values()]
    assert "module_alloc" not in owners, "a module page is left"
    if free_before is not None:
        assert k.frames.nr_free_pages() <= free_before
    k.check_invariants()


def test_loading_steps_one_at_a_time_and_abandoning_undoes_them(boot):
    k = boot(arch="x86_64", kernel="6.6", ram="1G")
    before = kernel_state(k)
    load = k.load_module_steps(obj("x86_64", "6.6", "vbuf").read_bytes(), "vbuf.o")
    functions = []
    for step in load:
        functions.append(step.function)
        if step.function == "apply_relocate_add":
            break
    assert functions[:3] == ["elf_validity_check", "check_modinfo", "layout_sections"]
    assert "module_alloc" in functions and "move_module" in functions
    assert any(op.writer == "module_alloc" for s in load.steps for op in s.operations)
    # between two steps the load holds the kernel: no other operation starts
    with pytest.raises(MmemuError, match="load of module vbuf is in progress"):
        k.vmalloc(4096)
    # the module's pages are there to look at
    region = load.module.layout.regions[0]
    assert k.walk(region.base).mapped
    load.abandon()
    assert kernel_state(k) == before
    k.vmalloc(4096)  # the kernel is free again


def test_the_steps_of_a_whole_load(boot):
    k = boot(arch="i386", kernel="6.6", ram="1G")
    load = k.load_module_steps(obj("i386", "6.6", "highpage").read_bytes(), "highpage.o")
    steps = list(load)
    names = [s.function for s in steps]
    assert names[0] == "elf_validity_check" and names[-1] == "do_init_module"
    assert names.index("simplify_symbols") < names.index("apply_relocate") < names.index("module_enable_ro")
    assert load.module.state == "MODULE_STATE_LIVE"
    # every mapping made is in some step's operations, and the kernel's event log has them
    writers = {op.writer for s in steps for op in s.operations}
    assert {"module_alloc", "vfree"} <= writers
    assert any(e.op.writer == "module_alloc" for e in k.recent_events)


@pytest.mark.parametrize("mutate,message", [
    (lambda d: d[:40], "Invalid ELF|truncated|malformed"),
    (lambda d: b"\x7fELG" + d[4:], "Invalid ELF header magic"),
    (lambda d: d[:16] + struct.pack("<H", 2) + d[18:], "Invalid ELF header type"),
    (lambda d: d[:18] + struct.pack("<H", 40) + d[20:], "Invalid architecture in ELF header: 40"),
])
def test_malformed_objects_are_refused_with_nothing_changed(mutate, message, boot):
    k = boot(arch="x86_64", kernel="6.6", ram="1G")
    before = kernel_state(k)
    with pytest.raises(ModuleError, match=message):
        k.load_module(mutate(obj("x86_64", "6.6", "hello").read_bytes()), "hello.o")
    assert kernel_state(k) == before


def test_a_module_for_another_kernel_or_arch_is_refused(boot):
    k = boot(arch="x86_64", kernel="5.10", ram="1G")
    before = kernel_state(k)
    with pytest.raises(ModuleError, match=r"version magic '6\.6\.0 SMP mod_unload ' should be '5\.10\.0 SMP mod_unload '"):
        k.load_module(obj("x86_64", "6.6", "hello").read_bytes(), "hello.o")
    with pytest.raises(ModuleError, match="Invalid architecture in ELF header"):
        k.load_module(obj("i386", "5.10", "hello").read_bytes(), "hello.o")
    assert kernel_state(k) == before


def test_unknown_symbols_fail_the_load_unless_stubbed(boot):
    k = boot(arch="x86_64", kernel="6.6", ram="1G")
    data = obj("x86_64", "6.6", "hello").read_bytes()
    # rename the import "kfree" to "kfreX" in the string table: the kernel exports no such thing
    bad = data.replace(b"\0kfree\0", b"\0kfreX\0")
    before = kernel_state(k)
    with pytest.raises(ModuleError, match=r"hello: Unknown symbol kfreX \(err -2\)") as err:
        k.load_module(bad, "hello.o")
    assert err.value.errno == 2
    assert kernel_state(k) == before
    mod = k.load_module(bad, "hello.o", stub_missing=True)
    assert mod.stubbed == ["kfreX"] and k.kernel_symbol_name(mod.resolved["kfreX"]) == "kfreX"


def test_a_module_loads_once(boot):
    k = boot(arch="i386", kernel="4.19", ram="1G")
    data = obj("i386", "4.19", "hello").read_bytes()
    k.load_module(data, "hello.o")
    with pytest.raises(ModuleError, match="already loaded"):
        k.load_module(data, "hello.o")
    k.delete_module("hello")
    k.load_module(data, "hello.o")
    with pytest.raises(ModuleError, match="no module 'nope' is loaded"):
        k.delete_module("nope")


def test_3_10_refuses_plt32_as_the_kernel_of_2013_did(boot):
    """R_X86_64_PLT32 is accepted from 4.16 ('x86: Treat R_X86_64_PLT32 as R_X86_64_PC32'):
    the 4.19 objects (binutils 2.40 writes PLT32 for every call) load on 4.19 and are
    refused by 3.10 with its message."""
    data = obj("x86_64", "4.19", "hello").read_bytes().replace(b"4.19.0 SMP", b"3.10.0 SMP")
    assert b"3.10.0 SMP" in data
    k = boot(arch="x86_64", kernel="3.10", ram="1G")
    with pytest.raises(ModuleError, match=r"^module: hello: Unknown rela relocation: 4$"):
        k.load_module(data, "hello.o")


def test_modinfo_and_insmod_on_the_command_line(capsys, tmp_path):
    from mmemu.cli import main

    path = obj("x86_64", "6.6", "vbuf")
    assert main(["modinfo", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == f"filename:       {path}"
    assert "vermagic:       6.6.0 SMP mod_unload \n" in out and "license:        GPL\n" in out
    assert main(["insmod", str(path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["module"] == "vbuf" and doc["state"] == "MODULE_STATE_LIVE"
    assert {s["name"] for s in doc["sections"]} >= {".init.text", ".exit.text", ".bss"}
    assert set(doc["resolved"]) >= {"vzalloc", "vfree", "vmalloc_to_pfn", "_printk"}
    assert sum(doc["relocations"].values()) == len(readelf_relocations(path))
    assert main(["insmod", str(path)]) == 0
    text = capsys.readouterr().out
    assert "module_alloc: MOD_TEXT" in text and "Relocations applied:" in text
    assert main(["insmod", str(obj("i386", "6.6", "vbuf"))]) == 2
    assert "Invalid architecture in ELF header" in capsys.readouterr().err
    assert main(["insmod", str(tmp_path / "missing.ko")]) == 2
    assert "cannot read module" in capsys.readouterr().err


@pytest.mark.skipif(shutil.which("modinfo") is None, reason="kmod's modinfo is not installed (.ci/run installs it)")
def test_mmemu_modinfo_prints_what_kmods_modinfo_prints(tmp_path, capsys):
    from mmemu.cli import main

    for arch, era in (("x86_64", "6.6"), ("i386", "3.10"), ("riscv64", "4.19")):
        ko = tmp_path / f"hello-{arch}-{era}.ko"  # kmod's modinfo wants a .ko
        ko.write_bytes(obj(arch, era, "hello").read_bytes())
        real = subprocess.run(["modinfo", str(ko)], capture_output=True, text=True, check=True).stdout
        assert main(["modinfo", str(ko)]) == 0
        assert capsys.readouterr().out == real


def _retype_first_relocation(data: bytes, rtype: int) -> bytes:
    """The object with its first RELA relocation's type replaced (ELF64)."""
    from mmemu.module.elf import ModuleFile

    mf = ModuleFile(data, "x.ko")
    rel = mf.relocations[0].section
    out = bytearray(data)
    info = struct.unpack_from("<Q", out, rel.offset + 8)[0]
    struct.pack_into("<Q", out, rel.offset + 8, (info & ~0xFFFFFFFF) | rtype)
    return bytes(out)


@pytest.mark.parametrize("era,unknown,overflow", [
    ("2.6.32", "module synthetic: Unknown rela relocation: 99",
     "overflow in relocation type 10 val ffffffff"),
    ("6.6", "module: synthetic: Unknown rela relocation: 99",
     "module: overflow in relocation type 10 val ffffffff"),
])
def test_x86_64_refuses_what_its_apply_relocate_add_refuses(era, unknown, overflow, boot):
    from mmemu.testing.modules import synthetic_module

    k = boot(arch="x86_64", kernel=era, ram="1G")
    data = synthetic_module(k, relocations=8)
    before = kernel_state(k)
    with pytest.raises(ModuleError) as err:
        k.load_module(_retype_first_relocation(data, 99), "s.ko")
    assert str(err.value) == unknown
    # R_X86_64_32 of an address in the top 2 GiB: zero-extension does not give it back
    with pytest.raises(ModuleError, match="likely not compiled with -mcmodel=kernel") as err:
        k.load_module(_retype_first_relocation(data, 10), "s.ko")
    assert str(err.value).startswith(overflow)
    assert kernel_state(k) == before


def test_a_place_that_is_not_zero_is_refused_from_4_15(boot):
    """x86/modules: the RELA place must hold zero (a relocation applied twice)."""
    from mmemu.module.elf import ModuleFile
    from mmemu.testing.modules import synthetic_module

    for era, refused in (("4.14", False), ("4.19", True)):
        k = boot(arch="x86_64", kernel=era, ram="1G")
        data = bytearray(synthetic_module(k, relocations=4))
        mf = ModuleFile(bytes(data), "s.ko")
        text, rel = mf.section_by_name(".text"), mf.relocations[0]
        data[text.offset + rel.offsets[0]] = 0x5A
        if refused:
            with pytest.raises(ModuleError, match="module: x86/modules: Skipping invalid relocation target, existing "
                                                  "value is nonzero for type"):
                k.load_module(bytes(data), "s.ko")
        else:
            k.load_module(bytes(data), "s.ko")


def test_the_unknown_symbol_line_of_each_era(boot):
    from mmemu.testing.modules import synthetic_module

    for era, line in (("2.6.32", "synthetic: Unknown symbol kfreX"), ("4.0", "synthetic: Unknown symbol kfreX (err 0)"),
                      ("6.6", "synthetic: Unknown symbol kfreX (err -2)")):
        k = boot(arch="i386", kernel=era, ram="1G")
        data = synthetic_module(k, imports=3)
        first = next(iter(k.ksymtab))  # an import of the synthetic module, renamed in place
        name = "kfreX"[:len(first)].ljust(len(first), "X")
        bad = data.replace(b"\0" + first.encode() + b"\0", b"\0" + name.encode() + b"\0")
        with pytest.raises(ModuleError) as err:
            k.load_module(bad, "s.ko")
        assert str(err.value) == line.replace("kfreX", name)


def test_taints_and_the_kernel_log(boot):
    """check_modinfo's taints: O (no intree=Y in .modinfo) with its message once per boot
    (4.19+), F for a forced version magic, P for a license that is not GPL-compatible."""
    k = boot(arch="x86_64", kernel="6.1", ram="1G")
    hello = obj("x86_64", "6.6", "hello").read_bytes()
    with pytest.raises(ModuleError, match="version magic"):
        k.load_module(hello, "hello.o")
    assert k.taints == set() and "version magic '6.6.0 SMP mod_unload ' should be" in k.dmesg()
    mod = k.load_module(hello, "hello.o", force_vermagic=True)
    assert mod.taints == "FO" and k.taints == {"F", "O"}
    # try_to_force_load, add_taint's lockdep notice (F makes lockdep unreliable), then the O message
    assert ("hello: bad vermagic: kernel tainted.\nDisabling lock debugging due to kernel taint\n"
            "hello: loading out-of-tree module taints kernel.\n") in k.dmesg()
    proprietary = obj("x86_64", "6.6", "vbuf").read_bytes().replace(b"license=GPL\0", b"license=BSD\0")
    mod = k.load_module(proprietary, "vbuf.o", force_vermagic=True)
    assert mod.taints == "PFO"
    assert "vbuf: module license 'BSD' taints kernel." in k.dmesg()
    assert k.dmesg().count("loading out-of-tree module taints kernel.") == 1  # once per boot
    # each message only while its flag is clear: no second "kernel tainted", one lockdep notice
    assert k.dmesg().count("kernel tainted.") == 1 and k.dmesg().count("Disabling lock debugging") == 1
    old = boot(arch="x86_64", kernel="4.0", ram="1G")
    # the 3.10 object's vermagic made 4.0's, its length kept (a NUL more ends it)
    data = obj("x86_64", "3.10", "hello").read_bytes().replace(b"3.10.0 SMP mod_unload ", b"4.0.0 SMP mod_unload \0")
    assert old.load_module(data, "hello.o").taints == "O"
    assert "taints" not in old.dmesg()  # 4.0 sets O silently


@pytest.mark.parametrize("arch,era", [(a, e) for a in ARCHES + ("arm64",) for e in ERAS]
                         + [("riscv64", e) for e in RV_RUN_ERAS])
def test_examples_run_their_init_and_exit_on_the_cpu(arch, era, boot):
    """init_module runs at kernel privilege: its calls into the kernel (printk, kmalloc,
    vzalloc, kmap...) make real mappings; rmmod runs cleanup_module and frees everything."""
    k = boot(arch=arch, kernel=era, ram="1G")
    for name in ("hello", "vbuf", "highpage", "kmap_nested"):
        k.load_module(obj(arch, era, name).read_bytes(), f"{name}.o")
        k.check_invariants()
    log = k.dmesg()
    assert "hello: hello from a module" in log
    vbuf = [line for line in log.splitlines() if line.startswith("vbuf: page ")]
    assert len(vbuf) == 5
    for line in vbuf:  # each page's pfn, as the kernel's walk of the vmalloc address says
        m = re.match(r"vbuf: page \d at ([0-9a-f]+) -> pfn ([0-9a-f]+)", line)
        assert m, line
    assert "read back ABC" in log
    for name in ("kmap_nested", "highpage", "vbuf", "hello"):
        k.delete_module(name)
    assert k.modules == []
    assert "hello: goodbye" in k.dmesg()
    k.purge_vmap_area_lazy()
    assert "module_alloc" not in [rec.owner for rec in k.frames.allocated.values()]
    k.check_invariants()


@pytest.mark.parametrize("arch,era,ip", [("x86_64", "6.6", "RIP: 0010:rodata_oops_init+0x"),
                                        ("i386", "3.10", "EIP is at rodata_oops_init+0x"),
                                        ("i386_pae", "6.6", "EIP: rodata_oops_init+0x"),
                                        ("riscv64", "6.6", "epc : rodata_oops_init+0x"),
                                        ("arm64", "6.6", "pc : rodata_oops_init+0x")])
def test_a_write_to_its_own_rodata_oopses_naming_the_function(arch, era, ip, boot):
    from mmemu.errors import Oops

    k = boot(arch=arch, kernel=era, ram="1G")
    with pytest.raises(Oops) as err:
        k.load_module(obj(arch, era, "rodata_oops").read_bytes(), "rodata_oops.o")
    report = err.value.report
    assert ip in report and "[rodata_oops]" in report
    assert "Modules linked in: rodata_oops(O+)" in report
    # print_tainted(): the out-of-tree module set O (TAINT_OOT_MODULE), P clear shows as G
    task = next(line for line in report.splitlines() if " PID: 0 " in line or line.startswith("Pid: "))
    assert re.search(r"Tainted: G +O", task), task
    # the kernel leaves the module as the oops left it: listed, COMING, not removable
    mod = k.find_module("rodata_oops")
    assert mod is not None and mod.state == "MODULE_STATE_COMING"
    with pytest.raises(ModuleError, match="not live"):
        k.delete_module("rodata_oops")
    assert report in k.dmesg()


def test_insmod_of_a_module_that_oopses_prints_the_oops_and_exits_1(capsys):
    from mmemu.cli import main

    assert main(["insmod", str(obj("i386", "6.6", "rodata_oops")), "--arch", "i386"]) == 1
    out = capsys.readouterr().out
    assert "EIP: rodata_oops_init+0x" in out and "Modules linked in: rodata_oops(O+)" in out
    assert main(["insmod", str(obj("i386", "6.6", "rodata_oops")), "--arch", "i386", "--no-init"]) == 0
    assert "MODULE_STATE_LIVE" in capsys.readouterr().out


def _patch_init(data: bytes, code: bytes) -> bytes:
    """The x86_64 object with *code* at the start of its init function, the relocations
    that pointed into those bytes made R_X86_64_NONE."""
    from mmemu.module.elf import ModuleFile

    mf = ModuleFile(data, "m.o")
    init = mf.symbol("init_module")
    text = mf.sections[init.shndx]
    out = bytearray(data)
    out[text.offset + init.value:text.offset + init.value + len(code)] = code
    for rel in mf.relocations:
        if rel.target != init.shndx:
            continue
        for i, off in enumerate(rel.offsets):
            if init.value - 8 < off < init.value + len(code):
                entry = rel.section.offset + i * 24 + 8
                info = struct.unpack_from("<Q", out, entry)[0]
                struct.pack_into("<Q", out, entry, info & ~0xFFFFFFFF)  # R_X86_64_NONE
    return bytes(out)


def test_a_failing_or_runaway_init_undoes_the_load(boot):
    """init returning -ENOMEM: do_init_module's fail path frees everything (the load is
    undone); an init that never returns is stopped by the instruction budget, and undone."""
    k = boot(arch="x86_64", kernel="6.6", ram="1G")
    data = obj("x86_64", "6.6", "rodata_oops").read_bytes()
    before = kernel_state(k)
    # mov eax, -12; ret
    with pytest.raises(ModuleError, match=r"init_module returned -12.*Cannot allocate memory") as err:
        k.load_module(_patch_init(data, bytes.fromhex("b8f4ffffffc3")), "r.o")
    assert err.value.errno == 12 and kernel_state(k) == before and k.modules == []
    # jmp $ : forever
    with pytest.raises(ModuleError, match="did not return") as err:
        k.load_module(_patch_init(data, b"\xeb\xfe"), "r.o", budget=20_000)
    assert kernel_state(k) == before and k.modules == []


@pytest.mark.parametrize("arch", ["x86_64", "i386", "arm64", "riscv64"])
def test_a_module_loaded_where_another_ran_runs_its_own_code(arch, boot):
    """Unicorn keeps translated code per address and never sees mmemu's writes to RAM: a
    module loaded where another one ran must still run its own bytes (the CPU drops its
    translations when the kernel's code generation moves)."""
    from mmemu.cpu import Cpu

    k = boot(arch=arch, kernel="6.6", ram="1G")
    cpu = Cpu(k)  # one CPU for both loads: its translations would outlive the first module
    try:
        first = k.load_module(obj(arch, "6.6", "hello").read_bytes(), "hello.o")
        text = first.layout.regions[0].base
        k.delete_module("hello")
        k.purge_vmap_area_lazy()
        start = len(k.log)
        second = k.load_module(obj(arch, "6.6", "vbuf").read_bytes(), "vbuf.o")
        assert second.layout.regions[0].base == text, "the second module did not land where the first was"
        log = "".join(r.text + "\n" for r in k.log[start:])
        assert "vbuf: 5 pages at" in log and "hello from a module" not in log
    finally:
        cpu.close()


def test_the_w_x_audit(boot, capsys):
    """debug_checkwx in the kernel's words: a module's memory is never writable and
    executable once loaded; a vmalloc'd PAGE_KERNEL_EXEC area is, and the audit says so."""
    from mmemu.cli import main

    k = boot(arch="x86_64", kernel="6.6", ram="1G")
    k.load_module(obj("x86_64", "6.6", "vbuf").read_bytes(), "vbuf.o")
    # then the user copy's audit (PTI, on by default: ptdump_walk_user_pgd_level_checkwx)
    passed = "x86/mm: Checked W+X mappings: passed, no W+X pages found."
    user = ["x86/mm: Checking user space page tables", passed]
    assert k.check_wx() == [passed] + user
    va = k.vmalloc_range(2 * 4096, k.layout["VMALLOC_START"], k.layout["VMALLOC_END"], prot="PAGE_KERNEL_EXEC")
    assert k.check_wx() == [f"x86/mm: Found insecure W+X mapping at address 0x{va:x}",
                            "x86/mm: Checked W+X mappings: FAILED, 2 W+X pages found."] + user
    assert boot(arch="i386", kernel="6.6", ram="1G").check_wx() == []  # no NX: the kernel checks nothing
    assert main(["ptdump", "--check-wx", "--arch", "i386_pae"]) == 0  # PTI on 4.19+ PAE too: its user copy
    assert capsys.readouterr().out == "".join(line + "\n" for line in [passed] + user)
    assert main(["ptdump", "--check-wx", "--kernel", "4.3"]) == 2
    assert "CONFIG_DEBUG_WX is 4.4+" in capsys.readouterr().err


def test_lsmod(boot):
    """kmod's lsmod: ``%-19s %8lu  %d`` of /proc/modules (tools/lsmod.c), newest first."""
    k = boot(arch="x86_64", kernel="6.6", ram="1G")
    for name in ("hello", "vbuf"):
        k.load_module(obj("x86_64", "6.6", name).read_bytes(), f"{name}.o")
    sizes = {m.name: sum(r.size for r in m.layout.regions if not r.init) for m in k.modules}
    assert k.lsmod() == ("Module                  Size  Used by\n"
                         f"vbuf                {sizes['vbuf']:8d}  0\nhello               {sizes['hello']:8d}  0\n")
    assert sizes["vbuf"] == 3 * 4096  # MOD_TEXT, MOD_RODATA, MOD_DATA: a page each


@pytest.mark.parametrize("arch,era", [(a, e) for a in ARCHES for e in ("2.6.32", "4.19", "5.10", "6.6")]
                         + [("arm64", e) for e in ("3.7", "4.19", "5.10", "6.6")] + [("riscv64", e) for e in RV_ERAS])
def test_every_exported_kernel_function_has_an_implementation(arch, era, boot):
    """A promise of mmemu.module.exports: each name in the kernel's symbol table is a real
    address whose call runs an implementation (stubs exist only for stub_missing)."""
    from mmemu.module.exports import function

    k = boot(arch=arch, kernel=era, ram="1G")
    assert k.ksymtab, "no exports"
    missing = [name for name in k.ksymtab if function(name) is None]
    assert not missing, f"exported without an implementation: {missing}"
    assert all(k.kernel_symbol_name(addr) == name for name, addr in k.ksymtab.items())
