"""LoRA adapters through peft, and the merged weights a rollout engine needs."""

from __future__ import annotations

import re
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
    # modules trained in full beside the adapters (peft's name), e.g. ["norm"]: with tied
    # embeddings and the final norm frozen, the logits' scale is fixed (see docs/sft.md)
    modules_to_save: list[str] | None = None


def wrap_lora(model, config: LoraConfig):
    """Wrap ``model`` in a fresh peft LoRA adapter (only the adapter trains)."""
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model

    peft_config = PeftLoraConfig(
        r=config.r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=config.target_modules,
        modules_to_save=config.modules_to_save,
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(model, peft_config)
    from reasonrl.models import lora_fused

    lora_fused.install(model)  # plain LoRA linears as one autograd node each
    return model


def merge_adapter(model, adapter) -> torch.nn.Module:
    """``model`` with the LoRA adapter folder ``adapter`` merged into its weights.

    An adapter on the LM head of a model whose head is tied to its input embeddings (the
    tiny model, SmolLM2) must not merge into the shared tensor: that would change the
    input lookup too, a different model from the one trained. The head is untied first
    (a copy of the embedding, ``tie_word_embeddings`` off), so the merged model computes
    what the adapter did and saves with a head of its own.
    """
    from peft import PeftConfig, PeftModel

    targets = PeftConfig.from_pretrained(str(adapter)).target_modules or []
    head = model.get_output_embeddings()
    tied = head is not None and head.weight is model.get_input_embeddings().weight
    if tied and any(t == "lm_head" or str(t).endswith("lm_head") for t in targets):
        head.weight = torch.nn.Parameter(head.weight.detach().clone(), head.weight.requires_grad)
        model.config.tie_word_embeddings = False
        if hasattr(model.config, "get_text_config"):
            model.config.get_text_config().tie_word_embeddings = False
    return PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()


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


def merged_weights(model) -> Iterator[tuple[str, torch.Tensor]]:
    """The (name, tensor) pairs a rollout engine needs to hold ``model``'s current weights,
    in the base model's transformers naming, made one at a time as they are consumed.

    Without LoRA: every parameter, a view of the live weight (no copy). With LoRA: only
    what training changes; the frozen rest is what the engine loaded at start. Each
    adapted layer's weight W + ΔW is computed into a new tensor (one layer's at a time):
    the base weights are never written, where peft's ``merge_adapter`` and
    ``unmerge_adapter`` add and subtract ΔW in place, a rounding error per sync on the
    weights that are also the reference policy. Trainable tensors outside the adapters
    follow as they are.
    """
    if not is_peft(model):
        for name, p in model.named_parameters():
            yield name, p.data
        return
    from peft.tuners.lora import LoraLayer

    for name, module in model.named_modules():
        if isinstance(module, LoraLayer):
            yield _base_name(name) + ".weight", _merged_weight(module)
    for name, p in model.named_parameters():
        if p.requires_grad and "lora_" not in name:
            yield _base_name(name), p.data


def _base_name(name: str) -> str:
    name = name.removeprefix("base_model.model.").replace(".base_layer", "")
    return re.sub(r"\.modules_to_save\.[^.]+", "", name)  # a fully trained copy: the module's own name


@torch.no_grad()
def _merged_weight(module) -> torch.Tensor:
    """W + Σ s B A over ``module``'s active adapters, in a new fp32 tensor (plain LoRA
    only): one copy of W and one fused multiply-add per adapter (``addmm_``), rounded to
    the engine's type once, when it loads it."""
    weight = module.get_base_layer().weight
    if module.merged or module.disable_adapters:  # ΔW in place already (merge_adapter), or off
        return weight.detach()
    merged = weight.detach().to(torch.float32, copy=True)
    for adapter in module.active_adapters:
        if adapter not in module.lora_A:
            continue
        if adapter in getattr(module, "lora_variant", {}) or getattr(module, "lora_bias", {}).get(adapter):
            raise NotImplementedError(
                f"syncing adapter {adapter!r}: only plain LoRA is merged for the rollout engine "
                "(no DoRA or other variants, no lora_bias)"
            )
        if getattr(module, "fan_in_fan_out", False):  # Conv1D layout (GPT-2): peft transposes ΔW
            merged += module.get_delta_weight(adapter).float()
            continue
        A, B = module.lora_A[adapter].weight.float(), module.lora_B[adapter].weight.float()
        merged.addmm_(B, A, alpha=module.scaling[adapter])
    return merged
