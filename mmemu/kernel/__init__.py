"""The emulated kernel: its memory, its page tables, and the services built on them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import AddressError

if TYPE_CHECKING:
    import pluggy

    from ..arch import Arch, PagingMode
    from ..buddy import FrameAllocator, Page
    from ..layout import Layout, MachineSpec
    from ..pagetable import PageTables, Walk
    from ..physmem import PhysMem


class Kernel:
    """A booted machine. Built by :func:`mmemu.kernel.boot.boot_kernel`."""

    spec: "MachineSpec"
    arch: "Arch"
    layout: "Layout"
    paging: "PagingMode"
    mem: "PhysMem"
    frames: "FrameAllocator"
    pgtable: "PageTables"
    pm: "pluggy.PluginManager"
    #: physical address of the master kernel page table (swapper_pg_dir / init_top_pgt)
    pgd: int
    #: the symbol naming it in this arch and era
    pgd_symbol: str
    #: page sizes the boot used for the direct mapping, largest first
    direct_map_page_sizes: tuple[int, ...]

    # -- the direct mapping (arch/x86/include/asm/page.h: __pa, __va) ----------------

    @property
    def PAGE_OFFSET(self) -> int:
        return self.layout["PAGE_OFFSET"]

    @property
    def high_memory(self) -> int:
        return self.layout["high_memory"]

    def virt_to_phys(self, va: int) -> int:
        """Physical address of a direct-mapped virtual address (``__pa``). Also accepts
        the kernel-image alias at __START_KERNEL_map on x86_64 (``__phys_addr``)."""
        page_offset = self.PAGE_OFFSET
        if page_offset <= va < self.high_memory:
            return va - page_offset
        start_map = self.layout.symbols.get("__START_KERNEL_map")
        if start_map is not None and start_map <= va < self.layout["_end"]:
            return va - start_map + self.layout.symbols.get("phys_base", 0)
        raise AddressError(f"__pa({va:#x}): not a direct-mapped kernel address "
                           f"({page_offset:#x}-{self.high_memory:#x})")

    def phys_to_virt(self, pa: int) -> int:
        """Direct-map virtual address of a low-memory physical address (``__va``)."""
        if not 0 <= pa < self.high_memory - self.PAGE_OFFSET:
            raise AddressError(f"__va({pa:#x}): physical address is not in the direct mapping "
                               f"(low memory ends at {self.high_memory - self.PAGE_OFFSET:#x})")
        return pa + self.PAGE_OFFSET

    # -- looking at the tables --------------------------------------------------------

    def walk(self, va: int, root: int | None = None) -> "Walk":
        """Walk *va* in the master kernel page table (or the table at *root*)."""
        return self.pgtable.walk(self.pgd if root is None else root, va)

    @property
    def symbols(self) -> dict[str, int]:
        syms = dict(self.layout.symbols)
        syms[self.pgd_symbol] = self.pgd_va
        return syms

    @property
    def pgd_va(self) -> int:
        """Virtual address of the master page table, where the kernel sees it."""
        return self._pgd_va

    def alloc_pages(self, order: int = 0, zone: str = "Normal", owner: str = "") -> "Page":
        return self.frames.alloc_pages(order, zone, owner)

    def close(self) -> None:
        """Release the host memory (the kernel object is unusable afterwards)."""
        cpu = getattr(self, "_cpu", None)
        if cpu is not None:
            cpu.close()
        self.mem.close()

    def __repr__(self) -> str:
        return (f"<Kernel {self.spec.arch} {self.spec.kernel} {self.paging.name} "
                f"RAM {self.spec.ram >> 20} MiB>")


# The kernel's own short names; reachable as getattr(kernel, "__pa") or kernel.__pa(...)
# from outside a class body (inside one, Python would mangle the double underscore).
setattr(Kernel, "__pa", Kernel.virt_to_phys)
setattr(Kernel, "__va", Kernel.phys_to_virt)
