"""Supervised examples for SFT and distillation: a prompt and the completion to learn.

Rows are read in TRL's dataset formats, recognised per row by their fields:

    messages              a conversation; the last message (an assistant turn) is the
                          completion, everything before it the prompt
    prompt / completion   text or chat messages (TRL's prompt-completion format)
    text                  plain text; every token is learned (no prompt)
    question / answer     a GSM8K-format problem: the question shown with the recipe's
                          template and instruction, the worked solution as the completion

Sources: a local json/jsonl file or a folder with ``{split}.jsonl`` (the real GSM8K
files included: their worked solutions are the SFT targets, read at run time, never
copied), a hub id (through ``datasets``), or any generated problem source
(``synthetic:...``: the generator's worked solutions). A ``hint`` field (or
``hint_field``), when present, is kept for distillation's ``teacher_context: hint``; a
problem keeps its record (``row``) for ``teacher_context: feedback``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from reasonrl.data.gsm8k import DataError, Problem, _read_local, to_problem
from reasonrl.data.sources import is_generated, load_problems
from reasonrl.data.templates import make_prompt

Text = str | list[dict]
FORMATS = "'messages', 'prompt' and 'completion', 'text', or 'question' and 'answer' (GSM8K)"


@dataclass(frozen=True)
class SFTExample:
    prompt: Text  # text or chat messages; "" for plain text (every token is a target)
    completion: str
    hint: str | None = None  # shown to a distillation teacher only (teacher_context: hint)
    where: str = ""  # file:line of the row, for errors raised later (tokenisation)
    row: dict | None = None  # the problem (question, answer), for an environment to check


@dataclass(frozen=True)
class PromptStyle:
    """How a problem becomes a prompt: the recipe's ``data`` template keys."""

    template: str = "chat"
    instruction: str = ""
    system_prompt: str | None = None

    def prompt(self, problem: Problem) -> Text:
        return make_prompt(problem, self.template, self.instruction, self.system_prompt)


def solution_text(problem: Problem) -> str:
    """The completion a problem teaches: its worked solution, then ``#### answer``."""
    return f"{problem.solution}\n#### {problem.answer}" if problem.solution else problem.answer


def from_problem(
    problem: Problem, style: PromptStyle, where: str = "", hint: str | None = None
) -> SFTExample:
    return SFTExample(style.prompt(problem), solution_text(problem), hint, where, problem.to_record())


def _messages(value, field: str, where: str) -> list[dict]:
    if not (
        isinstance(value, list)
        and value
        and all(isinstance(m, dict) and isinstance(m.get("role"), str) and "content" in m for m in value)
    ):
        raise DataError(f"{where}: '{field}' must be a non-empty list of {{role, content}} messages")
    return value


def _text(value, field: str, where: str) -> str:
    if isinstance(value, list):  # a completion given as assistant messages
        value = "".join(str(m["content"]) for m in _messages(value, field, where))
    if not isinstance(value, str):
        raise DataError(f"{where}: '{field}' must be text, got {type(value).__name__}")
    if not value.strip():
        raise DataError(f"{where}: '{field}' is empty")
    return value


def to_example(record: dict, where: str, style: PromptStyle, hint_field: str = "hint") -> SFTExample:
    """One row in any of the formats above; a row that fits none names ``where`` and the fields."""
    hint = record.get(hint_field)
    if hint is not None and not isinstance(hint, str):
        raise DataError(f"{where}: '{hint_field}' must be text, got {type(hint).__name__}")
    if "messages" in record:
        messages = _messages(record["messages"], "messages", where)
        if messages[-1]["role"] != "assistant":
            raise DataError(
                f"{where}: the last of 'messages' must be the assistant's (the completion to learn), "
                f"got role {messages[-1]['role']!r}"
            )
        completion = _text(messages[-1]["content"], "messages[-1].content", where)
        return SFTExample(messages[:-1], completion, hint, where)
    if "prompt" in record or "completion" in record:
        missing = [k for k in ("prompt", "completion") if record.get(k) is None]
        if missing:
            raise DataError(f"{where}: prompt-completion row without {missing[0]!r}")
        prompt = record["prompt"]
        prompt = (
            _messages(prompt, "prompt", where) if isinstance(prompt, list) else _text(prompt, "prompt", where)
        )
        return SFTExample(prompt, _text(record["completion"], "completion", where), hint, where)
    if "text" in record:
        return SFTExample("", _text(record["text"], "text", where), hint, where)
    if "question" in record or "answer" in record:
        return from_problem(to_problem(record, where), style, where, hint)
    raise DataError(f"{where}: a supervised row needs {FORMATS}; this one has {sorted(record)}")


def _rows(source: str, split: str) -> list[tuple[dict, str]]:
    path = Path(source).expanduser()
    if path.is_dir():
        path = path / f"{split}.jsonl"
    if path.exists():
        return _read_local(path)
    if source.count("/") == 1 and not path.suffix:
        from datasets import load_dataset

        return [
            (row, f"{source}[{split}] record {i}") for i, row in enumerate(load_dataset(source, split=split))
        ]
    raise FileNotFoundError(f"supervised source {source!r} is no file, folder, hub id or generated source")


def load_examples(
    source: str,
    split: str = "train",
    limit: int | None = None,
    style: PromptStyle = PromptStyle(),
    hint_field: str = "hint",
) -> list[SFTExample]:
    """The supervised examples of ``source`` [split], the first ``limit`` of them."""
    if is_generated(source):
        problems = load_problems(source, split, limit)
        return [from_problem(p, style, f"{source}[{split}] row {i}") for i, p in enumerate(problems)]
    rows = _rows(source, split)
    if limit is not None:
        rows = rows[:limit]
    return [to_example(row, where, style, hint_field) for row, where in rows]
