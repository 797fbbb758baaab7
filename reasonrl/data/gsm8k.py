"""GSM8K: load the ``question`` / ``answer`` records and parse the reference answer.

A GSM8K answer is a worked solution with calculator annotations ``<<48/2=24>>`` and a
final line ``#### 72``. We keep the solution without the annotations and the final
answer as a normalised number string (commas removed, sign kept).

Sources: a local ``.json`` / ``.jsonl`` file, a folder holding ``{split}.jsonl``, or a
hub id (``openai/gsm8k``, config ``main``) read through ``datasets``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

CALCULATOR = re.compile(r"<<[^>]*>>")
FINAL_ANSWER = re.compile(r"####\s*(.+?)\s*$", re.DOTALL)
NUMBER = re.compile(r"^-?\d+(?:\.\d+)?$")
HUB_IDS = {"openai/gsm8k": "main", "gsm8k": "main"}


class DataError(ValueError):
    """A record that cannot be used, with the place it came from."""


@dataclass(frozen=True)
class Problem:
    """One GSM8K-style problem."""

    question: str
    solution: str  # worked solution, calculator annotations removed, without the #### line
    answer: str  # final answer, normalised: "1000", "-5", "2.5"
    # what a task-specific checker needs beyond the answer (reasoning-gym: task, knobs, entry)
    meta: dict | None = field(default=None, compare=False)

    def to_record(self) -> dict:
        record = {"question": self.question, "solution": self.solution, "answer": self.answer}
        return record | ({"meta": self.meta} if self.meta is not None else {})


def strip_calculator(text: str) -> str:
    """Remove GSM8K calculator annotations: ``"48/2 = <<48/2=24>>24"`` -> ``"48/2 = 24"``."""
    return CALCULATOR.sub("", text)


def normalize_number(text: str) -> str:
    """``"$1,000."`` -> ``"1000"``; ``"-5"`` stays; ``"2.50"`` -> ``"2.5"``."""
    s = text.strip().replace(",", "").replace("$", "").rstrip(".").strip()
    if "." in s and NUMBER.match(s):
        s = s.rstrip("0").rstrip(".")
    return s


def parse_answer(answer: str) -> tuple[str, str]:
    """Split a GSM8K answer field into ``(solution, final_answer)``.

    Raises ValueError when there is no ``####`` line or the final answer is not a number.
    """
    head, sep, tail = answer.rpartition("####")
    if not sep:
        raise ValueError("no '#### <number>' final answer")
    final = normalize_number(tail)
    if not NUMBER.match(final):
        raise ValueError(f"final answer {tail.strip()!r} is not a number")
    return strip_calculator(head).strip(), final


def to_problem(record: dict, where: str) -> Problem:
    """Validate one raw record (``question``, ``answer``); errors name ``where``."""
    missing = [k for k in ("question", "answer") if not isinstance(record.get(k), str)]
    if missing:
        raise DataError(f"{where}: missing or non-text field(s) {missing}")
    try:
        solution, final = parse_answer(record["answer"])
    except ValueError as err:
        raise DataError(f"{where}: {err}") from None
    return Problem(question=record["question"].strip(), solution=solution, answer=final)


def _read_local(path: Path) -> list[tuple[dict, str]]:
    """Records of a local json/jsonl file, each with its place (``file:line``)."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json" and text.lstrip().startswith("["):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}:{err.lineno}: invalid JSON: {err.msg}") from None
        return [(row, f"{path} record {i}") for i, row in enumerate(rows)]
    records = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}:{lineno}: invalid JSON: {err.msg}") from None
        if not isinstance(row, dict):
            raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}")
        records.append((row, f"{path}:{lineno}"))
    return records


def load_records(source: str | Path, split: str = "test") -> list[tuple[dict, str]]:
    """Raw ``{question, answer}`` records with their place (``file:line``), unparsed."""
    path = Path(source).expanduser()
    if path.is_dir():
        path = path / f"{split}.jsonl"
    if path.exists():
        return _read_local(path)
    if str(source) in HUB_IDS or str(source).count("/") == 1 and not path.suffix:
        from datasets import load_dataset

        dataset = load_dataset(str(source), HUB_IDS.get(str(source)), split=split)
        return [(row, f"{source}[{split}] record {i}") for i, row in enumerate(dataset)]
    raise FileNotFoundError(f"GSM8K source {str(source)!r} is no file, folder or hub id")


def load_gsm8k(source: str | Path, split: str = "test", limit: int | None = None) -> list[Problem]:
    """Load GSM8K-style problems.

    Args:
      source: a ``.json``/``.jsonl`` file, a folder with ``{split}.jsonl``, or a hub id.
      split: which split, for folders and hub ids.
      limit: keep the first ``limit`` problems.
    Returns:
      the problems in file order.
    """
    rows = load_records(source, split)
    if limit is not None:
        rows = rows[:limit]
    return [to_problem(row, where) for row, where in rows]
