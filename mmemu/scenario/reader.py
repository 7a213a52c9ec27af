"""Reading a scenario file (TOML, with the standard library's ``tomllib``) into checked
steps, before anything is booted: every field of every step against its operation's
fields, every name a step uses against the names earlier steps bind. An error names the
file, the step and the field.

The format::

    title = "vmalloc on i386"                 # optional
    description = "..."                       # optional
    arches = ["i386", "i386_pae"]             # optional: where its expectations hold (tests run it there)

    [machine]                                 # every key optional; the CLI's options override
    arch = "i386"
    kernel = "6.6"
    ram = "1G"
    cpus = 1
    cmdline = "vmalloc=256M"
    options = { NR_CPUS = "8" }

    [[step]]
    op = "vmalloc"                            # an operation of mmemu.scenario.ops.OPS
    size = "3 * 4096"                         # integers or expressions over bound names
    as = "buf"                                # bind the result

    [[step]]
    op = "expect_translation"
    addr = "buf + 0x1000"
    kernel = "rw-"
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import MmemuError
from .fields import FieldError
from .ops import COMMON, OPS, Op

MACHINE_KEYS = ("arch", "kernel", "ram", "cpus", "cmdline", "options")
TOP_KEYS = ("title", "description", "arches", "machine", "step")
#: a scenario file larger than this is refused before parsing
MAX_FILE = 4 << 20
#: the most times one step may repeat (a count, kept small enough to stay interactive)
MAX_REPEAT = 10000


class ScenarioError(MmemuError):
    """A scenario that cannot run as written: the message names the file, the step (its
    number, from 1) and the field."""

    def __init__(self, message: str, file: str = "", step: int | None = None, field_: str | None = None):
        where = file or "scenario"
        if step is not None:
            where += f": step {step}"
        if field_ is not None:
            where += f": {field_}"
        super().__init__(f"{where}: {message}")
        self.file, self.step, self.field = file, step, field_


@dataclass
class StepSpec:
    """One step as read: its number, operation, fields as loaded (not yet evaluated)."""

    number: int
    op: Op
    loaded: dict
    bind: str | None = None
    expect_error: str | None = None
    note: str = ""
    raw: dict = field(default_factory=dict)
    #: run the operation this many times (``i`` is 0, 1, ... in its expressions)
    repeat: int | None = None


@dataclass
class Scenario:
    file: str
    title: str
    description: str
    machine: dict
    steps: list[StepSpec]
    #: the arches the scenario is written for (its expectations hold there): its
    #: ``arches`` list, or its machine's arch
    arches: list[str] = field(default_factory=list)


def load(path: "str | Path") -> Scenario:
    """Read and check the scenario file at *path*."""
    p = Path(path)
    try:
        with p.open("rb") as f:
            data = f.read(MAX_FILE + 1)
    except OSError as exc:
        raise ScenarioError(f"cannot read it: {exc.strerror or exc}", str(path)) from None
    if len(data) > MAX_FILE:
        raise ScenarioError(f"larger than {MAX_FILE >> 20} MiB", str(path))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ScenarioError(f"not UTF-8 text (byte {exc.start})", str(path)) from None
    return loads(text, str(path))


def loads(text: str, file: str = "<scenario>") -> Scenario:
    """Read and check a scenario from TOML *text*; *file* names it in errors."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"not valid TOML: {exc}", file) from None
    except RecursionError:
        raise ScenarioError("not valid TOML: nested too deeply", file) from None
    for key in doc:
        if key not in TOP_KEYS:
            raise ScenarioError(f"unknown key {key!r}: a scenario has {', '.join(TOP_KEYS)}", file)
    title = _text(doc.get("title", ""), file, "title")
    description = _text(doc.get("description", ""), file, "description")
    arches = doc.get("arches", [])
    if not isinstance(arches, list) or not all(isinstance(a, str) for a in arches):
        raise ScenarioError('arches is a list of arch names, e.g. ["x86_64", "riscv64"]', file, field_="arches")
    machine = doc.get("machine", {})
    if not isinstance(machine, dict):
        raise ScenarioError("[machine] must be a table", file)
    for key, value in machine.items():
        if key not in MACHINE_KEYS:
            raise ScenarioError(f"unknown machine key {key!r}: one of {', '.join(MACHINE_KEYS)}", file,
                                field_=f"machine.{key}")
        if key == "options":
            if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
                raise ScenarioError('options is a table of strings, e.g. { NR_CPUS = "8" }', file, field_="machine.options")
        elif key == "cpus":
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 4096:
                raise ScenarioError(f"cpus is a count from 1 to 4096, not {value!r}", file, field_="machine.cpus")
        elif not isinstance(value, str):
            raise ScenarioError(f"{key} is a string, not {type(value).__name__}", file, field_=f"machine.{key}")
    raw_steps = doc.get("step", [])
    if not isinstance(raw_steps, list) or not all(isinstance(s, dict) for s in raw_steps):
        raise ScenarioError("steps are [[step]] tables", file)
    if not raw_steps:
        raise ScenarioError("no [[step]]: nothing to run", file)
    bound: dict[str, str] = {}  # name -> what it holds ("number" or an object kind)
    steps = []
    for i, raw in enumerate(raw_steps, 1):
        step = _read_step(i, raw, file, bound)
        if step.bind is not None:
            if step.op.is_expect:
                raise ScenarioError("an expectation binds nothing", file, i, "as")
            bound[step.bind] = step.op.binds or "number"
        steps.append(step)
    return Scenario(file, title, description, dict(machine), steps,
                    arches or [machine.get("arch", "x86_64")])


