"""DPO runs: --resume continues offline DPO exactly, and refuses on-policy DPO clearly."""

import shutil
import subprocess
import sys

import torch
from safetensors.torch import load_file

from tests.helpers import QUIET, ROOT, cli, metrics, without_timing

RECIPE = "recipes/synthetic/dpo-tiny.yaml"
FAST = [*QUIET, "--eval_samples", "8"]


def test_offline_dpo_resumes_to_the_same_weights_and_metrics(tmp_path):
    """Redo the last two steps from the checkpoint before them: the same metrics and weights."""
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    options = ["--max_steps", "6", "--save_steps", "4", *FAST]
    cli("train", RECIPE, "--output_dir", str(straight), *options)
    shutil.copytree(straight, resumed)
    shutil.rmtree(resumed / "checkpoints" / "checkpoint-000006")
    shutil.rmtree(resumed / "final")
    cli("train", RECIPE, "--output_dir", str(resumed), "--resume", *options)
    assert "resumed from" in (resumed / "train.log").read_text()
    rows = without_timing(metrics(resumed))
    assert [r["step"] for r in rows] == [0, 1, 2, 3, 4, 5, 6, 6]  # the start, each step, the final eval
    assert rows == without_timing(metrics(straight))
    a = load_file(straight / "final" / "model.safetensors")
    b = load_file(resumed / "final" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[n], b[n]) for n in a)


def test_on_policy_dpo_refuses_to_resume(tmp_path):
    args = ["train", RECIPE, "--output_dir", str(tmp_path), "--on_policy", "true", "--resume", *FAST]
    proc = subprocess.run([sys.executable, "-m", "reasonrl", *args], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2
    assert "train.resume: on-policy DPO cannot resume yet" in proc.stderr
