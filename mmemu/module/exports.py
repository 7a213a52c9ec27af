"""The kernel functions mmemu exports to modules, and what they do.

A module's undefined symbols resolve against the kernel's ``__ksymtab``: each function here
has an address in the kernel's text, where the arch's trap instruction stands. A call from
module code reaches the trap; the CPU core reads the arguments in the arch's calling
convention and runs the Python implementation on the emulated kernel (its allocators, its
page tables), then returns to the caller. Names follow the era (``printk`` became
``_printk`` in 5.15; ``kunmap_atomic`` is a macro around ``__kunmap_atomic``); an arch plugin
adds its own (x86's ``__fentry__``, return thunks) through the ``mmemu_kernel_symbols``
hook, with implementations from :data:`ARCH_FUNCTIONS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..errors import MmemuError
from .printk import vsprintf


class KernelPanic(MmemuError):
    """The module called a function that panics the kernel (``__stack_chk_fail``)."""


@dataclass(frozen=True)
class KernelFunction:
    """An exported kernel function: how many fixed arguments it takes, whether it is
    variadic or asmlinkage (i386: every argument on the stack), and its implementation:
    ``impl(kernel, args)`` returning the value to return (None: leave the return register,
    for a thunk that is jumped to)."""

    name: str
    nargs: int
    impl: Callable
    varargs: bool = False
    asmlinkage: bool = False


def _gfp_zero(k, gfp: int) -> bool:
    return bool(gfp & k.era.gfp_zero)


def _gfp_zone(gfp: int) -> str:
    """The highest zone the GFP flags allow (gfp_zone): __GFP_HIGHMEM 0x02, __GFP_DMA 0x01,
    __GFP_DMA32 0x04 in every era (include/linux/gfp.h, gfp_types.h)."""
    if gfp & 0x01:
        return "DMA"
    if gfp & 0x04:
        return "DMA32"
    if gfp & 0x02:
        return "HighMem"
    return "Normal"


def _mem_map(k) -> tuple[int, int]:
    """(base, sizeof(struct page)) of the kernel's struct page array: ``vmemmap`` (64-byte
    pages, SPARSEMEM_VMEMMAP) or FLATMEM's ``mem_map`` (32-byte pages on a 32-bit kernel)."""
    syms = k.layout.symbols
    vmemmap = syms.get("vmemmap", syms.get("VMEMMAP_START"))
    if vmemmap is not None:
        return vmemmap, 64
    mem_map = syms.get("mem_map")
    if mem_map is not None:
        return mem_map, 8 * k.ptr_size
    raise MmemuError(f"{k.arch.name}: no struct page addresses: the layout has neither vmemmap nor mem_map")


def struct_page(k, pfn: int) -> int:
    """The ``struct page *`` of *pfn*: ``vmemmap + pfn`` or ``mem_map + pfn`` (pfn_to_page)."""
    base, size = _mem_map(k)
    return base + pfn * size


def page_pfn(k, page: int) -> int:
    """page_to_pfn of a ``struct page *`` a module passes back."""
    base, size = _mem_map(k)
    if page < base or (page - base) % size:
        raise MmemuError(f"{page:#x} is not a struct page pointer (struct pages from {base:#x}, {size} bytes each)")
    return (page - base) // size


def _read_string(k, va: int, limit: int = 4096) -> bytes:
    out = bytearray()
    while len(out) < limit:
        chunk = k.read(va + len(out), min(64, limit - len(out)))
        end = chunk.find(b"\0")
        if end >= 0:
            return bytes(out + chunk[:end])
        out += chunk
    return bytes(out)


def _printk(k, args) -> int:
    """printk(fmt, ...): the kernel's vsprintf, then one log record per line, at the level
    of the KERN_SOH prefix (KERN_DEFAULT otherwise)."""
    fmt = _read_string(k, args.fixed[0])
    level, text = vsprintf(k, fmt, args)
    k.printk(text.rstrip("\n"), level)
    return len(text)


def _page_alloc(k, gfp: int, order: int) -> int:
    page = k.alloc_pages(order, _gfp_zone(gfp), owner="alloc_pages (module)", zero=_gfp_zero(k, gfp))
    return struct_page(k, page.pfn)


def _kmap_local(k, page):
    pfn = page_pfn(k, page)
    if k.era.kmap_atomic == "kmap_local":
        return k.kmap_local_page(pfn)
    return k.kmap_atomic(pfn)


def _kunmap_local(k, addr):
    if k.era.kmap_atomic == "kmap_local":
        k.kunmap_local(addr)
    else:
        k.kunmap_atomic(addr)


def _memset(k, args) -> int:
    dst, c, n = args.fixed
    k.write(dst, bytes([c & 0xFF]) * n)
    return dst


def _memcpy(k, args) -> int:
    dst, src, n = args.fixed
    k.write(dst, k.read(src, n))
    return dst


def _ret(k, args) -> None:
    return None


