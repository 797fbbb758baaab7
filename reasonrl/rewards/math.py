"""Mathematical answer equivalence through math-verify (boxed answers, fractions, LaTeX)."""

from __future__ import annotations

from reasonrl.rewards.registry import register


@register("math")
def math_reward():
    """1.0 when math-verify finds the completion's final answer equal to ``answer``.

    math-verify's own time-outs use ``signal.alarm``, which works only in the main thread;
    rewards run in a worker thread under the RewardSet's ``time_limit``, so they are off."""
    from math_verify import parse, verify

    def reward(completions: list[str], answer: list[str], **_) -> list[float]:
        scores = []
        for completion, reference in zip(completions, answer, strict=True):
            gold = parse(
                reference if "$" in reference or "\\" in reference else f"${reference}$", parsing_timeout=None
            )
            target = parse(completion, parsing_timeout=None)
            scores.append(float(bool(gold) and verify(gold, target, timeout_seconds=None)))
        return scores

    return reward
