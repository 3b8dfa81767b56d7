"""Transfer Lab: the app shell (navigation and the shared sidebar).

Run with ``streamlit run streamlit_app.py``.

Page layout: pages are registered in ``PAGES`` below with ``st.navigation``
(so ``pages/`` is not auto-discovered); each page is one thin module in
``pages/`` (widgets and charts only, logic in ``core/``), and ``pages/common.py``
holds the shared session state, sidebar and cached loaders. To add a page,
add an ``st.Page`` line to its section.
"""

import streamlit as st

from pages import common

st.set_page_config(page_title="Transfer Lab", page_icon=":material/science:", layout="wide")

PAGES = {
    "Start": [
        st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
    ],
    "Data": [
        st.Page(common.DATASET_PAGE, title="Dataset", icon=":material/photo_library:"),
    ],
    "Models": [
        st.Page(common.BACKBONES_PAGE, title="Backbones", icon=":material/account_tree:"),
    ],
}

page = st.navigation(PAGES)
common.sidebar()
page.run()
