"""Mathematical answer equivalence through math-verify (boxed answers, fractions, LaTeX)."""

from __future__ import annotations

from reasonrl.rewards.registry import register


@register("math")
def math_reward():
    """1.0 when math-verify finds the completion's final answer equal to ``answer``."""
    from math_verify import parse, verify

    def reward(completions: list[str], answer: list[str], **_) -> list[float]:
        scores = []
        for completion, reference in zip(completions, answer, strict=True):
            gold = parse(reference if "$" in reference or "\\" in reference else f"${reference}$")
            scores.append(float(bool(gold) and verify(gold, parse(completion))))
        return scores

    return reward
