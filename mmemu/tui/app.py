"""The Textual app: a scenario stepped through forwards and backwards, each mapping shown in
the map, the page-table tree, the walk, the frames, the module pane and the logs."""

from __future__ import annotations

from pathlib import Path
from threading import Event

from rich.text import Text
from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.command import Hit, Hits, Provider
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Footer, Header, Input, OptionList, Static, TabbedContent, TabPane
from textual.widgets.option_list import Option

from ..errors import MmemuError
from ..scenario import ScenarioError, ScenarioRun, load
from ..scenario.stepper import Stepper
from .model import Model
from .panes import FramesView, LogView, MapView, ModuleView, StepDetails, StepsView, TablesView, WalkView

HELP = """\
[b]mmemu[/b]: a scenario of kernel operations, one step at a time.

  n  →        next step              p  ←        previous step (exactly undone)
  e           run to the end         f           run to the next page fault
  g           jump to a step         a           go to an address (the walk)
  t           kernel's table / each process's page table in turn
  s           switch arch: the scenario again on another arch, at the same step
  c           compare: the walk side by side with another arch
  1-6         Steps, Tables, Walk, Frames, Module, Log
  d           light / dark           ctrl+p      command palette
  escape      stop a run             ?           this help       q  quit

[b]Panes[/b]
  Map      every region of the layout; each bar is the region cut into equal parts,
           shaded by how much of each is mapped; what the step touched is reversed.
  Tables   the page-table tree (levels folded as the kernel folds them); each entry
           decoded from the arch's formats, with the kernel function that wrote it
           and the step; ● marks what the current step wrote.
  Walk     the MMU's walk of an address, each level's table, index and entry, down
           to the frame or the fault it raises (with the arch's error code).
  Frames   the frames of each zone by owner, /proc/buddyinfo, and one frame with
           every virtual address that maps it.
  Module   the loader's steps, the sections, the code around init or a fault.
  Log      the kernel log and the fault log.
"""


class HelpScreen(ModalScreen):
    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help"):
            yield Static(HELP)


class AskScreen(ModalScreen[str | None]):
    """One line of input (a step number, an address)."""

    BINDINGS = [Binding("escape", "cancel", "cancel")]

    def __init__(self, prompt: str):
        super().__init__()
        self.prompt = prompt

    def compose(self) -> ComposeResult:
        with Vertical(id="ask"):
            yield Static(self.prompt)
            yield Input(id="ask-input")

    @on(Input.Submitted)
    def submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip())

    def action_cancel(self) -> None:
        self.dismiss(None)


class ChooseScreen(ModalScreen[str | None]):
    """A choice from a list (an arch)."""

    BINDINGS = [Binding("escape", "cancel", "cancel")]

    def __init__(self, prompt: str, choices: list[str]):
        super().__init__()
        self.prompt = prompt
        self.choices = choices

    def compose(self) -> ComposeResult:
        with Vertical(id="ask"):
            yield Static(self.prompt)
            yield OptionList(*[Option(c, id=c) for c in self.choices], id="choose")

    @on(OptionList.OptionSelected)
    def chosen(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    def action_cancel(self) -> None:
        self.dismiss(None)


class MmemuCommands(Provider):
    """The command palette: every action of the keys, by name."""

    async def search(self, query: str) -> Hits:
        app = self.app
        matcher = self.matcher(query)
        for name, action, help_ in app.COMMANDS_LIST:
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name), getattr(app, f"action_{action}"), help=help_)


TABS = ("steps", "tables", "walk", "frames", "module", "log")


