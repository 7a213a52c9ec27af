"""Every hook of mmemu's plugin contract, in one place.

A plugin is a module or object with functions decorated ``@mmemu.hookimpl`` whose names are
the hooks below. Built-in plugins (the i386, i386_pae and x86_64 arches) are installed and
found exactly like third-party ones: through the ``mmemu`` entry-point group.

pluggy calls hooks with keyword arguments only; an implementation may accept any subset of
a hook's arguments. Implementations run last-registered first unless marked
``tryfirst``/``trylast``. A hook implementation whose name matches no hook here is an
error (:func:`mmemu.plugins.get_plugin_manager` calls ``check_pending``).
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("mmemu")


@hookspec
def mmemu_register_arch():
    """Contribute architectures.

    Called by: :func:`mmemu.plugins.arches` the first time the registry of architectures is
    needed (``mmemu arches``, ``mmemu.boot``, any machine command of the CLI).

    Returns: a list of :class:`mmemu.arch.Arch` instances (possibly empty). Names must be
    unique across all plugins; a duplicate is a :class:`mmemu.errors.PluginError`.
    """


@hookspec
def mmemu_boot(kernel):
    """Add boot-time mappings after the core's own boot.

    Called by: :func:`mmemu.kernel.boot.boot_kernel`, once per booted machine, after the
    master page table, the direct mapping, the kernel image and the fixmap/pkmap page tables
    exist, before ``mmemu.boot()`` returns the kernel.

    ``kernel``: the :class:`mmemu.kernel.Kernel` being booted; map through its page-table
    engine (``kernel.pgtable``) and allocate through ``kernel.frames`` so that every entry
    and frame is recorded with its writer.

    Returns: nothing (results are ignored).
    """


@hookspec(firstresult=True)
def mmemu_handle_fault(kernel, fault):
    """Take part in handling a page fault, before the kernel model's own handler.

    Called by: the kernel's fault path for every fault, whatever its source (code running on
    the CPU, or an access made through the emulator's API), with ``fault`` a
    :class:`mmemu.faults.Fault`: the address, the access (read, write, exec), user or kernel
    mode, why it failed (not-present, protection, reserved, access-flag) and the arch's own
    encoding in ``code`` (x86 error code, RISC-V scause, arm64 ESR).

    Returns: None to let the next plugin (and finally the kernel model) decide; otherwise a
    :class:`mmemu.kernel.fault.FaultResolution` (``retry`` after fixing the tables, or
    ``oops``/``sigsegv`` with a report). The first non-None result wins.
    """


@hookspec
def mmemu_mapping_changed(kernel, event):
    """Observe a change of the page tables.

    Called by: the page-table engine of a booted kernel after every completed operation that
    wrote entries (map, unmap, protect, split, table allocation), once per operation, with an
    :class:`mmemu.events.MappingEvent` giving the writer, the virtual range, and every entry
    written (table address, index, value before and after).

    Returns: nothing (results are ignored). Observers must not change the tables from here.
    """


@hookspec
def mmemu_kernel_symbols(kernel):
    """Export more kernel symbols to modules.

    Called by: the module loader (:mod:`mmemu.kernel.module`), once per booted kernel, the
    first time a module's undefined symbols are resolved (``kernel.ksymtab``), after
    mmemu's own exports of the kernel's era are listed.

    ``kernel``: the :class:`mmemu.kernel.Kernel` whose symbol table is being built.

    Returns: a list of symbol names (str) this plugin exports; each gets an address in the
    kernel's text, in the order given, after mmemu's own. A name already exported is
    ignored.
    """
