"""LoRA linears as one autograd node (``reasonrl.models.lora_fused``) equal peft's own
forward: outputs and adapter gradients, in fp32 and under bf16 autocast; adapters switched
off (the reference policy) still go through peft."""

import contextlib

import pytest
import torch

from reasonrl.models import load
from reasonrl.models.lora import LoraConfig, wrap_lora


def _model():
    model, _ = load("tiny-llama")
    model = wrap_lora(model, LoraConfig(r=4, lora_alpha=8))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05, generator=torch.Generator().manual_seed(len(name)))
    return model


def _peft_forward(model, on: bool):
    """Point every LoRA layer at ours (``on``) or at peft's class forward."""
    from peft.tuners.lora import Linear

    for m in model.modules():
        if type(m) is Linear:
            if on:
                m.forward = m._fused_forward
            else:
                m._fused_forward = m.__dict__.get("_fused_forward", m.forward)
                m.forward = Linear.forward.__get__(m)


def _run(model, ids, autocast):
    model.zero_grad()
    with autocast:
        logits = model(input_ids=ids).logits
    logits.float().logsumexp(-1).sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    return logits.detach().float(), grads


@pytest.mark.parametrize("precision", ["fp32", "bf16-autocast"])
def test_fused_lora_equals_peft(precision):
    model = _model()
    from peft.tuners.lora import Linear

    assert all("forward" in m.__dict__ for m in model.modules() if type(m) is Linear)
    ids = torch.randint(3, 100, (3, 11), generator=torch.Generator().manual_seed(0))
    autocast = (
        torch.autocast("cpu", dtype=torch.bfloat16) if precision != "fp32" else contextlib.nullcontext()
    )
    ours = _run(model, ids, autocast)
    _peft_forward(model, on=False)
    theirs = _run(model, ids, autocast)
    tol = {"fp32": 1e-5, "bf16-autocast": 3e-2}[precision]
    torch.testing.assert_close(ours[0], theirs[0], atol=tol, rtol=tol)
    assert ours[1].keys() == theirs[1].keys() and len(ours[1]) > 0
    for name, grad in ours[1].items():
        scale = theirs[1][name].abs().max().item()
        error = (grad - theirs[1][name]).abs().max().item()
        assert error <= tol * max(scale, 1e-3) * 4, f"{name}: max error {error:.2e} (scale {scale:.2e})"


def test_adapters_off_is_the_base_model():
    model = _model()
    ids = torch.randint(3, 100, (2, 7), generator=torch.Generator().manual_seed(1))
    base, _ = load("tiny-llama")
    with torch.no_grad(), model.disable_adapter():
        off = model(input_ids=ids).logits
        on_base = base(input_ids=ids).logits
        torch.testing.assert_close(off, on_base)
    with torch.no_grad():
        assert not torch.allclose(model(input_ids=ids).logits, on_base)


def test_zero3_partitioned_layers_go_through_peft(monkeypatch):
    """Under DeepSpeed ZeRO-3 (parameters carry ``ds_id``) a layer's weights are gathered
    only when its modules are called, so the fused path, which reads them, steps aside."""
    from peft.tuners.lora import Linear

    from reasonrl.models import lora_fused

    model = _model()
    layer = next(m for m in model.modules() if type(m) is Linear)
    calls = []
    monkeypatch.setattr(lora_fused._LoraLinear, "apply", lambda *a: calls.append(a) or a[0])
    x = torch.randn(2, 3, layer.in_features)
    layer(x)
    assert len(calls) == 1
    layer.get_base_layer().weight.ds_id = 7  # what ZeRO-3 sets on the parameters it partitions
    out = layer(x)
    assert len(calls) == 1 and out.shape == (2, 3, layer.out_features)
