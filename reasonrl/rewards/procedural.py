"""reasoning-gym's own answer checkers as a reward, for ``reasoning_gym:`` data sources.

The answer is read from the completion's last ``<answer>...</answer>`` (reasoning-gym's
convention) or, failing that, what follows its last ``####`` on that line (the recipes'
GSM8K convention). A completion with neither scores 0, so the reward cannot be had by
leaving a bare guess at the end. The task's ``score_answer`` then gives 0..1 (most tasks
1 for an exact answer; some give partial credit, as reasoning-gym defines them).
"""

from __future__ import annotations

import re
import threading

from reasonrl.rewards.registry import register

TAG = re.compile(r"<answer>\s?(.*?)\s?</answer>", re.DOTALL)
HASHES = re.compile(r"####[ \t]*([^\n]*)")
FORMATS = ("either", "tag", "hashes")


def read_answer(text: str, answer_format: str = "either") -> str | None:
    """The completion's final answer in ``answer_format``, or None when it gives none."""
    if answer_format in ("either", "tag") and (tags := TAG.findall(text)):
        return tags[-1].strip()
    if answer_format in ("either", "hashes") and (hashes := HASHES.findall(text)):
        return hashes[-1].strip().rstrip(".").strip() or None
    return None


class Checkers:
    """One reasoning-gym dataset object per (task, knobs), built on first use: its
    ``score_answer`` may read the config the rows were made with."""

    def __init__(self):
        self._by_key: dict[str, object] = {}
        self._lock = threading.Lock()

    def score(self, answer: str | None, meta: dict) -> float:
        from reasonrl.data.procedural import make_dataset

        key = f"{meta['task']}|{sorted(meta['knobs'].items())}"
        with self._lock:
            if key not in self._by_key:
                self._by_key[key] = make_dataset(meta["task"], meta["knobs"], size=1, seed=0)
        return float(self._by_key[key].score_answer(answer, meta["entry"]))


@register("reasoning_gym")
def reasoning_gym_reward(answer_format: str = "either"):
    """The task's checker on the completion's final answer (rows from a ``reasoning_gym:`` source)."""
    if answer_format not in FORMATS:
        raise ValueError(
            f"reasoning_gym reward: answer_format must be one of {FORMATS}, got {answer_format!r}"
        )
    checkers = Checkers()

    def reward(completions: list[str], meta: list[dict | None], **_) -> list[float]:
        scores = []
        for text, row in zip(completions, meta, strict=True):
            if not row or "task" not in row:
                raise ValueError("reasoning_gym reward: the rows are not from a reasoning_gym: data source")
            found = read_answer(text, answer_format)
            scores.append(0.0 if found is None else checkers.score(found, row))
        return scores

    return reward


def _preflight(answer_format: str = "either") -> None:
    reasoning_gym_reward(answer_format)  # cheap: checks the option, loads nothing


reasoning_gym_reward.preflight = _preflight
