"""A toy paging mode for the core's tests, and a small machine to run it on.

The core never imports an arch plugin; its own tests should not either. The modes here
are shaped like x86 (its flag bits, its 8-byte entries, its reserved-bit rules) but small
enough to reason about by hand:

The codec is the x86 one (mmemu_x86.codec) with the toy's own masks.

``TOY``    two levels of 9 index bits: a "pmd" of 512 entries, each 2 MiB, which may map a
           2 MiB page (PS, bit 7), over a "pte" of 512 4 KiB pages. 30-bit virtual space
           (1 GiB), MAXPHYADDR 40, NX in bit 63.
``TOY_NONX`` the same without NX (bit 63 is then just another bit; no I/D in error codes).
``TOY3``   a PAE-like 3-level mode: a 4-entry top table ("pgd", shift 30) whose RW/US/NX
           bits take no part in access control (``access_bits=False``), then TOY's levels.
``TOY48``  a 4-level, 48-bit canonical mode (x86_64's shape: pgd 39, pud 30 with 1 GiB
           pages, pmd 21 with 2 MiB pages, pte 12; PS reserved in the pgd).

:class:`ToyMachine` builds a :class:`~mmemu.pagetable.PageTables` over a small
:class:`~mmemu.physmem.PhysMem` whose table frames come from a real
:class:`~mmemu.buddy.FrameAllocator`; :meth:`ToyMachine.starve` makes that allocator run
dry after a given number of tables (the rollback tests), :meth:`ToyMachine.snapshot`
captures everything a failed operation must leave as it was.
"""

from __future__ import annotations

from mmemu_x86.codec import X86Bits, X86Codec
from mmemu_x86.pgtable_types import bits, entry_format, low_flags, x86_attrs

from mmemu.arch import SIGN_EXTENDED, EntryFormat, Level, PagingMode
from mmemu.buddy import FrameAllocator
from mmemu.errors import OutOfMemory
from mmemu.layout import ZoneSpan
from mmemu.pagetable import PageTables
from mmemu.physmem import PhysMem

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30
PAGE = 4 * KiB

# x86 flag bits, spelled out here so that the tests do not take them from the code under test
P, RW, US, PWT, PCD, A, D, PS, G = (1 << n for n in (0, 1, 2, 3, 4, 5, 6, 7, 8))
PAT_PTE = PS  # bit 7 in a PTE is PAT, not PS
PAT_LARGE = 1 << 12
NX = 1 << 63
KERNPG_TABLE = P | RW | A | D  # _KERNPG_TABLE
PAGE_TABLE = KERNPG_TABLE | US  # _PAGE_TABLE
PAGE_KERNEL = P | RW | A | D | G | NX
PAGE_KERNEL_EXEC = P | RW | A | D | G
PAGE_KERNEL_RO = PAGE_KERNEL & ~RW
PAGE_SHARED = P | RW | US | A | NX
PAGE_READONLY = P | US | A | NX

PA_BITS = 40
RSVD_HIGH = bits(PA_BITS, 51)  # between MAXPHYADDR and the software-available bits
ADDR = bits(12, PA_BITS - 1)

FLAGS = (("PRESENT", P), ("RW", RW), ("USER", US), ("PWT", PWT), ("PCD", PCD), ("ACCESSED", A),
         ("DIRTY", D), ("PSE", PS), ("GLOBAL", G), ("NX", NX))

_HIGH = [("nx", 1), ("avl_high", 11), ("reserved_high", 12)]
TABLE = EntryFormat(entry_format(64, _HIGH + [("address", 28, 12)] + low_flags("pse")), x86_attrs("pse", True))
LARGE_2M = EntryFormat(entry_format(64, _HIGH + [("address", 19, 21), ("reserved", 8), ("pat", 1)] + low_flags("pse")),
                       x86_attrs("pse", True, pat_large=True))
LARGE_1G = EntryFormat(entry_format(64, _HIGH + [("address", 10, 30), ("reserved", 17), ("pat", 1)] + low_flags("pse")),
                       x86_attrs("pse", True, pat_large=True))
PTE = EntryFormat(entry_format(64, _HIGH + [("address", 28, 12)] + low_flags("pat")), x86_attrs("pat", True))


def pmd_level(name: str = "pmd") -> Level:
    return Level(name, shift=21, bits=9, entry_size=8, table=TABLE, leaf=LARGE_2M)


PMD_BITS = X86Bits(addr_mask=ADDR, large_addr_mask=bits(21, PA_BITS - 1), reserved=RSVD_HIGH,
                   large_reserved=RSVD_HIGH | bits(13, 20))
PTE_LEVEL = Level("pte", shift=12, bits=9, entry_size=8, leaf=PTE)
PTE_BITS = X86Bits(addr_mask=ADDR, reserved=RSVD_HIGH)


def _mode(name: str, levels: tuple[Level, ...], level_bits: tuple[X86Bits, ...], va_bits: int, nx: int = NX,
          canonical: bool = False) -> PagingMode:
    codec = X86Codec(level_bits, nx, FLAGS if nx else FLAGS[:-1])
    return PagingMode(name=name, levels=levels, va_bits=va_bits, pa_bits=PA_BITS, codec=codec,
                      form=SIGN_EXTENDED if canonical else "flat")


