"""Kernel page-table isolation (mmemu_x86.pti, pti_init): the user copy of every page
directory, what it maps, CR3 on the CPU, ptdump's current_user, the oops flag, and that
``nopti`` leaves the machine as it was. Sources: arch/x86/mm/pti.c, asm/pgtable_64.h
(pti_set_user_pgtbl, kernel_to_user_pgdp), arch/x86/mm/pgtable.c (PGD_ALLOCATION_ORDER),
asm/pgtable.h clone_pgd_range, arch/x86/mm/debug_pagetables.c, arch/x86/kernel/dumpstack.c."""

from __future__ import annotations

import functools

import pytest
from mmemu_x86.pgtable_types import _PAGE_GLOBAL, _PAGE_NX, _PAGE_USER
from mmemu_x86.pti import entry_text

import mmemu
from mmemu.cpu import Cpu
from mmemu.errors import ConfigError, SegmentationFault
from mmemu.kernel.process import MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE, PROT_EXEC, PROT_READ
from mmemu.render.ptdump import ptdump

PAGE = 4096


def has_pti(k) -> bool:
    return k.user_pgd(k.pgd) != k.pgd


def cloned(k, va: int) -> bool:
    """*va* is mapped in swapper_pg_dir's user copy as in swapper_pg_dir, for the kernel only."""
    w, u = k.walk(va), k.walk(va, k.user_pgd(k.pgd))
    return u.mapped and u.phys == w.phys and not u.user


def user_text(k, p, code: bytes, addr: int) -> int:
    text = k.mmap(p, addr, PAGE, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED)
    k.install_user_pages(p, text, code)
    return text


@pytest.mark.parametrize("arch,kernel,cmdline,on", [
    ("x86_64", "4.14", "", False),                     # before pti.c
    ("x86_64", "4.15", "", True),                      # pti=auto on a Meltdown-affected CPU
    ("x86_64", "6.6", "", True),
    ("x86_64", "6.6", "nopti", False),
    ("x86_64", "6.6", "pti=off", False),
    ("x86_64", "6.6", "pti=auto", True),
    ("x86_64", "6.6", "pti=on nopti", True),           # pti= is looked at first
    ("x86_64", "6.6", "mitigations=off", False),       # 5.2+: cpu_mitigations_off()
    ("x86_64", "4.19", "mitigations=off", True),       # no such parameter before 5.2
    ("i386", "6.6", "", False),                        # PAGE_TABLE_ISOLATION needs X86_64 || X86_PAE
    ("i386_pae", "4.18", "", False),                   # before the x86_32 PTI series
    ("i386_pae", "4.19", "", True),                    # 32-bit PTI: pti=auto as on x86_64
    ("i386_pae", "6.6", "", True),
    ("i386_pae", "6.6", "nopti", False),
    ("i386_pae", "6.6", "pti=off", False),
    ("i386_pae", "6.6", "mitigations=off", False),
])
def test_pti_on_by_era_and_command_line(boot, arch, kernel, cmdline, on):
    k = boot(arch=arch, kernel=kernel, ram="512M", cmdline=cmdline)
    assert has_pti(k) == on
    p = k.create_process("t")
    # pgd_alloc: order 1 with PTI (the copy in the second page), order 0 without
    assert k.frames.allocated[p.pgd >> 12].order == (1 if on else 0)
    assert (k.user_pgd(p.pgd) == p.pgd + PAGE) == on


@pytest.mark.parametrize("cmdline,message", [
    ("pti=maybe", "pti=on, pti=off and pti=auto"),
])
def test_bad_pti_parameter_is_refused(cmdline, message):
    with pytest.raises(ConfigError, match=message):
        mmemu.boot(arch="x86_64", kernel="6.6", ram="256M", cmdline=cmdline)
    with pytest.raises(ConfigError, match="no page-table isolation"):
        mmemu.boot(arch="x86_64", kernel="4.14", ram="256M", cmdline="pti=on")
    for arch, kernel in (("i386_pae", "4.18"), ("i386", "6.6")):
        with pytest.raises(ConfigError, match="no page-table isolation"):
            mmemu.boot(arch=arch, kernel=kernel, ram="256M", cmdline="pti=on")


def test_user_copy_mirrors_the_user_half_and_the_pgd_keeps_it_nx(boot):
    k = boot(arch="x86_64", kernel="6.6", ram="1G")
    p = k.create_process("t")
    a = k.mmap(p, None, 64 * PAGE)
    k.write(a, b"x" * (64 * PAGE), user=True, process=p)
    pt = k.pgtable
    mine, copy = pt.entries(p.pgd, 0), pt.entries(k.user_pgd(p.pgd), 0)
    used = [i for i in range(256) if mine[i]]
    assert used, "the process maps user memory"
    for i in used:
        # __pti_set_user_pgtbl: the copy gets the entry, the kernel's pgd keeps it NX
        assert copy[i] | _PAGE_NX == mine[i] and mine[i] & _PAGE_NX and not copy[i] & _PAGE_NX
    for va in range(a, a + 64 * PAGE, 7 * PAGE):
        user, kernel = k.walk_mm(va, p, user=True), k.walk_mm(va, p)
        assert user.phys == kernel.phys and user.allows("write", user=True)
        assert not kernel.allows("exec", user=True)  # user code run on the kernel CR3 faults
    # clone_pgd_range: the process copy's kernel half is the master copy's
    master_copy = pt.entries(k.user_pgd(k.pgd), 0)
    assert list(copy[256:]) == [0] * (k.KERNEL_PGD_BOUNDARY - 256) + list(master_copy[k.KERNEL_PGD_BOUNDARY:])
    # exit's free_pgtables clears the copy's entries with the pgd's
    k.munmap(p, a, 64 * PAGE)
    k._free_user_tables(p)
    assert not any(pt.entries(p.pgd, 0)[:256]) and not any(pt.entries(k.user_pgd(p.pgd), 0)[:256])
    k.check_invariants()


