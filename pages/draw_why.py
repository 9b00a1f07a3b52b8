"""The Draw page's "Why this answer?" views: robustness, nearest training images, attribution, embedding.

pages/draw.py calls `why_sections` once. Each view is computed only when picked, so the plain answer
stays as fast as before; the heavy ones (the training set's index, the test set's map) are built once
per checkpoint file version and cached here, in the page layer.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go
import streamlit as st
import torch
from plotly.subplots import make_subplots

from core.checkpoints import LoadedCheckpoint
from core.data import Dataset, Normalization
from core.explain import (
    FEATURES_DIR,
    IDENTITY,
    NEIGHBOURS,
    SWEEP,
    TSNE_PLACE_NEIGHBOURS,
    TSNE_POINTS,
    NeighbourIndex,
    Sweep,
    as_ink,
    blank_value,
    cached_index,
    fit_pca,
    fit_tsne,
    grad_cam,
    head_layer,
    image_features,
    pca_place,
    penultimate_features,
    robustness_sweep,
    subsample,
    tsne_place,
    weights_digest,
)
from core.i18n import N_
from core.inference import SMOOTHGRAD_SAMPLES, Prediction, saliency, smoothgrad
from core.preprocess import PreprocessOptions
from core.runs import runs_root
from pages.common import _, answer_names, class_names, get_dataset, num, pct, upscale
from pages.lang import sentences

if TYPE_CHECKING:
    from sklearn.decomposition import PCA

VIEWS = {  # value -> label (marked; translated at use)
    "robustness": N_("Robustness"),
    "neighbours": N_("Nearest training images"),
    "attribution": N_("Attribution"),
    "embedding": N_("Embedding map"),
}
TRANSFORM_NAMES = {
    "shift_x": N_("Shift right (px)"),
    "shift_y": N_("Shift down (px)"),
    "rotate": N_("Rotate clockwise (°)"),
    "scale": N_("Scale (×)"),
    "stroke": N_("Stroke width (±px)"),
}
CLASS_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
                "#17becf")


@dataclass(frozen=True)
class Explained:
    """What every view needs to know about the image and the model."""

    checkpoint: LoadedCheckpoint
    model_input: torch.Tensor  # (1, 1, 28, 28) as the model got it
    prediction: Prediction
    options: PreprocessOptions

    @property
    def norm(self) -> Normalization | None:
        """How the input was normalized: None when the Normalize step is switched off."""
        return self.checkpoint.normalization if self.options.normalize else None

    @property
    def names(self) -> tuple[str, ...]:
        """The model's answers: its dataset's classes, or (not N, N) for a one-vs-rest model."""
        return answer_names(self.checkpoint.dataset, self.checkpoint.task, self.checkpoint.target_digit)

    @property
    def answer(self) -> str:
        return self.names[self.prediction.label]


def why_sections(checkpoint: LoadedCheckpoint, model_input: torch.Tensor, prediction: Prediction,
                 options: PreprocessOptions) -> None:
    """The "Why this answer?" heading, a picker of views and the picked view, for the first model's input."""
    st.subheader(_("Why this answer?"))
    view = st.segmented_control(_("Show"), list(VIEWS), default=None, key="why_view",
                                format_func=lambda value: _(VIEWS[value]))
    if view is None:
        st.caption(_("Pick a view: each is computed only when shown, so the answer above stays fast."))
        return
    explained = Explained(checkpoint, model_input, prediction, options)
    {"robustness": show_robustness, "neighbours": show_neighbours, "attribution": show_attribution,
     "embedding": show_embedding}[view](explained)


def model_key(checkpoint: LoadedCheckpoint) -> tuple[str, str]:
    """What the caches below are keyed by: the checkpoint's path and the weights the page loaded from it.

    Not the file's mtime: a run still training rewrites best.pt while the page shows the model it loaded.
    """
    return str(checkpoint.path), weights_digest(checkpoint.model)


