"""Router and shared frame: page config, navigation, and the sidebar every page shares."""

import streamlit as st

import core  # noqa: F401  (first: it sets GOMP_SPINCOUNT before any module loads torch)
from pages import app_pages
from pages.address import link_query
from pages.lang import language_switch

# An emoji icon: the browser draws it from a data: URL. A :material/...: icon would be fetched from
# fonts.gstatic.com, which fails offline.
st.set_page_config(page_title="MNIST Lab", page_icon="✍️", layout="wide")

# Our own menu of page links: .streamlit/config.toml hides Streamlit's automatic one, which on a fresh
# server would first list every file in pages/ (helpers included) while the legacy multipage mode lasts.
language_switch()  # first: every title below is in the session's language
PAGES = app_pages()
navigation = st.navigation(PAGES, position="hidden")
for page in PAGES:
    st.sidebar.page_link(page, width="stretch", query_params=link_query())  # the language and dataset go along
st.sidebar.divider()

# Loaded only now that the menu is on screen: pages.common imports torch, which takes seconds.
from pages.common import dataset_sidebar  # noqa: E402

dataset_sidebar()
navigation.run()
