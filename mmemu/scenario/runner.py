"""Running a scenario: boot its machine (the caller's overrides first), then each step as
one kernel operation, recording what it changed: the page-table operations it made (the
kernel's mapping events, each with the function that wrote the entries), the free frames
per zone, the busy vmap areas, the lines it logged. Expectations are checked as steps;
a failed one is recorded and the run goes on; a step that fails (a kernel error the step
did not ``expect_error``) ends the run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from ..errors import ConfigError, MmemuError
from .fields import FieldError
from .reader import MACHINE_KEYS, Scenario, ScenarioError, StepSpec

#: examples/modules/build, where ``insmod file = "hello"`` finds the example modules
EXAMPLE_MODULES = Path(__file__).resolve().parent.parent.parent / "examples" / "modules" / "build"


@dataclass
class StepRecord:
    """What one step did (one line of ``--json``; see the README for the schema)."""

    step: str  # "3", or "3.2" for the second loader step of a stepwise insmod
    op: str
    args: dict
    status: str = "ok"  # ok, error-expected, expectation-failed, failed
    text: str = ""
    bind: str | None = None
    value: int | None = None
    fields: dict = field(default_factory=dict)
    error: str = ""
    note: str = ""
    events: list = field(default_factory=list)
    free_pages: dict = field(default_factory=dict)  # zone -> (before, after), changed zones only
    vmap_areas: tuple = (0, 0)
    log: list = field(default_factory=list)
    #: the page-table operations (:class:`mmemu.pagetable.Operation`) of a loader step of a
    #: stepwise insmod (its mapping events come only when the load ends); not in the JSON
    operations: list = field(default_factory=list, repr=False)
    #: the kernel's mapping events of the step (:class:`mmemu.events.MappingEvent`); not in the JSON
    mapping_events: list = field(default_factory=list, repr=False)

    def to_json(self) -> dict:
        return {"step": self.step, "op": self.op, "args": self.args, "status": self.status, "text": self.text,
                "as": self.bind, "value": self.value, "fields": self.fields, "error": self.error,
                "note": self.note, "events": self.events,
                "free_pages": {z: {"before": b, "after": a} for z, (b, a) in self.free_pages.items()},
                "vmap_areas": {"before": self.vmap_areas[0], "after": self.vmap_areas[1]}, "log": self.log}


#: the operations that run code on the CPU (its Cpu is made before their step)
CPU_OPS = ("run_user", "insmod", "rmmod")


@dataclass
class _Saved:
    """What undoing one step restores besides the kernel's own undo log: the lengths of the
    append-only logs, the bound names, the counts of the run."""

    records: int
    log: int
    event_seq: int
    recent: int
    failed: int
    expectations: int
    spec: StepSpec
    undo: list = field(default_factory=list)
    #: the names the step bound: (table, name, what it held before or _UNBOUND)
    bound: list = field(default_factory=list)


_UNBOUND = object()


def machine_of(scenario: Scenario, overrides: dict | None = None) -> dict:
    """The machine to boot: the file's, with every override that is not None on top."""
    m = {"arch": "x86_64", "kernel": "6.6", "ram": "1G", "cpus": 1, "cmdline": "", "options": {}}
    m.update({k: v for k, v in scenario.machine.items() if k in MACHINE_KEYS})
    for key, value in (overrides or {}).items():
        if value is not None and key in MACHINE_KEYS and (key != "options" or value):
            m[key] = value
    return m


