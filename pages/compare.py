"""Compare page: every training run in one table, their curves overlaid, two runs' test answers side by side."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from core import compare, runs
from core.compare import CompareError, FlippedDigit
from core.i18n import N_
from core.metrics import Evaluation, smooth
from core.runs import RunRecord
from pages.charts import RunStyle, confusion_figure, overlay_figure, params_accuracy_figure, run_color
from pages.common import (
    _,
    class_names,
    current_dataset_name,
    dataset_title,
    get_dataset,
    num,
    pct,
    run_message,
    say,
    say_all,
    settings_text,
    upscale,
)
from pages.export_ui import export_buttons
from pages.hardset_ui import compare_section
from pages.lang import sentences

METRICS = compare.METRICS  # metrics.jsonl column -> (label, shown in percent, higher is better)
X_AXES = {"epoch": N_("epoch"), "elapsed_seconds": N_("wall time (s)")}  # marked; translated at use
SELECTED_KEY = "cmp_selected"  # session state: the run ids chosen for comparison
PENDING_DELETE_KEY = "cmp_pending_delete"  # the run id waiting for "Yes, delete"
NOTICE_KEY = "cmp_notice"  # (kind, text) left by a rename or delete for the next page run
FLIPS_SHOWN = 12  # flipped digits shown per side


# ---------------------------------------------------------------------------------------------
# Reading, cached on the files' times and sizes so live runs refresh and nothing else is re-read


@st.cache_data(show_spinner=False)
def load_records(root: str, fingerprint: tuple) -> list[RunRecord]:
    """The run list; `fingerprint` is only the cache key."""
    return runs.list_runs(root)


@st.cache_data(show_spinner=False)
def load_metrics(root: str, run_ids: tuple[str, ...], fingerprint: tuple) -> pd.DataFrame:
    records = {record.run_id: record for record in load_records(root, fingerprint)}
    return compare.metrics_frame([records[run_id] for run_id in run_ids if run_id in records])


@st.cache_data(show_spinner=False, max_entries=8)
def load_evaluation(folder: str, stamp: tuple) -> Evaluation | None:
    """A run's evaluation.json (10,000 answers); `stamp` is the run's file times, the cache key."""
    return runs.read_evaluation(Path(folder))


# ---------------------------------------------------------------------------------------------
# The run list, rename and delete


def status_text(record: RunRecord) -> str:
    if record.status == runs.RUNNING:
        return _("running, epoch {epoch}/{total}").format(epoch=min(record.epochs_done + 1, record.total_epochs),
                                                         total=record.total_epochs)
    return _(runs.STATUS_LABELS.get(record.status, record.status))


def task_text(task: str) -> str:
    """A run's task ("multiclass", "binary") as the question it answers, in the session's language."""
    return _(runs.TASK_LABELS[task]) if task in runs.TASK_LABELS else task


def sweep_text(record: RunRecord) -> str:
    """The Optuna study and trial a run belongs to, e.g. "lr-search #3 (pruned)"; "" for other runs."""
    if not record.study:
        return ""
    state = _(record.trial_state) if record.trial_state else ""
    return _("{study} #{trial} ({state})").format(study=record.study, trial=record.trial, state=state) if state \
        else _("{study} #{trial}").format(study=record.study, trial=record.trial)


MISSING = "—"  # a table cell with no value (the run's status or note says why)


def cell(value: Any, text: Callable[[Any], str] = str) -> str:
    """A table cell as text in the session's locale, or '—' where there is no value (never 'None')."""
    if value is None or value == "" or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    return text(value)


