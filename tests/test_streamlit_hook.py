"""The one private Streamlit hook the app replaces (``app_pages.common.keep_compiled_models_warm``).

Streamlit has no supported switch for its end-of-run ``keras.backend.clear_session()``.
These tests pin what the replacement relies on, so a Streamlit upgrade that renames the
hook, stops calling it, or stops clearing Keras fails here, loudly, instead of silently
making every click rebuild the compiled models (or keeping a patch that does nothing).
"""

from __future__ import annotations

import sys
import types

import streamlit
from streamlit.runtime.scriptrunner import script_runner
from streamlit.testing.v1 import AppTest

from app_pages import common

SCRIPT = """
import keras
import streamlit as st

st.write("ran")
"""

CHANGED = (f"Streamlit {streamlit.__version__} changed its end-of-run cleanup "
           f"(script_runner.{common.STREAMLIT_CLEANUP_HOOK}): revisit app_pages.common.keep_compiled_models_warm")


def streamlit_cleanup():
    """Streamlit's own cleanup function, whether or not the app has replaced it already."""
    hook = getattr(script_runner, common.STREAMLIT_CLEANUP_HOOK, None)
    assert callable(hook), CHANGED
    return getattr(hook, "streamlit_cleanup", hook)


def run_script(monkeypatch) -> int:
    """Run SCRIPT twice through AppTest; how often Streamlit cleared the Keras session.
    The other half of the cleanup, closing pyplot's figures, is checked on a stand-in
    ``matplotlib.pyplot`` (the app does not depend on matplotlib)."""
    import keras

    calls, closed = [], []
    monkeypatch.setattr(keras.backend, "clear_session", lambda *a, **k: calls.append(1))
    pyplot = types.ModuleType("matplotlib.pyplot")
    pyplot.close = closed.append
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", pyplot)
    at = AppTest.from_string(SCRIPT, default_timeout=120)
    at.run()
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert [m.value for m in at.markdown] == ["ran"]
    assert closed == ["all", "all"], "the end-of-run cleanup no longer closes pyplot's figures"
    return len(calls)


def test_streamlit_clears_keras_after_each_run_through_the_hook(monkeypatch):
    """Without the replacement, each rerun ends in keras.backend.clear_session() via the hook.
    If this fails, Streamlit moved or dropped that cleanup: the replacement is dead code or,
    worse, the kernels are cleared somewhere it does not reach."""
    monkeypatch.setattr(script_runner, common.STREAMLIT_CLEANUP_HOOK, streamlit_cleanup())
    assert run_script(monkeypatch) == 2, CHANGED


def test_the_replacement_keeps_keras_and_still_closes_figures(monkeypatch):
    monkeypatch.setattr(script_runner, common.STREAMLIT_CLEANUP_HOOK, streamlit_cleanup())
    assert common.keep_compiled_models_warm() is True
    assert common.keep_compiled_models_warm() is True  # idempotent: replaced once
    installed = getattr(script_runner, common.STREAMLIT_CLEANUP_HOOK)
    assert installed.streamlit_cleanup is streamlit_cleanup()
    assert run_script(monkeypatch) == 0, CHANGED


def test_a_missing_hook_is_reported_not_fatal(monkeypatch, caplog):
    monkeypatch.delattr(script_runner, common.STREAMLIT_CLEANUP_HOOK)
    with caplog.at_level("WARNING"):
        assert common.keep_compiled_models_warm() is False
    assert "compiled models are rebuilt after every rerun" in caplog.text
