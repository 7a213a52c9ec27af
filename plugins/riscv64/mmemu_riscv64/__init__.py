"""The riscv64 arch plugin for mmemu: Sv39/Sv48/Sv57 page tables and the riscv64 Linux memory
layout of each era (4.15 to 6.x) on a QEMU ``virt`` machine."""

import mmemu

from .arch import Riscv64Arch

__version__ = "0.1.0"

ARCH = Riscv64Arch()


@mmemu.hookimpl
def mmemu_register_arch():
    return [ARCH]
