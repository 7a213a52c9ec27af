"""What arm64's module loader adds to the generic one: arch/arm64/kernel/module.c of each
era (``module_alloc``, ``apply_relocate_add`` through :mod:`.relocs`, the PLTs of
:mod:`.module_plts`), the version magic of include/linux/vermagic.h with
``MODULE_ARCH_VERMAGIC "aarch64"`` (asm/module.h, asm/vermagic.h from 5.x), and the W+X
audit of arch/arm64/mm/dump.c (ptdump.c from 5.7): ``ptdump_check_wx``."""

from __future__ import annotations

from mmemu.arch import UX
from mmemu.errors import MmemuError
from mmemu.units import MiB

from .eras import MODULES

SZ_128M = 128 * MiB


def module_region(spec, layout) -> tuple[int, int, str]:
    """``module_alloc``'s range and pgprot (eras.MODULES): [MODULES_VADDR, MODULES_END)
    (3.x); [_etext - MODULES_VSIZE, _etext) (module_alloc_base without KASLR, 4.6-6.4);
    [_end - SZ_128M, _end) (module_direct_base, 6.5+; its 2G PLT range, tried when the
    128 MiB are full, is not modelled)."""
    s = layout.symbols
    era = MODULES(spec.kernel)
    if era.module_region == "modules":
        start, end = s["MODULES_VADDR"], s["MODULES_END"]
    elif era.module_region == "etext":
        vsize = s["MODULES_END"] - s["MODULES_VADDR"]  # MODULES_VSIZE (SZ_128M, 4.6-6.4)
        start, end = s["_etext"] - vsize, s["_etext"]
    else:
        start, end = s["_end"] - SZ_128M, s["_end"]
    return start, end, era.module_prot


def module_plts(spec, config) -> bool:
    """Whether the era's loader has module PLTs: 6.5+ always; 4.6-6.4 with
    CONFIG_ARM64_MODULE_PLTS, which CONFIG_RANDOMIZE_BASE selects."""
    plts = MODULES(spec.kernel).module_plts
    return plts == "always" or (plts == "config" and bool(config.get("CONFIG_RANDOMIZE_BASE")))


def vermagic(spec, config) -> str:
    """VERMAGIC_STRING: UTS_RELEASE, "SMP ", "preempt " (CONFIG_PREEMPT, which the arm64
    layout's config sets), "mod_unload ", then MODULE_ARCH_VERMAGIC "aarch64"."""
    v = spec.kernel
    preempt = "preempt " if config.get("CONFIG_PREEMPT") else ""
    return f"{v.major}.{v.minor}.{v.patch} SMP {preempt}mod_unload aarch64"


def check_wx(kernel, wx: list[tuple[int, int]]) -> list[str]:
    """``ptdump_check_wx`` over the kernel half (VA_START, PAGE_OFFSET from 5.4: the bottom
    of TTBR1's range): a page is W+X when neither PTE_RDONLY nor PTE_PXN is set, "non-UXN"
    when the user may execute it; the first range of each is named (``note_prot_uxn``,
    ``note_prot_wx``: WARN_ONCE with ``%p/%pS``, printed unhashed as with
    no_hash_pointers), then the count."""
    if not MODULES(kernel.spec.kernel).debug_wx:
        raise MmemuError(f"kernel {kernel.spec.kernel} has no W+X audit (arm64's CONFIG_DEBUG_WX is 4.10+)")
    pt = kernel.pgtable
    uxn: list[tuple[int, int]] = []
    for va, size, _pa, _raw, _li in pt.iter_leaves(kernel.pgd, kernel.paging.kernel_half):
        if pt.walk(kernel.pgd, va).rights & UX:
            uxn.append((va, size))
    lines = []
    for what, found in (("non-UXN", uxn), ("insecure W+X", wx)):
        if found:
            va = found[0][0]
            lines.append(f"arm64/mm: Found {what} mapping at address {va:016x}/{kernel.symbol_at(va) or hex(va)}")
    if wx or uxn:
        lines.append(f"Checked W+X mappings: FAILED, {sum(n for _a, n in wx) // 4096} W+X pages found, "
                     f"{sum(n for _a, n in uxn) // 4096} non-UXN pages found")
    else:
        lines.append("Checked W+X mappings: passed, no W+X pages found")
    return lines

