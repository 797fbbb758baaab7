"""Deterministic batches of problems: batch k depends only on (seed, k), so a resumed
run draws exactly the batches an uninterrupted one would."""

from __future__ import annotations

import torch


class ProblemSampler:
    def __init__(self, items: list, seed: int = 0):
        if not items:
            raise ValueError("no problems to sample from")
        self.items = items
        self.seed = seed
        self._perms: dict[int, list[int]] = {}

    def _perm(self, epoch: int) -> list[int]:
        if epoch not in self._perms:
            gen = torch.Generator().manual_seed(self.seed * 7919 + epoch)
            self._perms = {epoch: torch.randperm(len(self.items), generator=gen).tolist()}
        return self._perms[epoch]

    def batch(self, step: int, size: int) -> list:
        """The ``size`` items of batch ``step`` (epochs reshuffle; no item repeats within an epoch)."""
        n = len(self.items)
        out = []
        for i in range(step * size, (step + 1) * size):
            out.append(self.items[self._perm(i // n)[i % n]])
        return out
