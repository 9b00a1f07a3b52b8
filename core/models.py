"""The one registry of network architectures: the tutorials' networks, ours, and the custom stack.

Each architecture is a small frozen options dataclass plus a recipe that turns the options
into layer specs; `core.layers.build_layers` stacks them into a named nn.Sequential
(conv1, bn1, relu1, pool1, fc1...), so every network is built, checked and summarized the
same way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

import torch
from torch import nn

from core.i18n import N_, Message
from core.layers import (
    HEAD_TAILS,
    INPUT_SHAPE,
    ArchitectureError,
    LayerSpec,
    build_layers,
    checked_fraction,
    checked_int,
    layer_where,
    normalize_layer,
    output_layer_index,
)

__all__ = [  # ArchitectureError is defined with the builder; part of this module's public face too
    "INPUT_SHAPE",
    "ArchitectureError",
    "OutputKind",
    "arch_config",
    "architecture_layers",
    "build_model",
    "describe_architecture",
    "list_architectures",
    "output_kind",
]

OutputKind = Literal["logits", "log_softmax", "softmax"]


# ---------------------------------------------------------------------------
# Architecture options: one small frozen dataclass per family of networks.
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class TwoConvOptions:
    """seed000: conv-relu-pool twice, then FC hidden -> outputs."""

    channels1: int = 32  # out-channels of conv1 (3x3, padding 1)
    channels2: int = 64  # out-channels of conv2 (3x3, padding 1)
    hidden: int = 128  # units of fc1
    batchnorm: bool = False  # BatchNorm2d after each conv (the tutorial's first suggested improvement)
    dropout: float = 0.0  # Dropout before the last Linear (the second suggested improvement)


@dataclass(frozen=True)
class DemoOptions:
    """seed001: the nn.Sequential DemoModel."""

    channels1: int = 8  # out-channels of conv1 (3x3, padding 'same')
    channels2: int = 16  # out-channels of conv2 (3x3, padding 'same')
    softmax: bool = True  # end with Softmax, as the tutorial does (before a loss that applies its own)


@dataclass(frozen=True)
class DigitOptions:
    """seed002: the Digit model."""

    channels1: int = 10  # out-channels of conv1 (5x5)
    channels2: int = 20  # out-channels of conv2 (3x3)
    hidden: int = 500  # units of fc1


@dataclass(frozen=True)
class LeNetOptions:
    """seed003: the LeNet-5 style Net."""

    channels1: int = 6  # out-channels of conv1 (5x5)
    channels2: int = 16  # out-channels of conv2 (5x5)
    hidden1: int = 120  # units of fc1
    hidden2: int = 84  # units of fc2


@dataclass(frozen=True)
class MLPOptions:
    """The fully connected baseline."""

    hidden: int = 256  # units of the one hidden layer
    dropout: float = 0.0  # Dropout before the last Linear


@dataclass(frozen=True)
class SmallCNNOptions:
    """fastcnn / bestcnn: conv-BN-ReLU blocks with max-pooling and a small linear head."""

    channels1: int = 16  # out-channels of the 28x28 block
    channels2: int = 32  # out-channels of the 14x14 block
    channels3: int = 64  # out-channels of the 7x7 block
    dropout: float = 0.0  # Dropout before the last Linear


def _default_custom_layers() -> tuple[LayerSpec, ...]:
    """The starting stack of the custom builder: a small two-conv CNN."""
    return (
        {"type": "Conv2d", "out_channels": 8, "kernel_size": 3, "stride": 1, "padding": 1},
        {"type": "ReLU"},
        {"type": "MaxPool2d", "kernel_size": 2},
        {"type": "Conv2d", "out_channels": 16, "kernel_size": 3, "stride": 1, "padding": 1},
        {"type": "ReLU"},
        {"type": "MaxPool2d", "kernel_size": 2},
        {"type": "Flatten"},
        {"type": "Linear", "out_features": 10},
    )


@dataclass(frozen=True)
class CustomOptions:
    """A user-built stack; the output Linear's out_features is always set to num_outputs.

    Forcing (rather than checking) the head lets one stack serve both the 10-class and the
    one-logit tasks; arch_config stores the forced value, so the saved config is explicit.
    """

    layers: tuple[LayerSpec, ...] = field(default_factory=_default_custom_layers)  # ordered layer specs
    name: str = ""  # the name it was saved under (core.saved_archs), for labels; "" when unsaved


def _conv(channels: int, kernel: int, padding: int | str = 0) -> LayerSpec:
    return {"type": "Conv2d", "out_channels": channels, "kernel_size": kernel, "stride": 1, "padding": padding}


def _pool(kind: str = "MaxPool2d", kernel: int = 2) -> LayerSpec:
    return {"type": kind, "kernel_size": kernel}


def _fc(features: int) -> LayerSpec:
    return {"type": "Linear", "out_features": features}


_RELU: LayerSpec = {"type": "ReLU"}
_BN: LayerSpec = {"type": "BatchNorm"}
_FLATTEN: LayerSpec = {"type": "Flatten"}


def _dropout(p: float) -> list[LayerSpec]:
    return [{"type": "Dropout", "p": p}] if p > 0 else []


def _two_conv_layers(o: TwoConvOptions, num_outputs: int) -> list[LayerSpec]:
    bn = [_BN] if o.batchnorm else []
    return [_conv(o.channels1, 3, 1), *bn, _RELU, _pool(),  # (32, 14, 14)
            _conv(o.channels2, 3, 1), *bn, _RELU, _pool(),  # (64, 7, 7)
            _FLATTEN, _fc(o.hidden), _RELU, *_dropout(o.dropout), _fc(num_outputs)]


def _demo_layers(o: DemoOptions, num_outputs: int) -> list[LayerSpec]:
    softmax = [{"type": "Softmax"}] if o.softmax and num_outputs > 1 else []  # softmax of one value is always 1
    return [_conv(o.channels1, 3, "same"), _pool("AvgPool2d"), _BN, _RELU,  # (8, 14, 14)
            _conv(o.channels2, 3, "same"), _RELU,  # (16, 14, 14)
            _FLATTEN, _fc(num_outputs), *softmax]


def _digit_layers(o: DigitOptions, num_outputs: int) -> list[LayerSpec]:
    return [_conv(o.channels1, 5), _RELU, _pool(),  # (10, 12, 12)
            _conv(o.channels2, 3), _RELU,  # (20, 10, 10)
            _FLATTEN, _fc(o.hidden), _RELU, _fc(num_outputs),
            *([{"type": "LogSoftmax"}] if num_outputs > 1 else [])]  # log-softmax of one value is always 0


def _lenet_layers(o: LeNetOptions, num_outputs: int) -> list[LayerSpec]:
    return [_conv(o.channels1, 5), _RELU, _pool(),  # (6, 12, 12)
            _conv(o.channels2, 5), _RELU, _pool(),  # (16, 4, 4)
            _FLATTEN, _fc(o.hidden1), _RELU, _fc(o.hidden2), _RELU, _fc(num_outputs)]


def _mlp_layers(o: MLPOptions, num_outputs: int) -> list[LayerSpec]:
    return [_FLATTEN, _fc(o.hidden), _RELU, *_dropout(o.dropout), _fc(num_outputs)]


def _fast_layers(o: SmallCNNOptions, num_outputs: int) -> list[LayerSpec]:
    return [_conv(o.channels1, 3, 1), _BN, _RELU, _pool(),  # (16, 14, 14)
            _conv(o.channels2, 3, 1), _BN, _RELU, _pool(),  # (32, 7, 7)
            _conv(o.channels3, 3, 1), _BN, _RELU, _pool(),  # (64, 3, 3)
            _FLATTEN, *_dropout(o.dropout), _fc(num_outputs)]


def _best_layers(o: SmallCNNOptions, num_outputs: int) -> list[LayerSpec]:
    return [_conv(o.channels1, 3, 1), _BN, _RELU, _pool(),  # (16, 14, 14)
            _conv(o.channels2, 3, 1), _BN, _RELU,
            _conv(o.channels2, 3, 1), _BN, _RELU, _pool(),  # (32, 7, 7)
            _conv(o.channels3, 3, 1), _BN, _RELU, _pool(),  # (64, 3, 3)
            _FLATTEN, *_dropout(o.dropout), _fc(num_outputs)]


def _custom_layers(o: CustomOptions, num_outputs: int) -> list[LayerSpec]:
    """The user's specs with the output head forced to num_outputs (see CustomOptions)."""
    layers = [normalize_layer(spec, i) for i, spec in enumerate(o.layers, start=1)]
    head = output_layer_index(layers)
    if head is None:
        last = len(layers) - 1
        while last >= 0 and layers[last]["type"] in HEAD_TAILS:
            last -= 1
        where = layer_where(last + 1, layers[last]) if last >= 0 else Message(N_("the stack"))
        raise ArchitectureError(Message(N_("%(where)s: the network must end with a Linear output layer "
                                           "(optionally followed by Softmax or LogSoftmax)"), {"where": where}))
    if num_outputs == 1 and head < len(layers) - 1:
        raise ArchitectureError(Message(N_("%(where)s: over a single output it is constant (softmax 1, log-softmax "
                                           "0), so nothing could be learned; remove it"),
                                        {"where": layer_where(head + 2, layers[head + 1]["type"])}))
    layers[head] = layers[head] | {"out_features": num_outputs}
    return layers


