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
    rng = random.Random(1)
    leaves = list(k.pgtable.iter_leaves(k.pgd))
    addrs = []
    for _ in range(n):
        va, size, *_ = leaves[rng.randrange(len(leaves))]
        addrs.append(va + rng.randrange(size))
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
