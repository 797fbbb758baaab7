"""Per-token log-probabilities of completions under a causal LM."""

from __future__ import annotations

import copy
import weakref
from dataclasses import dataclass
from itertools import pairwise

import torch
import torch.nn.functional as F

from reasonrl.losses import entropy_from_logits, linear_token_logprobs, token_logprobs

# What one extra forward + backward pass costs, in padded completion tokens: the price
# length grouping weighs against the padding a group carries. The pass's own cost (30
# layers of Python, autograd nodes and small GEMMs) is ~120 ms either way on SmolLM2-135M
# + LoRA (2-core AVX512-BF16, a GRPO micro-batch of 4 on a 113-token prompt); a token costs
# 3.7 ms in fp32 and 1.1 ms under bf16 autocast, so a pass is worth 33 and 106 tokens.
PASS_COST_TOKENS = 32
PASS_COST_TOKENS_HALF = 106
# Passes per micro-batch when several processes train together (see _passes_per_rank).
PASSES_PER_RANK = 2


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
    trim_padding: bool = True,
    fused_head: bool = True,
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
        sequences when prompts do not repeat (one process only) or the model returns no
        cache (gradient checkpointing).
      trim_padding: run the completions of a micro-batch in groups of similar length,
        each cut to its longest member (see ``length_groups``), instead of every row
        padded to C. RL completions vary a lot in length (a few hit the limit, many stop
        early), and padding costs as much compute as real tokens. Under several processes
        every rank makes the same number of passes (``PASSES_PER_RANK`` groups), because
        ZeRO-3 gathers each layer's parameters collectively in every forward pass and DDP
        broadcasts buffers in each.
      fused_head: apply the LM head and the log-softmax a chunk of tokens at a time, so
        the [N, C, V] logits never exist whole (``_Head``; same numbers up to rounding).
        Where the model does not allow it, its own logits are used.
    Returns:
      (logprobs [N, C], entropy [N, C] or None); padding positions hold junk, mask them.
    """
    n, C = batch.completion_ids.shape
    step = micro_batch or n
    head = _Head.of(model, fused_head)
    pass_cost = _pass_cost(model)
    logps, entropies = [], []
    for start in range(0, n, step):
        rows = torch.arange(start, min(start + step, n))
        lengths = batch.completion_mask[rows].sum(-1)
        if trim_padding:
            order = torch.sort(lengths, descending=True, stable=True).indices
            groups = length_groups(lengths[order].tolist(), pass_cost, _passes_per_rank())
        else:
            order, groups = torch.arange(len(rows)), [(0, len(rows), C)]
        prompts = _encode_prompts(model, head, batch, rows) if share_prompts else None
        logp, entropy = [], []
        for begin, end, width in groups:
            local = order[begin:end]  # positions within the micro-batch
            ids = batch.completion_ids[rows[local], :width]
            if prompts is not None:
                pieces = prompts.completion_features(model, head, batch, rows[local], local, width)
            else:
                pieces = _whole_sequence_features(model, head, batch, rows[local], width)
            lp, ent, offset = [], [], 0
            for features in pieces:  # consecutive slices of the completion positions
                span = features.shape[1]
                piece = head.logprobs(features, ids[:, offset : offset + span], temperature, with_entropy)
                lp.append(piece[0])
                ent.append(piece[1])
                offset += span
            del pieces, features
            logp.append(F.pad(torch.cat(lp, dim=1), (0, C - width)))
            if with_entropy:
                entropy.append(F.pad(torch.cat(ent, dim=1), (0, C - width)))
        back = torch.argsort(order)  # groups run in length order; rows go back in place
        logps.append(torch.cat(logp).index_select(0, back))
        if with_entropy:
            entropies.append(torch.cat(entropy).index_select(0, back))
    return torch.cat(logps), (torch.cat(entropies) if with_entropy else None)


def packed_completion_logprobs(model, batch, row_tokens: int, fused_head: bool = True) -> torch.Tensor:
    """log π(c_t | prompt, c_<t) for every completion token, [N, C], as
    ``completion_logprobs`` gives them, computed on packed rows.

    The sequences (prompt + completion, padding dropped) are packed first-fit-decreasing
    into rows of at most ``row_tokens`` tokens (a longer sequence gets a row of its own),
    position ids restarting at 0 for each sequence. With no attention mask, transformers
    reads the restarts as sequence boundaries and masks attention across them (TRL's
    padding-free packing), so every token sees its own sequence only: the same numbers as
    one row per sequence, without the padding. Supervised data of varied length (worked
    solutions of 50-400 tokens) pays for no padding at all, where length groups still pad
    inside each group.
    """
    n, C = batch.completion_ids.shape
    head = _Head.of(model, fused_head)
    prompts = [ids[m.bool()] for ids, m in zip(batch.prompt_ids, batch.prompt_mask, strict=True)]
    completions = [ids[m.bool()] for ids, m in zip(batch.completion_ids, batch.completion_mask, strict=True)]
    if any(len(p) == 0 for p in prompts):
        raise ValueError("packing needs at least one prompt token per row (the one before the first target)")
    lengths = [len(p) + len(c) for p, c in zip(prompts, completions, strict=True)]
    pieces = []
    for row in pack_rows(lengths, row_tokens):
        ids = torch.cat([torch.cat([prompts[i], completions[i]]) for i in row])[None]
        positions = torch.cat([torch.arange(lengths[i]) for i in row])[None].to(ids.device)
        _, features = head.forward(
            model, ids.shape[1], input_ids=ids, position_ids=positions, use_cache=False
        )
        offset, predictors = 0, []
        for i in row:  # the position before each completion token predicts it
            first = offset + len(prompts[i]) - 1
            predictors.append(torch.arange(first, first + len(completions[i])))
            offset += lengths[i]
        targets = torch.cat([completions[i] for i in row])[None]
        logp, _ = head.logprobs(features[:, torch.cat(predictors).to(ids.device)], targets, 1.0, False)
        pieces.extend(zip(row, logp[0].split([len(completions[i]) for i in row]), strict=True))
    out = batch.completion_ids.new_zeros((n, C), dtype=pieces[0][1].dtype)
    rows = torch.cat([torch.full((len(lp),), i) for i, lp in pieces])
    cols = torch.cat([torch.arange(len(lp)) for _, lp in pieces])
    return out.index_put((rows, cols), torch.cat([lp for _, lp in pieces]))


def pack_rows(lengths: list[int], row_tokens: int) -> list[list[int]]:
    """First-fit decreasing: indices of ``lengths`` grouped into rows of at most
    ``row_tokens`` (a longer one alone in its row), longest first."""
    rows: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        slot = next((r for r, free in enumerate(room) if free >= lengths[i]), None)
        if slot is None:
            rows.append([i])
            room.append(row_tokens - lengths[i])
        else:
            rows[slot].append(i)
            room[slot] -= lengths[i]
    return rows


def completion_logits(model, batch) -> torch.Tensor:
    """The logits that predict each completion token, [N, C, V] (the distribution over the
    vocabulary at every completion position: what distillation compares). One forward pass
    over prompt + completion; position ids count real tokens, as ``completion_logprobs``.
    Padding positions hold junk: mask them."""
    input_ids, mask = batch.input_ids()
    C = batch.completion_ids.shape[1]
    out = model(
        input_ids=input_ids,
        attention_mask=mask.long(),
        position_ids=position_ids(mask),
        use_cache=False,
        logits_to_keep=C + 1,
    )
    return out.logits[:, :-1]  # the last C + 1 positions: the one before each completion token


def _pass_cost(model) -> int:
    """``PASS_COST_TOKENS`` for the type the passes compute in: half precision (autocast
    to bf16/fp16, or a half-precision model) makes a token cheaper, not a pass."""
    half = (torch.bfloat16, torch.float16)
    first = next(model.parameters())
    device = first.device.type
    autocast = torch.is_autocast_enabled(device) and torch.get_autocast_dtype(device) in half
    return PASS_COST_TOKENS_HALF if autocast or first.dtype in half else PASS_COST_TOKENS


def length_groups(
    lengths: list[int], pass_cost: int = PASS_COST_TOKENS, passes: int | None = None
) -> list[tuple[int, int, int]]:
    """Split rows sorted by length (longest first) into consecutive groups, one forward
    pass each, minimising padded tokens plus ``pass_cost`` per pass.

    A group [i, j) is padded to lengths[i], so it costs (j − i) · lengths[i] + pass_cost.
    Cutting inside a run of equal lengths never lowers that, so only the m run starts
    are candidate cuts (RL batches have few distinct lengths: the tiny drill has 2 in
    256 rows) and the dynamic programme is O(m²), or O(passes · m²). ``passes`` fixes
    the number of groups (at most n; the first rows are extra candidates for it).
    Returns (begin, end, width) triples; width is at least 1.
    """
    n = len(lengths)
    if n == 0:
        return []
    width = [max(x, 1) for x in lengths]
    fixed = None if passes is None else min(passes, n)
    runs = {i for i in range(n) if i == 0 or width[i] != width[i - 1]}
    cuts = sorted(runs | set(range(fixed or 0))) + [n]  # candidate group starts, then the end

    def cost(a: int, b: int) -> float:  # the group from cuts[a] to cuts[b]
        return (cuts[b] - cuts[a]) * width[cuts[a]] + pass_cost

    m = len(cuts) - 1
    inf = float("inf")
    if fixed is None:  # best[b]: cheapest split of the rows before cuts[b]
        best, back = [0.0] + [inf] * m, [0] * (m + 1)
        for b in range(1, m + 1):
            back[b] = min(range(b), key=lambda a: best[a] + cost(a, b))
            best[b] = best[back[b]] + cost(back[b], b)
        chain = [m]
        while chain[-1] > 0:
            chain.append(back[chain[-1]])
    else:  # best[k][b]: the same with exactly k groups
        best = [[0.0] + [inf] * m] + [[inf] * (m + 1) for _ in range(fixed)]
        back = [[0] * (m + 1) for _ in range(fixed + 1)]
        for k in range(1, fixed + 1):
            for b in range(k, m + 1):
                back[k][b] = min(range(k - 1, b), key=lambda a: best[k - 1][a] + cost(a, b))
                best[k][b] = best[k - 1][back[k][b]] + cost(back[k][b], b)
        chain, k = [m], fixed
        while k > 0:
            chain.append(back[k][chain[-1]])
            k -= 1
    chain.reverse()
    return [(cuts[a], cuts[b], width[cuts[a]]) for a, b in pairwise(chain)]


def _passes_per_rank() -> int | None:
    """A fixed number of passes when several processes train together, else None (free)."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return PASSES_PER_RANK
    return None


