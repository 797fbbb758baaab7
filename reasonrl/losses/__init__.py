"""reasonrl.losses: pure tensor functions shared by the LLM trainers and the control agents.

One module per family; every function states its equation, its paper, and the
shape and time index of each argument. Nothing here knows about models, trainers
or configs: the module imports only torch.

    advantages   discounted and n-step returns, GAE, group-relative (GRPO / Dr. GRPO), RLOO, V-trace
    policy       importance ratio, clipped surrogate (clip-higher, dual clip), policy gradient,
                 SAC's soft policy loss, KL k1/k2/k3, entropy, cross-entropy to a
                 target distribution (the search's visit counts)
    objectives   whole objectives a trainer backpropagates: grpo_loss, ppo_loss
    logprobs     not losses but their inputs: per-token log-probs from logits or from an
                 LM head's input (fused, no [tokens x vocab] tensor kept for backward)
    aggregation  masked means and the GRPO loss types' token aggregation
    value        clipped value loss, soft Bellman target, SAC temperature, soft value,
                 MuZero's value transform h and its inverse
    preference   DPO, cDPO, IPO, hinge, robust DPO
    world_model  DreamerV3 / STORM: symlog, categorical KL with balancing and free bits, the
                 world model's named loss terms, the return scale of the actor's advantages
    distillation SFT's next-token NLL; forward / reverse KL and GKD's generalised JSD between
                 a student's and a teacher's distributions; the sampled-token gap advantage
"""

from reasonrl.losses.advantages import (
    VTraceOutput,
    discounted_returns,
    generalized_advantage_estimation,
    group_advantages,
    n_step_returns,
    rloo_advantages,
    vtrace,
)
from reasonrl.losses.aggregation import LOSS_TYPE_AGGREGATION, aggregate_tokens, masked_mean
from reasonrl.losses.distillation import (
    distillation_divergence,
    generalized_jsd,
    kl_divergence,
    nll,
    token_gap_advantages,
)
from reasonrl.losses.logprobs import linear_token_logprobs, token_logprobs
from reasonrl.losses.objectives import GRPOLossOutput, PPOLossOutput, grpo_loss, ppo_loss
from reasonrl.losses.policy import (
    SurrogateOutput,
    clipped_surrogate,
    cross_entropy_to_target,
    entropy_from_logits,
    importance_ratio,
    kl_estimate,
    policy_gradient_loss,
    soft_policy_loss,
)
from reasonrl.losses.preference import DPOOutput, dpo_loss
from reasonrl.losses.value import (
    sac_temperature_loss,
    signed_hyperbolic,
    signed_parabolic,
    soft_bellman_target,
    soft_value,
    value_loss,
)
from reasonrl.losses.world_model import (
    WorldModelLoss,
    categorical_kl,
    return_scale,
    symexp,
    symlog,
    world_model_loss,
)

__all__ = [
    "DPOOutput",
    "GRPOLossOutput",
    "LOSS_TYPE_AGGREGATION",
    "PPOLossOutput",
    "SurrogateOutput",
    "VTraceOutput",
    "WorldModelLoss",
    "aggregate_tokens",
    "categorical_kl",
    "clipped_surrogate",
    "cross_entropy_to_target",
    "discounted_returns",
    "distillation_divergence",
    "dpo_loss",
    "entropy_from_logits",
    "generalized_advantage_estimation",
    "generalized_jsd",
    "group_advantages",
    "grpo_loss",
    "importance_ratio",
    "kl_divergence",
    "kl_estimate",
    "linear_token_logprobs",
    "masked_mean",
    "n_step_returns",
    "nll",
    "policy_gradient_loss",
    "ppo_loss",
    "return_scale",
    "rloo_advantages",
    "sac_temperature_loss",
    "signed_hyperbolic",
    "signed_parabolic",
    "soft_bellman_target",
    "soft_policy_loss",
    "soft_value",
    "symexp",
    "symlog",
    "token_gap_advantages",
    "token_logprobs",
    "value_loss",
    "vtrace",
    "world_model_loss",
]
