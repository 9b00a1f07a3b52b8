"""Sweep page: search hyperparameters with Optuna; every trial is a run on the Train and Compare pages."""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from typing import Any

import optuna
import pandas as pd
import streamlit as st

from core import jobs, runs, sweep
from core.i18n import N_
from core.sweep import SEARCH_SPACE, SETTING_LABELS, Choice, FloatRange, Param, SweepError, SweepSpec
from core.training import PRESETS, ConfigError
from pages.charts import history_figure, optuna_figure, parallel_figure, shown_settings, slice_figure
from pages.common import _, current_dataset_name, error_text, get_dataset, num, pct, say
from pages.lang import current_locale

STUDY_PARAM = "study"  # URL query parameter: the study this page follows
PREFIX = "sw_"  # session-state prefix of the page's widgets
FOLLOWED = PREFIX + "followed"  # the study picker's key
FOLLOW_NEXT = PREFIX + "follow_next"  # a study just started, for the picker to show on the next run
MISSING = "—"  # a table cell with no value (a failed trial's accuracy): the reason column says why
TRIAL_STATES = {"running": N_("running"), "waiting": N_("waiting"), "complete": N_("complete"),
                "pruned": N_("pruned"), "fail": N_("fail")}  # Optuna's trial states, marked
STATE_SENTENCES = {
    "queued": N_("The sweep on this machine is starting: {message}."),
    "running": N_("The sweep on this machine is running: {message}."),
    "finished": N_("The sweep on this machine finished: {message}."),
    "stopped": N_("The sweep on this machine was stopped: {message}."),
    "failed": N_("The sweep on this machine failed: {message}."),
    "crashed": N_("The sweep on this machine ended without a word: {message}."),
}


def log_grid(low: float, high: float) -> list[float]:
    """1-2-5 steps from low to high (both kept), for a slider over a log-uniform range."""
    values = {low, high}
    for exponent in range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1):
        values.update(m * 10.0**exponent for m in (1, 2, 5) if low <= m * 10.0**exponent <= high)
    return sorted(float(f"{value:.3g}") for value in values)


def option_text(name: str, value: Any) -> str:
    """A choice of a setting as the page writes it everywhere (on/off for a switch)."""
    return say(sweep.value_message(name, value))


def space_inputs() -> dict[str, Param] | None:
    """One widget per entry of the declared search space, each starting at its whole range."""
    space: dict[str, Param] = {}
    for name, param in SEARCH_SPACE.items():
        if isinstance(param, Choice):
            chosen = st.multiselect(_(SETTING_LABELS[name]), param.options, default=list(param.options),
                                    key=PREFIX + name, format_func=partial(option_text, name))
            if not chosen:
                st.error(_("Choose at least one value for {setting}.").format(setting=_(SETTING_LABELS[name]).lower()))
                return None
            space[name] = Choice(tuple(chosen))
        elif param.log:
            low, high = st.select_slider(_(SETTING_LABELS[name]), log_grid(param.low, param.high), key=PREFIX + name,
                                         value=(param.low, param.high), format_func=lambda value: f"{value:g}")
            space[name] = FloatRange(low, high, log=low < high)
        else:
            low, high = st.slider(_(SETTING_LABELS[name]), param.low, param.high, (param.low, param.high),
                                  key=PREFIX + name)
            space[name] = FloatRange(low, high)
    return space


