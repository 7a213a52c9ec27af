"""The kernel's own texts about its memory layout, for ``mmemu layout --format``:

- ``mm.rst``: the table of Documentation/arch/x86/x86_64/mm.rst (x86_64), in the form of the
  era's file: the plain list of Documentation/x86_64/mm.txt (2.6.x) and
  Documentation/x86/x86_64/mm.txt up to 4.19, the table Ingo Molnar's "x86/mm: Fix and
  clean up the x86-64 memory map documentation" introduced in 4.20 (mm.txt, not indented),
  the same table as a literal block of reStructuredText (indented by two) once the file
  became mm.rst (b88679d2f2b9 "Documentation: x86: convert x86_64/mm.txt to reST", Changbin
  Du, in the docs tree for 5.3: linux-next's merge of it conflicted with 89502a019790 "x86/mm:
  Fix the 56-bit addresses memory map in Documentation/x86/x86_64/mm.txt" of 5.2-rc, both
  read in the list archives; mm.txt in 4.20 and mm.rst in 5.4 read).
- ``dmesg``: the ``virtual kernel memory layout:`` block i386's ``mem_init()`` prints at
  boot (arch/i386/mm/init.c, arch/x86/mm/init_32.c from 2.6.24), until "x86/mm/init_32:
  Stop printing the virtual memory layout" (Arvind Sankar, v3 posted 2020-03-05; 5.7). Since
  then the kernel prints no layout: the place to look is the page-table dump
  (CONFIG_PTDUMP_DEBUGFS, ``mmemu ptdump``).

Every number comes from the machine's :class:`mmemu.Layout`; only the words, the units and
the shape of the lines come from the documents and ``printk`` formats, each rule below naming
its source. Where a document is stale or approximate for the release (it was written by hand),
mmemu prints the machine's values in the document's form; tests/test_layout_formats.py lists
those places.

Choices written down: riscv64 and arm64 have no such text here (``--format`` says so, naming
the arch). Documentation/arch/riscv/vm-layout.rst (5.12+, read in its 6.11+ form) copies
mm.rst's table but rounds its offsets by hand and without "~" (its fixmap at ffffffc4fea00000
is "-236 GB", as are the two rows after it) and draws each paging mode a little differently
(the column of the Sv57 offsets); reproducing it would be a table of its own per era, and the
default ``mmemu layout`` table of riscv64 already lists vm-layout.rst's rows with its words.
arm64's Documentation/arch/arm64/memory.rst (read in its 6.x form) is a tab-separated
Start/End/Size/Use list for 4 KB pages with 48-bit VAs and 64 KB pages with 52-bit ones only
(nothing for the 39-bit default of mmemu's arm64), rewritten with each layout change; it is not
modelled either, nor the boot-time ``Virtual kernel memory layout:`` blocks of riscv64
(arch/riscv/mm/init.c print_vm_layout, CONFIG_DEBUG_VM) and arm64 (arch/arm64/mm/init.c, until
071929dbdd86 "arm64: Stop printing the virtual memory layout").
"""

from __future__ import annotations

from mmemu.eras import EraTable, Feature, Variant
from mmemu.errors import ConfigError
from mmemu.layout import Layout, Region

