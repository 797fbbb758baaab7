"""Completion log-probs with shared prompts, length groups and the fused LM head equal
plain whole-sequence ones from the model's own logits: values and gradients."""

import pytest
import torch

from reasonrl.losses import linear_token_logprobs
from reasonrl.models import load
from reasonrl.models.logprobs import completion_logprobs, length_groups, pack_rows, packed_completion_logprobs
from reasonrl.models.lora import LoraConfig, wrap_lora
from reasonrl.rollout import Rollouts, SamplingConfig, make_engine

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


def logprobs_and_grads(model, batch, share: bool, micro_batch=None, trim=True, fused=True):
    model.zero_grad()
    logp, entropy = completion_logprobs(
        model,
        batch,
        temperature=0.7,
        with_entropy=True,
        micro_batch=micro_batch,
        share_prompts=share,
        trim_padding=trim,
        fused_head=fused,
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
    assert_same(shared, whole)


def assert_same(ours, expected):
    """Log-probs, entropies and gradients (``logprobs_and_grads``) equal."""
    torch.testing.assert_close(ours[0], expected[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours[1], expected[1], rtol=1e-5, atol=1e-5)
    assert expected[2].keys() == ours[2].keys() and len(expected[2]) > 0
    for name, grad in expected[2].items():  # float32 summation order differs: tolerance scaled to the tensor
        scale = grad.abs().max().item()
        torch.testing.assert_close(ours[2][name], grad, rtol=1e-4, atol=1e-5 * scale, msg=name)


@pytest.mark.parametrize("share", [False, True])
def test_the_fused_head_gives_the_models_logprobs_and_gradients_without_its_logits(setup, share):
    model, batch, _ = setup
    fused = logprobs_and_grads(model, batch, share=share, micro_batch=5)
    assert_same(fused, logprobs_and_grads(model, batch, share=share, micro_batch=5, fused=False))
    widths = []  # positions the model's own head computed, per pass: none when fused
    hook = model.get_output_embeddings().register_forward_hook(lambda m, a, out: widths.append(out.shape[1]))
    try:
        logprobs_and_grads(model, batch, share=share, micro_batch=5)
    finally:
        hook.remove()
    assert widths and set(widths) == {0}


def test_a_model_that_caps_its_logits_keeps_its_own_head():
    """Gemma 2 soft-caps its logits after the head (tanh(z / c) · c): the fused head,
    which applies the bare linear map, would be wrong, and the check at first use sees it."""
    from transformers import Gemma2Config, Gemma2ForCausalLM

    torch.manual_seed(0)
    config = Gemma2Config(
        vocab_size=96,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
        final_logit_softcapping=0.05,
        initializer_range=0.5,
    )
    model = Gemma2ForCausalLM(config).eval()
    prompts, completions = [[5, 6, 7], [5, 6, 7], [9, 10]], [[11, 12, 13, 14], [15, 16], [17, 18, 19]]
    logps = [[0.0] * len(c) for c in completions]
    batch = Rollouts.from_lists(prompts, completions, logps, [0, 0, 1], ["p"] * 3, ["t"] * 3, ["stop"] * 3, 0)
    mask = batch.completion_mask
    with torch.no_grad():
        ours = completion_logprobs(model, batch)[0][mask]
        expected = completion_logprobs(model, batch, fused_head=False)[0][mask]
        out = model(input_ids=torch.tensor([prompts[0] + completions[0]]), output_hidden_states=True)
        uncapped = linear_token_logprobs(
            out.hidden_states[-1][0, 2:-1], model.lm_head.weight, torch.tensor([11, 12, 13, 14])
        )[0]
    torch.testing.assert_close(ours, expected)
    assert (uncapped - expected[:4]).abs().max() > 0.1, "the cap should matter, or this test proves nothing"


def embedding_calls(model, batch, **kwargs) -> list[tuple[int, int]]:
    """(rows, tokens) of every forward pass ``completion_logprobs`` makes."""
    seen = []
    hook = model.get_base_model().model.embed_tokens.register_forward_hook(
        lambda module, args, out: seen.append(tuple(args[0].shape))
    )
    try:
        with torch.no_grad():
            completion_logprobs(model, batch, **kwargs)
    finally:
        hook.remove()
    return seen


def test_sharing_runs_each_prompt_once(setup):
    model, batch, _ = setup
    # untrimmed: one pass over the 3 distinct prompts, one over the 12 completions
    seen = embedding_calls(model, batch, trim_padding=False)
    assert [shape[0] for shape in seen] == [3, 12]
    assert seen[1][1] == batch.completion_ids.shape[1]
    # trimmed: the prompts still once, then every completion exactly once across the groups
    seen = embedding_calls(model, batch)
    assert seen[0][0] == 3 and sum(rows for rows, _ in seen[1:]) == 12


def test_groups_cut_the_padding(setup):
    """Completions run in length groups, each as wide as its longest member, with the
    same log-probs and gradients as the full padded batch."""
    model, _, tokenizer = setup
    batch = make_engine("hf", model, tokenizer, seed=3).generate(
        PROMPTS, SamplingConfig(n=6, temperature=1.0, max_tokens=40)
    )
    lengths = sorted(batch.completion_lengths.tolist(), reverse=True)
    assert lengths[0] > 2 * lengths[-1], f"want lengths that vary a lot, got {lengths}"
    seen = embedding_calls(model, batch)[1:]
    widths = [width for _, width in seen]
    assert max(widths) == lengths[0] and min(widths) < lengths[0]
    padded = sum(rows * width for rows, width in seen)
    assert padded < len(lengths) * lengths[0]
    print(f"lengths {lengths}: groups {seen}, {padded} tokens vs {len(lengths) * lengths[0]} untrimmed")
    for share in (True, False):
        full = logprobs_and_grads(model, batch, share=share, trim=False)
        trimmed = logprobs_and_grads(model, batch, share=share, trim=True)
        torch.testing.assert_close(trimmed[0], full[0], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(trimmed[1], full[1], rtol=1e-5, atol=1e-5)
        for name, expected in full[2].items():
            scale = expected.abs().max().item()
            torch.testing.assert_close(trimmed[2][name], expected, rtol=1e-4, atol=1e-5 * scale, msg=name)


def test_length_groups():
    # equal lengths: one pass; one long row among short ones: its own pass
    assert length_groups([10, 10, 10]) == [(0, 3, 10)]
    assert length_groups([200, 20, 20, 20], pass_cost=32) == [(0, 1, 200), (1, 4, 20)]
    # a pass costs more than the padding it would save: stay together
    assert length_groups([21, 20], pass_cost=32) == [(0, 2, 21)]
    assert length_groups([0, 0]) == [(0, 2, 1)]  # never a zero-width pass
    assert length_groups([]) == []
    # a fixed number of passes (several processes): exactly that many, the best such split
    assert length_groups([10, 10, 10], passes=2) == [(0, 1, 10), (1, 3, 10)]
    assert length_groups([200, 20, 20, 20], passes=2) == [(0, 1, 200), (1, 4, 20)]
    assert length_groups([90, 85, 30, 20], passes=3) == [(0, 2, 90), (2, 3, 30), (3, 4, 20)]
    assert length_groups([5], passes=2) == [(0, 1, 5)]


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


@pytest.mark.parametrize("row_tokens", [8, 40, 1000])  # a row per sequence, a few, all in one
def test_packed_rows_give_the_same_logprobs_and_gradients(setup, row_tokens):
    model, batch, _ = setup
    mask = batch.completion_mask

    def logprobs_and_grads(fn):
        model.zero_grad()
        logp = fn()
        (logp * mask).sum().backward()
        return logp.detach()[mask], {
            n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None
        }

    packed = logprobs_and_grads(lambda: packed_completion_logprobs(model, batch, row_tokens))
    plain = logprobs_and_grads(lambda: completion_logprobs(model, batch, share_prompts=False)[0])
    empty = torch.zeros(0)
    assert_same((packed[0], empty, packed[1]), (plain[0], empty, plain[1]))


def test_pack_rows_first_fit_decreasing():
    # 9 alone (longer than a row), then 6+4, 5+3+2 (the 3 fits beside the 5, the 2 too)
    assert pack_rows([5, 9, 3, 6, 4, 2], 10) == [[1], [3, 4], [0, 2, 5]]


def test_a_pass_is_worth_more_tokens_in_half_precision():
    """Under bf16 autocast a token costs less and a pass the same: fewer, wider passes."""
    from reasonrl.models.logprobs import PASS_COST_TOKENS, PASS_COST_TOKENS_HALF, _pass_cost

    model = torch.nn.Linear(2, 2)
    assert _pass_cost(model) == PASS_COST_TOKENS
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert _pass_cost(model) == PASS_COST_TOKENS_HALF
    assert _pass_cost(model.to(torch.bfloat16)) == PASS_COST_TOKENS_HALF  # a bf16 model, no autocast
    lengths = [128, 128, 90, 80]  # a GRPO micro-batch at natural lengths
    assert len(length_groups(lengths, PASS_COST_TOKENS)) == 2  # 436 tokens + 2 passes
    assert len(length_groups(lengths, PASS_COST_TOKENS_HALF)) == 1  # 512 tokens, one pass
