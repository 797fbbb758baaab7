"""reasonrl.runtime: the run scaffolding shared by the LLM trainers and the control agents.

    run         Run (accelerator, process layout, seeds, autocast, micro-steps, optimizer
                step, resume and save) and the RunConfig it reads; make_optimizer
    checkpoint  atomic safetensors + JSON checkpoints (no pickle), ZeRO partitions
    runlog      metrics.jsonl, completions.jsonl, trackers, curves

It knows nothing of recipes, models or algorithms: trainers and control agents each
build a RunConfig from their own section, and neither imports the other.
"""

from reasonrl.runtime.run import Run, RunConfig, end_process, make_optimizer

__all__ = ["Run", "RunConfig", "end_process", "make_optimizer"]
