"""The emulated kernel: its memory, its page tables, and the services built on them.

:class:`Kernel` is one namespace with the kernel's own function names (``vmalloc``,
``kmap``, ``set_fixmap``, ``handle_page_fault``...), assembled from one module per kind
of mapping, each a mixin over the shared state of :mod:`mmemu.kernel.base`.
"""

from __future__ import annotations

import dataclasses

from ..faults import Fault
from ..journal import Journal
from . import boot as _boot
from .base import KernelBase
from .direct import DirectMapMixin
from .fault import FaultMixin, FaultResolution
from .fixmap import FixmapMixin
from .highmem import HighmemMixin
from .invariants import InvariantsMixin
from .module import Module, ModuleLoad, ModuleMixin
from .percpu import PercpuMixin
from .printk import LogMixin, LogRecord
from .process import (
    MAP_ANONYMOUS,
    MAP_FIXED,
    MAP_PRIVATE,
    MAP_SHARED,
    PROT_EXEC,
    PROT_NONE,
    PROT_READ,
    PROT_WRITE,
    Process,
    ProcessMixin,
    Vma,
)
from .vmalloc import VmallocMixin, VmapArea, VmStruct

__all__ = ["Kernel", "Module", "ModuleLoad", "LogRecord", "Fault", "FaultResolution", "Process", "Vma", "VmapArea", "VmStruct", "PROT_NONE", "PROT_READ",
           "PROT_WRITE", "PROT_EXEC", "MAP_SHARED", "MAP_PRIVATE", "MAP_FIXED", "MAP_ANONYMOUS"]


class Kernel(DirectMapMixin, VmallocMixin, HighmemMixin, FixmapMixin, ProcessMixin, FaultMixin, ModuleMixin,
             PercpuMixin, LogMixin, InvariantsMixin, KernelBase):
    """A booted machine (see :func:`mmemu.boot`).

    Construction is the boot, in order: the spec's arch options validated (with their
    defaults), the layout and the paging mode from the arch, memory and memblock, the
    boot-time page tables, then each service's state (events, kmalloc, fixmap, HighMem,
    vmalloc, processes, faults), then the plugins' ``mmemu_boot`` hook."""

    def __init__(self, arch, spec, pm):
        spec = dataclasses.replace(spec, options=arch.check_options(spec))
        self.arch, self.spec, self.pm = arch, spec, pm
        self.layout = arch.layout(spec)
        _boot.check_layout(arch, self.layout)
        self.paging = arch.paging(spec)
        #: the arch inverts the frame of PROT_NONE ptes (x86 L1TF, 4.18+): pfn_pte's rule,
        #: needed from the boot-time tables on (the cpu_entry_area's PAGE_NONE ptes)
        self.l1tf_invert = arch.protnone_inverted(spec)
        self.plan = arch.boot_plan(spec, self.layout)
        self.cpus = []
        self.journal = Journal()
        self.mem = _boot.new_memory(self.layout)
        try:
            _boot.setup_memory(self)
            _boot.build_tables(self)
            # from now on every operation is a transaction over all of these
            self.mem.journal = self.frames.journal = self.pgtable.journal = self.journal
            self._init_events()
            self._init_log()
            self._init_direct()
            self._init_fixmap()
            self._init_highmem()
            self._init_vmalloc()
            self._init_processes()
            self._init_faults()
            self._init_modules()
            self.pm.hook.mmemu_boot(kernel=self)
        except BaseException:
            self.mem.close()
            raise
