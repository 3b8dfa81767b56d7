"""Shared fixtures: an isolated data directory per test, generated image folders,
and the shared real assets (weights, cats_vs_dogs) for the ``real`` tier."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tests import tiny_backbone  # noqa: E402  (after the log level)
from tests.helpers import CATS_VS_DOGS, SHARED, SHARED_WEIGHTS, make_local_backbone, write_images  # noqa: E402


@pytest.fixture(autouse=True)
def tl_home(tmp_path_factory, monkeypatch) -> Path:
    """Every test gets its own empty data directory and no weights directory."""
    home = tmp_path_factory.mktemp("tl_home")
    monkeypatch.setenv("TRANSFER_LAB_HOME", str(home))
    monkeypatch.delenv("TRANSFER_LAB_WEIGHTS_DIR", raising=False)
    # paths typed into the app must lie in allowed roots (core.access): the tests' own temporary
    # folders and the shared assets; tests of the roots set their own
    monkeypatch.setenv("TRANSFER_LAB_DATA_ROOTS", os.pathsep.join([str(tmp_path_factory.getbasetemp()), str(SHARED)]))
    return home


@pytest.fixture(autouse=True)
def tl_engine(monkeypatch) -> str:
    """Suites compare features with TensorFlow references to 1e-4, so they run the TensorFlow
    engine unless ``TRANSFER_LAB_ENGINE`` is set for the test run (tests/test_engine.py sets it)."""
    value = os.environ.get("TRANSFER_LAB_ENGINE") or "tensorflow"
    monkeypatch.setenv("TRANSFER_LAB_ENGINE", value)
    return value


@pytest.fixture(scope="session")
def real_home(tmp_path_factory) -> Path:
    """One data directory shared by the real tier, so feature caches are reused."""
    return tmp_path_factory.mktemp("tl_real_home")


@pytest.fixture
def shared_assets(real_home, monkeypatch) -> Path:
    """Point the app at ../shared/keras-weights and a session-wide data directory."""
    if not (SHARED_WEIGHTS / "efficientnet_lite0.keras").exists():
        pytest.fail(f"shared weights missing at {SHARED_WEIGHTS} (set TRANSFER_LAB_SHARED)")
    monkeypatch.setenv("TRANSFER_LAB_WEIGHTS_DIR", str(SHARED_WEIGHTS))
    monkeypatch.setenv("TRANSFER_LAB_HOME", str(real_home))
    return SHARED


@pytest.fixture
def cats_vs_dogs(shared_assets) -> Path:
    if not CATS_VS_DOGS.is_dir():
        pytest.fail(f"cats_vs_dogs missing at {CATS_VS_DOGS}")
    return CATS_VS_DOGS


@pytest.fixture
def image_folder(tmp_path) -> Path:
    """A split dataset: train/{a,b} x 12 and validation/{a,b} x 4 generated PNGs."""
    root = tmp_path / "ds"
    for i, cls in enumerate(["a", "b"]):
        write_images(root / "train" / cls, i, 12, seed=1)
        write_images(root / "validation" / cls, i, 4, seed=2)
    return root


@pytest.fixture
def flat_folder(tmp_path) -> Path:
    """An unsplit dataset: {a,b,c} x 10 generated PNGs."""
    root = tmp_path / "flat"
    for i, cls in enumerate(["a", "b", "c"]):
        write_images(root / cls, i, 10, seed=3)
    return root


@pytest.fixture
def store(monkeypatch):
    """The team's run store, one job at a time, its workers the tests' own (``tests/jobs_worker.py``:
    a run's ``config["target"]`` names a stand-in for training); every worker still alive at the
    end (ours and those started by workers) is killed."""
    from core import settings
    from core.runs import jobs
    from core.runs import store as run_store
    from core.runs.store import RunStore, pid_alive

    monkeypatch.setattr(run_store, "WORKER_MODULE", "tests.jobs_worker")
    monkeypatch.setenv(settings.MAX_JOBS_ENV, "1")
    store = RunStore()
    yield store
    for run in store.list():
        status = run.status()
        if status["state"] == "running" and status.get("pid") and pid_alive(status["pid"], status.get("pid_start")):
            try:
                os.killpg(status["pid"], signal.SIGKILL)
            except ProcessLookupError:
                pass
    jobs._reap()


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> Path:
    """A folder holding the tiny local backbone of tests/tiny_backbone.py, built once a session."""
    return tiny_backbone.build(tmp_path_factory.mktemp("tiny_weights"))


@pytest.fixture
def tiny(tiny_weights, monkeypatch) -> str:
    """The tiny backbone's name, with the weights folder pointing at it."""
    monkeypatch.setenv("TRANSFER_LAB_WEIGHTS_DIR", str(tiny_weights))
    return tiny_backbone.NAME


@pytest.fixture
def local_weights(tmp_path, monkeypatch) -> Path:
    """A weights folder of this test's own with ``make_local_backbone``'s "tiny" in it."""
    folder = tmp_path / "weights"
    monkeypatch.setenv("TRANSFER_LAB_WEIGHTS_DIR", str(folder))
    make_local_backbone(folder)
    return folder
