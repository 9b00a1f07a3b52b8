"""Train page: configure a run from a preset, start and stop it, and watch its metrics live."""

from __future__ import annotations

import zlib
from typing import Any

import streamlit as st
import torch

from core import jobs, runs
from core.data import NORMALIZATIONS
from core.i18n import N_
from core.layers import ArchitectureError, layer_label
from core.metrics import CHART_SMOOTHING, Evaluation, most_confident_mistakes
from core.models import describe_architecture, list_architectures
from core.runs import RunRecord
from core.saved_archs import SAVED_PREFIX, list_saved_architectures, saved_options
from core.training import (
    FLAT_FIELDS,
    LOSS_SMOOTHING,
    OPTIMIZERS,
    PRECISIONS,
    PRESET_DESCRIPTIONS,
    PRESETS,
    SCHEDULERS,
    ConfigError,
    TrainConfig,
    cpu_computes_bf16,
    flat_values,
    preset_config,
)
from pages.charts import (
    batch_loss_figure,
    confusion_figure,
    lr_figure,
    per_class_figure,
    roc_figure,
    train_test_figure,
)
from pages.common import (
    _,
    choice,
    class_names,
    current_dataset_name,
    dataset_title,
    error_text,
    get_dataset,
    ngettext,
    num,
    pct,
    run_message,
    say,
    settings_text,
    upscale,
)
from pages.export_ui import export_buttons
from pages.lang import sentence_gap, sentences

RUN_PARAM = "run"  # URL query parameter: the run this page follows (a reload or a shared link keeps it)
PREFIX = "tr_"  # session-state prefix of the form's widgets, followed by a FLAT_FIELDS name
DEVICES = ["auto", "cpu", "cuda", "mps"]
NORMALIZATION_LABELS = {"none": N_("none: [0, 1]"), "half": "(0.5, 0.5): [-1, 1]", "dataset": N_("dataset mean/std")}
TASK_LABELS = runs.TASK_LABELS  # task kind -> what it asks


def apply_preset() -> None:
    """Fill every form widget from the chosen preset (runs before the page redraws)."""
    values = flat_values(PRESETS[st.session_state[PREFIX + "preset_choice"]])
    for name, value in values.items():
        st.session_state[PREFIX + name] = list(value) if isinstance(value, tuple) else value
    # Widgets that edit part of a field: the betas pair and the seed001 softmax option.
    st.session_state[PREFIX + "beta1"], st.session_state[PREFIX + "beta2"] = values["betas"]
    st.session_state[PREFIX + "softmax"] = bool(values["options"].get("softmax", True))


def field(name: str) -> Any:
    return st.session_state[PREFIX + name]


def reset_arch_options() -> None:
    """Options belong to one architecture (seed001's softmax means nothing to fastcnn): clear them."""
    st.session_state[PREFIX + "options"] = {}
    st.session_state[PREFIX + "softmax"] = True


def architecture_label(choice: str) -> str:
    """A registry name as it is; a saved stack as its name, marked as yours."""
    if choice.startswith(SAVED_PREFIX):
        return _("{name} (yours)").format(name=choice.removeprefix(SAVED_PREFIX))
    return choice


def architecture_caption(choice: str) -> str:
    """The registry's description, or a saved stack's layers (or why it cannot be read)."""
    if not choice.startswith(SAVED_PREFIX):
        return _(describe_architecture(choice))
    try:
        layers = saved_options(choice.removeprefix(SAVED_PREFIX))["layers"]
    except ArchitectureError as error:
        return say(error.message)
    return _("Your network from the Architecture page: {layers}.").format(
        layers=" → ".join(layer_label(spec) for spec in layers))


def model_values(choice: str) -> dict[str, Any]:
    """The form's arch choice as config fields: a saved stack trains as `custom` with its layers and name."""
    if not choice.startswith(SAVED_PREFIX):
        return {}
    return {"arch": "custom", "options": saved_options(choice.removeprefix(SAVED_PREFIX))}


