"""Turn a model name into a local folder, and load model and tokenizer from it.

Resolution order for ``name_or_path``:

1. a local folder holding a transformers model;
2. a built-in name: ``smollm2-135m-instruct`` (embedded GGUF, converted once) or
   ``tiny-llama`` (random tiny Llama for tests);
3. a hub id ``owner/name``: the local Hugging Face cache first, then the hub. When the
   hub cannot be reached and the id is SmolLM2-135M-Instruct's, the embedded copy
   of that model stands in for it.

A LoRA adapter folder (a run's ``final/``) names its base model with the adapter merged
in: ``model_folder`` writes that model once to the cache, so a run can start from another
run's adapter (SFT, then GRPO) and every engine, vLLM included, loads it as a model.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

from reasonrl.models.embedded import EMBEDDED_NAME, HUB_ID, embedded_model_dir
from reasonrl.models.tiny import TINY_NAME, tiny_model_dir

log = logging.getLogger(__name__)

BUILTIN = {EMBEDDED_NAME: embedded_model_dir, TINY_NAME: tiny_model_dir}
DEFAULT_MODEL = EMBEDDED_NAME


class ModelNotFoundError(ValueError):
    """A model name that is neither a folder, a built-in name nor a reachable hub id."""


def _accepted() -> str:
    return (
        "a local model folder (with config.json), "
        + ", ".join(repr(n) for n in BUILTIN)
        + ", or a Hugging Face hub id 'owner/name' (cached or reachable)"
    )


def _from_hub(repo_id: str, revision: str | None) -> Path:
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, revision=revision, local_files_only=True))
    except Exception:
        pass
    if os.environ.get("HF_HUB_OFFLINE") in ("1", "true", "True"):
        raise OSError("HF_HUB_OFFLINE is set and the model is not in the local cache")
    return Path(snapshot_download(repo_id, revision=revision))


def resolve(name_or_path: str | os.PathLike, revision: str | None = None) -> Path:
    """Return a local folder holding the model named by ``name_or_path``."""
    name = str(name_or_path)
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists() and not (path / "adapter_config.json").exists():
            raise ModelNotFoundError(f"{path} is a folder but holds no config.json")
        return path
    if name.lower() in BUILTIN:
        return BUILTIN[name.lower()]()
    if name.count("/") == 1 and not name.startswith((".", "/", "~")):
        try:
            return _from_hub(name, revision)
        except Exception as err:
            if name == HUB_ID:
                log.warning("hub unreachable (%s); using the embedded copy of %s", err, HUB_ID)
                return embedded_model_dir()
            raise ModelNotFoundError(
                f"could not load hub id {name!r}: {type(err).__name__}: {err}. "
                f"Without hub access, pass a local folder. Accepted: {_accepted()}."
            ) from err
    raise ModelNotFoundError(f"unknown model {name!r}. Accepted: {_accepted()}.")


def is_adapter(folder: str | os.PathLike) -> bool:
    return (Path(folder) / "adapter_config.json").exists()


def model_folder(name_or_path: str | os.PathLike, revision: str | None = None) -> Path:
    """Like ``resolve``, but an adapter folder becomes its base with the adapter merged
    (built once per adapter content, in the cache)."""
    folder = resolve(name_or_path, revision)
    return merged_adapter_folder(folder) if is_adapter(folder) else folder


def merged_adapter_folder(adapter: Path) -> Path:
    from reasonrl.models.cache import build_once, cache_dir, save_model_folder

    config = json.loads((adapter / "adapter_config.json").read_text())
    base = config.get("base_model_name_or_path")
    if not base:
        raise ModelNotFoundError(f"{adapter}/adapter_config.json names no base_model_name_or_path")
    digest = hashlib.sha256(str(base).encode())
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        if (adapter / name).exists():
            digest.update((adapter / name).read_bytes())
    run = adapter.parent.name if adapter.name == "final" else adapter.name
    target = cache_dir() / "merged" / f"{run}-{digest.hexdigest()[:12]}"

    def build(tmp: Path) -> None:
        from reasonrl.models.lora import merge_adapter

        model, tokenizer = load(base)
        merged = merge_adapter(model, adapter)
        if (adapter / "tokenizer_config.json").exists():
            tokenizer = load_tokenizer(adapter)
        save_model_folder(merged, tokenizer, tmp)
        log.info("merged adapter %s into %s", adapter, base)

    return build_once(target, build)


def load_tokenizer(name_or_path: str | os.PathLike, trust_remote_code: bool = False):
    """Load the tokenizer of a model; a missing pad token falls back to eos."""
    from transformers import AutoTokenizer

    folder = resolve(name_or_path)
    if is_adapter(folder) and not (folder / "tokenizer_config.json").exists():
        folder = model_folder(folder)  # the base's, saved beside the merged weights
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=trust_remote_code)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load(
    name_or_path: str | os.PathLike,
    dtype: str = "float32",
    trust_remote_code: bool = False,
):
    """Load ``(model, tokenizer)`` for causal language modelling.

    Args:
      name_or_path: see the module docstring for what is accepted.
      dtype: ``float32``, ``bfloat16`` or ``float16``.
      trust_remote_code: passed to transformers; only when a recipe asks for it.
    """
    import torch
    from transformers import AutoModelForCausalLM

    from reasonrl.models import attention, rmsnorm

    folder = model_folder(name_or_path)
    model = AutoModelForCausalLM.from_pretrained(
        folder, dtype=getattr(torch, dtype), trust_remote_code=trust_remote_code
    )
    if model.config._attn_implementation == "sdpa":  # on CPU the GEMM form is faster to train
        try:
            model.set_attn_implementation(attention.register())
        except (ValueError, NotImplementedError) as err:  # a model that takes no custom attention
            log.debug("keeping SDPA attention: %s", err)
    rmsnorm.install(model)  # Llama-style norms as one autograd node each, on CPU
    return model, load_tokenizer(folder, trust_remote_code=trust_remote_code)
