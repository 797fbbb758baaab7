"""Exact attention for training on CPU, from batched GEMMs (transformers' ``reasonrl_cpu``).

PyTorch's CPU flash-attention kernel is slow to differentiate at the lengths RL trains on:
in a GRPO micro-batch of SmolLM2-135M (4 completions of 128 tokens on a shared 113-token
prompt, bf16) its forward and backward took 315 ms of the pass's 1.28 s, for ~5 GFLOP that
batched matmuls do in ~60 ms. transformers' "eager" attention is fast but keeps the whole
probability matrix of every layer for the backward pass (in fp32 and again in bf16).

``attention`` computes softmax(q kᵀ · scale + mask) v with ``bmm`` and keeps what flash
attention keeps: q, k, v, the output and one log-sum-exp per query row. The backward
recomputes the probabilities of one layer at a time (one more small GEMM):

    P  = exp(S − lse),  dV = Pᵀ dO,  dP = dO Vᵀ,  dS = P ∘ (dP − rowsum(dO ∘ O)),
    dQ = dS K · scale,  dK = dSᵀ Q · scale.

Grouped-query attention runs without repeating keys and values: the G query heads of a
key/value head are stacked along the query axis, so one GEMM serves the group, and dK, dV
sum over it. Scores and the softmax are fp32 whatever the inputs' type.

It runs where it was measured faster: half-precision inputs (bf16 autocast, the update's
type where bf16 is native) and per-layer score matrices up to ``MAX_SCORES`` elements.
Forward + backward, 9 query and 3 key/value heads of 64, causal (AVX512-BF16, 2 cores):
bf16 4 x 128 tokens 1.9 ms vs SDPA's 4.8, 8 x 256 15 vs 24, 16 x 512 162 vs 166, 4 x 1024
152 vs 140; in fp32 SDPA is as fast or faster from 4 x 128 on (3.8 vs 3.7 ms, 16 x 512 266
vs 200). Everything else goes to transformers' SDPA path unchanged: fp32, GPUs, dropout,
extra terms (sinks, soft-capping, position biases) and longer sequences.
"""

from __future__ import annotations

import torch
from torch import Tensor

NAME = "reasonrl_cpu"
# the largest [batch, heads, queries, keys] score matrix computed whole (fp32: 64 MiB, one
# layer's at a time), and the input types: where this was measured faster than SDPA
MAX_SCORES = 1 << 24
DTYPES = (torch.bfloat16, torch.float16)
_LOG2E = 1.4426950408889634
_TINY = torch.finfo(torch.float32).tiny
_UNSUPPORTED = ("softcap", "s_aux", "sinks", "position_bias", "sliding_window_size", "cache")


class _Attention(torch.autograd.Function):
    """q [B, Hkv, G·Tq, D] (the G query heads of each key/value head stacked), k and v
    [B, Hkv, Tk, D], bias [B or 1, 1, 1, Tq, Tk] fp32 (0 or -inf, in base 2) or None.

    The softmax runs in base 2 (scores times log2 e, then ``exp2``): on these CPUs
    ``exp2`` is 3-4x faster than ``exp``, which also slows down 5x on masked (very
    negative) scores.
    """

    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, v: Tensor, bias: Tensor | None, scale: float):
        scores = _scores(q, k, bias, scale)
        top = scores.amax(-1, keepdim=True).nan_to_num_(neginf=0.0)  # a query seeing no key: 0
        probs = scores.sub_(top).exp2_()
        total = probs.sum(-1, keepdim=True)
        out = torch.matmul(probs.div_(total.clamp(min=_TINY)).to(v.dtype), v)
        lse = total.log2_().add_(top).nan_to_num_(neginf=float("inf"))  # no key: P = 0, output 0
        ctx.save_for_backward(q, k, v, out, lse, bias)
        ctx.scale = scale
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: Tensor):
        q, k, v, out, lse, bias = ctx.saved_tensors
        grad_out = grad_out.to(v.dtype)
        probs = _scores(q, k, bias, ctx.scale).sub_(lse).exp2_()
        grad_v = torch.matmul(probs.to(v.dtype).transpose(-1, -2), grad_out)
        grad_probs = torch.matmul(grad_out, v.transpose(-1, -2)).float()
        row = (grad_out.float() * out.float()).sum(-1, keepdim=True)
        grad_scores = probs.mul_(grad_probs.sub_(row)).mul_(ctx.scale).to(q.dtype)
        grad_q = torch.matmul(grad_scores, k)
        grad_k = torch.matmul(grad_scores.transpose(-1, -2), q)
        return grad_q, grad_k, grad_v, None, None


