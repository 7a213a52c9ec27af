"""The conformance suite every arch plugin passes: the built-in ones in mmemu's tests, a
third-party one from its own package::

    # tests/test_conformance.py of your plugin
    from mmemu.testing import ConformanceSuite

    class TestMyArch(ConformanceSuite):
        arch = "myarch"

pytest then runs each check below on every machine the arch lists in
:meth:`mmemu.Arch.conformance_machines` (its paging modes, page sizes, eras). What is
checked is what the core relies on and what a user of the arch would check:

- the codec agrees with the construct formats on random entries and on every entry its
  encoders make, per level (attributes, addresses, kinds, round trips);
- a boot keeps the kernel's invariants, maps all low memory at PAGE_OFFSET and the kernel
  image with its sections' protections;
- vmalloc (areas, guard pages, lowest fit, vfree, running out of space) and kmap;
- processes: demand paging, the zero page, copy-on-write, PROT_NONE, SIGSEGV, the oops,
  and nothing leaked when they exit;
- code on the CPU in both MMU modes: kernel calls, user programs faulting their pages in,
  the instruction budget and the wall-clock limit;
- Unicorn's MMU as the referee: thousands of addresses read, written and fetched at kernel
  and user privilege reach the physical address the walker says, or fault where it faults
  with the same code;
- the CLI on the arch: layout, ptdump, vtop.

``MMEMU_CONFORMANCE_N`` (default 1) multiplies the sizes of the randomised checks.
"""

from __future__ import annotations

import io
import os
import random
import zlib
from contextlib import redirect_stderr, redirect_stdout

from ..arch import KR, KW, KX, LEAF, NONE, TABLE, UR, UW, UX
from ..errors import Oops, OutOfMemory, SegmentationFault
from ..pagetable import PageTables
from ..units import PAGE_SIZE as PAGE

#: protections of user VMAs (include/uapi/asm-generic/mman-common.h)
PROT_READ, PROT_WRITE, PROT_EXEC = 1, 2, 4


def scale() -> int:
    """The multiplier of the randomised checks (``MMEMU_CONFORMANCE_N``)."""
    try:
        return max(1, int(os.environ.get("MMEMU_CONFORMANCE_N", "1")))
    except ValueError:
        return 1


def _id(machine: dict) -> str:
    return "-".join(f"{v}" for k, v in sorted(machine.items()) if k != "options") + \
        "".join(f"-{k}={v}" for k, v in sorted(machine.get("options", {}).items()))


class ConformanceSuite:
    """Subclass it with ``arch`` set; pytest collects the checks (methods ``test_*``), each
    run on every machine of :meth:`mmemu.Arch.conformance_machines`."""

    arch: str = ""

    # -- pytest plumbing ----------------------------------------------------------------

    def pytest_generate_tests(self, metafunc):
        if "machine" in metafunc.fixturenames:
            machines = self._arch_object().conformance_machines()
            metafunc.parametrize("machine", machines, ids=[_id(m) for m in machines])

    def _arch_object(self):
        from ..plugins import default

        return default()[1].get(self.arch)

    def boot(self, machine: dict):
        import mmemu

        return mmemu.boot(arch=self.arch, **machine)

    # -- the entry formats ----------------------------------------------------------------

    def test_codec_agrees_with_formats(self, machine):
        from ..layout import MachineSpec

        arch = self._arch_object()
        spec = MachineSpec.make(arch=self.arch, **machine)
        spec = type(spec)(**{**spec.__dict__, "options": arch.check_options(spec)})
        mode = arch.paging(spec)
        prots = dict(arch.pgprots(spec))
        check_codec(mode, prots, random.Random(zlib.crc32(repr(machine).encode())), 300 * scale())

    # -- boot ---------------------------------------------------------------------------------

    def test_boot_maps_lowmem_and_the_image(self, machine):
        k = self.boot(machine)
        try:
            k.check_invariants()
            check_direct_map(k, random.Random(1))
            check_image(k)
            # the master table is where the kernel sees it
            assert k.pgd in k.pgtable.tables, "the root table is not a table the engine knows"
            assert k.virt_to_phys(k.pgd_va) == k.pgd, "pgd_va does not lead back to the root table"
        finally:
            k.close()

    # -- vmalloc and kmap ---------------------------------------------------------------------

    def test_vmalloc(self, machine):
        k = self.boot(machine)
        try:
            check_vmalloc(k)
        finally:
            k.close()

    # -- processes and faults -----------------------------------------------------------------

    def test_processes(self, machine):
        k = self.boot(machine)
        try:
            check_processes(k)
        finally:
            k.close()

    # -- the CPU --------------------------------------------------------------------------------

    def test_code_runs(self, machine):
        k = self.boot(machine)
        try:
            for mmu in ("cpu", "plugin"):
                check_runs(k, mmu)
        finally:
            k.close()

    def test_unicorn_agrees_with_the_walker(self, machine):
        k = self.boot(machine)
        try:
            check_agreement(k, random.Random(zlib.crc32(repr(machine).encode())), 1500 * scale())
        finally:
            k.close()

    # -- failure safety -------------------------------------------------------------------------

    def test_failed_operations_change_nothing(self):
        """On the arch's first conformance machine (the fault injection makes thousands of
        operations fail: one machine is enough to cover each operation), then on the same
        machine with 64 MiB, where all of RAM is compared too."""
        machine = self._arch_object().conformance_machines()[0]
        for m in (machine, {**machine, "ram": "64M"}):
            k = self.boot(m)
            try:
                check_failure_safety(k, ram=k.mem.size <= 64 << 20)
            finally:
                k.close()

    # -- the command line -----------------------------------------------------------------------

    def test_cli(self, machine):
        check_cli(self.arch, machine)


