"""Per-token log-probabilities of completions under a causal LM."""

from __future__ import annotations

import torch

from reasonrl.losses import entropy_from_logits, token_logprobs


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions counted over real tokens only, so left padding does not shift them."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def completion_logprobs(
    model,
    batch,
    temperature: float = 1.0,
    with_entropy: bool = False,
    micro_batch: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """log π(c_t | prompt, c_<t) for every completion token, and optionally the entropy.

    Args:
      batch: a ``Rollouts`` (or anything with its four tensors): ``prompt_ids`` and
        ``prompt_mask`` [N, P], left-padded; ``completion_ids`` and ``completion_mask``
        [N, C], right-padded.
      temperature: the sampling temperature; log-probs are those of softmax(z / τ).
      with_entropy: also return the per-token entropy of softmax(z / τ).
      micro_batch: rows per forward pass (None = all at once).
    Returns:
      (logprobs [N, C], entropy [N, C] or None); padding positions hold junk, mask them.
    """
    completion_ids = batch.completion_ids
    C = completion_ids.shape[1]
    input_ids = torch.cat([batch.prompt_ids, completion_ids], dim=1)
    mask = torch.cat([batch.prompt_mask, batch.completion_mask], dim=1)
    step = micro_batch or input_ids.shape[0]
    logps, entropies = [], []
    for start in range(0, input_ids.shape[0], step):
        rows = slice(start, start + step)
        # only the positions that predict completion tokens: the LM head over the prompt would
        # cost V floats per prompt token for nothing (49k for SmolLM2)
        logits = model(
            input_ids=input_ids[rows],
            attention_mask=mask[rows].long(),
            position_ids=position_ids(mask[rows]),
            use_cache=False,
            logits_to_keep=C + 1,
        ).logits[:, :-1]
        if temperature != 1.0:
            logits = logits / temperature
        logps.append(token_logprobs(logits, completion_ids[rows]))
        if with_entropy:
            with torch.no_grad():
                entropies.append(entropy_from_logits(logits.detach()))
        del logits
    return torch.cat(logps), (torch.cat(entropies) if with_entropy else None)
