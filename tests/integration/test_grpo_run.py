"""A GRPO run through the real CLI leaves what the README promises, and resumes exactly."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml
from safetensors.torch import load_file

from reasonrl import allocator
from reasonrl.runtime.checkpoint import latest_checkpoint
from tests.helpers import QUIET, ROOT, cli, metrics, without_timing

RECIPE = "recipes/synthetic/grpo-tiny.yaml"
FAST = QUIET


def test_outputs_of_a_lora_run(tmp_path):
    out = tmp_path / "run"
    cli(
        "train",
        RECIPE,
        "--output_dir",
        str(out),
        "--max_steps",
        "6",
        "--model.lora.r",
        "4",
        "--beta",
        "0.04",
        "--num_iterations",
        "2",
        "--report_to",
        "tensorboard",
        "--progress",
        "false",
    )
    resolved = yaml.safe_load((out / "recipe.yaml").read_text())
    assert resolved["grpo"]["beta"] == 0.04 and resolved["model"]["lora"]["r"] == 4
    rows = metrics(out)
    assert [r["step"] for r in rows] == list(range(1, 7))
    for key in [
        "reward/mean",
        "reward/std",
        "reward/gsm8k/mean",
        "kl",
        "clip_fraction",
        "entropy",
        "completion_length",
        "tokens_per_second",
        "time/step",
        "loss",
        "grad_norm",
    ]:
        assert key in rows[-1], key
    assert rows[-1]["kl"] > 0  # the reference (adapters off) differs from the policy after updates
    samples = [json.loads(line) for line in (out / "completions.jsonl").read_text().splitlines()]
    assert {"prompt", "completion", "answer", "reward"} <= set(samples[0])
    assert (out / "reward_curve.png").stat().st_size > 1000
    assert any((out / "tensorboard").rglob("events.out.tfevents.*"))
    # the command re-executed itself on the allocator the machine offers (reasonrl.allocator)
    found = allocator.wanted()
    assert f"allocator {found[0] if found else 'system'}" in (out / "train.log").read_text()
    # the final adapter loads with peft on top of the base model
    from peft import PeftModel

    from reasonrl.models import load

    base, _ = load("tiny-llama")
    adapted = PeftModel.from_pretrained(base, out / "final")
    trained = load_file(out / "final" / "adapter_model.safetensors")
    assert trained and any("lora_B" in k and v.abs().sum() > 0 for k, v in trained.items())
    assert adapted.peft_config["default"].r == 4


def with_and_without_skipping(tmp_path, recipe: str, *args: str):
    """(metrics, final weights) of two runs of ``recipe``: zero-advantage rows skipped, then not."""
    runs = []
    for skip in ("true", "false"):
        out = tmp_path / skip
        cli("train", recipe, "--output_dir", str(out), "--skip_zero_advantage", skip, *args, *FAST)
        runs.append((metrics(out), load_file(out / "final" / "model.safetensors")))
    return runs


def test_skipping_zero_advantage_rows_keeps_the_update(tmp_path):
    """Rows whose group scored alike (A = 0) are not run through the model when β = 0;
    the weights after each step are the ones computing every row gives."""
    (skipped, weights), (full, reference) = with_and_without_skipping(tmp_path, RECIPE, "--max_steps", "3")
    fractions = [r["skipped_fraction"] for r in skipped]
    print("skipped fraction per step:", fractions)
    assert all(0 < f < 1 for f in fractions)  # the drill starts with mixed and with uniform groups
    assert all(r["skipped_fraction"] == 0 for r in full)
    assert [r["reward/mean"] for r in skipped] == [r["reward/mean"] for r in full]
    # the gradient itself (Adam's step would hide a wrong scale), then the weights
    assert [r["grad_norm"] for r in skipped] == pytest.approx([r["grad_norm"] for r in full], rel=1e-5)
    # The weights: the two runs sum the same gradient in another order, and Adam divides by
    # √v, so a weight whose gradient is near 0 can move by up to ~lr per step differently
    # (1.6e-6 after three steps was seen on an AMX CPU, 0.2% of lr · steps). The bound is
    # 2% of the largest move Adam makes, lr · steps; a wrong gradient moves weights by ~lr
    # and fails it, a wrong scale already failed the grad_norm check above.
    lr, steps = yaml.safe_load((ROOT / RECIPE).read_text())["train"]["learning_rate"], 3
    for name, tensor in reference.items():
        assert torch.allclose(weights[name], tensor, rtol=0, atol=0.02 * lr * steps), name


def test_a_step_with_every_row_skipped_still_steps_the_optimizer(tmp_path):
    """A reward no drill answer can earn (the GSM8K format needs "####", the drill's
    completions are 2 tokens): every advantage is 0, no row runs, and the optimizer
    steps on a zero gradient, as it would after computing it."""
    recipe = tmp_path / "uniform.yaml"
    text = (ROOT / RECIPE).read_text()
    uniform = text.replace("{name: gsm8k, mode: flexible, weight: 1.0}", "{name: format, preset: gsm8k}")
    assert uniform != text
    recipe.write_text(uniform)
    runs = with_and_without_skipping(tmp_path, str(recipe), "--max_steps", "2", "--weight_decay", "0.1")
    (skipped, weights), (full, reference) = runs
    assert [r["skipped_fraction"] for r in skipped] == [1.0, 1.0]
    assert [r["grad_norm"] for r in skipped] == [r["grad_norm"] for r in full] == [0.0, 0.0]
    assert "entropy" not in skipped[0] and "entropy" in full[0]  # nothing computed, nothing to report
    for name, tensor in reference.items():  # weight decay moved them the same way
        assert torch.equal(weights[name], tensor), name


def test_unknown_key_is_named_with_nearest_valid_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    text = (ROOT / RECIPE).read_text().replace("  beta: 0.0", "  betta: 0.0")
    bad.write_text(text)
    line = text.splitlines().index("  betta: 0.0") + 1
    proc = subprocess.run(
        [sys.executable, "-m", "reasonrl", "train", str(bad)], cwd=ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert f"bad.yaml:{line}: unknown key 'grpo.betta'; did you mean 'beta'?" in proc.stderr


def test_killed_run_resumes_to_the_same_weights_and_metrics(tmp_path):
    """SIGKILL a run once a checkpoint exists, resume it, and compare with an uninterrupted run."""
    killed = tmp_path / "killed"
    args = [
        sys.executable,
        "-m",
        "reasonrl",
        "train",
        RECIPE,
        "--output_dir",
        str(killed),
        "--save_steps",
        "3",
        "--save_total_limit",
        "2",
        "--max_steps",
        "100000",
        *FAST,
    ]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            last = latest_checkpoint(killed)
            if last is not None and int(last.name.split("-")[1]) >= 6:
                break
            time.sleep(0.02)
        else:
            pytest.fail("no checkpoint appeared")
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    k = int(latest_checkpoint(killed).name.split("-")[1])
    end = k + 4
    cli(
        "train",
        RECIPE,
        "--output_dir",
        str(killed),
        "--max_steps",
        str(end),
        "--resume",
        "--save_steps",
        "3",
        *FAST,
    )
    straight = tmp_path / "straight"
    cli("train", RECIPE, "--output_dir", str(straight), "--max_steps", str(end), *FAST)
    print(f"killed after checkpoint {k}, resumed to step {end}")
    assert without_timing(metrics(killed)) == without_timing(metrics(straight))
    a = load_file(killed / "final" / "model.safetensors")
    b = load_file(straight / "final" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[n], b[n]) for n in a)
