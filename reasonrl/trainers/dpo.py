"""DPO (Rafailov et al. 2023): offline on a preference dataset, or on-policy in rounds.

Offline: pairs come from ``data.source`` (prompt / chosen / rejected). The reference
log-probs are computed once, before the first update (with LoRA, by switching the
adapters off; otherwise by the policy itself, which is the reference at that point).

On-policy (``dpo.on_policy``): ``data.source`` holds problems; each round samples
``num_generations`` completions per prompt, pairs the best and the worst by the
recipe's rewards (when they differ), and trains on those pairs.

Held-out metrics: preference accuracy (the policy gives the chosen completion a
higher log-probability than the rejected one), TRL's reward accuracy (implicit reward
margin > 0), and the verifier reward of the policy's own samples.
"""

from __future__ import annotations

import logging
import math
import random
import time

import torch

from reasonrl.config import RecipeError
from reasonrl.data import load_problems
from reasonrl.data.preference import PreferencePair, load_pairs
from reasonrl.data.sampler import ProblemSampler
from reasonrl.data.sources import has_problems
from reasonrl.data.templates import make_prompt
from reasonrl.losses import dpo_loss
from reasonrl.models.logprobs import completion_logprobs
from reasonrl.models.lora import disabled_adapters
from reasonrl.rollout import PreferencePairs, TokenBatch
from reasonrl.rollout.encode import encode_examples
from reasonrl.runtime import Run, make_optimizer
from reasonrl.trainers.final import save_final
from reasonrl.trainers.onpolicy import ScoredBatch, reward_set
from reasonrl.trainers.policy import build_policy
from reasonrl.trainers.recipe import Recipe
from reasonrl.trainers.start import start_run
from reasonrl.trainers.supervised import SupervisedRun, sampled

log = logging.getLogger("reasonrl")


def encode_pairs(tokenizer, pairs: list[PreferencePair], max_length: int) -> PreferencePairs:
    """2B rows: the chosen completions, then the rejected ones (prompt, then completion)."""
    prompts = [p.prompt for p in pairs]
    prompt_ids, chosen = encode_examples(tokenizer, prompts, [p.chosen for p in pairs], max_length)
    _, rejected = encode_examples(tokenizer, prompts, [p.rejected for p in pairs], max_length)
    return PreferencePairs.from_lists(prompt_ids, chosen, rejected, tokenizer.pad_token_id)


def sequence_logps(model, batch: TokenBatch, micro: int, autocast) -> torch.Tensor:
    """Σ_t log π(y_t | x, y_<t) over each row's completion tokens, [rows]."""
    with autocast:
        logps, _ = completion_logprobs(model, batch, micro_batch=micro)
    return (logps.float() * batch.completion_mask).sum(-1)


@torch.no_grad()
def reference_logps(d: SupervisedRun, batch: PreferencePairs) -> torch.Tensor:
    """Sequence log-probs under the reference: the frozen copy, the base model (LoRA off),
    or, offline without LoRA, the policy itself (only called before the first update)."""
    if d.policy.reference is not None:
        return sequence_logps(d.policy.reference, batch, d.micro, d.run.autocast())
    model = d.run.accelerator.unwrap_model(d.model)
    with disabled_adapters(model):  # with LoRA: the base model; without: the policy before any update
        return sequence_logps(model, batch, d.micro, d.run.autocast())


