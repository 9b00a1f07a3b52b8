"""Layer specs and the stack builder: ordered specs in, a named nn.Sequential out.

A spec is a small dict such as `{"type": "Conv2d", "out_channels": 8, "kernel_size": 3}`.
`build_layers` works the per-sample shape out layer by layer with the arithmetic the
tutorials teach, so Linear in-features are computed, never typed, and a stack that cannot
work is rejected with a message that names the layer and the numbers.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any

from torch import nn

from core.i18n import N_, Message, MessageError

LayerSpec = dict[str, Any]

INPUT_SHAPE = (1, 28, 28)  # (C, H, W) of one MNIST image


class ArchitectureError(MessageError):
    """An architecture or setting that cannot work; `message` is meant for the user."""


def layer_where(index: int, spec: LayerSpec | str) -> Message:
    """'layer 3 Conv2d(8, k=3, s=1, p=1)': which layer a problem is in, by 1-based position and label."""
    label = spec if isinstance(spec, str) else layer_label(spec)
    return Message(N_("layer %(index)d %(layer)s"), {"index": index, "layer": label})


def conv_output_size(in_size: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1) -> int:
    """Output side of a conv or pool window: floor((in + 2p - d(k-1) - 1) / s) + 1, i.e. floor((in+2p-k)/s)+1."""
    return (in_size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


# ---------------------------------------------------------------------------
# Layer specs: the settings each layer type takes, with their defaults.
# ---------------------------------------------------------------------------

_LAYER_DEFAULTS: dict[str, dict[str, Any]] = {
    "Conv2d": {"out_channels": 8, "kernel_size": 3, "stride": 1, "padding": 0},  # padding: int or "same"
    "MaxPool2d": {"kernel_size": 2, "stride": None, "padding": 0},  # stride None = kernel_size
    "AvgPool2d": {"kernel_size": 2, "stride": None, "padding": 0},
    "AdaptiveAvgPool2d": {"output_size": 1},  # 1 = global average pooling
    "BatchNorm": {},  # BatchNorm2d on feature maps, BatchNorm1d on vectors
    "ReLU": {},
    "LeakyReLU": {"negative_slope": 0.01},
    "GELU": {},
    "Tanh": {},
    "Sigmoid": {},
    "Dropout": {"p": 0.5},  # probability of zeroing a value during training
    "Flatten": {},
    "Linear": {"out_features": 10},
    "Softmax": {},
    "LogSoftmax": {},
}
LAYER_TYPES: tuple[str, ...] = tuple(_LAYER_DEFAULTS)
_POOLS = ("MaxPool2d", "AvgPool2d")
_ACTIVATIONS = {"ReLU": nn.ReLU, "GELU": nn.GELU, "Tanh": nn.Tanh, "Sigmoid": nn.Sigmoid}
HEAD_TAILS = ("Softmax", "LogSoftmax")  # the only layers allowed after the output Linear
_NAME_PREFIX = {"Conv2d": "conv", "MaxPool2d": "pool", "AvgPool2d": "pool", "AdaptiveAvgPool2d": "pool",
                "BatchNorm": "bn", "Linear": "fc", "LeakyReLU": "lrelu"}


def layer_defaults(layer_type: str) -> LayerSpec:
    """A fresh spec of this layer type with every setting at its default."""
    if layer_type not in _LAYER_DEFAULTS:
        raise ArchitectureError(Message(N_("unknown layer type %(kind)r; choose one of %(choices)s"),
                                        {"kind": str(layer_type), "choices": ", ".join(LAYER_TYPES)}))
    return {"type": layer_type, **_LAYER_DEFAULTS[layer_type]}


def layer_label(spec: LayerSpec) -> str:
    """Short human label of a spec, e.g. 'Conv2d(8, k=3, s=1, p=1)' or 'MaxPool2d(k=2)'."""
    kind = spec.get("type", "?")
    if kind == "Conv2d":
        return (f"Conv2d({spec.get('out_channels')}, k={spec.get('kernel_size')}, "
                f"s={spec.get('stride', 1)}, p={spec.get('padding', 0)})")
    if kind in _POOLS:
        stride = spec.get("stride")
        extra = "" if stride in (None, spec.get("kernel_size")) else f", s={stride}"
        extra += f", p={spec['padding']}" if spec.get("padding") else ""
        return f"{kind}(k={spec.get('kernel_size')}{extra})"
    if kind == "Linear":
        return f"Linear({spec.get('out_features')})"
    if kind == "Dropout":
        return f"Dropout({spec.get('p')})"
    return str(kind)


def checked_int(value: Any, what: str, where: Message, minimum: int, maximum: int | None = None) -> int:
    """An integer setting (integral floats accepted, bools not), at least `minimum` (and at most `maximum`)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not float(value).is_integer():
        raise ArchitectureError(Message(N_("%(where)s: %(what)s must be a whole number, got %(value)s"),
                                        {"where": where, "what": what, "value": repr(value)}))
    if value < minimum:
        raise ArchitectureError(Message(N_("%(where)s: %(what)s must be at least %(minimum)d, got %(value)d"),
                                        {"where": where, "what": what, "minimum": minimum, "value": int(value)}))
    if maximum is not None and value > maximum:
        raise ArchitectureError(Message(N_("%(where)s: %(what)s must be at most %(maximum)d, got %(value)d"),
                                        {"where": where, "what": what, "maximum": maximum, "value": int(value)}))
    return int(value)


