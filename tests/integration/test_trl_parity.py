"""Our losses equal TRL 1.16's on identical inputs and the same model.

TRL keeps its GRPO and DPO losses inside its trainers (``_compute_loss``), so each
test builds the real TRL trainer around the tiny model, feeds it one batch, and
compares its loss, its logged metrics and the resulting gradients with ours. The GRPO
side is the trainer's own ``micro_batch_loss`` (model pass and ``grpo_loss``), so a
bug in how training composes the objective fails it.
"""

import contextlib
import copy

import pytest
import torch

from reasonrl.losses import dpo_loss, token_logprobs
from reasonrl.rollout import Rollouts
from reasonrl.trainers.grpo import MicroBatch, StepInputs, micro_batch_loss
from reasonrl.trainers.recipe import GRPOSection

pytestmark = pytest.mark.filterwarnings("ignore")


def _grads(model):
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


@pytest.fixture
def tiny():
    """A fresh model per test: TRL's trainers patch the model's forward in place."""
    from reasonrl.models import load

    return load("tiny-llama")


@pytest.mark.parametrize("bias_correction", [True, False])
@pytest.mark.parametrize("loss_type", ["grpo", "bnpo", "dr_grpo", "dapo"])
def test_grpo_loss_matches_trl(tiny, tmp_path, loss_type, bias_correction):
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    model, tokenizer = tiny
    beta, eps_low, eps_high, temperature, max_len = 0.04, 0.2, 0.28, 0.7, 6
    args = GRPOConfig(
        output_dir=str(tmp_path),
        per_device_train_batch_size=4,
        num_generations=4,
        max_completion_length=max_len,
        beta=beta,
        loss_type=loss_type,
        epsilon=eps_low,
        epsilon_high=eps_high,
        temperature=temperature,
        use_cpu=True,
        report_to=[],
        bf16=False,
        use_bias_correction_kl=bias_correction,
    )
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=lambda completions, **_: [0.0] * len(completions),
        args=args,
        train_dataset=Dataset.from_dict({"prompt": ["1+1="] * 4}),
        processing_class=tokenizer,
    )
    trainer.current_gradient_accumulation_steps = 1
    gen = torch.Generator().manual_seed(0)
    B, P = 4, 5
    prompt_ids = torch.randint(4, 100, (B, P), generator=gen)
    completion_ids = torch.randint(4, 100, (B, max_len), generator=gen)
    completion_mask = (torch.arange(max_len)[None] < torch.tensor([6, 3, 5, 1])[:, None]).long()
    with torch.no_grad():
        logits = model(torch.cat([prompt_ids, completion_ids], 1)).logits[:, P - 1 : -1]
        current = token_logprobs(logits.double(), completion_ids, temperature).float()
    # old and ref log-probs near the current ones, so some ratios clip and some do not
    old = current + 0.3 * torch.randn(B, max_len, generator=gen)
    ref = current + 0.3 * torch.randn(B, max_len, generator=gen)
    advantages = torch.randn(B, generator=gen)
    inputs = dict(
        prompt_ids=prompt_ids,
        prompt_mask=torch.ones(B, P, dtype=torch.long),
        completion_ids=completion_ids,
        completion_mask=completion_mask,
        advantages=advantages,
        old_per_token_logps=old,
        ref_per_token_logps=ref,
        num_items_in_batch=completion_mask.sum(),
    )
    trainer.model.train()
    model.zero_grad()
    trl_loss = trainer._compute_loss(trainer.model, inputs)
    trl_loss.backward()
    trl_grads = _grads(model)

    # ours: the trainer's own micro-batch loss (completion log-probs through the shared-prompt,
    # fused-head path, then grpo_loss), on the same tokens; masked tokens are simply absent
    model.zero_grad()
    lengths = completion_mask.sum(1).tolist()
    rollouts = Rollouts.from_lists(
        prompt_ids.tolist(),
        [row[:n] for row, n in zip(completion_ids.tolist(), lengths, strict=True)],
        [[0.0] * n for n in lengths],
        list(range(B)),
        ["1+1="] * B,
        [""] * B,
        ["length"] * B,
        tokenizer.pad_token_id,
    )
    mask = rollouts.completion_mask
    step = StepInputs(rollouts, advantages, mask, old * mask, ref * mask)
    cfg = GRPOSection(
        num_generations=4,
        max_completion_length=max_len,
        temperature=temperature,
        beta=beta,
        epsilon=eps_low,
        epsilon_high=eps_high,
        loss_type=loss_type,
        use_bias_correction_kl=bias_correction,
    )
    chunk = MicroBatch(torch.arange(B), torch.ones(B, dtype=torch.bool))
    ours, stats = micro_batch_loss(model, step, chunk, cfg, mask.sum().float(), B, contextlib.nullcontext())
    ours.backward()
    print(f"{loss_type}: TRL {trl_loss.item():.6f}  reasonrl {ours.item():.6f}")
    assert 0 < stats["clip_fraction"] < 1  # the clip branch is exercised, and not everywhere
    torch.testing.assert_close(ours, trl_loss, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(_grads(model), trl_grads, rtol=1e-4, atol=1e-6)


def _sequence_logps(model, batch):
    logits = model(batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
    per_token = token_logprobs(logits, batch["input_ids"][:, 1:])
    mask = batch["completion_mask"][:, 1:].bool()
    return (per_token * mask).sum(-1), mask.sum(-1)


@pytest.mark.parametrize("loss_type", ["sigmoid", "hinge", "ipo", "robust"])
def test_dpo_loss_and_metrics_match_trl(tiny, tmp_path, loss_type):
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    model, tokenizer = tiny
    ref_model = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():  # a reference that differs from the policy, so log-ratios are not zero
        for p in ref_model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
    pairs = {
        "prompt": ["1+1=", "2+2=", "Tom has 3 apples. He buys 2. How many?", "3+1="],
        "chosen": ["2", "4, since 2+2=4", "#### 5", "4"],
        "rejected": ["3 no", "5", "#### 6 apples", "7 or 8"],
    }
    beta, smoothing = 0.3, (0.1 if loss_type == "robust" else 0.0)
    args = DPOConfig(
        output_dir=str(tmp_path),
        per_device_train_batch_size=4,
        beta=beta,
        loss_type=[loss_type],
        label_smoothing=smoothing,
        use_cpu=True,
        report_to=[],
    )
    trainer = DPOTrainer(
        model=model,
        ref_model=ref_model,
        args=args,
        train_dataset=Dataset.from_dict(pairs),
        processing_class=tokenizer,
    )
    batch = next(iter(trainer.get_train_dataloader()))
    trainer.model.train()
    model.zero_grad()
    trl_loss = trainer._compute_loss(trainer.model, batch, False)
    trl_loss.backward()
    trl_grads = _grads(model)
    metrics = {k: v[-1] for k, v in trainer._metrics["train"].items()}

    model.zero_grad()
    logps, lengths = _sequence_logps(model, batch)
    with torch.no_grad():
        ref_logps, _ = _sequence_logps(ref_model, batch)
    (pc, pr), (rc, rr), (lc, lr) = logps.chunk(2), ref_logps.chunk(2), lengths.chunk(2)
    out = dpo_loss(pc, pr, rc, rr, beta, loss_type, smoothing, chosen_lengths=lc, rejected_lengths=lr)
    ours = out.losses.mean()
    ours.backward()
    print(f"{loss_type}: TRL {trl_loss.item():.6f}  reasonrl {ours.item():.6f}")
    torch.testing.assert_close(ours, trl_loss, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(_grads(model), trl_grads, rtol=1e-4, atol=1e-6)
    for name, value in [
        ("rewards/chosen", out.chosen_rewards.mean()),
        ("rewards/rejected", out.rejected_rewards.mean()),
        ("rewards/margins", out.margins.mean()),
        ("rewards/accuracies", out.accuracies.mean()),
    ]:
        assert abs(metrics[name] - value.item()) < 1e-5, (name, metrics[name], value.item())
    assert 0 < out.accuracies.mean() < 1 or out.margins.abs().max() > 0
