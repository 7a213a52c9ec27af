"""Sizes, addresses, counts and kernel versions as users write them, parsed strictly.

``memparse`` follows lib/cmdline.c ``memparse()``: ``simple_strtoull(ptr, &endptr, 0)`` (a
leading ``0x`` means hexadecimal, a leading ``0`` octal, as ``_parse_integer_fixup_radix()``
decides) followed by an optional K/M/G/T/P/E suffix, case-insensitive, binary multiples.
Where the kernel would stop early and quietly use a prefix (``09G`` is 0 to it, ``4 G`` is 4),
mmemu refuses the whole text instead.

Every parser here reads ASCII only: Python's ``\\d``, ``int()`` and ``str.split()`` accept
other scripts' digits (``٦``, ``６``) and blanks (U+00A0), the kernel's ``isdigit()`` and
``isspace()`` do not. Anything else is a :class:`ConfigError` naming the field and the text.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import total_ordering

from .errors import ConfigError

#: The page size of every arch mmemu models (4 KiB base pages: x86, RISC-V, arm64 with the
#: 4K granule). Defined here once; every module imports it.
PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30
TiB = 1 << 40

#: The blanks the kernel's isspace() knows in ASCII (include/linux/ctype.h, lib/ctype.c):
#: what may surround a value. Python's str.strip()/split() would also take U+00A0, U+2003...
ASCII_BLANKS = " \t\n\v\f\r"

_SUFFIX_SHIFT = {"": 0, "K": 10, "M": 20, "G": 30, "T": 40, "P": 50, "E": 60}
# The number as simple_strtoull(..., 0) reads it: 0x + hex digits (the kernel takes 0x as a
# prefix only when a hex digit follows), 0 + octal digits, or decimal; then one suffix
# letter (memparse's switch), then mmemu's own optional B / iB (1GiB, 4096B).
_SIZE_RE = re.compile(r"(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)(?:([KMGTPE])(i?B)?|(B))?", re.ASCII | re.I)
_U64 = 1 << 64


def shown(text: object, limit: int = 40) -> str:
    """*text* as an error message quotes it: ``repr`` (control characters escaped, so the
    message stays one line), cut after *limit* characters."""
    if isinstance(text, str) and len(text) > limit:
        return f"{text[:limit]!r}... ({len(text)} characters)"
    return repr(text)


def _describe(ch: str) -> str:
    name = unicodedata.name(ch, "")
    return f"{ch!r} (U+{ord(ch):04X}{' ' + name if name else ''})"


def check_ascii(text: str, what: str, example: str = "") -> str:
    """Return *text* if it is printable ASCII (blanks allowed); else raise :class:`ConfigError`
    naming *what*, the text and the first offending character (``６`` is FULLWIDTH DIGIT SIX,
    not a digit to the kernel)."""
    for ch in text:
        if ch in ASCII_BLANKS or " " <= ch <= "~":
            continue
        kind = "a control character" if unicodedata.category(ch) == "Cc" else "not ASCII"
        hint = f"; write it in ASCII, e.g. {example}" if example else "; only ASCII is accepted"
        raise ConfigError(f"malformed {what} {shown(text)}: {_describe(ch)} is {kind}{hint}")
    return text


def memparse(text: str, what: str = "size") -> int:
    """Parse a size the way the kernel's ``memparse()`` does (``512M``, ``4G``, ``0x1000``,
    ``0200M`` = 128 MiB: a leading 0 is octal, as to the kernel).

    Also accepts a trailing ``B``/``iB`` (``1GiB``), as people write it, and blanks around
    the whole. Raises :class:`ConfigError` naming *what* on anything else, and on sizes of
    64 bits or more (which the kernel's ``unsigned long long`` would wrap).
    """
    text = str(text)
    check_ascii(text, what, example="512M")
    s = text.strip(ASCII_BLANKS)
    m = _SIZE_RE.fullmatch(s)
    if not m:
        octal = re.fullmatch(r"0[0-7]*([89])[0-9]*[KMGTPE]?(i?B)?", s, re.ASCII | re.I)
        if octal:
            raise ConfigError(f"malformed {what} {shown(text)}: a leading 0 makes the number octal (as in the "
                              f"kernel's memparse), and {octal.group(1)} is not an octal digit")
        raise ConfigError(f"malformed {what} {shown(text)}: expected a number with an optional K/M/G/T/P/E suffix, "
                          f"e.g. 512M")
    number = m.group(1)
    suffix = (m.group(2) or "").upper()
    digits = number[2:] if number[:2].lower() == "0x" else number
    if len(digits.lstrip("0")) > 22:  # more than any 64-bit number needs, even in octal
        value = _U64
    else:
        value = int(number, 16 if number[:2].lower() == "0x" else 8 if number.startswith("0") else 10)
    value <<= _SUFFIX_SHIFT[suffix]
    if value >= _U64:
        raise ConfigError(f"{what} {shown(text)} is too large: 2^64 bytes or more (the kernel's memparse "
                          f"would overflow)")
    return value


def parse_address(text: str | int, what: str = "address") -> int:
    """Parse a virtual or physical address: hexadecimal, with or without ``0x``, as crash
    and the QEMU monitor read addresses (bare digits are hex); ``_`` separators allowed.
    At most 64 bits."""
    if isinstance(text, bool):
        raise ConfigError(f"malformed {what} {shown(text)}: expected a hexadecimal number such as 0xc0100000")
    if isinstance(text, int):
        value = text
    else:
        text = str(text)
        check_ascii(text, what, example="0xc0100000")
        s = text.strip(ASCII_BLANKS).replace("_", "")
        if s[:2].lower() == "0x":
            s = s[2:]
        if not s or not re.fullmatch(r"[0-9a-fA-F]+", s):
            raise ConfigError(f"malformed {what} {shown(text)}: expected a hexadecimal number such as 0xc0100000")
        if len(s.lstrip("0")) > 16:
            raise ConfigError(f"malformed {what} {shown(text)}: wider than 64 bits")
        value = int(s, 16)
    if value < 0:
        raise ConfigError(f"malformed {what} {shown(text)}: negative")
    if value >= _U64:
        raise ConfigError(f"malformed {what} {shown(text)}: wider than 64 bits")
    return value


#: Longest count parse_count reads: 9 digits (under a billion) is more than any NR_CPUS.
_COUNT_DIGITS = 9


def parse_count(text: "str | int", what: str = "count") -> int:
    """Parse a whole number written in decimal as Kconfig writes an ``int`` symbol
    (scripts/kconfig/symbol.c ``sym_string_valid()``: ASCII digits, no leading zero, no
    ``0x``): ``--cpus 4``, ``NR_CPUS=64``. An ``int`` passes through (``bool`` does not).
    Refuses signs, ``_``, non-ASCII digits and numbers of more than 9 digits with a
    :class:`ConfigError` naming *what*; range checks are the caller's."""
    if isinstance(text, bool):
        raise ConfigError(f"malformed {what} {shown(text)}: expected a whole number such as 4")
    if isinstance(text, int):
        return text
    text = str(text)
    check_ascii(text, what, example="4")
    s = text.strip(ASCII_BLANKS)
    if not re.fullmatch(r"[0-9]+", s, re.ASCII):
        raise ConfigError(f"malformed {what} {shown(text)}: expected a whole number such as 4")
    if len(s) > 1 and s.startswith("0"):
        raise ConfigError(f"malformed {what} {shown(text)}: write it in decimal without leading zeros, as Kconfig "
                          f"does (to the kernel's parsers a leading 0 means octal)")
    if len(s) > _COUNT_DIGITS:
        raise ConfigError(f"{what} {shown(text)} is too large (more than {_COUNT_DIGITS} digits)")
    return int(s, 10)


def format_size(n: int) -> str:
    """``1073741824`` -> ``1G``; exact binary units only, else the next smaller unit."""
    for unit, shift in (("E", 60), ("P", 50), ("T", 40), ("G", 30), ("M", 20), ("K", 10)):
        if n and n % (1 << shift) == 0:
            return f"{n >> shift}{unit}"
    return f"{n}B"


def human_size(n: int) -> str:
    """Size as mm.rst writes it: ``512 GB``, ``1520 MB``; ``~128 TB`` when the largest unit
    does not divide it (mm.rst's own way of writing 128 TB minus a page)."""
    units = (("EB", 60), ("PB", 50), ("TB", 40), ("GB", 30), ("MB", 20), ("kB", 10))
    for unit, shift in units:
        if n >= (1 << shift):
            whole, rest = divmod(n, 1 << shift)
            if not rest:
                return f"{whole} {unit}"
            value = n / (1 << shift)
            return f"~{value:.0f} {unit}" if value >= 10 else f"~{value:.1f} {unit}"
    return f"{n} B"


#: major.minor[.patch], then an optional local version of printable ASCII (``-rc1``,
#: ``-91-generic``, ``+``); ASCII digits only (``re.ASCII``: ``\d`` would take ``٦``).
_VERSION_RE = re.compile(r"v?([0-9]+)\.([0-9]+)(?:\.([0-9]+))?(?:[-+~][!-~]*)?", re.ASCII)


@total_ordering
@dataclass(frozen=True)
class KernelVersion:
    """A kernel release, ``major.minor[.patch]``; compares numerically (``4.14 < 4.20``)."""

    major: int
    minor: int
    patch: int = 0

    @classmethod
    def parse(cls, text: "str | KernelVersion") -> "KernelVersion":
        """``6.6``, ``v4.14``, ``2.6.12``, ``5.15.0-91-generic`` (a local version after
        ``-``, ``+`` or ``~`` is ignored); ASCII only, each number at most 6 digits."""
        if isinstance(text, KernelVersion):
            return text
        text = str(text)
        check_ascii(text, "kernel version", example="6.6")
        m = _VERSION_RE.fullmatch(text.strip(ASCII_BLANKS))
        if not m:
            raise ConfigError(f"malformed kernel version {shown(text)}: expected e.g. 2.6.12, 4.14 or 6.6")
        if any(g and len(g) > 6 for g in m.groups()):
            raise ConfigError(f"malformed kernel version {shown(text)}: a number of more than 6 digits")
        return cls(int(m.group(1)), int(m.group(2)), int(m.group(3) or 0))

    def _key(self) -> tuple[int, int, int]:
        return (self.major, self.minor, self.patch)

    def __lt__(self, other: object) -> bool:
        if isinstance(other, str):
            other = KernelVersion.parse(other)
        if not isinstance(other, KernelVersion):
            return NotImplemented
        return self._key() < other._key()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, str):
            other = KernelVersion.parse(other)
        if not isinstance(other, KernelVersion):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __ge__(self, other: object) -> bool:  # total_ordering needs __lt__ only, str too
        lt = self.__lt__(other)
        return NotImplemented if lt is NotImplemented else not lt

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}" + (f".{self.patch}" if self.patch else "")