LAYOUT_DOCS = EraTable(
    Feature("mem_init_layout_32", since="2.6.19", until="5.7",
            source="arch/i386/mm/init.c mem_init(): the '#if 1 /* double-sanity-check paranoia */' "
                   "printk(\"virtual kernel memory layout:\\n\" ...) is absent from 2.6.18 (2.6.18.8, read) and "
                   "present in a 2.6.21/2.6.22 tree (pierre/tuxonice-fastboot: struct kmem_cache, kmem_cache_create "
                   "still with a destructor argument), 2.6.23 (read) and 2.6.24 (arch/x86/mm/init_32.c, read); "
                   "2.6.19 is taken as its first release (not verified). Removed by 'x86/mm/init_32: Stop printing the virtual memory "
                   "layout' (Arvind Sankar; v3 posted 2020-03-05 on the kernel-hardening list, read: after 5.6's merge "
                   "window, so 5.7 at the earliest, the release taken here); present in 5.4 (read)"),
    Feature("mem_init_cpu_entry_32", since="4.15",
            source="arch/x86/mm/init_32.c mem_init() (4.15, 'x86/cpu_entry_area: Move it out of the fixmap'): "
                   "the line \"  cpu_entry : 0x%08lx - 0x%08lx   (%4ld kB)\\n\" after fixmap (4.19, 5.4 read)"),
    Variant("mm_doc_64", [("2.6.24", "list"), ("4.20", "table"), ("5.3", "rst")], before="list-2.6.11",
            source="Documentation/x86_64/mm.txt (2.6.11: '(=47bits)', the sign-extension hole on the user line; "
                   "2.6.24: '(=47 bits)', a line of its own), Documentation/x86/x86_64/mm.txt (3.x, 4.14: lists), "
                   "mm.txt of 4.20 (the table, read), Documentation/x86/x86_64/mm.rst (b88679d2f2b9, for 5.3; "
                   "5.4 read: the same table indented as a literal block)"),
    Variant("mm_txt_sign_bits", [("4.14", "[47:63]")], before="[48:63]",
            source="Documentation/x86/x86_64/mm.txt: 'hole caused by [48:63] sign extension' (2.6.24, 3.10 read), "
                   "'[47:63]' in the 4.14 file that adds the 5-level map (read)"),
    Feature("mm_txt_direct_tb", since="2.6.31",
            source="Documentation/x86/x86_64/mm.txt (2.6.31+, 46-bit physical addresses): 'ffff880000000000 - "
                   "ffffc7ffffffffff (=64 TB) direct mapping of all phys. memory' (3.10, 4.14 read); before, "
                   "'(=46 bits)'"),
)

PAGE = 1 << 12
KB, MB, GB, TB, PB = 1 << 10, 1 << 20, 1 << 30, 1 << 40, 1 << 50
_UNITS = (("PB", PB), ("TB", TB), ("GB", GB), ("MB", MB), ("kB", KB))
SPACE = 1 << 64

# arch/x86/Kconfig: config KASAN_SHADOW_OFFSET default 0xdffffc0000000000;
# arch/x86/include/asm/kasan.h: KASAN_SHADOW_SCALE_SHIFT 3,
#   #define KASAN_SHADOW_END (KASAN_SHADOW_START + (1ULL << (__VIRTUAL_MASK_SHIFT - KASAN_SHADOW_SCALE_SHIFT)))
#   with KASAN_SHADOW_START = KASAN_SHADOW_OFFSET + ((-1UL << __VIRTUAL_MASK_SHIFT) >> KASAN_SHADOW_SCALE_SHIFT).
# mm.rst draws its "Identical layout to the 56-bit/47-bit one from here on" line at KASAN_SHADOW_END,
# fffffc0000000000 in both paging modes.
KASAN_SHADOW_OFFSET = 0xDFFFFC0000000000
KASAN_SHADOW_SCALE_SHIFT = 3


def kasan_shadow_end(virtual_mask_shift: int) -> int:
    start = (KASAN_SHADOW_OFFSET + (((-1 << virtual_mask_shift) % SPACE) >> KASAN_SHADOW_SCALE_SHIFT)) % SPACE
    return start + (1 << (virtual_mask_shift - KASAN_SHADOW_SCALE_SHIFT))


# ---- i386: mem_init()'s "virtual kernel memory layout:" ------------------------------------

