"""Plotly figures that several pages share: metric curves, confusion matrices, per-class bars, ROC."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from core.metrics import CHART_SMOOTHING, smooth
from core.sweep import Choice, FloatRange, Param, value_message, varied
from pages.lang import _, num, pct, say

if TYPE_CHECKING:
    import optuna

TRAIN_COLOR, TEST_COLOR = "#2563eb", "#dc2626"


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
    figure = line_figure(title, _("epoch"), y_title)
    scale = 100.0 if percent else 1.0
    for name, values, color in ((_("train"), train, TRAIN_COLOR), (_("test"), test, TEST_COLOR)):
        figure.add_scatter(x=list(epochs), y=[v * scale for v in values], name=name, mode="lines+markers",
                           line=dict(color=color))
    if percent:
        figure.update_yaxes(ticksuffix="%")
    figure.update_xaxes(dtick=1 if len(epochs) <= 20 else None)
    return figure


def batch_loss_figure(steps: Sequence[int], losses: Sequence[float], weight: float = CHART_SMOOTHING) -> go.Figure:
    """Per-batch training loss, raw (faint) and smoothed."""
    figure = line_figure(_("Training loss per batch"), _("optimizer step"), _("loss"))
    figure.add_scatter(x=list(steps), y=list(losses), name=_("each batch"), mode="lines",
                       line=dict(color=TRAIN_COLOR, width=1), opacity=0.25)
    smoothed = _("smoothed (EMA {weight})").format(weight=num(weight))
    figure.add_scatter(x=list(steps), y=smooth(losses, weight), name=smoothed, mode="lines",
                       line=dict(color=TRAIN_COLOR, width=2))
    figure.update_yaxes(type="log")
    return figure


def lr_figure(steps: Sequence[int], lrs: Sequence[float]) -> go.Figure:
    figure = line_figure(_("Learning rate"), _("optimizer step"), _("learning rate"))
    figure.add_scatter(x=list(steps), y=list(lrs), name="lr", mode="lines", line=dict(color="#16a34a"))
    figure.update_yaxes(exponentformat="e")
    return figure


def confusion_figure(matrix: Sequence[Sequence[int | float]], labels: Sequence[str], title: str | None = None,
                     diverging: bool = False) -> go.Figure:
    """Rows are true classes, columns predictions; the count is on hover and in each cell.

    `diverging` is for a difference of two matrices: red below zero, blue above, signed numbers,
    and blank cells where nothing changed.
    """
    text = [[f"{v:+g}" if v else "" for v in row] for row in matrix] if diverging else matrix
    figure = go.Figure(
        go.Heatmap(
            z=matrix, x=list(labels), y=list(labels), text=text, texttemplate="%{text}",
            colorscale="RdBu" if diverging else "Blues", zmid=0 if diverging else None,
            hovertemplate=_("true {true}, predicted {predicted}: {count}").format(
                true="%{y}", predicted="%{x}", count="%{z}") + "<extra></extra>",
        )
    )
    figure.update_yaxes(autorange="reversed", title=_("true class"), type="category")
    # Class names (Fashion-MNIST's, in either language) stand upright: plotly's slanted labels overlap up there.
    named = max(len(label) for label in labels) > 2
    figure.update_xaxes(title=_("predicted class"), type="category", side="top", tickangle=-90 if named else None)
    title = _("Confusion matrix") if title is None else title
    # The title sits at the very top, above the predicted-class axis that also lives up there.
    figure.update_layout(title=dict(text=title, y=0.99, yref="container", yanchor="top"), height=560 if named else 480,
                         margin=dict(l=10, r=10, t=170 if named else 90, b=10))
    return figure


def per_class_figure(accuracies: Sequence[float], labels: Sequence[str]) -> go.Figure:
    figure = go.Figure(go.Bar(x=list(labels), y=[a * 100 for a in accuracies],
                              text=[f"{a:.1%}" for a in accuracies], textposition="outside"))
    low = min(a * 100 for a in accuracies)
    figure.update_yaxes(range=[max(0.0, low - 5), 100.5], ticksuffix="%", title=_("test accuracy"))
    figure.update_xaxes(type="category", title=_("true class"))
    figure.update_layout(title=_("Accuracy per class"), height=340, margin=dict(l=10, r=10, t=40, b=10))
    return figure


def roc_figure(fpr: Sequence[float], tpr: Sequence[float], auc: float) -> go.Figure:
    figure = line_figure(_("ROC curve (AUC {auc})").format(auc=num(auc, 4)), _("false-positive rate"),
                         _("true-positive rate"), height=380)
    figure.add_scatter(x=list(fpr), y=list(tpr), name=_("model"), mode="lines", line=dict(color=TRAIN_COLOR))
    figure.add_scatter(x=[0, 1], y=[0, 1], name=_("chance"), mode="lines", line=dict(color="grey", dash="dash"))
    return figure


# Runs side by side (Compare page): one color per run, the same in every chart.
RUN_COLORS = ("#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#db2777", "#65a30d", "#4b5563",
              "#ca8a04")


@dataclass(frozen=True)
class RunStyle:
    """How one run looks in every chart of a page: legend name, color, and extra hover text."""

    name: str
    color: str
    hover: str = ""  # e.g. the run's key settings


def run_color(position: int) -> str:
    return RUN_COLORS[position % len(RUN_COLORS)]


def overlay_figure(lines: Sequence[tuple[RunStyle, Sequence[float], Sequence[float]]], title: str, x_title: str,
                   y_title: str, percent: bool = False, log_y: bool = False, whole_x: bool = False) -> go.Figure:
    """One line per run, (style, x, y) each; hovering a point shows the run's name and settings."""
    figure = line_figure(title, x_title, y_title, height=380)
    scale = 100.0 if percent else 1.0
    value = "%{y:.2f}%" if percent else "%{y:.4g}"
    for style, x, y in lines:
        figure.add_scatter(
            x=list(x), y=[v * scale for v in y], name=style.name, mode="lines+markers", line=dict(color=style.color),
            customdata=[[style.name, style.hover]] * len(x),  # names go in as data, never into the template
            hovertemplate=f"<b>%{{customdata[0]}}</b><br>{x_title} %{{x:.4g}}: {value}<br>%{{customdata[1]}}"
                          "<extra></extra>",
        )
    figure.update_layout(hovermode="closest")  # runs' x values differ (wall time): one run per tooltip
    longest = max((len(x) for _, x, _ in lines), default=0)
    if whole_x and longest <= 20:
        figure.update_xaxes(dtick=1)  # epochs: no ticks at 1.5
    if percent:
        figure.update_yaxes(ticksuffix="%")
    if log_y:
        figure.update_yaxes(type="log", exponentformat="e")
    return figure


