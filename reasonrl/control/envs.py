"""Vectorised Gymnasium environments with classic autoreset, and episode bookkeeping.

Autoreset is SAME_STEP: the step that ends an episode returns the first observation
of the next one (the last one is in ``info["final_obs"]``), so a rollout holds no
fake transitions and ``done_t`` means "the episode ended after step t", the
convention of reasonrl.losses.
"""

from __future__ import annotations

import logging
from collections import deque

import gymnasium as gym
import numpy as np

log = logging.getLogger("reasonrl")


# environment families whose package registers them with Gymnasium only when asked
# (Gymnasium 1.x no longer loads registration plugins by itself)
FAMILIES = {"MinAtar/": ("minatar", "minatar.gym", "register_envs"), "ALE/": ("ale-py", "ale_py", None)}


def register_family(env_id: str) -> None:
    """Register the family ``env_id`` belongs to (MinAtar, Atari); an error naming the
    package to install when it is missing."""
    import importlib

    for prefix, (package, module, function) in FAMILIES.items():
        if not env_id.startswith(prefix) or env_id in gym.registry:
            continue
        try:
            mod = importlib.import_module(module)
        except ImportError as err:
            needs = f"{prefix} environments need the {package} package: pip install {package}"
            raise gym.error.Error(needs) from err
        if function is None:
            gym.register_envs(mod)
        else:
            getattr(mod, function)()


def make_vector_env(env_id: str, num_envs: int, seed: int) -> tuple[gym.vector.VectorEnv, np.ndarray]:
    register_family(env_id)
    envs = gym.make_vec(
        env_id,
        num_envs=num_envs,
        vectorization_mode="sync",
        vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP},
    )
    envs = gym.wrappers.vector.RecordEpisodeStatistics(envs)
    obs, _ = envs.reset(seed=seed)
    envs.action_space.seed(seed)
    return envs, obs


def finished_episodes(info: dict) -> list[tuple[float, int]]:
    """(return, length) of every episode that ended in this step."""
    if "episode" not in info:
        return []
    ended = info["_episode"]
    return list(zip(info["episode"]["r"][ended].tolist(), info["episode"]["l"][ended].tolist(), strict=True))


def final_observations(info: dict, done: np.ndarray) -> np.ndarray | None:
    """The last observation of each environment whose episode ended (stacked), or None."""
    if not done.any() or "final_obs" not in info:
        return None
    return np.stack([info["final_obs"][i] for i in np.flatnonzero(done)])


class ReturnTracker:
    """Returns of finished episodes, a moving average, and when it first crossed a threshold."""

    def __init__(self, window: int, threshold: float | None, stop_when_solved: bool = False):
        self.window = deque(maxlen=window)
        self.threshold = threshold
        self.stop_when_solved = stop_when_solved
        self.solved_at: int | None = None
        self.count = 0
        self.recent: list[float] = []  # since the last call to drain()

    def add(self, episodes: list[tuple[float, int]], step: int) -> None:
        for ret, _ in episodes:
            self.window.append(ret)
            self.recent.append(ret)
            self.count += 1
            full = len(self.window) == self.window.maxlen
            if self.threshold is not None and self.solved_at is None and full and self.mean >= self.threshold:
                self.solved_at = step

    def should_stop(self) -> bool:
        """The run was asked to stop at the threshold, and the moving average has reached it."""
        if self.stop_when_solved and self.solved_at is not None:
            log.info("%s reached at step %d: stopping (stop_when_solved)", self.threshold, self.solved_at)
            return True
        return False

    @property
    def mean(self) -> float:
        return float(np.mean(self.window)) if self.window else float("nan")

    def drain(self) -> dict:
        out = {"episodes": self.count, f"return_mean_{self.window.maxlen}": self.mean}
        if self.recent:
            out["episode_return"] = float(np.mean(self.recent))
        if self.solved_at is not None:
            out["solved_at"] = self.solved_at
        self.recent = []
        return out


# what each agent's networks take: these action spaces, and observations of these ranks
# (1: a vector; 3: an [H, W, C] image)
OBSERVATION_RANKS = {"storm": (1, 3)}
ACTION_SPACES = {
    "ppo": "Discrete",
    "impala": "Discrete",
    "muzero": "Discrete",
    "storm": "Discrete",
    "sac": "Box",
}


def check_spaces(recipe) -> None:
    """The recipe's environment has spaces its agent can handle; a RecipeError naming the
    environment's spaces and the supported ones otherwise (before any training)."""
    from reasonrl.config import place

    try:
        register_family(recipe.env_id)
        env = gym.make(recipe.env_id)
    except gym.error.Error as err:
        raise place(recipe, "env_id", f"{recipe.env_id!r}: {err}") from None
    obs, act = env.observation_space, env.action_space
    env.close()
    wanted = ACTION_SPACES[recipe.algorithm]
    if type(act).__name__ != wanted:
        raise place(
            recipe,
            "env_id",
            f"{recipe.env_id} has action space {act}; {recipe.algorithm} handles {wanted} actions "
            f"(agents by action space: {ACTION_SPACES})",
        )
    ranks = OBSERVATION_RANKS.get(recipe.algorithm, (1,))
    if not (isinstance(obs, gym.spaces.Box) and len(obs.shape) in ranks):
        takes = "a flat Box (a vector)" + (" or an [H, W, C] image Box" if 3 in ranks else "")
        raise place(
            recipe, "env_id", f"{recipe.env_id} has observation space {obs}; {recipe.algorithm} takes {takes}"
        )
