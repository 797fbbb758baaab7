"""reasoning-gym's procedural tasks as a data source: ``reasoning_gym:TASK[:N[:SEED]][?KNOB=V&...]``.

reasoning-gym (PyPI ``reasoning-gym``) generates ~100 verifiable task families (arithmetic,
algebra, logic, puzzles, games) with difficulty knobs, each with its own answer checker.
A source string names the task, how many rows (default 1000), the seed (default 0) and
the task's knobs as a query string, so the same string works in a recipe's
``data.source`` and in ``reasonrl eval --data``::

    reasoning_gym:basic_arithmetic:500:0?min_terms=2&max_terms=3&max_digits=2

The ``test`` split draws from another seed than ``train`` (as the synthetic generator
does). Each problem keeps the task's own entry in ``Problem.meta``: the ``reasoning_gym``
reward (``reasonrl.rewards.procedural``) scores with the task's checker, which may need it.
"""

from __future__ import annotations

import difflib

import yaml

from reasonrl.data.gsm8k import DataError, Problem

PREFIX = "reasoning_gym:"
USAGE = "use reasoning_gym:TASK[:N[:SEED]][?KNOB=VALUE&...]"


def parse_source(source: str) -> tuple[str, int, int, dict]:
    """``(task, n, seed, knobs)`` of a source string; ValueError naming the part that is wrong."""
    spec, _, query = source.removeprefix(PREFIX).partition("?")
    parts = spec.split(":")
    if not parts[0] or len(parts) > 3:
        raise ValueError(f"reasoning-gym source {source!r}: {USAGE}")
    try:
        n = int(parts[1]) if len(parts) > 1 else 1000
        seed = int(parts[2]) if len(parts) > 2 else 0
    except ValueError:
        raise ValueError(f"reasoning-gym source {source!r}: N and SEED must be integers ({USAGE})") from None
    knobs = {}
    for item in filter(None, query.split("&")):
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise ValueError(f"reasoning-gym source {source!r}: knob {item!r} is not KEY=VALUE")
        knobs[key] = yaml.safe_load(value)  # 3 -> int, 0.5 -> float, true -> bool, else text
    return parts[0], n, seed, knobs


def tasks() -> list[str]:
    import reasoning_gym

    return sorted(reasoning_gym.factory.DATASETS)


def make_dataset(task: str, knobs: dict, size: int, seed: int, source: str = ""):
    """The reasoning-gym dataset; ValueError naming the task or knob and the choices."""
    import dataclasses

    import reasoning_gym

    datasets = reasoning_gym.factory.DATASETS
    if task not in datasets:
        close = difflib.get_close_matches(task, datasets, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(
            f"{source or task}: unknown reasoning-gym task {task!r}{hint} ({len(datasets)} tasks)"
        )
    config_cls = datasets[task][1]
    fields = {f.name for f in dataclasses.fields(config_cls)} - {"size", "seed"}
    unknown = sorted(set(knobs) - fields)
    if unknown:
        raise ValueError(
            f"{source or task}: reasoning-gym task {task!r} has no knob(s) {unknown}; "
            f"its knobs: {', '.join(sorted(fields))}"
        )
    try:
        return reasoning_gym.create_dataset(task, size=size, seed=seed, **knobs)
    except (AssertionError, ValueError, TypeError) as err:  # the config's own validation
        raise ValueError(f"{source or task}: reasoning-gym rejected the knobs {knobs}: {err}") from None


def load(source: str, split: str) -> list[Problem]:
    task, n, seed, knobs = parse_source(source)
    dataset = make_dataset(task, knobs, n, seed * 2 + (split != "train"), source)
    problems = []
    for i in range(n):
        entry = dataset[i]
        if not isinstance(entry.get("question"), str) or entry.get("answer") is None:
            raise DataError(f"{source} row {i}: reasoning-gym gave no question or answer")
        meta = {"task": task, "knobs": knobs, "entry": entry}
        problems.append(Problem(entry["question"].strip(), "", str(entry["answer"]), meta=meta))
    return problems