_NO_POSITIONS = torch.empty(0, dtype=torch.long)  # logits_to_keep: no logits at all
_VERIFIED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # head → model returns its output as is


@dataclass(frozen=True)
class _Head:
    """How the last positions of a forward pass become log-probs.

    Fused (``linear`` set): the model returns its LM head's inputs, and
    ``linear_token_logprobs`` applies the head a chunk of tokens at a time. No [N, T, V]
    logits are built, nor kept for the backward, nor their gradient: with a 49k-word
    vocabulary (SmolLM2) those are the largest tensors of an update, 100 MB each for a
    micro-batch of 4 × 128 tokens. It takes a head that is a plain ``nn.Linear``, whose
    weight takes no gradient (LoRA, or no gradient at all) and is whole on this rank (not a
    ZeRO-3 partition), and whose output the model returns unchanged (checked once per
    model: no logit soft-capping or scaling). Otherwise the model's own logits are used.
    """

    linear: torch.nn.Linear | None

    @staticmethod
    def of(model, fused: bool = True) -> _Head:
        inner = model
        while isinstance(getattr(inner, "module", None), torch.nn.Module):  # DDP, DeepSpeed
            inner = inner.module
        get = getattr(inner, "get_output_embeddings", None)
        linear = get() if fused and get is not None else None
        if (
            type(linear) is not torch.nn.Linear
            or hasattr(linear.weight, "ds_id")  # ZeRO-3: gathered only inside the module's forward
            or (torch.is_grad_enabled() and any(p.requires_grad for p in linear.parameters()))
        ):
            return _Head(None)
        if linear not in _VERIFIED:
            _VERIFIED[linear] = _returns_head_output(model, linear)
        return _Head(linear if _VERIFIED[linear] else None)

    def forward(self, model, keep: int, **inputs):
        """``model(**inputs)``, and what its last ``keep`` positions give the log-probs:
        the head's inputs [B, keep, H] when fused, else the logits [B, keep, V]."""
        if self.linear is None:
            out = model(**inputs, logits_to_keep=keep)
            return out, out.logits
        out = model(**inputs, logits_to_keep=_NO_POSITIONS, output_hidden_states=True)
        return out, out.hidden_states[-1][:, -keep:]

    def logprobs(self, features, ids, temperature: float, with_entropy: bool):
        """(log-probs, entropy or None) of ``ids`` from ``forward``'s features."""
        if self.linear is not None:
            head = self.linear
            return linear_token_logprobs(features, head.weight, ids, temperature, head.bias, with_entropy)
        logp = token_logprobs(features, ids, temperature)
        if not with_entropy:
            return logp, None
        with torch.no_grad():
            return logp, entropy_from_logits(features.detach(), temperature=temperature)


