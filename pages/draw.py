"""Draw page: draw (or upload) a digit and watch the network read it, step by step."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import streamlit as st
import torch

from core.checkpoints import CheckpointError, LoadedCheckpoint, load_checkpoint
from core.data import DATASETS, get_spec
from core.i18n import N_
from core.inference import (
    DEFAULT_CHECKPOINT,
    SMOOTHGRAD_NOISE,
    SMOOTHGRAD_SAMPLES,
    UNSURE_MARGIN,
    UNSURE_TOP,
    Prediction,
    feature_maps,
    predict,
    saliency,
    saliency_summary,
    smoothgrad,
    total_variation,
    unsure_reason,
)
from core.preprocess import MAX_IMAGE_BYTES, ImageError, Prepared, PreprocessOptions, decode_image, prepare
from core.runs import BEST_CHECKPOINT, list_runs
from pages.canvas import st_canvas
from pages.charts import feature_maps_figure, probability_figure, saliency_figure
from pages.common import _, answer_names, current_dataset_name, num, pct, translator, upscale
from pages.common import class_names as dataset_class_names
from pages.draw_why import why_sections
from pages.hardset_ui import hard_set_panel
from pages.lang import pgettext, say, sentences

CANVAS_PX = 280  # canvas side: 10 screen pixels per MNIST pixel
CANVAS_TOOLBAR_ROOM_PX = 12  # extra space above the canvas for its toolbar (see draw_input)
STRIP_PX = 140  # about how wide each image of the preprocessing strip is shown
DEFAULT_CHOICE = "default"  # the model picker's value for the shipped model (values never depend on the language)
# What a model of each dataset reads (marked; translated at use).
SUBJECTS = {"mnist": N_("digit"), "fashion-mnist": N_("fashion item")}  # its classes: clothes, shoes and bags
STEP_LABELS = {  # PreprocessOptions field -> toggle label, in pipeline order
    "polarity": N_("Ink map"),
    "crop": N_("Crop to ink"),
    "fit": N_("Fit to 20 px"),
    "antialias": N_("Anti-alias"),
    "center_of_mass": N_("Centering"),
    "normalize": N_("Normalize"),
}
STEP_HELP = {
    "polarity": N_("Light background: invert it. Transparent background: use the alpha channel. Matters for "
                   "uploads."),
    "crop": N_("Off: the whole image counts as the drawing, so it ends up small."),
    "fit": N_("Off: the crop is stretched to fill 28×28, losing the 4-px margin and the aspect ratio."),
    "antialias": N_("Off: nearest-neighbour downscaling, jagged strokes without MNIST's grey edges."),
    "center_of_mass": N_("On: the center of mass goes to pixel 14, as in MNIST. Off: the box is centered instead."),
    "normalize": N_("Off: pixels in 0–1 are fed as they are, not with the model's mean and std."),
}


# ---------------------------------------------------------------------------------------------
# Models


@st.cache_resource(show_spinner=False, max_entries=8)
def cached_checkpoint(path: str, modified: float) -> LoadedCheckpoint:
    """The checkpoint at `path`, loaded once per file version (`modified` is its mtime)."""
    return load_checkpoint(path)


def model_choices() -> dict[str, tuple[str, Path]]:
    """Value -> (label, checkpoint path): the default model, then every run that has a best checkpoint.

    The values (DEFAULT_CHOICE, run ids) do not depend on the language, so a picked model survives a switch.
    """
    choices = {DEFAULT_CHOICE: (_("Default model (shipped)"), DEFAULT_CHECKPOINT)}
    for run in list_runs():
        best = run.run_dir / BEST_CHECKPOINT
        if best.is_file():
            accuracy = f", {pct(run.best_test_accuracy, 2)}" if run.best_test_accuracy is not None else ""
            kind = " " + _("one-vs-rest") if run.task == "binary" else ""
            data = f", {DATASETS[run.dataset].title}" if run.dataset in DATASETS and run.dataset != "mnist" else ""
            choices[run.run_id] = (f"{run.run_id} ({run.arch}{kind}{data}{accuracy})", best)
    return choices


def load_choice(label: str, path: Path) -> LoadedCheckpoint | None:
    """The loaded checkpoint, or None after saying why it cannot be used."""
    try:
        with st.spinner(_("Loading the model…")):
            return cached_checkpoint(str(path), path.stat().st_mtime)
    except (OSError, CheckpointError) as error:
        st.error(_("**{label}** cannot be loaded: {error}").format(label=label, error=_(str(error))))
        return None


def choose_models() -> list[tuple[str, str, LoadedCheckpoint]]:
    """One or two (value, label, checkpoint) triples picked on the page; the value is "default" or a run id."""
    choices = model_choices()
    values = list(choices)
    first, second = st.columns(2, vertical_alignment="bottom")
    label_of = lambda value: choices[value][0]  # noqa: E731
    picked = [first.selectbox(_("Model"), values, key="model", format_func=label_of)]
    if len(values) > 1 and second.toggle(_("Compare with a second model"), key="compare"):
        picked.append(second.selectbox(_("Second model"), values, index=1, key="model2", format_func=label_of))
    loaded = [(value, choices[value][0], load_choice(*choices[value])) for value in picked if value in choices]
    return [(value, label, checkpoint) for value, label, checkpoint in loaded if checkpoint is not None]


def subject(checkpoint: LoadedCheckpoint) -> str:
    """What the model expects to see: "digit" for an MNIST model (in the session's language)."""
    return _(SUBJECTS.get(checkpoint.dataset, N_("image")))


def dataset_notes(models: list[tuple[str, LoadedCheckpoint]], sidebar: str) -> list[str]:
    """One sentence per chosen model whose dataset differs from the sidebar's, or that is not a digit model."""
    chosen = get_spec(sidebar).title
    notes = []
    for label, checkpoint in models:
        spec = get_spec(checkpoint.dataset)
        classes = _(", ").join(dataset_class_names(checkpoint.dataset))
        if checkpoint.dataset == "mnist" and sidebar != "mnist":
            answers = (_("one of the digits 0–9") if checkpoint.task != "binary"
                       else _("a {digit} or not a {digit}").format(digit=checkpoint.target_digit))
            notes.append(
                _("The sidebar's dataset is {chosen}, but **{label}** is an MNIST digit model: it reads whatever "
                  "you draw or upload as {answers}. For {chosen}, train a model on it (Train page) and pick it "
                  "above.").format(chosen=chosen, label=label, answers=answers)
            )
        elif checkpoint.dataset != "mnist":
            sidebar_part = ("" if sidebar == checkpoint.dataset
                            else _(" (the sidebar's dataset is {chosen})").format(chosen=chosen))
            notes.append(
                _("**{label}** was trained on {dataset}{sidebar_part}: it reads whatever you draw or upload as one "
                  "of {classes}. The preprocessing below follows MNIST's recipe for digits, not the way {dataset}'s "
                  "images were made.").format(label=label, dataset=spec.title, sidebar_part=sidebar_part,
                                              classes=classes)
            )
    return notes


def class_names(checkpoint: LoadedCheckpoint) -> tuple[str, ...]:
    """What each probability is about: the classes, or (not X, X) for a one-vs-rest model."""
    return answer_names(checkpoint.dataset, checkpoint.task, checkpoint.target_digit)


# ---------------------------------------------------------------------------------------------
# Inputs


def draw_input() -> np.ndarray | None:
    """The canvas (white ink on black) as an RGBA array, or None while nothing is drawn."""
    st.session_state.setdefault("canvas_version", 0)
    stroke_col, clear_col = st.columns([2, 1], vertical_alignment="bottom")
    stroke = stroke_col.slider(_("Stroke width (px)"), 8, 40, 22, key="stroke")
    if clear_col.button(_("Clear"), icon=":material/delete:", key="clear", width="stretch"):
        st.session_state["canvas_version"] += 1  # a new key is a new, empty canvas
    # On hover the canvas shows its own toolbar 2.65rem above its top edge, over whatever is there:
    # this space, with the two gaps around it, keeps it clear of the slider.
    st.space(CANVAS_TOOLBAR_ROOM_PX)
    canvas = st_canvas(  # sends the drawing at every mouse-up, without the package's 200 ms wait (pages/canvas)
        stroke_width=stroke, stroke_color="#FFFFFF", background_color="#000000", height=CANVAS_PX, width=CANVAS_PX,
        key=f"canvas-{st.session_state['canvas_version']}",
    )
    has_strokes = bool((canvas.json_data or {}).get("objects"))
    return canvas.image_data if has_strokes else None


def upload_input(noun: str) -> np.ndarray | None:
    """An uploaded PNG/JPEG of one `noun` as an RGBA array, or None (with the reason shown)."""
    upload = st.file_uploader(
        _("A PNG or JPEG of one {noun}, dark on light or light on dark (at most {megabytes} MB)").format(
            noun=noun, megabytes=MAX_IMAGE_BYTES // 2**20),
        type=["png", "jpg", "jpeg"], key="upload",
    )
    if upload is None:
        return None
    try:
        return decode_image(upload.getvalue())
    except ImageError as error:
        st.error(_("**{name}**: {reason}").format(name=upload.name, reason=say(error.message)))
        return None


def step_toggles() -> PreprocessOptions:
    """One toggle per preprocessing step, all on by default."""
    columns = st.columns(len(STEP_LABELS))
    switches = {
        field: column.toggle(_(label), value=True, key=f"step_{field}", help=_(STEP_HELP[field]))
        for column, (field, label) in zip(columns, STEP_LABELS.items(), strict=True)
    }
    return PreprocessOptions(**switches)


# ---------------------------------------------------------------------------------------------
# Rendering


def big_answer(text: str) -> None:
    """The answer in very large type; the class lets browser tests find it."""
    style = "font-size:6rem;font-weight:700;line-height:1.1;margin:0"
    st.markdown(f"<p class='big-answer' style='{style}'>{text}</p>", unsafe_allow_html=True)


def show_prediction(label: str, checkpoint: LoadedCheckpoint, prediction: Prediction, position: int) -> None:
    """The big answer, the bar chart and, when the model hesitates, a warning saying why."""
    names = class_names(checkpoint)
    answer = names[prediction.label]
    st.caption(label)
    if prediction.binary:
        digit = checkpoint.target_digit
        big_answer(f"P({digit}) = {pct(prediction.probabilities[0], 0)}")
        st.markdown(_("A one-vs-rest model: it only answers whether this is a {digit}. Its answer: "
                      "**{answer}**.").format(digit=digit, answer=answer))
    else:
        big_answer(answer)
        st.markdown(_("Predicted **{answer}** with probability **{probability}**.").format(
            answer=answer, probability=pct(prediction.confidence, 1)))
    figure = probability_figure(prediction.class_probabilities, names, prediction.label)
    st.plotly_chart(figure, key=f"bars-{position}", config={"displayModeBar": False})
    reason = unsure_reason(prediction, translator=translator())
    if reason:
        st.warning(
            _("The model is unsure: {reason}. The page warns when the top probability is under {top} or the top two "
              "are within {margin} of each other; a clearer, larger {subject} helps.").format(
                reason=reason, top=pct(UNSURE_TOP, 0), margin=pct(UNSURE_MARGIN, 0), subject=subject(checkpoint))
        )


def as_display(image: np.ndarray) -> np.ndarray:
    """A [0, 1] image padded to a black square and enlarged with crisp pixels, as uint8."""
    height, width = image.shape
    side = max(height, width)
    square = np.zeros((side, side), dtype=np.uint8)
    top, left = (side - height) // 2, (side - width) // 2
    square[top : top + height, left : left + width] = np.rint(np.clip(image, 0, 1) * 255)
    return upscale(square, max(1, STRIP_PX // side))


def show_strip(stages: Prepared, model_input: torch.Tensor, options: PreprocessOptions,
               checkpoint: LoadedCheckpoint) -> None:
    """The image after each step, then what happened to it, in words and numbers."""
    model_view = model_input[0, 0].numpy()
    low, high = float(model_view.min()), float(model_view.max())
    fitted_h, fitted_w = stages.fitted.shape
    images: list[tuple[np.ndarray, str]] = [
        (stages.ink, "1. " + _("ink map {size}").format(size=f"{stages.ink.shape[1]}×{stages.ink.shape[0]}")),
        (stages.cropped, "2. " + (_("cropped {size}") if options.crop else _("uncropped {size}")).format(
            size=f"{stages.cropped.shape[1]}×{stages.cropped.shape[0]}")),
        (stages.fitted, "3. " + (_("fitted {size}") if options.fit else _("stretched {size}")).format(
            size=f"{fitted_w}×{fitted_h}")),
        (stages.centered, "4. " + (_("centered {size}") if options.center_of_mass else _("box centered {size}")).format(
            size="28×28")),
        ((model_view - low) / max(high - low, 1e-6),
         "5. " + _("model input {low} … {high}").format(low=num(low, 2), high=num(high, 2))),
    ]
    for column, (image, caption) in zip(st.columns(len(images)), images, strict=True):
        column.image(as_display(image), caption=caption, width="stretch")
    st.markdown(strip_explanation(stages, model_input, options, checkpoint))


def strip_explanation(stages: Prepared, model_input: torch.Tensor, options: PreprocessOptions,
                      checkpoint: LoadedCheckpoint) -> str:
    """What each step did to this image, one clause per step, as the toggles have it."""
    low, high = float(model_input.min()), float(model_input.max())
    top, left, bottom, right = stages.box
    fitted_h, fitted_w = stages.fitted.shape
    ink_h, ink_w = stages.ink.shape
    edges = _("with anti-aliasing, hence the grey edges") if options.antialias else _(
        "without anti-aliasing (nearest neighbour), hence the jagged edges")
    norm = checkpoint.normalization
    values = dict(top=top, bottom=bottom - 1, left=left, right=right - 1, size=f"{ink_w}×{ink_h}",
                  subject=subject(checkpoint), fitted=f"{fitted_w}×{fitted_h}", edges=edges, preset=norm.preset,
                  mean=num(norm.mean, 4), std=num(norm.std, 4), low=num(low, 2), high=num(high, 2))
    parts = [
        _("The ink map reads bright ink on a dark background (a light background is inverted, a transparent "
          "one's alpha is the ink).") if options.polarity else
        _("The ink map takes each pixel's brightness as it is: dark ink on light paper stays dark on light."),
        _("The ink spans rows {top}–{bottom} and columns {left}–{right} of the input, and only that box is "
          "kept.") if options.crop else
        _("Cropping is off: the whole {size} image counts as the {subject}, margins and all."),
        _("MNIST scaled each digit so that its longer side is 20 px, keeping the aspect ratio (here {fitted} px), "
          "{edges}; so does this step.") if options.fit else
        _("Fitting is off: the image is stretched to 28×28 {edges}, losing MNIST's 4-px margin and the aspect "
          "ratio."),
        _("Then it is pasted into 28×28 so that its center of mass lands on pixel 14, as in MNIST.")
        if options.center_of_mass else
        _("Centering by mass is off: the box is pasted in the middle of the 28×28 frame."),
        _("Last, pixels in 0–1 are normalized as this model was trained (*{preset}*: (x − {mean}) / {std}), giving "
          "values from {low} to {high}.") if options.normalize else
        _("Normalization is off: pixels in 0–1 ({low} to {high}) are fed as they are, not as this model was "
          "trained ((x − {mean}) / {std})."),
        _("Switch a step off or on above and watch the probabilities change."),
    ]
    return sentences(*(part.format(**values) for part in parts))


def show_saliency(checkpoint: LoadedCheckpoint, model_input: torch.Tensor, prediction: Prediction) -> None:
    """The 28x28 input beside the plain gradient and SmoothGrad, each with a sentence on what it shows."""
    # Both of the predicted class (the logit if binary).
    plain = saliency(checkpoint.model, model_input)
    smooth = smoothgrad(checkpoint.model, model_input)
    name = class_names(checkpoint)[1 if prediction.binary else prediction.label]
    row, col, share = saliency_summary(smooth, count=28)
    st.markdown(
        _("**Saliency**: which input pixels the network's score for *{name}* depends on. **Plain gradient**, "
          "|∂score/∂pixel|: how much a tiny change of each pixel alone would move the score, exact for this very "
          "image but noisy, since the network's ReLUs make it jump from pixel to pixel. **SmoothGrad**: the same "
          "map averaged over {samples} copies of the input with random noise ({noise} of its value range): what "
          "holds all around this image, so it marks regions rather than single pixels (its pixel-to-pixel "
          "variation is {smooth_tv} against {plain_tv}). In SmoothGrad, the 28 most influential pixels (of 784) "
          "carry {share} of the total and sit around row {row}, column {col}.").format(
            name=name, samples=SMOOTHGRAD_SAMPLES, noise=pct(SMOOTHGRAD_NOISE, 0),
            smooth_tv=num(total_variation(smooth), 2), plain_tv=num(total_variation(plain), 2), share=pct(share, 0),
            row=f"{row:.0f}", col=f"{col:.0f}")
    )
    figure = saliency_figure(model_input[0, 0].numpy(), plain.numpy(), smooth.numpy(), name)
    st.plotly_chart(figure, key="saliency")


def show_feature_maps(checkpoint: LoadedCheckpoint, model_input: torch.Tensor) -> None:
    """Every conv block's output channels, with their sizes in words."""
    blocks = feature_maps(checkpoint.model, model_input)
    if not blocks:
        st.info(_("This model has no convolutional layers, so it has no feature maps to show."))
        return
    sizes = _("; ").join(_("*{name}*: {count} maps of {size}").format(
        name=b.name, count=b.maps.shape[0], size=f"{b.maps.shape[1]}×{b.maps.shape[2]}") for b in blocks)
    st.markdown(
        _("**Feature maps**: each small image is one channel after a convolution (with its BatchNorm and "
          "activation): bright where that filter found its pattern, each scaled to its own maximum. {sizes}. "
          "Pooling halves the maps while the channels grow: fewer *where*, more *what*.").format(sizes=sizes)
    )
    titles = [f"{b.name}: {b.maps.shape[0]} × {b.maps.shape[1]}×{b.maps.shape[2]}" for b in blocks]
    figure = feature_maps_figure([(title, b.maps.numpy()) for title, b in zip(titles, blocks, strict=True)])
    st.plotly_chart(figure, key="feature_maps")


# ---------------------------------------------------------------------------------------------
# The page: inputs -> guard -> one core call per model -> render


@st.fragment
def answer_panel(models: list[tuple[str, str, LoadedCheckpoint]], source: str, noun: str) -> None:
    """The input, the answers and the views below them: a stroke or a toggle reruns only this part.

    The rest of the page (the model choice, which lists every run folder, and the app's frame) stays as it
    is; the drawing is preprocessed once and each model gets its own normalization of the same 28x28 image.
    """
    input_col, answer_col = st.columns(2, gap="large")
    with input_col:
        image = draw_input() if source == "Draw" else upload_input(noun)
    st.subheader(_("Preprocessing steps"))
    options = step_toggles()
    stages = prepare(image, options) if image is not None else None
    if image is None or stages is None:
        if image is None and source == "Draw":
            message = _("Draw a {noun} on the black canvas: an empty canvas gets no prediction.")
        elif image is None:
            message = _("Upload an image of a {noun}.")
        else:
            message = _("No ink found: draw a {noun} (or upload one with more contrast) to get a prediction.")
        answer_col.info(message.format(noun=noun))
        first_value, _label, first = models[0]
        with st.expander(_("My hard set"), icon=":material/bookmarks:"):  # its list, export and import need no drawing
            hard_set_panel(None, first.dataset, "draw" if source == "Draw" else "upload", 0, first_value,
                           class_names(first))
        return
    inputs = [stages.model_input(checkpoint.normalization) for _value, _label, checkpoint in models]
    predictions = [predict(checkpoint.model, model_input)
                   for (_value, _label, checkpoint), model_input in zip(models, inputs, strict=True)]
    for position, (column, (_value, label, checkpoint)) in enumerate(
            zip(answer_col.columns(len(models)), models, strict=True)):
        with column:
            show_prediction(label, checkpoint, predictions[position], position)
    first_value, first_label, first = models[0]
    if len(models) > 1:
        st.caption(_("Below, for the first model: {label}.").format(label=first_label))
    # Only the open tab is computed and drawn, so the answer to a stroke appears quickly.
    strip_tab, saliency_tab, maps_tab, hard_tab = st.tabs(
        [_("From drawing to 28×28 input"), _("Saliency"), _("Feature maps"), _("My hard set")], key="view",
        on_change="rerun",
    )
    if strip_tab.open:
        with strip_tab:
            show_strip(stages, inputs[0], options, first)
    if saliency_tab.open:
        with saliency_tab:
            show_saliency(first, inputs[0], predictions[0])
    if maps_tab.open:
        with maps_tab:
            show_feature_maps(first, inputs[0])
    if hard_tab.open:
        with hard_tab:
            binary_yes = first.task == "binary" and predictions[0].label == 1
            guess = first.target_digit if binary_yes else predictions[0].label if first.task != "binary" else 0
            hard_set_panel(image, first.dataset, "draw" if source == "Draw" else "upload", guess, first_value,
                           class_names(first))
    why_sections(first, inputs[0], predictions[0], options)


title, intro = st.empty(), st.empty()  # filled once the model, and so what it reads, is known
models = choose_models()
noun = subject(models[0][2]) if models else _("digit")
title.title(_("Draw a {noun}").format(noun=noun))
intro.markdown(
    _("Draw a {noun} with the mouse and the network answers after every stroke. Below, in tabs: the steps that "
      "turn the drawing into a 28×28 MNIST-style image, which pixels the answer depends on (saliency), what "
      "each convolution layer detects (feature maps), and your own hard set of drawings with their true labels, "
      "scored by every model. Under \"Why this answer?\": how the answer holds up when the drawing is moved, "
      "turned, scaled or its strokes thinned, the training images the network finds most alike, what the "
      "answer rests on, and where the drawing lands among the test images.").format(noun=noun)
)
if not models:
    st.stop()
for note in dataset_notes([(label, checkpoint) for _value, label, checkpoint in models], current_dataset_name()):
    st.info(note, icon=":material/info:")
source = st.segmented_control(_("Input"), ["Draw", "Upload"], default="Draw", required=True, key="source",
                              format_func=lambda kind: pgettext("input", "Draw") if kind == "Draw"
                              else pgettext("input", "Upload"))
answer_panel(models, source or "Draw", noun)