@dataclass(frozen=True)
class Architecture:
    """A registry entry: options dataclass, layer recipe, and the page's explanation."""

    options_type: type
    layers: Callable[[Any, int], list[LayerSpec]]
    description: str
    defaults: dict[str, Any] = field(default_factory=dict)  # overrides of the dataclass defaults


_REGISTRY: dict[str, Architecture] = {
    "seed000": Architecture(TwoConvOptions, _two_conv_layers, N_(
        "The two-conv CNN of the 'is it an 8?' tutorial (seed 000): two 3x3 convolutions with padding 1 "
        "(1→32→64 channels), each followed by ReLU and 2x2 max-pooling (28→14→7), then a 3136→128 hidden "
        "layer and the output. The tutorial uses one output logit with BCEWithLogitsLoss for 'is it an 8?'; "
        "with 10 outputs it is a plain ten-class classifier. Its worked parameter counts are a good exercise: "
        "conv1 is (3×3×1)×32+32 = 320, not the 896 printed there.")),
    "seed000-improved": Architecture(TwoConvOptions, _two_conv_layers, N_(
        "Seed 000's network with the two improvements that tutorial suggests: BatchNorm2d after each "
        "convolution (faster, steadier training) and Dropout(0.5) before the last Linear layer "
        "(less over-fitting)."), {"batchnorm": True, "dropout": 0.5}),
    "seed001": Architecture(DemoOptions, _demo_layers, N_(
        "The nn.Sequential DemoModel of seed 001: a 'same'-padded 3x3 convolution to 8 channels, "
        "2x2 average pooling, BatchNorm and ReLU, a second convolution to 16 channels, then Flatten and one "
        "Linear 3136→10. Faithful to the tutorial it ends with Softmax, although it is trained with "
        "CrossEntropyLoss, which applies its own (log-)softmax: the loss then sees probabilities squashed "
        "twice and learns more slowly. Untick the softmax option to output plain logits. With a single "
        "one-vs-rest output the Softmax is left out, since the softmax of one value is always 1.")),
    "seed002": Architecture(DigitOptions, _digit_layers, N_(
        "The Digit model of seed 002: a 5x5 convolution to 10 channels (28→24), ReLU, 2x2 max-pooling "
        "(→12), a 3x3 convolution to 20 channels (→10), ReLU, then 2000→500→10 fully connected layers. "
        "It ends with log_softmax, so its natural loss is the negative log-likelihood (left out for a single "
        "one-vs-rest output, where it would always be 0).")),
    "seed003": Architecture(LeNetOptions, _lenet_layers, N_(
        "The LeNet-5 style Net of seed 003: two 5x5 convolutions (6 then 16 channels) without padding, "
        "each with ReLU and 2x2 max-pooling (28→24→12→8→4), then 256→120→84→10 fully connected layers. "
        "The tutorial finds the 256 with a num_flat_features helper; here it is computed from the shapes.")),
    "mlp": Architecture(MLPOptions, _mlp_layers, N_(
        "A plain multilayer perceptron baseline: flatten the 28x28 image to 784 values, one hidden layer "
        "with ReLU, then the output. It ignores that neighbouring pixels belong together, which is what the "
        "convolutional networks exploit.")),
    "fastcnn": Architecture(SmallCNNOptions, _fast_layers, N_(
        "Our small CPU-friendly CNN: three conv-BatchNorm-ReLU-maxpool blocks (16, 32, 64 channels; "
        "28→14→7→3) and one Linear head on the 64x3x3 features. BatchNorm lets it train with a high "
        "learning rate; few channels at full resolution keep it cheap (about 1.9 M multiply-accumulates "
        "per image). Meant for the quick training preset: the aim is 99% test accuracy on MNIST in 1-2 epochs.")),
    "bestcnn": Architecture(SmallCNNOptions, _best_layers, N_(
        "A somewhat bigger version of fastcnn with two convolutions at 14x14 and a little dropout: about "
        "twice the compute. The best-accuracy preset uses it at twice these widths (32, 64, 128 channels) with "
        "augmentation: about 99.7% in 15 epochs; the shipped default model is the same wide network."),
        {"dropout": 0.1}),
    "custom": Architecture(CustomOptions, _custom_layers, N_(
        "Your own stack of layers. The first Linear's in-features are computed from the shapes, and the "
        "last Linear always outputs as many values as the task needs (10 classes or 1 logit).")),
}


