"""vLLM compiled (``rollout.enforce_eager: false``, for long CPU runs) still follows weight updates.

Its own module: an in-process engine that goes away tears down vLLM's process groups,
which another module's engine, still alive, would need.
"""

import copy

import torch

from reasonrl.models import load
from reasonrl.rollout import SamplingConfig
from tests.integration.test_rollout import PROMPTS, max_gap, needs_vllm, vllm_for


@needs_vllm
def test_compiled_vllm_engine_follows_weight_updates():
    """With torch.compile (``enforce_eager=False``, for long CPU runs) the in-place
    reload still reaches the model that runs: the compiled graph holds no old weights."""
    model, tokenizer = load("tiny-llama")
    engine = vllm_for(
        "tiny-llama", tokenizer, max_model_len=256, kv_cache_gib=0.25, seed=3, enforce_eager=False
    )
    assert not engine.llm.llm_engine.vllm_config.model_config.enforce_eager
    model = copy.deepcopy(model)
    sampling = SamplingConfig(n=4, temperature=1.0, max_tokens=12)
    gen = torch.Generator().manual_seed(1)
    for _ in range(2):  # twice: the second update must replace the first one's weights
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.05 * torch.randn(p.shape, generator=gen))
        before = max_gap(model, engine.generate(PROMPTS, sampling), 1.0)
        engine.update_weights(model.named_parameters())
        after = max_gap(model, engine.generate(PROMPTS, sampling), 1.0)
        print(f"compiled engine: before update {before:.3f}, after {after:.2e}")
        assert before > 0.1 and after < 1e-4


@needs_vllm
def test_a_cpu_engine_after_numba_is_a_clear_error():
    """The tree search's numba kernels, once loaded, break vLLM's CPU start-up, eager or
    compiled: said plainly, in a fresh process (this one must keep numba out)."""
    import subprocess
    import sys

    code = (
        "import torch\n"
        "from reasonrl.control.mcts import _kernels\n"
        "_kernels()\n"
        "from reasonrl.models import load, resolve\n"
        "from reasonrl.rollout.vllm_engine import VLLMEngine\n"
        "model, tok = load('tiny-llama')\n"
        "try:\n"
        "    VLLMEngine(resolve('tiny-llama'), tok, max_model_len=128, enforce_eager=False)\n"
        "except Exception as err:\n"
        "    print(type(err).__name__, err)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert "VLLMUnavailableError vLLM's CPU engine cannot start" in out.stdout, out.stderr[-3000:]
