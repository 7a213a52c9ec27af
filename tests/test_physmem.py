"""PhysMem.entries: RAM read as little-endian words (the page-table walker's reads)."""

from __future__ import annotations

import random

import pytest

from mmemu.physmem import PhysMem, _LittleEndianWords


@pytest.mark.parametrize("size", [4, 8])
def test_entries_are_the_little_endian_words_of_ram(size):
    mem = PhysMem(4 * 4096)
    rng = random.Random(size)
    words = {pa: rng.getrandbits(8 * size) for pa in range(0, 4 * 4096, 8 * size + size)}
    for pa, value in words.items():
        mem.write(pa, value.to_bytes(size, "little"))
    typed = mem.entries(size)
    assert mem.entries(size) is typed  # made once
    portable = _LittleEndianWords(mem.view, size)  # what a big-endian host gets
    for pa, value in words.items():
        assert typed[pa // size] == portable[pa // size] == value, hex(pa)
    # a write is seen at once: the view is RAM, not a copy
    mem.write(0x2000, (0x1234).to_bytes(size, "little"))
    assert typed[0x2000 // size] == 0x1234
    mem.close()  # the typed views do not keep the mapping alive


@pytest.mark.parametrize("size", [4, 8])
def test_entries_write_the_little_endian_words_of_ram(size):
    """The page-table engine writes one entry as an item of the view: both forms put the
    word's bytes little-endian at pa, and nothing next to it."""
    mem = PhysMem(2 * 4096)
    value = (1 << (8 * size - 1)) | 0x0123
    for words, pa in ((mem.entries(size), 0x100), (_LittleEndianWords(mem.view, size), 0x200)):
        words[pa // size] = value
        assert mem.read(pa - size, 3 * size) == bytes(size) + value.to_bytes(size, "little") + bytes(size)
    mem.close()


def test_close_releases_the_typed_views():
    mem = PhysMem(4096)
    words = mem.entries(8)
    mem.close()
    with pytest.raises(ValueError):
        words[0]
