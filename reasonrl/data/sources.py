"""Where problems come from: GSM8K-format files and hub ids, or the synthetic generator.

``synthetic:LEVEL[:N[:SEED]]`` draws N (default 1000) synthetic problems of difficulty
LEVEL (``0`` for the tiny-model arithmetic drill, ``1-4`` for a range), so a recipe
needs no data file at all. ``lookup[:N[:SEED]]`` draws rows of the lookup toy
environment (``k3:``, a hidden digit). ``reasoning_gym:TASK[:N[:SEED]][?KNOB=V&...]``
draws rows of one of reasoning-gym's procedural tasks (``reasonrl.data.procedural``).
"""

from __future__ import annotations

import logging

from reasonrl.data import procedural
from reasonrl.data.gsm8k import Problem, load_gsm8k
from reasonrl.data.synthetic import generate

log = logging.getLogger(__name__)


def parse_synthetic(source: str) -> tuple[tuple[int, int], int, int]:
    parts = source.split(":")[1:]
    if not 1 <= len(parts) <= 3:
        raise ValueError(f"synthetic source {source!r}: use synthetic:LEVEL[:N[:SEED]]")
    try:
        low, _, high = parts[0].partition("-")
        levels = (int(low), int(high or low))
        n = int(parts[1]) if len(parts) > 1 else 1000
        seed = int(parts[2]) if len(parts) > 2 else 0
    except ValueError:
        raise ValueError(f"synthetic source {source!r}: LEVEL, N and SEED must be integers") from None
    return levels, n, seed


def lookup_problems(source: str, split: str) -> list[Problem]:
    """``lookup[:N[:SEED]]``: the key is shown, the digit to answer is hidden behind the tool."""
    import random

    parts = source.split(":")[1:]
    try:
        n, seed = int(parts[0]) if parts else 1000, int(parts[1]) if len(parts) > 1 else 0
    except ValueError:
        raise ValueError(f"lookup source {source!r}: use lookup[:N[:SEED]]") from None
    rng = random.Random(seed * 2 + (split != "train"))
    return [Problem(f"k{rng.randrange(10)}:", "", str(rng.randrange(10))) for _ in range(n)]


def is_generated(source: str) -> bool:
    """A source the project generates (synthetic, lookup, reasoning-gym), not a GSM8K file."""
    return source == "lookup" or source.startswith(("lookup:", "synthetic:", procedural.PREFIX))


def has_problems(source: str, split: str = "test") -> bool:
    """Whether ``source`` [split] reads as problems (with answers to check), not only as
    examples or pairs: what a trainer needs to sample and score held-out completions."""
    try:
        return bool(load_problems(source, split, 1))
    except Exception:
        return False


def load_problems(source: str, split: str = "train", limit: int | None = None) -> list[Problem]:
    if source == "lookup" or source.startswith("lookup:"):
        problems = lookup_problems(source, split)
    elif source.startswith(procedural.PREFIX):
        problems = procedural.load(source, split)
    elif source.startswith("synthetic:"):
        levels, n, seed = parse_synthetic(source)
        # a distinct seed per split, so "test" problems are not the "train" ones
        problems = generate(n, levels, seed=seed * 2 + (split != "train"))
    else:
        problems = load_gsm8k(source, split)
    if limit is not None:
        problems = problems[:limit]
    log.info("%d problems from %s [%s]", len(problems), source, split)
    return problems
