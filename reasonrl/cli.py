"""Command line: ``reasonrl <command> ...`` and ``python -m reasonrl <command> ...``.

Commands are added by the module that owns them; cli only dispatches. Nothing
imports cli.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

USER_ERRORS: tuple[type[Exception], ...] = ()


class UsageError(ValueError):
    """Command-line flags that do not go together."""


def _user_errors() -> tuple[type[Exception], ...]:
    from reasonrl.config import RecipeError
    from reasonrl.data import DataError
    from reasonrl.models import ModelNotFoundError
    from reasonrl.rollout.vllm_engine import VLLMUnavailableError

    return (RecipeError, DataError, ModelNotFoundError, VLLMUnavailableError, FileNotFoundError, UsageError)


def _data(args: argparse.Namespace) -> int:
    import json

    from reasonrl.data.preference import synthetic_pairs
    from reasonrl.data.synthetic import generate, write_jsonl

    low, high = args.difficulty if len(args.difficulty) == 2 else args.difficulty * 2
    if args.kind == "synthetic":
        write_jsonl(generate(args.n, (low, high), seed=args.seed), args.out)
    else:
        with open(args.out, "w") as f:
            for pair in synthetic_pairs(args.n, (low, high), args.seed):
                f.write(
                    json.dumps({"prompt": pair.prompt, "chosen": pair.chosen, "rejected": pair.rejected})
                    + "\n"
                )
    print(f"wrote {args.n} {args.kind} records (difficulty {low}-{high}, seed {args.seed}) to {args.out}")
    return 0


def _model(args: argparse.Namespace) -> int:
    from reasonrl.models import resolve

    print(resolve(args.name))
    return 0


def _train(args: argparse.Namespace) -> int:
    from reasonrl.config import load_recipe
    from reasonrl.trainers import train
    from reasonrl.trainers.recipe import Recipe
    from reasonrl.trainers.validate import validate

    recipe = load_recipe(Recipe, args.recipe, args.overrides)
    # held-out accuracy around the run (eval.limit > 0), on the main process only
    evaluating = recipe.eval.limit > 0 and int(os.environ.get("RANK", "0")) == 0
    before = None
    if evaluating and recipe.eval.before:
        validate(recipe)  # bad input is named before the first model loads, as without eval
        before = _held_out(recipe, None, Path(recipe.train.output_dir) / "eval-base")
    run = train(recipe)
    if evaluating:
        from reasonrl.eval.around import report

        after = _held_out(recipe, str(run.output_dir / "final"), run.output_dir / "eval")
        print(report(before, after))
    return 0


def _held_out(recipe, weights: str | None, output: Path) -> dict:
    import dataclasses

    from reasonrl.eval.around import held_out_config, run_eval

    logging.getLogger(__name__).info("held-out evaluation of %s", weights or recipe.model.name)
    return run_eval(dataclasses.replace(held_out_config(recipe, weights), output=str(output)))


def _control(args: argparse.Namespace) -> int:
    import json

    from reasonrl.config import load_recipe
    from reasonrl.control import train_control
    from reasonrl.control.recipe import ControlRecipe

    summary = train_control(load_recipe(ControlRecipe, args.recipe, args.overrides))
    print(json.dumps(summary))
    return 0


def _push(args: argparse.Namespace) -> int:
    import os

    from reasonrl.hub import push

    token = args.token or os.environ.get("HF_TOKEN")  # None: huggingface_hub's own login
    result = push(
        args.output_dir,
        args.repo_id,
        token=token,
        private=args.private,
        endpoint=args.endpoint,
        dry_run=args.dry_run,
    )
    print(("staged in " if args.dry_run else "uploaded: ") + result)
    return 0


def _eval(args: argparse.Namespace) -> int:
    import dataclasses

    from reasonrl.eval import EvalConfig, evaluate

    options = {f.name: getattr(args, f.name) for f in dataclasses.fields(EvalConfig) if hasattr(args, f.name)}
    adapters = [None if a in ("none", "base") else a for a in (args.adapter or [None])]
    if args.faithfulness:
        return _faithfulness(EvalConfig(**{**options, "adapter": None}), adapters)
    if len(adapters) > 1:
        raise UsageError("--adapter is given once, except with --faithfulness (which compares them)")
    options["adapter"] = adapters[0]
    if options["output"] is None and options["adapter"] and Path(options["adapter"]).name == "final":
        options["output"] = str(
            Path(options["adapter"]).parent / "eval"
        )  # next to the run: the model card reads it
    if options.get("env"):
        from reasonrl.eval.agent import evaluate_env

        summary = evaluate_env(EvalConfig(**options))
    else:
        summary = evaluate(EvalConfig(**options))
    print(
        f"{summary['task']} ({summary['n']} problems, {summary['num_fewshot']}-shot, {summary['engine']}, "
        f"{summary['seconds']:.0f} s)"
    )
    for name, metric in summary["metrics"].items():
        print(f"  {name:32s} {metric['value']:.4f} ± {metric['stderr']:.4f}")
    return 0


def _faithfulness(cfg, adapters: list[str | None]) -> int:
    """The probe on each model (the base, or an adapter on it) in turn; one table and plot."""
    import dataclasses

    from reasonrl.eval import faithfulness

    if cfg.env:
        raise UsageError("--faithfulness probes a chain of thought on a task, not --env episodes")
    out = Path(cfg.output or "outputs/faithfulness")
    summaries = {}
    for adapter in adapters:
        run = dataclasses.replace(cfg, adapter=adapter)
        label = faithfulness.label_of(dataclasses.asdict(run))
        summary = faithfulness.probe(dataclasses.replace(run, output=str(out / label)))
        summaries[label] = summary
        print(f"{label}: {summary['n']} chains probed ({summary['skipped_no_answer']} without an answer)")
    faithfulness.plot(summaries, out / "faithfulness.png")
    table = faithfulness.table(summaries)
    (out / "table.md").write_text(table + "\n")
    print(table)
    print(f"wrote {out}/faithfulness.png and table.md")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reasonrl", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)

    data = commands.add_parser("data", help="generate synthetic GSM8K-style problems or preference pairs")
    data.add_argument("kind", choices=["synthetic", "pairs"])
    data.add_argument("--n", type=int, default=200)
    data.add_argument("--difficulty", type=int, nargs="+", default=[1, 4], help="level or low high")
    data.add_argument("--seed", type=int, default=0)
    data.add_argument("--out", required=True)
    data.set_defaults(func=_data)

    train = commands.add_parser(
        "train",
        help="train a recipe (GRPO, PPO or DPO)",
        description="Train a recipe. Any recipe key can be overridden: --grpo.beta 0.02, "
        "--beta 0.02 (unique, or in the recipe's algorithm section), --resume.",
    )
    train.add_argument("recipe", help="a YAML recipe, e.g. recipes/gsm8k/grpo-smollm2.yaml")
    train.add_argument("overrides", nargs=argparse.REMAINDER, help="--key value ... overrides")
    train.set_defaults(func=_train)

    control = commands.add_parser("control", help="train a Gymnasium control agent (PPO, IMPALA, SAC)")
    control.add_argument("recipe", help="e.g. recipes/control/ppo-cartpole.yaml")
    control.add_argument("overrides", nargs=argparse.REMAINDER, help="--key value ... overrides")
    control.set_defaults(func=_control)

    ev = commands.add_parser("eval", help="GSM8K-style evaluation, scored like lm-evaluation-harness")
    ev.add_argument(
        "--model",
        default=None,
        help="model name, folder or hub id (default: the adapter's base, else smollm2-135m-instruct)",
    )
    ev.add_argument(
        "--adapter",
        action="append",
        help="LoRA adapter folder, e.g. outputs/run/final; with --faithfulness repeat it to "
        "compare models ('none' = the base model)",
    )
    ev.add_argument("--task", default="gsm8k", choices=["gsm8k", "gsm8k_cot_zeroshot", "chat", "drill"])
    ev.add_argument("--data", default="openai/gsm8k", help="jsonl/json file, folder, or hub id")
    ev.add_argument("--split", default="test")
    ev.add_argument(
        "--fewshot-data", dest="fewshot_data", help="few-shot source (default: train split beside --data)"
    )
    ev.add_argument("--num-fewshot", dest="num_fewshot", type=int)
    ev.add_argument("--fewshot-seed", dest="fewshot_seed", type=int, default=1234)
    ev.add_argument("--limit", type=int)
    ev.add_argument(
        "--subset-seed", dest="subset_seed", type=int, help="with --limit: a seeded random subset"
    )
    ev.add_argument("--samples", type=int, default=1, help="k samples per problem for maj@k / pass@k")
    ev.add_argument("--temperature", type=float, default=0.0)
    ev.add_argument("--max-tokens", dest="max_tokens", type=int, default=256)
    ev.add_argument("--engine", default="vllm", choices=["vllm", "hf"])
    ev.add_argument(
        "--dtype",
        default="auto",
        choices=["auto", "bfloat16", "float32"],
        help="vLLM weights (auto: bfloat16 where the hardware has it natively, else float32)",
    )
    ev.add_argument("--batch-size", dest="batch_size", type=int, default=128)
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--output", help="folder for items.jsonl and summary.json")
    ev.add_argument("--no-progress", dest="progress", action="store_false")
    ev.add_argument("--env", help="evaluate an agent in a multi-turn environment: tool, feedback, lookup")
    ev.add_argument("--max-turns", dest="max_turns", type=int, default=4)
    ev.add_argument("--max-episode-tokens", dest="max_episode_tokens", type=int, default=1024)
    ev.add_argument(
        "--faithfulness",
        action="store_true",
        help="probe whether answers depend on the chain of thought (early answering, adding "
        "mistakes; Lanham et al. 2023): a table, faithfulness.png and every item in --output",
    )
    ev.set_defaults(func=_eval)

    push = commands.add_parser("push", help="upload a run's final adapter and a model card to the hub")
    push.add_argument("output_dir")
    push.add_argument("--repo-id", required=True, help="user/name on the hub")
    push.add_argument("--dry-run", metavar="FOLDER", help="write the folder that would be uploaded, and stop")
    push.add_argument("--private", action="store_true")
    push.add_argument("--token", help="hub token (default: $HF_TOKEN or the huggingface_hub login)")
    push.add_argument("--endpoint", help="hub endpoint (default: huggingface.co or $HF_ENDPOINT)")
    push.set_defaults(func=_push)

    model = commands.add_parser("model", help="resolve a model (converting once), print its folder")
    model.add_argument("name")
    model.set_defaults(func=_model)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run a command; ``argv`` None means this process is the program (console script or
    ``python -m reasonrl``), which first re-executes itself on a better allocator."""
    global USER_ERRORS
    if argv is None:
        from reasonrl.allocator import preload

        try:
            preload()
        except ValueError as err:  # a REASONRL_ALLOCATOR that names no allocator
            print(f"error: {err}", file=sys.stderr)
            return 2
    args = build_parser().parse_args(argv)
    USER_ERRORS = _user_errors()
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    try:
        code = args.func(args)
    except USER_ERRORS as err:  # the user's input, not a bug: the message names the problem and the place
        print(f"error: {err}", file=sys.stderr)
        code = 2
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # one of several processes (accelerate launch)
        from reasonrl.runtime.run import end_process

        end_process(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
