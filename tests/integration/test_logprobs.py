"""Completion log-probs with shared prompts equal whole-sequence ones: values and gradients."""

import pytest
import torch

from reasonrl.models import load
from reasonrl.models.logprobs import completion_logprobs
from reasonrl.models.lora import LoraConfig, wrap_lora
from reasonrl.rollout import SamplingConfig, make_engine

# prompts of different lengths, so the batch carries left padding
PROMPTS = ["1+1=", "Tom has 3 apples. He buys 4 more. How many", "7*6="]


@pytest.fixture(scope="module")
def setup():
    model, tokenizer = load("tiny-llama")
    torch.manual_seed(0)
    model = wrap_lora(model, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0))
    with torch.no_grad():  # a non-zero adapter, so its gradients reach both halves of the graph
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.02)
    batch = make_engine("hf", model, tokenizer, seed=0).generate(
        PROMPTS, SamplingConfig(n=4, temperature=1.0, max_tokens=12)
    )
    return model, batch, tokenizer


def logprobs_and_grads(model, batch, share: bool, micro_batch=None):
    model.zero_grad()
    logp, entropy = completion_logprobs(
        model, batch, temperature=0.7, with_entropy=True, micro_batch=micro_batch, share_prompts=share
    )
    mask = batch.completion_mask
    (logp * mask).sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return logp.detach()[mask], entropy[mask], grads


@pytest.mark.parametrize("micro_batch", [None, 3, 5])  # 3 and 5 split the groups of 4 unevenly
def test_shared_prompts_give_the_same_logprobs_and_gradients(setup, micro_batch):
    model, batch, _ = setup
    assert batch.prompt_mask.logical_not().any(), "the batch should contain padded prompts"
    whole = logprobs_and_grads(model, batch, share=False, micro_batch=micro_batch)
    shared = logprobs_and_grads(model, batch, share=True, micro_batch=micro_batch)
    torch.testing.assert_close(shared[0], whole[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(shared[1], whole[1], rtol=1e-5, atol=1e-5)
    assert whole[2].keys() == shared[2].keys() and len(whole[2]) > 0
    for name, expected in whole[2].items():  # float32 summation order differs: tolerance scaled to the tensor
        scale = expected.abs().max().item()
        torch.testing.assert_close(shared[2][name], expected, rtol=1e-4, atol=1e-5 * scale, msg=name)


def test_sharing_runs_each_prompt_once(setup):
    model, batch, _ = setup
    seen = []
    hook = model.get_base_model().model.embed_tokens.register_forward_hook(
        lambda module, args, out: seen.append(tuple(args[0].shape))
    )
    try:
        with torch.no_grad():
            completion_logprobs(model, batch)
    finally:
        hook.remove()
    # one pass over the 3 distinct prompts, one over the 12 completions
    assert [shape[0] for shape in seen] == [3, 12]
    assert seen[1][1] == batch.completion_ids.shape[1]


def test_shared_prompt_gradients_are_bitwise_repeatable(setup):
    """Exact resumption needs the same bits every time (advanced indexing broke this once)."""
    model, _, tokenizer = setup
    # many completions per prompt: where a backward that adds in thread order shows it
    batch = make_engine("hf", model, tokenizer, seed=1).generate(
        PROMPTS * 3, SamplingConfig(n=8, temperature=1.0, max_tokens=12)
    )
    first = logprobs_and_grads(model, batch, share=True)
    for _ in range(8):
        again = logprobs_and_grads(model, batch, share=True)
        assert torch.equal(first[0], again[0])
        assert all(torch.equal(first[2][k], again[2][k]) for k in first[2])