@pytest.mark.parametrize("kernel,cmdline", [("6.6", ""), ("6.6", "pti=on"), ("4.17", "nopse"), ("4.15", ""),
                                            ("6.6", "no5lvl")])
def test_what_the_user_copy_maps_of_the_kernel(boot, kernel, cmdline):
    """pti_init: the cpu_entry_area and ESPfix p4ds, the entry text's pmd; pti_finalize
    (pti=auto, no PCID, 4.17+): the image up to rodata; nothing else of the kernel."""
    k = boot(arch="x86_64", kernel=kernel, ram="1G", cmdline=cmdline)
    s, user = k.layout.symbols, k.user_pgd(k.pgd)
    same = functools.partial(cloned, k)
    assert same(s["CPU_ENTRY_AREA_BASE"]) and same(s["CPU_ENTRY_AREA_BASE"] + 2 * PAGE)
    assert same(s["ESPFIX_BASE_ADDR"])
    start, _end = entry_text(k.layout)
    assert same(start)
    assert not k.walk(s["PAGE_OFFSET"] + (16 << 20), user).mapped  # the direct map
    assert not k.walk(s["VMEMMAP_START"], user).mapped
    text_cloned = kernel != "4.15" and cmdline != "pti=on"
    assert same(s["_text"]) == text_cloned
    rodata = k.walk(s["__start_rodata"], user)
    assert rodata.mapped == text_cloned
    data = k.walk(s["_edata"] - PAGE, user)
    assert data.mapped == (kernel == "4.17")  # 4.17-4.18 cloned to ALIGN(_end, PMD), read-only
    if data.mapped:
        assert not data.writable and k.walk(s["_edata"] - PAGE).writable
    k.check_invariants()


def test_global_bits_by_era(boot):
    """4.17+: the kernel's own mappings are not global under PTI (__default_kernel_pte_mask),
    what both copies share is (cea_set_pte, the cloned pmds, ESPfix); 4.15-4.16: nothing is."""
    def glb(k, va, root=None):
        return bool(k.walk(va, root).leaf.raw & _PAGE_GLOBAL)

    for kernel, shared in (("6.6", True), ("4.15", False)):
        k = boot(arch="x86_64", kernel=kernel, ram="512M")
        s = k.layout.symbols
        assert not glb(k, s["PAGE_OFFSET"] + (16 << 20))
        assert glb(k, s["CPU_ENTRY_AREA_BASE"]) == shared
        assert glb(k, s["ESPFIX_BASE_ADDR"]) == shared
        assert glb(k, entry_text(k.layout)[0]) == shared
    k = boot(arch="x86_64", kernel="6.6", ram="512M", cmdline="nopti")
    assert glb(k, k.layout["PAGE_OFFSET"] + (16 << 20)) and glb(k, k.layout.symbols["_text"])


def test_nopti_keeps_one_table_per_process(boot):
    k = boot(arch="x86_64", kernel="6.6", ram="512M", cmdline="nopti")
    p = k.create_process("t")
    a = k.mmap(p, None, PAGE)
    k.write(a, b"x", user=True, process=p)
    assert k.pgtable.user_copies == {}
    assert not any(raw & _PAGE_NX for raw in k.pgtable.entries(p.pgd, 0)[:256])
    with pytest.raises(SegmentationFault, match="error 5"):
        k.read(k.layout["PAGE_OFFSET"], 1, user=True, process=p)  # a protection fault: the pte is there
    k.check_invariants()


@pytest.mark.parametrize("mmu", ["cpu", "plugin"])
@pytest.mark.parametrize("cmdline", ["", "nopti"])
def test_user_code_runs_on_the_user_copy(boot, mmu, cmdline):
    k = boot(arch="x86_64", kernel="6.6", ram="512M", cmdline=cmdline)
    cpu = Cpu(k, mmu=mmu)
    p = k.create_process("t")
    data = k.mmap(p, None, 8 * PAGE)
    r = cpu.run_user(p, user_text(k, p, cpu.adapter.program_touch_pages(data, 8), 0x400000))
    assert (r.reason, r.value, r.faults) == ("exit", 0, 8)  # demand paging through the user copy
    # a user read of the direct map: with PTI not mapped at all (error code 4: user, not
    # present), without it a protection fault (5); the segfault line says 5 either way
    # (__bad_area_nosemaphore: 'if (address >= TASK_SIZE_MAX) error_code |= X86_PF_PROT')
    addr = k.layout["PAGE_OFFSET"] + 0x100000
    code = bytes.fromhex("48bb" + addr.to_bytes(8, "little").hex() + "8a03" "b83c000000" "31ff" "0f05")
    r = cpu.run_user(p, user_text(k, p, code, 0x500000))
    assert r.reason == "sigsegv" and r.fault_log[0][:2] == (addr, 4 if cmdline == "" else 5)
    assert f"segfault at {addr:x} ip 000000000050000a" in r.report and "error 5" in r.report
    k.check_invariants()