class ScenarioRun:
    """A scenario being run: the kernel, the names bound so far, the records."""

    def __init__(self, scenario: Scenario, overrides: dict | None = None):
        from .. import boot

        self.scenario = scenario
        self.machine = machine_of(scenario, overrides)
        try:
            self.k = boot(**self.machine)
        except ConfigError as exc:
            raise ScenarioError(f"the machine cannot boot: {exc}", scenario.file, field_="machine") from None
        self.values: dict[str, int] = {}
        self.objects: dict[str, tuple] = {}
        self.records: list[StepRecord] = []
        self._cpu = None
        self.failed: list[StepRecord] = []  # expectations that did not hold
        #: one entry a step run, newest last: what step_back needs to undo it
        self.history: list[_Saved] = []
        self._saved: _Saved | None = None
        self._areas, self._areas_at = 0, -1
        self.stopped: StepRecord | None = None  # the step that ended the run
        #: the module load (mmemu.kernel.module.ModuleLoad) of a stepwise insmod between two
        #: of its loader steps, else None
        self.loading = None
        self.expectations = 0
        if any(spec.op.name in CPU_OPS for spec in scenario.steps):
            # the CPU's boot-time frames (its stacks, GDT) are taken before any step: made
            # in the middle, they would sit under the undo log of the steps before
            # (stepping back past them could not give their frames back)
            self.cpu()

    def close(self) -> None:
        """Release the machine and its CPU."""
        if self._cpu is not None:
            self._cpu.close()
        self.k.close()

    def cpu(self):
        """The CPU that runs the scenario's code (made on first use)."""
        if self._cpu is None:
            from ..cpu import Cpu

            self._cpu = Cpu(self.k)
        return self._cpu

    def module_file(self, name: str) -> tuple[bytes, str]:
        """A module's bytes: a path (relative to the scenario's directory), or the name of an
        example module built for this machine's arch and nearest era."""
        base = Path(self.scenario.file).parent if self.scenario.file and not self.scenario.file.startswith("<") \
            else Path.cwd()
        path = (base / name)
        if not path.is_file() and "/" not in name and not name.endswith((".o", ".ko")):
            path = example_module(self.k, name)
        try:
            return path.read_bytes(), path.name
        except OSError as exc:
            raise FieldError(f"cannot read module {name!r}: {exc.strerror or exc}") from None

    # -- running -----------------------------------------------------------------------------

    def run(self) -> Iterator[StepRecord]:
        """Run every step; yield each :class:`StepRecord` as it is made."""
        for spec in self.scenario.steps:
            yield from self.run_step(spec)
            if self.stopped is not None:
                return

    def run_step(self, spec: StepSpec) -> Iterator[StepRecord]:
        """Run one step (a generator of its records: more than one for a stepwise insmod),
        undoably: :meth:`step_back` takes it back."""
        if spec.op.name in CPU_OPS:
            self.cpu()  # made before the step's undo log opens: the CPU outlives steps
        k = self.k
        saved = _Saved(len(self.records), len(k.log), k.event_seq, len(k.recent_events), len(self.failed),
                       self.expectations, spec)
        self._saved = saved
        k.journal.keep = []
        try:
            yield from self._run_step(spec)
        finally:
            saved.undo, k.journal.keep = k.journal.keep, None
            self.history.append(saved)

    def step_back(self) -> StepSpec:
        """Undo the last step run: physical memory, page tables, frames, vmap areas,
        processes, modules, the kernel log and the names it bound are as before it; the
        CPUs' TLBs are flushed (what they cached may be gone). Returns the step undone."""
        if not self.history:
            raise MmemuError("no step to take back: the scenario is at its start")
        k = self.k
        if k.journal.undo is not None or k.journal.held is not None:
            raise MmemuError("a step is still running; it cannot be taken back now")
        saved = self.history.pop()
        k.journal.undo_kept(saved.undo)
        del k.log[saved.log:]
        k.event_seq = saved.event_seq
        while len(k.recent_events) > saved.recent and k.recent_events[-1].seq > saved.event_seq:
            k.recent_events.pop()
        for table, key, old in reversed(saved.bound):
            if old is _UNBOUND:
                del table[key]
            else:
                table[key] = old
        del self.records[saved.records:]
        del self.failed[saved.failed:]
        self.expectations = saved.expectations
        self.stopped = None
        self._areas_at = -1  # the event numbers will be given again
        k._after_rollback()
        return saved.spec

    def _args(self, spec: StepSpec) -> dict:
        try:
            args = {key: spec.op.fields[key].value(v, self) for key, v in spec.loaded.items()}
        except FieldError as exc:
            raise ScenarioError(str(exc), self.scenario.file, spec.number,
                                _field_of(spec, str(exc))) from None
        for key, f in spec.op.fields.items():
            args.setdefault(key, f.default)
        return args

    def _call(self, spec: StepSpec):
        """The operation, *repeat* times (the name ``i`` counting 0, 1, ...): the last
        result."""
        if spec.repeat is None:
            return spec.op.fn(self, self._args(spec))
        result = None
        for i in range(spec.repeat):
            self.values["i"] = i
            try:
                result = spec.op.fn(self, self._args(spec))
            finally:
                del self.values["i"]
        if result is not None:
            result.text = f"{result.text} (the last of {spec.repeat})"
        return result

    def _run_step(self, spec: StepSpec):
        if spec.repeat is None:
            shown = {key: _jsonable(v) for key, v in self._args(spec).items() if key in spec.loaded}
        else:
            shown = {key: getattr(v, "text", v) for key, v in spec.loaded.items()}
            shown["repeat"] = spec.repeat
        rec = StepRecord(str(spec.number), spec.op.name, shown, bind=spec.bind, note=spec.note)
        mark = self._mark()
        try:
            result = self._call(spec)
        except FieldError as exc:
            raise ScenarioError(str(exc), self.scenario.file, spec.number) from None
        except ConfigError as exc:
            raise ScenarioError(f"{spec.op.name} cannot run on {self.machine['arch']} {self.machine['kernel']}: "
                                f"{exc}", self.scenario.file, spec.number) from None
        except MmemuError as exc:
            self._finish(rec, mark)
            self._error(rec, spec, exc)
            yield rec
            return
        if hasattr(result, "__next__"):  # a stepwise module load: one record a loader step
            yield from self._stepwise(spec, rec, result, mark)
            return
        self._finish(rec, mark)
        self._result(rec, spec, result)
        yield rec

    def _stepwise(self, spec, rec, load, mark):
        self.loading = load
        try:
            yield from self._loader_steps(spec, rec, load, mark)
        finally:
            self.loading = None

    def _loader_steps(self, spec, rec, load, mark):
        n = 0
        while True:
            n += 1
            sub = StepRecord(f"{spec.number}.{n}", spec.op.name, rec.args, note=spec.note)
            try:
                step = next(load)
            except StopIteration:
                break
            except MmemuError as exc:
                self._finish(sub, mark)
                self._error(sub, spec, exc)
                yield sub
                return
            self._finish(sub, mark)
            # the load's transaction is held open between its steps, so the kernel's mapping
            # events come at its end: each step's own page-table operations say what it did
            sub.events = [_event(op, 0, "") for op in step.operations]
            sub.operations = step.operations
            sub.text = f"{step.function}: {step.what}"
            mark = self._mark()
            self.records.append(sub)
            try:
                yield sub
            except GeneratorExit:  # the caller stops here (stepping back inside the load)
                load.abandon()
                raise
        mod = load.module
        if spec.expect_error is not None:
            rec.status, rec.error = "failed", f"expected an error containing {spec.expect_error!r}; the load succeeded"
            self.stopped = rec
            self.records.append(rec)
            yield rec
            return
        if spec.bind:
            self._bind(self.objects, spec.bind, ("module", mod))

    def _bind(self, table: dict, key: str, value) -> None:
        self._saved.bound.append((table, key, table.get(key, _UNBOUND)))
        table[key] = value

    def _mark(self) -> tuple:
        k = self.k
        return (k.event_seq, {z: zone.nr_free for z, zone in k.frames.zones.items()}, self._busy_areas(), len(k.log))

    def _busy_areas(self) -> int:
        """The busy vmap areas (what kmem -v lists), counted again only when the kernel made
        a mapping event since the last count (no event, no change of the areas)."""
        k = self.k
        if self._areas_at != k.event_seq:
            self._areas = sum(1 for va in k.vmap_areas if not va.lazy)
            self._areas_at = k.event_seq
        return self._areas

    def _finish(self, rec: StepRecord, mark: tuple) -> None:
        k = self.k
        seq, free, areas, logged = mark
        new = []
        for e in reversed(k.recent_events):  # the step's events are the newest ones
            if e.seq <= seq:
                break
            new.append(e)
        new.reverse()
        rec.mapping_events = new
        rec.events = [_event(e.op, e.seq, e.context) for e in new]
        rec.free_pages = {z: (free[z], zone.nr_free) for z, zone in k.frames.zones.items() if zone.nr_free != free[z]}
        rec.vmap_areas = (areas, self._busy_areas())
        rec.log = [r.text for r in k.log[logged:]]

    def _error(self, rec: StepRecord, spec: StepSpec, exc: MmemuError) -> None:
        msg = str(exc)
        rec.error = msg
        want = spec.expect_error
        if want is not None and (want in msg or want == type(exc).__name__):
            rec.status, rec.text = "error-expected", f"failed as expected: {msg.splitlines()[0] if msg else type(exc).__name__}"
        else:
            rec.status = "failed"
            rec.text = f"{type(exc).__name__}: {msg.splitlines()[0] if msg else ''}"
            self.stopped = rec
        self.records.append(rec)

    def _result(self, rec: StepRecord, spec: StepSpec, result) -> None:
        if spec.expect_error is not None:
            rec.status = "failed"
            rec.error = f"expected an error containing {spec.expect_error!r}; the step succeeded"
            rec.text = result.text
            self.stopped = rec
            self.records.append(rec)
            return
        rec.text, rec.value, rec.fields = result.text, result.value, dict(result.fields)
        if result.ok is not None:
            self.expectations += 1
            if not result.ok:
                rec.status, rec.error = "expectation-failed", result.why
                self.failed.append(rec)
        if spec.bind:
            if result.value is not None:
                self._bind(self.values, spec.bind, result.value)
            for key, v in result.fields.items():
                self._bind(self.values, f"{spec.bind}.{key}", v)
            if result.obj is not None:
                self._bind(self.objects, spec.bind, result.obj)
        self.records.append(rec)

    @property
    def ok(self) -> bool:
        return not self.failed and self.stopped is None


