"""`mmemu vmcore`: a kdump-style ELF core that drgn opens without a vmlinux and reads, through
mmemu's own page tables, the bytes mmemu reads at every kernel address it samples (x86_64 with
4 and 5 levels, arm64 with 39- and 48-bit VAs: the arches both have).

drgn reads a virtual address from the PT_LOAD segments where their p_vaddr covers it (the
direct map) and through its own walk of swapper_pg_dir everywhere else (vmalloc, modules,
the kernel image, the fixmap...); the direct map's translation is checked against drgn's
walker separately (its follow_phys helper). MMEMU_VMCORE_ADDRESSES sets how many addresses
each machine samples (default 3000).
"""

from __future__ import annotations

import io
import os
import pathlib
import random

import drgn
import pytest
from _drgn import _linux_helper_follow_phys  # drgn's own walk (drgn.helpers.linux.mm.follow_phys needs types)
from elftools.elf.elffile import ELFFile

import mmemu
from mmemu.cli import main
from mmemu.errors import AddressError, ConfigError
from mmemu.vmcore import write_vmcore

ADDRESSES = int(os.environ.get("MMEMU_VMCORE_ADDRESSES", "3000"))
ROOT = pathlib.Path(__file__).resolve().parent.parent
HELLO = ROOT / "examples" / "modules" / "build" / "x86_64-6.6" / "hello.o"
PAGE = 4096
MiB = 1 << 20


def open_core(path) -> drgn.Program:
    prog = drgn.Program()
    prog.set_core_dump(str(path))
    return prog


MACHINES = {"x86_64-4-level": ("x86_64", {"levels": "4"}), "x86_64-5-level": ("x86_64", {"levels": "5"}),
            "arm64-39-bit": ("arm64", {"va_bits": "39"}), "arm64-48-bit": ("arm64", {"va_bits": "48"})}


def busy_machine(name: str):
    """A machine with something in each area: vmalloc'd buffers holding known bytes, a kmalloc
    object, a process with pages, a fixmap slot and (x86_64, which loads modules) a module."""
    arch, options = MACHINES[name]
    k = mmemu.boot(arch=arch, kernel="6.6", ram="256M", options=options)
    rng = random.Random(name)
    bufs = []
    for pages in (1, 3, 16):
        va = k.vmalloc(pages * PAGE)
        k.write(va, rng.randbytes(pages * PAGE))
        bufs.append((va, pages * PAGE))
    obj = k.kmalloc(200)
    k.write(obj, rng.randbytes(200))
    p = k.create_process("sh")
    a = k.mmap(p, None, 8 * PAGE)
    for i in range(8):
        k.write(a + i * PAGE, rng.randbytes(64), user=True, process=p)
    k.set_fixmap("FIX_EARLYCON_MEM_BASE", k.alloc_pages().pfn * PAGE)
    if arch == "x86_64":
        k.load_module(HELLO.read_bytes(), HELLO.name)
    return k, bufs


