"""The speedrun ladder: each rung differs from the one before in exactly the settings it names, and a
small real ladder measures every rung."""

from __future__ import annotations

import itertools
import json

import pytest
import torch

from core import speedrun
from core.__main__ import main
from core.speedrun import FAST_RUNG, LadderError, ladder_rungs, read_ladder, run_ladder, write_ladder
from core.training import flat_values, load_train_data, preset_config


def test_each_rung_changes_exactly_the_settings_it_names():
    rungs = ladder_rungs()
    assert rungs[0].key == "tutorial" and rungs[0].changes == ()
    for before, rung in itertools.pairwise(rungs):
        old, new = before.settings.flat(), rung.settings.flat()
        differing = {name for name in new if new[name] != old[name]}
        assert differing == set(rung.changes), rung.key
        assert differing, f"{rung.key} changes nothing"
    by_key = {rung.key: set(rung.changes) for rung in rungs}
    assert by_key["tensors"] == {"pipeline"}
    assert by_key["threads"] == {"threads"}
    assert by_key["fused"] == {"fused"}
    assert by_key["channels_last"] == {"channels_last"}
    assert by_key["relu_later"] == {"relu_later"}
    assert by_key["precision"] == {"precision"}
    assert by_key["compile"] == {"compile"}
    assert by_key["schedule"] == {"optimizer", "lr", "nesterov", "weight_decay", "scheduler", "epochs"}


def test_the_first_rung_is_the_tutorial_pipeline_and_the_fast_rung_is_the_fast_preset():
    rungs = {rung.key: rung.settings for rung in ladder_rungs()}
    tutorial = rungs["tutorial"]
    assert (tutorial.pipeline, tutorial.fused, tutorial.channels_last, tutorial.compile) == ("dataloader", False,
                                                                                             False, False)
    assert (tutorial.config.optimizer.name, tutorial.config.optimizer.lr, tutorial.config.scheduler.name) == (
        "adam", 1e-3, "none")
    fast = rungs[FAST_RUNG]
    assert (fast.pipeline, fast.fused, fast.channels_last, fast.relu_later, fast.compile) == (
        "tensors", True, True, True, False)  # the engine moves ReLU after pooling and flattening too
    assert tutorial.config.precision == "float32" and fast.config.precision == "auto"
    ours = flat_values(fast.config) | {"preset": ""}
    assert ours == flat_values(preset_config("fast", device="cpu", threads=2)) | {"preset": ""}


def test_a_small_real_ladder_measures_every_rung(tmp_path):
    result = run_ladder(train_subset=3200, test_subset=300, max_epochs=1, skip=("compile",))
    assert [row["key"] for row in result["rungs"]] == [r.key for r in ladder_rungs() if r.key != "compile"]
    assert (result["train_size"], result["test_size"]) == (3200, 300)
    for row in result["rungs"]:
        assert row["epochs"] == 1 and len(row["epoch_seconds"]) == 1 and row["epoch_seconds"][0] > 0
        assert row["epoch_accuracies"][-1] == row["test_accuracy"]
        assert round(row["test_accuracy"] * 300) == pytest.approx(row["test_accuracy"] * 300)  # right answers / 300
        assert row["test_accuracy"] > 0.5  # 50 steps of training already beat chance (10%) by far
        # 99% is out of reach on 3,200 images in one epoch: no time is claimed for it.
        assert row["seconds_to_99"] is None
    path = write_ladder(result, tmp_path / "ladder.json")
    assert read_ladder(path) == json.loads(json.dumps(result))


def test_a_reached_target_reports_the_time_of_the_epochs_it_took(mnist):
    rung = next(r for r in ladder_rungs(train_subset=2000, test_subset=200, max_epochs=3) if r.key == "tensors")
    data = load_train_data(rung.settings.config, torch.device("cpu"), mnist)
    result = speedrun.measure_rung(rung, data, target=0.5)
    assert result.seconds_to_99 == pytest.approx(sum(result.epoch_seconds))
    assert result.epoch_accuracies[-1] >= 0.5 and all(a < 0.5 for a in result.epoch_accuracies[:-1])


def test_a_broken_ladder_file_is_a_clear_error(tmp_path):
    assert read_ladder(tmp_path / "none.json") is None
    broken = tmp_path / "broken.json"
    broken.write_text('{"rungs": 3}')
    with pytest.raises(LadderError, match="not a speedrun ladder result"):
        read_ladder(broken)


def test_unknown_rung_to_skip_is_refused(capsys):
    assert main(["bench", "ladder", "--skip", "warp-drive", "--output", ""]) == 2
    assert "unknown rung 'warp-drive'" in capsys.readouterr().err
