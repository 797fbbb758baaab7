"""`reasonrl push` against a local HTTP server that speaks the hub's upload API (tests/fake_hub.py).

huggingface_hub really runs (create_repo, YAML validation, preupload, commit); only
the server is ours. No network.
"""

import json
import os
import subprocess
import sys

import pytest

from reasonrl.hub import public_base_model
from tests.fake_hub import FakeHub
from tests.helpers import ROOT, cli

SECRET = "hf_reasonrl_test_" + os.urandom(6).hex()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("push") / "run"
    cli(
        "train",
        "recipes/synthetic/grpo-tiny.yaml",
        "--output_dir",
        str(out),
        "--max_steps",
        "3",
        "--model.lora.r",
        "4",
        "--progress",
        "false",
        "--report_to",
        "none",
    )
    (out / "eval").mkdir()
    (out / "eval" / "summary.json").write_text(
        json.dumps(
            {"task": "gsm8k", "metrics": {"exact_match,strict-match": {"value": 0.25, "stderr": 0.02}}}
        )
    )
    return out


def test_dry_run_writes_the_upload_folder(run_dir, tmp_path):
    staged = tmp_path / "staged"
    cli("push", str(run_dir), "--repo-id", "alice/tiny-grpo", "--dry-run", str(staged))
    names = {p.name for p in staged.iterdir()}
    assert {
        "adapter_model.safetensors",
        "adapter_config.json",
        "README.md",
        "reward_curve.png",
        "tokenizer.json",
    } <= names
    card = (staged / "README.md").read_text()
    assert card.startswith("---\n") and "library_name: peft" in card
    assert (
        "| gsm8k | 1.0 |" in card
        and "## Training" in card
        and "| gsm8k | exact_match,strict-match | 0.2500" in card
    )
    config = json.loads((staged / "adapter_config.json").read_text())
    assert not str(config["base_model_name_or_path"]).startswith("/")  # no local cache paths uploaded


def test_upload_sends_the_staged_folder_and_keeps_the_token_secret(run_dir, tmp_path):
    staged = tmp_path / "staged"
    cli("push", str(run_dir), "--repo-id", "alice/tiny-grpo", "--dry-run", str(staged))
    with FakeHub() as hub:
        env = {**os.environ, "HF_TOKEN": SECRET, "HF_HUB_OFFLINE": "0"}
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "reasonrl",
                "push",
                str(run_dir),
                "--repo-id",
                "alice/tiny-grpo",
                "--endpoint",
                hub.url,
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert proc.returncode == 0, proc.stderr[-3000:]
    uploaded = hub.files["alice/tiny-grpo"]
    assert set(uploaded) == {p.name for p in staged.iterdir()}
    for name, content in uploaded.items():
        assert content == (staged / name).read_bytes(), name
    assert {r["path"].split("?")[0] for r in hub.requests} >= {
        "/api/repos/create",
        "/api/models/alice/tiny-grpo/commit/main",
    }
    assert all(
        r["headers"].get("authorization", r["headers"].get("Authorization")) == f"Bearer {SECRET}"
        for r in hub.requests
    )
    assert SECRET not in proc.stdout + proc.stderr
    for path in run_dir.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


def test_missing_final_folder_is_a_clear_error(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "reasonrl",
            "push",
            str(tmp_path),
            "--repo-id",
            "a/b",
            "--dry-run",
            str(tmp_path / "x"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert (
        proc.returncode == 2
        and proc.stderr.startswith("error: ")
        and "train a recipe to completion first" in proc.stderr
    )


def test_public_base_model_names():
    assert public_base_model("smollm2-135m-instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert public_base_model("tiny-llama") is None
    assert public_base_model("Qwen/Qwen2.5-0.5B") == "Qwen/Qwen2.5-0.5B"
