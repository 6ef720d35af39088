"""The probe filter language: parsed and checked in Python, run in the kernel.

A filter decides in the BPF program, before a record is reserved, whether a
probe hit becomes an event.  The language is deliberately small::

    expr       := or
    or         := and ("||" and)*
    and        := unary ("&&" unary)*
    unary      := "!" unary | "(" expr ")" | comparison
    comparison := FIELD OP literal
    OP         := "==" | "!=" | "<" | "<=" | ">" | ">="
    literal    := ["-"] (DECIMAL | 0xHEX) | "quoted" | 'quoted'

Numbers are ASCII digits only; a decimal with a leading zero (``010``) is
refused, since C would read it as octal and Python refuses it: write
``8`` or ``0x8``.

Numeric fields compare with any operator against integer literals that fit
the field (a negative literal on an unsigned field is refused).  String
fields (``comm``) compare with ``==`` / ``!=`` against a quoted literal of
printable ASCII.

Safety: the tokenizer accepts only the tokens above, every identifier must
name a field the probe declares, and the C generated from the tree contains
nothing but those fields' C variables, operators of this grammar and integer
constants: a string literal is emitted as a sequence of byte comparisons, so
no character of the filter text is ever copied into the C program.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ..errors import InvalidArgument

__all__ = ["And", "Cmp", "FilterField", "Not", "Or", "compile_c", "parse"]

_TOKEN_RE = re.compile(
    r"""\s*(?:
      (?P<num>0[xX][0-9a-fA-F]+|[0-9]+)
    | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
    | (?P<str>"[^"\\]*"|'[^'\\]*')
    | (?P<op>==|!=|<=|>=|&&|\|\||[<>!()\-])
    )""",
    re.VERBOSE | re.ASCII,
)
_CMP_OPS = ("==", "!=", "<", "<=", ">", ">=")
MAX_LENGTH = 1024
MAX_DEPTH = 32


@dataclass(frozen=True, slots=True)
class FilterField:
    """What the filter needs to know about a field."""

    kind: str  # "int" or "str"
    size: int = 8  # bytes (int) or array length (str)
    signed: bool = False


@dataclass(frozen=True, slots=True)
class Cmp:
    field: str
    op: str
    value: int | bytes
    signed: bool = False


@dataclass(frozen=True, slots=True)
class Not:
    operand: Node


@dataclass(frozen=True, slots=True)
class And:
    left: Node
    right: Node


@dataclass(frozen=True, slots=True)
class Or:
    left: Node
    right: Node


Node = Cmp | Not | And | Or


def _tokenize(text: str) -> list[tuple[str, str, int]]:
    tokens, pos = [], 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN_RE.match(text, pos)
        if not m or m.end() == pos:
            start = len(text) - len(text[pos:].lstrip())
            raise InvalidArgument(
                f"filter {text!r}: unexpected {text[start : start + 10]!r} at "
                f"column {start + 1}; use fields, numbers, quoted strings, "
                "== != < <= > >= && || ! and parentheses"
            )
        kind = m.lastgroup or ""
        tokens.append((kind, m.group(kind), m.start(kind)))
        pos = m.end()
    return tokens


class _Parser:
    def __init__(self, text: str, fields: Mapping[str, FilterField]) -> None:
        self.text = text
        self.fields = fields
        self.tokens = _tokenize(text)
        self.pos = 0
        self.depth = 0

    def fail(self, what: str) -> InvalidArgument:
        if self.pos < len(self.tokens):
            where = f"at column {self.tokens[self.pos][2] + 1}"
        else:
            where = "at the end"
        return InvalidArgument(f"filter {self.text!r}: {what} {where}")

    def peek(self) -> tuple[str, str, int] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self, value: str) -> bool:
        tok = self.peek()
        if tok is not None and tok[0] == "op" and tok[1] == value:
            self.pos += 1
            return True
        return False

    def parse(self) -> Node:
        if not self.tokens:
            raise InvalidArgument(f"filter {self.text!r}: empty; give an expression")
        node = self.parse_or()
        if self.peek() is not None:
            raise self.fail(f"unexpected {self.peek()[1]!r}")  # type: ignore[index]
        return node

    def parse_or(self) -> Node:
        node = self.parse_and()
        while self.take("||"):
            node = Or(node, self.parse_and())
        return node

    def parse_and(self) -> Node:
        node = self.parse_unary()
        while self.take("&&"):
            node = And(node, self.parse_unary())
        return node

    def parse_unary(self) -> Node:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.fail(f"nested deeper than {MAX_DEPTH}")
        try:
            if self.take("!"):
                return Not(self.parse_unary())
            if self.take("("):
                node = self.parse_or()
                if not self.take(")"):
                    raise self.fail("expected ')'")
                return node
            return self.parse_cmp()
        finally:
            self.depth -= 1

    def parse_cmp(self) -> Node:
        tok = self.peek()
        if tok is None or tok[0] != "ident":
            raise self.fail("expected a field name")
        name = tok[1]
        field = self.fields.get(name)
        if field is None:
            known = ", ".join(sorted(self.fields))
            raise self.fail(f"unknown field {name!r} (fields: {known})")
        self.pos += 1
        op_tok = self.peek()
        if op_tok is None or op_tok[0] != "op" or op_tok[1] not in _CMP_OPS:
            raise self.fail(f"expected a comparison operator after {name!r}")
        op = op_tok[1]
        self.pos += 1
        value = self.parse_literal(name, field)
        if field.kind == "str" and op not in ("==", "!="):
            raise self.fail(f"string field {name!r} compares only with == or !=")
        return Cmp(name, op, value, field.signed)

    def parse_literal(self, name: str, field: FilterField) -> int | bytes:
        negative = self.take("-")
        tok = self.peek()
        if tok is None or tok[0] not in ("num", "str"):
            raise self.fail(f"expected a literal to compare {name!r} with")
        self.pos += 1
        if tok[0] == "str":
            if field.kind != "str" or negative:
                raise self.fail(f"numeric field {name!r} needs a number, not a string")
            raw = tok[1][1:-1]
            if not all(32 <= ord(c) < 127 for c in raw):
                raise self.fail(f"string for {name!r} must be printable ASCII")
            data = raw.encode("ascii")
            if len(data) >= field.size:
                raise self.fail(
                    f"string for {name!r} is longer than the field holds "
                    f"({field.size - 1} characters)"
                )
            return data
        if field.kind != "int":
            raise self.fail(f"string field {name!r} needs a quoted string")
        digits = tok[1]
        if digits[:2] in ("0x", "0X"):
            value = int(digits[2:], 16)
        elif len(digits) > 1 and digits[0] == "0":
            raise self.fail(
                f"number {digits!r} has a leading zero; write it in decimal "
                "without one, or in hex as 0x..."
            )
        else:
            value = int(digits, 10)
        value = -value if negative else value
        bits = field.size * 8
        lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1)
        if not field.signed:
            lo, hi = 0, (1 << bits) - 1
        if not lo <= value <= hi:
            kind = "signed" if field.signed else "unsigned"
            raise self.fail(
                f"literal {value} does not fit {name!r} ({kind} {bits}-bit: {lo}..{hi})"
            )
        return value


def parse(text: str, fields: Mapping[str, FilterField]) -> Node:
    """Parse and check ``text`` against the probe's ``fields``.

    Raises:
        InvalidArgument: anything outside the language, naming the culprit.
    """
    if not isinstance(text, str):
        raise InvalidArgument(f"filter {text!r}: expected a string expression")
    if len(text) > MAX_LENGTH:
        raise InvalidArgument(f"filter: longer than {MAX_LENGTH} characters")
    return _Parser(text, fields).parse()


def fields_used(node: Node) -> set[str]:
    """Names of the fields a filter tree reads."""
    if isinstance(node, Cmp):
        return {node.field}
    if isinstance(node, Not):
        return fields_used(node.operand)
    return fields_used(node.left) | fields_used(node.right)


def compile_c(node: Node, var: Callable[[str], str]) -> str:
    """Return the C boolean expression for ``node``.

    ``var(name)`` gives the C variable holding a field: an ``s64`` / ``u64``
    for numeric fields, a ``char`` array for string fields.
    """
    if isinstance(node, Not):
        return f"!({compile_c(node.operand, var)})"
    if isinstance(node, And):
        return f"({compile_c(node.left, var)} && {compile_c(node.right, var)})"
    if isinstance(node, Or):
        return f"({compile_c(node.left, var)} || {compile_c(node.right, var)})"
    v = var(node.field)
    if isinstance(node.value, bytes):
        data = node.value + b"\0"
        eq = " && ".join(f"{v}[{i}] == {b}" for i, b in enumerate(data))
        return f"({eq})" if node.op == "==" else f"!({eq})"
    if not node.signed:
        lit = f"{node.value}ULL"
    elif node.value == -(1 << 63):
        lit = f"({node.value + 1}LL - 1)"
    else:
        lit = f"{node.value}LL"
    return f"({v} {node.op} {lit})"
