"""Model resolution (local folder, built-in names, hub ids) and loading."""

from reasonrl.models.embedded import EMBEDDED_NAME, embedded_model_dir
from reasonrl.models.resolve import (
    DEFAULT_MODEL,
    ModelNotFoundError,
    is_adapter,
    load,
    load_tokenizer,
    model_folder,
    resolve,
)
from reasonrl.models.tiny import TINY_NAME, tiny_model_dir

__all__ = [
    "DEFAULT_MODEL",
    "EMBEDDED_NAME",
    "TINY_NAME",
    "ModelNotFoundError",
    "embedded_model_dir",
    "load",
    "is_adapter",
    "load_tokenizer",
    "model_folder",
    "resolve",
    "tiny_model_dir",
]
