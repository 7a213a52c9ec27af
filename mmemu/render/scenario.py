"""A scenario's steps as ``mmemu run`` prints them: one line a step (what it did and what
it bound), then what it changed (the page-table operations with the kernel function that
made each, the free frames per zone, the busy vmap areas, the lines it logged)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..scenario.runner import ScenarioRun, StepRecord

STATUS = {"ok": "", "error-expected": "", "expectation-failed": "  FAILED", "failed": "  FAILED"}


def _args(args: dict) -> str:
    def show(v):
        if isinstance(v, bool) or v is None:
            return str(v).lower()
        if isinstance(v, int):
            return f"{v:#x}" if v >= 4096 else str(v)
        if isinstance(v, list):
            return "[" + ", ".join(show(x) for x in v) + "]"
        return repr(v) if " " in str(v) or not str(v) else str(v)
    return " ".join(f"{k}={show(v)}" for k, v in args.items())


def _runs(events: list) -> list[list]:
    """Consecutive events of one writer, kind and context (pgd_ctor copying 256 kernel
    entries, copy_present_pte one pte at a time...), each run shown as one line."""
    runs: list[list] = []
    for e in events:
        if runs and all(runs[-1][0][k] == e[k] for k in ("writer", "kind", "context")):
            runs[-1].append(e)
        else:
            runs.append([e])
    return runs


def step_lines(rec: "StepRecord", width: int = 16) -> list[str]:
    """One step as ``mmemu run`` prints it: ``[N] op args``, what it bound, and what it
    changed, indented; addresses in *width* hex digits."""
    head = f"[{rec.step}] {rec.op}"
    if rec.args and "." not in rec.step:
        head += " " + _args(rec.args)
    if rec.bind and rec.status == "ok":
        head += f" -> {rec.bind} = {rec.text or (format(rec.value, '#x') if rec.value is not None else '')}"
    elif rec.text:
        head += f" -> {rec.text}"
    head += STATUS.get(rec.status, "")
    out = [head]
    if rec.note:
        out.append(f"    # {rec.note}")
    if rec.status in ("expectation-failed", "failed") and rec.error:
        out += [f"    {line}" for line in rec.error.splitlines()[:40]]
    for group in _runs(rec.events):
        e, n = group[0], len(group)
        if n == 1:
            what = f"{e['va']:#0{width + 2}x}+{e['size']:#x} ({e['entries']} entries)"
        else:
            last = group[-1]
            what = (f"{n} times, {e['va']:#0{width + 2}x}..{last['va'] + last['size'] - 1:#0{width + 2}x} "
                    f"({sum(x['entries'] for x in group)} entries)")
        out.append(f"    {e['writer']}: {e['kind']} {what}" + (f" [{e['context']}]" if e["context"] else ""))
    changes = [f"{z} {a - b:+d}" for z, (b, a) in rec.free_pages.items()]
    if changes:
        out.append("    free pages: " + ", ".join(changes))
    if rec.vmap_areas[0] != rec.vmap_areas[1]:
        out.append(f"    vmap areas: {rec.vmap_areas[0]} -> {rec.vmap_areas[1]}")
    if rec.status != "failed":
        out += [f"    log: {line}" for line in rec.log[:60]]
    return out


def summary(run: "ScenarioRun") -> str:
    """The last line of ``mmemu run``: how many steps ran and expectations held, or where
    the run stopped and why."""
    steps = len(run.scenario.steps)
    if run.stopped is not None:
        return (f"STOPPED at step {run.stopped.step} ({run.stopped.op}): {run.stopped.text or run.stopped.error}; "
                f"{len(run.failed)} of {run.expectations} expectations failed before it")
    if run.failed:
        which = ", ".join(f"step {r.step} ({r.error})" for r in run.failed[:5])
        return f"FAILED: {len(run.failed)} of {run.expectations} expectations: {which}"
    return f"ok: {steps} steps, {run.expectations} expectations held"