def dataset_for(checkpoint: LoadedCheckpoint) -> Dataset:
    return get_dataset(checkpoint.dataset)


def correct_mask(probabilities: torch.Tensor, labels: torch.Tensor, checkpoint: LoadedCheckpoint) -> torch.Tensor:
    """(N,) True where the model's answer is right: the class, or for one-vs-rest "is / is not the target"."""
    predicted = probabilities.argmax(1)
    truth = (labels == checkpoint.target_digit).long() if checkpoint.task == "binary" else labels
    return predicted == truth


# ---------------------------------------------------------------------------------------------
# Robustness


def show_robustness(explained: Explained) -> None:
    blank = blank_value(explained.norm)
    sweep = robustness_sweep(explained.checkpoint.model, explained.model_input, blank, explained.prediction.label)
    st.markdown(
        _("**Robustness**: the 28×28 input shifted, rotated, scaled, thinned and thickened, {count} versions in "
          "one batch through the network. The curves follow the probability of its answer *{answer}*; a hollow "
          "marker means the answer changed there.").format(count=len(sweep.transforms), answer=explained.answer)
    )
    st.markdown("\n".join(f"- {line}" for line in robustness_lines(sweep, explained.names)))
    st.plotly_chart(robustness_curves(sweep, explained.names), key="why_curves")
    tiles = as_ink(sweep.images[:, 0], explained.norm).numpy()
    st.plotly_chart(robustness_grid(sweep, tiles, explained.names), key="why_grid")


def amount_text(kind: str, amount: float) -> str:
    if kind == "scale":
        return f"{num(amount, 2)}×"
    signed = f"{amount:+.0f}" if amount else "0"
    return signed + ("°" if kind == "rotate" else " px")


def robustness_lines(sweep: Sweep, names: tuple[str, ...]) -> list[str]:
    """Per transform: over which range the answer holds, and what it reads beyond (neighbouring steps that read
    the same grouped into one range)."""
    lines = []
    for kind in SWEEP:
        amounts, _probs, labels = sweep.curve(kind)
        start = amounts.index(IDENTITY[kind])
        low = high = start
        while low > 0 and labels[low - 1] == sweep.answer:
            low -= 1
        while high < len(labels) - 1 and labels[high + 1] == sweep.answer:
            high += 1
        values = dict(transform=_(TRANSFORM_NAMES[kind]), answer=names[sweep.answer],
                      low=amount_text(kind, amounts[low]), high=amount_text(kind, amounts[high]))
        if low == 0 and high == len(labels) - 1:
            lines.append(_("**{transform}**: still *{answer}* over the whole range, {low} to {high}.").format(**values))
            continue
        groups: list[tuple[int, float, float]] = []  # (label, first amount, last amount), outside low..high
        for i, (amount, label) in enumerate(zip(amounts, labels, strict=True)):
            if low <= i <= high:
                continue
            if groups and groups[-1][0] == label and i != high + 1:  # not across the held range
                groups[-1] = (label, groups[-1][1], amount)
            else:
                groups.append((label, amount, amount))
        beyond = _(", ").join(
            _("*{answer}* ({amount})").format(answer=names[label], amount=amount_text(kind, first)) if first == last
            else _("*{answer}* ({first} to {last})").format(answer=names[label], first=amount_text(kind, first),
                                                             last=amount_text(kind, last))
            for label, first, last in groups)
        if low == high:
            lines.append(_("**{transform}**: *{answer}* only as drawn ({low}); every other step reads otherwise: "
                           "{beyond}.").format(beyond=beyond, **values))
        else:
            lines.append(_("**{transform}**: still *{answer}* from {low} to {high}; beyond: {beyond}.").format(
                beyond=beyond, **values))
    return lines


