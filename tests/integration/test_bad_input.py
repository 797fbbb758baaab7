"""Every bad input gets exit code 2 and one line naming the place, before any model loads
and before anything in the output folder changes.

The table lists each bad input tried and the message it must give. Each case runs the
real command line in this process, with model loading made to fail the test, on an
output folder that already holds a finished run, passed with --overwrite: a mistake
must not delete that run.
"""

import subprocess
import sys

import pytest

import reasonrl.trainers.policy as policy
from reasonrl.cli import main
from tests.helpers import ROOT

GRPO = "recipes/synthetic/grpo-tiny.yaml"
PPO = "recipes/synthetic/ppo-tiny.yaml"
DPO = "recipes/synthetic/dpo-tiny.yaml"
SFT = "recipes/synthetic/sft-tiny.yaml"
DISTILL = "recipes/synthetic/distill-tiny.yaml"
# files the cases name by a placeholder (written in tmp_path by the test)
FILES = {
    "EMPTY": "",
    "BADROWS": '{"prompt": "1+1=", "completion": "2"}\n{"prompt": "2+2="}\n',
    "NOFORMAT": '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}\n'
    '{"input": "2+2=", "output": "4"}\n',
    "NOHINT": '{"prompt": "1+1=", "completion": "2", "hint": "one and one"}\n'
    '{"prompt": "2+2=", "completion": "4"}\n',
}

CASES = [
    # (recipe, flags, the message, in part)
    (
        GRPO,
        ["--rewards", "[{name: gsm8kk}]"],
        "--rewards: rewards[0]: unknown reward 'gsm8kk'; did you mean 'gsm8k'?",
    ),
    (
        GRPO,
        ["--rewards", "[{name: gsm8k, moed: strict}]"],
        "unexpected keyword argument 'moed' (its options: mode",
    ),
    (GRPO, ["--rewards", "[]"], "--rewards: a recipe needs at least one reward"),
    (GRPO, ["--learning_rate", "-1"], "--train.learning_rate: must be a number > 0, got -1.0"),
    (GRPO, ["--num_generations", "1"], "--grpo.num_generations: must be an integer >= 2"),
    (GRPO, ["--num_generations", "0"], "--grpo.num_generations: must be an integer >= 2"),
    (GRPO, ["--micro_batch_size", "0"], "--train.micro_batch_size: must be an integer >= 1, got 0"),
    (GRPO, ["--grpo.temperature", "-0.5"], "--grpo.temperature: must be a number > 0"),
    (GRPO, ["--prompts_per_step", "0"], "--grpo.prompts_per_step: must be an integer >= 1"),
    (GRPO, ["--beta", "-0.1"], "--grpo.beta: must be a number >= 0"),
    (GRPO, ["--top_p", "0"], "--rollout.top_p: must be a number in (0, 1]"),
    (GRPO, ["--model.lora.r", "0"], "--model.lora.r: must be an integer >= 1"),
    (GRPO, ["--max_steps", "abc"], "--train.max_steps: expected an integer, got 'abc'"),
    (GRPO, ["--max_steps", "0"], "--train.max_steps: must be an integer >= 1, got 0"),
    (GRPO, ["--betta", "0.1"], "unknown override --betta; did you mean"),
    (
        GRPO,
        ["--algorithm", "sftt"],
        "algorithm: must be one of ['grpo', 'ppo', 'dpo', 'sft', 'distill'], got 'sftt'",
    ),
    (GRPO, ["--data.source", "no/such/file.jsonl"], "--data.source: 'no/such/file.jsonl': GSM8K source"),
    (GRPO, ["--data.source", "EMPTY"], "holds no problems"),
    (GRPO, ["--data.limit", "0"], "holds no problems"),
    (GRPO, ["--resume"], "--overwrite and --resume exclude each other"),
    (
        GRPO,
        ["--data.source", "reasoning_gym:basic_arithmetc:10"],
        "unknown reasoning-gym task 'basic_arithmetc'; did you mean 'basic_arithmetic'?",
    ),
    (
        GRPO,
        ["--data.source", "reasoning_gym:chain_sum:10?max_trms=3"],
        "has no knob(s) ['max_trms']; its knobs:",
    ),
    (
        GRPO,
        ["--rewards", "[{name: reasoning_gym}]"],
        "--rewards: rewards[0]: reward 'reasoning_gym' scores rows of a reasoning_gym: source",
    ),
    (
        GRPO,
        ["--env", "{name: tools}"],
        "--env: unknown environment 'tools'; available: feedback, lookup, tool",
    ),
    (
        GRPO,
        ["--env", "{name: tool, options: {tool: [calculator]}}"],
        "has no option(s) ['tool']; its options",
    ),
    (GRPO, ["--env", "{name: tool, options: {tools: [search]}}"], "unknown tool(s) ['search']; available"),
    (GRPO, ["--env", "{name: lookup, max_turns: 0}"], "--env: env.max_turns: must be an integer >= 1"),
    (DPO, ["--env", "{name: lookup}"], "(or distill with teacher_context: feedback), not 'dpo'"),
    (PPO, ["--lam", "0.9"], "override --lam: renamed to --ppo.gae_lambda"),
    (PPO, ["--gamma", "1.5"], "--ppo.gamma: must be a number in [0, 1], got 1.5"),
    (DPO, ["--label_smoothing", "0.7"], "--dpo.label_smoothing: must be a number in [0, 0.5)"),
    (DPO, ["--dpo.num_generations", "1"], "--dpo.num_generations: must be an integer >= 2"),
    (SFT, ["--data.source", "BADROWS"], "BADROWS.jsonl:2: prompt-completion row without 'completion'"),
    (SFT, ["--data.source", "NOFORMAT"], "NOFORMAT.jsonl:2: a supervised row needs 'messages', 'prompt' and"),
    (SFT, ["--sft.max_length", "1"], "--sft.max_length: must be an integer >= 2"),
    (SFT, ["--env", "{name: lookup}"], "(or distill with teacher_context: feedback), not 'sft'"),
    (DISTILL, ["--distill.beta", "1.5"], "--distill.beta: must be a number in [0, 1], got 1.5"),
    (DISTILL, ["--teacher", "no/such/folder/"], "--distill.teacher: 'no/such/folder/':"),
    (
        DISTILL,
        ["--teacher", "OTHERTOK"],
        "and the student 'tiny-llama' (model.name) have different tokenizers (102 vs 101 tokens)",
    ),
    (
        DISTILL,
        ["--data.source", "NOHINT", "--teacher_context", "hint"],
        "--distill.teacher_context: 'hint' needs a 'hint' field in every row; ",
    ),
    (
        DISTILL,
        ["--data.source", "NOHINT", "--teacher_context", "feedback"],
        "--distill.teacher_context: 'feedback' needs problems with answers for the environment to check; ",
    ),
]


