"""PPO for language models (Ouyang et al. 2022; Ziegler et al. 2019) on reasonrl's pieces.

The critic is a value head on the policy's last hidden state (one forward pass
gives log-probs and values; with LoRA the backbone is shared and only the adapter
and head train). Per-token rewards are the KL penalty to the reference,
−β (log π − log π_ref), plus the verifier's score on the last completion token.
One step:

    prompts -> engine.generate -> rewards -> old log-probs, values, reference log-probs
            -> per-token rewards -> token-level GAE (γ, λ) -> μ passes of minibatch updates of
               clipped surrogate + c_v · clipped value loss − c_H · entropy -> sync engine

The equations are reasonrl.losses (the same functions the CartPole PPO agent calls).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from safetensors.torch import save_file

from reasonrl.losses import (
    entropy_from_logits,
    generalized_advantage_estimation,
    kl_estimate,
    masked_mean,
    ppo_loss,
    token_logprobs,
)
from reasonrl.models.logprobs import position_ids
from reasonrl.rollout import Rollouts
from reasonrl.runtime import Run
from reasonrl.trainers.final import save_final
from reasonrl.trainers.onpolicy import ScoredBatch, set_up, train_on_policy
from reasonrl.trainers.policy import reference_logprobs
from reasonrl.trainers.recipe import PPOSection, Recipe

log = logging.getLogger("reasonrl")


class ActorCritic(torch.nn.Module):
    """The policy with a value head: ``forward`` returns completion logits and values."""

    def __init__(self, policy: torch.nn.Module, hidden_size: int):
        super().__init__()
        self.policy = policy
        self.value_head = torch.nn.Linear(hidden_size, 1)
        torch.nn.init.normal_(self.value_head.weight, std=1 / (hidden_size + 1) ** 0.5)
        torch.nn.init.zeros_(self.value_head.bias)

    def forward(self, batch: Rollouts, rows: torch.Tensor | None = None, temperature: float = 1.0):
        """(logits / τ [n, C, V], values [n, C]) at the positions that predict completion tokens."""
        if rows is not None:
            batch = batch.select(rows)
        ids, mask = batch.input_ids()
        C = batch.completion_ids.shape[1]
        out = self.policy(
            input_ids=ids,
            attention_mask=mask.long(),
            position_ids=position_ids(mask),
            use_cache=False,
            output_hidden_states=True,
            logits_to_keep=C + 1,
        )
        hidden = out.hidden_states[-1][:, -(C + 1) : -1]
        values = self.value_head(hidden.to(self.value_head.weight.dtype)).squeeze(-1)
        return out.logits[:, :-1] / temperature, values


@dataclass
class PPOBatch:
    rollouts: Rollouts
    mask: torch.Tensor  # [N, C] bool
    old_logprobs: torch.Tensor  # [N, C]
    old_values: torch.Tensor  # [N, C]
    advantages: torch.Tensor  # [N, C]
    returns: torch.Tensor  # [N, C]


def token_rewards(
    scores: torch.Tensor, logp: torch.Tensor, ref: torch.Tensor | None, mask: torch.Tensor, kl_coef: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """r_t = −β (log π − log π_ref)_t, plus the sequence score on the last token; and the KL."""
    kl = torch.zeros_like(logp) if ref is None else kl_estimate(logp, ref, "k1") * mask
    rewards = -kl_coef * kl
    last = (mask.long().cumsum(1) == mask.sum(1, keepdim=True)) & mask  # the last real token of each row
    rewards = rewards + last * scores.unsqueeze(1)
    return rewards, kl


def advantages_and_returns(rewards, values, mask, cfg: PPOSection) -> tuple[torch.Tensor, torch.Tensor]:
    """Token-level GAE over the model's tokens: each completion (or multi-turn episode) is
    one trajectory ending at its last model token, and the environment's tokens between
    turns are skipped, not steps (the model's tokens are packed to the front, in order,
    GAE runs on them, and the results go back to their positions)."""
    order = torch.sort((~mask).to(torch.int8), dim=1, stable=True).indices  # model tokens first
    packed_mask = mask.gather(1, order)
    last = (packed_mask.long().cumsum(1) == packed_mask.sum(1, keepdim=True)) & packed_mask
    dones = (last | ~packed_mask).T.float()  # padding after the end is cut off as well
    packed_values = (values * mask).gather(1, order)
    adv, ret = generalized_advantage_estimation(
        rewards.gather(1, order).T,
        packed_values.T,
        dones,
        torch.zeros(values.shape[0]),
        cfg.gamma,
        cfg.gae_lambda,
    )
    adv = torch.zeros_like(values).scatter(1, order, adv.T)
    ret = torch.zeros_like(values).scatter(1, order, ret.T)
    if cfg.whiten_advantages:
        mean = masked_mean(adv, mask)
        std = masked_mean((adv - mean) ** 2, mask).sqrt()
        adv = (adv - mean) / (std + 1e-8)
    return adv * mask, ret * mask


def ppo_update(model, optimizer, batch: PPOBatch, rows: torch.Tensor, cfg: PPOSection, run: Run) -> dict:
    """One optimizer step on minibatch ``rows``, in micro-batches."""
    tokens = batch.mask[rows].sum().clamp(min=1).float()
    if run.world_size > 1:
        tokens = run.accelerator.reduce(tokens, "sum") / run.world_size
    stats, chunks = [], rows.split(run.config.micro_batch_size)
    for i, chunk in enumerate(chunks):
        mask = batch.mask[chunk]
        with run.micro_step(model, last=i == len(chunks) - 1):
            with run.autocast():
                logits, values = model(batch.rollouts, chunk, cfg.temperature)
            logp = token_logprobs(logits.float(), batch.rollouts.completion_ids[chunk])
            if cfg.ent_coef:
                entropy = entropy_from_logits(logits.float())
            else:
                with torch.no_grad():
                    entropy = entropy_from_logits(logits.detach().float())
            out = ppo_loss(
                logp,
                batch.old_logprobs[chunk],
                batch.advantages[chunk],
                values.float(),
                batch.old_values[chunk],
                batch.returns[chunk],
                entropy,
                mask,
                clip_coef=cfg.clip_coef,
                vf_coef=cfg.vf_coef,
                ent_coef=cfg.ent_coef,
                value_clip=cfg.value_clip,
                num_tokens=tokens,
            )
            run.accelerator.backward(out.loss)
        n = mask.sum().item()
        parts = {
            k: getattr(out, k).item() for k in ("policy_loss", "value_loss", "clip_fraction", "approx_kl")
        }
        stats.append(
            ({"loss": out.loss.item() * tokens.item() / max(n, 1), **parts, "entropy": out.entropy.item()}, n)
        )
    grad_norm = run.optimizer_step(model, optimizer)
    total = sum(n for _, n in stats) or 1
    out = {k: sum(s[k] * n for s, n in stats) / total for k in stats[0][0]}
    out["grad_norm"] = grad_norm
    return out


@torch.no_grad()
def evaluate_batch(
    model, rollouts: Rollouts, temperature: float, micro: int, run
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probs and values of the sampled tokens under the current (old) policy and critic."""
    logps, values = [], []
    for rows in torch.arange(len(rollouts)).split(micro):
        with run.autocast():
            logits, v = model(rollouts, rows, temperature)
        logps.append(token_logprobs(logits.float(), rollouts.completion_ids[rows]))
        values.append(v.float())
    return torch.cat(logps), torch.cat(values)


