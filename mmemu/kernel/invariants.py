"""The invariants of the emulated kernel, checked as a whole (tests call it after every
operation of randomised sequences).

1. The frame allocator is consistent (free lists, counters, no overlap).
2. Outside the mappings of all memory (the direct map, the kernel image), every mapped
   frame is allocated or reserved, and a user page's reference count equals the number
   of user ptes that map it (PROT_NONE ones included); every anonymous page is mapped
   by one at least; the zero page stays zero and read-only. The only stale entries
   allowed are the ones the kernel itself leaves: pkmap slots at count 1 (kunmapped,
   not yet flushed) and, in the classic kernels, kmap_atomic slots after kunmap_atomic.
3. Page tables: every table the engine knows is reachable from a page directory exactly
   once, except the kernel part that directories share; every frame owned as a page
   table is one.
4. vmap areas lie in the vmalloc space, do not overlap, keep their guard page unmapped,
   and map exactly their pages.
5. pkmap_count matches the pkmap entries and page_address.
6. The kernel part of every page directory equals the master's (or, where the arch syncs
   it lazily, lacks an entry that vmalloc_fault would copy), at the level the directories
   hold copies of (BootPlan ``kernel_copy_level``: below the top, each directory has tables
   of its own there).
7. User copies (x86 PTI): every directory has one exactly when the machine keeps them, and
   no other; a copy's user half is its directory's (each entry the one the directory keeps
   for it), a process copy's kernel half is the master copy's (at that level too), and the
   master copy maps in the kernel half only what the master maps at the same address.
"""

from __future__ import annotations

import bisect
from collections import Counter

from ..arch import LEAF, TABLE
from .lifetimes import live_shmem
from ..errors import MmemuError
from ..units import PAGE_SHIFT


class InvariantError(MmemuError):
    """An invariant of the emulated kernel does not hold (a bug in mmemu)."""


