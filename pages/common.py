"""Pieces every page shares: the dataset choice, the cached dataset, small chart helpers."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
import streamlit as st
import torch

from core.data import DATASETS, DataError, Dataset, ensure_files, get_spec, load_dataset, missing_files
from core.i18n import Message
from core.inference import set_serving_threads
from core.runs import RunRecord
from pages.address import DATASET_KEY, DATASET_PARAM, DEFAULT_DATASET, keep_dataset_in_address
from pages.lang import _, choice, ngettext, num, pct, say, say_all, translator  # noqa: F401  (re-exported for the pages)

# Once per server process, on first import (every page imports this module): the server answers one
# small image at a time, and training runs in worker processes that set their own thread counts.
set_serving_threads()

def settings_text(parts: Sequence[Message]) -> str:
    """A run's settings line (core.runs.settings_messages) in the session's language."""
    return " · ".join(say(part) for part in parts)


def run_message(record: RunRecord) -> str:
    """A run's status message in the session's language (from its template and parameters when stored)."""
    return say(record.message_parts) if record.message_parts is not None else _(record.message)


def error_text(error: Exception) -> str:
    """An error a user can fix, in the session's language: each of a ConfigError's problems, else its text."""
    parts: tuple[Message, ...] = getattr(error, "messages", ())
    return "; ".join(say(part) for part in parts) if parts else _(str(error))


def dataset_title(key: str) -> str:
    """A dataset's key ("fashion-mnist") as its name ("Fashion-MNIST"); an unknown key as it is."""
    return DATASETS[key].title if key in DATASETS else key


def dataset_sidebar() -> None:
    """The sidebar's dataset picker; pages read the choice with `current_dataset_name()`.

    The choice lives in the address too (`?dataset=fashion-mnist`), so a reload or a shared link keeps it;
    an unknown name there opens MNIST.
    """
    if DATASET_KEY not in st.session_state:  # a new session: a reload, or a link
        asked = st.query_params.get(DATASET_PARAM)
        st.session_state[DATASET_KEY] = asked if asked in DATASETS else DEFAULT_DATASET
    keep_dataset_in_address(st.session_state[DATASET_KEY])  # links between pages lose the query: put it back
    st.sidebar.selectbox(
        _("Dataset"),
        list(DATASETS),
        format_func=lambda key: DATASETS[key].title,
        key=DATASET_KEY,
        help=_(
            "MNIST: handwritten digits. Fashion-MNIST: the same format with Zalando's clothes, shoes and bags, "
            "and harder."
        ),
    )


def current_dataset_name() -> str:
    return str(st.session_state.get(DATASET_KEY, DEFAULT_DATASET))


def class_names(dataset: str | None = None) -> tuple[str, ...]:
    """The dataset's class names (core.data's one list) in the session's language: digits stay digits."""
    return tuple(_(name) for name in get_spec(dataset or current_dataset_name()).classes)


def answer_names(dataset: str, task: str, target: int) -> tuple[str, ...]:
    """What each of a model's outputs means: its dataset's classes, or (not X, X) for a one-vs-rest model."""
    names = class_names(dataset)
    if task == "binary":
        return (_("not {target}").format(target=names[target]), names[target])
    return names


@st.cache_resource(show_spinner=False)
def _cached_dataset(name: str) -> Dataset:
    return load_dataset(name)


def get_dataset(name: str | None = None) -> Dataset:
    """The dataset in memory, fetched first (with a progress box) if its files are missing.

    A problem the user can fix ends the page with its message, never a traceback.
    """
    spec = get_spec(name or current_dataset_name())
    try:
        if missing_files(spec):
            with st.status(_("Fetching {dataset}…").format(dataset=spec.title), expanded=True) as status:
                ensure_files(spec.key, progress=status.write)
                status.update(label=_("{dataset} is ready").format(dataset=spec.title), state="complete",
                              expanded=False)
        return _cached_dataset(spec.key)
    except DataError as error:
        st.error(_("**{dataset} is not available.**").format(dataset=spec.title) + f"\n\n{error}")
        st.stop()
        raise  # st.stop() raises; this line keeps type checkers sure we never return None


def upscale(image: torch.Tensor | np.ndarray, factor: int = 3) -> np.ndarray:
    """A uint8 image enlarged by pixel repetition, so small digits stay crisp in the browser."""
    array = image.numpy() if isinstance(image, torch.Tensor) else image
    return np.kron(array, np.ones((factor, factor), dtype=array.dtype))


def pixel_heatmap(image: torch.Tensor | np.ndarray, title: str = "", hover_label: str | None = None) -> go.Figure:
    """A 2-D image as a Plotly heatmap, row 0 at the top, each pixel's value on hover."""
    array = image.numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    hover = _("row {row}, col {col}<br>{label} {value}").format(
        row="%{y}", col="%{x}", label=hover_label or _("value"), value="%{z}"
    )
    figure = go.Figure(
        go.Heatmap(
            z=array,
            colorscale="gray",
            hovertemplate=hover + "<extra></extra>",
        )
    )
    figure.update_yaxes(autorange="reversed", scaleanchor="x", constrain="domain")
    figure.update_xaxes(constrain="domain")
    figure.update_layout(title=title, margin=dict(l=10, r=10, t=40 if title else 10, b=10), height=420)
    return figure