def _text(value, file: str, key: str) -> str:
    if not isinstance(value, str):
        raise ScenarioError(f"{key} is a string, not {type(value).__name__}", file, field_=key)
    return value


def _read_step(number: int, raw: dict, file: str, bound: dict[str, str]) -> StepSpec:
    name = raw.get("op")
    if name is None:
        raise ScenarioError("no op: every step names its operation (op = \"vmalloc\")", file, number, "op")
    if not isinstance(name, str) or name not in OPS:
        close = sorted(n for n in OPS if isinstance(name, str) and (name in n or n in name))
        raise ScenarioError(f"unknown operation {name!r}" + (f" (did you mean {', '.join(close[:3])}?)" if close else
                                                             "; `mmemu run --list-ops` lists them"), file, number, "op")
    op = OPS[name]
    loaded = {}
    repeat = raw.get("repeat")
    if repeat is not None:
        if isinstance(repeat, bool) or not isinstance(repeat, int) or not 1 <= repeat <= MAX_REPEAT:
            raise ScenarioError(f"repeat is a count from 1 to {MAX_REPEAT}, not {repeat!r}", file, number, "repeat")
        if op.is_expect or name == "insmod":
            raise ScenarioError(f"{name} cannot be repeated", file, number, "repeat")
        bound = dict(bound, i="number")  # (this step's own view: i is bound while it repeats)
    for key, value in raw.items():
        if key == "repeat":
            continue
        spec = op.fields.get(key) or COMMON.get(key)
        if spec is None:
            known = ", ".join(sorted(set(op.fields) | set(COMMON)))
            raise ScenarioError(f"{name} has no field {key!r} (its fields: {known})", file, number, key)
        try:
            loaded[key] = spec.load(value)
        except FieldError as exc:
            raise ScenarioError(str(exc), file, number, key) from None
        if key in op.fields:
            for used in spec.names(loaded[key]):
                base = used.split(".", 1)[0]
                if base not in bound:
                    raise ScenarioError(f"{used!r} is not bound by an earlier step (as = \"{base}\")", file, number, key)
                kind = getattr(spec, "kind", None)
                if kind is not None and "." not in used and bound[base] != kind and not (kind == "page"
                                                                                        and bound[base] == "number"):
                    raise ScenarioError(f"{used!r} is a {bound[base]}, not a {kind}", file, number, key)
    for key, spec in op.fields.items():
        if spec.required and key not in loaded:
            raise ScenarioError(f"{name} needs {key}" + (f" ({spec.help})" if spec.help else ""), file, number, key)
    return StepSpec(number, op, {k: v for k, v in loaded.items() if k in op.fields}, loaded.get("as"),
                    loaded.get("expect_error"), loaded.get("note", ""), raw, repeat)
