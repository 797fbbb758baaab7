"""reasonrl's SFT path (tokenization, completion-token loss, gradients) equals TRL 1.16's
SFTTrainer on the same rows and model: plain-text and chat prompt-completion rows, and
plain text learned whole. The loss and gradient norm come from the trainer's own step."""

import copy

import pytest
import torch

from reasonrl.data.sft import SFTExample
from reasonrl.trainers.recipe import Recipe
from reasonrl.trainers.sft import sft_token_loss
from reasonrl.trainers.supervised import example_rows, set_up, supervised_step

pytestmark = pytest.mark.filterwarnings("ignore")

ROWS = {
    "plain": [
        {"prompt": "1+1=", "completion": "2"},
        {"prompt": "Tom has 3 apples and buys 2. How many?", "completion": " 3 + 2 = 5\n#### 5"},
    ],
    "chat": [
        {
            "prompt": [{"role": "user", "content": "2+2="}],
            "completion": [{"role": "assistant", "content": "4"}],
        },
        {
            "prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "3+1="}],
            "completion": [{"role": "assistant", "content": "3 + 1 = 4\n#### 4"}],
        },
    ],
    "text": [{"text": "Ava has 7 cards."}, {"text": "2 + 2 = 4 and 3 + 3 = 6"}],
}


def _example(row: dict) -> SFTExample:
    if "text" in row:
        return SFTExample("", row["text"])
    completion = row["completion"]
    return SFTExample(row["prompt"], completion if isinstance(completion, str) else completion[0]["content"])


def _run(tmp_path):
    recipe = Recipe()
    recipe.algorithm = "sft"
    recipe.model.name = "tiny-llama"
    recipe.rollout.engine = "hf"
    recipe.data.source = "synthetic:0:8:0"
    recipe.train.output_dir = str(tmp_path / "ours")
    recipe.train.report_to = ["none"]
    recipe.train.progress = False
    recipe.train.max_grad_norm = 1e9  # the step reports the unclipped norm
    return set_up(recipe, recipe.sft)


@pytest.mark.parametrize("packing", [False, True], ids=["rows", "packed"])
@pytest.mark.parametrize("kind", ["plain", "chat", "text"])
def test_sft_loss_and_gradients_equal_trl(tmp_path, kind, packing):
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    d = _run(tmp_path)
    d.section.packing = packing  # packed: every example of the batch in one row
    model = d.run.accelerator.unwrap_model(d.model)
    with torch.no_grad():  # not the initialisation: every weight matters to the gradient
        gen = torch.Generator().manual_seed(0)
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
    trl_model = copy.deepcopy(model)
    args = SFTConfig(
        output_dir=str(tmp_path / "trl"),
        per_device_train_batch_size=2,
        use_cpu=True,
        report_to=[],
        bf16=False,
        max_length=512,
    )
    trainer = SFTTrainer(
        model=trl_model,
        args=args,
        train_dataset=Dataset.from_list(ROWS[kind]),
        processing_class=d.policy.tokenizer,
    )
    batch = next(iter(trainer.get_train_dataloader()))
    examples = [_example(r) for r in ROWS[kind]]
    rows = example_rows(d, examples)

    # same tokens, same targets (TRL's order may differ: match rows by their ids)
    input_ids, attention = rows.input_ids()
    ours = {
        tuple(ids[m].tolist()): int(targets.sum())
        for ids, m, targets in zip(input_ids, attention, rows.completion_mask, strict=True)
    }
    labels = batch["labels"]
    theirs = {
        tuple(ids[m.bool()].tolist()): int((lab[1:] != -100).sum())  # the first is never predicted
        for ids, m, lab in zip(batch["input_ids"], batch["attention_mask"], labels, strict=True)
    }
    assert ours == theirs, f"tokenization differs:\nours   {ours}\nTRL    {theirs}"

    trainer.model.train()
    trl_loss = trainer.compute_loss(trainer.model, dict(batch))
    trl_loss.backward()
    trl_grads = {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.grad is not None}
    trl_norm = torch.linalg.vector_norm(torch.stack([g.norm() for g in trl_grads.values()])).item()

    # gradients of the trainer's per-token loss, reduced as its step reduces it
    per_token, _ = sft_token_loss(d, rows, examples)
    loss = (per_token * rows.completion_mask).sum() / rows.completion_mask.sum()
    loss.backward()
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, trl_grads[name], rtol=1e-4, atol=1e-6, msg=name)
    model.zero_grad(set_to_none=True)

    step = supervised_step(d, rows, examples, sft_token_loss)  # the training step itself
    print(
        f"SFT {kind}{' packed' if packing else ''}: TRL loss {trl_loss.item():.6f}, "
        f"reasonrl {step['loss']:.6f}; "
        f"grad norm {trl_norm:.6f} / {step['grad_norm']:.6f}"
    )
    assert abs(step["loss"] - trl_loss.item()) < 1e-5
    assert abs(step["grad_norm"] - trl_norm) < 1e-4 * trl_norm
    d.close()
