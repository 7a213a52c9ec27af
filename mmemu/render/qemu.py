"""The QEMU monitor's ``info tlb`` and ``info mem``: what QEMU prints for the page table
loaded in CR3, in the arch's own format (:meth:`mmemu.arch.Arch.qemu_monitor`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import ConfigError

if TYPE_CHECKING:
    from ..kernel import Kernel
    from ..kernel.process import Process

COMMANDS = ("tlb", "mem")


def qemu_info(kernel: "Kernel", command: str, process: "Process | None" = None) -> str:
    """``info tlb`` / ``info mem`` with the kernel's page table loaded, or *process*'s."""
    if command not in COMMANDS:
        raise ConfigError(f"info {command!r}: QEMU's monitor commands here are {', '.join(COMMANDS)}")
    root = kernel.pgd if process is None else process.pgd
    return kernel.arch.qemu_monitor(kernel, command, root)
