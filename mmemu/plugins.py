"""The plugin manager: pluggy, the ``mmemu`` entry-point group, and the arch registry."""

from __future__ import annotations

from importlib import metadata
from typing import TYPE_CHECKING, Iterable

import pluggy

from . import hookspecs
from .errors import ConfigError, PluginError

if TYPE_CHECKING:
    from .arch import Arch

ENTRY_POINT_GROUP = "mmemu"

hookimpl = pluggy.HookimplMarker("mmemu")


def live_hookimpls(caller: "pluggy.HookCaller") -> list:
    """The list of *caller*'s implementations that pluggy itself keeps (pluggy 1.7's
    ``HookCaller._hookimpls``: registering or unregistering a plugin changes it in place),
    for a hot path that asks on every page fault or entry write whether anybody implements
    a hook now: the list's truth answers with no call and no copy (``get_hookimpls()``
    copies it). tests/test_plugins.py checks that a plugin registered or unregistered
    after boot is seen."""
    impls = caller._hookimpls
    if not isinstance(impls, list):
        raise PluginError(f"pluggy {pluggy.__version__}: HookCaller._hookimpls is not a list; "
                          "mmemu knows pluggy 1.7's")
    return impls


def get_plugin_manager(autoload: bool = True, block: Iterable[str] = (), plugins: Iterable[object] = ()) -> pluggy.PluginManager:
    """A plugin manager with mmemu's hooks.

    ``autoload``: load every plugin installed in the ``mmemu`` entry-point group (the
    built-in arches included). Tests pass False and register what they need in ``plugins``.
    ``block``: entry-point names not to load. A hook implementation that matches no hook
    raises :class:`PluginError` (pluggy alone would ignore it silently).
    """
    pm = pluggy.PluginManager("mmemu")
    pm.add_hookspecs(hookspecs)
    for name in block:
        pm.set_blocked(name)
    if autoload:
        try:
            pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
        except Exception as exc:  # a broken third-party plugin must not take mmemu down silently
            raise PluginError(f"loading a plugin of the {ENTRY_POINT_GROUP!r} entry-point group failed: {exc}") from exc
    for plugin in plugins:
        pm.register(plugin)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"plugin implements an unknown hook: {exc}") from exc
    return pm


def plugin_dist(pm: pluggy.PluginManager, plugin: object) -> tuple[str, str]:
    """(package, version) a plugin came from: the distribution for entry-point plugins."""
    for plug, dist in pm.list_plugin_distinfo():
        if plug is plugin:
            return getattr(plugin, "__name__", type(plugin).__name__), dist.version
    name = getattr(plugin, "__name__", type(plugin).__name__)
    top = name.split(".")[0]
    try:
        return name, metadata.version(top)
    except metadata.PackageNotFoundError:
        return name, "unknown"


class ArchRegistry:
    """The architectures contributed through ``mmemu_register_arch``, by name."""

    def __init__(self, pm: pluggy.PluginManager):
        self.pm = pm
        self._arches: dict[str, Arch] = {}
        self._origin: dict[str, tuple[str, str]] = {}
        from .arch import Arch

        for impl in pm.hook.mmemu_register_arch.get_hookimpls():
            result = impl.function()
            for arch in result or ():
                if not isinstance(arch, Arch):
                    raise PluginError(f"plugin {impl.plugin_name} registered {arch!r}, which is not an mmemu.Arch")
                try:
                    arch.check_contract()
                except ConfigError as exc:
                    raise PluginError(f"plugin {impl.plugin_name}: {exc}") from None
                if arch.name in self._arches:
                    raise PluginError(f"arch {arch.name!r} is registered twice ({self._origin[arch.name][0]} and {impl.plugin_name})")
                self._arches[arch.name] = arch
                self._origin[arch.name] = plugin_dist(pm, impl.plugin)

    def names(self) -> list[str]:
        return sorted(self._arches)

    def get(self, name: str) -> "Arch":
        try:
            return self._arches[name]
        except KeyError:
            known = ", ".join(self.names()) or "none"
            raise ConfigError(f"unknown arch {name!r}; known arches: {known}") from None

    def origin(self, name: str) -> tuple[str, str]:
        """(plugin package, version) that registered the arch."""
        return self._origin[name]

    def __iter__(self):
        return iter(self._arches[n] for n in self.names())


_default: tuple[pluggy.PluginManager, ArchRegistry] | None = None


def default() -> tuple[pluggy.PluginManager, ArchRegistry]:
    """The process-wide plugin manager (autoloaded) and its arch registry, built once."""
    global _default
    if _default is None:
        pm = get_plugin_manager()
        _default = (pm, ArchRegistry(pm))
    return _default
