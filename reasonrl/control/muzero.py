"""MuZero for discrete-action Gymnasium tasks (Schrittwieser et al. 2020, arXiv:1911.08265).

Three networks learn a model for planning, never the environment's rules:

    representation  h(o_t) = s⁰                 (observation -> latent state)
    dynamics        g(sᵏ, a) = (r^{k+1}, s^{k+1})
    prediction      f(sᵏ) = (p^k, v^k)          (policy logits, value)

Acting: every environment step, one batched tree search (``reasonrl.control.mcts``) over
the latent model from each environment's observation picks the action from the root's
visit counts (sampled at a temperature that falls as training goes on). Learning: from
replayed positions, the model is unrolled K steps along the actions really taken and
trained towards the search's visit distributions (policy), n-step returns bootstrapped
with the search's root values (value) and the observed rewards (reward):

    l = Σ_k  CE(π_{t+k}, p^k) + c_v · (h(z_{t+k}) − v^k)² + (h(u_{t+k}) − r^k)²

with values and rewards regressed through MuZero's transform h (``signed_hyperbolic``),
the latent's gradient halved at each unroll step, and every term's weight visible in
``MuZeroAgent``. The targets and losses come from ``reasonrl.losses``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from reasonrl.control.common import finish, log_row, save_due, start
from reasonrl.control.envs import ReturnTracker, finished_episodes, make_vector_env
from reasonrl.control.mcts import RecurrentOutput, RootOutput, SearchConfig, search, visit_policy
from reasonrl.control.networks import MLP
from reasonrl.losses import cross_entropy_to_target, n_step_returns, signed_hyperbolic, signed_parabolic


def _scale_latent(s: torch.Tensor) -> torch.Tensor:
    """Min-max each latent state to [0, 1] (MuZero Appendix G): dynamics and prediction
    see inputs of one range however deep the unroll."""
    lo, hi = s.min(-1, keepdim=True).values, s.max(-1, keepdim=True).values
    return (s - lo) / (hi - lo).clamp(min=1e-5)


class MuZeroNet(nn.Module):
    """h, g and f as small MLPs (ELU), over a latent state of ``latent`` units."""

    def __init__(self, obs_dim: int, n_actions: int, hidden: int = 64, latent: int = 32):
        super().__init__()
        self.n_actions = n_actions
        self.representation = MLP([obs_dim, hidden, latent], activation=F.elu)
        self.dynamics = MLP([latent + n_actions, hidden, latent + 1], activation=F.elu)  # next state, reward
        self.prediction = MLP([latent, hidden, n_actions + 1], activation=F.elu, last_std=0.01)

    def initial(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(s⁰, policy logits, transformed value) from observations."""
        s = _scale_latent(self.representation(obs))
        logits, value = self.predict(s)
        return s, logits, value

    def predict(self, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.prediction(s)
        return out[:, : self.n_actions], out[:, self.n_actions]

    def step(self, s: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(s^{k+1}, transformed reward) from sᵏ and an action."""
        out = self.dynamics(torch.cat([s, F.one_hot(action, self.n_actions).to(s.dtype)], -1))
        return _scale_latent(out[:, :-1]), out[:, -1]


def planning_model(net: MuZeroNet, gamma: float):
    """The search's view of the networks: values and rewards in return units (h⁻¹)."""

    @torch.no_grad()
    def recurrent(s: torch.Tensor, action: torch.Tensor) -> RecurrentOutput:
        nxt, reward = net.step(s, action)
        logits, value = net.predict(nxt)
        reward, value = signed_parabolic(reward), signed_parabolic(value)
        return RecurrentOutput(reward, torch.full_like(reward, gamma), logits, value, nxt)

    @torch.no_grad()
    def root(obs: torch.Tensor) -> RootOutput:
        s, logits, value = net.initial(obs)
        return RootOutput(logits, signed_parabolic(value), s)

    return root, recurrent


@dataclass
class Replay:
    """Time-major arrays [T, E] of everything acting recorded, one column per environment."""

    obs: np.ndarray  # [T, E, obs_dim]
    action: np.ndarray  # [T, E]
    reward: np.ndarray  # [T, E]
    done: np.ndarray  # [T, E]: the episode ended after step t
    policy: np.ndarray  # [T, E, A]: the search's visit distribution at s_t
    root_value: np.ndarray  # [T, E]: the search's value of s_t
    size: int = 0  # rows filled

    @classmethod
    def empty(cls, rows: int, envs: int, obs_dim: int, n_actions: int) -> Replay:
        z = np.zeros
        return cls(
            z((rows, envs, obs_dim), np.float32),
            z((rows, envs), np.int64),
            z((rows, envs), np.float32),
            z((rows, envs), np.float32),
            z((rows, envs, n_actions), np.float32),
            z((rows, envs), np.float32),
        )

    def add(self, obs, action, reward, done, policy, root_value) -> None:
        t = self.size
        self.obs[t], self.action[t], self.reward[t], self.done[t] = obs, action, reward, done
        self.policy[t], self.root_value[t] = policy, root_value
        self.size += 1


def unroll_targets(replay: Replay, t: torch.Tensor, e: torch.Tensor, K: int, z: torch.Tensor):
    """The training targets of positions (t, e) unrolled K steps: actions [B, K], value
    targets [B, K+1], reward targets [B, K], policy targets [B, K+1, A], and masks of
    the steps inside the episode (after its end the state is absorbing: value and
    reward 0, the policy not trained, the action random)."""
    T = replay.size
    steps = t[:, None] + torch.arange(K + 1)  # [B, K+1]
    inside = torch.ones_like(steps, dtype=torch.bool)
    for k in range(1, K + 1):  # a step is inside if no done came before it and it was recorded
        before = torch.from_numpy(replay.done[:T]).bool()[(steps[:, k - 1]).clamp(max=T - 1), e]
        inside[:, k] = inside[:, k - 1] & ~before & (steps[:, k] < T)
    at = steps.clamp(max=T - 1)
    actions = torch.from_numpy(replay.action[:T])[at[:, :K], e[:, None]]
    actions = torch.where(inside[:, :K], actions, torch.randint(0, replay.policy.shape[-1], actions.shape))
    rewards = torch.from_numpy(replay.reward[:T])[at[:, :K], e[:, None]] * inside[:, :K]
    values = z[at, e[:, None]] * inside
    policies = torch.from_numpy(replay.policy[:T])[at, e[:, None]]
    return actions, values, rewards, policies, inside


def muzero_loss(net: MuZeroNet, obs, actions, values, rewards, policies, inside, value_coef: float):
    """MuZero's unrolled loss over K steps (Appendix G), averaged over the batch, and its parts."""
    K = actions.shape[1]
    s, logits, v = net.initial(obs)
    policy_loss = cross_entropy_to_target(logits, policies[:, 0])
    value_part = (v - signed_hyperbolic(values[:, 0])) ** 2
    reward_part = torch.zeros_like(value_part)
    for k in range(K):
        s, r = net.step(s, actions[:, k])
        s.register_hook(lambda grad: grad * 0.5)  # scale the gradient through the dynamics
        logits, v = net.predict(s)
        weight = 1.0 / K  # every unroll step's heads together weigh as much as the first
        policy_loss = (
            policy_loss + weight * cross_entropy_to_target(logits, policies[:, k + 1]) * inside[:, k + 1]
        )
        value_part = value_part + weight * (v - signed_hyperbolic(values[:, k + 1])) ** 2
        reward_part = reward_part + weight * (r - signed_hyperbolic(rewards[:, k])) ** 2
    loss = (policy_loss + value_coef * value_part + reward_part).mean()
    return loss, {
        "policy_loss": policy_loss.mean().item(),
        "value_loss": value_part.mean().item(),
        "reward_loss": reward_part.mean().item(),
    }


def temperature(step: int, total: int, schedule: tuple[float, ...]) -> float:
    """The visit-count temperature for acting: ``schedule`` split evenly over the run."""
    return schedule[min(len(schedule) - 1, step * len(schedule) // max(total, 1))]


def train_muzero_agent(recipe) -> dict:
    cfg, train = recipe.muzero, recipe.train
    run = start(recipe)
    envs, obs = make_vector_env(recipe.env_id, cfg.num_envs, train.seed)
    obs_dim, n_actions = envs.single_observation_space.shape[0], envs.single_action_space.n
    net = MuZeroNet(obs_dim, n_actions, cfg.hidden, cfg.latent)
    optimizer = torch.optim.Adam(net.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    E = cfg.num_envs
    rows = train.total_steps // E
    # a resumed run keeps its networks and optimizer and starts a new replay (not saved)
    resumed = run.resume(net, optimizer, None)
    first = resumed // E
    replay = Replay.empty(rows - first, E, obs_dim, n_actions)
    search_config = SearchConfig(
        cfg.num_simulations,
        dirichlet_alpha=cfg.dirichlet_alpha,
        exploration_fraction=cfg.exploration_fraction,
    )
    root_fn, recurrent_fn = planning_model(net, cfg.gamma)
    tracker = ReturnTracker(train.solve_window, train.solve_threshold, train.stop_when_solved)
    dirichlet = torch.distributions.Dirichlet(torch.full((n_actions,), cfg.dirichlet_alpha))
    progress = run.progress(first * E, rows * E, f"muzero {recipe.env_id}")
    started, updates, stats, row = time.perf_counter(), 0, {}, first - 1
    for row in range(first, rows):
        step = row * E
        root = root_fn(torch.from_numpy(obs))
        tree = search(root, recurrent_fn, search_config, dirichlet.sample((E,)))
        policy = visit_policy(tree.root_visit_counts(), 1.0).float()
        acting = visit_policy(
            tree.root_visit_counts(), temperature(step, train.total_steps, cfg.temperatures)
        )
        action = torch.multinomial(acting, 1)[:, 0].numpy()
        next_obs, reward, terminated, truncated, info = envs.step(action)
        replay.add(
            obs, action, reward, terminated | truncated, policy.numpy(), tree.root_value().float().numpy()
        )
        obs = next_obs
        tracker.add(finished_episodes(info), step + E)
        progress.update(E)

        # updates per environment step, once the (new) replay holds learning_starts steps
        due = int(((row + 1 - first) * E - cfg.learning_starts) * cfg.updates_per_step)
        if due > updates:
            z = value_targets(net, replay, cfg)
            while updates < due:
                stats = update(net, optimizer, replay, z, cfg)
                updates += 1
        if (row + 1) % cfg.log_every == 0 or row + 1 == rows:
            metrics = stats | {"updates": updates, "root_value": float(tree.root_value().mean())}
            log_row(run, progress, tracker, step + E, metrics, (row + 1 - first) * E, started)
        if save_due(train.save_every, step + E, E, rows * E):
            run.save(step + E, net, optimizer, None)
        if tracker.should_stop():
            break
    envs.close()
    return finish(run, {"agent": net}, tracker, (row + 1) * E, optimizer)


@torch.no_grad()
def value_targets(net: MuZeroNet, replay: Replay, cfg) -> torch.Tensor:
    """n-step returns of every recorded step, [T, E], bootstrapped from the root values the
    search gave when acting or, with ``reanalyse_values``, from the current network's
    value of each observation (MuZero Reanalyse / EfficientZero: fresher than the
    acting-time values, which lag far behind a policy that improves fast)."""
    T = replay.size
    rewards, dones = torch.from_numpy(replay.reward[:T]), torch.from_numpy(replay.done[:T])
    if cfg.reanalyse_values:
        obs = torch.from_numpy(replay.obs[:T])
        values = signed_parabolic(net.initial(obs.reshape(-1, obs.shape[-1]))[2]).reshape(T, -1)
    else:
        values = torch.from_numpy(replay.root_value[:T])
    return n_step_returns(rewards, dones, values, cfg.gamma, cfg.td_steps)


def update(net: MuZeroNet, optimizer, replay: Replay, z: torch.Tensor, cfg) -> dict:
    """One gradient step on a batch of replayed positions; ``z`` holds the value targets."""
    T, E = replay.size, replay.done.shape[1]
    t = torch.randint(0, T, (cfg.batch_size,))
    e = torch.randint(0, E, (cfg.batch_size,))
    targets = unroll_targets(replay, t, e, cfg.unroll_steps, z)
    obs = torch.from_numpy(replay.obs[:T])[t, e]
    loss, parts = muzero_loss(net, obs, *targets, value_coef=cfg.value_coef)
    optimizer.zero_grad()
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.max_grad_norm)
    optimizer.step()
    return parts | {"loss": loss.item(), "grad_norm": float(grad_norm)}
