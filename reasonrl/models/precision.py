"""Which floating-point type is fast on this machine.

bfloat16 is the fast type only where the hardware multiplies it natively: GPUs from
Ampere on, and CPUs with AMX or AVX512-BF16. Elsewhere it is emulated, and on an
AVX2-only CPU (measured here on a 2-core AMD EPYC) it is far slower than float32:
vLLM samples 37 vs 152 tokens/s, and one LoRA update step of SmolLM2-135M takes
minutes instead of seconds, because the matmuls fall back to a reference kernel.
So the recipes say ``auto`` and this module picks.
"""

from __future__ import annotations

import functools
import logging

import torch

log = logging.getLogger("reasonrl")


def _device_type(device_type: str | None) -> str:
    return device_type or ("cuda" if torch.cuda.is_available() else "cpu")


def native_bf16(device_type: str | None = None) -> bool:
    """True when ``device_type`` (default: CUDA if present, else CPU) multiplies bf16 natively."""
    device_type = _device_type(device_type)
    if device_type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device_type == "cpu":
        caps = torch.cpu.get_capabilities()
        return bool(caps.get("amx_bf16") or caps.get("avx512_bf16"))
    return False


def cpu_kind() -> str:
    """This CPU's fastest matmul extension: "AMX", "AVX512-BF16" (both multiply bf16
    natively), "AVX512", "AVX2" or "older"."""
    caps = torch.cpu.get_capabilities()
    kinds = (("amx_bf16", "AMX"), ("avx512_bf16", "AVX512-BF16"), ("avx512_f", "AVX512"), ("avx2", "AVX2"))
    return next((label for key, label in kinds if caps.get(key)), "older")


def resolve_dtype(dtype: str, device_type: str | None = None) -> str:
    """``"auto"`` → ``"bfloat16"`` where it is native, else ``"float32"``; others unchanged.

    An explicit ``"bfloat16"`` on hardware without it is kept, with a warning.
    """
    if dtype == "auto":
        return "bfloat16" if native_bf16(device_type) else "float32"
    if dtype == "bfloat16" and not native_bf16(device_type):
        _warn_emulated("dtype bfloat16", device_type)
    return dtype


def resolve_bf16(bf16: bool | str, device_type: str | None = None) -> bool:
    """``train.bf16``: ``"auto"`` → autocast only where bf16 is native; bools unchanged."""
    if bf16 == "auto":
        return native_bf16(device_type)
    if bf16 and not native_bf16(device_type):
        _warn_emulated("bf16 autocast", device_type)
    return bool(bf16)


@functools.cache  # once per process and kind
def _warn_emulated(what: str, device_type: str | None) -> None:
    on_cpu = _device_type(device_type) == "cpu"
    log.warning(
        "%s was asked for, but %s has no native bfloat16 (AMX or AVX512-BF16 on a CPU): "
        "it is emulated and can be many times slower than float32; use `auto` to pick "
        "the fast type per machine",
        what,
        torch.cpu.get_capabilities().get("cpu_name", "this CPU") if on_cpu else "this GPU",
    )
