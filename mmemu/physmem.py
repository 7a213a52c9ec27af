"""The machine's RAM: one anonymous mapping, shared zero-copy with Unicorn.

The mapping spans physical addresses 0 up to the end of the highest RAM range and is
indexed by physical address, so that the engine reads an entry at ``buf[pa]`` with no
arithmetic. It is private, anonymous and ``MAP_NORESERVE``: the host commits a page only
when it is first written, so the hole below RAM that starts high (RISC-V at 0x80000000,
arm64 at 0x40000000), a PC's MMIO hole and a 64 GiB machine cost what their touched frames
cost. Only the RAM ranges are memory: reads and writes elsewhere are refused, and the CPU
maps only them (through ``mem_map_ptr``), so an entry the engine writes here is the entry
the CPU walks, with no copy in between.
"""

from __future__ import annotations

import bisect
import ctypes
import mmap
import struct
import sys

from .errors import AddressError, ConfigError
from .units import PAGE_SIZE as PAGE

_MAP_NORESERVE = getattr(mmap, "MAP_NORESERVE", 0x4000)  # Linux's value; Python < 3.12 lacks the name


class _LittleEndianWords:
    """RAM as little-endian words on a big-endian host (:meth:`PhysMem.entries`)."""

    __slots__ = ("_read", "_size", "_view", "_write")

    def __init__(self, view: memoryview, size: int):
        self._view, self._size = view, size
        s = struct.Struct("<I" if size == 4 else "<Q")
        self._read, self._write = s.unpack_from, s.pack_into

    def __getitem__(self, i: int) -> int:
        return self._read(self._view, i * self._size)[0]

    def __setitem__(self, i: int, value: int) -> None:
        self._write(self._view, i * self._size, value)

    def release(self) -> None:
        pass


class PhysMem:
    """Physical memory: the RAM *ranges* ([start, end), page aligned, sorted, disjoint);
    ``PhysMem(size)`` is RAM from 0 to *size*."""

    def __init__(self, size: int | None = None, ranges: "list[tuple[int, int]] | None" = None):
        if ranges is None:
            ranges = [(0, size)] if size else []
        ranges = sorted(ranges)
        if not ranges:
            raise ConfigError("a machine needs some RAM")
        for (s, e), nxt in zip(ranges, ranges[1:] + [(None, None)]):
            if s < 0 or e <= s or s % PAGE or e % PAGE or (nxt[0] is not None and nxt[0] < e):
                raise ConfigError(f"RAM range {s:#x}-{e:#x} is empty, unaligned or overlaps the next one")
        self.ranges = ranges
        self._starts = [s for s, _ in ranges]
        self.size = sum(e - s for s, e in ranges)  # bytes of RAM
        self.end = ranges[-1][1]
        try:
            self.mem = mmap.mmap(-1, self.end, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | _MAP_NORESERVE)
        except (OSError, OverflowError) as exc:
            raise ConfigError(f"cannot reserve {self.end >> 20} MiB of host address space for the emulated RAM: "
                              f"{exc}") from exc
        self.view = memoryview(self.mem)
        #: RAM as arrays of 4- and 8-byte words (:meth:`entries`), made on first use
        self._words: dict[int, memoryview] = {}
        self._cbuf = ctypes.c_char.from_buffer(self.mem)
        #: the kernel operation's undo journal: a write records the bytes it replaces
        self.journal = None

    @property
    def host_address(self) -> int:
        """Address of physical address 0 in this process: RAM at *pa* is at
        ``host_address + pa`` (for Unicorn's ``mem_map_ptr``)."""
        return ctypes.addressof(self._cbuf)

    def is_ram(self, pa: int, n: int = 1) -> bool:
        i = bisect.bisect_right(self._starts, pa) - 1
        return i >= 0 and pa + n <= self.ranges[i][1] and n >= 0

    def _check(self, pa: int, n: int) -> None:
        # is_ram, inline: every read, write and zeroing of a frame passes here
        i = bisect.bisect_right(self._starts, pa) - 1
        if i < 0 or pa + n > self.ranges[i][1] or n < 0 or pa < 0:
            where = ", ".join(f"{s:#x}-{e:#x}" for s, e in self.ranges)
            raise AddressError(f"physical range {pa:#x}-{pa + n:#x} is not RAM (RAM: {where})")

    def read(self, pa: int, n: int) -> bytes:
        self._check(pa, n)
        return self.mem[pa:pa + n]

    def write(self, pa: int, data: bytes) -> None:
        self._check(pa, len(data))
        j = self.journal
        if j is not None and (j.undo is not None or j.keep is not None):
            self._journal(pa, len(data))
        self.view[pa:pa + len(data)] = data

    def keep(self, pa: int, n: int) -> None:
        """Journal *n* bytes at *pa* that something other than mmemu is about to write (code
        on the CPU storing to RAM): a failed operation puts them back."""
        if self.journal is not None and self.is_ram(pa, n):
            self._journal(pa, n)

    def _journal(self, pa: int, n: int) -> None:
        """Record the *n* bytes at *pa* for undo: in the running operation's log, or between
        operations of an undoable scenario step (Journal.keep) in the step's."""
        j = self.journal
        if j.undo is not None:
            j.undo.append((self._restore, (pa, self.mem[pa:pa + n])))
        elif j.keep is not None:
            j.keep.append((self._restore, (pa, self.mem[pa:pa + n])))

    def _restore(self, pa: int, old: bytes) -> None:
        self.view[pa:pa + len(old)] = old

    _ZERO_PAGE = bytes(PAGE)

    def zero(self, pa: int, n: int) -> None:
        self._check(pa, n)
        j = self.journal
        if j is not None:  # _journal, inline: every demand fault zeroes its frame
            if j.undo is not None:
                j.undo.append((self._restore, (pa, self.mem[pa:pa + n])))
            elif j.keep is not None:
                j.keep.append((self._restore, (pa, self.mem[pa:pa + n])))
        self.mem[pa:pa + n] = self._ZERO_PAGE if n == PAGE else bytes(n)

    def clear_page(self, pa: int) -> None:
        """``clear_page``: :meth:`zero` of one page at *pa*, a frame the allocator gave (RAM by
        construction: not looked up in the RAM ranges again; every demand fault clears one)."""
        j = self.journal
        mem = self.mem
        if j is not None:
            if j.undo is not None:
                j.undo.append((self._restore, (pa, mem[pa:pa + PAGE])))
            elif j.keep is not None:
                j.keep.append((self._restore, (pa, mem[pa:pa + PAGE])))
        mem[pa:pa + PAGE] = self._ZERO_PAGE

    def entries(self, size: int):
        """RAM as an array of *size*-byte little-endian words (4 or 8): the word at *pa* is
        ``entries(size)[pa // size]``. On a little-endian host a typed view of RAM, an
        indexing in C where ``struct`` costs a call (the page-table walker reads every entry
        this way); elsewhere words read with ``struct``."""
        words = self._words.get(size)
        if words is None:
            if sys.byteorder == "little":
                words = self.view.cast({4: "I", 8: "Q"}[size])
            else:
                words = _LittleEndianWords(self.view, size)
            self._words[size] = words
        return words

    def close(self) -> None:
        """Release the host mapping (only once nothing else holds a view of it)."""
        for words in self._words.values():
            words.release()
        del self._cbuf
        self.view.release()
        self.mem.close()
