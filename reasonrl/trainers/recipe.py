"""The recipe of an LLM training run: one dataclass per section of the YAML file.

The parser is reasonrl's own (``reasonrl.config``); the key names are TRL's where they
mean the same thing (GRPOConfig: num_generations, beta, epsilon, epsilon_high,
loss_type, scale_rewards, num_iterations, max_completion_length, temperature,
mask_truncated_completions; DPOConfig: beta, loss_type, label_smoothing; SFTConfig:
completion_only_loss, max_length; GKDConfig: beta, lmbda, temperature). PPO's keys
are CleanRL's, as the CartPole agent's are (clip_coef, gae_lambda, vf_coef, ent_coef),
so one name means one thing in both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

from reasonrl.models.lora import LoraConfig

RENAMED = {  # keys of earlier versions -> today's, so an old recipe gets a clear error
    "ppo.epsilon": "ppo.clip_coef",
    "ppo.lam": "ppo.gae_lambda",
    "ppo.entropy_coef": "ppo.ent_coef",
}


@dataclass
class ModelSection:
    name: str = "smollm2-135m-instruct"  # a reasonrl.models.load name, local folder or hub id
    # the trainer's weights; see train.bf16 for autocast. auto: a LoRA run's frozen base in
    # bfloat16 where it is native (half the memory, no per-pass casts; the adapter stays
    # fp32), float32 otherwise and for full fine-tuning (fp32 master weights)
    dtype: Literal["auto", "float32", "bfloat16"] = "float32"
    trust_remote_code: bool = False  # only when the recipe's author says so
    lora: LoraConfig | None = None  # train a LoRA adapter instead of all weights


@dataclass
class DataSection:
    source: str = "data/synthetic_gsm8k.jsonl"  # jsonl/json file, folder with {split}.jsonl, or hub id
    split: str = "train"
    limit: int | None = None  # use the first N problems
    template: Literal["chat", "plain", "drill"] = "chat"
    instruction: str = (
        "Solve the problem step by step. End with the final answer on its own line as '#### <number>'."
    )
    system_prompt: str | None = None
    eval_source: str | None = None  # DPO: held-out problems for the sampled reward (default: source)


@dataclass
class RolloutSection:
    engine: Literal["vllm", "hf"] = "vllm"
    engine_fallback: bool = False  # use HF generate when vLLM is missing instead of failing
    # vLLM weights; auto = bfloat16 where the hardware has it natively, else float32
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    max_model_len: int = 1024
    # vLLM KV cache on CPU, GiB (fractions allowed). auto = what one step's sequences can
    # hold at max_model_len (GRPO, PPO; reasonrl.trainers.policy.kv_cache_size), else 2
    kv_cache_gib: float | Literal["auto"] = "auto"
    gpu_memory_utilization: float = 0.3
    top_p: float = 1.0
    stop: list[str] = field(default_factory=list)
    ignore_eos: bool = False  # always sample max_completion_length tokens (benchmarks)
    # vLLM without torch.compile / CUDA graphs. auto = compiled on GPU; on CPU compiled
    # when the run is long enough for the compile to pay on this CPU kind (measured:
    # reasonrl.trainers.start.COMPILE_PAYS_AFTER), else eager; recipe.yaml records which
    enforce_eager: bool | Literal["auto"] = "auto"


@dataclass
class EnvSection:
    """A multi-turn environment (reasonrl.envs): episodes instead of single completions."""

    name: str = "tool"  # tool, feedback, lookup
    max_turns: int = 4  # assistant turns per episode
    max_episode_tokens: int = 1024  # model + environment tokens after the prompt
    options: dict = field(default_factory=dict)  # the environment's own (tools, turn_penalty, ...)


@dataclass
class GRPOSection:
    prompts_per_step: int = 4  # prompts per optimisation step, over all processes
    num_generations: int = 8  # completions per prompt (G)
    max_completion_length: int = 256
    temperature: float = 1.0
    beta: float = 0.0  # KL coefficient to the reference (0 = no reference pass)
    epsilon: float = 0.2  # lower clip
    epsilon_high: float | None = None  # upper clip (DAPO clip-higher); None = epsilon
    loss_type: Literal["grpo", "bnpo", "dr_grpo", "dapo"] = "dapo"
    scale_rewards: Literal["group", "batch", "none"] = "group"
    num_iterations: int = 1  # passes over each batch of rollouts (μ)
    num_minibatches: int = 1  # optimizer steps per pass
    mask_truncated_completions: bool = False  # truncated completions do not count in the loss
    use_bias_correction_kl: bool = True  # importance-weight the KL estimate (TRL's default)
    old_logprobs: Literal["auto", "engine", "recompute"] = "auto"
    skip_zero_advantage: bool = True  # β = 0: skip the passes of rows with no gradient


@dataclass
class PPOSection:
    prompts_per_step: int = 8
    max_completion_length: int = 128
    temperature: float = 1.0
    kl_coef: float = 0.05  # per-token KL penalty to the reference, in the reward
    gamma: float = 1.0
    gae_lambda: float = 0.95  # GAE's λ
    clip_coef: float = 0.2  # the surrogate's clip range ε
    value_clip: float = 0.2  # the value loss's clip range around the old value
    vf_coef: float = 0.5
    ent_coef: float = 0.0  # entropy bonus
    num_iterations: int = 2
    num_minibatches: int = 2
    whiten_advantages: bool = True


@dataclass
class DPOSection:
    beta: float = 0.1
    loss_type: Literal["sigmoid", "hinge", "ipo", "robust"] = "sigmoid"
    label_smoothing: float = 0.0
    max_length: int = 512  # prompt + completion tokens; longer completions are truncated
    batch_size: int = 8  # pairs per optimizer step, over all processes
    on_policy: bool = False  # build pairs from rollouts + a verifier, in rounds
    rounds: int = 3  # on-policy rounds of generate -> pair -> train
    prompts_per_round: int = 32
    num_generations: int = 8
    max_completion_length: int = 128
    temperature: float = 1.0
    eval_fraction: float = 0.1  # held-out pairs for preference accuracy
    eval_samples: int = 64  # held-out prompts sampled to measure the verifier reward


@dataclass
class SFTSection:
    batch_size: int = 16  # examples per optimizer step, over all processes
    max_length: int = 512  # prompt + completion tokens; longer completions are cut
    completion_only_loss: bool = True  # TRL's name; false: the prompt's tokens are learned too
    # sft: pack the sequences of a micro-batch into rows of max_length tokens, attention kept
    # within each sequence (TRL's padding-free packing): no padding is computed
    packing: bool = False
    eval_fraction: float = 0.05  # held-out examples for the completion loss
    eval_samples: int = 64  # held-out problems sampled for the verifier reward (problem sources)
    max_completion_length: int = 128  # length of the sampled completions (evaluation, on-policy)
    temperature: float = 1.0  # sampling temperature (evaluation, on-policy)


@dataclass
class DistillSection(SFTSection):
    # the teacher: a model name or folder, or a LoRA adapter folder on the student's base
    # model; none with teacher_context: hint = the policy itself, shown the hint
    teacher: str | None = None
    divergence: Literal["forward_kl", "reverse_kl", "jsd"] = "forward_kl"
    beta: float = 0.5  # jsd: the teacher's weight in the mixture (GKD's β)
    lmbda: float = 0.0  # GKD's λ: the fraction of steps trained on the student's own samples
    # hint: the row's hint is added to the teacher's prompt; feedback: what the recipe's
    # environment (env:, default feedback) answers to the completion is (OpenClaw-RL)
    teacher_context: Literal["none", "hint", "feedback"] = "none"
    hint_field: str = "hint"


@dataclass
class TrainSection:
    output_dir: str = "outputs/run"
    seed: int = 0
    max_steps: int = 50
    learning_rate: float = 1e-5
    weight_decay: float = 0.0
    lr_scheduler: Literal["constant", "linear", "cosine"] = "constant"
    warmup_steps: int = 0
    max_grad_norm: float = 1.0
    micro_batch_size: int = 8  # sequences per forward/backward (memory knob; does not change the result)
    # bfloat16 autocast for forward/backward, fp32 master weights; auto = only where bf16
    # is native (AMX / AVX512-BF16 CPUs, recent GPUs): emulated bf16 is slower than fp32
    bf16: bool | Literal["auto"] = False
    gradient_checkpointing: bool = False
    logging_steps: int = 1
    save_steps: int = 0  # 0 = save only at the end
    save_total_limit: int = 2
    resume: bool = False  # continue from the last checkpoint in output_dir
    overwrite: bool = False  # replace an earlier run in output_dir (without it, that is an error)
    report_to: list[str] = field(default_factory=lambda: ["tensorboard"])  # tensorboard, wandb, or none
    completions_to_log: int = 4  # sample completions written per step
    progress: bool = True


@dataclass
class EvalSection:
    """Held-out accuracy before and after the run, printed at its end (``reasonrl eval`` on
    the run's own prompts): GSM8K-format data with the chat task (lm-eval's strict match),
    generated sources (synthetic, reasoning_gym) in the feedback environment for one turn,
    and an environment recipe in its environment."""

    limit: int = 0  # held-out rows; 0 = no evaluation around the run
    data: str | None = None  # default: data.source (its test split)
    split: str = "test"
    max_tokens: int | None = None  # per turn; default: the algorithm's max_completion_length
    before: bool = True  # also evaluate the model the run starts from


@dataclass
class Recipe:
    algorithm: Literal["grpo", "ppo", "dpo", "sft", "distill"] = "grpo"
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    rollout: RolloutSection = field(default_factory=RolloutSection)
    rewards: list[dict] = field(default_factory=lambda: [{"name": "gsm8k"}])
    env: EnvSection | None = None  # multi-turn episodes, scored by the environment (rewards unused)
    grpo: GRPOSection = field(default_factory=GRPOSection)
    ppo: PPOSection = field(default_factory=PPOSection)
    dpo: DPOSection = field(default_factory=DPOSection)
    sft: SFTSection = field(default_factory=SFTSection)
    distill: DistillSection = field(default_factory=DistillSection)
    train: TrainSection = field(default_factory=TrainSection)
    eval: EvalSection = field(default_factory=EvalSection)

    renamed: ClassVar[dict[str, str]] = RENAMED