def test_cr3_on_kernel_entry_and_exit(boot):
    """SWITCH_TO_USER_CR3 before the iret, SWITCH_TO_KERNEL_CR3 on a fault or system call
    from user mode and back on the way out (no PCID: CR3 is the pgd's address alone)."""
    from unicorn.x86_const import UC_X86_REG_CR3

    k = boot(arch="x86_64", kernel="6.6", ram="512M")
    cpu = Cpu(k)
    p = k.create_process("t")
    seen = []
    handle = k.handle_page_fault

    def spy(fault):
        seen.append(cpu.uc.reg_read(UC_X86_REG_CR3))  # in the fault path: the kernel's
        return handle(fault)

    k.handle_page_fault = spy
    data = k.mmap(p, None, 2 * PAGE)
    # touch two pages, then a system call that is not exit (getpid: -ENOSYS here), then exit
    code = bytes.fromhex("48bb" + data.to_bytes(8, "little").hex() + "8803" "8883" "00100000"
                         "b827000000" "0f05" "488b0b" "b83c000000" "31ff" "0f05")
    r = cpu.run_user(p, user_text(k, p, code, 0x400000))
    assert (r.reason, r.faults) == ("exit", 2)
    assert seen == [p.pgd, p.pgd]
    # a user-mode probe runs on the user copy too
    from mmemu_x86.guest import PROBE_STUB

    stub = user_text(k, p, PROBE_STUB, 0x600000)
    probe = cpu.probe(0x400000, "read", user=True, user_stub_va=stub)
    assert not probe.faulted and cpu.uc.reg_read(UC_X86_REG_CR3) == p.pgd + PAGE


def current_user_dump(boot, arch):
    """A booted 6.6 machine of *arch*, a process with a user page at 0x10000000, and the
    lines of its current_user ptdump (the first one checked)."""
    k = boot(arch=arch, kernel="6.6", ram="512M")
    p = k.create_process("t")
    a = k.mmap(p, 0x10000000, 2 * PAGE, flags=MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED)
    k.write(a, b"x", user=True, process=p)
    out = ptdump(k, k.arch.ptdump_root(k, "current_user", p)).splitlines()
    assert out[0] == "---[ User Space ]---"
    return k, p, out


def test_ptdump_current_user(boot):
    """debug_pagetables.c current_user: ptdump_walk_pgd_level_debugfs(m, current->mm, true),
    the process's user copy in the kernel's ptdump format."""
    k, p, out = current_user_dump(boot, "x86_64")
    assert "0x0000000010000000-0x0000000010001000           4K USR RW                     NX pte" in out
    s = k.layout.symbols
    cea = f"0x{s['CPU_ENTRY_AREA_BASE']:016x}-0x{s['CPU_ENTRY_AREA_BASE'] + 2 * PAGE:016x}"
    assert f"{cea}           8K     ro                 GLB NX pte" in out
    text = f"0x{s['_text']:016x}-0x{s['_etext']:016x}"
    assert f"{text}          14M     ro         PSE     GLB x  pmd" in out
    assert "---[ Low Kernel Mapping ]---" in out
    # the kernel's own view of the process (current_kernel) has the direct map, and the
    # user entries NX at the pgd: the same user page, NX either way
    kernel = ptdump(k, k.arch.ptdump_root(k, "current_kernel", p))
    assert "0x0000000010000000-0x0000000010001000           4K USR RW                     NX pte" in kernel
    assert "RW         PSE         NX pmd" in kernel
    with pytest.raises(ConfigError, match="--pid"):
        k.arch.ptdump_root(k, "current_user", None)
    old = boot(arch="x86_64", kernel="4.14", ram="512M")
    with pytest.raises(ConfigError, match="4.15"):
        old.arch.ptdump_root(old, "current_user", old.create_process("t"))
    # without PTI current_user shows the pgd itself (kernel_to_user_pgdp only with PTI)
    nopti = boot(arch="x86_64", kernel="6.6", ram="512M", cmdline="nopti")
    q = nopti.create_process("t")
    assert nopti.arch.ptdump_root(nopti, "current_user", q) == q.pgd


def test_cli_ptdump_current_user(tmp_path, capsys):
    from mmemu.cli import main

    scenario = tmp_path / "p.toml"
    scenario.write_text('title = "t"\n[machine]\narch = "x86_64"\nram = "256M"\n\n'
                        '[[step]]\nop = "create_process"\ncomm = "sh"\nas = "p"\n')
    assert main(["ptdump", "--view", "current_user", "--scenario", str(scenario), "--pid", "1"]) == 0
    out = capsys.readouterr().out
    assert "---[ CPU entry Area ]---" in out and "---[ Low Kernel Mapping ]---" in out
    assert main(["ptdump", "--view", "current_user", "--scenario", str(scenario), "--pid", "1",
                 "--cmdline", "nopti"]) == 0
    assert "RW         PSE     GLB NX pmd" in capsys.readouterr().out  # the pgd itself: the direct map
    # i386_pae (4.19+): the same view of its process, the cpu_entry_area's pmds and no direct map
    assert main(["ptdump", "--view", "current_user", "--scenario", str(scenario), "--pid", "1",
                 "--arch", "i386_pae"]) == 0
    out = capsys.readouterr().out
    assert "---[ CPU entry area ]---" in out and "---[ Kernel Mapping ]---" in out
    assert "RW         PSE" not in out


