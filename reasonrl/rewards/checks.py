"""Test cases the parent process checks itself, so a program cannot forge its score.

A test is Python source ending in an ``assert``: ``assert add(1, 2) == 3``, ``assert
is_prime(7)``, ``x = Stack(); x.push(1)\\nassert x.pop() == 1``. It is split here, in
the trusted process, into

    setup       the statements before the assert (run in the sandbox, after the program)
    expression  the left side, evaluated in the sandbox and sent back as plain data
    operator    ==, !=, <, <=, >, >=, in, not in, is, is not (or "truthy" / "falsy")
    expected    the right side, a literal evaluated here, never sent into the sandbox

The sandbox reports values, never verdicts: a program that writes results of its own,
returns an object equal to everything, or crashes after forging output cannot pass a
test without producing the expected value, which it never sees. A right side that is
not a literal (``assert f(3) == 2 * 3``) is evaluated in a second sandbox run that holds
no program.
"""

from __future__ import annotations

import ast
import math
import operator
import threading
from dataclasses import dataclass
from typing import Any

# CPython 3.11.7's AST conversion is not thread-safe: parsing in two threads at once can
# raise "SystemError: AST constructor recursion depth mismatch" (seen when the program
# reward scored two completions in parallel). Every parse and unparse here takes this lock.
AST_LOCK = threading.Lock()

OPERATORS = {
    ast.Eq: ("==", operator.eq),
    ast.NotEq: ("!=", operator.ne),
    ast.Lt: ("<", operator.lt),
    ast.LtE: ("<=", operator.le),
    ast.Gt: (">", operator.gt),
    ast.GtE: (">=", operator.ge),
    ast.In: ("in", lambda a, b: a in b),
    ast.NotIn: ("not in", lambda a, b: a not in b),
    ast.Is: ("is", lambda a, b: a is b),
    ast.IsNot: ("is not", lambda a, b: a is not b),
}
NO_EXPECTED = object()  # for truthy / falsy checks


class InvalidCheck(ValueError):
    """A test that cannot be checked from outside the sandbox."""


@dataclass
class Check:
    setup: str  # statements run before the expression
    expression: str  # evaluated in the sandbox; its value comes back as plain data
    op: str  # a key of the comparison table, or "truthy" / "falsy"
    expected_source: str | None  # the other side's source (None for truthy / falsy)
    expected: Any = NO_EXPECTED  # the other side's value, once known
    expected_first: bool = False  # the literal was the left side: ``'x' not in found``

    @property
    def literal(self) -> bool:
        return self.expected is not NO_EXPECTED or self.expected_source is None


def parse_check(test: str, index: int = 0) -> Check:
    """Split ``test`` (Python source whose last statement is an assert) into a Check."""
    with AST_LOCK:
        return _parse_check(test, index)


def _parse_check(test: str, index: int) -> Check:
    try:
        tree = ast.parse(test)
    except SyntaxError as err:
        raise InvalidCheck(f"test {index}: not valid Python ({err.msg}, line {err.lineno})") from None
    if not tree.body or not isinstance(tree.body[-1], ast.Assert):
        raise InvalidCheck(f"test {index}: the last statement must be an assert, got {test!r}")
    last = tree.body[-1]
    setup = "\n".join(ast.unparse(node) for node in tree.body[:-1])
    condition = last.test
    if isinstance(condition, ast.Compare) and len(condition.ops) == 1:
        op = OPERATORS.get(type(condition.ops[0]))
        if op is not None:
            left, right = condition.left, condition.comparators[0]
            flipped = _literal(left) is not NO_EXPECTED and _literal(right) is NO_EXPECTED
            value_side, other = (right, left) if flipped else (left, right)
            check = Check(setup, ast.unparse(value_side), op[0], ast.unparse(other), expected_first=flipped)
            check.expected = _literal(other)  # NO_EXPECTED: evaluated in a run without the program
            return check
    if isinstance(condition, ast.UnaryOp) and isinstance(condition.op, ast.Not):
        return Check(setup, ast.unparse(condition.operand), "falsy", None)
    return Check(setup, ast.unparse(condition), "truthy", None)


def _literal(node: ast.AST) -> Any:
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return NO_EXPECTED


def plain(value: Any) -> Any:
    """JSON-decoded data with tuples as lists, so (1, 2) from a literal equals [1, 2] sent back."""
    if isinstance(value, tuple | list):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, set | frozenset):
        return sorted((plain(v) for v in value), key=repr)
    return value


def strictly_equal(a: Any, b: Any) -> bool:
    """Python's == on plain data, except that a bool equals only a bool (True is not 1)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(strictly_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(strictly_equal(a[k], b[k]) for k in a)
    return a == b


def holds(check: Check, value: Any) -> bool:
    """Whether the sandbox's ``value`` of the expression satisfies the check (here, in the parent)."""
    if check.op == "truthy":
        return value is True
    if check.op == "falsy":
        return value is False
    expected = plain(check.expected)
    if check.expected_first:  # compare(literal, value): swap, and mirror the order comparisons
        mirror = {"<": ">", "<=": ">=", ">": "<", ">=": "<="}
        if check.op in ("in", "not in"):
            try:
                found = expected in value
            except TypeError:
                return False
            return found if check.op == "in" else not found
        check = Check(check.setup, check.expression, mirror.get(check.op, check.op), None, check.expected)
    if check.op in ("is", "is not"):  # only None / True / False have an identity that survives JSON
        same = value is expected if expected in (None, True, False) else False
        return same if check.op == "is" else not same
    if (
        isinstance(value, float)
        and isinstance(expected, float)
        and math.isnan(value)
        and math.isnan(expected)
    ):
        return check.op == "!="
    if check.op in ("==", "!="):
        same = strictly_equal(value, expected)
        return same if check.op == "==" else not same
    compare = next(fn for name, fn in OPERATORS.values() if name == check.op)
    try:
        return bool(compare(value, expected))
    except TypeError:  # e.g. 3 < "a": a wrong answer, not a crash
        return False