def _event(op, seq: int, context: str) -> dict:
    """A page-table operation as the trace records it."""
    return {"seq": seq, "writer": op.writer, "kind": op.kind, "va": op.va, "size": op.size,
            "entries": sum(len(c.old) // c.level.entry_size for c in op.changes), "context": context}


def example_module(k, name: str) -> Path:
    """examples/modules/build/<arch>-<era>/<name>.o for the era nearest below the machine's
    kernel (3.10, 4.19, 5.10, 6.6; the oldest for older kernels)."""
    arch = "x86_64" if k.arch.name == "x86_64" else "i386" if k.arch.name.startswith("i386") else k.arch.name
    eras = sorted((tuple(int(x) for x in d.name.split("-", 1)[1].split(".")), d)
                  for d in EXAMPLE_MODULES.glob(f"{arch}-*") if d.is_dir())
    if not eras:
        raise FieldError(f"no example modules are built for {k.arch.name} (examples/modules/build/{arch}-*)")
    v = (k.spec.kernel.major, k.spec.kernel.minor)
    chosen = eras[0][1]
    for era, d in eras:
        if era <= v:
            chosen = d
    path = chosen / f"{name}.o"
    if not path.is_file():
        known = sorted(p.stem for p in chosen.glob("*.o"))
        raise FieldError(f"no module {name!r}: a path, or one of the examples {', '.join(known)}")
    return path


def _field_of(spec: StepSpec, message: str) -> str | None:
    for key in spec.loaded:
        if repr(key) in message or key in message.split(":", 1)[0]:
            return key
    return None


def _jsonable(v):
    if isinstance(v, bytes):
        return v.hex(" ")
    if isinstance(v, (int, str, bool)) or v is None:
        return v
    if isinstance(v, list):
        return [_jsonable(x) for x in v]
    if hasattr(v, "pid"):
        return f"{v.comm}[{v.pid}]"
    if hasattr(v, "pfn"):
        return v.pfn
    return str(v)
