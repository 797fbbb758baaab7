"""PPO for discrete-action Gymnasium tasks (CleanRL's ppo.py, with reasonrl.losses).

One update: roll out ``num_steps`` in each of ``num_envs`` environments; compute GAE
advantages and λ-returns; ``update_epochs`` passes of ``num_minibatches`` minibatches of
the clipped surrogate, clipped value loss and entropy bonus. The advantage, surrogate
and value functions are the very ones the LLM PPO trainer calls.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from reasonrl.control.common import finish, start
from reasonrl.control.envs import EpisodeLog, final_observations, finished_episodes, make_vector_env
from reasonrl.control.networks import DiscreteActorCritic
from reasonrl.losses import clipped_surrogate, generalized_advantage_estimation, value_loss


def train_ppo_agent(recipe) -> dict:
    cfg, train = recipe.ppo, recipe.train
    run = start(recipe)
    envs, obs = make_vector_env(recipe.env_id, cfg.num_envs, train.seed)
    obs_dim, n_actions = envs.single_observation_space.shape[0], envs.single_action_space.n
    agent = DiscreteActorCritic(obs_dim, n_actions, cfg.hidden)
    optimizer = torch.optim.Adam(agent.parameters(), lr=cfg.learning_rate, eps=1e-5)
    T, N = cfg.num_steps, cfg.num_envs
    batch = T * N
    num_updates = train.total_steps // batch
    first = run.resume(agent, optimizer, None) // batch
    episodes = EpisodeLog(train.solve_window, train.solve_threshold)

    obs_buf = torch.zeros(T, N, obs_dim)
    act_buf = torch.zeros(T, N, dtype=torch.long)
    logp_buf, rew_buf, done_buf, val_buf = (torch.zeros(T, N) for _ in range(4))
    obs = torch.as_tensor(obs, dtype=torch.float32)
    progress = run.progress(first * batch, num_updates * batch, f"ppo {recipe.env_id}")
    started = time.perf_counter()
    for update in range(first, num_updates):
        if cfg.anneal_lr:
            optimizer.param_groups[0]["lr"] = (1.0 - update / num_updates) * cfg.learning_rate
        for t in range(T):
            with torch.inference_mode():
                action, logp, value = agent.act(obs)
            next_obs, reward, terminated, truncated, info = envs.step(action.numpy())
            done = terminated | truncated
            reward = torch.as_tensor(reward, dtype=torch.float32)
            cut = truncated & ~terminated
            if cfg.bootstrap_truncated and cut.any():  # a time limit is not a terminal state
                final = final_observations(info, cut)
                with torch.inference_mode():
                    reward[torch.as_tensor(np.flatnonzero(cut))] += cfg.gamma * agent.value(
                        torch.as_tensor(final, dtype=torch.float32)
                    )
            obs_buf[t], act_buf[t], logp_buf[t], val_buf[t] = obs, action, logp, value
            rew_buf[t], done_buf[t] = reward, torch.as_tensor(done, dtype=torch.float32)
            obs = torch.as_tensor(next_obs, dtype=torch.float32)
            episodes.add(finished_episodes(info), (update * T + t + 1) * N)

        with torch.no_grad():
            advantages, returns = generalized_advantage_estimation(
                rew_buf, val_buf, done_buf, agent.value(obs), cfg.gamma, cfg.gae_lambda
            )
        b_obs, b_act = obs_buf.reshape(batch, obs_dim), act_buf.reshape(batch)
        b_logp, b_adv, b_ret, b_val = (x.reshape(batch) for x in (logp_buf, advantages, returns, val_buf))
        clipped, losses = [], []
        for _ in range(cfg.update_epochs):
            for rows in torch.randperm(batch).chunk(cfg.num_minibatches):
                new_logp, entropy, new_value = agent.evaluate(b_obs[rows], b_act[rows])
                adv = b_adv[rows]
                if cfg.norm_adv:
                    adv = (adv - adv.mean()) / (adv.std() + 1e-8)
                surrogate = clipped_surrogate(new_logp, b_logp[rows], adv, cfg.clip_coef)
                v_loss = value_loss(
                    new_value, b_ret[rows], b_val[rows], cfg.clip_coef if cfg.clip_vloss else None
                )
                loss = surrogate.loss.mean() - cfg.ent_coef * entropy.mean() + cfg.vf_coef * v_loss.mean()
                optimizer.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(agent.parameters(), cfg.max_grad_norm)
                optimizer.step()
                clipped.append(surrogate.is_clipped.float().mean().item())
                losses.append((surrogate.loss.mean().item(), v_loss.mean().item(), entropy.mean().item()))

        step = (update + 1) * batch
        progress.update(batch)
        metrics = episodes.drain()
        pg, vl, ent = np.mean(losses, axis=0)
        explained = 1 - (b_ret - b_val).var() / b_ret.var().clamp(min=1e-8)
        metrics.update(
            policy_loss=pg,
            value_loss=vl,
            entropy=ent,
            clip_fraction=float(np.mean(clipped)),
            explained_variance=float(explained),
            learning_rate=optimizer.param_groups[0]["lr"],
            steps_per_second=(step - first * batch) / (time.perf_counter() - started),
        )
        run.log.metrics(step, metrics)
        progress.set_postfix(ret=f"{episodes.mean:.1f}", sps=f"{metrics['steps_per_second']:.0f}")
        if train.save_every and step % train.save_every < batch and step < num_updates * batch:
            run.save(step, agent, optimizer, None)
    envs.close()
    return finish(run, {"agent": agent}, episodes, num_updates * batch, optimizer)
