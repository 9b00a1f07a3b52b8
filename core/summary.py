"""Per-layer summary of a network: shapes, parameters, multiply-accumulates, receptive field.

Shapes come from forward hooks on one dummy pass; for Conv and Pool layers they are also
worked out with the closed-form formula out = floor((in + 2p - k) / s) + 1, and the two
must agree. Also home of the `python -m core summary` command.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from core.layers import INPUT_SHAPE, conv_output_size
from core.models import (
    ArchitectureError,
    OutputKind,
    build_model,
    list_architectures,
    output_kind,
)

__all__ = [  # conv_output_size lives with the builder in core.layers; re-exported for formula users
    "LayerRow",
    "ModelSummary",
    "conv_output_size",
    "format_table",
    "register_cli",
    "summarize",
    "summarize_architecture",
    "summary_to_dict",
]

Pair = tuple[int, int]
_WINDOW_TYPES = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)  # layers the formula applies to


@dataclass(frozen=True)
class LayerRow:
    """One executed leaf module of the network."""

    index: int  # 1-based position in forward order
    name: str  # module path, e.g. "conv1"
    type: str  # module class, e.g. "Conv2d"
    input_shape: tuple[int, ...]  # per sample (batch dim dropped), e.g. (1, 28, 28)
    output_shape: tuple[int, ...]  # per sample, e.g. (32, 28, 28)
    params: int  # trainable parameters of this layer
    macs: int  # multiply-accumulates per sample (Conv2d and Linear only; others count 0)
    receptive_field: int  # side, in input pixels, of the square one output value depends on
    activation_size: int  # output elements per sample (x4 for float32 bytes)
    kernel: Pair | None = None  # (kh, kw) for Conv/Pool layers
    stride: Pair | None = None  # (sh, sw)
    padding: Pair | None = None  # (ph, pw) per side
    in_channels: int | None = None  # Conv2d only, for the parameter formula
    formula_output: Pair | None = None  # (H, W) from floor((in + 2p - k) / s) + 1


@dataclass(frozen=True)
class ModelSummary:
    """Per-layer rows and totals for one network and input size."""

    input_shape: tuple[int, ...]  # (C, H, W) of one sample
    layers: tuple[LayerRow, ...]  # in forward order
    total_params: int  # trainable parameters of the whole model
    total_macs: int  # multiply-accumulates per sample
    weights_mb: float  # parameters + buffers (state_dict tensors), in MB of 10^6 bytes
    depth: int  # layers with weights that the signal passes through (Conv2d and Linear)
    output_kind: OutputKind  # what the last layer produces: logits, log_softmax or softmax


def _pair(value: Any) -> Pair:
    """(h, w) from an int or a 2-tuple module setting."""
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def _window(module: nn.Module) -> tuple[Pair, Pair, Pair, Pair] | None:
    """(kernel, stride, padding, dilation) of a Conv/Pool module; None when not a fixed window."""
    if not isinstance(module, _WINDOW_TYPES):
        return None
    kernel, stride = _pair(module.kernel_size), _pair(module.stride)
    dilation = _pair(getattr(module, "dilation", 1))
    if module.padding == "same":  # PyTorch pads d*(k-1) in total; symmetric only when that is even
        total = [d * (k - 1) for d, k in zip(dilation, kernel, strict=True)]
        if any(t % 2 for t in total):
            return None
        padding = (total[0] // 2, total[1] // 2)
    else:
        padding = _pair(module.padding)
    return kernel, stride, padding, dilation


def _macs(module: nn.Module, output: torch.Tensor) -> int:
    """Multiply-accumulates per sample: one per weight use, biases not counted."""
    per_sample = output[0].numel()
    if isinstance(module, nn.Conv2d):
        kh, kw = _pair(module.kernel_size)
        return per_sample * (module.in_channels // module.groups) * kh * kw
    if isinstance(module, nn.Linear):
        return per_sample * module.in_features
    return 0


def _first_tensor(value: Any) -> torch.Tensor | None:
    """The tensor a hook sees, unpacking tuples such as a module's positional inputs."""
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, tuple | list):
        return next((t for t in (_first_tensor(v) for v in value) if t is not None), None)
    return None


def _row(index: int, name: str, module: nn.Module, x: torch.Tensor, y: torch.Tensor,
         receptive: tuple[int, int], image_side: int) -> tuple[LayerRow, tuple[int, int]]:
    """A summary row plus the updated (receptive field, jump) after this layer."""
    rf, jump = receptive
    in_shape, out_shape = tuple(x.shape[1:]), tuple(y.shape[1:])
    window = _window(module)
    kernel = stride = padding = formula = None
    if window is not None:
        kernel, stride, padding, dilation = window
        if getattr(module, "ceil_mode", False) is False:
            formula = (conv_output_size(in_shape[-2], kernel[0], stride[0], padding[0], dilation[0]),
                       conv_output_size(in_shape[-1], kernel[1], stride[1], padding[1], dilation[1]))
            if formula != out_shape[-2:]:  # our arithmetic and PyTorch must agree
                raise RuntimeError(f"{name}: formula gives {formula}, forward pass gives {out_shape[-2:]}")
        rf, jump = rf + dilation[0] * (kernel[0] - 1) * jump, jump * stride[0]
    elif isinstance(module, nn.AdaptiveAvgPool2d | nn.AdaptiveMaxPool2d) and len(in_shape) == 3:
        step = in_shape[-2] // out_shape[-2]  # adaptive pooling acts like this kernel and stride
        rf, jump = rf + (in_shape[-2] - (out_shape[-2] - 1) * step - 1) * jump, jump * step
    elif len(in_shape) < 3 or len(out_shape) < 3:  # a flat vector mixes every position of the image
        rf = max(rf, image_side)
    params = sum(p.numel() for p in module.parameters(recurse=False) if p.requires_grad)
    row = LayerRow(index, name, type(module).__name__, in_shape, out_shape, params, _macs(module, y), rf,
                   math.prod(out_shape), kernel, stride, padding,
                   module.in_channels if isinstance(module, nn.Conv2d) else None, formula)
    return row, (rf, jump)


