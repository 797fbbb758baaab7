"""Check a whole recipe, its rewards and its data before any model loads and before
anything in the output folder changes.

Every problem is a ``RecipeError`` naming the place (``recipe.yaml:14:`` or the flag
``--max_steps``), the key and the values allowed; the command line turns it into one
line and exit code 2. Type errors were already caught when the recipe was parsed
(``reasonrl.config``); here are the ranges, the cross-key rules, the rewards (names and
options, without building them) and the data (readable, not empty).
"""

from __future__ import annotations

from pathlib import Path

from reasonrl.config import RecipeError, place
from reasonrl.data import DataError, load_problems
from reasonrl.data.preference import load_pairs
from reasonrl.data.sft import PromptStyle, load_examples
from reasonrl.envs import make_env
from reasonrl.rewards import check_reward
from reasonrl.rewards.registry import RewardSpec
from reasonrl.rewards.sandbox import SandboxUnavailable
from reasonrl.runtime.run import earlier_run_problem
from reasonrl.trainers.recipe import Recipe

# (key, test, what is allowed)
_positive = (lambda v: v > 0, "a number > 0")
_at_least_one = (lambda v: v >= 1, "an integer >= 1")
_non_negative = (lambda v: v >= 0, "a number >= 0")
_unit = (lambda v: 0 <= v <= 1, "a number in [0, 1]")
RANGES = {
    "train.learning_rate": _positive,
    "train.max_steps": _at_least_one,
    "train.micro_batch_size": _at_least_one,
    "train.weight_decay": _non_negative,
    "train.warmup_steps": _non_negative,
    "train.max_grad_norm": _positive,
    "train.logging_steps": _at_least_one,
    "train.save_steps": _non_negative,
    "train.save_total_limit": _at_least_one,
    "train.completions_to_log": _non_negative,
    "rollout.max_model_len": _at_least_one,
    "rollout.kv_cache_gib": (lambda v: v == "auto" or v > 0, "a number > 0 or auto"),
    "rollout.top_p": (lambda v: 0 < v <= 1, "a number in (0, 1]"),
    "rollout.gpu_memory_utilization": (lambda v: 0 < v <= 1, "a number in (0, 1]"),
    "grpo.prompts_per_step": _at_least_one,
    "grpo.num_generations": (lambda v: v >= 2, "an integer >= 2 (group-relative advantages need a group)"),
    "grpo.max_completion_length": _at_least_one,
    "grpo.temperature": (lambda v: v > 0, "a number > 0 (sampling; 0 would make every completion the same)"),
    "grpo.beta": _non_negative,
    "grpo.epsilon": _non_negative,
    "grpo.num_iterations": _at_least_one,
    "grpo.num_minibatches": _at_least_one,
    "ppo.prompts_per_step": _at_least_one,
    "ppo.max_completion_length": _at_least_one,
    "ppo.temperature": (lambda v: v > 0, "a number > 0"),
    "ppo.kl_coef": _non_negative,
    "ppo.gamma": _unit,
    "ppo.gae_lambda": _unit,
    "ppo.clip_coef": _non_negative,
    "ppo.value_clip": _non_negative,
    "ppo.vf_coef": _non_negative,
    "ppo.ent_coef": _non_negative,
    "ppo.num_iterations": _at_least_one,
    "ppo.num_minibatches": _at_least_one,
    "dpo.beta": _positive,
    "dpo.label_smoothing": (lambda v: 0 <= v < 0.5, "a number in [0, 0.5)"),
    "dpo.max_length": _at_least_one,
    "dpo.batch_size": _at_least_one,
    "dpo.rounds": _at_least_one,
    "dpo.prompts_per_round": _at_least_one,
    "dpo.num_generations": (lambda v: v >= 2, "an integer >= 2 (a pair needs two completions)"),
    "dpo.max_completion_length": _at_least_one,
    "dpo.temperature": (lambda v: v > 0, "a number > 0"),
    "dpo.eval_fraction": (lambda v: 0 <= v < 1, "a number in [0, 1)"),
    "dpo.eval_samples": _non_negative,
}
for _section in ("sft", "distill"):  # distillation's section extends SFT's
    RANGES |= {
        f"{_section}.batch_size": _at_least_one,
        f"{_section}.max_length": (lambda v: v >= 2, "an integer >= 2 (a prompt token and a target)"),
        f"{_section}.eval_fraction": (lambda v: 0 <= v < 1, "a number in [0, 1)"),
        f"{_section}.eval_samples": _non_negative,
        f"{_section}.max_completion_length": _at_least_one,
        f"{_section}.temperature": _non_negative,
    }
