"""LoRA adapters through peft, and the merged weights a rollout engine needs."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch


@dataclass
class LoraConfig:
    """LoRA settings (peft names)."""

    r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    target_modules: list[str] | str = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )


def wrap_lora(model, config: LoraConfig):
    """Wrap ``model`` in a fresh peft LoRA adapter (only the adapter trains)."""
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model

    peft_config = PeftLoraConfig(
        r=config.r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=config.target_modules,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, peft_config)


def is_peft(model) -> bool:
    try:
        from peft import PeftModel
    except ImportError:
        return False
    return isinstance(model, PeftModel)


@contextmanager
def disabled_adapters(model):
    """The base model (the GRPO/PPO reference) without a second copy: adapters off."""
    if is_peft(model):
        with model.disable_adapter():
            yield model
    else:
        yield model


@contextmanager
def merged_weights(model) -> Iterator[list[tuple[str, torch.Tensor]]]:
    """(name, tensor) pairs in the base model's transformers naming, adapters merged in.

    Inside the ``with`` block the tensors are views of the live weights (no copy):
    hand them to the engine there. On exit the adapters are unmerged again.
    """
    if not is_peft(model):
        yield [(name, p.data) for name, p in model.named_parameters()]
        return
    model.merge_adapter()
    try:
        named = []
        for name, p in model.named_parameters():
            if "lora_" in name:
                continue
            name = name.removeprefix("base_model.model.").replace(".base_layer", "")
            named.append((name, p.data))
        yield named
    finally:
        model.unmerge_adapter()
