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
from reasonrl.data.templates import make_prompt
from reasonrl.losses import dpo_loss
from reasonrl.models.logprobs import completion_logprobs
from reasonrl.models.lora import disabled_adapters
from reasonrl.rollout import Rollouts, encode_prompts
from reasonrl.trainers.episodes import collect, reward_set
from reasonrl.trainers.final import save_final
from reasonrl.trainers.policy import build_policy, make_policy_engine, sampling_config, sync
from reasonrl.trainers.recipe import Recipe
from reasonrl.trainers.run import Run, make_optimizer

log = logging.getLogger("reasonrl")


def completion_ids(tokenizer, pair_prompt, rendered_prompt: str, text: str) -> list[int]:
    """Token ids of a completion as TRL builds them: plain text gets eos appended; a chat
    reply is rendered by the chat template (so it ends with the template's end-of-turn)."""
    if isinstance(pair_prompt, list):
        full = tokenizer.apply_chat_template(
            pair_prompt + [{"role": "assistant", "content": text}], tokenize=False
        )
        if full.startswith(rendered_prompt):
            return tokenizer(full[len(rendered_prompt) :], add_special_tokens=False).input_ids
    return tokenizer(text, add_special_tokens=False).input_ids + [tokenizer.eos_token_id]


def encode_pairs(tokenizer, pairs: list[PreferencePair], max_length: int) -> Rollouts:
    """2B rows: the chosen completions, then the rejected ones (prompt, then completion)."""
    prompts, prompt_ids = encode_prompts(tokenizer, [p.prompt for p in pairs])
    rows_prompt, rows_completion = [], []
    for texts in ([p.chosen for p in pairs], [p.rejected for p in pairs]):
        for pair, rendered, ids, text in zip(pairs, prompts, prompt_ids, texts, strict=True):
            completion = completion_ids(tokenizer, pair.prompt, rendered, text)
            rows_prompt.append(ids)
            rows_completion.append(completion[: max(1, max_length - len(ids))])
    n = len(rows_completion)
    return Rollouts.from_lists(
        rows_prompt,
        rows_completion,
        [[0.0] * len(c) for c in rows_completion],
        list(range(n)),
        prompts * 2,
        [p.chosen for p in pairs] + [p.rejected for p in pairs],
        ["stop"] * n,
        tokenizer.pad_token_id,
    )


def sequence_logps(model, batch: Rollouts, micro: int, run) -> torch.Tensor:
    """Σ_t log π(y_t | x, y_<t) over each row's completion tokens, [rows]."""
    with run.autocast():
        logps, _ = completion_logprobs(model, batch, micro_batch=micro)
    return (logps.float() * batch.completion_mask).sum(-1)


@torch.no_grad()
def reference_logps(policy, model, batch: Rollouts, micro: int, run) -> torch.Tensor:
    """Sequence log-probs under the reference: the frozen copy, the base model (LoRA off),
    or, offline without LoRA, the policy itself (only called before the first update)."""
    if policy.reference is not None:
        return sequence_logps(policy.reference, batch, micro, run)
    with disabled_adapters(model):  # with LoRA: the base model; without: the policy before any update
        return sequence_logps(model, batch, micro, run)


