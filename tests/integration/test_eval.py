"""`reasonrl eval` builds lm-eval's prompts and scores like lm-eval's filters and metric."""

import json
from pathlib import Path

import lm_eval
import pytest
import yaml

from reasonrl.data import generate, write_jsonl
from reasonrl.data.gsm8k import load_records
from reasonrl.eval.tasks import get_task
from tests.conftest import GSM8K_DIR
from tests.helpers import ROOT, cli

TASKS_DIR = Path(lm_eval.__file__).parent / "tasks" / "gsm8k"
pytestmark = pytest.mark.filterwarnings("ignore")


def lm_eval_task(name: str, train: Path, test: Path, limit: int):
    from lm_eval.api.task import ConfigurableTask

    config = yaml.safe_load((TASKS_DIR / f"{name}.yaml").read_text())
    config.pop("tag", None)
    config.pop("dataset_name", None)
    config.update(
        dataset_path="json", dataset_kwargs={"data_files": {"train": str(train), "test": str(test)}}
    )
    task = ConfigurableTask(config=config)
    task.set_fewshot_seed(seed=1234)
    task.build_all_requests(limit=limit)
    return task


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """A GSM8K-format train/test pair written by the synthetic generator."""
    folder = tmp_path_factory.mktemp("synthetic")
    write_jsonl(generate(60, (1, 3), seed=11), folder / "train.jsonl")
    (folder / "test.jsonl").write_text((ROOT / "data" / "synthetic_gsm8k.jsonl").read_text())
    return folder


def _sources(synthetic):
    yield synthetic
    if (GSM8K_DIR / "test.jsonl").exists():
        yield GSM8K_DIR


@pytest.mark.parametrize("name, ours", [("gsm8k", "gsm8k"), ("gsm8k-cot-zeroshot", "gsm8k_cot_zeroshot")])
def test_prompts_equal_lm_eval(synthetic, name, ours):
    for folder in _sources(synthetic):
        task = lm_eval_task(name, folder / "train.jsonl", folder / "test.jsonl", limit=25)
        records = [r for r, _ in load_records(folder / "test.jsonl")][:25]
        fewshot = [r for r, _ in load_records(folder / "train.jsonl")]
        mine = get_task(ours).prompts(records, fewshot, task.config.num_fewshot or 0, 1234)
        assert [inst.arguments[0] for inst in task.instances] == mine, folder
        assert tuple(task.instances[0].arguments[1]["until"]) == get_task(ours).stop


def test_scores_equal_lm_eval_on_our_generations(synthetic, tmp_path):
    """Run reasonrl eval (SmolLM2, 5-shot, greedy), then score the same completions with
    lm-eval's own task object: its filters and process_results, item by item."""
    out = tmp_path / "eval"
    cli(
        "eval",
        "--data",
        str(synthetic / "test.jsonl"),
        "--limit",
        "24",
        "--output",
        str(out),
        "--no-progress",
    )
    items = [json.loads(line) for line in (out / "items.jsonl").read_text().splitlines()]
    task = lm_eval_task("gsm8k", synthetic / "train.jsonl", synthetic / "test.jsonl", limit=24)
    assert [inst.arguments[0] for inst in task.instances] == [it["prompt"] for it in items]
    for inst, item in zip(task.instances, items, strict=True):
        inst.resps = [item["completions"][0]]
    task.apply_filters()
    for inst, item in zip(task.instances, items, strict=True):
        for filter_name, ours in [("strict-match", "strict"), ("flexible-extract", "flexible")]:
            extracted = inst.filtered_resps[filter_name]
            assert extracted == item[ours][0], (filter_name, item["completions"][0])
            theirs = task.process_results(inst.doc, [extracted])["exact_match"]
            assert float(theirs) == float(item[f"{ours}_correct"][0])
    summary = json.loads((out / "summary.json").read_text())
    strict = summary["metrics"]["exact_match,strict-match"]["value"]
    flexible = summary["metrics"]["exact_match,flexible-extract"]["value"]
    print(
        f"SmolLM2 5-shot, 24 synthetic problems: strict {strict:.3f}, flexible {flexible:.3f}",
        f"({summary['seconds']:.1f} s)",
    )
    assert summary["n"] == 24 and summary["engine"] == "VLLMEngine"


def test_sampled_eval_reports_maj_and_pass_at_k(synthetic, tmp_path):
    out = tmp_path / "eval"
    cli(
        "eval",
        "--model",
        "tiny-llama",
        "--task",
        "chat",
        "--data",
        str(synthetic / "test.jsonl"),
        "--limit",
        "8",
        "--samples",
        "4",
        "--temperature",
        "1.0",
        "--max-tokens",
        "8",
        "--engine",
        "hf",
        "--output",
        str(out),
        "--no-progress",
    )
    summary = json.loads((out / "summary.json").read_text())
    names = set(summary["metrics"])
    assert {"pass@1,strict-match", "pass@4,flexible-extract", "maj@4,strict-match"} <= names
    items = [json.loads(line) for line in (out / "items.jsonl").read_text().splitlines()]
    assert all(len(it["completions"]) == 4 for it in items)
    m = summary["metrics"]
    assert m["pass@4,flexible-extract"]["value"] >= m["pass@1,flexible-extract"]["value"]


def test_adapter_eval_lands_next_to_the_run(tmp_path):
    run = tmp_path / "run"
    cli(
        "train",
        "recipes/synthetic/grpo-tiny.yaml",
        "--output_dir",
        str(run),
        "--max_steps",
        "2",
        "--model.lora.r",
        "4",
        "--progress",
        "false",
        "--report_to",
        "none",
    )
    cli(
        "eval",
        "--adapter",
        str(run / "final"),
        "--task",
        "chat",
        "--data",
        "data/synthetic_gsm8k.jsonl",
        "--limit",
        "4",
        "--max-tokens",
        "4",
        "--engine",
        "hf",
        "--no-progress",
    )
    summary = json.loads((run / "eval" / "summary.json").read_text())
    assert summary["adapter"] == str(run / "final") and summary["n"] == 4
    cli("push", str(run), "--repo-id", "a/b", "--dry-run", str(tmp_path / "staged"))
    assert "## Evaluation" in (tmp_path / "staged" / "README.md").read_text()
