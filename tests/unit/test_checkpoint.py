import pytest
import torch

from reasonrl.runtime import checkpoint


def make():
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1 / (s + 1))
    return model, optimizer, scheduler


def train_steps(model, optimizer, scheduler, n):
    for _ in range(n):
        model(torch.randn(2, 4)).sum().backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()


def test_round_trip_restores_everything(tmp_path):
    model, optimizer, scheduler = make()
    train_steps(model, optimizer, scheduler, 3)
    checkpoint.save_checkpoint(tmp_path, 3, model, optimizer, scheduler, {"note": "x"})
    train_steps(model, optimizer, scheduler, 2)
    expected = [p.detach().clone() for p in model.parameters()]

    model2, optimizer2, scheduler2 = make()
    state = checkpoint.load_checkpoint(checkpoint.latest_checkpoint(tmp_path), model2, optimizer2, scheduler2)
    assert state == {"step": 3, "note": "x"}
    train_steps(model2, optimizer2, scheduler2, 2)  # same RNG stream, same optimizer moments
    for a, b in zip(expected, model2.parameters(), strict=True):
        assert torch.equal(a, b)


def test_a_crash_mid_write_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    model, optimizer, scheduler = make()
    checkpoint.save_checkpoint(tmp_path, 1, model, optimizer, scheduler, {})

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("killed while writing")

    monkeypatch.setattr(checkpoint, "write_manifest", crash)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save_checkpoint(tmp_path, 2, model, optimizer, scheduler, {})
    assert checkpoint.latest_checkpoint(tmp_path).name == "checkpoint-000001"
    assert any(p.name.startswith(".checkpoint-000002") for p in (tmp_path / "checkpoints").iterdir())
    assert checkpoint.load_checkpoint(checkpoint.latest_checkpoint(tmp_path), *make())["step"] == 1
    monkeypatch.undo()
    checkpoint.save_checkpoint(tmp_path, 2, model, optimizer, scheduler, {})  # the next save cleans up
    assert {p.name for p in (tmp_path / "checkpoints").iterdir()} == {
        "checkpoint-000001",
        "checkpoint-000002",
    }


def test_incomplete_folder_is_refused(tmp_path):
    (tmp_path / "checkpoint-000005").mkdir()
    with pytest.raises(FileNotFoundError, match="not an intact checkpoint: no manifest"):
        checkpoint.load_checkpoint(tmp_path / "checkpoint-000005", *make())


def test_keeps_only_the_newest(tmp_path):
    model, optimizer, scheduler = make()
    for step in (1, 2, 3):
        checkpoint.save_checkpoint(tmp_path, step, model, optimizer, scheduler, {}, keep=2)
    assert [p.name for p in checkpoint.list_checkpoints(tmp_path)] == [
        "checkpoint-000002",
        "checkpoint-000003",
    ]


def test_no_pickle_anywhere(tmp_path):
    model, optimizer, scheduler = make()
    folder = checkpoint.save_checkpoint(tmp_path, 1, model, optimizer, scheduler, {})
    suffixes = {p.suffix for p in folder.iterdir()}
    assert suffixes <= {".safetensors", ".json", ""}


def test_zero_partitions_are_staged_into_the_checkpoint_and_restored_by_position(tmp_path, caplog):
    """One rank's flat partitions, as a ZeRO optimizer holds them: the state goes by
    position (ZeRO-3 swaps the tensors out of the param groups), and only back into
    partitions of the same sizes."""
    partitions = [torch.nn.Parameter(torch.randn(6)), torch.nn.Parameter(torch.randn(2))]
    optimizer = torch.optim.AdamW(partitions, lr=0.1)
    sum((p**2).sum() for p in partitions).backward()
    optimizer.step()
    staged = checkpoint.staging_folder(tmp_path, 7)
    checkpoint.save_zero_partition(staged, 1, optimizer, partitions)
    model, opt, scheduler = make()
    folder = checkpoint.save_checkpoint(tmp_path, 7, model, None, scheduler, {}, staged=staged)
    assert not staged.exists() and (folder / "zero-rank1.safetensors").exists()

    fresh = [torch.nn.Parameter(p.detach().clone()) for p in partitions]
    restored = torch.optim.AdamW(fresh, lr=0.5)
    assert checkpoint.load_zero_partition(folder, 1, restored, fresh)
    assert restored.param_groups[0]["lr"] == 0.1
    for a, b in zip(partitions, fresh, strict=True):
        assert torch.equal(optimizer.state[a]["exp_avg_sq"], restored.state[b]["exp_avg_sq"])
        assert float(optimizer.state[a]["step"]) == float(restored.state[b]["step"])

    other = [torch.nn.Parameter(torch.randn(4)), torch.nn.Parameter(torch.randn(4))]  # another world size
    assert not checkpoint.load_zero_partition(folder, 1, torch.optim.AdamW(other), other)
    assert not checkpoint.load_zero_partition(folder, 0, torch.optim.AdamW(other), other)  # no such rank
    assert "restart from zero" in caplog.text


def test_a_damaged_newest_checkpoint_is_skipped_with_the_reason(tmp_path, caplog):
    model, optimizer, scheduler = make()
    for step in (1, 2):
        checkpoint.save_checkpoint(tmp_path, step, model, optimizer, scheduler, {}, keep=3)
    newest = tmp_path / "checkpoints" / "checkpoint-000002"
    (newest / "scheduler.json").unlink()  # a file lost after the manifest was written
    assert checkpoint.latest_checkpoint(tmp_path).name == "checkpoint-000001"
    assert "skipping checkpoint" in caplog.text and "scheduler.json is missing" in caplog.text
    with open(tmp_path / "checkpoints" / "checkpoint-000001" / "weights.safetensors", "r+b") as f:
        f.seek(100)
        f.write(b"\x00\x01")  # same size, other bytes
    assert checkpoint.latest_checkpoint(tmp_path) is None
    assert "does not match its checksum" in caplog.text


def test_a_torn_metrics_line_is_dropped_on_resume(tmp_path, caplog):
    from reasonrl.runtime.runlog import RunLog

    runlog = RunLog(tmp_path)
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "x": 1}\n{"step": 2, "x": 2}\n{"step": 3, "x"')
    runlog.truncate_after(2)
    assert [r["step"] for r in runlog.read_metrics()] == [1, 2]
    assert "dropping a torn line" in caplog.text