def params_accuracy_figure(points: Sequence[tuple[RunStyle, int, float]],
                           others: Sequence[tuple[str, int, float]] = ()) -> go.Figure:
    """Best test accuracy against trainable parameters, one point per run; `others` drawn faint in grey."""
    figure = go.Figure()
    if others:
        figure.add_scatter(
            x=[p for _, p, _ in others], y=[a * 100 for _, _, a in others], text=[n for n, _, _ in others],
            name=_("other runs"), mode="markers", marker=dict(color="#9ca3af", size=8), opacity=0.6,
            hovertemplate="%{text}<br>" + _("{params} parameters").format(params="%{x:,}") + ": %{y:.2f}%"
                          "<extra></extra>",
        )
    for style, params, accuracy in points:
        figure.add_scatter(
            x=[params], y=[accuracy * 100], name=style.name, mode="markers+text", text=[style.name],
            textposition="top center", marker=dict(color=style.color, size=13, line=dict(color="white", width=1)),
            customdata=[[style.hover]],
            hovertemplate="<b>%{text}</b><br>" + _("{params} parameters").format(params="%{x:,}")
                          + ": %{y:.2f}%<br>%{customdata[0]}<extra></extra>",
        )
    counts = [p for _, p, _ in points] + [p for _, p, _ in others]
    low, high = math.log10(min(counts)), math.log10(max(counts))
    pad = max(0.15 * (high - low), 0.1)  # room for the names beside the points at either end
    figure.update_traces(cliponaxis=False)
    figure.update_xaxes(type="log", title=_("trainable parameters (log scale)"), range=[low - pad, high + pad])
    figure.update_yaxes(title=_("best test accuracy"), ticksuffix="%")
    figure.update_layout(title=_("Parameters against accuracy"), height=380, showlegend=False,
                         margin=dict(l=10, r=10, t=40, b=10))
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
    figure.update_yaxes(range=[0, 108], ticksuffix="%", title=_("probability"))
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
    hover = _("channel {channel}<br>activation / its max: {value}").format(channel="%{customdata}", value="%{z:.2f}")
    for index, (_title, maps) in enumerate(blocks, start=1):
        tiles, ids = tile_maps(maps)
        figure.add_trace(go.Heatmap(
            z=tiles, customdata=ids, colorscale="Viridis", showscale=False, hoverongaps=False,
            hovertemplate=hover + "<extra></extra>",
        ), 1, index)
        figure.update_yaxes(autorange="reversed", visible=False, scaleanchor=f"x{index}", constrain="domain",
                            row=1, col=index)
        figure.update_xaxes(visible=False, constrain="domain", row=1, col=index)
    figure.update_layout(height=380, margin=dict(l=10, r=10, t=40, b=10))
    return figure


