"""IMPALA (Espeholt et al. 2018): Ray actors generate unrolls, one learner trains with V-trace.

Actors are Ray actor processes, each with a copy of the policy and a few
environments; they act with whatever weights they last received (the "behaviour"
policy μ) and return unrolls tagged with that weight version. The learner turns
each unroll into V-trace targets with ``reasonrl.losses.vtrace`` under its current
policy π, takes a gradient step on the policy-gradient, value and entropy losses,
and pushes new weights to the actor that produced the unroll. The difference between
the learner's version and the unroll's version is the policy lag, which V-trace's
clipped importance weights correct for.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from reasonrl.control.common import finish, save_due, start
from reasonrl.control.envs import ReturnTracker, final_observations, finished_episodes, make_vector_env
from reasonrl.control.networks import ActingCopy, DiscreteActorCritic, sample_categorical
from reasonrl.losses import policy_gradient_loss, token_logprobs, value_loss, vtrace


class UnrollActor:
    """Runs in its own process (wrapped by ray.remote): acts and returns unrolls."""

    def __init__(self, env_id: str, num_envs: int, seed: int, hidden: int, gamma: float, length: int):
        torch.set_num_threads(1)
        torch.manual_seed(seed)
        self.envs, self.obs = make_vector_env(env_id, num_envs, seed)
        obs_dim, n_actions = self.obs.shape[1], self.envs.single_action_space.n
        self.network = DiscreteActorCritic(obs_dim, n_actions, hidden)
        self.policy = ActingCopy(self.network)
        self.gamma, self.length, self.version = gamma, length, -1

    def set_weights(self, state: dict, version: int) -> None:
        self.network.load_state_dict(state)
        self.policy = ActingCopy(self.network)
        self.version = version

    def unroll(self) -> dict:
        T, (N, obs_dim) = self.length, self.obs.shape
        obs = np.zeros((T + 1, N, obs_dim), np.float32)
        logits = np.zeros((T, N, self.envs.single_action_space.n), np.float32)
        actions = np.zeros((T, N), np.int64)
        rewards, dones = np.zeros((T, N), np.float32), np.zeros((T, N), np.float32)
        uniforms = torch.rand(T, N, dtype=torch.float64).numpy()
        episodes = []
        for t in range(T):
            obs[t], logits[t] = self.obs, self.policy.logits(self.obs)
            actions[t] = sample_categorical(logits[t], uniforms[t])
            self.obs, reward, terminated, truncated, info = self.envs.step(actions[t])
            cut = truncated & ~terminated
            if cut.any():  # a time limit is not terminal: bootstrap with the actor's own critic
                reward = reward.astype(np.float32)
                reward[cut] += self.gamma * self.policy.value(final_observations(info, cut))
            rewards[t], dones[t] = reward, terminated | truncated
            episodes += finished_episodes(info)
        obs[T] = self.obs
        unroll = {"obs": obs, "actions": actions, "rewards": rewards, "dones": dones}
        unroll = {k: torch.from_numpy(v) for k, v in unroll.items()}
        unroll["behaviour_logp"] = token_logprobs(torch.from_numpy(logits), unroll["actions"])
        return {**unroll, "episodes": episodes, "version": self.version}


def learner_step(agent, optimizer, unroll: dict, cfg) -> dict:
    """One V-trace update on an unroll (time-major [T, N])."""
    obs, actions = unroll["obs"], unroll["actions"]
    T = actions.shape[0]
    target_logp, entropy, _ = agent.evaluate(obs[:T], actions)
    values = agent.value(obs)  # [T + 1, N]
    trace = vtrace(
        unroll["behaviour_logp"],
        target_logp.detach(),
        unroll["rewards"],
        cfg.gamma * (1.0 - unroll["dones"]),
        values[:T].detach(),
        values[T].detach(),
        rho_bar=cfg.rho_bar,
        c_bar=cfg.c_bar,
    )
    pg = policy_gradient_loss(target_logp, trace.pg_advantages).mean()
    vl = value_loss(values[:T], trace.vs).mean()
    entropy = entropy.mean()
    loss = pg + cfg.vf_coef * vl - cfg.ent_coef * entropy
    optimizer.zero_grad()
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(agent.parameters(), cfg.max_grad_norm)
    optimizer.step()
    return {
        "policy_loss": pg.item(),
        "value_loss": vl.item(),
        "entropy": entropy.item(),
        "grad_norm": float(grad_norm),
        "rho_mean": trace.rhos.mean().item(),
        "rho_clipped_fraction": (trace.rhos > cfg.rho_bar).float().mean().item(),
    }


def train_impala_agent(recipe) -> dict:
    import ray

    cfg, train = recipe.impala, recipe.train
    run = start(recipe)
    probe, _ = make_vector_env(recipe.env_id, 1, train.seed)
    agent = DiscreteActorCritic(
        probe.single_observation_space.shape[0], probe.single_action_space.n, cfg.hidden
    )
    probe.close()
    optimizer = torch.optim.Adam(agent.parameters(), lr=cfg.learning_rate)
    step = run.resume(agent, optimizer, None)
    tracker = ReturnTracker(train.solve_window, train.solve_threshold, train.stop_when_solved)

    ray.init(
        num_cpus=cfg.num_actors + 1, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True
    )
    try:
        remote = ray.remote(num_cpus=1)(UnrollActor)
        actors = [
            remote.remote(
                recipe.env_id,
                cfg.envs_per_actor,
                train.seed + 1000 * (i + 1),
                cfg.hidden,
                cfg.gamma,
                cfg.unroll_length,
            )
            for i in range(cfg.num_actors)
        ]
        version = 0
        weights = ray.put({k: v.clone() for k, v in agent.state_dict().items()})
        ray.get([a.set_weights.remote(weights, version) for a in actors])
        pending = {a.unroll.remote(): a for a in actors}
        per_unroll = cfg.envs_per_actor * cfg.unroll_length
        progress = run.progress(step, train.total_steps, f"impala {recipe.env_id}")
        started, first_step, updates_since_push = time.perf_counter(), step, {id(a): 0 for a in actors}
        while step < train.total_steps:
            done, _ = ray.wait(list(pending), num_returns=1)
            actor = pending.pop(done[0])
            unroll = ray.get(done[0])
            stats = learner_step(agent, optimizer, unroll, cfg)
            version += 1
            step += per_unroll
            tracker.add(unroll["episodes"], step)
            updates_since_push[id(actor)] += 1
            if updates_since_push[id(actor)] >= cfg.sync_every:
                weights = ray.put({k: v.clone() for k, v in agent.state_dict().items()})
                actor.set_weights.remote(weights, version)  # ordered before the next unroll call
                updates_since_push[id(actor)] = 0
            pending[actor.unroll.remote()] = actor
            progress.update(per_unroll)
            stop = tracker.should_stop()
            if version % 10 == 0 or step >= train.total_steps or stop:
                metrics = tracker.drain()
                metrics.update(
                    stats,
                    policy_lag=version - 1 - unroll["version"],
                    learner_updates=version,
                    steps_per_second=(step - first_step) / (time.perf_counter() - started),
                )
                run.log.metrics(step, metrics)
                progress.set_postfix(ret=f"{tracker.mean:.1f}", lag=metrics["policy_lag"])
            if save_due(train.save_every, step, per_unroll, train.total_steps):
                run.save(step, agent, optimizer, None)
            if stop:
                break
    finally:
        ray.shutdown()
    return finish(run, {"agent": agent}, tracker, step, optimizer)
