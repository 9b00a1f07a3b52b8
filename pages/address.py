"""What the address bar keeps of a session, so a reload or a shared link opens the same view: the language
(pages.lang) and the sidebar's dataset when it is not MNIST. No torch here: app.py draws the menu with it
before the pages load."""

from __future__ import annotations

import streamlit as st

from pages.lang import lang_query

DATASET_KEY = "dataset"  # session-state key of the sidebar's dataset choice
DATASET_PARAM = "dataset"  # ?dataset=fashion-mnist
DEFAULT_DATASET = "mnist"


def link_query() -> dict[str, str]:
    """The query the menu's links carry: the chosen language, and the dataset unless it is the default."""
    query = lang_query()
    dataset = st.session_state.get(DATASET_KEY, st.query_params.get(DATASET_PARAM))  # a new session: the address's
    if isinstance(dataset, str) and dataset != DEFAULT_DATASET:
        query[DATASET_PARAM] = dataset
    return query


def keep_dataset_in_address(dataset: str) -> None:
    """Write the dataset into the address (or take it out for the default), as the language is kept there."""
    if dataset == DEFAULT_DATASET:
        if DATASET_PARAM in st.query_params:
            del st.query_params[DATASET_PARAM]
    elif st.query_params.get(DATASET_PARAM) != dataset:
        st.query_params[DATASET_PARAM] = dataset
