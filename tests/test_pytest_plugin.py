"""The pytest plugin (mmemu.pytest_plugin), used as a module's author uses it: test files in a
directory of their own, run by pytest (pytester), the plugin found through its entry point.
The README's example runs as shown, on the command line's arches too, and its failing
assertion prints what the README says it prints."""

from __future__ import annotations

import pathlib
import re
import shutil

from test_readme import _matches

from mmemu.scenario.runner import EXAMPLE_MODULES

pytest_plugins = ["pytester"]

README = (pathlib.Path(__file__).resolve().parent.parent / "README.md").read_text()
SECTION = README.split("### Testing a module with pytest\n", 1)[1].split("\n## ", 1)[0]
# the example, a failing test, and what pytest prints for it
(_, EXAMPLE), (_, FAILING), (_, FAILURE) = re.findall(r"^```(\w*)\n(.*?)^```", SECTION, re.S | re.M)


def _run(pytester, *args):
    """pytest in the pytester's directory, without the cache and pytest-asyncio (unconfigured
    there, it warns)."""
    # (and without the snapshot plugin, whose session end removes a directory the outer
    # session still needs)
    return pytester.runpytest("-p", "no:cacheprovider", "-p", "no:asyncio", "-p", "no:textual-snapshot", *args)


def _lines(result) -> list[str]:
    return [line.rstrip() for line in result.outlines]


def test_the_readme_example_passes(pytester):
    pytester.makepyfile(test_my_module=EXAMPLE)
    result = _run(pytester, "-v")
    result.assert_outcomes(passed=4)
    out = result.stdout.str()
    assert "test_hello[i386-4.19] PASSED" in out and "test_vbuf PASSED" in out


def test_the_command_line_runs_each_test_on_every_arch_it_names(pytester):
    pytester.makepyfile(test_my_module=EXAMPLE)
    result = _run(pytester, "-v", "--mmemu-arch", "i386,x86_64")
    # test_vbuf twice; test_hello's parameters and test_vmalloc_on_i386's marker name their arch
    result.assert_outcomes(passed=5)
    out = result.stdout.str()
    for test in ("test_vbuf[i386]", "test_vbuf[x86_64]", "test_hello[x86_64]", "test_vmalloc_on_i386 "):
        assert f"{test.strip()} PASSED" in out, out


def test_a_failed_assertion_reads_as_the_readme_shows(pytester):
    pytester.makepyfile(test_where=FAILING)
    result = _run(pytester)
    result.assert_outcomes(failed=1)
    assert _matches(FAILURE.splitlines(), _lines(result)), "\n".join(_lines(result))


def test_the_other_assertions_say_what_they_found(pytester):
    pytester.makepyfile(test_failures="""
        def test_fault(kernel):
            kernel.assert_fault(kernel.vmalloc(4096), "write")

        def test_not_mapped(kernel):
            buf = kernel.vmalloc(4096)
            kernel.assert_not_mapped(buf)

        def test_log(kernel):
            kernel.insmod("hello")
            kernel.assert_log("hello: bye")
    """)
    result = _run(pytester)
    result.assert_outcomes(failed=3)
    result.stdout.fnmatch_lines([
        "E       AssertionError: assert_fault(0xffffc90000000000, access='write'): a write of 0xffffc90000000000 "
        "does not fault (phys 0x*)",
        "E       the walk in the kernel page table (x86_64 6.6), as crash's vtop prints it:",
        "E       AssertionError: assert_not_mapped(0xffffc90000000000): 0xffffc90000000000 is mapped to 0x*",
        "E       AssertionError: assert_log('hello: bye'): no kernel log line contains 'hello: bye'; "
        "the kernel log (the last 4 of 4 lines):",
        "E         hello: hello from a module (kernel 6.6.0, load 1)",
    ])


def test_which_machine_a_test_gets(pytester):
    """Key by key: the indirect parameter, then the markers (the test's over the class's over
    the module's), then the command line, then mmemu.boot's defaults."""
    pytester.makepyfile(test_machines="""
        import pytest

        pytestmark = pytest.mark.mmemu(ram="512M")

        def booted(kernel):
            assert kernel.arch.name == kernel.machine["arch"]
            return kernel.machine["arch"], kernel.machine["kernel"], kernel.machine["ram"], kernel.machine["cpus"]

        def test_the_command_line_and_the_module_marker(kernel):
            assert booted(kernel) == ("x86_64", "4.19", "512M", 1)

        @pytest.mark.mmemu(kernel="3.10", cpus=2)
        class TestClass:
            @pytest.mark.mmemu(arch="i386")
            def test_the_markers(self, kernel):
                assert booted(kernel) == ("i386", "3.10", "512M", 2)

            @pytest.mark.parametrize("kernel", ["i386_pae", {"ram": "1G", "kernel": "5.10"}], indirect=True)
            def test_the_parameter_over_the_markers(self, kernel):
                assert booted(kernel) in (("i386_pae", "3.10", "512M", 2), ("x86_64", "5.10", "1G", 2))

        @pytest.mark.parametrize("kernel", ["not the fixture"])
        def test_a_value_in_place_of_the_fixture(kernel):
            assert kernel == "not the fixture"

        @pytest.mark.mmemu(arhc="i386")
        def test_an_unknown_key(kernel):
            pass

        @pytest.mark.mmemu(arch="sparc")
        def test_an_arch_that_is_not_there(kernel):
            pass
    """)
    result = _run(pytester, "-v", "--mmemu-kernel", "4.19,6.6")
    # the first test on both command-line kernels (6.6 fails), the class's tests on the kernel
    # its marker names, the value once, the two wrong machines on both kernels
    result.assert_outcomes(passed=1 + 1 + 2 + 1, failed=1, errors=2 + 2)
    out = result.stdout.str()
    assert "test_the_command_line_and_the_module_marker[6.6] FAILED" in out
    assert "@pytest.mark.mmemu: unknown machine key 'arhc'; the keys are arch, kernel, ram, cpus, cmdline, " \
           "options" in out
    assert "the kernel fixture cannot boot {'arch': 'sparc'" in out and "sparc" in out


def test_insmod_finds_a_file_and_says_what_it_cannot_find(pytester):
    """A path as given, else from the test's directory; a bare name is an example module."""
    (pytester.path / "sub" / "build").mkdir(parents=True)
    shutil.copy(EXAMPLE_MODULES / "x86_64-6.6" / "hello.o", pytester.path / "sub" / "build" / "mine.o")
    pytester.makepyfile(**{"sub/test_files": """
        import pathlib

        import pytest

        def test_paths(kernel):
            m = kernel.insmod("build/mine.o")            # from the test's directory
            assert m.name == "hello" and kernel.find_module("hello") is m
            kernel.rmmod(m)                              # a Module or a name
            kernel.insmod(pathlib.Path(__file__).parent / "build" / "mine.o", run_init=False)
            assert kernel.k.modules[0].name == "hello"
            kernel.assert_log("hello: goodbye")

        def test_no_file(kernel):
            kernel.insmod("build/other.o")

        def test_no_example(kernel):
            kernel.insmod("helo")
    """})
    result = _run(pytester, "sub")
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines([
        "E*FileNotFoundError: insmod: no module file 'build/other.o' (nor '*/sub/build/other.o')",
        "E*: no module 'helo': a path, or one of the examples hello, highpage, kmap_nested, percpu, "
        "rodata_oops, vbuf",
    ])
