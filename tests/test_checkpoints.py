"""Checkpoints: round trip, atomic writes, and clear refusals of files that are not ours or do not fit."""

from __future__ import annotations

import pickle

import pytest
import torch
from torch import nn

from core import checkpoints
from core.checkpoints import CheckpointError, load_checkpoint, read_checkpoint, save_checkpoint
from core.data import Normalization
from core.models import arch_config, build_model


def meta_for(arch: str, epoch: int = 1, **extra):
    return {
        "arch_config": arch_config(arch),
        "epoch": epoch,
        "metrics": {"test_accuracy": 0.5 + epoch / 100},
        "normalization": {"preset": "dataset", "mean": 0.1307, "std": 0.3081},
        "dataset": "mnist",
        "task": "multiclass",
        "target_digit": 8,
        **extra,
    }


def test_round_trip_rebuilds_the_same_network_in_eval_mode(tmp_path):
    torch.manual_seed(0)
    model = build_model("fastcnn").train()
    path = save_checkpoint(tmp_path / "best.pt", model, meta_for("fastcnn", epoch=3))
    loaded = load_checkpoint(path)
    assert not loaded.model.training
    assert loaded.epoch == 3 and loaded.arch_config == arch_config("fastcnn")
    assert loaded.normalization == Normalization("dataset", 0.1307, 0.3081)
    assert loaded.metrics == {"test_accuracy": 0.53} and loaded.meta["torch_version"] == torch.__version__
    x = torch.randn(4, 1, 28, 28)
    with torch.inference_mode():
        assert torch.equal(model.eval()(x), loaded.model(x))


def test_a_crash_mid_write_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    model = build_model("seed003")
    path = save_checkpoint(tmp_path / "last.pt", model, meta_for("seed003", epoch=1))

    def crash_after_a_few_bytes(payload, f):
        f.write(b"PK\x03\x04 half a zip file")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoints.torch, "save", crash_after_a_few_bytes)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, model, meta_for("seed003", epoch=2))
    monkeypatch.undo()
    assert load_checkpoint(path).epoch == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # the temp file is gone


def test_a_file_that_is_not_a_checkpoint_is_refused(tmp_path):
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        load_checkpoint(text)
    bare = tmp_path / "state_dict.pth"  # what the tutorials save: weights without our header
    torch.save(build_model("seed002").state_dict(), bare)
    with pytest.raises(CheckpointError, match="not a checkpoint of this project"):
        load_checkpoint(bare)
    with pytest.raises(CheckpointError, match="no checkpoint file"):
        load_checkpoint(tmp_path / "missing.pt")


def test_pickled_code_is_never_run(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"format": checkpoints.FORMAT, "payload": Payload()}, f, protocol=2)
    with pytest.raises(CheckpointError, match="not a MNIST Lab checkpoint") as refused:
        read_checkpoint(path)
    assert "needs print" in str(refused.value) and "weights_only" not in str(refused.value)


class CustomNet(nn.Module):
    """A user's own class, pickled whole: weights_only loading must refuse it."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(4, 2)


@pytest.mark.parametrize("whole", [nn.Sequential(nn.Flatten(), nn.Linear(784, 10)), CustomNet()],
                         ids=["torch-module", "custom-class"])
def test_a_whole_pickled_model_gets_our_advice_not_torchs(tmp_path, whole):
    path = tmp_path / "whole_model.pt"
    torch.save(whole, path)
    with pytest.raises(CheckpointError) as refused:
        load_checkpoint(path)
    message = str(refused.value)
    assert str(path) in message  # names the file
    assert "weights_only" not in message and "safe_globals" not in message  # no advice to load it unsafely
    assert "pickled Python object" in message and "not a MNIST Lab checkpoint" in message  # what it is
    assert "state_dict" in message and "train a model here" in message  # what to do instead


def test_weights_that_do_not_fit_the_architecture_are_refused(tmp_path):
    path = save_checkpoint(tmp_path / "x.pt", build_model("fastcnn"), meta_for("seed003"))
    with pytest.raises(CheckpointError, match="do not fit architecture 'seed003'"):
        load_checkpoint(path)
    unknown = save_checkpoint(
        tmp_path / "y.pt", build_model("seed003"), meta_for("seed003", arch_config={"arch": "gone", "options": {}})
    )
    with pytest.raises(CheckpointError, match="cannot rebuild architecture"):
        load_checkpoint(unknown)
