"""Shape rewards: the completion's format, and DAPO's soft over-length penalty."""

from __future__ import annotations

import re

from reasonrl.rewards.registry import register

FORMAT_PRESETS = {
    # worked solution: at least one line of work, then a final line '#### N'
    "gsm8k": r"(?s)\s*\S[^\n]*\n.*?####\s*-?[0-9][0-9,]*(\.[0-9]+)?\s*$",
    # just the final answer line at the end, work or not
    "gsm8k_answer": r"(?s).*####\s*-?[0-9][0-9,]*(\.[0-9]+)?\s*$",
    # DeepSeek-R1 style reasoning then answer
    "think": r"(?s)^\s*<think>.*?</think>\s*<answer>.*?</answer>\s*$",
}


@register("format")
def format_reward(preset: str | None = "gsm8k", pattern: str | None = None):
    """1.0 when the whole completion matches ``pattern`` (or a preset), else 0.0."""
    if pattern is None:
        if preset not in FORMAT_PRESETS:
            raise ValueError(f"format reward: unknown preset {preset!r}; presets: {sorted(FORMAT_PRESETS)}")
        pattern = FORMAT_PRESETS[preset]
    regex = re.compile(pattern)

    def reward(completions: list[str], **_) -> list[float]:
        return [1.0 if regex.fullmatch(c.strip()) else 0.0 for c in completions]

    return reward


def overlong_penalty(length: int, max_length: int, cache: int) -> float:
    """DAPO's soft over-length punishment (Yu et al. 2025, arXiv:2503.14476, eq. 13).

    0                              if |y| ≤ L_max − L_cache
    (L_max − L_cache − |y|)/L_cache if L_max − L_cache < |y| ≤ L_max
    −1                             if |y| > L_max
    """
    if length <= max_length - cache:
        return 0.0
    if length <= max_length:
        return (max_length - cache - length) / cache
    return -1.0


@register("length")
def length_reward(max_length: int = 512, cache: int = 128):
    """DAPO's penalty on ``completion_lengths`` (tokens); 0 for short enough answers."""
    if not 0 < cache <= max_length:
        raise ValueError(f"length reward: need 0 < cache <= max_length, got {cache}, {max_length}")

    def reward(completions: list[str], completion_lengths: list[int], **_) -> list[float]:
        return [overlong_penalty(int(n), max_length, cache) for n in completion_lengths]

    return reward