def dmesg_layout_32(layout: Layout) -> str:
    """The block as arch/x86/mm/init_32.c mem_init() prints it (2.6.24 .. 5.6; arch/i386/mm/init.c
    before): every line ``"%s : 0x%08lx - 0x%08lx   (%4ld kB|MB)\\n"``, sizes the kernel's ``>> 10``
    or ``>> 20`` of the difference (an integer division: 887.99 MB prints 887)."""
    era = LAYOUT_DOCS(layout.kernel)
    if not era.mem_init_layout_32:
        if layout.kernel < "2.6.19":
            why = ("the block came after 2.6.18 (arch/i386/mm/init.c mem_init() of 2.6.18 prints only the "
                   "'Memory: ...k/...k available' line)")
        else:
            why = ("'x86/mm/init_32: Stop printing the virtual memory layout' removed it in 5.7; the kernel's "
                   "layout is in its page-table dump now (CONFIG_PTDUMP_DEBUGFS: mmemu ptdump)")
        raise ConfigError(f"Linux {layout.kernel} prints no 'virtual kernel memory layout:' at boot: {why}")
    s = layout.symbols

    def line(label: str, start: int, end: int, shift: int) -> str:
        unit = "kB" if shift == 10 else "MB"
        return f"{label}: 0x{start:08x} - 0x{end:08x}   ({(end - start) >> shift:4d} {unit})"

    out = ["virtual kernel memory layout:",
           # FIXADDR_START, FIXADDR_TOP, (FIXADDR_TOP - FIXADDR_START) >> 10
           line("    fixmap  ", s["FIXADDR_START"], s["FIXADDR_TOP"], 10)]
    if era.mem_init_cpu_entry_32:
        # CPU_ENTRY_AREA_BASE, CPU_ENTRY_AREA_BASE + CPU_ENTRY_AREA_MAP_SIZE, CPU_ENTRY_AREA_MAP_SIZE >> 10
        base = s["CPU_ENTRY_AREA_BASE"]
        out.append(line("  cpu_entry ", base, base + s["CPU_ENTRY_AREA_MAP_SIZE"], 10))
    if layout.config.get("CONFIG_HIGHMEM"):
        # #ifdef CONFIG_HIGHMEM: PKMAP_BASE, PKMAP_BASE+LAST_PKMAP*PAGE_SIZE, (LAST_PKMAP*PAGE_SIZE) >> 10
        out.append(line("    pkmap   ", s["PKMAP_BASE"], s["PKMAP_BASE"] + s["LAST_PKMAP"] * PAGE, 10))
    out += [
        # VMALLOC_START, VMALLOC_END, (VMALLOC_END - VMALLOC_START) >> 20
        line("    vmalloc ", s["VMALLOC_START"], s["VMALLOC_END"], 20),
        # (unsigned long)__va(0), (unsigned long)high_memory, (high_memory - __va(0)) >> 20
        line("    lowmem  ", s["PAGE_OFFSET"], s["high_memory"], 20),
        # &__init_begin, &__init_end; &_etext, &_edata (".data" runs from the end of the text,
        # rodata included); &_text, &_etext
        line("      .init ", s["__init_begin"], s["__init_end"], 10),
        line("      .data ", s["_etext"], s["_edata"], 10),
        line("      .text ", s["_text"], s["_etext"], 10),
    ]
    return "\n".join(out) + "\n"


# ---- x86_64: Documentation/.../mm.txt, mm.rst -------------------------------------------------

def _number(q: float) -> str:
    return str(int(q)) if q == int(q) else f"{q:g}"


def _table_size(n: int, top: str) -> str:
    """mm.rst's Size column: the largest unit (PB only in the 5-level table) in which the size
    is whole, or for PB and TB a whole number of quarters ("0.5 TB", "0.25 PB", "12.5 PB");
    "444 GB", "1520 MB" and "512 MB" where a larger unit would need another fraction. A size
    that needs more than four digits is rounded in the larger unit ("~8 PB", as mm.rst has it)."""
    units = _UNITS if top == "PB" else _UNITS[1:]
    for i, (name, u) in enumerate(units):
        if name in ("PB", "TB"):
            ok = n >= u // 4 and n * 4 % u == 0
        else:
            ok = n >= u and n % u == 0
        if ok:
            if n // u >= 10000 and i:
                return f"~{round(n / units[i - 1][1])} {units[i - 1][0]}"
            return f"{_number(n / u)} {name}"
    return f"{n} B"


def _huge(n: int, top: str) -> str:
    """The non-canonical hole: "~16M TB" (4-level), "~16K PB" (5-level): the top unit with a
    K (2**10) or M (2**20) multiplier, "~" when rounded (mm.rst's note: "16M TB" rather than
    "16 EB")."""
    q = n / dict(_UNITS)[top]
    for mult, m in (("M", 1 << 20), ("K", 1 << 10)):
        if q >= m:
            r = q / m
            return f"{'' if r == int(r) else '~'}{round(r)}{mult} {top}"
    return _table_size(n, top)


def _offset(off: int, unit: str | None) -> str:
    """The Offset column, 12 characters: the signed integer part right-aligned in 5, the
    fraction left-aligned in 3, the unit (mm.rst: "-119.5  TB", "-2048    MB", "~-11    MB",
    "    0       ")."""
    if off == 0:
        return "    0       "
    if unit is None:  # kernel addresses above the MB zone: PB, TB or GB
        a = abs(off)
        for name, u in _UNITS[:3]:
            if a >= u and (a * 4 % u == 0 if name != "GB" else a % u == 0):
                unit = name
                break
        else:
            unit = "MB"
    u = dict(_UNITS)[unit]
    q = off / u
    if off % u == 0 or (unit in ("PB", "TB") and off * 4 % u == 0):
        text = _number(q)
        whole, dot, frac = text.partition(".")
        frac = dot + frac
    else:
        whole, frac = f"~{round(q)}", ""
    if off > 0:
        whole = "+" + whole
    return f"{whole:>5}{frac:<3} {unit} "


