"""Compare page: every training run in one table, their curves overlaid, two runs' test answers side by side."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from core import compare, runs
from core.compare import CompareError, EvaluationComparison, FlippedDigit
from core.metrics import Evaluation
from core.runs import RunRecord
from pages.charts import RunStyle, confusion_figure, overlay_figure, params_accuracy_figure, run_color, smooth
from pages.common import get_dataset, upscale
from pages.export_ui import export_buttons

# metrics.jsonl column -> (what to call it, shown in percent, higher is better; None: neither, e.g. lr)
METRICS: dict[str, tuple[str, bool, bool | None]] = {
    "test_accuracy": ("test accuracy", True, True),
    "train_accuracy": ("train accuracy", True, True),
    "test_loss": ("test loss", False, False),
    "train_loss": ("train loss", False, False),
    "lr": ("learning rate", False, None),
}
X_AXES = {"epoch": "epoch", "elapsed_seconds": "wall time (s)"}
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
        return f"running, epoch {min(record.epochs_done + 1, record.total_epochs)}/{record.total_epochs}"
    return record.status


def runs_table(records: list[RunRecord]) -> None:
    """Every run folder with its metadata; damaged ones say what is wrong."""
    table = pd.DataFrame([{
        "name": record.name,
        "status": status_text(record),
        "progress": 100 * record.epochs_done / record.total_epochs if record.total_epochs else None,
        "preset": record.preset,
        "dataset": record.dataset,
        "task": record.task,
        "architecture": record.arch,
        "parameters": record.param_count,
        "epochs": record.epochs_done,
        "best test acc.": None if record.best_test_accuracy is None else 100 * record.best_test_accuracy,
        "wall time (s)": record.wall_seconds,
        "images/s": record.samples_per_second,
        "date": record.created[:16].replace("T", " "),
        "note": record.message,
        "run id": record.run_id,
    } for record in records])
    st.dataframe(table, hide_index=True, key="cmp_table", column_config={
        "progress": st.column_config.ProgressColumn("progress", format="%.0f%%", min_value=0, max_value=100),
        "parameters": st.column_config.NumberColumn(format="localized"),
        "best test acc.": st.column_config.NumberColumn(format="%.2f%%"),
        "wall time (s)": st.column_config.NumberColumn(format="%.1f"),
        "images/s": st.column_config.NumberColumn(format="%,.0f"),
    })
    st.caption("One line per run folder. Best test accuracy is the highest after any epoch; wall time counts "
               "training and testing up to the last epoch; images/s is the training speed.")
    for record in records:
        if record.damaged:
            st.warning(f"Run folder `{record.run_id}` is damaged and cannot be compared: {record.message}. "
                       "You can delete it below.", icon=":material/broken_image:")
        elif record.problems:
            st.warning(f"Run `{record.name}`: {'; '.join(record.problems)}. Its other epochs are shown.",
                       icon=":material/warning:")


def show_notice() -> None:
    kind, text = st.session_state.pop(NOTICE_KEY, ("", ""))
    if kind:
        getattr(st, kind)(text)


def rename_clicked(run_id: str) -> None:
    try:
        name = runs.rename_run(run_id, st.session_state[f"cmp_name_{run_id}"])
        st.session_state[NOTICE_KEY] = ("success", f"Renamed `{run_id}` to “{name or run_id}”.")
    except runs.RunError as error:
        st.session_state[NOTICE_KEY] = ("error", f"Could not rename: {error}")


def delete_confirmed(run_id: str) -> None:
    st.session_state.pop(PENDING_DELETE_KEY, None)
    try:
        folder = runs.delete_run(run_id)
        st.session_state[NOTICE_KEY] = ("success", f"Deleted run `{run_id}` ({folder}).")
    except runs.RunError as error:
        st.session_state[NOTICE_KEY] = ("error", f"Could not delete: {error}")


def manage_runs(records: list[RunRecord]) -> None:
    """Rename a run (its display name; the folder stays) or delete it after a confirmation."""
    with st.expander("Rename, export or delete a run", icon=":material/edit:"):
        chosen = st.selectbox("Run", records, format_func=lambda record: f"{record.name} · {record.run_id}",
                              key="cmp_manage_run")
        name_column, rename_column = st.columns([3, 1], vertical_alignment="bottom")
        name_column.text_input("Display name (empty: show the run id)", value=chosen.name, max_chars=runs.NAME_MAX,
                               key=f"cmp_name_{chosen.run_id}", disabled=chosen.damaged)
        rename_column.button("Rename", key="cmp_rename", on_click=rename_clicked, args=(chosen.run_id,),
                             disabled=chosen.damaged, icon=":material/edit:")
        if not chosen.live and (chosen.run_dir / runs.BEST_CHECKPOINT).is_file():
            st.markdown("**Export its best checkpoint**")
            export_buttons(chosen.run_dir / runs.BEST_CHECKPOINT, chosen.run_dir, key=f"cmp_{chosen.run_id}")
        if chosen.live:
            st.caption("This run is still training: stop it on the Train page before deleting it.")
        if st.session_state.get(PENDING_DELETE_KEY) != chosen.run_id:
            st.button("Delete…", key="cmp_delete", disabled=chosen.live, icon=":material/delete:",
                      on_click=lambda: st.session_state.update({PENDING_DELETE_KEY: chosen.run_id}))
            return
        st.warning(f"Delete run **{chosen.name}** — the folder `{chosen.folder}` with its checkpoints and "
                   "metrics? This cannot be undone.")
        yes, no, _ = st.columns([1, 1, 4])
        yes.button("Yes, delete", key="cmp_delete_yes", type="primary", on_click=delete_confirmed,
                   args=(chosen.run_id,))
        no.button("Cancel", key="cmp_delete_no", on_click=lambda: st.session_state.pop(PENDING_DELETE_KEY, None))


def legend_names(records: list[RunRecord]) -> dict[str, str]:
    """Run id -> the name charts show; the id is added where two runs share a name."""
    counts = pd.Series([record.name for record in records]).value_counts()
    return {record.run_id: record.name if counts[record.name] == 1 else f"{record.name} ({record.run_id})"
            for record in records}


def pick_runs(healthy: list[RunRecord]) -> list[RunRecord]:
    """The multiselect of runs to compare; the two newest finished ones are chosen at first."""
    by_id = {record.run_id: record for record in healthy}
    names = legend_names(healthy)
    if SELECTED_KEY in st.session_state:  # drop runs deleted (or damaged) since the last page run
        st.session_state[SELECTED_KEY] = [run_id for run_id in st.session_state[SELECTED_KEY] if run_id in by_id]
    else:
        finished = [record for record in healthy if record.status == runs.FINISHED] or healthy
        st.session_state[SELECTED_KEY] = [record.run_id for record in finished[:2]]
    chosen = st.multiselect("Runs to compare", list(by_id), format_func=names.__getitem__, key=SELECTED_KEY,
                            placeholder="Choose runs")
    return [by_id[run_id] for run_id in chosen]


# ---------------------------------------------------------------------------------------------
# Curves, final numbers, parameters against accuracy


def percent(value: float | None) -> str:
    return "–" if value is None else f"{value:.2%}"


def when(epoch: int, seconds: float | None) -> str:
    return f"epoch {epoch}" + (f" ({seconds:.0f} s)" if seconds is not None else "")


def curves_prose(frame: pd.DataFrame, metric: str, names: dict[str, str]) -> str:
    """The chart in words: who gets the best value of the metric, where, and by how much."""
    label, in_percent, higher = METRICS[metric]
    if higher is None:
        rows = frame.dropna(subset=["lr"]).groupby("run_id", sort=False)["lr"]
        return "Learning rate at the end of each epoch: " + "; ".join(
            f"**{names[run_id]}** from {values.iloc[0]:.2g} to {values.iloc[-1]:.2g}" for run_id, values in rows) + "."
    points = compare.best_points(frame, metric, higher)
    if not points:
        return "No finished epoch yet in the chosen runs."
    best = points[0]
    show = (lambda v: f"{v:.2%}") if in_percent else (lambda v: f"{v:.4f}")
    verb = "reaches" if higher else "gets down to"
    text = f"**{names[best.run_id]}** {verb} {show(best.value)} {label} at {when(best.epoch, best.elapsed_seconds)}"
    if len(points) == 1:
        return text + "."
    gaps = []
    for other in points[1:]:
        gap = abs(best.value - other.value)
        gap_text = f"{100 * gap:.2f} points" if in_percent else f"{gap:.4f}"
        gaps.append(f"{gap_text} {'above' if higher else 'below'} **{names[other.run_id]}** "
                    f"({show(other.value)} at {when(other.epoch, other.elapsed_seconds)})")
    return f"{text}, " + "; ".join(gaps) + ". The numbers are the unsmoothed best epoch of each run."


def curves_section(selected: list[RunRecord], frame: pd.DataFrame, styles: dict[str, RunStyle]) -> None:
    """The chosen metric of every selected run in one chart."""
    left, middle, right = st.columns([5, 2, 2])
    metric = left.segmented_control("Metric", list(METRICS), format_func=lambda m: METRICS[m][0],
                                    default="test_accuracy", required=True, key="cmp_metric")
    x_axis = middle.segmented_control("X axis", list(X_AXES), format_func=X_AXES.__getitem__, default="epoch",
                                      required=True, key="cmp_x")
    weight = right.slider("Smoothing", 0.0, 0.95, 0.0, 0.05, key="cmp_smooth",
                          help="Exponential moving average of the epochs (TensorBoard's); 0 draws the raw values.")
    label, in_percent, _ = METRICS[metric]
    lines = []
    for record in selected:
        rows = frame[frame["run_id"] == record.run_id].dropna(subset=[x_axis, metric])
        values = rows[metric].tolist()
        lines.append((styles[record.run_id], rows[x_axis].tolist(), smooth(values, weight) if weight else values))
    figure = overlay_figure(lines, f"{label.capitalize()} by {X_AXES[x_axis]}", X_AXES[x_axis], label,
                            percent=in_percent, log_y=metric == "lr", whole_x=x_axis == "epoch")
    st.plotly_chart(figure, key="cmp_curves")
    st.markdown(curves_prose(frame, metric, {run_id: style.name for run_id, style in styles.items()}))


def final_table(selected: list[RunRecord], frame: pd.DataFrame, styles: dict[str, RunStyle]) -> None:
    """The last epoch's numbers of each selected run."""
    last = frame.groupby("run_id", sort=False).tail(1).set_index("run_id")
    table = pd.DataFrame([{
        "run": styles[record.run_id].name,
        "status": status_text(record),
        "epochs": record.epochs_done,
        "final test acc.": _percent_of(last, record.run_id, "test_accuracy"),
        "best test acc.": None if record.best_test_accuracy is None else 100 * record.best_test_accuracy,
        "best epoch": record.best_epoch,
        "final test loss": _value_of(last, record.run_id, "test_loss"),
        "final train acc.": _percent_of(last, record.run_id, "train_accuracy"),
        "final train loss": _value_of(last, record.run_id, "train_loss"),
        "parameters": record.param_count,
        "wall time (s)": record.wall_seconds,
        "images/s": record.samples_per_second,
        "settings": record.settings,
    } for record in selected])
    percent_column = st.column_config.NumberColumn(format="%.2f%%")
    st.dataframe(table, hide_index=True, key="cmp_final", column_config={
        "final test acc.": percent_column, "best test acc.": percent_column, "final train acc.": percent_column,
        "final test loss": st.column_config.NumberColumn(format="%.4f"),
        "final train loss": st.column_config.NumberColumn(format="%.4f"),
        "parameters": st.column_config.NumberColumn(format="localized"),
        "wall time (s)": st.column_config.NumberColumn(format="%.1f"),
        "images/s": st.column_config.NumberColumn(format="%,.0f"),
    })


