"""The architecture registry: the tutorials' networks as written, options, configs, custom stacks."""

import json
import random

import pytest
import torch
from torch import nn

from core.layers import LAYER_TYPES, layer_defaults
from core.models import (
    ArchitectureError,
    arch_config,
    build_model,
    describe_architecture,
    list_architectures,
    output_kind,
)

ARCHS = list_architectures()


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def layer_types(model: nn.Module) -> list[str]:
    return [type(m).__name__ for m in model.children()]


def test_registry_names_include_tutorials_and_ours() -> None:
    for name in ["seed000", "seed000-improved", "seed001", "seed002", "seed003", "mlp", "fastcnn", "bestcnn",
                 "custom"]:
        assert name in ARCHS
    assert all(len(describe_architecture(a)) > 80 for a in ARCHS)


def test_seed000_matches_hand_worked_counts() -> None:
    model = build_model("seed000", num_outputs=1)
    # conv1 is (3*3*1)*32 + 32 = 320; the tutorial's 896 would need a 3-channel input.
    assert n_params(model.conv1) == 320
    assert n_params(model.conv2) == (3 * 3 * 32) * 64 + 64 == 18496
    assert n_params(model.fc1) == 3136 * 128 + 128 == 401536
    assert model.fc1.in_features == 64 * 7 * 7
    assert model.fc2.out_features == 1
    assert layer_types(model) == ["Conv2d", "ReLU", "MaxPool2d", "Conv2d", "ReLU", "MaxPool2d", "Flatten",
                                  "Linear", "ReLU", "Linear"]


def test_seed000_improved_adds_batchnorm_and_dropout() -> None:
    model = build_model("seed000-improved")
    assert layer_types(model) == ["Conv2d", "BatchNorm2d", "ReLU", "MaxPool2d", "Conv2d", "BatchNorm2d", "ReLU",
                                  "MaxPool2d", "Flatten", "Linear", "ReLU", "Dropout", "Linear"]
    assert model.dropout1.p == 0.5
    assert model.bn1.num_features == 32 and model.bn2.num_features == 64


def test_seed001_demo_model_is_faithful_with_optional_softmax() -> None:
    model = build_model("seed001")
    assert layer_types(model) == ["Conv2d", "AvgPool2d", "BatchNorm2d", "ReLU", "Conv2d", "ReLU", "Flatten",
                                  "Linear", "Softmax"]
    assert model.conv1.padding == "same" and model.conv2.out_channels == 16
    assert model.fc1.in_features == 14 * 14 * 16 == 3136
    assert output_kind(model) == "softmax"
    plain = build_model("seed001", options={"softmax": False})
    assert layer_types(plain)[-1] == "Linear" and output_kind(plain) == "logits"


def test_seed002_digit_flattens_2000() -> None:
    model = build_model("seed002")
    assert layer_types(model) == ["Conv2d", "ReLU", "MaxPool2d", "Conv2d", "ReLU", "Flatten", "Linear", "ReLU",
                                  "Linear", "LogSoftmax"]
    assert (model.conv1.kernel_size, model.conv2.kernel_size) == ((5, 5), (3, 3))
    assert model.fc1.in_features == 20 * 10 * 10 == 2000
    assert model.fc1.out_features == 500
    assert output_kind(model) == "log_softmax"


def test_seed003_lenet_flattens_256() -> None:
    model = build_model("seed003")
    assert model.fc1.in_features == 16 * 4 * 4 == 256
    assert [(m.in_features, m.out_features) for m in model if isinstance(m, nn.Linear)] == [
        (256, 120), (120, 84), (84, 10)]
    assert output_kind(model) == "logits"


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("num_outputs", [10, 1])
def test_forward_gives_one_row_per_image(arch: str, num_outputs: int) -> None:
    model = build_model(arch, num_outputs)
    out = model(torch.randn(3, 1, 28, 28))
    assert out.shape == (3, num_outputs)


@pytest.mark.parametrize("arch", ARCHS)
def test_arch_config_round_trips_through_json(arch: str) -> None:
    config = arch_config(arch, num_outputs=1)
    restored = json.loads(json.dumps(config))
    assert restored == config
    assert arch_config(**restored) == config  # filling defaults again changes nothing
    original, rebuilt = build_model(arch, 1), build_model(**restored)
    assert repr(rebuilt) == repr(original)
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {
        k: v.shape for k, v in original.state_dict().items()}


def test_arch_config_fills_every_option() -> None:
    config = arch_config("seed000-improved", options={"hidden": 64})
    assert config == {"arch": "seed000-improved", "num_outputs": 10, "options": {
        "channels1": 32, "channels2": 64, "hidden": 64, "batchnorm": True, "dropout": 0.5}}
    assert build_model(**config).fc1.out_features == 64


@pytest.mark.parametrize(("options", "words"), [
    ({"widht": 3}, "unknown option"),
    ({"channels1": "wide"}, "whole number"),
    ({"channels1": 0}, "at least 1"),
    ({"dropout": 1.5}, "[0, 1)"),
    ({"batchnorm": 1}, "true or false"),
])
def test_bad_options_raise_a_clear_error(options: dict, words: str) -> None:
    with pytest.raises(ArchitectureError, match="seed000") as error:
        build_model("seed000", options=options)
    assert words in str(error.value)


def test_unknown_architecture_lists_the_choices() -> None:
    with pytest.raises(ArchitectureError, match=r"unknown architecture 'resnet'.*seed000"):
        build_model("resnet")


def custom(*layers: dict, num_outputs: int = 10) -> nn.Module:
    return build_model("custom", num_outputs, {"layers": list(layers)})


