"""reasoning-gym's tasks as a data source, its checkers as a reward and in the environments."""

import re

import pytest

from reasonrl.data import load_problems
from reasonrl.envs import make_env
from reasonrl.rewards import build_reward
from reasonrl.rewards.procedural import read_answer

SOURCE = "reasoning_gym:basic_arithmetic:20:3?min_terms=2&max_terms=2&max_digits=1"


def test_a_source_string_names_the_task_size_seed_and_knobs():
    train, test = load_problems(SOURCE, "train"), load_problems(SOURCE, "test")
    assert len(train) == len(test) == 20
    assert train == load_problems(SOURCE, "train")  # deterministic
    assert [p.question for p in train] != [p.question for p in test]  # the splits differ
    for p in train:
        entry = p.meta["entry"]
        assert p.meta["task"] == "basic_arithmetic" and p.answer == entry["answer"]
        assert entry["metadata"]["num_terms"] == 2  # the knobs reached the generator
        assert entry["question"].strip() == p.question


@pytest.mark.parametrize(
    "source, message",
    [
        ("reasoning_gym:basic_arithmetc", "unknown reasoning-gym task 'basic_arithmetc'; did you mean"),
        ("reasoning_gym:chain_sum:5?max_trms=3", "has no knob(s) ['max_trms']; its knobs:"),
        ("reasoning_gym:chain_sum:five", "N and SEED must be integers"),
        ("reasoning_gym:chain_sum:5?max_terms", "knob 'max_terms' is not KEY=VALUE"),
        ("reasoning_gym:chain_sum:5?min_terms=5&max_terms=2", "reasoning-gym rejected the knobs"),
    ],
)
def test_a_bad_source_names_what_is_wrong(source, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        load_problems(source)


def test_the_reward_reads_a_marked_answer_and_asks_the_tasks_checker():
    problems = load_problems(SOURCE, "train")[:4]
    meta = [p.meta for p in problems]
    reward = build_reward("reasoning_gym")
    right = [f"... so\n#### {p.answer}" for p in problems]
    tagged = [f"<answer>{p.answer}</answer>" for p in problems]
    wrong = [f"#### {int(p.answer) + 1}" for p in problems]
    bare = [p.answer for p in problems]  # no marker: a bare guess at the end is not an answer
    assert reward(right, meta=meta) == [1.0] * 4
    assert reward(tagged, meta=meta) == [1.0] * 4
    assert reward(wrong, meta=meta) == [0.0] * 4
    assert reward(bare, meta=meta) == [0.0] * 4
    with pytest.raises(ValueError, match="not from a reasoning_gym: data source"):
        reward(right, meta=[None] * 4)


def test_a_task_with_text_answers_is_scored_by_its_own_checker():
    (problem,) = load_problems("reasoning_gym:fraction_simplification:1:0", "train")
    assert not problem.answer.lstrip("-").isdigit()  # "138/583", "$\\dfrac{79}{173}$": no number
    reward = build_reward("reasoning_gym", answer_format="tag")
    assert reward(
        [f"<answer>{problem.answer}</answer>", f"#### {problem.answer}"], meta=[problem.meta] * 2
    ) == [
        1.0,
        0.0,  # answer_format: tag reads tags only
    ]
    assert read_answer("x #### 3/4.\n") == "3/4"


def test_the_feedback_env_checks_a_reasoning_gym_row_with_its_task():
    (problem,) = load_problems("reasoning_gym:fraction_simplification:1:0", "train")
    env = make_env("feedback", max_turns=2)
    state = env.reset(problem.to_record())
    state.turn = 1
    step = env.step(state, "#### 1/2")
    assert not step.done and "The answer 1/2 is wrong" in step.observation
    state.turn = 2
    assert env.step(state, f"#### {problem.answer}").done
    assert env.score(state) == 1.0
