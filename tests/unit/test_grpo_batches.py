"""How a GRPO update splits its minibatch: which rows run, in which micro-batches."""

from types import SimpleNamespace

import torch

from reasonrl.models.logprobs import PASSES_PER_RANK
from reasonrl.trainers.grpo import StepInputs, contributing_rows, in_step_across_ranks, micro_batches
from reasonrl.trainers.recipe import GRPOSection


def test_micro_batches_keep_each_prompts_completions_together():
    rows = torch.tensor([5, 2, 7, 0, 3, 6, 1, 4])  # a random draw of 2 prompts x 4 completions
    chunks = micro_batches(rows, 4)
    assert [c.rows.tolist() for c in chunks] == [[0, 1, 2, 3], [4, 5, 6, 7]]  # one prompt each
    assert all(c.counted.all() for c in chunks)
    assert micro_batches(torch.tensor([], dtype=torch.long), 4) == []


def _inputs(advantages, lengths):
    mask = torch.arange(4)[None, :] < torch.tensor(lengths)[:, None]
    return StepInputs(None, torch.tensor(advantages), mask, None, None)


def test_rows_without_gradient_are_left_out_only_when_that_is_exact():
    inputs = _inputs([0.0, 1.5, -1.5, 0.7], [3, 2, 4, 0])  # row 0: A = 0; row 3: no tokens
    rows = torch.arange(4)
    assert contributing_rows(inputs, rows, GRPOSection()).tolist() == [1, 2]
    # a KL term has a gradient at A = 0
    assert contributing_rows(inputs, rows, GRPOSection(beta=0.1)).tolist() == [0, 1, 2, 3]
    off = GRPOSection(skip_zero_advantage=False)
    assert contributing_rows(inputs, rows, off).tolist() == [0, 1, 2, 3]


def _rank(world_size: int, others: list[int], deepspeed: bool = True):
    """A stand-in for Run: ``others`` are the micro-batch counts of the other ranks."""
    gather = lambda t: torch.cat([t, torch.tensor(others)])  # noqa: E731
    accelerator = SimpleNamespace(gather=gather)
    return SimpleNamespace(world_size=world_size, deepspeed=deepspeed, accelerator=accelerator)


def test_ranks_that_skipped_more_rows_still_call_the_model_as_the_others_do():
    rows = torch.arange(16)
    mine = micro_batches(torch.tensor([3, 9, 10]), 2)  # [3, 9] and [10]
    chunks = in_step_across_ranks(mine, rows, _rank(2, [4]))
    assert len(chunks) == 4  # the other rank runs 4 micro-batches
    assert all(len(c.rows) >= PASSES_PER_RANK for c in chunks)  # as many length groups each
    assert [c.rows[c.counted].tolist() for c in chunks] == [[3, 9], [10], [], []]  # what counts is unchanged
    # every rank skipped everything: one micro-batch that counts nothing, so DeepSpeed steps
    (blank,) = in_step_across_ranks([], rows, _rank(2, [0]))
    assert not blank.counted.any() and len(blank.rows) == PASSES_PER_RANK
    # DeepSpeed on one process: at least one micro-batch, no topping up
    (alone,) = in_step_across_ranks([], rows, _rank(1, []))
    assert len(alone.rows) == 1 and not alone.counted.any()
