"""Floors: the bare minimum of the same work, in plain Python on the same data, measured in
the same process and interleaved with mmemu's own path, so that a figure is a ratio that
means something on a machine whose speed varies two- to three-fold from run to run
(issue "Performance against the floor").

:func:`interleaved` runs the subject and the floor alternately, each repetition sized to
last about as long as the other, after an untimed warm-up, and reports both rates, the
best per-repetition ratio and the median one.
"""

from __future__ import annotations

import random
import statistics
import struct
import time

import mmemu


def _rate(fn, n: int) -> float:
    t = time.perf_counter()
    fn(n)
    return n / (time.perf_counter() - t)


def _calibrate(fn, target: float) -> int:
    """The n that makes fn(n) last about *target* seconds (after a warm-up run)."""
    n = 64
    fn(n)
    while True:
        t = time.perf_counter()
        fn(n)
        dt = time.perf_counter() - t
        if dt >= target / 4 or n >= 1 << 24:
            return max(1, int(n * target / max(dt, 1e-9)))
        n *= 4


def interleaved(subject, floor, reps: int = 7, target: float = 0.15) -> dict:
    """*subject*(n) and *floor*(n) each do n operations; their rates, alternately measured
    *reps* times, and the ratio subject/floor per repetition (best and median)."""
    ns, nf = _calibrate(subject, target), _calibrate(floor, target)
    sub, flo, ratios = [], [], []
    for _ in range(reps):
        s = _rate(subject, ns)
        f = _rate(floor, nf)
        sub.append(s)
        flo.append(f)
        ratios.append(s / f)
    return {"subject_per_s": statistics.median(sub), "floor_per_s": statistics.median(flo),
            "ratio_best": max(ratios), "ratio_median": statistics.median(ratios)}


# -- the walk -----------------------------------------------------------------------------

def mapped_addresses(k, n: int, seed: int = 1) -> list[int]:
    """*n* random addresses inside the kernel's mapped leaves (the same for every run)."""
    rng = random.Random(seed)
    leaves = list(k.pgtable.iter_leaves(k.pgd))
    addrs = []
    for _ in range(n):
        va, size, *_ = leaves[rng.randrange(len(leaves))]
        addrs.append(va + rng.randrange(size))
    return addrs


def _bare_walk_x86_64(mem, root: int, va: int) -> int | None:
    """x86_64 4-level: present bit 0, PSE bit 7 at the PUD and PMD levels."""
    table = root
    for shift in (39, 30, 21, 12):
        e = struct.unpack_from("<Q", mem, table + ((va >> shift) & 511) * 8)[0]
        if not e & 1:
            return None
        frame = e & 0x000FFFFFFFFFF000
        if shift == 12 or (shift != 39 and e & 0x80):
            size = 1 << shift
            return (frame & ~(size - 1)) | (va & (size - 1))
        table = frame
    return None


def _bare_walk_sv39(mem, root: int, va: int) -> int | None:
    """RISC-V Sv39: V bit 0, a leaf has R, W or X (bits 1-3); the PPN from bit 10."""
    table = root
    for shift in (30, 21, 12):
        e = struct.unpack_from("<Q", mem, table + ((va >> shift) & 511) * 8)[0]
        if not e & 1:
            return None
        frame = (e >> 10) << 12
        if e & 0xE:
            size = 1 << shift
            return (frame & ~(size - 1)) | (va & (size - 1))
        table = frame
    return None


def _bare_walk_arm64(mem, root: int, va: int) -> int | None:
    """arm64 48-bit, 4 KiB granule: bit 0 valid, bit 1 table (levels 0-2) or page (3)."""
    table = root
    for shift in (39, 30, 21, 12):
        e = struct.unpack_from("<Q", mem, table + ((va >> shift) & 511) * 8)[0]
        if not e & 1:
            return None
        frame = e & 0x0000FFFFFFFFF000
        if shift == 12 or not e & 2:
            size = 1 << shift
            return (frame & ~(size - 1)) | (va & (size - 1))
        table = frame
    return None


