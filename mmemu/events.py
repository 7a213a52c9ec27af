"""Mapping-changed events: what one operation did to the page tables, for observers (the
``mmemu_mapping_changed`` hook: traces, the TUI, checkers).

An event wraps the engine's :class:`~mmemu.pagetable.Operation` and expands it only when
asked, so that a boot that writes a quarter of a million entries costs one object.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterator

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
        """What the kernel did this for; given as a function when it was made (a page
        fault's words), called the first time someone reads it."""
        c = self._context
        if not isinstance(c, str):
            c = self._context = c()
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
