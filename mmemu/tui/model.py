"""What the UI shows, computed from the kernel without Textual: the regions and how much of
each is mapped, the page-table tree's rows, the walk of an address, the frames by zone and
owner, the aliases of a frame, a module's code disassembled, the fault log.

Everything here is read from the emulated machine (the tables in its physical memory, the
frame allocator's records, the layout); the panes only draw it. Results that cost a
table scan are cached and dropped when a step changes the range they cover.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..arch import KR, KW, KX, LEAF, TABLE, UR, UW, UX
from ..scenario.stepper import Stepper
from .palette import frame_kind, region_kind

PAGE = 4096


@dataclass
class RegionRow:
    name: str
    start: int
    end: int
    kind: str  # palette kind
    layout_kind: str

    @property
    def size(self) -> int:
        return self.end - self.start


@dataclass
class EntryRow:
    """One present entry of a table, as the tree shows it."""

    table: int
    li: int
    index: int
    va: int  # first address the entry covers
    span: int
    raw: int
    kind: str  # "table", "leaf", "none", "reserved"
    addr: int | None  # next table or page
    fields: dict  # the construct format's fields that are set
    writer: str
    step: str  # the record that last wrote it ("boot" if none did)
    changed: tuple[int, int] | None = None  # (old, new) if the current step wrote it


@dataclass
class FaultRow:
    """One page fault, as the fault log shows it."""

    record: int  # index of the record it happened in
    address: int
    access: str
    user: bool
    kind: str
    code: int
    ip: int | None
    text: str  # the decoded error code
    resolution: str = ""


@dataclass
class ZoneGrid:
    name: str
    start_pfn: int
    end_pfn: int
    per_cell: int
    cells: list = field(default_factory=list)  # (palette kind, fraction used) per cell


def rights_text(r: int) -> str:
    k = "".join(c if r & b else "-" for c, b in (("r", KR), ("w", KW), ("x", KX)))
    u = "".join(c if r & b else "-" for c, b in (("r", UR), ("w", UW), ("x", UX)))
    return f"kernel {k} user {u}"


def size_text(n: int) -> str:
    for unit, shift in (("E", 60), ("P", 50), ("T", 40), ("G", 30), ("M", 20), ("K", 10)):
        if n >= 1 << shift:
            v = n / (1 << shift)
            return f"{v:.0f}{unit}" if v >= 10 or v == int(v) else f"{v:.1f}{unit}"
    return f"{n}B"


class Model:
    """The UI's view of a scenario being stepped through."""

    def __init__(self, stepper: Stepper):
        self.stepper = stepper
        self.run = stepper.run
        self.k = stepper.run.k
        #: whose page table the tree, the walk and the user part of the map show: None for
        #: the kernel's master table (swapper_pg_dir), else a pid
        self.pid: int | None = None
        self._occ: dict = {}
        self._prov: tuple[int, int, dict] | None = None
        self._aliases: dict = {}
        self.faults: list[FaultRow] = []
        self._pending: list = []
        self._observer = _FaultObserver(self)
        self.k.pm.register(self._observer)
        self._dirty: list = []  # ranges the records made or undone since the last move touched
        stepper.listeners.append(self._record_made)
        stepper.undo_listeners.append(self._record_undone)

    def close(self) -> None:
        try:
            self.k.pm.unregister(self._observer)
        except ValueError:
            pass
        for hooks, fn in ((self.stepper.listeners, self._record_made),
                          (self.stepper.undo_listeners, self._record_undone)):
            if fn in hooks:
                hooks.remove(fn)
        self.stepper.close()

    # -- the machine --------------------------------------------------------------------

    @property
    def title(self) -> str:
        m = self.run.machine
        return f"{m['arch']} {self.k.paging.name} · Linux {m['kernel']} · {m['ram']} RAM"

    @property
    def process(self):
        return self.k.processes.get(self.pid) if self.pid is not None else None

    def root(self) -> int:
        """The top table the tree and the walk read."""
        p = self.process
        return p.pgd if p is not None else self.k.pgd

    def root_name(self) -> str:
        p = self.process
        if p is None:
            return "swapper_pg_dir (init_mm, the master kernel table)"
        return f"pgd of {p.comm}[{p.pid}]"

    def cycle_process(self) -> str:
        """Switch between the kernel's table and each process's, in pid order."""
        pids = sorted(self.k.processes)
        if self.pid is None:
            self.pid = pids[0] if pids else None
        else:
            later = [p for p in pids if p > self.pid]
            self.pid = later[0] if later else None
        return self.root_name()

    def check_process(self) -> None:
        """After a step: a process that went away leaves the kernel's table shown."""
        if self.pid is not None and self.pid not in self.k.processes:
            self.pid = None

    # -- steps --------------------------------------------------------------------------

    def _record_made(self, index: int, rec) -> None:
        for f in self._pending:
            self.faults.append(_fault_row(self.k, index, f))
        self._pending = []
        self._dirty += touched(rec)

    def _record_undone(self, rec) -> None:
        self._dirty += touched(rec)

    def after_move(self) -> None:
        """Drop what the moves since the last call made stale: cached scans of the ranges
        the records made or taken back covered, the faults of records taken back."""
        pos = self.stepper.position
        self.faults = [f for f in self.faults if f.record < pos]
        self._pending = []
        self._aliases.clear()
        self._prov = None
        self.invalidate(self._dirty)
        self._dirty = []
        self.check_process()

    def invalidate(self, ranges) -> None:
        if not ranges:
            return
        for key in list(self._occ):
            _root, start, end = key[1:4] if key[0] == "extent" else key[:3]
            if any(va < end and va + size > start for va, size in ranges):
                del self._occ[key]

    # -- the address-space map --------------------------------------------------------

    def regions(self) -> list[RegionRow]:
        out = []
        for r in self.k.layout.regions:
            out.append(RegionRow(r.name, r.start, r.end, region_kind(r.kind), r.kind))
        return out

    def region_root(self, row: RegionRow) -> int:
        if row.layout_kind == "user":
            p = self.process or self.k.current
            return p.pgd if p is not None else self.k.pgd
        return self.k.pgd

    def occupancy(self, row: RegionRow, cells: int) -> list[float]:
        """How much of each of *cells* equal parts of *row* (a region, or a window of one) is
        mapped (0..1). A table whose entries span a quarter of a part or less counts by how
        many of its entries are present, without going further down: a page-granular linear
        map costs its pmds and one read of each pte table, not a walk of every pte."""
        root = self.region_root(row)
        key = (root, row.start, row.end, cells)
        hit = self._occ.get(key)
        if hit is not None:
            return hit
        counts = [0.0] * cells
        if row.kind != "hole" and cells > 0:
            pt = self.k.pgtable
            cell = row.size / cells
            levels = pt.levels
            last = len(levels) - 1
            kroot = pt.is_kernel_root(root)
            mode = pt.mode

            def add(lo: int, hi: int, weight: float = 1.0) -> None:
                # offsets from the start: addresses near 2**64 lose their low bits as floats
                lo, hi = max(lo, row.start) - row.start, min(hi, row.end) - row.start
                i = int(lo / cell)
                while lo < hi and i < cells:
                    edge = (i + 1) * cell
                    counts[i] += weight * (min(hi, edge) - lo) / cell
                    lo = min(hi, edge)
                    i += 1

            def visit(table: int, li: int, base: int) -> None:
                span = levels[li].span
                decode = pt._decode[li]  # the codec's decoder, as the walker uses it
                for idx, raw in enumerate(pt.entries(table, li)):
                    if not raw:
                        continue
                    kind, addr, _ = decode(raw)
                    if kind != LEAF and kind != TABLE:
                        continue
                    va = mode.va_of(base + idx * span, kroot)
                    if va + span <= row.start or va >= row.end:
                        continue
                    if kind == LEAF or li == last:
                        add(va, va + span)
                    elif span * 4 <= cell and row.start <= va and va + span <= row.end:
                        # the table below, by how full it is (inside the range only: one
                        # straddling its edge is read further)
                        below = pt.entries(addr, li + 1)
                        if below.count(0) < len(below):
                            add(va, va + span, 1 - below.count(0) / len(below))
                    else:
                        visit(addr, li + 1, base + idx * span)

            visit(root, 0, 0)
        out = [min(1.0, c) for c in counts]
        self._occ[key] = out
        return out

    def extent(self, row: RegionRow) -> tuple[int, int] | None:
        """[first mapped address, end of the last mapping) of the region, widened to a
        power of two of the region's own alignment so that the view does not jitter; None if
        nothing in it is mapped. What the map zooms its bar to."""
        key = ("extent", self.region_root(row), row.start, row.end)
        if key in self._occ:
            return self._occ[key]
        pt = self.k.pgtable
        root = self.region_root(row)
        first = next(pt.iter_leaves(root, row.start, row.end), None)
        out = None
        if first is not None:
            last_end = self._last_end(root, row)
            lo, hi = max(first[0], row.start), min(last_end, row.end)
            span = 1
            while span < hi - lo:
                span <<= 1
            lo = max(row.start, lo - (lo - row.start) % span)
            hi = min(row.end, lo + 2 * span if lo + span < hi else lo + span)
            out = (lo, hi)
        self._occ[key] = out
        return out

    def _last_end(self, root: int, row: RegionRow) -> int:
        """The end of the last mapping in the region: the present entries read from the
        highest down, the first leaf found wins."""
        pt = self.k.pgtable
        levels = pt.levels
        kroot = pt.is_kernel_root(root)
        va_of = pt.mode.va_of

        def visit(table: int, li: int, base: int) -> int | None:
            span = levels[li].span
            entries = pt.entries(table, li)
            for idx in range(len(entries) - 1, -1, -1):
                raw = entries[idx]
                if not raw:
                    continue
                kind, addr, _ = pt.decode(li, raw)
                va = va_of(base + idx * span, kroot)
                if kind not in (LEAF, TABLE) or va >= row.end or va + span <= row.start:
                    continue
                if kind == LEAF:
                    return va + span
                found = visit(addr, li + 1, base + idx * span)
                if found is not None:
                    return found
            return None

        return visit(root, 0, 0) or row.end

    # -- provenance: which step wrote an entry ------------------------------------------

    def provenance(self) -> dict:
        """(table, index) -> the record (its step number) that last wrote the entry."""
        pos = self.stepper.position
        last = self.stepper.current
        if self._prov is not None and self._prov[0] == pos and self._prov[1] == id(last):
            return self._prov[2]
        prov: dict = {}
        for rec in self.stepper.records:
            for table, index in _written(rec):
                prov[(table, index)] = rec.step
        self._prov = (pos, id(last), prov)
        return prov

    def changed_now(self) -> dict:
        """(table, index) -> (old, new) of the entries the current step wrote."""
        cur = self.stepper.current
        out: dict = {}
        if cur is None:
            return out
        for ch in _changes(cur):
            for index, old, new in ch.entries():
                key = (ch.table, index)
                out[key] = (out[key][0], new) if key in out else (old, new)
        return out

    # -- the page-table tree ----------------------------------------------------------

    def table_rows(self, table: int, li: int, base: int, kernel_root: bool) -> list[EntryRow]:
        """The entries of a table that are not empty (or that the current step emptied),
        decoded with the arch's formats. *base*: the offset the table starts at in its top
        table's span; *kernel_root*: the top table is a kernel root (arm64's TTBR1 half)."""
        pt = self.k.pgtable
        lv = pt.levels[li]
        prov = self.provenance()
        changed = self.changed_now()
        va_of = pt.mode.va_of
        rows = []
        for idx, raw in enumerate(pt.entries(table, li)):
            ch = changed.get((table, idx))
            if not raw and ch is None:
                continue
            view = pt.codec.describe(li, raw)
            try:
                fields = {k: v for k, v in pt.parse(li, raw).items() if not k.startswith("_") and v}
            except Exception:  # an entry no format reads (a software entry): its raw value shows it
                fields = {}
            writer = pt.writer_of(table + idx * lv.entry_size)
            rows.append(EntryRow(table, li, idx, va_of(base + idx * lv.span, kernel_root), lv.span, raw,
                                 view.kind_name, view.addr, fields, writer, prov.get((table, idx), "boot"), ch))
        return rows

    def level_name(self, li: int) -> str:
        lv = self.k.pgtable.levels[li]
        return lv.name + (f" (folds {', '.join(lv.folds)})" if lv.folds else "")

    # -- the walk ------------------------------------------------------------------------

    def walk_lines(self, va: int, root: int | None = None, k=None) -> list[tuple[str, str]]:
        """The walk of *va* as the MMU does it: (text, palette kind or style) per line."""
        k = k or self.k
        root = self.root() if root is None else root
        pt = k.pgtable
        try:
            w = pt.walk(root, va)
        except Exception as exc:  # not an address of this mode: the reason is the answer
            return [(f"{va:#x}: {exc}", "error")]
        out = [(f"walk of {va:#x} from the table at {root:#x}", "title")]
        for s in w.steps:
            lv = s.level
            names = "/".join(lv.display_names)
            view = pt.codec.describe(s.li, s.raw)
            flags = " ".join(pt.flag_names(s.li, s.raw)) if s.raw else ""
            out.append((f"{names:>5} table {s.table:#x} [{s.index:3d}] @ {s.entry_addr:#x} = "
                        f"{s.raw:#0{2 + 2 * lv.entry_size}x} {view.kind_name} {flags}".rstrip(), view.kind_name))
        region = k.layout.region_of(va)
        where = region_kind(region.kind) if region else "hole"
        if w.mapped:
            out.append((f"-> phys {w.phys:#x} (pfn {w.phys >> 12:#x}), {size_text(w.page_size)} page, "
                        f"{rights_text(w.rights)}", where))
            fi = k.frames.page(w.phys >> 12)
            out.append((f"   frame: {fi.state}{' ' + fi.owner if fi.owner else ''}"
                        f"{' (zone ' + fi.zone + ')' if fi.zone else ''}", frame_kind(fi.owner, fi.state)))
        else:
            out.append((f"-> no translation: {w.missing} at {w.steps[-1].level.name if w.steps else '?'}", "error"))
        for access, user in (("read", False), ("write", False), ("read", True), ("write", True), ("exec", True)):
            f = w.fault(access, user)
            if f is not None:
                out.append((f"   a {'user' if user else 'kernel'} {access} would fault: {f.kind}, "
                            f"code {f.code:#x} ({f.describe()})", "fault"))
        return out

    # -- physical memory --------------------------------------------------------------

    def zone_grids(self, cells: int) -> list[ZoneGrid]:
        """Per zone, *cells* cells of frames, each coloured by what most of its used frames
        are (free cells stay dark)."""
        fr = self.k.frames
        kmapped = self.kmapped_pfns()
        module_pfns = self.module_pfns()
        out = []
        for z in fr.zones.values():
            n = z.end_pfn - z.start_pfn
            per = max(1, -(-n // cells))
            ncells = -(-n // per)
            tally = [dict() for _ in range(ncells)]
            for pfn, page in fr.allocated.items():
                if not z.start_pfn <= pfn < z.end_pfn:
                    continue
                kind = frame_kind(page.owner)
                for p in range(pfn, min(pfn + page.nr_pages, z.end_pfn)):
                    k = "kmap" if p in kmapped else "module" if p in module_pfns else kind
                    t = tally[(p - z.start_pfn) // per]
                    t[k] = t.get(k, 0) + 1
            for rs, re_, owner in fr.reserved:
                lo, hi = max(rs, z.start_pfn), min(re_, z.end_pfn)
                kind = frame_kind(owner, "reserved")
                while lo < hi:
                    i = (lo - z.start_pfn) // per
                    edge = min(hi, z.start_pfn + (i + 1) * per)
                    tally[i][kind] = tally[i].get(kind, 0) + edge - lo
                    lo = edge
            grid = ZoneGrid(z.name, z.start_pfn, z.end_pfn, per)
            for t in tally:
                used = sum(t.values())
                if not used:
                    grid.cells.append(("free", 0.0))
                else:
                    grid.cells.append((max(t, key=t.get), used / per))
            out.append(grid)
        return out

    def kmapped_pfns(self) -> set[int]:
        """Frames mapped in the pkmap area or a fixmap slot (kmap, kmap_atomic, kmap_local)."""
        out = set()
        for r in self.k.layout.regions:
            if r.kind in ("pkmap", "fixmap"):
                for _va, size, phys, _raw, _li in self.k.pgtable.iter_leaves(self.k.pgd, r.start, r.end):
                    if size == PAGE and self.k.frames.page(phys >> 12).state == "allocated":
                        out.add(phys >> 12)
        return out

    def module_pfns(self) -> set[int]:
        out = set()
        for va in self.k.vmap_areas:
            vm = va.vm
            if vm is not None and not va.lazy and "module" in (vm.caller or ""):
                out.update(vm.pages)
        return out

    def frame_info(self, pfn: int) -> list[tuple[str, str]]:
        fi = self.k.frames.page(pfn)
        kind = frame_kind(fi.owner, fi.state)
        lines = [(f"pfn {pfn:#x} (phys {pfn << 12:#x}): {fi.state}"
                  f"{', zone ' + fi.zone if fi.zone else ''}"
                  f"{', block of order ' + str(fi.order) + ' at pfn ' + hex(fi.head) if fi.order >= 0 else ''}"
                  f"{', refcount ' + str(fi.refcount) if fi.state == 'allocated' else ''}", kind)]
        if fi.owner:
            lines.append((f"owner: {fi.owner}", kind))
        al = self.aliases(pfn)
        lines.append((f"mapped at {len(al)} virtual address{'es' if len(al) != 1 else ''}:", "title"))
        for va, where, kindw in al:
            lines.append((f"  {va:#x}  {where}", kindw))
        return lines

    def aliases(self, pfn: int) -> list[tuple[int, str, str]]:
        """Every virtual address that maps frame *pfn*: (va, where, palette kind)."""
        hit = self._aliases.get(pfn)
        if hit is not None:
            return hit
        k = self.k
        pa = pfn << 12
        out = []
        for r in k.layout.regions:
            if r.kind in ("user", "hole", "guard", "non-canonical"):
                continue
            for va, size, phys, _raw, _li in k.pgtable.iter_leaves(k.pgd, r.start, r.end):
                if phys <= pa < phys + size:
                    out.append((va + pa - phys, r.name, region_kind(r.kind)))
        try:
            user = k.layout.region_kind("user")
        except KeyError:
            user = None
        if user is not None:
            for pid, p in sorted(k.processes.items()):
                for va, size, phys, _raw, _li in k.pgtable.iter_leaves(p.pgd, user.start, user.end):
                    if phys <= pa < phys + size:
                        out.append((va + pa - phys, f"user, {p.comm}[{pid}]", "user"))
        self._aliases[pfn] = out
        return out

    def buddyinfo(self) -> str:
        return self.k.frames.buddyinfo()

    # -- modules --------------------------------------------------------------------------

    def modules(self):
        """The module being loaded step by step (while it is), then the loaded ones."""
        load = self.run.loading
        mods = list(self.k.modules)
        if load is not None and load.module is not None and load.module not in mods:
            mods.insert(0, load.module)
        return mods

    def code_address(self) -> int | None:
        """The instruction to show: the faulting one of the newest kernel fault with an ip,
        else the newest module's init (or its exit, or its first text) while it is mapped."""
        for f in reversed(self.faults):
            if f.ip is not None and not f.user:
                return f.ip
        for mod in self.modules():
            for addr in (mod.init, mod.exit, mod.section_address(".text")):
                if addr is not None and self.k.walk_mm(addr).mapped:
                    return addr
        return None

    def disassemble(self, addr: int, before: int = 4, after: int = 10) -> list[tuple[int, str, str, bool]]:
        """(address, bytes, instruction, is *addr*) around *addr*, decoded from the bytes the
        kernel's tables map there (capstone)."""
        from .disasm import disassemble

        return disassemble(self.k, addr, before, after)

    # -- logs -----------------------------------------------------------------------------

    def kernel_log(self) -> list[str]:
        return [r.text for r in self.k.log]


class _FaultObserver:
    """A plugin that sees every page fault before the kernel's handler (and never handles
    one)."""

    def __init__(self, model: Model):
        self.model = model

    from ..plugins import hookimpl as _hookimpl

    @_hookimpl
    def mmemu_handle_fault(self, kernel, fault):
        if kernel is self.model.k:
            self.model._pending.append(fault)
        return None


def _fault_row(k, index: int, f) -> FaultRow:
    return FaultRow(index, f.address, f.access, f.user, f.kind, f.code, f.ip,
                    f"{f.describe()}, {f.kind}, code {f.code:#x}")


def _changes(rec):
    """The page-table changes (mmemu.pagetable.Change) a record made."""
    for e in rec.mapping_events:
        yield from e.op.changes
    for op in rec.operations:
        yield from op.changes


def _written(rec):
    for ch in _changes(rec):
        for index, _old, _new in ch.entries():
            yield ch.table, index


def touched(rec) -> list[tuple[int, int]]:
    """The virtual ranges a record's page-table operations covered."""
    out = [(e.va, max(e.size, 1)) for e in rec.mapping_events]
    out += [(op.va, max(op.size, 1)) for op in rec.operations]
    return out
