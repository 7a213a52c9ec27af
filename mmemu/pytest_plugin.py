"""The pytest plugin installed with mmemu (entry point ``pytest11``): the ``kernel`` fixture,
a machine booted for one test and closed after it, with ``insmod``/``rmmod`` and assertions
on translations, faults and the kernel log that fail with what the kernel shows (the walk as
crash's ``vtop`` prints it, the log's last lines)::

    def test_my_module(kernel):
        kernel.insmod("hello")
        kernel.assert_log("hello: hello from a module")

Which machine a test gets, key by key (``arch``, ``kernel``, ``ram``, ``cpus``, ``cmdline``,
``options``: the arguments of :func:`mmemu.boot`), the first that sets it winning:

1. the fixture's indirect parameter, a dict of those keys or an arch name:
   ``@pytest.mark.parametrize("kernel", [{"arch": "i386", "kernel": "4.19"}, "x86_64"], indirect=True)``;
2. the ``mmemu`` markers: ``@pytest.mark.mmemu(arch="i386", ram="2G")``, the test's over its
   class's over its module's (``pytestmark``);
3. the command line: ``--mmemu-arch i386,x86_64`` and ``--mmemu-kernel 4.19,6.6`` run every
   test that uses the fixture once for each combination, except on the keys the test's
   markers set or every one of its parameters sets (those are the test's own machine);
4. :func:`mmemu.boot`'s defaults: x86_64, kernel 6.6, 1G of RAM, one CPU.

The most specific wins: a parameter names one call's machine, a marker a test's (or a class's,
a module's), the command line the whole run's.
"""

from __future__ import annotations

import inspect
import itertools
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

import mmemu

from .errors import ConfigError
from .scenario.checks import check_fault, check_log, check_translation
from .scenario.reader import MACHINE_KEYS
from .scenario.runner import example_module

if TYPE_CHECKING:
    from .faults import Fault
    from .kernel.module import Module
    from .kernel.process import Process
    from .pagetable import Walk

#: the keys the command line parametrises (``--mmemu-KEY A,B,...``), with what their values are
CLI_KEYS = {"arch": ("ARCH", "arches (mmemu arches lists them)"), "kernel": ("VERSION", "kernel versions")}
#: how many of the kernel log's last lines a failed assert_log shows
LOG_TAIL = 20


def pytest_addoption(parser):
    group = parser.getgroup("mmemu", "mmemu's kernel fixture")
    for key, (metavar, what) in CLI_KEYS.items():
        group.addoption(f"--mmemu-{key}", metavar=f"{metavar}[,{metavar}...]",
                        help=f"run every test that uses the kernel fixture on each of these {what}, unless its "
                             f"markers or parameters name its {key}")


def pytest_configure(config):
    config.addinivalue_line("markers", "mmemu(arch=..., kernel=..., ram=..., cpus=..., cmdline=..., options=...): the "
                                       "machine the kernel fixture boots (mmemu.boot's arguments)")


def _cli_axes(config) -> dict[str, list[str]]:
    axes = {}
    for key in CLI_KEYS:
        raw = config.getoption(f"mmemu_{key}")
        if raw is not None:
            values = list(dict.fromkeys(v.strip() for v in raw.split(",") if v.strip()))
            if not values:
                raise pytest.UsageError(f"--mmemu-{key}: expected a comma-separated list, not {raw!r}")
            axes[key] = values
    return axes


def _as_machine(value) -> dict | None:
    """A ``kernel`` parameter as machine keys (None: not a machine)."""
    if isinstance(value, str):
        return {"arch": value}
    return value if isinstance(value, dict) else None


def _kernel_params(definition):
    """(value, indirect) for each value the test's parametrize markers give ``kernel``:
    indirect, the fixture's parameter; direct, a value in place of the fixture."""
    for mark in definition.iter_markers("parametrize"):
        args = dict(zip(("argnames", "argvalues", "indirect"), mark.args), **mark.kwargs)
        names = args.get("argnames", ())
        names = [n.strip() for n in names.split(",")] if isinstance(names, str) else list(names)
        if "kernel" not in names:
            continue
        i, indirect = names.index("kernel"), args.get("indirect", False)
        indirect = "kernel" in indirect if isinstance(indirect, (list, tuple)) else bool(indirect)
        for v in args.get("argvalues", ()):
            if hasattr(v, "marks") and hasattr(v, "id"):  # pytest.param(...)
                v = v.values if len(names) > 1 else v.values[0]
            yield (v[i] if len(names) > 1 else v), indirect


