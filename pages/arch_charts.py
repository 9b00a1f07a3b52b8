"""Tables, Plotly figures and worked formulas for the Architecture page (no widgets here)."""

from __future__ import annotations

from typing import Any

import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from core.summary import LayerRow, ModelSummary
from pages.lang import _

POOL_TYPES = ("MaxPool2d", "AvgPool2d")
WINDOW_TYPES = ("Conv2d", *POOL_TYPES)  # layers with the out = floor((in+2p-k)/s)+1 formula
def count_columns() -> dict[str, Any]:
    """Column settings of the count columns (their names in the session's language): 401536 -> 401,536."""
    return {name: st.column_config.NumberColumn(format="localized")
            for name in (_("params"), "MACs", _("activations"), _("MACs per image"))}


def shape_text(shape: tuple[int, ...]) -> str:
    """(32, 14, 14) -> '32×14×14'."""
    return "×".join(map(str, shape))


def layer_frame(summary: ModelSummary) -> pd.DataFrame:
    """One row per executed layer, with learner-friendly column names."""
    return pd.DataFrame([{
        "#": row.index,
        _("layer"): row.name,
        _("type"): row.type,
        _("input"): shape_text(row.input_shape),
        _("output"): shape_text(row.output_shape),
        _("params"): row.params,
        "MACs": row.macs,
        _("receptive field"): f"{row.receptive_field}×{row.receptive_field}",
        _("activations"): row.activation_size,
    } for row in summary.layers])


def shape_flow_figure(summary: ModelSummary) -> go.Figure:
    """Two bar panels along the network: spatial side (top) and channels or features (bottom)."""
    steps = [(_("input"), summary.input_shape)] + [
        (row.name, row.output_shape) for row in summary.layers if row.output_shape != row.input_shape]
    names = [name for name, _ in steps]
    spatial = [shape[-1] if len(shape) == 3 else None for _, shape in steps]
    depth = [shape[0] for _, shape in steps]
    colors = ["#4C78A8" if len(shape) == 3 else "#F58518" for _, shape in steps]  # map vs vector
    labels = [shape_text(shape) for _, shape in steps]
    figure = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                           subplot_titles=(_("height = width of the feature map (pixels)"),
                                           _("channels (blue) or vector length (orange), log scale")))
    map_labels = [label if side else "" for label, side in zip(labels, spatial, strict=True)]  # vectors have no height
    figure.add_bar(x=names, y=spatial, text=map_labels, textposition="outside", marker_color=colors,
                   hovertemplate="%{x}: %{text}<extra></extra>", row=1, col=1)
    figure.add_bar(x=names, y=depth, text=labels, textposition="outside", marker_color=colors,
                   hovertemplate="%{x}: %{text}<extra></extra>", row=2, col=1)
    figure.update_yaxes(type="log", row=2, col=1)
    figure.update_yaxes(range=[0, max(s for s in spatial if s) * 1.25] if any(spatial) else None, row=1, col=1)
    figure.update_layout(showlegend=False, height=520, margin={"t": 40, "b": 10, "l": 10, "r": 10},
                         uniformtext_minsize=9, uniformtext_mode="hide")
    return figure


def comparison_frame(summaries: dict[str, ModelSummary]) -> pd.DataFrame:
    """Totals of several networks side by side."""
    return pd.DataFrame([{
        _("architecture"): name,
        _("params"): s.total_params,
        _("MACs per image"): s.total_macs,
        _("weights (MB)"): round(s.weights_mb, 3),
        _("depth (conv + linear layers)"): s.depth,
        _("output"): s.output_kind,
    } for name, s in summaries.items()])


def comparison_figure(frame: pd.DataFrame) -> go.Figure:
    """Parameters and MACs per architecture as bars, on log scales so small and big nets both show."""
    figure = make_subplots(rows=1, cols=2, subplot_titles=(_("trainable parameters"),
                                                           _("multiply-accumulates per image")))
    names, params, macs = frame[_("architecture")], frame[_("params")], frame[_("MACs per image")]
    figure.add_bar(x=names, y=params, marker_color="#4C78A8", row=1, col=1,
                   text=[f"{v:,}" for v in params], textposition="outside")
    figure.add_bar(x=names, y=macs, marker_color="#54A24B", row=1, col=2,
                   text=[f"{v / 1e6:.2f} M" for v in macs], textposition="outside")
    figure.update_yaxes(type="log")
    figure.update_layout(showlegend=False, height=380, margin={"t": 40, "b": 10, "l": 10, "r": 10})
    return figure


def _num(value: int) -> str:
    """A count for LaTeX with thousands separators: 401536 -> 401{,}536."""
    return f"{value:,}".replace(",", "{,}")


def _floor_line(symbol: str, row: LayerRow, axis: int) -> str:
    """LaTeX of one output-size computation with the numbers filled in."""
    assert row.kernel is not None and row.stride is not None and row.padding is not None
    size, k, s, p = row.input_shape[-2 + axis], row.kernel[axis], row.stride[axis], row.padding[axis]
    return (rf"{symbol}_{{out}} = \left\lfloor \frac{{{symbol}_{{in}} + 2p - k}}{{s}} \right\rfloor + 1"
            rf" = \left\lfloor \frac{{{size} + 2\cdot{p} - {k}}}{{{s}}} \right\rfloor + 1"
            rf" = {row.output_shape[-2 + axis]}")


def size_formulas(row: LayerRow) -> list[str]:
    """Output-size formula of a Conv/Pool row: one line when map and window are square, else H and W."""
    assert row.kernel is not None and row.stride is not None and row.padding is not None
    square = all(pair[0] == pair[1] for pair in (row.input_shape[-2:], row.kernel, row.stride, row.padding))
    return [_floor_line("H", row, 0)] if square else [_floor_line("H", row, 0), _floor_line("W", row, 1)]


def param_formula(row: LayerRow) -> str | None:
    """LaTeX of the parameter count with the numbers filled in; None when the layer has no simple formula."""
    if row.type == "Conv2d" and row.kernel and row.in_channels:
        (kh, kw), c_in, c_out = row.kernel, row.in_channels, row.output_shape[0]
        if kh * kw * c_in * c_out + c_out == row.params:
            return (rf"\text{{params}} = k_h \cdot k_w \cdot C_{{in}} \cdot C_{{out}} + C_{{out}}"
                    rf" = {kh}\cdot{kw}\cdot{c_in}\cdot{c_out} + {c_out} = {_num(row.params)}")
    if row.type == "Linear":
        n_in, n_out = row.input_shape[-1], row.output_shape[-1]
        if n_in * n_out + n_out == row.params:
            return (rf"\text{{params}} = n_{{in}} \cdot n_{{out}} + n_{{out}}"
                    rf" = {n_in}\cdot{n_out} + {n_out} = {_num(row.params)}")
    return None


def macs_formula(row: LayerRow) -> str | None:
    """LaTeX of the multiply-accumulate count with the numbers filled in."""
    if row.type == "Conv2d" and row.kernel and row.in_channels:
        (c_out, h, w), (kh, kw) = row.output_shape, row.kernel
        return (rf"\text{{MACs}} = C_{{out}} H_{{out}} W_{{out}} \cdot C_{{in}} k_h k_w"
                rf" = {c_out}\cdot{h}\cdot{w}\cdot{row.in_channels}\cdot{kh}\cdot{kw} = {_num(row.macs)}")
    if row.type == "Linear":
        return (rf"\text{{MACs}} = n_{{in}} \cdot n_{{out}} = {row.input_shape[-1]}\cdot{row.output_shape[-1]}"
                rf" = {_num(row.macs)}")
    return None
