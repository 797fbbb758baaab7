"""Llama-style RMSNorm as one autograd node (``reasonrl.models.rmsnorm``) equals
transformers' own: outputs, input and weight gradients, in fp32, under bf16 autocast and
on a bf16 model; ``load`` routes every norm of a Llama model there and none of Gemma's."""

import contextlib

import pytest
import torch
from transformers.models.gemma.modeling_gemma import GemmaRMSNorm
from transformers.models.llama.modeling_llama import LlamaRMSNorm

from reasonrl.models import load, rmsnorm


def _run(norm, x, grad, autocast):
    x = x.clone().requires_grad_()
    norm.zero_grad()
    with autocast:
        y = norm(x)
    y.backward(grad.to(y.dtype))
    return y.detach().float(), x.grad.float(), norm.weight.grad.float()


@pytest.mark.parametrize(
    ("x_dtype", "w_dtype", "autocast", "tol"),
    [
        (torch.float32, torch.float32, False, 1e-6),
        (torch.bfloat16, torch.float32, True, 1e-2),  # full fine-tuning: fp32 weights, bf16 activations
        (torch.bfloat16, torch.bfloat16, True, 1e-2),  # a bf16 base under autocast
    ],
)
def test_fused_norm_equals_transformers(x_dtype, w_dtype, autocast, tol):
    gen = torch.Generator().manual_seed(0)
    norm = LlamaRMSNorm(48, eps=1e-5).to(w_dtype)
    with torch.no_grad():
        norm.weight.copy_(1 + 0.3 * torch.randn(48, generator=gen))
    x = (3 * torch.randn(2, 7, 48, generator=gen)).to(x_dtype)
    grad = torch.randn(2, 7, 48, generator=gen)
    context = torch.autocast("cpu", dtype=torch.bfloat16) if autocast else contextlib.nullcontext()
    theirs = _run(norm, x, grad, context)
    assert rmsnorm.install(norm) == 1
    ours = _run(norm, x, grad, context)
    for a, b, what in zip(ours, theirs, ("output", "input gradient", "weight gradient"), strict=True):
        scale = b.abs().max().item()
        torch.testing.assert_close(a, b, atol=tol * scale, rtol=tol, msg=lambda m, w=what: f"{w}: {m}")


def test_load_routes_llama_norms_and_leaves_other_norms_alone():
    model, _ = load("tiny-llama")
    norms = [m for m in model.modules() if isinstance(m, LlamaRMSNorm)]
    assert norms and all(vars(m).get("forward").__func__ is rmsnorm._forward for m in norms)
    assert rmsnorm.install(model) == 0  # already routed: not wrapped twice
    assert rmsnorm.install(GemmaRMSNorm(8)) == 0  # (1 + w) x̂: another computation


def test_a_model_with_fused_norms_trains_as_before():
    """The tiny model's loss and every parameter's gradient, fused norms vs transformers'."""
    model, _ = load("tiny-llama")
    ids = torch.randint(3, 100, (2, 9), generator=torch.Generator().manual_seed(1))

    def grads():
        model.zero_grad()
        model(input_ids=ids, labels=ids).loss.backward()
        return {n: p.grad.clone() for n, p in model.named_parameters()}

    ours = grads()
    for m in model.modules():
        if isinstance(m, LlamaRMSNorm):
            del m.forward  # back to the class's forward
    theirs = grads()
    assert ours.keys() == theirs.keys()
    for name in ours:
        torch.testing.assert_close(ours[name], theirs[name], atol=1e-5, rtol=1e-4, msg=name)
