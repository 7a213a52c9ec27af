"""The Textual UI (``mmemu tui``; ``mmemu`` alone in a terminal). The headless core never
imports this package: it is the only part of mmemu that imports Textual (a test checks)."""

from __future__ import annotations

from pathlib import Path


def run_tui(scenario: "str | Path", overrides: dict | None = None, step: int = 0) -> int:
    """Open the UI on *scenario* (at the end of *step*); returns the exit status."""
    from .app import MmemuApp

    MmemuApp(scenario, overrides, step).run()
    return 0
