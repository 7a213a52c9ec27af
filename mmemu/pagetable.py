"""The one page-table engine: walker and mapper for every arch.

Driven only by the arch's :class:`~mmemu.arch.PagingMode`: its levels and its
:class:`~mmemu.arch.EntryCodec`, like the kernel's generic code over ``pgtable-2level.h`` /
``pgtable-3level.h`` / ``pgtable_64.h`` and the RISC-V and arm64 headers. The engine knows
no bit of any entry: what an entry is (a table, a leaf, nothing, something malformed),
where it points and which rights it grants come from the codec's decoder; what a new entry
holds comes from the codec's encoders. Entries live in emulated physical memory and are
read and written in place; runs of entries in one table are written with one slice
assignment of an ``array`` (the boot direct map is a few hundred such writes, not a loop
per entry). Construct formats are the specification, for display (:meth:`PageTables.parse`).

Every operation is a transaction: if it fails half-way (no frame for a new table, an entry
already in use), every entry it wrote is restored and every table it allocated is freed,
and the error is raised with the tables exactly as before. A completed operation is reported
to the observers as one :class:`Operation`.
"""

from __future__ import annotations

import functools
import struct
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from .arch import (
    ACCESSES,
    AF_FAULT,
    ALL_RIGHTS,
    KR,
    KW,
    KX,
    LEAF,
    NONE,
    RESERVED,
    RIGHT,
    SIGN_EXTENDED,
    SPLIT,
    TABLE,
    UR,
    UW,
    UX,
    EntryCodec,
    Level,
    PagingMode,
)
from .errors import AddressError, MappingError
from .faults import ACCESS_FLAG, NON_CANONICAL, NOT_PRESENT, PROTECTION, Fault
from .faults import RESERVED as RESERVED_FAULT


@dataclass(frozen=True, slots=True)
class Step:
    """One level of a walk: which table, which entry, what it holds."""

    level: Level
    li: int  # index of the level in the paging mode
    table: int  # physical address of the table
    index: int
    entry_addr: int  # physical address of the entry
    raw: int


class Walk:
    """The result of walking one virtual address.

    ``steps`` are the entries read, top-down. If the walk reached a page: ``phys``,
    ``page_size`` and ``rights``, the rights of the leaf ANDed with those every table entry
    above it leaves (:data:`mmemu.arch.KR` ... :data:`~mmemu.arch.UX`). Otherwise ``missing``
    says why (``"not-present"`` or ``"reserved"``) and ``phys`` is None. :meth:`fault`
    describes the page fault an access would raise.
    """

    # what the walk read, nothing derived: the tables and entry addresses of ``steps`` and
    # the ``page_size`` follow from the entries (every walk makes one; few are looked into)
    __slots__ = ("_mode", "_raws", "missing", "phys", "rights", "va")

    def __init__(self, va, raws, mode, phys, rights, missing):
        self.va = va
        self._raws = raws  # the root table's address, then the entry read at each level, top-down
        self._mode = mode
        self.phys = phys
        self.rights = rights
        self.missing = missing

    @property
    def steps(self) -> list[Step]:
        """The entries read, each with its table (the root, then where the entry above
        points: the codec decodes it again) and its index (from the address)."""
        levels, decoder, va = self._mode.levels, self._mode.codec.decoder, self.va
        table, steps = self._raws[0], []
        for li, raw in enumerate(self._raws[1:]):
            lv = levels[li]
            if li:
                table = decoder(li - 1)(self._raws[li])[1]
            index = (va >> lv.shift) & (lv.entries - 1)
            steps.append(Step(lv, li, table, index, table + index * lv.entry_size, raw))
        return steps

    @property
    def page_size(self) -> int:
        """The size of the page reached (0 if none)."""
        return 0 if self.phys is None else self._mode.levels[len(self._raws) - 2].span

    @property
    def last_level(self) -> int:
        """The level index of the last entry the walk read."""
        return len(self._raws) - 2

    @property
    def mapped(self) -> bool:
        return self.phys is not None

    @property
    def leaf(self) -> Step | None:
        return self.steps[-1] if self.mapped else None

    # the rights, in the words people use for them
    @property
    def writable(self) -> bool:
        """Some privilege may write the page."""
        return bool(self.rights & (KW | UW))

    @property
    def user(self) -> bool:
        """User mode may access the page."""
        return bool(self.rights & (UR | UW | UX))

    @property
    def nx(self) -> bool:
        """No privilege may execute from the page."""
        return not self.rights & (KX | UX)

    def allows(self, access: str, user: bool = False) -> bool:
        """Whether the MMU lets this access through."""
        return self.fault(access, user) is None

    def fault(self, access: str = "read", user: bool = False, uaccess: bool = False) -> Fault | None:
        """The page fault this access would raise (with the arch's encoding in ``code``),
        or None if it is allowed. *uaccess*: a kernel load or store made with user access
        open (RISC-V sstatus.SUM, arm64 PAN clear), which may also use the user rights."""
        try:
            need = RIGHT[bool(user)][access]
        except KeyError:
            raise ValueError(f"access must be one of {ACCESSES}, not {access!r}") from None
        uaccess = bool(uaccess) and not user
        if uaccess and access != "exec":  # user access opens loads and stores, never fetches
            need |= RIGHT[True][access]
        if self.missing is not None:
            kind = self.missing
        elif self.rights & AF_FAULT:
            kind = ACCESS_FLAG
        elif not self.rights & need:
            kind = PROTECTION
        else:
            return None
        f = Fault(self.va, access, bool(user), kind, level=max(0, len(self._raws) - 2), source="walk",
                  uaccess=uaccess)
        f.code = self._mode.codec.fault_code(f)
        return f

    def code(self, access: str = "read", user: bool = False) -> int | None:
        """The arch's fault code of this access (x86 error code, scause, ESR), or None."""
        f = self.fault(access, user)
        return None if f is None else f.code

    def __repr__(self) -> str:
        if self.phys is None:
            if len(self._raws) < 2:
                return f"<Walk {self.va:#x} {self.missing}>"
            return f"<Walk {self.va:#x} {self.missing} at {self._mode.levels[self.last_level].name}>"
        r = self.rights
        perms = "".join(c if r & b else "-" for c, b in (("r", KR), ("w", KW), ("x", KX))) + "/" + \
            "".join(c if r & b else "-" for c, b in (("r", UR), ("w", UW), ("x", UX)))
        return f"<Walk {self.va:#x} -> {self.phys:#x} ({self.page_size:#x} {perms})>"