def model_and_task_inputs() -> None:
    st.markdown("**" + _("Model and task") + "**")
    architectures = [name for name in list_architectures() if name != "custom"]
    architectures += [SAVED_PREFIX + name for name in list_saved_architectures()]
    choice(st.selectbox, _("Architecture"), architectures, key=PREFIX + "arch", on_change=reset_arch_options,
           format_func=architecture_label,
           help=_("Open the Architecture page to see every layer's shape and cost, or to build and save "
                        "your own network."))
    st.caption(architecture_caption(field("arch")))
    choice(st.radio, _("Task"), list(TASK_LABELS), key=PREFIX + "task", horizontal=True,
           format_func=lambda kind: _(TASK_LABELS[kind]))
    if field("task") == "binary":
        classes = class_names()
        named = {label: str(label) if name == str(label) else f"{label}: {name}" for label, name in enumerate(classes)}
        choice(st.selectbox, _("Target class"), range(10), key=PREFIX + "target_digit", format_func=named.__getitem__)
    else:
        st.number_input(_("Label smoothing"), 0.0, 0.5, step=0.05, key=PREFIX + "label_smoothing",
                        help=_("Share of the target probability spread over all classes: the model is never "
                               "asked to be 100% sure, which often generalizes better (the best preset uses 0.1)."))
    if field("arch") == "seed001":
        keep = st.checkbox(_("Keep the tutorial's final Softmax"), key=PREFIX + "softmax",
                           help=_("CrossEntropyLoss applies its own log-softmax, so a Softmax before it squashes "
                                  "the scores twice and slows learning. Untick to train on raw logits."))
        st.session_state[PREFIX + "options"] = {**field("options"), "softmax": keep}


def data_inputs() -> None:
    st.markdown("**" + _("Data") + "**")
    choice(st.selectbox, _("Normalization"), list(NORMALIZATIONS), key=PREFIX + "normalization",
           format_func=lambda preset: _(NORMALIZATION_LABELS[preset]),
           help=" · ".join(_(text) for text in NORMALIZATIONS.values()))
    # Short labels: the column is narrow and a long checkbox label is cut off; what each does is in its help.
    st.checkbox(_("Augment"), key=PREFIX + "augment", help=_("Random rotation, shift and scale, drawn per image."))
    if current_dataset_name() == "mnist":
        st.checkbox(_("Distort like other writers"), key=PREFIX + "distort",
                    help=_("Slant, wobble, pen width and coarse scans; on MNIST also scans that fill a box of set "
                           "proportions (which widens thin digits), crossed 7s, flagged 1s and hooked 9s. Stronger "
                           "than Augment and used instead of it: what the shipped default model trains with so that "
                           "it reads digits written outside MNIST. Slower to learn: give it more epochs."))
    else:  # no writers here: only the warp applies (core.training.distortion_of)
        st.checkbox(_("Distort strongly"), key=PREFIX + "distort",
                    help=_("Slant, wobble, thicker or thinner outlines and coarse scans: stronger than Augment and "
                           "used instead of it. Slower to learn: give it more epochs."))
    st.number_input(_("Batch size"), 1, 4096, key=PREFIX + "batch_size")
    st.number_input(_("Train on the first N images (0 = all {count})").format(count=num(60000)), 0, 60000, step=1000,
                    key=PREFIX + "train_subset")
    st.number_input(_("Test on the first N images (0 = all {count})").format(count=num(10000)), 0, 10000, step=1000,
                    key=PREFIX + "test_subset")


def optimizer_inputs() -> None:
    st.markdown("**" + _("Optimizer and schedule") + "**")
    st.selectbox(_("Optimizer"), list(OPTIMIZERS), key=PREFIX + "optimizer")
    st.number_input(_("Learning rate"), min_value=1e-6, max_value=10.0, format="%.5f", step=1e-4, key=PREFIX + "lr")
    st.number_input(_("Weight decay"), min_value=0.0, max_value=1.0, format="%.5f", step=1e-4,
                    key=PREFIX + "weight_decay")
    if field("optimizer") == "sgd":
        st.number_input(_("Momentum"), 0.0, 0.999, step=0.05, key=PREFIX + "momentum")
        st.checkbox(_("Nesterov momentum"), key=PREFIX + "nesterov")
    else:
        st.session_state[PREFIX + "betas"] = [
            st.number_input("β1", 0.0, 0.9999, step=0.01, format="%.4f", key=PREFIX + "beta1"),
            st.number_input("β2", 0.0, 0.9999, step=0.001, format="%.4f", key=PREFIX + "beta2"),
        ]
    st.selectbox(_("Scheduler"), list(SCHEDULERS), key=PREFIX + "scheduler")
    if field("scheduler") == "cosine":
        st.number_input(_("T_max (epochs to the minimum; 0 = the run's epochs)"), 0, 1000, key=PREFIX + "t_max")
        st.number_input(_("Minimum learning rate"), 0.0, 1.0, format="%.6f", step=1e-5, key=PREFIX + "min_lr")
    elif field("scheduler") == "step":
        st.number_input(_("Step size (epochs)"), 1, 1000, key=PREFIX + "step_size")
        st.number_input(_("Gamma (multiplier)"), 0.001, 1.0, step=0.05, key=PREFIX + "gamma")
    elif field("scheduler") == "onecycle":
        st.number_input(_("Warm-up share of steps"), 0.01, 0.99, step=0.05, key=PREFIX + "pct_start")


