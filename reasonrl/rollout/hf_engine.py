"""``HFEngine``: rollouts with transformers ``generate``; the fallback and the reference."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from reasonrl.models.logprobs import completion_logprobs, position_ids
from reasonrl.rollout.batch import Rollouts
from reasonrl.rollout.engine import Prompt, SamplingConfig, cut_at_stop, encode_prompts


class HFEngine:
    """Samples with ``model.generate`` on the trainer's own model (no weight copy needed).

    Sampling draws from torch's global generator: seed it (``torch.manual_seed``)
    before ``generate`` for reproducible samples, as the trainers do every step.

    Sampling log-probs are recomputed with one forward pass after generation: keeping
    ``generate``'s per-step scores would cost N × V × steps floats. They are the
    log-probs of softmax(z / τ); top-p truncation is not reflected (use top_p = 1
    for RL, as the trainers do).
    """

    shares_trainer_weights = True

    def __init__(self, model, tokenizer, generation_batch: int = 64, micro_batch: int = 16):
        self.model = model
        self.tokenizer = tokenizer
        self.generation_batch = generation_batch  # completions per generate() call
        self.micro_batch = micro_batch  # rows per log-prob forward pass

    def close(self) -> None:
        """Nothing to release: the model belongs to the caller."""

    def update_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Load weights into the engine's model (a no-op when it *is* the trainer's model)."""
        params = dict(self.model.named_parameters())
        with torch.no_grad():
            for name, tensor in named_tensors:
                if name in params and params[name].data_ptr() != tensor.data_ptr():
                    params[name].copy_(tensor)

    @torch.no_grad()
    def generate(self, prompts: list[Prompt], sampling: SamplingConfig) -> Rollouts:
        tok = self.tokenizer
        texts, prompt_ids = encode_prompts(tok, prompts)
        was_training = self.model.training
        self.model.eval()
        out_prompts, out_ids, groups, reasons, out_texts = [], [], [], [], []
        try:
            per_call = max(1, self.generation_batch // sampling.n)
            for start in range(0, len(prompt_ids), per_call):
                chunk = prompt_ids[start : start + per_call]
                for offset, completion in enumerate(self._generate_chunk(chunk, sampling)):
                    g = start + offset // sampling.n
                    ids, reason, text = completion
                    out_prompts.append(prompt_ids[g])
                    out_ids.append(ids)
                    groups.append(g)
                    reasons.append(reason)
                    out_texts.append(text)
            batch = Rollouts.from_lists(
                out_prompts,
                out_ids,
                [[0.0] * len(c) for c in out_ids],
                groups,
                [texts[g] for g in groups],
                out_texts,
                reasons,
                tok.pad_token_id,
            )
            logps, _ = completion_logprobs(
                self.model,
                batch,
                temperature=sampling.temperature or 1.0,
                micro_batch=self.micro_batch,
            )
            batch.sampling_logprobs = (logps * batch.completion_mask).float()
        finally:
            self.model.train(was_training)
        return batch

    def _generate_chunk(self, prompt_ids: list[list[int]], sampling: SamplingConfig):
        tok = self.tokenizer
        P = max(len(p) for p in prompt_ids)
        input_ids = torch.full((len(prompt_ids), P), tok.pad_token_id, dtype=torch.long)
        mask = torch.zeros_like(input_ids)
        for i, p in enumerate(prompt_ids):
            input_ids[i, P - len(p) :] = torch.tensor(p)
            mask[i, P - len(p) :] = 1
        greedy = sampling.temperature == 0
        kwargs = dict(
            max_new_tokens=sampling.max_tokens,
            do_sample=not greedy,
            num_return_sequences=sampling.n,
            pad_token_id=tok.pad_token_id,
            eos_token_id=tok.eos_token_id,
        )
        if not greedy:
            kwargs.update(temperature=sampling.temperature, top_p=sampling.top_p, top_k=0)
        if sampling.stop:
            kwargs.update(stop_strings=sampling.stop, tokenizer=tok)
        if sampling.ignore_eos:
            kwargs.update(min_new_tokens=sampling.max_tokens)
        sequences = self.model.generate(
            input_ids=input_ids, attention_mask=mask, position_ids=position_ids(mask), **kwargs
        )[:, P:]
        for row in sequences.tolist():
            ids, reason = row, "length"
            if tok.eos_token_id in row:
                ids, reason = row[: row.index(tok.eos_token_id) + 1], "stop"
            # A row that stopped on a stop string is padded after it, and the pad token may
            # be the eos token: cut at the shortest prefix that holds a stop string.
            # (Rows that ran to max_tokens are never padded: any pad token in them was sampled.)
            k = self._stop_prefix(ids, sampling.stop)
            if k is not None:
                ids, reason = ids[:k], "stop"
            text, _ = cut_at_stop(tok.decode(ids, skip_special_tokens=True), sampling.stop)
            yield ids, reason, text

    def _stop_prefix(self, ids: list[int], stop: list[str]) -> int | None:
        """Length of the shortest prefix of ``ids`` whose text contains a stop string."""
        decode = lambda part: self.tokenizer.decode(part, skip_special_tokens=True)  # noqa: E731
        if not stop or not cut_at_stop(decode(ids), stop)[1]:
            return None
        low, high = 1, len(ids)  # containment only grows with the prefix: binary search
        while low < high:
            mid = (low + high) // 2
            if cut_at_stop(decode(ids[:mid]), stop)[1]:
                high = mid
            else:
                low = mid + 1
        return low
