"""Preference pairs for DPO: ``prompt`` / ``chosen`` / ``rejected``, as TRL writes them.

Each field is plain text, or chat messages (``prompt``: the conversation so far;
``chosen`` / ``rejected``: the assistant's reply as a message list). Sources: a local
json/jsonl file or a hub id (through ``datasets``), or ``synthetic:LEVEL[:N[:SEED]]``,
pairs built from the synthetic generator (correct solution vs the same solution
with a wrong final answer).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from reasonrl.data.gsm8k import DataError, _read_local
from reasonrl.data.sources import parse_synthetic
from reasonrl.data.synthetic import generate

Text = str | list[dict]


@dataclass(frozen=True)
class PreferencePair:
    prompt: Text
    chosen: str
    rejected: str


def _reply(value, field: str, where: str) -> str:
    """The assistant text of a completion field (text, or a list of assistant messages)."""
    if isinstance(value, str):
        text = value
    elif isinstance(value, list) and all(isinstance(m, dict) and "content" in m for m in value):
        text = "".join(str(m["content"]) for m in value if m.get("role", "assistant") == "assistant")
    else:
        raise DataError(
            f"{where}: '{field}' must be text or a list of chat messages, got {type(value).__name__}"
        )
    if not text.strip():
        raise DataError(f"{where}: '{field}' is empty")
    return text


def to_pair(record: dict, where: str) -> PreferencePair:
    missing = [k for k in ("prompt", "chosen", "rejected") if k not in record or record[k] is None]
    if missing:
        raise DataError(f"{where}: missing field(s) {missing}")
    prompt = record["prompt"]
    if isinstance(prompt, str):
        if not prompt.strip():
            raise DataError(f"{where}: 'prompt' is empty")
    elif not (
        isinstance(prompt, list)
        and all(isinstance(m, dict) and {"role", "content"} <= set(m) for m in prompt)
    ):
        raise DataError(f"{where}: 'prompt' must be text or a list of {{role, content}} messages")
    chosen, rejected = (
        _reply(record["chosen"], "chosen", where),
        _reply(record["rejected"], "rejected", where),
    )
    if chosen.strip() == rejected.strip():
        raise DataError(f"{where}: 'chosen' and 'rejected' are the same text")
    return PreferencePair(prompt=prompt, chosen=chosen, rejected=rejected)


def synthetic_pairs(n: int, levels: tuple[int, int], seed: int) -> list[PreferencePair]:
    """Correct worked solution (chosen) vs the same work ending in a wrong answer (rejected)."""
    rng = random.Random(seed)
    pairs = []
    for problem in generate(n, levels, seed=seed):
        answer = int(problem.answer)
        wrong = rng.choice([d for d in range(max(0, answer - 5), answer + 6) if d != answer])
        if levels == (0, 0):  # the drill: a bare answer
            pairs.append(PreferencePair(problem.question, problem.answer, str(wrong)))
        else:
            work = problem.solution
            pairs.append(PreferencePair(problem.question, f"{work}\n#### {answer}", f"{work}\n#### {wrong}"))
    return pairs


def load_pairs(source: str, split: str = "train", limit: int | None = None) -> list[PreferencePair]:
    if source.startswith("synthetic:"):
        levels, n, seed = parse_synthetic(source)
        pairs = synthetic_pairs(n, levels, seed * 2 + (split != "train"))
    else:
        path = Path(source).expanduser()
        if path.is_dir():
            path = path / f"{split}.jsonl"
        if path.exists():
            rows = _read_local(path)
        elif source.count("/") == 1 and not path.suffix:
            from datasets import load_dataset

            rows = [
                (row, f"{source}[{split}] record {i}")
                for i, row in enumerate(load_dataset(source, split=split))
            ]
        else:
            raise FileNotFoundError(f"preference source {source!r} is no file, folder or hub id")
        pairs = [to_pair(row, where) for row, where in rows]
    return pairs[:limit] if limit is not None else pairs
