"""The final artefact of a run: a peft adapter (LoRA) or a full model, with its tokenizer."""

from __future__ import annotations

import logging

from reasonrl.models.lora import is_peft

log = logging.getLogger("reasonrl")


def save_final(run, model, tokenizer) -> None:
    """Write ``OUTPUT_DIR/final``: ``PeftModel.from_pretrained``-loadable with LoRA,
    ``AutoModelForCausalLM.from_pretrained``-loadable otherwise."""
    run.accelerator.wait_for_everyone()
    with run.gathered(model):
        if run.is_main:
            folder = run.output_dir / "final"
            unwrapped = run.accelerator.unwrap_model(model)
            unwrapped.save_pretrained(folder, safe_serialization=True)
            tokenizer.save_pretrained(folder)
            kind = "LoRA adapter" if is_peft(unwrapped) else "model"
            log.info("final %s saved to %s", kind, folder)
    run.accelerator.wait_for_everyone()
