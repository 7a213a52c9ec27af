"""The panes of the UI. Each draws from the :class:`~mmemu.tui.model.Model` and redraws when
the app says the step changed (:meth:`refresh_from`); none of them changes the machine."""

from __future__ import annotations

from rich.text import Text
from textual.containers import Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Input, Static, Tree

from ..scenario.stepper import record_faulted
from .model import Model, RegionRow, size_text
from .palette import KINDS, color

#: the background of a map bar (its empty parts)
BAR_BG = "#202020"

STATUS_STYLE = {"ok": "", "error-expected": "yellow", "expectation-failed": "bold red", "failed": "bold red"}


def show(widget: Static, text: Text) -> None:
    """Put *text* in *widget*; the screen is laid out again only when its height changes
    (a layout pass costs more than the repaint of everything on screen)."""
    lines = text.plain.rstrip("\n").count("\n") + 1
    old = getattr(widget, "_mmemu_lines", None)
    widget._mmemu_lines = lines
    # (a layout asked for while one is being made can be lost: the size says if it was)
    widget.update(text, layout=old != lines or widget.size.height < lines)


def legend(kinds) -> Text:
    t = Text()
    for kind in kinds:
        c, what, _ = KINDS[kind]
        t.append("██", style=c)
        t.append(f" {what}  ")
    return t


def _shade(frac: float) -> str:
    if frac <= 0:
        return " "
    return "░" if frac < 0.25 else "▒" if frac < 0.75 else "▓" if frac < 0.999 else "█"


class MapView(Static):
    """The address-space map: every region of the layout, top-down, one header line and one
    bar a region (holes one dim line), the bar's cells shaded by how much is mapped; the
    ranges the current step touched in reverse video."""

    def __init__(self, model: Model, **kw):
        super().__init__(**kw)
        self.model = model
        self._drawn: Text | None = None

    def refresh_from(self) -> None:
        """Draw the map again; a step that changed nothing on it costs no repaint."""
        if not self.size.width:
            return
        t = self.build(self.size.width)
        if self._drawn is None or t != self._drawn:
            self._drawn = t
            show(self, t)

    def on_resize(self, _event) -> None:
        self.call_after_refresh(self.refresh_from)

    def build(self, columns: int) -> Text:
        m = self.model
        width = max(10, columns - 1)
        digits = 2 * m.k.ptr_size
        touched = []
        cur = m.stepper.current
        if cur is not None:
            from .model import touched as touched_of
            touched = touched_of(cur)
        t = Text(no_wrap=True, overflow="ellipsis")
        mods = m.modules()
        for row in m.regions():
            hit = any(va < row.end and va + size > row.start for va, size in touched)
            c = color(row.kind)
            if row.kind == "hole":
                t.append(f"┆ {row.name.lstrip('. ')} ({size_text(row.size)})"[:width] + "\n", style="dim")
                continue
            size = f" {size_text(row.size)}"
            addr = f"{row.start:0{digits}x} " if width >= 30 + digits else ""
            room = max(4, width - 1 - len(addr) - len(size) - (2 if hit else 0))
            name = row.name if len(row.name) <= room else row.name[: room - 1] + "…"
            t.append("▌", style=c)
            t.append(addr, style="bold" if hit else "dim")
            t.append(name, style=("bold " + c) if hit else c)
            t.append(size, style="bold" if hit else "")
            t.append(" ◀\n" if hit else "\n", style="bold")
            cells = width - 1
            window = row
            ext = m.extent(row)
            for va, sz in touched:  # what the step unmapped is shown too
                if va < row.end and va + sz > row.start:
                    lo, hi = max(va, row.start), min(va + sz, row.end)
                    ext = (min(lo, ext[0]), max(hi, ext[1])) if ext else (lo, hi)
            page = m.k.pgtable.mode.page_size
            if ext is not None and ext[1] - ext[0] < cells * page:
                # at most a page a cell: a few pages show where they are among their neighbours
                hi = min(row.end, ext[0] + cells * page)
                ext = (max(row.start, hi - cells * page), hi)
            if ext is not None and (ext[0], ext[1]) != (row.start, row.end):
                window = RegionRow(row.name, ext[0], ext[1], row.kind, row.layout_kind)
            occ = m.occupancy(window, cells)
            cell = window.size / cells
            t.append("▐", style=c)
            rel = [(va - window.start, sz) for va, sz in touched]  # (floats near 2**64 are coarse)
            bar_style, hit_style = f"{c} on {BAR_BG}", f"reverse {c}"
            run, run_style = [], None
            for i, frac in enumerate(occ):  # runs of one style: one append each
                ch = _shade(frac)
                lo, hi = i * cell, (i + 1) * cell
                if rel and any(va < hi and va + size_ > lo for va, size_ in rel):
                    style, ch = hit_style, (ch if ch != " " else "·")
                else:
                    style = bar_style
                if style is not run_style and run:
                    t.append("".join(run), style=run_style)
                    run = []
                run_style = style
                run.append(ch)
            if run:
                t.append("".join(run), style=run_style)
            for mod in mods:
                places = [p for p in (mod.layout.placements.values() if mod.layout is not None else ())
                          if p.address is not None and row.start <= p.address < row.end and p.section.size]
                if places:
                    names = " ".join(p.section.name for p in sorted(places, key=lambda p: p.address))
                    t.append(f"\n ▸ {mod.name}: ", style="bold " + color("module"))
                    t.append(names[: max(0, width - len(mod.name) - 5)], style=color("module"))
            if window is not row:
                t.append(f"\n {window.start:#x} +{size_text(window.size)}"[: width + 1], style="dim")
            t.append("\n")
        return t


