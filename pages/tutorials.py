"""Tutorials page: the four source tutorials step by step, the live numbers of their code, their mistakes
measured, and a button to run each recipe as a job."""

from __future__ import annotations

import pandas as pd
import streamlit as st
import torch

from core import jobs, runs, tutorials
from core.data import Dataset
from core.i18n import N_
from core.runs import RunRecord
from core.summary import ModelSummary
from core.training import PRESET_DESCRIPTIONS, ConfigError, config_to_dict
from core.tutorials import Excerpt, Machine, MeasuredResults, Tutorial
from pages import arch_charts
from pages.charts import RunStyle, batch_loss_figure, overlay_figure, run_color, train_test_figure
from pages.common import (
    _,
    choice,
    current_dataset_name,
    error_text,
    get_dataset,
    ngettext,
    num,
    pct,
    settings_text,
    upscale,
)
from pages.lang import sentences

PICK_KEY = "tut_pick"
HEADS = {
    "logits": N_("The network outputs raw scores (logits): any real numbers, not summing to 1."),
    "softmax": N_("The network outputs probabilities: every row sums to 1."),
    "log_softmax": N_("The network outputs log-probabilities: the exponentials of every row sum to 1."),
    "one_logit": N_("The network outputs one raw score (a logit) per image: any real number."),
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
    return f"{tut.number} · {_(tut.title)}"


# ---------------------------------------------------------------------------------------------
# The steps: the tutorial's code on the left, the live numbers of exactly that code on the right


def data_numbers(key: str, dataset: Dataset) -> None:
    norm = tutorials.data_normalization(key, dataset)
    low, high = norm.value_range()
    if norm.preset == "none":
        st.markdown(_("The network sees pixel / 255, from **{low}** to **{high}**.").format(low=f"{low:g}",
                                                                                          high=f"{high:g}"))
    else:
        st.markdown(_("The network sees (pixel / 255 − {mean}) / {std}, from **{low}** to **{high}**.").format(
            mean=num(norm.mean, 4), std=num(norm.std, 4), low=num(low, 4), high=num(high, 4)))
    images = num(len(dataset.train_labels))
    if norm.preset == "dataset":
        st.caption(_("Computed from the {images} training images, the mean is {mean} and the standard deviation "
                     "{std}; the tutorial types {typed_mean} and {typed_std}.").format(
            images=images, mean=num(norm.mean, 5), std=num(norm.std, 5), typed_mean=tutorials.TYPED_MEAN,
            typed_std=tutorials.TYPED_STD))
    mean, std = dataset.mean_std
    st.caption(_("Over all {images} training images, the transformed pixels have mean {mean} and standard deviation "
                 "{std}.").format(images=images, mean=num((mean - norm.mean) / norm.std, 4),
                                  std=num(std / norm.std, 4)))


def loader_numbers(key: str, dataset: Dataset) -> None:
    n = tutorials.loader_numbers(key, dataset)
    st.markdown(_("{images} training images in batches of {size} make **{batches} batches per epoch**; the last one "
                  "holds {last} images.").format(images=num(n.train_images), size=n.batch_size,
                                                 batches=num(n.train_batches), last=n.last_train_batch))
    st.markdown(_("The test loader cuts {images} test images into {batches} batches of {size}; the last one holds "
                  "{last} images.").format(images=num(n.test_images), batches=num(n.test_batches),
                                           size=n.test_batch_size, last=n.last_test_batch))


def network_numbers(key: str) -> None:
    summary = cached_summary(key)
    st.metric(_("Trainable parameters"), num(summary.total_params))
    columns = [_("layer"), _("type"), _("input"), _("output"), _("params")]
    st.dataframe(arch_charts.layer_frame(summary)[columns], hide_index=True,
                 width="stretch", column_config=arch_charts.count_columns(), key=f"tut_layers_{key}")
    for row in summary.layers:
        if formula := arch_charts.param_formula(row):
            numbers = " = ".join(formula.split(" = ")[-2:])  # the worked numbers, without the generic formula
            st.latex(rf"\text{{{row.name}}}:\ {numbers}")
    st.caption(_("Parameters: k_h·k_w·C_in·C_out + C_out for a convolution (weights plus one bias per output "
                 "channel), n_in·n_out + n_out for a Linear layer. Shapes are per image (channels×height×width, or "
                 "a vector length after Flatten), measured with hooks on a real forward pass."))


def loss_numbers(key: str, tut: Tutorial, dataset: Dataset) -> None:
    view = cached_loss_view(key, dataset)
    config = tutorials.recipe(key)
    st.markdown(_(HEADS["one_logit" if len(view.first_output) == 1 else view.head]))
    if key == "seed000":
        st.markdown(_("For the first training image (a {label}) the untrained network outputs the logit {logit}; the "
                      "sigmoid inside BCEWithLogitsLoss makes it the probability {probability} that the image is an "
                      "8.").format(label=view.label, logit=num(view.first_output[0], 4),
                                   probability=num(view.extra["probability_first"], 4)))
    else:
        frame = pd.DataFrame({_("class"): range(len(view.first_output)), _("output"): view.first_output})
        st.dataframe(frame.T, width="stretch", key=f"tut_output_{key}")
        st.caption(_("The untrained network's output for the first training image (a {label}), weights from seed 0: "
                     "the row sums to {total} and its exponentials to {exp_total}.").format(
            label=view.label, total=num(view.output_sum, 4), exp_total=num(view.exp_sum, 4)))
    st.markdown(_("On the first batch of {batch} training images, the loss as written, {loss}, is "
                  "**{value}**.").format(batch=view.batch, loss=_(tut.loss_as_written),
                                          value=num(view.loss_as_written, 4)))
    if tut.loss_meant != tut.loss_as_written:
        st.markdown(_("The loss that matches this output, {loss}, is **{value}** on the same batch and "
                      "weights.").format(loss=_(tut.loss_meant), value=num(view.loss_meant, 4)))
    st.caption(_("The preset trains with {optimizer} at learning rate {lr}.").format(
        optimizer=config.optimizer.name, lr=f"{config.optimizer.lr:g}"))


def loop_numbers(key: str, dataset: Dataset) -> None:
    n = tutorials.loader_numbers(key, dataset)
    st.markdown(ngettext("{count} epoch of {batches} batches makes **{steps} optimizer steps**.",
                         "{count} epochs of {batches} batches make **{steps} optimizer steps**.", n.epochs).format(
        count=n.epochs, batches=num(n.train_batches), steps=num(n.total_steps)))
    if key == "seed000":
        share = tutorials.share_of(dataset, 8, train=True)
        st.caption(_("{share} of the training labels become 1 (an 8); the rest become 0.").format(share=pct(share, 2)))


def eval_numbers(key: str, dataset: Dataset) -> None:
    n = tutorials.loader_numbers(key, dataset)
    if key == "seed000":
        share = tutorials.share_of(dataset, 8, train=False)
        st.markdown(_("Only {share} of the test images are 8s, so answering \"not an 8\" every time already scores "
                      "**{baseline}**.").format(share=pct(share, 2), baseline=pct(1 - share, 2)))
    elif key == "seed001":
        st.markdown(_("With the true test set, len(test_dataset) is {test} and the loop walks {batches} batches; with "
                      "the train=True example it would be {train} images in {train_batches} batches.").format(
            test=num(n.test_images), batches=num(n.test_batches), train=num(n.train_images),
            train_batches=num(n.train_as_test_batches)))
    elif key == "seed002":
        st.markdown(_("The printed average loss is the mean batch loss × {batches} / {images}, that is, **{factor} "
                      "times** too small.").format(batches=n.test_batches, images=num(n.test_images),
                                                  factor=num(n.test_images / n.test_batches, 1)))
    else:
        st.markdown(_("The loop counts right answers over all {images} test images.").format(
            images=num(n.test_images)))


def show_step(key: str, tut: Tutorial, excerpt: Excerpt, dataset: Dataset) -> None:
    st.subheader(_(tutorials.STEP_TITLES[excerpt.step]))
    code, numbers = st.columns([1, 1])
    with code:
        st.code(excerpt.code, language="python", wrap_lines=True)
        st.caption(sentences(_("Quoted from tutorial {number}.").format(number=tut.number), _(excerpt.note)))
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
    st.warning(_("The measured figures are missing: run `python scripts/measure_tutorials.py` to make "
                 "`docs/tutorial-results.json`."))


def mistakes_000() -> None:
    st.subheader(_("conv1 has 320 parameters, not 896"))
    count = tutorials.conv1_count(cached_summary("seed000"))
    cells = st.columns(3)
    cells[0].metric(_("The tutorial's count"), num(count.printed))
    cells[1].metric(_("Its formula worked out"), num(count.formula))
    cells[2].metric(_("conv1 in the built network"), num(count.model))
    st.latex(rf"(3 \times 3 \times {count.in_channels}) \times {count.out_channels} + {count.out_channels}"
             rf" = {count.formula}")
    st.latex(rf"(3 \times 3 \times 3) \times {count.out_channels} + {count.out_channels} = {count.rgb}")
    st.markdown(_("The tutorial prints (3×3×1)×32+32 = {printed}. Worked out, the same formula gives {formula}, and "
                  "conv1 of the built network has {model} parameters. {printed} is the count for a 3-channel (RGB) "
                  "input, which MNIST's grey images are not.").format(printed=count.printed, formula=count.formula,
                                                                      model=count.model))


def train_set_mistake(results: MeasuredResults | None) -> None:
    st.subheader(_("The example's test set is the training set (train=True)"))
    if results is None:
        no_results()
        return
    measured = results.train_set_as_test_set
    budget = results.budget
    cells = st.columns(3)
    cells[0].metric(_("Reported with train=True"), pct(measured["reported_accuracy"], 2))
    cells[1].metric(_("Real test set (train=False)"), pct(measured["true_test_accuracy"], 2))
    gap = (measured["reported_accuracy"] - measured["true_test_accuracy"]) * 100
    cells[2].metric(_("Difference"), _("{gap} points").format(gap=f"{gap:+.2f}"))
    st.markdown(_("Trained as written on the first {images} training images for {epochs} epochs (seed {seed}), the "
                  "DemoModel scores {reported} on those same images, which is what the tutorial's loop reports when "
                  "test_ds is loaded with train=True, and {true} on the {test_images} real test images.").format(
        images=num(measured["images"]), epochs=budget.epochs, seed=budget.seed,
        reported=pct(measured["reported_accuracy"], 2), true=pct(measured["true_test_accuracy"], 2),
        test_images=num(measured["test_images"])))
    st.caption(_("A score on images the network learned from measures memory as well as skill; the gap grows with "
                 "longer training, and only train=False says how it does on new handwriting."))


def softmax_mistake(results: MeasuredResults | None) -> None:
    st.subheader(_("Softmax before CrossEntropyLoss: softmax applied twice"))
    floor = tutorials.smallest_loss_on_probabilities()
    st.markdown(_("CrossEntropyLoss applies its own log-softmax, so here it sees log-softmax of probabilities. "
                  "Probabilities lie between 0 and 1, so the scores it compares differ by at most 1, and even a "
                  "network that is 100% sure and right gets a loss of at least **{floor}** = log(1 + 9/e). The "
                  "gradients shrink with it, so learning is slower.").format(floor=num(floor, 4)))
    if results is None:
        no_results()
        return
    pair = [results.trainings["seed001-as-written"], results.trainings["seed001-no-softmax"]]
    cells = st.columns(2)
    for cell, training in zip(cells, pair, strict=True):
        last = training.epochs[-1]
        cell.metric(_(training.title), pct(last.test_accuracy, 2),
                    help=_("Test accuracy after epoch {epoch}; the training loss of that epoch is {loss}.").format(
                        epoch=last.epoch, loss=num(last.train_loss, 4)))
    styles = [RunStyle(_(training.title), run_color(index)) for index, training in enumerate(pair)]
    left, right = st.columns(2)
    left.plotly_chart(overlay_figure([(style, [r.epoch for r in t.epochs], [r.test_accuracy for r in t.epochs])
                                      for style, t in zip(styles, pair, strict=True)],
                                     _("Test accuracy per epoch"), _("epoch"), _("test accuracy"), percent=True,
                                     whole_x=True),
                      key="tut_softmax_accuracy")
    loss_lines = [(style, t.batch_steps, t.batch_losses) for style, t in zip(styles, pair, strict=True)]
    right.plotly_chart(overlay_figure(loss_lines, _("Training loss"), _("optimizer step"),
                                      _("loss (mean of 10 batches)")), key="tut_softmax_loss")
    budget = results.budget
    st.caption(_("Both trained with the same seed ({seed}), the same {train} training images and {epochs} epochs, and "
                 "tested on {test} test images; only the final Softmax differs.").format(
        seed=budget.seed, train=num(budget.train_images), epochs=budget.epochs, test=num(budget.test_images)))


def cosine_mistake(results: MeasuredResults | None) -> None:
    st.subheader(_("CosineAnnealingLR is created but never stepped"))
    rates = tutorials.tutorial_learning_rates()
    style_on = RunStyle(_("if step() were called every epoch"), run_color(2))
    style_off = RunStyle(_("as written"), run_color(1))
    st.plotly_chart(overlay_figure([(style_on, rates.epochs, rates.scheduled), (style_off, rates.epochs, rates.actual)],
                                   _("Learning rate of tutorial 001"), _("epoch"), _("learning rate")),
                    key="tut_cosine")
    bottom_epoch, bottom = rates.lowest
    st.markdown(_("Stepped once per epoch, CosineAnnealingLR(T_max={t_max}) would lower the learning rate from "
                  "{start} to {bottom} in epoch {bottom_epoch} and raise it again after that. As written, "
                  "lr_scheduler.step() is never called, and the learning rate stays {stays} for all {epochs} "
                  "epochs.").format(t_max=rates.t_max, start=f"{rates.scheduled[0]:g}", bottom=f"{bottom:g}",
                                    bottom_epoch=bottom_epoch, stays=f"{rates.actual[-1]:g}",
                                    epochs=len(rates.epochs)))
    st.caption(_("Both curves come from torch's own Adam and CosineAnnealingLR, with a few optimizer steps per "
                 "epoch."))
    if results is not None:
        recorded = ", ".join(f"{row.lr:g}" for row in results.trainings["seed001-as-written"].epochs)
        st.caption(_("The measured as-written run recorded these learning rates at the end of its epochs: "
                     "{recorded}.").format(recorded=recorded))


def mistakes_001(results: MeasuredResults | None) -> None:
    train_set_mistake(results)
    softmax_mistake(results)
    cosine_mistake(results)


def mistakes_002(dataset: Dataset, results: MeasuredResults | None) -> None:
    st.subheader(_("F.cross_entropy on the output of log_softmax"))
    view = cached_loss_view("seed002", dataset)
    st.latex(r"\operatorname{log\_softmax}(z) = z - \log \sum_j e^{z_j}")
    st.markdown(_("For log-probabilities the exponentials sum to 1, so log Σ exp(z) is 0: on the first image it is "
                  "{first}. A second log_softmax, the one inside F.cross_entropy, changes the output by at most "
                  "{change} on this batch of {batch} images.").format(
        first=f"{view.extra['logsumexp_first']:.2e}", change=f"{view.extra['largest_change']:.1e}", batch=view.batch))
    cells = st.columns(3)
    cells[0].metric(_("F.cross_entropy (as written)"), f"{view.loss_as_written:.6f}")
    cells[1].metric(_("F.nll_loss (what was meant)"), f"{view.loss_meant:.6f}")
    cells[2].metric(_("Difference"), f"{view.extra['loss_difference']:.1e}")
    st.markdown(_("So the code still works: F.cross_entropy on log-probabilities gives the same number as "
                  "F.nll_loss, the loss written for a log_softmax output. nll_loss is what was meant; it skips the "
                  "extra log_softmax."))
    if results is None:
        no_results()
        return
    both = results.cross_entropy_vs_nll
    lines = [(RunStyle("F.cross_entropy", run_color(0)), list(range(1, both["steps"] + 1)), both["cross_entropy"]),
             (RunStyle("F.nll_loss", run_color(1)), list(range(1, both["steps"] + 1)), both["nll_loss"])]
    st.plotly_chart(overlay_figure(lines, _("Training loss of Digit, batch by batch"), _("optimizer step"),
                                   _("loss")), key="tut_ce_nll")
    st.markdown(_("Trained from the same weights on the same {steps} batches of {size}, the two losses never differ "
                  "by more than {loss_gap}, and the weights end at most {weight_gap} apart.").format(
        steps=both["steps"], size=both["batch_size"], loss_gap=f"{both['max_loss_difference']:.1e}",
        weight_gap=f"{both['max_weight_difference']:.1e}"))


def mistakes_003(dataset: Dataset) -> None:
    st.subheader(_("imshow un-normalizes for Normalize(0.5, 0.5), not (0.1307, 0.3081)"))
    grids = cached_grids(dataset)
    left, right = st.columns(2)
    left.image(upscale(grids.as_written, 2), caption=_("As written: img / 2 + 0.5, clipped to [0, 1] by matplotlib."))
    right.image(upscale(grids.corrected, 2), caption=_("Corrected: img × {std} + {mean}.").format(std=grids.std,
                                                                                                mean=grids.mean))
    st.markdown(_("With the tutorial's imshow, a black pixel becomes {black} (grey) and a white one {white}, above 1, "
                  "so matplotlib clips it. Every pixel from {first} of 255 up is shown as pure white: {share} of the "
                  "digits' pixels in these {images} images. img × {std} + {mean} undoes "
                  "Normalize(({mean},), ({std},)) exactly.").format(
        black=num(grids.background_as_written, 3), white=num(grids.white_as_written, 3),
        first=grids.first_clipped_pixel, share=pct(grids.clipped_share, 1), images=grids.images, std=grids.std,
        mean=grids.mean))
    st.caption(_("The first {images} training images, laid out as torchvision's make_grid does (8 per row, 2-pixel "
                 "borders of 0 before un-normalizing); the tutorial shows a shuffled batch.").format(
        images=grids.images))
    st.subheader(_("dataiter.next() is gone: use next(dataiter)"))
    if tutorials.dataloader_iterator_has_next_method():
        st.markdown(_("In torch {version} a DataLoader iterator still has a .next() method, but next(dataiter) is the "
                      "call that works in every version.").format(version=torch.__version__))
    else:
        st.markdown(_("In torch {version}, the torch on this server, a DataLoader iterator has no .next() method, so "
                      "dataiter.next() raises AttributeError. next(dataiter) is the call that works.").format(
            version=torch.__version__))


# ---------------------------------------------------------------------------------------------
# Run the recipe as a job; the preset's runs, live


def launch(config_key: str, name: str, results: MeasuredResults | None = None) -> None:
    """Start a job: the tutorial's recipe, or one measured training (by name) when results are given."""
    config = results.trainings[config_key].config() if results is not None else tutorials.recipe(config_key)
    try:
        run_id = jobs.launch(config, name=name)
    except (ConfigError, runs.RunError) as error:
        st.error(_("The run could not start:") + f" {error_text(error)}")
        return
    st.toast(_("Started run {run}.").format(run=run_id))


def run_table(records: list[RunRecord]) -> None:
    final, best = _("final test accuracy"), _("best test accuracy")
    st.dataframe(pd.DataFrame([{
        _("run"): record.name, _("status"): _(runs.STATUS_LABELS.get(record.status, record.status)),
        _("epochs"): f"{record.epochs_done}/{record.total_epochs}",
        final: record.final_test_accuracy, best: record.best_test_accuracy,
        _("settings"): settings_text(record.settings_parts),
    } for record in records]), hide_index=True, width="stretch", column_config={
        final: st.column_config.NumberColumn(format="percent"), best: st.column_config.NumberColumn(format="percent")})


def recipe_runs(key: str, was_live: bool) -> None:
    """The newest run of this preset with its curves, and every run of it; re-read every second while one trains."""
    records = list(tutorials.runs_of_preset(key))
    if not records:
        st.info(_("No runs of this recipe yet."))
        return
    newest = records[0]
    st.progress(newest.fraction_done, text=_("Newest run: {name}, {status}, {done} of {total} epochs done.").format(
        name=newest.name, status=_(runs.STATUS_LABELS.get(newest.status, newest.status)), done=newest.epochs_done,
        total=newest.total_epochs))
    points = runs.read_metrics(newest.run_dir, newest.live).rows
    left, right = st.columns(2)
    if points:
        left.plotly_chart(train_test_figure([p.epoch for p in points], [p.train_accuracy for p in points],
                                            [p.test_accuracy for p in points], _("Accuracy per epoch"),
                                            _("accuracy"), percent=True), key="tut_run_accuracy")
    series = runs.read_batches(newest.run_dir)
    if series.steps:
        right.plotly_chart(batch_loss_figure(series.steps, series.losses), key="tut_run_loss")
    st.markdown(_("Every run of this recipe, newest first ({count} in all):").format(count=len(records)))
    run_table(records)
    if was_live and not any(record.live for record in records):
        st.rerun()


def run_section(key: str) -> None:
    st.markdown(_(PRESET_DESCRIPTIONS[key]))
    settings = runs.settings_messages(config_to_dict(tutorials.recipe(key)))
    st.caption(_("Preset {key}: {settings}.").format(key=key, settings=settings_text(settings)))
    name = _("tutorial {number} recipe").format(number=tutorials.tutorial(key).number)  # in the user's language
    st.button(_("Run this recipe"), key=f"tut_run_{key}", type="primary", icon=":material/play_arrow:",
              on_click=launch, args=(key, name))
    live = any(record.live for record in tutorials.runs_of_preset(key))
    st.fragment(run_every=1.0 if live else None)(recipe_runs)(key, live)


def machine_text(machine: Machine) -> str:
    """Where the figures were measured, in the session's language; names and versions stay as they are."""
    cores = ngettext("{count} CPU core", "{count} CPU cores", machine.cores).format(count=machine.cores)
    threads = ngettext("{count} thread", "{count} threads", machine.threads).format(count=machine.threads)
    return _("{system}, {cores}, Python {python}, torch {torch}, {threads}").format(
        system=machine.system, cores=cores, python=machine.python, torch=machine.torch, threads=threads)


def measured_section(results: MeasuredResults | None, key: str) -> None:
    """Where tutorial 001's and 002's measured figures come from; on 001, its two trainings as jobs to re-run."""
    st.header(_("How the measured figures were made"))
    if results is None:
        no_results()
        return
    budget = results.budget
    st.markdown(_("Measured on {date} with `{command}` on {machine}. Each training used the first {train} training "
                  "images, the first {test} test images, {epochs} epochs and seed {seed}; the whole script took "
                  "{seconds} s.").format(date=results.measured_at, command=results.command,
                                         machine=machine_text(results.machine),
                                         train=num(budget.train_images), test=num(budget.test_images),
                                         epochs=budget.epochs, seed=budget.seed, seconds=f"{results.seconds:.0f}"))
    if key != "seed001":
        st.caption(_("The cross_entropy and nll_loss comparison above trains {steps} steps inside the script.").format(
            steps=results.cross_entropy_vs_nll["steps"]))
        return
    st.caption(_("The trainings measured above can be re-run here as jobs; they appear with this recipe's runs."))
    for name, training in results.trainings.items():
        st.button(_("Re-run “{title}” as a job").format(title=_(training.title)), key=f"tut_rerun_{name}",
                  icon=":material/replay:", on_click=launch, args=(name, _(training.title), results))


st.title(_("Tutorials"))
if current_dataset_name() != "mnist":
    st.info(_("The four tutorials train on MNIST, so this page shows MNIST's numbers whichever dataset the sidebar "
              "has chosen."), icon=":material/info:")
st.markdown(_("The four tutorials this lab grew from, walked step by step: their own code, the numbers that code "
              "really produces, the mistakes in it, shown, corrected and measured, and a button to run each recipe."))
key = choice(st.radio, _("Tutorial"), list(tutorials.TUTORIALS), format_func=label, horizontal=True, key=PICK_KEY)
tut = tutorials.tutorial(key)
dataset = get_dataset("mnist")  # the tutorials all train on MNIST, whatever the sidebar says
results = tutorials.read_results()

st.header(_("Tutorial {number}: {title}").format(number=tut.number, title=_(tut.title)))
if tut.titled:
    st.caption(_("Source: tutorial {number}, titled “{source}”.").format(number=tut.number, source=tut.source))
else:
    st.caption(_("Source: tutorial {number}, which opens with “{source}”.").format(number=tut.number,
                                                                                  source=tut.source))
st.caption(_("The code excerpts are quoted from the tutorial; every number beside them is computed on this server "
             "from the same network, data and settings."))
for excerpt in tut.excerpts:
    show_step(key, tut, excerpt, dataset)

st.header(_("What the tutorial gets wrong"))
if key == "seed000":
    mistakes_000()
elif key == "seed001":
    mistakes_001(results)
elif key == "seed002":
    mistakes_002(dataset, results)
else:
    mistakes_003(dataset)

st.header(_("Run this recipe"))
run_section(key)
if key in ("seed001", "seed002"):  # the tutorials whose figures come from docs/tutorial-results.json
    measured_section(results, key)