def test_oops_says_pti_or_nopti(boot):
    for cmdline, flag in (("", "SMP PTI"), ("nopti", "SMP NOPTI")):
        k = boot(arch="x86_64", kernel="6.6", ram="256M", cmdline=cmdline)
        with pytest.raises(mmemu.errors.Oops) as err:
            k.access(0x10, "read")
        assert f"Oops: 0000 [#1] {flag}" in err.value.report.splitlines()
    k = boot(arch="x86_64", kernel="4.14", ram="256M")
    with pytest.raises(mmemu.errors.Oops) as err:
        k.access(0x10, "read")
    assert "PTI" not in err.value.report


@pytest.mark.parametrize("arch,kernel,flag", [
    ("i386_pae", "4.19", "PTI"),     # CONFIG_PAGE_TABLE_ISOLATION=y, X86_FEATURE_PTI on the Meltdown-affected CPU
    ("i386_pae", "6.6", "PTI"),
    ("i386_pae", "nopti", "NOPTI"),  # built with it, X86_FEATURE_PTI clear
    ("i386_pae", "4.18", None),      # before the x86_32 PTI series
    ("i386", "6.6", None),           # security/Kconfig 4.19: depends on (X86_64 || X86_PAE) && !UML
])
def test_oops_flag_of_32_bit_kernels(boot, arch, kernel, flag):
    """__die's ' PTI'/' NOPTI' is there only if the kernel was built with
    CONFIG_PAGE_TABLE_ISOLATION, which a 2-level i386 kernel cannot select."""
    cmdline = "nopti" if kernel == "nopti" else ""
    k = boot(arch=arch, kernel="6.6" if cmdline else kernel, ram="256M", cmdline=cmdline)
    with pytest.raises(mmemu.errors.Oops) as err:
        k.access(0x10, "read")
    header = next(line for line in err.value.report.splitlines() if "[#1]" in line)
    flags = header.split("[#1]")[1].split()  # (a one-CPU i386 kernel is UP: no SMP)
    assert [f for f in flags if "PTI" in f] == ([flag] if flag else [])


def test_check_wx_audits_the_user_copy(boot):
    k = boot(arch="x86_64", kernel="6.6", ram="256M")
    assert k.check_wx() == ["x86/mm: Checked W+X mappings: passed, no W+X pages found.",
                            "x86/mm: Checking user space page tables",
                            "x86/mm: Checked W+X mappings: passed, no W+X pages found."]
    assert boot(arch="x86_64", kernel="6.6", ram="256M", cmdline="nopti").check_wx() == \
        ["x86/mm: Checked W+X mappings: passed, no W+X pages found."]


def test_lifetimes_with_pti(boot):
    """The user copy lives and dies with its pgd (pgd_free of the order-1 block): fork and
    exit leave the frame allocator where it was; a failed fork leaves nothing behind."""
    k = boot(arch="x86_64", kernel="6.6", ram="512M")
    p = k.create_process("parent")
    a = k.mmap(p, None, 32 * PAGE)
    k.write(a, b"y" * 32 * PAGE, user=True, process=p)
    free = k.frames.nr_free_pages()
    tables = set(k.pgtable.tables)
    for _ in range(3):
        c = k.fork(p)
        k.write(a, b"z", user=True, process=c)
        k.check_invariants()
        k.exit_mm(c)
        k.check_invariants()
    assert set(k.pgtable.tables) == tables and set(k.pgtable.user_copies) == {k.pgd, p.pgd}
    assert k.frames.nr_free_pages() == free
    k.exit_mm(p)
    assert set(k.pgtable.user_copies) == {k.pgd}
    k.check_invariants()


def test_invariants_catch_a_user_copy_out_of_step(boot):
    from mmemu.kernel.invariants import InvariantError

    k = boot(arch="x86_64", kernel="6.6", ram="256M")
    p = k.create_process("t")
    a = k.mmap(p, None, PAGE)
    k.write(a, b"x", user=True, process=p)
    copy = k.user_pgd(p.pgd)
    i = next(i for i, raw in enumerate(k.pgtable.entries(copy, 0)) if raw)
    raw = k.pgtable.read_entry(copy, i, 0)
    k.mem.write(copy + 8 * i, (raw & ~_PAGE_USER).to_bytes(8, "little"))
    with pytest.raises(InvariantError, match="pti_set_user_pgtbl"):
        k.check_invariants()


def test_the_cpu_is_meltdown_affected_without_pcid(boot):
    """What the PTI default stands on: Unicorn's x86 CPU reports GenuineIntel family 6 (no
    AMD exemption, no NO_MELTDOWN whitelist entry) and no PCID (CPUID.1:ECX bit 17)."""
    k = boot(arch="x86_64", kernel="6.6", ram="256M")
    cpu = Cpu(k)
    func = k.vmalloc_range(PAGE, k.layout["VMALLOC_START"], k.layout["VMALLOC_END"], prot="PAGE_KERNEL_EXEC",
                           caller="module_alloc")
    # f(leaf): cpuid(leaf); return ebx for leaf 0 (vendor's first 4 bytes), ecx for leaf 1, eax...
    k.write(func, bytes.fromhex("89f8" "31c9" "53" "0fa2" "85ff" "7504" "89d8" "eb02" "89c8" "5b" "c3"))
    assert cpu.call(func, 0).value & 0xFFFFFFFF == int.from_bytes(b"Genu", "little")
    ecx = cpu.call(func, 1).value
    assert not ecx & (1 << 17)  # no PCID


