"""The rollout-engine interface, sampling settings, and prompt encoding shared by engines."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

import torch

from reasonrl.rollout.batch import Rollouts

log = logging.getLogger(__name__)

# raw text, chat messages rendered with the tokenizer's template, or token ids as they are
# (a multi-turn episode so far: its earlier turns' tokens are kept exactly as sampled)
Prompt = str | list[dict] | list[int]


@dataclass
class SamplingConfig:
    """How completions are drawn. Names follow vLLM's SamplingParams."""

    n: int = 1  # completions per prompt (GRPO's num_generations)
    temperature: float = 1.0  # 0 = greedy
    top_p: float = 1.0
    max_tokens: int = 256
    stop: list[str] = field(default_factory=list)  # stop strings; removed from the text, kept in the ids
    ignore_eos: bool = False  # always generate max_tokens (benchmarks)

    def __post_init__(self):
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")


class RolloutEngine(Protocol):
    """Turns prompts into ``Rollouts``; receives new weights from the trainer."""

    tokenizer: object
    # True when the engine samples from the trainer's own model object, so there are no
    # weights to send after an update (HF generate); False when it holds a copy (vLLM)
    shares_trainer_weights: bool

    def generate(self, prompts: list[Prompt], sampling: SamplingConfig) -> Rollouts: ...

    def update_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None: ...

    def close(self) -> None: ...


def render_prompt(tokenizer, prompt: Prompt) -> str:
    """The text the model sees: raw strings as they are, chat messages through the template."""
    if isinstance(prompt, str):
        return prompt
    if prompt and all(isinstance(t, int) for t in prompt):
        return tokenizer.decode(prompt, skip_special_tokens=False)
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError("chat messages given but the tokenizer has no chat template")
    return tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)


def encode_prompts(tokenizer, prompts: list[Prompt]) -> tuple[list[str], list[list[int]]]:
    """Render and tokenize prompts once, so every engine sees the same token ids.

    Chat templates already hold the BOS/special tokens they need, so no special
    tokens are added on top.
    """
    texts = [render_prompt(tokenizer, p) for p in prompts]
    ids = [
        list(p)
        if p and all(isinstance(t, int) for t in p)
        else tokenizer(t, add_special_tokens=False).input_ids
        for p, t in zip(prompts, texts, strict=True)
    ]
    for i, token_ids in enumerate(ids):
        if not token_ids:
            raise ValueError(f"prompt {i} is empty after tokenization")
    return texts, ids


def cut_at_stop(text: str, stop: list[str]) -> tuple[str, bool]:
    """Text before the earliest stop string, and whether one was found."""
    cut = min((i for i in (text.find(s) for s in stop) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)
