"""Gymnasium control agents on reasonrl.losses: PPO (CartPole), IMPALA with V-trace on Ray
actors (CartPole), SAC (Pendulum), MuZero with batched tree search and STORM's transformer world model
(CartPole).
``reasonrl control recipes/control/<name>.yaml``."""

from __future__ import annotations


def train_control(recipe) -> dict:
    from reasonrl.control.envs import check_spaces

    check_spaces(recipe)
    if recipe.algorithm == "ppo":
        from reasonrl.control.ppo import train_ppo_agent

        return train_ppo_agent(recipe)
    if recipe.algorithm == "impala":
        from reasonrl.control.impala import train_impala_agent

        return train_impala_agent(recipe)
    if recipe.algorithm == "muzero":
        from reasonrl.control.muzero import train_muzero_agent

        return train_muzero_agent(recipe)
    if recipe.algorithm == "storm":
        from reasonrl.control.storm import train_storm_agent

        return train_storm_agent(recipe)
    if recipe.algorithm == "sac":
        from reasonrl.control.sac import train_sac_agent

        return train_sac_agent(recipe)
    raise ValueError(f"unknown control algorithm {recipe.algorithm!r}")