def _own_keys(definition) -> set[str] | None:
    """The machine keys the test names itself: its markers', and those every parameter sets
    (None: its ``kernel`` is not the fixture, but values it is given)."""
    own = {key for marker in definition.iter_markers("mmemu") for key in marker.kwargs}
    params = list(_kernel_params(definition))
    if not all(indirect for _, indirect in params):
        return None
    machines = [_as_machine(v) for v, _ in params]
    if machines:
        own |= set.intersection(*(set(MACHINE_KEYS) if m is None else set(m) for m in machines))
    return own


def pytest_generate_tests(metafunc):
    if "_mmemu_cli" not in metafunc.fixturenames:
        return
    own = _own_keys(metafunc.definition)
    axes = {key: values for key, values in _cli_axes(metafunc.config).items() if own is not None and key not in own}
    if axes:
        combos = [dict(zip(axes, values)) for values in itertools.product(*axes.values())]
        metafunc.parametrize("_mmemu_cli", combos, ids=["-".join(c.values()) for c in combos])


@pytest.fixture
def _mmemu_cli():
    """The machine keys the command line gives this test (pytest_generate_tests parametrises it)."""
    return {}


def _checked(where: str, keys: dict) -> dict:
    unknown = sorted(set(keys) - set(MACHINE_KEYS))
    if unknown:
        pytest.fail(f"{where}: unknown machine key {', '.join(map(repr, unknown))}; the keys are "
                    f"{', '.join(MACHINE_KEYS)}", pytrace=False)
    return keys


def machine_for(node, param=None, cli: dict | None = None) -> dict:
    """The arguments of mmemu.boot for a test: defaults < command line < marker < parameter."""
    machine = {name: p.default for name, p in inspect.signature(mmemu.boot).parameters.items() if name in MACHINE_KEYS}
    machine.update(cli or {})
    for marker in reversed(list(node.iter_markers("mmemu"))):  # the module's first, the test's last
        if marker.args:
            pytest.fail(f"@pytest.mark.mmemu takes keywords ({', '.join(MACHINE_KEYS)}), not {marker.args!r}",
                        pytrace=False)
        machine.update(_checked("@pytest.mark.mmemu", marker.kwargs))
    if param is not None:
        keys = _as_machine(param)
        if keys is None:
            pytest.fail(f"the kernel fixture's parameter must be a dict of machine keys or an arch name, not "
                        f"{param!r}", pytrace=False)
        machine.update(_checked("the kernel fixture's parameter", keys))
    return machine


@pytest.fixture
def kernel(request, _mmemu_cli):
    """A booted mmemu machine (see :mod:`mmemu.pytest_plugin` for which one), closed after the
    test: a :class:`KernelFixture`."""
    machine = machine_for(request.node, getattr(request, "param", None), _mmemu_cli)
    try:
        k = mmemu.boot(**machine)
    except ConfigError as exc:
        pytest.fail(f"the kernel fixture cannot boot {machine}: {exc}", pytrace=False)
    try:
        yield KernelFixture(k, machine, request.node.path.parent)
    finally:
        k.close()


def _call(name: str, addr, **kw) -> str:
    """``assert_translation(0xc0000000, phys=0x0)``: a call as the failure message shows it."""
    shown = lambda v: f"{v:#x}" if isinstance(v, int) and not isinstance(v, bool) else repr(v)
    args = [shown(addr)] + [f"{key}={shown(v)}" for key, v in kw.items() if v is not None]
    return f"{name}({', '.join(args)})"


