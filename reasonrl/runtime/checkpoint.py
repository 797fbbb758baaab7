"""Atomic, pickle-free checkpoints.

A checkpoint is a folder ``checkpoint-{step:06d}`` holding

    weights.safetensors     the trainable weights (LoRA adapter, or the whole model)
    optimizer.safetensors   optimizer tensors;  optimizer.json: its scalars and param groups
                            (optimizer-NAME.* for each of several named optimizers)
    zero-rankR.safetensors  under DeepSpeed ZeRO: rank R's partition of the optimizer state
                            (zero-rankR.json: its scalars, groups and the partition layout)
    scheduler.json          learning-rate scheduler state
    rng.safetensors         torch RNG state;     state.json: step, python RNG, trainer state
    MANIFEST.json           written last: every other file's size and SHA-256

Survives a kill at any instant:

* a checkpoint is written into a hidden temporary folder, fsynced, given its manifest,
  and only then renamed into place; a folder without a manifest is never listed;
* re-saving a step (a finished run re-run with ``--resume``) swaps the new folder and
  the old one in one atomic ``renameat2(RENAME_EXCHANGE)`` and then deletes the old
  one; rotation first renames a checkpoint to a hidden name, then deletes it, so no
  listed folder is ever partial;
* ``--resume`` verifies the manifest (sizes and checksums) and falls back to the newest
  intact checkpoint, saying which it skipped and why.

(Every rank first writes its ZeRO partition into a hidden staging folder, which the
main process moves into the checkpoint before the manifest.) Nothing is pickled, so
loading a checkpoint never executes code.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import logging
import os
import random
import re
import shutil
import signal
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


MANIFEST = "MANIFEST.json"
LEGACY_MARKER = "COMPLETE"  # checkpoints written before manifests


def crash_point(name: str) -> None:
    """Fault injection for the kill tests: SIGKILL this process at the named point of a save
    when REASONRL_CRASH_AT names it (``name`` or ``name:N`` for its N-th passage)."""
    wanted = os.environ.get("REASONRL_CRASH_AT")
    if not wanted:
        return
    point, _, nth = wanted.partition(":")
    if point != name:
        return
    _passages[name] = _passages.get(name, 0) + 1
    if _passages[name] >= int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)


_passages: dict[str, int] = {}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_manifest(folder: Path) -> None:
    """fsync every file, then write (and fsync) the manifest of their sizes and checksums."""
    files = {}
    for path in sorted(folder.iterdir()):
        if path.name != MANIFEST:
            _fsync(path)
            files[path.name] = {"size": path.stat().st_size, "sha256": _sha256(path)}
            crash_point("manifest")
    tmp = folder / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps({"files": files}, indent=1))
    _fsync(tmp)
    os.replace(tmp, folder / MANIFEST)
    _fsync(folder)


def verify(folder: Path) -> str | None:
    """None when ``folder`` is an intact checkpoint, else what is wrong with it."""
    folder = Path(folder)
    manifest = folder / MANIFEST
    if not manifest.exists():
        return None if (folder / LEGACY_MARKER).exists() else "no manifest (an unfinished save)"
    try:
        files = json.loads(manifest.read_text())["files"]
    except (OSError, ValueError, KeyError) as err:
        return f"unreadable manifest ({err})"
    for name, meta in files.items():
        path = folder / name
        if not path.exists():
            return f"{name} is missing"
        if path.stat().st_size != meta["size"]:
            return f"{name} has {path.stat().st_size} bytes, the manifest says {meta['size']}"
        if _sha256(path) != meta["sha256"]:
            return f"{name} does not match its checksum"
    return None


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    return False


def _discard(folder: Path) -> None:
    """Delete a checkpoint folder so that no kill leaves it listed and partial: rename it to a
    hidden name first (atomic), then delete."""
    trash = folder.with_name(f".trash-{folder.name}-{os.getpid()}")
    os.replace(folder, trash)
    crash_point("discard")
    shutil.rmtree(trash, ignore_errors=True)


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
    left = [*root.glob(".checkpoint-*.tmp-*"), *root.glob(".staging-*"), *root.glob(".trash-*")]
    for stale in left:  # left by a killed run
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
    crash_point("files")
    write_manifest(tmp)
    crash_point("written")
    if final.exists():  # a re-save: swap in one step, then drop the old folder (now at tmp)
        if _exchange(tmp, final):
            crash_point("exchanged")
            shutil.rmtree(tmp, ignore_errors=True)
        else:  # no renameat2: the old one is hidden first, so the listed name is never partial
            _discard(final)
            os.replace(tmp, final)
    else:
        os.replace(tmp, final)
    _fsync(root)
    crash_point("renamed")
    for old in list_checkpoints(output_dir)[:-keep] if keep > 0 else []:
        _discard(old)
    return final


def list_checkpoints(output_dir: Path) -> list[Path]:
    """Finished checkpoints (with a manifest), oldest first; their files are not verified here."""
    root = Path(output_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = [
        p
        for p in root.iterdir()
        if PATTERN.match(p.name) and ((p / MANIFEST).exists() or (p / LEGACY_MARKER).exists())
    ]
    return sorted(found, key=lambda p: int(PATTERN.match(p.name).group(1)))


def latest_checkpoint(output_dir: Path) -> Path | None:
    """The newest checkpoint that verifies; each newer one that does not is named in the log."""
    for folder in reversed(list_checkpoints(output_dir)):
        problem = verify(folder)
        if problem is None:
            return folder
        log.warning("skipping checkpoint %s: %s", folder, problem)
    return None


def load_checkpoint(folder: Path, model, optimizer, scheduler) -> dict:
    """Restore weights, optimizer, scheduler and RNG state; return the trainer state."""
    folder = Path(folder)
    problem = verify(folder)
    if problem is not None:
        raise FileNotFoundError(f"{folder} is not an intact checkpoint: {problem}")
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
