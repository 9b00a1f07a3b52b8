"""Router and shared frame: page config, navigation, and the sidebar every page shares."""

import streamlit as st

import core  # noqa: F401  (first: it sets OMP_WAIT_POLICY before any module loads torch)
from pages.common import dataset_sidebar

st.set_page_config(page_title="MNIST Lab", page_icon=":material/draw:", layout="wide")

# Only pages that really work are listed; each later feature adds its own line.
PAGES = [
    st.Page("pages/dataset.py", title="Dataset", icon=":material/grid_view:", default=True),
    st.Page("pages/architecture.py", title="Architecture", icon=":material/account_tree:"),
    st.Page("pages/train.py", title="Train", icon=":material/model_training:"),
    st.Page("pages/draw.py", title="Draw", icon=":material/edit:"),
    st.Page("pages/compare.py", title="Compare", icon=":material/compare_arrows:"),
]

navigation = st.navigation(PAGES)
dataset_sidebar()
navigation.run()
