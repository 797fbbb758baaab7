"""Prompt templates: how a problem is shown to the policy."""

from __future__ import annotations

from reasonrl.data.gsm8k import Problem


def make_prompt(problem: Problem, template: str, instruction: str = "", system_prompt: str | None = None):
    """The prompt for one problem.

    ``chat``: chat messages (rendered later with the model's chat template), the
    question followed by ``instruction``. ``plain``: lm-eval's zero-shot
    ``Question: ... Answer:``. ``drill``: the bare question (``3+4=``), for tiny models.
    """
    if template == "chat":
        messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
        content = f"{problem.question}\n{instruction}".strip()
        return messages + [{"role": "user", "content": content}]
    if template == "plain":
        return f"Question: {problem.question}\nAnswer:"
    if template == "drill":
        return problem.question
    raise ValueError(f"unknown prompt template {template!r}: use chat, plain or drill")
