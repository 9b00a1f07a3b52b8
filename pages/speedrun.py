"""Speedrun page: the ladder from the tutorial pipeline to `fast`, each rung's measured time to 99%."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core import speedrun
from core.speedrun import LadderError
from pages.common import _, num, pct, say

COMMAND = "python -m core bench ladder"


def ladder_table(result: dict) -> pd.DataFrame:
    """One row per rung: what it adds, time to 99%, speed-up over the first rung, accuracy, epochs."""
    first = result["rungs"][0]["seconds_to_99"] if result["rungs"] else None
    time_column = _("time to {target} (s)").format(target=pct(result["target_accuracy"], 0))
    rows = []
    for row in result["rungs"]:
        seconds = row["seconds_to_99"]
        rows.append({
            _("rung"): _(row["title"]),
            time_column: num(seconds, 1) if seconds is not None else _("not reached"),
            _("speed-up over the first rung"): (num(first / seconds, 2) + "×") if seconds and first else "—",
            _("test accuracy"): pct(row["test_accuracy"], 2),
            _("epochs"): row["epochs"],
            _("note"): row["error"] or "",
        })
    return pd.DataFrame(rows)


def ladder_figure(result: dict) -> go.Figure:
    """Horizontal bars of each rung's time to 99%, the first rung on top; rungs that never got there are left out."""
    reached = [row for row in result["rungs"] if row["seconds_to_99"] is not None]
    figure = go.Figure(go.Bar(
        y=[_(row["title"]) for row in reached], x=[row["seconds_to_99"] for row in reached], orientation="h",
        text=[num(row["seconds_to_99"], 1) + " s" for row in reached], textposition="outside", marker_color="#2563eb",
        cliponaxis=False,  # beside each bar, readable on the shortest too (the right margin leaves it room)
    ))
    title = _("Time to {target} test accuracy, one change per rung").format(target=pct(result["target_accuracy"], 0))
    figure.update_layout(title=title, xaxis_title=_("seconds"),
                         height=120 + 45 * len(reached), margin=dict(l=10, r=60, t=40, b=10))
    figure.update_yaxes(autorange="reversed")
    return figure


st.title(_("Speedrun"))
st.markdown(_(
    "How `fast` reaches 99% test accuracy so quickly on a CPU. The ladder starts from the tutorial pipeline "
    "and adds one change at a time; every rung trains from the same seed until an epoch ends at 99% or its "
    "epochs run out, and its time (training and evaluation) was measured on the machine named below, all "
    "rungs in one process. Nothing here is typed in: it is the last result of the command below."))
try:
    result = speedrun.read_ladder(speedrun.DEFAULT_OUTPUT)
except LadderError as error:
    st.error(say(error.message))
    st.stop()
if result is None:
    st.info(_("No ladder has been measured here yet. Measure it (a few minutes) with:"))
    st.code(COMMAND, language="bash")
    st.stop()

machine = result["machine"]
st.caption(_(
    "Measured {when} on {cpu} ({cores} cores), torch {torch}: {train} training and {test} test images, CPU load "
    "average {before} before and {after} after (other work on the machine slows every rung).").format(
    when=result["measured_at"], cpu=machine["cpu"], cores=machine["cores"], torch=machine["torch"],
    train=num(result["train_size"]), test=num(result["test_size"]), before=num(machine["load_average_1min"], 1),
    after=num(result["load_average_1min_after"], 1)))
st.plotly_chart(ladder_figure(result), width="stretch")
# A static table: its long rung names wrap and every column stays in view (a dataframe cuts both at this width).
st.table(ladder_table(result).set_index(_("rung")))
fast = next((row for row in result["rungs"] if row["key"] == result["fast_rung"]), None)
if fast is not None:
    st.markdown(_("The rung “{rung}” is the `fast` preset as the engine trains it; the rungs after it were tried on "
                  "top of it.").format(rung=_(fast["title"])))
st.markdown(_("Measure it again:"))
st.code(COMMAND, language="bash")
