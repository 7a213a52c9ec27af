"""The README is a promise: its Python example runs as shown, and every command of its CLI
tour prints what the README says it prints (a line ``...`` stands for any lines), with the
exit status it says (2 for the one-line errors)."""

from __future__ import annotations

import pathlib
import re
import shlex

import pytest

from mmemu.cli import main

README = (pathlib.Path(__file__).resolve().parent.parent / "README.md").read_text()
BLOCKS = re.findall(r"^```(\w*)\n(.*?)^```", README, re.S | re.M)


def _cli_examples():
    """(command, expected lines) of every ``$ mmemu ...`` line of the README's plain blocks."""
    out = []
    for lang, body in BLOCKS:
        if lang:
            continue
        current = None
        for line in body.splitlines():
            if line.startswith("$ mmemu "):
                current = (line[2:], [])
                out.append(current)
            elif current is not None:
                current[1].append(line.rstrip())
    return out


CLI_EXAMPLES = _cli_examples()


def _matches(expected: list[str], actual: list[str]) -> bool:
    """*expected*'s runs of lines between ``...`` lines appear in *actual* in order, the first
    at the start (unless the block starts with ``...``) and the last at the end (unless it
    ends with one)."""
    while expected and not expected[-1]:
        expected = expected[:-1]
    segments, seg = [], []
    for line in expected:
        if line == "...":
            segments.append(seg)
            seg = []
        else:
            seg.append(line)
    segments.append(seg)
    pos = 0
    for i, seg in enumerate(segments):
        if not seg:
            continue
        if i == 0:
            if actual[:len(seg)] != seg:
                return False
            pos = len(seg)
            continue
        for start in range(pos, len(actual) - len(seg) + 1):
            if actual[start:start + len(seg)] == seg:
                pos = start + len(seg)
                break
        else:
            return False
    return not segments[-1] or pos == len(actual)


def test_the_readme_has_examples():
    assert len(CLI_EXAMPLES) >= 7
    assert sum(1 for lang, body in BLOCKS if lang == "python" and "mmemu.boot(" in body) == 1


@pytest.mark.parametrize("command,expected", CLI_EXAMPLES, ids=[c for c, _ in CLI_EXAMPLES])
def test_cli_example(capsys, command, expected):
    code = main(shlex.split(command)[1:])
    out, err = capsys.readouterr()
    actual = [line.rstrip() for line in (out + err).splitlines()]
    assert code == (2 if expected and expected[0].startswith("mmemu: error:") else 0), err
    assert _matches(expected, actual), "\n".join(actual[:40])


def test_the_matcher_can_fail():
    assert _matches(["a", "...", "c"], ["a", "b", "c"])
    assert not _matches(["a", "...", "d"], ["a", "b", "c"])
    assert not _matches(["b"], ["a", "b"])
    assert not _matches(["a"], ["a", "b"])


def test_python_example(capsys):
    (code,) = [body for lang, body in BLOCKS if lang == "python" and "mmemu.boot(" in body]
    exec(compile(code, "README.md", "exec"), {"__name__": "readme"})
    out = capsys.readouterr().out
    assert "VMAP_AREA" in out and "[stack]" in out and "vmalloc: allocation failure" in out
