"""The GRPO update in bf16 autocast (``train.bf16: auto`` where bf16 is native) stays
within a tested tolerance of the fp32 update: same loss, same LoRA gradients up to
bf16's rounding. SmolLM2-135M with a LoRA adapter on every projection (B drawn at
random, so A's gradients are not zero), four GSM8K-style rows with mixed advantages,
through the trainer's own ``micro_batch_loss``."""

import contextlib

import pytest
import torch

from reasonrl.models import load
from reasonrl.models.logprobs import completion_logprobs
from reasonrl.models.lora import LoraConfig, wrap_lora
from reasonrl.models.precision import native_bf16
from reasonrl.rollout import Rollouts
from reasonrl.trainers.grpo import MicroBatch, StepInputs, micro_batch_loss
from reasonrl.trainers.recipe import GRPOSection

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not native_bf16("cpu"),
        reason="bf16 autocast runs only where bf16 is native (train.bf16: auto); emulated it takes minutes",
    ),
]

ROWS = [
    ("Tom has 3 boxes of 12 pencils. He gives away 7. How many are left?",
     "3 boxes x 12 = 36 pencils. 36 - 7 = 29. #### 29"),
    ("Tom has 3 boxes of 12 pencils. He gives away 7. How many are left?",
     "He has 12 + 3 = 15 pencils, 15 - 7 = 8. #### 8"),
    ("A bus carries 40 people and 3 get off at each of 5 stops. How many remain?",
     "3 x 5 = 15 get off. 40 - 15 = 25 remain. #### 25"),
    ("A bus carries 40 people and 3 get off at each of 5 stops. How many remain?",
     "40 / 5 = 8 per stop, so 8 remain. #### 8"),
]  # fmt: skip


def _gradients(model, inputs, cfg, autocast) -> tuple[float, torch.Tensor]:
    model.zero_grad()
    rows = torch.arange(len(ROWS))
    tokens = int(inputs.mask.sum())
    loss, _ = micro_batch_loss(model, inputs, MicroBatch(rows, torch.ones(len(rows), dtype=torch.bool)),
                               cfg, tokens, len(rows), autocast)  # fmt: skip
    loss.backward()
    grads = [p.grad.flatten() for n, p in model.named_parameters() if p.requires_grad]
    return loss.item(), torch.cat(grads)


def _lora_model(dtype: str):
    model, tokenizer = load("smollm2-135m-instruct", dtype=dtype)
    model = wrap_lora(model, LoraConfig(r=16, lora_alpha=32))
    torch.manual_seed(0)
    for name, p in model.named_parameters():
        if "lora_B" in name:
            p.data.normal_(0, 0.01)
    return model, tokenizer


@pytest.mark.parametrize("base", ["float32", "bfloat16"])
def test_bf16_update_matches_fp32_within_tolerance(base):
    """bf16 autocast on the fp32 base (``train.bf16: auto``), and on a bf16 base (``model.dtype:
    auto`` with LoRA): against the all-fp32 update."""
    reference, tokenizer = _lora_model("float32")
    model, _ = _lora_model(base)
    adapters = {n: p for n, p in reference.named_parameters() if p.requires_grad}
    with torch.no_grad():  # the same adapter on both (fp32 in both)
        for name, p in model.named_parameters():
            if p.requires_grad:
                p.copy_(adapters[name])
    prompts = [tokenizer.apply_chat_template([{"role": "user", "content": q}], tokenize=False,
                                             add_generation_prompt=True) for q, _ in ROWS]  # fmt: skip
    prompt_ids = [tokenizer(p, add_special_tokens=False).input_ids for p in prompts]
    completion_ids = [
        tokenizer(c, add_special_tokens=False).input_ids + [tokenizer.eos_token_id] for _, c in ROWS
    ]
    rollouts = Rollouts.from_lists(
        prompt_ids, completion_ids, [[0.0] * len(c) for c in completion_ids], [0, 0, 1, 1],
        prompts, [c for _, c in ROWS], ["stop"] * 4, tokenizer.pad_token_id,
    )  # fmt: skip
    inputs = StepInputs(rollouts, torch.tensor([1.0, -1.0, 1.0, -1.0]), rollouts.loss_mask, None, None)
    cfg = GRPOSection()
    bf16 = torch.autocast("cpu", dtype=torch.bfloat16)
    loss32, grad32 = _gradients(reference, inputs, cfg, contextlib.nullcontext())
    loss16, grad16 = _gradients(model, inputs, cfg, bf16)
    cosine = torch.nn.functional.cosine_similarity(grad32, grad16, dim=0).item()
    norm_error = ((grad16 - grad32).norm() / grad32.norm()).item()
    with torch.no_grad():
        logp32 = completion_logprobs(reference, rollouts, cfg.temperature)[0]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logp16 = completion_logprobs(model, rollouts, cfg.temperature)[0].float()
    mask = rollouts.loss_mask
    gap = (logp16 - logp32)[mask].abs()
    sequence_gap = ((logp16 - logp32) * mask).sum(1).abs().max().item()
    print(
        f"bf16 update ({base} base) vs fp32: token log-prob error mean {gap.mean():.4f}, max {gap.max():.3f} "
        f"nats (a whole completion's: {sequence_gap:.3f}); loss {loss16:.6f} vs {loss32:.6f}; gradient "
        f"cosine {cosine:.5f}, relative error {norm_error:.4f}"
    )
    # bf16 keeps 8 significant bits: 0.4% of a logit of ~20 is 0.08 nats; measured on
    # AVX512-BF16 (fp32 base): mean 0.036, a completion 0.41, cosine 0.9995, relative error 0.052
    assert gap.mean() < 0.1 and sequence_gap < 2.0
    # on-policy the loss is -Σ A / tokens whatever the log-probs (ratio 1): equal to rounding
    assert abs(loss16 - loss32) <= 1e-3 * max(abs(loss32), 1e-3)
    assert cosine > 0.99 and norm_error < 0.15
