"""Degenerate datasets train, or are refused, with a clear message: class names with spaces
and unicode, a class with one photo, a class missing from validation, hundreds of classes.
(Empty folders, one class and all-bad files are refused in tests/test_data.py.)"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.data import stats
from core.train import fit as training
from core.data.dataset import scan_folder
from core.train.evaluation import summarize
from core.runs.models import load_model
from core.runs.store import RunStore
from core.runs.worker import train_run
from tests.helpers import write_images
from tests.test_strategies import TINY_SIZE, make_tiny_backbone
from tests.test_training import tiny_config

SIZE = (TINY_SIZE, TINY_SIZE)


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    monkeypatch.setenv("TRANSFER_LAB_WEIGHTS_DIR", str(make_tiny_backbone(tmp_path / "weights")))


def test_class_names_with_spaces_and_unicode_train_and_round_trip(tiny, tmp_path):
    names = ["chat noir", "café crème", "猫 ねこ", "true"]  # "true": beside the true_confidence column
    for i, name in enumerate(names):
        write_images(tmp_path / "ds" / "train" / name, i, 8, size=SIZE, seed=1)
        write_images(tmp_path / "ds" / "validation" / name, i, 3, size=SIZE, seed=2)
    ds = scan_folder(tmp_path / "ds")
    assert ds.classes == sorted(names) and not ds.bad_files and stats.unvalidated(ds) is None
    run = RunStore().create(tiny_config(tmp_path / "ds", "linear_probe", epochs=3).to_dict(), name="unicode")
    train_run(run)  # what the worker runs: model, metrics and predictions into the run store
    metrics, predictions = run.metrics(), run.predictions()
    assert metrics["classes"] == sorted(names) and set(metrics["per_class"]) == set(names)
    assert set(predictions["true"]) == set(names) and metrics["val_accuracy"] == 1.0
    assert [f"p_{n}" for n in sorted(names)] == [c for c in predictions if c.startswith("p_")]
    assert np.allclose(predictions[[f"p_{n}" for n in names]].sum(axis=1), 1, atol=1e-5)
    assert (predictions["true_confidence"] <= predictions["confidence"] + 1e-9).all()
    assert load_model(run.model_path).output_shape == (None, len(names))


def _assert_unvalidated_class_trains(folder: Path, lonely: str) -> None:
    ds = scan_folder(folder)
    counts = ds.counts()
    assert counts["train"][lonely] >= 1 and counts["validation"][lonely] == 0
    warning = stats.unvalidated(ds)
    assert warning and f"'{lonely}'" in warning and "not" not in warning.split(":")[0]
    result = training.fit(tiny_config(folder, "feature_extraction", epochs=2))
    m = result.metrics
    assert lonely in m["classes"] and np.array(m["confusion_matrix"]).shape == (3, 3)
    assert m["per_class"][lonely]["support"] == 0 and m["per_class"][lonely]["recall"] is None
    scored = [c["f1"] for c in m["per_class"].values() if c["f1"] is not None]
    assert m["macro_f1"] == pytest.approx(np.mean(scored))
    assert result.model.output_shape == (None, 3)


def test_class_with_one_photo_trains_and_is_flagged(tiny, tmp_path):
    for i, (name, n) in enumerate([("a", 10), ("b", 10), ("solo", 1)]):
        write_images(tmp_path / "flat" / name, i, n, size=SIZE)
    ds = scan_folder(tmp_path / "flat")
    assert ds.split_source == "stratified"
    assert "'solo' (1)" in stats.imbalance(ds)["warning"]  # too few training photos
    assert "at least two photos" in stats.unvalidated(ds)
    _assert_unvalidated_class_trains(tmp_path / "flat", "solo")


def test_class_missing_from_validation_trains_and_is_flagged(tiny, tmp_path):
    for i, name in enumerate(["a", "b", "c"]):
        write_images(tmp_path / "ds" / "train" / name, i, 8, size=SIZE, seed=1)
        if name != "c":
            write_images(tmp_path / "ds" / "validation" / name, i, 3, size=SIZE, seed=2)
    assert "validation/" in stats.unvalidated(scan_folder(tmp_path / "ds"))
    _assert_unvalidated_class_trains(tmp_path / "ds", "c")


def test_undefined_scores_are_none_and_left_out_of_macro_f1():
    probs = np.array([[0.9, 0.1, 0.0], [0.2, 0.8, 0.0], [0.6, 0.4, 0.0]])
    metrics, _ = summarize(probs, np.array([0, 1, 1]), ["a", "b", "never"], ["x", "y", "z"])
    assert metrics["per_class"]["never"] == {"precision": None, "recall": None, "f1": None, "support": 0}
    assert metrics["per_class"]["a"] == pytest.approx({"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "support": 1})
    assert metrics["per_class"]["b"] == pytest.approx({"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2})
    assert metrics["macro_f1"] == pytest.approx(2 / 3)  # not (2/3 + 2/3 + 0) / 3
    missed, _ = summarize(np.array([[0.9, 0.1], [0.8, 0.2]]), np.array([0, 1]), ["a", "b"], ["x", "y"])
    assert missed["per_class"]["b"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}


def test_three_hundred_classes(tiny, tmp_path):
    k = 300
    for i in range(k):
        write_images(tmp_path / "many" / "train" / f"class {i:03d}", i, 2, size=SIZE, seed=1)
        write_images(tmp_path / "many" / "validation" / f"class {i:03d}", i, 1, size=SIZE, seed=2)
    ds = scan_folder(tmp_path / "many")
    assert ds.num_classes == k and len(ds.records) == 3 * k
    result = training.fit(tiny_config(tmp_path / "many", "feature_extraction", epochs=1))
    m = result.metrics
    assert result.model.output_shape == (None, k)
    assert np.array(m["confusion_matrix"]).shape == (k, k) and np.array(m["confusion_matrix"]).sum() == k
    assert len(result.predictions) == k and np.allclose(
        result.predictions[[f"p_class {i:03d}" for i in range(k)]].sum(axis=1), 1, atol=1e-4)
