"""The fixmap: compile-time virtual addresses counted down from FIXADDR_TOP, one per
``enum fixed_addresses`` index (include/asm-generic/fixmap.h; the enum is the arch's):
``__fix_to_virt(x) = FIXADDR_TOP - (x << PAGE_SHIFT)``. ``set_fixmap`` writes the entry
(``set_pte_vaddr``) and flushes that one translation (``__flush_tlb_one_kernel``).
The enum of each era and config comes from the arch's layout.
"""

from __future__ import annotations

from ..errors import ConfigError, MmemuError
from ..units import PAGE_SHIFT
from .base import operation


class FixmapMixin:
    """``fix_to_virt``, ``virt_to_fix``, ``set_fixmap``, ``clear_fixmap``."""

    def _init_fixmap(self) -> None:
        self.fixed_addresses: dict[str, int] = dict(self.layout.fixmap)
        # an era without a fixmap (RISC-V before 5.2) has no FIXADDR_TOP and no slots
        self.FIXADDR_TOP = self.layout.symbols.get("FIXADDR_TOP", 0)
        self.end_of_fixed_addresses = self.fixed_addresses.get("__end_of_fixed_addresses", 0)

    def fix_index(self, idx: "int | str") -> int:
        """An index of ``enum fixed_addresses``, by number or by name (``FIX_APIC_BASE``,
        ``FIX_KMAP_BEGIN``, ``FIX_BTMAP_BEGIN``...)."""
        if isinstance(idx, str):
            try:
                idx = self.fixed_addresses[idx]
            except KeyError:
                near = ", ".join(n for n in self.fixed_addresses if not n.startswith("__"))
                # a slot this arch and era do not have: the machine, not the kernel, says no
                raise ConfigError(f"no fixmap slot {idx!r} on {self.arch.name} {self.spec.kernel}; slots: {near}") \
                    from None
        if isinstance(idx, bool) or not isinstance(idx, int):
            raise MmemuError(f"a fixmap index is an int or a slot name, not {type(idx).__name__} ({idx!r})")
        if not 0 <= idx < self.end_of_fixed_addresses:
            raise self.BUG("include/asm-generic/fixmap.h __fix_to_virt()",
                           f"BUILD_BUG_ON(idx >= __end_of_fixed_addresses): index {idx} is out of range "
                           f"(0..{self.end_of_fixed_addresses - 1})")
        return idx

    def fix_to_virt(self, idx: "int | str") -> int:
        """``__fix_to_virt`` / ``fix_to_virt``."""
        return self.FIXADDR_TOP - (self.fix_index(idx) << PAGE_SHIFT)

    def virt_to_fix(self, vaddr: int) -> int:
        """``__virt_to_fix``."""
        if not self.FIXADDR_TOP - ((self.end_of_fixed_addresses - 1) << PAGE_SHIFT) <= vaddr <= self.FIXADDR_TOP + 0xFFF:
            raise MmemuError(f"virt_to_fix({vaddr:#x}): not a fixmap address")
        return (self.FIXADDR_TOP - (vaddr & ~0xFFF)) >> PAGE_SHIFT

    @operation
    def set_fixmap(self, idx: "int | str", phys: int, prot: str = "PAGE_KERNEL") -> None:
        """``set_fixmap(idx, phys)`` (``__set_fixmap`` with a named protection): map the
        page holding *phys* at the slot. Like the kernel's, it returns nothing: the slot's
        address is ``fix_to_virt(idx)``, or use :meth:`set_fixmap_offset`."""
        self.set_fixmap_offset(idx, phys, prot)

    @operation
    def set_fixmap_offset(self, idx: "int | str", phys: int, prot: str = "PAGE_KERNEL") -> int:
        """``set_fixmap_offset(idx, phys)`` (include/asm-generic/fixmap.h: ``__set_fixmap``
        then ``fix_to_virt(idx) + (phys & (PAGE_SIZE - 1))``): map the page holding *phys*
        at the slot and return the address of *phys* through it."""
        i = self.fix_index(idx)
        if prot not in self.pgprot:
            raise MmemuError(f"unknown protection {prot!r}; known: {', '.join(self.pgprot)}")
        if isinstance(phys, bool) or not isinstance(phys, int):
            raise MmemuError(f"set_fixmap: phys must be an int (a physical address), not {type(phys).__name__}")
        if not 0 <= phys < (1 << self.paging.pa_bits):
            raise MmemuError(f"set_fixmap({idx!r}, {phys:#x}): the physical address is outside the "
                             f"{self.paging.pa_bits}-bit physical address space")
        info = self.frames.page(phys >> PAGE_SHIFT)
        if info.state == "free":
            raise MmemuError(f"set_fixmap({idx!r}, {phys:#x}): pfn {phys >> PAGE_SHIFT:#x} is free RAM that the page "
                             "allocator owns (it could be handed out while mapped here); map MMIO, a reserved "
                             "frame, or a page you allocated")
        vaddr = self.FIXADDR_TOP - (i << PAGE_SHIFT)
        self.pgtable.set_pte(self.pgd, vaddr, self.codec.pfn_pte(phys >> PAGE_SHIFT, self.pgprot[prot]),
                             writer="__set_fixmap")
        self.flush_tlb_one_kernel(vaddr)
        return vaddr + (phys & 0xFFF)

    @operation
    def clear_fixmap(self, idx: "int | str") -> None:
        """``clear_fixmap(idx)``: the slot's entry cleared and its translation flushed."""
        i = self.fix_index(idx)
        vaddr = self.FIXADDR_TOP - (i << PAGE_SHIFT)
        self.pgtable.set_pte(self.pgd, vaddr, 0, writer="clear_fixmap")
        self.flush_tlb_one_kernel(vaddr)
