"""Knowledge distillation (``algorithm: distill``): the student learns the teacher's
next-token distribution at every completion position.

    off-policy   completions from the data (a dataset's solutions, or ones the teacher wrote)
    on-policy    the student samples the completions on its rollout engine and the teacher
                 scores every token of them (GKD, Agarwal et al. 2024: ``lmbda`` is the
                 fraction of steps that sample)

The loss is ``distill.divergence`` per position (``reasonrl.losses.distillation``: forward
KL, reverse KL, or GKD's generalised JSD with ``beta``), averaged over completion tokens.
The teacher is any model reasonrl loads (a built-in name, a folder) or a LoRA adapter on
the student's base model, sharing the student's tokenizer (checked before any model
loads). ``teacher_context: hint`` adds each row's hint to the teacher's prompt only: with
no ``teacher`` the policy teaches itself what it would say had it seen the hint (the
hindsight distillation of OpenClaw-RL, hints from corrections or error messages).
``teacher_context: feedback`` takes the hint from the next state: the recipe's
environment (``env:``, default ``feedback``) reads each completion and its reply ("The
answer 36 is wrong. Check your work and try again.") is what the teacher sees.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path

import torch

from reasonrl.envs import Environment, make_env
from reasonrl.losses import distillation_divergence
from reasonrl.models import load, resolve
from reasonrl.models.logprobs import completion_logits
from reasonrl.models.lora import merge_adapter
from reasonrl.rollout import TokenBatch, encode_prompts
from reasonrl.runtime import Run
from reasonrl.trainers.final import save_final
from reasonrl.trainers.onpolicy import make_environment
from reasonrl.trainers.policy import sampling_config, sync
from reasonrl.trainers.recipe import DistillSection, Recipe
from reasonrl.trainers.supervised import (
    SupervisedRun,
    default_batch,
    eval_problems,
    evaluate,
    set_up,
    split_examples,
    train_supervised,
)

log = logging.getLogger("reasonrl")
HINT = "Hint: {hint}"


def load_teacher(recipe: Recipe) -> torch.nn.Module | None:
    """The frozen teacher: a model, or an adapter merged into a fresh copy of the student's
    base; None when the policy teaches itself (``teacher_context: hint``, no teacher)."""
    name = recipe.distill.teacher
    if name is None:
        return None
    folder, section = resolve(name), recipe.model
    if (Path(folder) / "adapter_config.json").exists():
        base, _ = load(section.name, dtype=section.dtype, trust_remote_code=section.trust_remote_code)
        model = merge_adapter(base, folder)
        log.info("teacher: adapter %s on %s", folder, section.name)
    else:
        model, _ = load(folder, dtype=section.dtype)
        log.info("teacher: %s", folder)
    return model.eval().requires_grad_(False)


def with_hint(prompt, hint: str):
    """The teacher's prompt: the hint after the last user message, or before a text prompt
    (so the completion still starts where the prompt ends); no hint, the prompt as it is."""
    if not hint:
        return prompt
    line = HINT.format(hint=hint)
    if isinstance(prompt, str):
        return f"{line}\n{prompt}"
    messages = [dict(m) for m in prompt]
    last = max(i for i, m in enumerate(messages) if m["role"] == "user")
    messages[last]["content"] = f"{messages[last]['content']}\n{line}"
    return messages


RIGHT, WRONG = "That answer is right.", "That answer is wrong."


def feedback_hints(env: Environment, completions: list[str], examples) -> list[str]:
    """What ``env`` answers to each completion of its example's problem: the observation of
    its first step, or, when it ends the episode there, whether the answer was right. An
    environment that raises gives that row no hint (the teacher then sees what the student
    sees: the row teaches nothing) and is logged; the run goes on."""
    hints = []
    for text, example in zip(completions, examples, strict=True):
        try:
            state = env.reset(example.row)
            step = env.step(state, text)
            hint = (
                step.observation if step.observation is not None else RIGHT if env.score(state) > 0 else WRONG
            )
        except Exception as err:  # noqa: BLE001 - one row's environment failure is not the run's
            log.warning("feedback environment failed on %s: %s: %s", example.where, type(err).__name__, err)
            hint = ""
        hints.append(hint)
    return hints


def teacher_rows(d: SupervisedRun, batch: TokenBatch, examples, env: Environment | None = None) -> TokenBatch:
    """``batch``'s completions after the teacher's prompts (the hint added), same tokens."""
    cfg: DistillSection = d.section
    if cfg.teacher_context == "none":
        return batch
    tok = d.policy.tokenizer
    if cfg.teacher_context == "feedback":
        texts = tok.batch_decode(
            [ids[m.bool()] for ids, m in zip(batch.completion_ids, batch.completion_mask, strict=True)],
            skip_special_tokens=True,
        )
        hints = feedback_hints(env, texts, examples)
    else:
        hints = [e.hint for e in examples]
    _, prompts = encode_prompts(tok, [with_hint(e.prompt, h) for e, h in zip(examples, hints, strict=True)])
    padded = TokenBatch.padded(prompts, [[] for _ in prompts], tok.pad_token_id)  # the prompts only
    return TokenBatch(
        padded["prompt_ids"], padded["prompt_mask"], batch.completion_ids, batch.completion_mask
    )


def make_token_loss(teacher: torch.nn.Module | None, env: Environment | None = None):
    def distill_token_loss(d: SupervisedRun, batch: TokenBatch, examples) -> tuple[torch.Tensor, dict]:
        """The divergence from the teacher at each completion position, [n, C]."""
        cfg: DistillSection = d.section
        student = completion_logits(d.model, batch)
        with torch.no_grad():
            teacher_logits = completion_logits(
                teacher if teacher is not None else d.model, teacher_rows(d, batch, examples, env)
            )
        vocab = min(student.shape[-1], teacher_logits.shape[-1])  # heads padded to different sizes
        per_token = distillation_divergence(
            student[..., :vocab], teacher_logits[..., :vocab], cfg.divergence, cfg.beta, cfg.temperature
        )
        return per_token, {}

    return distill_token_loss


def on_policy_batch(d: SupervisedRun, step: int, examples) -> TokenBatch:
    """With probability ``lmbda`` (seeded by the step), the student's own completions of the
    examples' prompts; otherwise the examples' completions."""
    cfg: DistillSection = d.section
    if cfg.lmbda == 0 or random.random() >= cfg.lmbda:
        return default_batch(d, step, examples)
    engine = d.rollout_engine()
    sync(d.run, engine, d.model)
    sampling = sampling_config(d.recipe.rollout, 1, cfg.temperature, cfg.max_completion_length)
    with d.run.gathered(d.model):
        rollouts = engine.generate([e.prompt for e in examples], sampling)
    return TokenBatch(
        rollouts.prompt_ids, rollouts.prompt_mask, rollouts.completion_ids, rollouts.completion_mask
    )


def train_distill(recipe: Recipe) -> Run:
    """Distil ``recipe``'s teacher into its model; returns the finished Run. The held-out
    divergence (and sampled reward, where the data has answers) is logged before (step 0)
    and after training."""
    cfg = recipe.distill
    d = set_up(recipe, cfg)
    teacher = load_teacher(recipe)
    env = None
    if cfg.teacher_context == "feedback":
        env = make_environment(recipe) if recipe.env is not None else make_env("feedback")
    token_loss = make_token_loss(teacher, env)
    held_out, examples = split_examples(d, cfg.hint_field)
    problems = eval_problems(d)
    if not recipe.train.resume:
        evaluate(d, held_out, problems, token_loss, 0, "before training")
    step = train_supervised(d, examples, token_loss, "distill", on_policy_batch)
    evaluate(d, held_out, problems, token_loss, step, "after training", final=True)
    save_final(d.run, d.model, d.policy.tokenizer)
    d.run.log.plot(["loss", "eval/sampled_reward"], title=f"distillation ({cfg.divergence})")
    d.close()
    d.run.finish()
    return d.run
