"""``Rollouts``: one batch of sampled completions, with everything a trainer needs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import torch


@dataclass
class Rollouts:
    """Completions sampled for a batch of prompts, padded into tensors.

    N completions in all; ``group_ids[i]`` is the index of the prompt completion i
    answers, so the G completions of one prompt share a group id. Prompts are
    left-padded and completions right-padded, so ``cat([prompt_ids, completion_ids])``
    puts every completion's first token right after its prompt's last.
    """

    prompt_ids: torch.Tensor  # [N, P] long, left-padded
    prompt_mask: torch.Tensor  # [N, P] bool
    completion_ids: torch.Tensor  # [N, C] long, right-padded
    completion_mask: torch.Tensor  # [N, C] bool
    sampling_logprobs: torch.Tensor  # [N, C] float32: log-probs of the sampling distribution, 0 on padding
    group_ids: torch.Tensor  # [N] long
    prompts: list[str]  # rendered prompt text, per completion
    texts: list[str]  # decoded completion (stop strings removed), per completion
    finish_reasons: list[str]  # "stop" (eos or stop string) or "length"

    def __len__(self) -> int:
        return self.completion_ids.shape[0]

    @property
    def truncated(self) -> torch.Tensor:
        """[N] bool: the completion hit max_tokens instead of stopping."""
        return torch.tensor([r == "length" for r in self.finish_reasons], dtype=torch.bool)

    @property
    def completion_lengths(self) -> torch.Tensor:
        return self.completion_mask.sum(-1)

    def input_ids(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(input_ids, attention_mask) of prompt + completion, [N, P + C]."""
        return (
            torch.cat([self.prompt_ids, self.completion_ids], dim=1),
            torch.cat([self.prompt_mask, self.completion_mask], dim=1),
        )

    def select(self, index: Sequence[int] | torch.Tensor) -> Rollouts:
        """The completions at ``index`` (a minibatch), in that order."""
        index = torch.as_tensor(index, dtype=torch.long)
        picked = {}
        for f in fields(self):
            value = getattr(self, f.name)
            picked[f.name] = value[index] if isinstance(value, torch.Tensor) else [value[i] for i in index]
        return Rollouts(**picked)

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
        P = max((len(p) for p in prompt_ids), default=0)
        C = max((len(c) for c in completion_ids), default=0)
        p_ids = torch.full((n, P), pad_token_id, dtype=torch.long)
        p_mask = torch.zeros(n, P, dtype=torch.bool)
        c_ids = torch.full((n, C), pad_token_id, dtype=torch.long)
        c_mask = torch.zeros(n, C, dtype=torch.bool)
        c_lp = torch.zeros(n, C, dtype=torch.float32)
        for i in range(n):
            p, c = prompt_ids[i], completion_ids[i]
            if p:
                p_ids[i, P - len(p) :] = torch.tensor(p)
                p_mask[i, P - len(p) :] = True
            if c:
                c_ids[i, : len(c)] = torch.tensor(c)
                c_mask[i, : len(c)] = True
                c_lp[i, : len(c)] = torch.tensor(logprobs[i], dtype=torch.float32)
        return cls(
            prompt_ids=p_ids,
            prompt_mask=p_mask,
            completion_ids=c_ids,
            completion_mask=c_mask,
            sampling_logprobs=c_lp,
            group_ids=torch.tensor(group_ids, dtype=torch.long),
            prompts=list(prompts),
            texts=list(texts),
            finish_reasons=list(finish_reasons),
        )
