"""reasonrl's DPO path (tokenization, sequence log-probs, loss, metrics) equals TRL 1.16's
DPOTrainer on the same pairs and model, for plain-text and chat prompts."""

import copy

import pytest
import torch

from reasonrl.data.preference import PreferencePair
from reasonrl.losses import dpo_loss
from reasonrl.models import load
from reasonrl.models.logprobs import completion_logprobs
from reasonrl.trainers.dpo import encode_pairs

pytestmark = pytest.mark.filterwarnings("ignore")

PAIRS = [
    PreferencePair("1+1=", "2", "3 no"),
    PreferencePair([{"role": "user", "content": "2+2="}], "4, since 2+2=4", "5"),
    PreferencePair("Tom has 3 apples and buys 2. How many?", "3 + 2 = 5\n#### 5", "#### 6 apples"),
    PreferencePair([{"role": "user", "content": "3+1="}], "4", "7 or 8"),
]


def _as_trl(pair: PreferencePair) -> dict:
    if isinstance(pair.prompt, str):
        return {"prompt": pair.prompt, "chosen": pair.chosen, "rejected": pair.rejected}
    return {
        "prompt": pair.prompt,
        "chosen": [{"role": "assistant", "content": pair.chosen}],
        "rejected": [{"role": "assistant", "content": pair.rejected}],
    }


@torch.no_grad()
def sequence_logps(model, batch):
    lp, _ = completion_logprobs(model, batch)
    return (lp * batch.completion_mask).sum(-1)


@pytest.mark.parametrize("loss_type", ["sigmoid", "ipo"])
def test_trainer_batch_loss_equals_trl(tmp_path, loss_type):
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    model, tok = load("tiny-llama")
    reference = copy.deepcopy(model)
    with torch.no_grad():
        gen = torch.Generator().manual_seed(0)
        for p in reference.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
    ours_model = copy.deepcopy(model)

    rows = [_as_trl(p) for p in PAIRS]
    results = {}
    for name, subset in [("plain", [0, 2]), ("chat", [1, 3])]:
        args = DPOConfig(
            output_dir=str(tmp_path / name),
            per_device_train_batch_size=2,
            beta=0.2,
            loss_type=[loss_type],
            use_cpu=True,
            report_to=[],
            bf16=False,
        )
        trainer = DPOTrainer(
            model=copy.deepcopy(model),
            ref_model=reference,
            args=args,
            train_dataset=Dataset.from_list([rows[i] for i in subset]),
            processing_class=tok,
        )
        batch = next(iter(trainer.get_train_dataloader()))
        trainer.model.train()
        trl_loss = trainer._compute_loss(trainer.model, batch, False).item()
        trl_margin = trainer._metrics["train"]["rewards/margins"][-1]

        encoded = encode_pairs(tok, [PAIRS[i] for i in subset], max_length=512)
        (pc, pr), (rc, rr) = (
            sequence_logps(ours_model, encoded).chunk(2),
            sequence_logps(reference, encoded).chunk(2),
        )
        lengths = encoded.completion_lengths.float().chunk(2)
        out = dpo_loss(pc, pr, rc, rr, 0.2, loss_type, 0.0, *lengths)
        results[name] = (trl_loss, out.losses.mean().item(), trl_margin, out.margins.mean().item())
        print(
            f"{loss_type} {name}: TRL loss {trl_loss:.6f} reasonrl {results[name][1]:.6f}; "
            f"margins {trl_margin:.6f} / {results[name][3]:.6f}"
        )
    for trl_loss, ours, trl_margin, margin in results.values():
        assert abs(trl_loss - ours) < 1e-5 and abs(trl_margin - margin) < 1e-5
