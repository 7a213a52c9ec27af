"""The conformance suite (mmemu.testing) on the arches of mmemu's own distribution (i386,
i386_pae, x86_64, found through the mmemu entry-point group as any plugin is). The
separately packaged arches (riscv64, arm64) run the same suite from their own packages'
tests, which `make test` runs too."""

from __future__ import annotations

from importlib import metadata

from mmemu.testing import ConformanceSuite

BUILT_IN = sorted(ep.name for ep in metadata.distribution("mmemu").entry_points if ep.group == "mmemu")

for _name in BUILT_IN:
    _cls = type(f"TestConformance_{_name}", (ConformanceSuite,), {"arch": _name})
    globals()[_cls.__name__] = _cls
