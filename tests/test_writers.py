"""core.writers: the other-writers and other-pens check sets, their scoring, and the shipped model on them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, recall_score

from core import writers
from core.__main__ import main
from core.checkpoints import load_checkpoint
from core.preprocess import ink_box, ink_map

DEFAULT_MODEL = "checkpoints/default/model.pt"


@pytest.fixture(scope="module")
def uci() -> writers.CheckSet:
    return writers.uci_digits()


@pytest.fixture(scope="module")
def shipped():
    return load_checkpoint(DEFAULT_MODEL)


def test_uci_digits_are_dark_on_white_scans_of_every_label(uci):
    assert len(uci.images) == len(uci.labels) == 1797
    assert np.bincount(uci.labels).tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    image = uci.images[0]
    assert image.shape == (80, 80, 3) and image.dtype == np.uint8
    assert image[0, 0].min() >= 250 and image.min() < 64  # white paper (Lanczos rings by a few levels), dark ink


def test_redrawn_digit_is_a_solid_stroke_on_the_canvas_and_reproducible(mnist):
    digit = mnist.test_images[0].numpy()
    first = writers.redraw_with_pen(digit, np.random.default_rng(3))
    again = writers.redraw_with_pen(digit, np.random.default_rng(3))
    assert first.shape == (writers.CANVAS, writers.CANVAS, 3) and np.array_equal(first, again)
    assert set(np.unique(first).tolist()) == {0, 255}  # pen ink or paper, nothing between
    box = ink_box(ink_map(first), 0.5)
    assert box is not None and 110 // 2 <= box[2] - box[0] <= writers.CANVAS  # a digit-sized stroke


def test_redrawn_set_keeps_the_test_labels_and_has_ink_everywhere(mnist):
    pens = writers.redrawn_mnist(count=60, seed=1)
    assert len(pens.images) == 60 and set(pens.labels.tolist()) <= set(range(10))
    assert all(ink_box(ink_map(image), 0.5) is not None for image in pens.images)


def test_score_matches_scikit_learn(uci, shipped):
    picks = np.arange(0, 1797, 9)  # 200 images, every label
    subset = writers.CheckSet("uci", [uci.images[i] for i in picks], uci.labels[picks])
    found = writers.score(shipped.model, writers.model_inputs(subset, shipped.normalization), subset)
    assert found.count == 200
    assert found.accuracy == pytest.approx(accuracy_score(subset.labels, found.predictions))
    expected = recall_score(subset.labels, found.predictions, average=None, labels=list(range(10)))
    assert found.per_class == pytest.approx(expected.tolist())


def test_shipped_model_scores_what_its_metrics_record_on_other_writers_and_pens(uci, shipped):
    """checkpoints/default/metrics.json's check-set figures are what the shipped model scores (the README's)."""
    recorded = json.loads((Path(DEFAULT_MODEL).parent / "metrics.json").read_text())["writers"]
    found = writers.score(shipped.model, writers.model_inputs(uci, shipped.normalization), uci)
    assert found.accuracy == pytest.approx(recorded["uci"]["accuracy"], abs=1e-6)
    assert found.correct == recorded["uci"]["correct"] == int((found.predictions == uci.labels).sum())
    assert found.per_class == pytest.approx(recorded["uci"]["per_digit"], abs=1e-4)
    assert found.accuracy >= 0.975  # the old default model: 96.1% (7s 87.7%, 4s 88.4%)
    pens = writers.redrawn_mnist(count=500)  # the first 500 of the recorded 2,000
    on_pens = writers.score(shipped.model, writers.model_inputs(pens, shipped.normalization), pens)
    assert on_pens.accuracy >= 0.98, on_pens.per_class


def test_cli_exports_pngs_per_label_and_scores_as_json(tmp_path, capsys):
    assert main(["writers", "export", str(tmp_path), "--sets", "uci"]) == 0
    counts = {int(folder.name): len(list(folder.glob("*.png"))) for folder in (tmp_path / "uci").iterdir()}
    assert counts == dict(enumerate([178, 182, 177, 183, 181, 182, 181, 179, 174, 180]))
    capsys.readouterr()
    assert main(["writers", "score", "--sets", "uci", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)["sets"]["uci"]
    assert result["count"] == 1797 and len(result["per_digit"]) == 10
    assert result["per_digit_count"] == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    assert sum(result["per_digit_correct"]) == result["correct"]
    recorded = json.loads((Path(DEFAULT_MODEL).parent / "metrics.json").read_text())["writers"]["uci"]
    assert result["correct"] == recorded["correct"]  # the shipped model's exact count, as metrics.json has it


def test_score_refuses_a_model_without_ten_digit_outputs(uci):
    import torch

    one_logit = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(28 * 28, 1))  # a one-vs-rest head
    subset = writers.CheckSet("uci", uci.images[:5], uci.labels[:5])
    with pytest.raises(ValueError, match="ten digits"):
        writers.score(one_logit, torch.zeros(5, 1, 28, 28), subset)
    assert one_logit.training  # its mode is given back
