"""``program`` reward: the completion is a Python program, scored by the tests it passes."""

from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor

from reasonrl.rewards.registry import register
from reasonrl.rewards.sandbox import require_sandbox, run_program

FENCE = re.compile(r"```(?:python|py)?\s*\n(.*?)```", re.DOTALL)


def extract_code(completion: str) -> str:
    """The last fenced code block, or the whole completion when there is none."""
    blocks = FENCE.findall(completion)
    return blocks[-1] if blocks else completion


@register("program")
def program_reward(
    timeout: float = 5.0, memory_mb: int = 512, workers: int | None = None, allow_weak_sandbox: bool = False
):
    """Fraction of ``tests`` (per completion, a list of Python snippets ending in an assert)
    that pass, run in the bubblewrap sandbox (``reasonrl.rewards.sandbox``); refused at
    construction when it is missing, unless ``allow_weak_sandbox``."""
    require_sandbox(allow_weak_sandbox, "program reward")
    workers = workers or os.cpu_count() or 1

    def reward(completions: list[str], tests: list[list[str]], **_) -> list[float]:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            results = pool.map(
                lambda item: run_program(
                    extract_code(item[0]), list(item[1]), timeout, memory_mb, allow_weak=allow_weak_sandbox
                ),
                zip(completions, tests, strict=True),
            )
            return [r.fraction for r in results]

    return reward


def _preflight(allow_weak_sandbox: bool = False, **_) -> None:
    require_sandbox(allow_weak_sandbox, "program reward")


program_reward.preflight = _preflight
