import json

import pytest

from reasonrl.data import DataError, load_gsm8k, parse_answer, strip_calculator
from reasonrl.data.gsm8k import normalize_number


def test_strip_calculator_annotations():
    text = "She sold 48/2 = <<48/2=24>>24 clips.\nTotal 48+24 = <<48+24=72>>72"
    assert strip_calculator(text) == "She sold 48/2 = 24 clips.\nTotal 48+24 = 72"


@pytest.mark.parametrize(
    "answer, final",
    [
        ("a\n#### 72", "72"),
        ("x\n#### 1,000", "1000"),
        ("x\n#### -5", "-5"),
        ("x\n####  $3.50", "3.5"),
        ("x\n#### 7.", "7"),
        ("x #### 1 #### 42", "42"),  # the last #### wins
    ],
)
def test_parse_answer(answer, final):
    assert parse_answer(answer)[1] == final


@pytest.mark.parametrize("bad", ["no marker 42", "x\n#### many", "x\n####"])
def test_parse_answer_rejects(bad):
    with pytest.raises(ValueError):
        parse_answer(bad)


def test_normalize_number():
    assert normalize_number(" $1,234. ") == "1234"
    assert normalize_number("2.50") == "2.5"
    assert normalize_number("-0.0") == "-0"


def test_malformed_line_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    good = json.dumps({"question": "q", "answer": "a\n#### 1"})
    path.write_text(good + "\n" + good + "\n{not json\n")
    with pytest.raises(DataError, match=r"bad\.jsonl:3: invalid JSON"):
        load_gsm8k(path)


def test_bad_record_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    lines = [
        json.dumps({"question": "q", "answer": "a\n#### 1"}),
        "",
        json.dumps({"question": "q", "answer": "no final answer"}),
    ]
    path.write_text("\n".join(lines))
    with pytest.raises(DataError, match=r"bad\.jsonl:3: no '#### <number>'"):
        load_gsm8k(path)
    path.write_text(json.dumps({"question": "q"}))
    with pytest.raises(DataError, match=r"bad\.jsonl:1: missing .*'answer'"):
        load_gsm8k(path)


def test_json_array_file(tmp_path):
    path = tmp_path / "p.json"
    path.write_text(json.dumps([{"question": "q", "answer": "s <<1+1=2>>2\n#### 2"}]))
    (problem,) = load_gsm8k(path)
    assert problem.solution == "s 2" and problem.answer == "2"


def test_missing_source():
    with pytest.raises(FileNotFoundError, match="no file, folder or hub id"):
        load_gsm8k("/nonexistent/gsm8k.jsonl")


@pytest.mark.gsm8k
def test_every_real_record_parses(gsm8k_dir):
    train = load_gsm8k(gsm8k_dir, "train")
    test = load_gsm8k(gsm8k_dir, "test")
    assert (len(train), len(test)) == (7473, 1319)
    for problem in train + test:
        float(problem.answer)  # numeric, commas gone
        assert "<<" not in problem.solution and "####" not in problem.solution
    assert any(p.answer.startswith("-") for p in train + test)  # negatives kept
