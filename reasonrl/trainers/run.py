"""The parts every trainer shares: accelerator, seeds, output folder, progress, checkpoints."""

from __future__ import annotations

import contextlib
import logging
import math
import random
from dataclasses import dataclass
from pathlib import Path

import torch

from reasonrl.config import dump_recipe, to_dict
from reasonrl.trainers import checkpoint
from reasonrl.trainers.runlog import RunLog

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


@dataclass
class Run:
    recipe: object
    accelerator: object
    log: RunLog
    output_dir: Path

    @classmethod
    def start(cls, recipe, project: str = "reasonrl") -> Run:
        from accelerate import Accelerator

        train = recipe.train
        output_dir = Path(train.output_dir)
        report = [r for r in train.report_to if r != "none"]
        accelerator = Accelerator(log_with=report or None, project_dir=str(output_dir))
        is_main = accelerator.is_main_process
        if is_main:
            output_dir.mkdir(parents=True, exist_ok=True)
            dump_recipe(recipe, output_dir / "recipe.yaml")
        run = cls(recipe, accelerator, RunLog(output_dir, accelerator, is_main), output_dir)
        if report:
            accelerator.init_trackers("tensorboard", config=_flat(to_dict(recipe)))
        log.info("run %s: %d process(es), device %s", output_dir, run.world_size, accelerator.device)
        return run

    @property
    def rank(self) -> int:
        return self.accelerator.process_index

    @property
    def world_size(self) -> int:
        return self.accelerator.num_processes

    @property
    def is_main(self) -> bool:
        return self.accelerator.is_main_process

    def seed(self, step: int) -> None:
        """Seed every generator from (seed, step, rank): a resumed run replays the same draws."""
        value = (self.recipe.train.seed * 1_000_003 + step) * 1_009 + self.rank
        random.seed(value)
        torch.manual_seed(value)

    def autocast(self):
        if not self.recipe.train.bf16:
            return contextlib.nullcontext()
        return torch.autocast(self.accelerator.device.type, dtype=torch.bfloat16)

    def progress(self, start: int, total: int, desc: str):
        from tqdm.auto import tqdm

        return tqdm(
            range(start, total),
            initial=start,
            total=total,
            desc=desc,
            dynamic_ncols=True,
            disable=not (self.is_main and self.recipe.train.progress),
        )

    def resume(self, model, optimizer, scheduler) -> int:
        """Restore the latest complete checkpoint (when train.resume); return the step to start at."""
        if not self.recipe.train.resume:
            return 0
        folder = checkpoint.latest_checkpoint(self.output_dir)
        if folder is None:
            log.warning("resume: no complete checkpoint in %s; starting from step 0", self.output_dir)
            return 0
        state = checkpoint.load_checkpoint(folder, self.accelerator.unwrap_model(model), optimizer, scheduler)
        self.log.truncate_after(state["step"])
        log.info("resumed from %s (step %d)", folder, state["step"])
        return state["step"]

    def save(self, step: int, model, optimizer, scheduler) -> None:
        self.accelerator.wait_for_everyone()
        if self.is_main:
            path = checkpoint.save_checkpoint(
                self.output_dir,
                step,
                self.accelerator.unwrap_model(model),
                optimizer,
                scheduler,
                {},
                keep=self.recipe.train.save_total_limit,
            )
            log.info("saved %s", path)
        self.accelerator.wait_for_everyone()

    def finish(self) -> None:
        self.accelerator.end_training()


def make_optimizer(model, train) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
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
