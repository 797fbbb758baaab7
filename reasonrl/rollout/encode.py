"""Prompt + given-completion token rows, tokenised as TRL does: what DPO's pairs and SFT's
and distillation's examples train on (the sampled rows of RL come from the engines)."""

from __future__ import annotations

from reasonrl.rollout.batch import TokenBatch
from reasonrl.rollout.engine import Prompt, encode_prompts


def completion_ids(tokenizer, prompt: Prompt, rendered_prompt: str, text: str) -> list[int]:
    """Token ids of a completion as TRL builds them: plain text gets eos appended; a chat
    reply is rendered by the chat template (so it ends with the template's end-of-turn)."""
    if isinstance(prompt, list):
        full = tokenizer.apply_chat_template(
            prompt + [{"role": "assistant", "content": text}], tokenize=False
        )
        if full.startswith(rendered_prompt):
            return tokenizer(full[len(rendered_prompt) :], add_special_tokens=False).input_ids
    return tokenizer(text, add_special_tokens=False).input_ids + [tokenizer.eos_token_id]


def encode_examples(
    tokenizer, prompts: list[Prompt], completions: list[str], max_length: int
) -> tuple[list[list[int]], list[list[int]]]:
    """(prompt ids, completion ids) per example, the completion cut so that prompt +
    completion fit ``max_length`` (at least one completion token is kept). An empty
    prompt is plain text learned whole, as TRL does: tokenised with the tokenizer's own
    special tokens (BOS where it adds one) and eos, its first token the prompt and every
    later one a target."""
    chat = [p for p in prompts if p != ""]
    rendered, ids = encode_prompts(tokenizer, chat) if chat else ([], [])
    rendered_it, ids_it = iter(rendered), iter(ids)
    prompt_rows, completion_rows = [], []
    for prompt, text in zip(prompts, completions, strict=True):
        if prompt == "":
            full = tokenizer(text).input_ids + [tokenizer.eos_token_id]
            head, tail = full[:1], full[1:]
        else:
            head = next(ids_it)
            tail = completion_ids(tokenizer, prompt, next(rendered_it), text)
        prompt_rows.append(head)
        completion_rows.append(tail[: max(1, max_length - len(head))])
    return prompt_rows, completion_rows


def example_batch(tokenizer, prompts: list[Prompt], completions: list[str], max_length: int) -> TokenBatch:
    """``encode_examples`` as one padded ``TokenBatch``."""
    p, c = encode_examples(tokenizer, prompts, completions, max_length)
    return TokenBatch(**TokenBatch.padded(p, c, tokenizer.pad_token_id))
