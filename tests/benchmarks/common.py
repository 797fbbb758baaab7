"""Helpers shared by the benchmarks: output folder, peak memory, table printing."""

from __future__ import annotations

import json
import platform
import resource
import time
from pathlib import Path

OUT = Path(__file__).resolve().parents[2] / "outputs" / "bench"


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (MiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def save(name: str, results: dict) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    results = {
        "benchmark": name,
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": platform.node(),
        **results,
    }
    path = OUT / f"{name}.json"
    path.write_text(json.dumps(results, indent=2))
    print(f"results written to {path}")
    return path


def table(rows: list[dict]) -> None:
    keys = list(rows[0])
    widths = {k: max(len(k), *(len(f"{r[k]}") for r in rows)) for k in keys}
    print("  ".join(k.ljust(widths[k]) for k in keys))
    for r in rows:
        print("  ".join(f"{r[k]}".ljust(widths[k]) for k in keys))
