"""GRPO and PPO on multi-turn episodes must learn to use a tool: the lookup toy hides the
answer behind the tool, so success means calling it and reading what comes back."""

import json

import pytest

from tests.helpers import QUIET, cli, mean, metrics

pytestmark = pytest.mark.slow  # minutes of training: `make test-slow`, and `make test`


@pytest.mark.parametrize("algorithm", ["grpo", "ppo"])
def test_learns_to_call_the_tool_and_use_its_answer(tmp_path, algorithm):
    recipe = f"recipes/synthetic/{algorithm}-lookup-tiny.yaml"
    out = cli("train", recipe, "--output_dir", str(tmp_path), *QUIET)
    rows = metrics(tmp_path)
    first, last = rows[:10], rows[-10:]
    start, end = mean(first, "episode/success"), mean(last, "episode/success")
    calls = mean(first, "episode/tool_calls"), mean(last, "episode/tool_calls")
    print(
        f"{algorithm.upper()} lookup (tiny, {len(rows)} steps): success {start:.3f} -> {end:.3f}; "
        f"tool calls per episode {calls[0]:.2f} -> {calls[1]:.2f}"
    )
    assert start < 0.1  # a guess: the digit is not in the prompt
    assert end >= 0.8
    assert calls[1] >= 0.9  # it succeeds by calling the tool, not by guessing
    assert mean(last, "episode/env_tokens") > 0 and mean(last, "episode/model_tokens") >= 1.9
    # the recipe's eval section: held-out rows (the test split), greedy, before and after
    held_out = [
        json.loads((tmp_path / d / "summary.json").read_text())["metrics"]["success,lookup"]["value"]
        for d in ("eval-base", "eval")
    ]
    line = next(x for x in out.stdout.splitlines() if x.startswith("held-out success,lookup"))
    print(f"{algorithm.upper()} {line}")
    assert held_out[0] < 0.2 and held_out[1] >= 0.8
    assert f"{held_out[0]:.3f} -> {held_out[1]:.3f}" in line
