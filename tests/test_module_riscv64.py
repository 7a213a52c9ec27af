"""The module loader on riscv64 (examples/modules/build/riscv64-*: riscv64-linux-gnu-gcc's
objects at 4.19, 5.10 and 6.6, linked with the module linker script's .plt/.got/.got.plt).

The referees are outside mmemu: binutils' ``readelf -r`` lists each object's relocations,
capstone decodes the relocated instructions read back through the kernel's page tables,
and the address each call or PC-relative access reaches is computed here from the decoded
immediates. What the generic module tests check on every arch (init and exit on the CPU,
the oops, code reloaded in place, the exports) runs riscv64 too, in test_module.py.
"""

from __future__ import annotations

import json
import struct

import pytest
from capstone import CS_ARCH_RISCV, CS_MODE_RISCV64, CS_MODE_RISCVC, Cs
from test_module import RV_ERAS, obj, readelf_relocations, symbol_address

from mmemu.arch import KW, KX
from mmemu.errors import MmemuError, ModuleError
from mmemu.module.elf import ModuleFile
from mmemu.testing import kernel_state

CS = Cs(CS_ARCH_RISCV, CS_MODE_RISCV64 | CS_MODE_RISCVC)
CS.detail = True
M64 = (1 << 64) - 1


def _sext(v: int, bits: int) -> int:
    return v - (1 << bits) if v >> (bits - 1) & 1 else v


def insn(k, va: int, n: int = 4):
    """capstone's reading of the instruction at *va* (read through the page tables)."""
    return next(CS.disasm(k.read(va, n), va))


def u_imm(k, va: int, mnemonic: str) -> int:
    """The U-type immediate of the auipc/lui at *va*, shifted into place."""
    i = insn(k, va)
    assert i.mnemonic == mnemonic, f"{va:#x}: {i.mnemonic} {i.op_str}"
    return _sext(i.operands[-1].imm, 20) << 12


def call_target(k, P: int) -> int:
    """Where the auipc+jalr pair at *P* jumps (both decoded)."""
    hi = u_imm(k, P, "auipc")
    jalr = int.from_bytes(k.read(P + 4, 4), "little")
    assert jalr & 0x7F == 0x67, f"{P + 4:#x} is no jalr"
    return (P + hi + _sext(jalr >> 20, 12)) & M64


def local_symbol(mod, name: str) -> int | None:
    """A static function or object of the module (gcc's riscv64 relocations name them, not
    their section), from its kallsyms."""
    return next((addr for addr, _size, sym, _init in mod.kallsyms if sym == name), None)


