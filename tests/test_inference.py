"""Predictions, feature maps and saliency on small hand-built networks; hooks and modes left as found."""

from __future__ import annotations

import importlib.util
import json
import math
import threading
from typing import Any

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
    hook_lock,
    predict,
    predict_image,
    probabilities,
    saliency,
    saliency_summary,
    set_serving_threads,
    smoothgrad,
    total_variation,
    unsure_reason,
)
from core.preprocess import render_as_canvas
from core.training import TrainConfig, config_to_dict, override, with_precision_recorded


def small_cnn(outputs: int = 10, head: nn.Module | None = None) -> nn.Sequential:
    """conv-bn-relu-pool, conv-relu-pool, linear: two conv blocks with known shapes; in eval mode, as served."""
    torch.manual_seed(0)
    layers = [
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),  # (4, 14, 14)
        nn.Conv2d(4, 6, 3), nn.ReLU(), nn.MaxPool2d(2),  # (6, 12, 12) -> (6, 6, 6)
        nn.Flatten(), nn.Dropout(0.5), nn.Linear(6 * 6 * 6, outputs),
    ]
    return nn.Sequential(*layers, *([head] if head else [])).eval()


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
    # binary: 55% "is the target" is a guess (its two answers, 55% and 45%, are also only 10% apart)
    assert "top probability is only 55%" in (unsure_reason(Prediction((0.55,), 1)) or "")
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


def test_smoothgrad_shape_seed_and_reference() -> None:
    model, image = small_cnn(), digit_input()
    first = smoothgrad(model, image, samples=8, seed=3)
    assert first.shape == (28, 28) and first.min() >= 0 and first.max() > 0
    assert torch.equal(first, smoothgrad(model, image, samples=8, seed=3))  # seeded: the same map again
    assert not torch.equal(first, smoothgrad(model, image, samples=8, seed=4))
    assert all(p.grad is None for p in model.parameters())  # only the input's gradient was computed
    # The batched pass gives what the mean of one-by-one gradients of the same noisy copies gives.
    sigma = 0.15 * float(image.max() - image.min())
    noisy = image + torch.randn((8, 1, 28, 28), generator=torch.Generator().manual_seed(3)) * sigma
    label = int(model(image).argmax())
    one_by_one = []
    for copy in noisy:
        pixels = copy[None].clone().requires_grad_(True)
        model(pixels)[0, label].backward()
        assert pixels.grad is not None
        one_by_one.append(pixels.grad[0, 0])
    assert torch.allclose(first, torch.stack(one_by_one).abs().mean(0), atol=1e-6)


def test_total_variation_is_scale_free() -> None:
    flat, bumpy = torch.ones(4, 4), torch.tensor([[1.0, 0.0] * 2, [0.0, 1.0] * 2] * 2)
    assert total_variation(flat) == 0.0
    assert total_variation(bumpy) == pytest.approx(24 / 8) == total_variation(5 * bumpy)


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
    assert hook_count(model) == 0
    assert [m.training for m in model.modules()] == modes
    assert not hook_lock(model).locked()


@pytest.mark.parametrize("call", [predict, saliency, smoothgrad])
def test_plain_forwards_refuse_a_model_in_training_mode_and_leave_it(call) -> None:
    model = small_cnn()
    model[1].train()  # one BatchNorm left in training mode would update its statistics on every call
    with pytest.raises(ValueError, match="eval mode"):
        call(model, digit_input())
    assert [m.training for m in model.modules()] == [m is model[1] for m in model.modules()]


def test_hooks_removed_when_the_forward_pass_fails() -> None:
    model = small_cnn().train()
    with pytest.raises(RuntimeError):
        feature_maps(model, torch.zeros(1, 1, 10, 10))  # too small for the Linear
    assert hook_count(model) == 0 and model.training and not hook_lock(model).locked()


def test_evaluating_restores_after_an_exception() -> None:
    model = small_cnn().train()
    with pytest.raises(ValueError), evaluating(model):
        assert not model.training
        raise ValueError
    assert all(m.training for m in model.modules())


def test_predictions_never_set_the_thread_count(monkeypatch: pytest.MonkeyPatch) -> None:
    """The thread count is a process setting made once at start-up, not something each call changes."""
    def refuse(threads: int) -> None:
        raise AssertionError(f"torch.set_num_threads({threads}) called per prediction")

    monkeypatch.setattr(torch, "set_num_threads", refuse)
    model, image = small_cnn(), digit_input()
    predict(model, image)
    feature_maps(model, image)
    saliency(model, image)
    smoothgrad(model, image, samples=4)


