"""HighMem: persistent kmaps (mm/highmem.c) and the per-CPU atomic/local kmaps in the
fixmap (arch/x86/mm/highmem_32.c, mm/highmem.c kmap_local since 5.11).

Persistent kmaps: LAST_PKMAP slots from PKMAP_BASE, all under the one page table
``pkmap_page_table``. ``pkmap_count[i]`` is 0 for a free slot, 1 for a slot unmapped by
kunmap but whose entry and TLB translations are still there, n+1 for n users.
``map_new_virtual`` moves ``last_pkmap_nr`` forward; when it wraps to 0,
``flush_all_zero_pkmaps`` clears every slot at 1 and flushes the TLB of the whole area.
When every slot is in use the kernel sleeps until a kunmap: the emulator says so and
changes nothing.

Atomic kmaps, by era: classic named slots (``kmap_atomic(page, KM_USER0)``,
KM_TYPE_NR per CPU, 2.6.12–2.6.36), a per-CPU stack of KM_TYPE_NR slots
(``kmap_atomic(page)``, 2.6.37–5.10), and ``kmap_local_page`` with a per-task stack of
KM_MAX_IDX slots (5.11+). Lowmem pages never take a slot: their address is the direct one.
On machines without HighMem (x86_64) all of this is ``page_address``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..buddy import Page
from ..errors import KernelWarning, MmemuError, WouldBlock
from ..units import PAGE_SHIFT
from .base import need_int, operation


def _pfn(page: "Page | int") -> int:
    return page.pfn if isinstance(page, Page) else need_int(page, "a page (a Page or a pfn)")


@dataclass(frozen=True)
class AtomicSlot:
    """One atomic kmap in use: the slot index on its CPU, the address, the page."""

    cpu: int
    idx: int
    vaddr: int
    pfn: int
    type: str  # the km_type name in the classic era, "" after


class HighmemMixin:
    """``kmap``/``kunmap``, ``kmap_atomic``/``kunmap_atomic``, ``kmap_local_page``/
    ``kunmap_local``, ``pkmap_count``, ``last_pkmap_nr``."""

    def _init_highmem(self) -> None:
        syms, cfg = self.layout.symbols, self.layout.config
        self.has_highmem = "HighMem" in self.frames.zones and "PKMAP_BASE" in syms
        self.LAST_PKMAP = syms.get("LAST_PKMAP", 0) if self.has_highmem else 0
        self.PKMAP_BASE = syms.get("PKMAP_BASE", 0)
        self.pkmap_count = [0] * self.LAST_PKMAP
        self.last_pkmap_nr = 0
        #: page_address_htable: pfn -> persistent kmap address (set_page_address)
        self.page_address_map: dict[int, int] = {}
        self.kmap_scheme = self.era.kmap_atomic  # "km_type", "stack" or "kmap_local"
        self.km_types = tuple(cfg.get("km_types") or ())
        self.KM_TYPE_NR = cfg.get("KM_TYPE_NR") or len(self.km_types) or 0
        self.KM_MAX_IDX = cfg.get("KM_MAX_IDX") or 16
        #: per CPU: the atomic/local slots in use, innermost last
        self.kmap_atomic_stack: list[list[AtomicSlot]] = [[] for _ in range(self.spec.cpus)]
        fix = dict(self.layout.fixmap)
        self.FIX_KMAP_BEGIN = fix.get("FIX_KMAP_BEGIN")
        self.FIX_KMAP_END = fix.get("FIX_KMAP_END")

    # -- persistent kmaps -------------------------------------------------------------

    def PKMAP_ADDR(self, nr: int) -> int:
        return self.PKMAP_BASE + (nr << PAGE_SHIFT)

    def PKMAP_NR(self, vaddr: int) -> int:
        return (vaddr - self.PKMAP_BASE) >> PAGE_SHIFT

    @operation
    def kmap(self, page: "Page | int") -> int:
        """``kmap(page)``: a lowmem page's direct address; a HighMem page gets (or shares)
        a pkmap slot."""
        pfn = _pfn(page)
        if not self.has_highmem or not self.PageHighMem(pfn):
            return self.lowmem_page_address(pfn)
        return self.kmap_high(pfn)

    def kmap_high(self, pfn: int) -> int:
        vaddr = self.page_address_map.get(pfn)
        if vaddr is None:
            vaddr = self.map_new_virtual(pfn)
        nr = self.PKMAP_NR(vaddr)
        self.journal.setitem(self.pkmap_count, nr, self.pkmap_count[nr] + 1)
        return vaddr

    def map_new_virtual(self, pfn: int) -> int:
        """Find a free slot, flushing the unused ones when the counter wraps."""
        if all(c >= 2 for c in self.pkmap_count):
            raise WouldBlock(f"kmap: all {self.LAST_PKMAP} pkmap slots are in use; the caller would sleep in "
                             "map_new_virtual() until a kunmap() frees one")
        count = self.LAST_PKMAP
        while True:
            self.journal.set(self, "last_pkmap_nr", (self.last_pkmap_nr + 1) & (self.LAST_PKMAP - 1))
            if not self.last_pkmap_nr:
                self.flush_all_zero_pkmaps()
                count = self.LAST_PKMAP
            if not self.pkmap_count[self.last_pkmap_nr]:
                break
            count -= 1
            if not count:  # cannot happen after the check above; the kernel would sleep here
                raise WouldBlock("kmap: no free pkmap slot")
        nr = self.last_pkmap_nr
        vaddr = self.PKMAP_ADDR(nr)
        prot = self.pgprot["PAGE_KERNEL"]  # kmap_prot
        self.pgtable.set_pte(self.pgd, vaddr, self.codec.pfn_pte(pfn, prot), writer="kmap_high")
        self.journal.setitem(self.pkmap_count, nr, 1)
        self.journal.setitem(self.page_address_map, pfn, vaddr)
        return vaddr

    @operation
    def flush_all_zero_pkmaps(self) -> None:
        """Clear every slot that kunmap left at 1, then flush the TLB over the pkmap area."""
        need_flush = False
        for i, count in enumerate(self.pkmap_count):
            if count != 1:
                continue
            self.journal.setitem(self.pkmap_count, i, 0)
            vaddr = self.PKMAP_ADDR(i)
            old = self.pgtable.set_pte(self.pgd, vaddr, 0, writer="flush_all_zero_pkmaps")
            if self.codec.pte_pfn(old) in self.page_address_map:
                self.journal.delitem(self.page_address_map, self.codec.pte_pfn(old))
            need_flush = True
        if need_flush:
            self.flush_tlb_kernel_range(self.PKMAP_ADDR(0), self.PKMAP_ADDR(self.LAST_PKMAP))

    @operation
    def kunmap(self, page: "Page | int") -> None:
        """``kunmap(page)``: drop a reference to a HighMem page's pkmap slot (lowmem: nothing)."""
        pfn = _pfn(page)
        if not self.has_highmem or not self.PageHighMem(pfn):
            return
        vaddr = self.page_address_map.get(pfn)
        if vaddr is None:
            raise self.BUG("mm/highmem.c kunmap_high()", f"BUG_ON(!vaddr): pfn {pfn:#x} is not kmapped")
        nr = self.PKMAP_NR(vaddr)
        if self.pkmap_count[nr] <= 1:
            raise self.BUG("mm/highmem.c kunmap_high()",
                           f"pkmap_count[{nr}] would drop to 0: pfn {pfn:#x} was already kunmapped")
        self.journal.setitem(self.pkmap_count, nr, self.pkmap_count[nr] - 1)  # at 1: free for the next flush

    # -- atomic and local kmaps ------------------------------------------------------------

    def _kmap_slot_vaddr(self, idx: int, cpu: int, per_cpu: int) -> int:
        if self.FIX_KMAP_BEGIN is None:
            raise MmemuError("this kernel's fixmap has no KMAP slots")
        return self.fix_to_virt(self.FIX_KMAP_BEGIN + idx + per_cpu * cpu)

    def _atomic_map(self, pfn: int, idx: int, cpu: int, per_cpu: int, writer: str, type_: str,
                    check_empty: bool) -> int:
        vaddr = self._kmap_slot_vaddr(idx, cpu, per_cpu)
        if check_empty and self.pgtable.read_pte(self.pgd, vaddr):
            raise self.BUG(f"arch/x86/mm/highmem_32.c {writer}()",
                           f"BUG_ON(!pte_none(*(kmap_pte-idx))): the slot at {vaddr:#x} is still in use")
        prot = self.pgprot["PAGE_KERNEL"]  # kmap_prot
        self.pgtable.set_pte(self.pgd, vaddr, self.codec.pfn_pte(pfn, prot), writer=writer)
        self.flush_tlb_one_kernel(vaddr)  # __flush_tlb_one(vaddr) / arch_kmap_local_post_map
        self.journal.append(self.kmap_atomic_stack[cpu], AtomicSlot(cpu, idx, vaddr, pfn, type_))
        return vaddr

    @operation
    def kmap_atomic(self, page: "Page | int", km_type: str | None = None, cpu: int = 0) -> int:
        """``kmap_atomic``: a HighMem page in one of this CPU's fixmap slots (lowmem pages:
        their direct address). By era, as without CONFIG_DEBUG_HIGHMEM:

        - before 2.6.37 the slot is named (``kmap_atomic(page, KM_USER0)``); from 2.6.22 a
          slot still mapped is a BUG (before, it was silently replaced);
        - 2.6.37 to 5.10, a per-CPU stack of KM_TYPE_NR slots; the depth is not checked
          (only CONFIG_DEBUG_HIGHMEM does): going past it maps the next CPU's (or the next
          fixmap entry's) slot, a BUG only if that one is in use;
        - since 5.11, kmap_local_page."""
        pfn = _pfn(page)
        if self.kmap_scheme == "kmap_local":
            return self.kmap_local_page(pfn, cpu=cpu, _writer="kmap_atomic")
        self._check_cpu(cpu)
        if not self.has_highmem or not self.PageHighMem(pfn):
            return self.lowmem_page_address(pfn)
        kv = self.spec.kernel
        clears = self.era.kmap_atomic_clears_pte
        if self.kmap_scheme == "km_type":
            if km_type is None:
                raise MmemuError(f"kmap_atomic on kernel {kv} takes a km_type: one of " + ", ".join(self.km_types))
            if km_type not in self.km_types:
                raise MmemuError(f"unknown km_type {km_type!r} on kernel {kv}; known: {', '.join(self.km_types)}")
            idx = self.km_types.index(km_type)
            stack = self.kmap_atomic_stack[cpu]
            if not clears:  # the slot is simply overwritten
                self.journal.setitem(self.kmap_atomic_stack, cpu, [s for s in stack if s.idx != idx])
            return self._atomic_map(pfn, idx, cpu, self.KM_TYPE_NR, "kmap_atomic", km_type, clears)
        idx = len(self.kmap_atomic_stack[cpu])  # kmap_atomic_idx_push()
        return self._atomic_map(pfn, idx, cpu, self.KM_TYPE_NR, "kmap_atomic", "", True)

    @operation
    def kunmap_atomic(self, vaddr: int, km_type: str | None = None, cpu: int = 0) -> None:
        """``kunmap_atomic``. 2.6.12-2.6.21 leave the entry in place (only
        CONFIG_DEBUG_HIGHMEM cleared it); later kernels clear it and flush
        (``kpte_clear_flush``). The stack kernels clear the innermost slot whatever
        address they are given (the order is checked only with CONFIG_DEBUG_HIGHMEM)."""
        if self.kmap_scheme == "kmap_local":
            return self.kunmap_local(vaddr, cpu=cpu, _writer="kunmap_atomic")
        self._check_cpu(cpu)
        if not self._in_kmap_fixmap(vaddr) and not self._in_stack(vaddr, cpu):
            return  # a lowmem page's address: nothing was mapped
        stack = self.kmap_atomic_stack[cpu]
        if self.kmap_scheme == "km_type":
            slot = next((s for s in stack if s.vaddr == vaddr), None)
            if km_type is not None and slot is not None and slot.type != km_type:
                slot = None
            if slot is None:
                return  # not the km_type's slot: nothing happens (no DEBUG_HIGHMEM)
            if not self.era.kmap_atomic_clears_pte:
                self.journal.remove(stack, slot)  # the pte stays: the next kmap_atomic of the slot replaces it
                return
            self.journal.remove(stack, slot)
            self.pgtable.set_pte(self.pgd, vaddr, 0, writer="kunmap_atomic")
            self.flush_tlb_one_kernel(vaddr)
            return
        if not stack:
            return
        top = self.journal.pop(stack)  # type = kmap_atomic_idx(): the innermost, whatever vaddr says
        self.pgtable.set_pte(self.pgd, top.vaddr, 0, writer="kunmap_atomic")
        self.flush_tlb_one_kernel(vaddr)

    def _in_stack(self, vaddr: int, cpu: int) -> bool:
        return any(s.vaddr == vaddr for s in self.kmap_atomic_stack[cpu])

    @operation
    def kmap_local_page(self, page: "Page | int", cpu: int = 0, _writer: str = "kmap_local_page") -> int:
        """``kmap_local_page`` (5.11+): the next of KM_MAX_IDX slots of the current task on
        this CPU; lowmem pages (and every page on x86_64) return their direct address."""
        pfn = _pfn(page)
        self._check_cpu(cpu)
        if not self.has_highmem or not self.PageHighMem(pfn):
            return self.lowmem_page_address(pfn)
        if self.kmap_scheme != "kmap_local":
            raise MmemuError(f"kmap_local_page does not exist before 5.11 (kernel {self.spec.kernel}): use kmap_atomic")
        idx = len(self.kmap_atomic_stack[cpu])
        # kmap_local_idx_push(): current->kmap_ctrl.idx += KM_INCR;
        # BUG_ON(current->kmap_ctrl.idx >= KM_MAX_IDX); return current->kmap_ctrl.idx - 1;
        # the check is on the count after the push, so the last slot is never used
        if idx + 1 >= self.KM_MAX_IDX:
            raise self.BUG("mm/highmem.c kmap_local_idx_push()",
                           f"BUG_ON(current->kmap_ctrl.idx >= KM_MAX_IDX): {idx} local kmaps already nested, "
                           f"the next would make {idx + 1} (KM_MAX_IDX {self.KM_MAX_IDX})")
        return self._atomic_map(pfn, idx, cpu, self.KM_MAX_IDX, _writer, "", True)

    @operation
    def kunmap_local(self, vaddr: int, cpu: int = 0, _writer: str = "kunmap_local") -> None:
        """``kunmap_local``: undo the innermost kmap_local_page (out of order: WARN)."""
        self._check_cpu(cpu)
        if not self._in_kmap_fixmap(vaddr):
            if vaddr < self.PAGE_OFFSET:
                raise KernelWarning(f"WARNING: CPU: {cpu} at mm/highmem.c kunmap_local_indexed: "
                                    f"{vaddr:#x} is not a kmap_local address (WARN_ON_ONCE(addr < PAGE_OFFSET))")
            return  # a lowmem page's address: nothing was mapped
        stack = self.kmap_atomic_stack[cpu]
        if not stack or stack[-1].vaddr != vaddr:
            expected = f"{stack[-1].vaddr:#x}" if stack else "none"
            raise KernelWarning(f"WARNING: CPU: {cpu} at mm/highmem.c kunmap_local_indexed: "
                                f"{vaddr:#x} is not the innermost local kmap (expected {expected})")
        self.journal.pop(stack)
        self.pgtable.set_pte(self.pgd, vaddr, 0, writer=_writer)
        self.flush_tlb_one_kernel(vaddr)  # arch_kmap_local_post_unmap

    def _in_kmap_fixmap(self, vaddr: int) -> bool:
        if self.FIX_KMAP_BEGIN is None:
            return False
        return self.fix_to_virt(self.FIX_KMAP_END) <= vaddr <= self.fix_to_virt(self.FIX_KMAP_BEGIN)

    def _check_cpu(self, cpu: int) -> None:
        if not 0 <= cpu < self.spec.cpus:
            raise MmemuError(f"CPU {cpu} does not exist (the machine has {self.spec.cpus})")