def _returns_head_output(model, linear: torch.nn.Linear) -> bool:
    """Whether ``model``'s logits are ``linear`` applied to its last hidden states, on a
    two-token input (a model that soft-caps or scales its logits fails this)."""
    ids = torch.tensor([[0, 1]], device=linear.weight.device)
    with torch.no_grad():
        out = model(input_ids=ids, use_cache=False, output_hidden_states=True, logits_to_keep=1)
        mine = F.linear(out.hidden_states[-1][:, -1:], linear.weight, linear.bias)
    return out.logits.shape == mine.shape and torch.allclose(out.logits, mine, rtol=1e-3, atol=1e-3)


def _whole_sequence_features(model, head: _Head, batch, rows: torch.Tensor, width: int) -> list[torch.Tensor]:
    """One forward pass over prompt + the first ``width`` completion tokens of ``rows``;
    the head's inputs or logits (``_Head``) that predict those tokens."""
    prompt_mask = batch.prompt_mask[rows]
    first = _first_real_column(prompt_mask)
    input_ids = torch.cat([batch.prompt_ids[rows, first:], batch.completion_ids[rows, :width]], dim=1)
    mask = torch.cat([prompt_mask[:, first:], batch.completion_mask[rows, :width]], dim=1)
    # only the positions that predict completion tokens: the LM head over the prompt would
    # cost V floats per prompt token for nothing (49k for SmolLM2)
    _, features = head.forward(
        model,
        width + 1,
        input_ids=input_ids,
        attention_mask=mask.long(),
        position_ids=position_ids(mask),
        use_cache=False,
    )
    return [features[:, :-1]]