_BLANK = " " * 18 + "|" + " " * 12 + "|" + " " * 18 + "|" + " " * 9 + "|"


def _rule(n: int) -> str:
    return "_" * 18 + "|" + "_" * 12 + "|" + "_" * 18 + "|" + "_" * 9 + "|" + "_" * n


def _block(text: str, n: int) -> list[str]:
    """mm.rst's full-width notes (Kernel-space, Identical layout): under the last rule, then a
    rule whose left part has no column breaks."""
    return [_rule(n), " " * 60 + "|", " " * 60 + "| " + text, "_" * 60 + "|" + "_" * n]


def _row(start: int, off: str, end: int, size: str, desc: str) -> str:
    return f" {start:016x} |{off}| {end:016x} | {size:>7} | {desc}"


def _kernel_regions(layout: Layout) -> tuple[list[Region], int, int]:
    """(the regions from the first kernel address on, user_top, kernel_base)."""
    nc = next(r for r in layout.regions if r.kind == "non-canonical")
    return [r for r in layout.regions if r.start >= nc.end], nc.start, nc.end


def mm_table_64(layout: Layout) -> list[str]:
    """The 4.20+ table (Documentation/x86/x86_64/mm.txt of 4.20, mm.rst after) for the
    machine's paging mode, rows as the document draws them:

    - the user row is TASK_SIZE_MAX's top page included (the document ends it at 47/56 bits);
    - the non-canonical hole on three lines, then the "Kernel-space" note;
    - the kernel's areas in order, holes as "... unused hole"; at KASAN_SHADOW_END the
      "Identical layout to the 47/56-bit one from here on" note (mmemu's kernels are built
      without CONFIG_KASAN: where the document has its "KASAN shadow memory" row the machine
      has unused hole);
    - "vaddr_end for KASLR" under the hole that ends at CPU_ENTRY_AREA_BASE
      (arch/x86/mm/kaslr.c: vaddr_end = CPU_ENTRY_AREA_BASE);
    - after the kernel text an anchor row at __START_KERNEL_map in MB, after the modules one
      at MODULES_END; what lies between MODULES_END and FIXADDR_START (the boot-time fixmap
      slots) and between the vsyscall page and the top 2 MB has no row of its own;
    - offsets in PB/TB/GB up to the kernel text, in MB from there on ("as we get closer to the
      top of the address space, the notation changes from TB to GB and then MB/KB")."""
    l5 = layout.paging == "5-level"
    top = "PB" if l5 else "TB"
    s = layout.symbols
    kregions, user_top, kernel_base = _kernel_regions(layout)
    identical = kasan_shadow_end(56 if l5 else 47)
    n = 59
    lines = ["=" * 120, "    Start addr    |   Offset   |     End addr     |  Size   | VM area description",
             "=" * 120, _BLANK,
             _row(0, _offset(0, None), user_top - 1, _table_size(user_top, top),
                  "user-space virtual memory, different per mm"),
             _rule(n), _BLANK]
    kb_text = f"{_number((SPACE - kernel_base) / dict(_UNITS)[top])} {top}"
    still = "still " if l5 else ""
    lines += [_row(user_top, _offset(user_top, top), kernel_base - 1, _huge(kernel_base - user_top, top),
                   f"... huge, {still}almost 64 bits wide hole of non-canonical"),
              _BLANK + f"     virtual memory addresses up to the -{kb_text}",
              _BLANK + "     starting offset of kernel mappings."]
    lines += _block("Kernel-space virtual memory, shared between all processes:", n) + [_BLANK]

    # split the regions at the "Identical layout" line
    regions: list[Region] = []
    for r in kregions:
        if r.start < identical < r.end:
            regions += [Region(r.name, r.start, identical, r.kind), Region(r.name, identical, r.end, r.kind)]
        else:
            regions.append(r)
    text_map = s["__START_KERNEL_map"]
    modules_end = s["MODULES_END"]
    fixaddr_start = s["FIXADDR_START"]
    vsyscall_done = False
    for r in regions:
        if r.start == identical:
            lines += _block(f"Identical layout to the {47 if l5 else 56}-bit one from here on:", n + 1) + [_BLANK]
        if modules_end <= r.start < fixaddr_start:
            continue
        if vsyscall_done and r.kind == "hole" and r.end != SPACE:
            continue
        zone = "MB" if r.start > text_map else None
        if r.kind == "hole":
            desc = "... unused hole"
        elif r.kind == "fixmap" and r.start == fixaddr_start:
            desc = r.name + ", variable size and offset"
        else:
            desc = r.name
        lines.append(_row(r.start, _offset(r.start - SPACE, zone), r.end - 1, _table_size(r.size, top), desc))
        if r.kind == "hole" and r.end == s.get("CPU_ENTRY_AREA_BASE"):
            lines.append(_BLANK + " vaddr_end for KASLR")
        if r.kind == "kernel-text":
            lines.append(f" {text_map:016x} |{_offset(text_map - SPACE, 'MB')}|" + " " * 18 + "|" + " " * 9 + "|")
        if r.kind == "modules":
            lines.append(f" {modules_end:016x} |{_offset(modules_end - SPACE, 'MB')}|" + " " * 18 + "|" + " " * 9 + "|")
        if r.kind == "vsyscall":
            vsyscall_done = True
    lines.append(_rule(n))
    return lines


