"""One undo journal for a whole kernel operation: failure safety as a property of the
design, not of each call.

Every public operation of the kernel model (``vmalloc``, ``fork``, ``mmap``, a page fault...)
runs as one transaction. Each component records, as it changes, how to change back:
the frame allocator (an exact un-take of each block; frees wait for the commit, so that no
buddy merge needs undoing), physical memory (the bytes each write replaced), the page-table
engine (the entries of each completed operation, the tables it adopted or dropped), and
the kernel's own records (slab free lists, vmap areas, VMAs, processes, pkmap counts...)
through the primitives below. An operation that raises undoes them all, newest first, so
the kernel is byte-for-byte and record-for-record what it was; one that returns commits:
the deferred frees happen and the events reach the observers.

Nested operations (``vmalloc`` calling ``kmalloc`` calling ``alloc_pages``) join the
outermost one. Outside any operation (boot) the primitives just change things.

Fault injection (the kernel's own ``fail_page_alloc`` and ``failslab``) lives here too:
:class:`FaultInjection` makes the N-th page or slab allocation fail.
"""

from __future__ import annotations

from typing import Any, Callable

from .errors import OutOfMemory


class FaultInjection:
    """Make the ``page``-th page allocation and/or the ``slab``-th slab allocation from now
    fail (1 is the next one), as CONFIG_FAIL_PAGE_ALLOC / CONFIG_FAILSLAB do. ``count`` says
    how many of each were asked for since it was installed."""

    def __init__(self, page: int | None = None, slab: int | None = None):
        self.page, self.slab = page, slab
        self.count = {"page": 0, "slab": 0}

    def check(self, kind: str, what: str) -> None:
        self.count[kind] += 1
        if getattr(self, kind) == self.count[kind]:
            raise OutOfMemory(f"injected failure of {kind} allocation #{self.count[kind]} ({what})")


class Journal:
    """The undo log of the operation running now (None: no operation)."""

    __slots__ = ("undo", "commit_actions", "injection", "held", "keep")

    def __init__(self):
        self.undo: list | None = None
        self.commit_actions: list = []
        self.injection: FaultInjection | None = None
        #: what holds an unfinished transaction between its steps (a module load run step
        #: by step): no other operation may start until it resumes and ends
        self.held: str | None = None
        #: while not None, committed operations stay undoable: their undo records, those of
        #: what the commit itself does (the deferred frees) included, are appended here
        #: (a scenario step: :meth:`undo_kept` takes it back later)
        self.keep: list | None = None

    @property
    def active(self) -> bool:
        return self.undo is not None

    # -- the transaction -------------------------------------------------------------------

    def begin(self) -> None:
        """Open the transaction of an operation (the outermost: the ones it calls join it)."""
        self.undo = []
        self.commit_actions = []

    def commit(self) -> None:
        actions = self.commit_actions
        if self.keep is not None:
            # the deferred actions run while the log still records, so that they can be
            # undone too (a free records how to restore the free lists it merged into)
            self.commit_actions = []
            while actions:
                for fn, args in actions:
                    fn(*args)
                actions, self.commit_actions = self.commit_actions, []
            self.keep.extend(self.undo)
            self.undo = None
            return
        self.undo = None
        self.commit_actions = []
        for fn, args in actions:
            fn(*args)

    @staticmethod
    def undo_kept(records: list) -> None:
        """Undo the operations whose records :attr:`keep` collected, newest first (outside
        any operation)."""
        for fn, args in reversed(records):
            fn(*args)

    def rollback(self) -> None:
        undo = self.undo
        self.undo = None
        self.commit_actions = []
        for fn, args in reversed(undo):
            fn(*args)

    def hold(self, what: str) -> tuple[list, list]:
        """Pause the running transaction between two steps of one operation (a module load
        run step by step): its undo log and its commit actions (the deferred frees, the
        events) are handed to the caller, nothing is committed, and until :meth:`resume`
        no other operation may start (it would interleave with a change that may still be
        undone). *what* names the holder in that refusal."""
        held = (self.undo, self.commit_actions)
        self.undo, self.commit_actions, self.held = None, [], what
        return held

    def resume(self, held: tuple[list, list]) -> None:
        """Continue a transaction paused by :meth:`hold`; it then commits or rolls back as
        any other."""
        self.undo, self.commit_actions = held
        self.held = None

    def record(self, fn: Callable, *args) -> None:
        """Undo by calling ``fn(*args)`` if the operation fails."""
        if self.undo is not None:
            self.undo.append((fn, args))

    def on_commit(self, fn: Callable, *args) -> bool:
        """Do ``fn(*args)`` when the operation succeeds (now, outside one). Returns whether
        it was deferred."""
        if self.undo is None:
            fn(*args)
            return False
        self.commit_actions.append((fn, args))
        return True

    # -- journaled changes of records -------------------------------------------------------

    def set(self, obj: Any, name: str, value: Any) -> None:
        if self.undo is not None:
            self.undo.append((setattr, (obj, name, getattr(obj, name))))
        setattr(obj, name, value)

    def setitem(self, container, key, value) -> None:
        """``container[key] = value`` (a dict or a list index)."""
        if self.undo is not None:
            if isinstance(container, dict) and key not in container:
                self.undo.append((container.pop, (key,)))
            else:
                self.undo.append((container.__setitem__, (key, container[key])))
        container[key] = value

    def delitem(self, container, key) -> None:
        """``del container[key]`` (a dict key, or a list index)."""
        if self.undo is not None:
            if isinstance(container, dict):
                self.undo.append((container.__setitem__, (key, container[key])))
            else:
                i = key if key >= 0 else len(container) + key
                self.undo.append((container.insert, (i, container[key])))
        del container[key]

    def append(self, lst: list, value) -> None:
        lst.append(value)
        if self.undo is not None:
            self.undo.append((lst.pop, ()))

    def insert(self, lst: list, i: int, value) -> None:
        pos = min(i, len(lst)) if i >= 0 else max(0, len(lst) + i)
        lst.insert(pos, value)
        if self.undo is not None:
            self.undo.append((lst.pop, (pos,)))

    def pop(self, lst: list, i: int = -1):
        j = i if i >= 0 else len(lst) + i
        value = lst.pop(j)
        if self.undo is not None:
            self.undo.append((lst.insert, (j, value)))
        return value

    def remove(self, lst: list, value) -> None:
        self.pop(lst, lst.index(value))

    def splice(self, lst: list, i: int, j: int, new: list) -> None:
        """``lst[i:j] = new``."""
        if self.undo is not None:
            old = lst[i:j]
            self.undo.append((_unsplice, (lst, i, len(new), old)))
        lst[i:j] = new

    def add(self, s: set, value) -> None:
        if value not in s:
            s.add(value)
            if self.undo is not None:
                self.undo.append((s.discard, (value,)))

    def discard(self, s: set, value) -> None:
        if value in s:
            s.discard(value)
            if self.undo is not None:
                self.undo.append((s.add, (value,)))

    def discard_many(self, s: set, values: list) -> None:
        """:meth:`discard` of each of *values* (members of *s*, each once), with one undo
        record for them all (an unmap: thousands of pages)."""
        if values:
            s.difference_update(values)
            if self.undo is not None:
                self.undo.append((s.update, (values,)))

    # -- fault injection ----------------------------------------------------------------------

    def inject(self, kind: str, what: str) -> None:
        if self.injection is not None:
            self.injection.check(kind, what)


def _unsplice(lst: list, i: int, n: int, old: list) -> None:
    lst[i:i + n] = old
