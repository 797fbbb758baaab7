"""Model resolution (local folder, built-in names, hub ids) and loading."""

from reasonrl.models.embedded import EMBEDDED_NAME, embedded_model_dir
from reasonrl.models.resolve import (
    DEFAULT_MODEL,
    ModelNotFoundError,
    load,
    load_tokenizer,
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
    "load_tokenizer",
    "resolve",
    "tiny_model_dir",
]
