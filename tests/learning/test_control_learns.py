"""Control agents reach the issue's returns (start and end printed and asserted)."""

import json

import pytest

from tests.helpers import QUIET, cli, metrics

FAST = QUIET
SOLVE = ["--stop_when_solved", "true"]  # the claim is the step it is solved at; the rest is CI time
pytestmark = pytest.mark.slow


def run(recipe: str, out, *extra) -> dict:
    proc = cli("control", recipe, "--output_dir", str(out), *FAST, *extra)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def first_and_best(rows, key):
    values = [r[key] for r in rows if key in r and r[key] == r[key]]
    return values[0], max(values)


def solve(name: str, recipe: str, out, seed: int, budget: int) -> list[dict]:
    """Run ``recipe`` with ``seed`` until CartPole's 20-episode mean reaches 475, print the
    start, best and the step it was reached at, assert it was within ``budget`` steps;
    the run's metric rows, for what else a test checks."""
    summary = run(recipe, out, "--seed", str(seed), *SOLVE)
    rows = metrics(out)
    start, best = first_and_best(rows, "return_mean_20")
    print(
        f"{name} CartPole seed {seed}: mean return (20 episodes) {start:.1f} -> best {best:.1f}; "
        f"475 reached at step {summary['solved_at']}"
    )
    assert summary["solved_at"] is not None and summary["solved_at"] <= budget
    return rows


@pytest.mark.parametrize(  # seeds 2 and 3 in `make test-long`: CI's minutes went to MuZero and STORM
    "seed", [1, pytest.param(2, marks=pytest.mark.long), pytest.param(3, marks=pytest.mark.long)]
)
def test_ppo_cartpole_reaches_475_within_150k_steps(tmp_path, seed):
    solve("PPO", "recipes/control/ppo-cartpole.yaml", tmp_path, seed, 150_000)


def test_impala_cartpole_reaches_400_within_500k_steps_with_2_actors(tmp_path):
    summary = run("recipes/control/impala-cartpole.yaml", tmp_path, "--num_actors", "2", *SOLVE)
    rows = metrics(tmp_path)
    start, best = first_and_best(rows, "return_mean_20")
    lags = sorted({r["policy_lag"] for r in rows})
    print(
        f"IMPALA CartPole (2 Ray actors): mean return {start:.1f} -> best {best:.1f}; 400 reached at step "
        f"{summary['solved_at']}; policy lags seen {lags}"
    )
    assert summary["solved_at"] is not None and summary["solved_at"] <= 500_000
    assert max(lags) >= 1  # actors really act with lagging weights


def test_sac_pendulum_reaches_minus_250_within_20k_steps(tmp_path):
    summary = run("recipes/control/sac-pendulum.yaml", tmp_path, *SOLVE)
    start, best = first_and_best(metrics(tmp_path), "return_mean_10")
    print(
        f"SAC Pendulum: mean return (10 episodes) {start:.1f} -> best {best:.1f}; -250 reached at step "
        f"{summary['solved_at']}; final {summary['final_return_mean']:.1f}"
    )
    assert summary["solved_at"] is not None and summary["solved_at"] <= 20_000
    assert summary["steps"] == summary["solved_at"]  # stopped there, and saved its networks
    assert (tmp_path / "checkpoints" / f"checkpoint-{summary['steps']:06d}" / "MANIFEST.json").exists()


@pytest.mark.parametrize(
    "seed", [1, pytest.param(2, marks=pytest.mark.long), pytest.param(3, marks=pytest.mark.long)]
)
def test_muzero_cartpole_reaches_475_within_30k_steps(tmp_path, seed):
    rows = solve("MuZero", "recipes/control/muzero-cartpole.yaml", tmp_path, seed, 30_000)
    trained = [r for r in rows if "value_loss" in r]
    first, last = trained[0], trained[-1]
    print(
        f"MuZero: reward loss {first['reward_loss']:.4f} -> {last['reward_loss']:.4f}, "
        f"policy loss {first['policy_loss']:.3f} -> {last['policy_loss']:.3f}"
    )
    assert last["reward_loss"] < first["reward_loss"]  # the learned model predicts the rewards better


def test_storm_learns_cartpole_in_imagination(tmp_path):
    """4,000 real steps (1,000 of them random): the actor-critic, trained only on imagined
    rollouts, lifts the real return well above a random policy's (~22), the world model's
    losses fall, and its imagined returns track the real ones. 16 x 16 latents (half the
    time of the recipe's 32 x 32, which the long solve test runs): at 4,000 steps both
    show the same signals."""
    small = ["--groups", "16", "--classes", "16"]
    summary = run("recipes/control/storm-cartpole.yaml", tmp_path, "--total_steps", "4000", *small)
    rows = metrics(tmp_path)
    start, best = first_and_best(rows, "return_mean_20")
    trained = [r for r in rows if "wm/loss" in r]
    first, last = trained[0], trained[-1]
    corr = [r["wm/imagined_vs_real_corr"] for r in trained]
    print(
        f"STORM CartPole, {summary['steps']} steps: mean return (20 eps) {start:.1f} -> best {best:.1f}; "
        f"world model: reconstruction {first['wm/reconstruction']:.3f} -> {last['wm/reconstruction']:.3f}, "
        f"continuation {first['wm/continuation']:.3f} -> {last['wm/continuation']:.3f}, "
        f"KL {first['wm/kl']:.2f} -> {last['wm/kl']:.2f}; imagined vs real return correlation "
        f"{corr[0]:.2f} -> {corr[-1]:.2f}"
    )
    assert start < 30 and best >= 50
    assert last["wm/reconstruction"] < first["wm/reconstruction"]
    assert last["wm/continuation"] < first["wm/continuation"]
    assert corr[-1] > 0.5


