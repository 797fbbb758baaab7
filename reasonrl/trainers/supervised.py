"""The loop SFT and distillation share, written once.

    for step:  this rank's examples -> token rows (prompt, completion)         (make_batch)
               -> per micro-batch: the trainer's per-token loss on completion tokens,
                  token-averaged over the step's batch, backward               (token_loss)
               -> optimizer step -> scheduler step -> log, checkpoint when due

A trainer supplies ``token_loss`` (SFT: −log π(y_t); distillation: a divergence to the
teacher) and may replace ``make_batch`` (on-policy distillation samples the completions).
Before and after training: the held-out examples' loss, and the verifier reward of
sampled completions on held-out problems when the source has answers to check.
"""

from __future__ import annotations

import logging
import random
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from reasonrl.data import load_problems
from reasonrl.data.gsm8k import Problem
from reasonrl.data.sampler import ProblemSampler
from reasonrl.data.sft import PromptStyle, SFTExample, load_examples
from reasonrl.data.sources import has_problems
from reasonrl.rewards import RewardSet
from reasonrl.rollout import TokenBatch
from reasonrl.rollout.encode import encode_examples
from reasonrl.runtime import Run, make_optimizer
from reasonrl.trainers.onpolicy import collect, reward_set, sample_rows
from reasonrl.trainers.policy import Policy, build_policy, make_policy_engine, sampling_config, sync
from reasonrl.trainers.recipe import DPOSection, Recipe, SFTSection
from reasonrl.trainers.start import start_run

log = logging.getLogger("reasonrl")
EVAL_SAMPLES_PER_PROBLEM = 4


@dataclass
class SupervisedRun:
    """What a loop over given rows (SFT, distillation, DPO's pairs) holds for its whole run."""

    run: Run
    policy: Policy
    model: torch.nn.Module  # prepared
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    engine: object | None  # samples held-out completions (and on-policy ones); started when first needed
    rewards: RewardSet | None  # None when the source has no answers to check
    recipe: Recipe
    section: SFTSection | DPOSection  # the algorithm's section: its sampling temperature and length

    @property
    def micro(self) -> int:
        return self.recipe.train.micro_batch_size

    def rollout_engine(self):
        """The policy's rollout engine, started on first use (a run that samples nothing
        never pays vLLM's start-up)."""
        if self.engine is None:
            max_len = self.section.max_completion_length + 512
            self.engine = make_policy_engine(
                self.policy, self.recipe.rollout, self.recipe.train.seed, max_len
            )
        return self.engine

    def close(self) -> None:
        if self.engine is not None:
            self.engine.close()

    @property
    def style(self) -> PromptStyle:
        data = self.recipe.data
        return PromptStyle(data.template, data.instruction, data.system_prompt)


# per micro-batch: (rows, their examples) -> per-token loss [n, C] and metrics to average
TokenLoss = Callable[[SupervisedRun, TokenBatch, list[SFTExample]], tuple[torch.Tensor, dict]]
# step, this rank's examples -> the rows to train on
MakeBatch = Callable[[SupervisedRun, int, list[SFTExample]], TokenBatch]


def set_up(recipe: Recipe, section: SFTSection) -> SupervisedRun:
    train = recipe.train
    run = start_run(recipe)
    policy = build_policy(recipe.model, False, train.gradient_checkpointing)
    optimizer, scheduler = make_optimizer(policy.model, train)
    model, optimizer = run.prepare(policy.model, optimizer)
    rewards = reward_set(recipe) if has_problems(recipe.data.source) else None
    return SupervisedRun(run, policy, model, optimizer, scheduler, None, rewards, recipe, section)


def split_examples(d: SupervisedRun, hint_field: str = "hint") -> tuple[list[SFTExample], list[SFTExample]]:
    """The recipe's examples, shuffled by the seed: (held out, training)."""
    data = d.recipe.data
    examples = load_examples(data.source, data.split, data.limit, d.style, hint_field)
    random.Random(d.recipe.train.seed).shuffle(examples)
    n_eval = int(len(examples) * d.section.eval_fraction)
    log.info("%d training examples, %d held out", len(examples) - n_eval, n_eval)
    return examples[:n_eval], examples[n_eval:]


def example_rows(d: SupervisedRun, examples: list[SFTExample]) -> TokenBatch:
    """The examples as token rows; without ``completion_only_loss`` the prompt's tokens
    (after its first) become targets too."""
    tok, section = d.policy.tokenizer, d.section
    prompts, completions = encode_examples(
        tok, [e.prompt for e in examples], [e.completion for e in examples], section.max_length
    )
    if not section.completion_only_loss:
        prompts, completions = (
            [p[:1] for p in prompts],
            [p[1:] + c for p, c in zip(prompts, completions, strict=True)],
        )
    return TokenBatch(**TokenBatch.padded(prompts, completions, tok.pad_token_id))


