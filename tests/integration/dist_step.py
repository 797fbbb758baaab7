"""Launched by test_distributed.py under `accelerate launch` with 2 processes.

Builds the GRPO pieces exactly as the trainer does (Run, policy, optimizer,
run.prepare, grpo.update), takes one optimizer step on real rollouts, then reports
per rank: the process layout, how much of the model / optimizer this rank holds,
and whether every rank ends with the same full parameters.
"""

import hashlib
import json
import sys

import torch
import torch.distributed as dist

from reasonrl.config import load_recipe
from reasonrl.losses import group_advantages
from reasonrl.rollout import SamplingConfig, make_engine
from reasonrl.runtime import end_process, make_optimizer
from reasonrl.trainers.grpo import StepInputs, update
from reasonrl.trainers.policy import build_policy
from reasonrl.trainers.recipe import Recipe
from reasonrl.trainers.start import start_run


def full_parameters(run, model) -> torch.Tensor:
    with run.gathered(model):
        return torch.cat([p.detach().flatten().clone() for p in model.parameters()])


def local_share(run, model) -> int:
    """Elements this rank stores: its parameter shard (ZeRO-3) or its optimizer-state shard (ZeRO-2)."""
    if run.zero3:
        return sum(p.ds_tensor.numel() for p in model.parameters())
    if run.deepspeed:
        return sum(t.numel() for t in model.optimizer.single_partition_of_fp32_groups)
    return sum(p.numel() for p in model.parameters())


def main(out: str) -> None:
    recipe = load_recipe(
        Recipe,
        "recipes/synthetic/grpo-tiny.yaml",
        ["--output_dir", out, "--report_to", "none", "--micro_batch_size", "8"],
    )
    run = start_run(recipe)
    policy = build_policy(recipe.model, need_reference=False)
    optimizer, _ = make_optimizer(policy.model, recipe.train)
    model, optimizer = run.prepare(policy.model, optimizer)
    before = full_parameters(run, model)
    torch.manual_seed(1 + run.rank)  # each rank its own prompts and samples, as in training
    engine = make_engine("hf", run.accelerator.unwrap_model(model), policy.tokenizer)
    with run.gathered(model):
        rollouts = engine.generate(
            [f"{run.rank}+{i}=" for i in range(4)], SamplingConfig(n=4, max_tokens=40, ignore_eos=True)
        )
    if run.rank == 0:  # lengths 40 and 1 here, 40 everywhere on rank 1: a free choice of
        # length groups would make different numbers of forward passes on the two ranks
        rollouts.completion_mask[1::2, 1:] = False
    rewards = torch.rand(len(rollouts))
    inputs = StepInputs(rollouts, group_advantages(rewards, 4), rollouts.completion_mask, None, None)
    stats = update(model, optimizer, inputs, torch.arange(len(rollouts)), recipe.grpo, run)
    after = full_parameters(run, model)
    digest = hashlib.sha256(after.numpy().tobytes()).hexdigest()
    digests = [None] * dist.get_world_size()
    dist.all_gather_object(digests, digest)
    report = {
        "rank": run.rank,
        "world_size": run.world_size,
        "torch_world_size": dist.get_world_size(),
        "torch_rank": dist.get_rank(),
        "deepspeed": run.deepspeed,
        "zero3": run.zero3,
        "local_share": local_share(run, model),
        "full_size": after.numel(),
        "identical_across_ranks": len(set(digests)) == 1,
        "changed": not torch.equal(before, after),
        "grad_norm": stats["grad_norm"],
    }
    with open(f"{out}/rank{run.rank}.json", "w") as f:
        json.dump(report, f)
    run.finish()
    end_process(0)  # as `reasonrl train` does: see end_process for the abort a normal exit risks


if __name__ == "__main__":
    main(sys.argv[1])
