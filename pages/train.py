"""Train page: configure a run from a preset, start and stop it, and watch its metrics live."""

from __future__ import annotations

from typing import Any

import streamlit as st
import torch

from core import runs
from core.data import NORMALIZATIONS
from core.jobs import JobSnapshot, TrainingJob, resume_job
from core.metrics import Evaluation
from core.models import describe_architecture, list_architectures
from core.train import (
    FLAT_FIELDS,
    OPTIMIZERS,
    PRESET_DESCRIPTIONS,
    PRESETS,
    SCHEDULERS,
    ConfigError,
    TrainConfig,
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
from pages.common import current_dataset_name, get_dataset, upscale

JOB_KEY = "train_job"  # session state: this browser session's TrainingJob
PREFIX = "tr_"  # session-state prefix of the form's widgets, followed by a FLAT_FIELDS name
DEVICES = ["auto", "cpu", "cuda", "mps"]
NORMALIZATION_LABELS = {"none": "none: [0, 1]", "half": "(0.5, 0.5): [-1, 1]", "dataset": "dataset mean/std"}


def flat_values(config: TrainConfig) -> dict[str, Any]:
    """The config as FLAT_FIELDS name -> value, the shape the form's widgets hold."""
    values = {}
    for name, (section, key) in FLAT_FIELDS.items():
        holder = config if section is None else getattr(config, section)
        values[name] = getattr(holder, key)
    return values


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


def model_and_task_inputs() -> None:
    st.markdown("**Model and task**")
    architectures = [name for name in list_architectures() if name != "custom"]
    st.selectbox("Architecture", architectures, key=PREFIX + "arch", on_change=reset_arch_options,
                 help="Open the Architecture page to see every layer's shape and cost.")
    st.caption(describe_architecture(field("arch")))
    st.radio("Task", ["multiclass", "binary"], key=PREFIX + "task", horizontal=True,
             format_func=lambda kind: {"multiclass": "which digit (10 classes)",
                                       "binary": "is it digit N? (one vs rest)"}[kind])
    if field("task") == "binary":
        st.number_input("Target digit", 0, 9, key=PREFIX + "target_digit")
    else:
        st.number_input("Label smoothing", 0.0, 0.5, step=0.05, key=PREFIX + "label_smoothing",
                        help="Share of the target probability spread over all classes: the model is never "
                             "asked to be 100% sure, which often generalizes better (the best preset uses 0.1).")
    if field("arch") == "seed001":
        keep = st.checkbox("Keep the tutorial's final Softmax", key=PREFIX + "softmax",
                           help="CrossEntropyLoss applies its own log-softmax, so a Softmax before it squashes the "
                                "scores twice and slows learning. Untick to train on raw logits.")
        st.session_state[PREFIX + "options"] = {**field("options"), "softmax": keep}


def data_inputs() -> None:
    st.markdown("**Data**")
    st.selectbox("Normalization", list(NORMALIZATIONS), key=PREFIX + "normalization",
                 format_func=lambda preset: NORMALIZATION_LABELS[preset], help=" · ".join(NORMALIZATIONS.values()))
    st.checkbox("Augment (random rotation, shift, scale per image)", key=PREFIX + "augment")
    st.number_input("Batch size", 1, 4096, key=PREFIX + "batch_size")
    st.number_input("Train on the first N images (0 = all 60,000)", 0, 60000, step=1000, key=PREFIX + "train_subset")
    st.number_input("Test on the first N images (0 = all 10,000)", 0, 10000, step=1000, key=PREFIX + "test_subset")


def optimizer_inputs() -> None:
    st.markdown("**Optimizer and schedule**")
    st.selectbox("Optimizer", list(OPTIMIZERS), key=PREFIX + "optimizer")
    st.number_input("Learning rate", min_value=1e-6, max_value=10.0, format="%.5f", step=1e-4, key=PREFIX + "lr")
    st.number_input("Weight decay", min_value=0.0, max_value=1.0, format="%.5f", step=1e-4, key=PREFIX + "weight_decay")
    if field("optimizer") == "sgd":
        st.number_input("Momentum", 0.0, 0.999, step=0.05, key=PREFIX + "momentum")
        st.checkbox("Nesterov momentum", key=PREFIX + "nesterov")
    else:
        st.session_state[PREFIX + "betas"] = [
            st.number_input("β1", 0.0, 0.9999, step=0.01, format="%.4f", key=PREFIX + "beta1"),
            st.number_input("β2", 0.0, 0.9999, step=0.001, format="%.4f", key=PREFIX + "beta2"),
        ]
    st.selectbox("Scheduler", list(SCHEDULERS), key=PREFIX + "scheduler")
    if field("scheduler") == "cosine":
        st.number_input("T_max (epochs to the minimum; 0 = the run's epochs)", 0, 1000, key=PREFIX + "t_max")
        st.number_input("Minimum learning rate", 0.0, 1.0, format="%.6f", step=1e-5, key=PREFIX + "min_lr")
    elif field("scheduler") == "step":
        st.number_input("Step size (epochs)", 1, 1000, key=PREFIX + "step_size")
        st.number_input("Gamma (multiplier)", 0.001, 1.0, step=0.05, key=PREFIX + "gamma")
    elif field("scheduler") == "onecycle":
        st.number_input("Warm-up share of steps", 0.01, 0.99, step=0.05, key=PREFIX + "pct_start")


def run_inputs() -> None:
    st.markdown("**Run**")
    st.number_input("Epochs", 1, 500, key=PREFIX + "epochs")
    st.number_input("Random seed", 0, 2**31 - 1, key=PREFIX + "seed")
    st.selectbox("Device", DEVICES, key=PREFIX + "device",
                 help=f"auto picks CUDA, then Apple MPS, then the CPU. CUDA here: {torch.cuda.is_available()}.")
    st.number_input("CPU threads (0 = PyTorch's default)", 0, 256, key=PREFIX + "threads")
    st.text_input("Run name (optional)", key=PREFIX + "run_name", max_chars=60)


def config_form() -> TrainConfig | None:
    """The whole form; returns the validated config, or None after showing why it is invalid."""
    st.session_state.setdefault(PREFIX + "preset_choice", "fast")
    if PREFIX + "arch" not in st.session_state:
        apply_preset()
    choice = st.selectbox("Start from a preset", list(PRESETS), key=PREFIX + "preset_choice", on_change=apply_preset)
    st.info(PRESET_DESCRIPTIONS[choice])
    columns = st.columns(4)
    for column, inputs in zip(columns, (model_and_task_inputs, data_inputs, optimizer_inputs, run_inputs), strict=True):
        with column:
            inputs()
    values = {name: field(name) for name in FLAT_FIELDS if PREFIX + name in st.session_state}
    values["dataset"] = current_dataset_name()
    try:
        return preset_config(choice, **values)
    except ConfigError as error:
        st.error(f"**These settings cannot train:** {error}")
        return None


def controls(config: TrainConfig | None, snapshot: JobSnapshot | None) -> None:
    """Start and Stop; one run per browser session at a time."""
    active = snapshot is not None and snapshot.active
    start, stop, _ = st.columns([1, 1, 4])
    if start.button("Start training", type="primary", icon=":material/play_arrow:",
                    disabled=active or config is None, key="tr_start"):
        dataset = get_dataset(config.data.dataset if config else None)
        name = st.session_state[PREFIX + "run_name"].strip() or None
        st.session_state[JOB_KEY] = TrainingJob(config, run_name=name, dataset=dataset).start()
        st.rerun()
    if stop.button("Stop", icon=":material/stop:", disabled=not active, key="tr_stop"):
        st.session_state[JOB_KEY].stop()


def resume_section(snapshot: JobSnapshot | None) -> None:
    """Continue a stopped, failed or interrupted run from its last saved epoch."""
    unfinished = ("stopped", "failed", runs.INTERRUPTED)
    resumable = [info for info in runs.list_runs() if info.status in unfinished and info.epoch > 0]
    with st.expander(f"Resume a stopped run ({len(resumable)} available)"):
        if not resumable:
            st.caption("Runs you stop (or that fail after an epoch) can be continued here from their last saved epoch.")
            return
        chosen = st.selectbox("Run", resumable, key="tr_resume_run",
                              format_func=lambda info: f"{info.run_id} — {info.status} at epoch {info.epoch}/"
                                                       f"{info.total_epochs}")
        epochs = st.number_input("Train until epoch", chosen.epoch + 1, 500, max(chosen.total_epochs, chosen.epoch + 1),
                                 key="tr_resume_epochs")
        busy = snapshot is not None and snapshot.active
        if st.button("Resume", icon=":material/resume:", disabled=busy, key="tr_resume"):
            dataset = get_dataset(chosen.dataset)
            st.session_state[JOB_KEY] = resume_job(chosen.run_id, dataset=dataset, epochs=int(epochs)).start()
            st.rerun()


def progress_text(snapshot: JobSnapshot) -> str:
    if snapshot.started is None:
        return "Preparing the run…"
    parts = [f"run {snapshot.started.run_id}"]
    if snapshot.last_batch:
        batch = snapshot.last_batch
        parts += [f"epoch {batch.epoch}/{snapshot.started.total_epochs}",
                  f"step {batch.step}/{batch.steps_per_epoch}", f"{batch.samples_per_second:,.0f} images/s"]
    if snapshot.eta_seconds is not None:
        minutes, seconds = divmod(int(snapshot.eta_seconds), 60)
        parts.append(f"ETA {minutes}m {seconds:02d}s")
    return " · ".join(parts)


def live_charts(snapshot: JobSnapshot) -> None:
    """Epoch curves, per-batch loss and learning rate."""
    points = snapshot.epochs
    if points:
        epochs = [p.epoch for p in points]
        last = points[-1]
        st.markdown(
            f"After epoch **{last.epoch}**: test accuracy **{last.test_accuracy:.2%}** "
            f"(train {last.train_accuracy:.2%}), test loss **{last.test_loss:.4f}** (train {last.train_loss:.4f}). "
            "Train accuracy is measured while the weights still move (and with dropout/augmentation on), so it can "
            "sit below test accuracy early on; a test loss that rises while the train loss falls means overfitting."
        )
        left, right = st.columns(2)
        left.plotly_chart(train_test_figure(epochs, [p.train_loss for p in points], [p.test_loss for p in points],
                                            "Loss per epoch", "loss"), key="chart_loss")
        right.plotly_chart(train_test_figure(epochs, [p.train_accuracy for p in points],
                                             [p.test_accuracy for p in points], "Accuracy per epoch", "accuracy",
                                             percent=True), key="chart_accuracy")
    if snapshot.batch_losses:
        left, right = st.columns(2)
        left.plotly_chart(batch_loss_figure(snapshot.batch_steps, snapshot.batch_losses), key="chart_batch_loss")
        right.plotly_chart(lr_figure(snapshot.batch_steps, snapshot.batch_lrs), key="chart_lr")


def status_banner(snapshot: JobSnapshot) -> None:
    if snapshot.status == "finished" and snapshot.finished:
        done = snapshot.finished
        st.success(f"Finished {done.epochs} epochs in {done.train_seconds:.1f} s ({done.samples_per_second:,.0f} "
                   f"images/s): test accuracy {done.test_accuracy:.2%}, best {done.best_test_accuracy:.2%} at epoch "
                   f"{done.best_epoch}. Saved in `{done.run_dir}`.")
    elif snapshot.status == "stopped":
        reason = snapshot.message.rstrip(".")
        st.warning(f"**Stopped** — {reason}. Resume it below to continue from its last saved epoch.")
    elif snapshot.status == "failed":
        st.error(f"**The run failed.** {snapshot.message}")


def show_progress(job: TrainingJob, was_active: bool) -> None:
    """Progress bar, status and charts; re-runs itself every second while the run is active.

    `was_active` is the page's view when it set up this fragment; fragment reruns keep it, so the
    first rerun that finds the run over reruns the whole page (final results, no more polling).
    """
    snapshot = job.snapshot()
    st.progress(snapshot.fraction_done, text=progress_text(snapshot))
    status_banner(snapshot)
    live_charts(snapshot)
    if was_active and not snapshot.active:
        st.rerun()


def misclassified_gallery(evaluation: Evaluation, dataset_key: str, count: int = 24) -> None:
    """The test digits the model gets wrong with the most confidence."""
    wrong = [i for i, (y, p) in enumerate(zip(evaluation.labels, evaluation.predictions, strict=True)) if y != p]
    st.markdown(f"**{len(wrong)} of {len(evaluation.labels):,} test digits are misclassified.** "
                f"The {min(count, len(wrong))} the model was surest about:")
    if not wrong:
        return
    wrong.sort(key=lambda i: -evaluation.confidences[i])
    dataset = get_dataset(dataset_key)
    images, labels = dataset.test_images, dataset.classes
    shown = wrong[:count]
    columns = st.columns(8)
    for position, index in enumerate(shown):
        caption = (f"true {labels[evaluation.labels[index]]} → {labels[evaluation.predictions[index]]} "
                   f"({evaluation.confidences[index]:.0%})")
        columns[position % 8].image(upscale(images[index], 3), caption=caption, width="stretch")


def final_results(evaluation: Evaluation, dataset_key: str) -> None:
    """Confusion matrix, per-class accuracy, mistakes; for one-vs-rest, its metrics and ROC curve."""
    labels = list(get_dataset(dataset_key).classes)
    st.subheader("How the final model does on the test set")
    if evaluation.binary is not None:
        binary = evaluation.binary
        st.markdown(f"One-vs-rest for **{binary.target_digit}**: the model answers right on **{binary.accuracy:.2%}** "
                    f"of test digits, but always answering *not {binary.target_digit}* already scores "
                    f"**{binary.baseline_accuracy:.2%}** — so look at precision and recall too.")
        cells = st.columns(5)
        for cell, (name, value) in zip(cells, [("accuracy", binary.accuracy), ("always 'no'", binary.baseline_accuracy),
                                               ("precision", binary.precision), ("recall", binary.recall),
                                               ("F1", binary.f1)], strict=True):
            cell.metric(name, f"{value:.2%}")
        left, right = st.columns(2)
        left.plotly_chart(roc_figure(binary.roc_fpr, binary.roc_tpr, binary.roc_auc), key="chart_roc")
        names = [f"not {binary.target_digit}", str(binary.target_digit)]
        right.plotly_chart(confusion_figure(evaluation.confusion, names), key="chart_confusion")
        return
    left, right = st.columns(2)
    left.plotly_chart(confusion_figure(evaluation.confusion, labels), key="chart_confusion")
    right.plotly_chart(per_class_figure(evaluation.per_class_accuracy, labels), key="chart_per_class")
    worst = min(range(len(labels)), key=lambda c: evaluation.per_class_accuracy[c])
    right.caption(f"Hardest class: {labels[worst]} ({evaluation.per_class_accuracy[worst]:.2%} right). "
                  "Off-diagonal cells of the matrix show which classes it is confused with.")
    misclassified_gallery(evaluation, dataset_key)


st.title("Train a network")
st.markdown("Pick a preset — the four tutorials' recipes, or our `fast` and `best` — change anything, and start. "
            "Training runs in the background: you can switch pages and come back. Every epoch is saved under "
            "`checkpoints/runs/` and appears on the Compare and Draw pages.")
job: TrainingJob | None = st.session_state.get(JOB_KEY)
before = job.snapshot() if job else None
config = config_form()
controls(config, before)
resume_section(before)
job = st.session_state.get(JOB_KEY)
if job is None:
    st.info("No run yet in this session. Choose settings above and press **Start training**.")
    st.stop()
active = job.snapshot().active
st.fragment(run_every=1.0 if active else None)(show_progress)(job, active)
final = job.snapshot()
if final.finished is not None and final.started is not None and not active:
    final_results(final.finished.evaluation, final.started.config.data.dataset)