WALK_FLOORS = {
    "x86_64": (dict(arch="x86_64", kernel="6.6", ram="8G", cmdline="nogbpages"), _bare_walk_x86_64),
    "riscv64": (dict(arch="riscv64", kernel="6.6", ram="8G", options={"mmu": "sv39"}), _bare_walk_sv39),
    "arm64": (dict(arch="arm64", kernel="6.6", ram="8G", options={"va_bits": "48"}), _bare_walk_arm64),
}


def walk_floor(arch: str, n: int = 50_000) -> dict:
    """mmemu's software walk (``k.pgtable.walk``) against a bare Python walk of the same
    tables, on the same random addresses of the kernel's mappings; the bare walk is checked
    to land where mmemu's does."""
    machine, bare = WALK_FLOORS[arch]
    k = mmemu.boot(**machine)
    addrs = mapped_addresses(k, n)
    walk, root, mem = k.pgtable.walk, k.pgd, k.mem.view
    for va in addrs[:2000]:  # the floor does the same work: same answers
        assert bare(mem, root, va) == walk(root, va).phys, hex(va)

    def subject(count):
        for i in range(count):
            walk(root, addrs[i % n])

    def floor(count):
        for i in range(count):
            bare(mem, root, addrs[i % n])

    out = interleaved(subject, floor)
    k.close()
    return out


# -- vmalloc ------------------------------------------------------------------------------

def vmalloc_floor() -> dict:
    """vmalloc(4096) + vfree against the bare minimum of that work: a frame from the buddy
    allocator, one pte written and cleared in the page table's frame, the frame freed."""
    k = mmemu.boot(arch="x86_64", kernel="6.6", ram="1G")
    va = k.vmalloc(4096)
    pte_table = k.walk(va).steps[-1].table  # the physical address of the last-level table
    k.vfree(va)
    k.purge_vmap_area_lazy()
    view = k.mem.view
    slot = pte_table + 8
    frames = k.frames  # the buddy allocator itself, outside any kernel operation

    def subject(count):
        for _ in range(count):
            k.vfree(k.vmalloc(4096))

    def floor(count):
        for _ in range(count):
            page = frames.alloc_pages(0, "Normal", "floor")
            struct.pack_into("<Q", view, slot, (page.pfn << 12) | 0x8000000000000163)
            struct.pack_into("<Q", view, slot, 0)
            frames.free_pages(page)

    out = interleaved(subject, floor)
    k.check_invariants()
    k.close()
    return out


# -- demand faults --------------------------------------------------------------------------

#: loop: mov [rbx], al; add rbx, 4096; dec rcx; jnz loop; (then the stop address)
TOUCH_X86_64 = bytes.fromhex("8803" "4881c300100000" "48ffc9" "75f2")


