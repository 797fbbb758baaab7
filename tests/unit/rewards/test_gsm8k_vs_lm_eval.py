"""The gsm8k reward scores completions exactly as lm-evaluation-harness does.

lm-eval's own RegexFilter and exact_match are configured from its installed task
YAML files (so a change in the harness shows up here), and compared item by item
with reasonrl's extraction and matching on a few hundred varied completions.
"""

import random
from pathlib import Path

import pytest
import yaml

from reasonrl.rewards import build_reward
from reasonrl.rewards.gsm8k import extract, is_correct

lm_eval = pytest.importorskip("lm_eval")
from lm_eval.api.metrics import exact_match_hf_evaluate  # noqa: E402
from lm_eval.filters.extraction import RegexFilter  # noqa: E402

TASKS = Path(lm_eval.__file__).parent / "tasks" / "gsm8k"


def task_config(name):
    return yaml.safe_load((TASKS / f"{name}.yaml").read_text())


def lm_eval_scores(config, completions, references):
    metric = config["metric_list"][0]
    scores = {}
    for flt in config["filter_list"]:
        regex = flt["filter"][0]
        f = RegexFilter(regex["regex_pattern"], regex.get("group_select", 0))
        extracted = [r[0] for r in f.apply([[c] for c in completions], [{}] * len(completions))]
        scores[flt["name"]] = [
            exact_match_hf_evaluate(
                [e],
                [r],
                regexes_to_ignore=metric["regexes_to_ignore"],
                ignore_case=metric["ignore_case"],
                ignore_punctuation=metric["ignore_punctuation"],
            )["exact_match"]
            for e, r in zip(extracted, references, strict=True)
        ]
        scores[flt["name"] + "/extracted"] = extracted
    return scores


def varied_completions(seed=0, n=300):
    rng = random.Random(seed)
    numbers = [
        "18",
        "-3",
        "1,000",
        "$1,000",
        "2.5",
        "72.",
        "0",
        "1000000",
        "3.14",
        "-0.5",
        "1,234,567",
        "07",
        "$18.00",
        "18.0",
        ".5",
        "5,",
        "-",
        "12a",
        "1e3",
        "٣",
    ]
    templates = [
        "So the answer is #### {n}",
        "#### {n}",
        "She pays {n} dollars.\n#### {n}",
        "First 3 + 4 = 7, then 7 * 2 = 14.\n#### {n}.",
        "The answer is {n}.",
        "The answer is {n}",
        "I think it's {n} or maybe {m}",
        "{n}",
        "no number here",
        "",
        "#### {n}\n#### {m}",
        "Total: ${n}. Question: next one 55",
        "#### {n} apples",
        "answer:#### {n}",
        "####{n}",
        "Step 1: {m}\nStep 2: {n}\nThe answer is {n}.",
        "{n} {m} {n}",
        "#### $ {n}",
        "The ANSWER IS {n}.",
        "x = {m}; y = {n}; ####   {n}  ",
    ]
    completions, references = [], []
    for _ in range(n):
        ref = rng.choice(["18", "-3", "1000", "2.5", "72", "0", "1234567", "7"])
        # half the time the completion's number is the reference, written in some other way
        n1 = (
            rng.choice([ref, f"${ref}", f"{ref}.", ref.replace("1000", "1,000")])
            if rng.random() < 0.5
            else None
        )
        n1, n2 = n1 or rng.choice(numbers), rng.choice(numbers)
        completions.append(rng.choice(templates).format(n=n1, m=n2))
        references.append(rng.choice([ref, f"Some reasoning <<1+1=2>>2.\n#### {ref}"]))
    return completions, references


@pytest.mark.parametrize("task, strict_pattern", [("gsm8k", None), ("gsm8k-cot-zeroshot", "cot")])
def test_item_by_item_equal_to_lm_eval(task, strict_pattern):
    config = task_config(task)
    completions, references = varied_completions()
    theirs = lm_eval_scores(config, completions, references)
    strict_regex = config["filter_list"][0]["filter"][0]["regex_pattern"]
    flexible_regex = config["filter_list"][1]["filter"][0]["regex_pattern"]
    ours_strict = [extract(c, strict_regex, 0) for c in completions]
    ours_flexible = [extract(c, flexible_regex, -1) for c in completions]
    assert ours_strict == theirs["strict-match/extracted"]
    assert ours_flexible == theirs["flexible-extract/extracted"]
    strict = [float(is_correct(e, r)) for e, r in zip(ours_strict, references, strict=True)]
    flexible = [float(is_correct(e, r)) for e, r in zip(ours_flexible, references, strict=True)]
    assert strict == theirs["strict-match"]
    assert flexible == theirs["flexible-extract"]
    # the sample is varied: both outcomes happen under both filters
    assert 0 < sum(strict) < len(strict) and 0 < sum(flexible) < len(flexible)
    print(
        f"{task}: {len(completions)} items, strict {sum(strict):.0f} / flexible {sum(flexible):.0f} correct"
    )


def test_reward_function_uses_the_same_scoring():
    completions, references = varied_completions(seed=1, n=200)
    theirs = lm_eval_scores(task_config("gsm8k"), completions, references)
    strict = build_reward("gsm8k", mode="strict")(completions, answer=references)
    flexible = build_reward("gsm8k", mode="flexible")(completions, answer=references)
    assert strict == theirs["strict-match"] and flexible == theirs["flexible-extract"]
