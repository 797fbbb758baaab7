"""PPO for discrete-action Gymnasium tasks (CleanRL's ppo.py, with reasonrl.losses).

One update: roll out ``num_steps`` in each of ``num_envs`` environments; compute GAE
advantages and λ-returns; ``update_epochs`` passes of ``num_minibatches`` minibatches of
the clipped surrogate, clipped value loss and entropy bonus. The advantage function
and ``ppo_loss`` are the very ones the LLM PPO trainer calls.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from reasonrl.control.common import finish, log_row, save_due, start
from reasonrl.control.envs import ReturnTracker, final_observations, finished_episodes, make_vector_env
from reasonrl.control.networks import ActingCopy, DiscreteActorCritic, sample_categorical
from reasonrl.losses import generalized_advantage_estimation, ppo_loss, token_logprobs


def train_ppo_agent(recipe) -> dict:
    cfg, train = recipe.ppo, recipe.train
    run = start(recipe)
    envs, obs = make_vector_env(recipe.env_id, cfg.num_envs, train.seed)
    obs_dim, n_actions = envs.single_observation_space.shape[0], envs.single_action_space.n
    agent = DiscreteActorCritic(obs_dim, n_actions, cfg.hidden)
    optimizer = torch.optim.Adam(agent.parameters(), lr=cfg.learning_rate, eps=1e-5, fused=True)
    T, N = cfg.num_steps, cfg.num_envs
    batch = T * N
    num_updates = train.total_steps // batch
    first = run.resume(agent, optimizer, None) // batch
    tracker = ReturnTracker(train.solve_window, train.solve_threshold, train.stop_when_solved)

    # the rollout lives in numpy (environments speak numpy) and crosses to torch once per update
    obs_buf = np.zeros((T, N, obs_dim), np.float32)
    logits_buf = np.zeros((T, N, n_actions), np.float32)
    act_buf = np.zeros((T, N), np.int64)
    rew_buf, done_buf, val_buf = (np.zeros((T, N), np.float32) for _ in range(3))
    progress = run.progress(first * batch, num_updates * batch, f"ppo {recipe.env_id}")
    started, step = time.perf_counter(), first * batch
    for update in range(first, num_updates):
        if cfg.anneal_lr:
            optimizer.param_groups[0]["lr"] = (1.0 - update / num_updates) * cfg.learning_rate
        policy = ActingCopy(agent)
        uniforms = torch.rand(T, N, dtype=torch.float64).numpy()  # torch's seeded generator
        for t in range(T):
            logits, value = policy.logits(obs), policy.value(obs)
            action = sample_categorical(logits, uniforms[t])
            next_obs, reward, terminated, truncated, info = envs.step(action)
            cut = truncated & ~terminated
            if cfg.bootstrap_truncated and cut.any():  # a time limit is not a terminal state
                reward = reward.astype(np.float32)  # a copy: the env may reuse its array
                reward[cut] += cfg.gamma * policy.value(final_observations(info, cut))
            obs_buf[t], logits_buf[t], act_buf[t], val_buf[t] = obs, logits, action, value
            rew_buf[t], done_buf[t] = reward, terminated | truncated
            obs = next_obs
            tracker.add(finished_episodes(info), (update * T + t + 1) * N)

        rollout = [torch.from_numpy(x) for x in (obs_buf, logits_buf, act_buf, rew_buf, done_buf, val_buf)]
        b_obs, logits, b_act, rewards, dones, values = rollout
        old_logp = token_logprobs(logits, b_act)
        bootstrap = torch.from_numpy(policy.value(obs))
        advantages, returns = generalized_advantage_estimation(
            rewards, values, dones, bootstrap, cfg.gamma, cfg.gae_lambda
        )
        b_obs, b_act = b_obs.reshape(batch, obs_dim), b_act.reshape(batch)
        b_logp, b_adv, b_ret, b_val = (x.reshape(batch) for x in (old_logp, advantages, returns, values))
        stats = []
        for _ in range(cfg.update_epochs):
            for rows in torch.randperm(batch).chunk(cfg.num_minibatches):
                new_logp, entropy, new_value = agent.evaluate(b_obs[rows], b_act[rows])
                adv = b_adv[rows]
                if cfg.norm_adv:
                    adv = (adv - adv.mean()) / (adv.std() + 1e-8)
                out = ppo_loss(
                    new_logp,
                    b_logp[rows],
                    adv,
                    new_value,
                    b_val[rows],
                    b_ret[rows],
                    entropy,
                    clip_coef=cfg.clip_coef,
                    vf_coef=cfg.vf_coef,
                    ent_coef=cfg.ent_coef,
                    value_clip=cfg.clip_coef if cfg.clip_vloss else None,
                )
                optimizer.zero_grad()
                out.loss.backward()
                torch.nn.utils.clip_grad_norm_(agent.parameters(), cfg.max_grad_norm)
                optimizer.step()
                stats.append(torch.stack([out.policy_loss, out.value_loss, out.entropy, out.clip_fraction]))
        pg, vl, ent, clipped = torch.stack(stats).mean(0).tolist()

        step = (update + 1) * batch
        progress.update(batch)
        explained = 1 - (b_ret - b_val).var() / b_ret.var().clamp(min=1e-8)
        metrics = dict(
            policy_loss=pg,
            value_loss=vl,
            entropy=ent,
            clip_fraction=clipped,
            explained_variance=float(explained),
            learning_rate=optimizer.param_groups[0]["lr"],
        )
        log_row(run, progress, tracker, step, metrics, step - first * batch, started)
        if save_due(train.save_every, step, batch, num_updates * batch):
            run.save(step, agent, optimizer, None)
        if tracker.should_stop():
            break
    envs.close()
    return finish(run, {"agent": agent}, tracker, step, optimizer)
