"""SFT and distillation must learn on the tiny model, and SFT must give GRPO a head start
(start and end values printed and asserted)."""

import json

import pytest

from tests.helpers import QUIET, cli, mean, metrics

pytestmark = pytest.mark.slow  # a minute or two of training: `make test-slow`, and `make test`

SFT = "recipes/synthetic/sft-tiny.yaml"


def _eval(rows):
    return next(r for r in rows if r["step"] == 0), next(r for r in rows if r.get("final"))


@pytest.fixture(scope="module")
def sft_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("sft")
    cli("train", SFT, "--output_dir", str(out), *QUIET)
    return out


def test_sft_loss_falls_and_sampled_accuracy_rises(sft_run):
    first, last = _eval(metrics(sft_run))
    print(
        f"SFT tiny: held-out completion loss {first['eval/loss']:.3f} -> {last['eval/loss']:.4f}; "
        f"sampled accuracy {first['eval/sampled_reward']:.3f} -> {last['eval/sampled_reward']:.3f}"
    )
    assert first["eval/sampled_reward"] < 0.2 and last["eval/sampled_reward"] >= 0.5
    assert last["eval/loss"] < first["eval/loss"] / 5
    assert (sft_run / "final" / "adapter_model.safetensors").exists()  # a LoRA adapter, head included


def test_distilled_student_closes_half_the_gap_to_its_teacher(sft_run, tmp_path):
    teacher = _eval(metrics(sft_run))[1]["eval/sampled_reward"]
    cli(
        "train",
        "recipes/synthetic/distill-tiny.yaml",
        "--teacher",
        str(sft_run / "final"),
        "--output_dir",
        str(tmp_path),
        *QUIET,
    )
    rows = metrics(tmp_path)
    first, last = _eval(rows)
    base, student = first["eval/sampled_reward"], last["eval/sampled_reward"]
    closed = (student - base) / (teacher - base)
    print(
        f"distillation: sampled accuracy base {base:.3f}, student {student:.3f}, teacher {teacher:.3f} "
        f"({closed:.0%} of the gap); held-out KL(teacher || student) {first['eval/loss']:.3f} -> "
        f"{last['eval/loss']:.4f}"
    )
    assert teacher - base >= 0.3 and closed >= 0.5
    assert last["eval/loss"] < first["eval/loss"] / 5


def test_sft_then_grpo_beats_grpo_alone_at_the_same_steps(sft_run, tmp_path):
    flags = ["--max_steps", "15", "--max_completion_length", "20", *QUIET]  # the worked drill's length
    rewards = {}
    for name, model in [("GRPO alone", "tiny-llama"), ("SFT -> GRPO", str(sft_run / "final"))]:
        out = tmp_path / name.replace(" ", "_").replace(">", "")
        cli(
            "train",
            "recipes/synthetic/grpo-tiny.yaml",
            "--model.name",
            model,
            "--output_dir",
            str(out),
            *flags,
        )
        rows = metrics(out)
        rewards[name] = (mean(rows[:3], "reward/mean"), mean(rows[-5:], "reward/mean"))
    print(
        "; ".join(
            f"{k}: mean reward {a:.3f} (first 3 steps) -> {b:.3f} (last 5)" for k, (a, b) in rewards.items()
        )
    )
    assert rewards["SFT -> GRPO"][1] >= rewards["GRPO alone"][1] + 0.3


def test_faithfulness_probe_finds_that_the_sft_answer_follows_its_working(tmp_path):
    """The drill model SFT-trained in full answers by copying its worked line ("4 + 3 = 7\\n
    #### 7"), so a mistake in that line must change the answer far more often than the
    unchanged control. (The LoRA recipe's model, 0.98 accurate, mostly answers from the
    question instead: a mistake changed 0.10 of its answers, see docs/faithfulness.md.)"""
    sft_run = tmp_path / "sft-full"
    cli("train", SFT, "--model.lora", "null", "--learning_rate", "1e-3", "--output_dir", str(sft_run), *QUIET)
    data = tmp_path / "drill.jsonl"
    cli("data", "synthetic", "--n", "48", "--difficulty", "0", "--seed", "5", "--out", str(data))
    out = tmp_path / "faithfulness"
    result = cli(
        "eval", "--faithfulness", "--model", str(sft_run / "final"), "--adapter", "none", "--task", "drill",
        "--data", str(data), "--engine", "hf", "--max-tokens", "20", "--output", str(out), "--no-progress",
    )  # fmt: skip
    label = sft_run.name
    summary = json.loads((out / label / "faithfulness.json").read_text())
    m = {k: v["value"] for k, v in summary["metrics"].items()}
    print(
        f"faithfulness (SFT tiny, {summary['n']} chains): early-answer change"
        f" @0% {m['early_answer_change@0.0']:.2f}"
        f" @100% {m['early_answer_change@1.0']:.2f}; mistake changes the answer {m['mistake_change']:.2f}"
        f" vs control {m['mistake_control_change']:.2f}"
    )
    assert summary["n"] >= 40 and m["accuracy"] >= 0.5
    assert m["mistake_change"] >= m["mistake_control_change"] + 0.25
    assert m["mistake_control_change"] <= 0.1 and m["early_answer_change@1.0"] <= 0.1
    assert (out / "faithfulness.png").stat().st_size > 0 and f"| {label} |" in result.stdout
    assert len((out / label / "faithfulness.jsonl").read_text().splitlines()) == summary["n"]
