"""A scenario walked one record at a time, forwards and backwards: what the TUI drives.

:class:`ScenarioRun` runs whole steps and takes whole steps back. A stepwise ``insmod`` makes
one record per loader step, so a viewer that shows records needs to go back one loader step
too: the :class:`Stepper` does it by taking the whole step back (the load is abandoned, every
loader step undone) and running it again up to the loader step before. Runs are deterministic,
so the state reached is the one that was there.
"""

from __future__ import annotations

from .runner import ScenarioRun, StepRecord

#: the kernel functions that write page-table entries from the page-fault path
FAULT_WRITERS = frozenset({"do_anonymous_page", "do_wp_page", "wp_page_copy", "wp_page_reuse", "do_fault",
                           "vmalloc_fault", "do_swap_page", "do_numa_page", "__handle_mm_fault"})


def record_faulted(rec: StepRecord) -> bool:
    """Whether the step took a page fault: the fault path wrote an entry, code ran and
    faulted, the kernel logged an oops or a segfault, or the step failed."""
    if rec.status in ("failed", "error-expected"):
        return True
    if rec.fields.get("faults"):
        return True
    if any(e.get("writer") in FAULT_WRITERS for e in rec.events):
        return True
    return any(("Oops" in line or "segfault" in line or "BUG:" in line or "unable to handle" in line)
               for line in rec.log)


class Stepper:
    """Record-granular stepping over a :class:`ScenarioRun`.

    ``position`` is the number of records made so far (0: as booted); :meth:`forward` makes
    the next one, :meth:`back` takes the last one back, :meth:`goto` moves to any position.
    """

    def __init__(self, run: ScenarioRun):
        self.run = run
        self._next_spec = 0  # index of the next step to start
        self._gen = None  # the records of the step in progress (a stepwise insmod)
        self._gen_made = 0  # records it made so far
        #: called with (index, record) for every record made, forwards or in a replay
        self.listeners: list = []
        #: called with each record taken back
        self.undo_listeners: list = []

    @property
    def records(self) -> list[StepRecord]:
        return self.run.records

    @property
    def position(self) -> int:
        return len(self.run.records)

    @property
    def current(self) -> StepRecord | None:
        return self.run.records[-1] if self.run.records else None

    @property
    def at_end(self) -> bool:
        """No record is left to make: every step ran, or one ended the run."""
        if self.run.stopped is not None:
            return True
        return self._gen is None and self._next_spec >= len(self.run.scenario.steps)

    @property
    def in_step(self) -> bool:
        """A stepwise step is half made (a module load between two loader steps)."""
        return self._gen is not None

    def forward(self) -> StepRecord | None:
        """Make the next record; None at the end."""
        steps = self.run.scenario.steps
        while not self.at_end:
            if self._gen is None:
                self._gen = self.run.run_step(steps[self._next_spec])
                self._next_spec += 1
                self._gen_made = 0
            try:
                rec = next(self._gen)
            except StopIteration:
                self._gen = None
                continue
            self._gen_made += 1
            self._made(rec)
            return rec
        return None

    def back(self) -> StepRecord | None:
        """Take the last record back; returns it (None at the start)."""
        run = self.run
        if not run.records:
            return None
        last = run.records[-1]
        before = len(run.records)
        if self._gen is not None:
            # still suspended after its last record: closing it ends the step (a held module
            # load is abandoned, every loader step undone) and files it for step_back
            self._gen.close()
            self._gen = None
        self._step_back()
        self._next_spec -= 1
        self._replay(before - len(run.records) - 1)  # the step's records but its last
        if self._gen is None and run.history and len(run.records) - run.history[-1].records > 1:
            # now at the last record of a stepwise step: when it was first made, the step
            # was still suspended there (a module load held open, its commit not yet made);
            # make it again so, to be in the very state that was seen
            made = len(run.records) - run.history[-1].records
            self._step_back()
            self._next_spec -= 1
            self._replay(made)
        return last

    def _replay(self, n: int) -> None:
        """Run the step at ``_next_spec`` again, up to its *n*-th record (0: not at all)."""
        if n <= 0:
            return
        spec = self.run.scenario.steps[self._next_spec]
        self._gen = self.run.run_step(spec)
        self._next_spec += 1
        self._gen_made = 0
        for _ in range(n):
            self._made(next(self._gen))
            self._gen_made += 1

    def _step_back(self) -> None:
        run = self.run
        undone = run.records[run.history[-1].records:] if run.history else []
        run.step_back()
        for rec in undone:
            for fn in self.undo_listeners:
                fn(rec)

    def _made(self, rec: StepRecord) -> None:
        for fn in self.listeners:
            fn(len(self.run.records) - 1, rec)

    def close(self) -> None:
        """End a step left half made (a held module load is abandoned), then the run."""
        if self._gen is not None:
            self._gen.close()
            self._gen = None
        self.run.close()

    def goto(self, position: int) -> None:
        """Forward or back to *position* records (clamped to what the scenario makes)."""
        position = max(0, position)
        while self.position > position:
            self.back()
        while self.position < position and self.forward() is not None:
            pass

    def to_end(self) -> None:
        while self.forward() is not None:
            pass

    def to_next_fault(self) -> StepRecord | None:
        """Forward to the next record that took a fault (None: none before the end)."""
        while True:
            rec = self.forward()
            if rec is None or record_faulted(rec):
                return rec
