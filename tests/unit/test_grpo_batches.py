"""How a GRPO update splits its minibatch: which rows run, in which micro-batches."""

from types import SimpleNamespace

import torch

from reasonrl.trainers.grpo import StepInputs, contributing_rows, micro_batches
from reasonrl.trainers.recipe import GRPOSection


def test_micro_batches_keep_each_prompts_completions_together():
    rows = torch.tensor([5, 2, 7, 0, 3, 6, 1, 4])  # a random draw of 2 prompts x 4 completions
    chunks = micro_batches(rows, 4)
    assert [c.tolist() for c in chunks] == [[0, 1, 2, 3], [4, 5, 6, 7]]  # one prompt each
    assert micro_batches(torch.tensor([], dtype=torch.long), 4) == ()


def _inputs(advantages, lengths):
    mask = torch.arange(4)[None, :] < torch.tensor(lengths)[:, None]
    return StepInputs(None, torch.tensor(advantages), mask, None, None)


def test_rows_without_gradient_are_left_out_only_when_that_is_exact():
    inputs = _inputs([0.0, 1.5, -1.5, 0.7], [3, 2, 4, 0])  # row 0: A = 0; row 3: no tokens
    rows = torch.arange(4)
    one = SimpleNamespace(world_size=1, deepspeed=False)
    assert contributing_rows(inputs, rows, GRPOSection(), one).tolist() == [1, 2]
    # a KL term has a gradient at A = 0; several processes must run the same passes
    assert contributing_rows(inputs, rows, GRPOSection(beta=0.1), one).tolist() == [0, 1, 2, 3]
    two = SimpleNamespace(world_size=2, deepspeed=False)
    assert contributing_rows(inputs, rows, GRPOSection(), two).tolist() == [0, 1, 2, 3]
    off = GRPOSection(skip_zero_advantage=False)
    assert contributing_rows(inputs, rows, off, one).tolist() == [0, 1, 2, 3]
