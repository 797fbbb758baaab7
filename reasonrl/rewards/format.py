"""Shape rewards: the completion's format, and DAPO's soft over-length penalty."""

from __future__ import annotations

import re

from reasonrl.rewards.arithmetic import is_derived
from reasonrl.rewards.gsm8k import INVALID, STRICT_PATTERN, extract, normalize
from reasonrl.rewards.registry import register

FORMAT_PRESETS = {
    # worked solution: at least one line of work, then a final line '#### N'
    "gsm8k": r"(?s)\s*\S[^\n]*\n.*?####\s*-?[0-9][0-9,]*(\.[0-9]+)?\s*$",
    # just the final answer line at the end, work or not
    "gsm8k_answer": r"(?s).*####\s*-?[0-9][0-9,]*(\.[0-9]+)?\s*$",
    # DeepSeek-R1 style reasoning then answer
    "think": r"(?s)^\s*<think>.*?</think>\s*<answer>.*?</answer>\s*$",
}


def example_answers(prompt: str, question: str = "") -> set[str]:
    """Answers the prompt shows ('#### 42' in an instruction) that the question itself does
    not contain, read as the gsm8k reward reads them: an answer equal to one was copied."""
    shown = {normalize(a) for a in re.findall(STRICT_PATTERN, prompt)}
    return shown - {normalize(a) for a in re.findall(STRICT_PATTERN, question)}


@register("format")
def format_reward(
    preset: str | None = "gsm8k",
    pattern: str | None = None,
    pay_copies: bool = False,
    derived: bool | None = None,
):
    """1.0 when the whole completion matches ``pattern`` (or a preset), else 0.0.

    Two ways to earn the format without reasoning are closed; a run learns whichever is
    cheapest:
    - copying: a final answer ('#### N') that is the example answer of its prompt (an
      instruction saying "end with '#### 42'") scores 0 unless ``pay_copies``;
    - guessing: with ``derived`` (the default for the gsm8k presets) the final answer must
      be the result of a correct calculation in the work that starts from the question's
      numbers (``reasonrl.rewards.arithmetic``). Without it SmolLM2 learned to end every
      chain with '#### 42' in 12 GRPO steps, whatever the question.
    """
    if pattern is None:
        if preset not in FORMAT_PRESETS:
            raise ValueError(f"format reward: unknown preset {preset!r}; presets: {sorted(FORMAT_PRESETS)}")
        pattern = FORMAT_PRESETS[preset]
    answers_after_hashes = preset in ("gsm8k", "gsm8k_answer") and pattern == FORMAT_PRESETS[preset]
    if derived is None:
        derived = answers_after_hashes
    elif derived and not answers_after_hashes:
        raise ValueError("format reward: derived: true needs preset gsm8k or gsm8k_answer ('#### N' answers)")
    regex = re.compile(pattern)

    def copied(completion: str, prompt: str, question: str) -> bool:
        answer = extract(completion, STRICT_PATTERN, -1)
        return answer != INVALID and normalize(answer) in example_answers(prompt, question)

    def worked_out(completion: str, question: str | None) -> bool:
        work, _, answer = completion.rpartition("####")
        return is_derived(answer, work, question)

    def reward(completions: list[str], prompts: list[str] | None = None, question=None, **_) -> list[float]:
        prompts = prompts or [""] * len(completions)
        questions = question or [None] * len(completions)
        return [
            float(
                bool(regex.fullmatch(c.strip()))
                and (pay_copies or not copied(c, p, q or ""))
                and (not derived or worked_out(c, q))
            )
            for c, p, q in zip(completions, prompts, questions, strict=True)
        ]

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
