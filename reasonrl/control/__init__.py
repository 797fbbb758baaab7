"""Gymnasium control agents on reasonrl.losses: PPO (CartPole), IMPALA with V-trace on Ray
actors (CartPole), SAC (Pendulum). ``reasonrl control recipes/control/<name>.yaml``."""

from __future__ import annotations


def train_control(recipe) -> dict:
    if recipe.algorithm == "ppo":
        from reasonrl.control.ppo import train_ppo_agent

        return train_ppo_agent(recipe)
    if recipe.algorithm == "impala":
        from reasonrl.control.impala import train_impala_agent

        return train_impala_agent(recipe)
    if recipe.algorithm == "sac":
        from reasonrl.control.sac import train_sac_agent

        return train_sac_agent(recipe)
    raise ValueError(f"unknown control algorithm {recipe.algorithm!r}")
