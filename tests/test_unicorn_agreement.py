"""Unicorn's own x86 MMU against mmemu's walker, on the tables mmemu builds.

For every machine below: boot it, add user mappings of every kind (4 KiB and large pages,
read-only, writable, executable, supervisor-only pages in user space, and intermediate
entries whose RW/US/NX restrict what is below them), then translate thousands of random
addresses (mapped and unmapped, kernel and user) through the CPU, for read, write and
fetch at CPL 0 and CPL 3. The CPU must reach the physical address the walker computes, or
raise the page fault the walker predicts, with the same error code.
"""

from __future__ import annotations

import random
import zlib

import pytest
from mmemu_x86.guest import PROBE_STUB

import mmemu
from mmemu.cpu import Cpu

MACHINES = [
    pytest.param(dict(arch="i386", kernel="3.10", ram="1G"), id="i386-4M-pages"),
    pytest.param(dict(arch="i386", kernel="6.6", ram="768M", cmdline="nopse"), id="i386-4K-only"),
    pytest.param(dict(arch="i386_pae", kernel="6.6", ram="4G"), id="pae-2M-pages"),
    pytest.param(dict(arch="i386_pae", kernel="2.6.12", ram="1G", cmdline="nopse"), id="pae-4K-only"),
    pytest.param(dict(arch="x86_64", kernel="6.6", ram="6G"), id="x86_64-1G-pages"),
    pytest.param(dict(arch="x86_64", kernel="4.14", ram="3G", cmdline="nogbpages"), id="x86_64-2M-pages"),
    pytest.param(dict(arch="x86_64", kernel="6.6", ram="2G", options={"levels": "5"}), id="x86_64-5-level"),
]

ACCESSES = ("read", "write", "exec")


RW, US = 1 << 1, 1 << 2  # x86 entry bits (SDM vol. 3, 4.5)


def _user_mappings(k, rng: random.Random):
    """Map user pages of every kind below TASK_SIZE in the master table; return the VA of
    the probe stub (user-executable) and the list of mapped ranges."""
    pt, prot, mode = k.pgtable, k.arch.pgprot, k.paging
    frames = k.frames
    big = 4 << 20 if mode.name == "2-level" else 2 << 20  # the directory-level large page
    base = 0x08000000
    ranges = []

    def frame(order=0):
        page = frames.alloc_pages(order, "Normal", owner="test")
        return page.phys

    stub_pa = frame()
    k.mem.write(stub_pa, PROBE_STUB)
    stub_va = base
    pt.map(k.pgd, stub_va, stub_pa, 4096, prot["PAGE_READONLY_EXEC"], writer="test", user_tables=True)
    kinds = ["PAGE_READONLY", "PAGE_SHARED", "PAGE_SHARED_EXEC", "PAGE_COPY_EXEC", "PAGE_KERNEL", "PAGE_KERNEL_RO"]
    va = base + 0x10000
    for i in range(60):
        name = rng.choice(kinds)
        pt.map(k.pgd, va, frame(), 4096, prot[name], writer="test", user_tables=True)
        ranges.append((va, 4096, name))
        va += 4096 * rng.choice((1, 2, 3))
    # large user pages
    order = (big >> 12).bit_length() - 1
    va = (base + 0x800000 + big - 1) & ~(big - 1)
    for name in ("PAGE_SHARED", "PAGE_READONLY", "PAGE_SHARED_EXEC"):
        pt.map(k.pgd, va, frame(order), big, prot[name], writer="test", user_tables=True, page_sizes=(big,))
        ranges.append((va, big, name))
        va += 2 * big
    # an intermediate entry that restricts what is below: clear RW and US, set NX (where
    # the level has those bits) in the entry above a table of writable user pages
    restricted = (va + (4 << 20)) & ~((4 << 20) - 1)
    for j in range(4):
        pt.map(k.pgd, restricted + j * 4096, frame(), 4096, prot["PAGE_SHARED_EXEC"], writer="test", user_tables=True)
    w = pt.walk(k.pgd, restricted)
    parent = w.steps[-2]
    if mode.codec.bits[parent.li].access_bits:
        _write_entry(k, parent, parent.raw & ~RW)
        ranges.append((restricted, 4 * 4096, "parent read-only"))
    # a second restricted region: parent without US
    restricted2 = restricted + (8 << 20)
    for j in range(4):
        pt.map(k.pgd, restricted2 + j * 4096, frame(), 4096, prot["PAGE_SHARED"], writer="test", user_tables=True)
    p2 = pt.walk(k.pgd, restricted2).steps[-2]
    if mode.codec.bits[p2.li].access_bits:
        _write_entry(k, p2, (p2.raw & ~US) | mode.codec.nx)
        ranges.append((restricted2, 4 * 4096, "parent supervisor NX"))
    return stub_va, ranges