# -- the checks, usable on their own ---------------------------------------------------------


def check_addr_mask(codec, li: int, raw: int) -> None:
    """What :meth:`~mmemu.arch.EntryCodec.addr_mask` claims, on the entry *raw* of level
    *li*: whether it is a table, and a table's rights, are those of its bits outside the
    mask, and so are a pte's kind and rights; the address of a table (or a pte's page) is
    the masked bits shifted (the walker decodes entries this way, without the decoder)."""
    fields = codec.addr_mask(li)
    if fields is None:
        return
    mask, shift = fields
    last = li == len(codec.mode.levels) - 1
    decode = codec.decoder(li)
    kind, addr, rights = decode(raw)
    flags_kind, _, flags_rights = decode(raw & ~mask)
    where = f"level {li} entry {raw:#x}"
    if last or kind == TABLE or flags_kind == TABLE:
        assert (kind, rights) == (flags_kind, flags_rights), \
            f"{where}: decodes as kind {kind}, rights {rights:#x}; without its address bits ({mask:#x}) as " \
            f"kind {flags_kind}, rights {flags_rights:#x}"
    if kind == TABLE or (last and kind == LEAF):
        assert addr == (raw & mask) << shift, \
            f"{where}: the decoder's address {addr:#x}, the address mask's {(raw & mask) << shift:#x}"


def _field(parsed, name: str) -> bool:
    if name.startswith("!"):
        return not bool(parsed[name[1:]])
    return bool(parsed[name])


