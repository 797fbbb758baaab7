"""Tree search throughput: the batched search (all trees' nodes as arrays, one model call
per simulation for every tree) vs the per-tree reference (MuZero's pseudocode, nodes as
objects, the model called on one node at a time), on the same network and noise.

Setting (issue 24): 16 parallel environments (CartPole observations), 50 simulations
each, the MuZero agent's networks at their recipe sizes (freshly initialised), one torch
thread. Both searches give the same visit counts (checked here too). Reported:
simulations per second (16 × 50 per search) and the ratio; target >= 10x.
"""

from __future__ import annotations

import os
import time

import torch

from reasonrl.control.mcts import SearchConfig, reference_search, search
from reasonrl.control.muzero import MuZeroNet, planning_model

TREES, SIMULATIONS = 16, 50
SECONDS = float(os.environ.get("BENCH_MCTS_SECONDS", 10))


def timed(fn, *args) -> float:
    """Seconds per call, best of repeated calls over SECONDS (after one warm-up call)."""
    fn(*args)
    times, start = [], time.perf_counter()
    while time.perf_counter() - start < SECONDS or len(times) < 3:
        t0 = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    from tests.benchmarks.common import save, table

    torch.set_num_threads(1)
    torch.manual_seed(0)
    net = MuZeroNet(obs_dim=4, n_actions=2)
    root_fn, recurrent = planning_model(net, gamma=0.997)
    root = root_fn(torch.randn(TREES, 4))
    config = SearchConfig(num_simulations=SIMULATIONS)
    noise = torch.distributions.Dirichlet(torch.full((2,), config.dirichlet_alpha)).sample((TREES,))
    same = torch.equal(
        search(root, recurrent, config, noise).root_visit_counts(),
        reference_search(root, recurrent, config, noise),
    )
    results = {}
    for name, fn in (("batched", search), ("per-tree reference", reference_search)):
        seconds = timed(fn, root, recurrent, config, noise)
        results[name] = {
            "ms_per_search": 1000 * seconds,
            "simulations_per_second": TREES * SIMULATIONS / seconds,
        }
    print(f"\nMCTS, {TREES} trees x {SIMULATIONS} simulations, MuZero CartPole networks, 1 thread:")
    table(
        [
            {
                "search": k,
                "ms / search": f"{v['ms_per_search']:.1f}",
                "simulations/s": f"{v['simulations_per_second']:.0f}",
            }
            for k, v in results.items()
        ]
    )
    ratio = (
        results["batched"]["simulations_per_second"] / results["per-tree reference"]["simulations_per_second"]
    )
    print(f"batched / per-tree: {ratio:.1f}x (target >= 10x); same visit counts: {same}")
    save("mcts_batched", {"results": results, "ratio": ratio, "same_visit_counts": same})


if __name__ == "__main__":
    main()
