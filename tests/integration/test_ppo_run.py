"""LLM PPO and the control agents (PPO, MuZero, STORM on pixels) resume from their checkpoints."""

import json
import shutil

import torch
from safetensors.torch import load_file

from reasonrl.runtime.checkpoint import verify
from tests.helpers import QUIET, cli, metrics, without_timing


def test_llm_ppo_resumes_to_the_same_weights_value_head_and_metrics(tmp_path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    options = ["--max_steps", "6", "--save_steps", "4", "--prompts_per_step", "32", *QUIET]
    cli("train", "recipes/synthetic/ppo-tiny.yaml", "--output_dir", str(straight), *options)
    shutil.copytree(straight, resumed)
    shutil.rmtree(resumed / "checkpoints" / "checkpoint-000006")
    shutil.rmtree(resumed / "final")
    cli("train", "recipes/synthetic/ppo-tiny.yaml", "--output_dir", str(resumed), "--resume", *options)
    assert "resumed from" in (resumed / "train.log").read_text()
    assert without_timing(metrics(resumed)) == without_timing(metrics(straight))
    for name in ("model.safetensors", "value_head.safetensors"):
        a, b = load_file(straight / "final" / name), load_file(resumed / "final" / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name


def test_control_agent_resumes_from_its_checkpoint(tmp_path):
    """CartPole PPO: the networks and optimizer come back (the environments restart, so the
    rest of the run is not the uninterrupted one), the log keeps what came before."""
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    options = ["--total_steps", "4096", "--save_every", "2048", *QUIET]
    cli("control", "recipes/control/ppo-cartpole.yaml", "--output_dir", str(straight), *options)
    shutil.copytree(straight, resumed)
    shutil.rmtree(resumed / "checkpoints" / "checkpoint-004096")
    shutil.rmtree(resumed / "final")
    out = cli(
        "control", "recipes/control/ppo-cartpole.yaml", "--output_dir", str(resumed), "--resume", *options
    )
    assert json.loads(out.stdout.strip().splitlines()[-1])["steps"] == 4096
    assert "resumed from" in (resumed / "train.log").read_text()
    steps = [r["step"] for r in metrics(resumed)]
    assert steps == sorted(set(steps)) and steps[-1] == 4096  # no step logged twice
    kept = [r for r in metrics(resumed) if r["step"] <= 2048]
    assert without_timing(kept) == without_timing([r for r in metrics(straight) if r["step"] <= 2048])
    assert verify(resumed / "checkpoints" / "checkpoint-004096") is None


def test_muzero_resumes_from_its_checkpoint(tmp_path):
    """MuZero: the networks and optimizer come back at the saved step (its replay starts
    anew, said in docs/control.md); the log keeps what came before."""
    out = tmp_path / "run"
    options = [
        "--output_dir",
        str(out),
        "--total_steps",
        "1600",
        "--save_every",
        "800",
        "--num_simulations",
        "8",
    ]
    options += ["--learning_starts", "320", "--log_every", "5", *QUIET]
    cli("control", "recipes/control/muzero-cartpole.yaml", *options)
    shutil.rmtree(out / "checkpoints" / "checkpoint-001600")
    shutil.rmtree(out / "final")
    summary = json.loads(
        cli("control", "recipes/control/muzero-cartpole.yaml", *options, "--resume").stdout.splitlines()[-1]
    )
    assert summary["steps"] == 1600
    assert "resumed from" in (out / "train.log").read_text()
    steps = [r["step"] for r in metrics(out)]
    assert steps == sorted(set(steps)) and steps[-1] == 1600 and 800 in steps
    assert (out / "final" / "agent.safetensors").exists() and (out / "return_curve.png").exists()
    assert verify(out / "checkpoints" / "checkpoint-001600") is None


def test_storm_on_pixel_frames_runs_and_resumes(tmp_path):
    """STORM end to end on MinAtar's 10 x 10 binary frames (convolutional world model,
    bool replay, acting from frames), saving and resuming like the other agents."""
    out = tmp_path / "run"
    options = ["--output_dir", str(out), "--total_steps", "800", "--save_every", "400"]
    options += ["--learning_starts", "200", "--groups", "8", "--classes", "8", "--imagine_batch", "16"]
    options += ["--batch_size", "4", "--batch_length", "16", "--log_every", "20", *QUIET]
    recipe = "recipes/control/storm-minatar-breakout.yaml"
    cli("control", recipe, *options)
    first = metrics(out)
    assert any("wm/reconstruction" in r for r in first)
    shutil.rmtree(out / "checkpoints" / "checkpoint-000800")
    shutil.rmtree(out / "final")
    summary = json.loads(cli("control", recipe, *options, "--resume").stdout.splitlines()[-1])
    assert summary["steps"] == 800 and "resumed from" in (out / "train.log").read_text()
    steps = [r["step"] for r in metrics(out)]
    assert steps == sorted(set(steps)) and steps[-1] == 800
    assert (out / "final" / "agent.safetensors").exists() and (out / "return_curve.png").exists()
