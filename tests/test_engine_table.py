"""core.nets.engine's table: a new engine is one ``register(Backend(...))`` (issue 31 item 3).

No OpenVINO needed: the engine added here is a fake, TensorFlow-backed with its outputs rounded
through float16 in NumPy, so it differs from TensorFlow a little (as a real engine does) and the
parity guard has something to check.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from core import settings
from core.errors import EngineError
from core.nets import backbones, engine


@pytest.fixture
def numpy_engine(monkeypatch):
    """The one place a new engine goes: one table entry. Removed again after the test."""
    calls: list[tuple] = []

    def factory(tf_fn, size, precision, ir_key=None):
        calls.append(("built", size, precision))

        def run(x):
            calls.append(("ran", len(x)))
            return np.asarray(tf_fn(x), np.float32).astype(np.float16).astype(np.float32)

        return run

    b = engine.register(engine.Backend(
        name="numpy", title="NumPy", short="NP", precisions=("f16",),
        unavailable=lambda auto=False: None, precision=lambda: ("f16", "float16 rounding in NumPy"),
        factory=factory))
    yield b, calls
    engine.unregister("numpy")
    engine._choose.cache_clear()


def _pixels(n=4, size=32, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (n, size, size, 3)).astype(np.float32)


def test_the_shipped_table():
    assert engine.names()[:3] == ("auto", "tensorflow", "openvino")
    ref = engine.reference()
    assert ref.name == "tensorflow" and ref.reference and ref.is_exact and ref.precisions == ("f32",)
    ov = engine.backend("openvino")
    assert not ov.reference and ov.precisions == ("bf16", "f32") and ov.title == "OpenVINO"
    assert engine.TENSORFLOW == engine.reference_choice() and engine.TENSORFLOW.reference
    assert engine.Choice("openvino", "bf16").reference is False
    with pytest.raises(EngineError, match="not an engine; use one of auto, tensorflow, openvino"):
        engine.backend("fast")


def test_a_registered_engine_is_listed_chosen_and_run_by_frozen_forward(numpy_engine, local_weights, image_folder,
                                                                        monkeypatch):
    from core.__main__ import parser
    from core.analysis import speed
    from core.data.dataset import scan_folder
    from core.features.cache import extract_features
    from core.train.frozen import engine_enabled

    b, calls = numpy_engine
    assert "numpy" in engine.names() and engine.backend("numpy") is b and not b.reference
    assert "numpy" in parser().parse_args(["extract", "--dataset", "d", "--engine", "numpy"]).engine

    monkeypatch.setenv(settings.ENGINE_ENV, "numpy")
    choice = engine.choose()
    assert (choice.engine, choice.precision, choice.label) == ("numpy", "f16", "numpy f16")
    assert choice.reason == f"{settings.ENGINE_ENV}=numpy: float16 rounding in NumPy"
    assert engine.describe().startswith("numpy f16 · ")

    bb = backbones.load_backbone("tiny")
    fwd = bb.frozen_forward("avg")
    assert fwd.engine == "numpy" and engine_enabled(fwd)
    x = _pixels()
    out = fwd(x)  # the first real batch: the guard's probe, both engines
    ref = np.asarray(bb.forward("avg")(x))
    assert out.dtype == np.float32 and out.shape == ref.shape
    assert not np.array_equal(out, ref) and np.allclose(out, ref, rtol=2e-3, atol=1e-3)
    assert calls == [("built", 32, "f16"), ("ran", 4)]
    assert fwd.verdict["passed"] and fwd.verdict["engine"] == "numpy f16"
    fwd(x)
    assert calls[-1] == ("ran", 4)  # verified: the new engine serves every later batch

    # the feature cache keys its rows by the new engine, and speed times it beside TensorFlow
    fs = extract_features(scan_folder(image_folder), bb.spec, loaded=bb)
    assert fs.meta["engine"] == "numpy f16" and fs.X.shape == (24, 12)
    choices, note = speed._engine_choices()
    assert "numpy f16" in [c.label for c in choices]


def test_auto_picks_a_registered_engine_and_the_guard_refuses_a_wrong_one(numpy_engine, local_weights, tl_home,
                                                                         monkeypatch):
    monkeypatch.setenv(settings.ENGINE_ENV, "auto")
    monkeypatch.setattr(engine, "openvino_version", lambda: None)  # no OpenVINO: the next backend in the table
    engine._choose.cache_clear()
    assert engine.choose() == engine.Choice("numpy", "f16", "auto: float16 rounding in NumPy")

    b, _ = numpy_engine
    broken = engine.register(engine.Backend(
        name="numpy", title=b.title, short=b.short, precisions=b.precisions, unavailable=b.unavailable,
        precision=b.precision, factory=lambda tf_fn, *a, **k: (lambda x: -np.asarray(tf_fn(x), np.float32))))
    assert engine.backend("numpy") is broken
    bb = backbones.load_backbone("tiny")
    fwd = bb.frozen_forward("avg")
    x = _pixels(seed=1)
    np.testing.assert_allclose(fwd(x), np.asarray(bb.forward("avg")(x)), rtol=1e-6)  # TensorFlow took over
    assert fwd.choice.reference and fwd.reason.startswith("parity guard refused numpy f16")
    [kept] = (tl_home / "engine" / "parity").glob("*.json")
    assert json.loads(kept.read_text())["passed"] is False


def test_an_engine_not_in_the_table_is_refused(monkeypatch):
    monkeypatch.setenv(settings.ENGINE_ENV, "numpy")
    with pytest.raises(EngineError, match="TRANSFER_LAB_ENGINE='numpy' is not an engine"):
        engine.choose()
    with pytest.raises(EngineError, match="'numpy' is not an engine"):
        engine.choose("numpy")