def _value_of(last: pd.DataFrame, run_id: str, column: str) -> float | None:
    return float(last.at[run_id, column]) if run_id in last.index and pd.notna(last.at[run_id, column]) else None


def _percent_of(last: pd.DataFrame, run_id: str, column: str) -> float | None:
    value = _value_of(last, run_id, column)
    return None if value is None else 100 * value


def size_prose(points: list[tuple[RunStyle, int, float]]) -> str:
    """The scatter in words: the most accurate run against the smallest one."""
    best = max(points, key=lambda point: point[2])
    smallest = min(points, key=lambda point: point[1])
    text = f"The most accurate selected run, **{best[0].name}**, reaches {best[2]:.2%} with {best[1]:,} parameters"
    if smallest[1] >= best[1]:
        return text + "; no selected run has fewer."
    return (f"{text}; the smallest, **{smallest[0].name}**, has {best[1] / smallest[1]:.1f}× fewer parameters "
            f"({smallest[1]:,}) and reaches {smallest[2]:.2%}, {100 * (best[2] - smallest[2]):.2f} points less.")


def size_section(selected: list[RunRecord], healthy: list[RunRecord], styles: dict[str, RunStyle]) -> None:
    """Best test accuracy against parameter count: selected runs in their colors, the others grey."""
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
    st.markdown(size_prose(points) + (" Grey points are the runs not selected." if others else ""))


