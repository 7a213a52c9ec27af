"""Stepping back: every step of a scenario can be undone exactly. Random scenarios (a
seeded mix of page, slab, vmalloc, vmap, process, mmap, fork, access and kmap steps) and
the built-in tours (code on the CPU, a module loaded step by step) run forward, back to
the start and forward again; the kernel's state (frames and their free lists in order,
page tables and their writers, slabs, vmap areas, processes, HighMem, counters) is
compared at every step, physical memory byte for byte (by CRC) at every tenth step and at
both ends. MMEMU_STEPBACK_STEPS sets the random scenarios' length (60 by default)."""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import pytest

from mmemu.scenario import ScenarioRun, load, loads
from mmemu.testing import _state_diff, kernel_state
from mmemu.testing.scenarios import random_scenario

STEPS = int(os.environ.get("MMEMU_STEPBACK_STEPS", "60"))
TOURS = sorted((Path(__file__).resolve().parent.parent / "examples" / "scenarios").glob("tour-*.toml"))


def ram_crc(k) -> int:
    crc = 0
    for s, e in k.mem.ranges:
        crc = zlib.crc32(k.mem.view[s:e], crc)
    return crc


def check_back_and_forth(run: ScenarioRun, ram_every: int) -> None:
    k = run.k
    run.cpu()  # (made before the first step, as for any scenario that runs code)
    n = len(run.scenario.steps)

    def state(i):
        return kernel_state(k, ram=False), (ram_crc(k) if i % ram_every == 0 or i == n else None)

    states = [state(0)]
    for i, spec in enumerate(run.scenario.steps, 1):
        list(run.run_step(spec))
        assert run.stopped is None, run.stopped.error
        states.append(state(i))
    assert run.ok
    for i in range(n, 0, -1):
        undone = run.step_back()
        assert undone is run.scenario.steps[i - 1]
        now = state(i - 1)
        assert now[0] == states[i - 1][0], f"back to step {i - 1}: {_state_diff(now[0], states[i - 1][0])} differ"
        assert now[1] == states[i - 1][1], f"back to step {i - 1}: RAM differs"
    assert run.records == [] and not run.history
    with pytest.raises(Exception, match="at its start"):
        run.step_back()
    for i, spec in enumerate(run.scenario.steps, 1):
        list(run.run_step(spec))
        now = state(i)
        assert now == states[i], f"forward again, step {i}: {_state_diff(now[0], states[i][0])} or RAM differ"
    k.check_invariants()


@pytest.mark.parametrize("arch", ["x86_64", "i386", "i386_pae", "riscv64", "arm64"])
@pytest.mark.parametrize("seed", [1, 2])
def test_random_scenarios_step_back_exactly(arch, seed):
    run = ScenarioRun(loads(random_scenario(seed, STEPS, arch, ram="64M"), f"random-{seed}.toml"))
    try:
        check_back_and_forth(run, ram_every=10)
    finally:
        run.close()


@pytest.mark.parametrize("path", TOURS, ids=[p.stem for p in TOURS])
def test_the_tours_step_back_exactly(path):
    """Code on the CPU (its stores, the iret frame on the kernel stack), a module's load,
    init and unload, a fork and its copy-on-write, an oops: all taken back."""
    scenario = load(path)
    # (the PAE tour's 6 GiB only make the RAM checks slow: 2 GiB still has HighMem)
    run = ScenarioRun(scenario, {"ram": "2G"} if scenario.machine.get("arch") == "i386_pae" else None)
    try:
        check_back_and_forth(run, ram_every=1000)
    finally:
        run.close()


def test_the_log_and_bound_names_go_back_too():
    text = ('[[step]]\nop = "vmalloc"\nsize = 4096\nas = "a"\n'
            '[[step]]\nop = "access"\naddr = "a + 4096"\nexpect_error = "BUG"\n')
    run = ScenarioRun(loads(text, "t.toml"))
    try:
        list(run.run())
        assert "a" in run.values and any("BUG" in r.text for r in run.k.log)
        run.step_back()
        assert not any("BUG" in r.text for r in run.k.log) and run.k.die_counter == 0
        run.step_back()
        assert run.values == {} and run.k.vmap_areas == []
    finally:
        run.close()
