import logging

import pytest
import torch

from reasonrl.rewards import RewardSet, RewardSpec, available, build_reward, register
from reasonrl.rewards.format import overlong_penalty


def test_registry_lists_builtins_and_suggests_names():
    assert {"gsm8k", "math", "format", "length", "teacher_logprob", "judge", "program"} <= set(available())
    with pytest.raises(KeyError, match="unknown reward 'gsm8kk'. Did you mean 'gsm8k'"):
        build_reward("gsm8kk")
    with pytest.raises(TypeError, match="reward 'format': bad options"):
        build_reward("format", nonsense=1)


def test_spec_from_recipe_entry():
    spec = RewardSpec.from_dict({"name": "format", "weight": 0.5, "preset": "think"})
    assert (spec.name, spec.weight, spec.options) == ("format", 0.5, {"preset": "think"})
    with pytest.raises(ValueError, match="needs a 'name'"):
        RewardSpec.from_dict({"weight": 1})


def test_format_presets():
    fmt = build_reward("format", preset="gsm8k", derived=False)
    # a line of work, then the answer line; a bare answer line is not a worked solution
    assert fmt(["3 + 4 = 7\n#### 7", "So:\n\n#### 1,000 ", "#### 7", "work\n#### 7 apples", "7"]) == [
        1,
        1,
        0,
        0,
        0,
    ]
    answer_only = build_reward("format", preset="gsm8k_answer", derived=False)
    assert answer_only(["#### 7", "x #### -3", "#### 7 apples"]) == [1.0, 1.0, 0.0]
    think = build_reward("format", preset="think")
    assert think(["<think>hm</think> <answer>4</answer>", "<answer>4</answer>"]) == [1.0, 0.0]
    with pytest.raises(ValueError, match="unknown preset"):
        build_reward("format", preset="xml")


def test_format_reward_does_not_pay_for_the_instructions_example_answer():
    # The old default instruction said "end with '#### 42'" and a run learned to write 42.
    fmt = build_reward("format", preset="gsm8k", derived=False)
    prompt = "Tom has 60 pens.\nShow your work, then end with '#### 42'."
    completions = ["60 pens.\n#### 42", "60 pens.\n#### 60", "4,200\n#### 4,200"]
    columns = {"prompts": [prompt] * 3, "question": ["Tom has 60 pens."] * 3}
    assert fmt(completions, **columns) == [0.0, 1.0, 1.0]
    # a question that itself says '#### 42' makes 42 no copy; the opt-out pays copies
    assert fmt(["x\n#### 42"], prompts=["a #### 42 b"], question=["a #### 42"]) == [1.0]
    one = {k: v[:1] for k, v in columns.items()}
    pays_copies = build_reward("format", preset="gsm8k", derived=False, pay_copies=True)
    assert pays_copies(completions[:1], **one) == [1.0]


def test_format_reward_pays_only_answers_the_work_derives_from_the_question():
    # The make-run GRPO adapter ended 94% of chains with '#### 42', whatever the question.
    fmt = build_reward("format", preset="gsm8k")
    question = "Natalia sold 48 clips in April and half as many in May. How many in all?"
    completions = [
        "She sold 48 / 2 = 24 in May.\nSo 48 + 24 = 72 in all.\n#### 72",  # worked out
        "In May: <<48/2=24>>24 clips. Total 48+24=<<48+24=72>>72\n#### 72",  # GSM8K's own notation
        "She sold many clips.\n#### 42",  # the hack: no work
        "6 * 7 = 42 because that is the answer.\n#### 42",  # arithmetic, not from the question
        "She sold 48 / 2 = 25 in May.\n#### 25",  # wrong arithmetic
        "2. $48 x 2 = $96 at most.\n#### 96",  # a list number, '$' and 'x' for times
        "48 / 2 = 24, then 48 + 24 = 72.\n#### 24",  # an intermediate result is derived too
    ]
    scores = fmt(completions, prompts=[question] * 7, question=[question] * 7)
    assert scores == [1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 1.0]
    # called without questions (scripts, other trainers) any correct equation giving the
    # answer counts
    assert fmt(["60 pens.\n#### 42", "6 * 7 = 42 pens.\n#### 42"]) == [0.0, 1.0]
    with pytest.raises(ValueError, match="derived: true needs preset gsm8k"):
        build_reward("format", preset="think", derived=True)