def runs_table(records: list[RunRecord]) -> None:
    """Every run folder with its metadata; damaged ones say what is wrong; a missing value shows '—'.
    Two runs of one name show their ids beside it (the id column is far to the right)."""
    names = legend_names(records)
    table = pd.DataFrame([{
        _("name"): names[record.run_id],
        _("status"): status_text(record),
        _("progress"): cell(record.epochs_done / record.total_epochs if record.total_epochs else None,
                            lambda done: pct(done, 0)),
        _("preset"): cell(record.preset),
        _("dataset"): cell(dataset_title(record.dataset)),
        _("task"): cell(task_text(record.task)),
        _("architecture"): cell(record.arch),
        _("sweep trial"): sweep_text(record),
        _("parameters"): cell(record.param_count, num),
        _("epochs"): record.epochs_done,
        _("best test acc."): cell(record.best_test_accuracy, lambda value: pct(value, 2)),
        _("wall time (s)"): cell(record.wall_seconds, lambda value: num(value, 1)),
        _("images/s"): cell(record.samples_per_second, lambda value: num(value, 0)),
        _("date"): cell(record.created[:16].replace("T", " ")),
        _("note"): cell(run_message(record)),
        _("run id"): record.run_id,
    } for record in records])
    st.dataframe(table, hide_index=True, key="cmp_table")
    st.caption(_("One line per run folder. Best test accuracy is the highest after any epoch; wall time counts "
                 "training and testing up to the last epoch; images/s is the training speed. A dash means the run "
                 "has no such value (yet): its status and note say why."))
    for record in records:
        if record.damaged:
            st.warning(_("Run folder `{run}` is damaged and cannot be compared: {message}. You can delete it "
                         "below.").format(run=record.run_id, message=run_message(record)),
                       icon=":material/broken_image:")
        elif record.problems:
            st.warning(_("Run `{name}`: {problems}. Its other epochs are shown.").format(
                name=record.name, problems=say(runs.joined(record.problems))),
                icon=":material/warning:")


def show_notice() -> None:
    kind, text = st.session_state.pop(NOTICE_KEY, ("", ""))
    if kind:
        getattr(st, kind)(text)


def rename_clicked(run_id: str) -> None:
    try:
        name = runs.rename_run(run_id, st.session_state[f"cmp_name_{run_id}"])
        st.session_state[NOTICE_KEY] = ("success", _("Renamed `{run}` to “{name}”.").format(run=run_id,
                                                                                           name=name or run_id))
    except runs.RunError as error:
        st.session_state[NOTICE_KEY] = ("error", _("Could not rename: {error}").format(error=say(error.message)))


def delete_confirmed(run_id: str) -> None:
    st.session_state.pop(PENDING_DELETE_KEY, None)
    try:
        folder = runs.delete_run(run_id)
        st.session_state[NOTICE_KEY] = ("success", _("Deleted run `{run}` ({folder}).").format(run=run_id,
                                                                                               folder=folder))
    except runs.RunError as error:
        st.session_state[NOTICE_KEY] = ("error", _("Could not delete: {error}").format(error=say(error.message)))


def manage_runs(records: list[RunRecord]) -> None:
    """Rename a run (its display name; the folder stays) or delete it after a confirmation."""
    with st.expander(_("Rename, export or delete a run"), icon=":material/edit:"):
        chosen = st.selectbox(_("Run"), records, format_func=lambda record: f"{record.name} · {record.run_id}",
                              key="cmp_manage_run")
        name_column, rename_column = st.columns([3, 1], vertical_alignment="bottom")
        name_column.text_input(_("Display name (empty: show the run id)"), value=chosen.name, max_chars=runs.NAME_MAX,
                               key=f"cmp_name_{chosen.run_id}", disabled=chosen.damaged)
        rename_column.button(_("Rename"), key="cmp_rename", on_click=rename_clicked, args=(chosen.run_id,),
                             disabled=chosen.damaged, icon=":material/edit:")
        if not chosen.live and (chosen.run_dir / runs.BEST_CHECKPOINT).is_file():
            st.markdown("**" + _("Export its best checkpoint") + "**")
            export_buttons(chosen.run_dir / runs.BEST_CHECKPOINT, chosen.run_dir, key=f"cmp_{chosen.run_id}")
        if chosen.live:
            st.caption(_("This run is still training: stop it on the Train page before deleting it."))
        if st.session_state.get(PENDING_DELETE_KEY) != chosen.run_id:
            st.button(_("Delete…"), key="cmp_delete", disabled=chosen.live, icon=":material/delete:",
                      on_click=lambda: st.session_state.update({PENDING_DELETE_KEY: chosen.run_id}))
            return
        st.warning(_("Delete run **{name}** — the folder `{folder}` with its checkpoints and metrics? This cannot "
                     "be undone.").format(name=chosen.name, folder=chosen.folder))
        yes, no, _rest = st.columns([1, 1, 4])
        yes.button(_("Yes, delete"), key="cmp_delete_yes", type="primary", on_click=delete_confirmed,
                   args=(chosen.run_id,))
        no.button(_("Cancel"), key="cmp_delete_no", on_click=lambda: st.session_state.pop(PENDING_DELETE_KEY, None))


