"""GSM8K evaluation speed and agreement: `reasonrl eval` vs lm-evaluation-harness (HF backend).

Same model (the embedded SmolLM2-135M-Instruct folder), the same first 100 GSM8K test
questions, 5-shot prompts (checked identical), greedy decoding, stop at "Question:".
lm-eval runs its `gsm8k` task (its own YAML, pointed at the local files) with the HF
backend in float32 on the CPU; reasonrl runs its vLLM engine in float32 (the same
numerics, so the greedy tokens can agree) and, for reference, in bfloat16.
Each side runs as its own command; wall-clock includes model loading.
Target (issue 7): >= 3x faster, with equal per-item scores.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
LIMIT = int(os.environ.get("BENCH_EVAL_LIMIT", 100))


def data_folder() -> Path:
    local = ROOT.parent / "shared" / "data" / "gsm8k"
    if (local / "test.jsonl").exists():
        return local
    from reasonrl.data import generate, write_jsonl

    folder = Path(tempfile.mkdtemp())
    write_jsonl(generate(200, (1, 4), seed=5), folder / "train.jsonl")
    (folder / "test.jsonl").write_text((ROOT / "data" / "synthetic_gsm8k.jsonl").read_text())
    return folder


def lm_eval_task(folder: Path) -> Path:
    import lm_eval

    config = yaml.safe_load((Path(lm_eval.__file__).parent / "tasks/gsm8k/gsm8k.yaml").read_text())
    config.pop("tag", None)
    config.pop("dataset_name", None)
    config.update(
        task="gsm8k_local",
        dataset_path="json",
        dataset_kwargs={
            "data_files": {"train": str(folder / "train.jsonl"), "test": str(folder / "test.jsonl")}
        },
    )
    tasks = Path(tempfile.mkdtemp())
    (tasks / "gsm8k_local.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return tasks


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(
        command,
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"},
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{command[:4]} failed:\n{proc.stderr[-4000:]}")
    return time.perf_counter() - start


def lm_eval_items(output: Path) -> dict[int, dict]:
    items: dict[int, dict] = {}
    for path in output.rglob("samples_gsm8k_local_*.jsonl"):
        for line in path.read_text().splitlines():
            record = json.loads(line)
            item = items.setdefault(record["doc_id"], {"completion": record["resps"][0][0]})
            item[record["filter"]] = float(record["exact_match"])
    return items


def main() -> None:
    from reasonrl.models import embedded_model_dir
    from tests.benchmarks.common import save, table

    folder, model_dir = data_folder(), embedded_model_dir()
    work = Path(tempfile.mkdtemp())
    lm_eval_seconds = timed(
        [
            sys.executable,
            "-m",
            "lm_eval",
            "--model",
            "hf",
            "--model_args",
            f"pretrained={model_dir},dtype=float32",
            "--device",
            "cpu",
            "--tasks",
            "gsm8k_local",
            "--include_path",
            str(lm_eval_task(folder)),
            "--limit",
            str(LIMIT),
            "--batch_size",
            "16",
            "--log_samples",
            "--output_path",
            str(work / "lm_eval"),
        ]
    )
    ours = {}
    for dtype in ("float32", "bfloat16"):
        out = work / f"reasonrl-{dtype}"
        seconds = timed(
            [
                sys.executable,
                "-m",
                "reasonrl",
                "eval",
                "--data",
                str(folder / "test.jsonl"),
                "--limit",
                str(LIMIT),
                "--dtype",
                dtype,
                "--output",
                str(out),
                "--no-progress",
            ]
        )
        ours[dtype] = (seconds, out)
    theirs = lm_eval_items(work / "lm_eval")
    rows, results = [], {"lm_eval_hf_fp32": {"seconds": lm_eval_seconds}}
    n = len(theirs)
    for flt in ("strict-match", "flexible-extract"):
        results["lm_eval_hf_fp32"][flt] = sum(v[flt] for v in theirs.values()) / n
    rows.append(
        {
            "side": "lm-eval HF fp32",
            "wall s": f"{lm_eval_seconds:.1f}",
            "speed-up": "1.00x",
            "strict": f"{results['lm_eval_hf_fp32']['strict-match']:.3f}",
            "flexible": f"{results['lm_eval_hf_fp32']['flexible-extract']:.3f}",
            "items equal": "-",
            "completions equal": "-",
        }
    )
    for dtype, (seconds, out) in ours.items():
        items = [json.loads(line) for line in (out / "items.jsonl").read_text().splitlines()]
        equal = sum(
            theirs[i]["strict-match"] == float(it["strict_correct"][0])
            and theirs[i]["flexible-extract"] == float(it["flexible_correct"][0])
            for i, it in enumerate(items)
        )
        same_text = sum(theirs[i]["completion"] == it["completions"][0] for i, it in enumerate(items))
        summary = json.loads((out / "summary.json").read_text())["metrics"]
        results[f"reasonrl_vllm_{dtype}"] = {
            "seconds": seconds,
            "items_equal": equal,
            "completions_equal": same_text,
            "strict-match": summary["exact_match,strict-match"]["value"],
            "flexible-extract": summary["exact_match,flexible-extract"]["value"],
        }
        rows.append(
            {
                "side": f"reasonrl vLLM {dtype}",
                "wall s": f"{seconds:.1f}",
                "speed-up": f"{lm_eval_seconds / seconds:.2f}x",
                "strict": f"{summary['exact_match,strict-match']['value']:.3f}",
                "flexible": f"{summary['exact_match,flexible-extract']['value']:.3f}",
                "items equal": f"{equal}/{n}",
                "completions equal": f"{same_text}/{n}",
            }
        )
    table(rows)
    print(f"{n} questions from {folder}; target: >= 3x faster with equal per-item scores")
    save("eval_vs_lm_eval", {"n": n, "data": str(folder), "results": results})


if __name__ == "__main__":
    main()
