"""Helpers shared by the benchmarks: output folder, peak memory, table printing."""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

OUT = Path(__file__).resolve().parents[2] / "outputs" / "bench"


def machine_kind() -> str:
    """The CPU and its fastest matmul extension, e.g. "AMD EPYC, AVX512-BF16, 2 cores"
    (bf16 is native with AMX or AVX512-BF16, emulated with AVX2 only)."""
    from reasonrl.models.precision import cpu_kind

    name = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")),
        platform.processor() or "CPU",
    )  # fmt: skip
    return f"{name}, {cpu_kind()}, {os.cpu_count()} cores"


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (MiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def stock_model(name: str, dtype: str = "float32"):
    """``(model, tokenizer)`` as a TRL user loads them: transformers' own classes, attention
    and norms (``reasonrl.models.load`` swaps in its CPU training kernels), from the same
    local folder."""
    import torch
    from transformers import AutoModelForCausalLM

    from reasonrl.models import load_tokenizer, model_folder

    folder = model_folder(name)
    return AutoModelForCausalLM.from_pretrained(folder, dtype=getattr(torch, dtype)), load_tokenizer(folder)


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


def run_side(module: str, side: str, *flags: str) -> dict:
    """One side of a "reasonrl vs X" benchmark in its own process (its peak memory is its
    own): ``python -m MODULE --side SIDE FLAGS``, whose last stdout line is its JSON."""
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", module, "--side", side, *flags],
        cwd=OUT.parents[1],
        capture_output=True,
        text=True,
        env={**os.environ, "TOKENIZERS_PARALLELISM": "false"},
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{side} side failed:\n{proc.stderr[-4000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["wall_seconds"] = time.perf_counter() - start
    return result


def side_main(side: str, run) -> None:
    """The body of ``--side SIDE``: reasonrl on the allocator its command picks, the other
    side on the system's, as each runs for its users; prints ``run()``'s result as JSON with
    the peak memory and the allocator."""
    from reasonrl import allocator

    if side != "trl":
        allocator.preload()  # as the reasonrl command does first
    result = run()
    result["peak_rss_mib"] = peak_rss_mib()
    result["allocator"] = allocator.loaded()
    print(json.dumps(result))