def run_inputs() -> None:
    st.markdown("**" + _("Run") + "**")
    st.number_input(_("Epochs"), 1, 500, key=PREFIX + "epochs")
    st.number_input(_("Random seed"), 0, 2**31 - 1, key=PREFIX + "seed")
    cuda = _("yes") if torch.cuda.is_available() else _("no")
    st.selectbox(_("Device"), DEVICES, key=PREFIX + "device",
                 help=_("auto picks CUDA, then Apple MPS, then the CPU. CUDA here: {cuda}.").format(cuda=cuda))
    st.number_input(_("CPU threads (0 = the idle cores, checked every epoch)"), 0, 256, key=PREFIX + "threads")
    native = _("yes") if cpu_computes_bf16() else _("no")
    st.selectbox(_("Precision"), list(PRECISIONS), key=PREFIX + "precision",
                 help=_("The arithmetic of the training steps. auto is bfloat16 (autocast) where the hardware "
                        "multiplies it natively (CUDA GPUs from Ampere on, CPUs with AVX512-BF16 or AMX), float32 "
                        "elsewhere; weights, the optimizer and the test-set scores stay float32. This CPU "
                        "multiplies bfloat16 natively: {native}.").format(native=native))
    st.number_input(_("Processes (data-parallel)"), 1, 8, key=PREFIX + "processes",
                    help=_("Train one run in N local processes with torchrun and DistributedDataParallel; the "
                           "batch size stays the global batch, split evenly among them. On a 2-core machine two "
                           "processes are not faster than one: this is for machines with more cores or GPUs."))
    st.text_input(_("Run name (optional)"), key=PREFIX + "run_name", max_chars=60)


def config_form() -> TrainConfig | None:
    """The whole form; returns the validated config, or None after showing why it is invalid."""
    st.session_state.setdefault(PREFIX + "preset_choice", "fast")
    if PREFIX + "arch" not in st.session_state:
        apply_preset()
    choice = st.selectbox(_("Start from a preset"), list(PRESETS), key=PREFIX + "preset_choice",
                          on_change=apply_preset)
    st.info(_(PRESET_DESCRIPTIONS[choice]))
    dataset = get_dataset()
    if dataset.spec.key == "fashion-mnist":  # the presets' descriptions promise MNIST figures (measured: README)
        note = _("The accuracies the presets' descriptions name are on MNIST's digits. {dataset} is harder: "
                 "`fast` reaches about 90% on it in one epoch and 91% in three.")
        st.caption(note.format(dataset=dataset.spec.title))
    task = (_("10 classes") if field("task") == "multiclass"
            else _("one-vs-rest: is it {target}?").format(target=class_names()[field("target_digit")]))
    st.markdown(_("Trains on **{dataset}** ({task}); change the dataset in the sidebar.").format(
        dataset=dataset.spec.title, task=task))
    columns = st.columns(4)
    for column, inputs in zip(columns, (model_and_task_inputs, data_inputs, optimizer_inputs, run_inputs), strict=True):
        with column:
            inputs()
    values = {name: field(name) for name in FLAT_FIELDS if PREFIX + name in st.session_state}
    values["dataset"] = current_dataset_name()
    try:
        config = preset_config(choice, **values | model_values(values["arch"]))
        jobs.check_startable(config)
    except (ConfigError, ArchitectureError) as error:
        st.error("**" + _("These settings cannot train:") + f"** {error_text(error)}")
        return None
    return config


