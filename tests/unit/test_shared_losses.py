"""The control agents and the LLM trainers call the same loss functions: the same objects,
imported from reasonrl.losses, never a copy."""

import reasonrl.control.impala as impala
import reasonrl.control.ppo as control_ppo
import reasonrl.control.sac as sac
import reasonrl.losses as losses
import reasonrl.trainers.dpo as dpo
import reasonrl.trainers.grpo as grpo
import reasonrl.trainers.ppo as llm_ppo


def test_same_function_objects():
    assert control_ppo.ppo_loss is llm_ppo.ppo_loss is losses.ppo_loss  # CartPole and the LLM
    assert grpo.grpo_loss is losses.grpo_loss
    assert control_ppo.generalized_advantage_estimation is llm_ppo.generalized_advantage_estimation
    assert llm_ppo.generalized_advantage_estimation is losses.generalized_advantage_estimation
    assert impala.value_loss is sac.value_loss is losses.value_loss
    assert impala.vtrace is losses.vtrace and impala.policy_gradient_loss is losses.policy_gradient_loss
    assert sac.soft_bellman_target is losses.soft_bellman_target
    assert (
        sac.sac_temperature_loss is losses.sac_temperature_loss
        and sac.soft_policy_loss is losses.soft_policy_loss
    )
    assert dpo.dpo_loss is losses.dpo_loss and grpo.group_advantages is losses.group_advantages


def test_no_agent_or_trainer_defines_its_own_loss_math():
    """Loss-named functions live in reasonrl.losses only."""
    for module in (control_ppo, impala, sac, llm_ppo, grpo, dpo):
        for name, value in vars(module).items():
            if name in losses.__all__ and value is not getattr(losses, name):
                raise AssertionError(f"{module.__name__}.{name} shadows reasonrl.losses.{name}")
