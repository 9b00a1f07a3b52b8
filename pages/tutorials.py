"""Tutorials page: the four source tutorials step by step, the live numbers of their code, their mistakes
measured, and a button to run each recipe as a job."""

from __future__ import annotations

import pandas as pd
import streamlit as st
import torch

from core import jobs, runs, tutorials
from core.data import Dataset
from core.runs import RunRecord
from core.summary import ModelSummary
from core.train import PRESET_DESCRIPTIONS, ConfigError, config_to_dict
from core.tutorials import Excerpt, MeasuredResults, Tutorial
from pages import arch_charts
from pages.charts import RunStyle, batch_loss_figure, overlay_figure, run_color, train_test_figure
from pages.common import _, get_dataset, upscale

PICK_KEY = "tut_pick"
HEADS = {
    "logits": "The network outputs raw scores (logits): any real numbers, not summing to 1.",
    "softmax": "The network outputs probabilities: every row sums to 1.",
    "log_softmax": "The network outputs log-probabilities: the exponentials of every row sum to 1.",
    "one_logit": "The network outputs one raw score (a logit) per image: any real number.",
}


@st.cache_resource(show_spinner=False)
def cached_loss_view(key: str, _dataset: Dataset) -> tutorials.LossView:
    return tutorials.loss_view(key, _dataset)


@st.cache_resource(show_spinner=False)
def cached_summary(key: str) -> ModelSummary:
    return tutorials.network_summary(key)


@st.cache_resource(show_spinner=False)
def cached_grids(_dataset: Dataset) -> tutorials.ImshowGrids:
    return tutorials.imshow_grids(_dataset)


def label(key: str) -> str:
    tut = tutorials.tutorial(key)
    return f"{tut.number} · {tut.title}"


# ---------------------------------------------------------------------------------------------
# The steps: the tutorial's code on the left, the live numbers of exactly that code on the right


def data_numbers(key: str, dataset: Dataset) -> None:
    norm = tutorials.data_normalization(key, dataset)
    low, high = norm.value_range()
    if norm.preset == "none":
        st.markdown(f"The network sees pixel / 255, from **{low:g}** to **{high:g}**.")
    else:
        st.markdown(f"The network sees (pixel / 255 − {norm.mean:.4f}) / {norm.std:.4f}, from **{low:.4f}** "
                    f"to **{high:.4f}**.")
    if norm.preset == "dataset":
        st.caption(f"Computed from the {len(dataset.train_labels):,} training images, the mean is {norm.mean:.5f} "
                   f"and the standard deviation {norm.std:.5f}; the tutorial types {tutorials.TYPED_MEAN} and "
                   f"{tutorials.TYPED_STD}.")
    mean, std = dataset.mean_std
    st.caption(f"Over all {len(dataset.train_labels):,} training images, the transformed pixels have mean "
               f"{(mean - norm.mean) / norm.std:.4f} and standard deviation {std / norm.std:.4f}.")


def loader_numbers(key: str, dataset: Dataset) -> None:
    n = tutorials.loader_numbers(key, dataset)
    st.markdown(f"{n.train_images:,} training images in batches of {n.batch_size} make **{n.train_batches:,} "
                f"batches per epoch**; the last one holds {n.last_train_batch} images.")
    st.markdown(f"The test loader cuts {n.test_images:,} test images into {n.test_batches:,} batches of "
                f"{n.test_batch_size}; the last one holds {n.last_test_batch} images.")


def network_numbers(key: str) -> None:
    summary = cached_summary(key)
    st.metric("Trainable parameters", f"{summary.total_params:,}")
    columns = [_("layer"), _("type"), _("input"), _("output"), _("params")]
    st.dataframe(arch_charts.layer_frame(summary)[columns], hide_index=True,
                 width="stretch", column_config=arch_charts.count_columns(), key=f"tut_layers_{key}")
    for row in summary.layers:
        if formula := arch_charts.param_formula(row):
            numbers = " = ".join(formula.split(" = ")[-2:])  # the worked numbers, without the generic formula
            st.latex(rf"\text{{{row.name}}}:\ {numbers}")
    st.caption("Parameters: k_h·k_w·C_in·C_out + C_out for a convolution (weights plus one bias per output "
               "channel), n_in·n_out + n_out for a Linear layer. Shapes are per image (channels×height×width, or "
               "a vector length after Flatten), measured with hooks on a real forward pass.")


