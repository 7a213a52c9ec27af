"""One colour per kind of mapping, used by every pane (the map, the tree, the walk, the frames).

The kinds are the UI's words for what a virtual range or a frame is for; the layout's region
kinds and the frame owners are sorted into them by :func:`region_kind` and
:func:`frame_kind`.
"""

from __future__ import annotations

#: kind -> (Rich colour, what it is, a one-letter mark for where colour is not shown)
KINDS: dict[str, tuple[str, str, str]] = {
    "user": ("#5fd7ff", "user pages", "u"),
    "direct": ("#87d75f", "direct map (lowmem)", "d"),
    "vmalloc": ("#5f87ff", "vmalloc / vmap", "v"),
    "module": ("#d787ff", "module", "m"),
    "kmap": ("#ffd75f", "kmap (pkmap)", "k"),
    "fixmap": ("#ff875f", "fixmap / kmap_atomic", "f"),
    "kernel": ("#bcbcbc", "kernel image", "K"),
    "pagetable": ("#ff5f87", "page tables", "p"),
    "percpu": ("#d7af87", "per-cpu, cpu_entry_area", "c"),
    "vmemmap": ("#afafd7", "struct pages (vmemmap)", "s"),
    "reserved": ("#767676", "reserved", "r"),
    "free": ("#3a3a3a", "free", "."),
    "hole": ("#262626", "not RAM / unused", " "),
}

#: the layout's region kinds (mmemu.layout.Region.kind) -> palette kind
_REGION = {
    "user": "user", "direct": "direct", "vmalloc": "vmalloc", "modules": "module", "pkmap": "kmap",
    "fixmap": "fixmap", "kernel-text": "kernel", "kernel": "kernel", "vmemmap": "vmemmap",
    "cpu-entry-area": "percpu", "espfix": "percpu", "ldt": "percpu", "efi": "kernel",
    "vsyscall": "kernel",
}


def color(kind: str) -> str:
    return KINDS.get(kind, KINDS["hole"])[0]


def region_kind(kind: str) -> str:
    """The palette kind of a layout region (holes and guards: ``hole``)."""
    return _REGION.get(kind, "hole")


def frame_kind(owner: str, state: str = "allocated") -> str:
    """The palette kind of a frame from its owner as the frame allocator records it."""
    if state == "free":
        return "free"
    if state == "hole":
        return "hole"
    if state == "reserved":
        return "kernel" if "kernel" in owner or not owner or owner == "memblock" else "reserved"
    o = owner.lower()
    if o.startswith(("page table", "pgd")):
        return "pagetable"
    if o.startswith("anon") or "user" in o:
        return "user"
    if o.startswith("vmalloc") or o.startswith("vmap"):
        return "vmalloc"
    if "module" in o:
        return "module"
    if "percpu" in o or "per-cpu" in o:
        return "percpu"
    return "direct"
