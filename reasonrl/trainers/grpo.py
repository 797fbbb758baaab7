"""GRPO: group-relative policy optimisation (Shao et al. 2024), on reasonrl's pieces.

One step, top to bottom:

    prompts  ->  engine.generate (G completions each)  ->  rewards
             ->  group-relative advantages  ->  μ passes of minibatch updates of the
                 clipped surrogate (+ β·KL to the reference), aggregated by loss_type
             ->  new weights synced into the engine

The losses are reasonrl.losses; this file only wires them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from reasonrl.losses import group_advantages, grpo_loss, masked_mean
from reasonrl.models.logprobs import PASSES_PER_RANK, completion_logprobs
from reasonrl.rollout import Rollouts
from reasonrl.runtime import Run
from reasonrl.trainers.final import save_final
from reasonrl.trainers.onpolicy import ScoredBatch, set_up, train_on_policy
from reasonrl.trainers.policy import reference_logprobs
from reasonrl.trainers.recipe import GRPOSection, Recipe

log = logging.getLogger("reasonrl")


@dataclass
class StepInputs:
    """Everything the update needs about one batch of rollouts."""

    rollouts: Rollouts
    advantages: torch.Tensor  # [N]
    mask: torch.Tensor  # [N, C] bool: tokens that count in the loss
    old_logprobs: torch.Tensor | None  # [N, C]; None = on-policy (use the current log-probs, detached)
    ref_logprobs: torch.Tensor | None  # [N, C]; None when beta = 0


def old_logprobs_source(cfg: GRPOSection, engine_matches_trainer: bool) -> str:
    """Where π_old comes from.

    * one pass, one minibatch: π_old is the current policy, so its log-probs are the
      current ones detached ("current"; no extra forward pass, as in TRL);
    * otherwise the engine's sampling log-probs are reused when they were computed at
      the trainer's precision ("engine"), else they are recomputed before the first update.
    """
    if cfg.num_iterations == 1 and cfg.num_minibatches == 1:
        return "current"
    if cfg.old_logprobs == "auto":
        return "engine" if engine_matches_trainer else "recompute"
    return cfg.old_logprobs


def micro_batch_loss(
    model, inputs: StepInputs, chunk: MicroBatch, cfg: GRPOSection, num_tokens, num_sequences: int, autocast
):
    """``grpo_loss`` of one micro-batch, normalised by its minibatch (``num_tokens`` tokens,
    ``num_sequences`` rows) so that the micro-batches' gradients add up to the minibatch's."""
    rows = chunk.rows
    mask = inputs.mask[rows] & chunk.counted[:, None]
    with autocast:
        logp, entropy = completion_logprobs(
            model, inputs.rollouts.select(rows), cfg.temperature, with_entropy=True
        )
    logp = logp.float()
    out = grpo_loss(
        logp,
        logp.detach() if inputs.old_logprobs is None else inputs.old_logprobs[rows],
        None if inputs.ref_logprobs is None else inputs.ref_logprobs[rows],
        inputs.advantages[rows],
        mask,
        beta=cfg.beta,
        epsilon=cfg.epsilon,
        epsilon_high=cfg.epsilon_high,
        loss_type=cfg.loss_type,
        bias_correction_kl=cfg.use_bias_correction_kl,
        max_completion_length=cfg.max_completion_length,
        num_tokens=num_tokens,
        num_sequences=num_sequences,
    )
    stats = {
        "clip_fraction": masked_mean(out.is_clipped.float(), mask).item(),
        "kl": masked_mean(out.kl, mask).item(),
        "entropy": masked_mean(entropy.float(), mask).item(),
        "ratio": masked_mean(out.ratio, mask).item(),
    }
    return out.loss, stats


@dataclass
class MicroBatch:
    """Rows run through the model together; only the ``counted`` ones add to the loss
    (the others keep the passes of several processes in step, see ``in_step_across_ranks``)."""

    rows: torch.Tensor  # [n] rows of the batch of rollouts, repeats allowed
    counted: torch.Tensor  # [n] bool


def contributing_rows(inputs: StepInputs, rows: torch.Tensor, cfg: GRPOSection) -> torch.Tensor:
    """The rows of ``rows`` whose loss has a gradient.

    With β = 0 a row's loss is its advantage times a function of its log-probs (the
    clipped surrogate), so a row with A = 0 (every completion of its prompt scored the
    same) or with no counted token adds exactly zero to the gradient. Its forward and
    backward passes are skipped; the loss keeps its normaliser (the minibatch's tokens
    or rows), so the gradient is the same. Early in training most groups score alike
    (a small model rarely gets any answer right), and that is most of the update.
    """
    if not cfg.skip_zero_advantage or cfg.beta > 0:
        return rows
    live = (inputs.advantages[rows] != 0) & inputs.mask[rows].any(-1)
    return rows[live]


def micro_batches(rows: torch.Tensor, size: int) -> list[MicroBatch]:
    """``rows`` in rollout order, ``size`` at a time.

    A prompt's G completions are adjacent in a batch of rollouts, so in that order they
    share micro-batches, and each distinct prompt of a micro-batch is run once for all of
    its completions (``completion_logprobs``' shared prompts). Drawn at random, 8 rows of
    2 prompts in micro-batches of 4 would almost always run 4 prompts, not 2. The order of the
    micro-batches does not change the sum of their gradients.
    """
    chunks = rows.sort().values.split(size) if len(rows) else ()
    return [MicroBatch(c, torch.ones(len(c), dtype=torch.bool)) for c in chunks]


def in_step_across_ranks(chunks: list[MicroBatch], rows: torch.Tensor, run) -> list[MicroBatch]:
    """The micro-batches of this rank, made to call the model exactly as every other rank does.

    Under several processes collectives run inside the passes (ZeRO-3 gathers each layer's
    parameters in every forward and backward, DDP broadcasts buffers in each forward), and
    DeepSpeed steps inside the last backward, so after skipping rows every rank must still
    make the same calls:

    * the same number of micro-batches, the most any rank needs and at least one (so
      DeepSpeed steps when every row of every rank was skipped, on a zero gradient, as
      computing it would): a rank with fewer adds micro-batches that count nothing;
    * the same passes in each: ``completion_logprobs`` runs the prompts once and the
      completions in ``PASSES_PER_RANK`` length groups, so a micro-batch with fewer rows is
      topped up with copies of one of its rows that count nothing.
    """
    want = torch.tensor([len(chunks)])
    if run.world_size > 1:
        want = run.accelerator.gather(want).max()
    passes = PASSES_PER_RANK if run.world_size > 1 else 1
    blank = MicroBatch(rows[:1], torch.zeros(1, dtype=torch.bool))
    chunks = chunks + [blank] * (max(int(want), 1) - len(chunks))
    topped = []
    for c in chunks:
        extra = max(passes - len(c.rows), 0)
        topped.append(
            MicroBatch(
                torch.cat([c.rows, c.rows[-1:].repeat(extra)]),
                torch.cat([c.counted, torch.zeros(extra, dtype=torch.bool)]),
            )
        )
    return topped


def update(model, optimizer, inputs: StepInputs, rows: torch.Tensor, cfg: GRPOSection, run: Run) -> dict:
    """One optimizer step on the minibatch ``rows``, in micro-batches with accumulated gradients."""
    tokens = inputs.mask[rows].sum().clamp(min=1).float()
    if run.world_size > 1:  # token-mean over every process's tokens (DAPO), as DDP averages gradients
        tokens = run.accelerator.reduce(tokens, "sum") / run.world_size
    stats, losses = [], []
    live = contributing_rows(inputs, rows, cfg)
    chunks = micro_batches(live, run.config.micro_batch_size)
    if run.world_size > 1 or run.deepspeed:
        chunks = in_step_across_ranks(chunks, rows, run)
    for i, chunk in enumerate(chunks):
        with run.micro_step(model, last=i == len(chunks) - 1):
            loss, s = micro_batch_loss(model, inputs, chunk, cfg, tokens, len(rows), run.autocast())
            run.accelerator.backward(loss)
        losses.append(loss.item())
        if chunk.counted.any():  # micro-batches that only keep the ranks in step report nothing
            stats.append((s, (inputs.mask[chunk.rows] & chunk.counted[:, None]).sum().item()))
    if not chunks:  # a zero gradient still steps (Adam's momentum moves on), as computing it would
        for p in model.parameters():
            if p.requires_grad:
                p.grad = torch.zeros_like(p)
    grad_norm = run.optimizer_step(model, optimizer)
    total = sum(n for _, n in stats) or 1
    # clip fraction, KL, entropy and ratio are over the rows computed
    out = {k: sum(s[k] * n for s, n in stats) / total for k in (stats[0][0] if stats else [])}
    skipped = torch.tensor([len(rows) - len(live), len(rows)], dtype=torch.float)
    if run.world_size > 1:  # over every process's rows
        skipped = run.accelerator.reduce(skipped, "sum")
    out.update(loss=sum(losses), grad_norm=grad_norm, skipped_fraction=(skipped[0] / skipped[1]).item())
    return out


def train_grpo(recipe: Recipe) -> Run:
    """Train ``recipe`` with GRPO; returns the finished Run (its output folder holds the
    metrics, checkpoints and the final adapter or model)."""
    cfg, train = recipe.grpo, recipe.train
    parts = set_up(
        recipe, cfg.num_generations, cfg.temperature, cfg.max_completion_length, need_reference=cfg.beta > 0
    )
    run, model = parts.run, parts.model
    trainer_fp32 = recipe.model.dtype == "float32" and not train.bf16
    engine_fp32 = recipe.rollout.engine == "hf" or recipe.rollout.dtype == "float32"
    source = old_logprobs_source(cfg, trainer_fp32 and engine_fp32)
    log.info("old log-probs: %s", source)

    def prepare(batch: ScoredBatch) -> StepInputs:
        rollouts, scores = batch.rollouts, batch.scores
        advantages = group_advantages(scores.total, cfg.num_generations, cfg.scale_rewards)
        if cfg.scale_rewards == "batch" and run.world_size > 1:  # the std of every process's rewards
            centered = group_advantages(scores.total, cfg.num_generations, "none")
            advantages = centered / (run.accelerator.gather(scores.total).std() + 1e-4)
        mask = rollouts.loss_mask.clone()  # episodes: the model's tokens only
        if cfg.mask_truncated_completions:
            mask[rollouts.truncated] = False
        unwrapped = run.accelerator.unwrap_model(model)
        micro = train.micro_batch_size
        ref = None
        if cfg.beta > 0:
            ref = reference_logprobs(
                parts.policy, unwrapped, rollouts, cfg.temperature, micro, run.autocast()
            )
        old = None
        if source == "engine":
            old = rollouts.sampling_logprobs
        elif source == "recompute":
            with torch.no_grad(), run.autocast():
                old = completion_logprobs(unwrapped, rollouts, cfg.temperature, micro_batch=micro)[0].float()
        return StepInputs(rollouts, advantages, mask, old, ref)

    def learn(inputs: StepInputs) -> tuple[list[dict], dict]:
        updates = []
        for _ in range(cfg.num_iterations):
            for rows in torch.randperm(len(inputs.rollouts)).chunk(cfg.num_minibatches):
                updates.append(update(model, parts.optimizer, inputs, rows, cfg, run))
        return updates, {}

    def postfix(metrics: dict) -> dict:  # no KL when every row was skipped (β = 0)
        return {"reward": f"{metrics['reward/mean']:.3f}", "kl": f"{metrics.get('kl', 0.0):.3f}"}

    train_on_policy(parts, recipe, cfg.prompts_per_step, prepare, learn, postfix, "grpo")
    save_final(run, model, parts.policy.tokenizer)
    keys = parts.rewards.keys if parts.rewards is not None else [parts.env.name]
    run.log.plot(["reward/mean"] + [f"reward/{k}/mean" for k in keys])
    parts.engine.close()  # after the last collective: an in-process vLLM tears down torch.distributed
    run.finish()
    return run
