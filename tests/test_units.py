"""mmemu.units: sizes as the kernel's memparse() reads them, addresses, counts and kernel
versions, ASCII only, and never anything but a ConfigError for bad text."""

from __future__ import annotations

import re

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from mmemu.errors import ConfigError
from mmemu.units import GiB, KernelVersion, KiB, MiB, check_ascii, memparse, parse_address, parse_count

U64 = 1 << 64


# --------------------------------------------------------------------------------------
# A model of the kernel's memparse(), line by line from lib/cmdline.c and lib/vsprintf.c /
# lib/kstrtox.c (simple_strtoull -> _parse_integer_fixup_radix, _parse_integer), without
# the 64-bit wrap-around: returns (value, number of digits read, suffix read?, rest).
# --------------------------------------------------------------------------------------

def _isxdigit(c: str) -> bool:
    return c != "" and c in "0123456789abcdefABCDEF"


def kernel_memparse(s: str) -> tuple[int, int, bool, str]:
    base = 0
    # _parse_integer_fixup_radix(s, &base) with base 0
    if s[:1] == "0":
        base = 16 if s[1:2].lower() == "x" and _isxdigit(s[2:3]) else 8
    else:
        base = 10
    if base == 16:
        s = s[2:]
    # _parse_integer(): '0'..'9' and 'a'..'f' (c | 0x20), stop at the first value >= base
    value = digits = 0
    while s:
        c = s[0]
        lc = chr(ord(c) | 0x20)
        if "0" <= c <= "9":
            v = ord(c) - ord("0")
        elif "a" <= lc <= "f":
            v = ord(lc) - ord("a") + 10
        else:
            break
        if v >= base:
            break
        value = value * base + v
        digits += 1
        s = s[1:]
    # memparse()'s switch on *endptr: E P T G M K fall through to each smaller shift
    shifts = {"e": 60, "p": 50, "t": 40, "g": 30, "m": 20, "k": 10}
    if s[:1].lower() in shifts and s[:1] != "":
        return value << shifts[s[0].lower()], digits, True, s[1:]
    return value, digits, False, s


def test_kernel_model_reads_the_kernel_examples():
    # the model itself, on what the kernel's own code does with these
    assert kernel_memparse("0200M") == (128 * MiB, 4, True, "")  # octal
    assert kernel_memparse("09G") == (0, 1, False, "9G")  # '9' stops an octal number
    assert kernel_memparse("0x1E") == (30, 2, False, "")  # E is a hex digit after 0x
    assert kernel_memparse("0xG") == (0, 1, False, "xG")  # 0x without a hex digit: octal 0
    assert kernel_memparse("4 G") == (4, 1, False, " G")


# --------------------------------------------------------------------------------------
# memparse
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("text,value", [
    ("512M", 512 * MiB), ("4G", 4 * GiB), ("64g", 64 * GiB), ("1k", KiB), ("2T", 2 << 40), ("1P", 1 << 50),
    ("1E", 1 << 60), ("15E", 15 << 60), ("4096", 4096), ("0", 0), ("00", 0),
    # a leading 0 is octal, as simple_strtoull(..., 0) reads it (the reported 01G and 0200M)
    ("01G", GiB), ("0200M", 128 * MiB), ("010", 8), ("077k", 63 * KiB),
    # 0x is hexadecimal; after it E and B are hex digits, as in the kernel
    ("0x1000", 0x1000), ("0X10M", 16 * MiB), ("0x1E", 0x1E), ("0x1B", 0x1B), ("0x1G", GiB),
    ("0xffffffffffffffff", U64 - 1), ("01777777777777777777777", U64 - 1),
    # mmemu's own: a trailing B or iB, blanks around the whole
    ("1GiB", GiB), ("1gb", GiB), ("4096B", 4096), ("512MB", 512 * MiB), (" 4G ", 4 * GiB), ("4G\n", 4 * GiB),
])
def test_memparse_values(text, value):
    assert memparse(text) == value


