"""The core's page-table dump (mmemu.render.ptdump.ptdump) of booted riscv64 machines against a
transcription of the kernel's own algorithm: arch/riscv/mm/ptdump.c note_page() fed by
mm/ptdump.c's walk (mm/pagewalk.c), for every era with a dump (5.7+) and every paging mode.

note_page() (arch/riscv/mm/ptdump.c, 5.7 .. 6.x)::

    u64 pa = PFN_PHYS(pte_pfn(__pte(val)));
    u64 prot = 0;
    if (level >= 0)
        prot = val & pg_level[level].mask;
    if (st->level == -1) {
        st->level = level; st->current_prot = prot; st->start_address = addr;
        st->start_pa = pa; st->last_pa = pa;
        pt_dump_seq_printf(st->seq, "---[ %s ]---\\n", st->marker->name);
    } else if (prot != st->current_prot || level != st->level ||
               addr >= st->marker[1].start_address) {
        if (st->current_prot) {
            note_prot_wx(st, addr); dump_addr(st, addr); dump_prot(st);
            pt_dump_seq_puts(st->seq, "\\n");
        }
        while (addr >= st->marker[1].start_address) {
            st->marker++;
            pt_dump_seq_printf(st->seq, "---[ %s ]---\\n", st->marker->name);
        }
        st->start_address = addr; st->start_pa = pa; st->last_pa = pa;
        st->current_prot = prot; st->level = level;
    } else {
        st->last_pa = pa;
    }

The walk: pte_hole(addr, next, depth) for an empty entry at the level the walker finds it (the
lowest of the folded levels: the folded p?d_none() are constant 0), p?d_entry -> note_page at
the level of a leaf, pte_entry for every last-level entry; the final flush note_page(st, 0, -1,
0) (mm/ptdump.c ptdump_walk_pgd).
"""

from __future__ import annotations

import pytest

import mmemu
from mmemu.arch import LEAF, TABLE
from mmemu.kernel import PROT_READ
from mmemu.render.ptdump import ptdump

MASK64 = (1 << 64) - 1
LEVEL_NUMBERS = {"pgd": 0, "p4d": 1, "pud": 2, "pmd": 3, "pte": 4}


def reference_dump(kernel) -> str:
    """arch/riscv/mm/ptdump.c's dump of swapper_pg_dir, written from the kernel's code (above)."""
    fmt = kernel.arch.ptdump_format(kernel.layout)
    mode = kernel.paging
    levels = mode.levels
    codec = mode.codec
    markers = list(fmt.markers) + [(MASK64, None, 0)]  # address_markers[]'s { -1, NULL } end
    out: list[str] = []
    st = {"level": -1, "prot": 0, "start": 0, "pa": 0, "marker": 0}

    def note_page(addr: int, level: int, val: int) -> None:
        pa = codec.pte_pfn(val) << 12  # PFN_PHYS(pte_pfn(__pte(val)))
        prot = val & fmt.prot_mask if level >= 0 else 0
        if st["level"] == -1:
            st.update(level=level, prot=prot, start=addr, pa=pa)
            out.append(f"---[ {markers[st['marker']][1]} ]---")
        elif prot != st["prot"] or level != st["level"] or addr >= markers[st["marker"] + 1][0]:
            if st["prot"]:
                text = fmt.line(st["start"], addr, (addr - st["start"]) & MASK64, st["pa"], st["prot"], st["level"])
                out.append(text)
            while addr >= markers[st["marker"] + 1][0]:
                st["marker"] += 1
                out.append(f"---[ {markers[st['marker']][1]} ]---")
            st.update(level=level, prot=prot, start=addr, pa=pa)

    def walk(table: int, li: int, base: int, start: int) -> None:
        lv = levels[li]
        depth = max(LEVEL_NUMBERS[n] for n in lv.display_names)
        decode = codec.decoder(li)
        entries = kernel.pgtable.entries(table, li)
        for idx in range(max(0, (start - base) >> lv.shift), lv.entries):
            raw = entries[idx]
            va = mode.va_of(base + idx * lv.span)
            if li == len(levels) - 1:
                note_page(va, depth, raw)  # ptdump_pte_entry, for every pte
            elif raw == 0:
                note_page(va, depth, 0)  # ptdump_hole
            else:
                kind = decode(raw)[0]
                if kind == TABLE:
                    walk(decode(raw)[1], li + 1, base + idx * lv.span, start)
                else:
                    assert kind == LEAF, f"a malformed kernel entry {raw:#x} at {va:#x}"
                    note_page(va, depth, raw)  # p?d_leaf
    top = levels[0]
    walk(kernel.pgd, 0, 0, fmt.ranges[0][0] & ((1 << (top.shift + top.bits)) - 1))
    note_page(0, -1, 0)
    return "\n".join(out) + "\n"


CASES = [("5.7", "sv39", "1G"), ("5.10", "sv39", "1025M"), ("5.13", "sv39", "1G"), ("5.17", "sv48", "2G"),
         ("6.4", "sv39", "4G"), ("6.6", "sv48", "2G"), ("6.6", "sv57", "1G"), ("6.11", "sv39", "1G")]


@pytest.mark.parametrize("version,mmu,ram", CASES, ids=[f"{v}-{m}-{r}" for v, m, r in CASES])
def test_core_ptdump_is_the_kernels_note_page(version, mmu, ram):
    k = mmemu.boot(arch="riscv64", kernel=version, ram=ram, options={"mmu": mmu})
    try:
        # some 4 KiB mappings besides the boot ones: vmalloc with its guard page, a fixmap slot
        v1 = k.vmalloc(3 * 4096)
        k.vmalloc(5 * 4096)
        k.vfree(v1)
        k.set_fixmap("FIX_TEXT_POKE0", 0x80400000)
        core = ptdump(k)
        ref = reference_dump(k)
        assert core == ref
        lines = core.splitlines()
        assert lines[0] == "---[ Fixmap start ]---"
        assert any(line.endswith(" . . . W R V") or line.endswith(". . W R V") for line in lines)
        assert all(not line.endswith(" . . . . . . . .") for line in lines)  # no range without protection
        # every marker printed, once, in address order
        names = [m[1] for m in k.arch.ptdump_format(k.layout).markers]
        assert [line[5:-5] for line in lines if line.startswith("---[")] == names
    finally:
        k.close()


def test_a_process_root_dumps_the_same_kernel_half():
    k = mmemu.boot(arch="riscv64", kernel="6.6", ram="1G")
    try:
        p = k.create_process("sh")
        a = k.mmap(p, None, 4096, PROT_READ)
        k.read(a, 1, user=True)
        assert ptdump(k, p.pgd) == ptdump(k)  # the walk starts at KERN_VIRT_START: user pages not shown
    finally:
        k.close()