def _scores(q: Tensor, k: Tensor, bias: Tensor | None, scale: float) -> Tensor:
    """(q kᵀ · scale) · log2 e + bias in fp32, [B, Hkv, G·Tq, Tk]."""
    scores = torch.matmul(q, k.transpose(-1, -2)).float().mul_(scale * _LOG2E)
    if bias is not None:  # the same mask for every query head of a group
        B, kv_heads, _, k_len = scores.shape
        scores.view(B, kv_heads, -1, bias.shape[-2], k_len).add_(bias)
    return scores


def _bias(mask: Tensor | None, causal: bool, q_len: int, k_len: int) -> Tensor | None:
    """The additive fp32 mask in base 2, [B or 1, 1, 1, Tq, Tk]: 0 where a query sees a
    key, else -inf."""
    if mask is None:
        if not causal:
            return None
        mask = torch.ones(q_len, k_len, dtype=torch.bool).tril()[None, None]
    if mask.dtype != torch.bool:  # an additive mask in natural log
        return (mask.float() * _LOG2E)[:, :1, None]
    return torch.zeros(mask.shape, dtype=torch.float32).masked_fill_(~mask, -float("inf"))[:, :1, None]


def attention(
    module: torch.nn.Module,
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attention_mask: Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    **kwargs,
) -> tuple[Tensor, None]:
    """transformers' attention interface: query [B, H, Tq, D], key and value [B, Hkv, Tk, D],
    ``attention_mask`` as transformers' SDPA mask builds it (bool, True = attend; or None).
    Returns the output as [B, Tq, H, D] and no weights."""
    B, H, q_len, D = query.shape
    kv_heads, k_len = key.shape[1], key.shape[2]
    special = any(kwargs.get(name) is not None for name in _UNSUPPORTED)
    wanted = query.dtype in DTYPES and B * H * q_len * k_len <= MAX_SCORES
    if query.device.type != "cpu" or dropout > 0 or special or not wanted:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout, scaling, is_causal, **kwargs
        )
    # the same causal rule as transformers' SDPA path: a missing mask means causal (upper
    # left) for several queries, none for one; with more keys than queries (a prefill into
    # an empty static cache) only the first Tq keys are real
    if is_causal is None:
        is_causal = getattr(module, "is_causal", True)
    causal = q_len > 1 and attention_mask is None and is_causal
    if causal and k_len > q_len:
        key, value, k_len = key[:, :, :q_len], value[:, :, :q_len], q_len
    groups = H // kv_heads
    scale = scaling if scaling is not None else D**-0.5
    q = query.reshape(B, kv_heads, groups * q_len, D)
    bias = _bias(attention_mask, causal, q_len, k_len)
    with torch.autocast("cpu", enabled=False):  # the types are chosen above: GEMMs in q's, softmax fp32
        out = _Attention.apply(q, key.to(q.dtype), value.to(q.dtype), bias, float(scale))
    return out.view(B, H, q_len, D).transpose(1, 2).contiguous(), None


def register() -> str:
    """Make ``NAME`` an attention implementation transformers models can load with (its
    masks built as for SDPA); returns the name."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    if NAME not in AttentionInterface._global_mapping:
        AttentionInterface.register(NAME, attention)
        ALL_MASK_ATTENTION_FUNCTIONS.register(NAME, sdpa_mask)
    return NAME
