"""Shared fixtures. Tests never touch the network: the hub is switched off here."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
GSM8K_DIR = ROOT.parent / "shared" / "data" / "gsm8k"


@pytest.fixture(scope="session")
def gsm8k_dir() -> Path:
    """The real GSM8K files beside the project; tests that need them skip without them."""
    if not (GSM8K_DIR / "test.jsonl").exists():
        pytest.skip(f"real GSM8K not found at {GSM8K_DIR}")
    return GSM8K_DIR


@pytest.fixture(scope="session")
def tiny_model_dir() -> Path:
    from reasonrl.models import tiny_model_dir

    return tiny_model_dir()


@pytest.fixture(scope="session")
def smollm_dir() -> Path:
    from reasonrl.models import embedded_model_dir

    return embedded_model_dir()


def pytest_collection_modifyitems(config, items):
    """Tests that run the tree search go last: it loads numba, and a process that has
    loaded numba cannot start a vLLM CPU engine (``reasonrl.rollout.vllm_engine`` says
    so), so in-process vLLM tests must run first whatever order pytest was given."""
    searching = [item for item in items if "tests/unit/control/test_mcts.py" in item.nodeid]
    others = [item for item in items if "tests/unit/control/test_mcts.py" not in item.nodeid]
    items[:] = others + searching
