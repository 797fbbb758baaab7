"""What a run leaves behind besides weights: metrics, sample completions, curves, logs.

metrics.jsonl      one JSON object per logged step
completions.jsonl  a few sampled completions per step, with their rewards
tensorboard/       accelerate's trackers (tensorboard, or wandb when asked)
reward_curve.png   reward per step with a moving average, redrawn at the end
train.log          the console log
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path

log = logging.getLogger("reasonrl")


def read_lines(path: Path) -> list[str]:
    """The JSON lines of ``path`` that parse; a torn one (a kill mid-write) is dropped with a warning."""
    kept = []
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            json.loads(line)
        except ValueError:
            log.warning("%s:%d: dropping a torn line (%d characters)", path, number, len(line))
            continue
        kept.append(line)
    return kept


def moving_average(values: list[float], window: int) -> list[float]:
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


class RunLog:
    def __init__(self, output_dir: Path, accelerator=None, is_main: bool = True):
        self.dir = Path(output_dir)
        self.accelerator = accelerator
        self.is_main = is_main
        self.metrics_path = self.dir / "metrics.jsonl"
        self.completions_path = self.dir / "completions.jsonl"
        if is_main:
            self.dir.mkdir(parents=True, exist_ok=True)
            handler = logging.FileHandler(self.dir / "train.log")
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
            logging.getLogger().addHandler(handler)

    def truncate_after(self, step: int) -> None:
        """On resume: forget what was logged after the checkpoint's step (and any line a
        kill tore in half, with a warning)."""
        if not self.is_main:
            return
        for path in (self.metrics_path, self.completions_path):
            if path.exists():
                kept = [line for line in read_lines(path) if json.loads(line)["step"] <= step]
                tmp = path.with_name(f".{path.name}.tmp")
                tmp.write_text("".join(line + "\n" for line in kept))
                os.replace(tmp, path)

    def metrics(self, step: int, values: dict) -> None:
        if not self.is_main:
            return
        clean = {k: (float(v) if isinstance(v, int | float) else v) for k, v in values.items()}
        with open(self.metrics_path, "a") as f:
            f.write(json.dumps({"step": step, **clean}) + "\n")
        if self.accelerator is not None and self.accelerator.trackers:
            scalars = {k: v for k, v in clean.items() if isinstance(v, float) and math.isfinite(v)}
            self.accelerator.log(scalars, step=step)

    def completions(self, step: int, rows: list[dict]) -> None:
        if not self.is_main or not rows:
            return
        with open(self.completions_path, "a") as f:
            for row in rows:
                f.write(json.dumps({"step": step, **row}) + "\n")

    def read_metrics(self) -> list[dict]:
        if not self.metrics_path.exists():
            return []
        return [json.loads(line) for line in read_lines(self.metrics_path)]

    def plot(self, keys: list[str], filename: str = "reward_curve.png", title: str = "reward") -> Path | None:
        """Plot ``keys`` from metrics.jsonl against step, each with a moving average."""
        if not self.is_main:
            return None
        rows = self.read_metrics()
        if not rows:
            return None
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4))
        for key in keys:
            points = [(r["step"], r[key]) for r in rows if isinstance(r.get(key), int | float)]
            if not points:
                continue
            steps, values = zip(*points, strict=True)
            line = ax.plot(steps, values, alpha=0.35, linewidth=1)[0]
            window = max(1, len(values) // 10)
            ax.plot(
                steps,
                moving_average(list(values), window),
                color=line.get_color(),
                linewidth=2,
                label=f"{key} (moving avg, {window})",
            )
        ax.set_xlabel("step")
        ax.set_ylabel(title)
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=8)
        fig.tight_layout()
        path = self.dir / filename
        fig.savefig(path, dpi=120)
        plt.close(fig)
        return path
