import pytest
import torch

from reasonrl.models import ModelNotFoundError, load, resolve


def test_unknown_name_lists_what_is_accepted():
    with pytest.raises(ModelNotFoundError, match="tiny-llama.*smollm2|smollm2.*tiny-llama"):
        resolve("no-such-model")


def test_folder_without_config_is_rejected(tmp_path):
    with pytest.raises(ModelNotFoundError, match="no config.json"):
        resolve(tmp_path)


def test_unreachable_hub_id_fails_clearly():
    with pytest.raises(ModelNotFoundError, match="could not load hub id 'someone/absent'"):
        resolve("someone/absent")


def test_tiny_model_is_deterministic_and_loads_from_its_folder(tiny_model_dir):
    model, tokenizer = load("tiny-llama")
    again, _ = load(tiny_model_dir)  # the folder works as well as the name
    for a, b in zip(model.state_dict().values(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    text = "Q: 3+4=?\n#### 7"
    assert tokenizer.decode(tokenizer(text).input_ids) == text
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    assert prompt == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    assert model.config.eos_token_id == tokenizer.eos_token_id


@pytest.mark.slow
def test_embedded_safetensors_equal_gguf_logits(smollm_dir):
    from reasonrl.models.embedded import load_from_gguf

    model, tokenizer = load("smollm2-135m-instruct")
    gguf_model, gguf_tokenizer = load_from_gguf(torch.float32)
    gguf_model.set_attn_implementation(model.config._attn_implementation)  # the same arithmetic
    text = "A baker fills 14 trays with 9 rolls each. How many rolls are there?"
    ids = tokenizer(text, return_tensors="pt").input_ids
    assert torch.equal(ids, gguf_tokenizer(text, return_tensors="pt").input_ids)
    with torch.no_grad():
        ours, reference = model(ids).logits, gguf_model(ids).logits
    torch.testing.assert_close(ours, reference, rtol=0, atol=1e-5)
    assert "safetensors" in {p.suffix.lstrip(".") for p in smollm_dir.iterdir()}
    assert tokenizer.chat_template and "<|im_start|>" in tokenizer.chat_template


def test_hub_id_of_smollm2_falls_back_to_embedded(smollm_dir):
    assert resolve("HuggingFaceTB/SmolLM2-135M-Instruct") == smollm_dir


def test_an_adapter_folder_loads_as_its_base_with_the_adapter_merged(tmp_path, monkeypatch):
    """A run's final/ adapter is a model name (SFT, then GRPO from it): loaded, and served
    to engines from one merged folder in the cache, built once."""
    from peft import LoraConfig, PeftModel, get_peft_model

    from reasonrl.models import model_folder
    from reasonrl.models.lora import LoraConfig as Section
    from reasonrl.trainers.policy import build_policy
    from reasonrl.trainers.recipe import ModelSection

    monkeypatch.setenv("REASONRL_CACHE", str(tmp_path / "cache"))
    base, tokenizer = load("tiny-llama")
    peft = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    adapter = tmp_path / "sft-run" / "final"
    peft.save_pretrained(adapter)
    tokenizer.save_pretrained(adapter)
    ids = torch.tensor([tokenizer("3+4=7 and 5").input_ids])
    with torch.no_grad():
        expected = PeftModel.from_pretrained(load("tiny-llama")[0], adapter).merge_and_unload()(ids).logits
        plain = load("tiny-llama")[0](ids).logits
        loaded, _ = load(adapter)
        assert torch.allclose(loaded(ids).logits, expected, atol=1e-5)
        assert not torch.allclose(plain, expected, atol=1e-3)  # the adapter does change the model
    folder = model_folder(adapter)
    assert folder.parent.name == "merged" and folder.name.startswith("sft-run-")
    assert model_folder(adapter) == folder and (folder / "config.json").exists()
    policy = build_policy(ModelSection(name=str(adapter), lora=Section(r=4)), need_reference=False)
    assert policy.model_dir == folder and policy.uses_lora
    with torch.no_grad():
        assert torch.allclose(policy.model(ids).logits, expected, atol=1e-5)  # fresh LoRA starts at zero


def test_an_adapter_on_a_tied_head_merges_without_changing_the_embeddings(tmp_path, monkeypatch):
    """LoRA on lm_head of a model whose head is its input embedding (tiny-llama, SmolLM2):
    merging into the shared tensor changed the input lookup too, and the merged model was
    not the trained one (a distilled student learned from a broken teacher: 0.01 accuracy)."""
    from peft import LoraConfig, PeftModel, get_peft_model

    from reasonrl.models import model_folder
    from reasonrl.models.lora import merge_adapter

    monkeypatch.setenv("REASONRL_CACHE", str(tmp_path / "cache"))
    base, tokenizer = load("tiny-llama")
    assert base.get_output_embeddings().weight is base.get_input_embeddings().weight
    lora = LoraConfig(r=4, target_modules=["q_proj", "lm_head"], init_lora_weights=False)
    adapter = tmp_path / "head-run" / "final"
    get_peft_model(base, lora).save_pretrained(adapter)
    tokenizer.save_pretrained(adapter)
    ids = torch.tensor([tokenizer("3+4=7 and 5").input_ids])
    with torch.no_grad():
        expected = PeftModel.from_pretrained(load("tiny-llama")[0], adapter)(ids).logits  # unmerged
        broken = PeftModel.from_pretrained(load("tiny-llama")[0], adapter).merge_and_unload()(ids).logits
        assert not torch.allclose(broken, expected, atol=1e-3)  # what a plain merge gives
        merged = merge_adapter(load("tiny-llama")[0], adapter)
        assert torch.allclose(merged(ids).logits, expected, atol=1e-5)
        assert torch.allclose(load(model_folder(adapter))[0](ids).logits, expected, atol=1e-5)