def legend_names(records: list[RunRecord]) -> dict[str, str]:
    """Run id -> the name charts show; the id is added where two runs share a name."""
    counts = pd.Series([record.name for record in records]).value_counts()
    return {record.run_id: record.name if counts[record.name] == 1 else f"{record.name} ({record.run_id})"
            for record in records}


def first_choice(healthy: list[RunRecord], dataset: str) -> list[RunRecord]:
    """The runs chosen when the page opens: the newest finished run (of the sidebar's dataset when there is one)
    and the newest other finished run that answers the same question, so their numbers can be compared."""
    finished = [record for record in healthy if record.status == runs.FINISHED] or healthy
    if not finished:
        return []
    newest = next((record for record in finished if record.dataset == dataset), finished[0])
    partner = next((record for record in finished if record is not newest
                    and (record.dataset, record.task) == (newest.dataset, newest.task)), None)
    return [newest] if partner is None else [newest, partner]


def pick_runs(healthy: list[RunRecord]) -> list[RunRecord]:
    """The multiselect of runs to compare; at first the two newest finished runs of one question (first_choice)."""
    by_id = {record.run_id: record for record in healthy}
    names = legend_names(healthy)
    if SELECTED_KEY in st.session_state:  # drop runs deleted (or damaged) since the last page run
        st.session_state[SELECTED_KEY] = [run_id for run_id in st.session_state[SELECTED_KEY] if run_id in by_id]
    else:
        st.session_state[SELECTED_KEY] = [record.run_id for record in first_choice(healthy, current_dataset_name())]
    chosen = st.multiselect(_("Runs to compare"), list(by_id), format_func=names.__getitem__, key=SELECTED_KEY,
                            placeholder=_("Choose runs"))
    return [by_id[run_id] for run_id in chosen]


# ---------------------------------------------------------------------------------------------
# Curves, final numbers, parameters against accuracy


def curves_section(selected: list[RunRecord], frame: pd.DataFrame, styles: dict[str, RunStyle],
                   comparable: bool) -> None:
    """The chosen metric of every selected run in one chart; in words, gaps only between comparable runs."""
    left, middle, right = st.columns([5, 2, 2])
    metric = left.segmented_control(_("Metric"), list(METRICS), format_func=lambda m: _(METRICS[m][0]),
                                    default="test_accuracy", required=True, key="cmp_metric")
    x_axis = middle.segmented_control(_("X axis"), list(X_AXES), format_func=lambda x: _(X_AXES[x]),
                                      default="epoch", required=True, key="cmp_x")
    weight = right.slider(_("Smoothing"), 0.0, 0.95, 0.0, 0.05, key="cmp_smooth",
                          help=_("Exponential moving average of the epochs (TensorBoard's); 0 draws the raw values."))
    label, in_percent, _higher = METRICS[metric]
    label, x_title = _(label), _(X_AXES[x_axis])
    lines = []
    for record in selected:
        rows = frame[frame["run_id"] == record.run_id].dropna(subset=[x_axis, metric])
        values = rows[metric].tolist()
        lines.append((styles[record.run_id], rows[x_axis].tolist(), smooth(values, weight) if weight else values))
    figure = overlay_figure(lines, _("{metric} by {axis}").format(metric=label[:1].upper() + label[1:], axis=x_title),
                            x_title, label,
                            percent=in_percent, log_y=metric == "lr", whole_x=x_axis == "epoch")
    st.plotly_chart(figure, key="cmp_curves")
    names = {run_id: style.name for run_id, style in styles.items()}
    st.markdown(say_all(compare.curves_messages(frame, metric, names, comparable)))