class MmemuApp(App):
    """Step through a scenario's mappings. *scenario*: a file; *overrides*: machine options
    on top of the file's; *step*: the step to open at (0: as booted)."""

    CSS_PATH = "mmemu.tcss"
    TITLE = "mmemu"
    COMMANDS = App.COMMANDS | {MmemuCommands}
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (130, "-wide")]
    BINDINGS = [
        Binding("n,right", "next", "next"),
        Binding("p,left", "prev", "prev"),
        Binding("e", "to_end", "end"),
        Binding("f", "next_fault", "fault"),
        Binding("g", "jump", "jump"),
        Binding("a", "address", "addr"),
        Binding("t", "toggle_table", "table"),
        Binding("s", "switch_arch", "arch"),
        Binding("c", "compare", "compare", show=False),
        Binding("d", "toggle_dark", "theme", show=False),
        Binding("escape", "stop", "stop", show=False),
        Binding("question_mark", "help", "help"),
        Binding("q", "quit", "quit"),
    ] + [Binding(str(i + 1), f"tab('{name}')", name, show=False) for i, name in enumerate(TABS)]
    COMMANDS_LIST = [
        ("next step", "next", "make the next step"),
        ("previous step", "prev", "take the last step back"),
        ("run to the end", "to_end", "every step left"),
        ("run to the next fault", "next_fault", "forward until a step takes a page fault"),
        ("jump to a step", "jump", "go to step N"),
        ("go to an address", "address", "walk an address"),
        ("toggle page table", "toggle_table", "the kernel's table or a process's"),
        ("switch arch", "switch_arch", "run the scenario on another arch"),
        ("compare with another arch", "compare", "the walk side by side"),
        ("help", "help", "every key"),
    ]

    def __init__(self, scenario: "str | Path", overrides: dict | None = None, step: int = 0):
        super().__init__()
        self.scenario_path = Path(scenario)
        self.overrides = dict(overrides or {})
        self.model = self._make_model(self.overrides)
        self._start_step = step  # open at the end of this step of the scenario
        self._stop = Event()
        self.busy = False

    def _make_model(self, overrides: dict) -> Model:
        return Model(Stepper(ScenarioRun(load(self.scenario_path), overrides)))

    # -- layout -----------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        m = self.model
        yield Header()
        with Horizontal(id="main"):
            with VerticalScroll(id="map-column"):
                yield MapView(m, id="map")
            with TabbedContent(id="tabs", initial="steps"):
                with TabPane("Steps", id="steps"):
                    yield StepsView(m, id="steps-list")
                    with VerticalScroll(id="details-scroll"):
                        yield StepDetails(m, id="details")
                with TabPane("Tables", id="tables"):
                    yield TablesView(m, id="tree")
                with TabPane("Walk", id="walk"):
                    yield WalkView(m, id="walkview")
                with TabPane("Frames", id="frames"):
                    yield FramesView(m, id="framesview")
                with TabPane("Module", id="module"):
                    yield ModuleView(m, id="moduleview")
                with TabPane("Log", id="log"):
                    yield LogView(m, id="logview")
            with Vertical(id="side"):
                with VerticalScroll(id="side-details-scroll"):
                    yield StepDetails(m, id="side-details")
                yield LogView(m, id="side-log")
        yield Static(id="status")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = f"{self.model.title} · {self.scenario_path.name}"
        if self._start_step:
            self._goto_step(self._start_step)
        self._draw_status()  # needs no sizes: on screen from the first frame
        # drawn once every widget has its size (the map's bars are as wide as their column)
        self.call_after_refresh(self.redraw)

    def on_resize(self, _event) -> None:
        self.call_after_refresh(self.redraw)

    # -- drawing ------------------------------------------------------------------------------

    def _draw_status(self) -> None:
        """The status line: where the stepper stands and, at the end, how the run ended."""
        m = self.model
        st = m.stepper
        total = len(m.run.scenario.steps)
        cur = st.current
        where = "as booted" if cur is None else f"step {cur.step} of {total}: {cur.op} · {cur.text.splitlines()[0] if cur.text else ''}"
        status = Text(f" {where}", no_wrap=True, overflow="ellipsis")
        if st.at_end:
            if m.run.ok:
                status.append("   ✓ every expectation held", style="green")
            else:
                why = m.run.stopped.text if m.run.stopped else f"{len(m.run.failed)} expectation(s) failed"
                status.append(f"   ✗ stopped: {why}", style="bold red")
        self.query_one("#status", Static).update(status)

    def redraw(self) -> None:
        """Draw what the current step changed: the map, the status line, the steps and the
        panes on screen (a hidden tab is drawn when it is shown)."""
        m = self.model
        title = f"{m.title} · {self.scenario_path.name}"
        if self.sub_title != title:
            self.sub_title = title
        self.query_one("#map", MapView).refresh_from()
        self._draw_status()
        self._draw_tab(self.query_one("#tabs", TabbedContent).active)
        # the side column (shown in a wide terminal), drawn whatever the width: the width
        # classes may come after this redraw
        self.query_one("#side-details", StepDetails).refresh_from()
        self.query_one("#side-log", LogView).refresh_from()

    def _draw_tab(self, tab: str) -> None:
        if tab == "steps":
            self.query_one("#steps-list", StepsView).refresh_from()
            self.query_one("#details", StepDetails).refresh_from()
        elif tab == "tables":
            self.query_one("#tree", TablesView).refresh_from()
        elif tab == "walk":
            self.query_one("#walkview", WalkView).refresh_from()
        elif tab == "frames":
            self.query_one("#framesview", FramesView).refresh_from()
        elif tab == "module":
            self.query_one("#moduleview", ModuleView).refresh_from()
        elif tab == "log":
            self.query_one("#logview", LogView).refresh_from()

    @on(TabbedContent.TabActivated)
    def tab_activated(self, event: TabbedContent.TabActivated) -> None:
        self._draw_tab(event.pane.id)

    # -- moving -------------------------------------------------------------------------------

    def _move(self, fn) -> bool:
        """Run *fn(stepper)*; a step the machine cannot do is reported, not raised."""
        m = self.model
        try:
            fn(m.stepper)
        except (ScenarioError, MmemuError) as exc:
            self.notify(str(exc), title="the step cannot run", severity="error", timeout=8)
            m.after_move()
            return False
        m.after_move()
        return True

    def action_next(self) -> None:
        if self.busy:
            return
        if self.model.stepper.at_end:
            self.notify("at the end of the scenario", timeout=2)
            return
        self._move(lambda st: st.forward())
        self.redraw()

    def action_prev(self) -> None:
        if self.busy:
            return
        if self.model.stepper.position == 0:
            self.notify("at the start: the machine as booted", timeout=2)
            return
        self._move(lambda st: st.back())
        self.redraw()

    def action_to_end(self) -> None:
        self._run_forward(until_fault=False)

    def action_next_fault(self) -> None:
        self._run_forward(until_fault=True)

    @work(thread=True, exclusive=True, group="run")
    def _run_forward(self, until_fault: bool) -> None:
        """Steps run in a worker thread (code on the CPU among them): the UI stays live and
        escape stops between two steps."""
        from ..scenario.stepper import record_faulted

        if self.busy:
            return
        self.busy = True
        self._stop.clear()
        m = self.model
        found = None
        try:
            while not self._stop.is_set():
                ok = True
                rec = None

                def step(st):
                    nonlocal rec
                    rec = st.forward()

                ok = self._move(step)
                if not ok or rec is None:
                    break
                if until_fault and record_faulted(rec):
                    found = rec
                    break
        finally:
            self.busy = False
        self.call_from_thread(self.redraw)
        if until_fault and found is None and not self._stop.is_set():
            self.call_from_thread(self.notify, "no page fault before the end", timeout=3)
        elif self._stop.is_set():
            self.call_from_thread(self.notify, f"stopped at step {m.stepper.current.step if m.stepper.current else 0}",
                                  timeout=3)

    def action_stop(self) -> None:
        self._stop.set()

    def action_jump(self) -> None:
        def done(value: str | None) -> None:
            if not value:
                return
            try:
                n = int(value, 0)
            except ValueError:
                self.notify(f"not a step number: {value!r}", severity="error")
                return
            self._goto_step(n)

        self.push_screen(AskScreen(f"Jump to which step? (1-{len(self.model.run.scenario.steps)}, 0: as booted)"), done)

    def _goto_step(self, n: int) -> None:
        """To the end of step *n* of the scenario (its last record; 0: as booted)."""

        def go(st):
            while st.records and _spec_no(st.current) > n:
                st.back()
            while not st.at_end:
                rec = st.forward()
                if rec is None:
                    break
                if _spec_no(rec) > n:
                    st.back()
                    break

        self._move(go)
        self.redraw()

    @on(StepsView.Selected)
    def step_selected(self, event: StepsView.Selected) -> None:
        if event.record is not None:
            target = event.record + 1
            self._move(lambda st: st.goto(target))
            self.redraw()
        elif event.step is not None:
            self._goto_step(event.step)

    def action_address(self) -> None:
        self.query_one("#tabs", TabbedContent).active = "walk"
        self.query_one("#walk-input", Input).focus()

    @on(Input.Submitted, "#walk-input")
    def walk_submitted(self, event: Input.Submitted) -> None:
        self.query_one("#walkview", WalkView).expr = event.value.strip()
        self.query_one("#walkview", WalkView).refresh_from()

    @on(Input.Submitted, "#frame-input")
    def frame_submitted(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        fv = self.query_one("#framesview", FramesView)
        try:
            n = int(text, 0)
        except ValueError:
            self.notify(f"not a number: {text!r}", severity="error")
            return
        # a pfn, or a physical address: a number past the last frame of the machine
        last_pfn = max(z.end_pfn for z in self.model.k.frames.zones.values())
        fv.pfn = n if n < last_pfn else n >> 12
        fv.refresh_from()

    def action_toggle_table(self) -> None:
        name = self.model.cycle_process()
        self.notify(f"showing {name}", timeout=2)
        self.model.invalidate([(0, 1 << 64)])
        self.redraw()
        if self.query_one("#tabs", TabbedContent).active != "tables":
            self.query_one("#tree", TablesView).refresh_from()

    def action_tab(self, name: str) -> None:
        self.query_one("#tabs", TabbedContent).active = name

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    def action_toggle_dark(self) -> None:
        self.theme = "textual-light" if self.theme == "textual-dark" else "textual-dark"

    # -- other arches -------------------------------------------------------------------------

    def _arches(self) -> list[str]:
        from ..plugins import default

        _, registry = default()
        return [a for a in registry.names() if a != self.model.run.machine["arch"]]

    def action_switch_arch(self) -> None:
        def done(arch: str | None) -> None:
            if arch:
                self._switch(arch)

        self.push_screen(ChooseScreen("Run the scenario on which arch?", self._arches()), done)

    def _other_model(self, arch: str) -> Model | None:
        """The scenario on *arch* (its default kernel and the file's RAM), at this position."""
        overrides = {k: v for k, v in self.overrides.items() if k not in ("arch", "kernel", "options", "cmdline")}
        overrides["arch"] = arch
        try:
            other = self._make_model(overrides)
        except (ScenarioError, MmemuError) as exc:
            self.notify(str(exc), title=f"cannot boot {arch}", severity="error", timeout=8)
            return None
        target = self.model.stepper.position
        try:
            other.stepper.goto(target)
        except (ScenarioError, MmemuError) as exc:
            self.notify(f"{exc}", title=f"on {arch} the scenario stops at step "
                        f"{other.stepper.current.step if other.stepper.current else 0}", severity="warning", timeout=8)
        other.after_move()
        return other

    def _switch(self, arch: str) -> None:
        other = self._other_model(arch)
        if other is None:
            return
        old = self.model
        self.model = other
        self.overrides = {k: v for k, v in self.overrides.items() if k not in ("kernel", "options", "cmdline")}
        self.overrides["arch"] = arch
        for w in (MapView, StepsView, StepDetails, TablesView, WalkView, FramesView, ModuleView, LogView):
            for widget in self.query(w):
                widget.model = other
        self.query_one("#walkview", WalkView).other = None
        old.close()
        self.redraw()
        self.notify(f"now on {other.title}", timeout=3)

    def action_compare(self) -> None:
        def done(arch: str | None) -> None:
            if not arch:
                return
            other = self._other_model(arch)
            if other is None:
                return
            wv = self.query_one("#walkview", WalkView)
            if wv.other is not None:
                wv.other.close()
            wv.other = other
            self.query_one("#tabs", TabbedContent).active = "walk"
            wv.refresh_from()

        self.push_screen(ChooseScreen("Compare the walk with which arch?", self._arches()), done)

    def on_unmount(self) -> None:
        wv = self.query("#walkview")
        if wv and wv.first().other is not None:
            wv.first().other.close()
        self.model.close()


def _spec_no(rec) -> int:
    return int(rec.step.split(".")[0]) if rec is not None else 0
