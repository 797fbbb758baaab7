"""A reasoning-gym task end to end: train on its rows with its checker as the reward, and
evaluate an agent on held-out rows in the feedback environment, through the real CLI."""

import json

from tests.helpers import QUIET, cli, metrics

SOURCE = "reasoning_gym:basic_arithmetic:64:0?min_terms=2&max_terms=2&max_digits=1"


def test_grpo_trains_on_a_reasoning_gym_task_with_its_checker(tmp_path):
    out = tmp_path / "run"
    cli(
        "train",
        "recipes/synthetic/grpo-tiny.yaml",
        "--output_dir",
        str(out),
        "--data.source",
        SOURCE,
        "--rewards",
        "[{name: reasoning_gym}, {name: format, preset: gsm8k, weight: 0.1}]",
        "--max_steps",
        "2",
        "--prompts_per_step",
        "4",
        "--num_generations",
        "4",
        "--max_completion_length",
        "6",
        *QUIET,
    )
    rows = metrics(out)
    assert len(rows) == 2 and all("reward/reasoning_gym/mean" in r for r in rows)
    assert all(r["reward/reasoning_gym/errors"] == 0 for r in rows)  # the checker ran on every row
    samples = [json.loads(line) for line in (out / "completions.jsonl").read_text().splitlines()]
    assert any("Calculate" in str(s) for s in samples)  # the task's questions were the prompts


def test_eval_env_scores_held_out_reasoning_gym_rows(tmp_path):
    out = tmp_path / "eval"
    args = ["--model", "tiny-llama", "--engine", "hf", "--data", SOURCE, "--split", "test", "--limit", "8"]
    cli("eval", "--env", "feedback", "--max-turns", "2", "--max-tokens", "4", *args, "--output", str(out))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["task"] == "env:feedback" and summary["n"] == 8
    items = [json.loads(line) for line in (out / "items.jsonl").read_text().splitlines()]
    assert all(it["messages"][0]["content"].startswith("Calculate") for it in items)
    # a random model's answers are wrong: each episode got the feedback turn and ran to max_turns
    assert all(it["turns"] == 2 and not it["success"] for it in items)
