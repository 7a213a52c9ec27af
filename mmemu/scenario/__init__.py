"""Scenarios: a sequence of kernel operations written down as data (TOML), run headless,
checked against their expectations, and traced step by step (``mmemu run``).

:func:`load` / :func:`loads` read and check a scenario (:mod:`.reader`), :class:`ScenarioRun`
runs it (:mod:`.runner`), :data:`OPS` holds the operations a step can name (:mod:`.ops`),
and expressions (``"buf + 0x1000"``) are parsed by :mod:`.expr`, never ``eval``'d.
"""

from .expr import ExprError, parse
from .ops import OPS
from .reader import Scenario, ScenarioError, StepSpec, load, loads
from .runner import ScenarioRun, StepRecord, machine_of

__all__ = ["OPS", "ExprError", "Scenario", "ScenarioError", "ScenarioRun", "StepRecord", "StepSpec", "load", "loads",
           "machine_of", "parse"]