def saliency_figure(model_input: np.ndarray, plain: np.ndarray, smooth: np.ndarray, class_name: str) -> go.Figure:
    """The 28x28 model input, its plain gradient map and its SmoothGrad map, side by side; values on hover."""
    panels = (
        (model_input, "gray", _("input"), _("What the network sees (28×28)")),
        (plain, "Hot", "|gradient|", _("Plain gradient for {label}").format(label=class_name)),
        (smooth, "Hot", "SmoothGrad", _("SmoothGrad for {label}").format(label=class_name)),
    )
    figure = make_subplots(1, len(panels), subplot_titles=[title for *_, title in panels], horizontal_spacing=0.08)
    for col, (image, scale, label, _title) in enumerate(panels, 1):
        right = figure.layout[f"xaxis{col if col > 1 else ''}"].domain[1]  # each colorbar just right of its map
        figure.add_trace(go.Heatmap(
            z=image, colorscale=scale, colorbar=dict(x=right + 0.005, len=0.9, thickness=12),
            hovertemplate=_("row {row}, col {col}<br>{label} {value}").format(
                row="%{y}", col="%{x}", label=label, value="%{z:.3g}") + "<extra></extra>",
        ), 1, col)
        figure.update_yaxes(autorange="reversed", scaleanchor=f"x{col}", constrain="domain", showticklabels=col == 1,
                            row=1, col=col)
        figure.update_xaxes(constrain="domain", row=1, col=col)
    figure.update_layout(height=400, margin=dict(l=10, r=10, t=40, b=10))
    return figure


# ---------------------------------------------------------------------------------------------
# Sweep page: Optuna's own figures in the page's words

OPTUNA_WORDS = ("Trial", "Objective Value", "Best Value", "Infeasible Trial", "Feasible Trial",
                "Hyperparameter Importance", "Hyperparameter")  # the English Optuna writes into its figures


def _swap_words(text: str, words: Mapping[str, str]) -> str:
    for english in sorted(OPTUNA_WORDS, key=len, reverse=True):  # "Hyperparameter Importance" before "Hyperparameter"
        text = text.replace(english, words.get(english, english))
    return text


