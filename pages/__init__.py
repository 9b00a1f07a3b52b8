"""The dashboard's pages (one file each), the helpers they share, and the one list of pages app.py routes to.

Deep links on a fresh server: with a folder named pages/ beside app.py, Streamlit starts in its legacy
multipage mode, in which a first request for /train runs pages/train.py alone, without app.py's router
and sidebar. The public st.navigation ends that mode for the whole process. Every page imports from
this package, so when it is first imported (once per server process, in that run's session) we call it
and rerun: the same URL then goes through app.py, where st.Page gives it the same page hash. (The
public API cannot tell us whether that run came through app.py; when it did, the extra rerun costs a
fraction of a second.)
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from pages.lang import _

PAGES_DIR = Path(__file__).resolve().parent
REROUTED_KEY = "pages_rerouted"  # session-state flag: this session has rerouted once (no second time)


def app_pages() -> list[st.Page]:
    """Every page of the app in menu order (absolute paths, so the list works from any entry script)."""
    return [
        st.Page(PAGES_DIR / "dataset.py", title=_("Dataset"), icon=":material/grid_view:", default=True),
        st.Page(PAGES_DIR / "architecture.py", title=_("Architecture"), icon=":material/account_tree:"),
        st.Page(PAGES_DIR / "tutorials.py", title=_("Tutorials"), icon=":material/school:"),
        st.Page(PAGES_DIR / "train.py", title=_("Train"), icon=":material/model_training:"),
        st.Page(PAGES_DIR / "draw.py", title=_("Draw"), icon=":material/edit:"),
        st.Page(PAGES_DIR / "compare.py", title=_("Compare"), icon=":material/compare_arrows:"),
        st.Page(PAGES_DIR / "sweep.py", title=_("Sweep"), icon=":material/tune:"),
        st.Page(PAGES_DIR / "speedrun.py", title=_("Speedrun"), icon=":material/speed:"),
    ]


if not st.session_state.get(REROUTED_KEY):
    st.session_state[REROUTED_KEY] = True  # before the rerun, so a second import cannot loop
    st.navigation(app_pages(), position="hidden")
    st.rerun()