def _list_size(n: int, kind: str, era, l5: bool) -> str:
    """mm.txt's "(=47 bits)" for the areas of a PGD slot or more whose size is a power of
    two, "(=64 GB)", "(=512 MB)", "(=4 kB)" below, "(~1522 MB)" where the size is not whole;
    the 4-level direct map in TB from 2.6.31 ("(=64 TB)")."""
    bits_sep = "" if era.mm_doc_64 == "list-2.6.11" else " "
    if n & (n - 1) == 0 and n >= 1 << 39 and not (kind == "direct" and era.mm_txt_direct_tb and not l5):
        return f"(={n.bit_length() - 1}{bits_sep}bits)"
    for name, u in _UNITS[1:]:
        if n >= u and n % u == 0 and (name != "kB" or n < MB):
            return f"(={n // u} {name})"
    return f"(~{round(n / MB)} MB)" if n >= MB else f"(~{round(n / KB)} kB)"


#: the list's words for each kind of region (Documentation/x86/x86_64/mm.txt of 3.10 and 4.14, read;
#: "direct mapping of phys. memory" in 2.6.11's Documentation/x86_64/mm.txt)
_LIST_WORDS = {
    "user": "user space, different per mm",
    "direct": "direct mapping of all phys. memory",
    "vmalloc": "vmalloc/ioremap space",
    "cpu-entry-area": "cpu_entry_area mapping",
    "ldt": "LDT remap for PTI",
    "espfix": "%esp fixup stacks",
    "efi": "EFI region mapping space",
    "kernel-text": "kernel text mapping, from phys 0",
    "modules": "module mapping space",
}