# ---------------------------------------------------------------------------------------------
# Two runs: confusion difference and the digits one gets right and the other wrong


def answer_text(prediction: int, evaluation: Evaluation, classes: tuple[str, ...]) -> str:
    if evaluation.binary is None:
        return classes[prediction]
    return "yes" if prediction == 1 else "no"


def flips_gallery(digits: list[FlippedDigit], title: str, evaluation: Evaluation, dataset_name: str) -> None:
    """Up to FLIPS_SHOWN flipped test digits, each with both runs' answers and how sure they were."""
    st.markdown(title)
    if not digits:
        st.caption("None.")
        return
    dataset = get_dataset(dataset_name)
    columns = st.columns(6)
    for position, digit in enumerate(digits[:FLIPS_SHOWN]):
        answer_a = answer_text(digit.prediction_a, evaluation, dataset.classes)
        answer_b = answer_text(digit.prediction_b, evaluation, dataset.classes)
        caption = (f"true {dataset.classes[digit.label]} · A: {answer_a} ({digit.confidence_a:.0%}) · "
                   f"B: {answer_b} ({digit.confidence_b:.0%})")
        columns[position % 6].image(upscale(dataset.test_images[digit.index], 3), caption=caption, width="stretch")


def difference_prose(result: EvaluationComparison, names: tuple[str, str], labels: list[str]) -> str:
    """The two-run comparison in words: accuracies, flipped digits, and what the matrix colors mean."""
    gap = len(result.right_only_a) - len(result.right_only_b)
    text = (f"On the first {result.count:,} test images (all that both runs answered), **A** ({names[0]}) gets "
            f"{result.accuracy_a:.2%} right and **B** ({names[1]}) {result.accuracy_b:.2%}. A gets "
            f"{len(result.right_only_a)} digits right that B gets wrong, and B gets {len(result.right_only_b)} that "
            f"A gets wrong: a net {abs(gap)} digits ({100 * abs(gap) / result.count:.2f} points) for "
            f"{'A' if gap >= 0 else 'B'}.\n\n"
            "Each cell of the matrix is A's count minus B's. On the diagonal, blue means A gets more of that class "
            "right; off the diagonal, blue means A makes that mistake more often, and red that B does.")
    changes = result.largest_changes()
    if changes:
        text += " Largest changes: " + "; ".join(
            f"true {labels[true]} read as {labels[predicted]} {delta:+d} ({'A' if delta > 0 else 'B'} more often)"
            for true, predicted, delta in changes) + "."
    return text