def list_architectures() -> list[str]:
    """Names of every registered architecture, in the order the page lists them."""
    return list(_REGISTRY)


def _entry(arch: str) -> Architecture:
    if arch not in _REGISTRY:
        raise ArchitectureError(Message(N_("unknown architecture %(arch)r; choose one of %(choices)s"),
                                        {"arch": str(arch), "choices": ", ".join(_REGISTRY)}))
    return _REGISTRY[arch]


def describe_architecture(arch: str) -> str:
    """One paragraph for learners: where the network comes from and what is special about it."""
    return _entry(arch).description


def _parse_options(arch: str, options: dict[str, Any] | None) -> Any:
    """The architecture's options dataclass from a (partial) dict; wrong names or types raise."""
    entry = _entry(arch)
    given = {**entry.defaults, **(options or {})}
    known = {f.name: f for f in fields(entry.options_type)}
    unknown = set(given) - set(known)
    if unknown:
        raise ArchitectureError(Message(N_("%(arch)s: unknown option(s) %(names)s; allowed: %(allowed)s"),
                                        {"arch": arch, "names": ", ".join(sorted(unknown)),
                                         "allowed": ", ".join(known)}))
    values: dict[str, Any] = {}
    for name, value in given.items():
        default = getattr(entry.options_type(), name)
        where = Message(N_("%(arch)s option"), {"arch": arch})
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise ArchitectureError(Message(N_("%(where)s: %(what)s must be true or false, got %(value)s"),
                                                {"where": where, "what": name, "value": repr(value)}))
            values[name] = value
        elif isinstance(default, int):
            values[name] = checked_int(value, name, where, 1)  # widths and sizes
        elif isinstance(default, float):
            values[name] = checked_fraction(value, name, where)  # dropout probabilities
        elif isinstance(default, str):  # a saved stack's name
            if not isinstance(value, str):
                raise ArchitectureError(Message(N_("%(where)s: %(what)s must be text, got %(value)s"),
                                                {"where": where, "what": name, "value": repr(value)}))
            values[name] = value
        elif isinstance(value, list | tuple):  # custom layer specs
            values[name] = tuple(value)
        else:
            raise ArchitectureError(Message(N_("%(where)s: %(what)s must be a list of layer specs, got %(value)s"),
                                            {"where": where, "what": name, "value": repr(value)}))
    return entry.options_type(**values)


