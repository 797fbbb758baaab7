"""The scaffolding every trainer and control agent stands on: accelerator, seeds, output
folder, progress, checkpoints, and the few places where DDP, DeepSpeed ZeRO-2/3 and a
single process differ.

A ``Run`` reads a small ``RunConfig``, never a whole recipe: an LLM trainer builds one
from its ``train`` section, a control agent from its own; the recipe itself is only
written down (``recipe.yaml``, tracker hyper-parameters).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import shutil
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import NoReturn

import torch

from reasonrl import allocator
from reasonrl.config import RecipeError, dump_recipe, to_dict
from reasonrl.runtime import checkpoint
from reasonrl.runtime.runlog import RunLog

log = logging.getLogger("reasonrl")


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flat(v, key + "."))
        elif isinstance(v, int | float | str | bool):
            out[key] = v
        else:
            out[key] = str(v)
    return out


def make_accelerator(**kwargs):
    """An Accelerator that also knows the process layout on CPU-only machines.

    accelerate (1.15) picks the process group from the device: without a GPU it
    treats a torchrun launch as a single process unless ``cpu=True``, and with
    ``cpu=True`` it never enables DeepSpeed. So plain launches get ``cpu=True`` (gloo
    DDP), and DeepSpeed launches keep DeepSpeed, with the process index and count,
    which accelerate reports as 0 and 1 on every rank, corrected from torch.distributed.
    """
    import torch.distributed as dist
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, PartialState

    deepspeed = os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"
    inherited = AcceleratorState._shared_state.get("_mixed_precision", "no")
    if inherited != "no" and not deepspeed and "ACCELERATE_MIXED_PRECISION" not in os.environ:
        # an earlier Accelerator in this process (a TRL trainer, say) left its mixed precision
        # in accelerate's process-wide state: a new one would inherit it and run the model in
        # autocast behind the recipe's back (reasonrl autocasts itself, as train.bf16 says)
        log.warning("dropping mixed_precision=%s left by an earlier Accelerator in this process", inherited)
        AcceleratorState._reset_state()
    accelerator = Accelerator(cpu=not torch.cuda.is_available() and not deepspeed, **kwargs)
    if deepspeed and dist.is_initialized() and accelerator.num_processes != dist.get_world_size():
        layout = {
            "num_processes": dist.get_world_size(),
            "process_index": dist.get_rank(),
            "local_process_index": int(os.environ.get("LOCAL_RANK", 0)),
        }
        PartialState._shared_state.update(layout)
        AcceleratorState._shared_state.update(layout)
        log.info("DeepSpeed on CPU: process %d of %d", accelerator.process_index, accelerator.num_processes)
    return accelerator


PREVIOUS_RUN = ("metrics.jsonl", "completions.jsonl", "checkpoints", "final")


def previous_run(folder: Path) -> list[str]:
    """What an earlier run left in ``folder`` (empty when there is none)."""
    return [name for name in PREVIOUS_RUN if (Path(folder) / name).exists()]


def earlier_run_problem(folder: Path, resume: bool, overwrite: bool) -> str | None:
    """Why a run may not start in ``folder``, or None: an earlier run there is kept unless
    --overwrite (replace it) or --resume (continue it) says otherwise, and not both."""
    if resume and overwrite:
        return "--overwrite and --resume exclude each other: pick one"
    earlier = previous_run(folder)
    if earlier and not (resume or overwrite):
        return (
            f"{str(folder)!r} holds an earlier run ({', '.join(earlier)}): pass --overwrite to replace "
            "it or --resume to continue it, or choose another --output_dir"
        )
    return None


@dataclass
class RunConfig:
    """What the run scaffolding needs to know; each field means what the recipe key of
    the same name means."""

    output_dir: str
    seed: int = 0
    resume: bool = False  # continue from the newest complete checkpoint in output_dir
    overwrite: bool = False  # replace an earlier run's logs and checkpoints (else: an error)
    report_to: list[str] = field(default_factory=lambda: ["tensorboard"])
    progress: bool = True
    save_steps: int = 0  # steps between checkpoints; 0 = at the end only
    save_total_limit: int = 2
    bf16: bool = False  # bfloat16 autocast in forward/backward (already resolved from "auto")
    micro_batch_size: int = 1  # DeepSpeed's train_micro_batch_size_per_gpu
    max_grad_norm: float = 1.0  # clipping in ``optimizer_step`` (and DeepSpeed's)

    @classmethod
    def of(cls, section, **values) -> RunConfig:
        """The fields of a recipe section (``train``) that a RunConfig has, by name, then ``values``."""
        names = {f.name for f in fields(cls)}
        return cls(**{n: getattr(section, n) for n in names if hasattr(section, n)} | values)


@dataclass
class Run:
    """One training run's process layout, output folder, log and checkpoints.

    ``Run.start(config, record=recipe)`` makes the accelerator and the output folder
    (writing ``recipe.yaml``); a trainer then calls ``prepare``, ``resume``, and per step
    ``seed``, ``micro_step`` around each backward, ``optimizer_step``, ``save``; then
    ``finish``.
    """

    config: RunConfig
    accelerator: object
    log: RunLog
    output_dir: Path

    @classmethod
    def start(cls, config: RunConfig, record=None) -> Run:
        """Start a run in ``config.output_dir``; ``record`` (a recipe) is written as recipe.yaml."""
        output_dir = Path(config.output_dir)
        report = [r for r in config.report_to if r != "none"]
        accelerator = make_accelerator(log_with=report or None, project_dir=str(output_dir))
        is_main = accelerator.is_main_process
        run = cls(config, accelerator, RunLog(output_dir, accelerator, is_main), output_dir)
        if is_main:
            problem = earlier_run_problem(output_dir, config.resume, config.overwrite)
            if problem is not None:
                raise RecipeError(problem)
            if not config.resume:
                run.clear_previous()
            if record is not None:
                dump_recipe(record, output_dir / "recipe.yaml")
        if report:
            hparams = _flat(to_dict(record)) if record is not None else {}
            accelerator.init_trackers("tensorboard", config=hparams)
        log.info(
            "run %s: %d process(es), device %s, allocator %s",
            output_dir,
            run.world_size,
            accelerator.device,
            allocator.loaded(),
        )
        note = allocator.glibc_note()
        if note:
            log.warning(note)
        return run

    def clear_previous(self) -> None:
        """--overwrite: remove an earlier run's logs, checkpoints and final weights."""
        old = [self.output_dir / name for name in PREVIOUS_RUN]
        if any(p.exists() for p in old):
            log.warning("%s: the earlier run there is replaced (--overwrite)", self.output_dir)
            for path in old:
                if path.is_dir():
                    shutil.rmtree(path)
                elif path.exists():
                    path.unlink()

    # -- process layout --------------------------------------------------------------
    @property
    def rank(self) -> int:
        return self.accelerator.process_index

    @property
    def world_size(self) -> int:
        return self.accelerator.num_processes

    @property
    def is_main(self) -> bool:
        return self.accelerator.is_main_process

    @property
    def deepspeed(self) -> bool:
        from accelerate.utils import DistributedType

        return self.accelerator.distributed_type == DistributedType.DEEPSPEED

    @property
    def zero3(self) -> bool:
        return self.deepspeed and self.accelerator.state.deepspeed_plugin.zero_stage == 3

    # -- determinism and precision ---------------------------------------------------
    def seed(self, step: int) -> None:
        """Seed every generator from (seed, step, rank): a resumed run replays the same draws."""
        value = (self.config.seed * 1_000_003 + step) * 1_009 + self.rank
        random.seed(value)
        torch.manual_seed(value)

    def autocast(self):
        if not self.config.bf16:
            return contextlib.nullcontext()
        return torch.autocast(self.accelerator.device.type, dtype=torch.bfloat16)

    # -- optimisation ----------------------------------------------------------------
    def prepare(self, model, optimizer):
        """accelerator.prepare, first telling DeepSpeed the micro-batch size and clipping."""
        if self.deepspeed:
            micro = self.config.micro_batch_size
            self.accelerator.state.deepspeed_plugin.deepspeed_config.update(
                train_micro_batch_size_per_gpu=micro,
                gradient_accumulation_steps=1,  # micro_step() marks the real accumulation boundaries
                train_batch_size=micro * self.world_size,
                gradient_clipping=self.config.max_grad_norm,
            )
        return self.accelerator.prepare(model, optimizer)

    @contextlib.contextmanager
    def micro_step(self, model, last: bool):
        """Wrap forward + backward of one micro-batch; gradients are reduced after the last only."""
        if self.deepspeed:
            self.accelerator.sync_gradients = last  # DeepSpeed steps at the boundary, inside backward
            yield
        elif last or self.world_size == 1:
            yield
        else:
            with self.accelerator.no_sync(model):
                yield

    def optimizer_step(self, model, optimizer) -> float:
        """Clip, step, zero the gradients; return the gradient norm."""
        if self.deepspeed:  # DeepSpeed already clipped and stepped in backward, at the boundary
            norm = model.get_global_grad_norm()
            norm = float(norm) if norm is not None else float("nan")
        else:
            max_norm = self.config.max_grad_norm
            norm = float(self.accelerator.clip_grad_norm_(model.parameters(), max_norm))
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        allocator.release_free_memory()  # the step's activations are gone: do not keep their pages
        return norm

    @contextlib.contextmanager
    def gathered(self, model, modified: bool = False):
        """Full parameters on every rank inside the block (ZeRO-3 shards them); a no-op otherwise.

        ``modified``: the block writes the parameters (every rank the same values); rank 0's
        are partitioned back on exit. Otherwise ZeRO-3 drops writes made inside the block.
        """
        if not self.zero3:
            yield
            return
        import deepspeed

        with deepspeed.zero.GatheredParameters(
            list(model.parameters()), modifier_rank=0 if modified else None
        ):
            yield

    # -- progress and checkpoints ----------------------------------------------------
    def progress(self, start: int, total: int, desc: str):
        from tqdm.auto import tqdm

        enabled = self.is_main and self.config.progress
        return tqdm(
            range(start, total),
            initial=start,
            total=total,
            desc=desc,
            dynamic_ncols=True,
            disable=not enabled,
        )

    def resume(self, model, optimizer, scheduler) -> int:
        """Restore the latest complete checkpoint (when train.resume); return the step to start at."""
        if not self.config.resume:
            return 0
        folder = checkpoint.latest_checkpoint(self.output_dir)
        if folder is None:
            log.warning("resume: no intact checkpoint in %s; starting from step 0", self.output_dir)
            self.log.truncate_after(0)  # what a killed first attempt logged is logged again
            return 0
        with self.gathered(model, modified=True):
            state = checkpoint.load_checkpoint(
                folder, self.accelerator.unwrap_model(model), None if self.deepspeed else optimizer, scheduler
            )
        if self.deepspeed:
            zero = model.optimizer
            zero.refresh_fp32_params()  # its fp32 master partitions still hold the initial weights
            checkpoint.load_zero_partition(folder, self.rank, zero.optimizer, _zero_partitions(zero))
        self.log.truncate_after(state["step"])
        log.info("resumed from %s (step %d)", folder, state["step"])
        return state["step"]

    def save(self, step: int, model, optimizer, scheduler) -> None:
        self.accelerator.wait_for_everyone()
        staged = None
        if self.deepspeed:  # every rank holds a partition of the optimizer state
            staged = checkpoint.staging_folder(self.output_dir, step)
            zero = model.optimizer
            checkpoint.save_zero_partition(staged, self.rank, zero.optimizer, _zero_partitions(zero))
            self.accelerator.wait_for_everyone()
        with self.gathered(model):
            if self.is_main:
                path = checkpoint.save_checkpoint(
                    self.output_dir,
                    step,
                    self.accelerator.unwrap_model(model),
                    None if self.deepspeed else optimizer,
                    scheduler,
                    {},
                    keep=self.config.save_total_limit,
                    staged=staged,
                )
                log.info("saved %s", path)
        self.accelerator.wait_for_everyone()

    def checkpoint_due(self, step: int, last: int) -> bool:
        """Whether ``save_steps`` asks for a checkpoint after ``step``; the last step saves
        after the loop, once, whatever ``save_steps`` says."""
        every = self.config.save_steps
        return bool(every) and step % every == 0 and step < last

    def finish(self) -> None:
        self.accelerator.end_training()