def test_set_serving_threads_sets_the_count_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    current = [4]
    monkeypatch.setattr(torch, "get_num_threads", lambda: current[0])
    monkeypatch.setattr(torch, "set_num_threads", lambda n: (calls.append(n), current.__setitem__(0, n)))
    set_serving_threads(1)
    set_serving_threads(1)  # already so: nothing to change
    assert calls == [1] and current == [1]


def test_each_model_has_its_own_hook_lock() -> None:
    first, second = small_cnn(), small_cnn()
    assert hook_lock(first) is hook_lock(first) and hook_lock(first) is not hook_lock(second)


class PausedForward:
    """A forward pre-hook that, in one chosen thread, stops the forward pass until released.

    Lets a test hold a hooked forward pass (and the lock it takes) open at a known point and do
    something else meanwhile, waiting on events rather than on time.
    """

    def __init__(self, module: nn.Module, thread_name: str) -> None:
        self.thread_name = thread_name
        self.entered, self.release = threading.Event(), threading.Event()
        self.handle = module.register_forward_pre_hook(self)

    def __call__(self, module: nn.Module, inputs: object) -> None:
        if threading.current_thread().name == self.thread_name:
            self.entered.set()
            assert self.release.wait(timeout=60), "the test never released the paused forward pass"


def feature_maps_in_thread(model: nn.Module, image: torch.Tensor, name: str) -> tuple[threading.Thread, list]:
    result: list = []
    thread = threading.Thread(target=lambda: result.extend(feature_maps(model, image)), name=name)
    thread.start()
    return thread, result


def test_plain_predictions_run_while_a_hooked_forward_holds_the_model() -> None:
    """Predicting on the same model mid feature-map pass neither waits nor leaks into the maps."""
    model = small_cnn()
    mine, other = digit_input(), torch.rand(1, 1, 28, 28, generator=torch.Generator().manual_seed(9))
    expected = feature_maps(model, mine)
    pause = PausedForward(model[4], thread_name="hooked")  # the first block's maps are captured by now
    thread, result = feature_maps_in_thread(model, mine, "hooked")
    assert pause.entered.wait(timeout=60)
    assert hook_lock(model).locked() and hook_count(model) > 1  # the feature-map hooks are on
    alone = predict(small_cnn(), other)
    shared = predict(model, other)  # the same model, in this thread, at once
    assert shared.probabilities == pytest.approx(alone.probabilities)
    assert saliency(model, other).shape == (28, 28)
    pause.release.set()
    thread.join(timeout=60)
    pause.handle.remove()
    assert [m.name for m in result] == [m.name for m in expected]
    # not `other`'s maps (close, not bit-equal: a new thread may compute with another OpenMP thread count)
    assert all(torch.allclose(a.maps, b.maps, atol=1e-5) for a, b in zip(result, expected, strict=True))
    assert hook_count(model) == 0 and not hook_lock(model).locked()


def test_hooked_forwards_on_different_models_do_not_wait_on_each_other() -> None:
    first, second = small_cnn(), small_cnn()
    pause = PausedForward(first[0], thread_name="first")
    thread, _ = feature_maps_in_thread(first, digit_input(), "first")
    assert pause.entered.wait(timeout=60) and hook_lock(first).locked()
    assert len(feature_maps(second, digit_input())) == 2  # its own lock is free
    pause.release.set()
    thread.join(timeout=60)
    pause.handle.remove()
    assert not thread.is_alive() and not hook_lock(first).locked()


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


@pytest.mark.slow
def test_default_model_files_and_claimed_accuracy(mnist: Dataset, default_model: LoadedCheckpoint) -> None:
    folder = DEFAULT_CHECKPOINT.parent
    assert DEFAULT_CHECKPOINT.stat().st_size <= 2 * 1024 * 1024
    metrics = json.loads((folder / "metrics.json").read_text())
    config = json.loads((folder / "config.json").read_text())
    assert config["config"]["data"]["distort"] is True and default_model.task == "multiclass"
    accuracy = plain_accuracy(default_model, mnist.test_images, mnist.test_labels)  # all 10,000
    assert accuracy == pytest.approx(metrics["test_accuracy"], abs=1e-4)
    assert accuracy >= 0.994  # the floor for the default model


