"""Linux's kernel page-table dump (``/sys/kernel/debug/page_tables/kernel`` on x86,
``/sys/kernel/debug/kernel_page_tables`` on arm64 and RISC-V).

The state machine of mm/ptdump.c (6.x) that every arch's dump shares: the generic walker
visits each entry with its level (0 pgd, 1 p4d, 2 pud, 3 pmd, 4 pte) and value, and the
arch's ``note_page()`` prints a line whenever the protection, the level or the address
marker changes. Empty entries are noted at the level where the walker finds them, which is
the lowest of the folded levels (asm-generic pgtable-nop4d.h & co make the folded
``*_none()`` constant false); the arch walkers that came before mm/ptdump.c (x86's
dump_pagetables.c until 5.5) note them at the level their own walk function stands for, the
first of the folded names (``fold = "own"``). The final flush is noted at address 0, as the
kernel does, so the last range ends at ``0x0...0``.

What differs by arch is a :class:`PtdumpFormat`: the markers, the ranges walked, which
bits of an entry count as its protection, the effective protection (x86 combines the
levels' RW/US/NX), and how a line is printed (x86's ``printk_prot`` columns, RISC-V's
physical address and ``D A G X W R V``, arm64's attribute words).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..arch import Arch
    from ..kernel import Kernel
    from ..layout import Layout

UNITS = "BKMGTPE"
#: mm/ptdump.c's level numbers, by the kernel's level names
LEVEL_NUMBERS = {"pgd": 0, "p4d": 1, "pud": 2, "pmd": 3, "pte": 4}


def size_text(delta: int) -> str:
    """``%9lu%c``: the size in the largest unit that divides it (arch/x86/mm/dump_pagetables.c,
    arch/arm64/mm/ptdump.c, arch/riscv/mm/ptdump.c share the loop)."""
    unit = 0
    while not delta & 1023 and unit < len(UNITS) - 1 and delta:
        delta >>= 10
        unit += 1
    return f"{delta:9d}{UNITS[unit]}"


@dataclass
class PtdumpFormat:
    """One arch's dump: override :meth:`prot`, :meth:`effective` and :meth:`line`.

    ``markers``: (address, name, max_lines) ascending; ``ranges``: the [start, end) virtual
    ranges walked (end None: to the top); ``width``: hex digits of an address."""

    markers: list[tuple[int, str, int]]
    ranges: list[tuple[int, int | None]] = field(default_factory=lambda: [(0, None)])
    width: int = 16
    level_names: tuple[str, ...] = ("pgd", "p4d", "pud", "pmd", "pte")
    #: the debugfs file the dump is read from (shown in help texts)
    debugfs: str = "/sys/kernel/debug/kernel_page_tables"
    #: which of a level's folded names an entry is noted at: "lowest" (mm/ptdump.c's walker) or
    #: "own", the level's own name (an arch walker: x86's walk_pgd_level notes ``pgd``)
    fold: str = "lowest"
    #: pass every marker an address has reached at once (arm64 and RISC-V note_page loop
    #: ``while (addr >= st->marker[1].start_address)``); x86 moves one marker per note
    marker_loop: bool = False

    def prot(self, level: int, val: int) -> int:
        """The part of an entry compared between neighbours (x86: ``val & PTE_FLAGS_MASK``)."""
        return val

    def run_mask(self, level: int) -> int | None:
        """The bits of an entry that :meth:`prot` and :meth:`effective` read at *level*: two
        entries equal under this mask note the same (so a run of them is one range and is
        noted once, not entry by entry: a 64 GiB direct map in 4 KiB pages is 16 M ptes).
        None: every entry is compared whole (the default, whose prot is the entry itself)."""
        return None

    def effective(self, level: int, val: int, higher: int) -> int:
        """The effective protection at *level* given the one above (x86's effective_prot).
        Default: none (0), as arm64 and RISC-V."""
        return 0

    def line(self, start: int, end: int, size: int, start_pa: int, prot: int, level: int) -> str | None:
        """One line of the dump for [start, end) (*end* 0 for the last range: the flush at
        address 0), *size* bytes, starting at physical *start_pa*, with the level's
        protection *prot*; None prints nothing (RISC-V skips ranges without protection
        bits). Default: the range and size, then the level name."""
        w = self.width
        return f"0x{start:0{w}x}-0x{end:0{w}x}   {size_text(size)} {self.level_names[level]}"

    @classmethod
    def generic(cls, arch: "Arch", layout: "Layout") -> "PtdumpFormat":
        """A marker per layout region (from user space up), neutral attributes as words."""
        markers = [(0, "User Space", 0)] + [(r.start, r.name, 0) for r in layout.regions if r.start > 0]
        return _GenericFormat(markers=markers, width=16 if layout.symbols["PAGE_OFFSET"] >> 32 else 8)


class _GenericFormat(PtdumpFormat):
    def line(self, start, end, size, start_pa, prot, level):
        w = self.width
        return f"0x{start:0{w}x}-0x{end:0{w}x}   {size_text(size)} {prot:#x} {self.level_names[level]}"


class _State:
    """note_page() of mm/ptdump.c and the arch dumps."""

    def __init__(self, fmt: PtdumpFormat, va_limit: int, out: list[str]):
        self.fmt = fmt
        self.markers = list(fmt.markers) + [(va_limit - 1, None, 0)]
        self.marker = 0
        self.level = -1
        self.cur = 0
        self.eff = 0
        self.start = 0
        self.start_pa = 0
        self.lines = 0
        self.out = out
        self.prot_levels = [0] * 5
        self.mask = va_limit - 1

    def effective(self, level: int, val: int) -> None:
        higher = self.prot_levels[level - 1] if level > 0 else None
        self.prot_levels[level] = self.fmt.effective(level, val, higher)

    def note(self, addr: int, level: int, val: int, pa: int = 0) -> None:
        fmt = self.fmt
        new_prot = fmt.prot(level, val) if level >= 0 else 0
        new_eff = 0 if not val or level < 0 else self.prot_levels[level]
        if self.level == -1:
            # the first entry: the range starts here (the walk may start above 0)
            self.cur, self.eff, self.level, self.start_pa, self.start = new_prot, new_eff, level, pa, addr
            self.marker = 0
            self.lines = 0
            self.out.append(f"---[ {self.markers[0][1]} ]---")
            return
        next_marker = self.markers[self.marker + 1][0]
        if new_prot != self.cur or new_eff != self.eff or level != self.level or addr >= next_marker:
            max_lines = self.markers[self.marker][2]
            if not max_lines or self.lines < max_lines:
                text = fmt.line(self.start, addr, (addr - self.start) & self.mask, self.start_pa, self.cur, self.level)
                if text is not None:
                    self.out.append(text)
            self.lines += 1
            while addr >= self.markers[self.marker + 1][0] and self.markers[self.marker + 1][1] is not None:
                if max_lines and self.lines > max_lines:
                    nskip = self.lines - max_lines
                    self.out.append(f"... {nskip} entr{'y' if nskip == 1 else 'ies'} skipped ... ")
                self.marker += 1
                self.lines = 0
                max_lines = self.markers[self.marker][2]
                self.out.append(f"---[ {self.markers[self.marker][1]} ]---")
                if not fmt.marker_loop:
                    break
            self.start, self.cur, self.eff, self.level, self.start_pa = addr, new_prot, new_eff, level, pa


def ptdump(kernel: "Kernel", root: int | None = None) -> str:
    """The dump of the page table at *root* (the master kernel table by default)."""
    from ..arch import LEAF, TABLE

    root = kernel.pgd if root is None else root
    fmt = kernel.arch.ptdump_format(kernel.layout)
    mode = kernel.paging
    out: list[str] = []
    st = _State(fmt, mode.va_limit, out)
    pt = kernel.pgtable
    levels = mode.levels
    codec = mode.codec
    decoders = [codec.decoder(li) for li in range(len(levels))]
    # the kernel's level number of each real level: its lowest folded name, or its own
    depth = [LEVEL_NUMBERS[lv.name] if fmt.fold == "own" else max(LEVEL_NUMBERS[n] for n in lv.display_names)
             for lv in levels]
    last = len(levels) - 1
    kernel_root = pt.is_kernel_root(root)

    def runs(table: int, li: int, entries, first: int, stop: int, d: int):
        """[i, j) runs of entries in [first, stop) that note alike (equal under the format's
        run_mask; an empty entry only with empty ones). A table whose entries are all alike
        (the direct map's ptes: the frame differs, the flags do not) is found so by two
        big-integer operations on its bytes instead of a Python step per entry."""
        mask = fmt.run_mask(d)
        if mask is not None:
            esize = levels[li].entry_size
            n = len(entries)
            rep = reps.get((esize, n))
            if rep is None:
                rep = reps[esize, n] = sum(1 << (8 * esize * k) for k in range(n))
            emask = (1 << (8 * esize)) - 1
            big = int.from_bytes(pt.table_bytes(table, li), "little")
            k0 = entries[0] & mask
            if (big & (mask & emask) * rep) == k0 * rep and (k0 or not big):
                yield first, stop
                return
        bounds = table_runs.get(table)
        if bounds is None:  # the whole table's run starts, once (ESPfix visits one pte page 2,048 times)
            keys = list(entries) if mask is None else [(v & mask) or (-1 if v else 0) for v in entries]
            bounds = table_runs[table] = [i for i in range(1, len(keys)) if keys[i] != keys[i - 1]] + [len(keys)]
        i = first
        for j in bounds:
            if j > i:
                j = min(j, stop)
                yield i, j
                if j >= stop:
                    return
                i = j

    reps: dict = {}
    table_runs: dict[int, list[int]] = {}

    def last_level(table: int, li: int, entries, first: int, stop: int, va0: int, span: int, d: int,
                   decode) -> None:
        """The entries [first, stop) of a last-level table (entry i at va0 + i * span), as the
        kernel's walker notes them: each run of entries that note alike is noted at its first
        entry and where a marker falls inside it; the notes in between change nothing (the same
        range goes on) and are skipped (ESPfix's 2,048 visits of its one pte page, 32 entries
        used of 512, or a 64 GiB direct map's 16 M ptes, would take seconds otherwise)."""
        markers = st.markers
        for i, j in runs(table, li, entries, first, stop, d):
            raw = entries[i]
            if raw:
                st.effective(d, raw)
            while True:
                if raw:
                    kind, addr, _ = decode(raw)
                    st.note(va0 + i * span, d, raw, addr if kind == LEAF else 0)
                else:
                    st.note(va0 + i * span, d, 0)
                if markers[st.marker + 1][1] is None:
                    break
                at = max(i + 1, -(-(markers[st.marker + 1][0] - va0) // span))
                if at >= j:
                    break
                i, raw = at, entries[at]

    def walk(table: int, li: int, base: int, start: int, end: int) -> None:
        # base/start/end are offsets into the span of the top-level table
        lv = levels[li]
        span = lv.span
        entries = pt.entries(table, li)
        first = max(0, (start - base) >> lv.shift)
        stop = min(lv.entries, (end - base + span - 1) >> lv.shift)
        decode = decoders[li]
        if li == last:
            last_level(table, li, entries, first, stop, mode.va_of(base + first * span, kernel_root) - first * span, span,
                       depth[li], decode)
            return
        for idx in range(first, stop):
            raw = entries[idx]
            offset = base + idx * span
            va = mode.va_of(offset, kernel_root)
            if raw == 0:  # *_none(): a hole, noted at the lowest folded level
                st.note(va, depth[li], 0)
                continue
            if fmt.fold == "own":  # an arch walker takes it once and hands it down the folded levels
                st.effective(depth[li], raw)
                for name in lv.folds:
                    st.prot_levels[LEVEL_NUMBERS[name]] = st.prot_levels[depth[li]]
            else:  # mm/ptdump.c's walker visits the entry once per folded level name
                for name in lv.display_names:
                    st.effective(LEVEL_NUMBERS[name], raw)
            kind, addr, _ = decode(raw)
            if kind != TABLE:
                st.note(va, depth[li], raw, addr if kind == LEAF else 0)
                continue
            walk(addr, li + 1, offset, max(start, offset), min(end, offset + span))

    top = levels[0]
    top_span = 1 << (top.shift + top.bits)
    for start, end in fmt.ranges:  # [start, end) virtual addresses; end None: to the top
        if mode.form == "split" and (start >= mode.kernel_half) != kernel_root:
            continue  # the other root's half
        walk(root, 0, 0, start & (top_span - 1), top_span if end is None else ((end & (top_span - 1)) or top_span))
    st.note(0, -1, 0)  # flush the last range, at address 0 like mm/ptdump.c
    return "\n".join(out) + "\n"