def controls(config: TrainConfig | None) -> None:
    """Start: the run becomes its own process (queued if the machine is busy), and this page follows it."""
    if st.button(_("Start training"), type="primary", icon=":material/play_arrow:", disabled=config is None,
                 key="tr_start"):
        assert config is not None
        name = st.session_state[PREFIX + "run_name"].strip() or None
        try:
            follow(jobs.launch(config, name=name, processes=int(st.session_state.get(PREFIX + "processes", 1))))
        except (ConfigError, runs.RunError) as error:
            st.error("**" + _("The run could not start:") + f"** {error_text(error)}")
            return
        st.rerun()


def follow(run_id: str) -> None:
    st.query_params[RUN_PARAM] = run_id


def queue_settings() -> None:
    """How many runs train at once on this machine, and the threads each gets."""
    cores, limit = jobs.cpu_count(), jobs.max_parallel()
    label = ngettext("Queue: {count} run at once on {cores} CPU cores",
                     "Queue: {count} runs at once on {cores} CPU cores", limit).format(count=limit, cores=cores)
    with st.expander(label, icon=":material/queue:"):
        threads = jobs.worker_threads()
        st.markdown(
            ngettext("Each run trains in its own process with **{count}** CPU thread.",
                     "Each run trains in its own process with **{count}** CPU threads.", threads).format(count=threads)
            + " "
            + _("Runs beyond the limit wait in a queue and start in order as soon as a slot frees. Two runs on two "
                "cores each run at about half speed, and this dashboard answers drawings more slowly while they "
                "train, so one at a time is the default here.")
        )
        count = st.number_input(_("Runs at once"), 1, 64, value=limit, key="tr_max_parallel")
        if count != limit and st.button(_("Apply"), key="tr_apply_queue"):
            jobs.set_max_parallel(int(count))
            st.rerun()


def resume_section(records: list[RunRecord]) -> None:
    """Continue a stopped, failed or crashed run from its last saved epoch, in its own process."""
    resumable = [record for record in records if record.resumable]
    with st.expander(_("Resume a run ({count} can continue)").format(count=len(resumable)), icon=":material/resume:"):
        if not resumable:
            st.caption(_("Runs that are stopped, failed or crashed (their worker killed) can be continued here from "
                         "their last saved epoch."))
            return
        chosen = st.selectbox(_("Run"), resumable, key="tr_resume_run",
                              format_func=lambda record: _("{name} — {status} at epoch {done}/{total}").format(
                                  name=record.name, status=status_label(record.status), done=record.epochs_done,
                                  total=record.total_epochs))
        epochs = st.number_input(_("Train until epoch"), chosen.epochs_done + 1, 500,
                                 max(chosen.total_epochs, chosen.epochs_done + 1), key="tr_resume_epochs")
        if st.button(_("Resume"), icon=":material/resume:", key="tr_resume"):
            try:
                follow(jobs.launch_resume(chosen.run_id, epochs=int(epochs)))
            except (ConfigError, runs.RunError) as error:
                st.error("**" + _("Cannot resume:") + f"** {error_text(error)}")
                return
            st.rerun()


def status_label(status: str) -> str:
    """A run state ('queued', 'finished', …) in the session's language."""
    return _(runs.STATUS_LABELS.get(status, status))


def progress_text(record: RunRecord) -> str:
    if record.status == runs.QUEUED:
        return _("run {name}: queued — {message}").format(name=record.name, message=run_message(record))
    parts = [_("run {name}").format(name=record.name),
             _("epoch {epoch}/{total}").format(epoch=min(record.epochs_done + 1, record.total_epochs),
                                               total=record.total_epochs)]
    if record.status == runs.RUNNING and record.steps_per_epoch:
        parts.append(_("step {step}/{total}").format(step=record.step, total=record.steps_per_epoch))
    if record.eta_seconds is not None:
        minutes, seconds = divmod(int(record.eta_seconds), 60)
        parts.append(_("about {minutes}m {seconds}s left").format(minutes=minutes, seconds=f"{seconds:02d}"))
    return " · ".join(parts)


def stop_clicked(run_id: str) -> None:
    try:
        st.toast(say(runs.stop_run(run_id)))
    except runs.RunError as error:
        st.toast(error_text(error))


