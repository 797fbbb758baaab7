"""Tools an agent can call, and the text format of a call.

A call is a JSON object between tags, the format of Hermes / Qwen chat templates:

    <tool_call>{"name": "calculator", "arguments": {"expression": "12 * (3 + 4)"}}</tool_call>

and, for small models, a short form with the tool's name as the tag:

    <calculator>12 * (3 + 4)</calculator>

Every tool takes one string and returns a string. A tool that raises, runs past its
time limit or returns too much is contained: the observation is the error text or the
truncated output, and the episode goes on.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass

from reasonrl.rewards.arithmetic import NotArithmetic, evaluate
from reasonrl.rewards.registry import RewardTimeout, call_with_time_limit

MAX_RESULT_CHARS = 2_000  # a tool's answer is cut to this (a 10 MB reply stays small)


@dataclass
class ToolCall:
    name: str
    argument: str  # the one string the tool takes
    text: str  # the call as written


class ToolError(Exception):
    """A call the model wrote wrongly, or a tool that failed: its text is the observation."""


# -- calculator: arithmetic on an AST, never eval -----------------------------------------


def calculate(expression: str) -> str:
    """The value of an arithmetic expression (``reasonrl.rewards.arithmetic.evaluate``: +
    - * / // % **, parentheses, sqrt, abs, round, min, max, on its syntax tree). In an
    equation (``12 * 3 = 36``) the left side is the expression: small models write the
    equation they expect."""
    expression = expression.split("=")[0].strip().rstrip(".")
    try:
        result = evaluate(expression.replace(",", ""))
    except NotArithmetic as err:
        raise ToolError(f"calculator: {err}") from None
    if isinstance(result, float) and result.is_integer() and abs(result) < 1e15:
        result = int(result)
    return str(result)


def python_tool(timeout: float = 5.0, allow_weak_sandbox: bool = False) -> Callable[[str], str]:
    """Run Python in the program sandbox (``reasonrl.rewards.sandbox``) and return what it
    printed, or the error."""
    from reasonrl.rewards.sandbox import require_sandbox, run_script

    require_sandbox(allow_weak_sandbox, "python tool")

    return lambda code: run_script(code, timeout=timeout, allow_weak=allow_weak_sandbox)


TOOLS: dict[str, Callable[..., Callable[[str], str]]] = {
    "calculator": lambda: calculate,
    "python": python_tool,
}
DESCRIPTIONS = {
    "calculator": "calculator: evaluates an arithmetic expression, e.g. 12 * (3 + 4) / 2",
    "python": "python: runs a Python program and returns what it prints",
}


def make_tools(names: list[str], **options) -> dict[str, Callable[[str], str]]:
    unknown = [n for n in names if n not in TOOLS]
    if unknown:
        raise ValueError(f"unknown tool(s) {unknown}; available: {sorted(TOOLS)}")
    return {n: TOOLS[n](**options.get(n, {})) for n in names}


_JSON_CALL = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.DOTALL)


def parse_tool_call(text: str, names: list[str]) -> ToolCall | None:
    """The first tool call in ``text``, or None when it makes none. A call that is there but
    malformed raises ToolError with what is wrong (the model reads it next turn)."""
    found = _JSON_CALL.search(text)
    if found:
        try:
            call = json.loads(found.group(1))
        except json.JSONDecodeError as err:
            raise ToolError(f"tool call is not valid JSON ({err.msg}): {found.group(1)[:200]!r}") from None
        if not isinstance(call, dict) or not isinstance(call.get("name"), str):
            raise ToolError('a tool call is {"name": ..., "arguments": {...}}')
        arguments = call.get("arguments", {})
        if isinstance(arguments, str):
            argument = arguments
        elif isinstance(arguments, dict) and len(arguments) == 1:
            argument = str(next(iter(arguments.values())))
        else:
            raise ToolError(f"tool {call['name']!r} takes one argument, got {arguments!r}")
        return ToolCall(call["name"], argument, found.group(0))
    for name in names:
        short = re.search(rf"<{name}>(.*?)(?:</{name}>|$)", text, re.DOTALL)
        if short:
            return ToolCall(name, short.group(1), short.group(0))
    return None


def run_tool(tools: dict[str, Callable[[str], str]], call: ToolCall, time_limit: float = 30.0) -> str:
    """The tool's answer, cut to MAX_RESULT_CHARS; ToolError for an unknown tool, a tool that
    raised or one that did not answer within ``time_limit`` seconds (left on a daemon thread)."""
    if call.name not in tools:
        raise ToolError(f"unknown tool {call.name!r}; the tools are: {', '.join(tools)}")
    try:
        value = str(call_with_time_limit(tools[call.name], time_limit, call.argument))
    except ToolError:
        raise
    except RewardTimeout:
        raise ToolError(f"{call.name}: no answer within {time_limit:g} s") from None
    except BaseException as err:  # noqa: BLE001 - a tool's failure is an observation
        raise ToolError(f"{call.name} failed: {type(err).__name__}: {err}"[:500]) from None
    if len(value) > MAX_RESULT_CHARS:
        value = value[:MAX_RESULT_CHARS] + f"... [cut: {len(value)} characters in all]"
    return value
