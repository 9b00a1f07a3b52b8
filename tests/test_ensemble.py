"""The accuracy mode: shifted copies of the test images, members averaged, checked against the engine's own
evaluation of the shipped model and against shifts done by hand."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from core import ensemble
from core.__main__ import main
from core.checkpoints import load_checkpoint
from core.training import ConfigError, TaskConfig, TrainData, accuracy_of, evaluate, loss_function

DEFAULT = "checkpoints/default/model.pt"


def shifted_by_hand(images: torch.Tensor, down: int, right: int) -> torch.Tensor:
    """torch.roll, then black out the rows and columns that wrapped round: the reference for shift_images."""
    rolled = torch.roll(images, shifts=(down, right), dims=(-2, -1)).clone()
    if down > 0:
        rolled[..., :down, :] = 0
    if down < 0:
        rolled[..., down:, :] = 0
    if right > 0:
        rolled[..., :, :right] = 0
    if right < 0:
        rolled[..., :, right:] = 0
    return rolled


@pytest.mark.parametrize(("down", "right"), [(0, 0), (1, 0), (-1, 0), (0, 1), (0, -1), (2, -3)])
def test_shift_moves_whole_pixels_and_lets_nothing_wrap_round(mnist, down, right):
    images = mnist.test_images[:16]
    moved = ensemble.shift_images(images, down, right)
    assert moved.shape == images.shape and moved.dtype == torch.uint8
    assert torch.equal(moved, shifted_by_hand(images, down, right))


def test_one_look_per_image_is_the_engines_own_evaluation(mnist):
    loaded = load_checkpoint(DEFAULT)
    count = 2000
    data = TrainData(mnist.train_images[:1], mnist.train_labels[:1], mnist.test_images[:count],
                     mnist.test_labels[:count], loaded.normalization, mnist.classes)
    _, engine_probs = evaluate(loaded.model, data, TaskConfig(), "logits", loss_function(TaskConfig(), "logits"))
    ours = ensemble.tta_probabilities(loaded.model, mnist.test_images[:count], loaded.normalization, shifts=((0, 0),))
    assert torch.allclose(ours, engine_probs, atol=1e-5)
    result = ensemble.evaluate_ensemble([DEFAULT, DEFAULT], mnist, test_subset=count)
    assert result.member_accuracies[0] == pytest.approx(accuracy_of(engine_probs, mnist.test_labels[:count],
                                                                    TaskConfig()))
    # Two copies of one model average to that model: the same answers.
    assert result.ensemble_accuracy == result.member_accuracies[0]
    assert result.ensemble_tta_accuracy == result.member_tta_accuracies[0]


def test_shift_averaging_matches_shifting_by_hand(mnist):
    loaded = load_checkpoint(DEFAULT)
    images = mnist.test_images[:50]
    norm = loaded.normalization
    with torch.inference_mode():
        by_hand = torch.stack([
            F.softmax(loaded.model(((shifted_by_hand(images, d, r).float() / 255 - norm.mean) / norm.std)
                                   .unsqueeze(1)), dim=1)
            for d, r in ensemble.SHIFTS
        ]).mean(0)
    assert torch.allclose(ensemble.tta_probabilities(loaded.model, images, norm), by_hand, atol=1e-5)


def test_members_differ_only_in_their_seed():
    configs = ensemble.member_configs(3, "fast", epochs=2, first_seed=4)
    assert [config.seed for config in configs] == [4, 5, 6]
    assert {config.epochs for config in configs} == {2}
    with pytest.raises(ConfigError, match="at least one member"):
        ensemble.member_configs(0)


def test_cli_trains_members_as_runs_and_reports_every_figure(tmp_path, capsys):
    code = main(["ensemble", "--members", "2", "--epochs", "1", "--train-subset", "3200", "--test-subset", "300",
                 "--threads", "1", "--runs-dir", str(tmp_path), "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert len(result["members"]) == 2 and result["test_size"] == 300
    assert all(0.5 < accuracy <= 1 for accuracy in result["member_accuracies"])
    assert sorted(path.name for path in tmp_path.iterdir() if path.is_dir()) == sorted(result["members"])
    # The same runs again through --runs give the same figures: nothing is re-trained or re-drawn.
    assert main(["ensemble", "--runs", *result["members"], "--runs-dir", str(tmp_path), "--test-subset", "300",
                 "--json"]) == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert again["ensemble_tta_accuracy"] == result["ensemble_tta_accuracy"]


def test_cli_names_a_run_that_does_not_exist(tmp_path, capsys):
    assert main(["ensemble", "--runs", "no-such-run", "--runs-dir", str(tmp_path)]) == 2
    assert "no-such-run" in capsys.readouterr().err
