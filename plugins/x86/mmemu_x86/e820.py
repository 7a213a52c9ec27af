"""The firmware memory map of the emulated PC (e820), and ``mem=`` applied to it.

The machine is a plain PC: conventional memory below 640 KiB minus the EBDA, the legacy
VGA/ROM hole up to 1 MiB, then RAM up to the size asked for, contiguous. (A real board
also has an MMIO hole below 4 GiB; mmemu leaves it out so that ``--ram 4G`` gives the
kernel 4 GiB to manage, which is what a user of an emulator asks for.)
"""

from __future__ import annotations

from mmemu.layout import MemoryRange

#: End of usable conventional memory: the EBDA starts at 0x9fc00 on a typical BIOS;
#: the kernel only uses whole pages, so the last usable pfn is 0x9e.
EBDA_START = 0x9FC00
ISA_END = 0x100000  # 1 MiB: the legacy VGA/ROM hole ends here


def pc_e820(ram: int, mem_limit: int | None = None) -> list[MemoryRange]:
    """The e820 map of a PC with *ram* bytes, truncated at *mem_limit* like ``mem=``
    (arch/x86/kernel/e820.c: ``parse_memopt`` removes all RAM above the limit)."""
    ranges = [
        MemoryRange(0, EBDA_START, "usable"),
        MemoryRange(EBDA_START, ISA_END, "reserved"),
    ]
    if ram > ISA_END:
        ranges.append(MemoryRange(ISA_END, ram, "usable"))
    if mem_limit is not None:
        cut: list[MemoryRange] = []
        for r in ranges:
            if r.type != "usable" or r.end <= mem_limit:
                cut.append(r)
            elif r.start < mem_limit:
                cut.append(MemoryRange(r.start, mem_limit, "usable"))
        ranges = cut
    return ranges


def max_pfn(ranges: list[MemoryRange]) -> int:
    """``e820__end_of_ram_pfn()``: one past the last usable page frame."""
    return max((r.end >> 12 for r in ranges if r.type == "usable"), default=0)


def usable_pfn_ranges(ranges: list[MemoryRange]) -> list[tuple[int, int]]:
    """Whole usable pages, ``[start_pfn, end_pfn)``: a partial page at either end is not RAM
    to the kernel (``PFN_UP(start)``, ``PFN_DOWN(end)``)."""
    out = []
    for r in ranges:
        if r.type == "usable":
            s, e = (r.start + 0xFFF) >> 12, r.end >> 12
            if e > s:
                out.append((s, e))
    return out