def _stack_chk_fail(k, args):
    raise KernelPanic("Kernel panic - not syncing: stack-protector: Kernel stack is corrupted in: module code")


KERNEL_FUNCTIONS = {f.name: f for f in (
    KernelFunction("printk", 1, _printk, varargs=True, asmlinkage=True),
    KernelFunction("_printk", 1, _printk, varargs=True, asmlinkage=True),
    KernelFunction("kmalloc", 2, lambda k, a: k.kmalloc(a.fixed[0], zero=_gfp_zero(k, a.fixed[1]))),
    KernelFunction("__kmalloc", 2, lambda k, a: k.kmalloc(a.fixed[0], zero=_gfp_zero(k, a.fixed[1]))),
    KernelFunction("kzalloc", 2, lambda k, a: k.kmalloc(a.fixed[0], zero=True)),
    KernelFunction("kfree", 1, lambda k, a: k.kfree(a.fixed[0])),
    KernelFunction("vmalloc", 1, lambda k, a: k.vmalloc(a.fixed[0])),
    KernelFunction("vzalloc", 1, lambda k, a: k.vzalloc(a.fixed[0])),
    KernelFunction("vfree", 1, lambda k, a: k.vfree(a.fixed[0]) if a.fixed[0] else None),
    KernelFunction("vmalloc_to_pfn", 1, lambda k, a: k.vmalloc_to_pfn(a.fixed[0])),
    KernelFunction("vmalloc_to_page", 1, lambda k, a: struct_page(k, k.vmalloc_to_pfn(a.fixed[0]))),
    KernelFunction("alloc_pages", 2, lambda k, a: _page_alloc(k, a.fixed[0], a.fixed[1])),
    KernelFunction("__free_pages", 2, lambda k, a: k.free_page_block(page_pfn(k, a.fixed[0]), a.fixed[1])),
    KernelFunction("__get_free_pages", 2, lambda k, a: k.get_free_pages(a.fixed[1], zero=_gfp_zero(k, a.fixed[0]))),
    KernelFunction("free_pages", 2, lambda k, a: k.free_pages(a.fixed[0], a.fixed[1])),
    KernelFunction("kmap", 1, lambda k, a: k.kmap(page_pfn(k, a.fixed[0]))),
    KernelFunction("kunmap", 1, lambda k, a: k.kunmap(page_pfn(k, a.fixed[0]))),
    KernelFunction("kmap_atomic", 1, lambda k, a: _kmap_local(k, a.fixed[0])),
    KernelFunction("__kunmap_atomic", 1, lambda k, a: _kunmap_local(k, a.fixed[0])),
    KernelFunction("kmap_local_page", 1, lambda k, a: _kmap_local(k, a.fixed[0])),
    KernelFunction("__kunmap_local", 1, lambda k, a: _kunmap_local(k, a.fixed[0])),
    KernelFunction("kunmap_local_indexed", 1, lambda k, a: _kunmap_local(k, a.fixed[0])),
    KernelFunction("memset", 3, _memset),
    KernelFunction("memcpy", 3, _memcpy),
    KernelFunction("strlen", 1, lambda k, a: len(_read_string(k, a.fixed[0], 1 << 20))),
    KernelFunction("__stack_chk_fail", 0, _stack_chk_fail),
)}

#: what the x86 plugins export through mmemu_kernel_symbols: ``__fentry__``/``mcount``
#: (called at every function's entry, ftrace's NOPs: return at once) and the thunks that
#: code jumps to instead of ``ret`` (``__x86_return_thunk``: a plain return, the value
#: register untouched)
ARCH_FUNCTIONS = {f.name: f for f in (
    KernelFunction("__fentry__", 0, _ret),
    KernelFunction("mcount", 0, _ret),
    KernelFunction("__x86_return_thunk", 0, _ret),
)}


def export_names(kernel) -> list[str]:
    """The names the kernel of *kernel*'s era exports (mmemu's own, before the plugins')."""
    era = kernel.era
    names = [era.printk_symbol, "kmalloc", "__kmalloc", "kzalloc", "kfree", "vmalloc", "vzalloc", "vfree",
             "vmalloc_to_pfn", "vmalloc_to_page", "alloc_pages", "__free_pages", "__get_free_pages", "free_pages",
             "kmap", "kunmap", "memset", "memcpy", "strlen", "__stack_chk_fail"]
    if era.kmap_atomic == "kmap_local":
        # kmap_local_page and __kunmap_local are inlines (include/linux/highmem-internal.h)
        # around the exported kunmap_local_indexed; mmemu exports the inlines' names too,
        # for modules that call them as functions
        names += ["kmap_local_page", "__kunmap_local", "kunmap_local_indexed"]
    else:
        # kunmap_atomic() is a macro around the exported __kunmap_atomic (include/linux/highmem.h)
        names += ["kmap_atomic", "__kunmap_atomic"]
    return names


def function(name: str) -> KernelFunction | None:
    return KERNEL_FUNCTIONS.get(name) or ARCH_FUNCTIONS.get(name)