def robustness_curves(sweep: Sweep, names: tuple[str, ...]) -> go.Figure:
    """P(answer) against each transform's amount, one small chart per transform."""
    figure = make_subplots(1, len(SWEEP), subplot_titles=[_(TRANSFORM_NAMES[kind]) for kind in SWEEP],
                           shared_yaxes=True, horizontal_spacing=0.03)
    for col, kind in enumerate(SWEEP, 1):
        amounts, probs, labels = sweep.curve(kind)
        same = [label == sweep.answer for label in labels]
        figure.add_trace(go.Scatter(
            x=amounts, y=probs, mode="lines+markers", showlegend=False, line=dict(color="#2563eb"),
            marker=dict(size=9, symbol=["circle" if s else "circle-open" for s in same], color="#2563eb"),
            customdata=[names[label] for label in labels],
            hovertemplate=_("{amount}: P({answer}) {probability}, reads {label}").format(
                amount="%{x}", answer=names[sweep.answer], probability="%{y:.1%}", label="%{customdata}")
            + "<extra></extra>",
        ), 1, col)
    figure.update_yaxes(range=[-0.02, 1.02], tickformat=".0%", row=1, col=1,
                        title=_("P({answer})").format(answer=names[sweep.answer]))
    figure.update_layout(height=280, margin=dict(l=10, r=10, t=40, b=10))
    return figure


def robustness_grid(sweep: Sweep, tiles: np.ndarray, names: tuple[str, ...]) -> go.Figure:
    """Every transformed input, one row per transform, titled with its amount and what the network reads."""
    width = max(len(amounts) for amounts in SWEEP.values())
    rows = [[i for i, t in enumerate(sweep.transforms) if t.kind == kind] for kind in SWEEP]
    titles = []
    for row in rows:
        for col in range(width):
            if col < len(row):
                index = row[col]
                transform, label = sweep.transforms[index], int(sweep.labels[index])
                titles.append(f"{amount_text(transform.kind, transform.amount)}: {names[label]} "
                              f"{pct(float(sweep.probabilities[index, label]), 0)}")
            else:
                titles.append("")
    figure = make_subplots(len(rows), width, subplot_titles=titles, horizontal_spacing=0.01, vertical_spacing=0.04,
                           row_titles=[_(TRANSFORM_NAMES[kind]) for kind in SWEEP])
    for r, row in enumerate(rows, 1):
        for c, index in enumerate(row, 1):
            figure.add_trace(go.Heatmap(z=tiles[index], colorscale="gray", zmin=0, zmax=1, showscale=False,
                                        hoverinfo="skip"), r, c)
    figure.update_yaxes(autorange="reversed", showticklabels=False)
    figure.update_xaxes(showticklabels=False)
    figure.update_annotations(font_size=11)
    figure.update_layout(height=150 * len(rows), margin=dict(l=10, r=60, t=30, b=10))
    return figure


# ---------------------------------------------------------------------------------------------
# Nearest training images


@st.cache_resource(show_spinner=False, max_entries=2)
def training_index(path: str, weights: str, _checkpoint: LoadedCheckpoint,
                   _dataset: Dataset) -> tuple[NeighbourIndex, float]:
    """Every training image's penultimate features, once per loaded model (`path`, `weights` digest).

    Kept on disk as well (by the checkpoint's hash, beside the runs), so a restarted server reads them back.
    Returns the index and the seconds it took to get it.
    """
    start = time.perf_counter()
    index = cached_index(_checkpoint.model, _dataset.train_images, _dataset.train_labels,
                         _checkpoint.normalization, runs_root() / FEATURES_DIR, f"{_dataset.spec.key}-train")
    return index, time.perf_counter() - start


