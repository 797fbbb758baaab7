"""Two CPU processes under accelerate: DDP, DeepSpeed ZeRO-2 and ZeRO-3 really shard and agree."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from reasonrl.models import load, resolve
from reasonrl.rollout.vllm_engine import vllm_available
from tests.helpers import QUIET, ROOT, metrics, without_timing

ACCELERATE = [sys.executable, "-m", "accelerate.commands.launch"]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def deepspeed_ops_built():
    """Build DeepSpeed's CPU shared-memory collective once, here, not in two ranks at once."""
    code = "from deepspeed.ops.op_builder.cpu import ShareMemCommBuilder; ShareMemCommBuilder().load()"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, timeout=900)


def launch(config: str, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [*ACCELERATE, "--config_file", f"recipes/accelerate/{config}.yaml", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise AssertionError(f"accelerate launch ({config}) failed:\n{proc.stderr[-5000:]}")
    return proc


@pytest.mark.parametrize("config", ["ddp", "zero2", "zero3"])
def test_one_step_on_two_processes(tmp_path, config):
    launch(config, "tests/integration/dist_step.py", str(tmp_path))
    reports = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    for rank, report in enumerate(reports):
        print(config, report)
        assert report["world_size"] == report["torch_world_size"] == 2
        assert report["rank"] == report["torch_rank"] == rank  # accelerate's index is right on CPU too
        assert report["identical_across_ranks"] and report["changed"]
        assert report["deepspeed"] == (config != "ddp") and report["zero3"] == (config == "zero3")
        if config != "ddp":  # each rank holds about half of what it shards
            assert report["local_share"] < 0.6 * report["full_size"]
    if config != "ddp":
        assert (
            abs(sum(r["local_share"] for r in reports) - reports[0]["full_size"])
            < 0.01 * reports[0]["full_size"]
        )


@pytest.mark.parametrize(
    "config, engine", [("ddp", "hf"), ("zero2", "hf"), ("zero3", "hf"), ("ddp", "vllm"), ("zero3", "vllm")]
)
def test_grpo_recipe_runs_under_every_launch_config(tmp_path, config, engine):
    if engine == "vllm" and not vllm_available():
        pytest.skip("vLLM is not installed")
    out = tmp_path / config
    train = ["-m", "reasonrl", "train", "recipes/synthetic/grpo-tiny.yaml", "--output_dir", str(out)]
    options = ["--max_steps", "3", "--prompts_per_step", "4", "--save_steps", "2", "--engine", engine]
    launch(config, *train, *options, *QUIET)
    rows = metrics(out)
    assert [r["step"] for r in rows] == [1, 2, 3]
    log = (out / "train.log").read_text()
    assert "2 process(es)" in log
    assert f"rollout engine: {'VLLMEngine' if engine == 'vllm' else 'HFEngine'}" in log
    assert (out / "final" / "model.safetensors").exists()
    assert (out / "checkpoints" / "checkpoint-000002" / "MANIFEST.json").exists()


@pytest.mark.parametrize("config", ["zero2", "zero3"])
def test_deepspeed_run_resumes_to_the_same_weights_and_metrics(tmp_path, config):
    """Redo the last step from the checkpoint before it: the weights (ZeRO's fp32 master
    partitions included) and each rank's optimizer partition come back, so the step ends
    exactly where the uninterrupted run's did."""
    train = ["-m", "reasonrl", "train", "recipes/synthetic/grpo-tiny.yaml", "--engine", "hf"]
    options = ["--max_steps", "5", "--save_steps", "4", "--prompts_per_step", "4", "--weight_decay", "0.1"]
    options += QUIET
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    launch(config, *train, *options, "--output_dir", str(straight))
    checkpoint = straight / "checkpoints" / "checkpoint-000004"
    assert sorted(p.name for p in checkpoint.glob("zero-rank*")) == [
        "zero-rank0.json",
        "zero-rank0.safetensors",
        "zero-rank1.json",
        "zero-rank1.safetensors",
    ]
    # the test means something only if the checkpoint is not the initial state: weights
    # moved (weight decay) and the optimizer moments are not zero (some gradient)
    assert any(r["grad_norm"] > 0 for r in metrics(straight)[:4])
    initial, _ = load(resolve("tiny-llama"), dtype="float32")
    saved = load_file(checkpoint / "weights.safetensors")
    assert not all(torch.equal(p, saved[n]) for n, p in initial.named_parameters())

    shutil.copytree(straight, resumed)
    shutil.rmtree(resumed / "checkpoints" / "checkpoint-000005")
    shutil.rmtree(resumed / "final")
    launch(config, *train, *options, "--output_dir", str(resumed), "--resume")
    assert "resumed from" in (resumed / "train.log").read_text()
    assert without_timing(metrics(resumed)) == without_timing(metrics(straight))
    a = load_file(straight / "final" / "model.safetensors")
    b = load_file(resumed / "final" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[n], b[n]) for n in a)


@pytest.mark.parametrize("config", ["ddp", "zero3"])
def test_skipping_zero_advantage_rows_on_two_processes_keeps_the_update(tmp_path, config):
    """Each rank skips its own rows with zero advantage; a rank that skipped more runs
    micro-batches that count nothing, so both call the model alike (ZeRO-3 gathers and
    DDP broadcasts inside every pass: a mismatch hangs or fails), and the update is the
    one computing every row gives."""
    train = ["-m", "reasonrl", "train", "recipes/synthetic/grpo-tiny.yaml", "--engine", "hf"]
    options = ["--max_steps", "3", "--prompts_per_step", "8", "--micro_batch_size", "5", "--save_steps", "0"]
    options += QUIET
    runs = []
    for skip in ("true", "false"):
        out = tmp_path / skip
        launch(config, *train, *options, "--skip_zero_advantage", skip, "--output_dir", str(out), timeout=300)
        runs.append((metrics(out), load_file(out / "final" / "model.safetensors")))
    (skipped, weights), (full, reference) = runs
    fractions = [r["skipped_fraction"] for r in skipped]
    print(config, "skipped fraction per step (both ranks):", fractions)
    assert any(0 < f < 1 for f in fractions) and all(r["skipped_fraction"] == 0 for r in full)
    assert [r["reward/mean"] for r in skipped] == [r["reward/mean"] for r in full]
    assert [r["grad_norm"] for r in skipped] == pytest.approx([r["grad_norm"] for r in full], rel=1e-5)
    assert any(r["grad_norm"] > 0 for r in full)
    # summation order only: Adam turns it into ~1e-6 where a gradient is near 0 (the steps
    # move weights by ~1e-3)
    for name, tensor in reference.items():
        assert torch.allclose(weights[name], tensor, rtol=0, atol=1e-5), name
