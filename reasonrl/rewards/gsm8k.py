"""GSM8K answer checking, identical to lm-evaluation-harness's ``gsm8k`` task.

lm-eval extracts an answer with a regex filter and compares it with the reference
by ``exact_match`` after removing ``,``, ``$``, everything up to ``#### `` and a
final ``.``, ignoring case. Two filters:

    strict-match      first match of ``#### (\\-?[0-9\\.\\,]+)``
    flexible-extract  last match of ``(-?[$0-9.,]{2,})|(-?[0-9]+)`` (the last number)

``gsm8k_cot_zeroshot`` uses ``The answer is (\\-?[0-9\\.\\,]+).`` as its strict pattern.
Unparsable completions extract to ``[invalid]``, which never matches.
"""

from __future__ import annotations

import re

from reasonrl.rewards.registry import register

STRICT_PATTERN = r"#### (\-?[0-9\.\,]+)"
COT_STRICT_PATTERN = r"The answer is (\-?[0-9\.\,]+)."
FLEXIBLE_PATTERN = r"(-?[$0-9.,]{2,})|(-?[0-9]+)"
INVALID = "[invalid]"
_IGNORE = [re.compile(p) for p in (",", r"\$", r"(?s).*#### ", r"\.$")]
_compiled: dict[str, re.Pattern] = {}


def extract(text: str, pattern: str = STRICT_PATTERN, group_select: int = 0) -> str:
    """lm-eval's RegexFilter: the ``group_select``-th match (first non-empty group), stripped."""
    regex = _compiled.setdefault(pattern, re.compile(pattern))
    matches = regex.findall(text if isinstance(text, str) else "")
    if not matches:
        return INVALID
    match = matches[group_select]
    if isinstance(match, tuple):
        match = next((m for m in match if m), INVALID)
    return match.strip()


def normalize(text: str) -> str:
    """lm-eval's exact_match preprocessing for GSM8K (regexes_to_ignore, ignore_case)."""
    for regex in _IGNORE:
        text = regex.sub("", text)
    return text.lower()


def extract_strict(text: str, pattern: str = STRICT_PATTERN) -> str:
    return extract(text, pattern, 0)


def extract_flexible(text: str) -> str:
    return extract(text, FLEXIBLE_PATTERN, -1)


def is_correct(prediction: str, reference: str) -> bool:
    """exact_match of an extracted prediction against a reference (a number or a GSM8K answer field)."""
    return normalize(prediction) == normalize(reference)


@register("gsm8k")
def gsm8k_reward(mode: str = "strict", pattern: str = STRICT_PATTERN):
    """1.0 when the completion's answer matches ``answer``; ``mode`` is "strict" or "flexible"."""
    if mode not in ("strict", "flexible"):
        raise ValueError(f"gsm8k reward: mode must be 'strict' or 'flexible', got {mode!r}")

    def reward(completions: list[str], answer: list[str], **_) -> list[float]:
        pick = extract_flexible if mode == "flexible" else (lambda t: extract_strict(t, pattern))
        return [float(is_correct(pick(c), str(a))) for c, a in zip(completions, answer, strict=True)]

    return reward
