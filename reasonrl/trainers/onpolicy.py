"""The on-policy step GRPO and PPO share, written once.

    for step:  pick this rank's problems -> sample completions -> score them   (collect)
               -> the algorithm's ``prepare`` (advantages, old / reference log-probs)
               -> the algorithm's ``learn`` (its optimizer steps) -> scheduler step
               -> sync the new weights into the engine -> log, checkpoint when due

An algorithm supplies ``prepare`` and ``learn``; everything else — seeding, timing,
metrics, samples, checkpoints, the progress bar — is here. ``ScoredBatch`` is one step's
sampled and scored completions (a single-turn batch of rollouts, not an episode).
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from reasonrl.data import load_problems
from reasonrl.data.gsm8k import Problem
from reasonrl.data.sampler import ProblemSampler
from reasonrl.data.templates import make_prompt
from reasonrl.envs import make_env
from reasonrl.rewards import RewardScores, RewardSet, RewardSpec
from reasonrl.rollout import Rollouts, SamplingConfig
from reasonrl.rollout.episodes import Episode, EpisodeLimits, run_episodes, to_rollouts
from reasonrl.runtime import Run, make_optimizer
from reasonrl.trainers.policy import Policy, build_policy, start_engine, sync
from reasonrl.trainers.recipe import DataSection, Recipe, TrainSection
from reasonrl.trainers.start import start_run


@dataclass
class ScoredBatch:
    """One step's completions (or multi-turn episodes) on this rank, with their rewards."""

    problems: list[Problem]  # this rank's problems
    rollouts: Rollouts
    scores: RewardScores
    answers: list[str]  # reference answer of each completion
    episodes: list[Episode] | None = None  # when the recipe has an environment


def make_environment(recipe: Recipe):
    if recipe.env is None:
        return None
    return make_env(recipe.env.name, max_turns=recipe.env.max_turns, **recipe.env.options)


def collect_episodes(
    run: Run, model, engine, env, problems: list[Problem], sampling: SamplingConfig, recipe: Recipe
) -> ScoredBatch:
    """``sampling.n`` episodes of the recipe's environment from each problem, scored by it."""
    rows = [p.to_record() for p in problems]
    limits = EpisodeLimits(recipe.env.max_turns, recipe.env.max_episode_tokens, recipe.rollout.max_model_len)
    with run.gathered(model):
        episodes = run_episodes(engine, env, rows, sampling.n, sampling, limits)
    rollouts = to_rollouts(episodes, engine.tokenizer.pad_token_id)
    total = torch.tensor([e.reward for e in episodes], dtype=torch.float32)
    failed = sum(e.finish == "error" for e in episodes)
    scores = RewardScores(total=total, per_reward={env.name: total}, errors={env.name: failed})
    return ScoredBatch(problems, rollouts, scores, [problems[e.group].answer for e in episodes], episodes)


def episode_metrics(run: Run, episodes: list[Episode]) -> dict:
    """Turns, tool use, finish reasons and who wrote the tokens, over every process's episodes."""
    rows = [
        [
            e.state.turn,
            e.state.tool_calls,
            e.state.tool_errors,
            e.model_tokens,
            len(e.tokens) - e.model_tokens,
            sum(e.state.turn_rewards),
        ]
        for e in episodes
    ]
    means = run.accelerator.gather(torch.tensor(rows, dtype=torch.float32)).mean(0).tolist()
    names = ["turns", "tool_calls", "tool_errors", "model_tokens", "env_tokens", "turn_reward"]
    out = {f"episode/{k}": v for k, v in zip(names, means, strict=True)}
    success = torch.tensor([float(bool(e.state.info.get("success"))) for e in episodes])
    out["episode/success"] = run.accelerator.gather(success).mean().item()
    for reason in ("env_done", "max_turns", "length", "error"):
        share = torch.tensor([float(e.finish == reason) for e in episodes])
        out[f"episode/finish_{reason}"] = run.accelerator.gather(share).mean().item()
    return out


def reward_set(recipe: Recipe) -> RewardSet:
    return RewardSet([RewardSpec.from_dict(r, f"rewards[{i}]") for i, r in enumerate(recipe.rewards)])


