"""enum fixed_addresses of arch/arm64/include/asm/fixmap.h, per era, for the configuration
the layout assumes (4 KiB pages; CONFIG_ACPI_APEI_GHES=y and CONFIG_ARM_SDE_INTERFACE=n from
4.16, as defconfig; CONFIG_UNMAP_KERNEL_AT_EL0=y from 4.16, its Kconfig default;
CONFIG_RELOCATABLE=y). With these, 5.4's memory.rst row "fffffdfffe5f9000 fffffdfffe9fffff
4124KB fixed mappings" is reproduced exactly (1031 permanent slots).

asm-generic/fixmap.h: ``__fix_to_virt(x) = FIXADDR_TOP - ((x) << PAGE_SHIFT)``; arm64's
fixmap.h: ``FIXADDR_SIZE = __end_of_permanent_fixed_addresses << PAGE_SHIFT``,
``FIXADDR_START = FIXADDR_TOP - FIXADDR_SIZE`` (6.9+ also ``FIXADDR_TOT_SIZE`` /
``FIXADDR_TOT_START`` over __end_of_fixed_addresses).

The eras:

- before 3.15: no fixmap.h at all (early_ioremap came with Mark Salter's "arm64: add
  early_ioremap support"; the release is recollection).
- 3.15-4.1: FIX_HOLE, FIX_EARLYCON_MEM_BASE, then the early_ioremap slots
  (NR_FIX_BTMAPS = SZ_256K / PAGE_SIZE = 64, FIX_BTMAPS_SLOTS = 7). Verified against a
  48-bit pre-4.6 boot log: "fixed   : 0xffff7ffffabfe000 - 0xffff7ffffac00000 (8 KB)" --
  two permanent slots.
- 4.2-: FIX_FDT_END, FIX_FDT = FIX_FDT_END + FIX_FDT_SIZE / PAGE_SIZE - 1 with
  FIX_FDT_SIZE = MAX_FDT_SIZE + SZ_2M ("Reserve a virtual window for the FDT that is 2 MB
  larger than the maximum supported size", verified text; MAX_FDT_SIZE = SZ_2M, asm/boot.h),
  FIX_TEXT_POKE0 (text patching through the fixmap). Consistent with a 4.6+ boot log
  recollection of "fixed : ... (4108 KB)" = 1027 slots.
- 4.6-: FIX_PTE, FIX_PMD, FIX_PUD, FIX_PGD after the boot-time slots ("arm64: mm: use fixmap
  when creating page tables", recollection of the release).
- 4.16-: FIX_ENTRY_TRAMP_DATA, FIX_ENTRY_TRAMP_TEXT (KPTI); 5.17- (spectre-BHB, "arm64:
  entry: Allow the trampoline text to occupy multiple pages", recollection): with
  CONFIG_RELOCATABLE FIX_ENTRY_TRAMP_TEXT4 ("one extra slot for the data page"),
  FIX_ENTRY_TRAMP_TEXT3..1.
- 6.4- (release *not verified*: some release between 5.17 and 6.9): "Reserve a virtual
  window for the FDT that is a page bigger than the maximum supported size":
  FIX_FDT = FIX_FDT_END + DIV_ROUND_UP(MAX_FDT_SIZE, PAGE_SIZE) + 1 (verified text of a
  6.9-era copy; the 6.9 layout sketch in the same source shows a 4 MB fixmap, which this
  gives).
"""

from __future__ import annotations

from mmemu.units import KernelVersion

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
SZ_2M = 2 << 20
SZ_256K = 256 << 10
#: arch/arm64/include/asm/boot.h: #define MAX_FDT_SIZE SZ_2M
MAX_FDT_SIZE = SZ_2M
NR_FIX_BTMAPS = SZ_256K // PAGE_SIZE
FIX_BTMAPS_SLOTS = 7
TOTAL_FIX_BTMAPS = NR_FIX_BTMAPS * FIX_BTMAPS_SLOTS


def fixed_addresses(kernel: "str | KernelVersion", config: dict) -> list[tuple[str, int]]:
    """(name, index) in enum order, with __end_of_permanent_fixed_addresses and
    __end_of_fixed_addresses; empty before 3.15 (no fixmap)."""
    k = KernelVersion.parse(kernel)
    if k < "3.15":
        return []
    out: list[tuple[str, int]] = []
    idx = 0

    def add(name: str, value: int | None = None) -> None:
        nonlocal idx
        if value is not None:
            idx = value
        out.append((name, idx))
        idx += 1

    add("FIX_HOLE")
    if k >= "4.2":
        add("FIX_FDT_END")
        fdt_end = idx - 1
        if k >= "6.4":
            # FIX_FDT = FIX_FDT_END + DIV_ROUND_UP(MAX_FDT_SIZE, PAGE_SIZE) + 1
            add("FIX_FDT", fdt_end + -(-MAX_FDT_SIZE // PAGE_SIZE) + 1)
        else:
            # FIX_FDT = FIX_FDT_END + FIX_FDT_SIZE / PAGE_SIZE - 1, FIX_FDT_SIZE = MAX_FDT_SIZE + SZ_2M
            add("FIX_FDT", fdt_end + (MAX_FDT_SIZE + SZ_2M) // PAGE_SIZE - 1)
    add("FIX_EARLYCON_MEM_BASE")
    if k >= "4.2":
        add("FIX_TEXT_POKE0")
    if config.get("CONFIG_ACPI_APEI_GHES"):
        add("FIX_APEI_GHES_IRQ")
        add("FIX_APEI_GHES_SEA")
        if config.get("CONFIG_ARM_SDE_INTERFACE"):
            add("FIX_APEI_GHES_SDEI_NORMAL")
            add("FIX_APEI_GHES_SDEI_CRITICAL")
    if config.get("CONFIG_UNMAP_KERNEL_AT_EL0"):
        if k >= "5.17":
            if config.get("CONFIG_RELOCATABLE"):
                add("FIX_ENTRY_TRAMP_TEXT4")
            add("FIX_ENTRY_TRAMP_TEXT3")
            add("FIX_ENTRY_TRAMP_TEXT2")
            add("FIX_ENTRY_TRAMP_TEXT1")
        else:
            add("FIX_ENTRY_TRAMP_DATA")
            add("FIX_ENTRY_TRAMP_TEXT")
    end_perm = idx
    out.append(("__end_of_permanent_fixed_addresses", end_perm))
    out.append(("FIX_BTMAP_END", end_perm))
    out.append(("FIX_BTMAP_BEGIN", end_perm + TOTAL_FIX_BTMAPS - 1))
    idx = end_perm + TOTAL_FIX_BTMAPS
    if k >= "4.6":
        for name in ("FIX_PTE", "FIX_PMD", "FIX_PUD", "FIX_PGD"):
            add(name)
    out.append(("__end_of_fixed_addresses", idx))
    return out
