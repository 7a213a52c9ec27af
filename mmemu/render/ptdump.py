"""Linux's kernel page-table dump (``/sys/kernel/debug/page_tables/kernel``).

The same state machine as arch/x86/mm/dump_pagetables.c over the generic walker of
mm/ptdump.c and mm/pagewalk.c (6.x): every entry is "noted" with its level and value; a
line is printed when the protection, the effective protection, the level or the address
marker changes. Empty entries are noted at the level where the walker finds them, which is
the lowest of the folded levels (asm-generic pgtable-nop4d.h & co make the folded
``*_none()`` constant false): ``pmd`` for the 2-level i386 directory, ``pud`` for the PAE
PDPT, ``p4d`` for the x86_64 4-level PML4. The final flush is noted at address 0, as the
kernel does, so the last range ends at ``0x0...0``.

Which markers and ranges to dump come from the arch (:meth:`mmemu.arch.Arch.ptdump_markers`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..kernel import Kernel

UNITS = "BKMGTPE"


class _State:
    def __init__(self, kernel: "Kernel", markers, out: list[str]):
        mode = kernel.paging
        self.mode = mode
        self.width = 16 if mode.canonical else 8
        self.markers = list(markers) + [((1 << 64) - 1 if mode.canonical else (1 << 32) - 1, None, 0)]
        self.marker = 0
        self.level = -1
        self.cur = 0
        self.eff = 0
        self.start = 0
        self.lines = 0
        self.out = out
        self.flag_mask = kernel.pgtable.flag_bits
        self.prot_levels = [0] * 5
        nx = mode.nx
        self._keep = mode.user | mode.write
        self._nx = nx
        self.names = ("pgd", "p4d", "pud", "pmd", "pte")

    def effective(self, level: int, val: int) -> None:
        prot = val & self.flag_mask
        if level > 0:
            higher = self.prot_levels[level - 1]
            eff = (higher & prot & self._keep) | ((higher | prot) & self._nx)
        else:
            eff = prot
        self.prot_levels[level] = eff

    def note(self, addr: int, level: int, val: int) -> None:
        new_prot = val & self.flag_mask
        new_eff = 0 if not val else self.prot_levels[level]
        if self.level == -1:
            self.cur, self.eff, self.level = new_prot, new_eff, level
            self.marker = 0
            self.lines = 0
            self.out.append(f"---[ {self.markers[0][1]} ]---")
            return
        next_marker = self.markers[self.marker + 1][0]
        if new_prot != self.cur or new_eff != self.eff or level != self.level or addr >= next_marker:
            max_lines = self.markers[self.marker][2]
            if not max_lines or self.lines < max_lines:
                delta = (addr - self.start) & ((1 << (4 * self.width)) - 1)
                unit = 0
                while not delta & 1023 and unit < len(UNITS) - 1:
                    delta >>= 10
                    unit += 1
                w = self.width
                self.out.append(f"0x{self.start:0{w}x}-0x{addr:0{w}x}   {delta:9d}{UNITS[unit]} "
                                + self.prot_text(self.cur, self.level))
            self.lines += 1
            if addr >= next_marker:
                if max_lines and self.lines > max_lines:
                    nskip = self.lines - max_lines
                    self.out.append(f"... {nskip} entr{'y' if nskip == 1 else 'ies'} skipped ... ")
                self.marker += 1
                self.lines = 0
                self.out.append(f"---[ {self.markers[self.marker][1]} ]---")
            self.start, self.cur, self.eff, self.level = addr, new_prot, new_eff, level

    def prot_text(self, pr: int, level: int) -> str:
        """printk_prot(): fixed-width flag columns, then the level name."""
        m = self.mode
        if not pr & m.present:
            return " " * 30 + self.names[level]
        s = "USR " if pr & m.user else "    "
        s += "RW " if pr & m.write else "ro "
        s += "PWT " if pr & 0x8 else "    "
        s += "PCD " if pr & 0x10 else "    "
        s += "PSE " if level <= 3 and pr & m.large else "    "
        s += "PAT " if (level == 4 and pr & 0x80) or (level in (2, 3) and pr & 0x1000) else "    "
        s += "GLB " if pr & m.global_ else "    "
        s += "NX " if pr & m.nx else "x  "
        return s + self.names[level]


def ptdump(kernel: "Kernel", root: int | None = None) -> str:
    """The dump of the page table at *root* (the master kernel table by default)."""
    root = kernel.pgd if root is None else root
    markers = kernel.arch.ptdump_markers(kernel.layout)
    ranges = kernel.arch.ptdump_ranges(kernel.layout)
    out: list[str] = []
    st = _State(kernel, markers, out)
    pt = kernel.pgtable
    levels = kernel.paging.levels
    # the kernel's level number of each real level: its lowest folded name
    depth = [st.names.index(lv.display_names[-1]) for lv in levels]
    # the levels above a real level that the walker visits with the same entry
    P, L = kernel.paging.present, kernel.paging.large
    last = len(levels) - 1

    def walk(table: int, li: int, base: int, start: int, end: int) -> None:
        # base/start/end are offsets into the span of the top-level table (not sign-extended)
        lv = levels[li]
        span = lv.span
        entries = pt.entries(table, li)
        first = max(0, (start - base) >> lv.shift)
        stop = min(lv.entries, (end - base + span - 1) >> lv.shift)
        names = lv.display_names
        for idx in range(first, stop):
            raw = entries[idx]
            offset = base + idx * span
            va = pt._canon(offset)
            if li == last:
                st.effective(depth[li], raw)
                st.note(va, depth[li], raw)
                continue
            if raw == 0:  # *_none(): a hole, noted at the lowest folded level
                st.note(va, depth[li], 0)
                continue
            # the walker visits the entry once per folded level name
            for name in names:
                st.effective(st.names.index(name), raw)
            if (lv.large_format is not None and raw & L) or not raw & P:
                st.note(va, depth[li], raw)
                continue
            walk(raw & lv.addr_mask, li + 1, offset, max(start, offset), min(end, offset + span))

    top = levels[0]
    top_span = 1 << (top.shift + top.bits)
    for start, end in ranges:  # [start, end) in canonical addresses; end None: to the top
        walk(root, 0, 0, start & (top_span - 1), top_span if end is None else ((end & (top_span - 1)) or top_span))
    st.note(0, -1, 0)  # flush the last range, at address 0 like mm/ptdump.c
    return "\n".join(out) + "\n"