def new_sweep_form() -> None:
    """Preset, trials, epochs, subsets and the narrowed space; Start launches `python -m core sweep`."""
    left, right = st.columns([1, 2])
    with left:
        preset = st.selectbox(_("Start from a preset"), list(PRESETS), key=PREFIX + "preset")
        study = st.text_input(_("Study name"), key=PREFIX + "study", placeholder=f"{preset}-sweep").strip()
        trials = int(st.number_input(_("Trials"), 1, 500, 10, key=PREFIX + "trials"))
        epochs = int(st.number_input(_("Epochs per trial"), 1, 100, 1, key=PREFIX + "epochs"))
        train = int(st.number_input(_("Train on the first N images (0 = all {count})").format(count=num(60000)),
                                    0, 60000, 10000, step=1000, key=PREFIX + "train_subset"))
        test = int(st.number_input(_("Test on the first N images (0 = all {count})").format(count=num(10000)),
                                   0, 10000, 2000, step=500, key=PREFIX + "test_subset"))
    with right:
        st.markdown("**" + _("Search space") + "**")
        space = space_inputs()
    st.caption(_("Every trial trains on {dataset}; change the dataset in the sidebar.").format(
        dataset=get_dataset().spec.title))
    overrides = {"epochs": epochs, "train_subset": train, "test_subset": test, "dataset": current_dataset_name()}
    if space is None:
        return
    if st.button(_("Start the sweep"), type="primary", icon=":material/play_arrow:", key=PREFIX + "start"):
        start(lambda: sweep.make_spec(preset, overrides, space), trials, study or f"{preset}-sweep")


def start(make_spec: Callable[[], SweepSpec], trials: int, study: str) -> None:
    """Check the spec, launch the sweep process and follow it; a setting it cannot use is said, not raised."""
    try:
        sweep.launch_sweep(make_spec(), trials, study)
    except ConfigError as error:
        st.error(_("The sweep could not start: {error}").format(error=error_text(error)))
        return
    st.query_params[STUDY_PARAM] = study
    st.session_state[FOLLOW_NEXT] = study  # the study picker takes it before it is drawn on the next run
    st.rerun()


def stop_clicked(study: str) -> None:
    try:
        st.toast(say(sweep.stop_sweep(study)))
    except SweepError as error:
        st.toast(error_text(error))


def reason_text(row: sweep.TrialRow) -> str:
    """Why the trial was pruned or failed ('' when it has no such reason: gettext's '' is the catalog's header)."""
    return say(row.message) if row.message.template else ""


def trials_table(rows: list[sweep.TrialRow]) -> None:
    """One row per trial; why a trial failed or was pruned stands beside its state, a missing value shows '—'."""
    # Column ids stay English (parameter names are ids too); column_config gives every column its label.
    frame = pd.DataFrame([{
        "trial": row.number, "state": _(TRIAL_STATES.get(row.state, row.state)), "reason": reason_text(row),
        "test accuracy": row.value, "epochs": row.epochs,
        "run": f"train?run={row.run_id}" if row.run_id else None, **row.params,
        "seconds": row.seconds, "overhead (s)": row.overhead_seconds,
    } for row in rows])
    st.dataframe(frame, hide_index=True, key=PREFIX + "table", placeholder=MISSING, column_config={
        "trial": _("trial"), "state": _("state"), "epochs": _("epochs"),
        "reason": st.column_config.TextColumn(_("reason"), help=_("Why the trial was pruned or failed.")),
        "test accuracy": st.column_config.NumberColumn(
            _("test accuracy"), format="percent",
            help=_("Complete trials: after their last epoch. Running and pruned trials: after the last epoch they "
                   "reported.")),
        "run": st.column_config.LinkColumn(_("run"), display_text=r"run=(.*)",
                                           help=_("Open the trial's run on the Train page.")),
        **{name: _(SETTING_LABELS[name]) for name in frame if name in SETTING_LABELS},
        "lr": st.column_config.NumberColumn(_(SETTING_LABELS["lr"]), format="%.3g"),
        "weight_decay": st.column_config.NumberColumn(_(SETTING_LABELS["weight_decay"]), format="%.2g"),
        "label_smoothing": st.column_config.NumberColumn(_(SETTING_LABELS["label_smoothing"]), format="%.3f"),
        "seconds": st.column_config.NumberColumn(_("seconds"), format="%.1f", help=_("The trial's wall time.")),
        "overhead (s)": st.column_config.NumberColumn(
            _("overhead (s)"), format="%.2f",
            help=_("The trial's wall time minus its run's own training time: queue, data loading, building the "
                   "network, checkpoints and the study's database.")),
    })