def active_runs(records: list[RunRecord]) -> None:
    """Every queued and running run, from any tab, browser or terminal, with a Stop button each."""
    active = [record for record in records if record.live]
    if not active:
        return
    st.subheader(_("Training now"))
    for record in sorted(active, key=lambda record: (record.status != runs.RUNNING, record.created_unix)):
        text, button, watch = st.columns([6, 1, 1], vertical_alignment="center")
        text.progress(record.fraction_done, text=progress_text(record))
        button.button(_("Stop"), key=f"tr_stop_{record.run_id}", icon=":material/stop:", on_click=stop_clicked,
                      args=(record.run_id,))
        watch.button(_("Follow"), key=f"tr_follow_{record.run_id}", icon=":material/visibility:", on_click=follow,
                     args=(record.run_id,), disabled=st.query_params.get(RUN_PARAM) == record.run_id)


def live_charts(record: RunRecord) -> None:
    """Epoch curves from metrics.jsonl; per-batch loss and learning rate from batches.csv (downsampled)."""
    points = runs.read_metrics(record.run_dir, record.live).rows
    for problem in record.problems:
        st.caption(_("Note: {problem}").format(problem=say(problem)))
    if points:
        epochs = [p.epoch for p in points]
        last = points[-1]
        st.markdown(
            _("After epoch **{epoch}**: test accuracy **{test_accuracy}** (train {train_accuracy}), test loss "
              "**{test_loss}** (train {train_loss}).").format(
                epoch=last.epoch, test_accuracy=pct(last.test_accuracy, 2), train_accuracy=pct(last.train_accuracy, 2),
                test_loss=num(last.test_loss, 4), train_loss=num(last.train_loss, 4))
            + " "
            + _("Train accuracy is measured while the weights still move (and with dropout/augmentation on), so it "
                "can sit below test accuracy early on; a test loss that rises while the train loss falls means "
                "overfitting.")
        )
        left, right = st.columns(2)
        left.plotly_chart(train_test_figure(epochs, [p.train_loss for p in points], [p.test_loss for p in points],
                                            _("Loss per epoch"), _("loss")), key="chart_loss")
        right.plotly_chart(train_test_figure(epochs, [p.train_accuracy for p in points],
                                             [p.test_accuracy for p in points], _("Accuracy per epoch"),
                                             _("accuracy"), percent=True), key="chart_accuracy")
    series = runs.read_batches(record.run_dir)
    if series.steps:
        left, right = st.columns(2)
        left.plotly_chart(batch_loss_figure(series.steps, series.losses), key="chart_batch_loss")
        right.plotly_chart(lr_figure(series.steps, series.lrs), key="chart_lr")
        if series.bucket > 1:
            st.caption(_("{total} batches so far; each point is the mean of {bucket} batches.").format(
                total=num(series.total), bucket=series.bucket))
        st.caption(_("The smoothed line keeps {kept} of its past at each batch, so it follows about the last "
                     "{window} batches and shows the trend. The check that stops a diverging run smooths far less "
                     "(it keeps {check_kept}, about the last {check_window} batches): it must react within a few "
                     "batches, so it can stop a run while this line still looks calm.").format(
            kept=pct(CHART_SMOOTHING, 0), window=num(round(1 / (1 - CHART_SMOOTHING))),
            check_kept=pct(1 - LOSS_SMOOTHING, 0), check_window=num(round(1 / LOSS_SMOOTHING))))