def reference_table(policy, model, tokenizer, pairs, cfg, run) -> torch.Tensor:
    """Reference log-probs of every pair, computed once: [len(pairs), 2] (chosen, rejected)."""
    micro = run.recipe.train.micro_batch_size
    step = max(1, micro // 2)
    rows = []
    for start in range(0, len(pairs), step):
        batch = encode_pairs(tokenizer, pairs[start : start + step], cfg.max_length)
        rows.append(torch.stack(reference_logps(policy, model, batch, micro, run).chunk(2), dim=1))
    return torch.cat(rows) if rows else torch.zeros(0, 2)


def pair_metrics(model, pairs, ref_table, tokenizer, cfg, run, prefix: str) -> dict:
    """Preference and reward accuracy, and loss, on ``pairs`` (no gradient)."""
    if not pairs:
        return {}
    with torch.no_grad():
        batch = encode_pairs(tokenizer, pairs, cfg.max_length)
        logps = sequence_logps(model, batch, run.recipe.train.micro_batch_size, run)
    (pc, pr), (rc, rr) = logps.chunk(2), ref_table.unbind(1)
    lengths = batch.completion_lengths.float().chunk(2)
    out = dpo_loss(pc, pr, rc, rr, cfg.beta, cfg.loss_type, cfg.label_smoothing, *lengths)
    return {
        f"{prefix}/preference_accuracy": (pc > pr).float().mean().item(),
        f"{prefix}/reward_accuracy": out.accuracies.mean().item(),
        f"{prefix}/margin": out.margins.mean().item(),
        f"{prefix}/loss": out.losses.mean().item(),
    }


def dpo_step(model, optimizer, batch: Rollouts, ref: torch.Tensor, cfg, run) -> dict:
    """One optimizer step on B pairs (rows i and i + B of ``batch``), in micro-batches of pairs."""
    B = len(batch) // 2
    chunks = torch.arange(B).split(max(1, run.recipe.train.micro_batch_size // 2))
    stats = []
    for i, pairs in enumerate(chunks):
        rows = torch.cat([pairs, pairs + B])
        with run.micro_step(model, last=i == len(chunks) - 1):
            logps = sequence_logps(model, batch.select(rows), len(rows), run)
            (pc, pr), (rc, rr) = logps.chunk(2), ref[rows].chunk(2)
            lengths = batch.completion_lengths[rows].float().chunk(2)
            out = dpo_loss(pc, pr, rc, rr, cfg.beta, cfg.loss_type, cfg.label_smoothing, *lengths)
            run.accelerator.backward(out.losses.sum() / B)
        stats.append(out)
    grad_norm = run.optimizer_step(model, optimizer)
    cat = lambda name: torch.cat([getattr(s, name) for s in stats])  # noqa: E731
    return {
        "loss": cat("losses").mean().item(),
        "rewards/chosen": cat("chosen_rewards").mean().item(),
        "rewards/rejected": cat("rejected_rewards").mean().item(),
        "rewards/margin": cat("margins").mean().item(),
        "rewards/accuracy": cat("accuracies").mean().item(),
        "grad_norm": grad_norm,
    }


def sampled_reward(run, model, engine, rewards, problems, cfg) -> float:
    """Mean verifier reward of the policy's own samples on ``problems``."""
    if not problems:
        return float("nan")
    sync(run, engine, model)
    sampling = sampling_config(run.recipe.rollout, 4, cfg.temperature, cfg.max_completion_length)
    episodes = collect(run, model, engine, rewards, problems, sampling)
    return episodes.scores.total.mean().item()


def on_policy_pairs(episodes, data) -> list[PreferencePair]:
    """For each prompt, its best and worst completion by total reward, when they differ."""
    scores, rollouts, pairs = episodes.scores.total, episodes.rollouts, []
    for g, problem in enumerate(episodes.problems):
        rows = (rollouts.group_ids == g).nonzero().flatten()
        best, worst = rows[scores[rows].argmax()], rows[scores[rows].argmin()]
        if scores[best] > scores[worst] and rollouts.texts[best].strip() != rollouts.texts[worst].strip():
            prompt = make_prompt(problem, data.template, data.instruction, data.system_prompt)
            pairs.append(PreferencePair(prompt, rollouts.texts[best] or " ", rollouts.texts[worst] or " "))
    return pairs


def train_dpo(recipe: Recipe) -> Run:
    cfg, train, data = recipe.dpo, recipe.train, recipe.data
    if train.resume and cfg.on_policy:
        raise RecipeError(
            "train.resume: on-policy DPO cannot resume yet (a round's pairs are sampled from the "
            "policy at the round's start, which no checkpoint holds); offline DPO can"
        )
    run = Run.start(recipe)
    policy = build_policy(
        recipe.model, need_reference=cfg.on_policy, gradient_checkpointing=train.gradient_checkpointing
    )
    optimizer, scheduler = make_optimizer(policy.model, train)
    model, optimizer = run.prepare(policy.model, optimizer)
    tok = policy.tokenizer
    rewards = reward_set(recipe)
    engine = make_policy_engine(policy, recipe.rollout, train.seed, cfg.max_completion_length + 512)
    eval_source = data.eval_source or data.source
    eval_problems = load_problems(eval_source, "test", cfg.eval_samples) if _has_problems(eval_source) else []

    if cfg.on_policy:
        problems = load_problems(data.source, data.split, data.limit)
        train_pairs, eval_pairs = [], []
    else:
        all_pairs = load_pairs(data.source, data.split, data.limit)
        random.Random(train.seed).shuffle(all_pairs)
        n_eval = int(len(all_pairs) * cfg.eval_fraction)
        eval_pairs, train_pairs = all_pairs[:n_eval], all_pairs[n_eval:]
        log.info("%d training pairs, %d held out", len(train_pairs), len(eval_pairs))
    unwrapped = run.accelerator.unwrap_model(model)
    eval_ref = reference_table(policy, unwrapped, tok, eval_pairs, cfg, run)
    train_ref = reference_table(policy, unwrapped, tok, train_pairs, cfg, run)  # before any update
    step = run.resume(model, optimizer, scheduler)  # after the reference tables: they are π_0's
    if step == 0:
        start_metrics = pair_metrics(model, eval_pairs, eval_ref, tok, cfg, run, "eval")
        start_metrics["eval/sampled_reward"] = sampled_reward(run, model, engine, rewards, eval_problems, cfg)
        run.log.metrics(0, start_metrics)
        log.info("before training: %s", _fmt(start_metrics))

    rounds = cfg.rounds if cfg.on_policy else 1
    steps_per_round = math.ceil(train.max_steps / rounds)
    progress = run.progress(step, train.max_steps, "dpo")
    for round_index in range(rounds):
        if cfg.on_policy:
            run.seed(10_000 + round_index)
            sync(run, engine, model)
            batch_problems = ProblemSampler(problems, train.seed).batch(round_index, cfg.prompts_per_round)
            sampling = sampling_config(
                recipe.rollout, cfg.num_generations, cfg.temperature, cfg.max_completion_length
            )
            episodes = collect(run, model, engine, rewards, batch_problems, sampling)
            train_pairs = on_policy_pairs(episodes, data)
            log.info(
                "round %d: %d pairs from %d prompts (mean reward %.3f)",
                round_index,
                len(train_pairs),
                len(batch_problems),
                episodes.scores.total.mean().item(),
            )
            if not train_pairs:
                continue
            train_ref = reference_table(
                policy, run.accelerator.unwrap_model(model), tok, train_pairs, cfg, run
            )
        sampler = ProblemSampler(list(range(len(train_pairs))), train.seed + round_index)
        per_rank = max(1, cfg.batch_size // run.world_size)
        for _ in range(steps_per_round):
            if step >= train.max_steps:
                break
            t0 = time.perf_counter()
            run.seed(step)
            indices = sampler.batch(step, per_rank * run.world_size)[
                run.rank * per_rank : (run.rank + 1) * per_rank
            ]
            batch = encode_pairs(tok, [train_pairs[i] for i in indices], cfg.max_length)
            ref = torch.cat([train_ref[indices, 0], train_ref[indices, 1]])
            metrics = dpo_step(model, optimizer, batch, ref, cfg, run)
            scheduler.step()
            step += 1
            metrics.update(
                {
                    "round": round_index,
                    "pairs": len(train_pairs),
                    "time/step": time.perf_counter() - t0,
                    "learning_rate": scheduler.get_last_lr()[0],
                }
            )
            if step % train.logging_steps == 0 or step == train.max_steps:
                run.log.metrics(step, metrics)
            progress.update(1)
            progress.set_postfix(loss=f"{metrics['loss']:.3f}", acc=f"{metrics['rewards/accuracy']:.2f}")
            if train.save_steps and step % train.save_steps == 0 and step < train.max_steps:
                run.save(step, model, optimizer, scheduler)

    end_metrics = pair_metrics(model, eval_pairs, eval_ref, tok, cfg, run, "eval")
    end_metrics["eval/sampled_reward"] = sampled_reward(run, model, engine, rewards, eval_problems, cfg)
    run.log.metrics(step, {**end_metrics, "final": 1})
    log.info("after training: %s", _fmt(end_metrics))
    run.save(step, model, optimizer, scheduler)
    save_final(run, model, tok)
    run.log.plot(["rewards/margin", "rewards/accuracy"], title="implicit reward")
    engine.close()
    run.finish()
    return run


def _has_problems(source: str) -> bool:
    """Whether ``source`` can be read as problems (GSM8K format) for sampling checks."""
    try:
        load_problems(source, "test", 1)
        return True
    except Exception:
        return False


def _fmt(metrics: dict) -> str:
    return ", ".join(f"{k}={v:.3f}" for k, v in metrics.items() if isinstance(v, float))
