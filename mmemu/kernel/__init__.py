"""The emulated kernel: its memory, its page tables, and the services built on them.

:class:`Kernel` is one namespace with the kernel's own function names (``vmalloc``,
``kmap``, ``set_fixmap``, ``handle_page_fault``...), assembled from one module per kind
of mapping, each a mixin over the shared state of :mod:`mmemu.kernel.base`.
"""

from __future__ import annotations

from .base import KernelBase
from .direct import DirectMapMixin
from .fault import Fault, FaultMixin, FaultResolution
from .fixmap import FixmapMixin
from .highmem import HighmemMixin
from .invariants import InvariantsMixin
from .process import (MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE, MAP_SHARED, PROT_EXEC, PROT_NONE, PROT_READ,
                      PROT_WRITE, Process, ProcessMixin, Vma)
from .vmalloc import VmallocMixin, VmapArea, VmStruct

__all__ = ["Kernel", "Fault", "FaultResolution", "Process", "Vma", "VmapArea", "VmStruct", "PROT_NONE", "PROT_READ",
           "PROT_WRITE", "PROT_EXEC", "MAP_SHARED", "MAP_PRIVATE", "MAP_FIXED", "MAP_ANONYMOUS"]


class Kernel(DirectMapMixin, VmallocMixin, HighmemMixin, FixmapMixin, ProcessMixin, FaultMixin, InvariantsMixin,
             KernelBase):
    """A booted machine (see :func:`mmemu.boot`)."""

    def _init_services(self) -> None:
        """After the boot mappings: the state of every service."""
        self.cpus = []
        self._init_events()
        self._init_direct()
        self._init_fixmap()
        self._init_highmem()
        self._init_vmalloc()
        self._init_processes()
        self._init_faults()
