"""Page-table lifetimes and the entries the kernel makes, each rule from the kernel's source:

- mm/memory.c free_pgtables/free_pgd_range (2.6.12 .. 6.x): munmap frees a page table only
  when its whole range lies between the previous VMA's end (floor) and the next VMA's start
  (ceiling); a table that still covers part of another VMA stays, pages or not.
- mm/memory.c copy_page_range (2.6.12 "Don't copy ptes where a page fault will fill them
  correctly": !vma->anon_vma; 6.x vma_needs_copy): fork copies the ptes of VMAs with an
  anon_vma only, each copy made old (copy_one_pte / copy_present_pte: pte_mkold); shared
  anonymous memory is a shmem file (mm/shmem.c shmem_zero_setup), found again by the
  child's fault.
- mm/mprotect.c: before 6.0 mprotect back to writable leaves private ptes read-only (the
  next write takes a wp fault); 6.0 (64fe24a3e05e) can_change_pte_writable() makes a dirty
  PageAnonExclusive pte writable at once; 6.2 (d84887739d5c) a clean one too.
- mm/memory.c do_anonymous_page: the zero page is mapped pte_mkspecial (2.6.32+; x86
  _PAGE_SPECIAL is _PAGE_BIT_SOFTW1, bit 9, arch/x86/include/asm/pgtable_types.h).

Entries are read from emulated physical memory with the small walker below, not mmemu's.
"""

from __future__ import annotations

import pytest

from mmemu.kernel import MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE, MAP_SHARED, PROT_READ, PROT_WRITE

PAGE = 4096
P, RW, A, D = 0x1, 0x2, 0x20, 0x40
SPECIAL = 1 << 9  # _PAGE_SPECIAL = _PAGE_BIT_SOFTW1
FIXED = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED
#: (shift, entries, entry size) per level, top down; the frame bits of an entry
LEVELS = {"i386": ([(22, 1024, 4), (12, 1024, 4)], 0xFFFFF000),
          "i386_pae": ([(30, 4, 8), (21, 512, 8), (12, 512, 8)], 0x000FFFFFFFFFF000),
          "x86_64": ([(39, 512, 8), (30, 512, 8), (21, 512, 8), (12, 512, 8)], 0x000FFFFFFFFFF000)}


def walk(k, proc, va):
    """[(table, raw)] top down, stopping at a non-present entry."""
    levels, mask = LEVELS[k.spec.arch]
    out, table = [], proc.pgd
    for shift, n, size in levels:
        raw = int.from_bytes(k.mem.read(table + ((va >> shift) & (n - 1)) * size, size), "little")
        out.append((table, raw))
        if not raw & P:
            break
        table = raw & mask
    return out


def pte(k, proc, va) -> int:
    steps = walk(k, proc, va)
    return steps[-1][1] if len(steps) == len(LEVELS[k.spec.arch][0]) else 0


def pfn(k, raw) -> int:
    return (raw & LEVELS[k.spec.arch][1]) >> 12


# -- munmap: free_pgtables within floor and ceiling --------------------------------------


@pytest.mark.parametrize("arch", ["i386", "x86_64"])
def test_munmap_keeps_a_page_table_another_vma_still_covers(boot, arch):
    """Two VMAs in one page table's range, only the first ever faulted: unmapping it frees
    its page but not the table (the ceiling is the second VMA's start), although the
    table maps nothing any more; unmapping the second frees the table and, on x86_64, the
    pmd and pud tables above (nothing else in their 1 GiB and 512 GiB ranges)."""
    k = boot(arch=arch, kernel="6.6", ram="256M")
    p = k.create_process()
    a = k.mmap(p, 0x10000000, PAGE, PROT_READ | PROT_WRITE, FIXED)
    b = k.mmap(p, 0x10002000, PAGE, PROT_READ, FIXED)  # same pte table (2 or 4 MiB), no page ever
    k.write(a, b"x", user=True, process=p)
    table = walk(k, p, a)[-1][0]
    free0 = k.frames.nr_free_pages()
    k.munmap(p, a, PAGE)
    assert pte(k, p, a) == 0 and walk(k, p, a)[-1][0] == table  # the table is still reached
    assert k.frames.page(table >> 12).state == "allocated"
    assert k.frames.nr_free_pages() == free0 + 1  # the data page only
    k.munmap(p, b, PAGE)
    top = walk(k, p, b)
    assert len(top) == 1 and top[0][1] == 0  # the pgd entry itself is cleared
    assert k.frames.page(table >> 12).state == "free"
    assert k.frames.nr_free_pages() == free0 + 1 + {"i386": 1, "x86_64": 3}[arch]
    k.check_invariants()


