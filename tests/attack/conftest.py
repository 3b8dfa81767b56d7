"""Fixtures of the attack suite: a served app per module (``streamlit run`` on loopback, as the
browser tier starts it), a Chromium for it, a folder outside every allowed root, and the
screenshots folder the browser tier prints."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from core import settings
from tests.browser.conftest import chromium, require_chromium, screenshots, streamlit_server  # noqa: F401  (fixture)
from tests.helpers import SHARED


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The app without sign-in, one per module: yields (url, its data directory). Its allowed roots
    are this run's temporary folders and the shared assets (``streamlit_server``)."""
    require_chromium()
    home = tmp_path_factory.mktemp("attack_home")
    with streamlit_server(home) as (_, url, _, _):
        yield url, home


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium (fresh profile) for a module's visitor."""
    with chromium() as driver:
        yield driver


@pytest.fixture
def as_server(monkeypatch):
    """``as_server(home)``: this test process reads and writes the served app's data directory
    (runs created here land in the local user's workspace, as the app's own would)."""
    def use(home: Path) -> Path:
        monkeypatch.setenv(settings.HOME_ENV, str(home))
        return home
    return use


@pytest.fixture
def outside(tmp_path_factory) -> Path:
    """A folder outside every allowed root of the served app (not under this run's temporary
    folders, not under the shared assets): what no visitor may make the server read or touch."""
    folder = Path(tempfile.mkdtemp(prefix="tl-attack-outside-", dir="/tmp")).resolve()
    base = tmp_path_factory.getbasetemp().resolve()
    assert not folder.is_relative_to(base) and not folder.is_relative_to(SHARED)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)
