"""GRPO training throughput and memory: reasonrl vs TRL 1.16's GRPOTrainer, one run.

Both sides: SmolLM2-135M-Instruct, LoRA r=16 on the same modules (fp32 adapters), where
bf16 is native the frozen base in bf16 and bf16 autocast (``BENCH_GRPO_BF16``, below;
reasonrl's recipe picks this, TRL is given it: equal precision), else fp32; the
same GSM8K prompts at the same steps (chat template), gsm8k + format rewards, two prompts
per step, num_generations G = 4 (``BENCH_GRPO_GENERATIONS``; the GSM8K recipe uses 8),
128 new tokens at most, temperature 0.7, beta 0, loss_type dapo, constant lr, the same
number of steps, one optimizer step per step's 2G completions taken in micro-batches of
G (``BENCH_GRPO_MICRO``; TRL: per_device_train_batch_size G, gradient_accumulation 2).
Each side runs in its own process (so peak memory is its own); reasonrl's on the
allocator its command picks (``reasonrl.allocator``: tcmalloc when installed), TRL's on
the system's, as each runs for its users. TRL generates with HF
generate on CPU (its vLLM paths need a GPU or a server); reasonrl generates with its
in-process vLLM engine (weights in the machine's fast type, ``auto``: bf16 with
AMX/AVX512-BF16, else fp32; the KV cache the recipe's ``auto`` sizes for one step: 8
sequences of up to 1024 tokens, 0.18 GiB in bf16). TRL keeps its GRPOConfig default
of gradient checkpointing on (less activation memory, the forward computed twice);
``BENCH_TRL_GRADIENT_CHECKPOINTING=0`` turns it off. reasonrl does not checkpoint (its
shared-prompt cache needs the keys and values kept). At natural lengths reasonrl runs
twice: with the CPU default of an eager vLLM, and as a long CPU run would, with
``rollout.enforce_eager: false`` (vLLM compiles the model at start: about 80 s more,
counted in "wall s", not in the training loop).

Prompts: the real GSM8K train split beside the project (``../shared/data/gsm8k``, or
``BENCH_GSM8K``), else the synthetic set in ``data/``; the tables name the source.

Two halves: natural lengths (EOS ends a completion, as in training; the two policies
learn at their own pace and their lengths follow) and fixed lengths (EOS suppressed: every
completion is 128 tokens on both sides: the same work, so the ratio is speed alone). In
both, reasonrl runs every row through the model, as TRL does. In training it skips the
passes of rows with zero advantage, which add nothing to the gradient
(``skip_zero_advantage``, on by default); at these 4 steps every completion scores 0, so
it would skip every pass and the ratio would measure the skipping, not the speed
(``BENCH_GRPO_SKIP=1`` shows that: the natural half then skips, the table says how many
rows). Reported:
completion tokens per second of training (completion tokens generated / wall-clock of
the training loop, model loading excluded), seconds per step (the sampled lengths differ
between the sides), end-to-end wall-clock, and peak resident memory. Each half runs every
side ``BENCH_GRPO_REPEATS`` times (default 2), the sides in turn, and compares each side's
fastest run, at the highest peak memory of its runs: on these shared 2-core machines one
4-step run of the same code varied by 10% (reasonrl 16.0 and 18.0 s ten minutes apart).
Target (issue 22): reasonrl >= 4x TRL's throughput at no more memory.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STEPS = int(os.environ.get("BENCH_GRPO_STEPS", 4))
PROMPTS, MAX_NEW, TEMPERATURE, LR = 2, 128, 0.7, 1e-4
GENERATIONS = int(os.environ.get("BENCH_GRPO_GENERATIONS", 4))  # the GSM8K recipe samples 8
MICRO = int(os.environ.get("BENCH_GRPO_MICRO", GENERATIONS))  # completions per forward/backward pass
TRL_CHECKPOINTING = os.environ.get("BENCH_TRL_GRADIENT_CHECKPOINTING", "1") == "1"  # TRL's default
# bf16 autocast in the update: "auto" = on both sides exactly where bf16 is native (AMX,
# AVX512-BF16), the recipe's default and what a TRL user on such a CPU turns on (TRL's own
# default, bf16=True, would also emulate it on AVX2, many times slower); "0": fp32 both
BF16 = os.environ.get("BENCH_GRPO_BF16", "auto")
SKIP = os.environ.get("BENCH_GRPO_SKIP", "0") == "1"  # natural lengths: skip zero-advantage rows
# runs of each side, taken in turn; the table shows each side's best (``best``)
REPEATS = int(os.environ.get("BENCH_GRPO_REPEATS", 2))


def use_bf16() -> bool:
    from reasonrl.models.precision import native_bf16

    return native_bf16("cpu") if BF16 == "auto" else BF16 == "1"


FIXED = "--fixed" in sys.argv  # every completion exactly MAX_NEW tokens (EOS suppressed) on both sides


def problems(n: int):
    from reasonrl.data import load_problems

    local = Path(os.environ.get("BENCH_GSM8K", ROOT.parent / "shared" / "data" / "gsm8k"))
    source = str(local) if (local / "train.jsonl").exists() else str(ROOT / "data" / "synthetic_gsm8k.jsonl")
    return load_problems(source, "train", n), source


def in_step_order(items: list) -> list:
    """``items`` in the order reasonrl's sampler draws them (seed 0), so TRL (no
    shuffling) sees the same prompts at the same steps: completion lengths depend
    strongly on the problem, and tokens/s on the lengths."""
    from reasonrl.data.sampler import ProblemSampler

    sampler = ProblemSampler(items, seed=0)
    return [p for step in range(STEPS) for p in sampler.batch(step, PROMPTS)]


def trl_side() -> dict:
    from datasets import Dataset
    from peft import LoraConfig
    from trl import GRPOConfig, GRPOTrainer

    from reasonrl.data.templates import make_prompt
    from reasonrl.rewards import build_reward
    from reasonrl.trainers.recipe import DataSection
    from tests.benchmarks.common import stock_model

    items, source = problems(STEPS * PROMPTS)
    instruction = DataSection().instruction
    dataset = Dataset.from_list(
        [
            {"prompt": make_prompt(p, "chat", instruction), "answer": p.answer, "question": p.question}
            for p in in_step_order(items)
        ]
    )
    gsm8k, fmt = build_reward("gsm8k", mode="strict"), build_reward("format", preset="gsm8k")

    def text(completions):
        return [c[0]["content"] if isinstance(c, list) else c for c in completions]

    def gsm8k_reward(completions, answer, **_):
        return gsm8k(text(completions), answer=answer)

    def format_reward(completions, question, **_):  # the question: answers must derive from it
        return [0.5 * r for r in fmt(text(completions), question=question)]

    # the frozen base in the type reasonrl's recipe puts it in on this machine (bf16 where
    # native): equal precision; BENCH_TRL_BASE_DTYPE=float32 gives TRL the fp32 base
    base = os.environ.get("BENCH_TRL_BASE_DTYPE", "bfloat16" if use_bf16() else "float32")
    model, tokenizer = stock_model("smollm2-135m-instruct", dtype=base)
    args = GRPOConfig(
        output_dir=tempfile.mkdtemp(),
        per_device_train_batch_size=MICRO,
        gradient_accumulation_steps=PROMPTS * GENERATIONS // MICRO,  # one optimizer step per 8
        num_generations=GENERATIONS,
        max_completion_length=MAX_NEW,
        temperature=TEMPERATURE,
        beta=0.0,
        loss_type="dapo",
        learning_rate=LR,
        lr_scheduler_type="constant",  # as the reasonrl recipe
        shuffle_dataset=False,  # the order is in_step_order's
        max_steps=STEPS,
        use_cpu=True,
        bf16=use_bf16(),
        gradient_checkpointing=TRL_CHECKPOINTING,
        report_to=[],
        logging_steps=1,
        save_strategy="no",
        seed=0,
        generation_kwargs={"min_new_tokens": MAX_NEW} if FIXED else None,
    )
    lora = LoraConfig(
        r=16,
        lora_alpha=32,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        task_type="CAUSAL_LM",
    )
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=[gsm8k_reward, format_reward],
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=lora,
    )
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    logs = [h for h in trainer.state.log_history if "completions/mean_length" in h]
    lengths = [h["completions/mean_length"] for h in logs]
    return {
        "train_seconds": seconds,
        "completion_tokens": sum(lengths) * PROMPTS * GENERATIONS,
        "mean_lengths": lengths,
        "steps": len(logs),
        "data": source,
    }


def reasonrl_side(compiled: bool = False) -> dict:
    from reasonrl.config import load_recipe
    from reasonrl.data import write_jsonl
    from reasonrl.trainers import train
    from reasonrl.trainers.recipe import Recipe

    items, source = problems(STEPS * PROMPTS)
    data = Path(tempfile.mkdtemp()) / "prompts.jsonl"
    write_jsonl(items, data)
    out = Path(tempfile.mkdtemp()) / "run"
    recipe = load_recipe(
        Recipe,
        ROOT / "recipes" / "gsm8k" / "grpo-smollm2.yaml",
        [
            "--data.source",
            str(data),
            "--output_dir",
            str(out),
            "--max_steps",
            str(STEPS),
            "--prompts_per_step",
            str(PROMPTS),
            "--num_generations",
            str(GENERATIONS),
            "--max_completion_length",
            str(MAX_NEW),
            "--temperature",
            str(TEMPERATURE),
            "--learning_rate",
            str(LR),
            "--seed",
            "0",
            "--epsilon_high",
            "0.2",
            "--bf16",
            str(use_bf16()).lower(),
            "--micro_batch_size",
            str(MICRO),
            "--save_steps",
            "0",
            "--report_to",
            "none",
            "--progress",
            "false",
            "--rollout.ignore_eos",
            str(FIXED).lower(),
            # the same work as TRL: every row through the model (module docstring)
            "--skip_zero_advantage",
            str(SKIP and not FIXED).lower(),
            "--rollout.enforce_eager",
            str(not compiled).lower(),
            *os.environ.get("BENCH_GRPO_ARGS", "").split(),  # more recipe flags, to try settings
        ],
    )
    train(recipe)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    lengths = [r["completion_length"] for r in rows]
    return {
        "train_seconds": sum(r["time/step"] for r in rows),
        "completion_tokens": sum(lengths) * PROMPTS * GENERATIONS,
        "mean_lengths": lengths,
        "steps": len(rows),
        "skipped_rows": sum(r["skipped_fraction"] for r in rows) / len(rows),
        "data": source,
        # what the roofline report (grpo_roofline) sets next to this machine's limits
        "phase_seconds": {k: sum(r[f"time/{k}"] for r in rows) for k in ("generate", "update", "sync")},
        "prompt_lengths": [r["prompt_length"] for r in rows],
        "micro_batch": MICRO,
        "bf16": use_bf16(),
    }


def compare(fixed: bool) -> dict:
    """Both sides, one after the other; their table and ratios."""
    from tests.benchmarks.common import machine_kind, run_side, table

    sides = ("trl", "reasonrl", "reasonrl-compiled")
    runs = {side: [] for side in sides}
    for _ in range(REPEATS):  # the sides in turn, so a slow spell of the machine hits all of them
        for side in sides:
            r = run_side("tests.benchmarks.grpo_vs_trl", side, *["--fixed"] * fixed)
            r["tokens_per_second"] = r["completion_tokens"] / r["train_seconds"]
            runs[side].append(r)
    results = {side: best(rs) for side, rs in runs.items()}
    rows = []
    for side, r in results.items():
        rows.append(
            {
                "side": side,
                "steps": r["steps"],
                "mean length per step": " ".join(f"{x:.0f}" for x in r["mean_lengths"]),
                "completion tokens": f"{r['completion_tokens']:.0f}",
                "train s": f"{r['train_seconds']:.1f}",
                "train s, every run": " ".join(f"{x['train_seconds']:.1f}" for x in runs[side]),
                "tokens/s": f"{r['tokens_per_second']:.1f}",
                "wall s": f"{r['wall_seconds']:.1f}",
                "peak RSS MiB": f"{r['peak_rss_mib']:.0f}",
                "allocator": r["allocator"],
                "engine": {"trl": "HF generate", "reasonrl": "vLLM eager"}.get(side, "vLLM compiled"),
                "update": "bf16 base + autocast" if use_bf16() else "fp32",
                "rows skipped": f"{r['skipped_rows']:.0%}" if "skipped_rows" in r else "-",
            }
        )
    sources = {r["data"] for r in results.values()}
    assert len(sources) == 1, f"the sides read different prompts: {sources}"
    print(f"\n{'fixed' if fixed else 'natural'} lengths, prompts from {sources.pop()}, on {machine_kind()}:")
    table(rows)
    ratios = {side: ratios_to_trl(results, side) for side in sides[1:]}
    for side, r in ratios.items():
        print(
            f"{side} / TRL: throughput {r['throughput_ratio']:.2f}x, peak memory {r['memory_ratio']:.2f}x  "
            f"(target: >= 4x at <= 1.0x); steps per second {r['step_ratio']:.2f}x"
        )
    extra = {"machine": machine_kind(), "bf16": use_bf16()}
    return {"results": results, **extra, **ratios.pop("reasonrl"), **ratios}


def best(runs: list[dict]) -> dict:
    """The run of highest throughput (noise on a shared machine only ever adds time: the
    least disturbed run is the closest to the code's speed), with the highest peak memory
    of all the runs."""
    top = max(runs, key=lambda r: r["tokens_per_second"])
    return {**top, "peak_rss_mib": max(r["peak_rss_mib"] for r in runs), "runs": len(runs)}


def ratios_to_trl(results: dict, side: str) -> dict:
    ours, trl = results[side], results["trl"]
    return {
        "throughput_ratio": ours["tokens_per_second"] / trl["tokens_per_second"],
        "memory_ratio": ours["peak_rss_mib"] / trl["peak_rss_mib"],
        # both sides train on 8 completions per step; sampled lengths differ, and a step's
        # generation time follows its longest completion, so seconds per step is shown too
        "step_ratio": (trl["train_seconds"] / trl["steps"]) / (ours["train_seconds"] / ours["steps"]),
    }


def main() -> None:
    """Natural lengths (what training sees; the policies learn at different speeds, and
    lengths follow) and fixed lengths (EOS suppressed: the same work on both sides, so the
    ratio is speed alone)."""
    from tests.benchmarks.common import save

    save("grpo_vs_trl", {"natural": compare(fixed=False), "fixed": compare(fixed=True)})


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "--side":
        from tests.benchmarks.common import side_main

        side = sys.argv[2]
        side_main(
            side, trl_side if side == "trl" else lambda: reasonrl_side(compiled=side == "reasonrl-compiled")
        )
    else:
        main()
