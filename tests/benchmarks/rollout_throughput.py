"""Rollout tokens per second: vLLM engine vs HF engine, SmolLM2-135M, one run.

Both engines get the same chat prompt and sample N completions of exactly 128 new
tokens (eos ignored), temperature 1.0, and return token ids and sampling log-probs.
vLLM runs its fast type on this machine (``auto``: bf16 with AMX/AVX512-BF16, else
fp32); HF runs bf16 and fp32, and the ratio is taken against each and the faster.
Each configuration is warmed up once, then timed. Target (issue 4): vLLM >= 2x HF at 128 completions.
"""

from __future__ import annotations

import gc
import os
import time

import torch

from reasonrl.models import load, load_tokenizer, resolve
from reasonrl.models.precision import resolve_dtype
from reasonrl.rollout import SamplingConfig, make_engine
from tests.benchmarks.common import save, table

PROMPT = [
    {
        "role": "user",
        "content": "A baker fills 14 trays with 9 rolls each and sells all but 17 rolls. "
        "How many rolls does the baker sell? Think step by step.",
    }
]
SIZES = [int(n) for n in os.environ.get("BENCH_ROLLOUT_SIZES", "32,128").split(",")]
TOKENS = 128


def measure(engine, n: int) -> float:
    sampling = SamplingConfig(n=n, temperature=1.0, max_tokens=TOKENS, ignore_eos=True)
    engine.generate([PROMPT], SamplingConfig(n=2, max_tokens=8))  # warm-up
    start = time.perf_counter()
    batch = engine.generate([PROMPT], sampling)
    seconds = time.perf_counter() - start
    tokens = int(batch.completion_lengths.sum())
    assert tokens == n * TOKENS, tokens
    return tokens / seconds


def main() -> None:
    name = "smollm2-135m-instruct"
    rows, results = [], {}
    fast = resolve_dtype("auto")  # vLLM's fast type here: bf16 only where it is native
    engine = make_engine(
        "vllm",
        None,
        load_tokenizer(name),
        model_dir=str(resolve(name)),
        dtype=fast,
        max_model_len=512,
        kv_cache_gib=2,
    )
    for n in SIZES:
        results[f"vllm_{n}"] = measure(engine, n)
    del engine
    gc.collect()
    for dtype in ("bfloat16", "float32"):
        model, tokenizer = load(name, dtype=dtype)
        hf = make_engine("hf", model, tokenizer)
        hf.generation_batch = max(SIZES)
        for n in SIZES:
            results[f"hf_{dtype}_{n}"] = measure(hf, n)
        del model, hf
        gc.collect()
    for n in SIZES:
        v, hb, hf32 = results[f"vllm_{n}"], results[f"hf_bfloat16_{n}"], results[f"hf_float32_{n}"]
        rows.append(
            {
                "completions": n,
                f"vLLM {fast} tok/s": f"{v:.0f}",
                "HF bf16 tok/s": f"{hb:.0f}",
                "HF fp32 tok/s": f"{hf32:.0f}",
                "vLLM/HF bf16": f"{v / hb:.2f}x",
                "vLLM/HF fp32": f"{v / hf32:.2f}x",
                "vLLM/best HF": f"{v / max(hb, hf32):.2f}x",
            }
        )
    table(rows)
    print(
        f"{torch.cpu.get_capabilities().get('cpu_name')}, threads {torch.get_num_threads()}, "
        f"vLLM {fast}; target: vLLM >= 2x HF at 128 completions"
    )
    save(
        "rollout_throughput",
        {"tokens_per_completion": TOKENS, "vllm_dtype": fast, "tokens_per_second": results, "rows": rows},
    )


if __name__ == "__main__":
    main()
