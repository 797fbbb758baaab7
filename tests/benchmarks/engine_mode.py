"""vLLM on CPU, eager vs compiled: what compiling costs at start and saves per step (issue 22).

Each mode starts its own engine in its own process (SmolLM2-135M-Instruct, the machine's
fast type), and samples a GRPO step's rollout: 2 prompts x 4 completions of exactly 128
tokens, five times after one warm-up. Compiled runs twice: the first may fill vLLM's
compile cache (``~/.cache/vllm``), the second is what every later run pays. The step
count after which compiling has paid for itself, (start compiled - start eager) /
(step eager - step compiled), is the measured rule ``rollout.enforce_eager: auto``
applies per CPU kind (``reasonrl.trainers.start``).

``python -m tests.benchmarks engine_mode``
"""

from __future__ import annotations

import statistics
import sys
import time

PROMPTS = [
    [{"role": "user", "content": f"A baker fills {n} trays with 9 rolls each and sells all but 17. "
      "How many rolls does the baker sell? Think step by step."}]
    for n in (14, 23)
]  # fmt: skip
GENERATIONS, TOKENS, REPEATS = 4, 128, 5


def side(compiled: bool) -> dict:
    from reasonrl.models import load_tokenizer, resolve
    from reasonrl.models.precision import resolve_dtype
    from reasonrl.rollout import SamplingConfig, make_engine

    name = "smollm2-135m-instruct"
    start = time.perf_counter()
    engine = make_engine(
        "vllm",
        None,
        load_tokenizer(name),
        model_dir=str(resolve(name)),
        dtype=resolve_dtype("auto"),
        max_model_len=512,
        kv_cache_gib=0.25,
        enforce_eager=not compiled,
    )
    started = time.perf_counter() - start
    sampling = SamplingConfig(n=GENERATIONS, temperature=0.7, max_tokens=TOKENS, ignore_eos=True)
    engine.generate(PROMPTS, sampling)  # warm-up: first shapes
    steps = []
    for _ in range(REPEATS):
        t = time.perf_counter()
        batch = engine.generate(PROMPTS, sampling)
        steps.append(time.perf_counter() - t)
        assert int(batch.completion_lengths.sum()) == len(PROMPTS) * GENERATIONS * TOKENS
    return {"start_seconds": started, "step_seconds": statistics.median(steps), "steps": steps}


def main() -> None:
    from tests.benchmarks.common import machine_kind, run_side, save, table

    results = {
        "eager": run_side("tests.benchmarks.engine_mode", "eager"),
        "compiled (first)": run_side("tests.benchmarks.engine_mode", "compiled"),
        "compiled (cached)": run_side("tests.benchmarks.engine_mode", "compiled"),
    }
    eager = results["eager"]
    rows = []
    for mode, r in results.items():
        saved = eager["step_seconds"] - r["step_seconds"]
        extra = r["start_seconds"] - eager["start_seconds"]
        r["pays_after_steps"] = extra / saved if saved > 0 else None
        rows.append(
            {
                "mode": mode,
                "start s": f"{r['start_seconds']:.1f}",
                "rollout s (median of 5)": f"{r['step_seconds']:.2f}",
                "tokens/s": f"{len(PROMPTS) * GENERATIONS * TOKENS / r['step_seconds']:.0f}",
                "pays after steps": "-"
                if mode == "eager"
                else (f"{r['pays_after_steps']:.0f}" if r["pays_after_steps"] else "never"),
            }  # fmt: skip
        )
    print(f"\nvLLM eager vs compiled, {len(PROMPTS)} x {GENERATIONS} completions of {TOKENS} tokens, "
          f"on {machine_kind()}:")  # fmt: skip
    table(rows)
    save("engine_mode", {"machine": machine_kind(), "results": results})


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "--side":
        from tests.benchmarks.common import side_main

        side_main(sys.argv[2], lambda: side(compiled=sys.argv[2] == "compiled"))
    else:
        main()