def sample(k, rng: random.Random, count: int) -> list[int]:
    """*count* kernel addresses over every kind of kernel mapping and around them: the direct
    map (and past its end), the start of vmalloc space and of the module area (where the
    allocations are), the kernel image mapping (and past _end), the fixmap, every region of
    the layout, some user and non-canonical addresses."""
    s = k.layout.symbols
    lowmem = k.high_memory - k.PAGE_OFFSET
    image = s.get("__START_KERNEL_map", s["_text"])  # x86_64 maps the image from __START_KERNEL_map
    spans = [(k.PAGE_OFFSET, lowmem + 64 * MiB), (s["VMALLOC_START"], MiB // 2), (s["MODULES_VADDR"], MiB // 4),
             (image, s["_end"] + 64 * MiB - image), (s["FIXADDR_START"], s["FIXADDR_TOP"] + PAGE - s["FIXADDR_START"])]
    regions = [r for r in k.layout.regions if r.kind != "non-canonical"]
    # the mapped pages of the small spans (vmalloc's and the module area's starts, the fixmap)
    small = [a for start, size in spans[1:3] + spans[4:] for a in range(start, start + size, PAGE)
             if mmemu_view(k, a, rng) is not None]
    out = []
    for i in range(count):
        pick = i % 9
        if pick < len(spans):
            start, size = spans[pick]
            out.append(start + rng.randrange(size))
        elif pick == 5:
            r = rng.choice(regions)
            out.append(rng.randrange(r.start, r.end))
        elif pick == 6:  # the pages of the direct map's first MiB (4 KiB mappings) and of the image's ends
            out.append(rng.choice((k.PAGE_OFFSET, s["_text"], s["_end"] - MiB)) + rng.randrange(MiB))
        elif pick == 7:
            out.append(rng.choice(small) + rng.randrange(PAGE))
        else:  # (a non-canonical address differs below the top byte: drgn ignores that byte on arm64, as
            # the MMU does with TCR_EL1.TBI1, which the kernel sets only for KASAN's tags)
            out.append(rng.choice((rng.randrange(s["TASK_SIZE"]), k.PAGE_OFFSET ^ (1 << (k.paging.va_bits + 1)))))
    return out


def mmemu_view(k, va: int, rng: random.Random) -> tuple[int, int] | None:
    """(physical address, bytes to read) of a mapped *va*, the read kept within its page; None
    if the master page table does not map it (a non-canonical address included, and on arm64
    a user one: TTBR0's, not swapper_pg_dir's)."""
    try:
        w = k.walk(va)
    except AddressError:
        return None
    if not w.mapped or not k.mem.is_ram(w.phys):
        return None  # a device's page (the APIC's, mapped at boot) has no bytes in a core: drgn faults
    return w.phys, min(rng.randrange(1, 65), w.page_size - (va & (w.page_size - 1)))


def stamp(k, views, rng: random.Random) -> None:
    """Random bytes where each sampled read lands (page tables aside), so that a read from the
    wrong frame cannot pass for a right one by both being zeros."""
    tables = k.pgtable.tables
    for view in views:
        if view is not None and view[0] & ~(PAGE - 1) not in tables:
            k.mem.write(view[0], rng.randbytes(view[1]))


@pytest.fixture(scope="module", params=list(MACHINES))
def machine(request, tmp_path_factory):
    k, bufs = busy_machine(request.param)
    rng = random.Random(f"vmcore-{request.param}")
    addresses = sample(k, rng, ADDRESSES)
    views = [mmemu_view(k, va, rng) for va in addresses]
    stamp(k, views, rng)
    path = tmp_path_factory.mktemp("vmcore") / "core"
    core = write_vmcore(k, path)
    yield k, bufs, core, path, list(zip(addresses, views))
    k.close()


def test_drgn_reads_what_mmemu_reads_at_every_sampled_kernel_address(machine):
    k, _bufs, _core, path, samples = machine
    prog = open_core(path)
    assert prog.flags & drgn.ProgramFlags.IS_LINUX_KERNEL
    assert prog.platform.arch == {"x86_64": drgn.Architecture.X86_64, "arm64": drgn.Architecture.AARCH64}[k.arch.name]
    mapped = unmapped = 0
    wrong = []
    for va, view in samples:
        if view is None:
            unmapped += 1
            try:
                got = prog.read(va, 8)
            except drgn.FaultError:
                continue
            wrong.append(f"{va:#x}: not mapped in mmemu, drgn read {got.hex()}")
            continue
        mapped += 1
        phys, n = view
        try:
            got = prog.read(va, n)
        except drgn.FaultError as exc:
            wrong.append(f"{va:#x} -> {phys:#x}: drgn: {exc}")
            continue
        if got != k.mem.read(phys, n):
            wrong.append(f"{va:#x} -> {phys:#x}: drgn read {got.hex()}, mmemu {k.mem.read(phys, n).hex()}")
    assert not wrong, f"{len(wrong)} of {len(samples)} addresses differ:\n" + "\n".join(wrong[:20])
    assert mapped > len(samples) // 5 and unmapped > len(samples) // 5, (mapped, unmapped)


def test_drgn_walks_the_direct_map_to_the_same_frames(machine):
    """The direct map is read from the segments' p_vaddr; drgn's own walk of the master page
    table agrees with mmemu's there too."""
    k, _bufs, _core, path, samples = machine
    prog = open_core(path)
    pgd = drgn.Object(prog, "void *", k.pgd_va)
    lowmem = (k.PAGE_OFFSET, k.high_memory)
    checked = 0
    for va, view in samples:
        if view is not None and lowmem[0] <= va < lowmem[1]:
            assert _linux_helper_follow_phys(prog, pgd, va) == view[0], hex(va)
            checked += 1
    assert checked > 100


def test_multi_page_reads_cross_discontiguous_frames(machine):
    """A vmalloc'd buffer (frames anywhere) and the module's memory read in one go."""
    k, bufs, _core, path, _samples = machine
    prog = open_core(path)

    def mmemu_bytes(va, size):
        return b"".join(k.mem.read(k.walk(a).phys, PAGE) for a in range(va, va + size, PAGE))

    for va, size in bufs:
        assert prog.read(va, size) == mmemu_bytes(va, size)
        with pytest.raises(drgn.FaultError):
            prog.read(va + size, 1)  # the guard page
    if k.arch.name != "x86_64":
        return
    assert k.modules  # hello: its memory is the first area of the module space
    area = k.find_vmap_area(k.layout.symbols["MODULES_VADDR"])
    va = area.va_start
    size = next(a for a in range(va, area.va_end + PAGE, PAGE) if not k.walk(a).mapped) - va
    assert size >= PAGE and prog.read(va, size) == mmemu_bytes(va, size)


def test_physical_reads(machine):
    k, _bufs, _core, path, _samples = machine
    prog = open_core(path)
    rng = random.Random(1)
    for start, end in k.mem.ranges:
        for _ in range(200):
            pa = rng.randrange(start, end - 64)
            assert prog.read(pa, 64, True) == k.mem.read(pa, 64), hex(pa)
    hole = k.mem.ranges[0][1]  # past the end of the first RAM range: no memory
    with pytest.raises(drgn.FaultError):
        prog.read(hole, 8, True)


def test_the_elf_file(machine):
    """Well-formed for pyelftools: an ET_CORE of the arch's machine, the VMCOREINFO note drgn
    parses, PT_LOAD segments covering the RAM with p_vaddr = __va(p_paddr) where the direct
    map maps it and -1 where not (the PC's BIOS ROM below 4 GiB), the file as long as the
    segments say and holding on disk little more than what the machine touched."""
    k, _bufs, core, path, _samples = machine
    with open(path, "rb") as f:
        elf = ELFFile(f)
        assert (elf["e_type"], elf["e_machine"], elf.elfclass) == ("ET_CORE", k.arch.elf_machine, 64)
        segs = list(elf.iter_segments())
        assert segs[0]["p_type"] == "PT_NOTE"
        (note,) = list(segs[0].iter_notes())
        assert note["n_name"] == "VMCOREINFO" and note["n_type"] == 0
        info = dict(line.split("=", 1) for line in note["n_desc"].decode().splitlines())
        loads = [(seg["p_paddr"], seg["p_vaddr"], seg["p_filesz"], seg["p_memsz"], seg["p_offset"])
                 for seg in segs[1:]]
        assert all(seg["p_type"] == "PT_LOAD" for seg in segs[1:])
    assert info["OSRELEASE"] == "6.6.0" and info["PAGESIZE"] == "4096"
    assert int(info["SYMBOL(swapper_pg_dir)"], 16) == k.pgd_va
    if k.arch.name == "x86_64":
        assert int(info["SYMBOL(init_top_pgt)"], 16) == k.pgd_va
        assert info["NUMBER(pgtable_l5_enabled)"] == ("1" if k.spec.options["levels"] == "5" else "0")
        assert int(info["NUMBER(phys_base)"]) + k.pgd_va - k.layout.symbols["__START_KERNEL_map"] == k.pgd
    else:
        assert k.pgd_va - int(info["NUMBER(kimage_voffset)"], 16) == k.pgd
        assert int(info["NUMBER(VA_BITS)"]) == 64 - int(info["NUMBER(TCR_EL1_T1SZ)"], 16) == k.paging.va_bits
    covered = []
    for paddr, _v, size, _m, _o in sorted(loads):
        if covered and covered[-1][1] == paddr:
            covered[-1] = (covered[-1][0], paddr + size)
        else:
            covered.append((paddr, paddr + size))
    assert covered == k.mem.ranges
    no_vaddr = (1 << 64) - 1
    lowmem = (k.PHYS_OFFSET, k.PHYS_OFFSET + k.high_memory - k.PAGE_OFFSET)
    for paddr, vaddr, filesz, memsz, offset in loads:
        assert filesz == memsz and offset % PAGE == 0
        if vaddr == no_vaddr:
            assert not lowmem[0] <= paddr < lowmem[1] or not k.walk(k.phys_to_virt(paddr)).mapped
        else:
            assert vaddr == k.phys_to_virt(paddr) and k.walk(vaddr).phys == paddr
    assert [(p, v) for p, v, *_ in loads] == [(seg.paddr, no_vaddr if seg.vaddr is None else seg.vaddr)
                                              for seg in core.segments]
    if k.arch.name == "x86_64":
        assert any(v == no_vaddr for _p, v, *_ in loads)  # the BIOS ROM: reserved, not in the direct map
    assert path.stat().st_size == core.size == max(o + f for _p, _v, f, _m, o in loads)
    assert path.stat().st_blocks * 512 < core.size // 4  # sparse: not the 256 MiB


def test_a_file_object_that_cannot_seek_gets_the_same_bytes(machine):
    k, _bufs, core, path, _samples = machine

    class Pipe(io.BytesIO):
        def seekable(self):
            return False

    out = Pipe()
    again = write_vmcore(k, out)
    assert again.size == core.size and out.getvalue() == path.read_bytes()


def test_arches_drgn_cannot_walk_are_refused_before_anything_is_written(tmp_path):
    k = mmemu.boot(arch="i386", kernel="6.6", ram="128M")
    try:
        with pytest.raises(ConfigError, match=r"no vmcore for arch i386: drgn.*x86-64, AArch64.*mmemu writes "
                                              r"vmcores for arm64, x86_64"):
            write_vmcore(k, tmp_path / "core")
    finally:
        k.close()
    assert not (tmp_path / "core").exists()


def test_cli_vmcore_after_a_scenario(tmp_path, capsys):
    out = tmp_path / "core"
    code = main(["vmcore", "--scenario", str(ROOT / "examples" / "scenarios" / "tour-x86_64.toml"), "--step", "8",
                 "--ram", "256M", "-o", str(out)])
    text = capsys.readouterr().out
    assert code == 0, text
    assert "PT_LOAD" in text and "SYMBOL(swapper_pg_dir)=ffffffff82400000" in text
    prog = open_core(out)
    assert prog.read(0xFFFFFFFF82400000 + 0xFF8, 8, False) != bytes(8)  # the top entry: the kernel image's table
    code = main(["vmcore", "--arch", "riscv64", "--ram", "64M", "-o", str(tmp_path / "other")])
    assert code == 2 and "no vmcore for arch riscv64" in capsys.readouterr().err
    assert not (tmp_path / "other").exists()
    code = main(["vmcore", "-o", str(tmp_path / "missing" / "core"), "--ram", "64M"])
    assert code == 74 and "cannot write output" in capsys.readouterr().err