def train_ppo(recipe: Recipe) -> Run:
    """Train ``recipe`` with PPO (a value head on the policy); returns the finished Run.
    Its ``final/`` holds the adapter or model and ``value_head.safetensors``."""
    cfg, train = recipe.ppo, recipe.train
    parts = set_up(
        recipe,
        1,
        cfg.temperature,
        cfg.max_completion_length,
        need_reference=cfg.kl_coef > 0,
        wrap=lambda model: ActorCritic(model, model.config.hidden_size),
        actor=lambda actor_critic: actor_critic.policy,
    )
    run, model = parts.run, parts.model

    def prepare(scored: ScoredBatch) -> tuple[PPOBatch, torch.Tensor]:
        rollouts, mask, micro = scored.rollouts, scored.rollouts.loss_mask, train.micro_batch_size
        old_logp, old_values = evaluate_batch(model, rollouts, cfg.temperature, micro, run)
        ref = None
        if cfg.kl_coef > 0:
            ref = reference_logprobs(
                parts.policy, parts.actor, rollouts, cfg.temperature, micro, run.autocast()
            )
        per_token, kl = token_rewards(scored.scores.total, old_logp, ref, mask, cfg.kl_coef)
        advantages, returns = advantages_and_returns(per_token, old_values, mask, cfg)
        return PPOBatch(rollouts, mask, old_logp, old_values, advantages, returns), kl

    def learn(inputs: tuple[PPOBatch, torch.Tensor]) -> tuple[list[dict], dict]:
        batch, kl = inputs
        updates = []
        for _ in range(cfg.num_iterations):
            for rows in torch.randperm(len(batch.rollouts)).chunk(cfg.num_minibatches):
                updates.append(ppo_update(model, parts.optimizer, batch, rows, cfg, run))
        mask, residual = batch.mask, (batch.returns - batch.old_values)[batch.mask]
        explained = 1 - residual.var() / batch.returns[mask].var().clamp(min=1e-8)
        return updates, {"kl": masked_mean(kl, mask).item(), "explained_variance": explained.item()}

    def postfix(metrics: dict) -> dict:
        return {"reward": f"{metrics['reward/mean']:.3f}", "vloss": f"{metrics['value_loss']:.3f}"}

    train_on_policy(parts, recipe, cfg.prompts_per_step, prepare, learn, postfix, "ppo")
    unwrapped = run.accelerator.unwrap_model(model)
    save_final(run, unwrapped.policy, parts.policy.tokenizer)
    with run.gathered(model):  # collective under ZeRO-3: every rank enters
        state = {k: v.detach().cpu().clone() for k, v in unwrapped.value_head.state_dict().items()}
    if run.is_main:
        save_file(state, run.output_dir / "final" / "value_head.safetensors")
    keys = parts.rewards.keys if parts.rewards is not None else [parts.env.name]
    run.log.plot(["reward/mean"] + [f"reward/{k}/mean" for k in keys])
    parts.engine.close()
    run.finish()
    return run