TOY = _mode("toy", (pmd_level(), PTE_LEVEL), (PMD_BITS, PTE_BITS), va_bits=30)
TOY_NONX = _mode("toy-nonx", (pmd_level(), PTE_LEVEL), (PMD_BITS, PTE_BITS), va_bits=30, nx=0)

TOP3 = Level("pgd", shift=30, bits=2, entry_size=8, table=TABLE, folds=("p4d", "pud"))
TOP3_BITS = X86Bits(addr_mask=ADDR, reserved=RSVD_HIGH, access_bits=False, table_kernel=P, table_user=P)
TOY3 = _mode("toy3", (TOP3, pmd_level(), PTE_LEVEL), (TOP3_BITS, PMD_BITS, PTE_BITS), va_bits=32)

PGD48 = Level("pgd", shift=39, bits=9, entry_size=8, table=TABLE, folds=("p4d",))
PGD48_BITS = X86Bits(addr_mask=ADDR, reserved=RSVD_HIGH | PS)
PUD48 = Level("pud", shift=30, bits=9, entry_size=8, table=TABLE, leaf=LARGE_1G)
PUD48_BITS = X86Bits(addr_mask=ADDR, large_addr_mask=bits(30, PA_BITS - 1), reserved=RSVD_HIGH,
                     large_reserved=RSVD_HIGH | bits(13, 29))
TOY48 = _mode("toy48", (PGD48, PUD48, pmd_level(), PTE_LEVEL), (PGD48_BITS, PUD48_BITS, PMD_BITS, PTE_BITS),
              va_bits=48, canonical=True)


class ToyMachine:
    """*ram_pages* frames of RAM in one Normal zone (pfn 0 reserved, as the BIOS page is),
    a frame allocator that gives page-table frames (zeroed), and page tables with one root.
    """

    def __init__(self, mode: PagingMode = TOY, ram_pages: int = 1024):
        self.mode = mode
        self.mem = PhysMem(ram_pages * PAGE)
        self.frames = FrameAllocator([ZoneSpan("Normal", 0, ram_pages)])
        self.frames.memblock_init([(0, ram_pages)], [(0, 1, "BIOS data area")])
        self.table_allocs = 0  # alloc_table calls that succeeded
        self.table_frees: list[int] = []
        self._hog: list[int] = []
        self.pt = PageTables(mode, self.mem, self._alloc_table, self._free_table)
        self.root = self.pt.new_root("swapper_pg_dir")

    def _alloc_table(self, level: Level, user: bool) -> int:
        page = self.frames.alloc_pages(0, "Normal", owner=f"page table ({level.name})")
        self.mem.zero(page.phys, PAGE)
        self.table_allocs += 1
        return page.phys

    def _free_table(self, phys: int) -> None:
        self.table_frees.append(phys)
        self.frames.free_pages(phys >> 12)

    # -- making the allocator run dry ---------------------------------------------------

    def starve(self, tables_left: int) -> None:
        """Allocate every free frame but *tables_left*, so that the allocator raises
        OutOfMemory on the (tables_left + 1)-th page table."""
        fr = self.frames
        for order in range(10, -1, -1):
            while fr.nr_free_pages() - (1 << order) >= tables_left:
                try:
                    self._hog.append(fr.alloc_pages(order, "Normal", owner="hog").pfn)
                except OutOfMemory:
                    break
        assert fr.nr_free_pages() == tables_left

    def feed(self) -> None:
        """Give back what :meth:`starve` took."""
        while self._hog:
            self.frames.free_pages(self._hog.pop())

    # -- state captures -----------------------------------------------------------------

    def allocator_state(self):
        fr = self.frames
        zones = tuple((z.name, z.nr_free, tuple(tuple(fa) for fa in z.free_area)) for z in fr.zones.values())
        allocated = tuple(sorted((p.pfn, p.order, p.zone, p.refcount, p.owner) for p in fr.allocated.values()))
        return zones, allocated

    def tables_state(self):
        return {phys: (info.level_index, info.owner, info.writers.tobytes())
                for phys, info in self.pt.tables.items()}

    def snapshot(self):
        """Everything a failed operation must leave exactly as it was."""
        return bytes(self.mem.read(0, self.mem.size)), self.tables_state(), self.allocator_state()

    # -- reading entries by hand --------------------------------------------------------

    def u64(self, pa: int) -> int:
        return int.from_bytes(self.mem.read(pa, 8), "little")

    def put(self, pa: int, value: int) -> None:
        self.mem.write(pa, value.to_bytes(8, "little"))

    def entry_addr(self, va: int, depth: int) -> int:
        """Physical address of the entry for *va* at level *depth*, followed by hand
        (address bits 12..39 of each table entry)."""
        table = self.root
        for li, lv in enumerate(self.mode.levels):
            idx = (va >> lv.shift) & ((1 << lv.bits) - 1)
            if li == depth:
                return table + 8 * idx
            table = self.u64(table + 8 * idx) & ADDR
        raise IndexError(depth)