def show_neighbours(explained: Explained) -> None:
    checkpoint = explained.checkpoint
    if head_layer(checkpoint.model) is None:
        st.info(_("This model has no Linear layer, so it has no penultimate layer to compare images in."))
        return
    dataset = dataset_for(checkpoint)
    count = len(dataset.train_images)
    with st.spinner(_("Passing all {count} training images through the model, once per model (then kept on "
                      "disk)…").format(count=num(count))):
        index, seconds = training_index(*model_key(checkpoint), checkpoint, dataset)
    features, _probs = penultimate_features(checkpoint.model, explained.model_input)
    start = time.perf_counter()
    found = index.query(features[0], NEIGHBOURS)
    elapsed = time.perf_counter() - start
    classes = class_names(checkpoint.dataset)
    if checkpoint.task == "binary":  # "7" or "not 7": is the neighbour's label the target or not
        same = sum((label == checkpoint.target_digit) == bool(explained.prediction.label) for label in found.labels)
    else:
        same = sum(label == explained.prediction.label for label in found.labels)
    st.markdown(
        _("**Nearest training images**: the {k} of the {count} training images whose penultimate-layer features "
          "(the {dims} values that enter the last Linear layer) point most nearly the same way as this input's, "
          "by cosine similarity (1 = the same direction). {same} of the {k} are labelled *{answer}*. The search "
          "compared all {count} just now in {ms} ms; their features were made ready once for this model "
          "(computed, or read back from the disk cache) in {seconds} s.").format(
            k=len(found.indices), count=num(count), dims=num(index.unit.shape[1]), same=same,
            answer=explained.answer, ms=num(elapsed * 1000, 1), seconds=num(seconds, 1))
    )
    for column, index_, label, similarity in zip(st.columns(len(found.indices)), found.indices, found.labels,
                                                 found.similarities, strict=True):
        column.image(upscale(dataset.train_images[index_], 3), width="stretch",
                     caption=_("{label} · similarity {similarity}").format(label=classes[label],
                                                                           similarity=num(similarity, 3)))


# ---------------------------------------------------------------------------------------------
# Attribution


def show_attribution(explained: Explained) -> None:
    model, model_input = explained.checkpoint.model, explained.model_input
    class_index = 0 if explained.prediction.binary else explained.prediction.label
    name = explained.names[1 if explained.prediction.binary else explained.prediction.label]
    plain = saliency(model, model_input, class_index)
    smooth = smoothgrad(model, model_input, class_index)
    cam = grad_cam(model, model_input, class_index)
    lines = [
        _("**Plain gradient**: how much a tiny change of each pixel alone would move the score for *{name}*; exact "
          "for this very image, but speckled.").format(name=name),
        _("**SmoothGrad**: the same map averaged over {samples} noisy copies of the input, so it marks the regions "
          "that matter all around this image.").format(samples=SMOOTHGRAD_SAMPLES),
    ]
    if cam is not None:
        lines.append(_("**Grad-CAM** on the last convolution block (*{layer}*, {size}): where the channels that "
                       "raise the score for *{name}* are active, enlarged to 28×28; coarse, but it shows which parts "
                       "of the image the decision is built from.").format(
            layer=cam.layer, size=f"{cam.coarse.shape[1]}×{cam.coarse.shape[0]}", name=name))
    st.markdown("\n".join(f"- {line}" for line in lines))
    if cam is None:
        st.info(_("This model has no convolutional layer, so Grad-CAM has no feature maps to look at; the two "
                  "gradient maps above still apply."))
    ink = as_ink(model_input[0, 0], explained.norm).numpy()
    panels = [(ink, "gray", _("What the network sees (28×28)")), (plain.numpy(), "Hot", _("Plain gradient")),
              (smooth.numpy(), "Hot", "SmoothGrad")]
    if cam is not None:
        panels.append((cam.heatmap.numpy(), "Jet", "Grad-CAM"))
    st.plotly_chart(attribution_figure(panels, ink if cam is not None else None), key="why_attribution")


