"""mmemu: the Linux kernel's memory mappings, with real page tables walked by a real CPU.

The public API: :func:`boot` a machine, :data:`hookimpl` to write plugins, and the
:class:`Arch` contract an arch plugin fills in.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping

from .arch import Arch, ArchOption, BootPlan, PercpuPlan, EntryCodec, EntryFormat, EntryView, Level, PagingMode
from .errors import ConfigError, MmemuError
from .faults import Fault
from .layout import Layout, MachineSpec
from .plugins import hookimpl

if TYPE_CHECKING:
    import pluggy

    from .kernel import Kernel

__version__ = "0.1.0"

__all__ = ["boot", "hookimpl", "Arch", "ArchOption", "BootPlan", "PercpuPlan", "EntryCodec", "EntryFormat", "EntryView", "Level",
           "PagingMode", "Fault", "Layout", "MachineSpec", "MmemuError", "ConfigError", "__version__"]

#: The modules of mmemu a plugin may import (and what they export without a leading
#: underscore): the contract. Everything else is the core's own business and may change;
#: a test holds the separately packaged plugins to this list.
PUBLIC_MODULES = ("mmemu", "mmemu.arch", "mmemu.layout", "mmemu.faults", "mmemu.errors", "mmemu.units",
                  "mmemu.eras", "mmemu.render.ptdump", "mmemu.render.text", "mmemu.cpu.adapter", "mmemu.testing",
                  "mmemu.module.reloc")


def boot(arch: str = "x86_64", kernel: str = "6.6", ram: "str | int" = "1G", cmdline: str = "", cpus: int = 1,
         options: "Mapping[str, str] | None" = None,
         plugin_manager: "pluggy.PluginManager | None" = None) -> "Kernel":
    """Boot an emulated machine and return its :class:`mmemu.kernel.Kernel`.

    ``arch`` is a registered arch name (``mmemu arches``), ``kernel`` the kernel version
    whose layout rules apply, ``ram`` a size (``"512M"``, ``"4G"``) or a byte count,
    ``cmdline`` the boot command line (``"vmalloc=256M mem=768M"``), ``options`` arch
    options (``{"levels": "5"}``), ``plugin_manager`` the pluggy manager whose arches to use
    (None: the installed plugins). Raises :class:`ConfigError` naming what is wrong.
    """
    from .kernel.boot import boot_kernel
    from .plugins import ArchRegistry, default

    if plugin_manager is None:
        pm, registry = default()
    else:
        pm, registry = plugin_manager, ArchRegistry(plugin_manager)
    spec = MachineSpec.make(arch=arch, kernel=kernel, ram=ram, cpus=cpus, cmdline=cmdline, options=options)
    return boot_kernel(registry.get(arch), spec, pm)