class KernelFixture:
    """What the ``kernel`` fixture yields: the booted :class:`mmemu.kernel.Kernel` as ``.k``
    (every attribute it does not have is the kernel's: ``kernel.vmalloc(4096)``), the
    machine it was booted with as ``.machine``, and what a module's test needs: ``insmod``,
    ``rmmod``, and assertions whose failure says what the kernel shows."""

    __slots__ = ("k", "machine", "_here")

    def __init__(self, k, machine: dict, here: Path):
        object.__setattr__(self, "k", k)
        object.__setattr__(self, "machine", machine)
        object.__setattr__(self, "_here", here)

    def __getattr__(self, name):
        if name in KernelFixture.__slots__:
            raise AttributeError(name)
        return getattr(self.k, name)

    def __setattr__(self, name, value):
        setattr(self.k, name, value)

    def __repr__(self) -> str:
        return f"<kernel fixture {self.k!r}>"

    # -- modules ----------------------------------------------------------------------------

    def insmod(self, module: "str | Path", **kw: Any) -> "Module":
        """Load a module and return its :class:`mmemu.kernel.module.Module`: *module* is a
        path (as given, else relative to the test file's directory) or the name of an
        example module (``"hello"``: examples/modules/build/<arch>-<era>/hello.o for this
        machine's arch and nearest era). *kw* go to ``Kernel.load_module``
        (``stub_missing``, ``force_vermagic``, ``run_init``, ``budget``)."""
        path = Path(module)
        for candidate in (path, self._here / path):
            if candidate.is_file():
                return self.k.load_module(candidate.read_bytes(), candidate.name, **kw)
        if isinstance(module, str) and "/" not in module and not module.endswith((".o", ".ko")):
            path = example_module(self.k, module)
            return self.k.load_module(path.read_bytes(), path.name, **kw)
        raise FileNotFoundError(f"insmod: no module file {str(module)!r} (nor {str(self._here / path)!r})")

    def rmmod(self, module: "str | Module", **kw: Any) -> None:
        """``delete_module``: *module* is a name or a Module; *kw* go to
        ``Kernel.delete_module`` (``run_exit``, ``budget``)."""
        self.k.delete_module(getattr(module, "name", module), **kw)

    # -- assertions -------------------------------------------------------------------------

    def _fail(self, call: str, why: str, addr: int, process=None):
        __tracebackhide__ = True
        from .render.vtop import vtop

        table = f"process {process.comm}[{process.pid}]" if process is not None else "the kernel page table"
        raise AssertionError(f"{call}: {why}\n\nthe walk in {table} ({self.k.spec.arch} {self.k.spec.kernel}), as "
                             f"crash's vtop prints it:\n{vtop(self.k, addr, process=process).rstrip()}")

    def assert_translation(self, addr: int, phys: int | None = None, page_size: int | None = None,
                           kernel: str | None = None, user: str | None = None,
                           process: "Process | None" = None) -> "Walk":
        """*addr* is mapped (in *process*'s address space, or the kernel's page table) to
        *phys*, by a page of *page_size*, with these *kernel* and *user* rights (``"rw-"``,
        ``"r-x"``, ``"---"``); None is "any". Returns the :class:`mmemu.pagetable.Walk`."""
        __tracebackhide__ = True
        c = check_translation(self.k, addr, process=process, phys=phys, page_size=page_size, kernel=kernel, user=user)
        if not c.ok:
            self._fail(_call("assert_translation", addr, phys=phys, page_size=page_size, kernel=kernel, user=user),
                       c.why, addr, process)
        return c.found

    def assert_not_mapped(self, addr: int, process: "Process | None" = None) -> None:
        """The walk of *addr* reaches no page."""
        __tracebackhide__ = True
        c = check_translation(self.k, addr, process=process, mapped=False)
        if not c.ok:
            self._fail(_call("assert_not_mapped", addr), c.why, addr, process)

    def assert_fault(self, addr: int, access: str = "read", user: bool = False, code: int | None = None,
                     kind: str | None = None, process: "Process | None" = None) -> "Fault":
        """An *access* (``"read"``, ``"write"``, ``"exec"``; at user privilege if *user*) to
        *addr* page-faults, with the arch's *code* (the x86 error code...) and of this *kind*
        (``"not-present"``, ``"protection"``...) if given; nothing is handled. Returns the
        :class:`mmemu.faults.Fault`."""
        __tracebackhide__ = True
        c = check_fault(self.k, addr, access, user, process=process, code=code, kind=kind)
        if not c.ok:
            self._fail(_call("assert_fault", addr, access=access, user=user or None, code=code, kind=kind),
                       c.why, addr, process)
        return c.found

    def assert_log(self, contains: str) -> str:
        """A line of the kernel log contains *contains*; returns the first such line."""
        __tracebackhide__ = True
        c = check_log(self.k, contains)
        if not c.ok:
            lines = [r.text for r in self.k.log]
            tail = "\n".join(f"  {line}" for line in lines[-LOG_TAIL:])
            raise AssertionError(f"assert_log({contains!r}): {c.why}; " + (
                f"the kernel log (the last {min(len(lines), LOG_TAIL)} of {len(lines)} lines):\n{tail}" if lines
                else "the kernel log is empty"))
        return c.found
