import math

import pytest

from reasonrl.eval import majority, mean_stderr, pass_at_k
from reasonrl.rewards.gsm8k import INVALID


def test_pass_at_k_unbiased_estimator():
    assert pass_at_k(5, 2, 1) == pytest.approx(0.4)  # c / n
    assert pass_at_k(10, 3, 2) == pytest.approx(1 - math.comb(7, 2) / math.comb(10, 2))  # 1 - 21/45
    assert pass_at_k(5, 0, 5) == 0.0 and pass_at_k(5, 1, 5) == 1.0
    with pytest.raises(ValueError):
        pass_at_k(3, 1, 4)


def test_majority_vote_normalises_and_skips_invalid():
    assert majority(["$1,000", "1000", "7", INVALID, INVALID, INVALID]) == "1000"
    assert majority(["3", "4"]) == "3"  # tie: the first seen
    assert majority([INVALID]) == INVALID


def test_mean_stderr():
    mean, stderr = mean_stderr([1.0, 0.0, 1.0, 0.0])
    assert mean == 0.5 and stderr == pytest.approx(math.sqrt((4 * 0.25 / 3) / 4))
