"""Run the real CLI in a subprocess, and read what a run leaves behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# the flags every test run passes: no progress bar, no tracker
QUIET = ("--progress", "false", "--report_to", "none")
# measurements of the machine, not of the run: they differ between identical runs
TIMING = ("time/", "tokens_per_second", "memory/")


def cli(*args: str, timeout: float = 900, env: dict | None = None) -> subprocess.CompletedProcess:
    """``python -m reasonrl ARGS`` from the repository root; fails the test on a non-zero exit."""
    full_env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", **(env or {})}
    proc = subprocess.run(
        [sys.executable, "-m", "reasonrl", *args],
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise AssertionError(f"reasonrl {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return proc


def metrics(output_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (Path(output_dir) / "metrics.jsonl").read_text().splitlines()]


def without_timing(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if not k.startswith(TIMING)} for r in rows]


def mean(rows: list[dict], key: str) -> float:
    return sum(r[key] for r in rows) / len(rows)
