"""Log-prob kernels: log π(token) from logits or from an LM head's input, with custom
autograd that keeps one small tensor for backward instead of [..., V] logits.

These are not losses: they turn model outputs into the log-probs every loss takes. They
live beside the losses because every caller of a loss needs them (the LLM trainers, the
teacher reward, the control agents' categorical policies) and, like the losses, they are
pure torch.
"""

from __future__ import annotations

import torch

from reasonrl.losses._checks import check_float
from reasonrl.losses.policy import entropy_from_logits

_LOG2E, _LN2 = 1.4426950408889634, 0.6931471805599453


class _TokenLogprobs(torch.autograd.Function):
    """z_k / τ − logsumexp(z / τ), keeping one [..., V] tensor (the logits) for backward.

    Autograd's own version keeps the scaled logits and builds the gradient from three
    [..., V] temporaries (softmax, the scattered one-hot, their sum); for an LM's
    49k-word vocabulary those are the largest tensors of a training step. Here the
    gradient (onehot_k − softmax(z / τ)) · g / τ is written into a single new tensor.
    """

    @staticmethod
    def forward(ctx, logits: torch.Tensor, index: torch.Tensor, temperature: float) -> torch.Tensor:
        scaled = logits if temperature == 1.0 else logits / temperature  # freed on return
        lse = torch.logsumexp(scaled, dim=-1)
        ctx.save_for_backward(logits, index, lse)
        ctx.temperature = temperature
        return scaled.gather(-1, index).squeeze(-1) - lse

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: torch.Tensor):
        logits, index, lse = ctx.saved_tensors
        g = (grad_out / ctx.temperature).unsqueeze(-1)
        grad = logits / ctx.temperature if ctx.temperature != 1.0 else logits.clone()
        grad.sub_(lse.unsqueeze(-1)).exp_().mul_(-g)  # −softmax(z / τ) · g / τ
        grad.scatter_add_(-1, index, g)
        return grad, None, None


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """log π(token) = z_token / τ − logsumexp(z / τ), without a full log-softmax copy.

    Gathering the chosen logit and subtracting the logsumexp keeps memory at one
    [..., V] tensor (the logits) instead of two, in the backward pass too (see
    ``_TokenLogprobs``). In bf16/fp16 the logsumexp runs row by row in float32,
    because a half-precision logsumexp over 49k entries loses
    the digits that distinguish near-equal log-probs.

    Args:
      logits: z, [..., V] (for a causal LM: the logits that *predict* each token).
      tokens: token ids, [...] (long).
      temperature: τ used when sampling; the log-probs are those of the sampling
        distribution softmax(z / τ).
    Returns:
      log-probs, [...], in logits' dtype (float32 for half inputs).
    """
    check_float("logits", logits)
    if tokens.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"tokens must be integer ids, got {tokens.dtype}")
    if logits.shape[:-1] != tokens.shape:
        raise ValueError(
            f"logits {tuple(logits.shape)} must be tokens {tuple(tokens.shape)} plus a vocab axis"
        )
    index = tokens.long().unsqueeze(-1)
    if logits.dtype in (torch.float32, torch.float64):
        return _TokenLogprobs.apply(logits, index, float(temperature))
    rows = [
        _TokenLogprobs.apply(row.float(), idx, float(temperature))
        for row, idx in zip(logits, index, strict=True)
    ]
    return torch.stack(rows)


class _LinearTokenLogprobs(torch.autograd.Function):
    """log π(token) of z = h Wᵀ + b, keeping one [T, H] tensor for backward, never [T, V].

    log π_t depends on h_t alone, through z_t, so its gradient with respect to h_t is a
    single vector: ∂ log π_t / ∂h_t = (W_{k_t} − Σ_v p_{t,v} W_v) / τ, p_t = softmax(z_t / τ).
    The forward pass computes it chunk by chunk while p_t is at hand (the GEMM p W costs
    what the backward's ∂z W would have), and the backward only scales it by the incoming
    gradient. So the logits, the largest tensors of an LM's training step (49k floats per
    token for SmolLM2), live one chunk at a time, and no [T, V] gradient is ever built.
    """

    @staticmethod
    def forward(ctx, hidden, weight, bias, index, temperature: float, chunk: int, with_entropy: bool):
        logp, entropy, jacobian = _linear_token_logprobs_chunked(
            hidden, weight, bias, index, temperature, chunk, with_entropy, with_jacobian=True
        )
        ctx.save_for_backward(jacobian)
        ctx.dtype = hidden.dtype
        entropy = logp.new_empty(0) if entropy is None else entropy
        ctx.mark_non_differentiable(entropy)
        return logp, entropy

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_logp, _grad_entropy):
        (jacobian,) = ctx.saved_tensors
        return (grad_logp.unsqueeze(-1) * jacobian).to(ctx.dtype), None, None, None, None, None, None


