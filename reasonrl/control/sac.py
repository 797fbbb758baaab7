"""SAC for continuous-action Gymnasium tasks (Haarnoja et al. 2018; CleanRL's sac_continuous_action.py).

Twin Q networks with Polyak-averaged targets, a tanh-squashed Gaussian actor updated
every ``policy_frequency`` critic updates, and the temperature α tuned towards
−dim(A). The target, critic, actor and temperature losses are reasonrl.losses.
"""

from __future__ import annotations

import copy
import time

import numpy as np
import torch

from reasonrl.control.common import finish, save_due, start
from reasonrl.control.envs import ReturnTracker, final_observations, finished_episodes, make_vector_env
from reasonrl.control.networks import QNetwork, SquashedGaussianActor
from reasonrl.losses import sac_temperature_loss, soft_bellman_target, soft_policy_loss, value_loss


class ReplayBuffer:
    def __init__(self, size: int, obs_dim: int, act_dim: int):
        self.obs = np.zeros((size, obs_dim), np.float32)
        self.next_obs = np.zeros((size, obs_dim), np.float32)
        self.actions = np.zeros((size, act_dim), np.float32)
        self.rewards = np.zeros(size, np.float32)
        self.terminated = np.zeros(size, np.float32)
        self.size, self.full, self.pos = size, False, 0

    def add(self, obs, action, reward, next_obs, terminated) -> None:
        for i in range(len(obs)):
            j = self.pos
            self.obs[j], self.actions[j], self.rewards[j] = obs[i], action[i], reward[i]
            self.next_obs[j], self.terminated[j] = next_obs[i], terminated[i]
            self.pos = (self.pos + 1) % self.size
            self.full = self.full or self.pos == 0

    def sample(self, n: int, rng: np.random.Generator) -> tuple[torch.Tensor, ...]:
        idx = rng.integers(0, self.size if self.full else self.pos, n)
        return tuple(
            torch.as_tensor(a[idx])
            for a in (self.obs, self.actions, self.rewards, self.next_obs, self.terminated)
        )


def polyak(target: torch.nn.Module, source: torch.nn.Module, tau: float) -> None:
    with torch.no_grad():
        for t, s in zip(target.parameters(), source.parameters(), strict=True):
            t.mul_(1 - tau).add_(s, alpha=tau)


def train_sac_agent(recipe) -> dict:
    cfg, train = recipe.sac, recipe.train
    run = start(recipe)
    envs, obs = make_vector_env(recipe.env_id, 1, train.seed)
    space = envs.single_action_space
    obs_dim, act_dim = envs.single_observation_space.shape[0], space.shape[0]
    actor = SquashedGaussianActor(obs_dim, act_dim, space.low, space.high, cfg.hidden)
    q1, q2 = QNetwork(obs_dim, act_dim, cfg.hidden), QNetwork(obs_dim, act_dim, cfg.hidden)
    q1_target, q2_target = copy.deepcopy(q1), copy.deepcopy(q2)
    log_alpha = torch.nn.Parameter(torch.tensor(float(np.log(cfg.alpha))))
    nets = torch.nn.ModuleDict(
        {"actor": actor, "q1": q1, "q2": q2, "q1_target": q1_target, "q2_target": q2_target}
    )
    nets.register_parameter("log_alpha", log_alpha)
    optimizers = {
        "q": torch.optim.Adam(list(q1.parameters()) + list(q2.parameters()), lr=cfg.q_lr),
        "actor": torch.optim.Adam(actor.parameters(), lr=cfg.policy_lr),
        "alpha": torch.optim.Adam([log_alpha], lr=cfg.q_lr),
    }
    target_entropy = -float(act_dim)
    buffer = ReplayBuffer(min(cfg.buffer_size, train.total_steps), obs_dim, act_dim)
    rng = np.random.default_rng(train.seed)
    tracker = ReturnTracker(train.solve_window, train.solve_threshold, train.stop_when_solved)
    first = run.resume(nets, optimizers, None)
    progress = run.progress(first, train.total_steps, f"sac {recipe.env_id}")
    started, stats, steps_done = time.perf_counter(), {}, first
    for step in range(first, train.total_steps):
        if step < cfg.learning_starts:
            action = np.stack([space.sample()])
        else:
            with torch.inference_mode():
                action = actor.sample(torch.as_tensor(obs, dtype=torch.float32))[0].numpy()
        next_obs, reward, terminated, truncated, info = envs.step(action)
        real_next = next_obs.copy()
        done = terminated | truncated
        if done.any():  # the stored next state is the last one of the episode, not the reset one
            real_next[done] = final_observations(info, done)
        buffer.add(obs, action, reward, real_next, terminated)  # truncation is not termination
        obs = next_obs
        tracker.add(finished_episodes(info), step + 1)

        if step >= cfg.learning_starts:
            s, a, r, s2, d = buffer.sample(cfg.batch_size, rng)
            alpha = log_alpha.exp().item()
            with torch.no_grad():
                a2, logp2 = actor.sample(s2)
                y = soft_bellman_target(r, d, q1_target(s2, a2), q2_target(s2, a2), logp2, alpha, cfg.gamma)
            q_loss = value_loss(q1(s, a), y).mean() + value_loss(q2(s, a), y).mean()
            optimizers["q"].zero_grad()
            q_loss.backward()
            optimizers["q"].step()
            if step % cfg.policy_frequency == 0:  # delayed actor updates, as many as were skipped
                for _ in range(cfg.policy_frequency):
                    pi, logp = actor.sample(s)
                    actor_loss = soft_policy_loss(logp, torch.min(q1(s, pi), q2(s, pi)), alpha).mean()
                    optimizers["actor"].zero_grad()
                    actor_loss.backward()
                    optimizers["actor"].step()
                    if cfg.autotune:
                        alpha_loss = sac_temperature_loss(log_alpha, logp, target_entropy)
                        optimizers["alpha"].zero_grad()
                        alpha_loss.backward()
                        optimizers["alpha"].step()
                stats = {
                    "q_loss": q_loss.item(),
                    "actor_loss": actor_loss.item(),
                    "alpha": log_alpha.exp().item(),
                    "entropy": -logp.mean().item(),
                }
            polyak(q1_target, q1, cfg.tau)
            polyak(q2_target, q2, cfg.tau)
        progress.update(1)
        steps_done = step + 1
        stop = tracker.should_stop()
        if (step + 1) % 1000 == 0 or step + 1 == train.total_steps or stop:
            metrics = tracker.drain()
            metrics.update(stats, steps_per_second=(step + 1 - first) / (time.perf_counter() - started))
            run.log.metrics(step + 1, metrics)
            progress.set_postfix(ret=f"{tracker.mean:.1f}")
        if save_due(train.save_every, step + 1, 1, train.total_steps):
            run.save(step + 1, nets, optimizers, None)
        if stop:
            break
    envs.close()
    return finish(run, {"actor": actor, "q1": q1, "q2": q2}, tracker, steps_done, optimizers)
