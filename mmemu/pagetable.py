"""The one page-table engine: walker and mapper for every arch.

Driven only by the arch's :class:`~mmemu.arch.PagingMode` (levels, masks), like the kernel's
generic code over ``pgtable-2level.h`` / ``pgtable-3level.h`` / ``pgtable_64.h``. Entries
live in emulated physical memory and are read and written in place; the hot paths use
integer bit operations, and runs of entries in one table are written with one slice
assignment of an ``array`` (the boot direct map is a few hundred such writes, not a loop
per entry). Construct formats are for display and validation (:meth:`PageTables.decode`).

Every operation is a transaction: if it fails half-way (no frame for a new table, an entry
already in use), every entry it wrote is restored and every table it allocated is freed,
and the error is raised with the tables exactly as before. A completed operation is reported
to the observers as one :class:`Change` list.
"""

from __future__ import annotations

import struct
from array import array
from dataclasses import dataclass, field
from typing import Callable, Iterator

from .arch import Level, PagingMode
from .errors import AddressError, MappingError

# x86 page-fault error code bits (arch/x86/include/asm/trap_pf.h: enum x86_pf_error_code)
X86_PF_PROT = 1 << 0
X86_PF_WRITE = 1 << 1
X86_PF_USER = 1 << 2
X86_PF_RSVD = 1 << 3
X86_PF_INSTR = 1 << 4

NOT_PRESENT = "not-present"
RESERVED = "reserved"

ACCESSES = ("read", "write", "exec")


@dataclass(frozen=True, slots=True)
class Step:
    """One level of a walk: which table, which entry, what it holds."""

    level: Level
    table: int  # physical address of the table
    index: int
    entry_addr: int  # physical address of the entry
    raw: int


class Walk:
    """The result of walking one virtual address.

    ``steps`` are the entries read, top-down. If the walk reached a page: ``phys``,
    ``page_size`` and the effective permissions combined over the levels as the MMU
    combines them (writable only if every level allows it, user only if every level does,
    no-execute if any level says so). Otherwise ``missing`` says why (``"not-present"`` or
    ``"reserved"``) and ``phys`` is None. :meth:`fault` gives the x86 error code an access
    would raise.
    """

    __slots__ = ("va", "_raw_steps", "_levels", "phys", "page_size", "writable", "user", "nx", "missing", "_nx_on")

    def __init__(self, va, raw_steps, levels, phys, page_size, writable, user, nx, missing, nx_on):
        self.va = va
        self._raw_steps = raw_steps
        self._levels = levels
        self.phys = phys
        self.page_size = page_size
        self.writable = writable
        self.user = user
        self.nx = nx
        self.missing = missing
        self._nx_on = nx_on

    @property
    def steps(self) -> list[Step]:
        lv = self._levels
        return [Step(lv[li], t, i, e, r) for li, t, i, e, r in self._raw_steps]

    @property
    def mapped(self) -> bool:
        return self.phys is not None

    @property
    def leaf(self) -> Step | None:
        return self.steps[-1] if self.mapped else None

    def fault(self, access: str = "read", user: bool = False, wp: bool = True) -> int | None:
        """The x86 #PF error code this access would raise, or None if it is allowed.
        ``wp``: CR0.WP (the kernel always sets it), which makes read-only pages read-only
        for the kernel too."""
        code = 0
        if access == "write":
            code |= X86_PF_WRITE
        elif access == "exec":
            if self._nx_on:  # I/D is reported only where NX exists (PAE/long mode, EFER.NXE)
                code |= X86_PF_INSTR
        elif access != "read":
            raise ValueError(f"access must be one of {ACCESSES}, not {access!r}")
        if user:
            code |= X86_PF_USER
        if self.missing == NOT_PRESENT:
            return code
        if self.missing == RESERVED:
            return code | X86_PF_PROT | X86_PF_RSVD
        if (user and not self.user) or (access == "write" and not self.writable and (user or wp)) \
                or (access == "exec" and self.nx):
            return code | X86_PF_PROT
        return None

    def __repr__(self) -> str:
        if self.phys is None:
            return f"<Walk {self.va:#x} {self.missing} at {self._levels[self._raw_steps[-1][0]].name}>"
        perms = ("w" if self.writable else "r") + ("u" if self.user else "k") + ("-" if self.nx else "x")
        return f"<Walk {self.va:#x} -> {self.phys:#x} ({self.page_size:#x} {perms})>"