@pytest.mark.parametrize("era", RV_ERAS)
def test_calls_and_pc_relative_accesses_reach_their_targets(era, boot):
    """Every R_RISCV_CALL_PLT pair (decoded) reaches the symbol, or, out of auipc's reach
    (4.19's modules in the vmalloc space, 64 GiB below the kernel), a PLT entry whose auipc+ld
    loads the symbol from .got.plt and jumps there; every PCREL_HI20's auipc holds the hi20
    of S + A - P; BRANCH/JAL/RVC targets decode to S + A."""
    k = boot(arch="riscv64", kernel=era, ram="1G")
    for name in ("hello", "vbuf", "highpage", "kmap_nested", "rodata_oops"):
        path = obj("riscv64", era, name)
        mod = k.load_module(path.read_bytes(), path.name, run_init=False)
        plt, got_plt = mod.section_address(".plt"), mod.section_address(".got.plt")
        checked = 0
        for section, offset, rtype, sym, addend in readelf_relocations(path):
            target = section.removeprefix(".rela")
            placement = next(p for p in mod.layout.placements.values() if p.section.name == target)
            if placement.region.init:
                continue  # freed after init
            P = mod.section_address(target) + offset
            if sym.startswith(".L"):
                continue  # a local label (PCREL_LO12's auipc): checked through its HI20 entry
            S = local_symbol(mod, sym)
            if S is None:
                S = symbol_address(k, mod, sym)
            want = (S + (addend or 0)) & M64
            if rtype == "R_RISCV_CALL_PLT":
                reached = call_target(k, P)
                if reached != want:
                    assert plt <= reached < plt + 12 * len(mod.arch["plt"]), f"{P:#x} calls {reached:#x}"
                    slot = (reached + u_imm(k, reached, "auipc") + insn(k, reached + 4).operands[1].mem.disp) & M64
                    assert got_plt <= slot and int.from_bytes(k.read(slot, 8), "little") == want
                    assert insn(k, reached + 8).mnemonic in ("jr", "jalr")
            elif rtype == "R_RISCV_PCREL_HI20":
                off = (want - P) & M64
                assert u_imm(k, P, "auipc") & M64 == ((off + 0x800) & 0xFFFFF000) | (M64 ^ 0xFFFFFFFF
                                                                                       if (off + 0x800) & 1 << 31 else 0)
            elif rtype in ("R_RISCV_BRANCH", "R_RISCV_JAL", "R_RISCV_RVC_BRANCH", "R_RISCV_RVC_JUMP"):
                i = insn(k, P, 2 if rtype.startswith("R_RISCV_RVC") else 4)
                assert (P + i.operands[-1].imm) & M64 == want, f"{rtype} at {P:#x}: {i.mnemonic} {i.op_str}"
            else:
                continue
            checked += 1
        assert checked
        if era == "4.19":
            assert mod.arch["plt"], "no call needed a PLT entry on 4.19"
        else:
            assert mod.arch["plt"] == [], "a call went through the PLT within auipc's reach"
    k.check_invariants()


@pytest.mark.parametrize("era,lo,hi", [("4.19", "VMALLOC_START", "VMALLOC_END"),
                                       ("5.10", "_end - 2G", "VMALLOC_END"),
                                       ("6.6", "MODULES_VADDR", "MODULES_END")])
def test_module_alloc_range_of_each_era(era, lo, hi, boot):
    k = boot(arch="riscv64", kernel=era, ram="1G")
    mod = k.load_module(obj("riscv64", era, "hello").read_bytes(), "hello.o")
    s = k.layout.symbols
    start = max((s["_end"] - (2 << 30) + 4095) & ~4095, s["VMALLOC_START"]) if lo == "_end - 2G" else s[lo]
    for region in mod.layout.regions:
        if region.init:
            continue
        area = k.find_vmap_area(region.base)
        assert area.vm.caller == "module_alloc" and start <= area.va_start < area.va_end <= s[hi]
        assert area.va_start == start or region is not mod.layout.regions[0]  # lowest fit: the first at the start