def final_table(selected: list[RunRecord], frame: pd.DataFrame, styles: dict[str, RunStyle]) -> None:
    """The last epoch's numbers of each selected run."""
    last = frame.groupby("run_id", sort=False).tail(1).set_index("run_id")

    def percent(value: float) -> str:
        return pct(value, 2)

    def loss(value: float) -> str:
        return num(value, 4)

    table = pd.DataFrame([{
        _("run"): styles[record.run_id].name,
        _("status"): status_text(record),
        _("epochs"): record.epochs_done,
        _("final test acc."): cell(_value_of(last, record.run_id, "test_accuracy"), percent),
        _("best test acc."): cell(record.best_test_accuracy, percent),
        _("best epoch"): cell(record.best_epoch),
        _("final test loss"): cell(_value_of(last, record.run_id, "test_loss"), loss),
        _("final train acc."): cell(_value_of(last, record.run_id, "train_accuracy"), percent),
        _("final train loss"): cell(_value_of(last, record.run_id, "train_loss"), loss),
        _("parameters"): cell(record.param_count, num),
        _("wall time (s)"): cell(record.wall_seconds, lambda value: num(value, 1)),
        _("images/s"): cell(record.samples_per_second, lambda value: num(value, 0)),
        _("settings"): settings_text(record.settings_parts),
    } for record in selected])
    st.dataframe(table, hide_index=True, key="cmp_final")


def _value_of(last: pd.DataFrame, run_id: str, column: str) -> float | None:
    return float(last.at[run_id, column]) if run_id in last.index and pd.notna(last.at[run_id, column]) else None


def size_section(selected: list[RunRecord], healthy: list[RunRecord], styles: dict[str, RunStyle],
                 comparable: bool) -> None:
    """Best test accuracy against parameter count: selected runs in their colors, the others grey; in words only
    when the selected runs answer one question."""
    points, others = [], []
    for record in healthy:
        if record.param_count is None or record.best_test_accuracy is None:
            continue
        if record.run_id in styles:
            points.append((styles[record.run_id], record.param_count, record.best_test_accuracy))
        else:
            others.append((record.name, record.param_count, record.best_test_accuracy))
    if not points:
        return
    st.plotly_chart(params_accuracy_figure(points, others), key="cmp_scatter")
    sizes = [(style.name, params, accuracy) for style, params, accuracy in points]
    words = [say_all(compare.size_messages(sizes))] if comparable else []
    if others:
        words.append(_("Grey points are the runs not selected."))
    if words:
        st.markdown(sentences(*words))


# ---------------------------------------------------------------------------------------------
# Two runs: confusion difference and the digits one gets right and the other wrong


def answer_text(prediction: int, evaluation: Evaluation, classes: tuple[str, ...]) -> str:
    if evaluation.binary is None:
        return classes[prediction]
    return _("yes") if prediction == 1 else _("no")


def flips_gallery(digits: list[FlippedDigit], title: str, evaluation: Evaluation, dataset_name: str) -> None:
    """Up to FLIPS_SHOWN flipped test digits, each with both runs' answers and how sure they were."""
    st.markdown(title)
    if not digits:
        st.caption(_("None."))
        return
    dataset, names = get_dataset(dataset_name), class_names(dataset_name)
    columns = st.columns(6)
    for position, digit in enumerate(digits[:FLIPS_SHOWN]):
        answer_a = answer_text(digit.prediction_a, evaluation, names)
        answer_b = answer_text(digit.prediction_b, evaluation, names)
        caption = _("true {label} · A: {answer_a} ({sure_a}) · B: {answer_b} ({sure_b})").format(
            label=names[digit.label], answer_a=answer_a, sure_a=pct(digit.confidence_a, 0),
            answer_b=answer_b, sure_b=pct(digit.confidence_b, 0))
        columns[position % 6].image(upscale(dataset.test_images[digit.index], 3), caption=caption, width="stretch")


