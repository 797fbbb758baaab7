"""Synthetic GSM8K-style word problems, written by this project.

Each problem is a short story about one quantity that changes step by step (buy,
give away, multiply, share equally), with exact integer arithmetic. The answer field
has GSM8K's form: one line per step with a calculator annotation, then ``#### N``,
so the same parser reads both datasets.

``difficulty`` is the number of steps (1 to 6); numbers grow with it. ``difficulty=0``
is the arithmetic drill used to train tiny models from scratch: ``"3+4="``-style
prompts whose answer is a single digit.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path

from reasonrl.data.gsm8k import Problem, parse_answer

NAMES = [
    "Ava",
    "Ben",
    "Chloe",
    "Dev",
    "Elena",
    "Farid",
    "Grace",
    "Hugo",
    "Ines",
    "Jamal",
    "Kira",
    "Liam",
    "Mei",
    "Noah",
    "Olga",
    "Pablo",
    "Quinn",
    "Rosa",
    "Sami",
    "Tess",
]
ITEMS = [
    "apples",
    "marbles",
    "stickers",
    "pencils",
    "cookies",
    "stamps",
    "shells",
    "cards",
    "books",
    "coins",
    "eggs",
    "candles",
    "beads",
    "tickets",
    "plums",
]
FRIENDS = ["a friend", "a classmate", "a neighbour", "the teacher", "a cousin"]
MAX_DIFFICULTY = 6


def _step(rng: random.Random, value: int, name: str, item: str, scale: int):
    """One change to the running quantity: (sentence, solution line, new value)."""
    kind = rng.choice(["add", "sub", "mul", "div"])
    if kind == "div":
        divisors = [k for k in (2, 3, 4, 5) if value % k == 0 and value // k > 0]
        if not divisors:
            kind = "add"
    if kind == "sub" and value < 2:
        kind = "add"
    if kind == "add":
        b = rng.randint(1, scale)
        new = value + b
        text = rng.choice(
            [
                f"{name} buys {b} more {item}.",
                f"{name} finds {b} more {item}.",
                f"A friend gives {name} {b} {item}.",
            ]
        )
        line = f"Adding {b} gives {value} + {b} = <<{value}+{b}={new}>>{new} {item}."
    elif kind == "sub":
        b = rng.randint(1, value - 1)
        new = value - b
        text = f"{name} gives {b} {item} to {rng.choice(FRIENDS)}."
        line = f"Giving {b} away leaves {value} - {b} = <<{value}-{b}={new}>>{new} {item}."
    elif kind == "mul":
        k = rng.choice([2, 3, 4]) if value < 50 * scale else 2
        new = value * k
        word = {2: "doubles", 3: "triples", 4: "quadruples"}[k]
        text = f"Then {name} {word} the number of {item}."
        line = f"The {item} are multiplied by {k}: {value} * {k} = <<{value}*{k}={new}>>{new}."
    else:
        k = rng.choice(divisors)
        new = value // k
        text = f"{name} shares the {item} equally among {k} boxes and keeps one box."
        line = f"One box holds {value} / {k} = <<{value}/{k}={new}>>{new} {item}."
    return text, line, new


def _drill(rng: random.Random) -> Problem:
    a = rng.randint(0, 4)
    b = rng.randint(0, 4)
    return Problem(question=f"{a}+{b}=", solution=f"{a} + {b} = {a + b}", answer=str(a + b))


def make_problem(rng: random.Random, difficulty: int) -> Problem:
    """One problem with ``difficulty`` steps (0 = single-digit addition drill)."""
    if not 0 <= difficulty <= MAX_DIFFICULTY:
        raise ValueError(f"difficulty must be in [0, {MAX_DIFFICULTY}], got {difficulty}")
    if difficulty == 0:
        return _drill(rng)
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    scale = 5 * difficulty
    value = rng.randint(2, 4 * scale)
    sentences = [f"{name} has {value} {item}."]
    lines = []
    for _ in range(difficulty):
        text, line, value = _step(rng, value, name, item, scale)
        sentences.append(text)
        lines.append(line)
    sentences.append(f"How many {item} does {name} have now?")
    answer = "\n".join(lines) + f"\n#### {value}"
    solution, final = parse_answer(answer)
    return Problem(question=" ".join(sentences), solution=solution, answer=final)


def generate(n: int, difficulty: int | tuple[int, int] = (1, 3), seed: int = 0) -> list[Problem]:
    """``n`` problems; ``difficulty`` is one level or an inclusive ``(low, high)`` range."""
    rng = random.Random(seed)
    low, high = (difficulty, difficulty) if isinstance(difficulty, int) else difficulty
    return [make_problem(rng, rng.randint(low, high)) for _ in range(n)]


def gsm8k_answer_field(problem: Problem) -> str:
    """The problem's answer in GSM8K's own format (solution lines, then ``#### N``)."""
    return f"{problem.solution}\n#### {problem.answer}"


def iter_records(problems: list[Problem]) -> Iterator[dict]:
    """Records in GSM8K's file format: ``{"question", "answer"}``."""
    for p in problems:
        yield {"question": p.question, "answer": gsm8k_answer_field(p)}


def write_jsonl(problems: list[Problem], path: str | Path) -> None:
    """Write problems as a GSM8K-format jsonl file (readable by ``load_gsm8k``)."""
    with open(path, "w", encoding="utf-8") as f:
        for record in iter_records(problems):
            f.write(json.dumps(record) + "\n")
