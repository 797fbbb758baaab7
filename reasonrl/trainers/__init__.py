"""LLM trainers: GRPO, PPO, DPO, SFT and distillation loops built on reasonrl.losses, rollout and rewards."""

from __future__ import annotations


def train(recipe):
    """Validate the recipe (before any model loads or any file changes), then run its
    algorithm; returns the finished Run."""
    from reasonrl.trainers.validate import validate

    validate(recipe)
    if recipe.algorithm == "grpo":
        from reasonrl.trainers.grpo import train_grpo

        return train_grpo(recipe)
    if recipe.algorithm == "ppo":
        from reasonrl.trainers.ppo import train_ppo

        return train_ppo(recipe)
    if recipe.algorithm == "dpo":
        from reasonrl.trainers.dpo import train_dpo

        return train_dpo(recipe)
    if recipe.algorithm == "sft":
        from reasonrl.trainers.sft import train_sft

        return train_sft(recipe)
    if recipe.algorithm == "distill":
        from reasonrl.trainers.distill import train_distill

        return train_distill(recipe)
    raise ValueError(f"unknown algorithm {recipe.algorithm!r}")
