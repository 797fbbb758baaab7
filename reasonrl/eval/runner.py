"""``reasonrl eval``: generate answers for GSM8K-style problems and score them like lm-eval.

Writes ``items.jsonl`` (question, prompt, completions, extracted answers, correct
flags) and ``summary.json`` (each metric with its standard error) to the output folder.
"""

from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from reasonrl.data.gsm8k import load_records, to_problem
from reasonrl.eval.metrics import majority, mean_stderr, pass_at_k
from reasonrl.eval.tasks import CHAT_INSTRUCTION, get_task
from reasonrl.rewards.gsm8k import FLEXIBLE_PATTERN, extract, is_correct
from reasonrl.rollout import SamplingConfig, make_engine

log = logging.getLogger(__name__)


@dataclass
class EvalConfig:
    model: str | None = "smollm2-135m-instruct"  # a reasonrl.models.load name, folder or hub id
    adapter: str | None = None  # a LoRA adapter folder (a run's final/); merged into the model
    task: str = "gsm8k"
    data: str = "openai/gsm8k"  # jsonl/json file, folder with {split}.jsonl, or hub id
    split: str = "test"
    fewshot_data: str | None = None  # default: the train split next to `data`
    num_fewshot: int | None = None  # default: the task's (5 for gsm8k)
    fewshot_seed: int = 1234  # lm-eval's default
    limit: int | None = None
    subset_seed: int | None = None  # with limit: a random subset of that size instead of the first items
    samples: int = 1  # k completions per problem (maj@k, pass@k); 1 = greedy
    temperature: float = 0.0
    max_tokens: int = 256  # lm-eval's max_gen_toks
    engine: str = "vllm"
    engine_fallback: bool = True
    dtype: str = "auto"  # vLLM weights (auto: bfloat16 where native, else float32)
    batch_size: int = 128  # problems per generate call (progress granularity)
    seed: int = 0
    output: str | None = None
    instruction: str = CHAT_INSTRUCTION  # for the chat task
    progress: bool = True
    env: str | None = None  # evaluate an agent in this multi-turn environment (reasonrl.envs)
    env_options: dict = field(default_factory=dict)  # the environment's own (a recipe's env.options)
    max_turns: int = 4
    max_episode_tokens: int = 1024


def _fewshot_source(data: str, given: str | None) -> tuple[str, str]:
    if given:
        return given, "train"
    path = Path(data)
    if path.is_file():
        return str(path.with_name("train" + path.suffix)), "train"
    return data, "train"


def _select(n: int, limit: int | None, subset_seed: int | None) -> list[int]:
    if limit is None or limit >= n:
        return list(range(n))
    if subset_seed is None:
        return list(range(limit))
    return sorted(random.Random(subset_seed).sample(range(n), limit))


def load_policy(model: str | None, adapter: str | None, dtype: str = "float32"):
    """(model, tokenizer, base folder): a base model, with a LoRA adapter merged in when given."""
    from reasonrl.models import DEFAULT_MODEL, load, model_folder

    if adapter:
        config = json.loads((Path(adapter) / "adapter_config.json").read_text())
        model = model or config.get("base_model_name_or_path")
    base_dir = model_folder(model or DEFAULT_MODEL)  # an adapter as the model: merged
    hf_model, tokenizer = load(base_dir, dtype=dtype)
    if adapter:
        from reasonrl.models.lora import merge_adapter

        hf_model = merge_adapter(hf_model, adapter)
        if (Path(adapter) / "tokenizer_config.json").exists():
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(adapter)
    return hf_model.eval(), tokenizer, base_dir


def score_completion(text: str, reference: str, strict_pattern: str) -> dict:
    strict = extract(text, strict_pattern, 0)
    flexible = extract(text, FLEXIBLE_PATTERN, -1)
    return {
        "strict": strict,
        "flexible": flexible,
        "strict_correct": is_correct(strict, reference),
        "flexible_correct": is_correct(flexible, reference),
    }


@dataclass
class EvalSet:
    """The problems of one evaluation, with the prompts the model sees."""

    indices: list[int]  # positions in the data file
    records: list[dict]
    problems: list
    prompts: list
    num_fewshot: int


def load_eval_set(cfg: EvalConfig, task) -> EvalSet:
    """The selected problems of ``cfg.data`` and their (few-shot) prompts."""
    num_fewshot = task.default_fewshot if cfg.num_fewshot is None else cfg.num_fewshot
    rows = load_records(cfg.data, cfg.split)
    chosen = _select(len(rows), cfg.limit, cfg.subset_seed)
    records = [rows[i][0] for i in chosen]
    problems = [to_problem(rows[i][0], rows[i][1]) for i in chosen]
    fewshot = []
    if num_fewshot:
        source, split = _fewshot_source(cfg.data, cfg.fewshot_data)
        fewshot = [r for r, _ in load_records(source, split)]
    prompts = task.prompts(records, fewshot, num_fewshot, cfg.fewshot_seed, cfg.instruction)
    return EvalSet(chosen, records, problems, prompts, num_fewshot)