@pytest.mark.parametrize("text,why", [
    ("09G", "leading 0 makes the number octal"), ("08", "8 is not an octal digit"),
    ("0x", "expected a number"), ("0xG", "expected a number"), ("4 G", "expected a number"),
    ("-1G", "expected a number"), ("+1G", "expected a number"), ("", "expected a number"),
    ("M", "expected a number"), ("1KK", "expected a number"), ("1iB", "expected a number"),
    ("1.5G", "expected a number"), ("1_000", "expected a number"), ("12Q", "expected a number"),
    ("16E", "too large"), ("0x10000000000000000", "too large"), ("02000000000000000000000", "too large"),
    ("9" * 5000, "too large"),  # more digits than int() converts (Python's int_max_str_digits)
    ("４G", "U+FF14 FULLWIDTH DIGIT FOUR"), ("٤G", "U+0664 ARABIC-INDIC DIGIT FOUR"),
    ("\xa04G", "U+00A0 NO-BREAK SPACE"), ("4\u2003G", "U+2003 EM SPACE"), ("4G\x00", "control character"),
])
def test_memparse_refusals_name_field_and_text(text, why):
    with pytest.raises(ConfigError) as e:
        memparse(text, what="RAM size")
    msg = str(e.value)
    assert "RAM size" in msg and why in msg, msg
    assert "\n" not in msg
    assert repr(text)[:30] in msg or "characters)" in msg  # the offending text, quoted (cut if long)


_SIZE_ALPHABET = "0123456789abcdefxXkKmMgGtTpPeEiIbB -+_.\t"


@settings(max_examples=1000, deadline=None)
@given(st.text(alphabet=_SIZE_ALPHABET, max_size=12))
@example("0200M")
@example("0x1E")
@example("0x1eB")
@example("0xe")
@example("07e")
def test_memparse_accepts_what_the_kernel_reads_whole_with_its_meaning(text):
    """mmemu accepts exactly the texts the kernel's memparse() reads to the end (with at
    least one digit, and an optional B or, after a suffix, iB), with the kernel's value;
    everything else is a ConfigError (never a wrong value, never another exception)."""
    s = text.strip(" \t")
    value, digits, suffixed, rest = kernel_memparse(s)
    whole = digits > 0 and (rest.lower() in ("", "b") or (suffixed and rest.lower() == "ib"))
    try:
        got = memparse(text)
    except ConfigError:
        assert not whole or value >= U64, (text, value, rest)
    else:
        assert whole and got == value < U64, (text, got, value, rest)


# --------------------------------------------------------------------------------------
# parse_address, parse_count, KernelVersion.parse
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("text,value", [
    ("0xc0000000", 0xC0000000), ("c0000000", 0xC0000000), ("0XC0000000", 0xC0000000),
    ("0xffff_8880_0000_0000", 0xFFFF888000000000), ("ffffffffffffffff", U64 - 1), (" 1000 ", 0x1000),
    ("0" * 40 + "1", 1), (0x1000, 0x1000),
])
def test_parse_address_values(text, value):
    assert parse_address(text) == value


@pytest.mark.parametrize("text,why", [
    ("", "expected a hexadecimal"), ("0x", "expected a hexadecimal"), ("xyz", "expected a hexadecimal"),
    ("_", "expected a hexadecimal"), ("-0x10", "expected a hexadecimal"), ("0x1g", "expected a hexadecimal"),
    ("1" * 17, "wider than 64 bits"), ("0x1_0000_0000_0000_0000", "wider than 64 bits"), (1 << 64, "wider than 64"),
    (-1, "negative"), (True, "expected a hexadecimal"),
    ("٣", "U+0663 ARABIC-INDIC DIGIT THREE"), ("ｃ0000000", "U+FF43 FULLWIDTH LATIN SMALL LETTER C"),
    ("\xa0c0000000", "U+00A0 NO-BREAK SPACE"), ("c000\x000000", "control character"),
])
def test_parse_address_refusals(text, why):
    with pytest.raises(ConfigError) as e:
        parse_address(text, what="virtual address")
    assert "virtual address" in str(e.value) and why in str(e.value), str(e.value)


