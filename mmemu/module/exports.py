"""The kernel functions mmemu exports to modules, by era.

A module's undefined symbols resolve against the kernel's ``__ksymtab``. mmemu exports the
functions of the kernel's memory API a module uses (allocators, vmalloc, kmap, printk, the
string functions the compiler may call), under the names the era exports them by; an arch
plugin adds its own (x86's ``__fentry__``, ``__x86_return_thunk``) through the
``mmemu_kernel_symbols`` hook.
"""

from __future__ import annotations

#: exported in every era mmemu emulates
_ALWAYS = ["kmalloc", "__kmalloc", "kzalloc", "kfree", "vmalloc", "vzalloc", "vfree", "vmalloc_to_pfn",
           "vmalloc_to_page", "alloc_pages", "__free_pages", "__get_free_pages", "free_pages", "kmap", "kunmap",
           "kmap_atomic", "kunmap_atomic", "memset", "memcpy", "strlen", "__stack_chk_fail"]


def export_names(kernel) -> list[str]:
    """The names the kernel of *kernel*'s era exports (mmemu's own, before the plugins')."""
    era = kernel.era
    names = [era.printk_symbol] + _ALWAYS
    if era.kmap_atomic == "kmap_local":
        # kmap_local_page and __kunmap_local are inlines (include/linux/highmem-internal.h)
        # around the exported __kmap_local_page_prot and kunmap_local_indexed; mmemu
        # exports the inlines' names too, for modules that call them as functions
        names += ["kmap_local_page", "__kunmap_local", "__kmap_local_page_prot", "kunmap_local_indexed"]
    else:
        # kunmap_atomic() is a macro around the exported __kunmap_atomic (include/linux/highmem.h)
        names.append("__kunmap_atomic")
    return names
