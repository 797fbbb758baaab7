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


# the KV cache of an engine whose batches are not known in advance (`kv_cache_gib: auto`)
DEFAULT_KV_CACHE_GIB = 2.0


def kv_cache_size(config, dtype: str, sequences: int, max_model_len: int, block: int = 32) -> float:
    """GiB of KV cache for ``sequences`` sequences of up to ``max_model_len`` tokens each,
    block-rounded, for a transformers ``config`` with the cache in ``dtype``: keys and
    values of every layer's key/value heads. SmolLM2-135M: 23 KiB a token in bf16, so a
    GRPO step of 8 completions at 1024 tokens needs 0.18 GiB, where vLLM zero-fills (and
    keeps resident) whatever it is given."""
    config = config.get_text_config() if hasattr(config, "get_text_config") else config
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    per_token = (
        2 * config.num_hidden_layers * kv_heads * head_dim * torch.finfo(getattr(torch, dtype)).bits // 8
    )
    tokens = sequences * (max_model_len + block)
    return tokens * per_token / 2**30


def make_policy_engine(
    policy: Policy, section: RolloutSection, seed: int, max_len: int, sequences: int | None = None
):
    """The rollout engine for this policy: vLLM on the base folder, or HF on the live model.
    ``sequences``: how many it samples at once (sizes ``kv_cache_gib: auto``)."""
    max_model_len = max(section.max_model_len, max_len)
    kv_cache_gib = section.kv_cache_gib
    if kv_cache_gib == "auto":
        kv_cache_gib = DEFAULT_KV_CACHE_GIB
        if sequences is not None and section.dtype in ("float32", "bfloat16", "float16"):
            kv_cache_gib = kv_cache_size(policy.model.config, section.dtype, sequences, max_model_len)
    if section.engine == "vllm":
        log.info(
            "vLLM engine: %s, weights %s, KV cache %.3g GiB",
            {True: "eager", False: "compiled"}.get(section.enforce_eager, section.enforce_eager),
            section.dtype,
            kv_cache_gib,
        )
    return make_engine(
        section.engine,
        policy.model,
        policy.tokenizer,
        model_dir=str(policy.model_dir),
        allow_fallback=section.engine_fallback,
        seed=seed,
        dtype=section.dtype,
        max_model_len=max_model_len,
        kv_cache_gib=kv_cache_gib,
        gpu_memory_utilization=section.gpu_memory_utilization,
        enforce_eager=section.enforce_eager,
    )


def start_engine(
    run, policy: Policy, model, recipe, n: int, temperature: float, max_tokens: int, module=None,
    prompts: int | None = None,
):  # fmt: skip
    """Build the policy's rollout engine, push the current weights (of ``module``, see sync),
    and return it with the sampling settings; ``prompts``: how many this rank samples at once."""
    sequences = None if prompts is None else prompts * n
    engine = make_policy_engine(policy, recipe.rollout, recipe.train.seed, max_tokens + 512, sequences)
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
