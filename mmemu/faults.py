"""A page fault, in words every arch shares.

What the MMU tells the kernel differs by arch (x86's error code and CR2, RISC-V's scause
and stval, arm64's ESR and FAR), but it always says the same things: which address, which
access (read, write, instruction fetch), from which privilege, and why it failed: the
translation does not exist (``not-present``), it forbids the access (``protection``), an
entry is malformed (``reserved``), or the access flag is clear where the hardware does not
set it (``access-flag``, arm64), or the address is not one the MMU translates at all
(``non-canonical``: x86_64 raises #GP(0) instead of a #PF, RISC-V a page fault, arm64 a
level-0 translation fault). :class:`Fault` carries these, with the arch's own encoding
in :attr:`Fault.code` (filled in by the arch's codec), and what the fault path needs to
report it: where it happened and in which process.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

NOT_PRESENT = "not-present"
PROTECTION = "protection"
RESERVED = "reserved"
ACCESS_FLAG = "access-flag"
NON_CANONICAL = "non-canonical"
KINDS = (NOT_PRESENT, PROTECTION, RESERVED, ACCESS_FLAG, NON_CANONICAL)


@dataclass(slots=True)
class Fault:
    """One page fault.

    ``level``: the index (in the paging mode's levels) of the entry the walk stopped at.
    ``code``: the arch's encoding (x86 error code, RISC-V scause, arm64 ESR). ``ip``: the
    faulting instruction (None for an access made through the emulator's API).
    """

    address: int
    access: str  # "read", "write", "exec"
    user: bool
    kind: str = NOT_PRESENT
    level: int = 0
    code: int = 0
    ip: int | None = None
    source: str = "api"  # "cpu", "api" or "walk"
    process: Any = None  # mmemu.kernel.Process
    cpu: int = 0
    sp: int = 0  # the stack pointer at the fault (for the segfault line)
    uaccess: bool = False  # a kernel access made with user access open (RISC-V SUM set)

    @property
    def write(self) -> bool:
        return self.access == "write"

    @property
    def instr(self) -> bool:
        return self.access == "exec"

    @property
    def protection(self) -> bool:
        """The translation exists (the fault is not a missing entry)."""
        return self.kind != NOT_PRESENT

    @property
    def rsvd(self) -> bool:
        return self.kind == RESERVED

    def describe(self) -> str:
        """``supervisor write access in kernel mode``."""
        who = "user" if self.user else "supervisor"
        what = {"exec": "instruction fetch", "write": "write access"}.get(self.access, "read access")
        return f"{who} {what} in {'user' if self.user else 'kernel'} mode"

    def __repr__(self) -> str:
        where = f" ip {self.ip:#x}" if self.ip is not None else ""
        return (f"<Fault {self.access} {self.address:#x} {'user' if self.user else 'kernel'} {self.kind} "
                f"code {self.code:#x}{where}>")
