"""Scenarios (mmemu.scenario, `mmemu run`): the reader refuses what cannot run with the
file, step and field named; expressions are parsed, never eval'd; the built-in tours run
with every expectation met; a failed expectation is exit 1 naming the step; the JSON
Lines follow the README's schema."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mmemu.cli import main
from mmemu.scenario import OPS, ExprError, ScenarioError, ScenarioRun, loads, parse

SCENARIOS = Path(__file__).resolve().parent.parent / "examples" / "scenarios"
TOURS = sorted(SCENARIOS.glob("tour-*.toml"))
#: the keys of every step line of `mmemu run --json` (README: "JSON Lines")
STEP_KEYS = {"step", "op", "args", "status", "text", "as", "value", "fields", "error", "note", "events",
             "free_pages", "vmap_areas", "log"}

SMALL = """
[machine]
arch = "x86_64"

[[step]]
op = "vmalloc"
size = "2 * 4096"
as = "buf"

[[step]]
op = "expect_translation"
addr = "buf + 4096"
page_size = 4096
"""


BUILT_IN = [(path, arch) for path in sorted(SCENARIOS.glob("*.toml")) for arch in
            __import__("mmemu.scenario", fromlist=["load"]).load(path).arches]


@pytest.mark.parametrize("path,arch", BUILT_IN, ids=[f"{p.stem}-{a}" for p, a in BUILT_IN])
def test_every_built_in_scenario_runs_on_its_arches_with_every_expectation_met(path, arch, capsys):
    assert main(["run", str(path), "--arch", arch]) == 0, capsys.readouterr().out[-3000:]
    out = capsys.readouterr().out
    assert out.splitlines()[-1].startswith("ok: ")


def test_there_is_a_tour_for_every_arch_and_the_classic_topics():
    from mmemu.plugins import default

    names = {p.stem for p in SCENARIOS.glob("*.toml")}
    assert {f"tour-{arch.name}" for arch in default()[1]} <= names
    assert {"pkmap-wrap-i386", "vmalloc-fault-i386", "module-oops", "cow", "highpte-i386"} <= names


def test_the_tours_cover_the_kinds_of_mapping():
    ops = {path.stem: {s.op.name for s in __import__("mmemu.scenario", fromlist=["load"]).load(path).steps}
           for path in TOURS}
    assert {"vmalloc", "set_fixmap", "insmod", "run_user", "fork"} <= ops["tour-x86_64"]
    assert {"kmap", "kmap_local_page", "vmalloc", "insmod", "run_user"} <= ops["tour-i386"]


def test_expressions_are_integers_names_and_arithmetic():
    names = {"buf": 0x1000, "page.pfn": 5}
    assert parse("buf + 0x10 * (2 + 1)").evaluate(names) == 0x1030
    assert parse("-buf + 1_000").evaluate(names) == 1000 - 0x1000
    assert parse("page.pfn * 4096").evaluate(names) == 5 * 4096
    assert parse(7).evaluate({}) == 7
    for bad in ("", "1 +", "buf)", "(buf", "0x", "08", "1__0", "__import__('os')", "buf.", "a ** 2",
                "1 / 2", "x[0]", "'a'", True, 1.5, None):
        with pytest.raises(ExprError):
            parse(bad)
    with pytest.raises(ExprError, match="not defined"):
        parse("nowhere + 1").evaluate(names)
    with pytest.raises(ExprError, match="deeper"):
        parse("(" * 100 + "1" + ")" * 100)


@given(st.recursive(st.integers(-2**70, 2**70).map(str),
                    lambda inner: st.tuples(inner, st.sampled_from("+-*"), inner).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
                    max_leaves=12))
@settings(max_examples=300, deadline=None)
def test_expressions_evaluate_as_integer_arithmetic(text):
    assert parse(text).evaluate({}) == eval(text, {"__builtins__": {}})  # the referee: Python on the same text


@pytest.mark.parametrize("text,where", [
    ('[[step]]\nop = "vmaloc"\nsize = 1', "step 1: op: unknown operation 'vmaloc'"),
    ('[[step]]\nop = "vmalloc"', "step 1: size: vmalloc needs size"),
    ('[[step]]\nop = "vmalloc"\nsize = "buf"', "step 1: size: 'buf' is not bound by an earlier step"),
    ('[[step]]\nop = "vmalloc"\nsize = "1 +"', "step 1: size: "),
    ('[[step]]\nop = "vmalloc"\nsize = 1\ncolour = 2', "step 1: colour: vmalloc has no field 'colour'"),
    ('[[step]]\nop = "create_process"\nas = "p"\n[[step]]\nop = "kmap"\npage = "p"', "step 2: page: 'p' is a process"),
    ('[[step]]\nop = "write"\naddr = 1\nbytes = "zz"', "step 1: bytes: 'zz' is not hex bytes"),
    ('[machine]\nram = 4\n[[step]]\nop = "vmalloc"\nsize = 1', "machine.ram: ram is a string"),
    ('[machine]\ncolour = "x"\n[[step]]\nop = "vmalloc"\nsize = 1', "machine.colour: unknown machine key"),
    ('title = "t"', "no [[step]]"),
    ('[[step]\nop=1', "not valid TOML"),
    ('[[step]]\nop = "expect_count"\nwhat = "modules"\nvalue = 0\nas = "x"', "step 1: as: an expectation binds nothing"),
])
def test_a_bad_scenario_names_the_file_step_and_field(text, where):
    with pytest.raises(ScenarioError) as e:
        loads(text, "bad.toml")
    assert str(e.value).startswith("bad.toml: ") and where in str(e.value), str(e.value)


def test_a_bad_scenario_is_exit_2_and_nothing_runs(tmp_path, capsys):
    f = tmp_path / "bad.toml"
    f.write_text('[[step]]\nop = "vmalloc"\nsize = "nope"\n')
    assert main(["run", str(f)]) == 2
    err = capsys.readouterr().err
    assert f"{f}: step 1: size: 'nope' is not bound" in err


def test_a_failed_expectation_is_exit_1_and_names_the_step(tmp_path, capsys):
    f = tmp_path / "fail.toml"
    f.write_text(SMALL + '\n[[step]]\nop = "expect_count"\nwhat = "vmap_areas"\nvalue = 7\n')
    assert main(["run", str(f)]) == 1
    out = capsys.readouterr().out
    assert "[3] expect_count" in out and "FAILED" in out
    assert out.splitlines()[-1] == "FAILED: 1 of 2 expectations: step 3 (vmap_areas is 1, expected 7)"


def test_a_step_that_fails_stops_the_run_unless_the_error_is_expected(tmp_path, capsys):
    f = tmp_path / "oops.toml"
    f.write_text(SMALL + '\n[[step]]\nop = "access"\naddr = "buf + 2 * 4096"\nexpect_error = "BUG: unable to handle"\n'
                 '\n[[step]]\nop = "access"\naddr = "buf + 2 * 4096"\n\n[[step]]\nop = "vfree"\naddr = "buf"\n')
    assert main(["run", str(f)]) == 1
    out = capsys.readouterr().out
    assert "[3] access addr=" in out and "failed as expected" in out
    assert "STOPPED at step 4 (access)" in out.splitlines()[-1]
    assert "[5]" not in out


def test_json_lines_follow_the_schema_and_the_trace_holds_the_same(tmp_path, capsys):
    f = tmp_path / "s.toml"
    f.write_text(SMALL)
    trace = tmp_path / "trace.jsonl"
    assert main(["run", str(f), "--json", "--trace", str(trace)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [set(line) for line in lines[:-1]] == [STEP_KEYS] * 2
    assert lines[0]["op"] == "vmalloc" and lines[0]["as"] == "buf" and lines[0]["vmap_areas"] == {"before": 0, "after": 1}
    assert lines[0]["events"][0]["writer"] == "vmalloc" and lines[0]["events"][0]["kind"] == "map"
    assert lines[-1]["summary"]["ok"] is True and lines[-1]["summary"]["expectations"] == 1
    assert [json.loads(line) for line in trace.read_text().splitlines()] == lines


@pytest.mark.parametrize("arch", ["i386", "i386_pae", "x86_64", "riscv64", "arm64"])
def test_machine_options_override_the_file(arch):
    run = ScenarioRun(loads(SMALL, "small.toml"), {"arch": arch, "kernel": None, "ram": "512M"})
    try:
        records = list(run.run())
        assert run.ok and run.k.arch.name == arch and run.machine["ram"] == "512M", [r.error for r in records]
    finally:
        run.close()


def test_a_step_the_arch_cannot_do_is_a_bad_scenario(tmp_path, capsys):
    """A HighMem page on x86_64 is a lowmem one (the zonelist falls back, as the kernel's
    does) and kmap gives its direct-map address: that step makes sense. A fixmap slot the
    arch does not have does not: exit 2, naming the step."""
    f = tmp_path / "fix.toml"
    f.write_text('[[step]]\nop = "alloc_pages"\nzone = "HighMem"\nas = "h"\n[[step]]\nop = "kmap"\npage = "h"\nas = "a"\n'
                 '[[step]]\nop = "expect_translation"\naddr = "a"\nphys = "h.phys"\n'
                 '[[step]]\nop = "set_fixmap"\nidx = "FIX_KMAP_BEGIN"\nphys = "h.phys"\n')
    assert main(["run", str(f), "--arch", "i386"]) == 0
    capsys.readouterr()
    assert main(["run", str(f), "--arch", "x86_64"]) == 2
    assert f"{f}: step 4: set_fixmap cannot run on x86_64 6.6: no fixmap slot 'FIX_KMAP_BEGIN'" in capsys.readouterr().err


@pytest.mark.parametrize("arch, slots", [("i386", 1024), ("i386_pae", 512), ("x86_64", 0)])
def test_a_pkmap_slot_the_kernel_does_not_have_is_a_bad_scenario(tmp_path, capsys, arch, slots):
    """pkmap_count.N names a slot of mm/highmem.c's LAST_PKMAP: past the last one (or on a
    kernel without highmem) the expectation cannot be checked: exit 2, naming the step."""
    f = tmp_path / "pk.toml"
    f.write_text('[[step]]\nop = "expect_count"\nwhat = "pkmap_count.600"\nvalue = 0\n')
    code = main(["run", str(f), "--arch", arch])
    err = capsys.readouterr().err
    if slots > 600:
        assert code == 0, err
    else:
        assert code == 2
        assert f"{f}: step 1: expect_count cannot run on {arch} 6.6: no pkmap slot 600: the kernel has {slots}" in err


def test_every_operation_is_documented():
    for name, op in OPS.items():
        assert op.doc, f"operation {name} has no docstring"


TOML_PIECES = st.sampled_from(['[[step]]', '[machine]', 'op = "vmalloc"', 'op = "kmap"', 'size = "4096"', 'size = -1',
                               'as = "buf"', 'addr = "buf + 1"', 'page = "buf"', 'arch = "i386"', 'cpus = 0',
                               'op = "expect_count"', 'what = "x"', 'value = "("', 'bytes = "0g"', '"\\u0000" = 1',
                               'options = { A = 1 }', 'title = 3', 'x = [1, {a = 2}]', 'op = 5', '[step]'])


@given(st.lists(TOML_PIECES, max_size=12), st.binary(max_size=8))
@settings(max_examples=int(__import__("os").environ.get("MMEMU_SCENARIO_FUZZ", "400")), deadline=None)
def test_the_reader_raises_nothing_but_its_own_error(pieces, noise):
    text = "\n".join(pieces) + noise.decode("latin-1")
    try:
        loads(text, "fuzz.toml")
    except ScenarioError as exc:
        assert str(exc).startswith("fuzz.toml")


def test_inspection_commands_show_the_machine_after_a_step(capsys):
    """ptdump, vtop and layout take --scenario FILE [--step N]; vtop's address may then be
    an expression over the names the steps bound."""
    tour = str(SCENARIOS / "tour-i386.toml")
    assert main(["vtop", "buf + 0x3000", "--scenario", tour, "--step", "14"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[1].split()[1] != "(not" and "PAGE:" in out
    assert main(["vtop", "0xf7bfe000", "--scenario", tour, "--step", "13"]) == 0
    assert "(not mapped)" in capsys.readouterr().out.splitlines()[1]
    assert main(["ptdump", "--scenario", tour, "--step", "14"]) == 0
    dump = capsys.readouterr().out
    vm = dump[dump.index("---[ vmalloc() Area ]---"):dump.index("---[ vmalloc() End ]---")]
    assert "16K     RW" in vm  # the four pages of step 14's vmalloc
    assert main(["layout", "--scenario", tour]) == 0
    assert capsys.readouterr().out.startswith("i386 2-level, kernel 6.6")
    assert main(["vtop", "0", "--scenario", tour, "--step", "99"]) == 2
    assert "--step 99: " in capsys.readouterr().err
    assert main(["vtop", "0", "--step", "3"]) == 2


def test_the_kernel_views_after_a_scenario(capsys):
    """maps, buddyinfo, kmem-v and dmesg show the state after --scenario [--step]."""
    cow = str(SCENARIOS / "cow.toml")
    assert main(["maps", "--scenario", cow, "--pid", "2"]) == 0
    maps = capsys.readouterr().out.splitlines()
    assert maps[-2].endswith("[stack]") and re_match(r"^[0-9a-f]+-[0-9a-f]+ rw-p 00000000 00:00 0", maps[0])
    assert maps[-1].endswith("[vsyscall]")  # x86_64's gate area, after the process's own VMAs
    assert main(["maps", "--arch", "i386"]) == 2
    assert "maps needs --pid" in capsys.readouterr().err
    assert main(["kmem-v", "--scenario", str(SCENARIOS / "tour-i386.toml"), "--step", "14"]) == 0
    assert capsys.readouterr().out.split()[:4] == ["VMAP_AREA", "VM_STRUCT", "ADDRESS", "RANGE"]
    assert main(["dmesg", "--scenario", str(SCENARIOS / "module-oops.toml")]) == 0
    assert "BUG: unable to handle page fault for address: ffffffffa00020c0" in capsys.readouterr().out
    assert main(["buddyinfo", "--arch", "i386"]) == 0
    assert [line.split()[3] for line in capsys.readouterr().out.splitlines()] == ["DMA", "Normal", "HighMem"]


def re_match(pattern: str, text: str):
    import re

    return re.match(pattern, text)


BUILT_IN_TEXTS = [p.read_text() for p in sorted(SCENARIOS.glob("*.toml"))]


@st.composite
def mutated_scenarios(draw):
    """A built-in scenario with a few random edits: characters replaced, slices deleted or
    repeated, lines swapped."""
    text = draw(st.sampled_from(BUILT_IN_TEXTS))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["replace", "delete", "repeat", "swap"]))
        i = draw(st.integers(0, max(0, len(text) - 1)))
        j = min(len(text), i + draw(st.integers(1, 40)))
        if kind == "replace":
            text = text[:i] + draw(st.sampled_from(['"', "=", "[", "]", "\n", "0x", "-", "as", "x", "\\", "{", "9" * 30,
                                                    "\x00", "é"])) + text[i + 1:]
        elif kind == "delete":
            text = text[:i] + text[j:]
        elif kind == "repeat":
            text = text[:j] + text[i:j] + text[j:]
        else:
            lines = text.split("\n")
            a, b = draw(st.integers(0, len(lines) - 1)), draw(st.integers(0, len(lines) - 1))
            lines[a], lines[b] = lines[b], lines[a]
            text = "\n".join(lines)
    return text


@given(mutated_scenarios())
@settings(max_examples=int(__import__("os").environ.get("MMEMU_SCENARIO_FUZZ", "400")), deadline=None)
def test_mutated_built_in_scenarios_load_or_fail_with_the_readers_error(text):
    try:
        loads(text, "mutant.toml")
    except ScenarioError as exc:
        assert str(exc).startswith("mutant.toml")
