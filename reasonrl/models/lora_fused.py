"""A LoRA linear layer as one autograd node: y = x Wᵀ + b + s (x Aᵀ) Bᵀ.

peft computes a LoRA layer as separate ops: the frozen layer, A, B, the scaling, the sum,
each with its autograd node and, under autocast, a cast of A and B and of the output.
Here the adapter's product is added into the frozen layer's output by one ``addmm_``, with
no cast of the input to the adapter's type and back (peft's, under autocast); the
backward computes only what training needs:

    g_xa = s · g B           (the adapter's small [T, r] intermediate)
    dB   = s · gᵀ (x Aᵀ),  dA = g_xaᵀ x,  dx = g W + g_xa A    (one addmm)

and no gradient for the frozen W. The values are peft's (the same products, summed in
another order); ``install`` routes a peft ``lora.Linear`` here only in the plain case
(one active adapter, no dropout, no variant such as DoRA, not merged, adapters on) and
leaves every other call to peft.
"""

from __future__ import annotations

import types

import torch
from torch import Tensor


class _LoraLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None, A: Tensor, B: Tensor, scale: float):
        xa = x @ A.t()
        out = torch.nn.functional.linear(x, weight, bias)
        out.view(-1, out.shape[-1]).addmm_(xa.view(-1, xa.shape[-1]), B.t(), alpha=scale)
        ctx.save_for_backward(x, weight, A, B, xa)
        ctx.scale = scale
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor):
        x, weight, A, B, xa = ctx.saved_tensors
        g = grad.reshape(-1, grad.shape[-1]).to(x.dtype)
        x2, xa2 = x.reshape(-1, x.shape[-1]), xa.reshape(-1, xa.shape[-1])
        g_xa = (g @ B).mul_(ctx.scale)
        grad_B = (g.t() @ xa2).mul_(ctx.scale) if ctx.needs_input_grad[4] else None
        grad_A = g_xa.t() @ x2 if ctx.needs_input_grad[3] else None
        grad_x = None
        if ctx.needs_input_grad[0]:
            grad_x = (g @ weight).addmm_(g_xa, A).view(x.shape)
        return grad_x, None, None, grad_A, grad_B, None


def _plain_adapter(module) -> str | None:
    """The one active adapter of a peft LoRA ``module`` when it is plain LoRA, else None."""
    active = [a for a in module.active_adapters if a in module.lora_A]
    if module.disable_adapters or module.merged or len(active) != 1:
        return None
    name = active[0]
    if name in getattr(module, "lora_variant", {}) or getattr(module, "lora_bias", {}).get(name):
        return None
    if not isinstance(module.lora_dropout[name], torch.nn.Identity) or getattr(
        module, "fan_in_fan_out", False
    ):
        return None
    return name


def _forward(self, x: Tensor, *args, **kwargs) -> Tensor:
    name = None if args or kwargs else _plain_adapter(self)
    base = self.get_base_layer()
    if (
        name is None
        or base.weight.requires_grad
        or (base.bias is not None and base.bias.requires_grad)
        # DeepSpeed ZeRO-3 partitions parameters and gathers a module's own when it is
        # called: peft calls the base layer and the adapters, this path reads them directly
        or hasattr(base.weight, "ds_id")
    ):
        return type(self).forward(self, x, *args, **kwargs)
    A, B = self.lora_A[name].weight, self.lora_B[name].weight
    if torch.is_autocast_enabled(x.device.type):  # the types autocast would give each matmul
        dtype = torch.get_autocast_dtype(x.device.type)
    elif x.dtype == base.weight.dtype == A.dtype == B.dtype:
        dtype = x.dtype
    else:  # mixed types without autocast: peft casts them its own way
        return type(self).forward(self, x, *args, **kwargs)
    bias = None if base.bias is None else base.bias.to(dtype)
    with torch.autocast(x.device.type, enabled=False):
        return _LoraLinear.apply(
            x.to(dtype), base.weight.to(dtype), bias, A.to(dtype), B.to(dtype), float(self.scaling[name])
        )


def install(model: torch.nn.Module) -> int:
    """Route ``model``'s peft ``lora.Linear`` layers through ``_LoraLinear`` (plain cases);
    returns how many layers."""
    from peft.tuners.lora import Linear

    layers = [m for m in model.modules() if type(m) is Linear]
    for module in layers:
        module.forward = types.MethodType(_forward, module)
    return len(layers)
