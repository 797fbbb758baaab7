"""Choose and build a rollout engine from a recipe's settings."""

from __future__ import annotations

import logging

from reasonrl.rollout.hf_engine import HFEngine
from reasonrl.rollout.vllm_engine import VLLMEngine, VLLMUnavailableError, vllm_available

log = logging.getLogger(__name__)


def make_engine(
    kind: str,
    model,
    tokenizer,
    model_dir: str | None = None,
    allow_fallback: bool = False,
    seed: int = 0,
    **vllm_kwargs,
):
    """Build the engine named ``kind`` ("vllm" or "hf").

    ``seed`` seeds vLLM's engine at start; both engines then sample from torch's
    global generator (vLLM runs in-process), so ``torch.manual_seed`` before each
    ``generate`` makes every batch reproducible.

    A missing vLLM raises a clear error, unless ``allow_fallback`` lets the HF engine
    stand in (logged as a warning, since it is several times slower).
    """
    if kind == "hf":
        return HFEngine(model, tokenizer)
    if kind != "vllm":
        raise ValueError(f"engine must be 'vllm' or 'hf', got {kind!r}")
    if not vllm_available():
        if allow_fallback:
            log.warning("vLLM is not installed: falling back to the HF engine (slower)")
            return HFEngine(model, tokenizer)
        raise VLLMUnavailableError(
            "engine 'vllm' was asked for but vLLM does not import. Install reasonrl[cpu] or "
            "reasonrl[gpu], set `engine: hf`, or allow the fallback with `engine_fallback: true`."
        )
    if model_dir is None:
        raise ValueError("the vLLM engine needs model_dir, the folder vLLM loads at start")
    return VLLMEngine(model_dir, tokenizer, seed=seed, **vllm_kwargs)
