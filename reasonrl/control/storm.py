"""STORM for discrete-action Gymnasium tasks (Zhang et al. 2023, arXiv:2310.09615).

Real environment steps only fill the replay. Learning alternates two updates:

    world model   replayed sequences -> posterior latents, transformer states, predicted
                  next latents, rewards and continuations; ``world_model_loss`` (named
                  terms, KL balancing and free bits; ``reasonrl.losses.world_model``)
    actor-critic  replayed contexts -> ``imagine`` H steps with the actor in the frozen
                  model -> λ-returns bootstrapped by a slow (EMA) critic
                  (``generalized_advantage_estimation`` with dones = 1 − ĉ) -> critic
                  regression in symlog, REINFORCE with advantages (R − V) / S
                  (``return_scale``) and an entropy bonus, each step weighted by the
                  probability the imagined episode is still running

The agent's state is s_t = [z_t, h_{t−1}]: the latent of the current observation and the
transformer's output over the steps before it. When acting, each environment keeps its
last ``context`` (latent, action) tokens.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from reasonrl.control.common import finish, log_row, save_due, start
from reasonrl.control.envs import ReturnTracker, finished_episodes, make_vector_env
from reasonrl.control.networks import MLP
from reasonrl.control.world_model import WorldModel, imagine, observation_kind
from reasonrl.losses import (
    entropy_from_logits,
    generalized_advantage_estimation,
    policy_gradient_loss,
    return_scale,
    symexp,
    symlog,
    token_logprobs,
    world_model_loss,
)


@dataclass
class Replay:
    """Time-major arrays [T, E] of what the environments returned."""

    obs: np.ndarray  # [T, E, *shape], in the environment's dtype (bool or 8-bit images stay small)
    action: np.ndarray  # [T, E]
    reward: np.ndarray  # [T, E]
    terminated: np.ndarray  # [T, E]: the episode ended after step t in a terminal state
    done: np.ndarray  # [T, E]: it ended after step t, by termination or a time limit
    size: int = 0

    @classmethod
    def empty(cls, rows: int, envs: int, obs_shape: tuple[int, ...], obs_dtype=np.float32) -> Replay:
        z = np.zeros
        return cls(
            z((rows, envs, *obs_shape), obs_dtype),
            z((rows, envs), np.int64),
            *(z((rows, envs), np.float32) for _ in range(3)),
        )

    def add(self, obs, action, reward, terminated, done) -> None:
        t = self.size
        self.obs[t], self.action[t], self.reward[t], self.terminated[t], self.done[t] = (
            obs,
            action,
            reward,
            terminated,
            done,
        )
        self.size += 1

    def segments(self, batch: int, length: int, rng: torch.Generator):
        """``batch`` random segments of ``length`` steps: obs [B, L, *shape], and actions,
        rewards, terminated, done [B, L]."""
        t = torch.randint(0, self.size - length + 1, (batch,), generator=rng)
        e = torch.randint(0, self.obs.shape[1], (batch,), generator=rng)
        rows = (t[:, None] + torch.arange(length)).numpy()
        cols = e[:, None].numpy()
        pick = [
            torch.from_numpy(x[: self.size][rows, cols])
            for x in (self.obs, self.action, self.reward, self.terminated, self.done)
        ]
        return pick


class Agent(torch.nn.Module):
    """The world model, the actor, the critic and its slow copy, in one module (one checkpoint)."""

    def __init__(self, obs_shape: tuple[int, ...], n_actions: int, cfg, kind: str = "vector"):
        super().__init__()
        self.model = WorldModel(
            obs_shape,
            n_actions,
            cfg.groups,
            cfg.classes,
            cfg.d_model,
            cfg.layers,
            cfg.heads,
            cfg.hidden,
            cfg.max_len,
            kind,
        )
        state = self.model.latent_size + cfg.d_model
        self.actor = MLP([state, cfg.hidden, cfg.hidden, n_actions], activation=F.silu, last_std=0.01)
        self.critic = MLP([state, cfg.hidden, cfg.hidden, 1], activation=F.silu, last_std=0.0)
        self.slow_critic = copy.deepcopy(self.critic).requires_grad_(False)


def world_model_step(agent: Agent, optimizer, replay: Replay, cfg, rng) -> dict:
    model = agent.model
    obs, actions, rewards, terminated, done = replay.segments(cfg.batch_size, cfg.batch_length, rng)
    posterior = model.posterior(obs)  # [B, L, G, K]
    z = model.sample(posterior)
    h, _ = model.hidden(z, actions)
    prior, reward_pred, continue_logit = model.heads(h)
    out = world_model_loss(
        model.decoder(z), model.prepare(obs), reward_pred, rewards, continue_logit, 1.0 - terminated,
        posterior[:, 1:], prior[:, :-1], kl_mask=1.0 - done[:, :-1],
        dyn_scale=cfg.dyn_scale, rep_scale=cfg.rep_scale, free_nats=cfg.free_nats,
        reconstruction=model.reconstruction,
    )  # fmt: skip
    optimizer.zero_grad()
    out.loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
    optimizer.step()
    names = ("reconstruction", "reward", "continuation", "dynamics", "representation", "kl")  # + "loss"
    return {f"wm/{n}": getattr(out, n).item() for n in (*names, "loss")}


def actor_critic_step(agent: Agent, optimizer, replay: Replay, cfg, rng) -> dict:
    model = agent.model
    obs, actions, *_ = replay.segments(cfg.imagine_batch, cfg.imagine_context, rng)
    with torch.no_grad():
        z = model.sample(model.posterior(obs))
    im = imagine(model, agent.actor, z, actions, cfg.horizon)
    with torch.no_grad():
        slow_symlog = agent.slow_critic(im.states).squeeze(-1)  # [B, H+1]
        slow = symexp(slow_symlog)
        _, returns = generalized_advantage_estimation(
            im.rewards.T, slow[:, :-1].T, (1.0 - im.continues).T, slow[:, -1], cfg.gamma, cfg.lam
        )
        returns = returns.T  # [B, H]
        # a step counts as much as the imagined episode is likely to be still running
        weight = torch.cumprod(torch.cat([torch.ones_like(im.continues[:, :1]), im.continues[:, :-1]], 1), 1)
        scale = return_scale(returns)
    values = agent.critic(im.states[:, :-1]).squeeze(-1)
    # regression to the λ-returns, plus DreamerV3's pull towards the slow critic: without it
    # the bootstrapped values ran away (imagined returns 88 where 1 / (1 − γ) is 67) and
    # the policy collapsed from a mean return of 350 to 120
    target = (values - symlog(returns)) ** 2 + cfg.slow_critic_reg * (values - slow_symlog[:, :-1]) ** 2
    critic_loss = (weight * target).mean()
    logits = agent.actor(im.states[:, :-1])
    advantage = (returns - symexp(values.detach())) / scale
    entropy = entropy_from_logits(logits)
    actor_loss = (
        weight
        * (policy_gradient_loss(token_logprobs(logits, im.actions), advantage) - cfg.ent_coef * entropy)
    ).mean()
    optimizer.zero_grad()
    (actor_loss + critic_loss).backward()
    torch.nn.utils.clip_grad_norm_([*agent.actor.parameters(), *agent.critic.parameters()], cfg.max_grad_norm)
    optimizer.step()
    with torch.no_grad():  # the slow critic follows: θ' ← (1 − τ) θ' + τ θ
        for slow_p, p in zip(agent.slow_critic.parameters(), agent.critic.parameters(), strict=True):
            slow_p.lerp_(p, cfg.slow_critic_tau)
    return {
        "ac/actor_loss": actor_loss.item(),
        "ac/critic_loss": critic_loss.item(),
        "ac/entropy": entropy.mean().item(),
        "ac/imagined_return": float(returns[:, 0].mean()),
        "ac/imagined_reward": float(im.rewards.mean()),
        "ac/return_scale": float(scale),
    }


@torch.no_grad()
def imagined_vs_real(agent: Agent, replay: Replay, cfg, rng, batch: int = 256) -> float:
    """Correlation, over replayed starts, between the discounted return the world model
    predicts along the actions really taken next (open loop, ``horizon`` steps) and the
    return those steps really gave: how well the imagination the actor learns in tracks
    the environment."""
    C, H = cfg.imagine_context, cfg.horizon
    obs, actions, rewards, _, done = replay.segments(batch, C + H, rng)
    model = agent.model
    z = model.sample(model.posterior(obs[:, :C]))
    im = imagine(model, agent.actor, z, actions[:, :C], H, planned=actions[:, C - 1 : C - 1 + H])
    discount = cfg.gamma ** torch.arange(H, dtype=torch.float32)
    alive = torch.cumprod(torch.cat([torch.ones(batch, 1), 1 - done[:, C - 1 : C - 2 + H]], 1), 1)
    real = (discount * alive * rewards[:, C - 1 : C - 1 + H]).sum(1)
    predicted_alive = torch.cumprod(torch.cat([torch.ones(batch, 1), im.continues[:, :-1]], 1), 1)
    imagined = (discount * predicted_alive * im.rewards).sum(1)
    if real.std() == 0 or imagined.std() == 0:
        return float("nan")
    return float(torch.corrcoef(torch.stack([real, imagined]))[0, 1])


class Context:
    """Each environment's last ``length`` (latent, action) tokens, left-aligned, for acting."""

    def __init__(self, envs: int, length: int, latent: int):
        self.z = torch.zeros(envs, length, latent)
        self.a = torch.zeros(envs, length, dtype=torch.long)
        self.n = torch.zeros(envs, dtype=torch.long)

    @torch.no_grad()
    def hidden(self, model: WorldModel) -> torch.Tensor:
        """h after each environment's last token (zeros where it has none), [E, d]."""
        out = torch.zeros(len(self.n), model.d_model)
        if int(self.n.max()) > 0:
            width = int(self.n.max())
            h, _ = model.hidden(self.z[:, :width], self.a[:, :width])
            have = self.n > 0
            out[have] = h[have, self.n[have] - 1]
        return out

    def push(self, z: torch.Tensor, action: torch.Tensor, done: np.ndarray) -> None:
        full = self.n == self.z.shape[1]
        self.z[full], self.a[full] = self.z[full].roll(-1, 1), self.a[full].roll(-1, 1)
        self.n[full] -= 1
        rows = torch.arange(len(self.n))
        self.z[rows, self.n], self.a[rows, self.n] = z, action
        self.n += 1
        self.n[torch.from_numpy(done)] = 0  # the next observation starts a new episode


