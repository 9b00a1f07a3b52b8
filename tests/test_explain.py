"""core.explain against trusted references: torch.roll, torch.rot90, sklearn's cosine similarity and PCA,
a hand-built network whose Grad-CAM is known, and a plain forward pass of the real default model."""

from __future__ import annotations

from copy import deepcopy as copy_module
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics.pairwise import cosine_similarity
from torch import nn

from core.checkpoints import LoadedCheckpoint, load_checkpoint
from core.data import Dataset, to_model_input
from core.explain import (
    SWEEP,
    NeighbourIndex,
    Transform,
    apply_transform,
    blank_value,
    cached_index,
    fit_pca,
    fit_tsne,
    grad_cam,
    head_layer,
    image_features,
    pca_place,
    penultimate_features,
    restroke,
    robustness_sweep,
    rotate_and_scale,
    shift,
    subsample,
    tsne_place,
    unit_rows,
    weights_digest,
)
from core.inference import DEFAULT_CHECKPOINT, feature_maps, predict
from core.models import build_model


@pytest.fixture(scope="module")
def default() -> LoadedCheckpoint:
    return load_checkpoint(DEFAULT_CHECKPOINT)


@pytest.fixture()
def seven(mnist: Dataset, default: LoadedCheckpoint) -> torch.Tensor:
    """The first 7 of the test set as the default model's input (1, 1, 28, 28)."""
    index = int((mnist.test_labels == 7).nonzero()[0])
    return to_model_input(mnist.test_images[index : index + 1], default.normalization)


# ---------------------------------------------------------------------------------------------
# Robustness sweep


def test_identity_rows_are_the_input_and_its_plain_prediction(default: LoadedCheckpoint, seven: torch.Tensor) -> None:
    plain = predict(default.model, seven)
    sweep = robustness_sweep(default.model, seven, blank_value(default.normalization))
    identity = [i for i, t in enumerate(sweep.transforms) if t.identity]
    assert len(identity) == len(SWEEP) and sweep.answer == plain.label == 7
    for row in identity:
        assert torch.equal(sweep.images[row : row + 1], seven)  # bit for bit
        assert int(sweep.labels[row]) == plain.label
        torch.testing.assert_close(sweep.probabilities[row], torch.tensor(plain.probabilities), atol=1e-6, rtol=0)
    for kind in SWEEP:  # every curve passes through the plain answer's probability at the identity
        amounts, probs, _ = sweep.curve(kind)
        assert amounts == sorted(amounts)
        assert probs[amounts.index(Transform(kind, 0).amount if kind != "scale" else 1.0)] == pytest.approx(
            plain.confidence, abs=1e-6)


def test_blank_is_what_an_inkless_pixel_becomes(default: LoadedCheckpoint) -> None:
    norm = default.normalization
    assert blank_value(norm) == float(to_model_input(torch.zeros((1, 28, 28), dtype=torch.uint8), norm)[0, 0, 0, 0])
    assert blank_value(None) == 0.0


@pytest.mark.parametrize(("dx", "dy"), [(3, 0), (-5, 0), (0, 4), (0, -2), (2, -6), (-1, 1)])
def test_shift_is_a_roll_of_the_padded_image(seven: torch.Tensor, dx: int, dy: int) -> None:
    blank = float(seven.min())
    padded = nn.functional.pad(seven, (8, 8, 8, 8), value=blank)  # wider than any shift: nothing wraps round
    expected = torch.roll(padded, shifts=(dy, dx), dims=(-2, -1))[..., 8:36, 8:36]
    assert torch.equal(shift(seven, dx, dy, blank), expected)
    assert torch.equal(apply_transform(seven, Transform("shift_x", dx), blank), shift(seven, dx, 0, blank))


def test_rotation_by_a_right_angle_is_rot90_clockwise(seven: torch.Tensor) -> None:
    blank = float(seven.min())
    clockwise = torch.rot90(seven, k=-1, dims=(-2, -1))
    torch.testing.assert_close(rotate_and_scale(seven, 90.0, 1.0, blank), clockwise, atol=1e-5, rtol=0)


def test_scale_two_enlarges_about_the_center() -> None:
    image = torch.zeros((1, 1, 28, 28))
    image[..., 13:15, 13:15] = 1.0  # a 2x2 dot at the center
    enlarged = rotate_and_scale(image, 0.0, 2.0, 0.0)
    # Output pixel j reads the input at (j - 13.5) / 2 + 13.5, bilinearly: along each axis the dot becomes
    # 0.25, 0.75, 1, 1, 0.75, 0.25 on pixels 11..16, four times its area.
    profile = torch.zeros(28)
    profile[11:17] = torch.tensor([0.25, 0.75, 1.0, 1.0, 0.75, 0.25])
    torch.testing.assert_close(enlarged[0, 0], profile[:, None] * profile[None, :], atol=1e-5, rtol=0)


