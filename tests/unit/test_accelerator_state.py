"""A run's Accelerator does not inherit mixed precision from an earlier one in the process."""

import logging

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState

from reasonrl.runtime.run import make_accelerator


def test_an_earlier_bf16_accelerator_does_not_leak_into_a_run(caplog, monkeypatch):
    """A TRL trainer made before a reasonrl run in the same process (a notebook, the parity
    tests) leaves mixed_precision=bf16 in accelerate's shared state; inherited, it would
    wrap the run's model in autocast (the SFT parity test saw a 5e-4 loss gap from it)."""
    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION", raising=False)
    AcceleratorState._reset_state()
    Accelerator(cpu=True, mixed_precision="bf16")
    with caplog.at_level(logging.WARNING):
        accelerator = make_accelerator()
    assert accelerator.mixed_precision == "no"
    assert "dropping mixed_precision=bf16" in caplog.text
    model = accelerator.prepare(torch.nn.Linear(4, 4))
    assert model(torch.ones(1, 4)).dtype == torch.float32  # no autocast wrapper
    AcceleratorState._reset_state()
