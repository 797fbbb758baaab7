"""``reasonrl eval --env NAME``: an agent (a model, or a model with its adapter) on
held-out rows, in the same multi-turn environment it trains in.

Reports the success rate (with its standard error), turns, tool calls and tool errors
per episode and the finish reasons; writes every episode, with roles, to items.jsonl.
"""

from __future__ import annotations

import time
from dataclasses import asdict

import torch

from reasonrl.data import load_problems
from reasonrl.envs import make_env
from reasonrl.eval.metrics import mean_stderr
from reasonrl.eval.runner import EvalConfig, _select, start_engine, write
from reasonrl.rollout import SamplingConfig
from reasonrl.rollout.episodes import EpisodeLimits, run_episodes


def evaluate_env(cfg: EvalConfig) -> dict:
    env = make_env(cfg.env, max_turns=cfg.max_turns, **cfg.env_options)
    problems = load_problems(cfg.data, cfg.split)
    chosen = _select(len(problems), cfg.limit, cfg.subset_seed)
    rows = [problems[i].to_record() for i in chosen]
    starts = [env.reset(row).messages for row in rows]
    starts = [m[0]["content"] for m in starts] if getattr(env, "plain", False) else starts
    engine = start_engine(cfg, starts, new_tokens=cfg.max_episode_tokens)
    sampling = SamplingConfig(temperature=cfg.temperature, max_tokens=cfg.max_tokens)
    limits = EpisodeLimits(cfg.max_turns, cfg.max_episode_tokens, max_model_len=None)  # sized above
    torch.manual_seed(cfg.seed)
    start = time.perf_counter()
    episodes = run_episodes(engine, env, rows, cfg.samples, sampling, limits)
    seconds = time.perf_counter() - start
    engine.close()
    items = [
        {
            "index": chosen[e.group],
            "answer": rows[e.group]["answer"],
            "success": bool(e.state.info.get("success")),
            "reward": e.reward,
            "turns": e.state.turn,
            "tool_calls": e.state.tool_calls,
            "tool_errors": e.state.tool_errors,
            "finish": e.finish,
            "messages": e.state.messages,
        }
        for e in episodes
    ]
    metrics = {
        f"success,{env.name}": mean_stderr([float(it["success"]) for it in items]),
        "turns": mean_stderr([float(it["turns"]) for it in items]),
        "tool_calls": mean_stderr([float(it["tool_calls"]) for it in items]),
        "tool_errors": mean_stderr([float(it["tool_errors"]) for it in items]),
    }
    finishes = {
        r: sum(it["finish"] == r for it in items) / len(items) for r in {it["finish"] for it in items}
    }
    summary = {
        "task": f"env:{env.name}",
        "model": cfg.model,
        "adapter": cfg.adapter,
        "data": cfg.data,
        "split": cfg.split,
        "n": len(items),
        "num_fewshot": 0,
        "samples": cfg.samples,
        "temperature": cfg.temperature,
        "engine": type(engine).__name__,
        "seconds": seconds,
        "finish_reasons": finishes,
        "metrics": {k: {"value": v, "stderr": s} for k, (v, s) in metrics.items()},
        "config": asdict(cfg),
    }
    if cfg.output:
        write(cfg.output, items, summary)
    return summary