def status_banner(record: RunRecord) -> None:
    if record.status == runs.FINISHED:
        speed = (sentence_gap() + _("({speed} images/s)").format(speed=num(round(record.samples_per_second)))
                 if record.samples_per_second else "")
        st.success(
            ngettext("Finished {count} epoch in {seconds} s{speed}", "Finished {count} epochs in {seconds} s{speed}",
                     record.epochs_done).format(count=record.epochs_done, seconds=num(record.wall_seconds or 0, 1),
                                                speed=speed)
            + _(": test accuracy {final}, best {best} at epoch {epoch}. Saved in `{folder}`.").format(
                final=pct(record.final_test_accuracy or 0, 2), best=pct(record.best_test_accuracy or 0, 2),
                epoch=record.best_epoch, folder=record.run_dir))
    elif record.status == runs.STOPPED:
        text = (_("**Stopped** — {message}. Resume it above to continue from its last saved epoch.")
                if record.epochs_done else
                _("**Stopped** — {message}. Resuming it above starts it from the beginning."))
        st.warning(text.format(message=run_message(record).rstrip(".")))
    elif record.status == runs.DIVERGED:
        # The engine's own message already names the learning rate to try; an older or foreign one may not.
        suggested = record.message_parts is not None and "suggestion" in record.message_parts.params
        lr = (_("Start a new run with learning rate **{lr}** or lower.").format(lr=f"{record.suggested_lr:g}")
              if record.suggested_lr and not suggested else "")
        st.error(sentences(_("**Diverged** — {message}").format(message=run_message(record)), lr),
                 icon=":material/trending_up:")
    elif record.status == runs.FAILED:
        st.error(_("**The run failed.**") + f" {run_message(record)}")
    elif record.status == runs.CRASHED:
        text = (_("**Crashed** — {message}. Its folder keeps every whole epoch; resume it above.") if record.epochs_done
                else _("**Crashed** — {message}. It had not finished an epoch: resuming starts it from the beginning."))
        st.error(text.format(message=run_message(record)), icon=":material/heart_broken:")


def run_summary(record: RunRecord) -> None:
    """The run's own settings (not the form's), so a resumed or shared run reads right."""
    split = " · " + _("{count} processes (DDP)").format(count=record.world_size) if record.world_size > 1 else ""
    settings = settings_text(record.settings_parts)
    task = _(TASK_LABELS[record.task]) if record.task in TASK_LABELS else "?"
    st.markdown(f"**{record.name}** · {dataset_title(record.dataset) or '?'} · {task} · {settings}{split}")
    if record.live and record.pid:
        st.caption(_("Trains in its own process (pid {pid} on {host}); closing this tab or reloading does not stop "
                     "it. Any tab can follow and stop it.").format(pid=record.pid, host=record.host))


def followed_run(run_id: str, was_live: bool, shown_status: str) -> None:
    """The followed run's progress, banner and charts, re-read from its folder every second while it trains.

    `was_live` and `shown_status` are the page's view when it set up this fragment: the first rerun that
    finds the run over, or in another state than the run picker outside this fragment names (queued ->
    running), reruns the whole page (final results, no more polling, the picker's label up to date).
    """
    try:
        record = runs.find_run(run_id)
    except runs.RunError:
        st.info(_("Run `{run}` no longer exists.").format(run=run_id))
        return
    run_summary(record)
    st.progress(record.fraction_done, text=progress_text(record))
    status_banner(record)
    live_charts(record)
    if (was_live and not record.live) or record.status != shown_status:
        st.rerun()


def all_runs_panel(any_live: bool) -> None:
    """The list of active runs, refreshed every second while any run is active."""
    records = runs.list_runs()
    active_runs(records)
    if any_live and not any(record.live for record in records):
        st.rerun()


def pick_followed_run(records: list[RunRecord]) -> RunRecord | None:
    """The run named in the URL, else the newest active one, else the newest; with a picker for any other."""
    readable = [record for record in records if not record.damaged]
    if not readable:
        return None
    by_id = {record.run_id: record for record in readable}
    wanted = st.query_params.get(RUN_PARAM)
    if wanted not in by_id:
        wanted = next((record.run_id for record in readable if record.live), readable[0].run_id)
    st.subheader(_("Follow a run"))
    labels = {run_id: f"{record.name} ({status_label(record.status)})" for run_id, record in by_id.items()}
    # The key changes with the labels (a state, the language): a keyed selectbox never redraws its labels.
    key = f"tr_follow_pick_{wanted}_{zlib.crc32(repr(labels).encode())}"
    picked = st.selectbox(_("Run"), list(by_id), index=list(by_id).index(wanted), key=key,
                          format_func=labels.__getitem__)
    if picked != wanted:
        follow(picked)
        st.rerun()
    return by_id[wanted]


