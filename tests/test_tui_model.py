"""What the UI shows, checked against the machine without the UI: the map's occupancy against
the tables' leaves, the tree's provenance against the steps that wrote the entries, the walk
against the walker, the aliases of a frame, the fault log against the faults taken, the
disassembly against the module's relocated code. And: the headless parts never import Textual."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from mmemu.scenario import ScenarioRun, load, loads
from mmemu.scenario.stepper import Stepper
from mmemu.tui.model import Model, RegionRow

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ROOT / "examples" / "scenarios"
ARCHES = ["x86_64", "i386", "i386_pae", "riscv64", "arm64"]


def model_at_end(name: str, **overrides) -> Model:
    m = Model(Stepper(ScenarioRun(load(SCENARIOS / name), overrides or None)))
    m.stepper.to_end()
    m.after_move()
    return m


@pytest.fixture(scope="module", params=ARCHES)
def tour(request):
    m = Model(Stepper(ScenarioRun(load(SCENARIOS / f"tour-{request.param}.toml"))))
    yield m
    m.close()


def mapped_bytes(k, root, start, end) -> int:
    total = 0
    for va, size, _pa, _raw, _li in k.pgtable.iter_leaves(root, start, end):
        total += min(va + size, end) - max(va, start)
    return total


def test_occupancy_counts_what_the_tables_map(tour):
    """Where every table is read (cells wider than 4 entries of a level are not read), the
    map's shading adds up to exactly the bytes the leaves map."""
    m = tour
    st = m.stepper
    for _ in range(8):
        st.forward()
    m.after_move()
    for row in m.regions():
        if row.kind == "hole":
            continue
        ext = m.extent(row)
        if ext is None:
            assert sum(m.occupancy(row, 40)) == 0, row.name
            assert mapped_bytes(m.k, m.region_root(row), row.start, row.end) == 0
            continue
        lo, hi = ext
        cells = max(1, (hi - lo) // 4096)
        if cells > 4096:
            continue  # a big direct map: counted by large pages or tables, not page by page
        window = RegionRow(row.name, lo, hi, row.kind, row.layout_kind)
        got = sum(m.occupancy(window, cells)) * (hi - lo) / cells
        assert got == pytest.approx(mapped_bytes(m.k, m.region_root(row), lo, hi), rel=1e-9), row.name


def test_every_step_forward_and_back_keeps_the_views_true(tour):
    """The cached map follows the steps: after any move its figures equal a fresh model's."""
    m = tour
    st = m.stepper
    st.goto(0)
    m.after_move()
    positions = []
    while st.forward() is not None:
        m.after_move()
        positions.append(st.position)
    for pos in [positions[len(positions) // 2], 3, positions[-1], 1]:
        st.goto(pos)
        m.after_move()
        fresh = Model(st)  # (shares the stepper: nothing cached)
        for row in m.regions():
            if row.kind != "hole":
                assert m.extent(row) == fresh.extent(row), (pos, row.name)
                assert m.occupancy(row, 37) == fresh.occupancy(row, 37), (pos, row.name)
        st.listeners.remove(fresh._record_made)
        st.undo_listeners.remove(fresh._record_undone)
        m.k.pm.unregister(fresh._observer)


def test_walk_lines_and_tree_rows_agree_with_the_walker(tour):
    m = tour
    st = m.stepper
    st.to_end()
    m.after_move()
    k = m.k
    for va in [k.layout.symbols["PAGE_OFFSET"] + 0x123000, k.layout.symbols["VMALLOC_START"]]:
        w = k.walk(va)
        lines = [text for text, _ in m.walk_lines(va, k.pgd)]
        assert len(lines) >= 1 + len(w.steps)
        for s, line in zip(w.steps, lines[1:]):
            assert f"{s.raw:#0{2 + 2 * s.level.entry_size}x}" in line
        if w.mapped:
            assert f"phys {w.phys:#x}" in lines[1 + len(w.steps)]
    # the tree's top level lists exactly the present entries of the root
    pt = k.pgtable
    rows = m.table_rows(k.pgd, 0, 0, pt.is_kernel_root(k.pgd) or pt.mode.form != "split")
    assert [r.index for r in rows] == [i for i, raw in enumerate(pt.entries(k.pgd, 0)) if raw]
    for r in rows:
        assert r.writer == pt.writer_of(k.pgd + r.index * pt.levels[0].entry_size)


def test_provenance_names_the_step_that_wrote_each_entry():
    m = Model(Stepper(ScenarioRun(loads('[machine]\narch = "x86_64"\n'
                                        '[[step]]\nop = "vmalloc"\nsize = 8192\nas = "a"\n'
                                        '[[step]]\nop = "vmalloc"\nsize = 4096\nas = "b"\n'))))
    st, k = m.stepper, m.k
    st.forward()
    st.forward()
    m.after_move()
    for name, step in (("a", "1"), ("b", "2")):
        w = k.walk(m.run.values[name])
        leaf = w.steps[-1]
        assert m.provenance()[(leaf.table, leaf.index)] == step
        rows = m.table_rows(leaf.table, leaf.li, 0, True)
        row = next(r for r in rows if r.index == leaf.index)
        assert row.step == step and row.writer == "vmalloc"
        assert (row.changed is not None) == (step == "2"), "only the current step's entries are marked"
    st.back()
    m.after_move()
    assert m.provenance().get((k.walk(m.run.values["a"]).steps[-1].table,
                               k.walk(m.run.values["a"]).steps[-1].index)) == "1"
    m.close()


def test_aliases_of_a_highmem_page_and_a_vmalloc_page():
    m = Model(Stepper(ScenarioRun(loads('[machine]\narch = "i386"\nkernel = "3.10"\nram = "1G"\n'
                                        '[[step]]\nop = "alloc_pages"\nzone = "HighMem"\nas = "hp"\n'
                                        '[[step]]\nop = "kmap"\npage = "hp"\nas = "ka"\n'
                                        '[[step]]\nop = "vmalloc"\nsize = 4096\nas = "v"\n'))))
    m.stepper.to_end()
    m.after_move()
    k = m.k
    hp = k.walk(m.run.values["ka"]).phys >> 12
    al = m.aliases(hp)
    assert [(va, kind) for va, _where, kind in al] == [(m.run.values["ka"], "kmap")], "HighMem: no direct-map alias"
    vp = k.walk(m.run.values["v"]).phys >> 12
    kinds = {kind: va for va, _where, kind in m.aliases(vp)}
    want = {"vmalloc": m.run.values["v"]}
    if k.frames.page(vp).zone != "HighMem":  # (vmalloc takes HighMem pages first)
        want["direct"] = k.phys_to_virt(vp << 12)
    assert kinds == want
    grid = {g.name: g for g in m.zone_grids(64)}
    g = grid["HighMem"]
    kind, _ = g.cells[(hp - g.start_pfn) // g.per_cell]
    assert kind == "kmap"
    m.close()


def test_fault_log_and_code_of_a_module_oops():
    m = model_at_end("module-oops.toml")
    kernel_faults = [f for f in m.faults if not f.user]
    assert kernel_faults, "the module's init faults in the kernel"
    f = kernel_faults[0]
    w = m.k.walk(f.address)
    assert f.code == w.fault(f.access, False).code
    addr = m.code_address()
    assert addr == f.ip
    rows = m.disassemble(addr)
    here = [r for r in rows if r[3]]
    assert len(here) == 1 and here[0][0] == f.ip
    # the bytes capstone decoded are the ones the tables map at the faulting ip
    pa = m.k.walk(f.ip).phys
    assert bytes.fromhex(here[0][1].replace(" ", "")) == m.k.mem.read(pa, len(here[0][1].split()))
    m.close()


def test_the_headless_modules_never_import_textual():
    """The core, the CLI's headless commands, the scenarios and the renderers run without
    Textual (the UI is the only importer)."""
    code = ("import sys, mmemu, mmemu.cli, mmemu.scenario, mmemu.render.ptdump, mmemu.render.vtop, "
            "mmemu.render.layout, mmemu.render.scenario, mmemu.pytest_plugin, mmemu.vmcore\n"
            "from mmemu.scenario import ScenarioRun, load\n"
            f"r = ScenarioRun(load({str(SCENARIOS / 'tour-x86_64.toml')!r}))\n"
            "list(r.run())\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'rich') or m.startswith('mmemu.tui'))\n"
            "print(bad)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
    # and no module outside mmemu/tui names Textual or the UI, except the CLI's `tui` command
    for path in (ROOT / "mmemu").rglob("*.py"):
        if "tui" in path.relative_to(ROOT / "mmemu").parts:
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [(node.module or "")]
            for n in names:
                assert not n.startswith("textual"), f"{path} imports {n}"
                if n in ("tui", "mmemu.tui") or n.startswith(("tui.", "mmemu.tui.")):
                    assert path.name == "cli.py", f"{path} imports the UI"


def test_a_lowmem_vmalloc_page_has_its_direct_map_alias():
    m = Model(Stepper(ScenarioRun(loads('[machine]\narch = "x86_64"\n'
                                        '[[step]]\nop = "vmalloc"\nsize = 4096\nas = "v"\n'))))
    m.stepper.to_end()
    m.after_move()
    k = m.k
    vp = k.walk(m.run.values["v"]).phys >> 12
    assert sorted((kind, va) for va, _w, kind in m.aliases(vp)) == \
        sorted([("vmalloc", m.run.values["v"]), ("direct", k.phys_to_virt(vp << 12))])
    m.close()