def test_overlong_penalty_dapo():
    # L_max = 100, L_cache = 20: flat until 80, linear to -1 at 100, -1 beyond
    assert [overlong_penalty(n, 100, 20) for n in (10, 80, 90, 100, 101)] == [0.0, 0.0, -0.5, -1.0, -1.0]
    reward = build_reward("length", max_length=100, cache=20)
    assert reward(["a", "b"], completion_lengths=[50, 90]) == [0.0, -0.5]


def test_math_verify_equivalence():
    reward = build_reward("math")
    completions = ["so the result is $\\boxed{\\frac{1}{2}}$", "The answer is 0.5", "\\boxed{3}", "nothing"]
    assert reward(completions, answer=["1/2", "\\frac{1}{2}", "4", "2"]) == [1.0, 1.0, 0.0, 0.0]


@register("test_flaky")
def _flaky():
    def reward(completions, **_):
        return [1.0 / (len(c) - 3) for c in completions]  # "abc" divides by zero

    return reward


def test_a_failing_reward_scores_zero_counts_and_logs_once(caplog):
    rewards = RewardSet(
        [
            RewardSpec("test_flaky", 2.0),
            RewardSpec("format", 1.0, {"preset": "gsm8k_answer", "derived": False}),
        ]
    )
    with caplog.at_level(logging.ERROR):
        scores = rewards(["abcd", "abc", "abc", "#### 5"])
        rewards(["abc"])
    torch.testing.assert_close(scores.per_reward["test_flaky"], torch.tensor([1.0, 0.0, 0.0, 1 / 3]))
    assert scores.errors == {"test_flaky": 2, "format": 0}
    torch.testing.assert_close(scores.total, torch.tensor([2.0, 0.0, 0.0, 2 / 3 + 1]))
    assert sum("ZeroDivisionError" in r.message for r in caplog.records) == 1


def test_non_finite_rewards_are_failures():
    @register("test_nan")
    def _nan():
        return lambda completions, **_: [float("nan") if c == "x" else 1.0 for c in completions]

    scores = RewardSet([RewardSpec("test_nan")])(["x", "y"])
    assert scores.per_reward["test_nan"].tolist() == [0.0, 1.0] and scores.errors["test_nan"] == 1


def test_column_length_mismatch_is_an_error():
    with pytest.raises(ValueError, match="column 'answer' has 1 values for 2 completions"):
        RewardSet([RewardSpec("gsm8k")])(["#### 1", "#### 2"], answer=["1"])


def test_a_reward_calling_sys_exit_scores_zero_and_the_run_goes_on():
    @register("test_exit")
    def _():
        def reward(completions, **_):
            if any("bad" in c for c in completions):
                raise SystemExit(3)
            return [1.0] * len(completions)

        return reward

    scores = RewardSet([RewardSpec("test_exit")])(["good", "bad", "good"])
    assert scores.total.tolist() == [1.0, 0.0, 1.0] and scores.errors["test_exit"] == 1


def test_a_reward_that_hangs_is_given_up_after_its_time_limit():
    import threading
    import time

    release = threading.Event()

    @register("test_hang")
    def _():
        def reward(completions, **_):
            release.wait(30)  # a reward stuck on a lock, a server, a loop
            return [1.0] * len(completions)

        return reward

    start = time.monotonic()
    scores = RewardSet([RewardSpec.from_dict({"name": "test_hang", "time_limit": 0.5})])(["a", "b"])
    release.set()
    assert scores.total.tolist() == [0.0, 0.0] and scores.errors["test_hang"] == 2
    assert time.monotonic() - start < 5  # not once per completion