def loss_numbers(key: str, tut: Tutorial, dataset: Dataset) -> None:
    view = cached_loss_view(key, dataset)
    config = tutorials.recipe(key)
    st.markdown(HEADS["one_logit" if len(view.first_output) == 1 else view.head])
    if key == "seed000":
        st.markdown(f"For the first training image (a {view.label}) the untrained network outputs the logit "
                    f"{view.first_output[0]:.4f}; the sigmoid inside BCEWithLogitsLoss makes it the probability "
                    f"{view.extra['probability_first']:.4f} that the image is an 8.")
    else:
        frame = pd.DataFrame({"class": range(len(view.first_output)), "output": view.first_output})
        st.dataframe(frame.T, width="stretch", key=f"tut_output_{key}")
        st.caption(f"The untrained network's output for the first training image (a {view.label}), weights from "
                   f"seed 0: the row sums to {view.output_sum:.4f} and its exponentials to {view.exp_sum:.4f}.")
    st.markdown(f"On the first batch of {view.batch} training images, the loss as written, "
                f"{tut.loss_as_written}, is **{view.loss_as_written:.4f}**.")
    if tut.loss_meant != tut.loss_as_written:
        st.markdown(f"The loss that matches this output, {tut.loss_meant}, is **{view.loss_meant:.4f}** on the "
                    "same batch and weights.")
    st.caption(f"The preset trains with {config.optimizer.name} at learning rate {config.optimizer.lr:g}.")


def loop_numbers(key: str, dataset: Dataset) -> None:
    n = tutorials.loader_numbers(key, dataset)
    if n.epochs == 1:
        st.markdown(f"One epoch of {n.train_batches:,} batches makes **{n.total_steps:,} optimizer steps**.")
    else:
        st.markdown(f"{n.epochs} epochs of {n.train_batches:,} batches make **{n.total_steps:,} optimizer steps**.")
    if key == "seed000":
        share = tutorials.share_of(dataset, 8, train=True)
        st.caption(f"{share:.2%} of the training labels become 1 (an 8); the rest become 0.")


def eval_numbers(key: str, dataset: Dataset) -> None:
    n = tutorials.loader_numbers(key, dataset)
    if key == "seed000":
        share = tutorials.share_of(dataset, 8, train=False)
        st.markdown(f"Only {share:.2%} of the test images are 8s, so answering \"not an 8\" every time already "
                    f"scores **{1 - share:.2%}**.")
    elif key == "seed001":
        st.markdown(f"With the true test set, len(test_dataset) is {n.test_images:,} and the loop walks "
                    f"{n.test_batches:,} batches; with the train=True example it would be {n.train_images:,} "
                    f"images in {n.train_as_test_batches:,} batches.")
    elif key == "seed002":
        st.markdown(f"The printed average loss is the mean batch loss × {n.test_batches} / {n.test_images:,}, "
                    f"that is, **{n.test_images / n.test_batches:.1f} times** too small.")
    else:
        st.markdown(f"The loop counts right answers over all {n.test_images:,} test images.")


def show_step(key: str, tut: Tutorial, excerpt: Excerpt, dataset: Dataset) -> None:
    st.subheader(tutorials.STEP_TITLES[excerpt.step])
    code, numbers = st.columns([1, 1])
    with code:
        st.code(excerpt.code, language="python", wrap_lines=True)
        st.caption(f"Quoted from tutorial {tut.number}. {excerpt.note}")
    with numbers:
        if excerpt.step == "data":
            data_numbers(key, dataset)
        elif excerpt.step == "loader":
            loader_numbers(key, dataset)
        elif excerpt.step == "network":
            network_numbers(key)
        elif excerpt.step == "loss":
            loss_numbers(key, tut, dataset)
        elif excerpt.step == "loop":
            loop_numbers(key, dataset)
        else:
            eval_numbers(key, dataset)


# ---------------------------------------------------------------------------------------------
# The mistakes, each shown, corrected and measured


def no_results() -> None:
    st.warning("The measured figures are missing: run `python scripts/measure_tutorials.py` to make "
               "docs/tutorial-results.json.")


def mistakes_000() -> None:
    st.subheader("conv1 has 320 parameters, not 896")
    count = tutorials.conv1_count(cached_summary("seed000"))
    cells = st.columns(3)
    cells[0].metric("The tutorial's count", f"{count.printed:,}")
    cells[1].metric("Its formula worked out", f"{count.formula:,}")
    cells[2].metric("conv1 in the built network", f"{count.model:,}")
    st.latex(rf"(3 \times 3 \times {count.in_channels}) \times {count.out_channels} + {count.out_channels}"
             rf" = {count.formula}")
    st.latex(rf"(3 \times 3 \times 3) \times {count.out_channels} + {count.out_channels} = {count.rgb}")
    st.markdown(f"The tutorial prints (3×3×1)×32+32 = {count.printed}. Worked out, the same formula gives "
                f"{count.formula}, and conv1 of the built network has {count.model} parameters. {count.printed} is "
                f"the count for a 3-channel (RGB) input, which MNIST's grey images are not.")


