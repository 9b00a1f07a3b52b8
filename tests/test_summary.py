"""Per-layer summary: hand-worked numbers, formula vs forward hooks, hygiene, CLI."""

import importlib.util
import json
import random
import subprocess
import sys

import pytest
import torch
from torch import nn

import core.__main__ as cli
from core.layers import build_layers
from core.models import build_model, list_architectures
from core.summary import (
    conv_output_size,
    summarize,
    summarize_architecture,
    summary_to_dict,
)

ARCHS = list_architectures()


@pytest.mark.parametrize(("args", "expected"), [
    ((28, 3, 1, 1), 28),  # seed000 conv: size kept
    ((28, 5, 1, 0), 24),  # seed002/003 conv1
    ((28, 2, 2, 0), 14),  # 2x2 pooling halves
    ((7, 2, 2, 0), 3),  # floor, not round
    ((1, 2, 2, 0), 0),  # nothing left
    ((10, 3, 2, 1), 5),
])
def test_conv_output_size_by_hand(args: tuple[int, int, int, int], expected: int) -> None:
    assert conv_output_size(*args) == expected


def test_conv_output_size_matches_pytorch() -> None:
    rng = random.Random(7)
    for _ in range(100):
        size, kernel, stride = rng.randint(10, 30), rng.randint(1, 5), rng.randint(1, 3)
        padding, dilation = rng.randint(0, 2), rng.randint(1, 2)
        conv = nn.Conv2d(1, 1, kernel, stride, padding, dilation)
        assert conv(torch.zeros(1, 1, size, size)).shape[-1] == conv_output_size(size, kernel, stride, padding,
                                                                                 dilation)


def test_seed000_rows_match_the_tutorial() -> None:
    rows = {row.name: row for row in summarize_architecture("seed000", num_outputs=1).layers}
    assert [rows[n].params for n in ("conv1", "conv2", "fc1", "fc2")] == [320, 18496, 401536, 129]
    assert rows["conv1"].output_shape == (32, 28, 28)
    assert rows["pool1"].output_shape == (32, 14, 14)
    assert rows["pool2"].output_shape == (64, 7, 7)
    assert rows["flatten1"].output_shape == (3136,)
    assert rows["conv1"].kernel == (3, 3) and rows["conv1"].padding == (1, 1) and rows["conv1"].in_channels == 1
    # Receptive field by hand: 3, then +1 (pool), +2*2 (conv at jump 2), +1*4 (pool at jump 2).
    assert [rows[n].receptive_field for n in ("conv1", "pool1", "conv2", "pool2")] == [3, 4, 8, 10]
    assert rows["fc1"].receptive_field == 28  # a Linear after Flatten sees the whole image
    assert rows["conv2"].activation_size == 64 * 14 * 14


def test_flatten_sizes_of_the_other_tutorials() -> None:
    def flatten_size(arch: str) -> int:
        return next(r.output_shape[0] for r in summarize_architecture(arch).layers if r.type == "Flatten")

    assert flatten_size("seed001") == 3136
    assert flatten_size("seed002") == 2000
    assert flatten_size("seed003") == 256


def test_macs_of_a_conv_and_a_linear_by_hand() -> None:
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Flatten(), nn.Linear(8 * 10 * 10, 7))
    conv, _, linear = summarize(model, input_shape=(3, 10, 10)).layers
    assert conv.macs == (8 * 10 * 10) * (3 * 3 * 3)  # every output value: a 3x3x3 dot product
    assert linear.macs == 800 * 7
    assert summarize_architecture("seed000").layers[0].macs == 28 * 28 * 32 * 9


@pytest.mark.parametrize("arch", ARCHS)
def test_formula_and_hooks_agree_on_registry_architectures(arch: str) -> None:
    summary = summarize_architecture(arch)
    windows = [r for r in summary.layers if r.type in ("Conv2d", "MaxPool2d", "AvgPool2d")]
    assert windows or arch == "mlp"  # every network but the MLP has some
    for row in windows:
        assert row.formula_output == row.output_shape[-2:]
    model = build_model(arch)
    assert summary.total_params == sum(p.numel() for p in model.parameters())
    assert summary.total_macs == sum(r.macs for r in summary.layers) > 0
    assert summary.layers[-1].output_shape == (10,)


