"""The layout as a table in the style of Documentation/arch/x86/x86_64/mm.rst: start, end
(inclusive, as mm.rst writes it), size, description; then the kernel's symbols."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from ..units import human_size

if TYPE_CHECKING:
    from ..arch import Arch
    from ..layout import Layout


def layout_table(layout: "Layout", width: int) -> str:
    """*width*: hex digits of an address (16 on 64-bit, 8 on 32-bit)."""
    a = max(width, len("Start addr"))
    sizes = [human_size(r.size) for r in layout.regions]
    s = max([len("Size")] + [len(x) for x in sizes])
    desc = max([len("VM area description")] + [len(r.name) for r in layout.regions])
    rule = "=" * (a + 2 + 1 + a + 2 + 1 + s + 2 + 1 + desc + 1)
    head = f"{'Start addr':^{a + 2}}|{'End addr':^{a + 2}}|{'Size':^{s + 2}}| VM area description"
    out = [f"{layout.arch} {layout.paging}, kernel {layout.kernel}", rule, head, rule]
    for r, size in zip(layout.regions, sizes):
        pad = " " * (a - width)
        out.append(f" {r.start:0{width}x}{pad} | {r.end - 1:0{width}x}{pad} | {size:>{s}} | {r.name}")
    out.append(rule)
    out.append("")
    name_w = max((len(n) for n in layout.symbols), default=0)
    for name, value in layout.symbols.items():
        out.append(f"{name:<{name_w}}  {value:#x}")
    out.append("")
    out.append("zones: " + ", ".join(f"{z.name} pfn {z.start_pfn:#x}-{z.end_pfn:#x}" for z in layout.zones))
    return "\n".join(out) + "\n"


def layout_json(layout: "Layout", extra_symbols: dict[str, int] | None = None) -> str:
    """The layout as JSON (``mmemu layout --json``): the regions and the symbols, *extra_symbols*
    added."""
    symbols = dict(layout.symbols)
    symbols.update(extra_symbols or {})
    doc = {
        "arch": layout.arch,
        "kernel": str(layout.kernel),
        "paging": layout.paging,
        "symbols": {k: f"{v:#x}" for k, v in symbols.items()},
        # [start, end): end is exclusive, like the kernel's boot log and ptdump
        "regions": [{"name": r.name, "start": f"{r.start:#x}", "end": f"{r.end:#x}", "kind": r.kind}
                    for r in layout.regions],
        "zones": [{"name": z.name, "start_pfn": f"{z.start_pfn:#x}", "end_pfn": f"{z.end_pfn:#x}"} for z in layout.zones],
        "config": {k: v for k, v in layout.config.items()},
    }
    return json.dumps(doc, indent=2, default=str)


#: ``mmemu layout --format``: mmemu's table, JSON, and the kernel's own texts of the era, which
#: the arch plugin writes (:meth:`mmemu.Arch.layout_text`): the arch's layout document
#: (``mm.rst``: Documentation/arch/x86/x86_64/mm.rst's table on x86_64) and the layout block
#: the kernel prints at boot (``dmesg``: i386's ``virtual kernel memory layout:``).
LAYOUT_FORMATS = ("table", "json", "mm.rst", "dmesg")


def layout_text(arch: "Arch", layout: "Layout", fmt: str, width: int) -> str:
    """The layout in format *fmt* (one of :data:`LAYOUT_FORMATS`), ending with a newline."""
    if fmt == "table":
        return layout_table(layout, width)
    if fmt == "json":
        return layout_json(layout) + "\n"
    if fmt not in LAYOUT_FORMATS:
        from ..errors import ConfigError

        raise ConfigError(f"unknown layout format {fmt!r}: one of {', '.join(LAYOUT_FORMATS)}")
    return arch.layout_text(layout, fmt)
