"""The README's "Python API reference" is a promise about the code: every function, method
and class it lists exists, takes the parameters it lists (in that order, every required one
listed, the defaults it shows), returns what it says, and is public in the full sense: a
docstring, and annotations on every parameter and on the return. The package is typed
(``py.typed``, shipped in the wheel)."""

from __future__ import annotations

import ast
import importlib
import inspect
import pathlib
import re
import sys
import tomllib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
SECTION = README.split("## Python API reference\n", 1)[1].split("\n## ", 1)[0]

#: the classes the reference names by their bare name
CLASSES = {
    "Kernel": "mmemu.kernel.Kernel",
    "FrameAllocator": "mmemu.buddy.FrameAllocator",
    "Cpu": "mmemu.cpu.Cpu",
    "ScenarioRun": "mmemu.scenario.ScenarioRun",
    "ScenarioError": "mmemu.scenario.ScenarioError",
    "KernelFixture": "mmemu.pytest_plugin.KernelFixture",
}

#: `Name(params)` or `Name(params) -> Return`, in backquotes
ITEM = re.compile(r"`(?P<name>[A-Za-z_][\w.]*)\((?P<params>[^`]*?)\)(?: -> (?P<ret>[^`]+))?`")


def _resolve(name: str):
    head, _, rest = name.partition(".")
    if head in CLASSES:
        module, _, cls = CLASSES[head].rpartition(".")
        obj = getattr(importlib.import_module(module), cls)
        for part in rest.split(".") if rest else ():
            obj = getattr(obj, part)
        return obj
    parts = name.split(".")
    for i in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for part in parts[i:]:
            obj = getattr(obj, part)
        return obj
    raise LookupError(name)


def _split(params: str) -> list[str]:
    """The parameters at depth 0 (a default may hold brackets)."""
    out, depth, cur = [], 0, ""
    for ch in params:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if cur.strip():
        out.append(cur.strip())
    return out


def _items():
    items = []
    for m in ITEM.finditer(SECTION):
        items.append(pytest.param(m["name"], m["params"], m["ret"], id=m["name"]))
    return items


ITEMS = _items()


def _signature(obj) -> tuple[inspect.Signature, object]:
    """The signature a caller sees (a class: its __init__ without self) and the function
    that carries the annotations."""
    func = obj.__init__ if inspect.isclass(obj) else obj
    sig = inspect.signature(func)
    params = list(sig.parameters.values())
    if params and params[0].name in ("self", "cls"):
        sig = sig.replace(parameters=params[1:])
    return sig, func


def _norm(annotation) -> str:
    text = annotation if isinstance(annotation, str) else inspect.formatannotation(annotation)
    return text.replace("'", "").replace('"', "").replace(" ", "")


def test_the_reference_lists_the_api():
    names = {p.values[0] for p in ITEMS}
    assert len(ITEMS) >= 90, len(ITEMS)
    for must in ("mmemu.boot", "Kernel.kmap_atomic", "Kernel.kmap_local_page", "Kernel.set_fixmap",
                 "Kernel.create_process", "Kernel.access", "Kernel.walk", "Kernel.load_module",
                 "Kernel.delete_module", "Kernel.kmem_v", "Kernel.proc_maps", "Kernel.dmesg", "Kernel.check_wx",
                 "Kernel.check_invariants", "Kernel.inject_failures", "Cpu.run_user", "Cpu.call",
                 "mmemu.scenario.load", "mmemu.scenario.loads", "ScenarioRun.run", "ScenarioRun.run_step",
                 "ScenarioRun.step_back", "mmemu.render.ptdump.ptdump", "KernelFixture.insmod"):
        assert must in names, must


@pytest.mark.parametrize("name,params,ret", ITEMS)
def test_listed_signature_is_the_codes(name, params, ret):
    obj = _resolve(name)
    sig, func = _signature(obj)
    actual = list(sig.parameters.values())
    listed = []
    for text in _split(params):
        if text == "*":
            continue
        pname, _, default = text.partition("=")
        listed.append((pname.lstrip("*"), default or None))
    names = [p.name for p in actual]
    # listed parameters exist, in the code's order
    assert all(p in names for p, _ in listed), (name, [p for p, _ in listed if p not in names])
    assert [p for p, _ in listed] == [n for n in names if n in {p for p, _ in listed}], name
    # every parameter a caller must pass is listed
    required = [p.name for p in actual if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    assert all(r in {p for p, _ in listed} for r in required), (name, required)
    # the defaults shown are the code's (a literal, or a name of the function's module)
    scope = vars(sys.modules[func.__module__])
    for pname, default in listed:
        if default is None:
            continue
        try:
            value = ast.literal_eval(default)
        except ValueError:
            value = eval(default, dict(scope))  # a module constant such as MODULE_CODE_BUDGET
        assert sig.parameters[pname].default == value, (name, pname, default, sig.parameters[pname].default)
    if ret is not None:
        assert _norm(sig.return_annotation) == _norm(ret), (name, sig.return_annotation, ret)


@pytest.mark.parametrize("name,params,ret", ITEMS)
def test_listed_name_is_documented_and_annotated(name, params, ret):
    obj = _resolve(name)
    sig, func = _signature(obj)
    assert inspect.getdoc(obj), f"{name} has no docstring"
    missing = [p.name for p in sig.parameters.values() if p.annotation is p.empty]
    assert not missing, f"{name}: parameters without annotation: {missing}"
    if not inspect.isclass(obj):
        assert sig.return_annotation is not sig.empty, f"{name} has no return annotation"


def test_the_errors_the_reference_names_exist():
    from mmemu import errors, scenario

    paragraph = SECTION.split("### Errors", 1)[1].split("###", 1)[0]
    named = re.findall(r"`(\w+)`", paragraph)
    exceptions = [n for n in named if n[0].isupper()]
    assert len(exceptions) >= 12
    for n in exceptions:
        cls = getattr(errors, n, None) or getattr(scenario, n)
        assert issubclass(cls, errors.MmemuError) and inspect.getdoc(cls), n
    listed = set(exceptions)
    for n, cls in vars(errors).items():  # and every error class of mmemu.errors is named
        if inspect.isclass(cls) and issubclass(cls, Exception):
            assert n in listed, n


def test_the_kernel_fixture_is_the_plugins():
    from mmemu import pytest_plugin

    assert "`kernel` (fixture)" in SECTION
    fixture = pytest_plugin.kernel  # pytest's fixture definition around the function
    assert getattr(fixture, "_fixture_function_marker", None) is not None
    assert inspect.getdoc(getattr(fixture, "_get_wrapped_function", lambda: fixture)())
    entry = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]["pytest11"]
    assert entry == {"mmemu": "mmemu.pytest_plugin"}


def test_the_package_is_typed_and_ships_its_marker(tmp_path):
    """PEP 561: the marker is in the package, and hatch puts it in the wheel (it packs every
    file of the listed packages that git does not ignore)."""
    import mmemu

    assert (pathlib.Path(mmemu.__file__).parent / "py.typed").is_file()
    wheel = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["hatch"]["build"]["targets"]["wheel"]
    assert "mmemu" in wheel["packages"]
    assert "mmemu/py.typed" in wheel.get("force-include", {}) or not _ignored("mmemu/py.typed")


def _ignored(path: str) -> bool:
    import subprocess

    r = subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT, capture_output=True)
    return r.returncode == 0
