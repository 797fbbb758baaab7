"""PPO on CartPole-v1: reasonrl's agent vs CleanRL's ppo.py, same hyper-parameters, one run.

CleanRL's ppo.py is not on PyPI in a form that runs with Gymnasium (the PyPI package
is the 2021 gym version), and its code is not part of this repository. Point
``CLEANRL_PPO`` at its ppo.py (default: ``../cleanrl/cleanrl/ppo.py`` beside the
project); it runs unmodified, over a thin classic-gym shim onto Gymnasium
(tests/benchmarks/gym_shim). The version that runs here is the last with argparse and the
classic gym API, commit cf20043b (2023; ``git show cf20043b:cleanrl/ppo.py``); later ones
read Gymnasium 0.29's ``final_info``, which Gymnasium 1.x no longer returns, so they log
no episodes. Both sides use CleanRL's defaults: 4 environments x 128
steps, lr 2.5e-4 annealed, 4 epochs x 4 minibatches, clip 0.2, entropy 0.01, 500k
steps, seeds 1, 2, 3 (``BENCH_PPO_SEEDS``). Reported per seed: environment steps per
second, and the step at which the mean return of the last 20 episodes first reaches 475;
the ratio is of the medians.
Target (issue 8): reasonrl >= 2x CleanRL's steps per second, no worse sample efficiency.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import deque
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STEPS = int(os.environ.get("BENCH_PPO_STEPS", 500_000))
SEEDS = [int(x) for x in os.environ.get("BENCH_PPO_SEEDS", "1,2,3").split(",")]
CLEANRL = Path(os.environ.get("CLEANRL_PPO", ROOT.parent / "cleanrl" / "cleanrl" / "ppo.py"))


def solved_at(points: list[tuple[int, float]], window: int = 20, threshold: float = 475.0) -> int | None:
    recent = deque(maxlen=window)
    for step, ret in points:
        recent.append(ret)
        if len(recent) == window and sum(recent) / window >= threshold:
            return step
    return None


def run_cleanrl(work: Path, seed: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests" / "benchmarks" / "gym_shim")}
    command = [
        sys.executable,
        str(CLEANRL),
        "--seed",
        str(seed),
        "--total-timesteps",
        str(STEPS),
        "--cuda",
        "False",
    ]
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=work, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"CleanRL ppo.py failed:\n{proc.stderr[-3000:]}")
    points = [
        (int(s), float(r)) for s, r in re.findall(r"global_step=(\d+), episodic_return=([\d.]+)", proc.stdout)
    ]
    sps = [int(x) for x in re.findall(r"SPS: (\d+)", proc.stdout)]
    return {
        "steps_per_second": sps[-1],
        "wall_seconds": seconds,
        "solved_at": solved_at(points),
        "episodes": len(points),
    }


def run_reasonrl(work: Path, seed: int) -> dict:
    out = work / f"reasonrl-{seed}"
    overrides = [
        "--seed",
        str(seed),
        "--total_steps",
        str(STEPS),
        "--learning_rate",
        "2.5e-4",
        "--output_dir",
        str(out),
        "--solve_threshold",
        "475",
        "--solve_window",
        "20",
        "--progress",
        "false",
        "--report_to",
        "none",
    ]
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "reasonrl", "control", "recipes/control/ppo-cartpole.yaml", *overrides],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"reasonrl control failed:\n{proc.stderr[-3000:]}")
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    last = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    return {
        "steps_per_second": last["steps_per_second"],
        "wall_seconds": seconds,
        "solved_at": summary["solved_at"],
        "episodes": summary["episodes"],
    }


def main() -> None:
    from tests.benchmarks.common import save, table

    if not CLEANRL.exists():
        print(f"CleanRL's ppo.py not found at {CLEANRL}: set CLEANRL_PPO=/path/to/cleanrl/ppo.py; skipped")
        return
    work = Path(tempfile.mkdtemp())
    results = {"cleanrl": {}, "reasonrl": {}}
    for seed in SEEDS:  # alternate the sides so machine noise hits both alike
        results["cleanrl"][seed] = run_cleanrl(work, seed)
        results["reasonrl"][seed] = run_reasonrl(work, seed)
    rows = [
        {
            "side": side,
            "seed": seed,
            "steps/s": f"{r['steps_per_second']:.0f}",
            "475 reached at": str(r["solved_at"]),
            "episodes": r["episodes"],
            "wall s": f"{r['wall_seconds']:.1f}",
        }
        for side, runs in results.items()
        for seed, r in runs.items()
    ]
    table(rows)
    median_sps = {
        side: statistics.median(r["steps_per_second"] for r in runs.values())
        for side, runs in results.items()
    }
    solved = {side: [r["solved_at"] for r in runs.values()] for side, runs in results.items()}
    speed = median_sps["reasonrl"] / median_sps["cleanrl"]
    print(
        f"reasonrl / CleanRL steps per second (medians): {speed:.2f}x (target >= 2x); "
        f"475 reached at {solved['reasonrl']} vs {solved['cleanrl']}; {STEPS} steps, seeds {SEEDS}"
    )
    save(
        "ppo_vs_cleanrl",
        {
            "results": results,
            "median_steps_per_second": median_sps,
            "speed_ratio": speed,
            "cleanrl_file": str(CLEANRL),
        },
    )


if __name__ == "__main__":
    main()
