"""``auto`` precision: bfloat16 only where the hardware multiplies it natively."""

import logging

import pytest
import torch

from reasonrl.config import load_recipe
from reasonrl.models import precision
from reasonrl.trainers.recipe import Recipe
from tests.helpers import ROOT


@pytest.fixture(params=[True, False], ids=["native-bf16", "emulated-bf16"])
def cpu(request, monkeypatch):
    """A CPU with (AMX) or without (AVX2 only) native bf16; the rest of the flags are real."""
    caps = dict(torch.cpu.get_capabilities(), amx_bf16=request.param, avx512_bf16=False)
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: caps)
    precision._warn_emulated.cache_clear()
    return request.param


def test_auto_picks_the_native_type(cpu):
    assert precision.native_bf16("cpu") is cpu
    assert precision.resolve_dtype("auto", "cpu") == ("bfloat16" if cpu else "float32")
    assert precision.resolve_bf16("auto", "cpu") is cpu


def test_explicit_choices_are_kept_and_emulated_bf16_warns(cpu, caplog):
    with caplog.at_level(logging.WARNING, logger="reasonrl"):
        assert precision.resolve_dtype("float32", "cpu") == "float32"
        assert precision.resolve_bf16(False, "cpu") is False
        assert not caplog.records
        assert precision.resolve_dtype("bfloat16", "cpu") == "bfloat16"
        assert precision.resolve_bf16(True, "cpu") is True
    warnings = [r.getMessage() for r in caplog.records]
    if cpu:
        assert not warnings
    else:
        assert len(warnings) == 2 and all("no native bfloat16" in w for w in warnings)


def test_recipes_accept_auto_and_bools():
    recipe = load_recipe(Recipe, ROOT / "recipes/gsm8k/grpo-smollm2.yaml")
    assert recipe.train.bf16 == "auto" and recipe.rollout.dtype == "auto"
    over = load_recipe(Recipe, None, ["--train.bf16", "true", "--rollout.dtype", "float32"])
    assert over.train.bf16 is True and over.rollout.dtype == "float32"


def test_auto_model_dtype_is_bf16_only_for_a_lora_base_where_native(cpu):
    from reasonrl.trainers.start import resolve_precision

    lora = load_recipe(Recipe, ROOT / "recipes/gsm8k/grpo-smollm2.yaml")
    full = load_recipe(Recipe, ROOT / "recipes/gsm8k/grpo-smollm2.yaml", ["--model.lora", "null"])
    assert lora.model.dtype == "auto" and full.model.lora is None
    resolve_precision(lora)
    resolve_precision(full)
    assert lora.model.dtype == ("bfloat16" if cpu else "float32")
    assert full.model.dtype == "float32"  # full fine-tuning keeps fp32 master weights


def test_the_engine_compiles_only_runs_long_enough_for_it_to_pay(monkeypatch):
    """``rollout.enforce_eager: auto`` on a CPU: eager for a short run, compiled for one at
    least twice as long as this CPU kind's measured break-even; explicit values are kept."""
    from reasonrl.models.precision import cpu_kind
    from reasonrl.trainers.recipe import Recipe
    from reasonrl.trainers.start import COMPILE_PAYS_AFTER, resolve_engine_mode

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    pays_after = COMPILE_PAYS_AFTER.get(cpu_kind())

    def mode(steps: int, value="auto"):
        recipe = Recipe()
        recipe.train.max_steps, recipe.rollout.enforce_eager = steps, value
        resolve_engine_mode(recipe)
        return recipe.rollout.enforce_eager

    assert mode(1) is True
    assert mode(10_000) is (pays_after is None)  # a CPU kind never measured stays eager
    if pays_after is not None:
        assert mode(2 * pays_after - 1) is True and mode(2 * pays_after) is False
    assert mode(1, False) is False and mode(10_000, True) is True


def test_kv_cache_auto_holds_one_steps_sequences():
    """``rollout.kv_cache_gib: auto``: every sequence of a step at max_model_len, in the
    engine's type, block-rounded; SmolLM2-135M keeps 23,040 bytes a token in bf16."""
    from types import SimpleNamespace

    from reasonrl.trainers.policy import kv_cache_size

    smollm2 = SimpleNamespace(
        num_hidden_layers=30, hidden_size=576, num_attention_heads=9, num_key_value_heads=3
    )
    gib = kv_cache_size(smollm2, "bfloat16", sequences=8, max_model_len=1024)
    assert gib * 2**30 == 8 * (1024 + 32) * 23_040
    assert kv_cache_size(smollm2, "float32", 8, 1024) == 2 * gib
    assert 0.18 < gib < 0.19  # against the 2 GiB an unsized engine is given
