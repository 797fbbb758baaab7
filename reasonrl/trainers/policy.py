"""The policy being trained: model (+ LoRA), tokenizer, reference log-probs, engine sync."""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from reasonrl.allocator import release_free_memory
from reasonrl.models import load, model_folder
from reasonrl.models.logprobs import completion_logprobs
from reasonrl.models.lora import disabled_adapters, is_peft, merged_weights, wrap_lora
from reasonrl.rollout import Rollouts, SamplingConfig, make_engine
from reasonrl.trainers.recipe import ModelSection, RolloutSection

log = logging.getLogger("reasonrl")


@dataclass
class Policy:
    model: torch.nn.Module  # the module that trains (a PeftModel with LoRA)
    tokenizer: object
    model_dir: Path  # the base model's folder (what vLLM loads at start)
    reference: torch.nn.Module | None  # a frozen copy, when there is no LoRA to switch off

    @property
    def uses_lora(self) -> bool:
        return is_peft(self.model)


def build_policy(section: ModelSection, need_reference: bool, gradient_checkpointing: bool = False) -> Policy:
    model_dir = model_folder(section.name)  # another run's adapter: merged into its base
    model, tokenizer = load(model_dir, dtype=section.dtype, trust_remote_code=section.trust_remote_code)
    if gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    reference = None
    if section.lora is not None:
        model = wrap_lora(model, section.lora)
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        log.info("LoRA r=%d: %.2fM trainable parameters", section.lora.r, trainable / 1e6)
    elif need_reference:
        reference = copy.deepcopy(model).eval().requires_grad_(False)
    model.train()
    return Policy(model=model, tokenizer=tokenizer, model_dir=model_dir, reference=reference)


@torch.no_grad()
def reference_logprobs(
    policy: Policy, model, batch: Rollouts, temperature: float, micro_batch: int, autocast
):
    """log π_ref of the completion tokens: the base model (LoRA off) or the frozen copy."""
    with autocast, disabled_adapters(model):
        reference = policy.reference if policy.reference is not None else model
        return completion_logprobs(reference, batch, temperature, micro_batch=micro_batch)[0].float()


def make_policy_engine(policy: Policy, section: RolloutSection, seed: int, max_len: int):
    """The rollout engine for this policy: vLLM on the base folder, or HF on the live model."""
    if section.engine == "vllm":
        log.info(
            "vLLM engine: %s, weights %s",
            {True: "eager", False: "compiled"}.get(section.enforce_eager, section.enforce_eager),
            section.dtype,
        )
    return make_engine(
        section.engine,
        policy.model,
        policy.tokenizer,
        model_dir=str(policy.model_dir),
        allow_fallback=section.engine_fallback,
        seed=seed,
        dtype=section.dtype,
        max_model_len=max(section.max_model_len, max_len),
        kv_cache_gib=section.kv_cache_gib,
        gpu_memory_utilization=section.gpu_memory_utilization,
        enforce_eager=section.enforce_eager,
    )


def start_engine(
    run, policy: Policy, model, recipe, n: int, temperature: float, max_tokens: int, module=None
):
    """Build the policy's rollout engine, push the current weights (of ``module``, see sync),
    and return it with the sampling settings."""
    engine = make_policy_engine(policy, recipe.rollout, recipe.train.seed, max_tokens + 512)
    sync(run, engine, model, module)
    log.info("rollout engine: %s", type(engine).__name__)
    sampling = sampling_config(recipe.rollout, n, temperature, max_tokens)
    return engine, sampling


def sampling_config(rollout: RolloutSection, n: int, temperature: float, max_tokens: int) -> SamplingConfig:
    """The sampling settings of a trainer's rollouts: the algorithm's n, temperature and
    length, the recipe's rollout section for the rest."""
    return SamplingConfig(
        n=n,
        temperature=temperature,
        top_p=rollout.top_p,
        max_tokens=max_tokens,
        stop=rollout.stop,
        ignore_eos=rollout.ignore_eos,
    )


def sync(run, engine, model, module=None) -> None:
    """Push ``module`` (default: the prepared ``model``, unwrapped) into the engine; all ranks call it."""
    with run.gathered(model):
        sync_engine(engine, module if module is not None else run.accelerator.unwrap_model(model))


def sync_engine(engine, model) -> None:
    """Push the current policy weights (LoRA merged) into the engine."""
    if engine.shares_trainer_weights:
        return  # it samples from the live model itself
    engine.update_weights(merged_weights(model))
    release_free_memory()  # the merged copies and vLLM's reload buffers (~0.2 GiB for SmolLM2)
