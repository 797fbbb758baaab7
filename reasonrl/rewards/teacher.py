"""Teacher-model rewards: distillation by log-likelihood, and a yes/no judge.

The teacher is any ``reasonrl.models.load`` name or path, loaded once on first use
and kept frozen in eval mode.
"""

from __future__ import annotations

import torch

from reasonrl.losses import token_logprobs
from reasonrl.models.logprobs import position_ids
from reasonrl.rewards.registry import register

JUDGE_TEMPLATE = (
    "Question:\n{question}\n\nProposed answer:\n{completion}\n\n"
    "Is the proposed answer correct? Answer yes or no."
)


class Teacher:
    def __init__(self, model: str, dtype: str = "float32", trust_remote_code: bool = False):
        self.name, self.dtype, self.trust_remote_code = model, dtype, trust_remote_code
        self._loaded = None

    @property
    def loaded(self):
        if self._loaded is None:
            from reasonrl.models import load

            model, tokenizer = load(self.name, dtype=self.dtype, trust_remote_code=self.trust_remote_code)
            model.eval().requires_grad_(False)
            self._loaded = (model, tokenizer)
        return self._loaded

    @torch.no_grad()
    def forward(self, sequences: list[list[int]]) -> torch.Tensor:
        """Logits of right-padded sequences, [B, L, V]."""
        model, tokenizer = self.loaded
        length = max(len(s) for s in sequences)
        ids = torch.full((len(sequences), length), tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, s in enumerate(sequences):
            ids[i, : len(s)] = torch.tensor(s)
            mask[i, : len(s)] = 1
        return model(input_ids=ids, attention_mask=mask, position_ids=position_ids(mask)).logits.float()


@register("teacher_logprob")
def teacher_logprob_reward(
    model: str,
    dtype: str = "float32",
    batch_size: int = 8,
    empty_value: float = -10.0,
    trust_remote_code: bool = False,
):
    """Mean per-token log-prob of the completion under the teacher, given the prompt.

    ``empty_value`` scores empty completions (otherwise the best score would be free).
    """
    teacher = Teacher(model, dtype, trust_remote_code)

    def reward(completions: list[str], prompts: list[str], **_) -> list[float]:
        _, tokenizer = teacher.loaded
        scores = []
        for start in range(0, len(completions), batch_size):
            pairs = []
            for prompt, completion in zip(
                prompts[start : start + batch_size], completions[start : start + batch_size], strict=True
            ):
                p = tokenizer(prompt, add_special_tokens=False).input_ids
                c = tokenizer(completion, add_special_tokens=False).input_ids
                pairs.append((p, c))
            logits = teacher.forward([p + c for p, c in pairs if c] or [[tokenizer.pad_token_id]])
            row = 0
            for p, c in pairs:
                if not c:
                    scores.append(empty_value)
                    continue
                positions = slice(len(p) - 1, len(p) + len(c) - 1)
                logps = token_logprobs(logits[row, positions], torch.tensor(c))
                scores.append(float(logps.mean()))
                row += 1
        return scores

    return reward


def _verdict_tokens(tokenizer) -> tuple[list[int], list[int]]:
    """First tokens of the yes and no spellings; a token both start with (a bare space
    under a character tokenizer) says nothing about the verdict and is dropped."""
    first = lambda words: {tokenizer(w, add_special_tokens=False).input_ids[0] for w in words}  # noqa: E731
    yes, no = first(["Yes", "yes", " Yes", " yes"]), first(["No", "no", " No", " no"])
    return sorted(yes - no), sorted(no - yes)


@register("judge")
def judge_reward(
    model: str,
    template: str = JUDGE_TEMPLATE,
    dtype: str = "float32",
    trust_remote_code: bool = False,
):
    """P(yes) of a teacher asked whether the completion is correct.

    The verdict prompt (``template``, with ``{question}`` and ``{completion}``) goes
    through the teacher's chat template; the reward is the probability mass of the
    first tokens of "Yes"/"yes" over that of "Yes"/"yes"/"No"/"no" at the next token.
    """
    teacher = Teacher(model, dtype, trust_remote_code)

    def reward(completions: list[str], prompts: list[str], question: list[str] | None = None, **_):
        _, tokenizer = teacher.loaded
        yes, no = _verdict_tokens(tokenizer)
        questions = question or prompts
        scores = []
        for q, completion in zip(questions, completions, strict=True):
            text = template.format(question=q, completion=completion)
            if getattr(tokenizer, "chat_template", None):
                text = tokenizer.apply_chat_template(
                    [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
                )
            ids = tokenizer(text, add_special_tokens=False).input_ids
            probs = torch.softmax(teacher.forward([ids])[0, -1], dim=-1)
            p_yes, p_no = probs[yes].sum(), probs[no].sum()
            scores.append(float(p_yes / (p_yes + p_no)))
        return scores

    return reward
