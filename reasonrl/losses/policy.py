"""Policy losses: importance ratios, the clipped surrogate, KL estimators, entropy.

Token tensors are batch-first ``[B, T]`` (sequences × completion tokens); for the
control agents ``B·T`` is simply a flat batch of transitions and ``[N]`` works
as well. Every function returns *per-element* values: reduce them with
:mod:`reasonrl.losses.aggregation`, which is where masks and loss types live.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch

from reasonrl.losses._checks import check_float, check_shapes

KLEstimator = Literal["k1", "k2", "k3"]


def importance_ratio(logp: torch.Tensor, old_logp: torch.Tensor) -> torch.Tensor:
    """r_t = π_θ(a_t|s_t) / π_old(a_t|s_t) = exp(log π_θ − log π_old), same shape as inputs."""
    check_shapes(logp=logp, old_logp=old_logp)
    return torch.exp(logp - old_logp)


class SurrogateOutput(NamedTuple):
    loss: torch.Tensor  # per-element loss to minimise, shape of logp
    ratio: torch.Tensor  # r_t, detached
    is_clipped: torch.Tensor  # bool: the clipped branch was taken (its gradient is zero)


def _broadcast_advantages(advantages: torch.Tensor, logp: torch.Tensor) -> torch.Tensor:
    check_float("advantages", advantages)
    if advantages.shape == logp.shape:
        return advantages
    if advantages.dim() == 1 and logp.dim() == 2 and advantages.shape[0] == logp.shape[0]:
        return advantages.unsqueeze(1)  # one advantage per sequence, shared by its tokens
    raise ValueError(
        f"advantages must have the shape of logp {tuple(logp.shape)} or one value per "
        f"sequence [{logp.shape[0]}], got {tuple(advantages.shape)}"
    )


def clipped_surrogate(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    epsilon_low: float = 0.2,
    epsilon_high: float | None = None,
    dual_clip: float | None = None,
) -> SurrogateOutput:
    """PPO's clipped surrogate (Schulman et al. 2017, arXiv:1707.06347, eq. 7), as a loss.

        L_t = − min(r_t A_t, clip(r_t, 1 − ε_low, 1 + ε_high) A_t)

    ε_high > ε_low is DAPO's clip-higher (Yu et al. 2025, arXiv:2503.14476). With
    ``dual_clip = c > 1`` (Ye et al. 2020, arXiv:1912.09729) negative advantages are
    also bounded from below: L_t = min(L_t, −c A_t) when A_t < 0.

    Args:
      logp: log π_θ(a_t|s_t), [B, T] or [N]; carries the gradient.
      old_logp: log π_old(a_t|s_t) of the policy that sampled, same shape (a constant).
      advantages: A_t, same shape as logp, or [B] (one per sequence) for [B, T] inputs.
      epsilon_low, epsilon_high: clip range; epsilon_high defaults to epsilon_low.
      dual_clip: c > 1, or None.
    Returns:
      SurrogateOutput(loss, ratio, is_clipped), each shaped like logp.
    """
    check_shapes(logp=logp, old_logp=old_logp)
    advantages = _broadcast_advantages(advantages, logp)
    epsilon_high = epsilon_low if epsilon_high is None else epsilon_high
    if epsilon_low < 0 or epsilon_high < 0:
        raise ValueError(f"clip ranges must be >= 0, got {epsilon_low}, {epsilon_high}")
    ratio = torch.exp(logp - old_logp.detach())
    unclipped = ratio * advantages
    clipped = ratio.clamp(1.0 - epsilon_low, 1.0 + epsilon_high) * advantages
    loss = -torch.min(unclipped, clipped)
    is_clipped = clipped < unclipped
    if dual_clip is not None:
        if dual_clip <= 1.0:
            raise ValueError(f"dual_clip must be > 1, got {dual_clip}")
        cap = -dual_clip * advantages  # the loss of a negative advantage never exceeds −c A
        dual = (advantages < 0) & (loss > cap)
        loss = torch.where(dual, cap, loss)
        is_clipped = is_clipped | dual
    return SurrogateOutput(loss=loss, ratio=ratio.detach(), is_clipped=is_clipped)


def policy_gradient_loss(logp: torch.Tensor, advantages: torch.Tensor) -> torch.Tensor:
    """The score-function (REINFORCE) loss, as used with V-trace advantages (IMPALA, eq. 4).

        L_t = − A_t · log π_θ(a_t|x_t)          (A_t a constant: ρ_t (r_t + γ v_{t+1} − V(x_t)) for IMPALA)

    Args:
      logp: log π_θ(a_t|x_t), any shape; carries the gradient.
      advantages: A_t, same shape (detached here).
    Returns:
      per-element loss, same shape.
    """
    check_shapes(logp=logp, advantages=advantages)
    return -advantages.detach() * logp


def soft_policy_loss(logp: torch.Tensor, q_values: torch.Tensor, alpha: float | torch.Tensor) -> torch.Tensor:
    """SAC's actor loss (Haarnoja et al. 2018, arXiv:1812.05905, eq. 7), reparameterised samples a ~ π(·|s):

        L = α log π(a|s) − Q(s, a)            (Q = min of the twin critics)

    Args:
      logp: log π(a|s) of reparameterised actions, [N]; carries the gradient.
      q_values: Q(s, a) at those actions, [N]; carries the gradient to the actor through a.
      alpha: temperature α (a constant here).
    Returns:
      per-sample loss, [N].
    """
    check_shapes(logp=logp, q_values=q_values)
    alpha = alpha.detach() if isinstance(alpha, torch.Tensor) else alpha
    return alpha * logp - q_values


def kl_estimate(
    logp: torch.Tensor,
    ref_logp: torch.Tensor,
    estimator: KLEstimator = "k3",
    sampling_logp: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-sample estimate of KL(π_θ ‖ π_ref) from tokens sampled by π_θ (J. Schulman,
    "Approximating KL divergence", 2020). With log ρ = log π_ref − log π_θ:

        k1 = −log ρ                  (unbiased, high variance, can be negative)
        k2 = ½ (log ρ)²              (biased, low variance)
        k3 = ρ − 1 − log ρ           (unbiased, ≥ 0; GRPO's and TRL's choice)

    When the tokens were sampled by another policy μ (the rollout policy of an
    earlier iteration), pass ``sampling_logp = log μ``: each estimate is then weighted
    by π_θ/μ (with gradient), which keeps it unbiased for KL(π_θ ‖ π_ref). This is
    TRL's ``use_bias_correction_kl`` (on by default in TRL 1.16).

    Args:
      logp: log π_θ of the sampled tokens, [B, T] or [N].
      ref_logp: log π_ref of the same tokens, same shape.
      estimator: "k1", "k2" or "k3".
      sampling_logp: log μ of the same tokens, or None when μ = π_θ.
    Returns:
      per-element KL estimate, same shape.
    """
    check_shapes(logp=logp, ref_logp=ref_logp)
    log_rho = ref_logp - logp
    if estimator == "k1":
        kl = -log_rho
    elif estimator == "k2":
        kl = 0.5 * log_rho**2
    elif estimator == "k3":
        kl = torch.exp(log_rho) - 1.0 - log_rho
    else:
        raise ValueError(f"estimator must be 'k1', 'k2' or 'k3', got {estimator!r}")
    if sampling_logp is not None:
        kl = kl * importance_ratio(logp, sampling_logp.detach())
    return kl


