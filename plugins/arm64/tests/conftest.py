"""Every abort the plugin's tests raise on the CPU is read twice: from QEMU's syndrome (the
adapter's way) and by the walker from the decoded instruction and the tables (referee.py);
a disagreement fails the run."""

import pytest

from mmemu_arm64.cpu_adapter import Arm64Adapter


@pytest.fixture(autouse=True)
def walker_referee(monkeypatch):
    monkeypatch.setattr(Arm64Adapter, "walker_referee", True)
