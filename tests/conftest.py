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


@pytest.fixture
def exhaust():
    """``exhaust(k)``: allocate every free frame (HighMem first, as the zonelist falls
    back) and return the pages held, so that the next allocation fails."""
    from mmemu.errors import OutOfMemory

    def _exhaust(k):
        held = []
        while True:
            try:
                held.append(k.alloc_pages(0, "HighMem"))
            except OutOfMemory:
                return held
    return _exhaust
