"""Plotly figures that several pages share: metric curves, confusion matrices, per-class bars, ROC."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

TRAIN_COLOR, TEST_COLOR = "#2563eb", "#dc2626"


def smooth(values: Sequence[float], weight: float = 0.9) -> list[float]:
    """Exponential moving average with bias correction (TensorBoard's smoothing)."""
    smoothed, average = [], 0.0
    for count, value in enumerate(values, start=1):
        average = weight * average + (1 - weight) * value
        smoothed.append(average / (1 - weight**count))
    return smoothed


def line_figure(title: str, x_title: str, y_title: str, height: int = 320) -> go.Figure:
    figure = go.Figure()
    figure.update_layout(
        title=title, xaxis_title=x_title, yaxis_title=y_title, height=height, hovermode="x unified",
        margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h", y=-0.25),
    )
    return figure


def train_test_figure(epochs: Sequence[int], train: Sequence[float], test: Sequence[float], title: str,
                      y_title: str, percent: bool = False) -> go.Figure:
    """Train and test curves of one metric per epoch."""
    figure = line_figure(title, "epoch", y_title)
    scale = 100.0 if percent else 1.0
    for name, values, color in (("train", train, TRAIN_COLOR), ("test", test, TEST_COLOR)):
        figure.add_scatter(x=list(epochs), y=[v * scale for v in values], name=name, mode="lines+markers",
                           line=dict(color=color))
    if percent:
        figure.update_yaxes(ticksuffix="%")
    figure.update_xaxes(dtick=1 if len(epochs) <= 20 else None)
    return figure


def batch_loss_figure(steps: Sequence[int], losses: Sequence[float], weight: float = 0.95) -> go.Figure:
    """Per-batch training loss, raw (faint) and smoothed."""
    figure = line_figure("Training loss per batch", "optimizer step", "loss")
    figure.add_scatter(x=list(steps), y=list(losses), name="each batch", mode="lines",
                       line=dict(color=TRAIN_COLOR, width=1), opacity=0.25)
    figure.add_scatter(x=list(steps), y=smooth(losses, weight), name=f"smoothed (EMA {weight})", mode="lines",
                       line=dict(color=TRAIN_COLOR, width=2))
    figure.update_yaxes(type="log")
    return figure


def lr_figure(steps: Sequence[int], lrs: Sequence[float]) -> go.Figure:
    figure = line_figure("Learning rate", "optimizer step", "learning rate")
    figure.add_scatter(x=list(steps), y=list(lrs), name="lr", mode="lines", line=dict(color="#16a34a"))
    figure.update_yaxes(exponentformat="e")
    return figure


def confusion_figure(matrix: Sequence[Sequence[int | float]], labels: Sequence[str], title: str = "Confusion matrix",
                     diverging: bool = False) -> go.Figure:
    """Rows are true classes, columns predictions; the count is on hover and in each cell."""
    figure = go.Figure(
        go.Heatmap(
            z=matrix, x=list(labels), y=list(labels), text=matrix, texttemplate="%{text}",
            colorscale="RdBu" if diverging else "Blues", zmid=0 if diverging else None,
            hovertemplate="true %{y}, predicted %{x}: %{z}<extra></extra>",
        )
    )
    figure.update_yaxes(autorange="reversed", title="true class", type="category")
    figure.update_xaxes(title="predicted class", type="category", side="top")
    figure.update_layout(title=title, height=460, margin=dict(l=10, r=10, t=80, b=10))
    return figure


def per_class_figure(accuracies: Sequence[float], labels: Sequence[str]) -> go.Figure:
    figure = go.Figure(go.Bar(x=list(labels), y=[a * 100 for a in accuracies],
                              text=[f"{a:.1%}" for a in accuracies], textposition="outside"))
    low = min(a * 100 for a in accuracies)
    figure.update_yaxes(range=[max(0.0, low - 5), 100.5], ticksuffix="%", title="test accuracy")
    figure.update_xaxes(type="category", title="true class")
    figure.update_layout(title="Accuracy per class", height=340, margin=dict(l=10, r=10, t=40, b=10))
    return figure


def roc_figure(fpr: Sequence[float], tpr: Sequence[float], auc: float) -> go.Figure:
    figure = line_figure(f"ROC curve (AUC {auc:.4f})", "false-positive rate", "true-positive rate", height=380)
    figure.add_scatter(x=list(fpr), y=list(tpr), name="model", mode="lines", line=dict(color=TRAIN_COLOR))
    figure.add_scatter(x=[0, 1], y=[0, 1], name="chance", mode="lines", line=dict(color="grey", dash="dash"))
    return figure


# ---------------------------------------------------------------------------------------------
# Draw page: class probabilities and what the network sees


def probability_figure(probabilities: Sequence[float], labels: Sequence[str], predicted: int) -> go.Figure:
    """Bars of every class probability, the predicted one highlighted."""
    colors = [TEST_COLOR if index == predicted else "#94a3b8" for index in range(len(probabilities))]
    figure = go.Figure(go.Bar(
        x=list(labels), y=[p * 100 for p in probabilities], marker_color=colors,
        text=[f"{p:.0%}" for p in probabilities], textposition="outside", cliponaxis=False,
        hovertemplate="%{x}: %{y:.1f}%<extra></extra>",
    ))
    figure.update_yaxes(range=[0, 108], ticksuffix="%", title="probability")
    figure.update_xaxes(type="category")
    figure.update_layout(height=260, margin=dict(l=10, r=10, t=10, b=10))
    return figure


def tile_maps(maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(C, H, W) maps in a near-square grid with 1-px gaps, each scaled to its own max |value|; channel ids."""
    channels, height, width = maps.shape
    columns = int(np.ceil(np.sqrt(channels)))
    rows = int(np.ceil(channels / columns))
    tiles = np.full((rows * (height + 1) - 1, columns * (width + 1) - 1), np.nan)
    ids = np.full(tiles.shape, -1)
    peaks = np.abs(maps).reshape(channels, -1).max(1).clip(min=1e-6)
    for index in range(channels):
        row, col = divmod(index, columns)
        top, left = row * (height + 1), col * (width + 1)
        tiles[top : top + height, left : left + width] = maps[index] / peaks[index]
        ids[top : top + height, left : left + width] = index
    return tiles, ids


def feature_maps_figure(blocks: Sequence[tuple[str, np.ndarray]]) -> go.Figure:
    """Every conv block's channels as image grids side by side in one figure; hover names the channel."""
    figure = make_subplots(1, len(blocks), subplot_titles=[title for title, _ in blocks], horizontal_spacing=0.03)
    for index, (_, maps) in enumerate(blocks, start=1):
        tiles, ids = tile_maps(maps)
        figure.add_trace(go.Heatmap(
            z=tiles, customdata=ids, colorscale="Viridis", showscale=False, hoverongaps=False,
            hovertemplate="channel %{customdata}<br>activation / its max: %{z:.2f}<extra></extra>",
        ), 1, index)
        figure.update_yaxes(autorange="reversed", visible=False, scaleanchor=f"x{index}", constrain="domain",
                            row=1, col=index)
        figure.update_xaxes(visible=False, constrain="domain", row=1, col=index)
    figure.update_layout(height=380, margin=dict(l=10, r=10, t=40, b=10))
    return figure


def saliency_figure(model_input: np.ndarray, gradient: np.ndarray, class_name: str) -> go.Figure:
    """The 28x28 model input beside |d score / d pixel|, in one figure; each pixel's value on hover."""
    figure = make_subplots(1, 2, subplot_titles=("What the network sees (28×28)", f"Saliency for {class_name}"),
                           horizontal_spacing=0.12)
    for col, (image, scale, label) in enumerate(((model_input, "gray", "input"), (gradient, "Hot", "|gradient|")), 1):
        figure.add_trace(go.Heatmap(
            z=image, colorscale=scale, colorbar=dict(x=0.44 if col == 1 else 1.0, len=0.9),
            hovertemplate=f"row %{{y}}, col %{{x}}<br>{label} %{{z:.3g}}<extra></extra>",
        ), 1, col)
        figure.update_yaxes(autorange="reversed", scaleanchor=f"x{col}", constrain="domain", row=1, col=col)
        figure.update_xaxes(constrain="domain", row=1, col=col)
    figure.update_layout(height=400, margin=dict(l=10, r=10, t=40, b=10))
    return figure