def user_probes_agree(boot, arch, machine, kernel_addrs) -> set[int]:
    """Boot *machine*, give a process a user page and a probe stub, and probe from user
    mode (read, write, exec) on the CPU the user pages and *kernel_addrs(k)*, each checked
    against mmemu's walk of the process's user copy; returns the error codes seen."""
    from mmemu_x86.guest import PROBE_STUB

    k = boot(arch=arch, ram="512M", **machine)
    cpu = Cpu(k)
    p = k.create_process("t")
    stub = user_text(k, p, PROBE_STUB, 0x600000)
    a = k.mmap(p, None, 4 * PAGE)
    k.write(a, b"x", user=True, process=p)
    user = k.user_pgd(p.pgd)
    codes = set()
    for va in [a, a + PAGE, stub] + kernel_addrs(k):
        walk = k.walk(va, user)
        for access in ("read", "write", "exec"):
            expected = walk.code(access, True)
            probe = cpu.probe(va, access, user=True, user_stub_va=stub)
            if expected is None:
                assert not probe.faulted, (hex(va), access, probe)
                if access != "exec":
                    assert probe.phys == walk.phys
            else:
                assert probe.faulted and probe.fault.code == expected, (hex(va), access, probe, hex(expected))
                codes.add(expected)
    return codes


@pytest.mark.parametrize("machine", [dict(kernel="6.6"), dict(kernel="6.6", options={"levels": "5"}),
                                     dict(kernel="4.17", cmdline="nopse")])
def test_the_cpu_translates_user_mode_through_the_user_copy_as_the_walker(boot, machine):
    """Unicorn's MMU walking the user copy at CPL 3 agrees with mmemu's walker on it: the
    cloned kernel areas are present but supervisor-only (0x5, 0x7, 0x15 as the access is),
    the rest of the kernel is not there at all (0x4, 0x6, 0x14), user pages are the pgd's."""
    def kernel_addrs(k):
        s = k.layout.symbols
        return [s["CPU_ENTRY_AREA_BASE"], s["CPU_ENTRY_AREA_BASE"] + 3 * PAGE, s["ESPFIX_BASE_ADDR"],
                entry_text(k.layout)[0], s["_text"], s["__start_rodata"], s["PAGE_OFFSET"] + (16 << 20),
                s["VMALLOC_START"], s["VMEMMAP_START"], s["MODULES_VADDR"]]

    assert {0x4, 0x5, 0x15} <= user_probes_agree(boot, "x86_64", machine, kernel_addrs)


# -- 32-bit PTI (i386_pae 4.19+) ----------------------------------------------------------

PDPT_PRESENT = 0x1  # pud_populate: 'almost everything apart from _PAGE_PRESENT is reserved at the pmd (PDPT) level'


def pdpt(k, root):
    """The four PDPT entries of a PAE page directory as (flags, table)."""
    return [(raw & 0xFFF, raw & ~0xFFF & ((1 << 52) - 1)) for raw in k.pgtable.entries(root, 0)]


@pytest.mark.parametrize("kernel,cmdline,shared", [
    ("4.18", "", True),        # no 32-bit PTI yet
    ("4.19", "", False),       # SHARED_KERNEL_PMD is !X86_FEATURE_PTI
    ("6.6", "nopti", True),
    ("6.15", "nopti", True),
    ("6.16", "nopti", False),  # 6.16: PAE never shares a kernel pmd ('Preallocate all PAE page tables')
])
def test_pae_kernel_pmd_shared_by_era_and_pti(boot, kernel, cmdline, shared):
    k = boot(arch="i386_pae", kernel=kernel, ram="512M", cmdline=cmdline)
    p = k.create_process("t")
    assert (pdpt(k, p.pgd)[3] == pdpt(k, k.pgd)[3]) == shared
    k.vmalloc(3 << 20)  # a new kernel pmd entry: every pgd sees it (shared, synced or on the first fault)
    k.check_invariants()


@pytest.mark.parametrize("vmsplit,boundary", [("3G", 3), ("2G", 2)])
def test_pae_pgd_alloc_gives_each_pgd_its_own_kernel_pmds(boot, vmsplit, boundary):
    """SHARED_KERNEL_PMD is !X86_FEATURE_PTI: pgd_alloc preallocates PTRS_PER_PGD pmds,
    copies swapper_pg_dir's kernel pmd into the kernel ones (pgd_prepopulate_pmd) and gives
    the user copy KERNEL_PGD_PTRS pmds of its own, copies of those of swapper_pg_dir's user
    copy (pgd_prepopulate_user_pmd); the user half is the same pmds in both pages, and a PDPT
    entry has _PAGE_PRESENT alone (no NX: pti_set_user_pgtbl only sets it on 64-bit)."""
    k = boot(arch="i386_pae", kernel="6.6", ram="1G", options={"VMSPLIT": vmsplit})
    free = k.frames.nr_free_pages()
    p = k.create_process("t")
    # the order-1 pgd, 4 pmds of the pgd and (4 - boundary) of its user copy
    assert free - k.frames.nr_free_pages() == 2 + 4 + (4 - boundary)
    mine, copy = pdpt(k, p.pgd), pdpt(k, k.user_pgd(p.pgd))
    master, master_copy = pdpt(k, k.pgd), pdpt(k, k.user_pgd(k.pgd))
    assert all(flags == PDPT_PRESENT for flags, _ in mine + copy)
    assert mine[:boundary] == copy[:boundary]  # the user half: the same pmds
    tables = {t for _, t in mine + copy}
    assert len(tables) == 4 + (4 - boundary) and not tables & {t for _, t in master + master_copy}
    for i in range(boundary, 4):
        assert k.mem.read(mine[i][1], PAGE) == k.mem.read(master[i][1], PAGE)
        assert k.mem.read(copy[i][1], PAGE) == k.mem.read(master_copy[i][1], PAGE)
    k.check_invariants()


