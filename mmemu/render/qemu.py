"""The QEMU monitor's ``info tlb`` and ``info mem``: what QEMU prints for the page table
loaded in CR3, in the arch's own format (:meth:`mmemu.arch.Arch.qemu_monitor`)."""

from __future__ import annotations

from ..errors import ConfigError

COMMANDS = ("tlb", "mem")


def qemu_info(kernel, command: str, process=None) -> str:
    """``info tlb`` / ``info mem`` with the kernel's page table loaded, or *process*'s."""
    if command not in COMMANDS:
        raise ConfigError(f"info {command!r}: QEMU's monitor commands here are {', '.join(COMMANDS)}")
    root = kernel.pgd if process is None else process.pgd
    return kernel.arch.qemu_monitor(kernel, command, root)
