"""The contract an arch plugin fills in.

Like Linux's ``pgtable-2level.h`` / ``pgtable-3level.h`` / ``pgtable_64.h`` beside
``arch/riscv`` and ``arch/arm64``, an arch supplies its constants, entry formats and
accessors, and the generic code assumes none of its bits:

- :class:`PagingMode`: the levels (:class:`Level`), each with the construct structs of its
  entries (:class:`EntryFormat`, the specification), and the :class:`EntryCodec` the engine
  uses on its hot paths (plain integer operations): how a frame and a protection become an
  entry, what an entry is (table, leaf, nothing, malformed), which rights it grants, how
  rights combine down the levels, which protection a table entry carries, and the pte
  accessors generic mm uses (``pte_mkwrite``, ``pte_wrprotect``...).
- The kernel's layout per era (:class:`mmemu.layout.Layout`) and how the arch boots
  (:class:`BootPlan`): where RAM is, what memblock reserves, where the root table lives,
  how the kernel image is mapped, which tables boot preallocates.
- Its era rules (``vmalloc_fault``, syncing kernel mappings), its output formats (ptdump,
  crash ``vtop``, the oops) and its CPU adapter (:mod:`mmemu.cpu.adapter`).

The neutral vocabularies the core speaks: **rights** (what an access may do at kernel or
user privilege: :data:`KR` ... :data:`UX`), entry **kinds** (:data:`NONE`, :data:`TABLE`,
:data:`LEAF`, :data:`RESERVED`) and **attributes** of an entry for display (``read``,
``write``, ``exec``, ``user``, ``global``, ``accessed``, ``dirty`` and the arch's extras).
"""

from __future__ import annotations

import abc
from array import array
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property, lru_cache, partial
from types import MappingProxyType
from typing import TYPE_CHECKING

import construct

from .errors import ConfigError, MappingError

if TYPE_CHECKING:
    from .faults import Fault
    from .layout import Layout, MachineSpec

# -- rights: what a translation allows, per privilege --------------------------------------

KR = 1 << 0  #: kernel (CPL 0, S-mode, EL1) may read
KW = 1 << 1  #: kernel may write
KX = 1 << 2  #: kernel may execute
UR = 1 << 3  #: user (CPL 3, U-mode, EL0) may read
UW = 1 << 4  #: user may write
UX = 1 << 5  #: user may execute
ALL_RIGHTS = KR | KW | KX | UR | UW | UX
#: not a right: the leaf's access flag is clear and the MMU does not set it (arm64 without
#: hardware AF), so every access takes an access-flag fault
AF_FAULT = 1 << 6

#: the right an access needs: RIGHT[user][access]
RIGHT = ({"read": KR, "write": KW, "exec": KX}, {"read": UR, "write": UW, "exec": UX})
ACCESSES = ("read", "write", "exec")

# -- entry kinds ----------------------------------------------------------------------------

NONE = 0  #: not valid for the MMU (empty, or a software entry: PROT_NONE, swap)
TABLE = 1  #: points to the next level's table
LEAF = 2  #: maps a page (at the last level) or a large page / block
RESERVED = 3  #: valid but malformed: the MMU raises a reserved-bit (or translation) fault

KIND_NAMES = ("none", "table", "leaf", "reserved")

#: attributes every codec reports in :meth:`EntryCodec.describe` (arches add their own)
NEUTRAL_ATTRIBUTES = ("valid", "read", "write", "exec", "user", "global", "accessed", "dirty")


def entry_struct(bits: int, fields) -> construct.Construct:
    """A little-endian entry of *bits* bits as a construct struct, *fields* from the most
    significant bit down, as the architecture manuals draw them: ``(name, width)`` (a Flag
    when width is 1, else an integer) or ``(name, width, shift)`` for an address field,
    which parses to the address it encodes (``value << shift``)."""
    total = sum(f[1] for f in fields)
    if total != bits:
        raise ValueError(f"entry format has {total} bits, expected {bits}")
    subcons = []
    for f in fields:
        name, width = f[0], f[1]
        if len(f) == 3:
            sub = construct.ExprAdapter(construct.BitsInteger(width), lambda obj, ctx, s=f[2]: obj << s,
                                        lambda obj, ctx, s=f[2]: obj >> s)
        elif width == 1:
            sub = construct.Flag
        else:
            sub = construct.BitsInteger(width)
        subcons.append(name / sub)
    return construct.ByteSwapped(construct.BitStruct(*subcons))


@dataclass(frozen=True)
class EntryFormat:
    """One entry format: the construct struct that specifies it, and which of its fields
    carry each attribute the codec reports (``{"write": "rw", "exec": "!nx"}``: a ``!``
    means the attribute is the field's negation). The codec/construct agreement test reads
    both: every attribute named here must equal its field on any raw entry."""

    struct: construct.Construct
    attrs: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Level:
    """One level of the page-table tree, named as the kernel names it.

    ``table`` is the format of an entry that points to the next level (None at the last
    level); ``leaf`` the format of an entry that maps a page at this level (None where the
    level cannot map one: the x86 PML4, the PAE PDPT). ``folds``: kernel names of the
    levels folded into this one (``pgtable-nopmd.h``): the 2-level i386 pgd folds p4d, pud
    and pmd, so tools print it once per folded name."""

    name: str  # "pgd", "p4d", "pud", "pmd", "pte"
    shift: int  # log2 of the bytes one entry spans
    bits: int  # index bits: the table has 1 << bits entries
    entry_size: int  # bytes per entry (4 or 8)
    table: EntryFormat | None = None
    leaf: EntryFormat | None = None
    folds: tuple[str, ...] = ()

    # computed once (the level is frozen): the page-table engine reads them in every loop
    @cached_property
    def entries(self) -> int:
        return 1 << self.bits

    @cached_property
    def span(self) -> int:
        """Bytes mapped by one entry (the page size if it is a leaf)."""
        return 1 << self.shift

    @cached_property
    def table_size(self) -> int:
        return self.entry_size << self.bits

    @property
    def can_map(self) -> bool:
        return self.leaf is not None

    @property
    def display_names(self) -> tuple[str, ...]:
        """The names tools print for this level: its own, then the folded ones (crash's
        ``PGD:`` then ``PMD:`` for one 2-level i386 directory entry)."""
        return (self.name,) + self.folds