@pytest.mark.parametrize("era,rodata_writable", [("4.19", True), ("5.10", True), ("6.6", False)])
def test_permissions_and_the_w_x_audit(era, rodata_writable, boot):
    """Before STRICT_MODULE_RWX (5.14) module memory stays PAGE_KERNEL_EXEC: rodata_oops's write
    goes through and the W+X audit counts the module's pages; 6.6 sets text RX, rodata RO and
    data NX, and the write oopses (test_module.py)."""
    k = boot(arch="riscv64", kernel=era, ram="1G")
    mod = k.load_module(obj("riscv64", era, "hello").read_bytes(), "hello.o")
    for p in mod.layout.placements.values():
        if not p.section.size or p.region.init:
            continue
        rights = k.walk(p.address).rights
        if rodata_writable:
            assert rights & KW and rights & KX, p.section.name
        elif p.kind == "text":
            assert rights & KX and not rights & KW
        elif p.kind == "rodata":
            assert not rights & KW and not rights & KX
        else:
            assert rights & KW and not rights & KX
    if era == "4.19":
        with pytest.raises(MmemuError, match="CONFIG_DEBUG_WX is 5.8"):
            k.check_wx()
    elif rodata_writable:
        pages = sum((r.size + 4095) // 4096 for r in mod.layout.regions if not r.init)  # vmalloc maps whole pages
        first = mod.layout.regions[0].base
        assert k.check_wx() == [f"riscv/mm: Found insecure W+X mapping at address {first:016x}/"
                                f"{k.symbol_at(first) or f'0x{first:x}'}",
                                f"Checked W+X mappings: failed, {pages} W+X pages found"]
        k.load_module(obj("riscv64", era, "rodata_oops").read_bytes(), "rodata_oops.o")
        assert "module rodata is writable here" in k.dmesg()
    else:
        assert k.check_wx() == ["Checked W+X mappings: passed, no W+X pages found"]


def _relocations(data: bytes):
    mf = ModuleFile(data, "m.o")
    return mf, [r for r in mf.relocations if mf.sections[r.target].name == ".init.text"][0]


def _set_entry(data: bytes, rel, i: int, rtype: int | None = None, sym: int | None = None) -> bytes:
    """The object with entry *i* of relocation section *rel* retyped or re-pointed."""
    out = bytearray(data)
    at = rel.section.offset + 24 * i + 8  # Elf64_Rela: r_offset, r_info, r_addend
    info = struct.unpack_from("<Q", out, at)[0]
    t, s = info & 0xFFFFFFFF, info >> 32
    struct.pack_into("<Q", out, at, ((s if sym is None else sym) << 32) | (t if rtype is None else rtype))
    return bytes(out)


def _rename(data: bytes, name: str, new: str) -> bytes:
    """The object with section *name* renamed in place (its string in .shstrtab, which may be
    the tail of a longer name)."""
    out = bytearray(data)
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shnum, shstrndx = struct.unpack_from("<HH", data, 0x3C)
    strtab, = struct.unpack_from("<Q", data, shoff + 64 * shstrndx + 0x18)
    for i in range(shnum):
        at = strtab + struct.unpack_from("<I", data, shoff + 64 * i)[0]
        if data[at:at + len(name) + 1] == name.encode() + b"\0":
            out[at:at + len(new)] = new.encode()
            return bytes(out)
    raise AssertionError(f"no section {name}")


def test_bad_relocations_fail_with_the_kernels_messages_and_change_nothing(boot):
    k = boot(arch="riscv64", kernel="6.6", ram="1G")
    data = obj("riscv64", "6.6", "hello").read_bytes()
    mf, rel = _relocations(data)
    first_call = rel.types.index(19)  # R_RISCV_CALL_PLT
    lo12 = rel.types.index(24)  # R_RISCV_PCREL_LO12_I
    callee = rel.symbols[first_call]
    before = kernel_state(k)
    cases = [
        (_set_entry(data, rel, 0, rtype=200), r"^hello: Unknown relocation type 200$"),
        (_set_entry(data, rel, 0, rtype=0), r"^hello: Unknown relocation type 0$"),  # no handler for NONE
        # a kernel function's address in a 32-bit field: out of range
        (_set_entry(data, rel, first_call, rtype=1),
         r"^hello: value ffffffff[0-9a-f]{8} out of range for 32-bit field$"),
        # the LO12 entry pointed at a symbol where no HI20 entry is
        (_set_entry(data, rel, lo12, sym=callee), r"^hello: Can not find HI20 relocation information$"),
        (_set_entry(data, rel, first_call, rtype=43), r"^hello: The unexpected relocation type 'R_RISCV_ALIGN' "
                                                       r"from PC = ffffffff[0-9a-f]{8}$"),
        (_rename(data, ".plt", ".plx"), r"^hello: module PLT section\(s\) missing$"),
        (_rename(data, ".got", ".gox"), r"^hello: module GOT section\(s\) missing$"),
    ]
    for bad, message in cases:
        assert bad != data
        with pytest.raises(ModuleError, match=message):
            k.load_module(bad, "hello.o")
        assert kernel_state(k) == before, message
    # the kernel logged each refusal (pr_err)
    assert k.modules == [] and "hello: Unknown relocation type 200" in k.dmesg()


def test_out_of_reach_without_plt_entries(boot):
    """4.15's loader has no PLT: a module call to the kernel from the vmalloc space (64 GiB
    below it) is refused with its message, the load undone."""
    data = obj("riscv64", "4.19", "rodata_oops").read_bytes().replace(b"4.19.0 SMP", b"4.15.0 SMP")
    k = boot(arch="riscv64", kernel="4.15", ram="1G")
    before = kernel_state(k)
    with pytest.raises(ModuleError, match=r"^rodata_oops: target ffffffe0[0-9a-f]{8} can not be addressed by the "
                                          r"32-bit offset from PC = ffffffd0[0-9a-f]{8}$"):
        k.load_module(data, "rodata_oops.o")
    assert kernel_state(k) == before and k.modules == []


def test_insmod_and_modinfo_on_the_command_line(capsys):
    from mmemu.cli import main

    path = obj("riscv64", "6.6", "vbuf")
    assert main(["modinfo", str(path)]) == 0
    assert "vermagic:       6.6.0 SMP mod_unload riscv\n" in capsys.readouterr().out
    assert main(["insmod", str(path), "--arch", "riscv64", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["module"] == "vbuf" and doc["state"] == "MODULE_STATE_LIVE"
    assert set(doc["resolved"]) >= {"vzalloc", "vfree", "vmalloc_to_pfn", "_printk"}
    assert sum(doc["relocations"].values()) == len(readelf_relocations(path))
    assert main(["insmod", str(obj("riscv64", "4.19", "hello")), "--arch", "riscv64", "--kernel", "4.19"]) == 0
    text = capsys.readouterr().out
    assert "module_frob_arch_sections" in text and "R_RISCV_CALL_PLT" in text and "hello from a module" in text
    assert main(["insmod", str(path), "--arch", "riscv64", "--kernel", "5.10"]) == 2
    assert "version magic '6.6.0 SMP mod_unload riscv' should be '5.10.0 SMP mod_unload riscv'" in \
        capsys.readouterr().err
    assert main(["insmod", str(obj("x86_64", "6.6", "vbuf")), "--arch", "riscv64"]) == 2
    assert "Invalid architecture in ELF header" in capsys.readouterr().err


def test_hello_and_vbuf_run_on_4_19_through_plt_entries(boot):
    """init and exit run on the hart at 4.19, every call to the kernel through a PLT entry
    (highpage and kmap_nested need a struct page: 4.19's FLATMEM mem_map is not modelled)."""
    k = boot(arch="riscv64", kernel="4.19", ram="1G")
    for name in ("hello", "vbuf"):
        k.load_module(obj("riscv64", "4.19", name).read_bytes(), f"{name}.o")
    log = k.dmesg()
    assert "hello: hello from a module (kernel 4.19.0, load 1)" in log
    assert len([line for line in log.splitlines() if line.startswith("vbuf: page ")]) == 5
    k.delete_module("vbuf")
    k.delete_module("hello")
    assert "hello: goodbye" in k.dmesg()
    k.purge_vmap_area_lazy()
    assert "module_alloc" not in [rec.owner for rec in k.frames.allocated.values()]
    k.check_invariants()


@pytest.mark.parametrize("kernel,options", [("6.8", {}), ("6.9", {"mmu": "sv57"})])
def test_6_7_and_later_loaders_run_the_6_6_objects(kernel, options, boot):
    """From 6.7 the loader sums ADD/SUB/SET per place and knows more types: the 6.6 objects
    (their vermagic made the kernel's, of the same length) load and run there, Sv57 too."""
    k = boot(arch="riscv64", kernel=kernel, ram="1G", options=options)
    for name in ("hello", "vbuf"):
        data = obj("riscv64", "6.6", name).read_bytes().replace(b"6.6.0 SMP", f"{kernel}.0 SMP".encode())
        assert f"vermagic={kernel}.0 SMP mod_unload riscv".encode() in data
        k.load_module(data, f"{name}.o")
    assert "hello: hello from a module (kernel 6.6.0, load 1)" in k.dmesg()
    assert len([line for line in k.dmesg().splitlines() if line.startswith("vbuf: page ")]) == 5
    k.delete_module("vbuf")
    k.delete_module("hello")
    k.check_invariants()
