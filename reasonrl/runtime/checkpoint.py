"""Atomic, pickle-free checkpoints.

A checkpoint is a folder ``checkpoint-{step:06d}`` holding

    weights.safetensors     the trainable weights (LoRA adapter, or the whole model)
    optimizer.safetensors   optimizer tensors;  optimizer.json: its scalars and param groups
                            (optimizer-NAME.* for each of several named optimizers)
    zero-rankR.safetensors  under DeepSpeed ZeRO: rank R's partition of the optimizer state
                            (zero-rankR.json: its scalars, groups and the partition layout)
    scheduler.json          learning-rate scheduler state
    rng.safetensors         torch RNG state;     state.json: step, python RNG, trainer state
    COMPLETE                written last

Everything is written into a hidden temporary folder that is renamed into place
only once complete, and a folder without ``COMPLETE`` is never loaded: a run
killed mid-write leaves the previous checkpoint as the latest one. (Every rank
first writes its ZeRO partition into a hidden staging folder, which the main
process moves into the checkpoint before ``COMPLETE``.) Nothing is pickled, so
loading a checkpoint never executes code.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

PATTERN = re.compile(r"^checkpoint-(\d+)$")
log = logging.getLogger(__name__)


def trainable_state(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}


def _split_state(state: dict[int, dict]) -> tuple[dict[str, torch.Tensor], dict]:
    """Per-parameter optimizer state {index: {key: value}} as safetensors tensors and JSON scalars."""
    tensors, scalars = {}, {}
    for index, entries in state.items():
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{index}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{index}.{key}"] = value
    return tensors, scalars


def _join_state(tensors: dict[str, torch.Tensor], scalars: dict) -> dict[int, dict]:
    state: dict[int, dict] = {}
    for key, value in list(tensors.items()) + list(scalars.items()):
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    return state


def _groups_to_json(groups: list[dict]) -> list[dict]:
    return [{k: list(v) if isinstance(v, tuple) else v for k, v in g.items()} for g in groups]


def _groups_from_json(groups: list[dict]) -> list[dict]:
    return [{k: tuple(v) if k == "betas" else v for k, v in g.items()} for g in groups]


def _optimizer_to_files(optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    state = optimizer.state_dict()
    tensors, scalars = _split_state(state["state"])
    return tensors, {"scalars": scalars, "param_groups": _groups_to_json(state["param_groups"])}


def _optimizer_from_files(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    return {
        "state": _join_state(tensors, meta["scalars"]),
        "param_groups": _groups_from_json(meta["param_groups"]),
    }


def staging_folder(output_dir: Path, step: int) -> Path:
    """Where each rank writes its ZeRO partition before the main process commits checkpoint ``step``."""
    return Path(output_dir) / "checkpoints" / f".staging-{step:06d}"


def save_zero_partition(folder: Path, rank: int, optimizer, partitions: list[torch.Tensor]) -> None:
    """Write rank ``rank``'s ZeRO optimizer partition into ``folder``.

    ``partitions`` are the flat fp32 tensors this rank's inner ``optimizer`` updates.
    Their state is saved by position, not through ``optimizer.state_dict()``: ZeRO-3
    swaps them in and out of the optimizer's param groups around each step.
    """
    folder.mkdir(parents=True, exist_ok=True)
    tensors, scalars = _split_state({i: optimizer.state.get(p, {}) for i, p in enumerate(partitions)})
    groups = _groups_to_json([{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups])
    meta = {"scalars": scalars, "param_groups": groups, "numels": [p.numel() for p in partitions]}
    save_file(tensors, folder / f"zero-rank{rank}.safetensors")
    (folder / f"zero-rank{rank}.json").write_text(json.dumps(meta))


def load_zero_partition(folder: Path, rank: int, optimizer, partitions: list[torch.Tensor]) -> bool:
    """Restore this rank's ZeRO partition; False (with a warning) when the checkpoint has
    none, or one partitioned differently (another world size, stage or set of parameters)."""
    meta_file = Path(folder) / f"zero-rank{rank}.json"
    if not meta_file.exists():
        log.warning(
            "%s holds no ZeRO optimizer state for rank %d: its moments restart from zero", folder, rank
        )
        return False
    meta = json.loads(meta_file.read_text())
    numels = [p.numel() for p in partitions]
    if meta["numels"] != numels:
        log.warning(
            "%s: rank %d's optimizer partitions hold %s elements, this run's %s (another world size "
            "or ZeRO stage?): the optimizer moments restart from zero",
            folder,
            rank,
            meta["numels"],
            numels,
        )
        return False
    saved = _join_state(load_file(Path(folder) / f"zero-rank{rank}.safetensors"), meta["scalars"])
    for index, entries in saved.items():
        partition = partitions[index]
        optimizer.state[partition] = {  # moments like their partition; "step" stays a CPU scalar
            k: v.to(partition.device, partition.dtype) if isinstance(v, torch.Tensor) and v.dim() else v
            for k, v in entries.items()
        }
    for group, values in zip(optimizer.param_groups, _groups_from_json(meta["param_groups"]), strict=True):
        group.update(values)
    return True


def _named(optimizer) -> dict:
    """One optimizer (saved as "optimizer"), several by name, or none."""
    if optimizer is None:
        return {}
    if isinstance(optimizer, dict):
        return {f"optimizer-{name}": opt for name, opt in optimizer.items()}
    return {"optimizer": optimizer}


def _fsync_tree(folder: Path) -> None:
    for path in folder.iterdir():
        with open(path, "rb") as f:
            os.fsync(f.fileno())


def save_checkpoint(
    output_dir: Path,
    step: int,
    model,
    optimizer,
    scheduler,
    state: dict,
    keep: int = 2,
    staged: Path | None = None,
) -> Path:
    """Write checkpoint ``step`` atomically; keep the newest ``keep`` checkpoints.

    ``staged``: a folder of files the other ranks wrote for this step (their ZeRO
    partitions), moved into the checkpoint before it is marked complete.
    """
    root = Path(output_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"checkpoint-{step:06d}"
    for stale in [*root.glob(".checkpoint-*.tmp-*"), *root.glob(".staging-*")]:  # left by a killed run
        if staged is None or stale != Path(staged):
            shutil.rmtree(stale, ignore_errors=True)
    tmp = root / f".checkpoint-{step:06d}.tmp-{os.getpid()}"
    tmp.mkdir()
    if staged is not None:
        for path in sorted(Path(staged).iterdir()):
            os.replace(path, tmp / path.name)
        Path(staged).rmdir()
    save_file(trainable_state(model), tmp / "weights.safetensors")
    for name, opt in _named(optimizer).items():
        tensors, meta = _optimizer_to_files(opt)
        save_file(tensors, tmp / f"{name}.safetensors")
        (tmp / f"{name}.json").write_text(json.dumps(meta))
    if scheduler is not None:
        (tmp / "scheduler.json").write_text(json.dumps(scheduler.state_dict()))
    save_file({"torch": torch.get_rng_state()}, tmp / "rng.safetensors")
    version, internal, gauss = random.getstate()
    python_rng = [version, list(internal), gauss]
    (tmp / "state.json").write_text(json.dumps({"step": step, "python_rng": python_rng, **state}))
    (tmp / "COMPLETE").write_text(str(step))
    _fsync_tree(tmp)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    for old in list_checkpoints(output_dir)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(output_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first (half-written ones are ignored)."""
    root = Path(output_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if PATTERN.match(p.name) and (p / "COMPLETE").exists()]
    return sorted(found, key=lambda p: int(PATTERN.match(p.name).group(1)))


