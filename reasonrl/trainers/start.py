"""The start of every LLM trainer: resolve the recipe's ``auto`` precisions, start the Run."""

from __future__ import annotations

import logging

from reasonrl.models.precision import resolve_bf16, resolve_dtype
from reasonrl.runtime import Run, RunConfig
from reasonrl.trainers.recipe import Recipe, TrainSection

log = logging.getLogger("reasonrl")


def run_config(train: TrainSection) -> RunConfig:
    """The run scaffolding's share of the ``train`` section."""
    return RunConfig(
        output_dir=train.output_dir,
        seed=train.seed,
        resume=train.resume,
        report_to=list(train.report_to),
        progress=train.progress,
        save_steps=train.save_steps,
        save_total_limit=train.save_total_limit,
        bf16=bool(train.bf16),
        micro_batch_size=train.micro_batch_size,
        max_grad_norm=train.max_grad_norm,
    )


def resolve_precision(recipe: Recipe) -> None:
    """Turn the recipe's ``auto`` precisions into what this machine runs fast, in place, so
    the run's recipe.yaml says what ran."""
    recipe.train.bf16 = resolve_bf16(recipe.train.bf16)
    if recipe.rollout.engine == "vllm":  # vLLM takes the GPU when there is one
        recipe.rollout.dtype = resolve_dtype(recipe.rollout.dtype)
        log.info("precision: bf16 autocast %s, vLLM weights %s", recipe.train.bf16, recipe.rollout.dtype)


def start_run(recipe: Recipe) -> Run:
    resolve_precision(recipe)
    return Run.start(run_config(recipe.train), record=recipe)
