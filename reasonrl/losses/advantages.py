"""Advantages and value targets: returns, GAE, group-relative (GRPO, RLOO), V-trace.

Time-major functions take ``[T, B]`` tensors (time first, then batch of episodes or
sequences) with ``done_t = 1`` when the episode ends after step ``t`` (so ``s_{t+1}``
belongs to a new episode). A token sequence is an episode whose last real token
has ``done = 1``; padding after it is then cut off from every earlier estimate.

Group-relative functions take flat ``[N]`` rewards laid out group by group: the
``G`` completions of prompt 0, then the ``G`` of prompt 1, and so on.

Targets are constants for the losses that use them: every function here runs
without building a graph (``torch.no_grad``).
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch

from reasonrl.losses._checks import check_float, check_groups, check_rank, check_shapes

ScaleRewards = Literal["group", "batch", "none"]


def _check_time_major(rewards, values=None, dones=None, bootstrap_value=None):
    tensors = {"rewards": rewards}
    if values is not None:
        tensors["values"] = values
    if dones is not None:
        tensors["dones"] = dones.to(rewards.dtype) if dones.dtype == torch.bool else dones
    check_shapes(**tensors)
    check_rank("rewards", rewards, 2, "time-major [T, B]")
    if bootstrap_value is not None:
        check_float("bootstrap_value", bootstrap_value)
        if bootstrap_value.shape != rewards.shape[1:]:
            raise ValueError(
                f"bootstrap_value must have shape [B]={tuple(rewards.shape[1:])}, "
                f"got {tuple(bootstrap_value.shape)}"
            )
    return tensors.get("dones")


@torch.no_grad()
def discounted_returns(
    rewards: torch.Tensor,
    dones: torch.Tensor,
    bootstrap_value: torch.Tensor,
    gamma: float,
) -> torch.Tensor:
    """Discounted returns, bootstrapped at the end of the rollout.

        G_t = r_t + γ (1 − d_t) G_{t+1},        G_T = V(s_T) (the bootstrap)

    Args:
      rewards: r_t, [T, B].
      dones: d_t ∈ {0, 1}, [T, B]; 1 when the episode ends after step t.
      bootstrap_value: V(s_T), [B], the value of the state after the last step.
      gamma: discount γ.
    Returns:
      G_t, [T, B].
    """
    dones = _check_time_major(rewards, dones=dones, bootstrap_value=bootstrap_value)
    returns = torch.empty_like(rewards)
    next_return = bootstrap_value
    for t in reversed(range(rewards.shape[0])):
        next_return = rewards[t] + gamma * (1.0 - dones[t]) * next_return
        returns[t] = next_return
    return returns


@torch.no_grad()
def n_step_returns(
    rewards: torch.Tensor,
    dones: torch.Tensor,
    values: torch.Tensor,
    gamma: float,
    n: int,
) -> torch.Tensor:
    """n-step bootstrapped returns, MuZero's value targets (Schrittwieser et al. 2020, eq. 2).

        z_t = r_t + γ r_{t+1} + … + γ^{n−1} r_{t+n−1} + γ^n v_{t+n}

    cut at the end of an episode (no reward nor bootstrap after a done) and at the end of
    the data (the sum stops at step T − 1 and bootstraps from nothing beyond it: rows
    that close to the end are best left out of training).

    Args:
      rewards: r_t, the reward of the action taken at step t, [T, B].
      dones: d_t ∈ {0, 1}, [T, B]; 1 when the episode ends after step t.
      values: v_t, the value estimate of s_t (e.g. the search's root value), [T, B].
      gamma: discount γ.
      n: steps of real reward before bootstrapping, n >= 1.
    Returns:
      z_t, [T, B].
    """
    dones = _check_time_major(rewards, values, dones)
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    T = rewards.shape[0]
    z = torch.zeros_like(rewards)
    alive = torch.ones_like(rewards)  # 1 while s_{t+i} belongs to the episode of s_t
    for i in range(min(n, T)):  # (a slice [: T − i] with i >= T would not be empty)
        z[: T - i] += (gamma**i) * alive[: T - i] * rewards[i:]
        alive[: T - i] = alive[: T - i] * (1.0 - dones[i:])
    if n < T:
        z[: T - n] += (gamma**n) * alive[: T - n] * values[n:]
    return z


@torch.no_grad()
def generalized_advantage_estimation(
    rewards: torch.Tensor,
    values: torch.Tensor,
    dones: torch.Tensor,
    bootstrap_value: torch.Tensor,
    gamma: float,
    lam: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE(γ, λ) (Schulman et al. 2016, arXiv:1506.02438, eq. 16).

        δ_t = r_t + γ (1 − d_t) V(s_{t+1}) − V(s_t)
        A_t = δ_t + γ λ (1 − d_t) A_{t+1},       A_T = 0
        R_t = A_t + V(s_t)                         (the λ-return, target of the critic)

    with V(s_{t+1}) = values[t+1] inside the rollout and the bootstrap after it.
    λ = 1 gives Monte-Carlo returns minus V; λ = 0 gives one-step TD errors.

    Args:
      rewards: r_t, [T, B].
      values: V(s_t), [T, B].
      dones: d_t ∈ {0, 1}, [T, B].
      bootstrap_value: V(s_T), [B].
      gamma, lam: discount γ and trace parameter λ.
    Returns:
      (advantages A_t, returns R_t), each [T, B].
    """
    dones = _check_time_major(rewards, values, dones, bootstrap_value)
    not_done = 1.0 - dones
    next_values = torch.cat([values[1:], bootstrap_value.unsqueeze(0)])
    deltas = rewards + gamma * not_done * next_values - values  # all δ_t at once
    decay = gamma * lam * not_done
    advantages = torch.empty_like(rewards)
    next_advantage = torch.zeros_like(bootstrap_value)
    for t in reversed(range(rewards.shape[0])):
        next_advantage = deltas[t] + decay[t] * next_advantage
        advantages[t] = next_advantage
    return advantages, advantages + values


@torch.no_grad()
def group_advantages(
    rewards: torch.Tensor,
    group_size: int,
    scale: ScaleRewards = "group",
    eps: float = 1e-4,
) -> torch.Tensor:
    """Group-relative advantages of GRPO (Shao et al. 2024, arXiv:2402.03300, §4.1.2).

        A_i = (r_i − mean_g(r)) / (σ + ε)

    where mean_g is the mean over the G completions of the same prompt and σ is
      * ``"group"``: the (unbiased) std of that group (GRPO);
      * ``"batch"``: the std of all N rewards (Hu et al., REINFORCE++ style);
      * ``"none"``: no division, σ + ε ≡ 1 (Dr. GRPO, Liu et al. 2025, arXiv:2503.20783).

    Args:
      rewards: r_i, [N] with N = num_groups · G, laid out group by group.
      group_size: G, completions per prompt (≥ 2 to define a std).
      scale: see above.
      eps: ε, added to σ (TRL uses 1e-4).
    Returns:
      A_i, [N]. Each group's advantages sum to zero.
    """
    check_float("rewards", rewards)
    check_rank("rewards", rewards, 1, "flat [N]")
    groups = rewards.view(check_groups(rewards.numel(), group_size), group_size)
    centered = (groups - groups.mean(dim=1, keepdim=True)).reshape(-1)
    if scale == "none":
        return centered
    if group_size < 2 and scale == "group":
        raise ValueError("scale='group' needs group_size >= 2 to compute a std")
    if scale == "group":
        std = groups.std(dim=1, keepdim=True).expand_as(groups).reshape(-1)
    elif scale == "batch":
        std = rewards.std() if rewards.numel() > 1 else rewards.new_zeros(())
    else:
        raise ValueError(f"scale must be 'group', 'batch' or 'none', got {scale!r}")
    return centered / (std + eps)


@torch.no_grad()
def rloo_advantages(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """REINFORCE leave-one-out advantages (Ahmadian et al. 2024, arXiv:2402.14740).

        A_i = r_i − 1/(G − 1) Σ_{j ≠ i} r_j  =  G/(G − 1) · (r_i − mean_g(r))

    Args:
      rewards: r_i, [N], laid out group by group.
      group_size: G ≥ 2.
    Returns:
      A_i, [N].
    """
    check_float("rewards", rewards)
    check_rank("rewards", rewards, 1, "flat [N]")
    if group_size < 2:
        raise ValueError(f"RLOO needs group_size >= 2, got {group_size}")
    groups = rewards.view(check_groups(rewards.numel(), group_size), group_size)
    others = (groups.sum(dim=1, keepdim=True) - groups) / (group_size - 1)
    return (groups - others).reshape(-1)


class VTraceOutput(NamedTuple):
    vs: torch.Tensor  # v_s, [T, B]: V-trace value targets
    pg_advantages: torch.Tensor  # ρ_s (r_s + γ_s v_{s+1} − V(x_s)), [T, B]
    rhos: torch.Tensor  # unclipped importance ratios π/μ, [T, B]


@torch.no_grad()
def vtrace(
    behaviour_logp: torch.Tensor,
    target_logp: torch.Tensor,
    rewards: torch.Tensor,
    discounts: torch.Tensor,
    values: torch.Tensor,
    bootstrap_value: torch.Tensor,
    rho_bar: float = 1.0,
    c_bar: float = 1.0,
    pg_rho_bar: float | None = None,
) -> VTraceOutput:
    """V-trace targets of IMPALA (Espeholt et al. 2018, arXiv:1802.01561, eq. 1 and §4.2).

        ρ_t = min(ρ̄, π(a_t|x_t) / μ(a_t|x_t)),   c_t = min(c̄, π(a_t|x_t) / μ(a_t|x_t))
        δ_t V = ρ_t (r_t + γ_t V(x_{t+1}) − V(x_t))
        v_s = V(x_s) + Σ_{t=s}^{T−1} (Π_{i=s}^{t−1} γ_i c_i) δ_t V

    computed by the recursion v_s − V(x_s) = δ_s V + γ_s c_s (v_{s+1} − V(x_{s+1})),
    v_T = V(x_T). The policy-gradient advantage is
    ρ^{pg}_s (r_s + γ_s v_{s+1} − V(x_s)) with ρ^{pg} clipped at ``pg_rho_bar``.

    Args:
      behaviour_logp: log μ(a_t|x_t) of the actor that acted, [T, B].
      target_logp: log π(a_t|x_t) of the learner's policy, [T, B].
      rewards: r_t, [T, B].
      discounts: γ_t, [T, B]; γ at ordinary steps, 0 where the episode ended.
      values: V(x_t), [T, B].
      bootstrap_value: V(x_T), [B].
      rho_bar, c_bar: truncation levels ρ̄ ≥ c̄.
      pg_rho_bar: clip of ρ in the policy-gradient advantage (default ρ̄).
    Returns:
      VTraceOutput(vs, pg_advantages, rhos).
    """
    check_shapes(
        behaviour_logp=behaviour_logp,
        target_logp=target_logp,
        rewards=rewards,
        discounts=discounts,
        values=values,
    )
    _check_time_major(rewards, values, bootstrap_value=bootstrap_value)
    if c_bar > rho_bar:
        raise ValueError(f"V-trace needs c_bar <= rho_bar, got c_bar={c_bar} > rho_bar={rho_bar}")
    rhos = torch.exp(target_logp - behaviour_logp)
    clipped_rhos = rhos.clamp(max=rho_bar)
    cs = rhos.clamp(max=c_bar)
    next_values = torch.cat([values[1:], bootstrap_value.unsqueeze(0)], dim=0)
    deltas = clipped_rhos * (rewards + discounts * next_values - values)
    vs_minus_v = torch.empty_like(values)
    acc = torch.zeros_like(bootstrap_value)
    for t in reversed(range(values.shape[0])):
        acc = deltas[t] + discounts[t] * cs[t] * acc
        vs_minus_v[t] = acc
    vs = vs_minus_v + values
    next_vs = torch.cat([vs[1:], bootstrap_value.unsqueeze(0)], dim=0)
    pg_rhos = rhos.clamp(max=rho_bar if pg_rho_bar is None else pg_rho_bar)
    pg_advantages = pg_rhos * (rewards + discounts * next_vs - values)
    return VTraceOutput(vs=vs, pg_advantages=pg_advantages, rhos=rhos)
