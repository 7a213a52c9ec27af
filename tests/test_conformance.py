"""The conformance suite (mmemu.testing) on every arch registered in the mmemu entry-point
group: the built-in x86 arches here, and whichever other arch is installed (riscv64 and
arm64 also run it from their own packages)."""

from __future__ import annotations

from mmemu.plugins import default
from mmemu.testing import ConformanceSuite

for _name in default()[1].names():
    _cls = type(f"TestConformance_{_name}", (ConformanceSuite,), {"arch": _name})
    globals()[_cls.__name__] = _cls