@pytest.mark.parametrize("kernel,synced", [("6.6", True), ("4.19", False)])
def test_pae_vmalloc_after_a_process_reaches_its_kernel_pmd(boot, kernel, synced):
    """A page table vmalloc adds after a process exists is a new kernel pmd entry: from
    5.8 arch_sync_kernel_mappings puts it into every pgd's own kernel pmd at once
    (ARCH_PAGE_TABLE_SYNC_MASK PGTBL_PMD_MODIFIED when !SHARED_KERNEL_PMD); before, the
    kernel's first access through the process faults and vmalloc_fault copies the pmd
    entry (vmalloc_sync_one), never the PDPT entry."""
    k = boot(arch="i386_pae", kernel=kernel, ram="1G")
    p = k.create_process("t")
    k.switch_to(p)
    pmd_before = pdpt(k, p.pgd)
    v = k.vmalloc(4 << 20)
    va = v + (3 << 20)
    assert not k.walk(va, k.user_pgd(p.pgd)).mapped  # never in the user copy
    assert k.walk(va, p.pgd).mapped == synced
    k.write(va, b"vmalloc")
    assert k.read(va, 7, process=p) == b"vmalloc"
    walk = k.walk(va, p.pgd)
    assert walk.mapped and walk.phys == k.walk(va).phys
    assert pdpt(k, p.pgd) == pmd_before  # the PDPT is never touched: the pmd entry was copied
    own = walk.steps[1]
    assert own.table == pmd_before[3][1] and own.table != k.walk(va).steps[1].table
    assert k.pgtable.writer_of(own.table + 8 * own.index) == ("arch_sync_kernel_mappings" if synced
                                                              else "vmalloc_fault")
    k.check_invariants()


def test_pae_exit_frees_the_per_pgd_pmds(boot):
    """pgd_free (pgd_mop_up_pmds: PREALLOCATED_PMDS of the pgd, PREALLOCATED_USER_PMDS of
    its user copy) with the order-1 block: fork and exit leave the allocator as it was."""
    k = boot(arch="i386_pae", kernel="6.6", ram="1G")
    p = k.create_process("parent")
    a = k.mmap(p, None, 16 * PAGE)
    k.write(a, b"y" * 16 * PAGE, user=True, process=p)
    k.vmalloc(3 << 20)
    frames, tables = set(k.frames.allocated), set(k.pgtable.tables)
    for _ in range(2):
        c = k.fork(p)
        k.write(a, b"z", user=True, process=c)
        v = k.vmalloc(3 << 20)  # kernel pmd entries every pgd's own pmd gets
        k.check_invariants()
        k.exit_mm(c)
        k.vfree(v)
        k.check_invariants()
    grown = set(k.pgtable.tables) - tables  # vmalloc's page tables (the master's: vfree keeps them)
    assert grown and all(k.pgtable.tables[t].level_index == 2 for t in grown)
    # what stays allocated: those tables and the slab page of vmalloc's pages array, no pmd
    kept = {pfn: k.frames.allocated[pfn].owner for pfn in set(k.frames.allocated) - frames}
    assert {pfn << 12 for pfn, owner in kept.items() if owner.startswith("page table")} == grown
    assert all(owner.startswith(("page table (pte)", "slab")) for owner in kept.values())
    k.exit_mm(p)
    assert set(k.pgtable.user_copies) == {k.pgd}
    k.check_invariants()


@pytest.mark.parametrize("kernel,cmdline,image,entry_pmd", [
    ("6.6", "", True, True),         # pti=auto: the image to rodata (ptes), the entry text's pmd
    ("4.19", "", True, True),
    ("6.6", "pti=on", False, True),  # no kernel-text clone: the entry text's pmd alone
    ("6.12", "pti=on", False, False),  # 6.11+: the entry text's ptes (PTI_LEVEL_KERNEL_IMAGE)
])
def test_what_the_pae_user_copy_maps_of_the_kernel(boot, kernel, cmdline, image, entry_pmd):
    """32-bit pti_init: the cpu_entry_area's pmds (pti_clone_user_shared's #else branch), the
    entry text (PTI_CLONE_PMD, PTI_LEVEL_KERNEL_IMAGE from 6.11); pti_finalize under pti=auto:
    [_text, __end_rodata_aligned) at pte level (PAGE_SIZE-aligned on 32-bit). No ESPfix, no
    vsyscall; nothing of the direct map, vmalloc, pkmap or fixmap."""
    k = boot(arch="i386_pae", kernel=kernel, ram="1G", cmdline=cmdline)
    s, user = k.layout.symbols, k.user_pgd(k.pgd)
    same = functools.partial(cloned, k)
    cea = s["CPU_ENTRY_AREA_BASE"]
    assert same(cea) and same(cea + PAGE) and same(cea + (s["CPU_ENTRY_AREA_PAGES"] - 1) * PAGE) or \
        not k.walk(cea + (s["CPU_ENTRY_AREA_PAGES"] - 1) * PAGE).mapped
    entry, _end = entry_text(k.layout)
    assert same(entry)
    # the page before the entry text is text, mapped in the user copy with the entry
    # text's pmd or the image, not with the entry text's ptes alone
    assert same(entry - PAGE) == (image or entry_pmd)
    assert same(s["_text"]) == image
    assert same(s["__end_rodata"] - PAGE) == image
    for va in (s["_edata"] - PAGE, s["PAGE_OFFSET"] + (32 << 20), s["VMALLOC_START"], s["PKMAP_BASE"],
               s["FIXADDR_START"]):
        assert not k.walk(va, user).mapped, hex(va)
    k.check_invariants()