def _zero_partitions(zero) -> list[torch.Tensor]:
    """The flat fp32 tensors a DeepSpeed ZeRO optimizer's inner optimizer updates on this rank."""
    if hasattr(zero, "fp32_partitioned_groups_flat"):  # stage 3
        return list(zero.fp32_partitioned_groups_flat)
    return list(zero.single_partition_of_fp32_groups)  # stages 1 and 2


def end_process(code: int) -> NoReturn:
    """Leave a process of a multi-process run without Python's interpreter shutdown.

    A gloo worker thread can still hold the last reference to a finished collective's
    tensors when the main thread returns. Releasing them needs the GIL, which a finalizing
    interpreter no longer hands out: the thread is unwound and the process aborts with
    "terminate called without an active exception" (SIGABRT) after all its work is done.
    It hit about 1 in 20 two-process ZeRO-2 runs here; the core dump shows
    ProcessGroupGloo::runLoop -> ~AsyncAllgatherWork -> decref_pyobject -> take_gil ->
    pthread_exit. destroy_process_group does not stop those threads (DeepSpeed and others
    keep the groups alive), so a finished run flushes what it wrote and exits directly.
    """
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def make_optimizer(model, train) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW over the model's trainable parameters, and its learning-rate schedule.

    ``train`` gives learning_rate, weight_decay, max_steps, warmup_steps and lr_scheduler:
    a linear warm-up over warmup_steps, then constant, linear decay to 0 or cosine decay
    to 0 at max_steps. The scheduler steps once per optimisation step.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters")
    optimizer = torch.optim.AdamW(params, lr=train.learning_rate, weight_decay=train.weight_decay)
    warmup, total = train.warmup_steps, max(1, train.max_steps)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = (step - warmup) / max(1, total - warmup)
        if train.lr_scheduler == "linear":
            return max(0.0, 1.0 - progress)
        if train.lr_scheduler == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
        return 1.0

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
