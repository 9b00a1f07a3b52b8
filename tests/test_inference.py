"""Predictions, feature maps and saliency on small hand-built networks; hooks and modes left as found."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch
from torch import nn

from core.__main__ import main
from core.checkpoints import LoadedCheckpoint, load_checkpoint
from core.data import Dataset, Normalization, to_model_input
from core.inference import (
    DEFAULT_CHECKPOINT,
    Prediction,
    conv_blocks,
    evaluating,
    feature_maps,
    predict,
    predict_image,
    probabilities,
    saliency,
    saliency_summary,
    unsure_reason,
)
from core.preprocess import render_as_canvas
from core.train import TrainConfig, config_to_dict, override


def small_cnn(outputs: int = 10, head: nn.Module | None = None) -> nn.Sequential:
    """conv-bn-relu-pool, conv-relu-pool, linear: two conv blocks with known shapes."""
    torch.manual_seed(0)
    layers = [
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),  # (4, 14, 14)
        nn.Conv2d(4, 6, 3), nn.ReLU(), nn.MaxPool2d(2),  # (6, 12, 12) -> (6, 6, 6)
        nn.Flatten(), nn.Dropout(0.5), nn.Linear(6 * 6 * 6, outputs),
    ]
    return nn.Sequential(*layers, *([head] if head else []))


def digit_input() -> torch.Tensor:
    return torch.rand(1, 1, 28, 28, generator=torch.Generator().manual_seed(1))


def hook_count(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules())


def test_probabilities_sum_to_one_for_every_head() -> None:
    logits = torch.randn(3, 10)
    expected = torch.softmax(logits, -1)
    assert torch.allclose(probabilities(logits, "logits"), expected)
    assert torch.allclose(probabilities(torch.log_softmax(logits, -1), "log_softmax"), expected)
    assert torch.allclose(probabilities(expected, "softmax"), expected)
    assert torch.allclose(probabilities(torch.tensor([[0.0]]), "logits"), torch.tensor([[0.5]]))


@pytest.mark.parametrize("head", [None, nn.LogSoftmax(dim=1), nn.Softmax(dim=1)])
def test_predict_agrees_with_a_plain_forward_pass(head: nn.Module | None) -> None:
    image = digit_input()
    prediction = predict(small_cnn(head=head), image)
    with torch.no_grad():
        expected = torch.softmax(small_cnn().eval()(image), -1)[0]  # the same weights, logits head
    assert torch.allclose(torch.tensor(prediction.probabilities), expected, atol=1e-6)
    assert prediction.label == int(expected.argmax())


def test_binary_model_gives_one_probability() -> None:
    prediction = predict(small_cnn(outputs=1), digit_input())
    assert len(prediction.probabilities) == 1 and prediction.binary
    assert prediction.label == int(prediction.probabilities[0] >= 0.5)
    assert sum(prediction.class_probabilities) == pytest.approx(1.0)


def test_unsure_reasons() -> None:
    rest = (0.0,) * 7
    assert unsure_reason(Prediction((0.9, 0.05, 0.05, *rest), 0)) is None
    assert "top probability is only 50%" in (unsure_reason(Prediction((0.5, 0.3, 0.2, *rest), 0)) or "")
    assert "25% apart" in (unsure_reason(Prediction((0.62, 0.37, 0.01, *rest), 0)) or "")
    assert unsure_reason(Prediction((0.55,), 1)) is not None  # binary: 55% "is the target" is a guess
    assert unsure_reason(Prediction((0.05,), 0)) is None  # 95% "is not"


def test_conv_blocks_follow_bn_and_activation() -> None:
    labels = [label for label, _ in conv_blocks(small_cnn())]
    assert labels == ["0 → 1 → 2", "4 → 5"]


def test_feature_maps_shapes_and_values() -> None:
    model = small_cnn()
    image = digit_input()
    maps = feature_maps(model, image)
    assert [tuple(m.maps.shape) for m in maps] == [(4, 28, 28), (6, 12, 12)]
    model.eval()
    with torch.no_grad():
        assert torch.allclose(maps[0].maps, model[:3](image)[0])  # after conv, BN, ReLU
        assert torch.allclose(maps[1].maps, model[:6](image)[0])
    assert all(m.maps.min() >= 0 for m in maps)  # both blocks end in ReLU


def test_saliency_shape_and_reference() -> None:
    model = small_cnn()
    image = digit_input()
    result = saliency(model, image)
    assert result.shape == (28, 28) and result.min() >= 0 and result.max() > 0
    model.eval()
    pixels = image.clone().requires_grad_(True)
    outputs = model(pixels)[0]
    outputs[outputs.argmax()].backward()
    assert pixels.grad is not None and torch.allclose(result, pixels.grad[0, 0].abs())


def test_saliency_summary() -> None:
    gradient = torch.zeros(28, 28)
    gradient[4, 6], gradient[8, 10], gradient[20, 20] = 3.0, 2.0, 1.0  # 3 + 2 of 6 in the top two
    row, col, share = saliency_summary(gradient, count=2)
    assert (row, col) == (6.0, 8.0) and share == pytest.approx(5 / 6)


def test_saliency_leaves_weight_gradients_alone() -> None:
    model = small_cnn()
    saliency(model, digit_input())
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("training", [True, False])
def test_hooks_removed_and_modes_restored(training: bool) -> None:
    model = small_cnn()
    model.train(training)
    model[8].eval()  # a mixed state must come back as it was, module by module
    modes = [m.training for m in model.modules()]
    feature_maps(model, digit_input())
    saliency(model, digit_input())
    predict(model, digit_input())
    assert hook_count(model) == 0
    assert [m.training for m in model.modules()] == modes


def test_hooks_removed_when_the_forward_pass_fails() -> None:
    model = small_cnn()
    with pytest.raises(RuntimeError):
        feature_maps(model, torch.zeros(1, 1, 10, 10))  # too small for the Linear
    assert hook_count(model) == 0 and model.training


def test_evaluating_restores_after_an_exception() -> None:
    model = small_cnn().train()
    with pytest.raises(ValueError), evaluating(model):
        assert not model.training
        raise ValueError
    assert all(m.training for m in model.modules())


def test_predict_image_empty_and_drawn() -> None:
    model = small_cnn()
    raw = Normalization("none", 0.0, 1.0)
    blank = np.zeros((280, 280, 4), np.uint8)
    stages, prediction = predict_image(model, raw, blank)
    assert stages.empty and prediction is None
    drawn = blank.copy()
    drawn[60:220, 130:150] = 255  # a '1'
    stages, prediction = predict_image(model, raw, drawn)
    assert not stages.empty and prediction is not None and len(prediction.probabilities) == 10


# The shipped default model, on real MNIST test digits


@pytest.fixture(scope="module")
def default_model() -> LoadedCheckpoint:
    return load_checkpoint(DEFAULT_CHECKPOINT)


def plain_accuracy(loaded: LoadedCheckpoint, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Accuracy on the dataset's own 28x28 images, batched, as training evaluated it."""
    with torch.inference_mode():
        outputs = loaded.model(to_model_input(images, loaded.normalization))
    return float((outputs.argmax(1) == labels).float().mean())


