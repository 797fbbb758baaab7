"""Multi-turn rollout throughput: reasonrl's batched episodes vs one episode at a time, and
TRL 1.16's tool loop, SmolLM2-135M on the vLLM engine, one run.

The work: the ``tool`` environment (calculator) on synthetic word problems, up to 3 turns
of up to 96 tokens, greedy, so every way of running it plays the same episodes.

  batched          ``run_episodes`` over all N episodes: one generate per turn for every
                   live episode (token ids in, so vLLM's prefix cache keeps earlier turns)
  one at a time    the same function and engine, called on one episode after another
                   (greedy with 32 episodes, then sampled with 64: see SETTINGS)
  TRL tool loop    ``GRPOTrainer(tools=[...])``, TRL's multi-turn path (``_tool_call_loop``):
                   it parses calls with the tokenizer's response template, which TRL sets
                   only for chat templates it knows; SmolLM2's is not one, so the row says so
                   when TRL refuses (see ``trl_tool_loop``)

Targets (issue 21): batched >= 3x one at a time; >= 2x TRL's path.
"""

from __future__ import annotations

import time

import torch

from reasonrl.data import load_problems
from reasonrl.envs import make_env
from reasonrl.models import load_tokenizer, resolve
from reasonrl.models.precision import resolve_dtype
from reasonrl.rollout import SamplingConfig, make_engine
from reasonrl.rollout.episodes import EpisodeLimits, run_episodes
from tests.benchmarks.common import peak_rss_mib, save, table

MODEL = "smollm2-135m-instruct"
# (episodes, temperature): greedy, so both ways play the same episodes (the base model's
# replies are short: prefill-bound); and sampled as training samples (longer replies; each
# way then plays its own episodes, so tokens/s is the measure)
SETTINGS = [(32, 0.0), (64, 1.0)]
LIMITS = EpisodeLimits(max_turns=3, max_episode_tokens=512, max_model_len=None)


def play(engine, env, rows, sampling: SamplingConfig, batched: bool) -> dict:
    start = time.perf_counter()
    if batched:
        episodes = run_episodes(engine, env, rows, 1, sampling, LIMITS)
    else:
        episodes = [e for row in rows for e in run_episodes(engine, env, [row], 1, sampling, LIMITS)]
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "episodes": len(episodes),
        "model_tokens": sum(e.model_tokens for e in episodes),
        "turns": sum(e.state.turn for e in episodes),
        "tool_calls": sum(e.state.tool_calls for e in episodes),
    }


def trl_tool_loop(tokenizer) -> str:
    """Why TRL's tool path does not run on this model, or "" when it would."""
    from trl.chat_template_utils import add_response_schema

    try:
        add_response_schema(tokenizer)
    except ValueError as err:
        return f"TRL refuses SmolLM2's chat template: {str(err).split('.')[0]}"
    return ""


def main() -> None:
    env = make_env("tool", max_turns=LIMITS.max_turns)
    tokenizer = load_tokenizer(MODEL)
    dtype = resolve_dtype("auto")
    engine = make_engine(
        "vllm",
        None,
        tokenizer,
        model_dir=str(resolve(MODEL)),
        dtype=dtype,
        max_model_len=1536,
        kv_cache_gib=1,
    )
    rows = [p.to_record() for p in load_problems("synthetic:1-2:200:7", "test", max(n for n, _ in SETTINGS))]
    play(engine, env, rows[:2], SamplingConfig(max_tokens=96), batched=True)  # warm-up
    out, results = [], []
    for n, temperature in SETTINGS:
        sampling = SamplingConfig(temperature=temperature, max_tokens=96)
        batched = play(engine, env, rows[:n], sampling, batched=True)
        single = play(engine, env, rows[:n], sampling, batched=False)
        ratio = (batched["model_tokens"] / batched["seconds"]) / (single["model_tokens"] / single["seconds"])
        episodes_ratio = single["seconds"] / batched["seconds"]
        results.append(
            {
                "episodes": n,
                "temperature": temperature,
                "batched": batched,
                "one_at_a_time": single,
                "tokens_per_second_ratio": ratio,
                "episodes_per_second_ratio": episodes_ratio,
            }
        )
        for name, r in (("batched", batched), ("one at a time", single)):
            out.append(
                {
                    "temperature": temperature,
                    "rollout": name,
                    "episodes": r["episodes"],
                    "model tokens": r["model_tokens"],
                    "turns": r["turns"],
                    "tool calls": r["tool_calls"],
                    "seconds": f"{r['seconds']:.1f}",
                    "model tok/s": f"{r['model_tokens'] / r['seconds']:.0f}",
                    "episodes/s": f"{r['episodes'] / r['seconds']:.2f}",
                    "ratio (tok/s, episodes/s)": f"{ratio:.2f}x, {episodes_ratio:.2f}x"
                    if name == "batched"
                    else "",
                }
            )
    engine.close()
    trl = trl_tool_loop(load_tokenizer(MODEL))
    table(out)
    print(
        f"target: batched >= 3x one at a time; {torch.cpu.get_capabilities().get('cpu_name')}, "
        f"vLLM {dtype}, peak {peak_rss_mib():.0f} MiB"
    )
    print(f"TRL 1.16 tool loop (GRPOTrainer(tools=...)): {trl or 'runs on this model'}")
    save("episodes_throughput", {"vllm_dtype": dtype, "settings": results, "trl_tool_loop": trl or "runs"})


if __name__ == "__main__":
    main()
