"""A safe evaluator for the success/failure conditions of an Argo Rollouts AnalysisTemplate.

Argo evaluates ``successCondition`` / ``failureCondition`` with the expr language (expr-lang/expr), with the
measurement bound to ``result``: for a Prometheus vector, the list of its sample values. This module parses the
subset such conditions use and nothing else (no ``eval``): numbers, ``true``/``false``, ``result``, indexing
(``result[0]``), ``+ - * /``, comparisons (``== != < <= > >=``), ``&&``/``and``, ``||``/``or`` (both
short-circuit), ``!``/``not``, parentheses and the functions ``isNaN``, ``isInf`` and ``len``. Anything else is a
`ConditionError` naming what and where, raised when the condition is compiled, before any measurement.

Example: ``Condition("isNaN(result[0]) || result[0] < 0.3").evaluate([0.12])`` is ``True``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

FUNCTIONS = {"isNaN": math.isnan, "isInf": math.isinf, "len": len}
_TOKEN = re.compile(
    r"\s*(?:(?P<number>\d+\.\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?|\d+(?:[eE][+-]?\d+)?)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<op>\|\||&&|==|!=|<=|>=|[<>!+\-*/()\[\]]))"
)
_COMPARE = {
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}
_ARITHMETIC = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b, "/": lambda a, b: a / b}


class ConditionError(ValueError):
    """A condition outside the supported subset, or a value it cannot be evaluated on (e.g. ``result[0]`` of an
    empty result: Argo calls that measurement an Error)."""


@dataclass(frozen=True)
class _Node:
    kind: str  # number | bool | result | call | index | unary | binary
    value: Any = None
    args: tuple[_Node, ...] = ()


def _tokenize(text: str) -> list[tuple[str, str, int]]:
    tokens, pos = [], 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        match = _TOKEN.match(text, pos)
        if not match or match.end() == pos:
            raise ConditionError(f"unsupported character {text[pos:].lstrip()[:1]!r} at column {pos + 1} in {text!r}")
        kind = match.lastgroup
        tokens.append((kind, match.group(kind), match.start(kind)))
        pos = match.end()
    return tokens


class _Parser:
    """Recursive descent, precedence low to high: or, and, comparison, + -, * /, unary, postfix, primary."""

    def __init__(self, text: str) -> None:
        self.text, self.tokens, self.i = text, _tokenize(text), 0

    def _peek(self) -> tuple[str, str, int] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def _accept(self, *values: str) -> str | None:
        token = self._peek()
        if token and token[0] in ("op", "name") and token[1] in values:
            self.i += 1
            return token[1]
        return None

    def _fail(self, what: str) -> ConditionError:
        token = self._peek()
        where = f"{token[1]!r} at column {token[2] + 1}" if token else "the end"
        return ConditionError(f"{what}, found {where} in {self.text!r}")

    def parse(self) -> _Node:
        node = self._or()
        if self._peek() is not None:
            raise self._fail("expected an operator or the end")
        return node

    def _or(self) -> _Node:
        node = self._and()
        while self._accept("||", "or"):
            node = _Node("binary", "or", (node, self._and()))
        return node

    def _and(self) -> _Node:
        node = self._comparison()
        while self._accept("&&", "and"):
            node = _Node("binary", "and", (node, self._comparison()))
        return node

    def _comparison(self) -> _Node:
        node = self._sum()
        op = self._accept(*_COMPARE)
        return _Node("binary", op, (node, self._sum())) if op else node

    def _sum(self) -> _Node:
        node = self._product()
        while op := self._accept("+", "-"):
            node = _Node("binary", op, (node, self._product()))
        return node

    def _product(self) -> _Node:
        node = self._unary()
        while op := self._accept("*", "/"):
            node = _Node("binary", op, (node, self._unary()))
        return node

    def _unary(self) -> _Node:
        if op := self._accept("!", "not", "-"):
            return _Node("unary", "not" if op in ("!", "not") else "-", (self._unary(),))
        return self._postfix()

    def _postfix(self) -> _Node:
        node = self._primary()
        while self._accept("["):
            node = _Node("index", None, (node, self._or()))
            if not self._accept("]"):
                raise self._fail("expected ']'")
        return node

    def _primary(self) -> _Node:
        token = self._peek()
        if token is None:
            raise self._fail("expected a value")
        kind, text, _ = token
        if kind == "number":
            self.i += 1
            return _Node("number", float(text))
        if self._accept("("):
            node = self._or()
            if not self._accept(")"):
                raise self._fail("expected ')'")
            return node
        if kind == "name" and text in ("true", "false"):
            self.i += 1
            return _Node("bool", text == "true")
        if kind == "name" and text == "result":
            self.i += 1
            return _Node("result")
        if kind == "name" and text in FUNCTIONS:
            self.i += 1
            if not self._accept("("):
                raise self._fail(f"expected '(' after {text}")
            argument = self._or()
            if not self._accept(")"):
                raise self._fail(f"{text} takes one argument: expected ')'")
            return _Node("call", text, (argument,))
        if kind == "name":
            raise ConditionError(
                f"unsupported name {text!r} at column {token[2] + 1} in {self.text!r} (supported: result, true, "
                f"false, and, or, not, {', '.join(FUNCTIONS)})"
            )
        raise self._fail("expected a value")


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConditionError(f"{where} needs a number, got {value!r}")
    return float(value)


def _boolean(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise ConditionError(f"{where} needs true or false, got {value!r}")
    return value


def _evaluate(node: _Node, result: Any) -> Any:
    if node.kind in ("number", "bool"):
        return node.value
    if node.kind == "result":
        return result
    if node.kind == "call":
        value = _evaluate(node.args[0], result)
        if node.value == "len":
            if not isinstance(value, list):
                raise ConditionError(f"len needs a list, got {value!r}")
            return len(value)
        return FUNCTIONS[node.value](_number(value, node.value))
    if node.kind == "index":
        seq, position = _evaluate(node.args[0], result), _number(_evaluate(node.args[1], result), "an index")
        if not isinstance(seq, list):
            raise ConditionError(f"cannot index {seq!r} (a scalar result has no [i])")
        if position != int(position) or not 0 <= position < len(seq):
            raise ConditionError(f"index {position:g} out of range for a result of {len(seq)} value(s)")
        return seq[int(position)]
    if node.kind == "unary":
        value = _evaluate(node.args[0], result)
        return not _boolean(value, "not") if node.value == "not" else -_number(value, "-")
    left = _evaluate(node.args[0], result)
    if node.value in ("and", "or"):  # short-circuit, like expr
        if _boolean(left, node.value) == (node.value == "or"):
            return left
        return _boolean(_evaluate(node.args[1], result), node.value)
    right = _evaluate(node.args[1], result)
    if node.value in ("==", "!=") and isinstance(left, bool) and isinstance(right, bool):
        return _COMPARE[node.value](left, right)
    a, b = _number(left, node.value), _number(right, node.value)
    if node.value == "/" and b == 0:
        return math.nan if a == 0 else math.copysign(math.inf, a)  # float division, as in Go
    return (_COMPARE | _ARITHMETIC)[node.value](a, b)


class Condition:
    """A compiled condition; `evaluate` returns a bool or raises `ConditionError`."""

    def __init__(self, text: str) -> None:
        if not isinstance(text, str) or not text.strip():
            raise ConditionError(f"a condition must be a non-empty string, got {text!r}")
        self.text = text
        self._tree = _Parser(text).parse()

    def evaluate(self, result: float | list[float]) -> bool:
        value = _evaluate(self._tree, result)
        if not isinstance(value, bool):
            raise ConditionError(f"{self.text!r} gives {value!r}, not true or false")
        return value