def train_set_mistake(results: MeasuredResults | None) -> None:
    st.subheader("The example's test set is the training set (train=True)")
    if results is None:
        no_results()
        return
    measured = results.train_set_as_test_set
    budget = results.budget
    cells = st.columns(3)
    cells[0].metric("Reported with train=True", f"{measured['reported_accuracy']:.2%}")
    cells[1].metric("Real test set (train=False)", f"{measured['true_test_accuracy']:.2%}")
    gap = (measured["reported_accuracy"] - measured["true_test_accuracy"]) * 100
    cells[2].metric("Difference", f"{gap:+.2f} points")
    st.markdown(f"Trained as written on the first {measured['images']:,} training images for {budget.epochs} "
                f"epochs (seed {budget.seed}), the DemoModel scores {measured['reported_accuracy']:.2%} on those same "
                f"images, which is what the tutorial's loop reports when test_ds is loaded with train=True, and "
                f"{measured['true_test_accuracy']:.2%} on the {measured['test_images']:,} real test images.")
    st.caption("A score on images the network learned from measures memory as well as skill; the gap grows "
               "with longer training, and only train=False says how it does on new handwriting.")


def softmax_mistake(results: MeasuredResults | None) -> None:
    st.subheader("Softmax before CrossEntropyLoss: softmax applied twice")
    floor = tutorials.smallest_loss_on_probabilities()
    st.markdown(f"CrossEntropyLoss applies its own log-softmax, so here it sees log-softmax of probabilities. "
                f"Probabilities lie between 0 and 1, so the scores it compares differ by at most 1, and even a "
                f"network that is 100% sure and right gets a loss of at least **{floor:.4f}** = log(1 + 9/e). "
                "The gradients shrink with it, so learning is slower.")
    if results is None:
        no_results()
        return
    pair = [results.trainings["seed001-as-written"], results.trainings["seed001-no-softmax"]]
    cells = st.columns(2)
    for cell, training in zip(cells, pair, strict=True):
        last = training.epochs[-1]
        cell.metric(training.title, f"{last.test_accuracy:.2%}",
                    help=f"Test accuracy after epoch {last.epoch}; the training loss of that epoch is "
                         f"{last.train_loss:.4f}.")
    styles = [RunStyle(training.title, run_color(index)) for index, training in enumerate(pair)]
    left, right = st.columns(2)
    left.plotly_chart(overlay_figure([(style, [r.epoch for r in t.epochs], [r.test_accuracy for r in t.epochs])
                                      for style, t in zip(styles, pair, strict=True)],
                                     "Test accuracy per epoch", "epoch", "test accuracy", percent=True, whole_x=True),
                      key="tut_softmax_accuracy")
    loss_lines = [(style, t.batch_steps, t.batch_losses) for style, t in zip(styles, pair, strict=True)]
    right.plotly_chart(overlay_figure(loss_lines, "Training loss", "optimizer step", "loss (mean of 10 batches)"),
                       key="tut_softmax_loss")
    budget = results.budget
    st.caption(f"Both trained with the same seed ({budget.seed}), the same {budget.train_images:,} training images "
               f"and {budget.epochs} epochs, and tested on {budget.test_images:,} test images; only the final Softmax "
               "differs.")


def cosine_mistake(results: MeasuredResults | None) -> None:
    st.subheader("CosineAnnealingLR is created but never stepped")
    rates = tutorials.tutorial_learning_rates()
    style_on = RunStyle("if step() were called every epoch", run_color(2))
    style_off = RunStyle("as written", run_color(1))
    st.plotly_chart(overlay_figure([(style_on, rates.epochs, rates.scheduled), (style_off, rates.epochs, rates.actual)],
                                   "Learning rate of tutorial 001", "epoch", "learning rate"), key="tut_cosine")
    bottom_epoch, bottom = rates.lowest
    st.markdown(f"Stepped once per epoch, CosineAnnealingLR(T_max={rates.t_max}) would lower the learning rate "
                f"from {rates.scheduled[0]:g} to {bottom:g} in epoch {bottom_epoch} and raise it again after that. "
                f"As written, lr_scheduler.step() is never called, and the learning rate stays "
                f"{rates.actual[-1]:g} for all {len(rates.epochs)} epochs.")
    st.caption("Both curves come from torch's own Adam and CosineAnnealingLR, with a few optimizer steps per epoch.")
    if results is not None:
        recorded = ", ".join(f"{row.lr:g}" for row in results.trainings["seed001-as-written"].epochs)
        st.caption(f"The measured as-written run recorded these learning rates at the end of its epochs: {recorded}.")