def test_thicken_and_thin_are_dilation_and_erosion() -> None:
    blank = -0.4242  # a normalized background: the filters work on any increasing map of the ink
    image = torch.full((1, 1, 28, 28), blank)
    image[..., 10, 10] = 2.8
    thick = restroke(image, 1)
    assert torch.equal(thick[0, 0, 9:12, 9:12], torch.full((3, 3), 2.8)) and int((thick > blank).sum()) == 9
    assert torch.equal(restroke(thick, -1), image)  # eroding the 3x3 block leaves its center
    assert torch.equal(restroke(image, -1), torch.full_like(image, blank))  # a 1-px stroke thinned away


# ---------------------------------------------------------------------------------------------
# Penultimate features and nearest training images


def test_penultimate_features_are_the_heads_input(default: LoadedCheckpoint, mnist: Dataset) -> None:
    model = default.model
    assert isinstance(model, nn.Sequential) and head_layer(model) is model[-1]
    inputs = to_model_input(mnist.test_images[:50], default.normalization)
    features, probs = penultimate_features(model, inputs, batch_size=16)
    with torch.inference_mode():
        expected = model[:-1](inputs).flatten(1)
    torch.testing.assert_close(features, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(probs[0], torch.tensor(predict(model, inputs[:1]).probabilities), atol=1e-6, rtol=0)
    same, _ = image_features(model, mnist.test_images[:50], default.normalization, batch_size=7)
    torch.testing.assert_close(same, features, atol=1e-5, rtol=1e-5)
    assert not any(m._forward_pre_hooks for m in model.modules())  # the hook is gone


def test_nearest_neighbours_match_brute_force_cosine(default: LoadedCheckpoint, mnist: Dataset) -> None:
    """Exactly the brute-force ranking of the stored (float16) rows; the float32 ranking up to float16's rounding."""
    norm = default.normalization
    index = NeighbourIndex.build(default.model, mnist.train_images[:3000], mnist.train_labels[:3000], norm)
    train, _ = image_features(default.model, mnist.train_images[:3000], norm)
    queries, _ = image_features(default.model, mnist.test_images[:5], norm)
    reference = cosine_similarity(queries.double().numpy(), train.double().numpy())  # (5, 3000), sklearn
    # What the index compares: its stored rows (unit length before float16 rounding) with the unit query.
    stored = (unit_rows(queries.double()) @ index.unit.double().T).numpy()
    tolerance = 2.0**-10  # float16 rounding of two unit vectors' components
    for row, query in enumerate(queries):
        found = index.query(query, k=8)
        assert list(found.indices) == np.argsort(-stored[row], kind="stable")[:8].tolist()
        np.testing.assert_allclose(found.similarities, stored[row][list(found.indices)], atol=1e-6)
        np.testing.assert_allclose(found.similarities, reference[row][list(found.indices)], atol=tolerance)
        kth = np.sort(reference[row])[::-1][7]
        surely_in = set(np.flatnonzero(reference[row] > kth + tolerance).tolist())
        assert surely_in <= set(found.indices) and all(reference[row][i] >= kth - tolerance for i in found.indices)
        assert list(found.labels) == mnist.train_labels[list(found.indices)].tolist()
    # A test image's nearest training images mostly share its class: the features carry the class.
    assert found.labels.count(int(mnist.test_labels[4])) >= 6


def test_the_index_is_cached_on_disk_by_the_checkpoints_hash(
        default: LoadedCheckpoint, mnist: Dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    images, labels, norm = mnist.train_images[:300], mnist.train_labels[:300], default.normalization
    built = cached_index(default.model, images, labels, norm, tmp_path / "cache", "mnist-300")
    (saved,) = (tmp_path / "cache").iterdir()
    assert saved.name == f"{weights_digest(default.model)[:32]}-mnist-300.pt"

    def no_build(*args: object, **kwargs: object) -> NeighbourIndex:
        raise AssertionError("rebuilt although cached")

    monkeypatch.setattr(NeighbourIndex, "build", no_build)
    again = cached_index(default.model, images, labels, norm, tmp_path / "cache", "mnist-300")
    assert torch.equal(again.unit, built.unit) and torch.equal(again.labels, built.labels)
    monkeypatch.undo()
    saved.write_bytes(b"damaged")  # a damaged cache file is rebuilt and replaced
    rebuilt = cached_index(default.model, images, labels, norm, tmp_path / "cache", "mnist-300")
    assert torch.equal(rebuilt.unit, built.unit) and saved.stat().st_size > 1000


def test_the_weights_digest_follows_the_weights_not_the_file(default: LoadedCheckpoint) -> None:
    copy = copy_module(default.model)
    assert weights_digest(copy) == weights_digest(default.model)
    with torch.no_grad():
        next(copy.parameters()).add_(1e-6)  # a run that trained on: same file name, other weights
    assert weights_digest(copy) != weights_digest(default.model)


def test_an_all_zero_feature_has_zero_similarity() -> None:
    unit = unit_rows(torch.tensor([[0.0, 0.0], [3.0, 4.0]]))
    assert torch.equal(unit[0], torch.zeros(2)) and torch.allclose(unit[1], torch.tensor([0.6, 0.8]))


# ---------------------------------------------------------------------------------------------
# Grad-CAM


def bars_network() -> nn.Sequential:
    """Two hand-set 3x3 filters: channel 0 fires only on vertical bars, channel 1 only on horizontal ones.

    Class 0's score is channel 0's mean, class 1's is channel 1's: the network answers "vertical" or
    "horizontal", and Grad-CAM must find the bar that answer comes from.
    """
    conv = nn.Conv2d(1, 2, 3, padding=1)
    column = torch.tensor([[-1.0, 2.0, -1.0]] * 3)  # vertical bar: 6 at its center, at most 1 on a horizontal one
    with torch.no_grad():
        conv.weight[:] = torch.stack([column, column.T])[:, None]
        conv.bias[:] = -2.0  # ... so ReLU keeps only the bar it is made for
    head = nn.Linear(2, 2)
    with torch.no_grad():
        head.weight[:] = torch.eye(2)
        head.bias.zero_()
    return nn.Sequential(conv, nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), head).eval()


def bars_image() -> torch.Tensor:
    image = torch.zeros((1, 1, 28, 28))
    image[0, 0, 8:21, 6] = 1.0  # a vertical bar in the left half
    image[0, 0, 14, 17:26] = 1.0  # a horizontal bar in the right half
    return image


def test_grad_cam_finds_the_bar_each_class_comes_from() -> None:
    model, image = bars_network(), bars_image()
    vertical = grad_cam(model, image, class_index=0)
    horizontal = grad_cam(model, image, class_index=1)
    assert vertical is not None and horizontal is not None
    assert vertical.layer == "0 → 1" and vertical.coarse.shape == (28, 28)
    assert float(vertical.heatmap[:, 14:].abs().max()) == 0.0 and float(vertical.heatmap[:, :14].max()) == 1.0
    assert float(horizontal.heatmap[:, :14].abs().max()) == 0.0 and float(horizontal.heatmap[:, 14:].max()) == 1.0
    assert torch.equal(vertical.heatmap > 0, image[0, 0].bool() & (torch.arange(28) < 14))  # exactly on its bar
    assert grad_cam(model, image).class_index == 0  # the longer bar wins: 13 px against 9


def test_grad_cam_on_the_default_model(default: LoadedCheckpoint, seven: torch.Tensor) -> None:
    model = default.model.train()  # a model in training mode is switched to eval only inside, then restored
    try:
        cam = grad_cam(model, seven)
    finally:
        model.eval()
    assert cam is not None and cam.class_index == 7
    last = feature_maps(model, seven)[-1]
    assert cam.layer == last.name and cam.coarse.shape == last.maps.shape[1:]
    assert cam.heatmap.shape == (28, 28) and float(cam.heatmap.min()) >= 0 and float(cam.heatmap.max()) == 1.0
    assert not any(m._forward_hooks for m in model.modules())
    assert all(p.grad is None for p in model.parameters())  # only the activations' gradient was taken


def test_grad_cam_needs_a_conv_layer() -> None:
    assert grad_cam(build_model("mlp").eval(), torch.zeros((1, 1, 28, 28))) is None


# ---------------------------------------------------------------------------------------------
# Embedding projector


def test_pca_places_the_drawing_as_the_fitted_pca_transforms_it(default: LoadedCheckpoint, mnist: Dataset) -> None:
    features, _ = image_features(default.model, mnist.test_images[:500], default.normalization)
    pca, points = fit_pca(features)
    np.testing.assert_allclose(points, pca.transform(features.double().numpy()), atol=1e-8)
    drawing = features[7] * 1.3
    np.testing.assert_allclose(pca_place(pca, drawing), pca.transform(drawing.double().numpy()[None])[0], atol=1e-12)


def test_tsne_places_the_drawing_at_its_neighbours_mean(default: LoadedCheckpoint, mnist: Dataset) -> None:
    features, _ = image_features(default.model, mnist.test_images[:300], default.normalization)
    sample = subsample(300, 120, seed=0)
    assert len(set(sample.tolist())) == 120 and sample.tolist() == sorted(sample.tolist())
    points = fit_tsne(features[sample])
    assert points.shape == (120, 2)
    drawing = features[200] * 0.7 + features[201] * 0.3  # a new point, as a drawing is
    place, neighbours = tsne_place(points, features[sample], drawing, k=5)
    reference = cosine_similarity(drawing.double().numpy()[None], features[sample].double().numpy())[0]
    expected = np.argsort(-reference, kind="stable")[:5]
    assert list(neighbours) == expected.tolist()
    np.testing.assert_allclose(place, points[expected].mean(0))