def summarize(model: nn.Module, input_shape: tuple[int, ...] = INPUT_SHAPE) -> ModelSummary:
    """Per-layer summary from forward hooks on one dummy sample.

    Hooks are removed and every module's train/eval flag is restored in `finally`.
    The receptive field assumes the layers run one after another (true for our
    Sequential models) and square windows (it follows the height).
    """
    records: list[tuple[str, nn.Module, torch.Tensor, torch.Tensor]] = []
    names = {module: name for name, module in model.named_modules()}

    def record(module: nn.Module, inputs: Any, output: Any) -> None:
        x, y = _first_tensor(inputs), _first_tensor(output)
        if x is not None and y is not None:
            records.append((names[module], module, x, y))

    leaves = [m for m in model.modules() if not list(m.children())]
    modes = {m: m.training for m in model.modules()}
    handles = [m.register_forward_hook(record) for m in leaves]
    try:
        model.eval()  # BatchNorm in train mode cannot take a single sample
        first = next(model.parameters(), None)
        dummy = torch.zeros(1, *input_shape, device=first.device if first is not None else None,
                            dtype=first.dtype if first is not None else None)  # (1, C, H, W)
        with torch.no_grad():
            model(dummy)
    finally:
        for handle in handles:
            handle.remove()
        for module, training in modes.items():
            module.training = training

    image_side = max(input_shape[1:], default=1)
    rows: list[LayerRow] = []
    receptive = (1, 1)  # (receptive field, jump = input pixels between neighbouring outputs)
    for index, (name, module, x, y) in enumerate(records, start=1):
        row, receptive = _row(index, name, module, x, y, receptive, image_side)
        rows.append(row)
    tensors = [*model.parameters(), *model.buffers()]
    return ModelSummary(
        input_shape=tuple(input_shape),
        layers=tuple(rows),
        total_params=sum(p.numel() for p in model.parameters() if p.requires_grad),
        total_macs=sum(row.macs for row in rows),
        weights_mb=sum(t.numel() * t.element_size() for t in tensors) / 1e6,
        depth=sum(row.type in ("Conv2d", "Linear") for row in rows),
        output_kind=output_kind(model),
    )


def summarize_architecture(arch: str, num_outputs: int = 10, options: dict[str, Any] | None = None,
                           input_shape: tuple[int, ...] = INPUT_SHAPE) -> ModelSummary:
    """Build a registry architecture and summarize it (the page's and the CLI's one call)."""
    return summarize(build_model(arch, num_outputs, options), input_shape)


def summary_to_dict(summary: ModelSummary) -> dict[str, Any]:
    """JSON-ready dict: `layers` (name, type, shapes, params, macs, ...) and the totals."""
    return json.loads(json.dumps(asdict(summary)))  # tuples become lists


def format_table(summary: ModelSummary) -> str:
    """The summary as a fixed-width text table for the terminal."""
    header = ("#", "name", "type", "output shape", "params", "MACs", "RF")
    body = [(str(r.index), r.name, r.type, "x".join(map(str, r.output_shape)), f"{r.params:,}",
             f"{r.macs:,}", str(r.receptive_field)) for r in summary.layers]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    right = {0, 4, 5, 6}  # numeric columns

    def line(cells: tuple[str, ...]) -> str:
        padded = (c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True)))
        return "  ".join(padded)

    rule = "-" * len(line(header))
    totals = (f"input {'x'.join(map(str, summary.input_shape))}   params {summary.total_params:,}   "
              f"MACs {summary.total_macs:,}   weights {summary.weights_mb:.3f} MB   depth {summary.depth}")
    return "\n".join([line(header), rule, *map(line, body), rule, totals])


def _run_cli(args: argparse.Namespace) -> int:
    """`python -m core summary`: print the table or JSON; user errors exit 2 with a message."""
    if args.list:
        print("\n".join(list_architectures()))
        return 0
    if not args.arch:
        print("error: give --arch NAME (see --list)", file=sys.stderr)
        return 2
    try:
        options = json.loads(args.options) if args.options else None
    except json.JSONDecodeError as error:
        raise ArchitectureError(f"--options is not valid JSON: {error}") from error
    if options is not None and not isinstance(options, dict):
        raise ArchitectureError("--options must be a JSON object, e.g. '{\"softmax\": false}'")
    summary = summarize_architecture(args.arch, args.num_outputs, options)
    print(json.dumps(summary_to_dict(summary), indent=2) if args.json else format_table(summary))
    return 0


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    """Add the `summary` sub-command."""
    parser = subparsers.add_parser("summary", help="per-layer shapes, parameters and MACs of an architecture")
    parser.add_argument("--arch", help="registry name, see --list")
    parser.add_argument("--list", action="store_true", help="print the registry's architecture names")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--num-outputs", type=int, default=10, help="10 classes or 1 one-vs-rest logit")
    parser.add_argument("--options", help="architecture options as JSON, e.g. '{\"softmax\": false}'")
    parser.set_defaults(func=_run_cli)
