"""Random inputs are fresh every run and reproducible: the seed is printed (shown on
failure) and can be pinned with REASONRL_TEST_SEED."""

import os
import secrets

import pytest
import torch


@pytest.fixture
def gen(request) -> torch.Generator:
    seed = int(os.environ.get("REASONRL_TEST_SEED", secrets.randbits(31)))
    print(f"{request.node.name}: REASONRL_TEST_SEED={seed}")
    return torch.Generator().manual_seed(seed)


def randn(gen, *shape, dtype=torch.float64):
    return torch.randn(*shape, generator=gen, dtype=dtype)


def rand_mask(gen, batch, length, dtype=torch.bool):
    """A right-padded completion mask: each row keeps a random prefix of length >= 1."""
    lengths = torch.randint(1, length + 1, (batch,), generator=gen)
    mask = torch.arange(length).unsqueeze(0) < lengths.unsqueeze(1)
    return mask.to(dtype)


def rand_dones(gen, t, b, p=0.2):
    return (torch.rand(t, b, generator=gen) < p).double()
