"""Each phase of a GRPO step next to its limit on this machine (issue 22).

One reasonrl GRPO run as ``grpo_vs_trl`` makes it at fixed lengths (SmolLM2-135M-Instruct,
LoRA r=16, 2 prompts x G completions of exactly 128 tokens, the recipe's defaults for
this machine), its per-phase seconds, and what this machine could do at best:

    bandwidth   the best of a large tensor copy (torch, all threads) and numpy's (one):
                bytes read + written per second, STREAM's "copy"
    GEMM        FLOP/s of one [2048 x 576] @ [576 x 1536] matmul (SmolLM2's MLP shape) in
                fp32 and bf16: the engine's type and the update's (bf16 autocast where native)

    generate    prefill: 2 N FLOPs per distinct prompt token (the G samples share the
                prompt's cache) at GEMM speed; decode: each step reads every weight once
                and the batch's keys and values, and does 2 N FLOPs per sequence:
                max(bytes / bandwidth, FLOPs / GEMM) per step, summed
    update      LoRA: forward 2 N and input gradients 2 N FLOPs per token (no weight
                gradients for frozen matrices), over each distinct prompt once (the G
                completions of a prompt share its keys and values) and every completion
    sync        ΔW = B A for every adapted matrix (2 r FLOPs a weight) and W + ΔW made in
                fp32, then copied into the engine's type: max(bytes / bandwidth, FLOPs / GEMM)

N counts the matmul weights a token meets (the tied embedding counts once, as the
output head). The ratio measured / limit says how far each phase is from what the
hardware allows; the notes under the table say what stands in the way.

``python -m tests.benchmarks grpo_roofline``; ``BENCH_GRPO_STEPS`` (default 4) steps.
"""

from __future__ import annotations

import os
import time

import numpy as np
import torch

GEMM_SHAPE = (2048, 576, 1536)


def best_of(fn, repeats: int = 7) -> float:
    fn()  # warm-up: first touches, kernel selection
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def bandwidth() -> float:
    """Bytes per second of a 512 MiB copy (read + write): the best of torch's and numpy's."""
    n = 2**27  # float32: 512 MiB, far beyond any cache
    src, dst = torch.ones(n), torch.empty(n)
    t_torch = best_of(lambda: dst.copy_(src), 5)
    a, b = np.ones(n, np.float32), np.empty(n, np.float32)
    t_numpy = best_of(lambda: np.copyto(b, a), 5)
    return 2 * 4 * n / min(t_torch, t_numpy)


def gemm_flops(dtype: torch.dtype) -> float:
    m, k, n = GEMM_SHAPE
    a, b = torch.randn(m, k).to(dtype), torch.randn(k, n).to(dtype)
    return 2 * m * k * n / best_of(lambda: a @ b)


def model_counts() -> dict:
    """Sizes that set each phase's work, read from the model's config."""
    from transformers import AutoConfig

    from reasonrl.models.resolve import resolve

    c = AutoConfig.from_pretrained(resolve("smollm2-135m-instruct"))
    d, layers, inter, vocab = c.hidden_size, c.num_hidden_layers, c.intermediate_size, c.vocab_size
    head_dim = d // c.num_attention_heads
    kv = c.num_key_value_heads * head_dim
    attn = d * d + 2 * d * kv + d * d  # q, k, v, o
    mlp = 3 * d * inter
    per_layer = attn + mlp
    lora_r = 16  # the bench's adapter: every projection
    lora = layers * lora_r * ((d + d) + 2 * (d + kv) + (d + d) + 2 * (d + inter) + (inter + d))
    return {
        "matmul_params": layers * per_layer + vocab * d,  # + the output head (tied embedding)
        "layer_params": layers * per_layer,
        "adapted_params": layers * per_layer,  # LoRA on every projection: each is merged and pushed
        "lora_params": lora,
        "lora_r": lora_r,
        "kv_values_per_token": 2 * layers * kv,
        "layers": layers,
        "d_model": d,
    }


