"""Dataset page: browse samples, per-class statistics, normalization and augmentation with real numbers."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st
import torch

from core.data import Augmentation, Dataset
from core.explore import (
    augmentation_preview,
    class_balance,
    class_mean_images,
    normalization_table,
    sample_indices,
)
from core.i18n import N_
from pages.common import _, class_names, get_dataset, ngettext, num, pct, pixel_heatmap, upscale

SEED_KEY = "dataset_sample_seed"


@dataclass(frozen=True)
class Wording:
    """The sentences that differ between datasets, so no page says 'digit' about a coat (marked; translated at use)."""

    item: str  # what one image shows, singular
    bright: str  # what the white pixels are
    origin: str  # how the images were made, and what that means for an image of your own
    variety: str  # what the blur of a class's mean image shows
    augment_note: str = ""  # a dataset-specific remark on augmentation, if any


WORDING = {
    "mnist": Wording(
        item=N_("digit"),
        bright=N_("ink"),
        origin=N_("Grey values at the stroke's edges come from anti-aliasing when MNIST's authors scaled each digit "
        "into a 20 × 20 box; they then centred its centre of mass in the 28 × 28 frame, which is why a digit "
        "you draw must be prepared the same way before a network can read it."),
        variety=N_("the blur shows how much people's writing varies."),
        augment_note=N_("It helps most with digits drawn by hand, which are never placed like MNIST's."),
    ),
    "fashion-mnist": Wording(
        item=N_("item"),
        bright=N_("the item"),
        origin=N_("Fashion-MNIST's images are Zalando's product photos, trimmed to the item, scaled so the longer "
        "side is 28 pixels, sharpened, centred in the 28 × 28 frame and inverted, so the item is light on "
        "black; a picture of your own needs the same preparation before a network can read it."),
        variety=N_("the blur shows how much the items of one class differ in shape and pose."),
    ),
}
GENERIC_WORDING = Wording(
    item=N_("image"),
    bright=N_("the foreground"),
    origin=N_("A picture of your own must be prepared the same way as these before a network can read it."),
    variety=N_("the blur shows how much the images of one class differ."),
)


def wording(dataset: Dataset) -> Wording:
    """The dataset's sentences in the session's language."""
    words = WORDING.get(dataset.spec.key, GENERIC_WORDING)
    return Wording(*(_(text) if text else "" for text in (words.item, words.bright, words.origin, words.variety,
                                                          words.augment_note)))


def sample_controls(dataset: Dataset) -> tuple[bool, list[int], int]:
    """Split, classes and grid size, plus the 'another sample' button (a new seed).

    No class picked means every class, so a first click on a class shows only that class.
    """
    st.session_state.setdefault(SEED_KEY, 0)
    left, right, button = st.columns([1, 1, 1], vertical_alignment="bottom")
    split = left.segmented_control(_("Split"), ["train", "test"], default="train", required=True, key="dataset_split",
                                   format_func=lambda name: _("training set") if name == "train" else _("test set"))
    side = right.select_slider(_("Grid"), options=[4, 6, 8, 10, 12], value=8, key="dataset_grid",
                               help=_("images per side"))
    if button.button(_("Another sample"), icon=":material/casino:", key="dataset_resample"):
        st.session_state[SEED_KEY] += 1
    picked = st.pills(  # its own row: long class names (Fashion-MNIST) need the page's width
        _("Classes"),
        list(range(len(dataset.classes))),
        selection_mode="multi",
        format_func=lambda c: class_names(dataset.spec.key)[c],
        key="dataset_classes",
        help=_("Click classes to see only those; with none picked, every class is shown."),
    )
    classes = sorted(picked) or list(range(len(dataset.classes)))
    if picked:
        names = _(", ").join(class_names(dataset.spec.key)[c] for c in classes)
        st.caption(ngettext("Showing {count} class: {names}. Click again to unpick.",
                            "Showing {count} classes: {names}. Click again to unpick.", len(classes)).format(
            count=len(classes), names=names))
    else:
        st.caption(ngettext("Showing all {count} class; click some to see only those.",
                            "Showing all {count} classes; click some to see only those.", len(classes)).format(
            count=len(classes)))
    return split == "train", classes, int(side)


def show_sample_grid(dataset: Dataset, images: torch.Tensor, labels: torch.Tensor, side: int) -> None:
    """The sample as a grid of images, each with its label underneath."""
    captions = [class_names(dataset.spec.key)[int(label)] for label in labels]
    for row_start in range(0, len(images), side):
        columns = st.columns(side, gap="small")
        row = zip(columns, images[row_start : row_start + side], captions[row_start:], strict=False)
        for column, image, caption in row:
            column.image(upscale(image, 3), caption=caption, width="stretch")


def show_one_image(dataset: Dataset, images: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor) -> None:
    """One sample large, with every raw 0-255 value on hover."""
    # The options are the labels themselves: when a new sample or dataset changes them, the old choice
    # is no longer among them and the box resets; with index options the browser kept showing the old
    # label (an MNIST "9" over a Fashion-MNIST shirt).
    names = [_("#{position} in the grid: {label} (dataset index {index})").format(
                 position=i + 1, label=class_names(dataset.spec.key)[int(labels[i])], index=int(indices[i]))
             for i in range(len(indices))]
    choice = names.index(st.selectbox(_("Look at one image up close"), names, key="dataset_pick"))
    image = images[choice]
    left, right = st.columns([3, 2])
    title = _("{label}, dataset index {index}").format(label=class_names(dataset.spec.key)[int(labels[choice])],
                                                       index=int(indices[choice]))
    left.plotly_chart(pixel_heatmap(image, title, _("raw value")), key="pick_heat")
    inked = int((image > 0).sum())
    words = wording(dataset)
    right.markdown(
        _("Each image is **28 × 28 = 784 pixels**, one byte each: **0 is black** (background), **255 is white** "
          "({bright}).").format(bright=words.bright)
        + " "
        + ngettext("This one has **{count} non-zero pixel** ({share} of the image), a mean value of **{mean}** "
                   "and a maximum of **{max}**.",
                   "This one has **{count} non-zero pixels** ({share} of the image), a mean value of **{mean}** "
                   "and a maximum of **{max}**.", inked).format(
            count=num(inked), share=pct(inked / 784, 0), mean=num(float(image.float().mean()), 1),
            max=int(image.max()))
        + "\n\n"
        + words.origin
    )


@st.cache_data(show_spinner=False)
def cached_class_means(dataset_key: str) -> torch.Tensor:
    dataset = get_dataset(dataset_key)
    return class_mean_images(dataset.train_images, dataset.train_labels, len(dataset.classes))


def image_count(count: int) -> str:
    return ngettext("{count} image", "{count} images", count).format(count=num(count))


def balance_sentence(dataset: Dataset) -> str:
    """How evenly the training images spread over the classes, and what that means for accuracy."""
    counts = dataset.class_counts(True)
    balance = class_balance(counts, class_names(dataset.spec.key))
    share = balance.largest_count / sum(counts)
    if balance.equal:
        spread = ngettext("Every class has {count} training image", "Every class has {count} training images",
                          balance.largest_count).format(count=num(balance.largest_count))
    else:
        spread = _("Training classes range from {smallest} ({smallest_class}) to {largest} ({largest_class})").format(
            smallest=image_count(balance.smallest_count), smallest_class=balance.smallest,
            largest=image_count(balance.largest_count), largest_class=balance.largest)
    return _("{spread}, so always answering the commonest class would score only about {share}: accuracy is a "
             "fair summary here.").format(spread=spread, share=pct(share, 0))


def show_class_statistics(dataset: Dataset) -> None:
    """Class balance, the mean image of each class, and the pixel histogram."""
    class_, split, images = _("class"), _("split"), _("images")
    counts = pd.DataFrame(
        {class_: list(class_names(dataset.spec.key)) * 2,
         split: [_("training set")] * len(dataset.classes) + [_("test set")] * len(dataset.classes),
         images: dataset.class_counts(True) + dataset.class_counts(False)}
    )
    figure = px.bar(counts, x=class_, y=images, color=split, barmode="group", title=_("Images per class"))
    st.plotly_chart(figure, key="class_counts")
    st.caption(balance_sentence(dataset))
    means = cached_class_means(dataset.spec.key)
    st.markdown("**" + _("The average training image of each class") + f"** — {wording(dataset).variety}")
    columns = st.columns(len(dataset.classes))
    for column, mean_image, name in zip(columns, means, class_names(dataset.spec.key), strict=True):
        column.image(upscale(mean_image.round().to(torch.uint8), 3), caption=name, width="stretch")
    histogram = dataset.pixel_histogram
    share_black = float(histogram[0]) / float(histogram.sum())
    figure = go.Figure(go.Bar(x=list(range(256)), y=histogram.tolist()))
    figure.update_layout(title=_("Pixel values over all training images"), xaxis_title=_("raw value (0-255)"),
                         yaxis_title=_("pixels (log scale)"), yaxis_type="log", height=320)
    st.plotly_chart(figure, key="pixel_hist")
    nonzero = histogram[1:].cumsum(0)  # pixels with value <= 1, 2, ..., 255
    median_lit = 1 + int(torch.searchsorted(nonzero, (nonzero[-1] + 1) // 2))  # median of the non-zero values
    st.caption(_("{share} of all training pixels are exactly 0 (background); half of the others are {median} or "
                 "brighter.").format(share=pct(share_black, 1), median=median_lit))


def show_normalization(dataset: Dataset) -> None:
    """Raw bytes -> ToTensor -> each preset, with the computed mean and std."""
    mean, std = dataset.mean_std
    st.markdown(
        _("Networks train best on inputs centred near zero with a spread near one. The tutorials use three "
          "recipes. `ToTensor()` first turns a byte into a float: **x = pixel / 255**, so 0..255 becomes 0..1. "
          "Then `Normalize(mean, std)` computes **(x − mean) / std**. For {dataset}, the mean and standard "
          "deviation of all {pixels} training pixels, computed here from the files, are **mean = {mean}** and "
          "**std = {std}** (the tutorials type in 0.1307 and 0.3081 for MNIST).").format(
            dataset=dataset.spec.title, pixels=num(len(dataset.train_labels) * 784), mean=num(mean, 4),
            std=num(std, 4))
    )
    rows = normalization_table(dataset)
    table = pd.DataFrame(
        [
            {_("preset"): row.preset, _("what it does"): _(row.description),
             _("mean"): round(row.mean, 4), _("std"): round(row.std, 4),
             **{_("pixel {value}").format(value=raw): round(value, 4) for raw, value in row.examples.items()},
             _("range"): f"[{row.low:.3f}, {row.high:.3f}]"}
            for row in rows
        ]
    )
    st.dataframe(table, hide_index=True)
    dataset_row = next(row for row in rows if row.preset == "dataset")
    st.caption(
        _("Worked example with the dataset's own statistics: a white pixel (255) becomes 255/255 = 1, then "
          "(1 − {mean}) / {std} = {high}; a black one becomes (0 − {mean}) / {std} = {low}. Whatever a model was "
          "trained with, a new {item} must get the same.").format(
            mean=num(mean, 4), std=num(std, 4), high=num(dataset_row.high, 4), low=num(dataset_row.low, 4),
            item=wording(dataset).item)
    )


def show_augmentation(dataset: Dataset, image: torch.Tensor, label: str) -> None:
    """One image under eight random affine draws, with the ranges they are drawn from."""
    st.session_state.setdefault("aug_seed", 0)
    aug, words = Augmentation(), wording(dataset)
    st.markdown(
        _("Augmentation shows the network slightly different versions of each {item} every epoch — rotated up to "
          "±{degrees}°, shifted up to ±{shift} (±{pixels} px) and scaled {low}–{high}× — so it learns the {item}, "
          "not its exact pixels.").format(
            item=words.item, degrees=f"{aug.degrees:g}", shift=pct(aug.translate, 0),
            pixels=num(aug.translate * 28, 1), low=f"{aug.scale[0]:g}", high=f"{aug.scale[1]:g}")
        + f" {words.augment_note}"
    )
    if st.button(_("New draws"), icon=":material/refresh:", key="aug_redraw"):
        st.session_state["aug_seed"] += 1
    draws = augmentation_preview(image, 8, seed=st.session_state["aug_seed"], aug=aug)
    columns = st.columns(9)
    columns[0].image(upscale(image, 3), caption=_("original ({label})").format(label=label), width="stretch")
    for number, (column, moved) in enumerate(zip(columns[1:], draws, strict=True), start=1):
        column.image(upscale(moved, 3), caption=_("draw {number}").format(number=number), width="stretch")


dataset = get_dataset()
st.title(_("{dataset} dataset").format(dataset=dataset.spec.title))
st.markdown(
    _("{train} and {test} in {classes}, 28 × 28 grey pixels each. Everything below is computed from the real "
      "files.").format(
        train=ngettext("{count} training image", "{count} training images", len(dataset.train_labels)).format(
            count=num(len(dataset.train_labels))),
        test=ngettext("{count} test image", "{count} test images", len(dataset.test_labels)).format(
            count=num(len(dataset.test_labels))),
        classes=ngettext("{count} class", "{count} classes", len(dataset.classes)).format(count=len(dataset.classes)))
)
train, classes, side = sample_controls(dataset)
images, labels = dataset.split(train)
indices = sample_indices(labels, classes, side * side, st.session_state[SEED_KEY])
if len(indices) == 0:
    st.info(_("These classes have no images in this split."))
    st.stop()
shown_images, shown_labels = images[indices], labels[indices]
show_sample_grid(dataset, shown_images, shown_labels, side)
show_one_image(dataset, shown_images, shown_labels, indices)

statistics, normalizing, augmenting = st.tabs([_("Class statistics"), _("Normalization"), _("Augmentation")])
with statistics:
    show_class_statistics(dataset)
with normalizing:
    show_normalization(dataset)
with augmenting:
    show_augmentation(dataset, shown_images[0], class_names(dataset.spec.key)[int(shown_labels[0])])