def start_engine(cfg: EvalConfig, prompts: list, new_tokens: int | None = None):
    """The engine that answers: the model (adapter merged), sized for the longest prompt
    (text, or chat messages as the template renders them) and ``new_tokens`` more
    (default ``cfg.max_tokens``)."""
    model, tokenizer, base_dir = load_policy(cfg.model, cfg.adapter)
    # chat prompts as the template renders them (text: apply_chat_template(tokenize=True)
    # returns a dict, not ids, in recent transformers)
    texts = [
        p
        if isinstance(p, str)
        else tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True)
        for p in prompts
    ]
    longest = max(
        len(tokenizer(t, add_special_tokens=isinstance(p, str)).input_ids)
        for t, p in zip(texts, prompts, strict=True)
    )
    engine = make_engine(
        cfg.engine,
        model,
        tokenizer,
        model_dir=str(base_dir),
        allow_fallback=cfg.engine_fallback,
        seed=cfg.seed,
        dtype=cfg.dtype,
        max_model_len=longest + (cfg.max_tokens if new_tokens is None else new_tokens) + 64,
        kv_cache_gib=2,
    )
    if cfg.adapter:
        engine.update_weights(model.named_parameters())
    return engine


def score_item(cfg: EvalConfig, task, data: EvalSet, i: int, texts: list[str]) -> dict:
    """One problem's completions, the answers extracted from them and whether they are right."""
    reference = data.records[i]["answer"]
    scored = [score_completion(t, reference, task.strict_pattern) for t in texts]
    item = {
        "index": data.indices[i],
        "question": data.problems[i].question,
        "answer": data.problems[i].answer,
        "prompt": data.prompts[i],
        "completions": texts,
    }
    for key in ("strict", "flexible", "strict_correct", "flexible_correct"):
        item[key] = [s[key] for s in scored]
    if cfg.samples > 1:
        for mode in ("strict", "flexible"):
            item[f"maj_{mode}_correct"] = is_correct(majority(item[mode]), reference)
    return item


def score(cfg: EvalConfig, task, data: EvalSet, engine) -> tuple[list[dict], int]:
    """Generate for every prompt, ``cfg.batch_size`` problems at a time; (items, tokens generated)."""
    from tqdm.auto import tqdm

    sampling = SamplingConfig(
        n=cfg.samples, temperature=cfg.temperature, max_tokens=cfg.max_tokens, stop=list(task.stop)
    )
    torch.manual_seed(cfg.seed)
    prompts, items, tokens = data.prompts, [], 0
    bar = tqdm(total=len(prompts), desc=f"eval {task.name}", disable=not cfg.progress, dynamic_ncols=True)
    for begin in range(0, len(prompts), cfg.batch_size):
        batch = engine.generate(prompts[begin : begin + cfg.batch_size], sampling)
        tokens += int(batch.completion_lengths.sum())
        groups = len(batch.group_ids.unique())
        for g in range(groups):
            texts = [batch.texts[r] for r in (batch.group_ids == g).nonzero().flatten().tolist()]
            items.append(score_item(cfg, task, data, begin + g, texts))
        bar.update(groups)
        bar.set_postfix(
            strict=f"{sum(it['strict_correct'][0] for it in items) / len(items):.3f}",
            flexible=f"{sum(it['flexible_correct'][0] for it in items) / len(items):.3f}",
        )
    bar.close()
    return items, tokens


def aggregate(items: list[dict], samples: int) -> dict[str, tuple[float, float]]:
    """lm-eval's metrics (value, standard error): exact match, or pass@1 / pass@k / maj@k."""
    metrics = {}
    for mode in ("strict-match", "flexible-extract"):
        key = "strict_correct" if mode == "strict-match" else "flexible_correct"
        if samples == 1:
            metrics[f"exact_match,{mode}"] = mean_stderr([float(it[key][0]) for it in items])
            continue
        short = mode.split("-")[0]
        metrics[f"pass@1,{mode}"] = mean_stderr([sum(it[key]) / samples for it in items])
        metrics[f"pass@{samples},{mode}"] = mean_stderr(
            [pass_at_k(samples, sum(it[key]), samples) for it in items]
        )
        metrics[f"maj@{samples},{mode}"] = mean_stderr([float(it[f"maj_{short}_correct"]) for it in items])
    return metrics


def write(output: str, items: list[dict], summary: dict) -> None:
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "items.jsonl", "w") as f:
        for item in items:
            f.write(json.dumps(item) + "\n")
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    log.info("wrote %s/items.jsonl and summary.json", out)


def evaluate(cfg: EvalConfig) -> dict:
    """Answer and score ``cfg.data`` as lm-eval does; returns the summary (also written to
    ``cfg.output``, with every item, when set)."""
    task = get_task(cfg.task)
    if cfg.samples > 1 and cfg.temperature == 0:
        raise ValueError("samples > 1 needs temperature > 0 (greedy decoding gives k identical answers)")
    data = load_eval_set(cfg, task)
    engine = start_engine(cfg, data.prompts)
    start = time.perf_counter()
    items, tokens = score(cfg, task, data, engine)
    seconds = time.perf_counter() - start
    engine.close()
    summary = {
        "task": task.name,
        "model": cfg.model,
        "adapter": cfg.adapter,
        "data": cfg.data,
        "split": cfg.split,
        "n": len(items),
        "num_fewshot": data.num_fewshot,
        "samples": cfg.samples,
        "temperature": cfg.temperature,
        "engine": type(engine).__name__,
        "seconds": seconds,
        "tokens_generated": tokens,
        "metrics": {k: {"value": v, "stderr": s} for k, (v, s) in aggregate(items, cfg.samples).items()},
        "config": asdict(cfg),
    }
    if cfg.output:
        write(cfg.output, items, summary)
    return summary
