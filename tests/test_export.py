"""Export: ONNX and TorchScript score as the model does; train.py stands alone and trains; failures leave nothing."""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import onnx
import onnxruntime
import pytest
import torch

from core import export, runs
from core.__main__ import main
from core.checkpoints import save_checkpoint
from core.data import normalization
from core.export_script import network_source
from core.inference import DEFAULT_CHECKPOINT
from core.models import arch_config, build_model, list_architectures
from core.training import config_to_dict, preset_config


@pytest.fixture(scope="module")
def default_source() -> export.ExportSource:
    return export.load_source(DEFAULT_CHECKPOINT)


def whole_test_set(mnist) -> tuple[torch.Tensor, torch.Tensor]:
    """All 10,000 MNIST test images as pixels in [0, 1], (N, 1, 28, 28), and their labels."""
    return mnist.test_images.unsqueeze(1).float() / 255.0, mnist.test_labels


def accuracy(scores: torch.Tensor, labels: torch.Tensor) -> float:
    return float((scores.argmax(dim=1) == labels).float().mean())


@pytest.mark.slow
def test_default_model_onnx_scores_the_test_set_as_pytorch_does(default_source, mnist, tmp_path):
    result = export.export(default_source, "onnx", tmp_path / "model.onnx")
    assert result.verified_images == 1000 and result.max_difference <= export.TOLERANCE
    pixels, labels = whole_test_set(mnist)
    session = onnxruntime.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    scores = torch.from_numpy(session.run(None, {session.get_inputs()[0].name: pixels.numpy()})[0])
    with torch.inference_mode():
        reference = accuracy(export.exportable(default_source)(pixels), labels)
    assert reference > 0.99 and abs(accuracy(scores, labels) - reference) <= 0.001
    assert session.get_inputs()[0].shape[1:] == [1, 28, 28] and isinstance(session.get_inputs()[0].shape[0], str)
    props = {p.key: p.value for p in onnx.load(str(result.path)).metadata_props}
    assert json.loads(props["classes"]) == [str(d) for d in range(10)] and props["dataset"] == "mnist"
    assert json.loads(props["normalization"])["mean"] == pytest.approx(0.1307, abs=1e-4)
    shipped_run = json.loads((DEFAULT_CHECKPOINT.parent / "config.json").read_text())["run_id"]
    assert props["source_run"] == shipped_run and "logits" in props["output"]


@pytest.mark.slow
def test_default_model_torchscript_scores_the_test_set_as_pytorch_does(default_source, mnist, tmp_path):
    result = export.export(default_source, "torchscript", tmp_path / "model.pt")
    pixels, labels = whole_test_set(mnist)
    extra = {export.METADATA_FILE: ""}
    loaded = torch.jit.load(str(result.path), _extra_files=extra)
    with torch.inference_mode():
        scores, reference = loaded(pixels), export.exportable(default_source)(pixels)
    assert abs(accuracy(scores, labels) - accuracy(reference, labels)) <= 0.001
    assert loaded(pixels[:1]).shape == (1, 10)  # any batch size
    meta = json.loads(extra[export.METADATA_FILE])
    assert meta["task"] == "multiclass" and json.loads(meta["classes"])[9] == "9"


def test_default_model_script_builds_its_network(default_source, tmp_path):
    result = export.export(default_source, "script", tmp_path / "train.py")
    text = result.path.read_text()
    assert result.max_difference == 0.0  # same layers, same weights
    assert "torch.optim.AdamW(model.parameters(), lr=0.003, betas=(0.9, 0.999), weight_decay=0.0005)" in text
    assert "OneCycleLR" in text and "label_smoothing=0.1" in text
    # The shipped model trains with Distortion: its affine part as torchvision's, the rest said to be left out
    assert "RandomAffine(degrees=15.0, translate=(0.1, 0.1), scale=(0.85, 1.1), shear=14.0)" in text
    assert "not reproduced here" in text
    assert "import core" not in text and "from core" not in text


# ---------------------------------------------------------------------------------------------
# The network as code: every registered architecture, both heads


CUSTOM_EVERY_LAYER = [
    {"type": "Conv2d", "out_channels": 6, "kernel_size": 3, "padding": "same"}, {"type": "BatchNorm"},
    {"type": "LeakyReLU", "negative_slope": 0.2}, {"type": "AvgPool2d", "kernel_size": 3, "stride": 2, "padding": 1},
    {"type": "Conv2d", "out_channels": 8, "kernel_size": 3, "stride": 2}, {"type": "GELU"},
    {"type": "MaxPool2d", "kernel_size": 2}, {"type": "AdaptiveAvgPool2d", "output_size": 2}, {"type": "Tanh"},
    {"type": "Flatten"}, {"type": "Linear", "out_features": 20}, {"type": "BatchNorm"}, {"type": "Sigmoid"},
    {"type": "Dropout", "p": 0.25}, {"type": "Linear", "out_features": 10}, {"type": "LogSoftmax"},
]