def supervised_step(
    d: SupervisedRun, batch: TokenBatch, examples: list[SFTExample], token_loss: TokenLoss
) -> dict:
    """One optimizer step: the per-token loss averaged over every completion token of the
    batch (TRL's reduction), in micro-batches."""
    run = d.run
    tokens = batch.completion_mask.sum().clamp(min=1)
    chunks = torch.arange(len(batch)).split(d.micro)
    total, extras = 0.0, []
    for i, rows in enumerate(chunks):
        with run.micro_step(d.model, last=i == len(chunks) - 1):
            with run.autocast():
                per_token, extra = token_loss(d, batch.select(rows), [examples[j] for j in rows])
            mask = batch.completion_mask[rows]
            loss = (per_token.float() * mask).sum() / tokens
            run.accelerator.backward(loss)
        total += loss.item()
        extras.append(extra)
    metrics = {"loss": total, "tokens": int(tokens), "grad_norm": run.optimizer_step(d.model, d.optimizer)}
    for key in dict.fromkeys(k for e in extras for k in e):
        metrics[key] = sum(e[key] for e in extras if key in e) / sum(key in e for e in extras)
    return metrics


@torch.no_grad()
def held_out_loss(d: SupervisedRun, examples: list[SFTExample], token_loss: TokenLoss) -> float:
    if not examples:
        return float("nan")
    total, tokens = 0.0, 0
    for start in range(0, len(examples), d.micro):
        part = examples[start : start + d.micro]
        batch = example_rows(d, part)
        with d.run.autocast():
            per_token, _ = token_loss(d, batch, part)
        total += (per_token.float() * batch.completion_mask).sum().item()
        tokens += int(batch.completion_mask.sum())
    return total / max(tokens, 1)


def sampled(d: SupervisedRun, problems: list[Problem], n: int):
    """``n`` of the policy's completions per problem, scored (the engine synced first)."""
    section, engine = d.section, d.rollout_engine()
    sync(d.run, engine, d.model)
    sampling = sampling_config(d.recipe.rollout, n, section.temperature, section.max_completion_length)
    return collect(d.run, d.model, engine, d.rewards, problems, sampling, d.recipe.data)


def evaluate(d: SupervisedRun, held_out, problems, token_loss, step: int, when: str, final=False) -> None:
    """The held-out loss and, with problems, the sampled verifier reward, logged at ``step``."""
    d.model.eval()
    metrics = {"eval/loss": held_out_loss(d, held_out, token_loss)}
    if problems and d.rewards is not None:
        scored = sampled(d, problems, EVAL_SAMPLES_PER_PROBLEM)
        metrics["eval/sampled_reward"] = scored.scores.total.mean().item()
        d.run.log.completions(step, sample_rows(scored, d.recipe.train.completions_to_log))
    d.model.train()
    d.run.log.metrics(step, {**metrics, "final": 1} if final else metrics)
    log.info("%s: %s", when, ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()))


def eval_problems(d: SupervisedRun) -> list[Problem]:
    source = d.recipe.data.source
    if d.rewards is None or not d.section.eval_samples:
        return []
    return load_problems(source, "test", d.section.eval_samples)


def default_batch(d: SupervisedRun, step: int, examples: list[SFTExample]) -> TokenBatch:
    return example_rows(d, examples)


def train_supervised(
    d: SupervisedRun,
    examples: list[SFTExample],
    token_loss: TokenLoss,
    name: str,
    make_batch: MakeBatch = default_batch,
) -> int:
    """Optimizer steps to ``train.max_steps`` (from the resumed step), then the last
    checkpoint; returns the last step."""
    run, train, section = d.run, d.recipe.train, d.section
    sampler = ProblemSampler(examples, train.seed)
    per_rank = max(1, section.batch_size // run.world_size)
    step = run.resume(d.model, d.optimizer, d.scheduler)
    progress = run.progress(step, train.max_steps, name)
    for step in progress:
        t0 = time.perf_counter()
        run.seed(step)
        mine = sampler.batch(step, per_rank * run.world_size)[run.rank * per_rank : (run.rank + 1) * per_rank]
        batch = make_batch(d, step, mine)
        metrics = supervised_step(d, batch, mine, token_loss)
        d.scheduler.step()
        seconds = time.perf_counter() - t0
        metrics.update(
            {
                "learning_rate": d.scheduler.get_last_lr()[0],
                "time/step": seconds,
                "tokens_per_second": metrics["tokens"] / seconds,
                "memory/peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
            }
        )
        if (step + 1) % train.logging_steps == 0 or step + 1 == train.max_steps:
            run.log.metrics(step + 1, metrics)
        progress.set_postfix(loss=f"{metrics['loss']:.3f}")
        if run.checkpoint_due(step + 1, train.max_steps):
            run.save(step + 1, d.model, d.optimizer, d.scheduler)
    run.save(train.max_steps, d.model, d.optimizer, d.scheduler)
    return train.max_steps