@pytest.mark.parametrize("kernel, freed", [("2.6.24", False), ("6.6", True)])
def test_pae_user_pmd_freed_by_munmap_from_2_6_25(boot, kernel, freed):
    """PAE: pgd_alloc preallocates the user pmds; 2.6.24 frees them with the pgd only
    (pgalloc_32.h: empty __pmd_free_tlb), later kernels free one whose GiB no VMA reaches
    (free_pmd_range's pud_clear + pmd_free_tlb; pgtable.c pgd_mop_up_pmds), and the next
    fault there allocates a new one (pud_populate: the PDPT entry is _PAGE_PRESENT alone)."""
    k = boot(arch="i386_pae", kernel=kernel, ram="256M")
    p = k.create_process()
    pmd0 = walk(k, p, 0x10000000)[0][1]
    assert pmd0 & P  # prepopulated
    a = k.mmap(p, 0x10000000, PAGE, PROT_READ | PROT_WRITE, FIXED)  # alone in the first GiB
    k.write(a, b"x", user=True, process=p)
    k.munmap(p, a, PAGE)
    assert (walk(k, p, a)[0][1] == 0) == freed
    assert k.frames.page((pmd0 & LEVELS["i386_pae"][1]) >> 12).state == ("free" if freed else "allocated")
    a = k.mmap(p, 0x10000000, PAGE, PROT_READ | PROT_WRITE, FIXED)
    assert k.read(a, 1, user=True, process=p) == b"\0"
    assert walk(k, p, a)[0][1] & 0xFFF == P  # present again; nothing else at this level
    k.check_invariants()
    k.exit_mm(p)
    k.check_invariants()


def test_munmap_keeps_the_tables_of_the_floor_side(boot):
    """The floor: a VMA that ends inside the pte table's range keeps it, even when the one
    unmapped after it is the table's only mapped page (mm/memory.c free_pgd_range: addr is
    rounded down to PMD_SIZE and moved up past the table when below the floor)."""
    k = boot(arch="x86_64", kernel="6.6", ram="256M")
    p = k.create_process()
    a = k.mmap(p, 0x20000000, PAGE, PROT_READ, FIXED)
    b = k.mmap(p, 0x20001000, PAGE, PROT_READ | PROT_WRITE, FIXED)  # not merged: other flags
    k.write(b, b"y", user=True, process=p)
    table = walk(k, p, b)[-1][0]
    k.munmap(p, b, PAGE)
    assert walk(k, p, a)[-1][0] == table and k.frames.page(table >> 12).state == "allocated"
    k.check_invariants()


# -- fork: copy_page_range ----------------------------------------------------------------


def test_fork_copies_only_vmas_with_an_anon_vma_and_makes_copies_old(boot):
    k = boot(arch="x86_64", kernel="6.6", ram="256M")
    p = k.create_process()
    # apart: adjacent, they would be one VMA (vma_merge), whose anon_vma covers both
    read_only = k.mmap(p, 0x10000000, PAGE, PROT_READ | PROT_WRITE, FIXED)  # read: the zero page, no anon_vma
    written = k.mmap(p, 0x20000000, PAGE, PROT_READ | PROT_WRITE, FIXED)  # written: a page, an anon_vma
    k.read(read_only, 1, user=True, process=p)
    k.write(written, b"w", user=True, process=p)
    assert pte(k, p, read_only) & SPECIAL and pte(k, p, written) & A
    c = k.fork(p)
    assert pte(k, c, read_only) == 0  # left to the child's fault
    child, parent = pte(k, c, written), pte(k, p, written)
    assert pfn(k, child) == pfn(k, parent)
    assert not child & RW and not parent & RW  # copy-on-write on both sides
    assert not child & A and parent & A  # pte_mkold in the child only
    assert k.read(read_only, 1, user=True, process=c) == b"\0"  # faulted in: the zero page
    assert pfn(k, pte(k, c, read_only)) == k.zero_pfn
    assert k.read(written, 1, user=True, process=c) == b"w"
    k.check_invariants()


