"""The Stepper (what the TUI drives): one record forwards or backwards, a stepwise module
load included (going back one loader step undoes the load and makes it again up to the step
before). The state at every position is the one first seen there."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmemu.scenario import ScenarioRun, load
from mmemu.scenario.stepper import Stepper, record_faulted
from mmemu.testing import _state_diff, kernel_state

from test_scenario_stepback import ram_crc

SCENARIOS = Path(__file__).resolve().parent.parent / "examples" / "scenarios"


#: the RAM's CRC (half a second for 1 GiB) at every RAM_EVERY-th position and the last: the
#: kernel's state is compared at every one
RAM_EVERY = 6


def snapshot(k, pos: int | None = None, last: int | None = None):
    with_ram = pos is None or pos % RAM_EVERY == 0 or pos == last
    return kernel_state(k, ram=False), ram_crc(k) if with_ram else None


@pytest.mark.parametrize("arch", ["x86_64", "i386"])
def test_one_record_back_at_a_time_through_a_stepwise_load(arch):
    st = Stepper(ScenarioRun(load(SCENARIOS / f"tour-{arch}.toml")))
    k = st.run.k
    st.run.cpu()
    st.to_end()
    last = st.position
    st.goto(0)
    seen = [snapshot(k, 0, last)]
    texts = []
    while st.forward() is not None:
        seen.append(snapshot(k, st.position, last))
        texts.append((st.current.step, st.current.text))
    assert st.at_end and st.run.ok and st.position == last
    assert any("." in step for step, _ in texts), "the tour loads a module step by step"
    for pos in range(len(seen) - 1, 0, -1):
        st.back()
        assert st.position == pos - 1
        state, crc = snapshot(k, pos - 1, last)
        assert crc == seen[pos - 1][1], f"RAM differs after going back to position {pos - 1}"
        assert state == seen[pos - 1][0], _state_diff(seen[pos - 1][0], state)
    assert st.back() is None and st.position == 0
    # forwards again: the same records, the same states
    for pos in range(1, len(seen)):
        rec = st.forward()
        assert (rec.step, rec.text) == texts[pos - 1]
        assert snapshot(k, pos, last) == seen[pos]


def test_goto_and_next_fault():
    st = Stepper(ScenarioRun(load(SCENARIOS / "tour-x86_64.toml")))
    st.to_end()
    end = st.position
    st.goto(3)
    assert st.position == 3
    rec = st.to_next_fault()
    assert rec is not None and record_faulted(rec)
    assert all(not record_faulted(r) for r in st.records[3:-1])
    st.goto(end + 100)
    assert st.position == end and st.at_end