def mistakes_001(results: MeasuredResults | None) -> None:
    train_set_mistake(results)
    softmax_mistake(results)
    cosine_mistake(results)


def mistakes_002(dataset: Dataset, results: MeasuredResults | None) -> None:
    st.subheader("F.cross_entropy on the output of log_softmax")
    view = cached_loss_view("seed002", dataset)
    st.latex(r"\operatorname{log\_softmax}(z) = z - \log \sum_j e^{z_j}")
    st.markdown(f"For log-probabilities the exponentials sum to 1, so log Σ exp(z) is 0: on the first image it is "
                f"{view.extra['logsumexp_first']:.2e}. A second log_softmax, the one inside F.cross_entropy, changes "
                f"the output by at most {view.extra['largest_change']:.1e} on this batch of {view.batch} images.")
    cells = st.columns(3)
    cells[0].metric("F.cross_entropy (as written)", f"{view.loss_as_written:.6f}")
    cells[1].metric("F.nll_loss (what was meant)", f"{view.loss_meant:.6f}")
    cells[2].metric("Difference", f"{view.extra['loss_difference']:.1e}")
    st.markdown("So the code still works: F.cross_entropy on log-probabilities gives the same number as "
                "F.nll_loss, the loss written for a log_softmax output. nll_loss is what was meant; it skips the "
                "extra log_softmax.")
    if results is None:
        no_results()
        return
    both = results.cross_entropy_vs_nll
    lines = [(RunStyle("F.cross_entropy", run_color(0)), list(range(1, both["steps"] + 1)), both["cross_entropy"]),
             (RunStyle("F.nll_loss", run_color(1)), list(range(1, both["steps"] + 1)), both["nll_loss"])]
    st.plotly_chart(overlay_figure(lines, "Training loss of Digit, batch by batch", "optimizer step", "loss"),
                    key="tut_ce_nll")
    st.markdown(f"Trained from the same weights on the same {both['steps']} batches of {both['batch_size']}, the two "
                f"losses never differ by more than {both['max_loss_difference']:.1e}, and the weights end at most "
                f"{both['max_weight_difference']:.1e} apart.")


def mistakes_003(dataset: Dataset) -> None:
    st.subheader("imshow un-normalizes for Normalize(0.5, 0.5), not (0.1307, 0.3081)")
    grids = cached_grids(dataset)
    left, right = st.columns(2)
    left.image(upscale(grids.as_written, 2), caption="As written: img / 2 + 0.5, clipped to [0, 1] by matplotlib.")
    right.image(upscale(grids.corrected, 2), caption=f"Corrected: img × {grids.std} + {grids.mean}.")
    st.markdown(f"With the tutorial's imshow, a black pixel becomes {grids.background_as_written:.3f} (grey) and a "
                f"white one {grids.white_as_written:.3f}, above 1, so matplotlib clips it. Every pixel from "
                f"{grids.first_clipped_pixel} of 255 up is shown as pure white: {grids.clipped_share:.1%} of the "
                f"digits' pixels in these {grids.images} images. img × {grids.std} + {grids.mean} undoes "
                f"Normalize(({grids.mean},), ({grids.std},)) exactly.")
    st.caption(f"The first {grids.images} training images, laid out as torchvision's make_grid does (8 per row, "
               "2-pixel borders of 0 before un-normalizing); the tutorial shows a shuffled batch.")
    st.subheader("dataiter.next() is gone: use next(dataiter)")
    if tutorials.dataloader_iterator_has_next_method():
        st.markdown(f"In torch {torch.__version__} a DataLoader iterator still has a .next() method, but "
                    "next(dataiter) is the call that works in every version.")
    else:
        st.markdown(f"In torch {torch.__version__}, the torch on this server, a DataLoader iterator has no .next() "
                    "method, so dataiter.next() raises AttributeError. next(dataiter) is the call that works.")


# ---------------------------------------------------------------------------------------------
# Run the recipe as a job; the preset's runs, live


def launch(config_key: str, name: str, results: MeasuredResults | None = None) -> None:
    """Start a job: the tutorial's recipe, or one measured training (by name) when results are given."""
    config = results.trainings[config_key].config() if results is not None else tutorials.recipe(config_key)
    try:
        run_id = jobs.launch(config, name=name)
    except (ConfigError, runs.RunError) as error:
        st.error(f"The run could not start: {error}")
        return
    st.toast(f"Started run {run_id}.")


