"""Dataset page: browse samples, per-class statistics, normalization and augmentation with real numbers."""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st
import torch

from core.data import Dataset
from core.explore import augmentation_preview, class_mean_images, normalization_table, sample_indices
from pages.common import get_dataset, pixel_heatmap, upscale

SEED_KEY = "dataset_sample_seed"


def sample_controls(dataset: Dataset) -> tuple[bool, list[int], int]:
    """Split, classes and grid size, plus the 'another sample' button (a new seed)."""
    st.session_state.setdefault(SEED_KEY, 0)
    left, middle, right, button = st.columns([1, 3, 1, 1], vertical_alignment="bottom")
    split = left.segmented_control("Split", ["train", "test"], default="train", required=True, key="dataset_split")
    classes = middle.pills(
        "Classes",
        list(range(len(dataset.classes))),
        selection_mode="multi",
        default=list(range(len(dataset.classes))),
        format_func=lambda c: dataset.classes[c],
        key="dataset_classes",
    )
    side = right.select_slider("Grid", options=[4, 6, 8, 10, 12], value=8, key="dataset_grid", help="images per side")
    if button.button("Another sample", icon=":material/casino:", key="dataset_resample"):
        st.session_state[SEED_KEY] += 1
    return split == "train", list(classes), int(side)


def show_sample_grid(dataset: Dataset, images: torch.Tensor, labels: torch.Tensor, side: int) -> None:
    """The sample as a grid of images, each with its label underneath."""
    captions = [dataset.classes[int(label)] for label in labels]
    for row_start in range(0, len(images), side):
        columns = st.columns(side, gap="small")
        row = zip(columns, images[row_start : row_start + side], captions[row_start:], strict=False)
        for column, image, caption in row:
            column.image(upscale(image, 3), caption=caption, width="stretch")


def show_one_image(dataset: Dataset, images: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor) -> None:
    """One sample large, with every raw 0-255 value on hover."""
    choice = st.selectbox(
        "Look at one image up close",
        range(len(indices)),
        format_func=lambda i: (
            f"#{i + 1} in the grid (dataset index {int(indices[i])}, label {dataset.classes[int(labels[i])]})"
        ),
        key="dataset_pick",
    )
    image = images[choice]
    left, right = st.columns([3, 2])
    title = f"label {dataset.classes[int(labels[choice])]}"
    left.plotly_chart(pixel_heatmap(image, title, "raw value"), key="pick_heat")
    inked = int((image > 0).sum())
    right.markdown(
        f"""
Each image is **28 × 28 = 784 pixels**, one byte each: **0 is black** (background), **255 is white** (ink).
This one has **{inked}** non-zero pixels ({inked / 784:.0%} of the image), a mean value of
**{float(image.float().mean()):.1f}** and a maximum of **{int(image.max())}**.
Grey values at the stroke's edges come from anti-aliasing when MNIST's authors scaled each digit
into a 20 × 20 box; they then centred its centre of mass in the 28 × 28 frame, which is why a digit
you draw must be prepared the same way before a network can read it.
"""
    )


@st.cache_data(show_spinner=False)
def cached_class_means(dataset_key: str) -> torch.Tensor:
    dataset = get_dataset(dataset_key)
    return class_mean_images(dataset.train_images, dataset.train_labels, len(dataset.classes))


def show_class_statistics(dataset: Dataset) -> None:
    """Class balance, the mean image of each class, and the pixel histogram."""
    counts = pd.DataFrame(
        {"class": list(dataset.classes) * 2,
         "split": ["train"] * len(dataset.classes) + ["test"] * len(dataset.classes),
         "images": dataset.class_counts(True) + dataset.class_counts(False)}
    )
    figure = px.bar(counts, x="class", y="images", color="split", barmode="group", title="Images per class")
    st.plotly_chart(figure, key="class_counts")
    train_counts = dataset.class_counts(True)
    smallest, largest = min(train_counts), max(train_counts)
    st.caption(
        f"Training classes range from {smallest} to {largest} images "
        f"({dataset.classes[train_counts.index(smallest)]} to {dataset.classes[train_counts.index(largest)]}), "
        f"so accuracy is a fair summary here; a class that is 10% of the data is why 'always say no' already "
        f"scores about 90% on a one-vs-rest task."
    )
    means = cached_class_means(dataset.spec.key)
    st.markdown("**The average training image of each class** — the blur shows how much people's writing varies.")
    columns = st.columns(len(dataset.classes))
    for column, mean_image, name in zip(columns, means, dataset.classes, strict=True):
        column.image(upscale(mean_image.round().to(torch.uint8), 3), caption=name, width="stretch")
    histogram = dataset.pixel_histogram
    share_black = float(histogram[0]) / float(histogram.sum())
    figure = go.Figure(go.Bar(x=list(range(256)), y=histogram.tolist()))
    figure.update_layout(title="Pixel values over all training images", xaxis_title="raw value (0-255)",
                         yaxis_title="pixels (log scale)", yaxis_type="log", height=320)
    st.plotly_chart(figure, key="pixel_hist")
    st.caption(f"{share_black:.1%} of all training pixels are exactly 0 (background); most of the rest sit near 255.")