def attribution_figure(panels: list[tuple[np.ndarray, str, str]], ink: np.ndarray | None) -> go.Figure:
    """The maps side by side, each scaled to its own range; Grad-CAM drawn over the ink's outline."""
    figure = make_subplots(1, len(panels), subplot_titles=[title for *_rest, title in panels],
                           horizontal_spacing=0.03)
    for col, (image, scale, _title) in enumerate(panels, 1):
        figure.add_trace(go.Heatmap(z=image, colorscale=scale, showscale=False,
                                    hovertemplate="%{y}, %{x}: %{z:.3g}<extra></extra>"), 1, col)
        figure.update_yaxes(autorange="reversed", scaleanchor=f"x{col}", showticklabels=False, row=1, col=col)
        figure.update_xaxes(showticklabels=False, row=1, col=col)
    if ink is not None:
        figure.add_trace(go.Contour(z=ink, contours=dict(start=0.5, end=0.5, coloring="lines"), showscale=False,
                                    line=dict(color="white", width=1), hoverinfo="skip"), 1, len(panels))
    figure.update_layout(height=300, margin=dict(l=10, r=10, t=40, b=10))
    return figure


# ---------------------------------------------------------------------------------------------
# Embedding map


@dataclass(frozen=True, eq=False)
class TestEmbedding:
    features: torch.Tensor  # (N, D) penultimate features of the test set
    correct: np.ndarray  # (N,) bool: the model's answer is right
    predicted: np.ndarray  # (N,) the model's answer (index into its names)
    pca: PCA
    pca_points: np.ndarray  # (N, 2)


@st.cache_resource(show_spinner=False, max_entries=2)
def test_embedding(path: str, weights: str, _checkpoint: LoadedCheckpoint, _dataset: Dataset) -> TestEmbedding:
    """The test set's features, the model's answers and their PCA, once per loaded model."""
    features, probs = image_features(_checkpoint.model, _dataset.test_images, _checkpoint.normalization)
    pca, points = fit_pca(features)
    correct = correct_mask(probs, _dataset.test_labels, _checkpoint).numpy()
    return TestEmbedding(features, correct, probs.argmax(1).numpy(), pca, points)


@st.cache_resource(show_spinner=False, max_entries=2)
def tsne_map(path: str, weights: str, _embedding: TestEmbedding) -> tuple[np.ndarray, np.ndarray, float]:
    """(test-set indices, their t-SNE positions, seconds taken) for a fixed random sample of TSNE_POINTS test images."""
    start = time.perf_counter()
    sample = subsample(len(_embedding.features), TSNE_POINTS, seed=0)
    return sample, fit_tsne(_embedding.features[sample]), time.perf_counter() - start


def show_embedding(explained: Explained) -> None:
    checkpoint = explained.checkpoint
    if head_layer(checkpoint.model) is None:
        st.info(_("This model has no Linear layer, so it has no penultimate layer to map."))
        return
    dataset = dataset_for(checkpoint)
    count = len(dataset.test_images)
    with st.spinner(_("Passing the {count} test images through the model, once per model…").format(
            count=num(count))):
        embedding = test_embedding(*model_key(checkpoint), checkpoint, dataset)
    method = st.segmented_control(_("Map"), ["pca", "tsne"], default="pca", required=True, key="why_map",
                                  format_func=lambda value: "PCA" if value == "pca" else "t-SNE")
    features, _probs = penultimate_features(checkpoint.model, explained.model_input)
    if method == "pca":
        indices, points = np.arange(count), embedding.pca_points
        here = pca_place(embedding.pca, features[0])
        share = float(embedding.pca.explained_variance_ratio_.sum())
        text = _("**PCA** of the penultimate-layer features of all {count} test images: the two directions along "
                 "which they vary most ({share} of the variance). This input (★) is placed by the same "
                 "projection.").format(count=num(count), share=pct(share, 0))
    else:
        with st.spinner(_("Computing t-SNE of {points} test images, once per model: it takes a while…").format(
                points=num(TSNE_POINTS))):
            indices, points, seconds = tsne_map(*model_key(checkpoint), embedding)
        here, _near = tsne_place(points, embedding.features[indices], features[0])
        text = _("**t-SNE** of {points} randomly chosen test images (of {count}): a map that keeps images with "
                 "similar features together; distances between clusters mean little. t-SNE cannot place a new "
                 "point, so this input (★) sits at the mean position of its {k} nearest images on the map, nearest "
                 "by cosine similarity of features. The map was computed once for this model, in {seconds} s."
                 ).format(points=num(len(indices)), count=num(count), k=TSNE_PLACE_NEIGHBOURS,
                          seconds=num(seconds, 1))
    wrong = int((~embedding.correct[indices]).sum())
    st.markdown(sentences(text, _("Colour is the true class; × marks the {wrong} of {shown} images the model gets "
                                  "wrong. Click a point to see its image.").format(wrong=num(wrong),
                                                                                    shown=num(len(indices)))))
    plot_col, image_col = st.columns([3, 1])
    figure = embedding_figure(points, indices, dataset, embedding, explained, here)
    event = plot_col.plotly_chart(figure, key=f"why_embedding_{method}", on_select="rerun",
                                  selection_mode="points")
    show_picked(event, dataset, embedding, explained, image_col)


