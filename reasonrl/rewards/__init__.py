"""Rewards and verifiers, by name. Importing this package registers the built-in ones:

gsm8k            GSM8K answer check, identical to lm-eval-harness (strict / flexible)
math             answer equivalence through math-verify
format           the completion matches a format (presets: gsm8k, think)
length           DAPO's soft over-length penalty
teacher_logprob  a teacher model's mean per-token log-prob of the completion
judge            a teacher model's P(yes) that the completion is correct
program          fraction of test cases a sandboxed Python program passes
reasoning_gym    a reasoning-gym task's own checker (rows from a ``reasoning_gym:`` source)
"""

from reasonrl.rewards import format, gsm8k, math, procedural, program, teacher  # noqa: F401  (registration)
from reasonrl.rewards.registry import (
    RewardScores,
    RewardSet,
    RewardSpec,
    available,
    build_reward,
    check_reward,
    register,
)

__all__ = [
    "RewardScores",
    "RewardSet",
    "RewardSpec",
    "available",
    "build_reward",
    "check_reward",
    "register",
]