def test_shared_anonymous_memory_is_one_object_found_by_the_childs_fault(boot):
    k = boot(arch="i386", kernel="6.6", ram="256M")
    p = k.create_process()
    free0 = k.frames.nr_free_pages()
    s = k.mmap(p, None, 2 * PAGE, flags=MAP_SHARED | MAP_ANONYMOUS)
    k.write(s, b"parent", user=True, process=p)
    c = k.fork(p)
    assert pte(k, c, s) == 0  # shmem has no anon_vma: not copied
    assert k.read(s, 6, user=True, process=c) == b"parent"  # shmem_fault: the same page
    assert pfn(k, pte(k, c, s)) == pfn(k, pte(k, p, s))
    k.write(s + PAGE, b"child", user=True, process=c)  # a page the parent never touched
    assert k.read(s + PAGE, 5, user=True, process=p) == b"child"
    k.munmap(p, s, 2 * PAGE)  # the child's VMA still holds the object: its pages stay
    assert k.read(s, 6, user=True, process=c) == b"parent"
    k.check_invariants()
    k.exit_mm(c)  # the last VMA on the object: its pages go (the file's last fput)
    k.exit_mm(p)
    assert k.frames.nr_free_pages() >= free0 - 1  # nothing of the object is left
    assert not any(rec.owner.startswith("shmem") for rec in k.frames.allocated.values())


# -- mprotect back to writable ------------------------------------------------------------


@pytest.mark.parametrize("kernel, dirty, clean", [("5.19", False, False), ("6.0", True, False),
                                                  ("6.2", True, True), ("6.6", True, True)])
def test_mprotect_back_to_writable_by_era(boot, kernel, dirty, clean):
    """*dirty*/*clean*: whether a dirty/clean exclusive anonymous page is writable right
    after mprotect(PROT_READ) then mprotect(PROT_READ | PROT_WRITE)."""
    k = boot(arch="x86_64", kernel=kernel, ram="256M")
    p = k.create_process()
    a = k.mmap(p, None, 2 * PAGE)
    k.write(a, b"d", user=True, process=p)  # dirty, exclusive (do_anonymous_page)
    k.install_user_pages(p, a + PAGE, b"c")  # clean (mk_pte without dirty), exclusive
    assert pte(k, p, a) & D and not pte(k, p, a + PAGE) & D
    k.mprotect(p, a, 2 * PAGE, PROT_READ)
    assert not pte(k, p, a) & RW and not pte(k, p, a + PAGE) & RW
    k.mprotect(p, a, 2 * PAGE, PROT_READ | PROT_WRITE)
    assert bool(pte(k, p, a) & RW) == dirty
    assert bool(pte(k, p, a + PAGE) & RW) == clean
    k.write(a + PAGE, b"C", user=True, process=p)  # either way the write succeeds, same page
    assert pte(k, p, a + PAGE) & RW
    k.check_invariants()


def test_mprotect_leaves_a_shared_cow_page_read_only_and_unchanged_flags_alone(boot):
    k = boot(arch="x86_64", kernel="6.6", ram="256M")
    p = k.create_process()
    a = k.mmap(p, None, PAGE)
    k.write(a, b"d", user=True, process=p)
    k.mprotect(p, a, PAGE, PROT_READ | PROT_WRITE)  # the same flags: mprotect_fixup does nothing
    assert pte(k, p, a) & RW
    c = k.fork(p)
    k.exit_mm(c)  # refcount 1 again, but PageAnonExclusive was cleared by the fork
    k.mprotect(p, a, PAGE, PROT_READ)
    k.mprotect(p, a, PAGE, PROT_READ | PROT_WRITE)
    assert not pte(k, p, a) & RW  # can_change_pte_writable: not exclusive
    k.write(a, b"e", user=True, process=p)  # do_wp_page reuses it (the only reference)
    assert pte(k, p, a) & RW and k.read(a, 1, user=True, process=p) == b"e"
    k.check_invariants()


# -- the zero page ------------------------------------------------------------------------


@pytest.mark.parametrize("kernel, special", [("2.6.12", False), ("2.6.32", True), ("6.6", True)])
def test_zero_page_is_mapped_special_from_2_6_32(boot, kernel, special):
    k = boot(arch="i386", kernel=kernel, ram="256M")
    p = k.create_process()
    a = k.mmap(p, None, PAGE)
    k.read(a, 1, user=True, process=p)
    raw = pte(k, p, a)
    assert pfn(k, raw) == k.zero_pfn and bool(raw & SPECIAL) == special
    k.check_invariants()


# -- L1TF: the frame of a PROT_NONE pte inverted (x86_64 and PAE, 4.18+) --------------------