def optuna_figure(figure: go.Figure, title: str, words: Mapping[str, str], height: int = 380) -> go.Figure:
    """An Optuna figure with its words replaced (`words`: Optuna's English -> the page's) and room for its labels.

    Axis titles, legend names, colorbar titles, tick labels and hover text are translated. Labels get room
    (automargin; slanted labels on log and category axes), and a log axis gets one tick per power of ten,
    written 10⁻³, instead of Plotly's 2 and 5 between the powers that run together on a narrow subplot.
    """
    def word(text: str | None) -> str | None:
        return words.get(text, text) if text else text

    def fit(axis: go.layout.XAxis | go.layout.YAxis) -> None:
        axis.update(title_text=word(axis.title.text), automargin=True)
        if axis.ticktext:
            axis.ticktext = [word(text) for text in axis.ticktext]
        if axis.type == "log":
            axis.update(dtick=1, exponentformat="power", minor_showgrid=False)
        if axis.type in ("log", "category"):  # powers of ten and choices side by side on a narrow subplot
            axis.tickangle = -30

    figure.for_each_xaxis(fit)
    figure.for_each_yaxis(fit)
    for trace in figure.data:
        if getattr(trace, "name", None):
            trace.name = word(trace.name)
        marker = getattr(trace, "marker", None)
        if marker is not None and getattr(marker, "colorbar", None) is not None and marker.colorbar.title.text:
            marker.colorbar.title.text = word(marker.colorbar.title.text)
        data = getattr(trace, "customdata", None)
        if data is not None:  # parallel coordinates: (name, value) pairs that its hover shows
            trace.customdata = [[words.get(item, item) if isinstance(item, str) else item for item in row]
                                if isinstance(row, list | tuple) else row for row in data]
        if trace.type == "bar" and trace.orientation == "h" and trace.y is not None:  # importances: one per setting
            trace.y = [word(name) for name in trace.y]
            trace.hovertemplate = "%{y}: %{x:.3f}<extra></extra>"
        template = getattr(trace, "hovertemplate", None)
        if template:  # one template, or one per bar
            trace.hovertemplate = ([_swap_words(text, words) for text in template] if isinstance(template, tuple | list)
                                   else _swap_words(template, words))
    figure.update_layout(title=title, height=height, margin=dict(l=10, r=10, t=60, b=10),
                         legend=dict(orientation="h", yanchor="top", y=-0.25, x=0, xanchor="left"))
    return figure


# Optuna leaves the axes to Plotly's autorange, which pads a lone point far beyond what an accuracy can be
# (0 to 1.5), and writes choices with repr() ('adam'). These fit its figures to what the study searched.


