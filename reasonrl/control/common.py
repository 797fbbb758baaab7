"""What every control agent does at the start and the end of a run."""

from __future__ import annotations

import logging
import random
import time

import numpy as np
import torch
from safetensors.torch import save_file

from reasonrl.control.envs import ReturnTracker
from reasonrl.runtime import Run, RunConfig

log = logging.getLogger("reasonrl")


def start(recipe) -> Run:
    torch.set_num_threads(recipe.train.threads)
    random.seed(recipe.train.seed)
    np.random.seed(recipe.train.seed)
    torch.manual_seed(recipe.train.seed)
    # save_every counts environment steps: each agent decides when to save, not the Run
    config = RunConfig.of(recipe.train)
    return Run.start(config, record=recipe)


def save_due(save_every: int, step: int, per_iteration: int, total: int) -> bool:
    """Whether a checkpoint is due after the iteration that reached ``step`` environment
    steps (``per_iteration`` at a time): one per ``save_every`` steps, none at the end
    (``finish`` saves that one)."""
    return bool(save_every) and step % save_every < per_iteration and step < total


def log_row(run: Run, progress, tracker: ReturnTracker, step: int, metrics: dict, steps: int, since: float):
    """One metrics row at ``step``: the returns of the episodes finished since the last
    row, ``metrics``, and the speed (``steps`` taken since ``since``); the progress bar
    shows the mean return and the speed."""
    row = tracker.drain() | metrics | {"steps_per_second": steps / (time.perf_counter() - since)}
    run.log.metrics(step, row)
    progress.set_postfix(ret=f"{tracker.mean:.1f}", sps=f"{row['steps_per_second']:.0f}")


def finish(
    run: Run, modules: dict[str, torch.nn.Module], tracker: ReturnTracker, step: int, optimizers
) -> dict:
    """Save the final networks and a checkpoint, draw the return curve, and return a summary."""
    run.save(step, modules["agent"] if len(modules) == 1 else torch.nn.ModuleDict(modules), optimizers, None)
    if run.is_main:
        folder = run.output_dir / "final"
        folder.mkdir(parents=True, exist_ok=True)
        for name, module in modules.items():
            state = {k: v.detach().contiguous() for k, v in module.state_dict().items()}
            save_file(state, folder / f"{name}.safetensors")
        run.log.plot(["episode_return", f"return_mean_{tracker.window.maxlen}"], "return_curve.png", "return")
    summary = {
        "steps": step,
        "episodes": tracker.count,
        "final_return_mean": tracker.mean,
        "solved_at": tracker.solved_at,
    }
    log.info("done: %s", summary)
    run.finish()
    return summary