def latest_checkpoint(output_dir: Path) -> Path | None:
    found = list_checkpoints(output_dir)
    return found[-1] if found else None


def load_checkpoint(folder: Path, model, optimizer, scheduler) -> dict:
    """Restore weights, optimizer, scheduler and RNG state; return the trainer state."""
    folder = Path(folder)
    if not (folder / "COMPLETE").exists():
        raise FileNotFoundError(f"{folder} is not a complete checkpoint")
    weights = load_file(folder / "weights.safetensors")
    params = dict(model.named_parameters())
    missing = set(weights) ^ {n for n, p in params.items() if p.requires_grad}
    if missing:
        raise ValueError(
            f"{folder}: checkpoint and model disagree on trainable weights: {sorted(missing)[:5]}"
        )
    with torch.no_grad():
        for name, tensor in weights.items():
            params[name].copy_(tensor)
    for name, opt in _named(optimizer).items():
        if (folder / f"{name}.safetensors").exists():
            meta = json.loads((folder / f"{name}.json").read_text())
            opt.load_state_dict(_optimizer_from_files(load_file(folder / f"{name}.safetensors"), meta))
        else:
            log.warning("%s holds no %s state: its moments restart from zero", folder, name)
    if scheduler is not None:
        scheduler.load_state_dict(json.loads((folder / "scheduler.json").read_text()))
    torch.set_rng_state(load_file(folder / "rng.safetensors")["torch"])
    state = json.loads((folder / "state.json").read_text())
    version, internal, gauss = state.pop("python_rng")
    random.setstate((version, tuple(internal), gauss))
    return state
