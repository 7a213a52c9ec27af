"""The kernel log (``printk``, ``dmesg``) and the taint flags.

The log is output, not state: a message printed by an operation that then fails stays in
the log, as in the kernel's ring buffer. The taint flags are state (a failed load taints
nothing).
"""

from __future__ import annotations

from dataclasses import dataclass

#: include/linux/kern_levels.h, by name
LEVELS = {"emerg": 0, "alert": 1, "crit": 2, "err": 3, "warn": 4, "notice": 5, "info": 6, "debug": 7}


@dataclass(frozen=True)
class LogRecord:
    """One line of the kernel log: its level (0-7) and text (no trailing newline)."""

    level: int
    text: str


class LogMixin:
    def _init_log(self) -> None:
        #: the kernel log, oldest first
        self.log: list[LogRecord] = []
        #: the kernel's taint letters (``Tainted: ...``): P, O, F, E...
        self.taints: set[str] = set()

    def printk(self, text: str, level: str | int = "info") -> None:
        """Append *text* (one or more lines) to the kernel log at *level* (a name of
        kern_levels.h or 0-7)."""
        lv = LEVELS[level] if isinstance(level, str) else int(level)
        for line in text.split("\n"):
            self.log.append(LogRecord(lv, line))

    def dmesg(self) -> str:
        """The log as ``dmesg`` prints it with timestamps off (``printk.time=0``)."""
        return "".join(r.text + "\n" for r in self.log)

    def print_tainted(self) -> str:
        """kernel/panic.c ``print_tainted()``: ``Not tainted``, or ``Tainted: `` and one
        character per flag of the era's ``taint_flags[]`` -- its letter when set, else a
        blank (``G`` for a clear P) -- as the oops's ``CPU: 0 PID: 1666 Comm: insmod
        Tainted: G           O      5.19.0`` line shows (tests/golden/oops_x86_64_5.19.txt)."""
        if not self.taints:
            return "Not tainted"
        return "Tainted: " + "".join(c if c in self.taints else ("G" if c == "P" else " ")
                                     for c in self.era.taint_flags)

    def add_taint(self, letter: str) -> None:
        """``add_taint``: set one taint flag (journaled: a failed operation sets none)."""
        if letter not in self.taints:
            self.journal.add(self.taints, letter)
