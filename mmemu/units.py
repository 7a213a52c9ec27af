"""Sizes, addresses and kernel versions as users write them, parsed strictly.

``memparse`` follows lib/cmdline.c: a number (C base prefixes allowed) followed by an
optional K/M/G/T/P/E suffix, case-insensitive, binary multiples.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import total_ordering

from .errors import ConfigError

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30
TiB = 1 << 40

_SUFFIX_SHIFT = {"": 0, "K": 10, "M": 20, "G": 30, "T": 40, "P": 50, "E": 60}
_SIZE_RE = re.compile(r"^\s*(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)\s*([KMGTPE]?)(i?B)?\s*$", re.I)


def memparse(text: str, what: str = "size") -> int:
    """Parse a size the way the kernel's ``memparse()`` does (``512M``, ``4G``, ``0x1000``).

    Also accepts a trailing ``B``/``iB`` (``1GiB``), as people write it. Raises
    :class:`ConfigError` naming *what* on anything else.
    """
    m = _SIZE_RE.match(str(text))
    if not m:
        raise ConfigError(f"malformed {what} {text!r}: expected a number with an optional K/M/G/T suffix, e.g. 512M")
    number, suffix = m.group(1), m.group(2).upper()
    return int(number, 0) << _SUFFIX_SHIFT[suffix]


def parse_address(text: str | int, what: str = "address") -> int:
    """Parse a virtual or physical address: hexadecimal, with or without ``0x``, as crash
    and the QEMU monitor read addresses (bare digits are hex); ``_`` separators allowed."""
    if isinstance(text, int):
        value = text
    else:
        s = str(text).strip().replace("_", "")
        if s.lower().startswith("0x"):
            s = s[2:]
        if not s or not re.fullmatch(r"[0-9a-fA-F]+", s):
            raise ConfigError(f"malformed {what} {text!r}: expected a hexadecimal number such as 0xc0100000")
        value = int(s, 16)
    if value < 0:
        raise ConfigError(f"malformed {what} {text!r}: negative")
    return value


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


@total_ordering
@dataclass(frozen=True)
class KernelVersion:
    """A kernel release, ``major.minor[.patch]``; compares numerically (``4.14 < 4.20``)."""

    major: int
    minor: int
    patch: int = 0

    @classmethod
    def parse(cls, text: "str | KernelVersion") -> "KernelVersion":
        if isinstance(text, KernelVersion):
            return text
        m = re.fullmatch(r"\s*v?(\d+)\.(\d+)(?:\.(\d+))?(?:[-+~].*)?\s*", str(text))
        if not m:
            raise ConfigError(f"malformed kernel version {text!r}: expected e.g. 2.6.12, 4.14 or 6.6")
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