def random_valid_stack(rng: random.Random) -> list[dict]:
    """A stack that fits 28x28 by construction, tracking the side the same way the tutorials do."""
    layers, side = [], 28
    for _ in range(rng.randint(1, 6)):
        kind = rng.choice(["Conv2d", "MaxPool2d", "AvgPool2d", "BatchNorm", "ReLU", "Tanh", "Dropout"])
        if kind == "Conv2d":
            padding = rng.randint(0, 2)
            kernel, stride = rng.randint(1, min(7, side + 2 * padding)), rng.randint(1, 3)
            layers.append({"type": kind, "out_channels": rng.randint(1, 8), "kernel_size": kernel,
                           "stride": stride, "padding": padding})
            side = (side + 2 * padding - kernel) // stride + 1
        elif kind in ("MaxPool2d", "AvgPool2d") and side >= 2:
            kernel = rng.randint(2, min(4, side))
            layers.append({"type": kind, "kernel_size": kernel, "stride": rng.randint(1, kernel)})
            side = (side - kernel) // layers[-1]["stride"] + 1
        elif kind not in ("MaxPool2d", "AvgPool2d"):
            layers.append({"type": kind})
    hidden = [{"type": "Linear", "out_features": rng.randint(2, 32)}, {"type": "ReLU"}] if rng.random() < .5 else []
    return [*layers, {"type": "Flatten"}, *hidden, {"type": "Linear", "out_features": 10}]


def test_formula_and_hooks_agree_on_random_custom_stacks() -> None:
    rng = random.Random(2024)
    for _ in range(60):
        layers = random_valid_stack(rng)
        summary = summarize_architecture("custom", options={"layers": layers})
        for row in summary.layers:
            if row.type in ("Conv2d", "MaxPool2d", "AvgPool2d"):
                assert row.formula_output == row.output_shape[-2:], layers
        assert summary.layers[-1].output_shape == (10,)


def test_summary_leaves_hooks_and_modes_as_they_were() -> None:
    model = build_model("seed000-improved")
    model.train()
    model.bn2.eval()  # a mixed state must come back exactly
    before = {name: m.training for name, m in model.named_modules()}
    summarize(model)
    assert {name: m.training for name, m in model.named_modules()} == before
    assert all(not m._forward_hooks for m in model.modules())


def test_hooks_are_removed_even_when_the_forward_pass_fails() -> None:
    model = build_layers([{"type": "Flatten"}, {"type": "Linear", "out_features": 10}])
    model.train()
    with pytest.raises(RuntimeError):
        summarize(model, input_shape=(1, 14, 14))  # built for 784 inputs, given 196
    assert all(not m._forward_hooks for m in model.modules())
    assert model.training


def test_weights_mb_counts_parameters_and_buffers() -> None:
    model = build_model("seed000-improved")
    expected = sum(t.numel() * t.element_size() for t in model.state_dict().values()) / 1e6
    assert summarize(model).weights_mb == pytest.approx(expected)
    assert summarize_architecture("seed000").weights_mb == pytest.approx(421642 * 4 / 1e6)


def test_summary_to_dict_is_json_with_the_promised_keys() -> None:
    data = json.loads(json.dumps(summary_to_dict(summarize_architecture("seed003"))))
    assert data["total_params"] == 44426
    assert {"name", "type", "output_shape", "params", "macs"} <= set(data["layers"][0])
    assert data["layers"][0]["output_shape"] == [6, 24, 24]


@pytest.fixture
def run_cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    """Run `python -m core ...` in-process with only the summary command registered."""
    monkeypatch.setattr(cli, "CLI_MODULES", ["core.summary"])

    def run(*argv: str) -> tuple[int, str, str]:
        code = cli.main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_cli_json_output(run_cli) -> None:
    code, out, _ = run_cli("summary", "--arch", "seed000", "--json", "--num-outputs", "1")
    data = json.loads(out)
    assert code == 0
    layers = {layer["name"]: layer for layer in data["layers"]}
    assert [layers[n]["params"] for n in ("conv1", "pool1", "conv2", "fc1")] == [320, 0, 18496, 401536]
    assert layers["fc1"]["macs"] == 3136 * 128 and layers["fc2"]["output_shape"] == [1]
    assert data["total_params"] == 420481
    assert data["total_macs"] == sum(layer["macs"] for layer in data["layers"])


def test_cli_table_and_list(run_cli) -> None:
    code, out, _ = run_cli("summary", "--arch", "seed001", "--options", '{"softmax": false}')
    assert code == 0 and "conv1" in out and "3136" in out and "Softmax" not in out
    code, out, _ = run_cli("summary", "--list")
    assert code == 0 and out.split() == ARCHS


@pytest.mark.parametrize("argv", [
    ("summary", "--arch", "resnet"),
    ("summary", "--arch", "seed001", "--options", "{not json"),
    ("summary", "--arch", "seed001", "--options", '{"softmax": 3}'),
    ("summary",),
])
def test_cli_user_errors_exit_2_with_a_message(run_cli, argv: tuple[str, ...]) -> None:
    code, out, err = run_cli(*argv)
    assert code == 2 and out == ""
    assert err.startswith("error: ") and "Traceback" not in err


@pytest.mark.skipif(importlib.util.find_spec("core.data") is None, reason="needs the data module's CLI too")
def test_cli_runs_as_a_module() -> None:
    result = subprocess.run([sys.executable, "-m", "core", "summary", "--arch", "seed003", "--json"],
                            capture_output=True, text=True, check=True, timeout=120)
    assert json.loads(result.stdout)["total_params"] == 44426
