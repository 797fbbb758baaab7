"""reasonrl: reinforcement-learning fine-tuning of language models for reasoning.

The package is organised by concern (see DESIGN.md):

    losses   pure tensor functions shared by every trainer and control agent
    rollout  engines that turn prompts into completions (vLLM, HF generate)
    rewards  verifiers and reward models, by name
    data     GSM8K and synthetic datasets, prompt templates
    models   model resolution (local path, hub id, embedded SmolLM2, tiny test model)
    trainers GRPO, PPO and DPO loops
    control  Gymnasium agents on the same losses
    eval     GSM8K-style evaluation
"""

__version__ = "0.1.0"
