"""``mmemu ptdump`` on arm64 (the core's mmemu.render.ptdump.ptdump() with the plugin's
PtdumpFormat) against a transcription of the kernel's own dump of each era, run on the same
booted tables:

- arch/arm64/mm/dump.c 3.18-5.5: walk_pgd/walk_pud/walk_pmd/walk_pte over swapper_pg_dir
  from VA_START (PAGE_OFFSET from 5.4), note_page() at level 1 (pgd), 2 (pud, the folded pgd
  of 3 levels), 3 (pmd), 4 (pte) for every none or section entry and every pte; a range is
  printed only ``if (st->current_prot)``; ``%9lu%c`` then, from 4.8, the level name;
- the generic walker (mm/ptdump.c, 5.6+, ptdump.c from 5.7): the same notes (holes at the
  depth where they are found), every range printed, the attributes only when its protection
  is not 0.

In both, note_page() moves to the next marker once while flushing and once more after it
(``if (addr >= st->marker[1].start_address)`` twice); the walk ends with a note at address 0
(level 0, or -1).
"""

from __future__ import annotations

import struct

import pytest

import mmemu
from mmemu.render.ptdump import ptdump
from mmemu_arm64.eras import REPORTS
from mmemu_arm64.ptdump import ptdump_format

PAGE = 4096
MASK64 = (1 << 64) - 1
UNITS = "KMGTPE"


def kernel_notes(k):
    """(addr, level, val) as the kernel's walker calls note_page(), levels numbered 0 pgd ..
    4 pte (the 3-level pgd is noted as the pud it folds)."""
    s = k.layout.symbols
    va_bits = s["VA_BITS"]
    base = s["PAGE_OFFSET"] if k.spec.kernel >= "5.4" else s.get("VA_START", (MASK64 << va_bits) & MASK64)
    four = va_bits == 48

    def table(pa):
        return struct.unpack("<512Q", k.mem.read(pa, PAGE))

    out = []

    def walk_pte(pa, start):
        for i, val in enumerate(table(pa)):
            out.append((start + i * PAGE, 4, val))

    def walk_pmd(pa, start):
        for i, val in enumerate(table(pa)):
            addr = start + i * (2 << 20)
            if val & 3 == 3:  # !pmd_none && !pmd_sect: a table
                walk_pte(val & 0xFFFFFFFFF000, addr)
            else:
                out.append((addr, 3, val))

    def walk_pud(entries, start):
        for i, val in enumerate(entries):
            addr = start + i * (1 << 30)
            if val & 3 == 3:
                walk_pmd(val & 0xFFFFFFFFF000, addr)
            else:
                out.append((addr, 2, val))

    root = table(k.pgd)
    top = (base - ((MASK64 << va_bits) & MASK64)) >> (39 if four else 30)
    if four:
        for i in range(top, 512):  # pgd_none (the folded p4d of the generic walker): level 1
            addr = (MASK64 << va_bits) & MASK64 | i << 39
            val = root[i]
            if val & 3 == 3:
                walk_pud(table(val & 0xFFFFFFFFF000), addr)
            else:
                out.append((addr, 1, val))
    else:  # the pud is the pgd: one entry per pgd slot
        for i in range(top, 512):
            walk_pud([root[i]], (MASK64 << va_bits) & MASK64 | i << 30)
    return out


