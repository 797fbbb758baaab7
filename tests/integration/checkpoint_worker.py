"""A small training loop on the real Run (accelerate, checkpoints, run log), for kill tests.

    python -m tests.integration.checkpoint_worker OUT STEPS [--resume]

Every step is one AdamW update of a small network on seeded data, logs a metrics line
and saves a checkpoint (two kept, so every save after the second rotates one out);
the last step saves once more after the loop. Run again with --resume on a finished
folder, it re-saves the last checkpoint. REASONRL_CRASH_AT kills it inside a save.
"""

import sys

import torch

from reasonrl.runtime import Run, RunConfig, make_optimizer


class Schedule:  # the fields make_optimizer reads
    learning_rate, weight_decay, warmup_steps, lr_scheduler = 1e-2, 0.01, 2, "cosine"

    def __init__(self, max_steps: int):
        self.max_steps = max_steps


def main(out: str, steps: int, resume: bool) -> None:
    config = RunConfig(
        output_dir=out,
        resume=resume,
        overwrite=not resume,
        report_to=["none"],
        progress=False,
        save_steps=1,
        save_total_limit=2,
    )
    run = Run.start(config)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.Tanh(), torch.nn.Linear(64, 4))
    optimizer, scheduler = make_optimizer(model, Schedule(steps))
    model, optimizer = run.prepare(model, optimizer)
    start = run.resume(model, optimizer, scheduler)
    for step in range(start, steps):
        run.seed(step)
        x = torch.randn(32, 16)
        loss = (model(x) - x[:, :4]).pow(2).mean()
        run.accelerator.backward(loss)
        grad_norm = run.optimizer_step(model, optimizer)
        scheduler.step()
        run.log.metrics(
            step + 1, {"loss": loss.item(), "grad_norm": grad_norm, "lr": scheduler.get_last_lr()[0]}
        )
        if run.checkpoint_due(step + 1, steps):
            run.save(step + 1, model, optimizer, scheduler)
    run.save(steps, model, optimizer, scheduler)
    run.finish()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), "--resume" in sys.argv[3:])
