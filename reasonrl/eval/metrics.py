"""Accuracy aggregates for sampled evaluation: majority vote (maj@k) and unbiased pass@k."""

from __future__ import annotations

import math
from collections import Counter

from reasonrl.rewards.gsm8k import INVALID, normalize


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct (Chen et al. 2021, arXiv:2107.03374, eq. 1).

    pass@k = 1 − C(n − c, k) / C(n, k)
    """
    if not 0 < k <= n:
        raise ValueError(f"pass@k needs 0 < k <= n, got k={k}, n={n}")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def majority(answers: list[str]) -> str:
    """The most frequent valid extracted answer (after lm-eval normalisation); ties go to the first seen."""
    valid = [normalize(a) for a in answers if a != INVALID]
    if not valid:
        return INVALID
    counts = Counter(valid)
    best = max(counts.values())
    return next(a for a in valid if counts[a] == best)


def mean_stderr(values: list[float]) -> tuple[float, float]:
    """Mean and its standard error, sqrt(sample variance / n), as lm-eval reports it."""
    n = len(values)
    if n == 0:
        return float("nan"), float("nan")
    mean = sum(values) / n
    if n < 2:
        return mean, float("nan")
    variance = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(variance / n)