def limits(run: dict, machine: dict, counts: dict, prompts: int, generations: int) -> dict:
    """Seconds per step each phase would take at this machine's limits."""
    prompt = float(np.mean(run["prompt_lengths"]))
    completion = float(np.mean(run["mean_lengths"]))
    rows = prompts * generations  # sequences per step
    engine_bytes = 2 if machine["engine_dtype"] == "bfloat16" else 4
    N = counts["matmul_params"]
    gemm_engine, bw = machine["gemm_engine"], machine["bandwidth"]
    gemm_train = machine["gemm_bf16"] if run["bf16"] else machine["gemm_fp32"]
    # generate: prefill of each distinct prompt, then `completion` decode steps of `rows` sequences
    prefill = 2 * N * prompt * prompts / gemm_engine
    decode = 0.0
    weight_bytes = N * engine_bytes
    for s in range(int(round(completion))):
        kv_bytes = rows * (prompt + s) * counts["kv_values_per_token"] * engine_bytes
        decode += max((weight_bytes + kv_bytes) / bw, 2 * N * rows / gemm_engine)
    # update: forward + input gradients over every token the trainer runs (LoRA: frozen
    # weights get none): each distinct prompt once (the shared-prompt cache), every completion
    tokens = prompts * prompt + rows * completion
    update = 4 * N * tokens / gemm_train
    # sync: ΔW = B A for every adapted matrix (2 r FLOPs per weight, fp32), W read and
    # W + ΔW written in fp32, then read again and copied into the engine's type
    adapted = counts["adapted_params"]
    sync_bytes = adapted * (4 + 4 + 4 + engine_bytes)
    sync = max(sync_bytes / bw, 2 * counts["lora_r"] * adapted / machine["gemm_fp32"])
    return {
        "generate": prefill + decode,
        "update": update,
        "sync": sync,
        "decode_bound": "bandwidth" if weight_bytes / bw > 2 * N * rows / gemm_engine else "compute",
        "tokens_per_update": tokens,
        "rows": rows,
    }


def machine_limits() -> dict:
    from reasonrl.models.precision import resolve_dtype

    engine_dtype = resolve_dtype("auto", "cpu")
    caps = torch.cpu.get_capabilities()
    return {
        "capabilities": " ".join(k for k in ("amx_bf16", "avx512_bf16", "avx512_f", "avx2") if caps.get(k)),
        "threads": torch.get_num_threads(),
        "bandwidth": bandwidth(),
        "engine_dtype": engine_dtype,
        "gemm_engine": gemm_flops(torch.bfloat16 if engine_dtype == "bfloat16" else torch.float32),
        "gemm_fp32": gemm_flops(torch.float32),
        "gemm_bf16": gemm_flops(torch.bfloat16),
    }


def main() -> None:
    from tests.benchmarks.common import run_side, save, table
    from tests.benchmarks.grpo_vs_trl import GENERATIONS, PROMPTS

    machine = machine_limits()
    print(
        f"machine: {machine['capabilities']}, {machine['threads']} threads; copy bandwidth "
        f"{machine['bandwidth'] / 1e9:.1f} GB/s; GEMM {GEMM_SHAPE}: fp32 {machine['gemm_fp32'] / 1e9:.0f}, "
        f"bf16 {machine['gemm_bf16'] / 1e9:.0f} GFLOP/s; engine type {machine['engine_dtype']}"
    )
    counts = model_counts()
    run = run_side("tests.benchmarks.grpo_vs_trl", "reasonrl", "--fixed")
    bound = limits(run, machine, counts, PROMPTS, GENERATIONS)
    steps, rows = run["steps"], []
    for phase in ("generate", "update", "sync"):
        measured = run["phase_seconds"][phase] / steps
        rows.append(
            {
                "phase": phase,
                "measured s/step": f"{measured:.2f}",
                "limit s/step": f"{bound[phase]:.3f}",
                "measured / limit": f"{measured / bound[phase]:.1f}x",
                "bound by": {
                    "generate": f"decode: {bound['decode_bound']}",
                    "update": "bf16 GEMM" if run["bf16"] else "fp32 GEMM",
                    "sync": "bandwidth",
                }[phase],
            }
        )
    total = sum(run["phase_seconds"].values()) / steps
    limit_total = sum(bound[p] for p in ("generate", "update", "sync"))
    rows.append(
        {
            "phase": "step",
            "measured s/step": f"{total:.2f}",
            "limit s/step": f"{limit_total:.3f}",
            "measured / limit": f"{total / limit_total:.1f}x",
            "bound by": "",
        }
    )
    print(
        f"\nGRPO step at fixed lengths: {bound['rows']:.0f} completions of "
        f"{np.mean(run['mean_lengths']):.0f} tokens after prompts of {np.mean(run['prompt_lengths']):.0f}, "
        f"allocator {run['allocator']}, update in {'bf16 autocast' if run['bf16'] else 'fp32'}:"
    )
    table(rows)
    save("grpo_roofline", {"machine": machine, "counts": counts, "run": run, "limits": bound})


if __name__ == "__main__":
    os.environ.setdefault("BENCH_GRPO_STEPS", "4")
    main()
