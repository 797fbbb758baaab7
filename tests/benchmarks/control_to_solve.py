"""CartPole-v1 to a 20-episode mean of 475: environment steps and wall time, model-based
vs model-free, one run.

Sides: reasonrl's STORM and MuZero recipes, reasonrl's PPO recipe, and CleanRL's ppo.py
(unmodified, over the gym shim; ``CLEANRL_PPO`` as in ``ppo_vs_cleanrl``, skipped when
absent). Each runs until solved or its budget (``stop_when_solved``; CleanRL runs its
500k steps and is read off its log). Seeds ``BENCH_SOLVE_SEEDS`` (default 1). LightZero's
MuZero is on PyPI (LightZero 0.2.0) but not installed: it brings DI-engine and its own
torch pins, which this environment's torch 2.13 CPU build does not meet; not compared.
Sample efficiency is why the model-based agents exist: fewer real steps, more compute each.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SEEDS = [int(x) for x in os.environ.get("BENCH_SOLVE_SEEDS", "1").split(",")]
RECIPES = {
    "reasonrl STORM": ("recipes/control/storm-cartpole.yaml", 30_000),
    "reasonrl MuZero": ("recipes/control/muzero-cartpole.yaml", 30_000),
    "reasonrl PPO": ("recipes/control/ppo-cartpole.yaml", 150_000),
}


def run_recipe(recipe: str, budget: int, seed: int, work: Path) -> dict:
    out = work / f"{Path(recipe).stem}-{seed}"
    flags = ["--seed", str(seed), "--total_steps", str(budget), "--stop_when_solved", "true"]
    flags += ["--output_dir", str(out), "--progress", "false", "--report_to", "none"]
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "reasonrl", "control", recipe, *flags],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{recipe} failed:\n{proc.stderr[-3000:]}")
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    return {
        "solved_at": summary["solved_at"],
        "steps": summary["steps"],
        "wall_seconds": time.perf_counter() - start,
    }


def main() -> None:
    from tests.benchmarks.common import save, table
    from tests.benchmarks.ppo_vs_cleanrl import CLEANRL, run_cleanrl

    work = Path(tempfile.mkdtemp())
    results: dict[str, dict[int, dict]] = {}
    for seed in SEEDS:
        for side, (recipe, budget) in RECIPES.items():
            results.setdefault(side, {})[seed] = run_recipe(recipe, budget, seed, work)
        if CLEANRL.exists():
            r = run_cleanrl(work, seed)
            results.setdefault("CleanRL ppo.py", {})[seed] = {
                "solved_at": r["solved_at"],
                "steps": 500_000,
                "wall_seconds": r["wall_seconds"],
            }
    if not CLEANRL.exists():
        print(f"CleanRL's ppo.py not found at {CLEANRL} (CLEANRL_PPO): its column is left out")
    print("\nCartPole-v1 to a 20-episode mean of 475:")
    table(
        [
            {
                "side": side,
                "seed": seed,
                "solved at (env steps)": str(r["solved_at"]),
                "steps run": r["steps"],
                "wall s": f"{r['wall_seconds']:.0f}",
            }
            for side, runs in results.items()
            for seed, r in runs.items()
        ]
    )
    save("control_to_solve", {"results": results, "seeds": SEEDS})


if __name__ == "__main__":
    main()