@dataclass(slots=True)
class Change:
    """A run of entries written by one operation: ``count`` entries of one table from
    ``index``, with their values before and after (raw bytes, little-endian)."""

    table: int
    level: Level
    li: int
    index: int
    old: bytes
    new: bytes
    writer: str

    def entries(self) -> Iterator[tuple[int, int, int]]:
        """(index, old, new) per entry that actually changed."""
        size = self.level.entry_size
        fmt = "<%d%s" % (len(self.old) // size, "I" if size == 4 else "Q")
        for k, (o, n) in enumerate(zip(struct.unpack(fmt, self.old), struct.unpack(fmt, self.new))):
            if o != n:
                yield self.index + k, o, n


@dataclass(slots=True)
class TableInfo:
    """A page-table page the engine allocated (or adopted): its level and who wrote each
    entry (ids into :attr:`PageTables.writers`)."""

    phys: int
    level_index: int
    owner: str
    writers: array = field(default_factory=lambda: array("H"))
    #: never freed by unmap(free_tables=True) (the PAE user pmds live as long as the pgd)
    pinned: bool = False


def _lazy_list(name: str) -> property:
    """A list attribute made on first use: most operations leave it empty, and thousands
    of operations are kept (the kernel's recent events), so an unused one costs nothing."""
    slot = "_" + name

    def get(self) -> list:
        value = getattr(self, slot)
        if value is None:
            value = []
            setattr(self, slot, value)
        return value

    def set_(self, value: list) -> None:
        setattr(self, slot, value)
    return property(get, set_)


class _Leaves:
    """The pages a run of last-level entries mapped, all leaves, kept as the entries
    themselves (an unmap of a process's tables: thousands of pages) and made (va, phys,
    size) tuples only when :attr:`Operation.unmapped` is read."""

    __slots__ = ("va", "li", "row", "pt")

    def __init__(self, pt: "PageTables", li: int, va: int, row: array):
        self.pt, self.li, self.va, self.row = pt, li, va, row

    def expand(self) -> list[tuple[int, int, int]]:
        lv = self.pt.levels[self.li]
        decode, shift, span, va = self.pt._decode[self.li], lv.shift, lv.span, self.va
        return [(va + (k << shift), decode(raw)[1], span) for k, raw in enumerate(self.row)]

    def pfns(self, page_shift: int) -> list[int]:
        mask, shift = self.pt.codec.addr_mask(self.li)  # a run is packed only where there is one
        down = page_shift - shift
        if down >= 0:
            return [(raw & mask) >> down for raw in self.row]
        return [(raw & mask) << -down for raw in self.row]


class Operation:
    """What one completed operation did: the writer, the virtual range and every run of
    entries written, in order; ``tables_allocated``/``tables_freed`` physical addresses;
    for an unmap, ``unmapped``: the (va, phys, size) pages that were mapped and no longer
    are. ``kind``: "map", "unmap", "protect", "populate", "set_pte"..."""

    __slots__ = ("writer", "kind", "va", "size", "mode", "_changes", "_tables_allocated", "_tables_freed",
                 "_unmapped", "_run", "_packed", "kept")

    tables_allocated = _lazy_list("tables_allocated")
    tables_freed = _lazy_list("tables_freed")

    def __init__(self, writer: str, kind: str, va: int, size: int, mode: PagingMode | None = None):
        self.writer, self.kind, self.va, self.size, self.mode = writer, kind, va, size, mode
        self._changes = self._tables_allocated = self._tables_freed = self._unmapped = None
        #: an operation of one run (PageTables._one_run) keeps it as the arguments of its
        #: Change, made when someone reads ``changes``
        self._run = None
        #: whether _unmapped holds runs of ptes (_Leaves) not made (va, phys, size) yet
        self._packed = False
        #: an unmap: how many entries of its range it left in place, not zero and not
        #: mapped for the MMU (PROT_NONE, swap entries; what unmap does not clear)
        self.kept = 0

    @property
    def unmapped(self) -> list[tuple[int, int, int]]:
        """(va, phys, size) of every page the operation unmapped, in address order; an
        unmap's whole tables of ptes are kept as the entries they held (:class:`_Leaves`)
        until someone reads this."""
        u = self._unmapped
        if u is None:
            u = self._unmapped = []
        elif self._packed:
            out: list = []
            for item in u:
                if type(item) is tuple:
                    out.append(item)
                else:
                    out.extend(item.expand())
            u[:] = out  # in place: whoever holds the list sees the pages
            self._packed = False
        return u

    @unmapped.setter
    def unmapped(self, value: list) -> None:
        self._unmapped = value
        self._packed = any(type(item) is _Leaves for item in value)

    def _unmapped_items(self) -> list:
        """The list unmapped pages are added to, as it is (runs of ptes left packed)."""
        u = self._unmapped
        if u is None:
            u = self._unmapped = []
        return u

    def _add_leaves(self, leaves: "_Leaves") -> None:
        self._unmapped_items().append(leaves)
        self._packed = True

    def unmapped_pfns(self, page_shift: int) -> list[int]:
        """``phys >> page_shift`` of each page of :attr:`unmapped`, in the same order,
        without making its tuples: a run of ptes gives its frames by the codec's address
        mask, one comprehension over the entries."""
        u = self._unmapped
        if not u:
            return []
        if not self._packed:
            return [phys >> page_shift for _, phys, _ in u]
        out: list[int] = []
        for item in u:
            if type(item) is tuple:
                out.append(item[1] >> page_shift)
            else:
                out.extend(item.pfns(page_shift))
        return out

    @property
    def changes(self) -> list[Change]:
        if self._changes is None:
            self._changes = [] if self._run is None else [Change(*self._run, self.writer)]
        return self._changes

    def __repr__(self) -> str:
        return (f"Operation({self.writer!r}, {self.kind!r}, {self.va:#x}, {self.size:#x}, "
                f"{len(self.changes)} runs, tables_allocated={self.tables_allocated}, "
                f"tables_freed={self.tables_freed}, unmapped={len(self.unmapped)})")


class EntryWrite:
    """The :class:`Operation` of one entry written (the hot paths: a demand fault, a kmap, a
    fixmap slot, a vmalloc of one page and its vfree), with the same fields; its
    :class:`Change` and the page it unmapped are made when first read, so that an entry
    nobody looks at again costs one small record (:meth:`PageTables._entry_write` fills its
    slots without a call of ``__init__``; the kernel's own event stream is given its plain
    values instead, :attr:`PageTables.on_entry`)."""

    __slots__ = ("writer", "kind", "va", "_pt", "_table", "_li", "_idx", "_old", "_new", "_changes")

    #: an unmap of one entry clears it (Operation.kept: none left in place)
    kept = 0

    def __init__(self, pt: "PageTables", writer: str, kind: str, va: int, table: int, li: int, idx: int,
                 old: int, new: int):
        self.writer, self.kind, self.va = writer, kind, va
        self._pt, self._table, self._li, self._idx, self._old, self._new = pt, table, li, idx, old, new
        self._changes = None

    def fields(self) -> tuple:
        """The values it is made of after *pt* (``EntryWrite(pt, *op.fields())`` is it again):
        plain ints and strings, to be kept instead of it (mmemu.events.RecentEvents)."""
        return self.writer, self.kind, self.va, self._table, self._li, self._idx, self._old, self._new

    @property
    def size(self) -> int:
        return self._pt.levels[self._li].span

    @property
    def mode(self) -> "PagingMode":
        return self._pt.mode

    @property
    def changes(self) -> list[Change]:
        if self._changes is None:
            s, li = self._pt._unpack[self._li], self._li
            self._changes = [Change(self._table, self._pt.levels[li], li, self._idx, s.pack(self._old),
                                    s.pack(self._new), self.writer)]
        return self._changes

    @property
    def unmapped(self) -> list[tuple[int, int, int]]:
        """The page the old entry mapped, if the new one maps none (an empty entry maps
        nothing: every codec decodes 0 as NONE)."""
        if self._old:
            decode = self._pt._decode[self._li]
            old_kind, old_addr, _ = decode(self._old)
            if old_kind == LEAF and decode(self._new)[0] != LEAF:
                return [(self.va, old_addr, self.size)]
        return []

    def unmapped_pfns(self, page_shift: int) -> list[int]:
        """As :meth:`Operation.unmapped_pfns`."""
        return [phys >> page_shift for _, phys, _ in self.unmapped]

    @property
    def tables_allocated(self) -> list[int]:
        return []

    @property
    def tables_freed(self) -> list[int]:
        return []

    def __repr__(self) -> str:
        return f"EntryWrite({self.writer!r}, {self.kind!r}, {self.va:#x}, {self.size:#x})"


class _Memo(dict):
    """x -> fn(x) for a pure function *fn* of an entry's bits: the codec's decoding of an
    upper level's entries (few distinct ones: one per table below, and the large pages), or
    the kind and rights of a pte's bits other than its address. Bounded, the overflow
    computed each time."""

    __slots__ = ("fn",)
    LIMIT = 1 << 14

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def __missing__(self, x: int):
        value = self.fn(x)
        if len(self) < self.LIMIT:
            self[x] = value
        return value


def _new_walk(*fields: str) -> str:
    """Source that makes the :class:`Walk` of *fields* (its slots' values, in
    ``Walk.__init__``'s order) without calling ``__init__``: a Python-level call costs as
    much as a level of the walk."""
    names = ("va", "_raws", "_mode", "phys", "rights", "missing")
    return "w = NEW(Walk); " + "; ".join(f"w.{n} = {v}" for n, v in zip(names, fields, strict=True)) + "; return w"


def _read_entry(pt: "PageTables", ns: dict, i: int) -> list[str]:
    """Lines that read entry r{i} (at e{i}) of the walk plan's level *i* from table t{i}, as
    an item of a typed view of RAM (no ``struct`` call)."""
    _li, shift, imask, esz, *_ = pt._walk_plan[i]
    ns[f"E{i}"] = pt.mem.entries(esz)
    return [f"    e{i} = t{i} + ((va >> {shift}) & {imask}) * {esz}",
            f"    r{i} = E{i}[e{i} >> {esz.bit_length() - 1}]"]


def _flags_lookup(pt: "PageTables", ns: dict, i: int) -> tuple[list[str], str] | None:
    """Where the codec gives level *i*'s address mask (:meth:`~mmemu.arch.EntryCodec.addr_mask`):
    the line that sets k, r from the memo of entry r{i}'s bits other than its address, and
    the expression of its address; else None."""
    fields = pt.codec.addr_mask(i)
    if fields is None:
        return None
    mask, shift = fields
    ns[f"F{i}"] = pt._flags[i]
    esz = pt.levels[i].entry_size
    return ([f"    k, r = F{i}[r{i} & {~mask & ((1 << 8 * esz) - 1)}]"],
            f"(r{i} & {mask})" + (f" << {shift}" if shift else ""))


def _to_next_table(pt: "PageTables", ns: dict, i: int, otherwise: list[str]) -> list[str]:
    """Lines that decode entry r{i} of an upper level: a table by its address mask and the
    memo of its other bits where the codec gives the mask (k, r, t{i+1} set), anything else
    by the level's memoised decoder (k, a, r set), then *otherwise*, which must leave unless
    k is TABLE (1)."""
    ns[f"D{i}"] = pt._decode[i]
    decoded = [f"k, a, r = D{i}(r{i})", *otherwise, f"t{i + 1} = a"]
    fast = _flags_lookup(pt, ns, i)
    if fast is None:
        return ["    " + line for line in decoded]
    lookup, addr = fast
    return [*lookup, "    if k == 1:", f"        t{i + 1} = {addr}", "    else:",
            *("        " + line for line in decoded)]


def _unrolled_walk(pt: "PageTables") -> Callable[[int, int], Walk]:
    """:meth:`PageTables.walk` for *pt*'s mode with the loop over the levels unrolled and
    each level's shift, mask and entry size written in as constants: the same reads,
    decodings and results in a fraction of the time. Entries are read as items of a typed
    view of RAM. Where the codec gives a level's address mask, an entry is decoded with it
    and a memo of its other bits: a table (and a pte) without a decoder call, and with a
    memo of a few hot keys where an 8 GiB page-granular direct map has thousands of distinct
    pmd entries; anything else goes to the level's memoised decoder. The :class:`Walk` is
    filled in without a call of its ``__init__``. Generated from the walk plan, so it holds
    for any mode of any arch."""
    ns = {"Walk": Walk, "NEW": object.__new__, "ALL": ALL_RIGHTS, "AF": AF_FAULT, "NP": NOT_PRESENT,
          "RSV": RESERVED_FAULT, "pt": pt, "mode": pt.mode, "VS": pt._valid_shift, "VT": pt._valid_top,
          "KROOTS": pt._kernel_roots}
    src = ["def walk(root, va):"]
    if pt._split_roots:
        # both checks in one: the bits above the translated ones are those of the root's
        # half (all 1 for the kernel's, 0 for a user root's); if not, one of them raises
        src += ["    if va >> VS != (VT if root in KROOTS else 0):",
                "        pt.check_va(va)",
                "        pt._check_root_half(root, va)"]
    else:
        # the bits above the translated ones are all 0 or all 1 (a negative va too: its
        # top is negative)
        src += ["    top = va >> VS",
                "    if top and top != VT:",
                "        pt.check_va(va)"]
    src += ["    t0 = root", "    rights = ALL"]
    for i, (li, _shift, _imask, _esz, _unpack, _decode, offmask) in enumerate(pt._walk_plan):
        raws = "(root, " + ", ".join(f"r{j}" for j in range(i + 1)) + ")"
        hit = _new_walk("va", raws, "mode", f"a | (va & {offmask})", "(rights & r) | (r & AF)", "None")
        miss = _new_walk("va", raws, "mode", "None", "0", "NP if k == 0 else RSV")
        src += _read_entry(pt, ns, i)
        fast = _flags_lookup(pt, ns, i) if li == pt._last else None
        if fast is not None:  # a pte's kind and rights are those of its other bits
            lookup, addr = fast
            src += [*lookup,
                    "    if k == 2:",
                    f"        a = {addr}",
                    f"        {hit}",
                    "    if k != 1:",
                    f"        {miss}"]
            break
        src += _to_next_table(pt, ns, i, ["if k != 1:", "    if k == 2:", f"        {hit}", f"    {miss}"])
        src.append("    rights &= r")
    src.append("    pt._ran_past(va)")
    exec("\n".join(src), ns)  # noqa: S102 - our own text, built from integers above
    return ns["walk"]


def _unrolled_pte_slot(pt: "PageTables") -> Callable[[int, int], tuple[int, int] | None]:
    """:meth:`PageTables.pte_slot` for *pt*'s mode with the loop over the upper levels
    unrolled, their entries read and decoded as :func:`_unrolled_walk` does (every vmap,
    vunmap, kmap and demand fault finds its pte this way)."""
    ns: dict = {}
    src = ["def pte_slot(root, va):", "    t0 = root"]
    for i in range(pt._last):
        src += _read_entry(pt, ns, i) + _to_next_table(pt, ns, i, ["if k != 1:", "    return None"])
    _li, shift, imask, *_ = pt._walk_plan[-1]
    src.append(f"    return t{pt._last}, (va >> {shift}) & {imask}")
    exec("\n".join(src), ns)  # noqa: S102 - our own text, built from integers above
    return ns["pte_slot"]


def _unrolled_pte_entry(pt: "PageTables") -> Callable[[int, int], tuple[tuple[int, int], int] | None]:
    """:meth:`PageTables.pte_entry` for *pt*'s mode: :func:`_unrolled_pte_slot`'s lines,
    then the entry read as the walk reads it (a demand fault looks at its pte this way)."""
    ns: dict = {}
    last = pt._last
    src = ["def pte_entry(root, va):", "    t0 = root"]
    for i in range(last):
        src += _read_entry(pt, ns, i) + _to_next_table(pt, ns, i, ["if k != 1:", "    return None"])
    src += _read_entry(pt, ns, last)
    _li, shift, imask, *_ = pt._walk_plan[-1]
    src.append(f"    return (t{last}, (va >> {shift}) & {imask}), r{last}")
    exec("\n".join(src), ns)  # noqa: S102 - our own text, built from integers above
    return ns["pte_entry"]


@functools.lru_cache(maxsize=256)
def _writer_run(wid: int, n: int) -> array:
    """*n* copies of the writer id *wid* (a table's run of writers: the same few lengths
    again and again)."""
    return array("H", [wid]) * n


class _Txn:
    __slots__ = ("alloc", "defer_free", "op", "record", "undo", "unwritten")

    def __init__(self, op: Operation, record: bool = True):
        self.op = op
        #: whether each run written goes into op.changes (see PageTables.map's *record*)
        self.record = record
        self.undo: list[tuple[int, bytes, TableInfo, int, array]] = []
        self.alloc: list[int] = []
        self.defer_free: list[int] = []
        #: tables this operation allocated and has not written yet: all zero, so what a write
        #: replaces there needs no copy (a 64 GiB direct map in 4 KiB pages fills 32 K new
        #: tables in one operation: 256 MiB of copies of zeros otherwise)
        self.unwritten: set[int] = set()


_zero_runs: dict[int, bytes] = {}
_zero_writers: dict[int, array] = {}


def _zeros(nbytes: int) -> bytes:
    z = _zero_runs.get(nbytes)
    if z is None:
        z = _zero_runs[nbytes] = bytes(nbytes)
    return z


def _undo_one(words, i: int, old: int, writers: array, idx: int, old_wid: int) -> None:
    """Undo of :meth:`PageTables.write_pte_slot`: the entry and its writer as they were."""
    words[i] = old
    writers[idx] = old_wid


_NEW = object.__new__


def _no_writers(n: int) -> array:
    z = _zero_writers.get(n)
    if z is None:
        z = _zero_writers[n] = array("H", bytes(2 * n))
    return z


class PageTables:
    """All page tables of one machine and the operations on them.

    ``alloc_table(level, user)`` must return the physical address of a zeroed frame for a
    new table (and raise :class:`mmemu.errors.OutOfMemory` if there is none);
    ``free_table(phys)`` gives one back. Both come from the kernel model, which owns the
    frame allocator.
    """

    def __init__(self, mode: PagingMode, mem, alloc_table: Callable[[Level, bool], int],
                 free_table: Callable[[int], None]):
        self.mode = mode
        self.codec = mode.codec
        self.mem = mem
        self._buf = mem.mem
        self._view = mem.view
        self.alloc_table = alloc_table
        self.free_table = free_table
        self.tables: dict[int, TableInfo] = {}
        self.writers: list[str] = [""]
        self._writer_ids: dict[str, int] = {"": 0}
        self.observers: list[Callable[[Operation], None]] = []
        #: the kernel's own listener (its event stream), told before the observers: of every
        #: completed operation (``on_operation(op)``) and of every one entry written, by its
        #: plain values (``on_entry(writer, kind, va, table, li, idx, old, new)``: no
        #: :class:`EntryWrite` is made for it, the demand fault's pte among them)
        self.on_operation: Callable[[Operation], None] | None = None
        self.on_entry: Callable[..., None] | None = None
        #: the kernel operation's undo journal (mmemu.journal.Journal): each completed
        #: operation records how to put its entries and table records back
        self.journal = None
        self.levels = mode.levels
        self._last = len(self.levels) - 1
        self._split_roots = mode.form == SPLIT
        self._kernel_half = mode.kernel_half
        # valid addresses: va >> _valid_shift is 0 or _valid_top (mode.is_valid, inline)
        if mode.form == SIGN_EXTENDED:
            self._valid_shift, self._valid_top = mode.va_bits - 1, (1 << (65 - mode.va_bits)) - 1
        elif mode.form == SPLIT:
            self._valid_shift, self._valid_top = mode.va_bits, (1 << (64 - mode.va_bits)) - 1
        else:
            self._valid_shift, self._valid_top = mode.va_bits, 0
        self._page_mask = mode.page_size - 1
        #: the kernel half starts where the bits above the translated ones turn all 1 (or
        #: there is none): a range whose two ends have the same such bits is in one half
        self._halves_by_top = not self._kernel_half or self._kernel_half == self._valid_top << self._valid_shift
        #: SPLIT mode: the roots that translate the kernel half (TTBR1)
        self._kernel_roots: set[int] = set()
        #: roots with a user copy (x86 PTI): root -> (copy, limit, keep). A top-level entry
        #: below index *limit* written to the root is written unchanged to the same index of
        #: the copy, and the root keeps ``keep(value)`` (``pti_set_user_pgtbl``). Entries
        #: from *limit* on are the root's own.
        self.user_copies: dict[int, tuple[int, int, Callable[[int], int]]] = {}
        self._unpack = []
        #: per level: RAM as a typed array of its entries (mem.entries) and log2 of the
        #: entry size: entry *idx* of *table* is ``words[(table >> shift) + idx]``
        self._words = [mem.entries(lv.entry_size) for lv in self.levels]
        self._word_shift = [lv.entry_size.bit_length() - 1 for lv in self.levels]
        self._decode = []
        walk_plan = []
        for li, lv in enumerate(self.levels):
            s = struct.Struct("<I" if lv.entry_size == 4 else "<Q")
            self._unpack.append(s)
            decode = self.codec.decoder(li)
            if li != len(self.levels) - 1:
                # an upper level holds few distinct entries (one per table below it, and
                # the large pages): their decodings come from a memo, a C-level lookup
                decode = _Memo(decode).__getitem__
            self._decode.append(decode)
            walk_plan.append((li, lv.shift, lv.entries - 1, lv.entry_size, s.unpack_from, decode, lv.span - 1))
        self._walk_plan = tuple(walk_plan)
        #: per level: the bits of an entry other than its address (the codec's addr_mask)
        #: -> (kind, rights); the generated walk and pte_slot decode tables with them
        self._flags = [_Memo(lambda flags, decode=self.codec.decoder(li): decode(flags)[::2])
                       for li in range(len(self.levels))]
        #: per level: the mask of those other bits, where the codec gives the address mask
        self._flag_bits = []
        for li, lv in enumerate(self.levels):
            fields = self.codec.addr_mask(li)
            self._flag_bits.append(None if fields is None else ~fields[0] & ((1 << 8 * lv.entry_size) - 1))
        #: protections _check_map_prot has accepted
        self._prots_ok: set[int] = set()
        #: prot -> what map_frames of one page encodes its entry with (_frame_coding_of)
        self._frame_coding: dict[int, tuple[int, int] | tuple[()]] = {}
        # the walk of every software translation and fault: the loop of walk() unrolled
        # for this mode's levels (the method stays the readable reference)
        self.walk = _unrolled_walk(self)
        self.pte_slot = _unrolled_pte_slot(self)
        self.pte_entry = _unrolled_pte_entry(self)

    # -- bookkeeping --------------------------------------------------------------------

    def writer_id(self, writer: str) -> int:
        wid = self._writer_ids.get(writer)
        if wid is None:
            wid = len(self.writers)
            if wid > 0xFFFF:
                raise MappingError("more than 65535 distinct page-table writers")
            self.writers.append(writer)
            self._writer_ids[writer] = wid
        return wid

    def writer_of(self, entry_addr: int) -> str:
        """Which part of the kernel last wrote the entry at this physical address."""
        table = entry_addr & ~0xFFF
        info = self.tables.get(table)
        if info is None:
            return ""
        size = self.levels[info.level_index].entry_size
        return self.writers[info.writers[(entry_addr - table) // size]]

    def _new_table(self, li: int, user: bool, owner: str, txn: _Txn | None) -> int:
        lv = self.levels[li]
        phys = self.alloc_table(lv, user)
        if txn is not None:
            txn.alloc.append(phys)
            txn.unwritten.add(phys)
            txn.op.tables_allocated.append(phys)
        elif self.journal is not None:
            self.journal.record(self.tables.pop, phys)
        self.tables[phys] = TableInfo(phys, li, owner, array("H", bytes(2 * lv.entries)))
        return phys

    def adopt_table(self, phys: int, level_index: int, owner: str, pinned: bool = False,
                    kernel_root: bool = False) -> None:
        """Register a table the engine did not allocate (a root in the kernel image, the
        PAE user pmds that pgd_alloc preallocates: *pinned*, never freed by unmap).
        *kernel_root*: in a SPLIT mode, a root for the kernel half (swapper_pg_dir)."""
        lv = self.levels[level_index]
        if self.journal is not None:
            self.journal.record(self.forget_table, phys)
        self.tables[phys] = TableInfo(phys, level_index, owner, array("H", bytes(2 * lv.entries)), pinned)
        if kernel_root and self._split_roots:
            self._kernel_roots.add(phys)

    def new_root(self, owner: str, user: bool = False) -> int:
        """Allocate an empty top-level table (a pgd) and return its physical address."""
        return self._new_table(0, user, owner, None)

    def forget_table(self, phys: int) -> None:
        """Drop the record of a table whose frame the caller frees (pgd_free)."""
        info = self.tables.pop(phys, None)
        if info is not None and self.journal is not None:
            self.journal.record(self._readopt, info, phys in self._kernel_roots)
        self._kernel_roots.discard(phys)

    def _readopt(self, info: TableInfo, kernel_root: bool) -> None:
        self.tables[info.phys] = info
        if kernel_root:
            self._kernel_roots.add(info.phys)

    def is_kernel_root(self, root: int) -> bool:
        """SPLIT mode: whether *root* translates the kernel half."""
        return root in self._kernel_roots

    def _write(self, txn: _Txn, table: int, li: int, index: int, values: array | list[int], wid: int,
               old: bytes | None = None) -> None:
        """Write *values* from entry *index* of *table*, recording the entries before (*old*:
        the caller's copy of them when it has read them already) for the undo and the
        operation's changes."""
        size = self.levels[li].entry_size
        start = table + index * size
        new = values if isinstance(values, array) else array("I" if size == 4 else "Q", values)
        if li == 0 and table in self.user_copies:
            new = self._write_user_copy(txn, table, index, new, wid)
            old = None
        n = len(new)
        nbytes = n * size
        info = self.tables[table]
        if table in txn.unwritten:
            txn.unwritten.discard(table)
            old, old_w = _zeros(nbytes), _no_writers(n)
        else:
            if old is None:
                old = self._buf[start:start + nbytes]
            old_w = info.writers[index:index + n]
        raw = new.tobytes()
        self._view[start:start + nbytes] = raw
        info.writers[index:index + n] = _writer_run(wid, n)
        txn.undo.append((start, old, info, index, old_w))
        if txn.record:
            txn.op.changes.append(Change(table, self.levels[li], li, index, old, raw, self.writers[wid]))

    def _write_user_copy(self, txn: _Txn, table: int, index: int, new: array, wid: int) -> array:
        """The user entries of a run written to a root with a user copy: written unchanged
        to the copy; the run the root keeps is returned."""
        copy, limit, keep = self.user_copies[table]
        n = min(len(new), limit - index)
        if n <= 0:
            return new
        self._write(txn, copy, 0, index, new[:n], wid)
        kept = array(new.typecode, new)
        for i in range(n):
            kept[i] = keep(new[i])
        return kept

    def _run(self, op: Operation, body: Callable[[_Txn], None]) -> Operation:
        op.mode = self.mode
        txn = _Txn(op)
        try:
            body(txn)
        except BaseException:
            for start, old, info, index, old_w in reversed(txn.undo):
                self._unwrite(start, old, info, index, old_w)
            for phys in reversed(txn.alloc):
                del self.tables[phys]
                self.free_table(phys)
            raise
        return self._complete(txn)

    def _one_run(self, op: Operation, table: int, li: int, index: int, raw: bytes, old: bytes,
                 wid: int) -> Operation:
        """The whole of an operation that writes one run of entries of one known table,
        its checks made (a vmalloc area inside one page table, its unmap): the write (the
        entries *raw* over *old*), its undo record and its change, the observers told; what
        :meth:`_write` and :meth:`_complete` do for any number of runs, without a
        transaction of its own (with one write, nothing can fail half-way)."""
        lv = self.levels[li]
        n = len(raw) // lv.entry_size
        start = table + index * lv.entry_size
        info = self.tables[table]
        old_w = info.writers[index:index + n]
        self._view[start:start + len(raw)] = raw
        info.writers[index:index + n] = _writer_run(wid, n)
        j = self.journal
        if j is not None and j.undo is not None:
            j.undo.append((self._unwrite, (start, old, info, index, old_w)))
        op.mode = self.mode
        op._run = (table, lv, li, index, old, raw)
        if self.on_operation is not None:
            self.on_operation(op)
        for observer in self.observers:
            observer(op)
        return op

    def _complete(self, txn: _Txn) -> Operation:
        """The end of an operation whose writes all succeeded: the tables it emptied freed,
        its undo handed to the kernel's journal, the observers told. An operation whose
        checks all come before its one write (a run inside one existing table) calls this
        directly: nothing can fail half-way, so it needs no rollback of its own."""
        op = txn.op
        op.mode = self.mode
        freed = []
        for phys in txn.defer_free:
            freed.append(self.tables.pop(phys))
            self.free_table(phys)
        j = self.journal
        if j is not None and j.undo is not None and (txn.undo or txn.alloc or freed):
            j.undo.append((self._undo_run, (txn.undo, txn.alloc, freed)))
        if op._changes or op._tables_allocated or op._tables_freed:
            if self.on_operation is not None:
                self.on_operation(op)
            for observer in self.observers:
                observer(op)
        return op

    def _unwrite(self, start: int, old: bytes, info: TableInfo, index: int, old_w: array) -> None:
        """Put back one run of entries (the bytes *old* at *start*) and their writers."""
        self._view[start:start + len(old)] = old
        info.writers[index:index + len(old_w)] = old_w

    def _undo_run(self, undo: list, alloc: list[int], freed: list[TableInfo]) -> None:
        """Undo a completed operation (the kernel operation it was part of failed): its
        entries and writers as they were, its new tables forgotten (their frames go back
        with the allocator's own undo), the tables it freed known again."""
        for start, old, info, index, old_w in reversed(undo):
            self._unwrite(start, old, info, index, old_w)
        for phys in alloc:
            self.tables.pop(phys, None)
        for info in freed:
            self.tables[info.phys] = info

    def _read(self, li: int, epa: int) -> int:
        return self._unpack[li].unpack_from(self._buf, epa)[0]

    def _read_table(self, table: int, li: int) -> array:
        lv = self.levels[li]
        a = array("I" if lv.entry_size == 4 else "Q")
        a.frombytes(self._buf[table:table + lv.table_size])
        return a

    # -- walking ------------------------------------------------------------------------

    def check_va(self, va: int) -> None:
        if not self.mode.is_valid(va):
            raise AddressError(self.mode.describe_invalid(va))

    def _check_root_half(self, root: int, va: int) -> None:
        kernel = va >= self.mode.kernel_half
        if kernel != (root in self._kernel_roots):
            raise AddressError(f"{va:#x} is translated by the {'kernel' if kernel else 'user'} root "
                               f"({'TTBR1' if kernel else 'TTBR0'}), not by the table at {root:#x}")

    def untranslated(self, va: int) -> Walk:
        """The walk of an address the MMU does not translate (:meth:`check_va` refuses it):
        no entry read, ``missing`` is ``non-canonical``; its :meth:`Walk.fault` is what the
        CPU raises there (the arch's codec encodes it: #GP(0) on x86_64)."""
        return Walk(va, (None,), self.mode, None, 0, NON_CANONICAL)  # no root: nothing read

    def walk(self, root: int, va: int) -> Walk:
        """Walk *va* from the top-level table at *root*, as the MMU would (an address
        outside the translated space is refused: AddressError; :meth:`untranslated`)."""
        # the address-space check inline (the hot path): the bits above the translated
        # ones must be all 0 (or all 1 where the mode has a kernel half)
        top = va >> self._valid_shift
        if top and top != self._valid_top or va < 0:
            self.check_va(va)
        if self._split_roots and (va >= self._kernel_half) != (root in self._kernel_roots):
            self._check_root_half(root, va)
        buf = self._buf
        table = root
        raws = [root]
        rights = ALL_RIGHTS
        for li, shift, imask, esz, unpack, decode, offmask in self._walk_plan:
            epa = table + ((va >> shift) & imask) * esz
            raw = unpack(buf, epa)[0]
            raws.append(raw)
            kind, addr, r = decode(raw)
            if kind == 1:  # TABLE
                rights &= r
                table = addr
                continue
            if kind == 2:  # LEAF
                return Walk(va, tuple(raws), self.mode, addr | (va & offmask), (rights & r) | (r & AF_FAULT), None)
            return Walk(va, tuple(raws), self.mode, None, 0, NOT_PRESENT if kind == NONE else RESERVED_FAULT)
        self._ran_past(va)

    def _ran_past(self, va: int) -> None:
        raise MappingError(f"the walk of {va:#x} ran past the last level (the codec called a last-level "
                           "entry a table)")

    def translate(self, root: int, va: int, access: str = "read", user: bool = False) -> tuple[Walk, Fault | None]:
        """Walk and check one access: (walk, fault or None)."""
        w = self.walk(root, va)
        return w, w.fault(access, user)

    # -- mapping ------------------------------------------------------------------------

    def _check_range(self, va: int, size: int, pa: int | None = None) -> None:
        vs = self._valid_shift
        top = va >> vs
        if top == (va + size - 1) >> vs and (not top or top == self._valid_top) and size > 0 and \
                not (va | size) & self._page_mask and pa is None and self._halves_by_top:
            return  # the common case: page aligned, translated, inside one half (below, in full)
        page = self.mode.page_size
        if size <= 0 or size % page or va % page or (pa is not None and pa % page):
            raise MappingError(f"range {va:#x}+{size:#x} (phys {pa if pa is None else hex(pa)}) is not page aligned")
        # mode.is_valid of both ends, inline (every map and unmap passes here)
        last = va + size - 1
        vs, vt = self._valid_shift, self._valid_top
        if (va >> vs and va >> vs != vt) or va < 0:
            self.check_va(va)
        if last >> vs and last >> vs != vt:
            self.check_va(last)
        kh = self._kernel_half
        if kh and (va >= kh) != (last >= kh):
            raise MappingError(f"range {va:#x}+{size:#x} crosses from the user half into the kernel half")
        if pa is not None and (pa < 0 or pa + size > (1 << self.mode.pa_bits)):
            raise MappingError(f"physical range {pa:#x}+{size:#x} exceeds the {self.mode.pa_bits}-bit physical "
                               "address space")

    def _check_map_prot(self, prot: int) -> None:
        if prot in self._prots_ok:  # checked before: the codec's verdict is a function of prot
            return
        self.codec.check_prot(prot)
        if self._decode[self._last](self.codec.mk_leaf(self._last, 0, prot))[0] != LEAF:
            raise MappingError(f"protection {prot:#x} maps nothing: its entries would not be valid for the MMU")
        if type(prot) is int and len(self._prots_ok) < 256:
            self._prots_ok.add(prot)

    def _sizes(self, page_sizes) -> frozenset[int]:
        allowed = set(self.mode.leaf_sizes()) if page_sizes is None else set(page_sizes)
        allowed.add(self.mode.page_size)
        return frozenset(allowed)

    def map(self, root: int, va: int, pa: int, size: int, prot: int, *, writer: str,
            page_sizes=None, user_tables: bool = False, replace: bool = False,
            record: bool = True) -> Operation:
        """Map ``[va, va+size)`` to ``[pa, pa+size)`` with the protection *prot* (a pgprot in
        pte form), choosing for each piece the largest page that *page_sizes* allows and the
        alignment of both addresses permits. New intermediate tables get the codec's kernel
        table entries, or user ones with *user_tables*. Present entries in the range are an
        error unless *replace*.

        *record* False leaves the operation's ``changes`` empty (its range, tables and undo
        are kept): for the boot's own tables, built before anyone observes, where a copy of
        every entry written (a 64 GiB machine in 4 KiB pages: 128 MiB) would be made only to
        be dropped."""
        self._check_range(va, size, pa)
        self._check_map_prot(prot)
        sizes = self._sizes(page_sizes)
        wid = self.writer_id(writer)
        op = Operation(writer, "map", va, size)

        def body(txn: _Txn) -> None:
            txn.record = record
            self._map(txn, root, 0, va, va + size, pa, prot, sizes, user_tables, replace, wid)
        return self._run(op, body)

    def _map(self, txn, table, li, va, end, pa, prot, sizes, user_tables, replace, wid):
        lv = self.levels[li]
        span = lv.span
        last = li == self._last
        can_leaf = lv.can_map and (last or span in sizes)
        decode = self._decode[li]
        codec = self.codec
        while va < end:
            idx = (va >> lv.shift) & (lv.entries - 1)
            if can_leaf and not (va | pa) & (span - 1) and end - va >= span:
                n = min((end - va) >> lv.shift, lv.entries - idx)
                start = table + idx * lv.entry_size
                old = self._buf[start:start + n * lv.entry_size]
                if old.count(0) != len(old):  # not all zero (any() is 100x slower)
                    raws = struct.unpack("<%d%s" % (n, "I" if lv.entry_size == 4 else "Q"), old)
                    kinds = [decode(raw)[0] for raw in raws]
                    if not last:
                        # an entry pointing to a table (kept after an unmap) is never
                        # overwritten, which would orphan the table: the run stops before
                        # it and the range is mapped inside it, as phys_pmd_init does
                        n = next((k for k, kind in enumerate(kinds) if kind == TABLE), n)
                    if not replace:
                        for k in range(n):
                            if kinds[k] != NONE:
                                raise MappingError(f"{va + k * span:#x} is already mapped ({lv.name} entry "
                                                   f"{raws[k]:#x})")
                if n:
                    self._write(txn, table, li, idx, codec.leaf_run(li, pa, n, prot), wid,
                                old if len(old) == n * lv.entry_size else None)
                    va += n * span
                    pa += n * span
                    continue
            if last:
                raise MappingError(f"cannot map {va:#x}: not page aligned")
            stop = min(end, (va | (span - 1)) + 1)
            raw = self._read(li, table + idx * lv.entry_size)
            kind, addr, _ = decode(raw)
            if kind == NONE:
                child = self._new_table(li + 1, user_tables, f"page table ({self.levels[li + 1].name})", txn)
                self._write(txn, table, li, idx, [codec.mk_table(li, child, user_tables)], wid)
            elif kind == LEAF:
                if not replace:
                    raise MappingError(f"{va:#x} is already mapped by a {span >> 10} KiB page ({lv.name} entry "
                                       f"{raw:#x})")
                child = self._split(txn, table, li, idx, raw, wid)
            elif kind == RESERVED:
                raise MappingError(f"{va:#x}: the {lv.name} entry {raw:#x} is malformed")
            else:
                child = addr
            self._map(txn, child, li + 1, va, stop, pa, prot, sizes, user_tables, replace, wid)
            pa += stop - va
            va = stop

    def _split(self, txn: _Txn, table: int, li: int, idx: int, raw: int, wid: int) -> int:
        """Replace a large-page entry by a table of smaller pages mapping the same frames
        with the same protection (the kernel's ``split_large_page``)."""
        child_lv = self.levels[li + 1]
        if not child_lv.can_map:
            raise MappingError(f"a {self.levels[li].name} leaf cannot be split: {child_lv.name} entries map no page")
        _kind, base, rights = self._decode[li](raw)
        prot = self.codec.leaf_prot(li, raw)
        user = bool(rights & (UR | UW | UX))
        child = self._new_table(li + 1, user, f"page table ({child_lv.name})", txn)
        self._write(txn, child, li + 1, 0, self.codec.leaf_run(li + 1, base, child_lv.entries, prot), wid)
        self._write(txn, table, li, idx, [self.codec.mk_table(li, child, user)], wid)
        return child

    def populate(self, root: int, va: int, size: int, *, writer: str, user_tables: bool = False,
                 down_to: int | None = None) -> Operation:
        """Make sure the tables exist for ``[va, va+size)``, down to the level index
        *down_to* (default: the last level), mapping nothing (``page_table_range_init``
        for the fixmap and pkmap areas; ``preallocate_vmalloc_pages`` with down_to=1). A
        large page in the way is an error."""
        self._check_range(va, size)
        wid = self.writer_id(writer)
        op = Operation(writer, "populate", va, size)
        deepest = self._last if down_to is None else down_to
        return self._run(op, lambda txn: self._populate(txn, root, 0, va, va + size, user_tables, wid, deepest))

    def map_frames(self, root: int, va: int, frames, prot: int, *, writer: str, user_tables: bool = False) -> Operation:
        """Map the 4 KiB frames *frames* (pfns, in order) at consecutive pages from *va*:
        what ``vmap``/``vmalloc`` do with pages scattered over physical memory. Creates the
        tables it needs; one transaction, one operation. Present entries are an error."""
        page = self._page_mask + 1
        n = len(frames)
        self._check_range(va, n * page)
        if prot not in self._prots_ok:
            self._check_map_prot(prot)
        last = self._last
        slot = self.pte_slot(root, va)
        if slot is not None and n == 1:  # one page: one entry, written as a fault writes its pte
            table, idx = slot
            old = self._words[last][(table >> self._word_shift[last]) + idx]
            if old and self._decode[last](old)[0] != NONE:
                raise MappingError(f"{va:#x} is already mapped (pte {old:#x})")
            coding = self._frame_coding.get(prot)
            if coding is None:
                coding = self._frame_coding_of(prot)
            leaf = coding[0] + frames[0] * coding[1] if coding else \
                self.codec.leaves_for_frames(last, frames, prot)[0]
            return self._write_one(table, last, idx, leaf, writer, "map", va)
        lv = self.levels[last]
        if slot is not None and slot[1] + n <= lv.entries:
            # the common case (a small area): one page table already there holds every
            # entry; checked before the one write, so there is nothing to roll back
            table, idx = slot
            wid = self.writer_id(writer)
            start = table + idx * lv.entry_size
            old = self._buf[start:start + n * lv.entry_size]
            self._check_unused(old, va, last)
            return self._one_run(Operation(writer, "map", va, n * page), table, last, idx,
                                 self.codec.leaves_for_frames(last, frames, prot).tobytes(), old, wid)

        wid = self.writer_id(writer)

        def body(txn: _Txn) -> None:
            self._populate(txn, root, 0, va, va + n * page, user_tables, wid, last)
            i = 0
            while i < n:
                table, idx = self.pte_slot(root, va + i * page)
                run = min(n - i, lv.entries - idx)
                start = table + idx * lv.entry_size
                old = self._buf[start:start + run * lv.entry_size]
                self._check_unused(old, va + i * page, last)
                self._write(txn, table, last, idx, self.codec.leaves_for_frames(last, frames[i:i + run], prot), wid)
                i += run
        return self._run(Operation(writer, "map", va, n * page), body)

    def _frame_coding_of(self, prot: int) -> tuple[int, int] | tuple[()]:
        """(the last level's leaf of frame 0, what one frame more adds) for *prot*, where
        the codec encodes frames with EntryCodec's own linear leaves_for_frames; () where
        it has its own (the one-page map then asks it)."""
        coding: tuple[int, int] | tuple[()] = ()
        if type(self.codec).leaves_for_frames is EntryCodec.leaves_for_frames:
            zero, one = self.codec.leaves_for_frames(self._last, (0, 1), prot)
            coding = (zero, one - zero)
        if len(self._frame_coding) < 256:
            self._frame_coding[prot] = coding
        return coding

    def _check_unused(self, old: bytes, va: int, li: int) -> None:
        """Refuse to map over a present entry among the raw entries *old* (from *va*)."""
        if old.count(0) != len(old):  # not all zero (any() is 100x slower)
            lv = self.levels[li]
            decode = self._decode[li]
            fmt = "<%d%s" % (len(old) // lv.entry_size, "I" if lv.entry_size == 4 else "Q")
            for k, raw in enumerate(struct.unpack(fmt, old)):
                if decode(raw)[0] != NONE:
                    raise MappingError(f"{va + k * lv.span:#x} is already mapped (pte {raw:#x})")

    def _populate(self, txn, table, li, va, end, user_tables, wid, deepest) -> None:
        if li >= deepest:
            return
        lv = self.levels[li]
        span = lv.span
        decode = self._decode[li]
        while va < end:
            idx = (va >> lv.shift) & (lv.entries - 1)
            stop = min(end, (va | (span - 1)) + 1)
            raw = self._read(li, table + idx * lv.entry_size)
            kind, addr, _ = decode(raw)
            if kind == NONE:
                child = self._new_table(li + 1, user_tables, f"page table ({self.levels[li + 1].name})", txn)
                self._write(txn, table, li, idx, [self.codec.mk_table(li, child, user_tables)], wid)
            elif kind == LEAF:
                raise MappingError(f"{va:#x} is mapped by a large page: no {self.levels[li + 1].name} table to populate")
            elif kind == RESERVED:
                raise MappingError(f"{va:#x}: the {lv.name} entry {raw:#x} is malformed")
            else:
                child = addr
            self._populate(txn, child, li + 1, va, stop, user_tables, wid, deepest)
            va = stop

    # -- one entry at a time (the hot paths: demand faults, kmap, fixmap) --------------

    def pte_slot(self, root: int, va: int) -> tuple[int, int] | None:
        """(table, index) of the last-level entry for *va*, if every table above exists
        and no large page covers it; None otherwise. Reads only. (The reference loop:
        instances use the same, unrolled for their mode.)"""
        buf = self._buf
        table = root
        last = self._last
        for li, shift, imask, esz, unpack, decode, _off in self._walk_plan:
            idx = (va >> shift) & imask
            if li == last:
                return table, idx
            kind, addr, _r = decode(unpack(buf, table + idx * esz)[0])
            if kind != TABLE:
                return None
            table = addr
        return None

    def set_pte(self, root: int, va: int, value: int, *, writer: str, user_tables: bool = False,
                kind: str = "set_pte") -> int:
        """Write the last-level entry for the page at *va* (``set_pte_at``), creating the
        tables above it if needed (``pte_alloc``); return the value it held. Writing 0
        where no table exists changes nothing. One operation, reported to the observers."""
        va &= ~(self.mode.page_size - 1)
        slot = self.pte_slot(root, va)
        if slot is None:
            if not value:
                return 0
            self.check_va(va)
            self.populate(root, va, self.mode.page_size, writer=writer, user_tables=user_tables)
            slot = self.pte_slot(root, va)
            if slot is None:
                raise MappingError(f"{va:#x} is mapped by a large page: no page table to write a pte into")
        table, idx = slot
        return self.write_pte_slot(table, idx, value, writer, va, -1, kind)

    def pte_entry(self, root: int, va: int) -> tuple[tuple[int, int], int] | None:
        """((table, index), value) of the last-level entry for *va* (``pte_offset_map`` then
        ``ptep_get``), or None where :meth:`pte_slot` finds no page table. (The reference:
        instances use the same, unrolled for their mode.)"""
        slot = self.pte_slot(root, va)
        return None if slot is None else (slot, self.read_entry(slot[0], slot[1]))

    def read_entry(self, table: int, index: int, level_index: int | None = None) -> int:
        """One entry of a table (the last level unless *level_index* says otherwise)."""
        li = self._last if level_index is None else level_index
        return self._unpack[li].unpack_from(self._buf, table + index * self.levels[li].entry_size)[0]

    def set_entry(self, table: int, level_index: int, index: int, value: int, *, writer: str,
                  va: int = 0, kind: str = "set_entry") -> int:
        """Write one entry of a table the engine knows (``set_pgd`` into a page directory);
        return the value it held. One operation, reported to the observers."""
        info = self.tables.get(table)
        if info is None or info.level_index != level_index:
            raise MappingError(f"{table:#x} is not a known {self.levels[level_index].name} table")
        if not 0 <= index < self.levels[level_index].entries:
            raise MappingError(f"index {index} is outside a {self.levels[level_index].name} table")
        return self.write_pte_slot(table, index, value, writer, va, level_index, kind)

    def set_entries(self, table: int, level_index: int, index: int, values, *, writer: str,
                    va: int = 0) -> Operation:
        """Write *values* into consecutive entries of a table the engine knows, from *index*
        (entries pointing at tables or pages the caller chose: x86_64's ESPfix sets 512 pmd
        entries to one pte page). One operation, reported to the observers."""
        info = self.tables.get(table)
        lv = self.levels[level_index]
        if info is None or info.level_index != level_index:
            raise MappingError(f"{table:#x} is not a known {lv.name} table")
        values = list(values)
        if not 0 <= index or index + len(values) > lv.entries:
            raise MappingError(f"entries {index}..{index + len(values) - 1} are outside a {lv.name} table")
        wid = self.writer_id(writer)
        op = Operation(writer, "set_entries", va, len(values) * lv.span)
        return self._run(op, lambda txn: self._write(txn, table, level_index, index, values, wid))

    def write_pte_slot(self, table: int, idx: int, value: int, writer: str, va: int = 0, li: int = -1,
                       kind: str = "set_pte", observed: bool = True) -> int:
        """Write entry *idx* of *table*, a last-level one found with :meth:`pte_slot` (or of
        level *li*), in place, and return the value it held. One operation: its undo one
        record, the kernel's listener told by the plain values (:attr:`on_entry`); an
        :class:`EntryWrite` is made only if an observer is registered. (Every one-entry write
        of the engine comes here: the demand fault's pte among them.) *observed* False: the
        caller tells the observers itself (:meth:`_write_one`)."""
        if li < 0:
            li = self._last
        if li == 0 and table in self.user_copies:
            copy, limit, keep = self.user_copies[table]
            if idx < limit:
                self.write_pte_slot(copy, idx, value, writer, va, 0, kind)
                value = keep(value)
        words = self._words[li]
        i = (table >> self._word_shift[li]) + idx  # the entry's index in the typed view of RAM
        old = words[i]
        words[i] = value
        wid = self._writer_ids.get(writer)
        if wid is None:
            wid = self.writer_id(writer)
        writers = self.tables[table].writers
        j = self.journal
        if j is not None and j.undo is not None:
            j.undo.append((_undo_one, (words, i, old, writers, idx, writers[idx])))
        writers[idx] = wid
        if self.on_entry is not None:
            self.on_entry(writer, kind, va, table, li, idx, old, value)
        if observed and self.observers:
            op = self._entry_write(writer, kind, va, table, li, idx, old, value)
            for observer in self.observers:
                observer(op)
        return old

    def _entry_write(self, writer: str, kind: str, va: int, table: int, li: int, idx: int, old: int,
                     new: int) -> EntryWrite:
        """The :class:`EntryWrite` of one entry written, filled in without a call of ``__init__``."""
        op = _NEW(EntryWrite)
        op.writer, op.kind, op.va, op._pt, op._table, op._li, op._idx, op._old, op._new = \
            writer, kind, va, self, table, li, idx, old, new
        op._changes = None
        return op

    def _write_one(self, table: int, li: int, idx: int, value: int, writer: str, kind: str,
                   va: int) -> EntryWrite:
        """:meth:`write_pte_slot`, for an operation that returns its :class:`EntryWrite` (the
        observers are given the same one)."""
        old = self.write_pte_slot(table, idx, value, writer, va, li, kind, False)
        op = self._entry_write(writer, kind, va, table, li, idx, old, value)
        for observer in self.observers:
            observer(op)
        return op

    def read_pte(self, root: int, va: int) -> int:
        """The last-level entry for *va* (0 if no page table reaches it)."""
        slot = self.pte_slot(root, va)
        if slot is None:
            return 0
        table, idx = slot
        return self._unpack[self._last].unpack_from(self._buf, table + idx * self.levels[self._last].entry_size)[0]

    def unmap(self, root: int, va: int, size: int, *, writer: str, free_tables: bool = False) -> Operation:
        """Clear every mapping in ``[va, va+size)``; a large page partly inside is split
        first. Returns the operation, whose ``unmapped`` lists what was mapped. With
        *free_tables*, tables left empty are freed and their entries cleared (as
        ``free_pgtables`` does for user memory; the kernel keeps its own tables). Entries
        the MMU does not use (PROT_NONE, swap) are left alone."""
        self._check_range(va, size)
        if not free_tables:
            lv = self.levels[self._last]
            slot = self.pte_slot(root, va)
            n = size >> lv.shift
            if slot is not None and slot[1] + n <= lv.entries:
                # the range lies inside one page table (a vmalloc area, a small VMA): its
                # entries cleared without the walk down, and nothing can fail half-way
                table, idx = slot
                if n == 1:  # one page (a vmalloc area of one): one entry, if it maps one
                    last = self._last
                    raw = self._words[last][(table >> self._word_shift[last]) + idx]
                    if raw:
                        # its kind: of its bits other than the address where the codec says
                        # which they are (a memo, as the walk does), else decoded
                        flag_bits = self._flag_bits[last]
                        kind = self._flags[last][raw & flag_bits][0] if flag_bits is not None else \
                            self._decode[last](raw)[0]
                        if kind == LEAF:
                            return self._write_one(table, last, idx, 0, writer, "unmap", va)
                op = Operation(writer, "unmap", va, size)
                wid = self.writer_id(writer)
                start = table + idx * lv.entry_size
                old = self._buf[start:start + n * lv.entry_size]
                unmapped = self._leaves_of(old, va, self._last)
                if unmapped is not None:  # all leaves: one run, cleared at once
                    op.unmapped = unmapped
                    return self._one_run(op, table, self._last, idx, _zeros(len(old)), old, wid)
                txn = _Txn(op)
                self._unmap_last(txn, table, self._last, va, va + size, wid)
                return self._complete(txn)
        wid = self.writer_id(writer)
        return self._run(Operation(writer, "unmap", va, size),
                         lambda txn: self._unmap(txn, root, 0, va, va + size, wid, free_tables))

    def _leaves_of(self, raw: bytes, va: int, li: int) -> list[tuple[int, int, int]] | None:
        """(va, phys, size) of each entry of the run *raw* of level *li* (from *va*), if
        they are all leaves; None if one is not."""
        lv = self.levels[li]
        flag_bits = self._flag_bits[li]
        if flag_bits is not None and li == self._last:  # as _unmap_last: kept as the entries
            row = array("I" if lv.entry_size == 4 else "Q")
            row.frombytes(raw)
            kinds = self._flags[li]
            if all(kinds[f][0] == LEAF for f in {e & flag_bits for e in row}):
                return [_Leaves(self, li, va, row)]
            return None
        decode = self._decode[li]
        shift = lv.shift
        out = []
        for k, entry in enumerate(memoryview(raw).cast("I" if lv.entry_size == 4 else "Q")):
            kind, addr, _ = decode(entry)
            if kind != LEAF:
                return None
            out.append((va + (k << shift), addr, lv.span))
        return out

    def _unmap(self, txn, table, li, va, end, wid, free_tables) -> None:
        if li == self._last:
            self._unmap_last(txn, table, li, va, end, wid)
            return
        lv = self.levels[li]
        span = lv.span
        decode = self._decode[li]
        while va < end:
            idx = (va >> lv.shift) & (lv.entries - 1)
            stop = min(end, (va | (span - 1)) + 1)
            raw = self._read(li, table + idx * lv.entry_size)
            kind, addr, _ = decode(raw)
            if kind == NONE or kind == RESERVED:
                if raw:
                    txn.op.kept += 1
                va = stop
                continue
            if kind == LEAF and stop - va == span:
                txn.op._unmapped_items().append((va, addr, span))
                self._write(txn, table, li, idx, [0], wid)
                va = stop
                continue
            child = self._split(txn, table, li, idx, raw, wid) if kind == LEAF else addr
            self._unmap(txn, child, li + 1, va, stop, wid, free_tables)
            if free_tables and not self.tables[child].pinned and \
                    not any(self._buf[child:child + self.levels[li + 1].table_size]):
                self._write(txn, table, li, idx, [0], wid)
                txn.defer_free.append(child)
                txn.op.tables_freed.append(child)
            va = stop

    def _unmap_last(self, txn, table, li, va, end, wid) -> None:
        """The last level of :meth:`_unmap`: the entries of ``[va, end)`` read at once, each
        run of leaves cleared with one write (a VMA's pages, a vmalloc area: one run per
        table, not one write per page); entries the MMU does not use stay. Where the codec
        gives the level's address mask, a range of leaves only (a process's faulted-in
        pages) is known by the distinct values of the entries' other bits, and its pages
        are kept as the entries (:class:`_Leaves`), not decoded one by one."""
        lv = self.levels[li]
        shift, esz, span = lv.shift, lv.entry_size, lv.span
        first = (va >> shift) & (lv.entries - 1)
        n = (end - va + span - 1) >> shift
        start = table + first * esz
        old = self._buf[start:start + n * esz]
        row = array("I" if esz == 4 else "Q")
        row.frombytes(old)
        flag_bits = self._flag_bits[li]
        if flag_bits is not None:
            kinds = self._flags[li]
            if all(kinds[f][0] == LEAF for f in {raw & flag_bits for raw in row}):
                txn.op._add_leaves(_Leaves(self, li, va, row))
                self._write(txn, table, li, first, array(row.typecode, _zeros(len(old))), wid, old)
                return
        decode = self._decode[li]
        unmapped = txn.op._unmapped_items()
        run = -1  # where the run of leaves being collected starts (index into row)
        for k, raw in enumerate(row):
            if raw:
                kind, addr, _ = decode(raw)
                if kind == LEAF:
                    unmapped.append((va + (k << shift), addr, span))
                    if run < 0:
                        run = k
                    continue
                txn.op.kept += 1
            if run >= 0:
                self._write(txn, table, li, first + run, array(row.typecode, bytes((k - run) * esz)), wid,
                            row[run:k].tobytes())
                run = -1
        if run >= 0:
            self._write(txn, table, li, first + run, array(row.typecode, bytes((n - run) * esz)), wid,
                        row[run:].tobytes())

    def protect(self, root: int, va: int, size: int, prot: int, *, writer: str) -> Operation:
        """Give every present leaf in ``[va, va+size)`` the protection *prot*
        (``pte_modify``: the frame and the bits the arch keeps stay), splitting a large
        page that the range covers only in part (``change_page_attr``, ``set_memory_ro``).
        Unmapped pieces are skipped."""
        self._check_range(va, size)
        self._check_map_prot(prot)
        wid = self.writer_id(writer)
        op = Operation(writer, "protect", va, size)
        return self._run(op, lambda txn: self._protect(txn, root, 0, va, va + size, prot, wid))

    def _protect(self, txn, table, li, va, end, prot, wid) -> None:
        lv = self.levels[li]
        span = lv.span
        decode = self._decode[li]
        modify = self.codec.modify
        while va < end:
            idx = (va >> lv.shift) & (lv.entries - 1)
            stop = min(end, (va | (span - 1)) + 1)
            raw = self._read(li, table + idx * lv.entry_size)
            kind, addr, _ = decode(raw)
            if kind != LEAF and kind != TABLE:
                va = stop
                continue
            if kind == LEAF and stop - va == span:
                # a run of whole entries that are leaves (or empty): one write
                n_max = min((end - va) >> lv.shift, lv.entries - idx)
                start = table + idx * lv.entry_size
                olds = struct.unpack("<%d%s" % (n_max, "I" if lv.entry_size == 4 else "Q"),
                                     self._buf[start:start + n_max * lv.entry_size])
                news = []
                for o in olds:
                    k = decode(o)[0]
                    if k == TABLE:
                        break  # descended into on the next round
                    news.append(modify(li, o, prot) if k == LEAF else o)
                if news != list(olds[:len(news)]):
                    self._write(txn, table, li, idx, news, wid)
                va += len(news) * span
                continue
            child = self._split(txn, table, li, idx, raw, wid) if kind == LEAF else addr
            self._protect(txn, child, li + 1, va, stop, prot, wid)
            va = stop

    # -- reading ------------------------------------------------------------------------

    def decode(self, li: int, raw: int) -> tuple[int, int, int]:
        """The codec's (kind, addr, rights) of an entry of level *li*."""
        return self._decode[li](raw)

    def parse(self, li: int, raw: int):
        """Parse an entry with the level's construct format (display, validation)."""
        lv = self.levels[li]
        return self.codec.format_for(li, raw).struct.parse(raw.to_bytes(lv.entry_size, "little"))

    def flag_names(self, li: int, raw: int) -> list[str]:
        """Names of the flags set in *raw*, as the arch's tools print them."""
        return self.codec.flag_names(li, raw)

    def entries(self, table: int, li: int) -> array:
        """All entries of a table, as integers."""
        return self._read_table(table, li)

    def table_bytes(self, table: int, li: int) -> bytes:
        """The raw bytes of a table (little-endian entries), for whole-table comparisons."""
        return bytes(self._buf[table:table + self.levels[li].table_size])

    def iter_leaves(self, root: int, start: int = 0, end: int | None = None) -> Iterator[tuple[int, int, int, int, int]]:
        """Every mapped leaf in ``[start, end)`` in address order: (va, size, phys, raw,
        level index). Not-present subtrees are skipped without reading them."""
        if end is None:
            end = self.mode.va_limit
        yield from self._iter(root, 0, 0, start, end, root in self._kernel_roots)

    def _iter(self, table, li, base, start, end, kernel_root):
        lv = self.levels[li]
        entries = self._read_table(table, li)
        span = lv.span
        decode = self._decode[li]
        va_of = self.mode.va_of
        for idx, raw in enumerate(entries):
            if not raw:
                continue
            kind, addr, _ = decode(raw)
            if kind != LEAF and kind != TABLE:
                continue
            va = va_of(base + idx * span, kernel_root)
            if va + span <= start or va >= end:
                continue
            if kind == LEAF:
                yield va, span, addr, raw, li
            else:
                yield from self._iter(addr, li + 1, base + idx * span, start, end, kernel_root)

    def va_of(self, offset: int, root: int | None = None) -> int:
        """The virtual address at *offset* into the span of the top table *root*."""
        return self.mode.va_of(offset, root in self._kernel_roots)
