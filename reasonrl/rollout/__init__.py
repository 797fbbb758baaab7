"""Rollout engines: prompts in, sampled completions (with token ids and log-probs) out."""

from reasonrl.rollout.batch import PreferencePairs, Rollouts, TokenBatch
from reasonrl.rollout.engine import Prompt, RolloutEngine, SamplingConfig, encode_prompts
from reasonrl.rollout.factory import make_engine

__all__ = [
    "PreferencePairs",
    "Prompt",
    "RolloutEngine",
    "Rollouts",
    "SamplingConfig",
    "TokenBatch",
    "encode_prompts",
    "make_engine",
]
