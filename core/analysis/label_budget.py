"""How many more labels pay: a learning curve on cached features and a curve fitted to it.

A linear probe (the separability probe: logistic regression on L2-normalised features) is trained
on stratified fractions of the training split, several seeds each, and scored on the validation
split; each point carries a 95% Wilson interval on the validation images. An inverse power law,
``accuracy(n) = top - gap * n ** -rate`` with ``n`` photos a class, is fitted to the means: it says
where the curve flattens (``top``) and about how many photos a class a target accuracy needs.
``honest_check`` fits on at most half the training split and compares its prediction of the
full-data probe accuracy with the measured one, so the extrapolation is judged, not assumed.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from core.analysis.neighbours import l2_normalise
from core.analysis.separability import PROBE_C
from core.analysis.verdicts import wilson

FRACTIONS = (0.125, 0.25, 0.375, 0.5, 0.75, 1.0)
SEEDS = 3


def _subset(y: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    return np.concatenate([rng.permutation(np.flatnonzero(y == c))[:per_class] for c in np.unique(y)])


def learning_curve(X, y, Xv, yv, fractions=FRACTIONS, seeds: int = SEEDS) -> pd.DataFrame:
    """One row per fraction: photos a class, the probe's mean validation accuracy over ``seeds``
    seeded subsets, its spread (min, max) and the 95% Wilson interval of the mean on the validation images."""
    from sklearn.linear_model import LogisticRegression

    X, Xv = l2_normalise(np.asarray(X, np.float32)), l2_normalise(np.asarray(Xv, np.float32))
    y, yv = np.asarray(y), np.asarray(yv)
    smallest = int(np.bincount(y)[np.unique(y)].min())
    rows = []
    for fraction in fractions:
        per_class = max(2, int(round(smallest * fraction)))
        scores = []
        for seed in range(seeds):
            keep = _subset(y, per_class, np.random.default_rng(seed))
            probe = LogisticRegression(C=PROBE_C, max_iter=2000).fit(X[keep], y[keep])
            scores.append(float(np.mean(probe.predict(Xv) == yv)))
        mean = float(np.mean(scores))
        low, high = wilson(int(round(mean * len(yv))), len(yv))
        rows.append({"fraction": fraction, "per_class": per_class, "accuracy": mean, "min": min(scores),
                     "max": max(scores), "ci_low": low, "ci_high": high, "seeds": seeds})
    return pd.DataFrame(rows).drop_duplicates("per_class", keep="last").reset_index(drop=True)


def fit_curve(per_class, accuracy) -> dict:
    """``top - gap * n ** -rate`` fitted to the curve's means (``top`` at most 1)."""
    from scipy.optimize import curve_fit

    n, acc = np.asarray(per_class, float), np.asarray(accuracy, float)

    def law(n, top, gap, rate):
        return top - gap * n ** -rate

    start = (min(1.0, acc.max() + 0.02), max(acc.max() - acc.min(), 0.05) * n.min() ** 0.5, 0.5)
    (top, gap, rate), _ = curve_fit(law, n, acc, p0=start, bounds=([0.0, 0.0, 0.05], [1.0, np.inf, 3.0]),
                                    maxfev=20000)
    return {"top": float(top), "gap": float(gap), "rate": float(rate)}


def predict(curve: dict, per_class: float) -> float:
    return float(curve["top"] - curve["gap"] * float(per_class) ** -curve["rate"])


def photos_for(curve: dict, target: float) -> float | None:
    """Photos a class the fitted curve needs to reach ``target`` (None: above where it flattens)."""
    if target >= curve["top"] or curve["gap"] <= 0:
        return None
    return float((curve["gap"] / (curve["top"] - target)) ** (1.0 / curve["rate"]))


def budget(X, y, Xv, yv) -> dict:
    """The curve, its fit and the sentence: about how many more photos a class would reach an
    accuracy halfway from today's to where the curve flattens."""
    curve = learning_curve(X, y, Xv, yv)
    fit = fit_curve(curve["per_class"], curve["accuracy"])
    now_n, now = int(curve["per_class"].iloc[-1]), float(curve["accuracy"].iloc[-1])
    target = now + (fit["top"] - now) / 2
    needed = photos_for(fit, target)
    if needed is None or fit["top"] - now < 0.005:
        text = (f"The curve has flattened: at {now_n} photos a class the probe reaches {now:.1%}, and the fit "
                f"levels off at {fit['top']:.1%}; more photos of the same kind are not expected to pay.")
    else:
        text = (f"About {max(0, int(np.ceil(needed)) - now_n):,} more photos a class would reach {target:.1%} "
                f"(today {now:.1%} at {now_n} a class); the fitted curve flattens at {fit['top']:.1%}.")
    return {"curve": curve, "fit": fit, "text": text}


def honest_check(X, y, Xv, yv, max_fraction: float = 0.5) -> dict:
    """Fit on fractions up to ``max_fraction`` of the training split only; predict the full-data
    probe accuracy and compare it with the one measured."""
    curve = learning_curve(X, y, Xv, yv)
    part = curve[curve["fraction"] <= max_fraction]
    fit = fit_curve(part["per_class"], part["accuracy"])
    full = curve.iloc[-1]
    predicted = predict(fit, full["per_class"])
    return {"per_class": int(full["per_class"]), "predicted": predicted, "measured": float(full["accuracy"]),
            "error": predicted - float(full["accuracy"]), "fitted_on": part["per_class"].tolist(), "fit": fit}
