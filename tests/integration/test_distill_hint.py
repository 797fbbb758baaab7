"""Hindsight distillation (``teacher_context: hint``): the teacher sees the row's hint,
the student does not, and both score the same completion tokens."""

import json
from types import SimpleNamespace

import torch

from reasonrl.data.sft import SFTExample
from reasonrl.envs import make_env
from reasonrl.models import load_tokenizer
from reasonrl.rollout.encode import example_batch
from reasonrl.trainers.distill import RIGHT, feedback_hints, teacher_rows, with_hint
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


def test_feedback_hints_come_from_the_environments_reply_to_each_completion():
    """teacher_context: feedback (OpenClaw-RL's hindsight hint from the next state): the
    feedback environment checks each completion against its problem, and its reply is
    what the teacher sees; the student's prompt and the completion tokens are unchanged."""
    tok = load_tokenizer("tiny-llama")
    row = {"question": "3+4=", "solution": "3 + 4 = 7", "answer": "7"}
    examples = [SFTExample("3+4=", "", row=row), SFTExample("3+4=", "", row=row)]
    batch = example_batch(tok, ["3+4="] * 2, ["3 + 4 = 8\n#### 8", "3 + 4 = 7\n#### 7"], 64)
    d = SimpleNamespace(
        section=DistillSection(teacher_context="feedback"), policy=SimpleNamespace(tokenizer=tok)
    )
    rows = teacher_rows(d, batch, examples, make_env("feedback"))
    assert torch.equal(rows.completion_ids, batch.completion_ids)
    prompts = [tok.decode(ids[m]) for ids, m in zip(rows.prompt_ids, rows.prompt_mask, strict=True)]
    assert prompts[0] == "Hint: The answer 8 is wrong. Check your work and try again.\n3+4="
    assert prompts[1] == f"Hint: {RIGHT}\n3+4="


def test_self_distillation_from_environment_feedback_runs_end_to_end(tmp_path):
    out = tmp_path / "run"
    cli(
        "train", "recipes/synthetic/distill-tiny.yaml", "--teacher_context", "feedback",
        "--distill.teacher", "null", "--lmbda", "1", "--max_steps", "3", "--eval_samples", "8",
        "--output_dir", str(out), *QUIET,
    )  # fmt: skip
    logged = metrics(out)
    first = next(r for r in logged if r["step"] == 0)
    print(f"feedback self-distillation: held-out KL(policy with feedback || policy) {first['eval/loss']:.4f}")
    assert first["eval/loss"] > 0  # the environment's reply changes what the teacher predicts
    assert sum("loss" in r for r in logged) == 3
    transcript = (out / "completions.jsonl").read_text()
    assert transcript  # sampled on-policy completions were scored and logged


def test_an_environment_that_raises_gives_its_row_no_hint_and_the_rest_go_on(caplog):
    class Broken:
        name, max_turns = "broken", 1

        def reset(self, row):
            if row["answer"] == "0":
                raise RuntimeError("boom")
            return make_env("feedback").reset(row)

        def step(self, state, text):
            return make_env("feedback").step(state, text)

        def score(self, state):
            return make_env("feedback").score(state)

    rows = [{"question": "0+0=", "answer": "0"}, {"question": "3+4=", "answer": "7"}]
    examples = [SFTExample("q", "", where=f"row {i}", row=r) for i, r in enumerate(rows)]
    hints = feedback_hints(Broken(), ["#### 0", "#### 7"], examples)
    assert hints == ["", RIGHT] and "feedback environment failed on row 0: RuntimeError: boom" in caplog.text
    assert with_hint("3+4=", "") == "3+4="  # no hint: the teacher's prompt is the student's