def check_codec(mode, prots: dict, rng: random.Random, n: int) -> None:
    """The codec against the construct formats, per level, on *n* random raw entries and on
    the entries the encoders make for random frames and every named protection."""
    codec = mode.codec
    last = len(mode.levels) - 1
    pa_limit = 1 << mode.pa_bits
    valid_prots = {name: p for name, p in prots.items()
                   if codec.decoder(last)(codec.mk_leaf(last, 0, p))[0] == LEAF}
    assert valid_prots, "no named protection makes a valid pte"
    for li, lv in enumerate(mode.levels):
        decode = codec.decoder(li)
        size = lv.entry_size
        formats = [f for f in (lv.table, lv.leaf) if f is not None]
        assert formats, f"level {lv.name} has no entry format"
        for f in formats:
            assert f.struct.sizeof() == size, f"{lv.name}: a format of {f.struct.sizeof()} bytes, entries of {size}"
        raws = [rng.getrandbits(8 * size) for _ in range(n)] + [rng.getrandbits(8 * size) | 1 for _ in range(n)]
        # what the encoders make
        for _ in range(max(8, n // 8)):
            if li < last:
                table = rng.randrange(pa_limit) & ~(PAGE - 1)
                for user in (False, True):
                    raw = codec.mk_table(li, table, user)
                    kind, addr, _ = decode(raw)
                    assert (kind, addr) == (TABLE, table), \
                        f"{lv.name}: mk_table({table:#x}) decodes as kind {kind}, address {addr:#x}"
                    parsed = lv.table.struct.parse(raw.to_bytes(size, "little"))
                    assert parsed.address == table, f"{lv.name}: mk_table({table:#x}) parses to {parsed.address:#x}"
                    raws.append(raw)
            if lv.can_map:
                pa = rng.randrange(pa_limit) & ~(lv.span - 1)
                for name, prot in valid_prots.items():
                    raw = codec.mk_leaf(li, pa, prot)
                    kind, addr, _ = decode(raw)
                    assert (kind, addr) == (LEAF, pa), \
                        f"{lv.name}: mk_leaf({pa:#x}, {name}) decodes as kind {kind}, address {addr:#x}"
                    parsed = lv.leaf.struct.parse(raw.to_bytes(size, "little"))
                    assert parsed.address == pa, f"{lv.name}: mk_leaf({pa:#x}, {name}) parses to {parsed.address:#x}"
                    assert codec.leaf_prot(li, raw) == prot, \
                        f"{lv.name}: leaf_prot(mk_leaf(pa, {name})) is {codec.leaf_prot(li, raw):#x}, not {prot:#x}"
                    base = rng.randrange(max(1, (pa_limit >> lv.shift) - 3)) << lv.shift
                    assert list(codec.leaf_run(li, base, 3, prot)) == \
                        [codec.mk_leaf(li, base + k * lv.span, prot) for k in range(3)], \
                        f"{lv.name}: leaf_run disagrees with mk_leaf for {name}"
                    raws.append(raw)
        for raw in raws:
            blob = raw.to_bytes(size, "little")
            view = codec.describe(li, raw)
            kind, addr, _rights = decode(raw)
            assert view.kind == kind, f"{lv.name} {raw:#x}: describe says {view.kind_name}, the decoder {kind}"
            fmt = codec.format_for(li, raw)
            parsed = fmt.struct.parse(blob)
            assert fmt.struct.build(parsed) == blob, f"{lv.name} {raw:#x}: build(parse(x)) != x"
            for attr, fld in fmt.attrs.items():
                assert view.attrs.get(attr) == _field(parsed, fld), \
                    f"{lv.name} {raw:#x}: attribute {attr} is {view.attrs.get(attr)}, field {fld} says otherwise"
            if kind in (TABLE, LEAF):
                assert addr == parsed.address == view.addr, \
                    f"{lv.name} {raw:#x}: the decoder's address {addr:#x}, the format's {parsed.address:#x}"
            check_addr_mask(codec, li, raw)
    # pte accessors: the ones generic mm relies on
    for name, prot in valid_prots.items():
        pte = codec.pfn_pte(0x1234, prot)
        assert codec.pte_pfn(pte) == 0x1234 and codec.pte_present(pte), f"pfn_pte/pte_pfn/pte_present on {name}"
        assert codec.pte_write(codec.pte_mkwrite(pte)) and not codec.pte_write(codec.pte_wrprotect(pte)), \
            f"pte_mkwrite/pte_wrprotect/pte_write on {name}"
        assert codec.pte_pfn(codec.pte_mkdirty(codec.pte_mkyoung(pte))) == 0x1234
        assert codec.pte_dirty(codec.pte_mkdirty(pte)), f"pte_mkdirty/pte_dirty on {name}"
        # fork's copies are old (mm/memory.c copy_present_pte: pte_mkold); young again with pte_mkyoung
        assert codec.pte_mkyoung(codec.pte_mkold(codec.pte_mkyoung(pte))) == codec.pte_mkyoung(pte), \
            f"pte_mkold/pte_mkyoung on {name}"
        assert codec.pte_mkold(pte) != codec.pte_mkyoung(pte), f"pte_mkold changes nothing on {name}"
        # the zero page's pte (do_anonymous_page: pte_mkspecial): the same page, marked
        special = codec.pte_mkspecial(pte)
        assert codec.pte_special(special) and not codec.pte_special(pte) and codec.pte_pfn(special) == 0x1234 \
            and codec.decoder(last)(special)[:2] == codec.decoder(last)(pte)[:2], f"pte_mkspecial on {name}"
        assert list(codec.leaves_for_frames(last, [5, 0x77], prot)) == [codec.pfn_pte(5, prot), codec.pfn_pte(0x77, prot)]
    none = codec.pfn_pte(0x1234, prots["PAGE_NONE"])
    assert codec.pte_present(none) and codec.decoder(last)(none)[0] == NONE and codec.pte_pfn(none) == 0x1234, \
        "PAGE_NONE must make a pte the MMU ignores but pte_present() keeps, with its frame"


def check_direct_map(k, rng: random.Random) -> None:
    """Every sampled page of low RAM is mapped at its __va, readable and writable by the
    kernel, not by user mode."""
    base, end = k.PHYS_OFFSET, k.PHYS_OFFSET + (k.high_memory - k.PAGE_OFFSET)
    image = [(s.phys, s.phys + s.size) for s in k.layout.image]
    samples = [base, end - PAGE] + [rng.randrange(base, end) & ~(PAGE - 1) for _ in range(200)]
    for pa in samples:
        if not k.mem.is_ram(pa):
            continue
        va = k.phys_to_virt(pa)
        w = k.walk(va)
        assert w.mapped and w.phys == pa, f"__va({pa:#x}) = {va:#x} walks to {w}"
        assert w.rights & KR and not w.rights & (UR | UW | UX), f"{va:#x}: the direct map gives rights {w}"
        if not any(s <= pa < e for s, e in image):
            assert w.rights & KW, f"{va:#x}: direct-mapped RAM outside the image is not writable ({w})"


def check_image(k) -> None:
    """Each section of the kernel image is mapped at its address with its protection."""
    for sec in k.layout.image:
        for va in (sec.virt, sec.virt + ((sec.size - 1) & ~(PAGE - 1))):
            w = k.walk(va)
            assert w.mapped and w.phys == sec.phys + (va - sec.virt), f"image {sec.name} at {va:#x}: {w}"
            assert bool(w.rights & KW) == sec.writable or sec.prot is not None, \
                f"image {sec.name} at {va:#x}: writable {bool(w.rights & KW)}, the section says {sec.writable}"
            if sec.executable:
                assert w.rights & KX, f"image {sec.name} at {va:#x} is not executable"


def _snapshot(k):
    """What a failed operation must leave as it was (counts, areas, processes)."""
    return (k.frames.nr_free_pages(), [(a.va_start, a.va_end, a.lazy) for a in k.vmap_areas],
            {pid: [(v.vm_start, v.vm_end, v.vm_flags) for v in p.vmas] for pid, p in k.processes.items()})


def check_vmalloc(k) -> None:
    vs, ve = k.layout["VMALLOC_START"], k.layout["VMALLOC_END"]
    v = k.vmalloc(3 * PAGE)
    assert vs <= v < ve, f"vmalloc gave {v:#x}, outside VMALLOC_START..VMALLOC_END"
    vm = k.find_vm_area(v)
    assert vm is not None and len(vm.pages) == 3
    last = len(k.paging.levels) - 1
    # what a PAGE_KERNEL pte allows (executable only where the arch cannot forbid it: i386)
    kernel_x = k.codec.decoder(last)(k.codec.pfn_pte(0, k.pgprot["PAGE_KERNEL"]))[2] & KX
    for i, pfn in enumerate(vm.pages):
        w = k.walk(v + i * PAGE)
        assert w.mapped and w.phys >> 12 == pfn and w.rights & KW and (w.rights & KX) == kernel_x, \
            f"vmalloc page {i}: {w} (pfn {pfn:#x})"
        assert k.vmalloc_to_page(v + i * PAGE) == pfn
    assert not k.walk(v + 3 * PAGE).mapped, "the guard page after a vmalloc area is mapped"
    k.write(v + 10, b"vmalloc")
    assert k.read(v + 10, 7) == b"vmalloc"
    w2 = k.vmalloc(PAGE)
    assert w2 >= v + 4 * PAGE, "a second area overlaps the first or its guard page"
    k.vfree(v)
    assert not k.walk(v).mapped, "vfree left the area mapped"
    k.vfree(w2)
    k.purge_vmap_area_lazy()  # a failing vmalloc purges first, as the kernel does
    before = _snapshot(k)
    try:
        k.vmalloc(ve - vs + PAGE)
    except OutOfMemory:
        pass
    else:
        raise AssertionError("vmalloc of more than the vmalloc space succeeded")
    assert _snapshot(k) == before, "a failed vmalloc changed the kernel"
    # kmap of a lowmem page is its direct-map address (and a HighMem one a pkmap slot)
    page = k.alloc_pages(0, "HighMem", owner="conformance")
    addr = k.kmap(page)
    assert k.walk(addr).phys == page.phys, f"kmap gave {addr:#x}, which does not map the page"
    k.kunmap(page)
    k.free_page_block(page)
    k.check_invariants()


def check_processes(k) -> None:
    p = k.create_process("conformance")
    a = k.mmap(p, None, 4 * PAGE)
    # nothing is mapped until touched
    assert not k.walk_mm(a, p).mapped, "mmap mapped a page before any access"
    pa = k.access(a, "read", user=True, process=p)
    if k.anon_zero_page:
        assert pa >> 12 == k.zero_pfn, "a read fault of anonymous memory does not map the zero page"
    k.write(a, b"hello", user=True, process=p)
    assert k.read(a, 5, user=True, process=p) == b"hello"
    w = k.walk_mm(a, p)
    assert w.mapped and w.rights & UW and w.phys >> 12 != k.zero_pfn, f"after a write: {w}"
    # copy-on-write after fork
    child = k.fork(p)
    assert k.walk_mm(a, child).phys == k.walk_mm(a, p).phys, "fork did not share the page"
    assert not k.walk_mm(a, p).rights & UW, "fork left the parent's page writable"
    k.write(a, b"child", user=True, process=child)
    assert k.walk_mm(a, child).phys != k.walk_mm(a, p).phys, "a write after fork did not copy the page"
    assert k.read(a, 5, user=True, process=p) == b"hello" and k.read(a, 5, user=True, process=child) == b"child"
    # PROT_NONE keeps the page and its data
    k.mprotect(p, a, PAGE, 0)
    try:
        k.read(a, 1, user=True, process=p)
    except SegmentationFault as exc:
        assert exc.report, "a SIGSEGV without the kernel's line"
    else:
        raise AssertionError("a PROT_NONE page was readable")
    k.mprotect(p, a, PAGE, PROT_READ | PROT_WRITE)
    assert k.read(a, 5, user=True, process=p) == b"hello", "PROT_NONE lost the page's data"
    # outside every VMA: SIGSEGV; a kernel access to an unmapped kernel address: an oops
    try:
        k.access(0x1000 * 16 + 0x123, "read", user=True, process=p)
    except SegmentationFault as exc:
        assert exc.report
    else:
        raise AssertionError("a user access outside every VMA did not end in SIGSEGV")
    k.switch_to(None)
    v = k.vmalloc(PAGE)
    try:
        k.access(v + PAGE, "read")  # the guard page
    except Oops as exc:
        assert exc.report.strip(), "an oops without a report"
    else:
        raise AssertionError("a kernel read of a vmalloc guard page did not oops")
    k.vfree(v)
    k.check_invariants()
    k.exit_mm(child)
    k.exit_mm(p)
    k.check_invariants()
    left = [rec for rec in k.frames.allocated.values() if rec.owner.startswith("anon (conformance")]
    assert not left, f"pages of exited processes are still allocated: {left[:4]}"


def check_runs(k, mmu: str) -> None:
    """Kernel and user code on the CPU: a kernel call, a user program faulting N fresh pages
    in, the budget and the clock."""
    from ..cpu import Cpu

    cpu = Cpu(k, mmu=mmu)
    try:
        ad = cpu.adapter
        k.switch_to(None)
        fn = k.vmalloc_range(PAGE, k.layout["VMALLOC_START"], k.layout["VMALLOC_END"], prot="PAGE_KERNEL_EXEC",
                             caller="module_alloc")
        k.write(fn, ad.function_read_byte())
        buf = k.vmalloc(PAGE)
        k.write(buf, b"\x5a")
        r = cpu.call(fn, buf)
        assert (r.reason, r.value & 0xFF) == ("return", 0x5A), f"a kernel call: {r}"
        n = 12
        p = k.create_process("toucher")
        data = k.mmap(p, None, n * PAGE)
        text = k.mmap(p, None, PAGE, PROT_READ | PROT_EXEC)
        k.install_user_pages(p, text, ad.program_touch_pages(data, n))
        r = cpu.run_user(p, text)
        assert (r.reason, r.value, r.faults) == ("exit", 0, n), f"user code touching {n} pages: {r}"
        assert all(how == "do_anonymous_page" for _, _, _, how in r.fault_log), r.fault_log
        for i in range(n):
            assert k.walk_mm(data + i * PAGE, p).mapped
        # runaway code stops: by the clock, then by the budget (on code that ran before
        # without one: the budget must hold on every run)
        loop = k.mmap(p, None, PAGE, PROT_READ | PROT_EXEC)
        k.install_user_pages(p, loop, ad.program_loop())
        r = cpu.run_user(p, loop, budget=None, timeout=0.2)
        assert r.reason == "timeout", f"a runaway program: {r}"
        r = cpu.run_user(p, loop, budget=20000, timeout=30)
        assert r.reason == "budget", f"a runaway program with a budget: {r}"
        k.switch_to(None)
        k.exit_mm(p)
        k.vfree(fn)
        k.vfree(buf)
        k.check_invariants()
    finally:
        cpu.close()


def check_agreement(k, rng: random.Random, n: int) -> None:
    """Unicorn's MMU against the walker: every sampled address read, written and fetched at
    kernel and user privilege (in a process with user pages of every protection)."""
    from ..cpu import Cpu

    cpu = Cpu(k)
    try:
        ad = cpu.adapter
        p = k.create_process("prober")
        stub = k.mmap(p, None, PAGE, PROT_READ | PROT_EXEC)
        k.install_user_pages(p, stub, ad.probe_stub)
        user = []
        for prot in (PROT_READ, PROT_READ | PROT_WRITE, PROT_READ | PROT_EXEC, PROT_READ | PROT_WRITE | PROT_EXEC, 0):
            a = k.mmap(p, None, 4 * PAGE, prot)
            for i in range(3):  # three of four pages present
                if prot:
                    k.access(a + i * PAGE, "write" if prot & PROT_WRITE else "read", user=True, process=p)
            user.append((a, 4 * PAGE))
        k.switch_to(p)
        addrs = set()
        # one leaf per (frame, entry): a page the kernel maps many times (x86_64's ESPfix
        # stacks, 65,536 times) would otherwise be most of the sample
        leaves = list({(pa, raw): (va, size) for va, size, pa, raw, _li in k.pgtable.iter_leaves(k.pgd)}.values())
        for va, size in rng.sample(leaves, min(len(leaves), n // 3)):
            addrs.add(va + rng.randrange(size))
            addrs.add(va + size - 1)
        for a, size in user:
            for off in range(0, size, PAGE):
                addrs.add(a + off + rng.randrange(PAGE))
        mode = k.paging
        half = 1 << (mode.va_bits - (1 if mode.form == "sign-extended" else 0))
        while len(addrs) < n:
            va = rng.randrange(half)
            if mode.form != "flat" and rng.random() < 0.5:
                va += mode.kernel_half
            addrs.add(va)
        checked = 0
        for va in sorted(addrs):
            if not mode.is_valid(va):
                continue
            w = k.walk_mm(va, p)
            # the walk every path uses (unrolled for the mode) is the reference loop's
            ref = PageTables.walk(k.pgtable, k.root_for(va, p), va)
            assert (w.phys, w.page_size, w.rights, w.missing, w.steps) == \
                (ref.phys, ref.page_size, ref.rights, ref.missing, ref.steps), \
                f"{va:#x}: the unrolled walk gives {w}, PageTables.walk {ref}"
            # and so is the pte lookup of every vmap, kmap and demand fault
            root = k.root_for(va, p)
            assert k.pgtable.pte_slot(root, va) == PageTables.pte_slot(k.pgtable, root, va), \
                f"{va:#x}: the unrolled pte_slot disagrees with PageTables.pte_slot"
            if w.mapped and not k.mem.is_ram(w.phys):
                continue  # MMIO: nothing for the CPU to read
            for priv in (False, True):
                for access in ("read", "write", "exec"):
                    at = va & ~(PAGE - 1) if access == "exec" else va
                    expected = k.walk_mm(at, p, priv).fault(access, priv)
                    probe = cpu.probe(at, access, user=priv, user_stub_va=stub)
                    where = f"{access} of {at:#x} at {'user' if priv else 'kernel'} privilege"
                    if expected is None:
                        assert not probe.faulted, f"{where}: the walker allows it, the CPU raised {probe}"
                        if access != "exec":
                            assert probe.phys == k.walk_mm(at, p).phys, \
                                f"{where}: CPU reached {probe.phys:#x}, the walker {k.walk_mm(at, p).phys:#x}"
                    else:
                        assert probe.faulted, f"{where}: the walker says {expected}, the CPU allowed it"
                        assert probe.fault is not None and probe.fault.code == expected.code, \
                            f"{where}: CPU {probe}, walker {expected}"
                    checked += 1
        assert checked >= n, f"only {checked} accesses were probed"
    finally:
        cpu.close()


def check_cli(arch: str, machine: dict) -> None:
    """``mmemu layout``, ``ptdump`` and ``vtop`` on the arch end well, saying something."""
    from ..cli import main

    args = ["--arch", arch]
    for key in ("kernel", "ram", "cmdline"):
        if key in machine:
            args += [f"--{key}", str(machine[key])]
    if "cpus" in machine:
        args += ["--cpus", str(machine["cpus"])]
    for key, value in machine.get("options", {}).items():
        args += ["--option", f"{key}={value}"]
    import mmemu

    k = mmemu.boot(arch=arch, **machine)
    try:
        page_offset = k.PAGE_OFFSET
    finally:
        k.close()
    for argv in (["layout"] + args, ["layout", "--json"] + args, ["ptdump"] + args,
                 ["vtop", f"{page_offset:#x}"] + args, ["vtop", "--json", f"{page_offset:#x}"] + args):
        out, err = io.StringIO(), io.StringIO()
        with redirect_stdout(out), redirect_stderr(err):
            code = main(argv)
        assert code == 0 and out.getvalue().strip() and not err.getvalue(), \
            f"mmemu {' '.join(argv)}: exit {code}, stderr {err.getvalue()!r}"


# -- failure safety: every operation, every injected allocation failure -----------------------


def kernel_state(k, ram: bool = True) -> tuple:
    """Everything a failed operation must leave exactly as it was, as comparable values:
    the frame allocator (free lists in their order, counters, block records), every page
    table the engine knows (its record and its writers), the slab caches, the vmap areas and
    free space, processes and their VMAs, the HighMem and fixmap state, the kernel's
    counters and event log; with *ram*, the bytes of all of physical memory."""
    fr = k.frames
    zones = tuple((z.name, z.nr_free, tuple(tuple(fa) for fa in z.free_area)) for z in fr.zones.values())
    allocated = tuple(sorted((p.pfn, p.order, p.zone, p.refcount, p.owner) for p in fr.allocated.values()))
    tables = tuple(sorted((phys, i.level_index, i.owner, i.writers.tobytes(), i.pinned)
                          for phys, i in k.pgtable.tables.items()))
    slabs = tuple((c.name, tuple(sorted((pfn, tuple(objs)) for pfn, objs in c.slabs.items())), tuple(c.partial))
                  for c in k.kmalloc_caches)
    areas = tuple((a.va_start, a.va_end, a.kaddr, a.lazy, a.early, None if a.vm is None else
                   (a.vm.addr, a.vm.size, a.vm.flags, tuple(a.vm.pages), a.vm.kaddr, a.vm.pages_kaddr, a.vm.caller))
                  for a in k.vmap_areas)
    procs = tuple((pid, p.comm, p.pgd, p.alive, p.brk, p.start_brk, p.mmap_base, tuple(p.pmds),
                   tuple((v.vm_start, v.vm_end, v.vm_flags, v.name) for v in p.vmas))
                  for pid, p in sorted(k.processes.items()))
    highmem = (tuple(k.pkmap_count), k.last_pkmap_nr, tuple(sorted(k.page_address_map.items())),
               tuple(tuple((s.cpu, s.idx, s.vaddr, s.pfn, s.type) for s in st) for st in k.kmap_atomic_stack))
    counters = (k.die_counter, k.fault_count, k.event_seq, len(k.recent_events), k._next_pid,
                None if k.current is None else k.current.pid, tuple(p.pid for p in k.pgd_list), k.vmap_lazy_nr,
                tuple(sorted(k._slab_of)), tuple(sorted(k._kmalloc_large)), tuple(tuple(g) for g in k.vmap_free))
    state = (zones, allocated, tables, slabs, areas, procs, highmem, counters)
    if ram:  # the RAM ranges only (a high RAM base leaves a hole below it in the buffer)
        state += (b"".join(k.mem.mem[s:e] for s, e in k.mem.ranges),)
    return state


def _state_diff(a: tuple, b: tuple) -> str:
    names = ("frame allocator", "allocated blocks", "page tables", "slab caches", "vmap areas", "processes",
             "HighMem", "counters", "RAM")
    return ", ".join(n for n, x, y in zip(names, a, b) if x != y)


def failure_operations(k) -> list:
    """The kernel model's public operations, each as (name, setup, action): *setup* makes
    what the action works on (outside any injection) and returns it; *action* is the one
    operation checked."""
    vs, ve = k.layout["VMALLOC_START"], k.layout["VMALLOC_END"]
    fixslots = [n for n, i in k.layout.fixmap if not n.startswith("__") and 0 < i < k.end_of_fixed_addresses]

    def proc(k):
        p = next((p for p in k.processes.values() if p.comm == "safety"), None)
        if p is None:
            p = k.create_process("safety")
            a = k.mmap(p, None, 8 * PAGE)
            k.write(a, b"x" * (3 * PAGE), user=True, process=p)
        return p

    def mapped(k):  # a fresh mapping of 3 pages, all present
        p = proc(k)
        a = k.mmap(p, None, 3 * PAGE)
        k.write(a, b"y" * (3 * PAGE), user=True, process=p)
        return p, a

    ops = [
        ("vmalloc", None, lambda k, _: k.vmalloc(3 * PAGE)),
        # the smallest area whose page array is larger than a page (vmalloc'd itself)
        ("vmalloc (page array vmalloc'd)", None, lambda k, _: k.vmalloc((PAGE // k.ptr_size + 1) * PAGE)),
        ("vzalloc", None, lambda k, _: k.vzalloc(2 * PAGE)),
        ("vmalloc_range", None, lambda k, _: k.vmalloc_range(PAGE, vs, ve, prot="PAGE_KERNEL_EXEC",
                                                             caller="module_alloc")),
        ("vmap", lambda k: [k.alloc_pages(0, "HighMem", owner="safety") for _ in range(3)],
         lambda k, pages: k.vmap(pages)),
        ("vfree", lambda k: k.vmalloc(5 * PAGE), lambda k, v: k.vfree(v)),
        ("vunmap", lambda k: k.vmap([k.alloc_pages(0, "HighMem", owner="safety")]), lambda k, v: k.vunmap(v)),
        ("kmalloc", None, lambda k, _: k.kmalloc(200)),
        ("kmalloc_large", None, lambda k, _: k.kmalloc(20000)),
        ("kfree", lambda k: k.kmalloc(96), lambda k, a: k.kfree(a)),
        ("alloc_pages", None, lambda k, _: k.alloc_pages(2, "Normal", owner="safety")),
        ("__free_pages", lambda k: k.alloc_pages(1, "Normal", owner="safety"), lambda k, p: k.free_page_block(p)),
        ("kmap", lambda k: k.alloc_pages(0, "HighMem", owner="safety"), lambda k, p: k.kmap(p)),
        ("kmap_local_page", lambda k: (_free_atomic_slots(k), k.alloc_pages(0, "HighMem", owner="safety"))[1],
         lambda k, p: _kmap_local(k)(p)),
        ("kunmap", lambda k: _kmapped(k, k.kmap), lambda k, pv: k.kunmap(pv[0])),
        ("kunmap_local", lambda k: (_free_atomic_slots(k), _kmapped(k, _kmap_local(k)))[1],
         lambda k, pv: _kunmap_local(k)(pv[1])),
        ("flush_all_zero_pkmaps", lambda k: k.kunmap(_kmapped(k, k.kmap)[0]) if k.has_highmem else None,
         lambda k, _: k.flush_all_zero_pkmaps()),
        ("__get_free_pages", None, lambda k, _: k.get_free_pages(1)),
        ("free_pages", lambda k: k.get_free_pages(1), lambda k, a: k.free_pages(a, 1)),
        ("kvfree", lambda k: k.vmalloc(2 * PAGE), lambda k, v: k.kvfree(v)),
        ("purge_vmap_area_lazy", lambda k: k.vfree(k.vmalloc(2 * PAGE)), lambda k, _: k.purge_vmap_area_lazy()),
        ("sync_kernel_pgds", None, lambda k, _: k.sync_kernel_pgds()),
        ("create_process", None, lambda k, _: k.create_process("new")),
        ("switch_to", proc, lambda k, p: k.switch_to(p)),
        ("fork", proc, lambda k, p: k.fork(p)),
        ("exit_mm", lambda k: k.fork(proc(k)), lambda k, c: k.exit_mm(c)),
        ("mmap", proc, lambda k, p: k.mmap(p, None, 4 * PAGE)),
        ("mmap MAP_FIXED over a mapping", mapped,
         lambda k, pa: k.mmap(pa[0], pa[1] + PAGE, 2 * PAGE, flags=0x32)),
        ("munmap", mapped, lambda k, pa: k.munmap(pa[0], pa[1] + PAGE, PAGE)),
        ("mprotect", mapped, lambda k, pa: k.mprotect(pa[0], pa[1], 2 * PAGE, PROT_READ)),
        ("brk", proc, lambda k, p: k.brk(p, p.brk + 5 * PAGE)),
        ("install_user_pages", lambda k: (proc(k), k.mmap(proc(k), None, 3 * PAGE, PROT_READ | PROT_EXEC)),
         lambda k, pa: k.install_user_pages(pa[0], pa[1], b"\x90" * (2 * PAGE + 10))),
        ("demand fault (write)", lambda k: (proc(k), k.mmap(proc(k), None, 2 * PAGE)),
         lambda k, pa: k.access(pa[1], "write", user=True, process=pa[0])),
        ("copy-on-write fault", lambda k: (k.fork(proc(k)), proc(k).vmas[0].vm_start),
         lambda k, ca: k.access(ca[1], "write", user=True, process=ca[0])),
        ("write across pages", lambda k: (proc(k), k.mmap(proc(k), None, 3 * PAGE)),
         lambda k, pa: k.write(pa[1] + PAGE - 3, b"abcdefgh" * 600, user=True, process=pa[0])),
        ("read (demand faults)", lambda k: (proc(k), k.mmap(proc(k), None, 3 * PAGE)),
         lambda k, pa: k.read(pa[1], 3 * PAGE, user=True, process=pa[0])),
    ]
    if k.arch.module_relocations(k.spec) is not None:
        from .modules import synthetic_module

        def unloaded(k, name):
            if k.find_module(name):
                k.delete_module(name)
            return synthetic_module(k, name)

        def loaded(k, name):
            if not k.find_module(name):
                k.load_module(synthetic_module(k, name), f"{name}.ko")
            return name
        ops += [("load_module", lambda k: unloaded(k, "safety_load"), lambda k, data: k.load_module(data, "s.ko")),
                ("delete_module", lambda k: loaded(k, "safety_rm"), lambda k, name: k.delete_module(name))]
    if fixslots:
        slot = fixslots[len(fixslots) // 2]
        ops += [("set_fixmap", lambda k: k.alloc_pages(0, "Normal", owner="safety"),
                 lambda k, page: k.set_fixmap(slot, page.phys)),
                ("set_fixmap_offset", lambda k: k.alloc_pages(0, "Normal", owner="safety"),
                 lambda k, page: k.set_fixmap_offset(slot, page.phys + 0x10)),
                ("clear_fixmap", lambda k: k.set_fixmap(slot, k.alloc_pages(0, "Normal", owner="safety").phys),
                 lambda k, _: k.clear_fixmap(slot))]
    return ops


def _kmapped(k, kmap):
    """A HighMem page (lowmem where there is none) and its address through *kmap*."""
    page = k.alloc_pages(0, "HighMem", owner="safety")
    return page, kmap(page)


def _kmap_local(k):
    """The era's atomic kmap: kmap_local_page (5.11+), kmap_atomic with a per-CPU stack
    (2.6.37-5.10) or with a named KM_* slot (before)."""
    if k.kmap_scheme == "kmap_local":
        return k.kmap_local_page
    if k.kmap_scheme == "km_type":
        return lambda page: k.kmap_atomic(page, "KM_USER0")
    return k.kmap_atomic


def _kunmap_local(k):
    if k.kmap_scheme == "kmap_local":
        return k.kunmap_local
    if k.kmap_scheme == "km_type":
        return lambda vaddr: k.kunmap_atomic(vaddr, "KM_USER0")
    return k.kunmap_atomic


def _free_atomic_slots(k):
    """Unmap every atomic kmap of CPU 0, innermost first (a named KM_* slot still mapped is a
    BUG when mapped again)."""
    unmap = _kunmap_local(k)
    for slot in reversed(list(k.kmap_atomic_stack[0])):
        unmap(slot.vaddr)


def check_failure_safety(k, ram: bool = True, operations=None) -> dict:
    """Fault injection (fail_page_alloc, failslab) over *operations* (default: all of
    :func:`failure_operations`): for every N up to the number of page (and slab)
    allocations an operation makes, the N-th one fails; the operation must raise
    OutOfMemory and leave :func:`kernel_state` exactly as it was, with the invariants
    holding. Returns counts: operations, injections."""
    counts = {"operations": 0, "injections": 0}
    for name, setup, action in operations or failure_operations(k):
        arg = setup(k) if setup else None
        counts["operations"] += 1
        for kind in ("page", "slab"):
            n = 1
            while True:
                # RAM (a copy of all of it) for the first failures and every 16th: the rest
                # compares every record, which is where a partial undo would show first
                with_ram = ram and (n <= 4 or n % 16 == 0)
                before = kernel_state(k, with_ram)
                inj = k.inject_failures(**{kind: n})
                try:
                    action(k, arg)
                except OutOfMemory:
                    k.stop_injecting()
                    after = kernel_state(k, with_ram)
                    assert after == before, f"{name}: the failed {kind} allocation #{n} left {_state_diff(before, after)} changed"
                    counts["injections"] += 1
                    n += 1
                    continue
                finally:
                    k.stop_injecting()
                made = inj.count[kind]
                assert made < n, f"{name}: {kind} allocation #{n} was injected to fail but the operation succeeded"
                break
            # the state after every failure was the state before, where the invariants held
            # (checked once per operation: the equality carries them over)
            k.check_invariants()
            if kind == "page":  # the operation succeeded: run it again (fresh) for the slab pass
                arg = setup(k) if setup else None
    return counts