def kernel_dump(k) -> str:
    """note_page() of the era over kernel_notes()."""
    fmt = ptdump_format(k.layout)
    rep = REPORTS(k.spec.kernel)
    markers = [(a, n) for a, n, _ in fmt.markers] + [(MASK64, None)]
    names = fmt.level_names
    lines = []
    st = {"level": None, "marker": 0, "start": 0, "prot": 0}

    def header():
        lines.append(f"---[ {markers[st['marker']][1]} ]---")

    def note(addr, level, val):
        prot = val & fmt.mask if level is not None else 0
        if st["level"] is None:
            st.update(level=level, prot=prot, start=addr)
            header()
        elif prot != st["prot"] or level != st["level"] or addr >= markers[st["marker"] + 1][0]:
            cur = st["prot"]
            if cur or rep.ptdump_holes:
                text = f"0x{st['start']:016x}-0x{addr:016x}   "
                delta = ((addr - st["start"]) & MASK64) >> 10
                unit = 0
                while not delta & 1023 and unit < len(UNITS) - 1:
                    delta >>= 10
                    unit += 1
                text += f"{delta:9d}{UNITS[unit]}"
                if rep.ptdump_level_name:
                    text += f" {names[st['level']]}"
                if cur:
                    for mask, v, set_, clear in fmt.bits:
                        word = set_ if cur & mask == v else clear
                        if word is not None:
                            text += " " + word
                lines.append(text)
            if addr >= markers[st["marker"] + 1][0]:
                st["marker"] += 1
                header()
            st.update(start=addr, prot=prot, level=level)
        if addr >= markers[st["marker"] + 1][0]:
            st["marker"] += 1
            header()

    for addr, level, val in kernel_notes(k):
        note(addr, level, val)
    note(0, -1, 0)
    return "\n".join(lines) + "\n"


MACHINES = [("3.18", "39", ""), ("3.18", "48", "mem=300M"), ("3.10", "39", ""), ("4.4", "48", ""), ("4.9", "39", ""),
            ("4.14", "48", ""), ("5.0", "48", ""), ("5.4", "39", ""), ("5.10", "48", ""), ("6.6", "48", ""), ("6.6", "48", "rodata=on"),
            ("6.9", "39", ""), ("6.12", "48", "rodata=off")]


# Before 3.15 there is no fixmap, and one empty pgd entry spans PCI I/O, the modules and
# PAGE_OFFSET: the kernel's note_page() passes two markers per note, the core's marker_loop
# (mmemu/render/ptdump.py _State.note) every marker reached at once, and both print the
# markers at different lines. (arm64 had no dump before 3.18: its format is used.)
_CORE_MARKER_LOOP = pytest.mark.xfail(strict=True, reason="the core's marker_loop passes every marker at "
                                      "once; arm64's note_page() passes one while flushing and one after")


@pytest.mark.parametrize("kernel,va,cmdline", [m if m[0] != "3.10" else pytest.param(*m, marks=_CORE_MARKER_LOOP)
                                               for m in MACHINES])
def test_ptdump_is_the_kernels_note_page(kernel, va, cmdline):
    k = mmemu.boot(arch="arm64", kernel=kernel, ram="2G", cmdline=cmdline, options={"va_bits": va})
    try:
        # some life in the vmalloc space and the fixmap
        areas = [k.vmalloc(n * PAGE) for n in (1, 3, 17)]
        k.vfree(areas[1])
        if "FIX_EARLYCON_MEM_BASE" in k.fixed_addresses:
            k.set_fixmap("FIX_EARLYCON_MEM_BASE", 0x09000000)  # the PL011 of QEMU virt
        assert ptdump(k) == kernel_dump(k)
    finally:
        k.close()


def test_holes_and_level_names_by_era():
    def ranges(kernel):
        k = mmemu.boot(arch="arm64", kernel=kernel, ram="1G", options={"va_bits": "39"})
        try:
            return [ln.split() for ln in ptdump(k).splitlines() if ln.startswith("0x")]
        finally:
            k.close()
    levels = {"PGD", "PUD", "PMD", "PTE"}
    # 4.4: "%9lu%c" then the attributes; a hole is not printed
    old = ranges("4.4")
    assert old and all(words[2] not in levels and "MEM/NORMAL" in words for words in old)
    # 4.19: the level name after the size; still no hole
    mid = ranges("4.19")
    assert mid and all(words[2] in levels and "MEM/NORMAL" in words for words in mid)
    # 6.6: the holes too, with their level name and no attribute
    assert any(words[-1] in levels | {"P4D"} for words in ranges("6.6"))
