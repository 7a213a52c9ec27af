"""Fixtures shared by the tests."""

from __future__ import annotations

import pytest

import mmemu


@pytest.fixture
def boot():
    """``boot(**machine)``: mmemu.boot, with every machine booted closed after the test."""
    booted = []

    def _boot(**kw):
        k = mmemu.boot(**kw)
        booted.append(k)
        return k
    yield _boot
    for k in booted:
        k.close()