def rank_problems(run: Run, sampler: ProblemSampler, step: int, prompts_per_step: int) -> list[Problem]:
    """This rank's share of step ``step``'s global batch of problems."""
    if prompts_per_step % run.world_size:
        raise ValueError(f"prompts_per_step={prompts_per_step} must divide by {run.world_size} processes")
    per_rank = prompts_per_step // run.world_size
    return sampler.batch(step, prompts_per_step)[run.rank * per_rank : (run.rank + 1) * per_rank]


def collect(
    run: Run,
    model,
    engine,
    rewards: RewardSet,
    problems: list[Problem],
    sampling: SamplingConfig,
    data: DataSection,
) -> ScoredBatch:
    """Sample completions for ``problems`` (prompted as ``data`` says) and score them."""
    prompts = [make_prompt(p, data.template, data.instruction, data.system_prompt) for p in problems]
    with run.gathered(model):  # ZeRO-3: ranks generate different lengths, so no per-layer gathers
        rollouts = engine.generate(prompts, sampling)
    groups = rollouts.group_ids.tolist()
    answers = [problems[g].answer for g in groups]
    scores = rewards(
        rollouts.texts,
        answer=answers,
        prompts=rollouts.prompts,
        question=[problems[g].question for g in groups],
        meta=[problems[g].meta for g in groups],
        completion_lengths=rollouts.completion_lengths.tolist(),
    )
    return ScoredBatch(problems, rollouts, scores, answers)


