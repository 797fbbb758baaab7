"""The first half of every on-policy step, shared by GRPO and PPO: pick problems,
sample completions, score them; plus the per-step metrics and samples they log."""

from __future__ import annotations

import resource
from dataclasses import dataclass

from reasonrl.data.gsm8k import Problem
from reasonrl.data.templates import make_prompt
from reasonrl.rewards import RewardScores, RewardSet, RewardSpec
from reasonrl.rollout import Rollouts, SamplingConfig


@dataclass
class Episodes:
    problems: list[Problem]  # this rank's problems
    rollouts: Rollouts
    scores: RewardScores
    answers: list[str]  # reference answer of each completion


def reward_set(recipe) -> RewardSet:
    return RewardSet([RewardSpec.from_dict(r, f"rewards[{i}]") for i, r in enumerate(recipe.rewards)])


def rank_problems(run, sampler, step: int, prompts_per_step: int) -> list[Problem]:
    """This rank's share of step ``step``'s global batch of problems."""
    if prompts_per_step % run.world_size:
        raise ValueError(f"prompts_per_step={prompts_per_step} must divide by {run.world_size} processes")
    per_rank = prompts_per_step // run.world_size
    return sampler.batch(step, prompts_per_step)[run.rank * per_rank : (run.rank + 1) * per_rank]


def collect(
    run, model, engine, rewards: RewardSet, problems: list[Problem], sampling: SamplingConfig
) -> Episodes:
    """Sample completions for ``problems`` and score them."""
    data = run.recipe.data
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
        completion_lengths=rollouts.completion_lengths.tolist(),
    )
    return Episodes(problems, rollouts, scores, answers)


def step_metrics(run, episodes: Episodes, updates: list[dict], times: dict, lr: float) -> dict:
    gather = run.accelerator.gather
    scores, rollouts = episodes.scores, episodes.rollouts
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
    metrics["truncated_fraction"] = gather(rollouts.truncated.float()).mean().item()
    metrics["tokens_per_second"] = lengths.sum().item() / times["step"]
    metrics.update({f"time/{k}": v for k, v in times.items()})
    metrics["learning_rate"] = lr
    # this process's peak resident memory so far (Linux reports KiB): CPU runs are memory-bound
    metrics["memory/peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return metrics


def sample_rows(episodes: Episodes, k: int) -> list[dict]:
    rollouts, scores = episodes.rollouts, episodes.scores
    rows = []
    for i in range(min(k, len(rollouts))):
        row = {
            "prompt": rollouts.prompts[i],
            "completion": rollouts.texts[i],
            "answer": episodes.answers[i],
            "reward": scores.total[i].item(),
            "finish_reason": rollouts.finish_reasons[i],
        }
        row.update({f"reward/{key}": v[i].item() for key, v in scores.per_reward.items()})
        rows.append(row)
    return rows


def log_step(run, step: int, metrics: dict, episodes: Episodes) -> None:
    train = run.recipe.train
    if step % train.logging_steps == 0 or step == train.max_steps:
        run.log.metrics(step, metrics)
        run.log.completions(step, sample_rows(episodes, train.completions_to_log))
