"""Held-out accuracy around a training run: the model it starts from, then what it made.

``reasonrl train`` calls this when the recipe has ``eval.limit > 0``, so a run ends by saying
what it bought ("held-out accuracy 0.02 -> 0.06"). The evaluation is ``reasonrl eval``'s,
on the run's own prompts:

    GSM8K-format data      the chat task with the recipe's instruction, lm-eval's strict match
    generated sources      the feedback environment for one turn: the same answer check
    (synthetic, reasoning_gym) as the environments (reasoning-gym rows: their task's checker)
    an env recipe          its environment, with its options, turn limit and token budget

The recipe is read by its attributes only (apps do not import each other).
"""

from __future__ import annotations

import logging
from pathlib import Path

from reasonrl.data.sources import is_generated
from reasonrl.eval.runner import EvalConfig, evaluate

log = logging.getLogger(__name__)


def held_out_config(recipe, weights: str | None = None) -> EvalConfig:
    """The evaluation of the recipe's model (``weights``: a run's ``final/``, adapter or
    full model) on ``recipe.eval``'s held-out rows."""
    section = recipe.eval
    data = section.data or recipe.data.source
    algorithm = getattr(recipe, recipe.algorithm)
    max_tokens = section.max_tokens or algorithm.max_completion_length
    model, adapter = recipe.model.name, None
    if weights is not None:
        adapter_like = (Path(weights) / "adapter_config.json").exists()
        model, adapter = (recipe.model.name, weights) if adapter_like else (weights, None)
    options = dict(
        model=model,
        adapter=adapter,
        data=data,
        split=section.split,
        limit=section.limit,
        max_tokens=max_tokens,
        engine=recipe.rollout.engine,
        engine_fallback=True,
        dtype=recipe.rollout.dtype,
        instruction=recipe.data.instruction,
        progress=False,
    )
    if recipe.env is not None:
        env = recipe.env
        options |= dict(
            env=env.name,
            env_options=env.options,
            max_turns=env.max_turns,
            max_episode_tokens=env.max_episode_tokens,
        )
    elif is_generated(data):
        options |= dict(env="feedback", env_options={"instruction": recipe.data.instruction}, max_turns=1)
    else:
        options |= dict(task="chat")
    return EvalConfig(**options)


def run_eval(cfg: EvalConfig) -> dict:
    if cfg.env:
        from reasonrl.eval.agent import evaluate_env

        return evaluate_env(cfg)
    return evaluate(cfg)


def headline(summary: dict) -> tuple[str, float, float]:
    """(metric name, value, standard error) a person reads first: strict match, or success."""
    metrics = summary["metrics"]
    name = next(k for k in metrics if k.startswith(("exact_match,strict", "pass@1,strict", "success,")))
    return name, metrics[name]["value"], metrics[name]["stderr"]


def report(before: dict | None, after: dict) -> str:
    """One line: ``held-out <metric> (<data>, N rows): 0.020 -> 0.060 (+0.040)``."""
    name, value, stderr = headline(after)
    where = f"{after['data']} [{after['split']}], {after['n']} rows"
    if before is None:
        return f"held-out {name} ({where}): {value:.3f} ± {stderr:.3f}"
    _, start, _ = headline(before)
    return f"held-out {name} ({where}): {start:.3f} -> {value:.3f} ({value - start:+.3f}, ± {stderr:.3f})"
