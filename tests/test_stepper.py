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


def snapshot(k):
    return kernel_state(k, ram=False), ram_crc(k)


@pytest.mark.parametrize("arch", ["x86_64", "i386"])
def test_one_record_back_at_a_time_through_a_stepwise_load(arch):
    st = Stepper(ScenarioRun(load(SCENARIOS / f"tour-{arch}.toml")))
    k = st.run.k
    st.run.cpu()
    seen = [snapshot(k)]
    texts = []
    while st.forward() is not None:
        seen.append(snapshot(k))
        texts.append((st.current.step, st.current.text))
    assert st.at_end and st.run.ok
    assert any("." in step for step, _ in texts), "the tour loads a module step by step"
    for pos in range(len(seen) - 1, 0, -1):
        st.back()
        assert st.position == pos - 1
        state, crc = snapshot(k)
        assert crc == seen[pos - 1][1], f"RAM differs after going back to position {pos - 1}"
        assert state == seen[pos - 1][0], _state_diff(seen[pos - 1][0], state)
    assert st.back() is None and st.position == 0
    # forwards again: the same records, the same states
    for pos in range(1, len(seen)):
        rec = st.forward()
        assert (rec.step, rec.text) == texts[pos - 1]
        assert snapshot(k) == seen[pos]


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
