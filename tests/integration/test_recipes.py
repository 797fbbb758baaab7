"""Every recipe in recipes/ loads, and every SmolLM2 recipe runs through the real CLI."""

from pathlib import Path

import pytest
import yaml

from reasonrl.config import load_recipe
from reasonrl.control.recipe import ControlRecipe
from reasonrl.models.precision import native_bf16
from reasonrl.trainers.recipe import Recipe
from tests.helpers import ROOT, cli, metrics

RECIPES = sorted(
    p.relative_to(ROOT) for p in (ROOT / "recipes").rglob("*.yaml") if "accelerate" not in p.parts
)


@pytest.mark.parametrize("path", RECIPES, ids=str)
def test_recipe_loads(path):
    control = "control" in Path(path).parts
    recipe = load_recipe(ControlRecipe if control else Recipe, ROOT / path)
    assert recipe.algorithm in Path(path).name
    assert control or recipe.rewards


SMALL = {
    "grpo": ["--prompts_per_step", "2", "--num_generations", "4", "--max_completion_length", "32"],
    "ppo": ["--prompts_per_step", "4", "--max_completion_length", "32", "--num_iterations", "1"],
    "dpo": [
        "--prompts_per_round",
        "4",
        "--num_generations",
        "4",
        "--max_completion_length",
        "32",
        "--rounds",
        "1",
        "--eval_samples",
        "2",
    ],
}


# GRPO (the default) runs in CI; PPO and DPO on SmolLM2 take 2-3 min each on AVX2 and are in
# `make test-long` (the tiny-model recipes of both run in CI)
@pytest.mark.slow
@pytest.mark.parametrize(
    "algorithm",
    ["grpo", pytest.param("ppo", marks=pytest.mark.long), pytest.param("dpo", marks=pytest.mark.long)],
)
def test_smollm2_recipe_runs(tmp_path, algorithm):
    out = tmp_path / algorithm
    proc = cli(
        "train",
        f"recipes/gsm8k/{algorithm}-smollm2.yaml",
        "--output_dir",
        str(out),
        "--max_steps",
        "2",
        "--data.source",
        "data/synthetic_gsm8k.jsonl",
        "--save_steps",
        "1",
        "--progress",
        "false",
        "--report_to",
        "none",
        *SMALL[algorithm],
        *([] if algorithm == "dpo" else ["--eval.limit", "3", "--eval.max_tokens", "16"]),
        timeout=1800,
    )
    assert (out / "final" / "adapter_model.safetensors").exists()
    assert "rollout engine" in (out / "train.log").read_text() or algorithm == "dpo"
    assert metrics(out)
    if algorithm != "dpo":  # held-out accuracy before -> after, printed and kept beside the run
        line = "held-out exact_match,strict-match (data/synthetic_gsm8k.jsonl [test], 3 rows): "
        assert line in proc.stdout
        assert (out / "eval-base" / "summary.json").exists() and (out / "eval" / "summary.json").exists()
    # the saved recipe says which precision ran: `auto` resolved for this machine
    ran = yaml.safe_load((out / "recipe.yaml").read_text())
    assert ran["train"]["bf16"] is native_bf16()
    if algorithm == "grpo":  # model.dtype: auto, LoRA: the frozen base in bf16 where native
        assert ran["model"]["dtype"] == ("bfloat16" if native_bf16() else "float32")
    if ran["rollout"]["engine"] == "vllm":
        assert ran["rollout"]["dtype"] == ("bfloat16" if native_bf16() else "float32")
        assert ran["rollout"]["enforce_eager"] is True  # 2 steps: too short for a compile to pay
