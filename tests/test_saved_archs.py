"""Custom stacks saved by name: round trip, damaged files, and training one as an ordinary run's config."""

from __future__ import annotations

import json

import pytest
import torch

from core import models
from core.i18n import Translator, render
from core.layers import ArchitectureError, insert_position
from core.saved_archs import (
    architectures_dir,
    list_saved_architectures,
    load_architecture,
    save_architecture,
    saved_options,
)
from core.training import config_to_dict, preset_config

STACK = [
    {"type": "Conv2d", "out_channels": 4, "kernel_size": 5},
    {"type": "ReLU"},
    {"type": "MaxPool2d", "kernel_size": 2},
    {"type": "Flatten"},
    {"type": "Linear", "out_features": 10},
]


def test_round_trip_fills_defaults_and_lists_the_name(tmp_path) -> None:
    path = save_architecture("tiny", STACK, tmp_path)
    assert path == tmp_path / ".architectures" / "tiny.json"
    assert list_saved_architectures(tmp_path) == ["tiny"]
    layers = load_architecture("tiny", tmp_path)
    assert layers[0] == {"type": "Conv2d", "out_channels": 4, "kernel_size": 5, "stride": 1, "padding": 0}
    assert layers[2] == {"type": "MaxPool2d", "kernel_size": 2, "stride": 2, "padding": 0}
    # Parameters against the hand count: conv 5·5·1·4 + 4 = 104; 28→24→12, so fc 4·12·12·10 + 10 = 5770.
    model = models.build_model("custom", 10, saved_options("tiny", tmp_path))
    assert sum(p.numel() for p in model.parameters()) == 104 + 5770
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    save_architecture("tiny", STACK[:1] + STACK[3:], tmp_path)  # the same name replaces it
    assert len(load_architecture("tiny", tmp_path)) == 3
    assert not list(architectures_dir(tmp_path).glob("*.tmp"))  # atomic write leaves nothing behind


def test_the_run_config_records_the_whole_stack(tmp_path) -> None:
    save_architecture("tiny", STACK, tmp_path)
    config = preset_config("fast", arch="custom", options=saved_options("tiny", tmp_path), epochs=1)
    recorded = config_to_dict(config)["model"]
    assert recorded["arch"] == "custom" and recorded["options"]["name"] == "tiny"
    assert recorded["options"]["layers"] == load_architecture("tiny", tmp_path)
    full = models.arch_config(recorded["arch"], 10, recorded["options"])  # what a checkpoint stores
    assert models.build_model(**full).conv1.kernel_size == (5, 5)


@pytest.mark.parametrize(("content", "reason"), [
    ("{not json", "it is not readable JSON"),
    ('{"name": "tiny"}', "it has no list of layers"),
    (json.dumps({"layers": [{"type": "Conv2d", "kernel_size": 40}, *STACK[3:]]}),
     "layer 1 Conv2d(8, k=40, s=1, p=0): input 28×28, kernel 40"),
])
def test_a_damaged_file_names_itself_and_the_problem(tmp_path, content: str, reason: str) -> None:
    folder = architectures_dir(tmp_path)
    folder.mkdir()
    (folder / "tiny.json").write_text(content)
    assert list_saved_architectures(tmp_path) == ["tiny"]
    with pytest.raises(ArchitectureError) as error:
        load_architecture("tiny", tmp_path)
    text = str(error.value)
    assert text.startswith(f"the saved architecture 'tiny' ({folder / 'tiny.json'}) is damaged: ") and reason in text
    chinese = render(error.value.message, Translator("zh_CN"))
    assert "tiny.json" in chinese and "已损坏" in chinese  # the frame is translated
    assert not any(word in chinese.replace(str(folder), "") for word in ("damaged", "JSON;", "list of", "input"))


@pytest.mark.parametrize("name", ["", "a b", "../up", "x" * 61, "a/b"])
def test_a_name_that_is_not_one_safe_file_name_is_refused(tmp_path, name: str) -> None:
    with pytest.raises(ArchitectureError, match="cannot name an architecture"):
        save_architecture(name, STACK, tmp_path)
    assert list_saved_architectures(tmp_path) == []


def test_an_invalid_stack_is_not_saved(tmp_path) -> None:
    with pytest.raises(ArchitectureError, match="add a Flatten"):
        save_architecture("broken", [STACK[0], STACK[4]], tmp_path)
    assert list_saved_architectures(tmp_path) == []


def test_new_layers_go_where_their_type_fits() -> None:
    assert insert_position(STACK, "Conv2d") == 3  # before the Flatten: it needs a feature map
    assert insert_position(STACK, "AvgPool2d") == 3
    assert insert_position(STACK, "Dropout") == 4  # before the output Linear
    assert insert_position([], "Conv2d") == 0
    assert insert_position(STACK[:2], "ReLU") == 2  # no head yet: at the end


def test_a_trained_saved_network_loads_compares_and_exports(tmp_path, mnist) -> None:
    from core import compare, export, runs
    from core.checkpoints import load_checkpoint
    from core.training import Finished, train

    save_architecture("tiny", STACK, tmp_path)
    config = preset_config("fast", arch="custom", options=saved_options("tiny", tmp_path), epochs=1,
                           train_subset=500, test_subset=200, threads=1)
    [*_, finished] = train(config, runs_root=tmp_path, dataset=mnist)
    assert isinstance(finished, Finished)
    loaded = load_checkpoint(finished.run_dir / runs.BEST_CHECKPOINT)  # what Draw does
    assert sum(p.numel() for p in loaded.model.parameters()) == 104 + 5770
    [record] = runs.list_runs(tmp_path)  # ".architectures" is not taken for a run folder
    assert record.arch == "custom" and "custom network tiny" in record.settings
    assert len(compare.metrics_frame([record])) == 1
    source = export.load_source(finished.run_dir / runs.BEST_CHECKPOINT, finished.run_dir)
    for fmt in ("script", "torchscript"):
        result = export.export(source, fmt, tmp_path / "out" / export.FILE_NAMES[fmt])
        assert result.verified_images > 0  # checked against the PyTorch model on real test images
