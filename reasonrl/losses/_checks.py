"""Argument checks shared by the loss functions: misuse fails at once, with names."""

from __future__ import annotations

import torch


def check_float(name: str, x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {x.dtype}")


def check_shapes(**tensors: torch.Tensor) -> torch.Size:
    """All tensors must be floating point and share one shape; returns it."""
    shape = None
    for name, x in tensors.items():
        check_float(name, x)
        if shape is None:
            shape, first = x.shape, name
        elif x.shape != shape:
            raise ValueError(
                f"shape mismatch: {first} has shape {tuple(shape)} but {name} has {tuple(x.shape)}"
            )
    return shape


def check_rank(name: str, x: torch.Tensor, rank: int, what: str) -> None:
    if x.dim() != rank:
        raise ValueError(f"{name} must be {what} (rank {rank}), got shape {tuple(x.shape)}")


def as_mask(mask: torch.Tensor | None, like: torch.Tensor, name: str = "mask") -> torch.Tensor:
    """Validate a 0/1 mask (bool or floating point) shaped like ``like``; return it as ``like.dtype``.

    Integer masks are refused on purpose: an ``int`` mask multiplied into a loss silently
    truncates, and a ``long`` attention mask passed where a completion mask belongs is a
    common bug. Convert with ``.bool()``.
    """
    if mask is None:
        return torch.ones_like(like)
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(mask).__name__}")
    if mask.dtype != torch.bool and not mask.is_floating_point():
        raise TypeError(f"{name} must be bool or floating point, got {mask.dtype}; use {name}.bool()")
    if mask.shape != like.shape:
        raise ValueError(f"{name} has shape {tuple(mask.shape)}, expected {tuple(like.shape)}")
    return mask.to(like.dtype)


def check_groups(n: int, group_size: int) -> int:
    """Number of groups of ``group_size`` in a batch of ``n``; refuses empty or ragged groups."""
    if group_size < 1:
        raise ValueError(f"group_size must be >= 1, got {group_size}")
    if n == 0:
        raise ValueError("empty batch: no groups to normalise")
    if n % group_size:
        raise ValueError(f"group size {group_size} does not divide the batch size {n}")
    return n // group_size