def checked_fraction(value: Any, what: str, where: Message) -> float:
    """A probability-like setting in [0, 1)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
        raise ArchitectureError(Message(N_("%(where)s: %(what)s must be a number in [0, 1), got %(value)s"),
                                        {"where": where, "what": what, "value": repr(value)}))
    return float(value)


_MINIMUM = {"out_channels": 1, "kernel_size": 1, "stride": 1, "padding": 0, "output_size": 1, "out_features": 1}
_MAXIMUM = {"out_channels": 1024, "out_features": 16384}  # widths a CPU can still build and run in a summary


def _checked_setting(name: str, value: Any, where: Message) -> Any:
    """One setting of a layer spec, type- and range-checked."""
    if name == "p":
        return checked_fraction(value, name, where)
    if name == "negative_slope":
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ArchitectureError(Message(N_("%(where)s: negative_slope must be a number >= 0, got %(value)s"),
                                            {"where": where, "value": repr(value)}))
        return float(value)
    return checked_int(value, name, where, _MINIMUM[name], _MAXIMUM.get(name))


def normalize_layer(spec: Any, index: int) -> LayerSpec:
    """Validate one spec's settings and fill in defaults; `index` is 1-based for messages."""
    if not isinstance(spec, dict) or spec.get("type") not in _LAYER_DEFAULTS:
        kind = spec.get("type") if isinstance(spec, dict) else spec
        raise ArchitectureError(Message(N_("layer %(index)d: unknown layer type %(kind)s; choose one of %(choices)s"),
                                        {"index": index, "kind": repr(kind), "choices": ", ".join(LAYER_TYPES)}))
    kind = spec["type"]
    where = layer_where(index, kind)
    unknown = set(spec) - set(_LAYER_DEFAULTS[kind]) - {"type"}
    if unknown:
        names = ", ".join(sorted(unknown))
        raise ArchitectureError(
            Message(N_("%(where)s: unknown setting(s) %(names)s; allowed: %(allowed)s"),
                    {"where": where, "names": names, "allowed": ", ".join(_LAYER_DEFAULTS[kind])})
            if _LAYER_DEFAULTS[kind] else
            Message(N_("%(where)s: unknown setting(s) %(names)s; this layer takes none"),
                    {"where": where, "names": names}))
    out = layer_defaults(kind) | spec
    if kind in _POOLS and out["stride"] is None:
        out["stride"] = out["kernel_size"]  # PyTorch's default for pools
    for name, value in out.items():
        same_padding = kind == "Conv2d" and name == "padding" and value == "same"
        if name != "type" and not same_padding:
            out[name] = _checked_setting(name, value, where)
    if out.get("padding") == "same" and (out["stride"] != 1 or out["kernel_size"] % 2 == 0):
        raise ArchitectureError(Message(N_("%(where)s: padding 'same' needs stride 1 and an odd kernel"),
                                        {"where": where}))
    if kind in _POOLS and out["padding"] > out["kernel_size"] // 2:  # PyTorch refuses wider padding for pools
        raise ArchitectureError(Message(N_("%(where)s: padding %(padding)d is more than half the kernel %(kernel)d"),
                                        {"where": where, "padding": out["padding"], "kernel": out["kernel_size"]}))
    return out


# ---------------------------------------------------------------------------
# Building: specs -> modules, tracking the tensor shape per sample.
# ---------------------------------------------------------------------------

def _window_side(spec: LayerSpec, where: Message, height: int, width: int) -> tuple[int, int]:
    """(H, W) after a conv/pool window, or an error naming every size when the window does not fit."""
    kernel, stride = spec["kernel_size"], spec["stride"]
    padding = (kernel - 1) // 2 if spec.get("padding") == "same" else spec["padding"]
    out_h, out_w = (conv_output_size(side, kernel, stride, padding) for side in (height, width))
    if out_h < 1 or out_w < 1:
        raise ArchitectureError(Message(
            N_("%(where)s: input %(height)d×%(width)d, kernel %(kernel)d, padding %(padding)d, stride %(stride)d: "
               "the output would be %(out_h)d×%(out_w)d, so the kernel must be at most %(largest)d "
               "(the padded input's side)"),
            {"where": where, "height": height, "width": width, "kernel": kernel, "padding": padding, "stride": stride,
             "out_h": max(out_h, 0), "out_w": max(out_w, 0), "largest": min(height, width) + 2 * padding}))
    return out_h, out_w