@dataclass
class _SharedPrompts:
    """The distinct prompts of a micro-batch, run through the model once."""

    cache: object  # their keys and values (a transformers Cache)
    first: torch.Tensor  # [U, 1, F]: the head's input or logits that predict c_0
    mask: torch.Tensor  # [U, P'] bool, all-padding columns dropped
    inverse: torch.Tensor  # [n]: the prompt of each row of the micro-batch

    def completion_features(self, model, head: _Head, batch, rows, local, width: int) -> list[torch.Tensor]:
        """The completions ``rows`` (micro-batch positions ``local``), cut to ``width``
        tokens, on top of their prompts' keys and values.

        Returns [features predicting c_0, features predicting c_1 … c_{width-1}].
        """
        prompt = self.inverse[local]
        full_mask = torch.cat([self.mask[prompt], batch.completion_mask[rows, :width]], dim=1)
        _, features = head.forward(
            model,
            width,
            input_ids=batch.completion_ids[rows, :width],
            attention_mask=full_mask.long(),
            position_ids=position_ids(full_mask)[:, self.mask.shape[1] :],
            past_key_values=_rows_of(self.cache, prompt),
            use_cache=True,
        )
        return [self.first.index_select(0, prompt), features[:, :-1]]


def _encode_prompts(model, head: _Head, batch, rows: torch.Tensor) -> _SharedPrompts | None:
    """Each distinct prompt of ``rows`` once; None when sharing would not save anything
    or cannot be done (no repeats, or the model returns no cache).

    Under several processes the prompts are encoded even without repeats: every rank must
    make the same passes, whatever its rows (see ``_passes_per_rank``).
    """
    prompt_ids, prompt_mask = batch.prompt_ids[rows], batch.prompt_mask[rows]
    keyed = torch.cat([prompt_ids, prompt_mask.long()], dim=1)
    unique, inverse = torch.unique(keyed, dim=0, return_inverse=True)
    if len(unique) == len(keyed) and _passes_per_rank() is None:
        return None
    P = prompt_ids.shape[1]
    ids, mask = unique[:, :P], unique[:, P:].bool()
    first = _first_real_column(mask)
    ids, mask = ids[:, first:], mask[:, first:]
    out, first = head.forward(
        model, 1, input_ids=ids, attention_mask=mask.long(), position_ids=position_ids(mask), use_cache=True
    )
    if out.past_key_values is None:
        return None
    return _SharedPrompts(out.past_key_values, first, mask, inverse)


def _first_real_column(mask: torch.Tensor) -> int:
    """The first column that is not padding in every row (left padding)."""
    real = mask.any(0).nonzero()
    return int(real[0]) if len(real) else 0


def _rows_of(cache, index: torch.Tensor):
    """A new cache whose row i holds row ``index[i]`` of ``cache``'s keys and values
    (rows repeat); ``cache`` itself is left as it is, for the next group.

    ``index_select``, not advanced indexing: the backward of ``t[index]`` with repeated
    rows accumulates with parallel atomic adds on CPU, in a different order each run,
    which broke bit-exact resumption; ``index_select`` accumulates in order.
    """
    picked = copy.copy(cache)
    picked.layers = []
    for layer in cache.layers:
        layer = copy.copy(layer)
        layer.keys = layer.keys.index_select(0, index)
        layer.values = layer.values.index_select(0, index)
        picked.layers.append(layer)
    return picked
