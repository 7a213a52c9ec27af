"""The expressions of a scenario: integers, names, ``+ - *`` and parentheses.

A scenario is data: someone else's scenario must not be able to run code, so expressions
are parsed here by a small recursive-descent parser and evaluated against the names the
scenario bound, never handed to ``eval``. Integers are written as Python and C write them
(``4096``, ``0x1000``, ``0o17``, ``0b101``, ``1_000``); names are identifiers, with dots for
the fields of a bound result (``buf``, ``page.pfn``, ``child.pid``).

Grammar::

    expr   := term (("+" | "-") term)*
    term   := unary ("*" unary)*
    unary  := "-" unary | atom
    atom   := INT | NAME | "(" expr ")"
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_TOKEN = re.compile(r"\s*(?:(?P<int>0[xX][0-9a-fA-F_]+|0[oO][0-7_]+|0[bB][01_]+|[0-9][0-9_]*)"
                    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)"
                    r"|(?P<op>[-+*()]))")
#: deeper nesting than this is refused (a scenario is not a stress test of the parser)
MAX_DEPTH = 64
#: longer expressions are refused
MAX_LENGTH = 1000


class ExprError(ValueError):
    """A malformed expression or an unknown name; the message says which and where."""


@dataclass(frozen=True)
class Expr:
    """A parsed expression: its text and its tree (nested tuples: ``("int", n)``,
    ``("name", s)``, ``("neg", e)``, ``(op, a, b)``)."""

    text: str
    tree: tuple

    def names(self) -> set[str]:
        """Every name the expression uses."""
        out: set[str] = set()

        def visit(node):
            if node[0] == "name":
                out.add(node[1])
            elif node[0] != "int":
                for child in node[1:]:
                    visit(child)
        visit(self.tree)
        return out

    def evaluate(self, names) -> int:
        """The value, with *names* mapping each name to an int."""
        def ev(node) -> int:
            kind = node[0]
            if kind == "int":
                return node[1]
            if kind == "name":
                try:
                    value = names[node[1]]
                except KeyError:
                    raise ExprError(f"{node[1]!r} is not defined (no earlier step binds it with 'as')") from None
                if isinstance(value, bool) or not isinstance(value, int):
                    raise ExprError(f"{node[1]!r} is a {type(value).__name__}, not a number")
                return value
            if kind == "neg":
                return -ev(node[1])
            a, b = ev(node[1]), ev(node[2])
            return a + b if kind == "+" else a - b if kind == "-" else a * b
        return ev(self.tree)


def parse(text: "str | int") -> Expr:
    """Parse *text* (an int passes through as a constant). Raises :class:`ExprError`."""
    if isinstance(text, bool):
        raise ExprError(f"{text!r} is not a number or an expression")
    if isinstance(text, int):
        return Expr(str(text), ("int", text))
    if not isinstance(text, str):
        raise ExprError(f"an expression is a string or an integer, not {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        raise ExprError(f"expression longer than {MAX_LENGTH} characters")
    tokens = []
    pos = 0
    stripped = text.rstrip()
    while pos < len(stripped):
        m = _TOKEN.match(stripped, pos)
        if m is None or m.end() == pos:
            raise ExprError(f"unexpected {stripped[pos:].lstrip()[:10]!r} at column {pos + 1} of {text!r}")
        if m.group("int") is not None:
            raw = m.group("int")
            if raw.endswith("_") or "__" in raw or (len(raw) > 1 and raw[0] == "0" and raw[1].isdigit()):
                raise ExprError(f"malformed integer {raw!r} in {text!r}")
            try:
                tokens.append(("int", int(raw, 0)))
            except ValueError:
                raise ExprError(f"malformed integer {raw!r} in {text!r}") from None
        elif m.group("name") is not None:
            tokens.append(("name", m.group("name")))
        else:
            tokens.append(("op", m.group("op")))
        pos = m.end()
    if not tokens:
        raise ExprError("empty expression")
    parser = _Parser(tokens, text)
    tree = parser.expr(0)
    if parser.i != len(tokens):
        raise ExprError(f"unexpected {_show(tokens[parser.i])} in {text!r}")
    return Expr(text, tree)


def _show(tok) -> str:
    return repr(str(tok[1]))


class _Parser:
    def __init__(self, tokens, text):
        self.tokens, self.text, self.i = tokens, text, 0

    def _peek(self):
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def expr(self, depth: int):
        if depth > MAX_DEPTH:
            raise ExprError(f"expression nested deeper than {MAX_DEPTH}: {self.text[:40]!r}...")
        node = self.term(depth)
        while (t := self._peek()) in (("op", "+"), ("op", "-")):
            self.i += 1
            node = (t[1], node, self.term(depth))
        return node

    def term(self, depth: int):
        node = self.unary(depth)
        while self._peek() == ("op", "*"):
            self.i += 1
            node = ("*", node, self.unary(depth))
        return node

    def unary(self, depth: int):
        if self._peek() == ("op", "-"):
            self.i += 1
            if depth > MAX_DEPTH:
                raise ExprError(f"expression nested deeper than {MAX_DEPTH}: {self.text[:40]!r}...")
            return ("neg", self.unary(depth + 1))
        return self.atom(depth)

    def atom(self, depth: int):
        t = self._peek()
        if t is None:
            raise ExprError(f"{self.text!r} ends where a number or a name should be")
        self.i += 1
        if t[0] in ("int", "name"):
            return t
        if t == ("op", "("):
            node = self.expr(depth + 1)
            if self._peek() != ("op", ")"):
                raise ExprError(f"missing ')' in {self.text!r}")
            self.i += 1
            return node
        raise ExprError(f"unexpected {_show(t)} in {self.text!r}")
