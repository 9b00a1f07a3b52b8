"""The dashboard's pages (one file each) and the helpers they share.

Importing this package routes deep links through app.py: with a folder named pages/ beside app.py,
Streamlit starts in its legacy multipage mode and stays there until the public st.navigation is
first called, so a server whose first request is /train would run pages/train.py alone, without
app.py's router and sidebar. Every page imports from this package, so on that first run we leave
the legacy mode and rerun; the same URL then goes through app.py, where st.Page gives it the same
page hash.
"""

import streamlit as st
from streamlit.runtime.pages_manager import PagesManager
from streamlit.runtime.scriptrunner import get_script_run_ctx

if PagesManager.uses_pages_directory and get_script_run_ctx() is not None:
    PagesManager.uses_pages_directory = False
    st.rerun()
