"""The UI's figures (issue 11): the first complete screen from process start, and one step's
redraw at the end of a 1,000-step scenario. Headless (Textual's test driver): what is timed is
mmemu's and Textual's work, not a terminal's."""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

FIRST_SCREEN = r"""
import asyncio, sys
from mmemu.tui.app import MmemuApp

async def main():
    app = MmemuApp(sys.argv[1])
    async with app.run_test(size=(160, 50)) as pilot:
        await pilot.pause()  # mounted, the panes drawn: the first complete screen
        print("ready", flush=True)

asyncio.run(main())
"""


def tui_first_screen_s(repeat: int = 3) -> float:
    """Seconds from starting a Python process to the UI's first complete screen on the
    built-in x86_64 tour (the best of *repeat*: the imports come from the page cache)."""
    tour = ROOT / "examples" / "scenarios" / "tour-x86_64.toml"
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        child = subprocess.Popen([sys.executable, "-c", FIRST_SCREEN, str(tour)], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
        line = child.stdout.readline()  # printed once the first screen is complete
        elapsed = time.perf_counter() - t
        _out, err = child.communicate()
        assert line.strip() == "ready" and child.returncode == 0, err
        best = min(best, elapsed)
    return best


def tui_step_redraw_ms(steps: int = 1000, samples: int = 50) -> float:
    """At the end of a generated *steps*-step scenario, one step back or forward and the
    screen painted again: the app's action (the stepping, the panes' new content), every
    widget's messages processed, then the compositor's repaint of what changed (what
    Textual's pilot runs after a key, without the pilot's idle polling, which alone costs
    ~100 ms on this machine). The median of *samples*, in milliseconds."""
    import asyncio

    from mmemu.testing.scenarios import random_scenario
    from mmemu.tui.app import MmemuApp

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "bench-1000.toml"
        path.write_text(random_scenario(11, steps, "x86_64", ram="1G"))
        times: list[float] = []

        async def drive():
            app = MmemuApp(path)
            async with app.run_test(size=(160, 50)) as pilot:
                app.model.stepper.to_end()
                app.model.after_move()
                app.redraw()
                await pilot.pause()
                for i in range(samples + 4):
                    await pilot.pause()
                    t = time.perf_counter()
                    app.action_prev() if i % 2 == 0 else app.action_next()
                    await pilot._wait_for_screen()  # (Textual 8.2.8's pilot: the widgets' queues drained)
                    app.screen._on_timer_update()  # the repaint the screen's timer would make
                    if i >= 4:  # the first few warm the caches
                        times.append(time.perf_counter() - t)

        asyncio.run(drive())
    return statistics.median(times) * 1000


if __name__ == "__main__":
    print(f"tui_first_screen_s {tui_first_screen_s():.3f}")
    print(f"tui_step_redraw_ms {tui_step_redraw_ms():.1f}")