def run_table(records: list[RunRecord]) -> None:
    st.dataframe(pd.DataFrame([{
        "run": record.name, "status": record.status, "epochs": f"{record.epochs_done}/{record.total_epochs}",
        "final test accuracy": record.final_test_accuracy, "best test accuracy": record.best_test_accuracy,
        "settings": record.settings,
    } for record in records]), hide_index=True, width="stretch", column_config={
        "final test accuracy": st.column_config.NumberColumn(format="percent"),
        "best test accuracy": st.column_config.NumberColumn(format="percent")})


def recipe_runs(key: str, was_live: bool) -> None:
    """The newest run of this preset with its curves, and every run of it; re-read every second while one trains."""
    records = list(tutorials.runs_of_preset(key))
    if not records:
        st.info("No runs of this recipe yet.")
        return
    newest = records[0]
    st.progress(newest.fraction_done, text=f"Newest run: {newest.name}, {newest.status}, {newest.epochs_done} of "
                                           f"{newest.total_epochs} epochs done.")
    points = runs.read_metrics(newest.run_dir, newest.live).rows
    left, right = st.columns(2)
    if points:
        left.plotly_chart(train_test_figure([p.epoch for p in points], [p.train_accuracy for p in points],
                                            [p.test_accuracy for p in points], "Accuracy per epoch", "accuracy",
                                            percent=True), key="tut_run_accuracy")
    series = runs.read_batches(newest.run_dir)
    if series.steps:
        right.plotly_chart(batch_loss_figure(series.steps, series.losses), key="tut_run_loss")
    st.markdown(f"Every run of this recipe, newest first ({len(records)} in all):")
    run_table(records)
    if was_live and not any(record.live for record in records):
        st.rerun()


def run_section(key: str) -> None:
    st.markdown(PRESET_DESCRIPTIONS[key])
    st.caption(f"Preset {key}: {runs.describe_settings(config_to_dict(tutorials.recipe(key)))}.")
    st.button("Run this recipe", key=f"tut_run_{key}", type="primary", icon=":material/play_arrow:",
              on_click=launch, args=(key, f"tutorial {tutorials.tutorial(key).number} recipe"))
    live = any(record.live for record in tutorials.runs_of_preset(key))
    st.fragment(run_every=1.0 if live else None)(recipe_runs)(key, live)


def measured_section(results: MeasuredResults | None) -> None:
    st.header("How the measured figures were made")
    if results is None:
        no_results()
        return
    budget = results.budget
    st.markdown(f"Measured on {results.measured_at} with `{results.command}` on {results.machine}. Each training used "
                f"the first {budget.train_images:,} training images, the first {budget.test_images:,} test images, "
                f"{budget.epochs} epochs and seed {budget.seed}; the whole script took {results.seconds:.0f} s.")
    st.caption(f"Tutorial 002's cross_entropy and nll_loss comparison trains {results.cross_entropy_vs_nll['steps']} "
               "steps inside the script; the trainings below can be re-run here as jobs, and appear with tutorial "
               "001's runs.")
    for name, training in results.trainings.items():
        st.button(f"Re-run \u201c{training.title}\u201d as a job", key=f"tut_rerun_{name}",
                  icon=":material/replay:", on_click=launch, args=(name, training.title, results))


st.title("Tutorials")
st.markdown("The four tutorials this lab grew from, walked step by step: their own code, the numbers that code "
            "really produces, the mistakes in it, shown, corrected and measured, and a button to run each recipe.")
key = st.radio("Tutorial", list(tutorials.TUTORIALS), format_func=label, horizontal=True, key=PICK_KEY)
tut = tutorials.tutorial(key)
dataset = get_dataset("mnist")  # the tutorials all train on MNIST, whatever the sidebar says
results = tutorials.read_results()

st.header(f"Tutorial {tut.number}: {tut.title}")
if tut.titled:
    st.caption(f"Source: tutorial {tut.number}, titled \u201c{tut.source}\u201d.")
else:
    st.caption(f"Source: tutorial {tut.number}, which opens with \u201c{tut.source}\u201d.")
st.caption("The code excerpts are quoted from the tutorial; every number beside them is computed on this server "
           "from the same network, data and settings.")
for excerpt in tut.excerpts:
    show_step(key, tut, excerpt, dataset)

st.header("What the tutorial gets wrong")
if key == "seed000":
    mistakes_000()
elif key == "seed001":
    mistakes_001(results)
elif key == "seed002":
    mistakes_002(dataset, results)
else:
    mistakes_003(dataset)

st.header("Run this recipe")
run_section(key)
measured_section(results)
