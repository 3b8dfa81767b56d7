"""core.analysis.label_budget: the learning curve on features, the fitted curve, and its honest check
(fitted on at most half the training split, judged against the measured full-data accuracy)."""

from __future__ import annotations

import numpy as np
import pytest

from core.analysis import label_budget


def _blobs(per_class: int, seed: int, dims: int = 60, shift: float = 0.35):
    """Two overlapping Gaussian classes in many dimensions: a probe gains with every photo it is given."""
    rng = np.random.default_rng(seed)
    y = np.r_[np.zeros(per_class, int), np.ones(per_class, int)]
    X = rng.normal(size=(2 * per_class, dims))
    X[y == 1, :] += shift
    return X, y


def test_the_curve_rises_with_intervals_and_the_fit_says_how_many_more_photos_pay():
    X, y = _blobs(200, 0)
    Xv, yv = _blobs(300, 1)
    out = label_budget.budget(X, y, Xv, yv)
    curve, fit = out["curve"], out["fit"]
    assert curve["accuracy"].iloc[-1] > curve["accuracy"].iloc[0] + 0.05  # more photos pay here
    assert (curve["ci_low"] <= curve["accuracy"]).all() and (curve["accuracy"] <= curve["ci_high"]).all()
    assert curve["seeds"].eq(label_budget.SEEDS).all() and 0.5 < fit["top"] <= 1.0
    assert label_budget.photos_for(fit, fit["top"] + 0.01) is None
    assert label_budget.photos_for(fit, 0.8) < label_budget.photos_for(fit, 0.85)
    assert "more photos a class would reach" in out["text"] or "flattened" in out["text"]


def test_fitted_on_half_the_data_it_predicts_the_full_data_accuracy():
    X, y = _blobs(200, 0)
    Xv, yv = _blobs(300, 1)
    check = label_budget.honest_check(X, y, Xv, yv)
    assert max(check["fitted_on"]) <= 100 and check["per_class"] == 200
    assert check["predicted"] == pytest.approx(check["measured"], abs=0.03)