def _write_entry(k, step, value):
    k.mem.write(step.entry_addr, value.to_bytes(step.level.entry_size, "little"))


def _addresses(k, rng: random.Random, user_ranges, n_random: int):
    """Addresses to probe: inside every kind of mapping (kernel leaves sampled), near
    them, and random ones over the whole space."""
    addrs = set()
    # one leaf per (frame, entry): ESPfix's 65,536 views of one page (x86_64 3.16+) would
    # otherwise be most of the sample
    leaves = list({(pa, raw): (va, size, pa, raw, li) for va, size, pa, raw, li in k.pgtable.iter_leaves(k.pgd)}.values())
    for va, size, _pa, _raw, _li in rng.sample(leaves, min(len(leaves), 600)):
        addrs.add(va + rng.randrange(size))
        addrs.add(va + size - 1)
    for va, size, _ in user_ranges:
        addrs.add(va + rng.randrange(size))
        addrs.add(va - 1)
        addrs.add(va + size)
    mode = k.paging
    for _ in range(n_random):
        if mode.bits64:
            top = 1 << (mode.va_bits - 1)
            va = rng.randrange(top)
            addrs.add(va if rng.random() < 0.5 else va | ((1 << 64) - top))
        else:
            addrs.add(rng.randrange(1 << 32))
    # only addresses whose translation (if any) lands in RAM: the CPU cannot read beyond it
    out = []
    for va in sorted(addrs):
        if not mode.is_valid(va):
            continue
        w = k.walk(va)
        if w.mapped and not k.mem.is_ram(w.phys):
            continue
        out.append(va)
    return out


@pytest.mark.parametrize("machine", MACHINES)
def test_cpu_mmu_agrees_with_walker(machine):
    rng = random.Random(zlib.crc32(repr(machine).encode()))
    k = mmemu.boot(**machine)
    try:
        stub_va, user_ranges = _user_mappings(k, rng)
        cpu = Cpu(k)
        addrs = _addresses(k, rng, user_ranges, n_random=1200)
        assert len(addrs) > 1500
        checked = {"mapped": 0, "faults": 0}
        for va in addrs:
            # user mode runs on the user copy of the page directory under PTI (x86_64 4.15+):
            # the CPU must translate through it as the walker does
            walks = (k.walk(va), k.walk(va, k.user_pgd(k.pgd)))
            for user in (False, True):
                walk = walks[user]
                for access in ACCESSES:
                    expected = walk.code(access, user)
                    # a fetch decodes a whole instruction: probe the page start, so that
                    # whatever bytes lie there cannot run into the next page
                    at = va & ~0xFFF if access == "exec" else va
                    probe = cpu.probe(at, access, user=user, user_stub_va=stub_va)
                    where = f"{access} {'user' if user else 'kernel'} {va:#x} ({walk!r})"
                    if expected is None:
                        assert not probe.faulted, f"{where}: CPU raised {probe}"
                        if access != "exec":
                            assert probe.phys == walk.phys, f"{where}: CPU reached {probe.phys:#x}"
                        checked["mapped"] += 1
                    else:
                        assert probe.trap == 14, f"{where}: expected #PF {expected:#x}, CPU: {probe}"
                        assert probe.fault.code == expected, f"{where}: error code CPU {probe.fault.code:#x} walker {expected:#x}"
                        assert probe.fault.address == at
                        checked["faults"] += 1
        # the run covered both outcomes, many times
        assert checked["mapped"] > 500 and checked["faults"] > 500, checked
    finally:
        k.close()


def test_three_faults_in_a_row_arrive_as_page_faults():
    """Unicorn issue #1883: without resetting old_exception the second fault arrives as a
    double fault (8) and the third stops emulation silently."""
    k = mmemu.boot(arch="x86_64", ram="512M")
    try:
        cpu = Cpu(k)
        vectors = [cpu.probe(0x1000 * (i + 1), "read").trap for i in range(3)]
        assert vectors == [14, 14, 14]
    finally:
        k.close()