def misclassified_gallery(evaluation: Evaluation, dataset_key: str, count: int = 24) -> None:
    """The test digits the model gets wrong with the most confidence."""
    wrong = sum(label != prediction for label, prediction in zip(evaluation.labels, evaluation.predictions,
                                                                   strict=True))
    shown = most_confident_mistakes(evaluation, count)
    st.markdown(_("**{wrong} of {total} test images are misclassified.** The {shown} the model was surest "
                  "about:").format(wrong=num(wrong), total=num(len(evaluation.labels)), shown=len(shown)))
    if not shown:
        return
    dataset = get_dataset(dataset_key)
    images, labels = dataset.test_images, class_names(dataset_key)
    columns = st.columns(8)
    for position, index in enumerate(shown):
        caption = _("true {true} → {predicted} ({confidence})").format(
            true=labels[evaluation.labels[index]], predicted=labels[evaluation.predictions[index]],
            confidence=pct(evaluation.confidences[index], 0))
        columns[position % 8].image(upscale(images[index], 3), caption=caption, width="stretch")


def final_results(evaluation: Evaluation, dataset_key: str) -> None:
    """Confusion matrix, per-class accuracy, mistakes; for one-vs-rest, its metrics and ROC curve."""
    labels = list(class_names(dataset_key))
    st.subheader(_("How the final model does on the test set"))
    if evaluation.binary is not None:
        binary = evaluation.binary
        target = labels[binary.target_digit]
        st.markdown(_("One-vs-rest for **{target}**: the model answers right on **{accuracy}** of test images, but "
                      "always answering *not {target}* already scores **{baseline}** — so look at precision and "
                      "recall too.").format(target=target, accuracy=pct(binary.accuracy, 2),
                                            baseline=pct(binary.baseline_accuracy, 2)))
        cells = st.columns(5)
        for cell, (name, value) in zip(cells, [(_("accuracy"), binary.accuracy),
                                               (_("always 'no'"), binary.baseline_accuracy),
                                               (_("precision"), binary.precision), (_("recall"), binary.recall),
                                               ("F1", binary.f1)], strict=True):
            cell.metric(name, pct(value, 2))
        left, right = st.columns(2)
        left.plotly_chart(roc_figure(binary.roc_fpr, binary.roc_tpr, binary.roc_auc), key="chart_roc")
        names = [_("not {target}").format(target=target), target]
        right.plotly_chart(confusion_figure(evaluation.confusion, names), key="chart_confusion")
        return
    left, right = st.columns(2)
    left.plotly_chart(confusion_figure(evaluation.confusion, labels), key="chart_confusion")
    right.plotly_chart(per_class_figure(evaluation.per_class_accuracy, labels), key="chart_per_class")
    worst = min(range(len(labels)), key=lambda c: evaluation.per_class_accuracy[c])
    right.caption(sentences(_("Hardest class: {label} ({accuracy} right).").format(
        label=labels[worst], accuracy=pct(evaluation.per_class_accuracy[worst], 2)),
        _("Off-diagonal cells of the matrix show which classes it is confused with.")))
    misclassified_gallery(evaluation, dataset_key)


st.title(_("Train a network"))
st.markdown(
    _("Pick a preset — the four tutorials' recipes, or our `fast` and `best` — change anything, and start. "
      "Each run trains in its own process: close this tab, reload, or open another browser, and it goes on; "
      "any tab can follow and stop it. Every epoch is saved under `{folder}` and appears on the Compare "
      "and Draw pages.").format(folder=runs.runs_root())
)
config = config_form()
controls(config)
records = runs.list_runs()
queue_settings()
resume_section(records)
any_live = any(record.live for record in records)
st.fragment(run_every=1.0 if any_live else None)(all_runs_panel)(any_live)

record = pick_followed_run(records)
if record is None:
    st.info(_("No runs yet. Choose settings above and press **Start training**."))
    st.stop()
st.fragment(run_every=1.0 if record.live else None)(followed_run)(record.run_id, record.live, record.status)
evaluation = runs.read_evaluation(record.run_dir) if not record.live else None
if evaluation is not None:
    final_results(evaluation, record.dataset)
if not record.live and (record.run_dir / runs.BEST_CHECKPOINT).is_file():
    st.subheader(_("Take the model elsewhere"))
    st.caption(_("The best epoch's weights ({accuracy} test accuracy), checked against PyTorch on {count} test "
                 "images before you download them.").format(accuracy=pct(record.best_test_accuracy, 2),
                                                            count=num(1000))
               if record.best_test_accuracy is not None else
               _("The best epoch's weights, checked against PyTorch on {count} test images before you download "
                 "them.").format(count=num(1000)))
    export_buttons(record.run_dir / runs.BEST_CHECKPOINT, record.run_dir, key=f"tr_{record.run_id}")
