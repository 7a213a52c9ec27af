"""Promises the README and the design make about the code's shape, checked on the source.

- The core knows no kernel number: no address-sized literal in its code, and no version is
  compared outside the era tables
  (mmemu/eras.py, the machinery, and mmemu/kernel/eras.py, the generic mm rules).
- Arch plugins use only mmemu's public modules (mmemu.PUBLIC_MODULES), and no name with a
  leading underscore from them: what a third-party plugin can rely on is what the built-in
  ones rely on.
- The kernel model never imports a renderer: output formats come from the arch.
"""

from __future__ import annotations

import ast
import pathlib
import re

import pytest

import mmemu

ROOT = pathlib.Path(__file__).resolve().parent.parent
CORE = ROOT / "mmemu"
PLUGINS = sorted(p for p in (ROOT / "plugins").glob("*/mmemu_*") if p.is_dir())
ERA_TABLES = {CORE / "eras.py", CORE / "kernel" / "eras.py"}

# a comparison with a version: `kv < "5.8"`, `spec.kernel >= "2.6.28"`, `"2.6.24" <= kv`
VERSION_COMPARE = re.compile(r"""(?:[<>]=?|==|!=)\s*["']v?\d+\.\d+(?:\.\d+)?["']|["']v?\d+\.\d+(?:\.\d+)?["']\s*(?:[<>]=?)""")


def _python_files(root: pathlib.Path):
    return sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)


def test_the_core_compares_no_kernel_version_outside_the_era_tables():
    offenders = []
    for path in _python_files(CORE):
        if path in ERA_TABLES:
            continue
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            if VERSION_COMPARE.search(code):
                offenders.append(f"{path.relative_to(ROOT)}:{lineno}: {line.strip()}")
    assert not offenders, "version comparisons outside the era tables:\n" + "\n".join(offenders)


def test_the_version_pattern_catches_what_it_should():
    for text in ('kv < "5.8"', 'spec.kernel >= "2.6.28"', '"2.6.24" <= kv', "x == '4.12'"):
        assert VERSION_COMPARE.search(text), text
    for text in ('Feature("lazy", since="2.6.28")', 'f"kernel {kv}"', "1.5 < x"):
        assert not VERSION_COMPARE.search(text), text


def _mmemu_imports(path: pathlib.Path):
    """(module, names) of every import of mmemu in a file."""
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and \
                (node.module == "mmemu" or node.module.startswith("mmemu.")):
            yield node.module, [a.name for a in node.names], node.lineno
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name == "mmemu" or a.name.startswith("mmemu."):
                    yield a.name, [], node.lineno


@pytest.mark.parametrize("plugin", PLUGINS, ids=[p.name for p in PLUGINS])
def test_plugins_import_only_the_public_api(plugin):
    public = set(mmemu.PUBLIC_MODULES)
    offenders = []
    for path in _python_files(plugin):
        for module, names, lineno in _mmemu_imports(path):
            where = f"{path.relative_to(ROOT)}:{lineno}"
            if module not in public:
                offenders.append(f"{where}: imports {module}, not one of mmemu.PUBLIC_MODULES")
            offenders += [f"{where}: imports the private name {module}.{n}" for n in names if n.startswith("_")]
    assert not offenders, "\n".join(offenders)


def test_the_public_modules_exist():
    import importlib

    for name in mmemu.PUBLIC_MODULES:
        importlib.import_module(name)


def test_the_kernel_model_imports_no_renderer():
    for path in _python_files(CORE / "kernel"):
        text = path.read_text()
        assert not re.search(r"^\s*from\s+\.\.render\b|^\s*import\s+mmemu\.render|^\s*from\s+mmemu\.render", text, re.M), \
            f"{path.relative_to(ROOT)} imports a renderer"


def test_the_core_holds_no_address_of_any_arch():
    """No number in the core's code (docstrings and comments aside) is large enough to be an
    address, a mask or a size of some arch's layout: those come from the plugins. The
    exceptions: the demo's example physical address (the README's __va(0x123456)), and two
    constants of the ELF format the module loader reads, the same on every arch
    (ELF64_R_TYPE's mask 0xffffffff, include/uapi/linux/elf.h; SHF_RO_AFTER_INIT, the flag
    include/linux/module.h gives .data..ro_after_init), and counts: the instruction budgets
    of module code and of a scenario's user code, the largest hex field of a scenario."""
    elf_format = {0xFFFFFFFF, 0x00200000}
    # an instruction count, not an address: module code's budget (mmemu/kernel/module.py)
    counts = {("module.py", 10_000_000),
              # a scenario's user code budget (instructions) and its largest hex field (bytes)
              ("ops.py", 1_000_000), ("fields.py", 65536)}
    import io
    import tokenize

    found = []
    for path in _python_files(CORE):
        for tok in tokenize.tokenize(io.BytesIO(path.read_bytes()).readline):
            if tok.type != tokenize.NUMBER:
                continue
            try:
                value = int(tok.string.replace("_", ""), 0)
            except ValueError:
                continue  # a float
            if path.parent.name == "module" and value in elf_format or (path.name, value) in counts:
                continue
            if value >= 1 << 16 and not (path.name == "demo.py" and value == 0x123456):
                found.append(f"{path.relative_to(ROOT)}:{tok.start[0]} {tok.string}")
    assert not found, found
