"""Hindsight distillation (``teacher_context: hint``): the teacher sees the row's hint,
the student does not, and both score the same completion tokens."""

import json
from types import SimpleNamespace

import torch

from reasonrl.data.sft import SFTExample
from reasonrl.models import load_tokenizer
from reasonrl.rollout.encode import example_batch
from reasonrl.trainers.distill import teacher_rows, with_hint
from reasonrl.trainers.recipe import DistillSection
from tests.helpers import QUIET, cli, metrics


def test_the_hint_goes_to_the_teacher_prompt_only_and_completions_stay_aligned():
    tok = load_tokenizer("tiny-llama")
    examples = [
        SFTExample("3+4=", "7", hint="seven"),
        SFTExample([{"role": "user", "content": "2+2="}], "2 + 2 = 4\n#### 4", hint="twice two"),
    ]
    batch = example_batch(tok, [e.prompt for e in examples], [e.completion for e in examples], 64)
    d = SimpleNamespace(section=DistillSection(teacher_context="hint"), policy=SimpleNamespace(tokenizer=tok))
    rows = teacher_rows(d, batch, examples)
    assert torch.equal(rows.completion_ids, batch.completion_ids)
    assert torch.equal(rows.completion_mask, batch.completion_mask)
    teacher_prompts = [tok.decode(ids[m]) for ids, m in zip(rows.prompt_ids, rows.prompt_mask, strict=True)]
    assert teacher_prompts[0] == "Hint: seven\n3+4="
    assert "2+2=\nHint: twice two<|im_end|>" in teacher_prompts[1]
    assert with_hint(examples[1].prompt, "x")[0]["content"] == "2+2=\nHint: x"
    assert examples[1].prompt[0]["content"] == "2+2="  # the student's prompt is untouched


def test_self_distillation_from_hints_runs_end_to_end(tmp_path):
    data = tmp_path / "hints.jsonl"
    rows = [
        {"prompt": f"{a}+{b}=", "completion": str(a + b), "hint": f"{a + b}"}
        for a in range(5)
        for b in range(5)
    ]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "run"
    cli(
        "train",
        "recipes/synthetic/distill-tiny.yaml",
        "--data.source",
        str(data),
        "--teacher_context",
        "hint",
        "--distill.teacher",
        "null",
        "--lmbda",
        "0.5",
        "--max_steps",
        "4",
        "--eval_fraction",
        "0.2",
        "--output_dir",
        str(out),
        *QUIET,
    )
    logged = metrics(out)
    first = next(r for r in logged if r["step"] == 0)
    start = first["eval/loss"]
    print(f"hint self-distillation: held-out KL(policy with hint || policy) at the start {start:.4f}")

    assert start > 0  # the hint changes what the teacher predicts
    assert "eval/sampled_reward" not in first  # a file of prompt/completion rows has no answers to check
    assert sum("loss" in r for r in logged) == 4 and (out / "final" / "adapter_model.safetensors").exists()
