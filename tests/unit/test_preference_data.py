import json

import pytest

from reasonrl.data import DataError
from reasonrl.data.preference import load_pairs, synthetic_pairs


def write(tmp_path, rows):
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_plain_and_chat_formats(tmp_path):
    path = write(
        tmp_path,
        [
            {"prompt": "2+2=", "chosen": "4", "rejected": "5"},
            {
                "prompt": [{"role": "user", "content": "2+3="}],
                "chosen": [{"role": "assistant", "content": "5"}],
                "rejected": [{"role": "assistant", "content": "6"}],
            },
        ],
    )
    plain, chat = load_pairs(str(path))
    assert (plain.prompt, plain.chosen, plain.rejected) == ("2+2=", "4", "5")
    assert chat.prompt[0]["content"] == "2+3=" and (chat.chosen, chat.rejected) == ("5", "6")


@pytest.mark.parametrize(
    "row, message",
    [
        ({"prompt": "p", "chosen": "a"}, r"pairs.jsonl:2: missing field\(s\) \['rejected'\]"),
        ({"prompt": "p", "chosen": " ", "rejected": "b"}, r"pairs.jsonl:2: 'chosen' is empty"),
        (
            {"prompt": "p", "chosen": "same", "rejected": "same "},
            r"pairs.jsonl:2: 'chosen' and 'rejected' are the same",
        ),
        ({"prompt": "", "chosen": "a", "rejected": "b"}, r"pairs.jsonl:2: 'prompt' is empty"),
        (
            {"prompt": [{"text": "x"}], "chosen": "a", "rejected": "b"},
            r"pairs.jsonl:2: 'prompt' must be text or",
        ),
        ({"prompt": "p", "chosen": 3, "rejected": "b"}, r"pairs.jsonl:2: 'chosen' must be text or a list"),
    ],
)
def test_bad_records_name_the_record(tmp_path, row, message):
    path = write(tmp_path, [{"prompt": "ok", "chosen": "a", "rejected": "b"}, row])
    with pytest.raises(DataError, match=message):
        load_pairs(str(path))


def test_synthetic_pairs_differ_only_in_the_answer():
    for pair in synthetic_pairs(20, (1, 3), seed=0):
        chosen_work, chosen_answer = pair.chosen.rsplit("#### ", 1)
        rejected_work, rejected_answer = pair.rejected.rsplit("#### ", 1)
        assert chosen_work == rejected_work and chosen_answer != rejected_answer
    drill = synthetic_pairs(20, (0, 0), seed=0)
    assert all(p.chosen.isdigit() and p.rejected.isdigit() and p.chosen != p.rejected for p in drill)
