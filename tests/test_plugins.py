"""The pluggy contract: documented hooks, strict hook names, built-in arches found through
the same entry-point group as third-party ones."""

from __future__ import annotations

import dataclasses
import inspect
import pathlib
import re
from importlib import metadata

import pytest

import mmemu
from mmemu import hookspecs
from mmemu.arch import Arch
from mmemu.errors import ConfigError, PluginError
from mmemu.plugins import ENTRY_POINT_GROUP, ArchRegistry, default, get_plugin_manager

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _hooks():
    return [(name, fn) for name, fn in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("mmemu_")]


def test_every_hook_is_documented():
    hooks = _hooks()
    assert {"mmemu_register_arch", "mmemu_boot", "mmemu_handle_fault", "mmemu_mapping_changed"} <= \
        {name for name, _ in hooks}
    for name, fn in hooks:
        doc = inspect.getdoc(fn) or ""
        assert "Called by" in doc, f"{name}: say who calls it and when"
        assert "Returns" in doc, f"{name}: say what it returns"
        for param in inspect.signature(fn).parameters:
            assert param in doc, f"{name}: document the argument {param!r}"


def test_misspelt_hook_implementation_is_an_error():
    class Typo:
        @mmemu.hookimpl
        def mmemu_register_arches(self):  # the hook is mmemu_register_arch
            return []

    with pytest.raises(PluginError, match="mmemu_register_arches"):
        get_plugin_manager(autoload=False, plugins=[Typo()])


def test_builtin_arches_are_entry_points_of_the_group():
    eps = {ep.name: ep.value for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}
    assert eps["i386"] == "mmemu_i386"
    assert eps["i386_pae"] == "mmemu_i386_pae"
    assert eps["x86_64"] == "mmemu_x86_64"
    registry = ArchRegistry(get_plugin_manager())
    assert {"i386", "i386_pae", "x86_64"} <= set(registry.names())
    assert registry.origin("i386")[0] == "mmemu_i386"
    # without autoloading there is nothing: the core knows no arch by itself
    assert ArchRegistry(get_plugin_manager(autoload=False)).names() == []


def test_core_never_imports_a_plugin_or_unicorn_outside_cpu():
    for path in (ROOT / "mmemu").rglob("*.py"):
        text = path.read_text()
        assert not re.search(r"^\s*(import|from)\s+mmemu_(i386|i386_pae|x86_64|x86)\b", text, re.M), path
        if "cpu" not in path.relative_to(ROOT / "mmemu").parts:
            assert not re.search(r"^\s*(import|from)\s+unicorn", text, re.M), path
        if "tui" not in path.relative_to(ROOT / "mmemu").parts:
            assert not re.search(r"^\s*(import|from)\s+textual", text, re.M), path


class _ToyArch(Arch):
    """A third-party arch registered through the hook, reusing the i386 machinery."""

    name = "toy"
    summary = "toy"

    def __init__(self):
        from mmemu_i386 import ARCH
        self.base = ARCH
        self.pgprot = ARCH.pgprot

    def paging(self, spec):
        return self.base.paging(spec)

    def layout(self, spec):
        # the i386 formulas, laid out as they would be for i386 itself
        return self.base.layout(dataclasses.replace(spec, arch="i386"))

    def boot_plan(self, spec, layout):
        return self.base.boot_plan(spec, layout)

    def boot_page_sizes(self, spec):
        return self.base.boot_page_sizes(spec)


class _ToyPlugin:
    def __init__(self):
        self.booted = []

    @mmemu.hookimpl
    def mmemu_register_arch(self):
        return [_ToyArch()]

    @mmemu.hookimpl
    def mmemu_boot(self, kernel):
        self.booted.append(kernel)


def test_third_party_arch_boots_and_sees_the_boot_hook():
    plugin = _ToyPlugin()
    pm = get_plugin_manager(autoload=False, plugins=[plugin])
    k = mmemu.boot(arch="toy", ram="64M", plugin_manager=pm)
    try:
        assert plugin.booted == [k]
        assert k.walk(k.layout["PAGE_OFFSET"]).phys == 0
    finally:
        k.close()


def test_duplicate_arch_name_is_an_error():
    class Dup:
        @mmemu.hookimpl
        def mmemu_register_arch(self):
            return [_ToyArch()]

    pm = get_plugin_manager(autoload=False, plugins=[_ToyPlugin(), Dup()])
    with pytest.raises(PluginError, match="registered twice"):
        ArchRegistry(pm)


def test_non_arch_registration_is_an_error():
    class Bad:
        @mmemu.hookimpl
        def mmemu_register_arch(self):
            return ["i386"]

    with pytest.raises(PluginError, match="not an mmemu.Arch"):
        ArchRegistry(get_plugin_manager(autoload=False, plugins=[Bad()]))


def test_an_arch_without_the_required_protections_is_refused_at_registration():
    class Half(_ToyArch):
        name = "half"

        def __init__(self):
            super().__init__()
            self.pgprot = {k: v for k, v in self.base.pgprot.items() if k not in ("PAGE_COPY", "PAGE_NONE")}

    class Plugin:
        @mmemu.hookimpl
        def mmemu_register_arch(self):
            return [Half()]

    with pytest.raises(PluginError, match="does not define the protections PAGE_NONE, PAGE_COPY"):
        ArchRegistry(get_plugin_manager(autoload=False, plugins=[Plugin()]))


def test_unknown_arch_lists_the_known_ones():
    known = ", ".join(default()[1].names())
    assert {"i386", "i386_pae", "x86_64"} <= set(known.split(", "))
    with pytest.raises(ConfigError, match=f"unknown arch 'sparc'; known arches: {known}$"):
        mmemu.boot(arch="sparc")


class _LateObserver:
    def __init__(self):
        self.faults, self.events = [], []

    @mmemu.hookimpl
    def mmemu_handle_fault(self, kernel, fault):
        self.faults.append(fault.address)

    @mmemu.hookimpl
    def mmemu_mapping_changed(self, kernel, event):
        self.events.append(event)


def test_plugin_registered_after_boot_is_called_and_unregistered_is_not():
    """The fault path and the event stream ask whether anybody implements their hooks on
    every fault (live_hookimpls: pluggy's own list, no copy): a plugin registered after the
    boot is called from the next fault on, and not after it is unregistered."""
    k = mmemu.boot(arch="x86_64", kernel="6.6", ram="256M", plugin_manager=get_plugin_manager())
    try:
        p = k.create_process("late")
        a = k.mmap(p, None, 3 * 4096)
        k.write(a, b"1", user=True)
        late = _LateObserver()
        k.pm.register(late)
        k.write(a + 4096, b"2", user=True)
        assert late.faults == [a + 4096]
        assert [e.op.va for e in late.events] == [a + 4096]
        k.pm.unregister(late)
        k.write(a + 2 * 4096, b"3", user=True)
        assert late.faults == [a + 4096] and len(late.events) == 1
        assert [e.op.va for e in k.recent_events][-1] == a + 2 * 4096  # kept compact, as before
    finally:
        k.close()