def test_default_model_files_and_claimed_accuracy(mnist: Dataset, default_model: LoadedCheckpoint) -> None:
    folder = DEFAULT_CHECKPOINT.parent
    assert DEFAULT_CHECKPOINT.stat().st_size <= 2 * 1024 * 1024
    metrics = json.loads((folder / "metrics.json").read_text())
    config = json.loads((folder / "config.json").read_text())
    assert config["config"]["data"]["augment"] is True and default_model.task == "multiclass"
    accuracy = plain_accuracy(default_model, mnist.test_images, mnist.test_labels)  # all 10,000
    assert accuracy == pytest.approx(metrics["test_accuracy"], abs=1e-4)
    assert accuracy >= 0.993


def test_drawn_test_digits_keep_their_accuracy(mnist: Dataset, default_model: LoadedCheckpoint) -> None:
    """Test digits drawn large on an RGBA canvas and sent through the pipeline lose at most a point."""
    count = 2000
    images, labels = mnist.test_images[:count], mnist.test_labels[:count]
    plain = plain_accuracy(default_model, images, labels)
    right = 0
    for image, label in zip(images, labels.tolist(), strict=True):
        _, prediction = predict_image(default_model.model, default_model.normalization, render_as_canvas(image))
        right += prediction is not None and prediction.label == label
    drawn = right / count
    print(f"\nfirst {count} test digits: plain {plain:.2%}, drawn at 280x280 and preprocessed {drawn:.2%}")
    assert drawn >= plain - 0.01


def test_default_model_feature_maps_and_saliency(mnist: Dataset, default_model: LoadedCheckpoint) -> None:
    stages, prediction = predict_image(
        default_model.model, default_model.normalization, render_as_canvas(mnist.test_images[0])
    )
    assert prediction is not None and stages.model_input is not None
    blocks = feature_maps(default_model.model, stages.model_input)
    assert [tuple(b.maps.shape) for b in blocks] == [(16, 28, 28), (32, 14, 14), (64, 7, 7)]  # fastcnn
    assert saliency(default_model.model, stages.model_input).shape == (28, 28)
    assert hook_count(default_model.model) == 0 and not default_model.model.training


def test_bench_predict_reports_percentiles(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "predict", "--count", "40", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["images"] == 40 and 0 < result["p50_ms"] <= result["p95_ms"] <= result["max_ms"]
    assert result["accuracy"] >= 0.9


def test_default_model_was_made_by_the_script_recipe() -> None:
    """checkpoints/default/config.json is what scripts/train_default_model.py's RECIPE builds."""
    path = DEFAULT_CHECKPOINT.parents[2] / "scripts" / "train_default_model.py"
    spec = importlib.util.spec_from_file_location("train_default_model", path)
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    saved = json.loads((DEFAULT_CHECKPOINT.parent / "config.json").read_text())["config"]
    rebuilt = config_to_dict(override(TrainConfig(), **script.RECIPE, seed=saved["seed"]))
    ignored = ("device", "threads", "preset")  # where and how fast, not what
    assert {k: v for k, v in rebuilt.items() if k not in ignored} == {
        k: v for k, v in saved.items() if k not in ignored
    }