def mm_list_64(layout: Layout) -> list[str]:
    """The plain list of mm.txt before 4.20: "start - end (=size) description" lines, the
    sign-extension hole as a line of words, the holes around the direct map and vmalloc as
    ranged "hole" lines, the others as "... unused hole ...", the top 2 MB as "unused hole";
    nothing between the module area and FIXADDR_START, nor between the vsyscall page and
    the top 2 MB (mm.txt of 4.14: "ffffffffa0000000 - [fixmap start]", then the fixmap, then
    "legacy vsyscall ABI" and the last 2 MB)."""
    era = LAYOUT_DOCS(layout.kernel)
    l5 = layout.paging == "5-level"
    kregions, user_top, _ = _kernel_regions(layout)
    sign = f"hole caused by {era.mm_txt_sign_bits} sign extension" if not l5 else "hole caused by [56:63] sign extension"
    user = f"{0:016x} - {user_top - 1:016x} {_list_size(user_top, 'user', era, l5)} {_LIST_WORDS['user']}"
    lines = [f"Virtual memory map with {5 if l5 else 4} level page tables:", ""]
    if era.mm_doc_64 == "list-2.6.11":
        lines.append(user + " " + sign)
    else:
        lines += [user, sign]
    vmemmap_end = max((r.end for r in kregions if r.kind in ("vmemmap", "vmalloc")), default=0)
    fixaddr_start = layout.symbols["FIXADDR_START"]
    modules_end = min(layout.symbols["MODULES_END"], fixaddr_start)
    vsyscall_done = False
    for r in kregions:
        size = _list_size(r.size, r.kind, era, l5)
        if r.kind == "hole" and r.end == SPACE:
            lines.append(f"{r.start:016x} - {r.end - 1:016x} {size} unused hole")
            continue
        # as in the table: the lists go from the modules to the fixmap and from the vsyscall
        # page to the top 2 MB with no line between (the boot-time fixmap slots are the fixmap's)
        if modules_end <= r.start < fixaddr_start or (vsyscall_done and r.kind == "hole"):
            continue
        vsyscall_done = vsyscall_done or r.kind == "vsyscall"
        if r.kind == "hole" and r.end <= vmemmap_end:
            lines.append(f"{r.start:016x} - {r.end - 1:016x} {size} hole")
            continue
        if r.kind == "hole":
            if lines[-1] != "... unused hole ...":
                lines.append("... unused hole ...")
            continue
        if r.kind == "guard":
            words = "guard hole, reserved for hypervisor" if "hypervisor" in r.name else "guard hole"
        elif r.kind == "direct" and era.mm_doc_64 == "list-2.6.11":
            words = "direct mapping of phys. memory"
        elif r.kind == "vmemmap":
            words = f"virtual memory map ({_number(r.size / TB)}TB)"
        elif r.kind == "fixmap":
            words = "kernel-internal fixmap range"
        elif r.kind == "vsyscall":
            words = "legacy vsyscall ABI" if r.size == PAGE else "vsyscalls"
        else:
            words = _LIST_WORDS.get(r.kind, r.name)
        if r.kind == "kernel-text":
            size = size.ljust(10)
        if r.kind == "cpu-entry-area":
            # mm.txt (4.15 .. 4.19, "x86/kaslr: Fix the vaddr_end mess"; read in a 4.14.y tree with the
            # PTI backport and in a 4.19 tree): the end of KASLR's range, CPU_ENTRY_AREA_BASE
            lines.append("\t\t\t\t    vaddr_end for KASLR")
        lines.append(f"{r.start:016x} - {r.end - 1:016x} {size} {words}")
    return lines


def mm_doc_64(layout: Layout) -> str:
    """``mmemu layout --format mm.rst`` on x86_64: the era's document for the machine's paging
    mode (see the module's docstring for the forms)."""
    era = LAYOUT_DOCS(layout.kernel)
    levels = 5 if layout.paging == "5-level" else 4
    if era.mm_doc_64 in ("table", "rst"):
        title = f"Complete virtual memory map with {levels}-level page tables"
        if era.mm_doc_64 == "rst":
            head = [title, "=" * len(title), ""]
            body = [("  " + line) for line in mm_table_64(layout)]
        else:
            head = ["=" * len(title), title, "=" * len(title), ""]
            body = mm_table_64(layout)
        return "\n".join(head + body) + "\n"
    return "\n".join(mm_list_64(layout)) + "\n"


def layout_text_x86(arch: str, layout: Layout, fmt: str) -> str:
    """:meth:`mmemu.Arch.layout_text` of the x86 arches: ``mm.rst`` on x86_64, ``dmesg`` on
    i386 and i386_pae, and for the others why the kernel has no such text."""
    bits64 = layout.paging in ("4-level", "5-level")
    if fmt == "mm.rst":
        if bits64:
            return mm_doc_64(layout)
        raise ConfigError(f"--format mm.rst: arch {arch} has no such document: Documentation/x86/x86_64/mm.txt "
                          f"(mm.rst) maps x86_64 only; i386's layout is printed at boot (--format dmesg) or shown "
                          f"by `mmemu layout`")
    if fmt == "dmesg":
        if not bits64:
            return dmesg_layout_32(layout)
        raise ConfigError("--format dmesg: x86_64 never printed a 'virtual kernel memory layout:' block: its "
                          "mem_init() (arch/x86_64/mm/init.c, arch/x86/mm/init_64.c) prints only the 'Memory: "
                          "...k/...k available' line; its layout is documented in mm.rst (--format mm.rst)")
    raise ConfigError(f"--format {fmt}: arch {arch} knows the formats mm.rst and dmesg")
