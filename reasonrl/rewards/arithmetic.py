"""Arithmetic in text: a safe evaluator, and the check that an answer was worked out.

``evaluate`` computes an arithmetic expression on its syntax tree (never ``eval``): the
calculator tool's engine and the derivation check's. ``derived_values`` reads the
equations of a chain of thought (``48 / 2 = 24``, ``$5 x 3 = $15``, GSM8K's
``<<48/2=24>>``) and returns the results that were *worked out*:

    an equation counts when its left side evaluates to its right side, and at least one
    number on its left is a number of the question or a result counted before it.

So a final answer is derived when a correct calculation that starts from the question
produced it. A run that learns to write ``#### 42`` after any text (SmolLM2's prior
after ``####``; issue 23's faithfulness probe found it on 94% of rows) derives nothing.
"""

from __future__ import annotations

import ast
import math
import operator
import re

from reasonrl.rewards.checks import AST_LOCK


class NotArithmetic(ValueError):
    """The text is not an expression ``evaluate`` computes; the message says why."""


_BINARY = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_FUNCTIONS = {"sqrt": math.sqrt, "abs": abs, "round": round, "min": min, "max": max}


def evaluate(expression: str) -> int | float:
    """The value of ``expression``: numbers, + - * / // % ** (or ^), parentheses, sqrt, abs,
    round, min, max. Exponents are capped so ``9**9**9`` cannot hang the caller. Raises
    NotArithmetic for anything else, division by zero and overflow. Thread-safe."""
    with AST_LOCK:  # CPython's AST conversion is not (see rewards.checks)
        try:
            tree = ast.parse(expression.replace("^", "**"), mode="eval")
        except SyntaxError:
            raise NotArithmetic(f"cannot parse {expression!r}") from None
        try:
            return _value(tree.body)
        except ZeroDivisionError:
            raise NotArithmetic("division by zero") from None
        except (OverflowError, TypeError) as err:
            raise NotArithmetic(str(err)) from None


def _value(node: ast.AST) -> int | float:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _value(node.left), _value(node.right)
        if isinstance(node.op, ast.Pow) and (abs(right) > 64 or abs(left) > 1e6):
            raise NotArithmetic("exponent too large")
        return _BINARY[type(node.op)](left, right)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_value(node.operand))
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCTIONS:
        try:
            return _FUNCTIONS[node.func.id](*[_value(a) for a in node.args])
        except ValueError as err:  # sqrt(-1)
            raise NotArithmetic(f"{node.func.id}: {err}") from None
    raise NotArithmetic(f"{ast.unparse(node)!r} is not arithmetic")


# -- equations in a chain of thought --------------------------------------------------------

NUMBER = re.compile(r"(?<![\w.])-?\d[\d,]*(?:\.\d+)?")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}\b)")
_TIMES = re.compile(r"(?<=[\d)])\s*[x×]\s*(?=[\d($])")
# An equation: a run of expression characters (digits, operators, brackets, $, spaces) that
# holds an operator, then '=' and a number. Words end the left side ("She has 5 + 3 = 8").
_EQUATION = re.compile(r"([\d.$()+\-*/÷ ]*\d[\d.$()+\-*/÷ ]*)=\s*\$?\s*(-?\d+(?:\.\d+)?)")


def number(text: str) -> float | None:
    """``'1,000'`` -> 1000.0; None when ``text`` is no number."""
    try:
        return float(_THOUSANDS.sub("", text).replace(",", ""))
    except ValueError:
        return None


def numbers(text: str) -> list[float]:
    """Every number written in ``text`` (thousands separators read as such)."""
    return [n for n in (number(m) for m in NUMBER.findall(_THOUSANDS.sub("", text))) if n is not None]


def equations(text: str) -> list[tuple[str, float]]:
    """(left side as an expression, right side) of each equation in ``text``, in order."""
    text = _TIMES.sub("*", _THOUSANDS.sub("", text)).replace("÷", "/")
    found = []
    for left, right in _EQUATION.findall(text):
        expression = left.replace("$", "").strip()
        if re.search(r"\d\s*[-+*/]", expression):  # a calculation, not "x = 5"
            found.append((expression, float(right)))
    return found


def _close(value: float, target: float) -> bool:
    # results written rounded ("10 / 3 = 3.33") count: half a unit of the last written place
    return abs(value - target) <= max(1e-6 * max(1.0, abs(target)), 0.005 if target != int(target) else 0)


def _suffix_value(expression: str) -> int | float | None:
    """The value of the longest tail of ``expression`` that is arithmetic: a list number
    or a stray bracket before the calculation ("2. 5 + 3") is not part of it."""
    words = expression.split()
    for start in range(len(words)):
        try:
            return evaluate(" ".join(words[start:]))
        except NotArithmetic:
            continue
    return None


def derived_values(work: str, question: str | None) -> list[float]:
    """The results of ``work``'s correct equations that start from the question: each needs
    a left-side number that is the question's or an earlier counted result. With no
    question (None), every correct equation counts."""
    known = None if question is None else set(numbers(question))
    derived: list[float] = []
    for expression, result in equations(work):
        value = _suffix_value(expression)
        if value is None or not _close(float(value), result):
            continue
        if known is not None:
            if not any(_close(n, k) for n in numbers(expression) for k in known):
                continue
            known.add(result)
        derived.append(result)
    return derived


def is_derived(answer: str, work: str, question: str | None) -> bool:
    """True when the number ``answer`` is the result of a counted equation of ``work``."""
    target = number(answer.strip().rstrip("."))
    return target is not None and any(_close(v, target) for v in derived_values(work, question))