def _other_tokenizer(folder):
    from reasonrl.models import load_tokenizer, tiny_model_dir

    tok = load_tokenizer("tiny-llama")
    tok.add_tokens(["<extra>"])
    tok.save_pretrained(folder)
    (folder / "config.json").write_text((tiny_model_dir() / "config.json").read_text())
    return folder


@pytest.fixture
def finished_run(tmp_path):
    out = tmp_path / "run"
    (out / "checkpoints" / "checkpoint-5").mkdir(parents=True)
    (out / "checkpoints" / "checkpoint-5" / "model.safetensors").write_bytes(b"weights")
    (out / "metrics.jsonl").write_text('{"step": 5}\n')
    return out


@pytest.fixture(autouse=True)
def no_model_loads(monkeypatch):
    def refuse(*_, **__):
        raise AssertionError("a model was loaded before the recipe was validated")

    monkeypatch.setattr(policy, "build_policy", refuse)


@pytest.mark.parametrize("recipe, flags, message", CASES, ids=[" ".join(c[1]) for c in CASES])
def test_bad_input_is_named_before_anything_is_touched(
    recipe, flags, message, finished_run, tmp_path, capsys
):
    for name, text in FILES.items():
        (tmp_path / f"{name}.jsonl").write_text(text)
    flags = [str(tmp_path / f"{f}.jsonl") if f in FILES else f for f in flags]
    if "OTHERTOK" in flags:  # a teacher folder whose tokenizer has one token more than the tiny model's
        flags[flags.index("OTHERTOK")] = str(_other_tokenizer(tmp_path / "othertok"))
        capsys.readouterr()  # building it on a cold cache draws a progress bar
    code = main(["train", str(ROOT / recipe), "--output_dir", str(finished_run), "--overwrite", *flags])
    err = capsys.readouterr().err
    assert code == 2, err
    assert message in err and err.startswith("error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    assert (finished_run / "metrics.jsonl").read_text() == '{"step": 5}\n'  # the earlier run is intact
    assert (finished_run / "checkpoints" / "checkpoint-5" / "model.safetensors").exists()


def test_an_earlier_run_is_kept_without_overwrite(finished_run, capsys):
    code = main(["train", str(ROOT / GRPO), "--output_dir", str(finished_run)])
    err = capsys.readouterr().err
    assert code == 2 and "holds an earlier run (metrics.jsonl, checkpoints): pass --overwrite" in err
    assert (finished_run / "metrics.jsonl").exists()


def test_the_real_command_exits_2_with_one_line(finished_run):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "reasonrl",
            "train",
            GRPO,
            "--output_dir",
            str(finished_run),
            "--learning_rate",
            "-1",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2
    assert (
        proc.stderr.strip().splitlines()[-1] == "error: --train.learning_rate: must be a number > 0, got -1.0"
    )
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    "flags, message",
    [
        (
            ["--adapter", "a/final", "--adapter", "b/final"],
            "--adapter is given once, except with --faithfulness",
        ),
        (
            ["--faithfulness", "--env", "tool"],
            "--faithfulness probes a chain of thought on a task, not --env",
        ),
    ],
)
def test_eval_flags_that_do_not_go_together_are_named(flags, message, capsys):
    code = main(["eval", *flags])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err, err


@pytest.mark.parametrize(
    "recipe, env_id, message",
    [
        (
            "recipes/control/muzero-cartpole.yaml",
            "Pendulum-v1",
            "--env_id: Pendulum-v1 has action space Box(-2.0, 2.0, (1,), float32); muzero handles Discrete",
        ),
        (
            "recipes/control/sac-pendulum.yaml",
            "CartPole-v1",
            "CartPole-v1 has action space Discrete(2); sac handles Box",
        ),
        ("recipes/control/ppo-cartpole.yaml", "NoSuchEnv-v0", "--env_id: 'NoSuchEnv-v0': "),
        (
            "recipes/control/ppo-cartpole.yaml",
            "MinAtar/Breakout-v1",
            "Breakout-v1 has observation space Box(False, True, (10, 10, 4), bool); ppo takes a flat Box",
        ),
    ],
)
def test_a_control_agent_refuses_spaces_it_cannot_handle(tmp_path, capsys, recipe, env_id, message):
    code = main(["control", str(ROOT / recipe), "--env_id", env_id, "--output_dir", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "run").exists()  # refused before the run started