def sweep_state(status: sweep.SweepStatus) -> None:
    """What this machine's sweep of the study is doing, with a Stop button while it works."""
    if status.state == "unknown":
        st.caption(_("No sweep of this study has run on this machine; its trials come from the study's storage."))
        return
    text = _(STATE_SENTENCES.get(status.state, N_("The sweep on this machine is {state}: {message}."))).format(
        state=_(runs.STATUS_LABELS.get(status.state, status.state)), message=say(status.message_parts).rstrip("."))
    if status.live:
        st.progress(status.done / max(status.trials, 1), text=text)
        st.button(_("Stop the sweep"), icon=":material/stop:", key=PREFIX + "stop", on_click=stop_clicked,
                  args=(status.study,))
    elif status.state in ("failed", "crashed"):
        st.error(text)
    else:
        st.info(text)


def followed_study(study_name: str, was_live: bool, ended_before: int) -> None:
    """The sweep's state and trial table, re-read every two seconds while it works.

    When a trial ends (or the sweep does) the whole page reruns, so the figures below catch up.
    """
    status = sweep.read_sweep(study_name)
    sweep_state(status)
    rows = sweep.trial_rows(sweep.load_study(study_name))
    ended = sum(row.state not in ("running", "waiting") for row in rows)
    if rows:
        trials_table(rows)
    else:
        st.caption(_("The study has no trials yet."))
    if (was_live and not status.live) or ended != ended_before:
        st.rerun()


def study_not_made(study_name: str) -> None:
    """A sweep folder whose study is not in the storage (yet): its state, until the study appears."""
    status = sweep.read_sweep(study_name)
    sweep_state(status)
    if not status.live or study_name in sweep.study_names():
        st.rerun()


def figures(study: optuna.Study, complete: int) -> None:
    """Optuna's own figures of the study, fitted to what it searched and in the page's words."""
    st.subheader(_("Figures"))
    if complete == 0:
        st.info(_("The figures appear when a first trial completes; pruned and failed trials have no final value."))
        return
    from optuna import visualization as vis

    words = {"Trial": _("trial"), "Objective Value": _("test accuracy"), "Best Value": _("best so far"),
             "Infeasible Trial": _("infeasible trial"), "Feasible Trial": _("trial"),
             "Hyperparameter Importance": _("importance"),
             "Hyperparameter": "",  # no title: the bars' own labels name the settings, and a title collides with them
             **{name: _(label) for name, label in SETTING_LABELS.items()}}
    space = sweep.searched_space(study)
    left, right = st.columns(2)
    left.plotly_chart(history_figure(study, words), key=PREFIX + "history")
    if complete < 2:
        right.info(_("Parameter importances need at least two complete trials; this study has one."))
    else:
        try:
            importances = vis.plot_param_importances(study, params=shown_settings(study, space))
            right.plotly_chart(optuna_figure(importances, _("Parameter importances"), words),
                               key=PREFIX + "importances")
        except (ValueError, RuntimeError) as error:
            right.info(_("Parameter importances cannot be computed for this study: {error}").format(error=error))
    # Full width: their axes sit side by side and need the room for their labels.
    st.plotly_chart(parallel_figure(study, space, words), key=PREFIX + "parallel")
    st.plotly_chart(slice_figure(study, space, words), key=PREFIX + "slice")


def study_summary(study: str, spec: SweepSpec) -> str:
    """What the study sweeps, by the settings' labels: its preset, what every trial shares, what it searches."""
    sentences = [_("Study {study} starts every trial from preset {preset}.").format(study=study, preset=spec.preset)]
    if spec.overrides:
        sentences.append(_("Fixed: {settings}.").format(
            settings=" · ".join(say(part) for part in spec.fixed_messages())))
    sentences.append(_("Searched: {settings}.").format(
        settings=" · ".join(say(part) for part in spec.searched_messages())))
    return ("" if current_locale().startswith("zh") else " ").join(sentences)  # Chinese sentences run on unspaced


