"""The x86_64 arch plugin: 4- and 5-level paging, 2 MiB and 1 GiB pages, NX."""

from mmemu import hookimpl

from .arch import X86_64Arch

__version__ = "0.1.0"

ARCH = X86_64Arch()


@hookimpl
def mmemu_register_arch():
    return [ARCH]


@hookimpl
def mmemu_kernel_symbols(kernel):
    return ARCH.exported_symbols(kernel) if kernel.arch is ARCH else []
