"""``reasonrl_cpu`` attention equals transformers' SDPA path: outputs and gradients, with
grouped-query heads, padding masks, missing (causal) masks, one-query decoding and
cached prompts longer than the queries; in fp32 to rounding, in bf16 to bf16's."""

import pytest
import torch
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from reasonrl.models import attention as attn
from reasonrl.models import load
from reasonrl.models.logprobs import completion_logprobs
from reasonrl.rollout import Rollouts


class _Layer(torch.nn.Module):
    is_causal = True

    def __init__(self, groups: int):
        super().__init__()
        self.num_key_value_groups = groups


def _inputs(B, H, kv_heads, q_len, k_len, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, H, q_len, 16, generator=g).to(dtype).requires_grad_()
    k = torch.randn(B, kv_heads, k_len, 16, generator=g).to(dtype).requires_grad_()
    v = torch.randn(B, kv_heads, k_len, 16, generator=g).to(dtype).requires_grad_()
    return q, k, v


def _padded_causal(B, q_len, k_len, pad):
    """Bool [B, 1, Tq, Tk]: the queries are the last Tq positions; row b has ``pad[b]`` left pads."""
    positions = torch.arange(k_len)
    query_pos = positions[k_len - q_len :]
    causal = positions[None, :] <= query_pos[:, None]
    real = positions[None, :] >= torch.tensor(pad)[:, None]
    return (causal[None] & real[:, None, :])[:, None]


def _run(fn, q, k, v, mask, groups, weights):
    out, _ = fn(_Layer(groups), q, k, v, mask, scaling=0.3)
    (out.float() * weights).sum().backward()
    grads = [t.grad.clone() for t in (q, k, v)]
    for t in (q, k, v):
        t.grad = None
    return out.detach().float(), grads


CASES = {
    # name: (B, H, kv_heads, q_len, k_len, mask)
    "padded prompts, GQA": (3, 6, 2, 7, 7, lambda: _padded_causal(3, 7, 7, [0, 2, 5])),
    "no mask: causal": (2, 4, 4, 9, 9, lambda: None),
    "one query (decode)": (2, 6, 3, 1, 10, lambda: None),
    "completions on a cached prompt": (4, 6, 2, 5, 12, lambda: _padded_causal(4, 5, 12, [0, 0, 3, 3])),
}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_attention_matches_sdpa(case, dtype, monkeypatch):
    monkeypatch.setattr(attn, "DTYPES", (torch.float32, torch.bfloat16))  # fp32: the exact check
    B, H, kv_heads, q_len, k_len, mask = CASES[case]
    mask = mask()
    weights = torch.randn(B, q_len, H, 16, generator=torch.Generator().manual_seed(1))
    inputs = _inputs(B, H, kv_heads, q_len, k_len, dtype)
    ours, our_grads = _run(attn.attention, *inputs, mask, H // kv_heads, weights)
    theirs, their_grads = _run(sdpa_attention_forward, *inputs, mask, H // kv_heads, weights)
    tol = {torch.float32: 1e-5, torch.bfloat16: 2e-2}[dtype]
    assert ours.shape == theirs.shape == (B, q_len, H, 16)
    torch.testing.assert_close(ours, theirs, atol=tol, rtol=tol)
    for name, a, b in zip("qkv", our_grads, their_grads, strict=True):
        scale = b.float().abs().max().item()
        error = (a.float() - b.float()).abs().max().item()
        assert error <= tol * max(scale, 1.0), f"d{name}: max error {error:.2e} (scale {scale:.2e})"


def test_large_fp32_or_special_calls_go_to_sdpa(monkeypatch):
    """fp32 inputs, past ``MAX_SCORES``, with dropout or with extra terms the call is SDPA's,
    unchanged; bf16 within the limit is this module's."""
    calls = []
    monkeypatch.setattr(
        "transformers.integrations.sdpa_attention.sdpa_attention_forward",
        lambda *a, **k: calls.append(k) or (None, None),
    )
    q, k, v = _inputs(1, 2, 2, 4, 4, torch.bfloat16)
    out, _ = attn.attention(_Layer(1), q, k, v, None)
    assert out is not None and not calls
    attn.attention(_Layer(1), q, k, v, None, dropout=0.1)
    attn.attention(_Layer(1), q, k, v, None, softcap=30.0)
    attn.attention(_Layer(1), *_inputs(1, 2, 2, 4, 4, torch.float32), None)
    monkeypatch.setattr(attn, "MAX_SCORES", 2 * 4 * 4 - 1)
    attn.attention(_Layer(1), q, k, v, None)
    assert len(calls) == 4


def test_model_loads_with_it_and_gives_sdpa_logprobs_and_gradients(monkeypatch):
    """The tiny Llama, loaded by ``reasonrl.models.load`` (which picks this attention on
    CPU), gives the log-probs and LoRA-free gradients SDPA gives, on left-padded prompts
    (in fp32, made to take this path, for an exact comparison)."""
    monkeypatch.setattr(attn, "DTYPES", (torch.float32,))
    model, tokenizer = load("tiny-llama")
    assert model.config._attn_implementation == attn.NAME
    prompts = [[5, 6, 7, 8, 9], [11, 12], [5, 6, 7, 8, 9]]
    completions = [[20, 21, 22], [23, 24, 25, 26], [27]]
    batch = Rollouts.from_lists(
        prompts, completions, [[0.0] * len(c) for c in completions], [0, 1, 2],
        ["a", "b", "a"], ["x", "y", "z"], ["stop"] * 3, tokenizer.pad_token_id,
    )  # fmt: skip

    def run(implementation: str):
        model.set_attn_implementation(implementation)
        model.zero_grad()
        logp, _ = completion_logprobs(model, batch, temperature=1.0)
        (logp * batch.completion_mask).sum().backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        return logp.detach()[batch.completion_mask], grads

    ours, theirs = run(attn.NAME), run("sdpa")
    torch.testing.assert_close(ours[0], theirs[0], atol=1e-5, rtol=1e-5)
    assert ours[1].keys() == theirs[1].keys() and len(ours[1]) > 10
    for name in ours[1]:
        torch.testing.assert_close(ours[1][name], theirs[1][name], atol=1e-5, rtol=1e-4, msg=name)
