"""Kernel eras: every version-dependent rule in a table, each with its source.

A rule is either a :class:`Feature` (present from one release, possibly gone from a later
one) or a :class:`Variant` (a value that changes at given releases: a message's wording, a
constant). An :class:`EraTable` collects them; calling it with a kernel version gives an
:class:`Era`, a namespace of the values for that release::

    MM = EraTable(
        Feature("lazy_vunmap", since="2.6.28", source="mm/vmalloc.c: 'mm: rewrite vmap layer'"),
        Variant("vunmap_warning", [("2.6.12", "vfree"), ("6.3", "vunmap")], source="mm/vmalloc.c"),
    )
    era = MM("5.10")
    era.lazy_vunmap        # True

The core's generic mm rules are :data:`mmemu.kernel.eras.MM`; arch plugins keep their own
tables (x86's vmalloc_fault, its oops wording). Nothing else compares kernel versions.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Iterable, Mapping

from .errors import ConfigError
from .units import KernelVersion


@dataclass(frozen=True)
class Feature:
    """A behaviour present in releases ``[since, until)`` (None: no bound)."""

    name: str
    since: str | None = None
    until: str | None = None
    source: str = ""

    def value(self, version: KernelVersion) -> bool:
        if self.since is not None and version < self.since:
            return False
        return self.until is None or version < self.until


@dataclass(frozen=True)
class Variant:
    """A value that changes with the release: ``steps`` are (first release, value) pairs,
    ascending; releases before the first step get ``before``."""

    name: str
    steps: tuple[tuple[str, Any], ...]
    source: str = ""
    before: Any = None

    def __post_init__(self):
        object.__setattr__(self, "steps", tuple(self.steps))
        versions = [KernelVersion.parse(v) for v, _ in self.steps]
        if versions != sorted(versions):
            raise ConfigError(f"era variant {self.name}: steps are not in release order")

    def value(self, version: KernelVersion) -> Any:
        out = self.before
        for since, value in self.steps:
            if version < since:
                break
            out = value
        return out


class Era:
    """The values of an :class:`EraTable` for one release (attributes by rule name)."""

    def __init__(self, version: KernelVersion, values: Mapping[str, Any]):
        self.version = version
        self._values = MappingProxyType(dict(values))

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(f"no era rule {name!r}") from None

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def as_dict(self) -> dict[str, Any]:
        return dict(self._values)

    def __repr__(self) -> str:
        return f"<Era {self.version}: {dict(self._values)}>"


class EraTable:
    """Rules by name; ``table(version)`` evaluates them all for a release."""

    def __init__(self, *rules: "Feature | Variant"):
        self.rules: dict[str, Feature | Variant] = {}
        for rule in rules:
            if rule.name in self.rules:
                raise ConfigError(f"era rule {rule.name!r} is defined twice")
            self.rules[rule.name] = rule
        self._eras: dict[KernelVersion, Era] = {}

    def __call__(self, version: "str | KernelVersion") -> Era:
        """The rules evaluated for *version* (once per release: an Era is immutable)."""
        v = KernelVersion.parse(version)
        era = self._eras.get(v)
        if era is None:
            era = self._eras[v] = Era(v, {name: rule.value(v) for name, rule in self.rules.items()})
        return era

    def __iter__(self) -> Iterable["Feature | Variant"]:
        return iter(self.rules.values())

    def source(self, name: str) -> str:
        return self.rules[name].source