@pytest.mark.parametrize("text,value", [("1", 1), ("4", 4), ("8192", 8192), ("0", 0), (" 2 ", 2), (7, 7),
                                        ("999999999", 999999999)])
def test_parse_count_values(text, value):
    assert parse_count(text) == value


@pytest.mark.parametrize("text,why", [
    ("", "expected a whole number"), ("zero", "expected a whole number"), ("-1", "expected a whole number"),
    ("+3", "expected a whole number"), ("3_0", "expected a whole number"), ("0x10", "expected a whole number"),
    ("1.0", "expected a whole number"), ("010", "without leading zeros"), ("00", "without leading zeros"),
    ("1234567890", "too large"), ("9" * 5000, "too large"), (True, "expected a whole number"),
    ("٣", "U+0663 ARABIC-INDIC DIGIT THREE"), ("３", "U+FF13 FULLWIDTH DIGIT THREE"),
    ("3\xa0", "U+00A0 NO-BREAK SPACE"), ("\x003", "control character"),
])
def test_parse_count_refusals(text, why):
    with pytest.raises(ConfigError) as e:
        parse_count(text, what="CPU count")
    assert "CPU count" in str(e.value) and why in str(e.value), str(e.value)


@pytest.mark.parametrize("text,version", [
    ("6.6", (6, 6, 0)), ("v4.14", (4, 14, 0)), ("2.6.12", (2, 6, 12)), ("5.15.0-91-generic", (5, 15, 0)),
    ("6.6-rc1", (6, 6, 0)), ("6.6+", (6, 6, 0)), (" 3.10 ", (3, 10, 0)), ("4.020", (4, 20, 0)),
])
def test_kernel_version_values(text, version):
    v = KernelVersion.parse(text)
    assert (v.major, v.minor, v.patch) == version


@pytest.mark.parametrize("text,why", [
    ("", "expected e.g."), ("banana", "expected e.g."), ("6", "expected e.g."), ("6.", "expected e.g."),
    (".6", "expected e.g."), ("6.6.", "expected e.g."), ("6 .6", "expected e.g."), ("6.6 rc1", "expected e.g."),
    ("1234567.0", "more than 6 digits"), ("1" * 5000 + ".1", "more than 6 digits"),
    ("٦.٦", "U+0666 ARABIC-INDIC DIGIT SIX"), ("６.６", "U+FF16 FULLWIDTH DIGIT SIX"),
    ("6.6\xa0", "U+00A0 NO-BREAK SPACE"), ("6.6-rc١", "U+0661"), ("6.6\x00", "control character"),
])
def test_kernel_version_refusals(text, why):
    with pytest.raises(ConfigError) as e:
        KernelVersion.parse(text)
    assert "kernel version" in str(e.value) and why in str(e.value), str(e.value)


def test_kernel_version_compares_with_strings_and_refuses_unicode_there_too():
    assert KernelVersion.parse("4.14") < "4.20"
    with pytest.raises(ConfigError, match="kernel version"):
        KernelVersion.parse("4.14") < "٤.20"


def test_check_ascii_names_the_first_offending_character():
    assert check_ascii("vmalloc=256M nopse\t", "kernel command line") == "vmalloc=256M nopse\t"
    with pytest.raises(ConfigError, match=re.escape("'\\u2028' (U+2028 LINE SEPARATOR) is not ASCII")):
        check_ascii("a\u2028b", "kernel command line")
    with pytest.raises(ConfigError, match=re.escape("'\\x1c' (U+001C) is a control character")):
        check_ascii("a\x1cb", "kernel command line")  # str.split() would split there


def test_long_text_is_quoted_shortly():
    with pytest.raises(ConfigError) as e:
        memparse("x" * 10000, what="RAM size")
    assert len(str(e.value)) < 300 and "10000 characters" in str(e.value)


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=30))
def test_parsers_raise_only_config_errors(text):
    for parse in (memparse, parse_address, parse_count, KernelVersion.parse):
        try:
            parse(text)
        except ConfigError as e:
            assert "\n" not in str(e)
