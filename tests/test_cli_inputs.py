"""The mmemu command on bad input: a catalogue of bad command lines, each refused with exit
status 2 and one ``mmemu: error:`` line naming the field; seeded mutations of valid command
lines, none of which may end in an internal error (exit 70) or a traceback; output that
cannot be written (exit 74).

MMEMU_FUZZ_N sets the number of mutations (default 200), MMEMU_FUZZ_SEED the seed.
"""

from __future__ import annotations

import errno
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mmemu.cli import EXIT_INTERNAL, EXIT_IOERR, EXIT_USAGE, main
from mmemu.errors import ConfigError

MMEMU = shutil.which("mmemu") or str(Path(sys.executable).with_name("mmemu"))


def run(capsys, argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def run_exe(argv, stdout=subprocess.PIPE):
    return subprocess.run([MMEMU, *argv], stdout=stdout, stderr=subprocess.PIPE, timeout=120)


def assert_one_error_line(err: str, *needles: str) -> None:
    assert err.startswith("mmemu: error: "), err
    assert err.endswith("\n") and err.count("\n") == 1, err  # exactly one line
    assert "Traceback" not in err and "internal error" not in err, err
    for needle in needles:
        assert needle in err, (needle, err)


# --------------------------------------------------------------------------------------
# The catalogue: (argv, what the message must contain: the field, the text, the reason)
# --------------------------------------------------------------------------------------

CATALOGUE = [
    # -- sizes (--ram, and sizes on the kernel command line)
    (["layout", "--ram", "12Q"], ["RAM size '12Q'"]),
    (["layout", "--ram", "09G"], ["RAM size '09G'", "octal"]),  # a leading 0 is octal, 9 is no octal digit
    (["layout", "--ram", "4 G"], ["RAM size '4 G'"]),
    (["layout", "--ram=-1G"], ["RAM size '-1G'"]),
    (["layout", "--ram", "+1G"], ["RAM size '+1G'"]),
    (["layout", "--ram", "1.5G"], ["RAM size '1.5G'"]),
    (["layout", "--ram", "1_000M"], ["RAM size '1_000M'"]),
    (["layout", "--ram", "0x"], ["RAM size '0x'"]),
    (["layout", "--ram", ""], ["RAM size ''"]),
    (["layout", "--ram", "G"], ["RAM size 'G'"]),
    (["layout", "--ram", "16E"], ["RAM size '16E'", "too large"]),
    (["layout", "--ram", "9" * 5000], ["RAM size", "5000 characters"]),
    (["layout", "--ram", "0"], ["RAM size must be positive"]),
    (["layout", "--ram", "4097"], ["RAM size '4097'", "4 KiB pages"]),
    (["layout", "--arch", "i386", "--ram", "8G"], ["RAM size 8G exceeds"]),
    (["layout", "--arch", "i386", "--ram", "15E"], ["RAM size 15E exceeds"]),
    (["layout", "--ram", "４G"], ["RAM size '４G'", "U+FF14 FULLWIDTH DIGIT FOUR"]),
    (["layout", "--ram", "٤G"], ["RAM size '٤G'", "U+0664 ARABIC-INDIC DIGIT FOUR"]),
    (["layout", "--ram", "\xa04G"], ["RAM size '\\xa04G'", "U+00A0 NO-BREAK SPACE"]),
    (["layout", "--ram", "4G\x00"], ["RAM size '4G\\x00'", "control character"]),
    (["layout", "--arch", "i386", "--cmdline", "vmalloc=09M"], ["vmalloc=", "'09M'", "octal"]),
    (["layout", "--arch", "i386", "--cmdline", "vmalloc=lots"], ["vmalloc=", "'lots'"]),
    (["layout", "--arch", "i386", "--cmdline", "vmalloc="], ["vmalloc=", "''"]),
    (["layout", "--arch", "i386", "--cmdline", "vmalloc"], ["vmalloc= needs a size"]),
    (["layout", "--arch", "i386", "--cmdline", "mem=0x"], ["mem=", "'0x'"]),
    (["layout", "--arch", "i386", "--cmdline", "vmalloc=٢٥٦M"], ["kernel command line", "U+0662"]),
    (["layout", "--cmdline", "mem=４G"], ["kernel command line", "U+FF14"]),
    (["layout", "--cmdline", "vmalloc=256M\xa0nopse"], ["kernel command line", "U+00A0 NO-BREAK SPACE"]),
    (["layout", "--cmdline", "nopse\x00"], ["kernel command line", "control character"]),
    (["layout", "--cmdline", "=5"], ["kernel command line word '=5'"]),
    # -- CPU counts
    (["layout", "--cpus", "zero"], ["CPU count 'zero'"]),
    (["layout", "--cpus", ""], ["CPU count ''"]),
    (["layout", "--cpus", "0"], ["CPU count must be at least 1"]),
    (["layout", "--cpus", "-1"], ["CPU count '-1'"]),
    (["layout", "--cpus", "+3"], ["CPU count '+3'"]),
    (["layout", "--cpus", "3_0"], ["CPU count '3_0'"]),
    (["layout", "--cpus", "1.0"], ["CPU count '1.0'"]),
    (["layout", "--cpus", "010"], ["CPU count '010'", "leading zeros"]),
    (["layout", "--cpus", "٣"], ["CPU count '٣'", "U+0663 ARABIC-INDIC DIGIT THREE"]),
    (["layout", "--cpus", "３"], ["CPU count '３'", "U+FF13 FULLWIDTH DIGIT THREE"]),
    (["layout", "--cpus", "9999999999"], ["CPU count '9999999999'", "too large"]),
    (["layout", "--arch", "x86_64", "--cpus", "99999999"], ["CPU count 99999999", "at most 8192"]),
    (["layout", "--arch", "x86_64", "--cpus", "8193"], ["CPU count 8193", "at most 8192"]),
    (["layout", "--arch", "i386", "--cpus", "65"], ["NR_CPUS=65", "1 .. 64"]),
    (["layout", "--arch", "i386_pae", "--cpus", "99999999"], ["NR_CPUS=99999999", "1 .. 64"]),
    # -- kernel versions
    (["layout", "--kernel", "banana"], ["kernel version 'banana'"]),
    (["layout", "--kernel", ""], ["kernel version ''"]),
    (["layout", "--kernel", "6"], ["kernel version '6'"]),
    (["layout", "--kernel", "٦.٦"], ["kernel version '٦.٦'", "U+0666 ARABIC-INDIC DIGIT SIX"]),
    (["layout", "--kernel", "６.６"], ["kernel version '６.６'", "U+FF16 FULLWIDTH DIGIT SIX"]),
    (["layout", "--kernel", "6.6\xa0"], ["kernel version '6.6\\xa0'", "U+00A0 NO-BREAK SPACE"]),
    (["layout", "--kernel", "1234567.0"], ["kernel version '1234567.0'", "more than 6 digits"]),
    (["layout", "--kernel", "2.4"], ["no layout for kernel 2.4"]),
    (["layout", "--arch", "i386", "--kernel", "99.0"], ["Linux 99.0 is not known"]),
    # -- arches
    (["layout", "--arch", "sparc"], ["unknown arch 'sparc'"]),
    (["layout", "--arch", ""], ["unknown arch ''"]),
    (["layout", "--arch", "I386"], ["unknown arch 'I386'"]),
    (["layout", "--arch", "ｉ386"], ["arch (--arch) 'ｉ386'", "U+FF49"]),
    (["layout", "--arch", "i386\nx86_64"], ["unknown arch 'i386\\nx86_64'"]),  # one line all the same
    # -- arch options
    (["layout", "--option", "levels"], ["--option 'levels'"]),
    (["layout", "--option", "=5"], ["--option '=5'"]),
    (["layout", "--option", "levels="], ["--option 'levels='"]),
    (["layout", "--option", ""], ["--option ''"]),
    (["layout", "--option", "levels=7"], ["levels='7' is not one of 4, 5"]),
    (["layout", "--option", "levels=５"], ["--option 'levels=５'", "U+FF15"]),
    (["layout", "--option", "colour=blue"], ["has no option 'colour'"]),
    (["layout", "--option", "NR_CPUS=lots"], ["NR_CPUS 'lots'"]),
    (["layout", "--option", "NR_CPUS=010"], ["NR_CPUS '010'"]),
    (["layout", "--option", "NR_CPUS=99999"], ["NR_CPUS=99999", "8192"]),
    (["layout", "--arch", "i386", "--option", "NR_CPUS=0x20"], ["NR_CPUS '0x20'"]),
    (["layout", "--arch", "i386", "--cpus", "4", "--option", "NR_CPUS=2"], ["NR_CPUS=2 is smaller"]),
    (["layout", "--arch", "i386", "--option", "VMSPLIT=２G"], ["--option 'VMSPLIT=２G'"]),
    # -- addresses (refused before any machine boots)
    (["vtop", "xyz"], ["virtual address 'xyz'"]),
    (["vtop", ""], ["virtual address ''"]),
    (["vtop", "0x"], ["virtual address '0x'"]),
    (["vtop", "0xg000"], ["virtual address '0xg000'"]),
    (["vtop", "0x1_0000_0000_0000_0000"], ["virtual address '0x1_0000_0000_0000_0000'", "64 bits"]),
    (["vtop", "٣"], ["virtual address '٣'", "U+0663"]),
    (["vtop", "ｃ0000000", "--arch", "i386"], ["virtual address 'ｃ0000000'", "U+FF43"]),
    (["vtop", "c000\x000000", "--arch", "i386"], ["virtual address 'c000\\x000000'", "control character"]),
    # -- the command line itself: options without values, unknown options and commands
    (["tui", "--step", "-1"], ["--step must be 0 or more, not -1"]),
    (["tui", "no-such-scenario.toml"], ["no-such-scenario.toml: cannot read it"]),
    (["tui", "--arch", "nope"], ["no built-in tour for arch 'nope'"]),
    (["bogus"], ["invalid choice: 'bogus'"]),
    (["vtop"], ["required: address"]),
    (["layout", "--ram"], ["argument --ram: expected one argument"]),
    (["layout", "--kernel"], ["argument --kernel: expected one argument"]),
    (["layout", "--cpus"], ["argument --cpus: expected one argument"]),
    (["layout", "--arch"], ["argument --arch: expected one argument"]),
    (["layout", "--cmdline"], ["argument --cmdline: expected one argument"]),
    (["layout", "--option"], ["argument --option: expected one argument"]),
    (["layout", "--ram", "--kernel", "6.6"], ["argument --ram: expected one argument"]),
    (["layout", "--bogus"], ["unrecognized arguments: --bogus"]),
    (["layout", "extra"], ["unrecognized arguments: extra"]),
    (["arches", "--ram", "1G"], ["unrecognized arguments: --ram 1G"]),
    (["ptdump", "--json"], ["unrecognized arguments: --json"]),
]


def test_mmemu_alone_without_a_terminal_runs_the_tour_headless(capsys):
    """`mmemu` with no command opens the UI in a terminal; here (no terminal) it runs the
    built-in tour as `mmemu run` does."""
    code, out, err = run(capsys, [])
    assert code == 0, err
    assert out.startswith("scenario ") and "tour-x86_64.toml" in out.splitlines()[0]
    assert out.rstrip().splitlines()[-1].startswith("ok: ")


@pytest.mark.parametrize("argv,needles", CATALOGUE, ids=[repr(a)[:60] for a, _ in CATALOGUE])
def test_catalogue_of_bad_inputs(capsys, argv, needles):
    code, out, err = run(capsys, argv)
    assert code == EXIT_USAGE, (code, err)
    assert out == ""
    assert_one_error_line(err, *needles)


# Through the installed executable: the exit status a shell sees, and no traceback, also
# for arguments that are not UTF-8 (Python hands them over as lone surrogates).
SUBPROCESS_CATALOGUE = [
    (["layout", "--ram", "01G0"], [b"RAM size '01G0'"]),
    (["layout", "--ram", "\uff14G"], ["RAM size '４G'".encode()]),
    (["layout", "--kernel", "\u0666.\u0666"], [b"kernel version", b"U+0666"]),
    (["layout", "--cpus", "\u0663"], [b"CPU count", b"U+0663"]),
    (["layout", "--arch", "x86_64", "--cpus", "99999999"], [b"at most 8192"]),
    (["layout", "--ram"], [b"argument --ram: expected one argument"]),
    (["layout", "--cmdline", "vmalloc=256M\u00a0nopse"], [b"kernel command line", b"NO-BREAK SPACE"]),
    ([b"layout", b"--ram", b"4\xffG"], [b"RAM size", b"U+DCFF"]),
    ([b"layout", b"--arch", b"i386\xff"], [b"arch (--arch)", b"U+DCFF"]),
    ([b"vtop", b"\xc0"], [b"virtual address", b"U+DCC0"]),
]


@pytest.mark.parametrize("argv,needles", SUBPROCESS_CATALOGUE, ids=[repr(a)[:60] for a, _ in SUBPROCESS_CATALOGUE])
def test_catalogue_through_the_executable(argv, needles):
    r = run_exe(argv)
    assert r.returncode == EXIT_USAGE, r
    assert r.stdout == b""
    assert r.stderr.startswith(b"mmemu: error: ") and r.stderr.count(b"\n") == 1, r.stderr
    assert b"Traceback" not in r.stderr
    for needle in needles:
        assert needle in r.stderr, (needle, r.stderr)


# --------------------------------------------------------------------------------------
# What the kernel accepts is accepted with the kernel's meaning
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("same", [
    (["--ram", "1G"], ["--ram", "01G"], ["--ram", "0x40000000"], ["--ram", "010000000000"], ["--ram", "1GiB"],
     ["--ram", "1048576k"]),
    (["--cmdline", "vmalloc=128M"], ["--cmdline", "vmalloc=0200M"], ["--cmdline", "vmalloc=0x8000000"]),
    (["--cpus", "2"], ["--cpus", " 2 "], ["--option", "NR_CPUS=2", "--cpus", "2"]),
    (["--kernel", "3.10"], ["--kernel", "v3.10"], ["--kernel", "3.10.0-1160-generic"]),
])
def test_kernel_spellings_mean_what_they_mean_to_the_kernel(capsys, same):
    outs = set()
    for extra in same:
        code, out, err = run(capsys, ["layout", "--arch", "i386", "--kernel", "3.10", "--ram", "1G", *extra])
        assert code == 0, (extra, err)
        outs.add(out)
    assert len(outs) == 1


def test_x86_64_cpu_bound_is_nr_cpus_max(capsys):
    from mmemu_x86_64.layout import NR_CPUS_MAX, compute_layout_64

    from mmemu.layout import MachineSpec

    assert NR_CPUS_MAX == 8192  # arch/x86/Kconfig: NR_CPUS_RANGE_END with CONFIG_MAXSMP
    code, _, err = run(capsys, ["layout", "--arch", "x86_64", "--cpus", "8192"])
    assert code == 0, err
    # the API is bounded too, before anything per CPU is computed
    with pytest.raises(ConfigError, match="CPU count 1000000000 is more than x86_64 allows: NR_CPUS is at most 8192"):
        compute_layout_64(MachineSpec.make("x86_64", cpus=10**9), 4)


# --------------------------------------------------------------------------------------
# Output that cannot be written: exit 74 and one line; a reader gone away: quiet
# --------------------------------------------------------------------------------------

needs_dev_full = pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full")


@needs_dev_full
@pytest.mark.parametrize("argv", [["arches"], ["arches", "--json"], ["layout"], ["layout", "--json"], ["--help"],
                                  ["layout", "--help"], ["ptdump", "--arch", "x86_64", "--ram", "4G"]])
def test_output_to_a_full_device_is_an_io_error(argv):
    """Small outputs fail only when stdout is flushed (formerly at interpreter shutdown,
    "Exception ignored"), a ptdump fails in the middle of writing: both exit 74."""
    with open("/dev/full", "wb") as full:
        r = run_exe(argv, stdout=full)
    assert r.returncode == EXIT_IOERR, r.stderr
    assert r.stderr == b"mmemu: error: cannot write output: No space left on device\n", r.stderr


def test_closed_stdout_is_an_io_error():
    r = subprocess.run([MMEMU, "arches"], stderr=subprocess.PIPE, timeout=120, preexec_fn=lambda: os.close(1))
    assert r.returncode == EXIT_IOERR, r.stderr
    assert r.stderr == b"mmemu: error: cannot write output: standard output is closed\n", r.stderr


class _FailingStdout:
    def __init__(self, exc: OSError):
        self.exc = exc

    def write(self, text):
        raise self.exc

    def flush(self):
        pass


def test_write_error_in_process(monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdout", _FailingStdout(OSError(errno.EIO, "Input/output error")))
    assert main(["arches"]) == EXIT_IOERR
    assert capsys.readouterr().err == "mmemu: error: cannot write output: Input/output error\n"


def test_broken_pipe_in_process_is_quiet(monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdout", _FailingStdout(BrokenPipeError(errno.EPIPE, "Broken pipe")))
    assert main(["arches"]) == 0
    assert capsys.readouterr().err == ""


def test_broken_pipe_through_the_executable_is_quiet():
    read_end, write_end = os.pipe()
    os.close(read_end)  # nobody will ever read: the first write is EPIPE
    try:
        r = subprocess.run([MMEMU, "layout", "--json"], stdout=write_end, stderr=subprocess.PIPE, timeout=120)
    finally:
        os.close(write_end)
    assert r.returncode == 0 and r.stderr == b"", r.stderr


def test_internal_error_is_still_70_and_one_line(monkeypatch, capsys):
    import mmemu.cli as cli

    def boom(args):
        raise RuntimeError("line one\nline two")

    monkeypatch.setattr(cli, "cmd_arches", boom)  # build_parser() binds it when main() runs
    code, out, err = run(capsys, ["arches"])
    assert code == EXIT_INTERNAL
    assert err.startswith("mmemu: internal error: RuntimeError: line one\\nline two") and err.count("\n") == 1, err


# --------------------------------------------------------------------------------------
# Seeded mutations of valid command lines: exit 0 or 2, never 70, never a traceback
# --------------------------------------------------------------------------------------

VALID = [
    ["layout", "--arch", "i386", "--kernel", "3.10", "--ram", "1G"],
    ["layout", "--arch", "x86_64", "--kernel", "6.6", "--ram", "4G", "--cpus", "4"],
    ["layout", "--arch", "i386_pae", "--kernel", "2.6.12", "--ram", "0x80000000", "--cmdline", "vmalloc=0200M nopse"],
    ["layout", "--arch", "x86_64", "--kernel", "5.1", "--option", "levels=5", "--json"],
    ["layout", "--arch", "i386", "--kernel", "4.14", "--cpus", "2", "--option", "NR_CPUS=8", "--option", "VMSPLIT=2G"],
    ["layout", "--arch", "i386", "--kernel", "6.6", "--ram", "768M", "--cmdline", "mem=512M vmalloc=192M"],
    ["arches"],
    ["arches", "--json"],
    # these boot a machine (a tenth of a second each)
    ["vtop", "0xc0000000", "--arch", "i386", "--kernel", "3.10", "--ram", "1G"],
    ["vtop", "ffff888000123456", "--arch", "x86_64", "--ram", "4G", "--json"],
    ["ptdump", "--arch", "i386_pae", "--kernel", "4.14", "--ram", "2G", "--cmdline", "nopse"],
]

# Other scripts' digits with the same value: what Python's int() would quietly accept.
UNICODE_DIGITS = ["\u0660", "\uff10", "\u0966", "\U0001d7ce", "\u09e6", "\u06f0"]  # + value
ODD_CHARS = [" ", "\t", "\n", "\x00", "\xa0", "\u2003", "\u3000", "\x1c", "\u200b", "\ufeff", "-", "=", "0",
             "x", "\udcff", "'", '"', "\\", "--"]


def _mutate_text(rng: random.Random, s: str) -> str:
    op = rng.randrange(9)
    i = rng.randrange(len(s) + 1)
    if op == 0 and s:  # delete a character
        i = min(i, len(s) - 1)
        return s[:i] + s[i + 1:]
    if op == 1 and s:  # duplicate one
        i = min(i, len(s) - 1)
        return s[:i] + s[i] + s[i:]
    if op == 2 and len(s) > 1:  # swap two neighbours
        i = min(i, len(s) - 2)
        return s[:i] + s[i + 1] + s[i] + s[i + 2:]
    if op == 3:  # a digit becomes the same digit of another script
        digits = [j for j, c in enumerate(s) if "0" <= c <= "9"]
        if digits:
            j = rng.choice(digits)
            return s[:j] + chr(ord(rng.choice(UNICODE_DIGITS)) + int(s[j])) + s[j + 1:]
    if op == 4:  # insert a blank, a NUL, a separator...
        return s[:i] + rng.choice(ODD_CHARS) + s[i:]
    if op == 5:  # truncate
        return s[:i]
    if op == 6 and s:  # replace a character by any
        i = min(i, len(s) - 1)
        return s[:i] + rng.choice(ODD_CHARS + [chr(rng.randrange(0x20, 0x7f)), chr(rng.randrange(0x80, 0x3000))]) \
            + s[i + 1:]
    if op == 7:  # a digit more
        return s[:i] + rng.choice("0123456789") + s[i:]
    return ""  # empty


def mutate(rng: random.Random, argv: list[str]) -> list[str]:
    argv = list(argv)
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        op = rng.randrange(14)
        if op < 10 and argv:  # inside one argument, an option's value more often than a name
            values = [k for k, a in enumerate(argv) if k and not a.startswith("-")]
            k = rng.choice(values) if values and rng.random() < 0.8 else rng.randrange(len(argv))
            argv[k] = _mutate_text(rng, argv[k])
        elif op == 10 and argv:  # drop an argument (an option loses its value)
            del argv[rng.randrange(len(argv))]
        elif op == 11 and argv:  # repeat one
            k = rng.randrange(len(argv))
            argv.insert(k, argv[k])
        elif op == 12 and len(argv) > 1:  # swap two
            a, b = rng.sample(range(len(argv)), 2)
            argv[a], argv[b] = argv[b], argv[a]
        else:  # cut the command line short
            argv = argv[:rng.randrange(len(argv) + 1)]
    return argv


FUZZ_N = int(os.environ.get("MMEMU_FUZZ_N", "200"))
FUZZ_SEED = int(os.environ.get("MMEMU_FUZZ_SEED", "20240611"))


def test_seeded_mutations_of_valid_command_lines(capsys):
    for argv in VALID:  # the seeds themselves are valid
        code, _, err = run(capsys, argv)
        assert code == 0, (argv, err)
    rng = random.Random(FUZZ_SEED)
    failures = []
    seen = {0: 0, 2: 0}
    for n in range(FUZZ_N):
        argv = mutate(rng, rng.choice(VALID))
        code, out, err = run(capsys, argv)
        ok = code in (0, EXIT_USAGE) and "Traceback" not in err and "internal error" not in err
        if code == EXIT_USAGE:
            ok = ok and out == "" and err.startswith("mmemu: error: ") and err.count("\n") == 1
        elif code == 0:
            ok = ok and err == ""
        if not ok:
            failures.append(f"#{n} {argv!r} -> {code}: {err.strip()[:300]}")
        seen[code] = seen.get(code, 0) + 1
    assert not failures, f"seed {FUZZ_SEED}, {len(failures)} of {FUZZ_N}:\n" + "\n".join(failures[:30])
    if FUZZ_N >= 50:  # the mutations reach both outcomes
        assert seen[0] and seen[2], seen


def test_seeded_mutations_through_the_executable():
    """A few of the mutations as a shell runs them (arguments with NUL cannot be passed)."""
    rng = random.Random(FUZZ_SEED + 1)
    done = 0
    while done < max(3, FUZZ_N // 40):
        argv = mutate(rng, rng.choice(VALID))
        if any("\x00" in a for a in argv):
            continue
        r = run_exe([a.encode("utf-8", "surrogateescape") for a in argv])
        assert r.returncode in (0, EXIT_USAGE), (argv, r.returncode, r.stderr)
        assert b"Traceback" not in r.stderr and b"internal error" not in r.stderr, (argv, r.stderr)
        if r.returncode == EXIT_USAGE:
            assert r.stderr.startswith(b"mmemu: error: ") and r.stderr.count(b"\n") == 1, (argv, r.stderr)
        done += 1
