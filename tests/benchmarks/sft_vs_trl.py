"""SFT training throughput and memory: reasonrl vs TRL 1.16's SFTTrainer, one run.

Both sides: SmolLM2-135M-Instruct, LoRA r=16 on the same modules, fp32, the same
``prompt``/``completion`` chat rows (GSM8K train's questions with the recipe's instruction,
their worked solutions as completions; ``../shared/data/gsm8k`` or ``BENCH_GSM8K``, else
the synthetic set in ``data/``), loss on completion tokens only, 16 rows per optimizer
step in micro-batches of 8 (TRL: per_device_train_batch_size 8, gradient accumulation
2), at most 384 tokens a row, constant learning rate, one epoch over exactly
``BENCH_SFT_STEPS`` x 16 rows. Each side shuffles with its own seed, so both do the same
rows once, padded to the longest row of their micro-batches. TRL keeps its SFTConfig
default of gradient checkpointing (``BENCH_TRL_GRADIENT_CHECKPOINTING=0``: off); reasonrl
does not checkpoint. Each side runs in its own process, reasonrl on the allocator its
command picks (tcmalloc when installed), TRL on the system's.

Reported: tokens per second of training (the rows' prompt + completion tokens, the same
count for both sides, over the training loop's wall-clock; model loading excluded), and
peak resident memory. Target (issue 23): reasonrl >= 2x TRL at no more memory. A third
side, reasonrl-packed, packs each micro-batch's rows (``sft.packing``) instead of padding.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STEPS = int(os.environ.get("BENCH_SFT_STEPS", 6))
BATCH, MICRO, MAX_LENGTH, LR = 16, 8, 384, 5e-4
TRL_CHECKPOINTING = os.environ.get("BENCH_TRL_GRADIENT_CHECKPOINTING", "1") == "1"  # TRL's default
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def rows() -> tuple[list[dict], str]:
    """The benchmark's rows (TRL's conversational prompt/completion format) and their source."""
    from reasonrl.data import load_problems
    from reasonrl.data.sft import solution_text
    from reasonrl.data.templates import make_prompt
    from reasonrl.trainers.recipe import DataSection

    local = Path(os.environ.get("BENCH_GSM8K", ROOT.parent / "shared" / "data" / "gsm8k"))
    source = str(local) if (local / "train.jsonl").exists() else str(ROOT / "data" / "synthetic_gsm8k.jsonl")
    problems = load_problems(source, "train", STEPS * BATCH)
    instruction = DataSection().instruction
    out = [
        {
            "prompt": make_prompt(p, "chat", instruction),
            "completion": [{"role": "assistant", "content": solution_text(p)}],
        }
        for p in problems
    ]
    if len(out) < STEPS * BATCH:
        raise SystemExit(f"{source} has {len(out)} rows; the benchmark needs {STEPS * BATCH}")
    return out, source


def row_tokens(data: list[dict]) -> int:
    """Prompt + completion tokens of every row, cut at MAX_LENGTH: the work of one epoch."""
    from reasonrl.models import load_tokenizer

    tokenizer = load_tokenizer("smollm2-135m-instruct")
    total = 0
    for row in data:
        text = tokenizer.apply_chat_template(row["prompt"] + row["completion"], tokenize=False)
        total += min(len(tokenizer(text, add_special_tokens=False).input_ids), MAX_LENGTH)
    return total


def trl_side() -> dict:
    from datasets import Dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    from tests.benchmarks.common import stock_model

    data, source = rows()
    model, tokenizer = stock_model("smollm2-135m-instruct")
    args = SFTConfig(
        output_dir=tempfile.mkdtemp(),
        per_device_train_batch_size=MICRO,
        gradient_accumulation_steps=BATCH // MICRO,
        max_length=MAX_LENGTH,
        completion_only_loss=True,
        learning_rate=LR,
        lr_scheduler_type="constant",
        num_train_epochs=1,
        use_cpu=True,
        bf16=False,
        gradient_checkpointing=TRL_CHECKPOINTING,
        report_to=[],
        logging_steps=1,
        save_strategy="no",
        seed=0,
        dataloader_num_workers=0,
    )
    lora = LoraConfig(r=16, lora_alpha=32, target_modules=TARGETS, task_type="CAUSAL_LM")
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(data),
        processing_class=tokenizer,
        peft_config=lora,
    )
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return {"train_seconds": seconds, "steps": trainer.state.global_step, "losses": losses, "data": source}


def reasonrl_side(packing: bool = False) -> dict:
    from reasonrl.config import load_recipe
    from reasonrl.trainers import train
    from reasonrl.trainers.recipe import Recipe

    data, source = rows()
    folder = Path(tempfile.mkdtemp())
    (folder / "rows.jsonl").write_text("".join(json.dumps(row) + "\n" for row in data))
    out = folder / "run"
    overrides = {
        "data.source": str(folder / "rows.jsonl"),
        "output_dir": str(out),
        "max_steps": STEPS,
        "batch_size": BATCH,
        "micro_batch_size": MICRO,
        "max_length": MAX_LENGTH,
        "learning_rate": LR,
        "eval_fraction": 0,
        "eval.limit": 0,
        "bf16": "false",
        "seed": 0,
        "save_steps": 0,
        "report_to": "none",
        "progress": "false",
        "packing": str(packing).lower(),
    }
    recipe = load_recipe(
        Recipe,
        ROOT / "recipes" / "gsm8k" / "sft-smollm2.yaml",
        [a for k, v in overrides.items() for a in (f"--{k}", str(v))],
    )
    start = time.perf_counter()
    train(recipe)
    wall = time.perf_counter() - start
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in lines if "time/step" in r]
    return {
        "train_seconds": sum(r["time/step"] for r in steps),
        "run_seconds": wall,
        "steps": len(steps),
        "losses": [r["loss"] for r in steps],
        "data": source,
    }


def main() -> None:
    from tests.benchmarks.common import run_side, save, table

    data, source = rows()
    tokens = row_tokens(data)
    sides = ("trl", "reasonrl", "reasonrl-packed")
    results = {side: run_side("tests.benchmarks.sft_vs_trl", side) for side in sides}
    for r in results.values():
        r["tokens_per_second"] = tokens / r["train_seconds"]
    print(f"\nSFT, {len(data)} rows ({tokens} tokens) from {source}, LoRA r=16, fp32:")
    table(
        [
            {
                "side": side,
                "steps": r["steps"],
                "first -> last loss": f"{r['losses'][0]:.3f} -> {r['losses'][-1]:.3f}",
                "train s": f"{r['train_seconds']:.1f}",
                "tokens/s": f"{r['tokens_per_second']:.1f}",
                "wall s": f"{r['wall_seconds']:.1f}",
                "peak RSS MiB": f"{r['peak_rss_mib']:.0f}",
                "allocator": r["allocator"],
            }
            for side, r in results.items()
        ]
    )
    trl = results["trl"]
    ratios = {}
    for side in sides[1:]:
        ours = results[side]
        ratio = ours["tokens_per_second"] / trl["tokens_per_second"]
        memory = ours["peak_rss_mib"] / trl["peak_rss_mib"]
        ratios[side] = {"throughput_ratio": ratio, "memory_ratio": memory}
        print(f"{side} / TRL: throughput {ratio:.2f}x, peak memory {memory:.2f}x (target: >= 2x at <= 1.0x)")
    print(f"TRL gradient checkpointing {'on' if TRL_CHECKPOINTING else 'off'}; TRL unpacked (its default)")
    save("sft_vs_trl", {"results": results, "tokens": tokens, "ratios": ratios})


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "--side":
        from tests.benchmarks.common import side_main

        side = sys.argv[2]
        packed = side == "reasonrl-packed"
        side_main(side, trl_side if side == "trl" else lambda: reasonrl_side(packing=packed))
    else:
        main()