def entropy_from_logits(
    logits: torch.Tensor, chunk_size: int = 256, temperature: float = 1.0
) -> torch.Tensor:
    """Entropy H = logsumexp(z') − Σ_v softmax(z')_v z'_v, z' = z / τ, of each row of logits (nats).

    Rows are processed ``chunk_size`` at a time so a [B, T, V] tensor never needs a
    second full-size softmax (or scaled) copy.

    Args:
      logits: z, [..., V].
      temperature: τ; the entropy is that of the sampling distribution softmax(z / τ).
    Returns:
      H, [...].
    """
    check_float("logits", logits)
    flat = logits.reshape(-1, logits.shape[-1])
    out = []
    for chunk in flat.split(chunk_size):
        if temperature != 1.0:
            chunk = chunk / temperature
        out.append(torch.logsumexp(chunk, -1) - (torch.softmax(chunk, -1) * chunk).sum(-1))
    if not out:
        return logits.new_zeros(logits.shape[:-1])
    return (out[0] if len(out) == 1 else torch.cat(out)).view(logits.shape[:-1])


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
    for start in range(0, T, chunk):
        end = min(start + chunk, T)
        z = torch.nn.functional.linear(hidden[start:end], weight, bias).to(acc)
        if temperature != 1.0:
            z.div_(temperature)
        tokens = index[start:end].unsqueeze(-1)
        z.sub_(torch.logsumexp(z, dim=-1, keepdim=True))  # log p, in place
        logp[start:end] = z.gather(-1, tokens).squeeze(-1)
        if with_entropy or with_jacobian:
            p = z.exp()
            if with_entropy:
                entropy[start:end] = -torch.linalg.vecdot(p, z)
            if with_jacobian:
                expected = (p.to(weight.dtype) @ weight).to(acc)  # Σ_v p_v W_v
                jacobian[start:end] = (weight[index[start:end]].to(acc) - expected).div_(temperature)
        del z
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
      chunk_size: tokens per chunk; default: about 16 MiB of float32 logits.
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