class _BareFaults:
    """Raw Unicorn, x86_64 long mode with 4-level tables built by hand: code touching fresh
    pages at CPL 0; a UC_HOOK_INTR handler that resets the pending-exception state as
    mmemu's adapter does (Unicorn issue #1883), reads CR2, takes the next frame and writes
    one pte. The least Python can do per demand fault on Unicorn."""

    RAM = 256 << 20
    PML4, PDPT, PD, PT0 = 0x10000, 0x11000, 0x12000, 0x20000
    CODE = 0x1000
    DATA = 1 << 30  # the touched range, at 1 GiB (PDPT index 1)
    FRAMES = 32 << 20

    def __init__(self, max_pages: int):
        from unicorn import UC_ARCH_X86, UC_HOOK_INTR, UC_MODE_64, Uc
        from unicorn.x86_const import UC_X86_REG_CR0, UC_X86_REG_CR3, UC_X86_REG_CR4

        from mmemu_x86.faultstate import find_offsets

        self.max_pages = max_pages
        uc = self.uc = Uc(UC_ARCH_X86, UC_MODE_64)
        uc.mem_map(0, self.RAM)
        pml4 = bytearray(4096)
        pdpt = bytearray(4096)
        struct.pack_into("<Q", pml4, 0, self.PDPT | 3)
        struct.pack_into("<Q", pdpt, 0, 0x83)  # the first GiB identity mapped: code and tables
        struct.pack_into("<Q", pdpt, 8, self.PD | 3)
        n_pt = -(-max_pages // 512)
        pd = bytearray(4096)
        for i in range(n_pt):
            struct.pack_into("<Q", pd, i * 8, (self.PT0 + i * 4096) | 3)
        uc.mem_write(self.PML4, bytes(pml4))
        uc.mem_write(self.PDPT, bytes(pdpt))
        uc.mem_write(self.PD, bytes(pd))
        uc.mem_write(self.CODE, TOUCH_X86_64)
        uc.reg_write(UC_X86_REG_CR3, self.PML4)
        uc.reg_write(UC_X86_REG_CR4, 0x20 | 0x80)  # PAE | PGE
        uc.msr_write(0xC0000080, (1 << 8) | (1 << 10))  # EFER: LME | LMA
        uc.reg_write(UC_X86_REG_CR0, 0x80010001)  # PG | WP | PE
        self.offsets = find_offsets()
        self.ctx = uc.context_save()
        import ctypes
        self.base = ctypes.cast(self.ctx.context, ctypes.c_void_p).value
        self.c_int32 = ctypes.c_int32
        self.next_frame = self.FRAMES
        self.faults = 0
        uc.hook_add(UC_HOOK_INTR, self._on_fault)
        self.pt_clear = bytes(n_pt * 4096)

    def _on_fault(self, uc, intno, user_data):
        from unicorn.x86_const import UC_X86_REG_CR2

        ctx = self.ctx
        uc.context_update(ctx)  # old_exception = -1, as mmemu's adapter resets it
        self.c_int32.from_address(self.base + self.offsets.old_exception).value = -1
        uc.context_restore(ctx)
        va = uc.reg_read(UC_X86_REG_CR2)
        pte = self.PT0 + ((va - self.DATA) >> 12) * 8
        uc.mem_write(pte, struct.pack("<Q", self.next_frame | 3))
        self.next_frame += 4096
        self.faults += 1

    def run(self, n: int) -> None:
        from unicorn.x86_const import UC_X86_REG_RBX, UC_X86_REG_RCX

        uc = self.uc
        uc.mem_write(self.PT0, self.pt_clear)  # every page fresh again
        from unicorn.unicorn_const import UC_CTL_IO_WRITE, UC_CTL_TLB_FLUSH

        uc.ctl(UC_CTL_TLB_FLUSH, UC_CTL_IO_WRITE)
        self.next_frame, self.faults = self.FRAMES, 0
        uc.reg_write(UC_X86_REG_RBX, self.DATA)
        uc.reg_write(UC_X86_REG_RCX, n)
        uc.emu_start(self.CODE, self.CODE + len(TOUCH_X86_64))
        assert self.faults == n, (self.faults, n)


#: loop: sb t2, 0(t0); add t0, t0, t3; addi t1, t1, -1; bnez t1, loop (llvm-mc -triple=riscv64)
TOUCH_RISCV64 = bytes.fromhex("23807200" "b382c201" "1303f3ff" "e31a03fe")
#: loop: strb w2, [x0]; add x0, x0, x3; subs x1, x1, #1; b.ne loop (llvm-mc -triple=aarch64)
TOUCH_ARM64 = bytes.fromhex("02000039" "0000038b" "210400f1" "a1ffff54")


class _BareFaultsRiscv64:
    """Raw Unicorn, riscv64 Sv39 in S-mode with tables built by hand: code touching fresh
    pages; a UC_HOOK_INTR handler for the store page fault (intno 15) that does what Unicorn
    leaves to the host on this arch (README A2, X3: no stval, the pc 4 bytes past the
    store): reads the pc and the store's base register, writes one pte, puts the pc back.
    The least Python can do per demand fault on Unicorn's RISC-V."""

    RAM_BASE = 0x80000000
    RAM = 256 << 20
    ROOT, L1 = RAM_BASE + 0x10000, RAM_BASE + 0x11000
    PT0 = RAM_BASE + 0x20000
    CODE = RAM_BASE + 0x1000
    DATA = 1 << 30  # the touched range, at 1 GiB (root index 1)
    FRAMES = RAM_BASE + (32 << 20)
    V, R, W, A, D = 1, 2, 4, 0x40, 0x80

    def __init__(self, max_pages: int):
        from unicorn import UC_ARCH_RISCV, UC_HOOK_INTR, UC_MODE_RISCV64, Uc
        from unicorn import riscv_const as rc

        self.rc = rc
        self.max_pages = max_pages
        uc = self.uc = Uc(UC_ARCH_RISCV, UC_MODE_RISCV64)
        uc.mem_map(self.RAM_BASE, self.RAM)
        root = bytearray(4096)
        # 2 GiB..3 GiB: one gigapage, identity mapped, RWX (code and tables); 1 GiB: the data
        struct.pack_into("<Q", root, 2 * 8, ((self.RAM_BASE >> 12) << 10) | 0xCF)  # V R W X A D
        struct.pack_into("<Q", root, 1 * 8, ((self.L1 >> 12) << 10) | self.V)
        n_pt = -(-max_pages // 512)
        l1 = bytearray(4096)
        for i in range(n_pt):
            struct.pack_into("<Q", l1, i * 8, (((self.PT0 + i * 4096) >> 12) << 10) | self.V)
        uc.mem_write(self.ROOT, bytes(root))
        uc.mem_write(self.L1, bytes(l1))
        uc.mem_write(self.CODE, TOUCH_RISCV64)
        uc.reg_write_batch([(rc.UC_RISCV_REG_PRIV, 3), (rc.UC_RISCV_REG_MSTATUS, 0),
                            (rc.UC_RISCV_REG_SATP, (8 << 60) | (self.ROOT >> 12)), (rc.UC_RISCV_REG_PRIV, 1)])
        self.leaf = self.V | self.R | self.W | self.A | self.D
        self.next_frame = self.FRAMES
        self.faults = 0
        self.regs = [rc.UC_RISCV_REG_PC, rc.UC_RISCV_REG_T0]
        uc.hook_add(UC_HOOK_INTR, self._on_fault)
        self.pt_clear = bytes(n_pt * 4096)

    def _on_fault(self, uc, intno, user_data):
        pc, va = uc.reg_read_batch(self.regs)
        pte = self.PT0 + ((va - self.DATA) >> 12) * 8
        uc.mem_write(pte, struct.pack("<Q", ((self.next_frame >> 12) << 10) | self.leaf))
        uc.reg_write(self.rc.UC_RISCV_REG_PC, pc - 4)
        self.next_frame += 4096
        self.faults += 1

    def run(self, n: int) -> None:
        from unicorn.unicorn_const import UC_CTL_IO_WRITE, UC_CTL_TLB_FLUSH

        rc, uc = self.rc, self.uc
        uc.mem_write(self.PT0, self.pt_clear)
        uc.ctl(UC_CTL_TLB_FLUSH, UC_CTL_IO_WRITE)
        self.next_frame, self.faults = self.FRAMES, 0
        uc.reg_write_batch([(rc.UC_RISCV_REG_T0, self.DATA), (rc.UC_RISCV_REG_T1, n),
                            (rc.UC_RISCV_REG_T2, 0x5A), (rc.UC_RISCV_REG_T3, 4096)])
        uc.emu_start(self.CODE, self.CODE + len(TOUCH_RISCV64))
        assert self.faults == n, (self.faults, n)


class _BareFaultsArm64:
    """Raw Unicorn, arm64 at EL1 with 4 KiB-granule 48-bit tables built by hand (TTBR0):
    code touching fresh pages; a UC_HOOK_INTR handler for the data abort (intno 4; README
    B2: no FAR, the pc at the store) that reads the store's base register and writes one
    page descriptor; the store is retried. The least Python can do per demand fault on
    Unicorn's AArch64."""

    RAM_BASE = 0x40000000
    RAM = 256 << 20
    L0, L1, L2 = RAM_BASE + 0x10000, RAM_BASE + 0x11000, RAM_BASE + 0x12000
    PT0 = RAM_BASE + 0x20000
    CODE = RAM_BASE + 0x1000
    DATA = 2 << 30  # the touched range, at 2 GiB (L1 index 2)
    FRAMES = RAM_BASE + (32 << 20)
    #: a page: valid | page | AttrIndx 0 | SH inner | AF | AP EL1 RW | UXN
    PAGE_ATTRS = 3 | (3 << 8) | (1 << 10) | (1 << 54)

    def __init__(self, max_pages: int):
        from unicorn import UC_ARCH_ARM64, UC_HOOK_INTR, UC_MODE_ARM, Uc
        from unicorn import arm64_const as ac
        from unicorn.unicorn_const import UC_CTL_IO_WRITE, UC_CTL_TLB_FLUSH

        self.ac = ac
        self.max_pages = max_pages
        uc = self.uc = Uc(UC_ARCH_ARM64, UC_MODE_ARM)
        uc.mem_map(self.RAM_BASE, self.RAM)
        l0, l1, l2 = bytearray(4096), bytearray(4096), bytearray(4096)
        struct.pack_into("<Q", l0, 0, self.L1 | 3)
        # 1 GiB..2 GiB: one block, identity mapped (code and tables): valid, SH, AF, EL1 RW
        struct.pack_into("<Q", l1, 8, self.RAM_BASE | 1 | (3 << 8) | (1 << 10))
        struct.pack_into("<Q", l1, 16, self.L2 | 3)
        n_pt = -(-max_pages // 512)
        for i in range(n_pt):
            struct.pack_into("<Q", l2, i * 8, (self.PT0 + i * 4096) | 3)
        uc.mem_write(self.L0, bytes(l0))
        uc.mem_write(self.L1, bytes(l1))
        uc.mem_write(self.L2, bytes(l2))
        uc.mem_write(self.CODE, TOUCH_ARM64)
        uc.cpr_write(3, 6, 1, 1, 0, 1 << 10)  # SCR_EL3.RW (README B1)
        uc.cpr_write(3, 0, 10, 2, 0, 0xFF)  # MAIR_EL1: attr0 normal write-back
        tcr = (16 | (1 << 8) | (1 << 10) | (3 << 12) | (16 << 16) | (1 << 24) | (1 << 26) | (3 << 28)
               | (2 << 30) | (2 << 32))
        uc.cpr_write(3, 0, 2, 0, 2, tcr)  # TCR_EL1: 4 KiB granules, 48-bit VAs
        uc.cpr_write(3, 0, 2, 0, 0, self.L0)  # TTBR0_EL1
        uc.cpr_write(3, 0, 1, 0, 0, uc.cpr_read(3, 0, 1, 0, 0) | 0x1005)  # SCTLR_EL1: M, C, I
        uc.ctl(UC_CTL_TLB_FLUSH, UC_CTL_IO_WRITE)
        self.next_frame = self.FRAMES
        self.faults = 0
        uc.hook_add(UC_HOOK_INTR, self._on_fault)
        self.pt_clear = bytes(n_pt * 4096)

    def _on_fault(self, uc, intno, user_data):
        va = uc.reg_read(self.ac.UC_ARM64_REG_X0)
        pte = self.PT0 + ((va - self.DATA) >> 12) * 8
        uc.mem_write(pte, struct.pack("<Q", self.next_frame | self.PAGE_ATTRS))
        self.next_frame += 4096
        self.faults += 1

    def run(self, n: int) -> None:
        from unicorn.unicorn_const import UC_CTL_IO_WRITE, UC_CTL_TLB_FLUSH

        ac, uc = self.ac, self.uc
        uc.mem_write(self.PT0, self.pt_clear)
        uc.ctl(UC_CTL_TLB_FLUSH, UC_CTL_IO_WRITE)
        self.next_frame, self.faults = self.FRAMES, 0
        uc.reg_write_batch([(ac.UC_ARM64_REG_X0, self.DATA), (ac.UC_ARM64_REG_X1, n),
                            (ac.UC_ARM64_REG_X2, 0x5A), (ac.UC_ARM64_REG_X3, 4096)])
        uc.emu_start(self.CODE, self.CODE + len(TOUCH_ARM64))
        assert self.faults == n, (self.faults, n)


#: the machine of each arch's subject, and its floor
FAULT_FLOORS = {
    # nopti: the floor runs user code and its #PF hook on one set of tables, without PTI's
    # two CR3 switches (each a whole-TLB flush) per fault; what PTI costs is its own figure,
    # demand_faults_pti_vs_nopti (bench/run.py)
    "x86_64": (dict(arch="x86_64", kernel="6.6", ram="2G", cmdline="nopti"), _BareFaults),
    "riscv64": (dict(arch="riscv64", kernel="6.6", ram="2G", options={"mmu": "sv39"}), _BareFaultsRiscv64),
    "arm64": (dict(arch="arm64", kernel="6.6", ram="2G", options={"va_bits": "48"}), _BareFaultsArm64),
}


def demand_fault_floor(arch: str = "x86_64", max_pages: int = 20_000) -> dict:
    """Demand faults of user code on mmemu's CPU (cpu MMU mode: the kernel's fault path, a
    VMA, a zeroed frame, the pte; then the process's exit, which gives the frames back)
    against the arch's bare floor (:class:`_BareFaults`, :class:`_BareFaultsRiscv64`,
    :class:`_BareFaultsArm64`)."""
    from mmemu.cpu import Cpu

    machine, bare_class = FAULT_FLOORS[arch]
    k = mmemu.boot(**machine)
    cpu = Cpu(k)
    bare = bare_class(max_pages)

    def floor(count):
        bare.run(min(count, max_pages))

    out = _interleaved_capped(lambda count: _touch_pages(k, cpu, min(count, max_pages), 120), floor, max_pages)
    k.close()
    return out


def _touch_pages(k, cpu, count: int, timeout: float | None) -> None:
    """A process whose user code touches *count* fresh pages on *cpu* (each a demand fault),
    run with the wall-clock limit *timeout*, then its exit (the frames given back)."""
    from mmemu.kernel import PROT_EXEC, PROT_READ

    p = k.create_process("toucher")
    data = k.mmap(p, None, count * 4096)
    text = k.mmap(p, None, 4096, PROT_READ | PROT_EXEC)
    k.install_user_pages(p, text, cpu.adapter.program_touch_pages(data, count))
    r = cpu.run_user(p, text, timeout=timeout)
    assert r.reason == "exit" and r.faults == count, r
    k.switch_to(None)
    k.exit_mm(p)


def run_limit_cost(arch: str = "x86_64", max_pages: int = 20_000) -> dict:
    """What the wall-clock limit of a run costs (issue "Performance against the floor",
    item 3): the same demand-fault runs with a limit (``timeout=120``, kept by mmemu.cpu's
    watchdog thread) against none (``timeout=None``). Unicorn's own ``emu_start(timeout=)``
    would start a polling thread on every call."""
    from mmemu.cpu import Cpu

    k = mmemu.boot(**FAULT_FLOORS[arch][0])
    cpu = Cpu(k)
    out = _interleaved_capped(lambda count: _touch_pages(k, cpu, min(count, max_pages), 120),
                              lambda count: _touch_pages(k, cpu, min(count, max_pages), None), max_pages)
    k.close()
    return out


def _interleaved_capped(subject, floor, cap: int, reps: int = 5) -> dict:
    """interleaved() for work that cannot grow past *cap* operations a call."""
    sub, flo, ratios = [], [], []
    n = min(cap, 4000)
    subject(n // 4)
    floor(n // 4)
    for _ in range(reps):
        s = _rate(lambda c: subject(c), n)
        f = _rate(lambda c: floor(c), n)
        sub.append(s)
        flo.append(f)
        ratios.append(s / f)
    return {"subject_per_s": statistics.median(sub), "floor_per_s": statistics.median(flo),
            "ratio_best": max(ratios), "ratio_median": statistics.median(ratios)}
