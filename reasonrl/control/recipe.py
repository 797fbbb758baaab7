"""Recipes of the Gymnasium control agents: one dataclass of hyper-parameters per agent."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass
class ControlTrain:
    output_dir: str = "outputs/control"
    seed: int = 1
    total_steps: int = 150_000  # environment steps, over all environments
    report_to: list[str] = field(default_factory=lambda: ["tensorboard"])
    progress: bool = True
    resume: bool = False  # reload the last checkpoint's networks and optimizers (environments restart)
    overwrite: bool = False  # replace an earlier run in output_dir (without it, that is an error)
    save_every: int = 0  # environment steps between checkpoints; 0 = at the end only
    save_total_limit: int = 2
    threads: int = 1  # torch threads: small networks run fastest on one
    solve_window: int = 20  # episodes in the moving average the `solved_at` metric watches
    solve_threshold: float | None = None  # return that counts as solved (None: no `solved_at`)
    stop_when_solved: bool = False  # end the run (saving as usual) once the threshold is reached


@dataclass
class PPOAgent:
    """CleanRL's ppo.py defaults for CartPole-v1."""

    num_envs: int = 4  # parallel environments
    num_steps: int = 128  # steps per environment per rollout
    learning_rate: float = 2.5e-4
    anneal_lr: bool = True  # linear decay to 0 over the run
    gamma: float = 0.99
    gae_lambda: float = 0.95
    num_minibatches: int = 4
    update_epochs: int = 4
    norm_adv: bool = True  # normalise advantages per minibatch
    clip_coef: float = 0.2
    clip_vloss: bool = True
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    hidden: int = 64
    bootstrap_truncated: bool = True  # add γ V(final state) to the reward when a time limit cuts an episode


@dataclass
class IMPALAAgent:
    num_actors: int = 2  # Ray actor processes generating unrolls
    envs_per_actor: int = 4
    unroll_length: int = 64  # steps per environment per unroll
    learning_rate: float = 1e-3
    gamma: float = 0.99
    rho_bar: float = 1.0  # V-trace truncation ρ̄
    c_bar: float = 1.0  # V-trace trace cutting c̄
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    max_grad_norm: float = 40.0
    hidden: int = 64
    sync_every: int = 1  # learner updates between weight pushes to an actor (policy lag grows with it)


@dataclass
class SACAgent:
    """CleanRL's sac_continuous_action.py defaults."""

    buffer_size: int = 1_000_000
    batch_size: int = 256
    learning_starts: int = 5_000
    policy_lr: float = 3e-4
    q_lr: float = 1e-3
    gamma: float = 0.99
    tau: float = 0.005  # target networks: θ' <- τ θ + (1 − τ) θ'
    policy_frequency: int = 2  # actor updates every this many critic updates (delayed, TD3-style)
    alpha: float = 0.2  # initial temperature
    autotune: bool = True  # learn α towards the target entropy −dim(A)
    hidden: int = 256


@dataclass
class MuZeroAgent:
    """MuZero (Schrittwieser et al. 2020) sized for CartPole on a CPU."""

    num_envs: int = 16  # environments searched together: one batched search per step
    num_simulations: int = 50  # per search
    dirichlet_alpha: float = 0.25
    exploration_fraction: float = 0.25  # root noise weight
    temperatures: tuple[float, ...] = (1.0, 0.5, 0.25)  # acting temperature, over equal parts of the run
    gamma: float = 0.99  # 0.997 (the paper's): returns ~235 at 30k steps, vs solved at 29.6k
    td_steps: int = 30  # n of the n-step value target (10: seed 2 stalled at ~155, the cart drifting off)
    reanalyse_values: bool = True  # bootstrap value targets from the current network, not acting-time roots
    unroll_steps: int = 5  # K
    batch_size: int = 128
    learning_rate: float = 3e-3
    weight_decay: float = 1e-4
    value_coef: float = 0.25  # MuZero Reanalyse's weight of the value loss
    max_grad_norm: float = 5.0
    updates_per_step: float = 0.5  # gradient updates per env step (0.25: seed 1 solved at 29.6k, not 21.5k)
    learning_starts: int = 1_000  # environment steps before the first update
    hidden: int = 64
    latent: int = 32
    log_every: int = 10  # searches (of num_envs steps) between metric rows


@dataclass
class STORMAgent:
    """STORM (Zhang et al. 2023) sized for vector observations on a CPU."""

    num_envs: int = 4
    groups: int = 32  # categorical latents ... (the paper's 32 x 32; 16 x 16 peaked near 350, then decayed)
    classes: int = 32  # ... of this many classes each
    d_model: int = 64  # transformer width
    layers: int = 2
    heads: int = 4
    hidden: int = 128  # MLP width (encoder, decoder, heads, actor, critic)
    max_len: int = 64  # longest token sequence the transformer sees
    context: int = 16  # tokens each environment keeps for acting
    batch_size: int = 16  # world model: sequences per update ...
    batch_length: int = 32  # ... of this many steps
    imagine_batch: int = 128  # actor-critic: imagined trajectories per update (256: as good, half as fast)
    imagine_context: int = 8  # replayed steps before each imagined start
    horizon: int = 16  # imagined steps
    gamma: float = 0.985
    lam: float = 0.95
    ent_coef: float = 3e-4
    dyn_scale: float = 0.5  # β_dyn
    rep_scale: float = 0.1  # β_rep
    free_nats: float = 1.0
    model_lr: float = 1e-3
    actor_lr: float = 3e-4
    max_grad_norm: float = 100.0
    slow_critic_tau: float = 0.02
    slow_critic_reg: float = 1.0  # weight of the critic's pull towards the slow critic (DreamerV3)
    updates_per_step: float = 0.25  # world-model + actor-critic updates per environment step
    learning_starts: int = 1_000  # random actions before this many environment steps
    log_every: int = 25  # acting steps (of num_envs environment steps) between metric rows


@dataclass
class ControlRecipe:
    algorithm: Literal["ppo", "impala", "sac", "muzero", "storm"] = "ppo"
    env_id: str = "CartPole-v1"
    train: ControlTrain = field(default_factory=ControlTrain)
    ppo: PPOAgent = field(default_factory=PPOAgent)
    impala: IMPALAAgent = field(default_factory=IMPALAAgent)
    sac: SACAgent = field(default_factory=SACAgent)
    muzero: MuZeroAgent = field(default_factory=MuZeroAgent)
    storm: STORMAgent = field(default_factory=STORMAgent)
