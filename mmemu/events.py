"""Mapping-changed events: what one operation did to the page tables, for observers (the
``mmemu_mapping_changed`` hook: traces, the TUI, checkers).

An event wraps the engine's :class:`~mmemu.pagetable.Operation` and expands it only when
asked, so that a boot that writes a quarter of a million entries costs one object.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterator

from .pagetable import EntryWrite

if TYPE_CHECKING:
    from .pagetable import Operation


@dataclass(frozen=True, slots=True)
class EntryChange:
    """One page-table entry before and after."""

    table: int  # physical address of the table
    level: str  # its level, as the kernel names it
    index: int
    old: int
    new: int
    entry_size: int = 8

    @property
    def entry_addr(self) -> int:
        return self.table + self.index * self.entry_size


class MappingEvent:
    """One completed operation on the page tables.

    ``seq`` numbers events from 1 in the order they happened; ``writer`` is the kernel
    function that wrote the entries (``vmalloc``, ``kmap_high``, ``do_anonymous_page``...);
    ``kind`` the engine operation (``map``, ``unmap``, ``protect``, ``populate``,
    ``set_pte``); ``context`` what the kernel was doing it for (a process, a module) if
    anything.
    """

    __slots__ = ("seq", "op", "_context")

    def __init__(self, seq: int, op: "Operation", context: "str | Callable[[], str]" = ""):
        self.seq = seq
        self.op = op
        self._context = context

    @property
    def context(self) -> str:
        """What the kernel did this for; given as a function when it was made, or as a
        format and its values (a page fault's words), made the first time someone reads it."""
        c = self._context
        if not isinstance(c, str):
            c = self._context = c[0].format(*c[1:]) if isinstance(c, tuple) else c()
        return c

    @property
    def writer(self) -> str:
        return self.op.writer

    @property
    def kind(self) -> str:
        return self.op.kind

    @property
    def va(self) -> int:
        return self.op.va

    @property
    def size(self) -> int:
        return self.op.size

    @property
    def tables_allocated(self) -> list[int]:
        return self.op.tables_allocated

    @property
    def tables_freed(self) -> list[int]:
        return self.op.tables_freed

    @property
    def unmapped(self) -> list[tuple[int, int, int]]:
        return self.op.unmapped

    def entries(self) -> Iterator[EntryChange]:
        """Every entry whose value changed, in the order written."""
        for ch in self.op.changes:
            size = ch.level.entry_size
            for index, old, new in ch.entries():
                yield EntryChange(ch.table, ch.level.name, index, old, new, size)

    def frames(self) -> tuple[list[int], list[int]]:
        """(pfns mapped, pfns unmapped) by the leaf entries this operation changed: the
        pages behind the mapping, not the page tables."""
        from .arch import LEAF

        mapped, unmapped = [], []
        codec = self.op.mode.codec
        for ch in self.op.changes:
            if not ch.level.can_map:
                continue  # entries of this level only point to tables
            decode = codec.decoder(ch.li)
            for _index, old, new in ch.entries():
                for value, out in ((old, unmapped), (new, mapped)):
                    kind, addr, _ = decode(value)
                    if kind == LEAF:
                        out.append(addr >> 12)
        return mapped, unmapped

    @property
    def entry_count(self) -> int:
        return sum(len(ch.old) // ch.level.entry_size for ch in self.op.changes)

    def __repr__(self) -> str:
        return (f"<MappingEvent #{self.seq} {self.writer} {self.kind} {self.va:#x}+{self.size:#x} "
                f"{self.entry_count} entries{' for ' + self.context if self.context else ''}>")


class RecentEvents:
    """The most recent events (``maxlen`` of them), oldest first: a deque of
    :class:`MappingEvent`, except that the event of one entry written (an
    :class:`~mmemu.pagetable.EntryWrite`: every demand fault makes one) is kept as a tuple of
    plain values and made an event again when read. Nobody may read them (the fault loop of a
    long run makes tens of thousands): a tuple of ints and strings is no work for Python's
    garbage collector, where an event and its operation are traversed at every collection
    for as long as they are kept."""

    __slots__ = ("_items", "_pt")

    def __init__(self, maxlen: int, pagetables):
        self._items: deque = deque(maxlen=maxlen)
        self._pt = pagetables

    @property
    def maxlen(self) -> int:
        return self._items.maxlen

    def append(self, event: MappingEvent) -> None:
        self._items.append(event)

    def append_op(self, seq: int, op: "Operation", context) -> None:
        """The event *seq* of *op*, kept compact if it is one entry written and its context
        plain values (see the class)."""
        fields = getattr(op, "fields", None)
        if fields is not None:
            self.append_fields(seq, fields(), context)
        else:
            self._items.append(MappingEvent(seq, op, context))

    def append_fields(self, seq: int, fields: tuple, context) -> None:
        """The event *seq* of one entry written, given by the fields of its
        :class:`~mmemu.pagetable.EntryWrite` (``EntryWrite.fields()``), kept compact if its
        context is plain values (see the class)."""
        if type(context) is tuple or type(context) is str:  # (isinstance would look up __class__)
            self._items.append((seq, context, fields))
        else:
            self._items.append(MappingEvent(seq, self._entry_write(fields), context))

    def compact_append(self):
        """The append of an entry's event kept compact, ``(seq, context, fields)`` with a
        plain context (what :meth:`append_fields` stores): for the kernel's delivery of
        every demand fault's event, without a call of Python code."""
        return self._items.append

    def _entry_write(self, fields: tuple) -> EntryWrite:
        return EntryWrite(self._pt, *fields)

    def _event(self, item) -> MappingEvent:
        if type(item) is tuple:
            return MappingEvent(item[0], self._entry_write(item[2]), item[1])
        return item

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, i: int) -> MappingEvent:
        return self._event(self._items[i])

    def __iter__(self) -> Iterator[MappingEvent]:
        return map(self._event, self._items)

    def __reversed__(self) -> Iterator[MappingEvent]:
        return map(self._event, reversed(self._items))

    def pop(self) -> MappingEvent:
        return self._event(self._items.pop())

    def clear(self) -> None:
        self._items.clear()

    def __repr__(self) -> str:
        return f"RecentEvents({list(self)!r}, maxlen={self.maxlen})"
