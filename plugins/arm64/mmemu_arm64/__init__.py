"""The arm64 arch plugin for mmemu: AArch64 with a 4 KiB granule, 39- or 48-bit VAs,
registered through the ``mmemu`` entry-point group like every arch."""

import mmemu

from .arch import Arm64Arch

__version__ = "0.1.0"

ARCH = Arm64Arch()


@mmemu.hookimpl
def mmemu_register_arch():
    return [ARCH]