def two_runs_section(pair: list[RunRecord], styles: dict[str, RunStyle], fingerprint: dict[str, tuple]) -> None:
    """Confusion-matrix difference and flipped digits of exactly two runs, from their evaluation.json."""
    a, b = pair
    names = (styles[a.run_id].name, styles[b.run_id].name)
    st.subheader(_("A: {name_a} against B: {name_b}, image by image").format(name_a=names[0], name_b=names[1]))
    evaluations = [load_evaluation(str(r.folder), fingerprint.get(r.run_id, ())) for r in pair]
    missing = [record for record, evaluation in zip(pair, evaluations, strict=True) if evaluation is None]
    for record in missing:
        if record.live:
            st.info(_("No test answers yet for {name}: it is {status}, and writes them when it finishes or is "
                      "stopped.").format(name=record.name, status=status_text(record)))
        else:
            st.info(_("No test answers for {name}: it ended {status} before any were written ({message}).").format(
                name=record.name, status=status_text(record), message=run_message(record).rstrip(".")))
    if missing:
        return
    eval_a, eval_b = evaluations
    assert eval_a is not None and eval_b is not None
    if a.dataset != b.dataset:
        st.warning(_("These two runs cannot be compared image by image: A was tested on {dataset_a} and B on "
                     "{dataset_b}. Choose two runs of one dataset.").format(
            dataset_a=dataset_title(a.dataset), dataset_b=dataset_title(b.dataset)))
        return
    try:
        result = compare.compare_evaluations(eval_a, eval_b)
    except CompareError as error:
        st.warning(_("These two runs cannot be compared image by image: {error}.").format(error=say(error.message)))
        return
    labels = list(class_names(a.dataset))
    if eval_a.binary is not None:
        target = labels[eval_a.binary.target_digit]
        labels = [_("not {target}").format(target=target), target]
    st.markdown(say_all(compare.difference_messages(result, names)))
    st.markdown(say_all(compare.matrix_messages(result, labels)))
    left, right = st.columns(2)
    left.plotly_chart(confusion_figure(result.difference, labels, _("Confusion matrix of A minus that of B"),
                                       diverging=True), key="cmp_confusion_diff")
    with right:
        flips_gallery(result.right_only_a, _("**A right, B wrong** ({count}, B's surest mistakes first)").format(
            count=len(result.right_only_a)), eval_a, a.dataset)
        flips_gallery(result.right_only_b, _("**B right, A wrong** ({count}, A's surest mistakes first)").format(
            count=len(result.right_only_b)), eval_a, a.dataset)


# ---------------------------------------------------------------------------------------------
# The page


st.title(_("Compare runs"))
st.markdown(_("Every training run — from the Train page or the command line — with its curves side by side. "
              "Everything here comes from the runs' small JSON files; only the scores on your hard set load "
              "weights, once per checkpoint version."))
root = runs.runs_root()
fingerprint = compare.runs_fingerprint(root)
records = load_records(str(root), fingerprint)
show_notice()
if not records:
    st.info(_("No training runs yet in `{root}`. Train a network on the **Train** page (pick a preset and press "
              "Start); each run appears here as soon as it starts, and you can compare two or more of them.").format(
        root=root))
    st.stop()

runs_table(records)
if any(record.live for record in records):
    st.button(_("Refresh"), key="cmp_refresh", icon=":material/refresh:",
              help=_("Runs are still training: refresh to see their latest epochs."))
manage_runs(records)
compare_section()
healthy = [record for record in records if not record.damaged]
selected = pick_runs(healthy)
if not selected:
    st.info(_("Choose one or more runs above to see their curves side by side."))
    st.stop()

mixed = sorted({(record.dataset, record.task) for record in selected})
if len(mixed) > 1:
    st.warning(_("These runs answer different questions — {questions}: their curves are drawn together, but their "
                 "numbers are not comparable.").format(
        questions=_(", ").join(f"{dataset_title(dataset)} ({task_text(task)})" for dataset, task in mixed)),
        icon=":material/warning:")
names = legend_names(selected)
styles = {record.run_id: RunStyle(names[record.run_id], run_color(position), settings_text(record.settings_parts))
          for position, record in enumerate(selected)}
frame = load_metrics(str(root), tuple(styles), fingerprint)
comparable = len(mixed) == 1
curves_section(selected, frame, styles, comparable)
final_table(selected, frame, styles)
size_section(selected, healthy, styles, comparable)
st.download_button(_("Download these runs' metrics (CSV)"), compare.metrics_csv(selected), file_name="runs-metrics.csv",
                   mime="text/csv", key="cmp_csv", icon=":material/download:")
if len(selected) == 2:
    two_runs_section(selected, styles, dict(fingerprint))
else:
    st.caption(_("Choose exactly two runs to see how their answers on the test set differ, image by image."))
