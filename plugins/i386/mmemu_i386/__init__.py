"""The i386 arch plugin: 2-level paging, 4 MiB PSE pages, no NX (CONFIG_HIGHMEM4G)."""

from mmemu_x86.x86_32 import X86_32Arch

from mmemu import hookimpl

from .formats import PAGING_2LEVEL

__version__ = "0.1.0"

ARCH = X86_32Arch("i386", "i386, 2-level paging (4 KiB and 4 MiB pages, no NX), up to 4 GiB RAM",
                  PAGING_2LEVEL, pae=False)


@hookimpl
def mmemu_register_arch():
    return [ARCH]


@hookimpl
def mmemu_kernel_symbols(kernel):
    return ARCH.exported_symbols(kernel) if kernel.arch is ARCH else []