def _complete(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    import optuna

    return [trial for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
            if trial.value is not None]


def complete_values(study: optuna.Study) -> list[float]:
    """The final test accuracy (a fraction) of each complete trial."""
    return [trial.value for trial in _complete(study) if trial.value is not None]


def shown_settings(study: optuna.Study, space: Mapping[str, Param]) -> list[str] | None:
    """The settings the study varies that its complete trials have (all of them when it varies none)."""
    drawn = {name for trial in _complete(study) for name in trial.params}
    return [name for name in varied(dict(space)) if name in drawn] or None


def accuracy_range(values: Sequence[float]) -> tuple[float, float]:
    """Room around the accuracies (fractions) that never leaves [0, 1]; a lone value gets a point either side."""
    low, high = min(values), max(values)
    pad = max(0.01, 0.1 * (high - low))
    return max(0.0, low - pad), min(1.0, high + pad)


def percent_ticks(low: float, high: float) -> dict[str, str]:
    """Fractions written as percentages, with a decimal when the range is narrow."""
    return {"tickformat": ".1%" if high - low < 0.1 else ".0%"}


def whole_ticks(count: int) -> dict[str, Any]:
    """Ticks on whole numbers (trial numbers 0 … count-1), about ten at most: every 1, 2, 5, 10, 20 … trials."""
    step = next(m * 10**e for e in range(9) for m in (1, 2, 5) if count <= 10 * m * 10**e)
    return {"tick0": 0, "dtick": step, "tickformat": "d"}


def _slice_hover(setting: str) -> str:
    """A slice point's setting value, accuracy and trial (its marker's colour is the trial number)."""
    return (f"{setting}: %{{x}}<br>" + _("test accuracy") + ": %{y:.2%}<br>" + _("trial")
            + " %{marker.color}<extra></extra>")


def history_figure(study: optuna.Study, words: Mapping[str, str]) -> go.Figure:
    """Optuna's optimization history: accuracy in percent within [0, 100%], trials on whole numbers."""
    from optuna import visualization as vis

    figure = vis.plot_optimization_history(study)
    low, high = accuracy_range(complete_values(study))
    figure.update_yaxes(range=[low, high], **percent_ticks(low, high))
    figure.update_xaxes(**whole_ticks(len(study.trials)))
    figure.update_traces(cliponaxis=False, hovertemplate=_("trial {trial}: {accuracy}").format(
        trial="%{x}", accuracy="%{y:.2%}") + "<extra></extra>")
    return optuna_figure(figure, _("Optimization history"), words)


def _choice_labels(space: Mapping[str, Param]) -> dict[str, str]:
    """How Optuna writes each choice (str()) -> how the page does (on/off for switches, grouped numbers)."""
    return {str(option): say(value_message(name, option)) for name, param in space.items()
            if isinstance(param, Choice) for option in param.options}


def parallel_figure(study: optuna.Study, space: Mapping[str, Param], words: Mapping[str, str]) -> go.Figure:
    """Optuna's parallel coordinates over the settings the study varies; the colour bar spans the accuracies."""
    from optuna import visualization as vis

    figure = vis.plot_parallel_coordinate(study, params=shown_settings(study, space))
    values = complete_values(study)
    low, high = min(values), max(values)
    if low == high:  # Optuna then spans value ± 0.5; keep its line colour (the middle of the scale) at the value
        low, high = max(0.0, low - 0.005), min(1.0, high + 0.005)
    labels = _choice_labels(space)
    for trace in figure.data:
        if trace.marker is not None and trace.marker.showscale:
            trace.marker.update(cmin=low, cmax=high, colorbar=percent_ticks(low, high))
        if trace.customdata is not None:  # (setting, value) per axis; the first axis is the accuracy
            rows = [list(row) for row in trace.customdata]
            trace.customdata = [[rows[0][0], pct(float(rows[0][1]), 2)],
                                *[[name, labels.get(value, value)] for name, value in rows[1:]]]
    for annotation in figure.layout.annotations:  # the axes' tick labels; the first axis is the accuracy
        text = annotation.text
        annotation.text = pct(float(text), 1) if annotation.x == 0 else labels.get(text, text)
    return optuna_figure(figure, _("Parallel coordinates"), words)


def slice_figure(study: optuna.Study, space: Mapping[str, Param], words: Mapping[str, str]) -> go.Figure:
    """Optuna's slice plot over the settings the study varies: each x axis spans its searched range, choices
    are written as the page writes them, and the accuracy stays within [0, 100%]."""
    from optuna import visualization as vis

    figure = vis.plot_slice(study, params=shown_settings(study, space))
    low, high = accuracy_range(complete_values(study))
    figure.update_yaxes(range=[low, high], **percent_ticks(low, high))
    for trace in figure.data:
        axis = figure.layout["xaxis" + (trace.xaxis or "x")[1:]]
        name = axis.title.text
        param = space.get(name)
        if isinstance(param, Choice):  # Optuna's x values and categories are repr(): 'adam', False
            labels = {repr(option): say(value_message(name, option)) for option in param.options}
            trace.x = [labels.get(value, value) for value in trace.x]
            axis.categoryarray = [labels[repr(option)] for option in param.options]
        elif isinstance(param, FloatRange) and param.low < param.high:
            axis.range = ([math.log10(param.low), math.log10(param.high)] if axis.type == "log"
                          else [param.low, param.high])
        trace.update(cliponaxis=False, hovertemplate=_slice_hover(words.get(name, name)))
        if trace.marker is not None and trace.marker.colorbar is not None:
            trace.marker.colorbar.update(whole_ticks(len(study.trials)))
    return optuna_figure(figure, _("Slice plot"), words, height=420)