def two_runs_section(pair: list[RunRecord], styles: dict[str, RunStyle], fingerprint: dict[str, tuple]) -> None:
    """Confusion-matrix difference and flipped digits of exactly two runs, from their evaluation.json."""
    a, b = pair
    names = (styles[a.run_id].name, styles[b.run_id].name)
    st.subheader(f"A: {names[0]} against B: {names[1]}, digit by digit")
    evaluations = [load_evaluation(str(r.folder), fingerprint.get(r.run_id, ())) for r in pair]
    missing = [record for record, evaluation in zip(pair, evaluations, strict=True) if evaluation is None]
    for record in missing:
        if record.live:
            st.info(f"No test answers yet for {record.name}: it is {record.status}, and writes them when it "
                    "finishes or is stopped.")
        else:
            st.info(f"No test answers for {record.name}: it ended {record.status} before any were written "
                    f"({record.message.rstrip('.')}).")
    if missing:
        return
    eval_a, eval_b = evaluations
    assert eval_a is not None and eval_b is not None
    try:
        result = compare.compare_evaluations(eval_a, eval_b)
    except CompareError as error:
        st.warning(f"These two runs cannot be compared digit by digit: {error}.")
        return
    labels = list(get_dataset(a.dataset).classes)
    if eval_a.binary is not None:
        labels = [f"not {eval_a.binary.target_digit}", str(eval_a.binary.target_digit)]
    st.markdown(difference_prose(result, names, labels))
    left, right = st.columns(2)
    left.plotly_chart(confusion_figure(result.difference, labels, "Confusion matrix of A minus that of B",
                                       diverging=True), key="cmp_confusion_diff")
    with right:
        flips_gallery(result.right_only_a, f"**A right, B wrong** ({len(result.right_only_a)}, B's surest mistakes "
                      "first)", eval_a, a.dataset)
        flips_gallery(result.right_only_b, f"**B right, A wrong** ({len(result.right_only_b)}, A's surest mistakes "
                      "first)", eval_a, a.dataset)