def reference_table(d: SupervisedRun, pairs: list[PreferencePair]) -> torch.Tensor:
    """Reference log-probs of every pair, computed once: [len(pairs), 2] (chosen, rejected)."""
    step, cfg, tok = max(1, d.micro // 2), d.recipe.dpo, d.policy.tokenizer
    rows = []
    for start in range(0, len(pairs), step):
        batch = encode_pairs(tok, pairs[start : start + step], cfg.max_length)
        rows.append(torch.stack(reference_logps(d, batch).chunk(2), dim=1))
    return torch.cat(rows) if rows else torch.zeros(0, 2)


def pair_metrics(d: SupervisedRun, pairs: list[PreferencePair], ref_table: torch.Tensor, prefix: str) -> dict:
    """Preference and reward accuracy, and loss, on ``pairs`` (no gradient)."""
    if not pairs:
        return {}
    cfg = d.recipe.dpo
    with torch.no_grad():
        batch = encode_pairs(d.policy.tokenizer, pairs, cfg.max_length)
        logps = sequence_logps(d.model, batch, d.micro, d.run.autocast())
    (pc, pr), (rc, rr) = logps.chunk(2), ref_table.unbind(1)
    lengths = batch.completion_lengths.float().chunk(2)
    out = dpo_loss(pc, pr, rc, rr, cfg.beta, cfg.loss_type, cfg.label_smoothing, *lengths)
    return {
        f"{prefix}/preference_accuracy": (pc > pr).float().mean().item(),
        f"{prefix}/reward_accuracy": out.accuracies.mean().item(),
        f"{prefix}/margin": out.margins.mean().item(),
        f"{prefix}/loss": out.losses.mean().item(),
    }


def dpo_step(d: SupervisedRun, batch: PreferencePairs, ref: torch.Tensor) -> dict:
    """One optimizer step on B pairs (rows i and i + B of ``batch``), in micro-batches of pairs."""
    cfg, run, B = d.recipe.dpo, d.run, batch.num_pairs
    chunks = torch.arange(B).split(max(1, d.micro // 2))
    stats = []
    for i, pairs in enumerate(chunks):
        rows = torch.cat([pairs, pairs + B])
        with run.micro_step(d.model, last=i == len(chunks) - 1):
            logps = sequence_logps(d.model, batch.select(rows), len(rows), run.autocast())
            (pc, pr), (rc, rr) = logps.chunk(2), ref[rows].chunk(2)
            lengths = batch.completion_lengths[rows].float().chunk(2)
            out = dpo_loss(pc, pr, rc, rr, cfg.beta, cfg.loss_type, cfg.label_smoothing, *lengths)
            run.accelerator.backward(out.losses.sum() / B)
        stats.append(out)
    grad_norm = run.optimizer_step(d.model, d.optimizer)
    cat = lambda name: torch.cat([getattr(s, name) for s in stats])  # noqa: E731
    return {
        "loss": cat("losses").mean().item(),
        "rewards/chosen": cat("chosen_rewards").mean().item(),
        "rewards/rejected": cat("rejected_rewards").mean().item(),
        "rewards/margin": cat("margins").mean().item(),
        "rewards/accuracy": cat("accuracies").mean().item(),
        "grad_norm": grad_norm,
    }


def evaluate(d: SupervisedRun, pairs, ref_table, problems, step: int, when: str, final: bool = False) -> None:
    """Held-out pair metrics and the sampled verifier reward, logged at ``step``."""
    metrics = pair_metrics(d, pairs, ref_table, "eval")
    reward = sampled(d, problems, 4).scores.total.mean().item() if problems else float("nan")
    metrics["eval/sampled_reward"] = reward
    d.run.log.metrics(step, {**metrics, "final": 1} if final else metrics)
    log.info("%s: %s", when, _fmt(metrics))


def on_policy_pairs(scored: ScoredBatch, data) -> list[PreferencePair]:
    """For each prompt, its best and worst completion by total reward, when they differ."""
    scores, rollouts, pairs = scored.scores.total, scored.rollouts, []
    for g, problem in enumerate(scored.problems):
        rows = (rollouts.group_ids == g).nonzero().flatten()
        best, worst = rows[scores[rows].argmax()], rows[scores[rows].argmin()]
        if scores[best] > scores[worst] and rollouts.texts[best].strip() != rollouts.texts[worst].strip():
            prompt = make_prompt(problem, data.template, data.instruction, data.system_prompt)
            pairs.append(PreferencePair(prompt, rollouts.texts[best] or " ", rollouts.texts[worst] or " "))
    return pairs


def train_on_pairs(
    d: SupervisedRun, pairs, ref_table, step: int, stop: int, round_index: int, progress
) -> int:
    """Optimizer steps from ``step`` to ``stop`` on batches drawn from ``pairs``; returns the last step."""
    cfg, train, run = d.recipe.dpo, d.recipe.train, d.run
    sampler = ProblemSampler(list(range(len(pairs))), train.seed + round_index)
    per_rank = max(1, cfg.batch_size // run.world_size)
    while step < stop:
        t0 = time.perf_counter()
        run.seed(step)
        indices = sampler.batch(step, per_rank * run.world_size)[
            run.rank * per_rank : (run.rank + 1) * per_rank
        ]
        batch = encode_pairs(d.policy.tokenizer, [pairs[i] for i in indices], cfg.max_length)
        metrics = dpo_step(d, batch, torch.cat([ref_table[indices, 0], ref_table[indices, 1]]))
        d.scheduler.step()
        step += 1
        metrics.update(
            {
                "round": round_index,
                "pairs": len(pairs),
                "time/step": time.perf_counter() - t0,
                "learning_rate": d.scheduler.get_last_lr()[0],
            }
        )
        if step % train.logging_steps == 0 or step == train.max_steps:
            run.log.metrics(step, metrics)
        progress.update(1)
        progress.set_postfix(loss=f"{metrics['loss']:.3f}", acc=f"{metrics['rewards/accuracy']:.2f}")
        if run.checkpoint_due(step, train.max_steps):
            run.save(step, d.model, d.optimizer, d.scheduler)
    return step


def on_policy_rounds(d: SupervisedRun, progress) -> int:
    """``dpo.rounds`` rounds of sample -> pair the best and worst -> train; returns the last step."""
    cfg, train, data = d.recipe.dpo, d.recipe.train, d.recipe.data
    problems = load_problems(data.source, data.split, data.limit)
    steps_per_round, step = math.ceil(train.max_steps / cfg.rounds), 0
    for round_index in range(cfg.rounds):
        d.run.seed(10_000 + round_index)
        scored = sampled(
            d,
            ProblemSampler(problems, train.seed).batch(round_index, cfg.prompts_per_round),
            cfg.num_generations,
        )
        pairs = on_policy_pairs(scored, data)
        log.info(
            "round %d: %d pairs from %d prompts (mean reward %.3f)",
            round_index,
            len(pairs),
            len(scored.problems),
            scored.scores.total.mean().item(),
        )
        if pairs:
            stop = min(step + steps_per_round, train.max_steps)
            step = train_on_pairs(d, pairs, reference_table(d, pairs), step, stop, round_index, progress)
    return step


def split_pairs(recipe: Recipe) -> tuple[list[PreferencePair], list[PreferencePair]]:
    """The recipe's preference pairs, shuffled by the seed: (held out, training)."""
    data, cfg = recipe.data, recipe.dpo
    pairs = load_pairs(data.source, data.split, data.limit)
    random.Random(recipe.train.seed).shuffle(pairs)
    n_eval = int(len(pairs) * cfg.eval_fraction)
    log.info("%d training pairs, %d held out", len(pairs) - n_eval, n_eval)
    return pairs[:n_eval], pairs[n_eval:]


def train_dpo(recipe: Recipe) -> Run:
    """Train ``recipe`` with DPO, offline on its pairs or on-policy in rounds; returns the
    finished Run. Held-out metrics are logged before (step 0) and after training."""
    cfg, train, data = recipe.dpo, recipe.train, recipe.data
    if train.resume and cfg.on_policy:
        raise RecipeError(
            "train.resume: on-policy DPO cannot resume yet (a round's pairs are sampled from the "
            "policy at the round's start, which no checkpoint holds); offline DPO can"
        )
    run = start_run(recipe)
    policy = build_policy(recipe.model, cfg.on_policy, train.gradient_checkpointing)
    optimizer, scheduler = make_optimizer(policy.model, train)
    model, optimizer = run.prepare(policy.model, optimizer)
    d = SupervisedRun(run, policy, model, optimizer, scheduler, None, reward_set(recipe), recipe, cfg)
    eval_source = data.eval_source or data.source
    eval_problems = load_problems(eval_source, "test", cfg.eval_samples) if has_problems(eval_source) else []

    eval_pairs, train_pairs = ([], []) if cfg.on_policy else split_pairs(recipe)
    eval_ref = reference_table(d, eval_pairs)
    train_ref = reference_table(d, train_pairs)  # before any update
    step = run.resume(model, optimizer, scheduler)  # after the reference tables: they are π_0's
    if step == 0:
        evaluate(d, eval_pairs, eval_ref, eval_problems, 0, "before training")
    progress = run.progress(step, train.max_steps, "dpo")
    if cfg.on_policy:
        step = on_policy_rounds(d, progress)
    else:
        step = train_on_pairs(d, train_pairs, train_ref, step, train.max_steps, 0, progress)
    evaluate(d, eval_pairs, eval_ref, eval_problems, step, "after training", final=True)
    run.save(step, model, optimizer, scheduler)
    save_final(run, model, policy.tokenizer)
    run.log.plot(["rewards/margin", "rewards/accuracy"], title="implicit reward")
    d.close()
    run.finish()
    return run


def _fmt(metrics: dict) -> str:
    return ", ".join(f"{k}={v:.3f}" for k, v in metrics.items() if isinstance(v, float))