def _check_outputs(num_outputs: Any) -> int:
    return checked_int(num_outputs, "num_outputs", Message(N_("the network")), 1)


def architecture_layers(arch: str, num_outputs: int = 10, options: dict[str, Any] | None = None) -> list[LayerSpec]:
    """The normalized layer specs that `build_model` stacks for this architecture."""
    parsed = _parse_options(arch, options)
    specs = _entry(arch).layers(parsed, _check_outputs(num_outputs))
    return [normalize_layer(spec, i) for i, spec in enumerate(specs, start=1)]


def arch_config(arch: str, num_outputs: int = 10, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """JSON-ready full config; `build_model(**arch_config(...))` rebuilds the same architecture."""
    parsed = _parse_options(arch, options)
    settings = asdict(parsed)
    if arch == "custom":  # store the stack with defaults filled in and the head forced
        settings["layers"] = _custom_layers(parsed, _check_outputs(num_outputs))
    return {"arch": arch, "num_outputs": _check_outputs(num_outputs), "options": settings}


def build_model(arch: str, num_outputs: int = 10, options: dict[str, Any] | None = None) -> nn.Module:
    """Build a registered architecture as an nn.Sequential with named layers.

    `num_outputs` is 10 (one logit per digit) or 1 (one logit for a one-vs-rest task);
    `options` are the architecture's settings (see its options dataclass); anything
    that cannot work raises ArchitectureError with a message for the user.
    """
    return build_layers(architecture_layers(arch, num_outputs, options))


def probabilities(outputs: torch.Tensor, kind: str) -> torch.Tensor:
    """(B, K) network outputs -> (B, K) probabilities; one output is a binary logit."""
    if outputs.shape[-1] == 1:
        return torch.sigmoid(outputs)
    if kind == "softmax":
        return outputs
    if kind == "log_softmax":
        return outputs.exp()
    return torch.softmax(outputs, dim=-1)


def output_kind(model: nn.Module) -> OutputKind:
    """What the network's last op produces, so the trainer can pick a matching loss."""
    declared = getattr(model, "output_kind", None)
    if declared in ("logits", "log_softmax", "softmax"):  # hand-written modules may declare it
        return declared
    last: nn.Module = model
    while isinstance(last, nn.Sequential) and len(last) > 0:
        last = last[-1]
    if isinstance(last, nn.LogSoftmax):
        return "log_softmax"
    if isinstance(last, nn.Softmax):
        return "softmax"
    return "logits"