PFN_MASK_52 = ((1 << 52) - 1) & ~0xFFF  # PTE_PFN_MASK, __PHYSICAL_MASK_SHIFT 52


@pytest.mark.parametrize("arch, kernel, inverted", [("x86_64", "4.17", False), ("x86_64", "4.18", True),
                                                    ("x86_64", "6.6", True), ("i386_pae", "6.6", True),
                                                    ("i386", "6.6", False)])
def test_prot_none_pte_frame_inverted_from_4_18(boot, arch, kernel, inverted):
    """arch/x86/include/asm/pgtable-invert.h: pfn_pte() of PAGE_NONE XORs the frame with
    PTE_PFN_MASK (protnone_mask), pte_pfn() undoes it, pte_modify() flips it back when the
    pte becomes accessible again (flip_protnone_guard); 2-level i386 has no inversion."""
    k = boot(arch=arch, kernel=kernel, ram="256M")
    p = k.create_process()
    a = k.mmap(p, None, PAGE)
    k.write(a, b"data", user=True, process=p)
    frame = pte(k, p, a) & LEVELS[arch][1]
    k.mprotect(p, a, PAGE, 0)  # PROT_NONE
    raw = int.from_bytes(k.mem.read(_pte_address(k, p, a), LEVELS[arch][0][-1][2]), "little")
    assert not raw & P  # not present for the MMU either way (Unicorn sees a non-present entry)
    if inverted:
        assert raw & PFN_MASK_52 == frame ^ PFN_MASK_52
    else:
        assert raw & PFN_MASK_52 == frame
    assert k.pte_pfn(raw) == frame >> 12  # the kernel's pte_pfn undoes it
    assert k.codec.describe(len(k.paging.levels) - 1, raw).addr == frame  # so do mmemu's views
    k.check_invariants()  # the page is still counted as mapped (pte_present)
    k.mprotect(p, a, PAGE, PROT_READ | PROT_WRITE)
    assert pte(k, p, a) & LEVELS[arch][1] == frame  # present again: the frame as it was
    assert k.read(a, 4, user=True, process=p) == b"data"
    k.munmap(p, a, PAGE)  # zap finds the right page to free
    k.check_invariants()


def _pte_address(k, proc, va):
    levels, _mask = LEVELS[k.spec.arch]
    table = walk(k, proc, va)[-1][0]
    shift, n, size = levels[-1]
    return table + ((va >> shift) & (n - 1)) * size


@pytest.mark.parametrize("kernel", ["4.17", "6.6"])
def test_unicorn_sees_an_inverted_prot_none_pte_as_not_present(boot, kernel):
    """The inversion only touches the frame bits of an entry whose P bit is clear: the
    CPU's walk (Unicorn's MMU, reading the process's tables) stops there either way, with
    the same #PF error code as mmemu's walker."""
    from mmemu.cpu import Cpu
    from mmemu.kernel import PROT_EXEC

    k = boot(arch="x86_64", kernel=kernel, ram="256M")
    p = k.create_process()
    k.switch_to(p)
    cpu = Cpu(k)
    stub = k.mmap(p, None, PAGE, PROT_READ | PROT_EXEC)
    k.install_user_pages(p, stub, cpu.adapter.probe_stub)
    a = k.mmap(p, None, PAGE)
    k.write(a, b"z", user=True, process=p)
    k.mprotect(p, a, PAGE, 0)
    assert bool(pte(k, p, a) & (1 << 51)) == (kernel == "6.6")  # inverted: the top frame bit set
    for access in ("read", "write"):
        expected = k.walk_mm(a, p).code(access, True)
        probe = cpu.probe(a, access, user=True, user_stub_va=stub)
        assert probe.trap == 14 and probe.fault.code == expected == (0x4 if access == "read" else 0x6)


def test_a_shmem_page_no_object_holds_is_a_leak(boot):
    from mmemu.kernel.invariants import InvariantError

    k = boot(arch="x86_64", kernel="6.6", ram="256M")
    p = k.create_process()
    s = k.mmap(p, None, PAGE, flags=MAP_SHARED | MAP_ANONYMOUS)
    k.write(s, b"s", user=True, process=p)
    k.munmap(p, s, PAGE)  # the only VMA on the object: its page goes with it
    k.check_invariants()
    k.alloc_pages(0, "HighMem", owner="shmem (/dev/zero inode 99)")  # one nobody holds
    with pytest.raises(InvariantError, match="leaked"):
        k.check_invariants()
