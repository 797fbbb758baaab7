"""The start of every LLM trainer: resolve the recipe's ``auto`` precisions, start the Run."""

from __future__ import annotations

import logging

from reasonrl.models.precision import resolve_bf16, resolve_dtype
from reasonrl.runtime import Run, RunConfig
from reasonrl.trainers.recipe import Recipe

log = logging.getLogger("reasonrl")


def resolve_precision(recipe: Recipe) -> None:
    """Turn the recipe's ``auto`` precisions into what this machine runs fast, in place, so
    the run's recipe.yaml says what ran."""
    recipe.train.bf16 = resolve_bf16(recipe.train.bf16)
    if recipe.rollout.engine == "vllm":  # vLLM takes the GPU when there is one
        recipe.rollout.dtype = resolve_dtype(recipe.rollout.dtype)
        log.info("precision: bf16 autocast %s, vLLM weights %s", recipe.train.bf16, recipe.rollout.dtype)


def start_run(recipe: Recipe) -> Run:
    resolve_precision(recipe)
    return Run.start(RunConfig.of(recipe.train, bf16=bool(recipe.train.bf16)), record=recipe)
