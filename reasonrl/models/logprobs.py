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
    share_prompts: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """log π(c_t | prompt, c_<t) for every completion token, and optionally the entropy.

    Args:
      batch: a ``Rollouts`` (or anything with its four tensors): ``prompt_ids`` and
        ``prompt_mask`` [N, P], left-padded; ``completion_ids`` and ``completion_mask``
        [N, C], right-padded.
      temperature: the sampling temperature; log-probs are those of softmax(z / τ).
      with_entropy: also return the per-token entropy of softmax(z / τ).
      micro_batch: rows per forward pass (None = all at once).
      share_prompts: run each distinct prompt of a micro-batch through the model once and
        feed its keys and values to all of its completions (GRPO's G completions of a
        prompt, DPO's chosen and rejected). Same numbers, gradients included; the prompt's
        share of the compute and the activations shrinks G-fold. Falls back to whole
        sequences when prompts do not repeat or the model returns no cache (gradient
        checkpointing).
    Returns:
      (logprobs [N, C], entropy [N, C] or None); padding positions hold junk, mask them.
    """
    n = batch.completion_ids.shape[0]
    step = micro_batch or n
    logps, entropies = [], []
    for start in range(0, n, step):
        rows = slice(start, start + step)
        pieces = None
        if share_prompts:
            pieces = _shared_prompt_logits(model, batch, rows)
        if pieces is None:
            pieces = _whole_sequence_logits(model, batch, rows)
        ids = batch.completion_ids[rows]
        logp, entropy, offset = [], [], 0
        for logits in pieces:  # consecutive slices of the completion positions
            width = logits.shape[1]
            logp.append(token_logprobs(logits, ids[:, offset : offset + width], temperature))
            if with_entropy:
                with torch.no_grad():
                    entropy.append(entropy_from_logits(logits.detach(), temperature=temperature))
            offset += width
        del pieces, logits
        logps.append(torch.cat(logp, dim=1))
        if with_entropy:
            entropies.append(torch.cat(entropy, dim=1))
    return torch.cat(logps), (torch.cat(entropies) if with_entropy else None)


def _whole_sequence_logits(model, batch, rows: slice) -> list[torch.Tensor]:
    """One forward pass over prompt + completion; the logits that predict the completion."""
    C = batch.completion_ids.shape[1]
    input_ids = torch.cat([batch.prompt_ids[rows], batch.completion_ids[rows]], dim=1)
    mask = torch.cat([batch.prompt_mask[rows], batch.completion_mask[rows]], dim=1)
    # only the positions that predict completion tokens: the LM head over the prompt would
    # cost V floats per prompt token for nothing (49k for SmolLM2)
    out = model(
        input_ids=input_ids,
        attention_mask=mask.long(),
        position_ids=position_ids(mask),
        use_cache=False,
        logits_to_keep=C + 1,
    )
    return [out.logits[:, :-1]]


def _shared_prompt_logits(model, batch, rows: slice) -> list[torch.Tensor] | None:
    """Each distinct prompt once, then all completions on top of its keys and values.

    Returns [logits predicting c_0 (from the prompt's last position), logits predicting
    c_1 … c_{C-1}], or None when sharing would not save anything or cannot be done.
    """
    prompt_ids, prompt_mask = batch.prompt_ids[rows], batch.prompt_mask[rows]
    keyed = torch.cat([prompt_ids, prompt_mask.long()], dim=1)
    unique, inverse = torch.unique(keyed, dim=0, return_inverse=True)
    if len(unique) == len(keyed):
        return None
    P = prompt_ids.shape[1]
    ids, mask = unique[:, :P], unique[:, P:].bool()
    first = int(mask.any(0).nonzero()[0])  # drop columns that are padding in every prompt
    ids, mask = ids[:, first:], mask[:, first:]
    out = model(
        input_ids=ids,
        attention_mask=mask.long(),
        position_ids=position_ids(mask),
        use_cache=True,
        logits_to_keep=1,
    )
    cache = out.past_key_values
    if cache is None:
        return None
    _select_rows(cache, inverse)  # each completion gets its prompt's keys and values
    full_mask = torch.cat([mask[inverse], batch.completion_mask[rows]], dim=1)
    rest = model(
        input_ids=batch.completion_ids[rows],
        attention_mask=full_mask.long(),
        position_ids=position_ids(full_mask)[:, mask.shape[1] :],
        past_key_values=cache,
        use_cache=True,
    )
    return [out.logits[:, -1:].index_select(0, inverse), rest.logits[:, :-1]]


def _select_rows(cache, index: torch.Tensor) -> None:
    """Row ``index[i]`` of every layer's keys and values becomes row i (rows repeat).

    ``index_select``, not advanced indexing: the backward of ``t[index]`` with repeated
    rows accumulates with parallel atomic adds on CPU, in a different order each run,
    which broke bit-exact resumption; ``index_select`` accumulates in order.
    """
    for layer in cache.layers:
        layer.keys = layer.keys.index_select(0, index)
        layer.values = layer.values.index_select(0, index)