@dataclass(slots=True)
class Change:
    """A run of entries written by one operation: ``count`` entries of one table from
    ``index``, with their values before and after (raw bytes, little-endian)."""

    table: int
    level: Level
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


@dataclass
class Operation:
    """What one completed operation did: the writer, the virtual range and every run of
    entries written, in order; ``tables_allocated``/``tables_freed`` physical addresses."""

    writer: str
    kind: str  # "map", "unmap", "protect", "new-root", ...
    va: int
    size: int
    changes: list[Change] = field(default_factory=list)
    tables_allocated: list[int] = field(default_factory=list)
    tables_freed: list[int] = field(default_factory=list)
    #: for unmap: the (va, phys, size) pages that were mapped and no longer are
    unmapped: list[tuple[int, int, int]] = field(default_factory=list)


class _Txn:
    __slots__ = ("op", "undo", "alloc", "defer_free")

    def __init__(self, op: Operation):
        self.op = op
        self.undo: list[tuple[int, bytes, TableInfo, int, array]] = []
        self.alloc: list[int] = []
        self.defer_free: list[int] = []


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
        self.mem = mem
        self._buf = mem.mem
        self._view = mem.view
        self.alloc_table = alloc_table
        self.free_table = free_table
        self.tables: dict[int, TableInfo] = {}
        self.writers: list[str] = [""]
        self._writer_ids: dict[str, int] = {"": 0}
        self.observers: list[Callable[[Operation], None]] = []
        self.levels = mode.levels
        self._last = len(self.levels) - 1
        # every bit that is not part of a frame address: the flags an entry carries
        addr_bits = ((1 << mode.pa_bits) - 1) & ~0xFFF
        self.flag_bits = ((1 << 64) - 1) ^ addr_bits
        self._unpack = []
        self._walk_plan = []
        for li, lv in enumerate(self.levels):
            s = struct.Struct("<I" if lv.entry_size == 4 else "<Q")
            self._unpack.append(s)
            large = mode.large if (lv.large_format is not None and li != self._last) else 0
            self._walk_plan.append((li, lv.shift, lv.entries - 1, lv.entry_size, s.unpack_from, large,
                                    lv.addr_mask, lv.large_addr_mask, lv.reserved, lv.large_reserved,
                                    lv.access_bits, lv.span - 1))
        self._walk_plan = tuple(self._walk_plan)

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
            txn.op.tables_allocated.append(phys)
        self.tables[phys] = TableInfo(phys, li, owner, array("H", bytes(2 * lv.entries)))
        return phys

    def adopt_table(self, phys: int, level_index: int, owner: str, pinned: bool = False) -> None:
        """Register a table the engine did not allocate (a root in the kernel image, the
        PAE user pmds that pgd_alloc preallocates: *pinned*, never freed by unmap)."""
        lv = self.levels[level_index]
        self.tables[phys] = TableInfo(phys, level_index, owner, array("H", bytes(2 * lv.entries)), pinned)

    def new_root(self, owner: str, user: bool = False) -> int:
        """Allocate an empty top-level table (a pgd) and return its physical address."""
        return self._new_table(0, user, owner, None)

    def _write(self, txn: _Txn, table: int, li: int, index: int, values: "array | list[int]", wid: int) -> None:
        lv = self.levels[li]
        size = lv.entry_size
        start = table + index * size
        new = values if isinstance(values, array) else array("I" if size == 4 else "Q", values)
        nbytes = len(new) * size
        assert new.itemsize == size
        old = self._buf[start:start + nbytes]
        info = self.tables[table]
        old_w = info.writers[index:index + len(new)]
        self._view[start:start + nbytes] = new.tobytes()
        info.writers[index:index + len(new)] = array("H", [wid]) * len(new)
        txn.undo.append((start, old, info, index, old_w))
        txn.op.changes.append(Change(table, lv, index, old, self._buf[start:start + nbytes], self.writers[wid]))

    def _run(self, op: Operation, body: Callable[[_Txn], None]) -> Operation:
        txn = _Txn(op)
        try:
            body(txn)
        except BaseException:
            for start, old, info, index, old_w in reversed(txn.undo):
                self._view[start:start + len(old)] = old
                info.writers[index:index + len(old_w)] = old_w
            for phys in reversed(txn.alloc):
                del self.tables[phys]
                self.free_table(phys)
            raise
        for phys in txn.defer_free:
            del self.tables[phys]
            self.free_table(phys)
        if op.changes or op.tables_allocated or op.tables_freed:
            for observer in self.observers:
                observer(op)
        return op

    def _read(self, li: int, epa: int) -> int:
        return self._unpack[li].unpack_from(self._buf, epa)[0]

    def _read_table(self, table: int, li: int) -> array:
        lv = self.levels[li]
        a = array("I" if lv.entry_size == 4 else "Q")
        a.frombytes(self._buf[table:table + lv.table_size])
        return a

    # -- walking ------------------------------------------------------------------------

    def check_va(self, va: int) -> None:
        if not self.mode.is_canonical(va):
            if self.mode.canonical:
                raise AddressError(f"{va:#x} is not a canonical {self.mode.va_bits}-bit address "
                                   f"(bits 63..{self.mode.va_bits - 1} must all equal bit {self.mode.va_bits - 1})")
            raise AddressError(f"{va:#x} is outside the {self.mode.va_bits}-bit virtual address space")

    def walk(self, root: int, va: int) -> Walk:
        """Walk *va* from the top-level table at *root*, as the MMU would."""
        if not self.mode.is_canonical(va):
            self.check_va(va)
        mode = self.mode
        buf = self._buf
        P, W, U, NX = mode.present, mode.write, mode.user, mode.nx
        table = root
        steps = []
        writable = user = True
        nx = False
        for li, shift, imask, esz, unpack, large, amask, laddr, rsv, lrsv, acc, offmask in self._walk_plan:
            idx = (va >> shift) & imask
            epa = table + idx * esz
            raw = unpack(buf, epa)[0]
            steps.append((li, table, idx, epa, raw))
            if not raw & P:
                return Walk(va, steps, self.levels, None, 0, False, False, False, NOT_PRESENT, bool(NX))
            is_large = raw & large
            if raw & (lrsv if is_large else rsv):
                return Walk(va, steps, self.levels, None, 0, False, False, False, RESERVED, bool(NX))
            if acc:
                if not raw & W:
                    writable = False
                if not raw & U:
                    user = False
                if raw & NX:
                    nx = True
            if is_large:
                return Walk(va, steps, self.levels, (raw & laddr) | (va & offmask), offmask + 1,
                            writable, user, nx, None, bool(NX))
            if li == self._last:
                return Walk(va, steps, self.levels, (raw & amask) | (va & offmask), offmask + 1,
                            writable, user, nx, None, bool(NX))
            table = raw & amask
        raise AssertionError("unreachable")

    def translate(self, root: int, va: int, access: str = "read", user: bool = False) -> tuple[Walk, int | None]:
        """Walk and check one access: (walk, error code or None)."""
        w = self.walk(root, va)
        return w, w.fault(access, user)

    # -- mapping ------------------------------------------------------------------------

    def _check_range(self, va: int, size: int, pa: int | None = None) -> None:
        page = self.mode.page_size
        if size <= 0 or size % page or va % page or (pa is not None and pa % page):
            raise MappingError(f"range {va:#x}+{size:#x} (phys {pa if pa is None else hex(pa)}) is not page aligned")
        self.check_va(va)
        self.check_va(va + size - 1)
        if pa is not None and pa + size > (1 << self.mode.pa_bits):
            raise MappingError(f"physical range {pa:#x}+{size:#x} exceeds the {self.mode.pa_bits}-bit physical address space")

    def _sizes(self, page_sizes) -> frozenset[int]:
        allowed = set(self.mode.leaf_sizes()) if page_sizes is None else set(page_sizes)
        allowed.add(self.mode.page_size)
        return frozenset(allowed)

    def map(self, root: int, va: int, pa: int, size: int, prot: int, *, writer: str,
            page_sizes=None, user_tables: bool = False, replace: bool = False) -> Operation:
        """Map ``[va, va+size)`` to ``[pa, pa+size)`` with the flags *prot* (a pgprot
        without the large-page bit), choosing for each piece the largest page that
        *page_sizes* allows and the alignment of both addresses permits. New intermediate
        tables get the level's kernel table flags, or user ones with *user_tables*.
        Present entries in the range are an error unless *replace*."""
        self._check_range(va, size, pa)
        sizes = self._sizes(page_sizes)
        if prot & self.mode.large or prot & ~self.flag_bits:
            raise MappingError(f"protection {prot:#x} carries the large-page bit or address bits; "
                               "map() chooses page sizes itself")
        wid = self.writer_id(writer)
        prot |= self.mode.present
        op = Operation(writer, "map", va, size)

        def body(txn: _Txn) -> None:
            self._map(txn, root, 0, va, va + size, pa, prot, sizes, user_tables, replace, wid)
        return self._run(op, body)

    def _map(self, txn, table, li, va, end, pa, prot, sizes, user_tables, replace, wid):
        lv = self.levels[li]
        span = lv.span
        last = li == self._last
        can_leaf = last or (lv.large_format is not None and span in sizes)
        P = self.mode.present
        while va < end:
            idx = (va >> lv.shift) & (lv.entries - 1)
            if can_leaf and not (va | pa) & (span - 1) and end - va >= span:
                n = min((end - va) >> lv.shift, lv.entries - idx)
                flags = prot if last else prot | self.mode.large
                start = table + idx * lv.entry_size
                old = self._buf[start:start + n * lv.entry_size]
                if any(old):
                    raws = struct.unpack("<%d%s" % (n, "I" if lv.entry_size == 4 else "Q"), old)
                    if not last:
                        # an entry pointing to a table (kept after an unmap) is never
                        # overwritten, which would orphan the table: the run stops before
                        # it and the range is mapped inside it, as phys_pmd_init does
                        n = next((k for k, raw in enumerate(raws) if raw & P and not raw & self.mode.large), n)
                    if not replace:
                        for k, raw in enumerate(raws[:n]):
                            if raw & P:
                                raise MappingError(f"{va + k * span:#x} is already mapped ({lv.name} entry {raw:#x})")
                if n:
                    values = array("I" if lv.entry_size == 4 else "Q", range(pa | flags, (pa | flags) + n * span, span))
                    self._write(txn, table, li, idx, values, wid)
                    va += n * span
                    pa += n * span
                    continue
            if last:
                raise MappingError(f"cannot map {va:#x}: not page aligned")
            stop = min(end, (va | (span - 1)) + 1)
            epa = table + idx * lv.entry_size
            raw = self._read(li, epa)
            if not raw & P:
                child = self._new_table(li + 1, user_tables, f"page table ({self.levels[li + 1].name})", txn)
                flags = lv.table_flags_user if user_tables else lv.table_flags_kernel
                self._write(txn, table, li, idx, [child | flags], wid)
            elif lv.large_format is not None and raw & self.mode.large:
                if not replace:
                    raise MappingError(f"{va:#x} is already mapped by a {span >> 10} KiB page ({lv.name} entry {raw:#x})")
                child = self._split(txn, table, li, idx, raw, wid)
            else:
                child = raw & lv.addr_mask
            self._map(txn, child, li + 1, va, stop, pa, prot, sizes, user_tables, replace, wid)
            pa += stop - va
            va = stop

    def _split(self, txn: _Txn, table: int, li: int, idx: int, raw: int, wid: int) -> int:
        """Replace a large-page entry by a table of smaller pages mapping the same frames
        with the same flags (the kernel's ``split_large_page``)."""
        lv, child_lv = self.levels[li], self.levels[li + 1]
        base = raw & lv.large_addr_mask
        flags = raw & self.flag_bits  # the large-page PAT bit lies among the address bits
        pat = bool(raw & self.mode.pat_large)
        if li + 1 == self._last:
            flags &= ~self.mode.large
            if pat:
                flags |= self.mode.pat
        elif pat:
            flags |= self.mode.pat_large
        user = bool(raw & self.mode.user)
        child = self._new_table(li + 1, user, f"page table ({child_lv.name})", txn)
        step = child_lv.span
        values = array("I" if child_lv.entry_size == 4 else "Q",
                       range(base | flags, (base | flags) + child_lv.entries * step, step))
        self._write(txn, child, li + 1, 0, values, wid)
        tflags = lv.table_flags_user if user else lv.table_flags_kernel
        self._write(txn, table, li, idx, [child | tflags], wid)
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
        page = self.mode.page_size
        n = len(frames)
        self._check_range(va, n * page)
        if prot & self.mode.large or prot & ~self.flag_bits:
            raise MappingError(f"protection {prot:#x} carries the large-page bit or address bits")
        wid = self.writer_id(writer)
        prot |= self.mode.present
        op = Operation(writer, "map", va, n * page)
        lv = self.levels[self._last]
        fmt = "I" if lv.entry_size == 4 else "Q"
        P = self.mode.present

        def body(txn: _Txn) -> None:
            self._populate(txn, root, 0, va, va + n * page, user_tables, wid, self._last)
            i = 0
            while i < n:
                table, idx = self.pte_slot(root, va + i * page)
                run = min(n - i, lv.entries - idx)
                start = table + idx * lv.entry_size
                old = self._buf[start:start + run * lv.entry_size]
                if any(old):
                    for k, raw in enumerate(struct.unpack("<%d%s" % (run, fmt), old)):
                        if raw & P:
                            raise MappingError(f"{va + (i + k) * page:#x} is already mapped (pte {raw:#x})")
                self._write(txn, table, self._last, idx, array(fmt, [(f << 12) | prot for f in frames[i:i + run]]), wid)
                i += run
        return self._run(op, body)

    def _populate(self, txn, table, li, va, end, user_tables, wid, deepest) -> None:
        if li >= deepest:
            return
        lv = self.levels[li]
        span = lv.span
        while va < end:
            idx = (va >> lv.shift) & (lv.entries - 1)
            stop = min(end, (va | (span - 1)) + 1)
            raw = self._read(li, table + idx * lv.entry_size)
            if not raw & self.mode.present:
                child = self._new_table(li + 1, user_tables, f"page table ({self.levels[li + 1].name})", txn)
                flags = lv.table_flags_user if user_tables else lv.table_flags_kernel
                self._write(txn, table, li, idx, [child | flags], wid)
            elif lv.large_format is not None and raw & self.mode.large:
                raise MappingError(f"{va:#x} is mapped by a large page: no {self.levels[li + 1].name} table to populate")
            else:
                child = raw & lv.addr_mask
            self._populate(txn, child, li + 1, va, stop, user_tables, wid, deepest)
            va = stop

    # -- one entry at a time (the hot paths: demand faults, kmap, fixmap) --------------

    def pte_slot(self, root: int, va: int) -> tuple[int, int] | None:
        """(table, index) of the last-level entry for *va*, if every table above exists
        and no large page covers it; None otherwise. Reads only."""
        buf = self._buf
        P = self.mode.present
        table = root
        for li, shift, imask, esz, unpack, large, amask, *_ in self._walk_plan:
            idx = (va >> shift) & imask
            if li == self._last:
                return table, idx
            raw = unpack(buf, table + idx * esz)[0]
            if not raw & P or raw & large:
                return None
            table = raw & amask
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
        return self._set_one(table, self._last, idx, value, writer, kind, va)

    def read_entry(self, table: int, index: int, level_index: int | None = None) -> int:
        """One entry of a table (the last level unless *level_index* says otherwise)."""
        li = self._last if level_index is None else level_index
        return self._unpack[li].unpack_from(self._buf, table + index * self.levels[li].entry_size)[0]

    def write_pte_slot(self, table: int, index: int, value: int, writer: str, va: int = 0) -> int:
        """Write the last-level entry *index* of *table* (found with :meth:`pte_slot`); return
        the old value. One operation, reported to the observers."""
        return self._set_one(table, self._last, index, value, writer, "set_pte", va)

    def set_entry(self, table: int, level_index: int, index: int, value: int, *, writer: str,
                  va: int = 0, kind: str = "set_entry") -> int:
        """Write one entry of a table the engine knows (``set_pgd`` into a page directory);
        return the value it held. One operation, reported to the observers."""
        info = self.tables.get(table)
        if info is None or info.level_index != level_index:
            raise MappingError(f"{table:#x} is not a known {self.levels[level_index].name} table")
        if not 0 <= index < self.levels[level_index].entries:
            raise MappingError(f"index {index} is outside a {self.levels[level_index].name} table")
        return self._set_one(table, level_index, index, value, writer, kind, va)

    def _set_one(self, table: int, li: int, idx: int, value: int, writer: str, kind: str, va: int) -> int:
        lv = self.levels[li]
        s = self._unpack[li]
        epa = table + idx * lv.entry_size
        old = s.unpack_from(self._buf, epa)[0]
        s.pack_into(self._buf, epa, value)
        wid = self._writer_ids.get(writer)
        if wid is None:
            wid = self.writer_id(writer)
        self.tables[table].writers[idx] = wid
        if self.observers:
            op = Operation(writer, kind, va, lv.span)
            op.changes.append(Change(table, lv, idx, s.pack(old), s.pack(value), writer))
            if li == self._last and old & self.mode.present and not value & self.mode.present:
                op.unmapped.append((va, old & lv.addr_mask, lv.span))
            for observer in self.observers:
                observer(op)
        return old

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
        ``free_pgtables`` does for user memory; the kernel keeps its own tables)."""
        self._check_range(va, size)
        wid = self.writer_id(writer)
        op = Operation(writer, "unmap", va, size)
        return self._run(op, lambda txn: self._unmap(txn, root, 0, va, va + size, wid, free_tables))

    def _unmap(self, txn, table, li, va, end, wid, free_tables) -> None:
        lv = self.levels[li]
        span = lv.span
        last = li == self._last
        P, L = self.mode.present, self.mode.large
        while va < end:
            idx = (va >> lv.shift) & (lv.entries - 1)
            stop = min(end, (va | (span - 1)) + 1)
            epa = table + idx * lv.entry_size
            raw = self._read(li, epa)
            if not raw & P:
                va = stop
                continue
            leaf = last or (lv.large_format is not None and raw & L)
            if leaf and stop - va == span:
                txn.op.unmapped.append((va, raw & (lv.addr_mask if last else lv.large_addr_mask), span))
                self._write(txn, table, li, idx, [0], wid)
                va = stop
                continue
            child = self._split(txn, table, li, idx, raw, wid) if leaf else raw & lv.addr_mask
            self._unmap(txn, child, li + 1, va, stop, wid, free_tables)
            if free_tables and not self.tables[child].pinned and \
                    not any(self._buf[child:child + self.levels[li + 1].table_size]):
                self._write(txn, table, li, idx, [0], wid)
                txn.defer_free.append(child)
                txn.op.tables_freed.append(child)
            va = stop

    def change(self, root: int, va: int, size: int, *, set_bits: int = 0, clear_bits: int = 0, writer: str) -> Operation:
        """Change the flags of every present leaf entry in ``[va, va+size)``:
        ``new = (old & ~clear_bits) | set_bits``, splitting a large page that the range
        covers only in part (``change_page_attr``, ``mprotect``). Unmapped pieces are
        skipped."""
        self._check_range(va, size)
        if (set_bits | clear_bits) & ~self.flag_bits or (set_bits | clear_bits) & (self.mode.large | self.mode.present):
            raise MappingError("change() alters flag bits only (not the frame, the present or the large-page bit)")
        wid = self.writer_id(writer)
        op = Operation(writer, "protect", va, size)
        return self._run(op, lambda txn: self._change(txn, root, 0, va, va + size, set_bits, clear_bits, wid))

    def _change(self, txn, table, li, va, end, set_bits, clear_bits, wid) -> None:
        lv = self.levels[li]
        span = lv.span
        last = li == self._last
        P, L = self.mode.present, self.mode.large
        while va < end:
            idx = (va >> lv.shift) & (lv.entries - 1)
            stop = min(end, (va | (span - 1)) + 1)
            raw = self._read(li, table + idx * lv.entry_size)
            if not raw & P:
                va = stop
                continue
            leaf = last or (lv.large_format is not None and raw & L)
            if leaf and stop - va == span:
                # a run of whole entries that are leaves (or empty): one write
                n_max = min((end - va) >> lv.shift, lv.entries - idx)
                start = table + idx * lv.entry_size
                olds = struct.unpack("<%d%s" % (n_max, "I" if lv.entry_size == 4 else "Q"),
                                     self._buf[start:start + n_max * lv.entry_size])
                news = []
                for o in olds:
                    if o & P and not last and not o & L:
                        break  # a table: descended into on the next round
                    news.append(((o & ~clear_bits) | set_bits) if o & P else o)
                if news != list(olds[:len(news)]):
                    self._write(txn, table, li, idx, news, wid)
                va += len(news) * span
                continue
            child = self._split(txn, table, li, idx, raw, wid) if leaf else raw & lv.addr_mask
            self._change(txn, child, li + 1, va, stop, set_bits, clear_bits, wid)
            va = stop

    # -- reading ------------------------------------------------------------------------

    def decode(self, level: Level, raw: int, large: bool | None = None):
        """Parse an entry with the level's construct format (display, validation)."""
        if large is None:
            large = level.large_format is not None and bool(raw & self.mode.large) and level is not self.levels[-1]
        fmt = level.large_format if large else level.format
        return fmt.parse(raw.to_bytes(level.entry_size, "little"))

    def flag_names(self, raw: int, large: bool = False) -> list[str]:
        """Names of the flag bits set in *raw*, in the order crash prints them."""
        out = []
        for name, mask in self.mode.flags:
            if raw & mask:
                out.append(name)
        return out

    def entries(self, table: int, li: int) -> array:
        """All entries of a table, as integers."""
        return self._read_table(table, li)

    def iter_leaves(self, root: int, start: int = 0, end: int | None = None) -> Iterator[tuple[int, int, int, int, int]]:
        """Every mapped leaf in ``[start, end)`` in address order: (va, size, phys, raw,
        level index). Not-present subtrees are skipped without reading them."""
        if end is None:
            end = self.mode.va_limit
        yield from self._iter(root, 0, 0, start, end)

    def _iter(self, table, li, base, start, end):
        lv = self.levels[li]
        last = li == self._last
        P, L = self.mode.present, self.mode.large
        entries = self._read_table(table, li)
        span = lv.span
        for idx, raw in enumerate(entries):
            if not raw & P:
                continue
            va = self._canon(base + idx * span)
            if va + span <= start or va >= end:
                continue
            if last or (lv.large_format is not None and raw & L):
                yield va, span, raw & (lv.addr_mask if last else lv.large_addr_mask), raw, li
            else:
                yield from self._iter(raw & lv.addr_mask, li + 1, va, start, end)

    def _canon(self, va: int) -> int:
        if self.mode.canonical and va >> (self.mode.va_bits - 1) & 1:
            return va | (((1 << 64) - 1) ^ ((1 << self.mode.va_bits) - 1))
        return va
