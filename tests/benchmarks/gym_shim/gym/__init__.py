"""A thin shim of the classic `gym` (0.21) API over Gymnasium, for benchmarking scripts
written against it (CleanRL's ppo.py) without changing them. Only what they use:
make / seed / 4-tuple step, RecordEpisodeStatistics, and an autoresetting SyncVectorEnv."""

import types

import gymnasium
import numpy as np

spaces = gymnasium.spaces
Env = gymnasium.Env  # for the scripts' type annotations


class _Env:
    def __init__(self, env):
        self.env, self._seed = env, None
        self.action_space, self.observation_space = env.action_space, env.observation_space

    def seed(self, seed=None):
        self._seed = seed

    def reset(self):
        obs, _ = self.env.reset(seed=self._seed)
        self._seed = None
        return obs

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, reward, terminated or truncated, info

    def close(self):
        self.env.close()


class RecordEpisodeStatistics:
    def __init__(self, env):
        self.env = env
        self.action_space, self.observation_space = env.action_space, env.observation_space
        self.ret, self.length = 0.0, 0

    def seed(self, seed=None):
        self.env.seed(seed)

    def reset(self):
        self.ret, self.length = 0.0, 0
        return self.env.reset()

    def step(self, action):
        obs, reward, done, info = self.env.step(action)
        self.ret += reward
        self.length += 1
        if done:
            info = {**info, "episode": {"r": self.ret, "l": self.length}}
        return obs, reward, done, info

    def close(self):
        self.env.close()


class SyncVectorEnv:
    def __init__(self, thunks):
        self.envs = [thunk() for thunk in thunks]
        self.num_envs = len(self.envs)
        self.single_observation_space = self.envs[0].observation_space
        self.single_action_space = self.envs[0].action_space

    def reset(self):
        return np.stack([env.reset() for env in self.envs])

    def step(self, actions):
        obs, rewards, dones, infos = [], [], [], []
        for env, action in zip(self.envs, actions, strict=True):
            o, r, d, info = env.step(action)
            if d:
                info = {**info, "terminal_observation": o}
                o = env.reset()
            obs.append(o)
            rewards.append(r)
            dones.append(d)
            infos.append(info)
        return np.stack(obs), np.array(rewards), np.array(dones), infos

    def close(self):
        for env in self.envs:
            env.close()


def make(env_id, **kwargs):
    return _Env(gymnasium.make(env_id, **kwargs))


wrappers = types.SimpleNamespace(RecordEpisodeStatistics=RecordEpisodeStatistics, RecordVideo=None)
vector = types.SimpleNamespace(SyncVectorEnv=SyncVectorEnv)
