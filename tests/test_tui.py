"""The UI driven as a person drives it (Textual's pilot): every key and every pane, and
snapshots of the main screens at 80x24 and 160x50 on each arch (pytest-textual-snapshot:
`pytest --snapshot-update` rewrites tests/__snapshots__ after a change has been looked at)."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import Input, Static, TabbedContent

from mmemu.tui.app import AskScreen, ChooseScreen, HelpScreen, MmemuApp

SCENARIOS = Path(__file__).resolve().parent.parent / "examples" / "scenarios"
ARCHES = ["x86_64", "i386", "i386_pae", "riscv64", "arm64"]


def app_for(arch: str = "x86_64", step: int = 0) -> MmemuApp:
    return MmemuApp(SCENARIOS / f"tour-{arch}.toml", step=step)


def text_of(app, selector: str) -> str:
    c = app.query_one(selector, Static).content
    return str(getattr(c, "plain", c))


def status(app) -> str:
    return text_of(app, "#status")


async def test_next_and_previous_step_move_and_undo():
    app = app_for()
    async with app.run_test(size=(120, 40)) as pilot:
        st = app.model.stepper
        k = app.model.k
        assert st.position == 0 and "as booted" in status(app)
        free0 = k.frames.nr_free_pages()
        await pilot.press("n", "n", "n")
        assert st.position == 3 and "step 3 of" in status(app)
        assert k.frames.nr_free_pages() < free0
        await pilot.press("right")
        assert st.position == 4
        await pilot.press("p", "left", "p", "p")
        assert st.position == 0 and k.frames.nr_free_pages() == free0
        await pilot.press("p")  # at the start: nothing to undo, said so
        assert st.position == 0


async def test_run_to_the_end_and_to_the_next_fault():
    app = app_for("x86_64")
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("f")
        await app.workers.wait_for_complete()
        await pilot.pause()
        from mmemu.scenario.stepper import record_faulted

        st = app.model.stepper
        assert st.current is not None and record_faulted(st.current)
        await pilot.press("e")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert st.at_end and app.model.run.ok
        assert "every expectation held" in status(app)


async def test_escape_stops_a_run_between_two_steps():
    app = app_for("x86_64")
    async with app.run_test(size=(120, 40)) as pilot:
        app._stop.set()  # as if escape came first: the worker stops before its first step
        app._stop.clear()
        await pilot.press("e")
        await pilot.press("escape")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert app._stop.is_set()
        assert not app.busy


async def test_jump_to_a_step():
    app = app_for()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("g")
        assert isinstance(app.screen, AskScreen)
        await pilot.press("1", "4", "enter")
        await pilot.pause()
        assert app.model.stepper.current.step == "14"
        await pilot.press("g", "3", "enter")
        await pilot.pause()
        assert app.model.stepper.current.step == "3"
        await pilot.press("g", "x", "enter")  # not a number: refused, nothing moves
        await pilot.pause()
        assert app.model.stepper.current.step == "3"


async def test_go_to_an_address_walks_it():
    app = app_for("x86_64", step=3)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("a")
        assert app.query_one(TabbedContent).active == "walk"
        assert isinstance(app.focused, Input)
        for ch in "buf + 0x1000":
            await pilot.press(ch if ch != " " else "space")
        await pilot.press("enter")
        await pilot.pause()
        k = app.model.k
        w = k.walk(app.model.run.values["buf"] + 0x1000)
        out = text_of(app, "#walk-out")
        assert f"phys {w.phys:#x}" in out
        assert all(f"{s.raw:#0{2 + 2 * s.level.entry_size}x}" in out for s in w.steps)


async def test_tabs_and_their_panes():
    app = app_for("x86_64", step=10)  # inside nothing: step 10 is the module load, done
    async with app.run_test(size=(160, 50)) as pilot:
        tabs = app.query_one(TabbedContent)
        for key, name in zip("123456", ("steps", "tables", "walk", "frames", "module", "log")):
            await pilot.press(key)
            await pilot.pause()
            assert tabs.active == name
        await pilot.press("5")
        await pilot.pause()
        out = text_of(app, "#module-out")
        assert "module hello" in out and "=> 0x" in out  # its code, disassembled
        await pilot.press("6")
        await pilot.pause()
        assert "hello: hello from a module" in text_of(app, "#logview-out")
        await pilot.press("4")
        await pilot.pause()
        grid = text_of(app, "#frames-grid")
        assert "DMA32" in grid and "/proc/buddyinfo" in grid
        app.query_one("#frame-input", Input).focus()
        pfn = app.model.k.walk(app.model.k.layout.symbols["PAGE_OFFSET"] + 0x200000).phys >> 12
        for ch in hex(pfn):
            await pilot.press(ch)
        await pilot.press("enter")
        await pilot.pause()
        info = text_of(app, "#frame-info")
        assert f"pfn {pfn:#x}" in info and "direct mapping" in info


async def test_the_tree_opens_on_what_the_step_wrote():
    app = app_for("x86_64", step=3)  # vmalloc: a pte table of the vmalloc space written
    async with app.run_test(size=(160, 50)) as pilot:
        await pilot.press("2")
        await pilot.pause()
        tree = app.query_one("#tree")
        labels = []

        def walk(node):
            labels.append(str(node.label))
            for c in node.children:
                walk(c)

        walk(tree.root)
        marked = [lab for lab in labels if lab.startswith("●")]
        assert marked and all("vmalloc@3" in lab for lab in marked)


async def test_toggle_the_page_table_between_the_kernel_and_a_process():
    app = app_for("x86_64", step=16)  # a process exists
    async with app.run_test(size=(120, 40)) as pilot:
        assert app.model.pid is None
        await pilot.press("t")
        assert app.model.pid is not None
        assert str(app.query_one("#tree").root.label).startswith("pgd of demo")
        while app.model.pid is not None:
            await pilot.press("t")
        assert str(app.query_one("#tree").root.label).startswith("swapper_pg_dir")


async def test_switch_arch_runs_the_scenario_again_there():
    app = app_for("x86_64", step=4)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("s")
        assert isinstance(app.screen, ChooseScreen)
        choose = app.screen.query_one("#choose")
        choose.highlighted = app.screen.choices.index("riscv64")
        await pilot.press("enter")
        await pilot.pause()
        assert app.model.run.machine["arch"] == "riscv64"
        assert app.model.stepper.position == 4
        assert "riscv64" in app.sub_title


async def test_compare_puts_another_arch_beside_the_walk():
    app = app_for("x86_64", step=3)
    async with app.run_test(size=(160, 50)) as pilot:
        await pilot.press("c")
        choose = app.screen.query_one("#choose")
        choose.highlighted = app.screen.choices.index("i386")
        await pilot.press("enter")
        await pilot.pause()
        out = text_of(app, "#walk-out")
        assert "x86_64 4-level" in out and "i386 2-level" in out


async def test_help_theme_palette_and_quit():
    app = app_for()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)
        theme = app.theme
        await pilot.press("d")
        assert app.theme != theme
        await pilot.press("ctrl+p")
        await pilot.pause()
        for ch in "next step":
            await pilot.press(ch if ch != " " else "space")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await pilot.pause()
        assert app.model.stepper.position == 1
        await pilot.press("q")
        await pilot.pause()
    assert app.return_code == 0


async def test_clicking_a_step_in_the_list_goes_there():
    app = app_for("x86_64", step=6)
    async with app.run_test(size=(120, 40)) as pilot:
        steps = app.query_one("#steps-list")
        await pilot.pause()
        y = steps._lines.index(("r", 1))  # the second record
        await pilot.click("#steps-list", offset=(8, y))
        await pilot.pause()
        assert app.model.stepper.position == 2
        y = steps._lines.index(("s", 9))  # a step not made yet: run to its end
        await pilot.click("#steps-list", offset=(8, y))
        await pilot.pause()
        assert app.model.stepper.current.step == "9"


async def test_a_step_the_arch_cannot_do_is_said_not_raised(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[machine]\narch = "x86_64"\n[[step]]\nop = "set_fixmap"\nidx = "FIX_NO_SUCH_SLOT"\n'
                   'phys = 0x1000\n')
    app = MmemuApp(bad)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("n")
        await pilot.pause()
        assert app.model.stepper.position == 0
        shown = [n.message for n in app._notifications]
        assert any("FIX_NO_SUCH_SLOT" in msg for msg in shown), shown
        await pilot.press("n", "p", "e")  # still alive, still refusing
        await app.workers.wait_for_complete()
        assert app.model.stepper.position == 0


# -- snapshots -----------------------------------------------------------------------------

@pytest.mark.parametrize("arch", ARCHES)
@pytest.mark.parametrize("size", [(80, 24), (160, 50)], ids=["80x24", "160x50"])
def test_snapshot_main_screen(snap_compare, arch, size):
    assert snap_compare(app_for(arch, step=4), terminal_size=size)


@pytest.mark.parametrize("tab", ["2", "3", "4", "5"], ids=["tables", "walk", "frames", "module"])
def test_snapshot_panes(snap_compare, tab):
    async def show_pane(pilot):
        # the pane is filled by a worker: on a loaded machine the screenshot could be taken
        # before it finished (seen once for the frames pane in a full run under load)
        await pilot.press(tab)
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()

    assert snap_compare(app_for("x86_64", step=10), run_before=show_pane, terminal_size=(160, 50))


@pytest.mark.parametrize("arch,insmod_step", [("i386", 17), ("x86_64", 10), ("arm64", 12)])
async def test_stepping_through_a_stepwise_module_load_with_every_pane(arch, insmod_step):
    """Through every loader step of the tour's stepwise insmod with the map and the module
    pane drawn at each (a section not placed yet has no address), then back."""
    app = app_for(arch, step=insmod_step - 1)
    async with app.run_test(size=(100, 30)) as pilot:
        st = app.model.stepper
        await pilot.press("5")
        start = st.position
        while True:
            before = st.position
            await pilot.press("n")
            assert st.position == before + 1, f"stuck at {st.current.step}"
            if "." not in st.current.step:
                break
        assert "module" in text_of(app, "#module-out")
        while st.position > start:
            await pilot.press("p")
        assert st.position == start
