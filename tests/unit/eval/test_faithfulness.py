"""The faithfulness probe's pieces: steps, truncations, mistakes, rates."""

import random

import pytest

from reasonrl.eval.faithfulness import (
    FRACTIONS,
    Probe,
    add_mistake,
    answer_cue,
    aoc,
    continuation_prompts,
    early_answer_prompts,
    final_answer,
    kept_steps,
    split_steps,
    summarise,
)
from reasonrl.eval.tasks import get_task
from reasonrl.rewards.gsm8k import COT_STRICT_PATTERN, STRICT_PATTERN

CHAIN = " She has 3 boxes of 4 eggs.\nSo 3 * 4 = 12 eggs.\n\nShe eats 2, so 12 - 2 = 10.\n#### 10"


def test_steps_are_lines_and_join_back_to_the_completion():
    steps, rest = split_steps(CHAIN, STRICT_PATTERN)
    assert steps == [
        " She has 3 boxes of 4 eggs.\n",
        "So 3 * 4 = 12 eggs.\n\n",
        "She eats 2, so 12 - 2 = 10.\n",
    ]
    assert rest == "#### 10" and "".join(steps) + rest == CHAIN


def test_one_line_is_split_into_sentences():
    text = "First 2 + 2 = 4. Then 4 * 3 = 12! So we get 12. The answer is 12."
    steps, rest = split_steps(text, COT_STRICT_PATTERN)
    assert steps == ["First 2 + 2 = 4. ", "Then 4 * 3 = 12! ", "So we get 12. "]
    assert rest == "The answer is 12."


def test_a_completion_that_is_only_an_answer_has_no_steps():
    assert split_steps("#### 5", STRICT_PATTERN) == ([], "#### 5")


def test_final_answer_is_strict_then_the_last_number():
    assert final_answer("x 3 y\n#### 1,200", STRICT_PATTERN) == "1,200"
    assert final_answer("it is 7 or 8", STRICT_PATTERN) == "8"
    assert final_answer("no number", STRICT_PATTERN) == "[invalid]"


@pytest.mark.parametrize("n, expected", [(1, [0, 0, 1, 1, 1]), (4, [0, 1, 2, 3, 4]), (3, [0, 1, 2, 2, 3])])
def test_kept_steps_round_half_up(n, expected):
    assert [kept_steps(n, f) for f in FRACTIONS] == expected


def test_a_mistake_changes_the_last_number_only():
    rng = random.Random(0)
    step = "So 3 * 4 = 12 eggs, 12 in all.\n"
    mistaken = add_mistake(step, rng)
    assert mistaken.startswith("So 3 * 4 = 12 eggs, ") and mistaken.endswith(" in all.\n")
    assert mistaken != step and "-" not in mistaken
    assert add_mistake("No numbers here.", rng) is None
    assert add_mistake("half of it is 2.5", rng) == "half of it is 5"


def test_mistakes_never_go_negative_or_stay_the_same():
    for seed in range(50):
        new = add_mistake("0", random.Random(seed))
        assert int(new) > 0


def test_cues_force_the_tasks_answer_format():
    assert answer_cue(get_task("chat")) == "\n#### "
    assert answer_cue(get_task("gsm8k_cot_zeroshot")) == " The answer is"


def _probe():
    steps, _ = split_steps(CHAIN, STRICT_PATTERN)
    return Probe({"index": 0}, "Q?\nAnswer:", steps, "10", site=1, mistaken="So 3 * 4 = 15 eggs.\n\n")


def test_early_answer_prompts_keep_a_growing_prefix_then_the_cue():
    prompts = early_answer_prompts([_probe()], "\n#### ")
    assert prompts[0] == "Q?\nAnswer:\n#### "
    assert prompts[2] == "Q?\nAnswer: She has 3 boxes of 4 eggs.\nSo 3 * 4 = 12 eggs.\n#### "
    assert prompts[-1].endswith("12 - 2 = 10.\n#### ")


def test_continuations_are_the_mistake_then_the_control():
    index, prompts = continuation_prompts([_probe(), Probe({"index": 1}, "P", ["no number"], "1")])
    assert index == [0, 0]
    assert prompts[0] == "Q?\nAnswer: She has 3 boxes of 4 eggs.\nSo 3 * 4 = 15 eggs.\n\n"
    assert prompts[1] == "Q?\nAnswer: She has 3 boxes of 4 eggs.\nSo 3 * 4 = 12 eggs.\n\n"


def test_aoc_is_the_trapezoid_mean_of_the_change_rates():
    assert aoc([1, 1, 1, 1, 0]) == pytest.approx(0.875)
    assert aoc([0] * 5) == 0 and aoc([1] * 5) == 1


def test_summary_counts_changes():
    records = [
        {
            "steps": ["a"],
            "correct": True,
            "early_changed": [True, True, False, False, False],
            "mistake_changed": True,
            "control_changed": False,
        },
        {"steps": ["a", "b"], "correct": False, "early_changed": [False] * 5},
    ]
    summary = summarise(records, skipped=3)
    m = {k: v["value"] for k, v in summary["metrics"].items()}
    assert summary["n"] == 2 and summary["n_mistakes"] == 1 and summary["skipped_no_answer"] == 3
    assert m["early_answer_change@0.0"] == 0.5 and m["early_answer_change@0.5"] == 0
    assert m["mistake_change"] == 1 and m["mistake_control_change"] == 0 and m["accuracy"] == 0.5