@pytest.mark.parametrize("arch", [*list_architectures(), "custom-every-layer"])
@pytest.mark.parametrize("outputs", [10, 1])
def test_network_source_rebuilds_every_architecture(arch, outputs):
    if arch == "custom-every-layer":
        layers = CUSTOM_EVERY_LAYER if outputs == 10 else CUSTOM_EVERY_LAYER[:-1]
        model = build_model("custom", outputs, {"layers": layers})
    else:
        model = build_model(arch, outputs)
    namespace: dict = {}
    exec("from collections import OrderedDict\nfrom torch import nn\n"
         f"def build_model():\n    {network_source(model).replace(chr(10), chr(10) + '    ')}", namespace)
    rebuilt = namespace["build_model"]()
    assert str(rebuilt) == str(model)
    rebuilt.load_state_dict(model.state_dict(), strict=True)
    x = torch.rand(3, 1, 28, 28)
    with torch.inference_mode():
        torch.testing.assert_close(rebuilt.eval()(x), model.eval()(x), rtol=0, atol=0)


# ---------------------------------------------------------------------------------------------
# train.py runs for real on a small subset


def checkpoint_for(folder: Path, preset: str, mnist, **overrides) -> Path:
    """An untrained checkpoint saved as a training run would save it, config included."""
    config = preset_config(preset, **overrides)
    arch = arch_config(config.model.arch, 1 if config.task.kind == "binary" else 10, config.model.options)
    torch.manual_seed(0)
    meta = {
        "arch_config": arch, "config": config_to_dict(config), "epoch": 1, "metrics": {},
        "normalization": asdict(normalization(config.data.normalization, mnist)), "dataset": config.data.dataset,
        "task": config.task.kind, "target_digit": config.task.target_digit,
    }
    return save_checkpoint(folder / "best.pt", build_model(**arch), meta)


def run_script(script: Path, folder: Path, *extra: str) -> str:
    """Run train.py in isolated mode (-I: this project is not importable) on 640 training images.

    640 at batch 64 is 10 steps: torch's OneCycleLR divides by zero when its warm-up rounds to 1 step or less.
    """
    command = [sys.executable, "-I", str(script), "--data-dir", os.environ["DIGITS_DATA_DIR"], "--epochs", "1",
               "--train-subset", "640", "--test-subset", "500", "--save", str(folder / "weights.pt"), *extra]
    done = subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize(
    ("preset", "overrides", "expected"),
    [
        ("fast", {}, ["nesterov=True", "OneCycleLR", "F.cross_entropy(outputs, labels, label_smoothing=0.0)"]),
        ("seed001", {}, ['("softmax1", nn.Softmax(dim=1))', "torch.optim.Adam(", "on a Softmax head"]),
        ("seed000", {"scheduler": "step", "optimizer": "adamw"},
         ["TARGET = 8", "binary_cross_entropy_with_logits", "StepLR(optimizer, step_size=1, gamma=0.1)"]),
    ],
    ids=["fastcnn", "seed001-softmax", "seed000-binary"],
)
@pytest.mark.slow
def test_generated_script_trains_one_short_epoch(preset, overrides, expected, mnist, tmp_path):
    source = export.load_source(checkpoint_for(tmp_path, preset, mnist, **overrides))
    script = export.export(source, "script", tmp_path / "train.py").path
    text = script.read_text()
    assert all(snippet in text for snippet in expected), text
    output = run_script(script, tmp_path)
    found = re.search(r"epoch 1/1: .*test accuracy (\d+\.\d+)%", output)
    assert found and 0 <= float(found.group(1)) <= 100, output
    weights = torch.load(tmp_path / "weights.pt", weights_only=True)
    assert weights.keys() == source.checkpoint.model.state_dict().keys()


@pytest.mark.slow
def test_a_binary_checkpoint_exports_one_logit_and_fashion_verifies_on_fashion(mnist, tmp_path):
    binary = export.load_source(checkpoint_for(tmp_path, "seed000", mnist))
    result = export.export(binary, "onnx", tmp_path / "binary.onnx")
    session = onnxruntime.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    assert session.run(None, {"pixels": torch.rand(5, 1, 28, 28).numpy()})[0].shape == (5, 1)
    props = {p.key: p.value for p in onnx.load(str(result.path)).metadata_props}
    assert props["task"] == "binary" and props["output"].startswith("(N, 1): one logit for 'is it 8?'")
    fashion_folder = tmp_path / "fashion"
    fashion_folder.mkdir()
    fashion = export.load_source(checkpoint_for(fashion_folder, "fast", mnist, dataset="fashion-mnist"))
    assert json.loads(export.metadata(fashion)["classes"])[0] == "T-shirt/top"
    result = export.export(fashion, "torchscript", tmp_path / "fashion.pt")
    assert result.verified_images == 1000