# ---------------------------------------------------------------------------------------------
# The page


st.title("Compare runs")
st.markdown("Every training run — from the Train page or the command line — with its curves side by side. "
            "Everything here comes from the runs' small JSON files; no weights are loaded.")
root = runs.runs_root()
fingerprint = compare.runs_fingerprint(root)
records = load_records(str(root), fingerprint)
show_notice()
if not records:
    st.info(f"No training runs yet in `{root}`. Train a network on the **Train** page (pick a preset and press "
            "Start); each run appears here as soon as it starts, and you can compare two or more of them.")
    st.stop()

runs_table(records)
if any(record.live for record in records):
    st.button("Refresh", key="cmp_refresh", icon=":material/refresh:",
              help="Runs are still training: refresh to see their latest epochs.")
manage_runs(records)
healthy = [record for record in records if not record.damaged]
selected = pick_runs(healthy)
if not selected:
    st.info("Choose one or more runs above to see their curves side by side.")
    st.stop()

mixed = sorted({(record.dataset, record.task) for record in selected})
if len(mixed) > 1:
    st.warning("These runs answer different questions — " + ", ".join(f"{dataset} ({task})" for dataset, task in mixed)
               + ": their curves are drawn together, but their numbers are not comparable.",
               icon=":material/warning:")
names = legend_names(selected)
styles = {record.run_id: RunStyle(names[record.run_id], run_color(position), record.settings)
          for position, record in enumerate(selected)}
frame = load_metrics(str(root), tuple(styles), fingerprint)
curves_section(selected, frame, styles)
final_table(selected, frame, styles)
size_section(selected, healthy, styles)
st.download_button("Download these runs' metrics (CSV)", compare.metrics_csv(selected), file_name="runs-metrics.csv",
                   mime="text/csv", key="cmp_csv", icon=":material/download:")
if len(selected) == 2:
    two_runs_section(selected, styles, dict(fingerprint))
else:
    st.caption("Choose exactly two runs to see how their answers on the test set differ, digit by digit.")