class StepsView(Static, can_focus=True):
    """The scenario's steps: those made (with their status), the current one marked, then
    those still to come, dimmed: a window around the current one, drawn as lines (a step's
    redraw costs the same at step 10 and at step 10,000). A click on a line goes there."""

    class Selected(Message):
        """A line was clicked: ``record`` (an index into the records) or ``step`` (a step
        number not reached yet)."""

        def __init__(self, record: int | None = None, step: int | None = None):
            super().__init__()
            self.record = record
            self.step = step

    def __init__(self, model: Model, **kw):
        super().__init__(**kw)
        self.model = model
        self._lines: list = []  # per line drawn: ("r", index) or ("s", number) or None

    def refresh_from(self) -> None:
        self.refresh()

    def render(self) -> Text:
        m = self.model
        st = m.stepper
        height = max(3, self.size.height or 20)
        before = max(1, height // 3)
        first = max(0, st.position - before)
        lines: list = []
        t = Text(no_wrap=True, overflow="ellipsis")
        if first:
            t.append(f"  … {first} earlier records (g: jump to a step)\n", style="dim")
            lines.append(None)
        for i in range(first, st.position):
            rec = st.records[i]
            here = i == st.position - 1
            t.append("▶ " if here else "  ", style="bold")
            t.append(f"{rec.step:>5} ", style="bold" if here else "dim")
            t.append(f"{rec.op} ", style="bold reverse" if here else "bold")
            t.append(rec.text.splitlines()[0] if rec.text else "", style=STATUS_STYLE.get(rec.status, ""))
            if record_faulted(rec):
                t.append(" ⚡", style="yellow")
            t.append("\n")
            lines.append(("r", i))
        started = int(st.current.step.split(".")[0]) if st.current is not None else 0
        room = max(0, height - len(lines) - 1)
        upcoming = [spec for spec in m.run.scenario.steps if spec.number > started][:room]
        for spec in upcoming:
            t.append(f"· {spec.number:>5} {spec.op.name} " + " ".join(f"{k}={getattr(v, 'text', v)}"
                                                                  for k, v in spec.loaded.items()) + "\n",
                     style="dim")
            lines.append(("s", spec.number))
        left = len(m.run.scenario.steps) - started - len(upcoming)
        if left > 0:
            t.append(f"  … {left} more steps\n", style="dim")
            lines.append(None)
        self._lines = lines
        return t

    def on_click(self, event) -> None:
        y = event.y
        if 0 <= y < len(self._lines) and self._lines[y] is not None:
            kind, n = self._lines[y]
            self.post_message(self.Selected(record=n) if kind == "r" else self.Selected(step=n))


class StepDetails(Static):
    """What the current step did: its operation and result, the entries it wrote (before and
    after), the frames and areas it changed, the lines it logged."""

    def __init__(self, model: Model, **kw):
        super().__init__(**kw)
        self.model = model

    def refresh_from(self) -> None:
        show(self, self.build())

    def build(self) -> Text:
        m = self.model
        st = m.stepper
        rec = st.current
        t = Text()
        if rec is None:
            t.append(f"{m.title}\n", style="bold")
            t.append("As booted. n: next step · p: previous · ?: every key\n")
            if m.run.scenario.title:
                t.append(f"\n{m.run.scenario.title}\n", style="bold")
            if m.run.scenario.description:
                t.append(m.run.scenario.description.strip() + "\n")
            return t
        t.append(f"step {rec.step}: {rec.op}", style="bold")
        t.append(f"  [{rec.status}]\n", style=STATUS_STYLE.get(rec.status, "green"))
        if rec.args:
            t.append("  " + " ".join(f"{k}={_arg(v)}" for k, v in rec.args.items()) + "\n", style="dim")
        if rec.note:
            t.append(f"  {rec.note}\n", style="italic")
        if rec.text:
            t.append(f"→ {rec.text}\n")
        if rec.error and rec.status != "error-expected":
            t.append(f"✗ {rec.error}\n", style="bold red")
        events = rec.mapping_events or []
        ops = rec.operations or []
        if events or ops:
            t.append("page-table operations:\n", style="bold")
            for e in events:
                t.append(f"  #{e.seq} {e.writer} {e.kind} {e.va:#x}+{size_text(e.size)} "
                         f"({e.entry_count} entries){' for ' + e.context if e.context else ''}\n")
            for op in ops:
                n = sum(len(c.old) // c.level.entry_size for c in op.changes)
                t.append(f"  {op.writer} {op.kind} {op.va:#x}+{size_text(op.size)} ({n} entries)\n")
        changed = m.changed_now()
        if changed:
            t.append("entries written (before → after):\n", style="bold")
            pt = m.k.pgtable
            width = 2 * max(lv.entry_size for lv in pt.levels)
            for n, ((table, index), (old, new)) in enumerate(sorted(changed.items())):
                if n == 12:
                    t.append(f"  ... {len(changed) - 12} more\n", style="dim")
                    break
                info = pt.tables.get(table)
                lvname = pt.levels[info.level_index].name if info else "?"
                t.append(f"  {lvname:>4} {table:#x}[{index:3d}] ")
                t.append(f"{old:0{width}x}", style="red")
                t.append(" → ")
                t.append(f"{new:0{width}x}\n", style="green")
        if rec.free_pages:
            t.append("free pages: " + ", ".join(f"{z} {b} → {a}" for z, (b, a) in rec.free_pages.items()) + "\n")
        if rec.vmap_areas[0] != rec.vmap_areas[1]:
            t.append(f"vmap areas: {rec.vmap_areas[0]} → {rec.vmap_areas[1]}\n")
        if rec.log:
            t.append("logged:\n", style="bold")
            for line in rec.log[:20]:
                t.append(f"  {line}\n", style="yellow" if "BUG" in line or "Oops" in line else "")
        return t


class TablesView(Tree):
    """The page-table tree, expanded on demand: the master table or a process's, each
    entry decoded from the arch's formats, with the function that wrote it and the step;
    the tables on the path of the current step's changes are opened, its entries marked."""

    def __init__(self, model: Model, **kw):
        super().__init__("page tables", **kw)
        self.model = model
        self.show_root = True
        self._open: set = set()
        self._first_mark = None

    def refresh_from(self) -> None:
        m = self.model
        root_table = m.root()
        kroot = m.k.pgtable.is_kernel_root(root_table) or m.k.pgtable.mode.form != "split"
        self.clear()
        self.root.set_label(Text(f"{m.root_name()} @ {root_table:#x} · top level {m.level_name(0)}", style="bold"))
        self.root.data = (root_table, 0, 0, kroot)
        want = set(self._open)
        # the tables on the way to what the current step wrote
        for va, _size in _touched_vas(m):
            try:
                w = m.k.pgtable.walk(root_table, va)
            except Exception:
                continue
            for s in w.steps[:-1]:
                want.add((s.table, s.li))
            if w.steps:
                want.add((w.steps[-1].table, w.steps[-1].li))
        self._first_mark = None
        self._fill(self.root, want)
        self.root.expand()
        if self._first_mark is not None:
            node = self._first_mark
            self.call_after_refresh(self._show_node, node)

    def _show_node(self, node) -> None:
        self.move_cursor(node)
        self.scroll_to_node(node, animate=False)

    def _fill(self, node, want: set) -> None:
        table, li, base, kroot = node.data
        m = self.model
        levels = m.k.pgtable.levels
        rows = m.table_rows(table, li, base, kroot)
        digits = 2 * m.k.ptr_size
        for row in rows:
            label = Text(no_wrap=True)
            mark = row.changed is not None
            label.append("● " if mark else "  ", style="bold yellow")
            label.append(f"{levels[li].name}[{row.index}] ", style="bold" if mark else "")
            label.append(f"{row.va:0{digits}x} ", style="bold" if mark else "")
            label.append(f"{row.kind}", style="bold")
            if row.addr is not None:
                label.append(f"→{row.addr:#x}")
            label.append(f" {row.writer or '?'}@{row.step}", style="magenta")
            flags = [k for k, v in row.fields.items() if v is True]
            if flags:
                label.append(" " + ",".join(flags), style="dim")
            label.append(f" {row.raw:0{2 * levels[li].entry_size}x}", style="cyan")
            if mark and row.changed[0] != row.changed[1]:
                label.append(f" (was {row.changed[0]:#x})", style="red")
            if row.kind == "table" and li + 1 < len(levels):
                child = node.add(label, data=(row.addr, li + 1, base + row.index * levels[li].span, kroot))
                if mark and self._first_mark is None:
                    self._first_mark = child
                child.allow_expand = True
                key = (row.addr, li + 1)
                if key in want:
                    self._fill(child, want)
                    child.expand()
            else:
                leaf = node.add_leaf(label)
                if mark and self._first_mark is None:
                    self._first_mark = leaf

    def on_tree_node_expanded(self, event: Tree.NodeExpanded) -> None:
        node = event.node
        if node.data is None or node is self.root:
            return
        self._open.add((node.data[0], node.data[1]))
        if not node.children:
            self._fill(node, set())

    def on_tree_node_collapsed(self, event: Tree.NodeCollapsed) -> None:
        if event.node.data is not None:
            self._open.discard((event.node.data[0], event.node.data[1]))


def _touched_vas(m: Model):
    from .model import touched

    cur = m.stepper.current
    return touched(cur)[:8] if cur is not None else []


class WalkView(Vertical):
    """The walk of an address (typed: a number or an expression of the scenario's names),
    as the MMU does it; with another arch's run side by side on request."""

    def __init__(self, model: Model, **kw):
        super().__init__(**kw)
        self.model = model
        self.expr = ""
        self.other = None  # a Model of the same scenario on another arch

    def compose(self):
        yield Input(placeholder="address or expression (e.g. buf + 0x1000), Enter", id="walk-input")
        with VerticalScroll(id="walk-scroll"):
            yield Static(id="walk-out")

    def default_address(self) -> int | None:
        m = self.model
        cur = m.stepper.current
        if cur is not None:
            if cur.mapping_events:
                return cur.mapping_events[-1].va
            if cur.operations:
                return cur.operations[-1].va
            if cur.value is not None and cur.value > 0xFFFF:
                return cur.value
            addr = cur.args.get("addr")
            if isinstance(addr, int) and not isinstance(addr, bool):
                return addr
        return None

    def evaluate(self, model: Model, text: str) -> int:
        from ..scenario import parse

        return parse(text).evaluate(model.run.values)

    def refresh_from(self) -> None:
        out = self.query_one("#walk-out", Static)
        m = self.model
        text = self.expr
        t = Text()
        cols = [(m, None)] + ([(self.other, None)] if self.other is not None else [])
        for model, _ in cols:
            try:
                va = self.evaluate(model, text) if text else self.default_address()
            except Exception as exc:
                t.append(f"{model.run.machine['arch']}: {exc}\n", style="red")
                continue
            if va is None:
                t.append("Type an address (or a name the scenario bound) and press Enter.\n", style="dim")
                continue
            if self.other is not None:
                t.append(f"── {model.title} ──\n", style="bold")
            for line, kind in model.walk_lines(va):
                style = {"title": "bold", "error": "bold red", "fault": "yellow", "table": "",
                         "leaf": "green", "none": "dim"}.get(kind)
                t.append(line + "\n", style=style if style is not None else color(kind))
        show(out, t)


class FramesView(Vertical):
    """Physical memory: each zone's frames as cells coloured by owner, the legend, the
    buddy free lists, and a frame's record with every virtual address that maps it."""

    def __init__(self, model: Model, **kw):
        super().__init__(**kw)
        self.model = model
        self.pfn: int | None = None

    def compose(self):
        with VerticalScroll(id="frames-scroll"):
            yield Static(id="frames-grid")
            yield Input(placeholder="a pfn (or a physical address past the last pfn), Enter", id="frame-input")
            yield Static(id="frame-info")

    def refresh_from(self) -> None:
        m = self.model
        width = max(20, self.size.width - 4)
        rows_per_zone = 3
        t = Text(no_wrap=True)
        for g in m.zone_grids(width * rows_per_zone):
            t.append(f"{g.name}", style="bold")
            t.append(f"  pfn {g.start_pfn:#x}-{g.end_pfn:#x}, {g.per_cell} frame{'s' if g.per_cell > 1 else ''} a cell\n",
                     style="dim")
            for i, (kind, frac) in enumerate(g.cells):
                ch = "·" if kind == "free" else _shade(max(frac, 0.01))
                t.append(ch, style=color(kind))
                if (i + 1) % width == 0:
                    t.append("\n")
            t.append("\n")
        t.append_text(legend(["user", "direct", "vmalloc", "module", "kmap", "pagetable", "kernel", "reserved",
                              "free"]))
        t.append("\n\n/proc/buddyinfo\n", style="bold")
        t.append(m.buddyinfo())
        show(self.query_one("#frames-grid", Static), t)
        pfn = self.pfn
        if pfn is None:
            cur = m.stepper.current
            if cur is not None:
                for e in cur.mapping_events:
                    mapped, _ = e.frames()
                    if mapped:
                        pfn = mapped[0]
                        break
        info = Text()
        if pfn is not None:
            for line, kind in m.frame_info(pfn):
                info.append(line + "\n", style="bold" if kind == "title" else color(kind))
        else:
            info.append("Type a pfn to see its record and every address that maps it (its aliases).", style="dim")
        show(self.query_one("#frame-info", Static), info)


class ModuleView(VerticalScroll):
    """The module being loaded (or the newest): the loader's steps in order with the current
    one marked, its sections where they were placed, and its code around the current or
    faulting instruction, disassembled."""

    def __init__(self, model: Model, **kw):
        super().__init__(**kw)
        self.model = model

    def compose(self):
        yield Static(id="module-out")

    def refresh_from(self) -> None:
        m = self.model
        st = m.stepper
        t = Text()
        cur = st.current
        spec = None
        if cur is not None and "." in cur.step:
            spec = cur.step.split(".")[0]
        else:
            for rec in reversed(st.records):
                if "." in rec.step:
                    spec = rec.step.split(".")[0]
                    break
        if spec is not None:
            t.append(f"loader steps of step {spec}:\n", style="bold")
            for rec in st.records:
                if rec.step.split(".")[0] == spec and "." in rec.step:
                    here = rec is cur
                    t.append(("▶ " if here else "  ") + f"{rec.step:>6} {rec.text}\n", style="bold" if here else "")
        mods = m.modules()
        if not mods:
            t.append("\nNo module is loaded.\n", style="dim")
        for mod in mods:
            t.append(f"\nmodule {mod.name} [{mod.state}]", style="bold " + color("module"))
            if mod.init is not None:
                t.append(f"  init {mod.init:#x}")
            t.append("\n")
            placements = [p for p in (mod.layout.placements.values() if mod.layout is not None else ())
                          if p.address is not None]  # (placed: the loader's move_module has run)
            for p in sorted(placements, key=lambda p: p.address):
                t.append(f"  {p.address:#x} {p.section.name:<24} {p.section.size:#x} bytes\n")
        addr = m.code_address()
        if addr is not None:
            t.append(f"\ncode at {addr:#x} {m.k.symbol_at(addr) or ''}\n", style="bold")
            rows = m.disassemble(addr)
            if not rows:
                t.append("  (no disassembler for this arch, or the code is not mapped)\n", style="dim")
            for a, hexb, insn, here in rows:
                t.append(("=> " if here else "   ") + f"{a:#x}  {hexb:<24} {insn}\n",
                         style="bold reverse" if here else "")
        show(self.query_one("#module-out", Static), t)


class LogView(VerticalScroll):
    """The kernel log (printk, oops, WARN) and the fault log (address, decoded error code,
    the record it happened in)."""

    def __init__(self, model: Model, **kw):
        super().__init__(**kw)
        self.model = model

    def compose(self):
        yield Static(id=f"{self.id}-out")

    #: the newest lines shown (the rest: `mmemu dmesg --scenario FILE --step N`)
    LINES = 60

    def refresh_from(self) -> None:
        m = self.model
        lines = m.kernel_log()
        key = (id(m), len(lines), lines[-1] if lines else "", len(m.faults),
               (m.faults[-1].record, m.faults[-1].address) if m.faults else None)
        if key == getattr(self, "_drawn", None):
            return
        self._drawn = key
        t = Text()
        t.append("kernel log" + (f" (the last {self.LINES} of {len(lines)} lines)" if len(lines) > self.LINES else "")
                 + "\n", style="bold")
        for line in lines[-self.LINES:]:
            bad = any(w in line for w in ("BUG", "Oops", "WARNING", "segfault", "unable to handle"))
            t.append(line + "\n", style="bold red" if bad else "")
        t.append(f"\nfault log ({len(m.faults)} faults)\n", style="bold")
        recs = m.stepper.records
        for f in m.faults[-self.LINES:]:
            step = recs[f.record].step if f.record < len(recs) else "?"
            t.append(f"  step {step:>5}  {f.address:#x}  {f.text}"
                     + (f"  ip {f.ip:#x}" if f.ip is not None else "") + "\n",
                     style="yellow" if not f.user else "")
        show(self.query_one(f"#{self.id}-out", Static), t)


def _arg(v) -> str:
    """An argument as the step shows it: addresses in hex."""
    if isinstance(v, int) and not isinstance(v, bool) and v > 0xFFFF:
        return hex(v)
    return str(v)