@pytest.mark.long  # about 9 minutes each: `make test-long`
@pytest.mark.parametrize(
    "seed",
    [
        1,
        2,
        pytest.param(3, marks=pytest.mark.xfail(strict=True, reason="best 357 within 30k (docs/control.md)")),
    ],
)
def test_storm_cartpole_reaches_475_within_30k_steps(tmp_path, seed):
    solve("STORM", "recipes/control/storm-cartpole.yaml", tmp_path, seed, 30_000)


def test_control_run_outputs(tmp_path):
    run(
        "recipes/control/ppo-cartpole.yaml",
        tmp_path,
        "--total_steps",
        "4096",
        "--save_every",
        "2048",
        "--report_to",
        "tensorboard",
    )
    assert (tmp_path / "final" / "agent.safetensors").exists()
    assert (tmp_path / "return_curve.png").stat().st_size > 1000
    assert any((tmp_path / "tensorboard").rglob("events.out.tfevents.*"))
    assert (tmp_path / "checkpoints" / "checkpoint-004096" / "MANIFEST.json").exists()
    assert "steps_per_second" in metrics(tmp_path)[-1]


@pytest.mark.long  # about 14 minutes (0.08 -> 4.12 on AVX512-BF16): `make test-long`
def test_storm_learns_minatar_breakout_from_pixels(tmp_path):
    """15,000 real steps of MinAtar Breakout (10 x 10 binary frames): the agent that only
    ever trained in its world model's imagination scores 5x a random policy (0.4 a game)."""
    summary = run("recipes/control/storm-minatar-breakout.yaml", tmp_path, "--total_steps", "15000")
    rows = metrics(tmp_path)
    start, best = first_and_best(rows, "return_mean_100")
    key = "wm/imagined_vs_real_corr"
    corr = [r[key] for r in rows if key in r and r[key] == r[key]]  # NaN before any update
    print(
        f"STORM MinAtar Breakout, {summary['steps']} steps: mean return (100 games) {start:.2f} -> "
        f"best {best:.2f}; imagined vs real correlation at the end {corr[-1]:.2f}"
    )
    assert start < 1.0 and best >= 2.0


def test_storm_world_model_encodes_minatar_frames():
    """STORM's convolutional world model, trained by the agent's own update on 2,000 frames
    of MinAtar Breakout under a random policy: the reconstruction falls well below what
    the pixels' marginals give (what a model whose latent says nothing about the frame
    reaches: the encoder once collapsed to one code for every frame and stopped there),
    and the continuation (the ball lost) is learnt."""
    import gymnasium as gym
    import numpy as np
    import torch

    from reasonrl.control.envs import register_family
    from reasonrl.control.recipe import STORMAgent
    from reasonrl.control.storm import Agent, Replay, world_model_step

    torch.manual_seed(0)
    register_family("MinAtar/Breakout-v1")
    env = gym.make("MinAtar/Breakout-v1")
    env.action_space.seed(0)
    obs, _ = env.reset(seed=0)
    replay = Replay.empty(2000, 1, (10, 10, 4), np.bool_)
    for _ in range(2000):
        action = env.action_space.sample()
        after, reward, terminated, truncated, _ = env.step(action)
        ended = terminated or truncated
        replay.add(
            obs[None], np.array([action]), np.array([reward]), np.array([terminated]), np.array([ended])
        )
        obs = env.reset()[0] if ended else after
    p = replay.obs[:, 0].reshape(2000, -1).mean(0).clip(1e-6, 1 - 1e-6)
    marginal = float(-(p * np.log(p) + (1 - p) * np.log(1 - p)).sum())  # nats a frame
    cfg = STORMAgent(batch_size=8, batch_length=16, groups=16, classes=16)
    agent = Agent((10, 10, 4), 3, cfg, "binary")
    optimizer = torch.optim.Adam(agent.model.parameters(), cfg.model_lr)
    rng = torch.Generator().manual_seed(0)
    stats = [world_model_step(agent, optimizer, replay, cfg, rng) for _ in range(500)]
    first, last = stats[10], {k: float(np.mean([s[k] for s in stats[-20:]])) for k in stats[0]}
    print(
        f"STORM world model, MinAtar Breakout frames: reconstruction {first['wm/reconstruction']:.1f} -> "
        f"{last['wm/reconstruction']:.2f} nats (pixel marginals: {marginal:.2f}), continuation "
        f"{first['wm/continuation']:.3f} -> {last['wm/continuation']:.3f}"
    )
    assert last["wm/reconstruction"] < 0.5 * marginal
    assert last["wm/continuation"] < 0.6 * first["wm/continuation"]