def embedding_figure(points: np.ndarray, indices: np.ndarray, dataset: Dataset, embedding: TestEmbedding,
                     explained: Explained, here: np.ndarray) -> go.Figure:
    """One scatter trace per true class (× where the model is wrong) and a star for this input."""
    labels = dataset.test_labels[torch.from_numpy(indices)].numpy()
    answers = np.array(explained.names, dtype=object)
    figure = go.Figure()
    hover = _("test image {index}: {label}, the model says {answer}").format(
        index="%{customdata[0]}", label="%{customdata[1]}", answer="%{customdata[2]}") + "<extra></extra>"
    for label, name in enumerate(class_names(explained.checkpoint.dataset)):
        rows = np.flatnonzero(labels == label)
        figure.add_trace(go.Scattergl(
            x=points[rows, 0], y=points[rows, 1], mode="markers", name=name,
            marker=dict(color=CLASS_COLORS[label % len(CLASS_COLORS)], size=5,
                        symbol=np.where(embedding.correct[indices[rows]], "circle", "x")),
            customdata=np.column_stack([indices[rows], np.full(len(rows), name, dtype=object),
                                        answers[embedding.predicted[indices[rows]]]]),
            hovertemplate=hover,
        ))
    figure.add_trace(go.Scattergl(x=[here[0]], y=[here[1]], mode="markers", name=_("this input"),  # last: on top
                                  marker=dict(symbol="star", size=24, color="gold", line=dict(color="black", width=2)),
                                  hovertemplate=_("this input: {answer}").format(answer=explained.answer)
                                  + "<extra></extra>"))
    figure.update_layout(height=520, margin=dict(l=10, r=10, t=10, b=10), legend=dict(itemsizing="constant"))
    return figure


def picked_test_image(event: object) -> int | None:
    """The test-set index of the first clicked map point (its customdata's first value); None for none or the star."""
    selection = event.get("selection", {}) if isinstance(event, dict) else getattr(event, "selection", None)
    points = (selection.get("points") if isinstance(selection, dict) else getattr(selection, "points", None)) or []
    picked = [point for point in points if isinstance(point, dict) and point.get("customdata")]
    return int(picked[0]["customdata"][0]) if picked else None


def show_picked(event: object, dataset: Dataset, embedding: TestEmbedding, explained: Explained,
                column: st.delta_generator.DeltaGenerator) -> None:
    """The clicked test image with its label and the model's answer."""
    index = picked_test_image(event)
    if index is None:
        column.caption(_("No image picked yet."))
        return
    label = class_names(explained.checkpoint.dataset)[int(dataset.test_labels[index])]
    answer = explained.names[int(embedding.predicted[index])]
    column.image(upscale(dataset.test_images[index], 6), width="stretch",
                 caption=_("Test image {index}: {label}; the model says {answer}").format(
                     index=index, label=label, answer=answer))