class InvariantsMixin:

    def check_invariants(self) -> None:
        """Raise :class:`InvariantError` naming the first invariant that does not hold."""
        self.frames.check()
        self._check_tables()
        self._check_mapped_frames()
        self._check_vmap_areas()
        self._check_pkmap()
        self._check_kernel_halves()
        self._check_user_copies()
        self._check_percpu()

    def _check_percpu(self) -> None:
        """The reserved region's allocations lie inside it without overlapping, every
        loaded module's per-cpu data is one of them, and every unit is memblock memory."""
        pc = self.pcpu
        if pc is None:
            return
        lo, hi = pc.info.static_size, pc.info.static_size + pc.info.reserved_size
        end = lo
        for off, size in sorted(pc.areas.items()):
            if off < end or off + size > hi:
                raise InvariantError(f"per-cpu reserved allocation {off:#x}+{size:#x} overlaps another or "
                                     f"leaves the reserved region [{lo:#x}, {hi:#x})")
            end = off + size
        for mod in self.modules:
            if mod.percpu is not None and (mod.percpu - pc.static_start) & pc.mask not in pc.areas:
                raise InvariantError(f"module {mod.name}: its per-cpu data {mod.percpu:#x} is not allocated")
        for cpu in range(pc.nr_cpus):
            pfn = (pc.base_phys + pc.unit_offset(cpu)) >> PAGE_SHIFT
            if self.frames.page(pfn).state != "reserved":
                raise InvariantError(f"cpu {cpu}'s per-cpu unit at pfn {pfn:#x} is not memblock memory")

    # -- helpers ------------------------------------------------------------------------

    def _all_roots(self) -> list[int]:
        return [self.pgd] + [p.pgd for p in self.pgd_list]

    def _identity_ranges(self) -> list[tuple[int, int]]:
        """Mappings of memory regardless of what it is used for: the direct map and the
        kernel image's own mapping (which covers whole large pages around the image)."""
        ranges = [(self.PAGE_OFFSET, self.high_memory)]
        lo, hi, _ = self._image_span
        if not self.PAGE_OFFSET <= lo < self.high_memory:
            big = max(self.direct_map_page_sizes)
            ranges.append((lo & ~(big - 1), (hi + big - 1) & ~(big - 1)))
        return ranges

    def _stale_allowed(self) -> set[int]:
        """Addresses whose entries may point at freed frames, as in the kernel."""
        allowed = {self.PKMAP_ADDR(i) for i, c in enumerate(self.pkmap_count) if c == 1}
        if self.kmap_scheme == "km_type" and self.FIX_KMAP_BEGIN is not None:
            for idx in range(self.FIX_KMAP_BEGIN, self.FIX_KMAP_END + 1):
                allowed.add(self.fix_to_virt(idx))
        return allowed

    def _block_end(self, info) -> int:
        """The pfn after the allocated block or memblock-reserved range *info* is part of."""
        if info.state == "allocated":
            return info.head + (1 << info.order)
        i = bisect.bisect_right(self.frames.reserved, (info.head, float("inf"), "")) - 1
        return self.frames.reserved[i][1]

    # -- the checks ---------------------------------------------------------------------

    def _check_tables(self) -> None:
        pt = self.pgtable
        seen: Counter[int] = Counter()
        last = len(self.paging.levels) - 1
        master_top = pt.entries(self.pgd, 0)
        master_copy = pt.user_copies.get(self.pgd, (None,))[0]
        copy_top = pt.entries(master_copy, 0) if master_copy is not None else None
        for root in self._all_roots():
            seen[root] += 1
            top = pt.entries(root, 0)
            for i, raw in enumerate(top):
                kind, child, _ = pt.decode(0, raw)
                if kind != TABLE:
                    continue
                if root != self.pgd and i >= self.KERNEL_PGD_BOUNDARY:
                    self._count_kernel_copy(raw, master_top[i], seen, last)
                    continue
                self._count_subtree(child, 1, seen, last)
        # user copies (PTI): their user half is their directory's (counted there), a process
        # copy's kernel half the master copy's, and the master copy's entries equal to the
        # master's are the master's
        for root, (copy, limit, _keep) in pt.user_copies.items():
            seen[copy] += 1
            for i, raw in enumerate(pt.entries(copy, 0)):
                kind, child, _ = pt.decode(0, raw)
                if kind != TABLE or i < limit or raw == master_top[i]:
                    continue
                if root != self.pgd and i >= self.KERNEL_PGD_BOUNDARY:
                    self._count_kernel_copy(raw, copy_top[i], seen, last)
                    continue
                self._count_subtree(child, 1, seen, last)
        known = set(pt.tables)
        reached = set(seen)
        if known - reached:
            raise InvariantError(f"page tables no directory reaches: {sorted(hex(t) for t in known - reached)[:8]}")
        if reached - known:
            raise InvariantError(f"tables in use the engine does not know: {sorted(hex(t) for t in reached - known)[:8]}")
        shared = [hex(t) for t, n in seen.items() if n > 1 and t not in self.shared_tables]
        if shared:
            raise InvariantError(f"page tables reached twice: {shared[:8]}")
        for pfn, rec in self.frames.allocated.items():
            if rec.owner.startswith("page table") and (pfn << PAGE_SHIFT) not in known:
                raise InvariantError(f"frame {pfn:#x} is owned as a page table but no table lives there")

    def _count_kernel_copy(self, raw: int, master_raw: int, seen: Counter, last: int) -> None:
        """A directory's kernel top-level entry *raw* beside the master's *master_raw*: the
        same entry is the master's subtree (counted under the master); with BootPlan
        ``kernel_copy_level`` 1 the table below is the directory's own, and its entries equal
        to the master table's are the master's subtrees."""
        pt = self.pgtable
        if raw == master_raw:
            return
        kind, child, _ = pt.decode(0, raw)
        if kind != TABLE:
            return
        mkind, master, _ = pt.decode(0, master_raw)
        if not self.plan.kernel_copy_level or mkind != TABLE or child not in pt.tables:
            self._count_subtree(child, 1, seen, last)
            return
        seen[child] += 1
        theirs = pt.entries(master, 1)
        for j, entry in enumerate(pt.entries(child, 1)):
            if entry and entry != theirs[j]:
                kind, below, _ = pt.decode(1, entry)
                if kind == TABLE:
                    self._count_subtree(below, 2, seen, last)

    def _count_subtree(self, table: int, li: int, seen: Counter, last: int) -> None:
        seen[table] += 1
        if li == last or (seen[table] > 1 and table in self.shared_tables):
            return  # a table several entries point at by design (ESPfix's clones): its subtree once
        decode = self.pgtable.decode
        for raw in self.pgtable.entries(table, li):
            if raw:
                kind, child, _ = decode(li, raw)
                if kind == TABLE:
                    self._count_subtree(child, li + 1, seen, last)

    def _check_mapped_frames(self) -> None:
        identity = self._identity_ranges()
        stale = self._stale_allowed()
        user_refs: Counter[int] = Counter()
        # the leaves outside the identity ranges only: the direct map's (262,144 of them for a
        # GiB in 4 KiB pages) are not even visited
        # ... nor the clones of mappings made elsewhere (ESPfix's 65,536 views of one page)
        gaps, pos = [], 0
        for s, e in sorted(identity + self.alias_ranges):
            if s > pos:
                gaps.append((pos, s))
            pos = max(pos, e)
        gaps.append((pos, None))
        for root in self._all_roots():
            user = root != self.pgd
            leaves = (leaf for s, e in gaps for leaf in self.pgtable.iter_leaves(root, s, e)) if not user else \
                self.pgtable.iter_leaves(root, 0, self.task_size)  # the kernel part: checked through the master
            for va, size, phys, raw, li in leaves:
                if any(s <= va < e for s, e in identity):
                    continue
                pfn, end_pfn = phys >> PAGE_SHIFT, (phys + size) >> PAGE_SHIFT
                while pfn < end_pfn:
                    if not self.frames.is_ram(pfn):
                        pfn += 1
                        continue  # MMIO (APIC, ...)
                    info = self.frames.page(pfn)
                    state = info.state
                    if state in ("free", "hole") and va not in stale:
                        raise InvariantError(f"{va:#x} maps pfn {pfn:#x}, which is {state}")
                    if not user and state in ("allocated", "reserved"):  # the rest of its block at once
                        pfn = max(pfn + 1, self._block_end(info))
                        continue
                    if user and pfn != self.zero_pfn:
                        user_refs[pfn] += 1
                    elif user and self.codec.pte_write(raw):
                        raise InvariantError(f"{va:#x} maps the zero page writable")
                    pfn += 1
        if any(self.mem.read(self.zero_pfn << PAGE_SHIFT, 4096)):
            raise InvariantError("the zero page is not zero any more")
        # PROT_NONE ptes: not present for the CPU (the walk above skips them), but they
        # map their page as much as any other (pte_present())
        last = len(self.paging.levels) - 1
        for proc in self.pgd_list:
            for va, raw in self.user_ptes(proc, 0, self.task_size):
                if self.pgtable.decode(last, raw)[0] == LEAF:
                    continue
                pfn = self.pte_pfn(raw)
                state = self.frames.page(pfn).state
                if state in ("free", "hole"):
                    raise InvariantError(f"process {proc.pid}: PROT_NONE pte at {va:#x} maps pfn {pfn:#x}, "
                                         f"which is {state}")
                if pfn != self.zero_pfn:
                    user_refs[pfn] += 1
        # the shmem objects' own references (their page cache: mmemu.kernel.lifetimes)
        for obj in live_shmem(self):
            for pfn in obj.pages.values():
                user_refs[pfn] += 1
        for pfn, n in user_refs.items():
            rec = self.frames.allocated.get(pfn)
            if rec is None or rec.refcount != n:
                raise InvariantError(f"user page {pfn:#x} is mapped {n} times but has refcount "
                                     f"{rec.refcount if rec else 'none (not a block head)'}")
        # a shmem page belongs to a shmem object some VMA still maps (release_shmem frees the rest)
        held = {pfn for obj in live_shmem(self) for pfn in obj.pages.values()}
        for pfn, rec in self.frames.allocated.items():
            if rec.owner.startswith("shmem (") and pfn not in held:
                raise InvariantError(f"shmem page {pfn:#x} ({rec.owner}) belongs to no object a VMA maps: leaked")
        # and the other way round: an anonymous page that no pte maps any more has leaked
        for pfn, rec in self.frames.allocated.items():
            if rec.owner.startswith("anon (") and pfn not in user_refs:
                raise InvariantError(f"anonymous page {pfn:#x} ({rec.owner}, refcount {rec.refcount}) "
                                     "is mapped by no process: leaked")

    def _check_vmap_areas(self) -> None:
        # the free space and the areas tile the whole vmalloc space, without overlap
        pieces = sorted([(a.va_start, a.va_end) for a in self.vmap_areas] + [tuple(g) for g in self.vmap_free])
        covered: list[tuple[int, int]] = []
        for s1, e1 in pieces:
            if covered and s1 < covered[-1][1]:
                raise InvariantError(f"vmalloc space: {s1:#x}-{e1:#x} overlaps what ends at {covered[-1][1]:#x}")
            if covered and s1 == covered[-1][1]:
                covered[-1] = (covered[-1][0], e1)
            else:
                covered.append((s1, e1))
        if tuple(covered) != self.vmap_spaces:
            raise InvariantError(f"the vmap areas and the free space cover {[(hex(a), hex(b)) for a, b in covered]}, "
                                 f"not the vmalloc/module spaces {[(hex(a), hex(b)) for a, b in self.vmap_spaces]}")
        prev = None
        for a in self.vmap_areas:
            if not any(lo <= a.va_start < a.va_end <= hi for lo, hi in self.vmap_spaces):
                raise InvariantError(f"vmap area {a.va_start:#x}-{a.va_end:#x} is outside the vmalloc space")
            if prev is not None and a.va_start < prev.va_end:
                raise InvariantError(f"vmap areas {prev.va_start:#x}-{prev.va_end:#x} and "
                                     f"{a.va_start:#x}-{a.va_end:#x} overlap")
            prev = a
            if a.vm is None:
                for va in range(a.va_start, a.va_end, 4096):
                    if self.walk(va).mapped:
                        raise InvariantError(f"{va:#x} in a freed vmap area is still mapped")
                continue
            vm = a.vm
            usable = vm.get_vm_area_size()
            if usable != a.va_end - a.va_start - (vm.size - usable):
                raise InvariantError(f"vmap area {a.va_start:#x}: sizes disagree")
            if usable != vm.size and self.walk(a.va_start + usable).mapped:
                raise InvariantError(f"the guard page of the vmap area at {a.va_start:#x} is mapped")
            if vm.pages:
                for i, pfn in enumerate(vm.pages):
                    w = self.walk(vm.addr + i * 4096)
                    if not w.mapped or w.phys >> PAGE_SHIFT != pfn:
                        raise InvariantError(f"vmap area {vm.addr:#x} page {i} is not mapped to pfn {pfn:#x}")

    def _check_pkmap(self) -> None:
        for i, count in enumerate(self.pkmap_count):
            va = self.PKMAP_ADDR(i)
            pte = self.pgtable.read_pte(self.pgd, va)
            if count == 0 and pte:
                raise InvariantError(f"pkmap slot {i} is free but its pte is {pte:#x}")
            if count >= 1:
                if not self.pte_present(pte):
                    raise InvariantError(f"pkmap slot {i} has count {count} but no mapping")
                pfn = self.pte_pfn(pte)
                if self.page_address_map.get(pfn) != va:
                    raise InvariantError(f"pkmap slot {i} maps pfn {pfn:#x} but page_address says "
                                         f"{self.page_address_map.get(pfn)}")
        for pfn, va in self.page_address_map.items():
            if not self.PKMAP_BASE <= va < self.PKMAP_ADDR(self.LAST_PKMAP) or self.pkmap_count[self.PKMAP_NR(va)] < 1:
                raise InvariantError(f"page_address of pfn {pfn:#x} is {va:#x}, not a live pkmap slot")

    def _check_kernel_halves(self) -> None:
        if not self.plan.copies_kernel_pgd:
            return  # the kernel half has a root of its own
        pt = self.pgtable
        master = self.kernel_part(self.pgd)
        for proc in self.pgd_list:
            for (src, li, first, _), (dst, _li, _f, base) in zip(master, self.kernel_part(proc.pgd)):
                if src is None:
                    continue
                if dst is None or (li and dst == src):
                    raise InvariantError(f"process {proc.pid}: no {self.paging.levels[li].name} table of its own "
                                         f"for the kernel at {base:#x} (pgd_prepopulate_pmd)")
                theirs, mine = pt.entries(src, li), pt.entries(dst, li)
                for i in range(first, len(theirs)):
                    if mine[i] == theirs[i]:
                        continue
                    if not mine[i] and not self._sync_kernel_mappings_now:
                        continue  # vmalloc_fault will copy it on first use
                    raise InvariantError(f"process {proc.pid}: kernel {self.paging.levels[li].name} entry {i} "
                                         f"(table {dst:#x}) is {mine[i]:#x}, the master has {theirs[i]:#x}")

    def _check_user_copies(self) -> None:
        pt = self.pgtable
        copies = pt.user_copies
        roots = self._all_roots()
        want = set(roots) if self.plan.user_pgd_entries else set()
        if set(copies) != want:
            raise InvariantError(f"user copies of {sorted(hex(r) for r in set(copies) ^ want)[:8]}: every page "
                                 f"directory has one with PTI, none without")
        if not copies:
            return
        master_copy = copies[self.pgd][0]
        master_copy_top = pt.entries(master_copy, 0)
        for root, (copy, limit, keep) in copies.items():
            if pt.tables.get(copy) is None or pt.tables[copy].level_index != 0:
                raise InvariantError(f"the user copy {copy:#x} of {root:#x} is not a known page directory")
            mine, theirs = pt.entries(root, 0), pt.entries(copy, 0)
            for i in range(limit):
                if (theirs[i] == 0) != (mine[i] == 0) or (theirs[i] and keep(theirs[i]) != mine[i]):
                    raise InvariantError(f"pgd {root:#x} entry {i} is {mine[i]:#x} but its user copy has "
                                         f"{theirs[i]:#x} (pti_set_user_pgtbl)")
            if root != self.pgd:
                for i in range(limit, self.KERNEL_PGD_BOUNDARY):
                    if theirs[i]:
                        raise InvariantError(f"pgd {root:#x}: entry {i} of its user copy is {theirs[i]:#x}, between "
                                             f"the user half and the kernel's")
                for (src, li, first, base), (dst, _li, _f, _b) in zip(self.kernel_part(master_copy),
                                                                       self.kernel_part(copy)):
                    if (src is None) != (dst is None) or (
                            src is not None and pt.entries(src, li)[first:] != pt.entries(dst, li)[first:]):
                        raise InvariantError(f"pgd {root:#x}: the kernel part at {base:#x} of its user copy is not "
                                             f"the master copy's (clone_pgd_range, pgd_prepopulate_user_pmd)")
        # what the master copy maps of the kernel half, the master maps alike; a top-level
        # entry equal to the master's points at the same subtree, so it translates alike
        # without walking it (pti_init copies the cpu_entry_area's and ESPfix's entries
        # whole, and ESPfix's clones alone are tens of thousands of leaves)
        start = self.paging.kernel_half or self.task_size
        master_top = pt.entries(self.pgd, 0)
        span = pt.levels[0].span
        for i, top in enumerate(master_copy_top):
            if not top or top == master_top[i]:
                continue
            lo = pt.mode.va_of(i * span, True)
            for va, size, phys, raw, _li in pt.iter_leaves(master_copy, max(lo, start), lo + span):
                walk = pt.walk(self.pgd, va)
                if not walk.mapped or walk.phys != phys:
                    raise InvariantError(f"the user copy of {self.pgd_symbol} maps {va:#x} to {phys:#x}, the "
                                         f"kernel {'to ' + hex(walk.phys) if walk.mapped else 'not at all'}")