def train_storm_agent(recipe) -> dict:
    cfg, train = recipe.storm, recipe.train
    run = start(recipe)
    envs, obs = make_vector_env(recipe.env_id, cfg.num_envs, train.seed)
    space, n_actions = envs.single_observation_space, envs.single_action_space.n
    agent = Agent(space.shape, n_actions, cfg, observation_kind(space.shape, space.dtype))
    optimizers = {
        "model": torch.optim.Adam(agent.model.parameters(), lr=cfg.model_lr),
        "actor_critic": torch.optim.Adam(
            [*agent.actor.parameters(), *agent.critic.parameters()], lr=cfg.actor_lr
        ),
    }
    E = cfg.num_envs
    rows = train.total_steps // E
    resumed = run.resume(agent, optimizers, None)  # networks and optimizers; the replay starts anew
    first = resumed // E
    replay = Replay.empty(rows - first, E, space.shape, space.dtype)
    context = Context(E, cfg.context, agent.model.latent_size)
    rng = torch.Generator().manual_seed(train.seed)
    tracker = ReturnTracker(train.solve_window, train.solve_threshold, train.stop_when_solved)
    progress = run.progress(first * E, rows * E, f"storm {recipe.env_id}")
    started, updates, stats, row = time.perf_counter(), 0, {}, first - 1
    for row in range(first, rows):
        step = row * E
        with torch.no_grad():
            z = agent.model.sample(agent.model.posterior(torch.from_numpy(obs)))
            logits = agent.actor(torch.cat([z, context.hidden(agent.model)], -1))
        if (row - first) * E < cfg.learning_starts:
            action = torch.randint(0, n_actions, (E,))
        else:
            action = torch.multinomial(F.softmax(logits, -1), 1)[:, 0]
        next_obs, reward, terminated, truncated, info = envs.step(action.numpy())
        done = terminated | truncated
        replay.add(obs, action.numpy(), reward, terminated, done)
        context.push(z, action, done)
        obs = next_obs
        tracker.add(finished_episodes(info), step + E)
        progress.update(E)
        due = int(((row + 1 - first) * E - cfg.learning_starts) * cfg.updates_per_step)
        while updates < due and replay.size >= max(cfg.batch_length, cfg.imagine_context):
            stats = world_model_step(agent, optimizers["model"], replay, cfg, rng)
            stats |= actor_critic_step(agent, optimizers["actor_critic"], replay, cfg, rng)
            updates += 1
        if (row + 1) % cfg.log_every == 0 or row + 1 == rows:
            metrics = stats | {"updates": updates}
            if updates:
                metrics["wm/imagined_vs_real_corr"] = imagined_vs_real(agent, replay, cfg, rng)
            log_row(run, progress, tracker, step + E, metrics, (row + 1 - first) * E, started)
        if save_due(train.save_every, step + E, E, rows * E):
            run.save(step + E, agent, optimizers, None)
        if tracker.should_stop():
            break
    envs.close()
    return finish(run, {"agent": agent}, tracker, (row + 1) * E, optimizers)
