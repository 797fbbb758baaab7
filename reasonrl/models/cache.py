"""Where reasonrl keeps the models it builds or converts, and how it writes them safely."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock

CACHE_ENV = "REASONRL_CACHE"


def cache_dir() -> Path:
    """Cache root: ``$REASONRL_CACHE``, else ``$XDG_CACHE_HOME/reasonrl`` (``~/.cache``)."""
    if os.environ.get(CACHE_ENV):
        root = Path(os.environ[CACHE_ENV])
    else:
        root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "reasonrl"
    root.mkdir(parents=True, exist_ok=True)
    return root


@contextmanager
def _locked(path: Path):
    with FileLock(str(path) + ".lock"):
        yield


def build_once(target: Path, build: Callable[[Path], None]) -> Path:
    """Create the folder ``target`` by calling ``build(tmp)`` exactly once, atomically.

    Several processes (the ranks of one launch) may ask for the same folder; a file
    lock makes one of them build it while the others wait. The build writes into a
    temporary sibling that is renamed into place only when complete, so an
    interrupted build never leaves a half-written model behind.
    """
    if (target / ".complete").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with _locked(target):
        if (target / ".complete").exists():
            return target
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
        try:
            build(tmp)
            (tmp / ".complete").touch()
            if target.exists():
                shutil.rmtree(target)
            os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def save_model_folder(model, tokenizer, out: Path) -> None:
    """Save a model (safetensors) and its tokenizer, with generation defaults from the tokenizer."""
    from transformers import GenerationConfig

    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