def _build_layer(spec: LayerSpec, where: Message, shape: tuple[int, ...]) -> tuple[nn.Module, tuple[int, ...]]:
    """One module for a normalized spec, and the per-sample shape it outputs."""
    kind = spec["type"]
    if kind in ("Conv2d", *_POOLS, "AdaptiveAvgPool2d") and len(shape) != 3:
        raise ArchitectureError(Message(N_("%(where)s: input is a flat vector of %(size)d values; %(kind)s needs a "
                                           "C×H×W feature map, so put it before the Flatten"),
                                        {"where": where, "size": shape[0], "kind": kind}))
    if kind == "Linear" and len(shape) != 1:
        raise ArchitectureError(Message(N_("%(where)s: input is a %(shape)s feature map; add a Flatten before the "
                                           "first Linear"), {"where": where, "shape": "×".join(map(str, shape))}))
    if kind == "Conv2d":
        channels, height, width = shape
        out_h, out_w = _window_side(spec, where, height, width)
        conv = nn.Conv2d(channels, spec["out_channels"], spec["kernel_size"], spec["stride"], spec["padding"])
        return conv, (spec["out_channels"], out_h, out_w)
    if kind in _POOLS:
        channels, height, width = shape
        out_h, out_w = _window_side(spec, where, height, width)
        pool_type = nn.MaxPool2d if kind == "MaxPool2d" else nn.AvgPool2d
        return pool_type(spec["kernel_size"], spec["stride"], spec["padding"]), (channels, out_h, out_w)
    if kind == "AdaptiveAvgPool2d":
        size = spec["output_size"]
        if size > min(shape[1:]):
            raise ArchitectureError(Message(N_("%(where)s: input is %(height)d×%(width)d, smaller than output "
                                               "%(size)d×%(size)d"),
                                            {"where": where, "height": shape[1], "width": shape[2], "size": size}))
        return nn.AdaptiveAvgPool2d(size), (shape[0], size, size)
    if kind == "BatchNorm":
        return (nn.BatchNorm2d(shape[0]) if len(shape) == 3 else nn.BatchNorm1d(shape[0])), shape
    if kind == "Flatten":
        return nn.Flatten(), (math.prod(shape),)
    if kind == "Linear":
        return nn.Linear(shape[0], spec["out_features"]), (spec["out_features"],)
    if kind in ("Softmax", "LogSoftmax"):
        return (nn.Softmax(dim=1) if kind == "Softmax" else nn.LogSoftmax(dim=1)), shape
    if kind == "Dropout":
        return nn.Dropout(spec["p"]), shape
    if kind == "LeakyReLU":
        return nn.LeakyReLU(spec["negative_slope"]), shape
    return _ACTIVATIONS[kind](), shape


def build_layers(specs: list[LayerSpec], input_shape: tuple[int, ...] = INPUT_SHAPE) -> nn.Sequential:
    """An nn.Sequential of the given specs, named conv1, bn1, relu1, pool1, fc1...; rejects stacks that cannot work."""
    modules: OrderedDict[str, nn.Module] = OrderedDict()
    counts: dict[str, int] = {}
    shape = tuple(input_shape)
    for index, raw in enumerate(specs, start=1):
        spec = normalize_layer(raw, index)
        module, shape = _build_layer(spec, layer_where(index, spec), shape)
        prefix = _NAME_PREFIX.get(spec["type"], spec["type"].lower())
        counts[prefix] = counts.get(prefix, 0) + 1
        modules[f"{prefix}{counts[prefix]}"] = module
    return nn.Sequential(modules)


def insert_position(layers: list[LayerSpec], layer_type: str) -> int:
    """Where a new layer of this type fits by default, as the index it gets (0 = before the first layer).

    Feature-map layers (Conv2d, pools) go just before the first Flatten, where the map still has a
    height and a width; every other layer goes just before the output layer, which must stay last.
    """
    if layer_type in ("Conv2d", *_POOLS, "AdaptiveAvgPool2d"):
        flatten = next((index for index, spec in enumerate(layers) if spec.get("type") == "Flatten"), None)
        if flatten is not None:
            return flatten
    head = output_layer_index(layers)
    return len(layers) if head is None else head


def output_layer_index(layers: list[LayerSpec]) -> int | None:
    """0-based index of the output Linear: the last layer, or the last before a Softmax/LogSoftmax."""
    head = len(layers) - 1
    while head >= 0 and layers[head].get("type") in HEAD_TAILS:
        head -= 1
    return head if head >= 0 and layers[head].get("type") == "Linear" else None