def _linear_token_logprobs_chunked(
    hidden, weight, bias, index, temperature, chunk, with_entropy, with_jacobian
):
    """The chunked loop behind ``linear_token_logprobs``: hidden [T, H], index [T]."""
    T = hidden.shape[0]
    acc = torch.promote_types(hidden.dtype, torch.float32)  # half inputs: float32 softmax
    logp = hidden.new_empty(T, dtype=acc)
    entropy = hidden.new_empty(T, dtype=acc) if with_entropy else None
    jacobian = torch.empty_like(hidden, dtype=acc) if with_jacobian else None
    buffer = None  # the chunks' probabilities, allocated once (16 MiB: with glibc's malloc a
    # fresh one per chunk is fresh pages to fault in, every time)
    for start in range(0, T, chunk):
        end = min(start + chunk, T)
        # the softmax in base 2 (exp2 is several times faster than exp on CPUs):
        # z ← (logits / τ) · log2 e − max, p ∝ 2^z, log p = (z − log2 Σ 2^z) · ln 2
        z = torch.nn.functional.linear(hidden[start:end], weight, bias).to(acc)
        z.mul_(_LOG2E / temperature)
        z.sub_(z.amax(dim=-1, keepdim=True))
        if buffer is None:
            buffer = torch.empty((min(chunk, T), z.shape[-1]), dtype=acc)
        p = torch.exp2(z, out=buffer[: end - start])
        total = p.sum(dim=-1, keepdim=True)
        log2_total = total.log2()
        tokens = index[start:end].unsqueeze(-1)
        logp[start:end] = (z.gather(-1, tokens) - log2_total).squeeze(-1) * _LN2
        if with_entropy or with_jacobian:
            p.div_(total)
        if with_entropy:
            entropy[start:end] = (log2_total.squeeze(-1) - torch.linalg.vecdot(p, z)) * _LN2
        del z  # before the product below: a chunk's peak is p and its copy in W's type
        if with_jacobian:
            expected = (p.to(weight.dtype) @ weight).to(acc)  # Σ_v p_v W_v
            jacobian[start:end] = (weight[index[start:end]].to(acc) - expected).div_(temperature)
    return logp, entropy, jacobian


def linear_token_logprobs(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    tokens: torch.Tensor,
    temperature: float = 1.0,
    bias: torch.Tensor | None = None,
    with_entropy: bool = False,
    chunk_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``token_logprobs`` (and ``entropy_from_logits``) of the logits z = hidden Wᵀ + b,
    computed ``chunk_size`` tokens at a time: the [..., V] logits are never whole.

    The same numbers as ``token_logprobs(F.linear(hidden, weight, bias), tokens, τ)``
    up to rounding, and the same gradient for ``hidden``. Memory: the backward keeps one
    float32 vector per token (``_LinearTokenLogprobs``), instead of the logits, and the
    forward's temporaries are a chunk's. When ``weight`` or ``bias`` takes a gradient (a
    trained LM head), that gradient needs the whole softmax, so this falls back to the
    unfused computation.

    Args:
      hidden: h, [..., H], the LM head's input (for a causal LM: the positions that
        *predict* each token).
      weight: W, [V, H]; bias: b, [V] or None.
      tokens: token ids, [...] (long).
      temperature: τ; the log-probs are those of softmax(z / τ).
      with_entropy: also return the entropy of softmax(z / τ), without gradient.
      chunk_size: tokens per chunk; default: about 16 MiB of float32 logits (SmolLM2: 85
        tokens; 170 ran the head of 512 tokens alone 138 -> 108 ms, but the GRPO bench's
        steps no faster, at 80 MiB more peak memory).
    Returns:
      (log-probs [...], entropy [...] or None), float32 (float64 for float64 inputs).
    """
    check_float("hidden", hidden)
    if hidden.shape[:-1] != tokens.shape or hidden.shape[-1] != weight.shape[-1]:
        raise ValueError(
            f"hidden {tuple(hidden.shape)} must be tokens {tuple(tokens.shape)} plus the "
            f"head's input axis ({weight.shape[-1]})"
        )
    head_params = [weight] if bias is None else [weight, bias]
    if torch.is_grad_enabled() and any(p.requires_grad for p in head_params):
        logits = torch.nn.functional.linear(hidden, weight, bias)
        logp = token_logprobs(logits, tokens, temperature)
        if not with_entropy:
            return logp, None
        with torch.no_grad():
            return logp, entropy_from_logits(logits.detach(), temperature=temperature)
    shape = tokens.shape
    flat, index = hidden.reshape(-1, hidden.shape[-1]), tokens.reshape(-1).long()
    chunk = chunk_size or max(1, (1 << 22) // weight.shape[0])
    if torch.is_grad_enabled() and hidden.requires_grad:
        logp, entropy = _LinearTokenLogprobs.apply(
            flat, weight, bias, index, float(temperature), chunk, with_entropy
        )
    else:
        logp, entropy, _ = _linear_token_logprobs_chunked(
            flat, weight, bias, index, float(temperature), chunk, with_entropy, with_jacobian=False
        )
    return logp.view(shape), (entropy.view(shape) if with_entropy else None)