@pytest.mark.slow
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
    # bestcnn at twice its widths: 32 at 28x28, two convolutions of 64 at 14x14, 128 at 7x7
    assert [tuple(b.maps.shape) for b in blocks] == [(32, 28, 28), (64, 14, 14), (64, 14, 14), (128, 7, 7)]
    assert saliency(default_model.model, stages.model_input).shape == (28, 28)
    assert hook_count(default_model.model) == 0 and not default_model.model.training


def test_smoothgrad_is_smoother_than_the_plain_gradient(mnist: Dataset, default_model: LoadedCheckpoint) -> None:
    """On real test digits and the shipped model, SmoothGrad's map varies less from pixel to pixel."""
    for index in range(5):
        stages, prediction = predict_image(
            default_model.model, default_model.normalization, render_as_canvas(mnist.test_images[index])
        )
        assert prediction is not None and stages.model_input is not None
        plain = saliency(default_model.model, stages.model_input)
        smooth = smoothgrad(default_model.model, stages.model_input)
        assert smooth.shape == (28, 28)
        assert total_variation(smooth) < 0.5 * total_variation(plain), f"test digit {index}"  # measured: ~0.25x
    assert hook_count(default_model.model) == 0 and not default_model.model.training


@pytest.fixture()
def keep_thread_count():
    """The bench sets its process's thread count, as a server does; the test process gets its own back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.mark.usefixtures("keep_thread_count")
def test_bench_predict_reports_percentiles(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "predict", "--count", "40", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["images"] == result["predictions"] == 40
    assert 0 < result["p50_ms"] <= result["p95_ms"] <= result["max_ms"]
    assert result["accuracy"] >= 0.9


def default_model_script() -> Any:
    path = DEFAULT_CHECKPOINT.parents[2] / "scripts" / "train_default_model.py"
    spec = importlib.util.spec_from_file_location("train_default_model", path)
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


def test_default_model_was_made_by_the_script_recipe() -> None:
    """checkpoints/default/config.json is what scripts/train_default_model.py's RECIPE builds, with its defaults."""
    script = default_model_script()
    saved = json.loads((DEFAULT_CHECKPOINT.parent / "config.json").read_text())["config"]
    assert (saved["seed"], saved["threads"]) == (script.SHIPPED_SEED, script.SHIPPED_THREADS)
    saved = with_precision_recorded(saved)  # trained on the CPU before the setting existed: float32
    rebuilt = config_to_dict(override(TrainConfig(), **script.RECIPE, seed=saved["seed"]))
    ignored = ("device", "threads", "preset")  # where and how fast, not what
    assert {k: v for k, v in rebuilt.items() if k not in ignored} == {
        k: v for k, v in saved.items() if k not in ignored
    }


@pytest.mark.slow
@pytest.mark.usefixtures("keep_thread_count")
def test_bench_predict_beside_a_training_process(capsys: pytest.CaptureFixture[str]) -> None:
    """--with-training times the images again while a real `python -m core train` runs, and gives the ratios."""
    args = ["--count", "30", "--seconds", "0.5", "--with-training", "--training-nice", "5", "--json"]
    assert main(["bench", "predict", *args]) == 0
    result = json.loads(capsys.readouterr().out)
    figures = ("p50_ms", "p95_ms", "busy_p50_ms", "busy_p95_ms", "ratio_p50", "ratio_p95")
    assert all(isinstance(result[key], float) and math.isfinite(result[key]) and result[key] > 0 for key in figures)
    assert result["ratio_p50"] == pytest.approx(result["busy_p50_ms"] / result["p50_ms"])
    assert result["ratio_p95"] == pytest.approx(result["busy_p95_ms"] / result["p95_ms"])
    assert result["training_throughout"] is True and result["threads"] == 1
    assert result["predictions"] >= 30 and result["busy_predictions"] >= 30
    assert "--preset fast" in result["training_command"] and result["training_nice"] == 5


def test_the_script_names_each_floor_the_model_misses_on_exact_counts() -> None:
    script = default_model_script()
    scores = {"uci": {"correct": 1761, "count": 1797, "accuracy": 1761 / 1797},
              "pens": {"correct": 1960, "count": 2000, "accuracy": 0.98}}
    missed = script.missed_floors(0.9960, 579657, scores)
    assert missed == ["uci: 1761 of 1797 right (97.997%), below 98% (needs 1762)"]  # "98.00%" rounded, yet short
    scores["uci"]["correct"] = 1762
    assert script.missed_floors(0.9960, 579657, scores) == []
    assert [line.split(" ")[0] for line in script.missed_floors(0.9930, 3 * 1024 * 1024, scores)] == ["MNIST",
                                                                                                     "model.pt"]