def best_section(study: optuna.Study) -> None:
    """Train the best trial's settings as an ordinary run."""
    best = study.best_trial
    st.subheader(_("Train the best configuration"))
    st.markdown(_("The best trial so far is trial {number}, with test accuracy {accuracy}. Its settings can train "
                  "again as an ordinary run, for longer and on all the images.").format(
        number=best.number, accuracy=pct(best.value or 0.0, 2)))
    spec = sweep.study_spec(study)
    epochs = int(st.number_input(_("Epochs"), 1, 500, int(spec.overrides.get("epochs", 1)) if spec else 1,
                                 key=PREFIX + "best_epochs"))
    full = st.checkbox(_("Use all training and test images"), value=True, key=PREFIX + "best_full")
    if st.button(_("Train the best configuration"), icon=":material/model_training:", key=PREFIX + "train_best"):
        try:
            run_id = jobs.launch(sweep.best_config(study, epochs=epochs, full_data=full),
                                 name=f"{study.study_name} best")
        except ConfigError as error:
            st.error(_("The run could not start:") + f" {error_text(error)}")
            return
        st.success(_("Run {run} trains trial {number}'s settings. [Follow it on the Train page]({link}).").format(
            run=run_id, number=best.number, link=f"train?run={run_id}"))


def more_trials(study: optuna.Study, status: sweep.SweepStatus) -> None:
    """Resume the study on this machine with its own settings."""
    spec = sweep.study_spec(study)
    if spec is None or status.live:
        return
    with st.expander(_("Add trials to this study"), icon=":material/add:"):
        st.caption(_("They run on this machine with the study's own preset, options and search space."))
        trials = int(st.number_input(_("More trials"), 1, 500, 5, key=PREFIX + "more"))
        if st.button(_("Add them to this study"), icon=":material/add:", key=PREFIX + "resume"):
            start(lambda: spec, trials, study.study_name)


st.title(_("Sweep"))
st.markdown(
    _("Let Optuna search the settings of a preset. Each trial trains as an ordinary run, queued with the others, "
      "so it also shows on the Train and Compare pages; trials whose test accuracy lags the median of earlier "
      "trials after an epoch are pruned. The sweep runs in its own process: close this tab and it goes on.")
)
with st.expander(_("New sweep"), expanded=not sweep.study_names(), icon=":material/tune:"):
    new_sweep_form()

names = sorted(set(sweep.study_names()) | {status.study for status in sweep.list_sweeps()})
if not names:
    st.info(_("No studies yet. Choose a preset and a search space above and press **Start the sweep**."))
    st.stop()
if FOLLOW_NEXT in st.session_state:
    st.session_state[FOLLOWED] = st.session_state.pop(FOLLOW_NEXT)
if st.session_state.get(FOLLOWED) not in names:  # a new session (the URL may name a study), or a study gone
    wanted = st.query_params.get(STUDY_PARAM)
    st.session_state[FOLLOWED] = wanted if wanted in names else names[0]
chosen = st.selectbox(_("Study"), names, key=FOLLOWED)
st.query_params[STUDY_PARAM] = chosen
if chosen not in sweep.study_names():  # launched a moment ago: the study is made when its process starts
    st.fragment(run_every=1.0 if sweep.read_sweep(chosen).live else None)(study_not_made)(chosen)
    st.stop()
study = sweep.load_study(chosen)
status = sweep.read_sweep(chosen)
spec = sweep.study_spec(study)
if spec is not None:
    st.caption(study_summary(chosen, spec))
ended = sum(trial.state.is_finished() for trial in study.trials)
st.subheader(_("Trials"))
st.fragment(run_every=2.0 if status.live else None)(followed_study)(chosen, status.live, ended)
more_trials(study, status)
complete = sum(trial.state == optuna.trial.TrialState.COMPLETE for trial in study.trials)
figures(study, complete)
if complete:
    best_section(study)
