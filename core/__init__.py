"""Transfer Lab engine: a plain Python library with no Streamlit dependency."""
