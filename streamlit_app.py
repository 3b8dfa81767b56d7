"""Transfer Lab: the app shell (navigation and the shared sidebar).

Run with ``streamlit run streamlit_app.py``.

Page layout: each page is one thin module in ``app_pages/`` (widgets and
charts only, logic in ``core/``), registered in ``PAGES`` below with
``st.navigation``; ``app_pages/common.py`` holds the shared session state,
sidebar and cached loaders. To add a page, add an ``st.Page`` line to its
section. The folder is deliberately not called ``pages/``: a ``pages/`` folder
beside this script switches Streamlit to its legacy auto-discovery, which runs
page files without this shell (no sidebar, no page config; AppTest reruns too).
"""

import streamlit as st

from app_pages import common

st.set_page_config(page_title="Transfer Lab", page_icon=":material/science:", layout="wide")
common.keep_compiled_models_warm()  # on every page: Streamlit would drop compiled kernels after each rerun
common.start_session()  # core sees this session's folders; sign-in when secrets.toml has [auth]

PAGES = {
    "Start": [
        st.Page("app_pages/home.py", title="Home", icon=":material/home:", default=True),
    ],
    "Data": [
        st.Page(common.DATASET_PAGE, title="Dataset", icon=":material/photo_library:"),
        st.Page(common.LABEL_PAGE, title="Label", icon=":material/label:"),
    ],
    "Models": [
        st.Page(common.BACKBONES_PAGE, title="Backbones", icon=":material/account_tree:"),
        st.Page(common.EXPLORE_PAGE, title="Explore features", icon=":material/scatter_plot:"),
    ],
    "Train": [
        st.Page(common.STRATEGIES_PAGE, title="Strategies", icon=":material/compare_arrows:"),
        st.Page(common.CURVES_PAGE, title="Training curves", icon=":material/show_chart:"),
    ],
    "Predict": [
        st.Page(common.CLASSIFIER_PAGE, title="Classifier", icon=":material/image_search:"),
    ],
}

page = st.navigation(PAGES)
dataset_slot = common.sidebar()
# Drawn before the page (st.stop() ends the run at the next element, so a page that stops early
# would leave the slot empty), and again after it, so a dataset it just scanned shows.
common.dataset_summary(dataset_slot)
page.run()
common.dataset_summary(dataset_slot)