def show_normalization(dataset: Dataset) -> None:
    """Raw bytes -> ToTensor -> each preset, with the computed mean and std."""
    mean, std = dataset.mean_std
    st.markdown(
        f"""
Networks train best on inputs centred near zero with a spread near one. The tutorials use three recipes.
`ToTensor()` first turns a byte into a float: **x = pixel / 255**, so 0..255 becomes 0..1.
Then `Normalize(mean, std)` computes **(x − mean) / std**.
For {dataset.spec.title}, the mean and standard deviation of all {len(dataset.train_labels) * 784:,}
training pixels, computed here from the files, are **mean = {mean:.4f}** and **std = {std:.4f}**
(the tutorials type in 0.1307 and 0.3081 for MNIST).
"""
    )
    rows = normalization_table(dataset)
    table = pd.DataFrame(
        [
            {"preset": row.preset, "what it does": row.description,
             "mean": round(row.mean, 4), "std": round(row.std, 4),
             **{f"pixel {raw}": round(value, 4) for raw, value in row.examples.items()},
             "range": f"[{row.low:.3f}, {row.high:.3f}]"}
            for row in rows
        ]
    )
    st.dataframe(table, hide_index=True)
    dataset_row = next(row for row in rows if row.preset == "dataset")
    st.caption(
        f"Worked example with the dataset's own statistics: a white pixel (255) becomes 255/255 = 1, then "
        f"(1 − {mean:.4f}) / {std:.4f} = {dataset_row.high:.4f}; a black one becomes (0 − {mean:.4f}) / {std:.4f} "
        f"= {dataset_row.low:.4f}. Whatever a model was trained with, a drawn digit must get the same."
    )


def show_augmentation(image: torch.Tensor, label: str) -> None:
    """One digit under eight random affine draws."""
    st.session_state.setdefault("aug_seed", 0)
    st.markdown(
        "Augmentation shows the network slightly different versions of each digit every epoch — rotated up to "
        "±10°, shifted up to ±10% (±2.8 px) and scaled 0.9–1.1× — so it learns the digit, not its exact pixels. "
        "It helps most with digits drawn by hand, which are never placed like MNIST's."
    )
    if st.button("New draws", icon=":material/refresh:", key="aug_redraw"):
        st.session_state["aug_seed"] += 1
    draws = augmentation_preview(image, 8, seed=st.session_state["aug_seed"])
    columns = st.columns(9)
    columns[0].image(upscale(image, 3), caption=f"original ({label})", width="stretch")
    for number, (column, moved) in enumerate(zip(columns[1:], draws, strict=True), start=1):
        column.image(upscale(moved, 3), caption=f"draw {number}", width="stretch")


dataset = get_dataset()
st.title(f"{dataset.spec.title} dataset")
st.markdown(
    f"{len(dataset.train_labels):,} training and {len(dataset.test_labels):,} test images of "
    f"{len(dataset.classes)} classes, 28 × 28 grey pixels each. Everything below is computed from the real files."
)
train, classes, side = sample_controls(dataset)
images, labels = dataset.split(train)
indices = sample_indices(labels, classes, side * side, st.session_state[SEED_KEY])
if len(indices) == 0:
    st.info("Pick at least one class to see samples.")
    st.stop()
shown_images, shown_labels = images[indices], labels[indices]
show_sample_grid(dataset, shown_images, shown_labels, side)
show_one_image(dataset, shown_images, shown_labels, indices)

statistics, normalizing, augmenting = st.tabs(["Class statistics", "Normalization", "Augmentation"])
with statistics:
    show_class_statistics(dataset)
with normalizing:
    show_normalization(dataset)
with augmenting:
    show_augmentation(shown_images[0], dataset.classes[int(shown_labels[0])])