def test_script_scheduler_steps_follow_core_train():
    from core.export_script import render_script

    model = build_model("fastcnn")
    norm = export.load_source(DEFAULT_CHECKPOINT).checkpoint.normalization
    per_batch = "\n" + " " * 12 + "scheduler.step()"  # inside the batch loop
    per_epoch = "\n" + " " * 8 + "scheduler.step()"  # after it
    onecycle = render_script(model, preset_config("fast"), norm, "test")
    assert per_batch in onecycle and per_epoch not in onecycle
    cosine = render_script(model, preset_config("fast", scheduler="cosine", t_max=0), norm, "test")
    assert "CosineAnnealingLR(optimizer, T_max=args.epochs, eta_min=0.0)" in cosine
    assert per_epoch in cosine and per_batch not in cosine
    plain = render_script(model, preset_config("seed003"), norm, "test")
    assert "scheduler" not in plain and "momentum=0.0, nesterov=False" in plain and "augment = []" in plain


# ---------------------------------------------------------------------------------------------
# Failures: a clear error, exit 2, and nothing at the output path


def test_a_disagreeing_export_is_refused_and_leaves_the_old_file(default_source, tmp_path, monkeypatch):
    original = export.WRITERS["torchscript"]

    def broken(model, path, source):  # an exporter that gets one bias slightly wrong
        perturbed = copy.deepcopy(model)
        with torch.no_grad():
            perturbed.network.fc1.bias[3] += 0.01
        original(perturbed, path, source)

    monkeypatch.setitem(export.WRITERS, "torchscript", broken)
    output = tmp_path / "model.pt"
    output.write_text("the previous export")
    with pytest.raises(export.ExportError, match=r"disagrees with the PyTorch model .* differ by up to 0\.01"):
        export.export(default_source, "torchscript", output)
    assert output.read_text() == "the previous export" and sorted(tmp_path.iterdir()) == [output]
    fresh = tmp_path / "fresh" / "model.pt"
    assert main(["export", "--checkpoint", str(DEFAULT_CHECKPOINT), "--format", "torchscript",
                 "--output", str(fresh)]) == 2
    assert list(fresh.parent.iterdir()) == []


def test_cli_unknown_run_bad_checkpoint_and_missing_config_exit_2(tmp_path, capsys, mnist):
    bad = tmp_path / "bad.pt"
    bad.write_text("not a checkpoint")
    out = str(tmp_path / "x.onnx")
    assert main(["export", "--run", "nope", "--runs-dir", str(tmp_path), "--format", "onnx", "--output", out]) == 2
    assert "error: no run 'nope'" in capsys.readouterr().err
    assert main(["export", "--checkpoint", str(bad), "--format", "onnx", "--output", out]) == 2
    assert "error: " in capsys.readouterr().err and not Path(out).exists()
    no_config = tmp_path / "plain"
    no_config.mkdir()
    checkpoint = checkpoint_for(no_config, "seed003", mnist)
    stripped = export.load_source(checkpoint)
    with pytest.raises(export.ExportError, match="carries no training config"):
        export.script_text(export.ExportSource(stripped.checkpoint, None, "", str(checkpoint)))
    run_id, _ = runs.new_run(config_to_dict(preset_config("seed003")), root=tmp_path / "runs")
    args = ["export", "--run", run_id, "--runs-dir", str(tmp_path / "runs"), "--format", "script", "--output", out]
    assert main(args) == 2 and "has no best.pt yet" in capsys.readouterr().err


def test_cli_exports_a_run_with_its_config_as_json(tmp_path, capsys, mnist):
    config = preset_config("seed003", epochs=3, lr=0.05)
    run_id, folder = runs.new_run(config_to_dict(config), root=tmp_path)
    checkpoint_for(folder, "seed003", mnist)  # its own config says epochs 1; the run's config.json wins
    output = tmp_path / "out" / "train.py"
    assert main(["export", "--run", run_id, "--runs-dir", str(tmp_path), "--format", "script",
                 "--output", str(output), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["path"] == str(output) and record["verified_images"] == 1000 and record["format"] == "script"
    text = output.read_text()
    assert f"run {run_id}" in text and "default=3)" in text and "lr=0.05" in text
