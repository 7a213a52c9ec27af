"""The i386 PAE arch plugin: 3-level paging, 2 MiB pages, NX (CONFIG_HIGHMEM64G)."""

from mmemu_x86.x86_32 import X86_32Arch

from mmemu import hookimpl

from .formats import PAGING_PAE

__version__ = "0.1.0"

ARCH = X86_32Arch("i386_pae", "i386 with PAE, 3-level paging (4 KiB and 2 MiB pages, NX), up to 64 GiB RAM",
                  PAGING_PAE, pae=True)


@hookimpl
def mmemu_register_arch():
    return [ARCH]


@hookimpl
def mmemu_kernel_symbols(kernel):
    return ARCH.exported_symbols(kernel) if kernel.arch is ARCH else []