@dataclass(frozen=True)
class EntryView:
    """An entry as the codec reads it, for display and checks (not the hot path)."""

    kind: int  # NONE, TABLE, LEAF, RESERVED
    addr: int | None  # the next table (TABLE) or the page (LEAF); None otherwise
    attrs: Mapping[str, bool]

    @property
    def kind_name(self) -> str:
        return KIND_NAMES[self.kind]


@lru_cache(maxsize=64)
def _lanes(n: int, step: int, width: int) -> tuple[int, int]:
    """(sum of 2**(width i), sum of (i step) 2**(width i)) for i < n: a value in every lane,
    and 0, step, 2 step... in the lanes (for :meth:`PagingCodec.leaf_run`)."""
    return sum(1 << (width * i) for i in range(n)), sum((i * step) << (width * i) for i in range(n))


class EntryCodec(abc.ABC):
    """How one paging mode's entries encode frames and protections, in integers.

    A *protection* (``prot``) is the arch's own ``pgprot_t`` value in last-level (pte)
    form, as the kernel's ``pfn_pte(pfn, prot)`` takes it: the arch's named protections
    (:attr:`Arch.pgprot`) are such values. :meth:`mk_leaf` turns it into a large-page
    entry at higher levels (x86 adds PS and moves PAT; arm64 clears the table bit), and
    :meth:`leaf_prot` gives it back from any leaf. Generic mm code never looks at the bits
    of an entry: it calls the accessors below.

    Subclasses implement the abstract methods; the others have defaults written for
    encodings that are linear in the physical address (``raw = f(pa) | flags`` with the
    frame field an arithmetic function of pa: true of x86, RISC-V and arm64).
    """

    #: set by :class:`PagingMode`
    mode: PagingMode

    # -- the hot path ---------------------------------------------------------------------

    @abc.abstractmethod
    def decoder(self, li: int) -> Callable[[int], tuple[int, int, int]]:
        """A function ``raw -> (kind, addr, rights)`` for entries of level *li*, called once
        per step of every walk. ``addr``: the next table's physical address (TABLE) or the
        first byte of the page (LEAF); 0 otherwise. ``rights``: for a LEAF the rights the
        entry grants (:data:`KR` ... :data:`UX`, with :data:`AF_FAULT` where an access
        faults on the access flag); for a TABLE the rights it leaves to the entries below
        (:data:`ALL_RIGHTS` unless the table entry restricts them, as x86's RW/US/NX and
        arm64's APTable/XNTable do). The walker ANDs them down the levels."""

    def addr_mask(self, li: int) -> tuple[int, int] | None:
        """``(mask, shift)``: the bits of an entry of level *li* that only hold the address it
        points to (the kernel's ``PTE_PFN_MASK`` on x86, ``PTE_ADDR_MASK`` on arm64,
        ``_PAGE_PFN_MASK`` on RISC-V) and how far to shift them to make it. The claim, which
        the conformance suite checks: whether an entry is a TABLE, and a table's rights,
        depend only on the entry's other bits, and a table's address is ``(raw & mask) <<
        shift``; at the last level, so do a pte's kind and rights, and a LEAF's address is
        the same. (A large page's decoding may depend on its address bits, its alignment:
        the walker asks the decoder about anything but a table above the last level.)

        The walker then decodes an entry with integer operations and a memo of those other
        bits (a few distinct values, where the entries themselves are as many as the tables
        and pages), not a call of the decoder. None, the default: the decoder decides."""
        return None

    @abc.abstractmethod
    def mk_leaf(self, li: int, pa: int, prot: int) -> int:
        """The entry of level *li* mapping the page at *pa* with *prot*
        (``pfn_pte``/``pfn_pmd(pfn, pmd_mkhuge(prot))``/``pfn_pud``)."""

    @abc.abstractmethod
    def mk_table(self, li: int, table_pa: int, user: bool) -> int:
        """The entry of level *li* pointing to the table at *table_pa*: the protection a
        table entry carries for a kernel or a user subtree (x86 ``_KERNPG_TABLE`` /
        ``_PAGE_TABLE``, the PAE PDPT ``_PAGE_PRESENT``, RISC-V ``_PAGE_TABLE``, arm64
        ``PMD_TYPE_TABLE``)."""

    @abc.abstractmethod
    def leaf_prot(self, li: int, raw: int) -> int:
        """The protection (pte form) of the leaf *raw* of level *li*: what
        ``pte_pgprot``/``pmd_pgprot`` plus ``pgprot_large_2_4k`` give. Splitting a large
        page maps its pieces with it."""

    @abc.abstractmethod
    def check_prot(self, prot: int) -> None:
        """Raise :class:`~mmemu.errors.MappingError` unless *prot* is a protection (no
        frame bits, nothing that only a higher level or a table may carry)."""

    @abc.abstractmethod
    def fault_code(self, fault: Fault) -> int:
        """The arch's encoding of a page fault: the x86 error code, the RISC-V scause,
        the arm64 ESR_ELx."""

    # -- encoding in bulk (defaults: linear encodings) -----------------------------------

    def leaf_run(self, li: int, pa: int, n: int, prot: int) -> array:
        """*n* consecutive leaves of level *li* from *pa* (the boot direct map writes
        hundreds of thousands of entries this way, one slice per table).

        Built as one integer of *n* lanes of the entry's width (``first * (1 + 2**w +
        2**2w ...) + (0, step, 2 step ...)``), no lane carrying into the next since every
        entry fits its width: 4x faster than building the entries one by one (a
        page-granular linear map writes millions at boot)."""
        first = self.mk_leaf(li, pa, prot)
        code = self.mode.typecode(li)
        if n == 1:
            return array(code, [first])
        step = self.mk_leaf(li, pa + self.mode.levels[li].span, prot) - first
        width = 8 * array(code).itemsize
        if n < 8 or step <= 0 or first + (n - 1) * step >= 1 << width:
            return array(code, range(first, first + n * step, step))
        ones, iota = _lanes(n, step, width)
        out = array(code)
        out.frombytes((first * ones + iota).to_bytes(width // 8 * n, "little"))
        return out

    def leaves_for_frames(self, li: int, pfns, prot: int) -> array:
        """Leaves of level *li* mapping the 4 KiB frames *pfns* (vmap of scattered pages)."""
        base, step, code = self._frame_coding(li, prot)
        return array(code, [base + f * step for f in pfns])

    @lru_cache(maxsize=256)
    def _frame_coding(self, li: int, prot: int) -> tuple[int, int, str]:
        """(the leaf of frame 0, what one frame more adds, the array typecode) of level *li*
        with *prot*: the encoding is linear in the frame (the class's premise), and the same
        few protections come back on every vmap."""
        base = self.mk_leaf(li, 0, prot)
        return base, self.mk_leaf(li, 1 << 12, prot) - base, self.mode.typecode(li)

    def modify(self, li: int, raw: int, prot: int) -> int:
        """``pte_modify(pte, newprot)``: the same page with a new protection; the bits the
        arch keeps across a change (its ``_PAGE_CHG_MASK``: accessed, dirty...) are kept."""
        if li == len(self.mode.levels) - 1:  # a pte may be PROT_NONE: not valid, still a page
            addr = self.pte_pfn(raw) << 12
        else:
            addr = self.decoder(li)(raw)[1]
        return self.mk_leaf(li, addr, prot) | (raw & self.chg_mask(li))

    def chg_mask(self, li: int) -> int:
        """Bits of a leaf that :meth:`modify` keeps (besides the frame). Default: none."""
        return 0

    # -- pte accessors for generic mm (include/linux/pgtable.h; the arch's pgtable.h) ------

    @abc.abstractmethod
    def pte_pfn(self, raw: int) -> int:
        """``pte_pfn``: the frame of a last-level entry (present or PROT_NONE)."""

    @abc.abstractmethod
    def pte_present(self, raw: int) -> bool:
        """``pte_present``: the entry maps a page for the kernel: valid, or PROT_NONE
        (not valid for the MMU, but the page and its data stay mapped)."""

    @abc.abstractmethod
    def pte_write(self, raw: int) -> bool: ...

    @abc.abstractmethod
    def pte_wrprotect(self, raw: int) -> int: ...

    @abc.abstractmethod
    def pte_mkwrite(self, raw: int) -> int: ...

    @abc.abstractmethod
    def pte_mkdirty(self, raw: int) -> int: ...

    @abc.abstractmethod
    def pte_mkyoung(self, raw: int) -> int: ...

    @abc.abstractmethod
    def pte_mkold(self, raw: int) -> int:
        """``pte_mkold``: the accessed (young) bit cleared (fork's copies are made old)."""

    @abc.abstractmethod
    def pte_dirty(self, raw: int) -> bool:
        """``pte_dirty``: the page was written through this entry."""

    @abc.abstractmethod
    def pte_mkspecial(self, raw: int) -> int:
        """``pte_mkspecial``: the entry maps a page without a reference to count (the zero
        page): the arch's _PAGE_SPECIAL software bit."""

    @abc.abstractmethod
    def pte_special(self, raw: int) -> bool: ...

    def protnone_invert(self, raw: int) -> int:
        """The arch's L1TF guard of a not-present entry (x86 4.18+: the frame bits inverted,
        pgtable-invert.h), its own inverse; the kernel applies it where the arch asks
        (:meth:`Arch.protnone_inverted`). Default: none."""
        return raw

    def pte_none(self, raw: int) -> bool:
        return raw == 0

    def pfn_pte(self, pfn: int, prot: int) -> int:
        """``pfn_pte(pfn, prot)``: a last-level entry."""
        return self.mk_leaf(len(self.mode.levels) - 1, pfn << 12, prot)

    # -- description (display, checks) ----------------------------------------------------

    @abc.abstractmethod
    def describe(self, li: int, raw: int) -> EntryView:
        """The entry's kind, address and attributes: every neutral attribute
        (:data:`NEUTRAL_ATTRIBUTES`) and every attribute the level's formats map to a
        field."""

    def flag_names(self, li: int, raw: int) -> list[str]:
        """Names of the flags set in *raw*, as the arch's tools print them (crash's
        ``(PRESENT|RW|...)``). Default: the neutral attributes that are true."""
        view = self.describe(li, raw)
        return [name.upper() for name in NEUTRAL_ATTRIBUTES if view.attrs.get(name)]

    def format_for(self, li: int, raw: int) -> EntryFormat:
        """The format *raw* is read with: the leaf format for a leaf (and for a not-present
        last-level entry), else the table format."""
        lv = self.mode.levels[li]
        kind = self.decoder(li)(raw)[0]
        if lv.table is None or (kind == LEAF and lv.leaf is not None):
            return lv.leaf
        if kind != TABLE and lv.leaf is not None and self.looks_like_leaf(li, raw):
            return lv.leaf
        return lv.table

    def looks_like_leaf(self, li: int, raw: int) -> bool:
        """For a malformed or not-present entry of a level with both formats: read it as a
        leaf? Default: no."""
        return False


#: the address-space forms a paging mode can have
FLAT = "flat"  # [0, 2**va_bits): 32-bit x86
SIGN_EXTENDED = "sign-extended"  # canonical: bits 63..va_bits-1 all equal (x86_64, RISC-V)
SPLIT = "split"  # two roots: [0, 2**va_bits) and [2**64 - 2**va_bits, 2**64) (arm64 TTBR0/TTBR1)


@dataclass(frozen=True)
class PagingMode:
    """A paging mode: the levels top-down, the address space and the codec.

    ``form`` says how virtual addresses map onto the top table: :data:`FLAT` (the table
    spans the whole space), :data:`SIGN_EXTENDED` (a canonical address space: the user half
    low, the kernel half sign-extended, both in one table) or :data:`SPLIT` (arm64: user and
    kernel halves each have their own root, TTBR0 and TTBR1, indexed by the same bits)."""

    name: str  # "2-level", "PAE", "4-level", "5-level", "Sv39", "48-bit"...
    levels: tuple[Level, ...]
    va_bits: int  # address bits the walk translates (32, 39, 48, 57)
    pa_bits: int  # physical address width of the emulated CPU
    codec: EntryCodec
    form: str = FLAT

    def __post_init__(self):
        if self.form not in (FLAT, SIGN_EXTENDED, SPLIT):
            raise ConfigError(f"paging mode {self.name}: unknown address-space form {self.form!r}")
        if sum(lv.bits for lv in self.levels) + self.levels[-1].shift != self.va_bits and self.form != FLAT:
            raise ConfigError(f"paging mode {self.name}: levels index {sum(lv.bits for lv in self.levels)} bits "
                              f"over {self.levels[-1].shift}-bit pages, not {self.va_bits}")
        object.__setattr__(self.codec, "mode", self)

    @cached_property
    def page_shift(self) -> int:
        return self.levels[-1].shift

    @cached_property
    def page_size(self) -> int:
        return 1 << self.page_shift

    @property
    def bits64(self) -> bool:
        """Addresses are 64-bit words (pointer size 8)."""
        return self.form != FLAT

    @property
    def va_limit(self) -> int:
        """One past the highest virtual address (2**32 or 2**64)."""
        return 1 << (64 if self.bits64 else self.va_bits)

    @cached_property
    def kernel_half(self) -> int:
        """The first address of the kernel half of a sign-extended or split space."""
        if self.form == SIGN_EXTENDED:
            return ((1 << 64) - 1) ^ ((1 << (self.va_bits - 1)) - 1)
        if self.form == SPLIT:
            return (1 << 64) - (1 << self.va_bits)
        return 0

    def is_valid(self, va: int) -> bool:
        """Whether *va* is an address the MMU translates (canonical, inside a half)."""
        if self.form == FLAT:
            return 0 <= va < (1 << self.va_bits)
        if not 0 <= va < (1 << 64):
            return False
        if self.form == SIGN_EXTENDED:
            return va >> (self.va_bits - 1) in (0, (1 << (65 - self.va_bits)) - 1)
        return va >> self.va_bits in (0, (1 << (64 - self.va_bits)) - 1)

    def in_kernel_root(self, va: int) -> bool:
        """SPLIT mode: *va* is translated by the kernel root (TTBR1)."""
        return self.form == SPLIT and va >= self.kernel_half

    def va_of(self, offset: int, kernel_root: bool = False) -> int:
        """The virtual address at *offset* into the span of a top table (sign-extended, or
        in the kernel half when walking a SPLIT mode's kernel root)."""
        if self.form == SIGN_EXTENDED and offset >> (self.va_bits - 1) & 1:
            return offset | (((1 << 64) - 1) ^ ((1 << self.va_bits) - 1))
        if self.form == SPLIT and kernel_root:
            return offset | self.kernel_half
        return offset

    def describe_invalid(self, va: int) -> str:
        if self.form == SIGN_EXTENDED:
            return (f"{va:#x} is not a canonical {self.va_bits}-bit address "
                    f"(bits 63..{self.va_bits - 1} must all equal bit {self.va_bits - 1})")
        if self.form == SPLIT:
            return (f"{va:#x} is in neither half of the {self.va_bits}-bit address space "
                    f"(bits 63..{self.va_bits} must be all 0, TTBR0, or all 1, TTBR1)")
        return f"{va:#x} is outside the {self.va_bits}-bit virtual address space"

    def typecode(self, li: int) -> str:
        return "I" if self.levels[li].entry_size == 4 else "Q"

    def leaf_sizes(self) -> tuple[int, ...]:
        """Every page size the mode can map, largest first."""
        return tuple(sorted({lv.span for lv in self.levels if lv.can_map}, reverse=True))

    def level(self, name: str) -> Level:
        for lv in self.levels:
            if lv.name == name or name in lv.folds:
                return lv
        raise KeyError(name)


# -- how an arch boots --------------------------------------------------------------------


@dataclass(frozen=True)
class PercpuPlan:
    """The per-cpu first chunk of an SMP kernel (``setup_per_cpu_areas`` embedding it in
    the direct map: mm/percpu.c ``pcpu_embed_first_chunk``): what the arch's vmlinux and
    its ``setup_per_cpu_areas`` give. The core computes the rest with mm/percpu.c's own
    formulas (:mod:`mmemu.kernel.percpu`)."""

    #: ``__per_cpu_start``: the link address of vmlinux's ``.data..percpu``, the base of
    #: every per-cpu pointer (0 on x86_64: zero-based per-cpu, %gs holds the offset)
    static_start: int
    #: ``__per_cpu_end - __per_cpu_start``: the kernel's own static per-cpu variables
    static_size: int
    #: the allocation atom (``atom_size``: PMD_SIZE on x86_64, PAGE_SIZE on i386)
    atom_size: int
    #: the goal of the chunk's memblock allocation, ``__pa(MAX_DMA_ADDRESS)`` (x86: 16 MiB;
    #: below it only when nothing above fits)
    alloc_floor: int = 0


@dataclass(frozen=True)
class BootPlan:
    """How the arch's kernel builds its boot-time page tables: data the core's boot reads.

    The direct map always maps the usable RAM below ``high_memory`` at ``PAGE_OFFSET``; the
    kernel image's sections (``Layout.image``) are either part of it (their ``virt`` is the
    direct-map address of their ``phys``: their entries get the section's protection, as
    i386's ``mark_rodata_ro`` does) or mapped on their own at ``virt`` (x86_64's
    ``__START_KERNEL_map``, RISC-V's and arm64's kernel mapping)."""

    #: the master page table: the kernel's symbol and the image section it lives in
    root_symbol: str
    root_section: str
    #: who writes the direct map, the image mapping, the fixmap's tables (kernel functions)
    direct_map_writer: str
    image_writer: str
    fixmap_writer: str
    #: who allocates the pkmap area's page table (HighMem only)
    pkmap_writer: str = "permanent_kmaps_init"
    #: physical ranges the direct map maps first, on their own (x86: the ISA range
    #: [0, 1 MiB), init_mem_mapping), each (start, end) relative to the start of RAM
    direct_map_first: tuple[tuple[int, int], ...] = ()
    #: the physical ranges [start, end) the direct map covers (clipped to lowmem), absolute;
    #: None: every range the machine has memory in (:meth:`Layout.ram_ranges`, reserved
    #: firmware ranges included). x86_64 3.9+ maps the usable (E820_RAM) ranges only.
    direct_map_ranges: tuple[tuple[int, int], ...] | None = None
    #: more tables allocated at boot: (start, end, down_to level index or None for all
    #: levels, writer): ``preallocate_vmalloc_pages``, RISC-V's ``preallocate_pgd_pages_range``
    populate: tuple[tuple[int, int, int | None, str], ...] = ()
    #: the kernel part of every page directory is copied from the master (x86, RISC-V:
    #: pgd_alloc copies entries from KERNEL_PGD_BOUNDARY) or the kernel has its own root
    #: the CPU uses for the kernel half (arm64's TTBR1: user tables hold no kernel entry)
    copies_kernel_pgd: bool = True
    #: with ``copies_kernel_pgd``, the level whose kernel entries every page directory holds
    #: copies of, kept in step with the master's at that level (``vmalloc_sync_one``,
    #: ``arch_sync_kernel_mappings``): 0, the top-level entries from KERNEL_PGD_BOUNDARY
    #: (clone_pgd_range), the tables under them shared; 1, a table of its own under each
    #: kernel top-level entry, a copy of the master's made by pgd_alloc (and of the master
    #: copy's for a user copy), the tables under its entries shared (x86 PAE when the kernel
    #: pmd is not shared: SHARED_KERNEL_PMD 0, pgd_prepopulate_pmd). The tables of its own
    #: live and die with the directory.
    kernel_copy_level: int = 0
    #: the physical address of the root table where the arch's linker script puts it
    #: (arm64's swapper_pg_dir at the end of its block); None: the first free page of
    #: ``root_section``
    root_phys: int | None = None
    #: the protection of the direct map (arm64 and RISC-V mapped it executable in early eras)
    direct_map_prot: str = "PAGE_KERNEL"
    #: [start, end) of the fixmap's page tables allocated at boot; None: from the lowest
    #: slot of the layout's fixmap enum up to the page of FIXADDR_TOP (x86)
    fixmap_range: tuple[int, int] | None = None
    #: vmalloc-space ranges the kernel takes at boot (``vm_area_add_early``: arm64's image in
    #: the vmalloc area since 4.6): (start, end, caller); vmalloc never hands them out
    early_vm_areas: tuple[tuple[int, int, str], ...] = ()
    #: pgd_alloc also allocates the next level's table of every user entry and never frees
    #: them before the pgd (PAE: the CPU loads all four PDPT entries with CR3;
    #: pgd_prepopulate_pmd, PREALLOCATED_PMDS)
    prepopulate_user_pgd: bool = False
    #: the per-cpu first chunk (SMP kernels); None: a UP kernel, per-cpu data is plain data
    percpu: PercpuPlan | None = None
    #: memblock allocations the arch's setup makes before the per-cpu areas, each top-down
    #: in the direct-mapped memory at or above its floor (x86_64's struct page array,
    #: sparse_init's sparse buffer): (size, align, floor, owner). The frames stay reserved
    #: under *owner*; ``kernel.memblock_allocs[owner]`` is the physical address each got.
    memblock_allocs: tuple[tuple[int, int, int, str], ...] = ()
    #: every page directory has a user copy that user mode runs on (x86 PTI), and this many
    #: top-level entries from index 0 are the user half it mirrors (``pgdp_maps_userspace``;
    #: 0: no copy). The pgd is an order-1 block whose second page is the copy
    #: (``kernel_to_user_pgdp``); the master's copy is the image page after the master (the
    #: arch's :meth:`Arch.boot_mappings` fills its kernel part). A user-half top-level entry
    #: written to a pgd goes unchanged to the copy and the pgd keeps
    #: :meth:`Arch.set_user_pgtbl` of it; a new pgd copies the kernel half of both pages
    #: from the master's (``clone_pgd_range``)
    user_pgd_entries: int = 0


#: The protections every arch names (the kernel's ``pgprot_t`` names: asm/pgtable_types.h,
#: arch/riscv/include/asm/pgtable.h, arch/arm64/include/asm/pgtable-prot.h). The kernel
#: model maps with them: the direct map and vmalloc with PAGE_KERNEL, the image with
#: PAGE_KERNEL_RO / PAGE_KERNEL_RX, module text with PAGE_KERNEL_EXEC, user pages through
#: protection_map[] (``PAGE_NONE`` must include the arch's PROT_NONE marker so that the
#: entry stays ``pte_present`` while no access is allowed).
REQUIRED_PGPROTS = ("PAGE_NONE", "PAGE_KERNEL", "PAGE_KERNEL_RO", "PAGE_KERNEL_EXEC", "PAGE_KERNEL_RX",
                    "PAGE_SHARED", "PAGE_SHARED_EXEC", "PAGE_COPY", "PAGE_COPY_EXEC", "PAGE_READONLY",
                    "PAGE_READONLY_EXEC")

#: The layout symbols the core reads (every arch's layout must have them): where the
#: direct map starts and ends, user space, vmalloc. Optional ones the core uses when
#: present: FIXADDR_TOP and FIXADDR_START (the fixmap, where the era has one; with the
#: layout's fixmap enum), PHYS_OFFSET (physical address the direct map starts at, default 0),
#: KERNEL_PGD_BOUNDARY (first top-level index copied into user page directories, default
#: the index of PAGE_OFFSET), TASK_SIZE_MAX, STACK_TOP, ELF_ET_DYN_BASE,
#: MODULES_VADDR/MODULES_END, PKMAP_BASE/LAST_PKMAP (HighMem), VMEMMAP_START and vmemmap
#: (the struct page array: ``vmemmap + pfn * 64``, vmemmap defaulting to VMEMMAP_START).
REQUIRED_SYMBOLS = ("PAGE_OFFSET", "high_memory", "TASK_SIZE", "VMALLOC_START", "VMALLOC_END")


@dataclass(frozen=True)
class ArchOption:
    """An ``--option KEY=VALUE`` the arch understands."""

    key: str
    help: str
    choices: tuple[str, ...] = ()  # empty: free text, validated by the arch
    default: str | None = None


class Arch(abc.ABC):
    """An architecture as a plugin registers it (``mmemu_register_arch``).

    The core calls :meth:`check_options` for every spec before any other method, so the
    methods below see ``spec.options`` complete (defaults filled in) and valid."""

    #: short name used on the command line (``--arch i386_pae``)
    name: str
    #: one line for ``mmemu arches``
    summary: str
    options: tuple[ArchOption, ...] = ()
    #: named page protections (pgprot values in pte form): at least :data:`REQUIRED_PGPROTS`
    pgprot: Mapping[str, int] = MappingProxyType({})
    #: ELF ``e_machine`` of the arch's kernel modules
    elf_machine: str = ""
    def check_options(self, spec: MachineSpec) -> dict[str, str]:
        """Validate ``spec.options`` against :attr:`options`; return them with defaults."""
        known = {o.key: o for o in self.options}
        out = {o.key: o.default for o in self.options if o.default is not None}
        for key, value in spec.options.items():
            opt = known.get(key)
            if opt is None:
                names = ", ".join(sorted(known)) or "none"
                raise ConfigError(f"arch {self.name} has no option {key!r}; its options: {names}")
            if opt.choices and value not in opt.choices:
                raise ConfigError(f"option {key}={value!r} is not one of {', '.join(opt.choices)} for arch {self.name}")
            out[key] = value
        return out

    def check_contract(self) -> None:
        """Raise :class:`~mmemu.errors.PluginError`-worthy ConfigError naming what the arch
        lacks (called when the arch is registered)."""
        missing = [n for n in REQUIRED_PGPROTS if n not in self.pgprot]
        if missing:
            raise ConfigError(f"arch {getattr(self, 'name', '?')} does not define the protections "
                              f"{', '.join(missing)} (mmemu.arch.REQUIRED_PGPROTS)")

    # -- machine description ----------------------------------------------------------

    def pgprots(self, spec: MachineSpec) -> Mapping[str, int]:
        """The named protections of this spec's kernel (they change with the era on arm64
        and RISC-V). Default: :attr:`pgprot`."""
        return self.pgprot

    @abc.abstractmethod
    def paging(self, spec: MachineSpec) -> PagingMode:
        """The paging mode a machine of this spec runs in."""

    @abc.abstractmethod
    def layout(self, spec: MachineSpec) -> Layout:
        """The kernel's memory map for this spec, from the kernel's formulas of its era.
        Raises :class:`ConfigError` on a spec the kernel could not boot."""

    @abc.abstractmethod
    def boot_page_sizes(self, spec: MachineSpec) -> tuple[int, ...]:
        """Page sizes the kernel uses for its direct mapping on this spec, largest first
        (the command line can forbid large pages: ``nopse``, ``nogbpages``)."""

    @abc.abstractmethod
    def boot_plan(self, spec: MachineSpec, layout: Layout) -> BootPlan:
        """How this kernel builds its boot-time tables (see :class:`BootPlan`)."""

    def cpu_adapter(self, kernel, mmu: str):
        """The Unicorn CPU adapter for this machine (a :class:`mmemu.cpu.adapter.CpuAdapter`).
        Default: the arch runs no code."""
        raise ConfigError(f"arch {self.name} has no CPU adapter: code cannot run on it")

    def conformance_machines(self) -> list[dict]:
        """The machines the conformance suite (:mod:`mmemu.testing`) checks this arch on:
        ``mmemu.boot`` keyword arguments (kernel, ram, cmdline, options...) covering its
        paging modes and page sizes. Default: one machine with the defaults."""
        return [{}]

    def boot_mappings(self, kernel) -> None:
        """The arch's own boot-time mappings, made at the end of the core's boot (after the
        direct map, the image and the fixmap and pkmap tables; before any service starts,
        so they are part of the booted machine, not events): x86_64's vmemmap, ESPfix,
        cpu_entry_area and device fixmap slots. Map through ``kernel.pgtable`` with the
        writing kernel function as writer; take frames from ``kernel.frames`` (with an
        owner) or the plan's ``memblock_allocs``. A table deliberately pointed at by several
        entries goes in ``kernel.shared_tables``, and the virtual ranges that only repeat
        mappings made elsewhere (their clones) in ``kernel.alias_ranges``. Default: nothing."""

    # -- era rules of the arch ---------------------------------------------------------

    def set_user_pgtbl(self, kernel, raw: int) -> int:
        """With BootPlan ``user_pgd_entries``: the entry a page directory keeps for the user-half
        top-level entry *raw* (its user copy gets *raw*): x86's ``pti_set_user_pgtbl``.
        Default: *raw*."""
        return raw

    def syncs_kernel_mappings(self, spec: MachineSpec) -> bool:
        """Whether a new top-level kernel entry is copied into every page directory as soon
        as it is made (``arch_sync_kernel_mappings``/``sync_global_pgds``). Default: no."""
        return False

    # -- kernel modules ------------------------------------------------------------------

    def module_relocations(self, spec: MachineSpec):
        """The relocations the kernel's module loader of this spec applies (a
        :class:`mmemu.module.reloc.RelocTable`), or None if mmemu loads no module on this
        arch. The ELF machine is :attr:`elf_machine`. Default: None."""
        return None

    def module_frob_arch_sections(self, kernel, mf, mod) -> str | None:
        """``module_frob_arch_sections``: before the layout, change the module's own section
        headers (``mf.sections``, replaced with :func:`dataclasses.replace`) as the arch's
        loader does (arm64 sizes its ``.plt`` and ``.init.plt``, riscv64 its PLT and GOT), keeping what it needs in
        ``mod.arch``. Returns what it did (a load step), None for nothing; raises
        :class:`mmemu.errors.ModuleError` to refuse the module. Default: nothing."""
        return None

    def module_linker_sections(self, spec: MachineSpec) -> tuple[str, ...]:
        """The empty sections the kernel's module link adds to every ``.ko`` of this spec
        (scripts/module.lds.S with the arch's asm/module.lds.h) for the arch's loader to
        size (:meth:`module_frob_arch_sections`): what a module made to order
        (:func:`mmemu.testing.modules.synthetic_module`) must carry. Default: none."""
        return ()

    def module_alloc(self, spec: MachineSpec, layout: Layout) -> tuple[int, int, str]:
        """``module_alloc``: the range module memory is allocated in and the pgprot name it
        is first mapped with. Default: [MODULES_VADDR, MODULES_END), PAGE_KERNEL_EXEC."""
        s = layout.symbols
        return s["MODULES_VADDR"], s["MODULES_END"], "PAGE_KERNEL_EXEC"

    def module_strict_rwx(self, spec: MachineSpec) -> bool:
        """Whether the kernel sets module permissions per page (CONFIG_STRICT_MODULE_RWX,
        CONFIG_DEBUG_SET_MODULE_RONX before 4.11): the layout then starts text, rodata,
        ro_after_init and data on page boundaries. Default: yes."""
        return True

    def check_wx(self, kernel, wx: list[tuple[int, int]]) -> list[str]:
        """The kernel's W+X audit (CONFIG_DEBUG_WX: ``debug_checkwx`` after
        ``mark_rodata_ro``) in the arch's words, given *wx*, the kernel ranges (start, size)
        that are writable and executable. Default: the arch has no audit (an error)."""
        from .errors import MmemuError

        raise MmemuError(f"arch {self.name}: no W+X audit")

    def vermagic(self, spec: MachineSpec) -> str:
        """The kernel's VERMAGIC_STRING (include/linux/vermagic.h): what a module's
        ``vermagic=`` must equal. Default: ``"<release> SMP mod_unload "``, the release
        being UTS_RELEASE (``6.6.0``: VERSION.PATCHLEVEL.SUBLEVEL)."""
        v = spec.kernel
        return f"{v.major}.{v.minor}.{v.patch} SMP mod_unload "

    def kernel_fault_fixup(self, kernel, fault: Fault) -> str | None:
        """Called by the fault path for every kernel-mode fault on a kernel address, before
        the spurious-fault check: fix what the arch fixes lazily (x86's and RISC-V's
        ``vmalloc_fault``) and return the name of the function that did, or None.
        Default: nothing."""
        return None

    def kernel_access_to_user(self, kernel, fault: Fault) -> str | None:
        """Called by the fault path for every kernel-mode fault on a user address, before
        ``find_vma``: the reason the arch's fault handler dies at once (``die_kernel_fault``)
        rather than handling the fault, or None to go on. RISC-V 5.12+ refuses any such
        fault taken with sstatus.SUM clear (``fault.uaccess`` False). Default: None."""
        return None

    def fault_in_kernel_space(self, layout: Layout, address: int) -> bool:
        """``fault_in_kernel_space``: the address belongs to the kernel's half. Default: the
        test :meth:`kernel_space_test` makes."""
        return self.kernel_space_test(layout)(address)

    def kernel_space_test(self, layout: Layout) -> Callable[[int], bool]:
        """:meth:`fault_in_kernel_space` bound to one layout: the kernel asks it on every
        fault, so it is made once. Default: at or above TASK_SIZE_MAX (TASK_SIZE where the
        layout has no TASK_SIZE_MAX), a comparison made in C; an arch that overrides
        :meth:`fault_in_kernel_space` instead gets its method bound."""
        if type(self).fault_in_kernel_space is not Arch.fault_in_kernel_space:
            return partial(self.fault_in_kernel_space, layout)
        bound = layout.symbols.get("TASK_SIZE_MAX")
        return (bound if bound is not None else layout["TASK_SIZE"]).__le__

    # -- output formats ------------------------------------------------------------------

    def ptdump_format(self, layout: Layout):
        """How ``mmemu ptdump`` prints this arch's tables: a
        :class:`mmemu.render.ptdump.PtdumpFormat` (the arch's ``dump_pagetables.c`` /
        ``ptdump.c``: markers, ranges walked, flag columns). Default: the generic format,
        a marker per layout region and the neutral attributes as columns."""
        from .render.ptdump import PtdumpFormat

        return PtdumpFormat.generic(self, layout)

    def ptdump_root(self, kernel, view: str, process=None) -> int:
        """The table ``mmemu ptdump --view VIEW`` dumps: ``kernel`` (the master), or a view
        the arch's kernel has in debugfs for the current process (x86 4.15+:
        page_tables/current_kernel, and with CONFIG_PAGE_TABLE_ISOLATION current_user, the
        process's user copy under PTI and its pgd otherwise), for *process*. Raise
        ConfigError for a view the arch or its era has not. Default: ``kernel`` only."""
        if view != "kernel":
            raise ConfigError(f"ptdump --view {view}: arch {self.name} has only the kernel's page tables in debugfs")
        return kernel.pgd

    def vtop_paddr(self, kernel, walk, user: bool) -> int | None:
        """The physical address crash's ``uvtop``/``kvtop`` (not verbose) finds for
        ``walk.va``, or None where crash says ``(not mapped)``. Default: a kernel address
        crash does not take for a vmalloc one is ``VTOP()``'d without a walk, whatever the
        tables say (riscv64.c riscv64_kvtop ``if (!IS_VMALLOC_ADDR(kvaddr)) { *paddr =
        VTOP(kvaddr); if (!verbose) return TRUE; }``, arm64.c arm64_kvtop the same, both
        read): the direct map and
        the kernel image's mapping (``kernel.virt_to_phys``); else the walk's page, when the
        MMU would translate it. An arch with other rules (x86's PROT_NONE ptes, its VTOP
        ranges) overrides it."""
        from .errors import MmemuError

        if not user:
            try:
                return kernel.virt_to_phys(walk.va)
            except MmemuError:
                pass
        return walk.phys if walk.mapped else None

    def layout_text(self, layout: Layout, fmt: str) -> str:
        """The kernel's own text about *layout* for ``mmemu layout --format FMT``: ``mm.rst``
        (the table of the arch's layout document in the era's form: x86_64's
        Documentation/arch/x86/x86_64/mm.rst) or ``dmesg`` (the layout block the kernel
        prints at boot: i386's ``virtual kernel memory layout:``). Raise ConfigError saying
        why the arch or its era has no such text. Default: the arch has none."""
        raise ConfigError(f"--format {fmt}: arch {self.name} has no such text in mmemu (mm.rst is the table of "
                          f"x86_64's Documentation/arch/x86/x86_64/mm.rst, dmesg the layout block i386 printed "
                          f"at boot); `mmemu layout` without --format shows its layout")

    def vtop_lines(self, kernel, walk, root: int, process=None) -> list[str]:
        """The walk part of crash's ``vtop`` for this arch (after the VIRTUAL/PHYSICAL
        header): the table lines, the PAGE line and the PTE/PHYSICAL/FLAGS table."""
        raise ConfigError(f"arch {self.name} has no crash vtop format")

    def oops_report(self, kernel, fault: Fault, die_counter: int, why: str = "") -> str:
        """The kernel's oops text for a kernel-mode fault nothing fixes."""
        raise ConfigError(f"arch {self.name} has no oops format")

    def qemu_monitor(self, kernel, command: str, root: int) -> str:
        """What QEMU's monitor prints for ``info tlb`` or ``info mem`` (*command*) with the
        page table at *root* loaded (the arch's target/<arch>/monitor.c)."""
        raise ConfigError(f"arch {self.name} has no QEMU 'info {command}' format")

    def user_pmds_freed(self, spec: MachineSpec) -> bool:
        """Whether the tables a page directory is given at its birth (BootPlan's
        ``prepopulate_user_pgd``: the PAE pmds) may be freed by munmap's free_pgtables, or
        live as long as the directory. Default: freed."""
        return True

    def protnone_inverted(self, spec: MachineSpec) -> bool:
        """Whether this spec's kernel inverts the frame of its PROT_NONE ptes
        (:meth:`EntryCodec.protnone_invert`). Default: no."""
        return False

    def vmcoreinfo(self, kernel) -> list[str] | None:
        """The arch's lines of a vmcore's VMCOREINFO note (``KEY=VALUE``, the kernel's
        ``arch_crash_save_vmcoreinfo()``), with what a reader needs to walk the arch's page
        tables (:mod:`mmemu.vmcore`). Default: None, mmemu writes no vmcore for the arch."""
        return None

    def gate_vma(self, kernel) -> tuple[int, int, str, str] | None:
        """``get_gate_vma()``: the area every process's ``/proc/PID/maps`` lists after its
        own VMAs (fs/proc/task_mmu.c m_start: ``priv->tail_vma``), as (start, end, perms,
        name), e.g. x86_64's ``[vsyscall]`` page. Default: None, the arch has none."""
        return None

    def segfault_report(self, kernel, fault: Fault) -> str:
        """The line a user SIGSEGV leaves in the kernel log (``show_signal_msg``)."""
        proc = fault.process
        comm, pid = (proc.comm, proc.pid) if proc is not None else ("swapper", 0)
        return f"{comm}[{pid}]: segfault at {fault.address:x} ip {fault.ip or 0:x} sp {fault.sp:x} code {fault.code:x}"

    def __repr__(self) -> str:
        return f"<Arch {self.name}>"


def check_page_aligned_prot(prot: int, frame_bits: int, what: str) -> None:
    """Helper for :meth:`EntryCodec.check_prot`: *prot* has no bit of *frame_bits*."""
    if prot < 0 or prot & frame_bits:
        raise MappingError(f"protection {prot:#x} carries {what}")