RANGES |= {
    "distill.beta": _unit,
    "distill.lmbda": _unit,
    "distill.temperature": _positive,  # it also scales both distributions in the loss
}
# the algorithm's own section is checked
SECTIONS = {"grpo": "grpo.", "ppo": "ppo.", "dpo": "dpo.", "sft": "sft.", "distill": "distill."}


def _get(recipe, key: str):
    value = recipe
    for part in key.split("."):
        value = getattr(value, part)
    return value


def check_ranges(recipe: Recipe) -> None:
    for key, (ok, allowed) in RANGES.items():
        section = key.split(".")[0]
        if section in SECTIONS and section != recipe.algorithm:
            continue
        value = _get(recipe, key)
        if value is not None and not ok(value):
            raise place(recipe, key, f"must be {allowed}, got {value!r}")
    lora = recipe.model.lora
    if lora is not None and lora.r < 1:
        raise place(recipe, "model.lora.r", f"must be an integer >= 1, got {lora.r!r}")
    if recipe.algorithm == "grpo":
        cfg = recipe.grpo
        if cfg.epsilon_high is not None and cfg.epsilon_high < 0:
            raise place(
                recipe, "grpo.epsilon_high", f"grpo.epsilon_high must be >= 0, got {cfg.epsilon_high}"
            )


def check_env(recipe: Recipe) -> None:
    env = recipe.env
    if env is None:
        return
    feedback = recipe.algorithm == "distill" and recipe.distill.teacher_context == "feedback"
    if recipe.algorithm not in ("grpo", "ppo") and not feedback:
        raise place(
            recipe,
            "env",
            f"episodes train with algorithm: grpo or ppo (or distill with teacher_context: "
            f"feedback), not {recipe.algorithm!r}",
        )
    for key in ("max_turns", "max_episode_tokens"):
        if getattr(env, key) < 1:
            raise place(recipe, f"env.{key}", f"must be an integer >= 1, got {getattr(env, key)!r}")
    try:
        make_env(env.name, max_turns=env.max_turns, **env.options)
    except (ValueError, TypeError, SandboxUnavailable) as err:
        raise place(recipe, "env", str(err)) from None


def check_rewards(recipe: Recipe) -> list[RewardSpec]:
    if recipe.env is not None:  # the environment scores its episodes
        return []
    specs = []
    for i, entry in enumerate(recipe.rewards):
        where = f"rewards[{i}]"
        try:
            spec = RewardSpec.from_dict(entry, where)
            check_reward(spec.name, spec.options)
        except (ValueError, SandboxUnavailable) as err:
            raise place(recipe, where, str(err).removeprefix(f"{where}: ")) from None
        if spec.name == "reasoning_gym" and not recipe.data.source.startswith("reasoning_gym:"):
            raise place(
                recipe,
                where,
                f"reward 'reasoning_gym' scores rows of a reasoning_gym: source, "
                f"not {recipe.data.source!r} (data.source)",
            )
        specs.append(spec)
    if not specs:
        raise place(recipe, "rewards", "a recipe needs at least one reward")
    return specs


def check_data(recipe: Recipe) -> None:
    data = recipe.data
    if recipe.algorithm in ("sft", "distill"):
        return check_examples(recipe)
    offline_pairs = recipe.algorithm == "dpo" and not recipe.dpo.on_policy
    try:
        rows = (load_pairs if offline_pairs else load_problems)(data.source, data.split, data.limit)
    except (DataError, FileNotFoundError, OSError, ValueError) as err:
        raise place(recipe, "data.source", f"{data.source!r}: {err}") from None
    if not rows:
        what = "preference pairs" if offline_pairs else "problems"
        raise place(recipe, "data.source", f"{data.source!r} [{data.split}] holds no {what}")