def test_pae_ptdump_current_user_and_wx(boot):
    """current_user of an i386_pae process: its user pages, the cloned kernel and nothing
    else; the W+X audit walks swapper_pg_dir's user copy as on x86_64
    (ptdump_walk_user_pgd_level_checkwx: kernel_to_user_pgdp(INIT_PGD))."""
    k, p, out = current_user_dump(boot, "i386_pae")
    assert "0x10000000-0x10001000           4K USR RW                     NX pte" in out
    s = k.layout.symbols
    cea = s["CPU_ENTRY_AREA_BASE"]
    assert f"0x{cea:08x}-0x{cea + PAGE:08x}           4K     ro                 GLB NX pte" in out
    assert f"0x{s['_text']:08x}-0x{s['_text'] + (8 << 20):08x}           8M     ro         PSE     GLB x  pmd" in out
    assert not any(line.startswith(f"0x{s['PAGE_OFFSET']:08x}-") and "RW" in line for line in out)
    kernel = ptdump(k, k.arch.ptdump_root(k, "current_kernel", p))
    assert "RW         PSE         NX pmd" in kernel  # the direct map, in the kernel's view only
    assert "RW         PSE         NX pmd" not in "\n".join(out)
    assert k.check_wx() == ["x86/mm: Checked W+X mappings: passed, no W+X pages found.",
                            "x86/mm: Checking user space page tables",
                            "x86/mm: Checked W+X mappings: passed, no W+X pages found."]


@pytest.mark.parametrize("mmu", ["cpu", "plugin"])
@pytest.mark.parametrize("cmdline", ["", "nopti"])
def test_pae_user_code_runs_on_the_user_copy(boot, mmu, cmdline):
    """entry_32.S: SWITCH_TO_USER_CR3 before the iret, SWITCH_TO_KERNEL_CR3 on a fault or
    int 0x80 from user mode; a user read of the direct map is not-present (4) with PTI, a
    protection fault (5) without; the segfault line says 5 either way."""
    from unicorn.x86_const import UC_X86_REG_CR3

    k = boot(arch="i386_pae", kernel="6.6", ram="512M", cmdline=cmdline)
    cpu = Cpu(k, mmu=mmu)
    p = k.create_process("t")
    seen = []
    handle = k.handle_page_fault

    def spy(fault):
        seen.append(cpu.uc.reg_read(UC_X86_REG_CR3))
        return handle(fault)

    k.handle_page_fault = spy
    data = k.mmap(p, None, 8 * PAGE)
    r = cpu.run_user(p, user_text(k, p, cpu.adapter.program_touch_pages(data, 8), 0x400000))
    assert (r.reason, r.value, r.faults) == ("exit", 0, 8)
    if mmu == "cpu":  # (the plugin MMU's refused fill stops the run: no entry code runs)
        assert set(seen) == {p.pgd}  # the fault path runs on the kernel's pgd
    addr = k.layout["PAGE_OFFSET"] + 0x100000
    code = bytes.fromhex("bb" + addr.to_bytes(4, "little").hex() + "8a03" "b801000000" "31db" "cd80")
    r = cpu.run_user(p, user_text(k, p, code, 0x500000))
    assert r.reason == "sigsegv" and r.fault_log[0][:2] == (addr, 4 if cmdline == "" else 5)
    assert "error 5" in r.report
    if not cmdline:
        from mmemu_x86.guest import PROBE_STUB

        stub = user_text(k, p, PROBE_STUB, 0x600000)
        assert not cpu.probe(data, "read", user=True, user_stub_va=stub).faulted
        assert cpu.uc.reg_read(UC_X86_REG_CR3) == p.pgd + PAGE
    k.check_invariants()


@pytest.mark.parametrize("machine", [dict(kernel="6.6"), dict(kernel="4.19", cmdline="nopse"),
                                     dict(kernel="6.12", cmdline="pti=on")])
def test_the_cpu_translates_pae_user_mode_through_the_user_copy_as_the_walker(boot, machine):
    """Unicorn's MMU at CPL 3 on the i386_pae user copy agrees with mmemu's walker: the
    cloned kernel areas present but supervisor-only (5, 7, 0x15 as the access is), the rest
    of the kernel not there at all (4, 6, 0x14), user pages the pgd's."""
    def kernel_addrs(k):
        s = k.layout.symbols
        return [s["CPU_ENTRY_AREA_BASE"], s["CPU_ENTRY_AREA_BASE"] + PAGE, entry_text(k.layout)[0], s["_text"],
                s["__start_rodata"], s["PAGE_OFFSET"] + (16 << 20), k.vmalloc(PAGE), s["PKMAP_BASE"],
                s["FIXADDR_START"]]

    assert {0x4, 0x5, 0x6, 0x7} <= user_probes_agree(boot, "i386_pae", machine, kernel_addrs)