def step_metrics(run: Run, batch: ScoredBatch, updates: list[dict], times: dict, lr: float) -> dict:
    gather = run.accelerator.gather
    scores, rollouts = batch.scores, batch.rollouts
    total = gather(scores.total)
    lengths = gather(rollouts.completion_lengths.float())
    metrics = {"reward/mean": total.mean().item(), "reward/std": total.std().item()}
    for key, values in scores.per_reward.items():
        values = gather(values)
        metrics[f"reward/{key}/mean"] = values.mean().item()
        metrics[f"reward/{key}/std"] = values.std().item()
        metrics[f"reward/{key}/errors"] = scores.errors[key]
    # an update that skipped every row (GRPO, β = 0) computed no entropy, KL or clip fraction
    for key in dict.fromkeys(k for u in updates for k in u):
        values = [u[key] for u in updates if key in u]
        metrics[key] = sum(values) / len(values)
    metrics["completion_length"] = lengths.mean().item()
    metrics["prompt_length"] = gather(rollouts.prompt_mask.sum(1).float()).mean().item()
    metrics["truncated_fraction"] = gather(rollouts.truncated.float()).mean().item()
    metrics["tokens_per_second"] = lengths.sum().item() / times["step"]
    metrics.update({f"time/{k}": v for k, v in times.items()})
    metrics["learning_rate"] = lr
    # this process's peak resident memory so far (Linux reports KiB): CPU runs are memory-bound
    metrics["memory/peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    if batch.episodes is not None:
        metrics.update(episode_metrics(run, batch.episodes))
    return metrics


def sample_rows(batch: ScoredBatch, k: int) -> list[dict]:
    rollouts, scores = batch.rollouts, batch.scores
    rows = []
    for i in range(min(k, len(rollouts))):
        row = {
            "prompt": rollouts.prompts[i],
            "completion": rollouts.texts[i],
            "answer": batch.answers[i],
            "reward": scores.total[i].item(),
            "finish_reason": rollouts.finish_reasons[i],
        }
        if batch.episodes is not None:  # the whole episode, with roles
            episode = batch.episodes[i]
            row.update(completion=None, messages=episode.state.messages, finish_reason=episode.finish)
        row.update({f"reward/{key}": v[i].item() for key, v in scores.per_reward.items()})
        rows.append(row)
    return rows


def log_step(run: Run, train: TrainSection, step: int, metrics: dict, batch: ScoredBatch) -> None:
    if step % train.logging_steps == 0 or step == train.max_steps:
        run.log.metrics(step, metrics)
        run.log.completions(step, sample_rows(batch, train.completions_to_log))


@dataclass
class OnPolicyRun:
    """What an on-policy trainer holds for its whole run."""

    run: Run
    policy: Policy
    model: torch.nn.Module  # prepared (DDP / DeepSpeed wrapped)
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    engine: object
    sampling: SamplingConfig
    rewards: RewardSet | None  # None with an environment, which scores its episodes
    sampler: ProblemSampler
    start: int  # the step to start at (after --resume)
    actor: torch.nn.Module | None  # the module synced into the engine (None: the model)
    env: object = None  # the recipe's environment, when it has one


def set_up(
    recipe: Recipe,
    n: int,
    temperature: float,
    max_tokens: int,
    need_reference: bool,
    wrap: Callable[[torch.nn.Module], torch.nn.Module] | None = None,
    actor: Callable[[torch.nn.Module], torch.nn.Module] | None = None,
) -> OnPolicyRun:
    """Start the run, build the policy (``wrap``ped, e.g. with a value head), the optimizer,
    resume, and start the engine on the weights of ``actor(unwrapped model)``."""
    train = recipe.train
    run = start_run(recipe)
    policy = build_policy(recipe.model, need_reference, train.gradient_checkpointing)
    module = wrap(policy.model) if wrap is not None else policy.model
    rewards = reward_set(recipe) if recipe.env is None else None
    sampler = ProblemSampler(
        load_problems(recipe.data.source, recipe.data.split, recipe.data.limit), train.seed
    )
    optimizer, scheduler = make_optimizer(module, train)
    model, optimizer = run.prepare(module, optimizer)
    start = run.resume(model, optimizer, scheduler)
    acting = actor(run.accelerator.unwrap_model(model)) if actor is not None else None
    prompts = max(getattr(recipe, recipe.algorithm).prompts_per_step // run.world_size, 1)  # per rank
    engine, sampling = start_engine(run, policy, model, recipe, n, temperature, max_tokens, acting, prompts)
    env = make_environment(recipe)
    return OnPolicyRun(
        run, policy, model, optimizer, scheduler, engine, sampling, rewards, sampler, start, acting, env
    )


def train_on_policy(
    parts: OnPolicyRun,
    recipe: Recipe,
    prompts_per_step: int,
    prepare: Callable[[ScoredBatch], object],
    learn: Callable[[object], tuple[list[dict], dict]],
    postfix: Callable[[dict], dict],
    name: str,
) -> None:
    """The step loop, to ``train.max_steps``, then the last checkpoint.

    ``prepare(batch)`` returns what ``learn`` needs (its time counts in the step only);
    ``learn(inputs)`` makes the optimizer steps and returns their stats and any extra
    metrics of the step; ``postfix(metrics)`` is shown on the progress bar.
    """
    run, train = parts.run, recipe.train
    progress = run.progress(parts.start, train.max_steps, name)
    for step in progress:
        t0 = time.perf_counter()
        run.seed(step)
        problems = rank_problems(run, parts.sampler, step, prompts_per_step)
        if parts.env is None:
            batch = collect(
                run, parts.model, parts.engine, parts.rewards, problems, parts.sampling, recipe.data
            )
        else:
            batch = collect_episodes(
                run, parts.model, parts.engine, parts.env, problems, parts.sampling, recipe
            )
        t_gen = time.perf_counter() - t0
        inputs = prepare(batch)
        t1 = time.perf_counter()
        updates, extra = learn(inputs)
        parts.scheduler.step()
        t2 = time.perf_counter()
        sync(run, parts.engine, parts.model, parts.actor)
        t3 = time.perf_counter()
        times = {"generate": t_gen, "update": t2 - t1, "sync": t3 - t2, "step": t3 - t0}
        metrics = step_metrics(run, batch, updates, times, parts.scheduler.get_last_lr()[0])
        metrics.update(extra)
        log_step(run, train, step + 1, metrics, batch)
        progress.set_postfix(postfix(metrics))
        if run.checkpoint_due(step + 1, train.max_steps):
            run.save(step + 1, parts.model, parts.optimizer, parts.scheduler)
    run.save(train.max_steps, parts.model, parts.optimizer, parts.scheduler)