def check_examples(recipe: Recipe) -> None:
    """SFT / distillation rows: every row in a known format (the first bad one is named by
    file and line), and a hint in each when the teacher is to be shown one."""
    data, section = recipe.data, getattr(recipe, recipe.algorithm)
    hint_field = getattr(section, "hint_field", "hint")
    style = PromptStyle(data.template, data.instruction, data.system_prompt)
    try:
        examples = load_examples(data.source, data.split, data.limit, style, hint_field)
    except (DataError, FileNotFoundError, OSError, ValueError) as err:
        raise place(recipe, "data.source", f"{data.source!r}: {err}") from None
    if not examples:
        raise place(recipe, "data.source", f"{data.source!r} [{data.split}] holds no examples")
    if recipe.algorithm == "distill" and section.packing:
        raise place(
            recipe, "distill.packing", "packing is for sft: distillation compares whole distributions"
        )
    if getattr(section, "teacher_context", "none") == "hint":
        bare = next((e for e in examples if not e.hint), None)
        if bare is not None:
            raise place(
                recipe,
                "distill.teacher_context",
                f"'hint' needs a {hint_field!r} field in every row; {bare.where} has none "
                f"(distill.hint_field names the field)",
            )
    if getattr(section, "teacher_context", "none") == "feedback":
        bare = next((e for e in examples if e.row is None), None)
        if bare is not None:
            raise place(
                recipe,
                "distill.teacher_context",
                f"'feedback' needs problems with answers for the environment to check; "
                f"{bare.where} is no question/answer row",
            )
    if recipe.algorithm == "distill" and section.teacher is None and section.teacher_context == "none":
        raise place(
            recipe,
            "distill.teacher",
            "name a teacher (a model name or folder, or an adapter folder), or set "
            "teacher_context: hint or feedback to let the policy teach itself from hints",
        )


def check_teacher(recipe: Recipe) -> None:
    """The teacher loads (its folder or name resolves) and shares the student's tokenizer,
    so token-level distributions compare position by position; before any model loads."""
    if recipe.algorithm != "distill" or recipe.distill.teacher is None:
        return
    from reasonrl.models import ModelNotFoundError, load_tokenizer

    teacher, student = recipe.distill.teacher, recipe.model.name
    try:
        t_tok = load_tokenizer(teacher)
    except (ModelNotFoundError, OSError, ValueError) as err:
        raise place(recipe, "distill.teacher", f"{teacher!r}: {err}") from None
    s_tok = load_tokenizer(student, trust_remote_code=recipe.model.trust_remote_code)
    if t_tok.get_vocab() != s_tok.get_vocab():
        raise place(
            recipe,
            "distill.teacher",
            f"the teacher {teacher!r} and the student {student!r} (model.name) have different "
            f"tokenizers ({len(t_tok)} vs {len(s_tok)} tokens): token-level distillation needs "
            "one vocabulary",
        )


def check_eval(recipe: Recipe) -> None:
    """The held-out evaluation around the run (``eval:``): its numbers, and rows that load."""
    section = recipe.eval
    if section.limit < 0:
        raise place(recipe, "eval.limit", f"must be an integer >= 0 (0: no evaluation), got {section.limit}")
    if section.max_tokens is not None and section.max_tokens < 1:
        raise place(recipe, "eval.max_tokens", f"must be an integer >= 1, got {section.max_tokens}")
    if section.limit == 0:
        return
    key, source = ("eval.data", section.data) if section.data else ("data.source", recipe.data.source)
    try:
        rows = load_problems(source, section.split, section.limit)
    except (DataError, FileNotFoundError, OSError, ValueError) as err:
        raise place(recipe, key, f"{source!r} (the held-out evaluation's rows): {err}") from None
    if not rows:
        raise place(
            recipe, key, f"{source!r} [{section.split}] holds no problems for the held-out evaluation"
        )


def check_output(recipe: Recipe) -> None:
    train = recipe.train
    problem = earlier_run_problem(Path(train.output_dir), train.resume, train.overwrite)
    if problem is not None:
        key = "train.overwrite" if train.resume and train.overwrite else "train.output_dir"
        raise place(recipe, key, problem)


def validate(recipe: Recipe) -> None:
    """Everything that can be checked without a model; raises RecipeError at the first problem."""
    if recipe.algorithm not in SECTIONS:
        raise RecipeError(f"algorithm: must be one of {sorted(SECTIONS)}, got {recipe.algorithm!r}")
    check_ranges(recipe)
    check_env(recipe)
    check_rewards(recipe)
    check_data(recipe)
    check_teacher(recipe)
    check_eval(recipe)
    check_output(recipe)
