import re
from pathlib import Path

import pytest

from reasonrl.data import generate, load_gsm8k, write_jsonl
from reasonrl.data.synthetic import MAX_DIFFICULTY, make_problem

DATA = Path(__file__).resolve().parents[2] / "data" / "synthetic_gsm8k.jsonl"


def _replay(solution: str) -> int:
    """Re-do every arithmetic line of a solution and return the last result."""
    value = None
    for a, op, b, result in re.findall(r"(\d+) ([-+*/]) (\d+) = (\d+)", solution):
        expected = {
            "+": int(a) + int(b),
            "-": int(a) - int(b),
            "*": int(a) * int(b),
            "/": int(a) // int(b),
        }[op]
        assert int(result) == expected, solution
        if op == "/":
            assert int(a) % int(b) == 0
        value = expected
    return value


@pytest.mark.parametrize("difficulty", range(1, MAX_DIFFICULTY + 1))
def test_answers_are_exact_and_steps_match_difficulty(difficulty):
    for problem in generate(50, difficulty, seed=difficulty):
        assert problem.solution.count("\n") + 1 == difficulty
        assert _replay(problem.solution) == int(problem.answer) >= 0


def test_drill_difficulty_zero():
    for problem in generate(50, 0, seed=0):
        a, b = problem.question.rstrip("=").split("+")
        assert int(problem.answer) == int(a) + int(b) <= 8


def test_seeded_and_varied():
    assert generate(20, (1, 4), seed=7) == generate(20, (1, 4), seed=7)
    assert generate(20, (1, 4), seed=7) != generate(20, (1, 4), seed=8)


def test_bad_difficulty():
    import random

    with pytest.raises(ValueError, match="difficulty"):
        make_problem(random.Random(0), MAX_DIFFICULTY + 1)


def test_round_trip_through_gsm8k_loader(tmp_path):
    problems = generate(30, (1, 5), seed=3)
    write_jsonl(problems, tmp_path / "s.jsonl")
    assert load_gsm8k(tmp_path / "s.jsonl") == problems


def test_committed_sample_is_reproducible(tmp_path):
    """data/synthetic_gsm8k.jsonl is what `make data` writes (200 problems, seed 0)."""
    write_jsonl(generate(200, (1, 4), seed=0), tmp_path / "s.jsonl")
    assert (tmp_path / "s.jsonl").read_text() == DATA.read_text()