def machine_digest(k) -> str:
    """sha256 of what a machine did with a fixed workload (two processes, a fork, a vmalloc
    reached from a process, a kmap): the ptdumps of swapper_pg_dir and of a process, every
    allocated frame (pfn, order, owner) and every page table (address, level, owner)."""
    import hashlib

    p = k.create_process("a")
    a = k.mmap(p, None, 64 * PAGE)
    k.write(a, b"x" * (64 * PAGE), user=True, process=p)
    c = k.fork(p)
    k.write(a, b"y", user=True, process=c)
    v = k.vmalloc(5 << 20)
    k.write(v + (4 << 20), b"v")
    k.read(v + (4 << 20), 1, process=c)
    k.kmap(k.alloc_pages(0, "HighMem", owner="test").phys >> 12)
    k.exit_mm(c)
    h = hashlib.sha256()
    for root in (k.pgd, p.pgd):
        h.update(ptdump(k, root).encode())
    for pfn, rec in sorted(k.frames.allocated.items()):
        h.update(f"{pfn} {rec.order} {rec.owner}\n".encode())
    for phys, info in sorted(k.pgtable.tables.items()):
        h.update(f"{phys} {info.level_index} {info.owner}\n".encode())
    return h.hexdigest()


@pytest.mark.parametrize("kernel,cmdline,digest", [
    ("6.6", "nopti", "bfeccf9f2a91162091ef3ccf8cf7d3dd4879f54fb242d8c6fbefd2fd25b87b09"),
    ("4.19", "nopti", "c6e5693c3748bc49669faec253a5e7df4cdd0104f994c71d79c8d56638d1472c"),
    ("4.18", "", "6b27535a2aa86a809de55655f7538bb55301686cf50e84f43c4f9a4bdcaeaaf1"),
])
def test_pae_without_pti_is_the_machine_it_was(boot, kernel, cmdline, digest):
    """nopti (and a kernel before 32-bit PTI) gives exactly the machine mmemu built before
    it modelled 32-bit PTI: the digests were taken with the code of commit cf6f531 (where
    i386_pae always ran as nopti; 9b97f1f's, before the cpu_entry_area mapped the debug
    store, reproduce its own digests the same way), with this same workload. Re-take them
    only for a change meant to alter these machines."""
    k = boot(arch="i386_pae", kernel=kernel, ram="2G", cmdline=cmdline)
    assert machine_digest(k) == digest
    if cmdline == "nopti":  # the same kernel with PTI: the digest sees its tables
        assert machine_digest(boot(arch="i386_pae", kernel=kernel, ram="2G")) != digest


@pytest.mark.parametrize("which,value,message", [
    ("pgd", lambda raw: 0, "kernel pmd entry"),  # 6.6 syncs at once: a missing entry is out of step
    ("pgd", lambda raw: raw ^ _PAGE_USER, "reached twice"),  # another entry: its subtree is the pgd's own
    ("user copy", lambda raw: raw ^ _PAGE_USER, "pgd_prepopulate_user_pmd"),
])
def test_invariants_catch_a_pae_kernel_pmd_out_of_step(boot, which, value, message):
    """A pgd's own kernel pmd (or its user copy's) that no longer equals swapper_pg_dir's
    (its user copy's) breaks the invariants."""
    from mmemu.kernel.invariants import InvariantError

    k = boot(arch="i386_pae", kernel="6.6", ram="512M")
    p = k.create_process("t")
    k.check_invariants()
    own = pdpt(k, p.pgd if which == "pgd" else k.user_pgd(p.pgd))[3][1]
    i = next(i for i, raw in enumerate(k.pgtable.entries(own, 1)) if raw)
    raw = k.pgtable.read_entry(own, i, 1)
    k.mem.write(own + 8 * i, value(raw).to_bytes(8, "little"))
    with pytest.raises(InvariantError, match=message):
        k.check_invariants()


@pytest.mark.parametrize("mmu", ["cpu", "plugin"])
def test_pae_vmalloc_fault_on_the_cpu_copies_the_pmd_entry(boot, mmu):
    """4.19 (vmalloc_fault, no arch_sync_kernel_mappings yet): kernel code run on the CPU
    from a module area made after the process exists faults in the process's own kernel
    pmd (a fetch, not present: 0x10); vmalloc_fault copies swapper_pg_dir's pmd entry and
    the CPU retries."""
    k = boot(arch="i386_pae", kernel="4.19", ram="1G")
    cpu = Cpu(k, mmu=mmu)
    p = k.create_process("t")
    k.switch_to(p)
    for _ in range(2):
        k.vmalloc(2 << 20)  # past the pmds swapper_pg_dir had when the process was made
    func = k.vmalloc_range(PAGE, k.layout["VMALLOC_START"], k.layout["VMALLOC_END"], prot="PAGE_KERNEL_EXEC",
                           caller="module_alloc")
    k.mem.write(k.walk(func).phys, bytes.fromhex("b82a000000" "c3"))  # mov eax, 42; ret
    assert k.walk(func, p.pgd).missing == "not-present" and k.walk(func, p.pgd).last_level == 1
    r = cpu.call(func)
    assert (r.value, r.fault_log) == (42, [(func, 0x10, "retry", "vmalloc_fault")])
    own = k.walk(func, p.pgd).steps[1]
    assert own.table == pdpt(k, p.pgd)[3][1] and own.raw == k.walk(func).steps[1].raw
    k.check_invariants()
