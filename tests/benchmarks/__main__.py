"""``make bench``: run the side-by-side benchmarks (all, or those named on the command line).

Each benchmark prints its table and ratios and writes JSON under outputs/bench/.
They measure wall-clock time on a shared machine: numbers, not pass/fail tests.
"""

import importlib
import sys

BENCHMARKS = [
    "rollout_throughput",
    "episodes_throughput",
    "grpo_vs_trl",
    "grpo_roofline",
    "engine_mode",
    "sft_vs_trl",
    "eval_vs_lm_eval",
    "ppo_vs_cleanrl",
    "mcts_batched",
    "control_to_solve",
]


def main(names: list[str]) -> int:
    unknown = set(names) - set(BENCHMARKS)
    if unknown:
        print(f"unknown benchmark(s) {sorted(unknown)}; available: {BENCHMARKS}")
        return 2
    for name in names or BENCHMARKS:
        try:
            module = importlib.import_module(f"tests.benchmarks.{name}")
        except ModuleNotFoundError as err:
            if err.name == f"tests.benchmarks.{name}":
                print(f"== {name}: not written yet, skipped")
                continue
            raise
        print(f"== {name}")
        module.main()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
