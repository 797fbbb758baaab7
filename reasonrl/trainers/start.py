"""The start of every LLM trainer: resolve the recipe's ``auto`` settings into what runs
fastest on this machine (precisions, the engine's mode), start the Run."""

from __future__ import annotations

import logging

import torch

from reasonrl.models.precision import cpu_kind, native_bf16, resolve_bf16, resolve_dtype
from reasonrl.runtime import Run, RunConfig
from reasonrl.trainers.recipe import Recipe

log = logging.getLogger("reasonrl")


def resolve_precision(recipe: Recipe) -> None:
    """Turn the recipe's ``auto`` precisions into what this machine runs fast, in place, so
    the run's recipe.yaml says what ran."""
    recipe.train.bf16 = resolve_bf16(recipe.train.bf16)
    if recipe.model.dtype == "auto":  # only LoRA: a full fine-tune needs fp32 master weights
        recipe.model.dtype = "bfloat16" if recipe.model.lora is not None and native_bf16() else "float32"
    if recipe.rollout.engine == "vllm":  # vLLM takes the GPU when there is one
        recipe.rollout.dtype = resolve_dtype(recipe.rollout.dtype)
        log.info(
            "precision: trainer weights %s, bf16 autocast %s, vLLM weights %s",
            recipe.model.dtype,
            recipe.train.bf16,
            recipe.rollout.dtype,
        )


# vLLM on CPU, compiled vs eager, at a GRPO step's rollout (2 prompts x 4 completions of
# 128 tokens; `python -m tests.benchmarks engine_mode`): the steps after which compiling
# has paid for its longer start on a warm compile cache, per CPU kind. AVX512-BF16
# (2026-12-06, with the inverse-CDF sampler): start 16.1 s vs 8.3, a rollout 1.61 s vs
# 2.15: 15 steps (earlier that day 22; a cold cache's start was 43 s). AVX2
# (docs/performance.md): start 32 s vs 12, a rollout 4.86 s vs 5.45: 34 steps. AMX: not
# measured here, taken as AVX512-BF16 (both bf16 native; compiled was 1.4x eager there in
# the GRPO bench). `auto` compiles a run at least twice that long.
COMPILE_PAYS_AFTER = {"AMX": 15, "AVX512-BF16": 15, "AVX2": 34}


def resolve_engine_mode(recipe: Recipe) -> None:
    """``rollout.enforce_eager: auto`` -> compiled on a GPU, and on a CPU when the run is
    long enough for the compile to pay (``COMPILE_PAYS_AFTER``); eager otherwise."""
    rollout = recipe.rollout
    if rollout.engine != "vllm" or rollout.enforce_eager != "auto" or recipe.algorithm == "sft":
        return  # (SFT samples nothing)
    if torch.cuda.is_available():
        rollout.enforce_eager = False
        return
    pays_after = COMPILE_PAYS_AFTER.get(cpu_kind())
    rollout.enforce_eager = pays_after is None or recipe.train.max_steps < 2 * pays_after


def start_run(recipe: Recipe) -> Run:
    resolve_precision(recipe)
    resolve_engine_mode(recipe)
    return Run.start(RunConfig.of(recipe.train, bf16=bool(recipe.train.bf16)), record=recipe)
