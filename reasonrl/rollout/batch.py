"""Token batches: ``Rollouts`` (sampled completions, with everything a trainer needs) and
``PreferencePairs`` (DPO's chosen and rejected rows), both ``TokenBatch``es, which is what
a log-prob pass reads."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import torch


def _pad(rows: list[list], width: int, value, dtype, left: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of different lengths as a [len(rows), width] tensor and its mask."""
    out = torch.full((len(rows), width), value, dtype=dtype)
    mask = torch.zeros(len(rows), width, dtype=torch.bool)
    for i, row in enumerate(rows):
        if row:
            where = slice(width - len(row), width) if left else slice(0, len(row))
            out[i, where] = torch.tensor(row, dtype=dtype)
            mask[i, where] = True
    return out, mask


@dataclass
class TokenBatch:
    """Prompt + completion token rows: what a log-prob pass over completions reads.

    Prompts are left-padded and completions right-padded, so ``cat([prompt_ids,
    completion_ids])`` puts every completion's first token right after its prompt's last.
    """

    prompt_ids: torch.Tensor  # [N, P] long, left-padded
    prompt_mask: torch.Tensor  # [N, P] bool
    completion_ids: torch.Tensor  # [N, C] long, right-padded
    completion_mask: torch.Tensor  # [N, C] bool

    def __len__(self) -> int:
        return self.completion_ids.shape[0]

    @property
    def completion_lengths(self) -> torch.Tensor:
        return self.completion_mask.sum(-1)

    def input_ids(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(input_ids, attention_mask) of prompt + completion, [N, P + C]."""
        return (
            torch.cat([self.prompt_ids, self.completion_ids], dim=1),
            torch.cat([self.prompt_mask, self.completion_mask], dim=1),
        )

    def select(self, index: Sequence[int] | torch.Tensor):
        """The rows at ``index`` (a minibatch), in that order, as the same type."""
        index = torch.as_tensor(index, dtype=torch.long)
        picked = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                picked[f.name] = None
            elif isinstance(value, torch.Tensor):
                picked[f.name] = value[index]
            else:
                picked[f.name] = [value[i] for i in index]
        return type(self)(**picked)

    @staticmethod
    def padded(prompt_ids: list[list[int]], completion_ids: list[list[int]], pad_token_id: int) -> dict:
        """The four token tensors of ``TokenBatch`` from unpadded rows."""
        if len(prompt_ids) != len(completion_ids):
            raise ValueError(f"{len(prompt_ids)} prompts for {len(completion_ids)} completions")
        P = max((len(p) for p in prompt_ids), default=0)
        C = max((len(c) for c in completion_ids), default=0)
        p_ids, p_mask = _pad(prompt_ids, P, pad_token_id, torch.long, left=True)
        c_ids, c_mask = _pad(completion_ids, C, pad_token_id, torch.long, left=False)
        return dict(prompt_ids=p_ids, prompt_mask=p_mask, completion_ids=c_ids, completion_mask=c_mask)


@dataclass
class PreferencePairs(TokenBatch):
    """B preference pairs as 2B rows: rows 0..B-1 the chosen completions, B..2B-1 the
    rejected ones, each after its prompt."""

    @property
    def num_pairs(self) -> int:
        return len(self) // 2

    @classmethod
    def from_lists(
        cls,
        prompt_ids: list[list[int]],
        chosen: list[list[int]],
        rejected: list[list[int]],
        pad_token_id: int,
    ) -> PreferencePairs:
        if not len(prompt_ids) == len(chosen) == len(rejected):
            raise ValueError(f"{len(prompt_ids)} prompts, {len(chosen)} chosen, {len(rejected)} rejected")
        return cls(**cls.padded(prompt_ids * 2, chosen + rejected, pad_token_id))


@dataclass
class Rollouts(TokenBatch):
    """Completions sampled for a batch of prompts, padded into tensors.

    N completions in all; ``group_ids[i]`` is the index of the prompt completion i
    answers, so the G completions of one prompt share a group id.
    """

    sampling_logprobs: torch.Tensor  # [N, C] float32: log-probs of the sampling distribution, 0 on padding
    group_ids: torch.Tensor  # [N] long
    prompts: list[str]  # rendered prompt text, per completion
    texts: list[str]  # decoded completion (stop strings removed), per completion
    finish_reasons: list[str]  # "stop" (eos or stop string) or "length"
    # [N, C] bool, multi-turn episodes only: true where the model wrote the token (the
    # environment's tokens are context, never trained on); None: every completion token
    model_mask: torch.Tensor | None = None

    @property
    def loss_mask(self) -> torch.Tensor:
        """[N, C] bool: the tokens the losses, KL and entropy count."""
        return self.completion_mask if self.model_mask is None else self.model_mask & self.completion_mask

    @property
    def truncated(self) -> torch.Tensor:
        """[N] bool: the completion hit max_tokens instead of stopping."""
        return torch.tensor([r == "length" for r in self.finish_reasons], dtype=torch.bool)

    @classmethod
    def from_lists(
        cls,
        prompt_ids: list[list[int]],
        completion_ids: list[list[int]],
        logprobs: list[list[float]],
        group_ids: list[int],
        prompts: list[str],
        texts: list[str],
        finish_reasons: list[str],
        pad_token_id: int,
        owners: list[list[bool]] | None = None,
    ) -> Rollouts:
        n = len(completion_ids)
        per_completion = dict(
            prompt_ids=prompt_ids,
            logprobs=logprobs,
            group_ids=group_ids,
            prompts=prompts,
            texts=texts,
            finish_reasons=finish_reasons,
        )
        for name, seq in per_completion.items():
            if len(seq) != n:
                raise ValueError(f"{name} has {len(seq)} entries for {n} completions")
        for i, (ids, lps) in enumerate(zip(completion_ids, logprobs, strict=True)):
            if len(ids) != len(lps):
                raise ValueError(f"completion {i}: {len(ids)} tokens but {len(lps)} log-probs")
        tokens = cls.padded(prompt_ids, completion_ids, pad_token_id)
        C = tokens["completion_ids"].shape[1]
        c_lp, _ = _pad(logprobs, C, 0.0, torch.float32, left=False)
        model_mask = None
        if owners is not None:
            model_mask, _ = _pad(owners, C, False, torch.bool, left=False)
        return cls(
            model_mask=model_mask,
            **tokens,
            sampling_logprobs=c_lp,
            group_ids=torch.tensor(group_ids, dtype=torch.long),
            prompts=list(prompts),
            texts=list(texts),
            finish_reasons=list(finish_reasons),
        )
