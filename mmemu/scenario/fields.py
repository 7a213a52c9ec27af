"""The kinds of field a scenario step has, each checking and converting what the TOML file
gave: at load time (the shape: an expression that parses, a known choice, hex that is hex)
and at run time (the value: an expression's names, a reference to a bound process).
Every error says what the field wanted."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .expr import Expr, ExprError, parse


class FieldError(ValueError):
    """A field's value is wrong; the reader adds the file, the step and the field's name."""


@dataclass(frozen=True)
class Field:
    """A field; ``required`` unless it has a default."""

    help: str = ""
    default: object = None
    required: bool = False

    def load(self, raw):
        """The file's value checked for shape (kept for :meth:`value`)."""
        return raw

    def names(self, loaded) -> set[str]:
        """The bound names the value uses (checked against earlier steps' ``as``)."""
        return set()

    def value(self, loaded, run):
        """The value at run time."""
        return loaded


@dataclass(frozen=True)
class Int(Field):
    """An integer or an expression over bound names (``"buf + 0x1000"``)."""

    minimum: int | None = 0

    def load(self, raw):
        try:
            return parse(raw)
        except ExprError as exc:
            raise FieldError(f"{exc}; expected an integer or an expression such as \"buf + 0x1000\"") from None

    def names(self, loaded: Expr) -> set[str]:
        return loaded.names()

    def value(self, loaded: Expr, run):
        try:
            v = loaded.evaluate(run.values)
        except ExprError as exc:
            raise FieldError(str(exc)) from None
        if self.minimum is not None and v < self.minimum:
            raise FieldError(f"{loaded.text!r} is {v}, below {self.minimum}")
        return v


@dataclass(frozen=True)
class Str(Field):
    """A string, one of ``choices`` when given."""

    choices: tuple[str, ...] = ()

    def load(self, raw):
        if not isinstance(raw, str):
            raise FieldError(f"expected a string, not {_kind(raw)}")
        if self.choices and raw not in self.choices:
            raise FieldError(f"{raw!r} is not one of {', '.join(self.choices)}")
        if any(not c.isprintable() for c in raw):
            raise FieldError(f"{raw!r} holds unprintable characters")
        return raw


@dataclass(frozen=True)
class IntOrStr(Field):
    """A fixmap index: an enum name (``"FIX_KMAP_BEGIN"``) or an integer expression."""

    def load(self, raw):
        if isinstance(raw, str) and re.fullmatch(r"[A-Z_][A-Z0-9_]*", raw):
            return raw
        return Int().load(raw)

    def names(self, loaded) -> set[str]:
        return set() if isinstance(loaded, str) else loaded.names()

    def value(self, loaded, run):
        return loaded if isinstance(loaded, str) else Int().value(loaded, run)


@dataclass(frozen=True)
class Bool(Field):
    def load(self, raw):
        if not isinstance(raw, bool):
            raise FieldError(f"expected true or false, not {_kind(raw)}")
        return raw


@dataclass(frozen=True)
class Hex(Field):
    """Bytes as hex digits, blanks allowed between bytes (``"90 90 c3"``)."""

    def load(self, raw):
        if not isinstance(raw, str):
            raise FieldError(f"expected hex bytes such as \"90 c3\", not {_kind(raw)}")
        text = "".join(raw.split())
        if len(text) % 2 or not re.fullmatch(r"[0-9a-fA-F]*", text):
            raise FieldError(f"{raw[:40]!r} is not hex bytes (two hex digits a byte, e.g. \"90 c3\")")
        if len(text) > 2 * 65536:
            raise FieldError("more than 64 KiB of bytes")
        return bytes.fromhex(text)


@dataclass(frozen=True)
class Name(Field):
    """The name a step binds its result to (``as = "buf"``)."""

    def load(self, raw):
        if not isinstance(raw, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", raw):
            raise FieldError(f"{raw!r} is not a name (letters, digits and _, not starting with a digit)")
        return raw


@dataclass(frozen=True)
class Ref(Field):
    """A bound object of one kind: a ``process``, a ``page`` (a page can also be given as a
    pfn expression), a ``module``."""

    kind: str = "process"

    def load(self, raw):
        if self.kind == "page" and not (isinstance(raw, str) and re.fullmatch(r"[A-Za-z_]\w*", raw)):
            return Int().load(raw)
        return Name().load(raw)

    def names(self, loaded) -> set[str]:
        return loaded.names() if isinstance(loaded, Expr) else {loaded}

    def value(self, loaded, run):
        if isinstance(loaded, Expr):
            return Int().value(loaded, run)  # a pfn
        obj = run.objects.get(loaded)
        if obj is None and self.kind == "page" and isinstance(run.values.get(loaded), int):
            return run.values[loaded]  # a pfn bound as a number
        if obj is None or obj[0] != self.kind:
            what = f"a {obj[0]}" if obj else "not bound"
            raise FieldError(f"{loaded!r} is {what}, not a {self.kind}")
        return obj[1]


@dataclass(frozen=True)
class RefList(Field):
    kind: str = "page"

    def load(self, raw):
        if not isinstance(raw, list) or not raw:
            raise FieldError(f"expected a list of {self.kind}s, not {_kind(raw)}")
        if len(raw) > 4096:
            raise FieldError("more than 4096 entries")
        return [Ref(kind=self.kind).load(x) for x in raw]

    def names(self, loaded) -> set[str]:
        out: set[str] = set()
        for x in loaded:
            out |= Ref(kind=self.kind).names(x)
        return out

    def value(self, loaded, run):
        return [Ref(kind=self.kind).value(x, run) for x in loaded]


def _kind(raw) -> str:
    return {bool: "a boolean", int: "an integer", float: "a float", str: "a string", list: "a list",
            dict: "a table"}.get(type(raw), type(raw).__name__)