CONV3 = {"type": "Conv2d", "out_channels": 4, "kernel_size": 3, "padding": 1}
POOL2 = {"type": "MaxPool2d", "kernel_size": 2}
FLAT = {"type": "Flatten"}
HEAD = {"type": "Linear", "out_features": 10}


def test_pooling_down_to_nothing_names_the_layer_and_sizes() -> None:
    # 28 -> 14 -> 7 -> 3 -> 1 -> 0
    with pytest.raises(ArchitectureError) as error:
        custom(POOL2, POOL2, POOL2, POOL2, POOL2, FLAT, HEAD)
    assert str(error.value).startswith("layer 5 MaxPool2d(k=2): input 1×1, kernel 2, padding 0, stride 2: "
                                       "the output would be 0×0")


def test_kernel_larger_than_input_is_rejected() -> None:
    with pytest.raises(ArchitectureError, match=r"layer 3 Conv2d\(4, k=5.*input 3×3, kernel 5"):
        custom(POOL2, {"type": "MaxPool2d", "kernel_size": 4}, CONV3 | {"kernel_size": 5, "padding": 0}, FLAT,
               HEAD)


def test_linear_on_a_feature_map_asks_for_flatten() -> None:
    with pytest.raises(ArchitectureError, match=r"layer 2 Linear\(10\): input is a 4×28×28 feature map; add a "
                                                r"Flatten"):
        custom(CONV3, HEAD)


def test_conv_after_flatten_is_rejected() -> None:
    with pytest.raises(ArchitectureError, match=r"layer 2 Conv2d.*flat vector of 784"):
        custom(FLAT, CONV3, HEAD)


def test_stack_must_end_with_a_linear_head() -> None:
    with pytest.raises(ArchitectureError, match="layer 4 ReLU: the network must end with a Linear"):
        custom(CONV3, FLAT, HEAD, {"type": "ReLU"})
    with pytest.raises(ArchitectureError, match="the stack"):
        custom()


@pytest.mark.parametrize(("layer", "words"), [
    ({"type": "Conv3d"}, "unknown layer type 'Conv3d'"),
    ({"type": "Conv2d", "kernal_size": 3}, "unknown setting(s) kernal_size"),
    ({"type": "Conv2d", "stride": 0}, "stride must be at least 1"),
    ({"type": "Dropout", "p": 1.0}, "p must be a number in [0, 1)"),
    ({"type": "MaxPool2d", "kernel_size": 2, "padding": 2}, "more than half the kernel"),
    ({"type": "Conv2d", "out_channels": 5000}, "out_channels must be at most 1024, got 5000"),
])
def test_bad_layer_settings_name_the_layer(layer: dict, words: str) -> None:
    with pytest.raises(ArchitectureError, match=r"^layer 1") as error:
        custom(layer, FLAT, HEAD)
    assert words in str(error.value)


def test_one_logit_heads_drop_the_softmax_that_would_be_constant() -> None:
    assert output_kind(build_model("seed001", 1)) == "logits"
    assert output_kind(build_model("seed002", 1)) == "logits"
    with pytest.raises(ArchitectureError, match="layer 4 LogSoftmax: over a single output it is constant"):
        custom(CONV3, FLAT, HEAD, {"type": "LogSoftmax"}, num_outputs=1)


def test_custom_head_is_forced_to_num_outputs() -> None:
    model = custom(CONV3, FLAT, HEAD | {"out_features": 5}, {"type": "LogSoftmax"}, num_outputs=3)
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 3)
    assert output_kind(model) == "log_softmax"
    layers = arch_config("custom", 1, {"layers": [CONV3, FLAT, HEAD]})["options"]["layers"]
    assert layers[-1] == {"type": "Linear", "out_features": 1}
    assert layers[0] == {"type": "Conv2d", "out_channels": 4, "kernel_size": 3, "stride": 1, "padding": 1}


def test_batchnorm_adapts_to_feature_maps_and_vectors() -> None:
    model = custom(CONV3, {"type": "BatchNorm"}, FLAT, {"type": "Linear", "out_features": 16},
                   {"type": "BatchNorm"}, HEAD)
    assert isinstance(model.bn1, nn.BatchNorm2d) and model.bn1.num_features == 4
    assert isinstance(model.bn2, nn.BatchNorm1d) and model.bn2.num_features == 16


def random_layer(rng: random.Random) -> dict:
    """Any layer type with random, individually valid settings (the stack as a whole may not work)."""
    spec = layer_defaults(rng.choice(LAYER_TYPES))
    if spec["type"] == "Conv2d":
        spec |= {"out_channels": rng.randint(1, 6), "kernel_size": rng.randint(1, 9), "stride": rng.randint(1, 3),
                 "padding": rng.randint(0, 3)}
    elif spec["type"] in ("MaxPool2d", "AvgPool2d"):
        kernel = rng.randint(1, 6)
        spec |= {"kernel_size": kernel, "stride": rng.randint(1, 4), "padding": rng.randint(0, kernel // 2)}
    elif spec["type"] == "AdaptiveAvgPool2d":
        spec["output_size"] = rng.randint(1, 8)
    elif spec["type"] == "Linear":
        spec["out_features"] = rng.randint(1, 24)
    return spec


def test_random_stacks_are_either_rejected_clearly_or_run() -> None:
    """Our shape checks are complete: whatever they accept, PyTorch can run."""
    rng = random.Random(1234)
    accepted = 0
    for _ in range(300):
        layers = [random_layer(rng) for _ in range(rng.randint(1, 7))]
        if rng.random() < 0.7:  # most stacks get a proper ending so that many are valid
            layers += [FLAT, HEAD]
        try:
            model = custom(*layers)
        except ArchitectureError as error:
            assert str(error).startswith(("layer ", "the stack")), str(error)
            continue
        accepted += 1
        assert model.eval()(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert accepted > 50  # the property was exercised on plenty of valid stacks
