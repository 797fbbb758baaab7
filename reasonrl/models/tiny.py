"""``tiny-llama``: a small randomly initialised Llama for tests and fast recipes.

Its tokenizer is character level (printable ASCII plus ChatML specials), built in
code, so it needs no download. A byte-pair vocabulary of 49k tokens would make a
random policy emit a digit almost never; with ~100 characters, reinforcement
learning from scratch has a signal to climb on small arithmetic tasks.
"""

from __future__ import annotations

import string
from pathlib import Path

from reasonrl.models.cache import build_once, cache_dir, save_model_folder

TINY_NAME = "tiny-llama"
TINY_SEED = 1234
SPECIAL_TOKENS = ["<unk>", "<|im_start|>", "<|im_end|>", "<pad>"]
# Same template family as SmolLM2 (ChatML), without a default system prompt.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
TINY_CONFIG = dict(
    hidden_size=128,
    intermediate_size=384,
    num_hidden_layers=2,
    num_attention_heads=2,
    num_key_value_heads=2,
    head_dim=64,
    max_position_embeddings=1024,
    rms_norm_eps=1e-5,
    tie_word_embeddings=True,
)


def build_tokenizer():
    """The character-level tokenizer: one token per printable ASCII character."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    chars = list(string.printable[:95]) + ["\n", "\t"]
    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS + chars)}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split(pattern=Regex("."), behavior="isolated")
    backend.decoder = decoders.Fuse()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="<unk>",
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<pad>",
        model_max_length=TINY_CONFIG["max_position_embeddings"],
    )
    tokenizer.add_special_tokens({"additional_special_tokens": SPECIAL_TOKENS[1:3]})
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def _build(out: Path) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = build_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **TINY_CONFIG,
    )
    config.name_or_path = TINY_NAME
    torch.manual_seed(TINY_SEED)
    model = LlamaForCausalLM(config)
    save_model_folder(model, tokenizer, out)


def tiny_model_dir() -> Path:
    """The folder of the tiny model, built on first use (deterministic from the seed)."""
    return build_once(cache_dir() / "models" / TINY_NAME, _build)
