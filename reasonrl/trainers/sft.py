"""SFT: supervised fine-tuning on worked solutions or chat transcripts (``algorithm: sft``).

The cold start before RL (DeepSeek-R1's SFT on long chains of thought), and every TRL
user's first trainer: the loss is −log π(y_t | x, y_<t) averaged over the completion
tokens of a batch (TRL's SFTTrainer with ``completion_only_loss``, its default for
prompt-completion data), computed with the same shared-prompt, fused-head log-prob code
the RL trainers use. Data formats: ``reasonrl.data.sft``. A run's ``final/`` is a
model or adapter that ``model.name`` of a GRPO recipe can start from.
"""

from __future__ import annotations

import torch

from reasonrl.losses import nll
from reasonrl.models.logprobs import completion_logprobs, packed_completion_logprobs
from reasonrl.rollout import TokenBatch
from reasonrl.runtime import Run
from reasonrl.trainers.final import save_final
from reasonrl.trainers.recipe import Recipe
from reasonrl.trainers.supervised import (
    SupervisedRun,
    eval_problems,
    evaluate,
    set_up,
    split_examples,
    train_supervised,
)


def sft_token_loss(d: SupervisedRun, batch: TokenBatch, examples) -> tuple[torch.Tensor, dict]:
    """−log π of each completion token, [n, C] (padding positions junk)."""
    if d.section.packing:
        logps = packed_completion_logprobs(d.model, batch, d.section.max_length)
    else:
        logps, _ = completion_logprobs(d.model, batch, micro_batch=len(batch))
    return nll(logps), {}


def train_sft(recipe: Recipe) -> Run:
    """Train ``recipe`` with SFT; returns the finished Run. The held-out loss (and sampled
    reward, where the data has answers) is logged before (step 0) and after training."""
    d = set_up(recipe, recipe.sft)
    held_out, examples = split_examples(d)
    problems = eval_problems(d)
    if not recipe.train.resume:
        evaluate(d, held_out, problems, sft_token_loss, 0, "before training")
    step = train_supervised(d, examples, sft_token_loss, "sft")
    evaluate(d, held_out, problems, sft_token_loss, step, "after training", final=True)
    save_final(d.run, d.model, d.policy.tokenizer)
    d.run.log.plot(["loss", "eval/sampled_reward"], title="SFT")
    d.close()
    d.run.finish()
    return d.run
