"""The one separability measure (leave-one-out 5-NN, cross-validated probe, silhouette) and the
table that compares backbones with it."""

from __future__ import annotations


import numpy as np
import pytest

from core.analysis import separability
from core.data.dataset import scan_folder
from core.errors import TransferLabError, WeightsUnavailable
from core.nets import engine
from tests.test_label_issues import blobs

pytestmark = pytest.mark.engine  # run again under the default engine (scripts/test.sh)

DIM = 32


def gaussians(n_per_class: int, shift: float, classes: int = 2, seed: int = 0):
    """``classes`` Gaussian blobs in DIM dimensions; class c is centred ``shift`` along axis c."""
    rng = np.random.default_rng(seed)
    X, y = [], []
    for c in range(classes):
        centre = np.full(DIM, 1.0)  # positive offset: row normalisation keeps the classes apart
        centre[c] += shift
        X.append(rng.normal(size=(n_per_class, DIM)) + centre)
        y += [c] * n_per_class
    return np.vstack(X).astype("float32"), np.array(y)



# ---------------------------------------------------------------- the measure

def test_separability_high_for_well_separated_classes():
    X, y = gaussians(40, shift=8.0)
    sep = separability.separability(X, y)
    assert sep["probe_cv_accuracy"] >= 0.95 and sep["knn_loo_accuracy"] >= 0.95 and sep["silhouette"] > 0.3
    assert sep["probe_folds"] == 5 and sep["chance"] == 0.5 and sep["images"] == 80


def test_separability_near_chance_for_identical_distributions():
    X, y = gaussians(40, shift=0.0)
    sep = separability.separability(X, y)
    assert abs(sep["probe_cv_accuracy"] - 0.5) <= 0.2 and abs(sep["knn_loo_accuracy"] - 0.5) <= 0.2
    assert abs(sep["silhouette"]) < 0.1


def test_separability_three_classes_and_few_samples():
    X, y = gaussians(3, shift=8.0, classes=3)  # 3 a class: folds shrink to 3
    sep = separability.separability(X, y)
    assert sep["probe_folds"] == 3 and sep["probe_cv_accuracy"] >= 0.9


def test_separability_with_a_class_index_missing():
    X, y = gaussians(20, shift=8.0, classes=3)
    keep = y != 1
    sep = separability.separability(X[keep], y[keep])
    assert sep["probe_cv_accuracy"] >= 0.9 and sep["knn_loo_accuracy"] >= 0.9
    with pytest.raises(separability.SeparabilityError, match="two classes"):
        separability.separability(X[y == 0], y[y == 0])


def test_knn_figure_is_the_leave_one_out_vote():
    from core.features.neighbours import knn_loo_accuracy

    X, y = blobs(n_per_class=30, k=3, dim=16, spread=0.6)
    noisy = np.random.default_rng(1).permutation(y)
    assert separability.separability(X, noisy)["knn_loo_accuracy"] == knn_loo_accuracy(X, noisy)


def test_silhouette():
    X, y = blobs(n_per_class=40, k=3, dim=16, spread=0.2)
    shuffled = np.random.default_rng(0).permutation(y)
    assert separability.silhouette(X, y) > 0.5 > separability.silhouette(X, shuffled)
    assert separability.silhouette(np.zeros((10, 4)), np.repeat([0, 1], 5)) == 0.0
    assert np.isnan(separability.silhouette(X[:3], y[:3]))


# ---------------------------------------------------------------- backbones compared

def test_separability_table_real_vs_random(tiny, flat_folder):
    ds = scan_folder(flat_folder)
    entries = separability.default_entries()
    assert entries == [(tiny, "imagenet"), (tiny, None)]
    table = separability.separability_table(ds, entries, per_class=6, split="train")
    assert list(table.columns) == separability.TABLE_COLUMNS
    assert sorted(table["weights"]) == ["ImageNet", "random"]
    assert (table["images"] == 18).all() and (table["error"] == "").all()
    assert (table["images_per_s"] > 0).all() and (table["dims"] == 3).all()
    real = table[table["weights"] == "ImageNet"].iloc[0]
    assert real["knn_loo_accuracy"] == 1.0 and real["probe_cv_accuracy"] == 1.0 and real["silhouette"] > 0.5
    assert real["chance"] == pytest.approx(1 / 3) and real["probe_folds"] == 5
    assert table["knn_loo_accuracy"].is_monotonic_decreasing
    assert (table["speed_from"] == "this extraction (18 photos, warm-up included)").all()
    fewer = separability.separability_table(ds, entries, per_class=4, split="train")  # rows from the cache
    assert np.allclose(fewer["images_per_s"], table["images_per_s"])
    assert fewer["speed_from"].str.startswith("an earlier extraction (18 photos)").all()

    from core.analysis import speed

    measured = speed.measure(tiny, batch_size=4, batches=1)
    again = separability.separability_table(ds, entries, per_class=6, split="train")
    assert np.allclose(again["images_per_s"], measured.rate(engine.choose().label))  # the app engine's speed
    assert (again["speed_from"] == "speed benchmark").all()


def test_separability_table_reports_a_backbone_that_cannot_run(tiny, flat_folder, monkeypatch):
    ds = scan_folder(flat_folder)
    real = separability.dataset_features

    def fake(ds_, name, weights, *a, **k):
        if weights is None:
            raise WeightsUnavailable("weights missing here")
        return real(ds_, name, weights, *a, **k)

    monkeypatch.setattr(separability, "dataset_features", fake)
    table = separability.separability_table(ds, [(tiny, "imagenet"), (tiny, None)], per_class=4)
    assert list(table["error"]) == ["", "weights missing here"]
    assert np.isnan(table["knn_loo_accuracy"].iloc[1]) and np.isnan(table["probe_cv_accuracy"].iloc[1])


def test_separability_table_needs_photos(tiny, flat_folder):
    ds = scan_folder(flat_folder)
    with pytest.raises(TransferLabError):
        separability.separability_table(ds, [(tiny, "imagenet")], split="nope")
    assert "seeded sample of up to 4" in separability.sample_note(ds, 4)
    assert separability.sample_note(ds, None).startswith("all ")
